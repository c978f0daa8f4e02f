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
use crate::files::{Entry, FileSet, Kind, Problem, Request};

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
    /// Every entry under a directory (recursively, a few levels) whose name matches `pattern`; the directory
    /// itself too when `pattern` is `*`.
    Tree { dir: String, pattern: String },
    /// The same, under the directory of the file a setting of the component names (the API server's
    /// `--client-ca-file` is in its PKI directory: /etc/kubernetes/pki, RKE2's /var/lib/rancher/rke2/server/tls).
    TreeOf { flag: String, pattern: String },
}

/// A file (or set of files) CIS checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    /// Index into `RuleSet::components`.
    pub component: usize,
    /// For people: `the API server's pod specification file`.
    pub what: String,
    pub at: Vec<Place>,
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

/// The paths of a target for one process, each with whether the process names it (so it must exist).
fn paths(
    target: &Target,
    view: &View<'_, '_>,
    files: &FileSet,
    others: &Others<'_>,
) -> Result<Vec<(String, bool)>, String> {
    let mut out = Vec::new();
    for place in &target.at {
        match place {
            Place::Path(p) => out.push((p.clone(), false)),
            Place::Setting { flag, default } => {
                let decl = view
                    .process
                    .component
                    .flags
                    .get(flag.as_str())
                    .ok_or_else(|| format!("--{flag} is not declared"))?;
                let s = layers::resolve(&view.process, flag, None, decl)
                    .map_err(|u| format!("the path is in --{flag}, set by {}", u.text()))?;
                match (s.from.is_given(), s.value.map(|v| v.text()).filter(|v| !v.is_empty()), default) {
                    (true, Some(path), _) => out.push((path, true)),
                    (_, _, Some(d)) => out.push((d.clone(), false)),
                    _ => {}
                }
            }
            Place::In { component, flag, default, name } => match others(component, flag) {
                Some(Err(why)) => return Err(why),
                Some(Ok(Some(dir))) => out.push((format!("{}/{name}", dir.trim_end_matches('/')), false)),
                _ => {
                    if let Some(d) = default {
                        out.push((format!("{}/{name}", d.trim_end_matches('/')), false));
                    }
                }
            },
            Place::Tree { dir, pattern } => tree(dir.trim_end_matches('/'), pattern, files, 0, &mut out),
            Place::TreeOf { flag, pattern } => {
                if let Some(dir) = dir_of(view, flag)? {
                    tree(&dir, pattern, files, 0, &mut out);
                }
            }
        }
    }
    Ok(out)
}

/// The directory of the file a setting names, if one does.
fn dir_of(view: &View<'_, '_>, flag: &str) -> Result<Option<String>, String> {
    let decl = view.process.component.flags.get(flag).ok_or_else(|| format!("--{flag} is not declared"))?;
    let s = layers::resolve(&view.process, flag, None, decl)
        .map_err(|u| format!("the directory is that of --{flag}, set by {}", u.text()))?;
    Ok(s.value.map(|v| v.text()).and_then(|p| p.rsplit_once('/').map(|(d, _)| d.to_owned())).filter(|d| !d.is_empty()))
}

const MAX_TREE_DEPTH: usize = 3;

fn tree(dir: &str, pattern: &str, files: &FileSet, depth: usize, out: &mut Vec<(String, bool)>) {
    if pattern == "*" && depth == 0 {
        out.push((dir.to_owned(), false));
    }
    let Some(Entry::Found { names: Some(names), .. }) = files.get(dir) else { return };
    let mut names: Vec<&String> = names.iter().collect();
    names.sort();
    for name in names {
        let path = format!("{dir}/{name}");
        let is_dir = files.get(&path).and_then(Entry::meta).is_some_and(|m| m.kind == Kind::Dir);
        if layers::glob(pattern, name) || (pattern == "*" && is_dir) {
            out.push((path.clone(), false));
        }
        if is_dir && depth < MAX_TREE_DEPTH {
            tree(&path, pattern, files, depth + 1, out);
        }
    }
}

/// The requests a target needs: a stat of each path (a listing of each tree).
pub fn requests(target: &Target, view: &View<'_, '_>, files: &FileSet, others: &Others<'_>, out: &mut Vec<Request>) {
    for place in &target.at {
        match place {
            Place::Tree { dir, .. } => list_tree(dir.trim_end_matches('/'), files, 0, out),
            Place::TreeOf { flag, .. } => {
                if let Ok(Some(dir)) = dir_of(view, flag) {
                    list_tree(&dir, files, 0, out);
                }
            }
            _ => {}
        }
    }
    if let Ok(paths) = paths(target, view, files, others) {
        out.extend(paths.into_iter().map(|(p, _)| Request::stat(p)));
    }
}

fn list_tree(dir: &str, files: &FileSet, depth: usize, out: &mut Vec<Request>) {
    out.push(Request::list(dir));
    let Some(Entry::Found { names: Some(names), .. }) = files.get(dir) else { return };
    for name in names {
        let path = format!("{dir}/{name}");
        out.push(Request::stat(&path));
        if depth < MAX_TREE_DEPTH && files.get(&path).and_then(Entry::meta).is_some_and(|m| m.kind == Kind::Dir) {
            list_tree(&path, files, depth + 1, out);
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

/// Names from the host's /etc/passwd or /etc/group: `id → name` of the first line with that id.
fn name_of(files: &FileSet, path: &str, id: u32) -> Result<Option<String>, String> {
    let content = match files.get(path) {
        None => return Err(format!("{path} was not read")),
        Some(Entry::Problem(p)) => return Err(format!("{path} could not be read ({})", problem_text(p))),
        Some(e) => e.content().ok_or_else(|| format!("{path} has no contents"))?,
    };
    let text = String::from_utf8_lossy(&content.bytes);
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let _ = f.next()?;
            let n: u32 = f.next()?.parse().ok()?;
            (n == id && !name.is_empty()).then(|| name.to_owned())
        })
        .next())
}

fn problem_text(p: &Problem) -> String {
    match p {
        Problem::Missing => "it does not exist".into(),
        Problem::Denied => "permission denied".into(),
        Problem::TooLarge { size, limit } => format!("{size} bytes, over the {limit}-byte limit"),
        Problem::OverBudget { what } => format!("the host's file budget ran out: {what}"),
        Problem::Unavailable { reason } => reason.clone(),
        Problem::Failed { message } => message.clone(),
    }
}

impl FileCheck {
    /// Judges the target's files for one process.
    pub fn eval(&self, target: &Target, view: &View<'_, '_>, files: &FileSet, others: &Others<'_>) -> FlagEvidence {
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
        if files.not_read {
            return evidence(
                None,
                None,
                Vec::new(),
                format!(
                    "{} was not read: this judgement has only a process table (judge a snapshot of the host, or scan it)",
                    target.what
                ),
            );
        }
        let paths = match paths(target, view, files, others) {
            Ok(p) => p,
            Err(why) => return evidence(None, None, Vec::new(), format!("{}: {why}", target.what)),
        };
        if paths.is_empty() {
            return evidence(
                Some(true),
                None,
                Vec::new(),
                format!("no {} is in use here: nothing to check", target.what),
            );
        }
        let (mut bad, mut unknown, mut good, mut absent) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (path, named) in &paths {
            match files.get(path) {
                None => unknown.push(format!("{path} was not read")),
                Some(Entry::Problem(Problem::Missing)) if !named => absent.push(path.clone()),
                Some(Entry::Problem(Problem::Missing)) => {
                    unknown.push(format!("the process names {path}, which does not exist"))
                }
                Some(Entry::Problem(p)) => unknown.push(format!("{path}: {}", problem_text(p))),
                Some(Entry::Found { meta, .. }) => {
                    let shown = |owner: &str| format!("{} {owner} {path}", mode_text(meta.kind, meta.mode));
                    match self.op {
                        FileOp::Mode => {
                            let numeric = format!("{:o}", meta.mode);
                            // With the owner's names when the host's account files were read.
                            let owner =
                                match (name_of(files, "/etc/passwd", meta.uid), name_of(files, "/etc/group", meta.gid))
                                {
                                    (Ok(Some(u)), Ok(Some(g))) => format!("{u}:{g}"),
                                    _ => format!("{}:{}", meta.uid, meta.gid),
                                };
                            let line = shown(&owner);
                            if meta.mode & !self.mask == 0 {
                                good.push(format!("{line} ({numeric})"));
                            } else {
                                bad.push(format!(
                                    "{line} ({numeric}, allows {:o} beyond {})",
                                    meta.mode & !self.mask,
                                    self.value
                                ));
                            }
                        }
                        FileOp::Owner => {
                            let user = name_of(files, "/etc/passwd", meta.uid);
                            let group = name_of(files, "/etc/group", meta.gid);
                            match (user, group) {
                                (Err(e), _) | (_, Err(e)) => unknown.push(format!(
                                    "{path} is owned by {}:{}, but the names are unknown: {e}",
                                    meta.uid, meta.gid
                                )),
                                (Ok(u), Ok(g)) => {
                                    let u = u.unwrap_or_else(|| format!("uid {}", meta.uid));
                                    let g = g.unwrap_or_else(|| format!("gid {}", meta.gid));
                                    let owner = format!("{u}:{g}");
                                    let line = shown(&owner);
                                    if owner == self.value {
                                        good.push(line);
                                    } else {
                                        let (want_user, want_group) = self.value.split_once(':').unwrap_or_default();
                                        let premise = missing_names(files, want_user, want_group);
                                        bad.push(match premise {
                                            Some(note) => format!("{line}; required: {}: {note}", self.value),
                                            None => format!("{line}; required: {}", self.value),
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let value = Some(paths.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(","));
        let occurrences: Vec<String> = good.iter().chain(&bad).cloned().collect();
        if !bad.is_empty() {
            return evidence(
                Some(false),
                value,
                occurrences,
                format!("{}; required: {}", bad.join("; "), self.describe()),
            );
        }
        if !unknown.is_empty() {
            return evidence(None, value, occurrences, unknown.join("; "));
        }
        if good.is_empty() {
            return evidence(
                Some(true),
                value,
                occurrences,
                format!("no file at {}: nothing to protect", absent.join(", ")),
            );
        }
        evidence(Some(true), value, occurrences, good.join("; "))
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
fn missing_names(files: &FileSet, user: &str, group: &str) -> Option<String> {
    let has = |path: &str, name: &str| {
        files
            .get(path)
            .and_then(Entry::content)
            .is_some_and(|c| String::from_utf8_lossy(&c.bytes).lines().any(|l| l.split(':').next() == Some(name)))
    };
    let missing: Vec<String> = [("user", "/etc/passwd", user), ("group", "/etc/group", group)]
        .into_iter()
        .filter(|(_, path, name)| !has(path, name))
        .map(|(what, path, name)| format!("no {what} {name} in {path}"))
        .collect();
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
