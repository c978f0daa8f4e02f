//! File rules: the mode and owner of the files CIS 1.1.x and 4.1.x name, at the paths the running processes
//! give them (or the distributions' defaults).
//!
//! Owns: file targets as pack data ([`Target`]: where a file is — a flag of the component, another component's
//! setting joined with a name, a fixed path, a directory tree), the checks on them ([`FileCheck`]: mode "600 or
//! more restrictive", owner `user:group` by the host's own names), and their evaluation against a [`FileSet`].
//! Must not touch: SSH. It only stats: a private key's or a kubeconfig's contents are never asked for.

use serde::Deserialize;

use super::layers;
use super::test::{FlagEvidence, Source, View};
use crate::files::accounts::Accounts;
use crate::files::{Entry, FileSet, Kind, Problem, Request, Want};

/// Another component's setting on the same host, for [`Place::In`]: `None` when that component does not run
/// here, `Some(Ok(None))` when nothing sets it, `Some(Err(why))` when it cannot be known.
pub type Others<'o> = dyn Fn(&str, &str) -> Option<Result<Option<String>, String>> + 'o;

/// Where one of a target's files is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A fixed path (a distribution's default location): checked if it exists.
    Path(String),
    /// The path a setting of the rule's component holds (`--kubeconfig`, the kubelet's `--client-ca-file` or
    /// its config's `authentication.x509.clientCAFile`): the process names it, so it must exist. When nothing
    /// sets it, `default` (checked if it exists), or nothing to check.
    Setting { flag: String, default: Option<String> },
    /// A file in the directory another component's setting names (`kube-apiserver.yaml` in the kubelet's
    /// `staticPodPath`), or in `default` when that component does not run here.
    In { component: String, flag: String, default: Option<String>, name: String },
    /// Every file under a directory (recursively, a few levels) whose name matches `pattern`; subdirectories
    /// too with `dirs`, the directory itself with `with_root`.
    Tree { dir: String, pattern: String, with_root: bool, dirs: bool },
    /// The same, under the directory of the file a setting of the component names (the API server's
    /// `--client-ca-file` is in its PKI directory: /etc/kubernetes/pki, RKE2's /var/lib/rancher/rke2/server/tls).
    TreeOf { flag: String, pattern: String, with_root: bool, dirs: bool },
    /// The systemd service the process runs in, by its cgroup (`/proc/PID/cgroup`: `0::/system.slice/
    /// kubelet.service`), or `default` when the cgroup was not readable: the unit file and its drop-ins
    /// (`UNIT.d/*.conf`) in systemd's unit directories, each checked if it exists.
    Unit { default: String },
    /// The certificate a kubelet serves (cmd/kubelet/app/server.go, `InitializeTLS` and
    /// `ListenAndServeKubeletServer`, which loads the file when one is given; the certificate manager's
    /// `GetCertificate` answers only without one): its `cert` setting (`--tls-cert-file` / `tlsCertFile`) when
    /// set; otherwise, when it rotates its serving certificate
    /// (`rotate`: `--rotate-server-certificates` / `serverTLSBootstrap`, with the RotateKubeletServerCertificate
    /// feature gate on), the certificate manager's `kubelet-server-current.pem` in its `dir` setting
    /// (`--cert-dir`; pkg/kubelet/certificate/kubelet.go, store pair name `kubelet-server`), which holds the
    /// private key after the certificate; else the `kubelet.crt` it generated there at start
    /// (`GenerateSelfSignedCertKey`).
    KubeletServing { cert: String, dir: String, rotate: String },
}

/// The file the kubelet's certificate manager keeps a rotated certificate in: the certificate, then its private
/// key, in one file (k8s.io/client-go/util/certificate/certificate_store.go, `Update`). Never read whole: only its
/// leading certificates ([`Want::Certs`]).
pub fn holds_key(path: &str) -> bool {
    path.rsplit('/').next().is_some_and(|name| name.ends_with("-current.pem"))
}

/// systemd's system unit directories a unit file or its drop-ins can be in (systemd.unit(5), "System Unit
/// Search Path", without the runtime-only control and generator directories); `/lib/systemd/system` for
/// distributions without a merged /usr.
pub const UNIT_DIRS: [&str; 5] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// A file (or set of files) CIS checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    /// Index into `RuleSet::components`.
    pub component: usize,
    /// For people: `the API server's pod specification file`.
    pub what: String,
    pub at: Vec<Place>,
    /// The file exists only when the component runs as a static pod (its pod specification): a component run
    /// inside another program (`k3s server`) has none, and the check does not apply.
    pub static_pod: bool,
    /// For a certificate file: the role its certificates play (`kubelet-serving`, `apiserver-kubelet-ca`),
    /// which cluster rules select by. Its files are read (certificates are public), not only stat'ed.
    pub certificate: Option<String>,
}

/// What a file check requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileOp {
    /// No permission bit outside the value's (octal: `600` allows rw------- and anything stricter).
    Mode,
    /// Owned by `user:group`, by the names in the host's /etc/passwd and /etc/group.
    Owner,
}

/// A check on a target's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// Index into `RuleSet::targets`, and the target's id.
    pub target: usize,
    pub target_id: String,
    pub op: FileOp,
    pub value: String,
    /// For `mode`: the allowed bits.
    pub mask: u32,
}

impl FileCheck {
    pub fn new(target: usize, target_id: String, op: FileOp, value: String) -> Result<FileCheck, String> {
        let mask = match op {
            FileOp::Mode => u32::from_str_radix(&value, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| format!("mode {value:?} is not octal permission bits such as \"600\""))?,
            FileOp::Owner => {
                if value.split_once(':').is_none_or(|(u, g)| u.is_empty() || g.is_empty()) {
                    return Err(format!("owner {value:?}: write \"user:group\""));
                }
                0
            }
        };
        Ok(FileCheck { target, target_id, op, value, mask })
    }

    /// What the check requires, for people: `apiserver-manifest mode 600 or stricter`.
    pub fn requirement(&self) -> String {
        match self.op {
            FileOp::Mode => format!("{} mode {} or stricter", self.target_id, self.value),
            FileOp::Owner => format!("{} owned by {}", self.target_id, self.value),
        }
    }
}

/// One path of a target for one process.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// A path to check: `named` when the process names it (so it must exist), with a note on where it was read.
    Path { path: String, named: bool, note: Option<String> },
    /// A part of the target that cannot be known: why, with the fix.
    Unknown(String),
}

/// How `paths` treats a value it cannot know yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Judging: an unknown value is an unknown item.
    Judge,
    /// Planning the first batch: an unknown value is taken to be its default, so that the default location is
    /// read in the same round trip as the file that will tell (a kubeadm kubelet's staticPodPath is the default).
    Speculate,
}

/// The unit file to check for a process: the service it runs in, `None` when it runs in none, or `default` when
/// its cgroup cannot tell (not read yet, or unreadable: the pack's default unit name is checked instead).
fn unit_or(files: &FileSet, pid: u32, default: &str) -> Option<String> {
    match unit_of(files, pid) {
        Ok(unit) => unit,
        Err(_) => Some(default.to_owned()),
    }
}

/// The service unit a process runs in, from its `/proc/PID/cgroup` (cgroup v2 `0::PATH`, or v1's
/// `name=systemd` hierarchy): the last `.service` component of the path. `Ok(None)`: it runs in no service.
fn unit_of(files: &FileSet, pid: u32) -> Result<Option<String>, String> {
    let path = format!("/proc/{pid}/cgroup");
    let content = match files.get(&path) {
        None => return Err(format!("{path} was not read")),
        Some(Entry::Problem(p)) => return Err(format!("{path}: {}", problem_text(p))),
        Some(e) => e.content().ok_or_else(|| format!("{path} has no contents"))?,
    };
    let text = String::from_utf8_lossy(&content.bytes);
    let mut seen_systemd = false;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(cgroup)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if !(controllers.is_empty() || controllers == "name=systemd") {
            continue;
        }
        seen_systemd = true;
        if let Some(unit) = cgroup.split('/').rev().find(|c| c.ends_with(".service") && c.len() > ".service".len()) {
            return Ok(Some(unit.to_owned()));
        }
    }
    if seen_systemd { Ok(None) } else { Err(format!("{path} names no systemd hierarchy")) }
}

/// [`paths`] to judge, derived once from the set as it is: the last batch's planning and the judging ask the
/// same of every target and process (each was a few per cent of a scan's CPU in `perf`).
fn judged_paths(
    target: &Target,
    view: &View<'_, '_>,
    files: &FileSet,
    others: &Others<'_>,
) -> std::sync::Arc<Vec<Item>> {
    // What the paths depend on besides the set: the target, the process and the component it is judged as (a
    // kubelite process runs several).
    let key = format!("paths {:p} {:p} {}", target, view.process.component, view.viewer.pid);
    files.derived(&key, || paths(target, view, files, others, Mode::Judge))
}

/// The paths of a target for one process.
fn paths(target: &Target, view: &View<'_, '_>, files: &FileSet, others: &Others<'_>, mode: Mode) -> Vec<Item> {
    let mut out = Vec::new();
    let viewer = view.viewer;
    let host = |path: String| Item::Path { path, named: false, note: None };
    // A path the process names: as it sees it.
    let named = |path: &str| {
        let l = viewer.locate(files, path);
        Item::Path { path: l.at, named: true, note: l.note }
    };
    for place in &target.at {
        match place {
            Place::Path(p) => out.push(host(p.clone())),
            Place::Setting { flag, default } => match setting(view, flag) {
                Ok(Some(path)) => out.push(named(&path)),
                Ok(None) => out.extend(default.clone().map(host)),
                Err(why) if mode == Mode::Speculate => {
                    let _ = why;
                    out.extend(default.clone().map(host));
                }
                Err(why) => out.push(Item::Unknown(format!("the path is in --{flag}, set by {why}"))),
            },
            Place::In { component, flag, default, name } => {
                let in_dir = |d: &str| host(format!("{}/{name}", d.trim_end_matches('/')));
                match others(component, flag) {
                    Some(Err(why)) if mode == Mode::Judge => out.push(Item::Unknown(why)),
                    Some(Ok(Some(dir))) => out.push(in_dir(&dir)),
                    _ => out.extend(default.as_deref().map(in_dir)),
                }
            }
            Place::Tree { dir, pattern, with_root, dirs } => {
                let shape = Shape { pattern, with_root: *with_root, dirs: *dirs, named: false };
                tree(dir.trim_end_matches('/'), shape, files, 0, &mut out, None)
            }
            Place::TreeOf { flag, pattern, with_root, dirs } => match dir_of(view, flag) {
                Ok(Some(dir)) => {
                    let l = viewer.locate(files, &dir);
                    let shape = Shape { pattern, with_root: *with_root, dirs: *dirs, named: true };
                    tree(&l.at, shape, files, 0, &mut out, l.note)
                }
                Ok(None) => {}
                Err(why) => out.push(Item::Unknown(format!("the directory is that of --{flag}, set by {why}"))),
            },
            Place::KubeletServing { cert, dir, rotate } => match kubelet_serving(view, cert, dir, rotate) {
                Ok((path, true)) => out.push(named(&path)),
                Ok((path, false)) => out.push(Item::Path { path, named: false, note: None }),
                Err(why) if mode == Mode::Speculate => {
                    let _ = why;
                    out.push(host(format!("{}/kubelet.crt", DEFAULT_CERT_DIR)));
                }
                Err(why) => out.push(Item::Unknown(why)),
            },
            Place::Unit { default } => {
                // Not in a service (a container, a shell): no unit file starts it.
                let Some(unit) = unit_or(files, viewer.pid, default) else { continue };
                for dir in UNIT_DIRS {
                    let file = format!("{dir}/{unit}");
                    let l = viewer.locate(files, &file);
                    out.push(Item::Path { path: l.at, named: false, note: l.note });
                    let drop_ins = viewer.locate(files, &format!("{file}.d"));
                    let shape = Shape { pattern: "*.conf", with_root: false, dirs: false, named: false };
                    tree(&drop_ins.at, shape, files, 0, &mut out, drop_ins.note);
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|i| match i {
        Item::Path { path, .. } => seen.insert(path.clone()),
        Item::Unknown(_) => true,
    });
    out
}

/// The path a setting of the process holds: `Ok(None)` when nothing sets it.
fn setting(view: &View<'_, '_>, flag: &str) -> Result<Option<String>, String> {
    let decl = view.process.component.flags.get(flag).ok_or_else(|| format!("--{flag} is not declared"))?;
    let s = layers::resolve(&view.process, flag, None, decl).map_err(|u| u.text())?;
    Ok(match s.from.is_given() {
        true => s.value.map(|v| v.text()).filter(|v| !v.is_empty()),
        false => None,
    })
}

/// The kubelet's default `--cert-dir` (cmd/kubelet/app/options/options.go).
const DEFAULT_CERT_DIR: &str = "/var/lib/kubelet/pki";

/// Where the kubelet's serving certificate is (see [`Place::KubeletServing`]), and whether the process names it.
fn kubelet_serving(view: &View<'_, '_>, cert: &str, dir: &str, rotate: &str) -> Result<(String, bool), String> {
    if let Some(path) = setting(view, cert)? {
        return Ok((path, true));
    }
    let dir = setting(view, dir)?.unwrap_or_else(|| DEFAULT_CERT_DIR.to_owned());
    let dir = dir.trim_end_matches('/');
    let truth = |flag: &str, key: Option<&str>| -> Result<bool, String> {
        let decl = view.process.component.flags.get(flag).ok_or_else(|| format!("--{flag} is not declared"))?;
        let s = layers::resolve(&view.process, flag, key, decl).map_err(|u| u.text())?;
        Ok(s.value.is_some_and(|v| super::settings::go_bool(&v.text()) == Some(true)))
    };
    let gate = match view.process.component.flags.contains_key("feature-gates") {
        true => truth("feature-gates", Some("RotateKubeletServerCertificate"))?,
        false => true,
    };
    Ok(match truth(rotate, None)? && gate {
        true => (format!("{dir}/kubelet-server-current.pem"), true),
        false => (format!("{dir}/kubelet.crt"), true),
    })
}

/// The directory of the file a setting names, if one does.
fn dir_of(view: &View<'_, '_>, flag: &str) -> Result<Option<String>, String> {
    Ok(setting(view, flag)?.and_then(|p| p.rsplit_once('/').map(|(d, _)| d.to_owned())).filter(|d| !d.is_empty()))
}

const MAX_TREE_DEPTH: usize = 3;

/// The entries of a listed tree matching `pattern`. A directory that could not be listed is an unknown: a
/// tree checked in part would pass on the files it never saw. A missing root is nothing to check.
/// What of a tree a place takes.
#[derive(Debug, Clone, Copy)]
struct Shape<'a> {
    pattern: &'a str,
    with_root: bool,
    dirs: bool,
    /// The process names the tree (a flag's directory), rather than it being a default place.
    named: bool,
}

fn tree(dir: &str, shape: Shape<'_>, files: &FileSet, depth: usize, out: &mut Vec<Item>, note: Option<String>) {
    if shape.with_root && depth == 0 {
        out.push(Item::Path { path: dir.to_owned(), named: false, note: note.clone() });
    }
    let names = match files.get(dir) {
        Some(Entry::Found { names: Some(names), .. }) => names,
        Some(Entry::Problem(Problem::Missing)) if depth == 0 => return,
        // A default tree a hand-made snapshot leaves out is taken as absent, as a default file is: the root goes to
        // the judgement, which says so in the evidence.
        Some(Entry::Problem(Problem::NotInSnapshot)) if depth == 0 && !shape.named => {
            if !shape.with_root {
                out.push(Item::Path { path: dir.to_owned(), named: false, note });
            }
            return;
        }
        // A file where a directory was expected: nothing under it.
        Some(Entry::Found { meta, .. }) if meta.kind != Kind::Dir => return,
        Some(Entry::Problem(p)) => {
            out.push(Item::Unknown(match note {
                Some(n) if depth == 0 => n,
                _ => format!("{dir} could not be listed ({})", problem_text(p)),
            }));
            return;
        }
        _ => {
            out.push(Item::Unknown(format!("{dir} was not listed")));
            return;
        }
    };
    let mut names: Vec<&String> = names.iter().collect();
    names.sort();
    for name in names {
        let path = format!("{dir}/{name}");
        let entry = files.get(&path);
        let is_dir = entry.and_then(Entry::meta).is_some_and(|m| m.kind == Kind::Dir);
        if layers::glob(shape.pattern, name) && (!is_dir || shape.dirs) {
            out.push(Item::Path { path: path.clone(), named: false, note: None });
        } else if depth < MAX_TREE_DEPTH {
            // An entry whose kind is unknown (a subdirectory the audit login may not list answers `denied` for
            // its path) may be a directory holding files the pattern matches: unknown, not skipped, or the
            // tree would pass on the files it saw (/etc/kubernetes/pki/etcd root-only: its keys unseen).
            match entry {
                Some(Entry::Problem(Problem::Missing)) => {}
                Some(Entry::Problem(p)) => {
                    out.push(Item::Unknown(format!("{path} could not be listed ({})", problem_text(p))))
                }
                None => out.push(Item::Unknown(format!("{path} was not read"))),
                Some(Entry::Found { .. }) => {}
            }
        }
        if is_dir && depth < MAX_TREE_DEPTH {
            tree(&path, shape, files, depth + 1, out, None);
        }
    }
}

/// The paths of a certificate target for the process, as judged (a path that could not be known is left out:
/// the cluster rules find no certificate of that role on the host and say so).
pub fn certificate_paths(target: &Target, view: &View<'_, '_>, files: &FileSet) -> Vec<String> {
    let items = judged_paths(target, view, files, view.others);
    items
        .iter()
        .filter_map(|i| match i {
            Item::Path { path, .. } => Some(path.clone()),
            Item::Unknown(_) => None,
        })
        .collect()
}

/// The requests a target needs: a stat of each path, a listing of each tree (and of its subdirectories as
/// they appear). Defaults not yet known to be overridden are asked for at once (see [`Mode::Speculate`]).
/// `listed` holds the trees walked for this set already, each with the least depth it was walked from (targets
/// share them: four PKI rules, one tree).
pub fn requests(
    target: &Target,
    view: &View<'_, '_>,
    files: &FileSet,
    others: &Others<'_>,
    out: &mut Vec<Request>,
    listed: &mut std::collections::HashMap<String, usize>,
) {
    if target.static_pod && view.embedded_in.is_some() {
        return;
    }
    let viewer = view.viewer;
    for place in &target.at {
        match place {
            Place::Tree { dir, .. } => list_tree(dir.trim_end_matches('/'), files, 0, out, listed),
            Place::TreeOf { flag, .. } => {
                if let Ok(Some(dir)) = dir_of(view, flag) {
                    let l = viewer.locate(files, &dir);
                    match l.entry {
                        None => out.extend(viewer.requests(&dir, Want::List)),
                        Some(_) => list_tree(&l.at, files, 0, out, listed),
                    }
                    // The subdirectories the process's own flags point into, at once: the API server's
                    // --etcd-cafile names /etc/kubernetes/pki/etcd, which would otherwise wait for the listing.
                    for sub in flag_dirs_under(view, &dir) {
                        out.extend(viewer.requests(&sub, Want::List));
                    }
                }
            }
            Place::Unit { default } => {
                out.push(Request::read(format!("/proc/{}/cgroup", viewer.pid)));
                // Not in a service (a container, a shell): no unit file starts it.
                let Some(unit) = unit_or(files, viewer.pid, default) else { continue };
                for dir in UNIT_DIRS {
                    let file = format!("{dir}/{unit}");
                    out.extend(viewer.requests(&file, Want::Stat));
                    let d = format!("{file}.d");
                    let l = viewer.locate(files, &d);
                    match l.entry {
                        None => out.extend(viewer.requests(&d, Want::List)),
                        Some(_) => list_tree(&l.at, files, 0, out, listed),
                    }
                }
            }
            _ => {}
        }
    }
    // What is known so far, and what the defaults would be where it is not: a default asked for in the first
    // batch is answered by the time the file that decides has been read.
    // Speculating differs from judging only where a setting is still unknown.
    let judged = judged_paths(target, view, files, others);
    let speculated = match judged.iter().any(|i| matches!(i, Item::Unknown(_))) {
        true => paths(target, view, files, others, Mode::Speculate),
        false => Vec::new(),
    };
    for item in judged.iter().chain(&speculated) {
        if let Item::Path { path, named, .. } = item {
            // A certificate is read; of a file that holds its key too, only the certificates before the key.
            let want = match (target.certificate.is_some(), holds_key(path)) {
                (true, false) => Want::Read,
                (true, true) => Want::Certs,
                (false, _) => Want::Stat,
            };
            // A named path not found on the host yet: where the process sees it too.
            match *named && viewer.container.is_some() && !path.starts_with("/proc/") {
                true => out.extend(viewer.requests(path, want).into_iter().filter(|r| !files.answers(r))),
                // Every round derives every path again: only what is still unanswered is asked (planning was
                // a tenth of a scan's CPU, most of it merging requests answered rounds before).
                false if files.answered(path, want) => {}
                false => out.push(Request { path: path.clone(), want }),
            }
        }
    }
}

/// Directories under `root` that the process's path-valued flags name files in (`/etc/kubernetes/pki/etcd`
/// from `--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt`).
fn flag_dirs_under(view: &View<'_, '_>, root: &str) -> Vec<String> {
    let prefix = format!("{}/", root.trim_end_matches('/'));
    let mut dirs: Vec<String> = view
        .process
        .flags
        .flags
        .iter()
        .filter_map(|f| f.value)
        .filter(|v| v.starts_with(&prefix))
        .filter_map(|v| v.rsplit_once('/').map(|(d, _)| d.to_owned()))
        .filter(|d| d.len() > prefix.len() && !d.contains("/.."))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// A tree's listings and its entries' stats, those not answered yet; once per tree (see `listed`), unless it
/// is reached again nearer its root, where the depth limit lets the walk go further.
fn list_tree(
    dir: &str,
    files: &FileSet,
    depth: usize,
    out: &mut Vec<Request>,
    listed: &mut std::collections::HashMap<String, usize>,
) {
    match listed.get(dir) {
        Some(&walked) if walked <= depth => return,
        _ => {
            listed.insert(dir.to_owned(), depth);
        }
    }
    let Some(Entry::Found { names: Some(names), .. }) = files.get(dir) else {
        if !files.answered(dir, Want::List) {
            out.push(Request::list(dir));
        }
        return;
    };
    for name in names {
        let path = format!("{dir}/{name}");
        match files.get(&path) {
            None => out.push(Request::stat(path)),
            Some(e) if depth < MAX_TREE_DEPTH && e.meta().is_some_and(|m| m.kind == Kind::Dir) => {
                list_tree(&path, files, depth + 1, out, listed)
            }
            Some(_) => {}
        }
    }
}

/// `-rw-------` for permission bits and a kind.
pub fn mode_text(kind: Kind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        Kind::Dir => 'd',
        Kind::Symlink => 'l',
        Kind::File => '-',
        Kind::Other => '?',
    });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// The host's users and groups from its /etc/passwd and /etc/group, as read; `Err` says which could not be.
/// The host's users and groups from its /etc/passwd and /etc/group, or why they are unknown: parsed once per
/// set, for the file rules and for naming owners in what the store keeps.
pub fn host_accounts(files: &FileSet) -> &Result<Accounts, String> {
    files.accounts(accounts)
}

/// The host's accounts from its /etc/passwd and /etc/group, or why they are unknown ([`FileSet::accounts`] keeps
/// them).
fn accounts(files: &FileSet) -> Result<Accounts, String> {
    let content = |path: &str| match files.get(path) {
        None => Err(format!("{path} was not read")),
        Some(Entry::Problem(p)) => Err(format!("{path} could not be read ({})", problem_text(p))),
        Some(e) => e.content().map(|c| c.bytes.as_slice()).ok_or_else(|| format!("{path} has no contents")),
    };
    let (passwd, group) = (content("/etc/passwd")?, content("/etc/group")?);
    Accounts::parse(Some(passwd), Some(group)).map_err(|e| e.to_string())
}

pub(crate) fn problem_text(p: &Problem) -> String {
    match p {
        Problem::Missing => "it does not exist".into(),
        // With the fix, as a config file's layer says it (layers::unusable): the README promises the path and
        // the fix for every file a rule could not see.
        Problem::Denied => "permission denied: give the audit login read access (group read or an ACL), or set \
                            sftp_command to a privileged SFTP server (README: Files over SFTP)"
            .into(),
        Problem::TooLarge { size, limit, .. } => format!("{size} bytes, over the {limit}-byte limit"),
        Problem::OverBudget { what } => format!("the host's file budget ran out: {what}"),
        Problem::Unavailable { reason } => reason.clone(),
        Problem::Failed { message } => message.clone(),
        Problem::NotInSnapshot => "not in the snapshot: add it to the tar".into(),
    }
}

impl FileCheck {
    /// Judges the target's files for one process; `true` beside the evidence when the check does not apply
    /// (no such file is in use here).
    pub fn eval(
        &self,
        target: &Target,
        view: &View<'_, '_>,
        files: &FileSet,
        others: &Others<'_>,
    ) -> (FlagEvidence, bool) {
        let requirement = self.requirement();
        let evidence =
            |passed: Option<bool>, value: Option<String>, occurrences: Vec<String>, why: String| FlagEvidence {
                flag: target.id.clone(),
                key: None,
                requirement: requirement.clone(),
                value,
                occurrences,
                source: Source::File,
                passed,
                why,
            };
        if target.static_pod
            && let Some(program) = view.embedded_in
        {
            let why = format!("it runs inside `{program}`, not from a pod specification: there is no {}", target.what);
            return (evidence(Some(true), None, Vec::new(), why), true);
        }
        let items = judged_paths(target, view, files, others);
        if items.is_empty() {
            let why = format!("no {} is in use here: nothing to check", target.what);
            return (evidence(Some(true), None, Vec::new(), why), true);
        }
        if files.not_read {
            let why = format!(
                "{} was not read: this judgement has only a process table (judge a snapshot of the host, or scan it)",
                target.what
            );
            return (evidence(None, None, Vec::new(), why), false);
        }
        let accounts = host_accounts(files);
        let (mut bad, mut unknown, mut good, mut absent) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut checked = Vec::new();
        for item in items.iter() {
            let (path, named, note) = match item {
                Item::Unknown(why) => {
                    unknown.push(format!("{}: {why}", target.what));
                    continue;
                }
                Item::Path { path, named, note } => (path, *named, note),
            };
            checked.push(path.as_str());
            let with_note = |s: String| match note {
                Some(n) => format!("{s} ({n})"),
                None => s,
            };
            match files.get(path) {
                None => unknown.push(format!("{path} was not read")),
                // A file too large to read still has its stat: its mode and owner are judged on it.
                Some(Entry::Found { meta, .. } | Entry::Problem(Problem::TooLarge { meta: Some(meta), .. })) => {
                    let shown = |owner: &str| format!("{} {owner} {path}", mode_text(meta.kind, meta.mode));
                    match self.op {
                        FileOp::Mode => {
                            let numeric = format!("{:o}", meta.mode);
                            // With the owner's names when the host's account files were read.
                            let owner = match &accounts {
                                Ok(a) => a.owner(meta.uid, meta.gid),
                                Err(_) => format!("{}:{}", meta.uid, meta.gid),
                            };
                            let line = shown(&owner);
                            if meta.mode & !self.mask == 0 {
                                good.push(with_note(format!("{line} ({numeric})")));
                            } else {
                                bad.push(with_note(format!(
                                    "{line} ({numeric}, allows {:o} beyond {})",
                                    meta.mode & !self.mask,
                                    self.value
                                )));
                            }
                        }
                        FileOp::Owner => match &accounts {
                            Err(e) => unknown.push(format!(
                                "{path} is owned by {}:{}, but the names are unknown: {e}",
                                meta.uid, meta.gid
                            )),
                            Ok(a) => {
                                let u =
                                    a.name_of_uid(meta.uid).map_or_else(|| format!("uid {}", meta.uid), str::to_owned);
                                let g =
                                    a.name_of_gid(meta.gid).map_or_else(|| format!("gid {}", meta.gid), str::to_owned);
                                let owner = format!("{u}:{g}");
                                let line = shown(&owner);
                                if owner == self.value {
                                    good.push(with_note(line));
                                } else {
                                    let (want_user, want_group) = self.value.split_once(':').unwrap_or_default();
                                    let premise = missing_names(a, want_user, want_group);
                                    bad.push(with_note(match premise {
                                        Some(note) => format!("{line}; required: {}: {note}", self.value),
                                        None => format!("{line}; required: {}", self.value),
                                    }));
                                }
                            }
                        },
                    }
                }
                Some(Entry::Problem(p)) => match p {
                    Problem::Missing if !named => absent.push(path.clone()),
                    // A default place a hand-made snapshot leaves out is taken as absent, and said so: only a path
                    // the process names must be there.
                    Problem::NotInSnapshot if !named => {
                        absent.push(format!("{path} (not in the snapshot, taken as absent)"))
                    }
                    Problem::Missing => {
                        unknown.push(with_note(format!("the process names {path}, which does not exist")))
                    }
                    _ if note.is_some() && named => unknown.push(note.clone().unwrap_or_default()),
                    p => unknown.push(format!("{path}: {}", problem_text(p))),
                },
            }
        }
        let value = (!checked.is_empty()).then(|| checked.join(","));
        let occurrences: Vec<String> = good.iter().chain(&bad).cloned().collect();
        if !bad.is_empty() {
            let why = format!("{}; required: {}", bad.join("; "), self.describe());
            return (evidence(Some(false), value, occurrences, why), false);
        }
        if !unknown.is_empty() {
            return (evidence(None, value, occurrences, unknown.join("; ")), false);
        }
        if good.is_empty() {
            let why = match absent.is_empty() {
                true => format!("no {} is in use here: nothing to check", target.what),
                false => format!("no {} here (none at {}): nothing to check", target.what, absent.join(", ")),
            };
            return (evidence(Some(true), value, occurrences, why), true);
        }
        (evidence(Some(true), value, occurrences, good.join("; ")), false)
    }

    fn describe(&self) -> String {
        match self.op {
            FileOp::Mode => format!("mode {} or stricter", self.value),
            FileOp::Owner => format!("owner {}", self.value),
        }
    }
}

/// When the required owner does not exist on the host (kubeadm has no `etcd` user for CIS 1.1.12), CIS's
/// premise does not hold; the verdict stays CIS's, and the evidence says so.
fn missing_names(accounts: &Accounts, user: &str, group: &str) -> Option<String> {
    let mut missing = Vec::new();
    if accounts.uid_of(user).is_none() {
        missing.push(format!("no user {user} in /etc/passwd"));
    }
    if accounts.gid_of(group).is_none() {
        missing.push(format!("no group {group} in /etc/group"));
    }
    (!missing.is_empty()).then(|| {
        format!(
            "{}, so CIS's premise does not hold on this host (kubeadm runs etcd as root); the check fails as CIS \
             words it",
            missing.join(" and ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_like_ls() {
        assert_eq!(mode_text(Kind::File, 0o600), "-rw-------");
        assert_eq!(mode_text(Kind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_text(Kind::File, 0o644), "-rw-r--r--");
    }

    #[test]
    fn checks_validate_their_values() {
        let new = |op, v: &str| FileCheck::new(0, "t".into(), op, v.into());
        assert_eq!(new(FileOp::Mode, "600").unwrap().mask, 0o600);
        assert!(new(FileOp::Mode, "rw").is_err());
        assert!(new(FileOp::Mode, "99999").is_err());
        assert!(new(FileOp::Owner, "root").is_err());
        assert!(new(FileOp::Owner, "root:root").is_ok());
    }
}
