//! A simulated node's file tree, held in memory: path → (kind, mode, owner, contents), and the permission rules
//! a Linux kernel applies when a user stats, opens or lists a path in it.
//!
//! Owns: the profiles' file data (`src/sim/files/`: a TOML manifest per profile giving each path's kind, mode
//! and owner, and the files' contents beside it, embedded at build time), path resolution (`.`, `..`,
//! symlinks, search permission on every directory on the way), read and list permission for a login
//! ([`Identity`]), and the content faults ([`FileTree::for_behavior`]: a 2 MiB kubelet config, a YAML bomb).
//! Must not touch: SSH or SFTP (`sftp.rs` serves a tree), the scanner's code.
//!
//! A manifest (`src/sim/files/NAME.toml`, documented in `src/sim/files/SOURCES.md`) has `include`s (manifests
//! applied first), a `[node]` table and `[[entry]]`s. An entry for a path already present changes only what it
//! names (a mode, an owner, new contents), so a hardened node can be "kubeadm's files, but these modes".
//! Directories a manifest does not list are created as root:root 0755, as on a stock distribution.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::Deserialize;
use thiserror::Error;

use super::Behavior;

/// The uid and gid of the simulator's login when the node's `/etc/passwd` does not name the user who logged
/// in (the profiles' passwd files all have `audit`, uid 1000).
pub const LOGIN_UID: u32 = 1000;

/// Modification time of every simulated file: 2024-11-27 10:00:00 UTC, the captures' boot day.
const MTIME: u32 = 1_732_701_600;

/// Linux's limit on symlinks followed in one lookup (`MAXSYMLINKS`); past it the lookup fails with ELOOP.
const MAX_SYMLINKS: usize = 40;

/// Size of the [`Behavior::HugeFile`] kubelet config: twice the 1 MiB a scanner should read of a file.
pub const HUGE_FILE_BYTES: usize = 2 << 20;

/// The path a content fault replaces on a profile that names no kubelet config.
const DEFAULT_KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";

/// What kind of inode a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A symbolic link and its target, as `readlink` gives it (absolute or relative to the link's directory).
    Symlink(String),
}

/// One path of a tree.
#[derive(Debug, Clone)]
pub struct Inode {
    pub kind: Kind,
    /// Permission bits (`0o600`), without the file type.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub data: Bytes,
    /// Stat reports size 0, as for `/proc/PID/environ`, though a read serves the bytes.
    pub proc: bool,
}

impl Inode {
    /// The size `stat` reports.
    pub fn size(&self) -> u64 {
        if self.proc { 0 } else { self.data.len() as u64 }
    }

    /// The file-type bits of `st_mode` (`S_IFREG`, `S_IFDIR`, `S_IFLNK`).
    pub fn type_bits(&self) -> u32 {
        match self.kind {
            Kind::File => 0o100_000,
            Kind::Dir => 0o040_000,
            Kind::Symlink(_) => 0o120_000,
        }
    }

    pub fn mtime(&self) -> u32 {
        MTIME
    }
}

/// Who asks: the login's uid and every group it is in. Root may read and search everything, as with
/// `CAP_DAC_OVERRIDE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gids: Vec<u32>,
}

impl Identity {
    pub fn root() -> Identity {
        Identity { uid: 0, gids: vec![0] }
    }

    /// The login `user` as the node's own `/etc/passwd` and `/etc/group` define it (primary group and every
    /// group listing it), or uid and gid [`LOGIN_UID`] when passwd does not name it.
    pub fn login(tree: &FileTree, user: &str) -> Identity {
        let entry = tree.records("/etc/passwd").into_iter().find(|f| f.len() >= 4 && f[0] == user);
        let Some((uid, gid)) = entry.and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?))) else {
            return Identity { uid: LOGIN_UID, gids: vec![LOGIN_UID] };
        };
        let mut gids = vec![gid];
        for f in tree.records("/etc/group") {
            if f.len() >= 4
                && f[3].split(',').any(|m| m == user)
                && let Ok(g) = f[2].parse()
                && !gids.contains(&g)
            {
                gids.push(g);
            }
        }
        Identity { uid, gids }
    }

    /// Whether `inode`'s mode grants this identity `bit` (4 read, 2 write, 1 search/execute): the owner's bits
    /// for the owner, else the group's for a member, else the others'. Root reads and searches anything.
    pub fn may(&self, inode: &Inode, bit: u32) -> bool {
        if self.uid == 0 && bit != 1 {
            return true;
        }
        if self.uid == 0 {
            // Root searches any directory; it executes a file only if some x bit is set.
            return inode.kind == Kind::Dir || inode.mode & 0o111 != 0;
        }
        let shift = if inode.uid == self.uid {
            6
        } else if self.gids.contains(&inode.gid) {
            3
        } else {
            0
        };
        (inode.mode >> shift) & bit != 0
    }
}

/// Why a lookup failed, as the kernel's errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    /// ENOENT
    NoEntry,
    /// EACCES: a directory on the way lacks search permission, or the file lacks the permission asked for.
    Access,
    /// ENOTDIR: a component on the way is not a directory.
    NotDir,
    /// ELOOP: too many symlinks.
    Loop,
}

/// Why a manifest could not be loaded (a bug in the embedded data: a unit test loads every profile's).
#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("no embedded file {0} under src/sim/files (add it to DATA in src/sim/tree.rs)")]
    Missing(String),
    #[error("src/sim/files/{file}: {message}")]
    Invalid { file: String, message: String },
}

/// A node's files.
#[derive(Debug, Default)]
pub struct FileTree {
    entries: BTreeMap<String, Inode>,
    kubelet_config: Option<String>,
    /// The kubelet's serving certificate file and the generator that made it (see [`super::pki`]).
    kubelet_serving: Option<(String, String)>,
    /// The derived trees of the content faults, built once per tree and shared by every node with that fault.
    huge: OnceLock<Arc<FileTree>>,
    bomb: OnceLock<Arc<FileTree>>,
    expiring: OnceLock<Arc<FileTree>>,
    expired: OnceLock<Arc<FileTree>>,
}

impl Clone for FileTree {
    fn clone(&self) -> FileTree {
        FileTree {
            entries: self.entries.clone(),
            kubelet_config: self.kubelet_config.clone(),
            kubelet_serving: self.kubelet_serving.clone(),
            ..FileTree::default()
        }
    }
}

impl FileTree {
    /// The tree of an embedded manifest (`src/sim/files/NAME`).
    pub fn load(manifest: &str) -> Result<FileTree, ManifestError> {
        let mut tree = FileTree::default();
        tree.insert_dir("/", 0o755, 0, 0);
        tree.apply(manifest, 0)?;
        Ok(tree)
    }

    /// A tree with nothing but a base system's `/etc/passwd` and `/etc/group`: what a node serving a table
    /// that is no profile's capture has.
    pub fn minimal() -> FileTree {
        FileTree::load("common/base.toml").expect("src/sim/files/common/base.toml loads (unit-tested)")
    }

    /// The inode at exactly `path` (no resolution: for tests and for building trees).
    pub fn get(&self, path: &str) -> Option<&Inode> {
        self.entries.get(path)
    }

    /// The kubelet's serving certificate file, when the profile has one (what the certificate faults age).
    pub fn kubelet_serving(&self) -> Option<&str> {
        self.kubelet_serving.as_ref().map(|(p, _)| p.as_str())
    }

    /// The colon-separated records of an account database in the tree (`/etc/passwd`, `/etc/group`).
    pub fn records(&self, path: &str) -> Vec<Vec<String>> {
        let Some(inode) = self.get(path) else { return Vec::new() };
        String::from_utf8_lossy(&inode.data).lines().map(|l| l.split(':').map(str::to_owned).collect()).collect()
    }

    /// Id → name from an account database (`/etc/passwd` for users, `/etc/group` for groups).
    pub fn names(&self, path: &str) -> std::collections::HashMap<u32, String> {
        self.records(path).into_iter().filter_map(|f| Some((f.get(2)?.parse().ok()?, f.first()?.clone()))).collect()
    }

    /// Every path of the tree, in lexical order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The kubelet configuration file the profile's kubelet reads (its `--config`, or the first drop-in of
    /// its `--config-dir`), which the content faults replace.
    pub fn kubelet_config(&self) -> Option<&str> {
        self.kubelet_config.as_deref()
    }

    /// Adds or replaces a file (parents created as root:root 0755 directories when missing).
    pub fn insert_file(&mut self, path: &str, mode: u32, uid: u32, gid: u32, data: impl Into<Bytes>) {
        self.ensure_parents(path);
        self.entries
            .insert(path.to_owned(), Inode { kind: Kind::File, mode, uid, gid, data: data.into(), proc: false });
    }

    /// Adds or replaces a directory (parents created as root:root 0755 directories when missing).
    pub fn insert_dir(&mut self, path: &str, mode: u32, uid: u32, gid: u32) {
        self.ensure_parents(path);
        self.entries
            .insert(path.to_owned(), Inode { kind: Kind::Dir, mode, uid, gid, data: Bytes::new(), proc: false });
    }

    fn ensure_parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(i) = path[end + 1..].find('/') {
            end += i + 1;
            self.entries.entry(path[..end].to_owned()).or_insert(Inode {
                kind: Kind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                data: Bytes::new(),
                proc: false,
            });
        }
        if path.len() > 1 && !self.entries.contains_key("/") {
            self.entries.insert(
                "/".into(),
                Inode { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, data: Bytes::new(), proc: false },
            );
        }
    }

    /// The tree a node with `behavior` serves: this one, or for a content fault a copy whose kubelet config is
    /// replaced (built once, then shared).
    pub fn for_behavior(self: &Arc<Self>, behavior: Behavior) -> Arc<FileTree> {
        let target = || self.kubelet_config.clone().unwrap_or_else(|| DEFAULT_KUBELET_CONFIG.to_owned());
        let derive = |data: Vec<u8>| {
            let mut tree = (**self).clone();
            let path = target();
            let (mode, uid, gid) = tree.get(&path).map(|i| (i.mode, i.uid, i.gid)).unwrap_or((0o644, 0, 0));
            tree.insert_file(&path, mode, uid, gid, data);
            Arc::new(tree)
        };
        // The kubelet's serving certificate made again, living `days` from now.
        let aged = |days: i64| {
            let Some((path, generator)) = &self.kubelet_serving else { return self.clone() };
            let mut tree = (**self).clone();
            let data = super::pki::generate(generator, path, days, || pem("EC PRIVATE KEY", &secret_bytes(path, 121)))
                .unwrap_or_default();
            let (mode, uid, gid) = tree.get(path).map(|i| (i.mode, i.uid, i.gid)).unwrap_or((0o644, 0, 0));
            tree.insert_file(path, mode, uid, gid, data);
            Arc::new(tree)
        };
        match behavior {
            Behavior::HugeFile => self.huge.get_or_init(|| derive(huge_config(self.get(&target())))).clone(),
            Behavior::YamlBomb => self.bomb.get_or_init(|| derive(yaml_bomb(self.get(&target())))).clone(),
            Behavior::CertExpiring => self.expiring.get_or_init(|| aged(super::pki::EXPIRING_DAYS)).clone(),
            Behavior::CertExpired => self.expired.get_or_init(|| aged(super::pki::EXPIRED_DAYS)).clone(),
            _ => self.clone(),
        }
    }

    /// Resolves `path` as the kernel's path walk does for `who`: every directory on the way must exist, be a
    /// directory and grant search permission; symlinks on the way (and at the end when `follow`) are followed.
    /// Returns the canonical path of what was found. `path` must be absolute.
    pub fn resolve(&self, path: &str, follow: bool, who: &Identity) -> Result<String, Errno> {
        let mut pending: Vec<String> = components(path).rev().map(str::to_owned).collect();
        let mut current: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(name) = pending.pop() {
            match name.as_str() {
                "." => continue,
                ".." => {
                    // `..` needs search permission on the directory it leaves, like any lookup.
                    self.searchable(&current, who)?;
                    current.pop();
                    continue;
                }
                _ => {}
            }
            let magic_root = name == "root"
                && current.len() == 2
                && current[0] == "proc"
                && current[1].bytes().all(|b| b.is_ascii_digit());
            // Every running process has a /proc/PID (dr-xr-xr-x): a manifest lists only those it gives files.
            if !magic_root || self.entries.contains_key(&join(&current, "")) {
                self.searchable(&current, who)?;
            }
            let next = join(&current, &name);
            if current.len() == 1
                && current[0] == "proc"
                && name.bytes().all(|b| b.is_ascii_digit())
                && !self.entries.contains_key(&next)
            {
                current.push(name);
                continue;
            }
            // `/proc/PID/root`: the process's root directory, a link only its own user or root may follow
            // (proc(5), ptrace access mode; every profile's control-plane process runs as root). A process in a
            // container has its files there (an entry under `/proc/PID/root/` in the manifest); any other's
            // root is the host's.
            if magic_root {
                if who.uid != 0 {
                    return Err(Errno::Access);
                }
                if !self.entries.contains_key(&next) {
                    current.clear();
                    continue;
                }
            }
            let inode = self.entries.get(&next).ok_or(Errno::NoEntry)?;
            match &inode.kind {
                Kind::Symlink(target) if follow || !pending.is_empty() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::Loop);
                    }
                    if target.starts_with('/') {
                        current.clear();
                    }
                    pending.extend(components(target).rev().map(str::to_owned));
                }
                _ => current.push(name),
            }
        }
        Ok(join(&current, ""))
    }

    /// Fails unless the directory `dir` (components from the root) may be searched by `who`.
    fn searchable(&self, dir: &[String], who: &Identity) -> Result<(), Errno> {
        let inode = self.entries.get(&join(dir, "")).ok_or(Errno::NoEntry)?;
        if inode.kind != Kind::Dir {
            return Err(Errno::NotDir);
        }
        if !who.may(inode, 1) { Err(Errno::Access) } else { Ok(()) }
    }

    /// The inode `path` resolves to for `who`.
    pub fn lookup(&self, path: &str, follow: bool, who: &Identity) -> Result<(String, &Inode), Errno> {
        let canonical = self.resolve(path, follow, who)?;
        let inode = self.entries.get(&canonical).ok_or(Errno::NoEntry)?;
        Ok((canonical, inode))
    }

    /// The names in directory `dir` (canonical) with their inodes, in the order a real filesystem's readdir
    /// returns them: `.` and `..` first, then by a hash of the name, as ext4's hashed directories do, so never
    /// lexical. (The kubelet sorts its `--config-dir` drop-ins itself; a client relying on the server's order
    /// is wrong on real hosts, and is wrong here too.)
    pub fn children(&self, dir: &str) -> Vec<(String, &Inode)> {
        let prefix = if dir == "/" { "/".to_owned() } else { format!("{dir}/") };
        let mut names: Vec<(String, &Inode)> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| p.len() > prefix.len() && !p[prefix.len()..].contains('/'))
            .map(|(p, i)| (p[prefix.len()..].to_owned(), i))
            .collect();
        names.sort_by_key(|(n, _)| fnv1a(n.as_bytes()));
        let mut out = Vec::with_capacity(names.len() + 2);
        if let Some(d) = self.entries.get(dir) {
            out.push((".".to_owned(), d));
        }
        let parent = match dir.rfind('/') {
            Some(0) | None => "/",
            Some(i) => &dir[..i],
        };
        if let Some(p) = self.entries.get(parent) {
            out.push(("..".to_owned(), p));
        }
        out.extend(names);
        out
    }

    fn apply(&mut self, name: &str, depth: usize) -> Result<(), ManifestError> {
        let invalid = |message: String| ManifestError::Invalid { file: name.to_owned(), message };
        if depth > 8 {
            return Err(invalid("includes nest more than 8 deep".into()));
        }
        let text = data(name)?;
        let text = std::str::from_utf8(text).map_err(|e| invalid(e.to_string()))?;
        let manifest: Manifest = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for include in &manifest.include {
            self.apply(include, depth + 1)?;
        }
        if let Some(path) = manifest.node.kubelet_config {
            self.kubelet_config = Some(path);
        }
        for spec in manifest.entry {
            self.apply_entry(spec).map_err(invalid)?;
        }
        Ok(())
    }

    fn apply_entry(&mut self, spec: EntrySpec) -> Result<(), String> {
        let path = spec.path.clone();
        if !path.starts_with('/') || path.contains("//") || (path.len() > 1 && path.ends_with('/')) {
            return Err(format!("{path:?}: paths are absolute and canonical"));
        }
        let contents = [
            spec.content.is_some(),
            spec.text.is_some(),
            spec.environ.is_some(),
            spec.generate.is_some(),
            spec.kubeconfig.is_some(),
        ];
        if contents.iter().filter(|c| **c).count() > 1 {
            return Err(format!("{path}: at most one of content, text, environ, generate, kubeconfig"));
        }
        let data: Option<Bytes> = if let Some(file) = &spec.content {
            Some(Bytes::from_static(data(file).map_err(|e| e.to_string())?))
        } else if let Some(text) = spec.text {
            Some(Bytes::from(text))
        } else if let Some(vars) = &spec.environ {
            // /proc/PID/environ: each VAR=value followed by a NUL.
            Some(Bytes::from(vars.iter().flat_map(|v| v.bytes().chain([0])).collect::<Vec<u8>>()))
        } else if let Some(generator) = &spec.generate {
            if super::pki::is_kubelet_serving(generator) {
                self.kubelet_serving = Some((path.clone(), generator.clone()));
            }
            Some(Bytes::from(generate(generator, &path)?))
        } else {
            spec.kubeconfig.as_ref().map(|kc| Bytes::from(kubeconfig(kc, &path)))
        };
        let kind = match spec.kind.as_deref() {
            None => None,
            Some("file") => Some(Kind::File),
            Some("dir") => Some(Kind::Dir),
            Some("symlink") => {
                Some(Kind::Symlink(spec.target.clone().ok_or_else(|| format!("{path}: a symlink needs a target"))?))
            }
            Some(other) => return Err(format!("{path}: unknown kind {other:?} (file, dir, symlink)")),
        };
        if spec.mode.is_some_and(|m| m > 0o7777) {
            return Err(format!("{path}: mode {:o} has bits beyond 7777", spec.mode.unwrap_or(0)));
        }
        match self.entries.get_mut(&path) {
            Some(inode) => {
                if let Some(kind) = kind {
                    inode.kind = kind;
                }
                if let Some(data) = data {
                    inode.data = data;
                }
                inode.mode = spec.mode.unwrap_or(inode.mode);
                inode.uid = spec.uid.unwrap_or(inode.uid);
                inode.gid = spec.gid.unwrap_or(inode.gid);
                inode.proc = spec.proc.unwrap_or(inode.proc);
            }
            None => {
                let kind = kind.unwrap_or(Kind::File);
                let default_mode = match kind {
                    Kind::File => 0o644,
                    Kind::Dir => 0o755,
                    Kind::Symlink(_) => 0o777,
                };
                if kind == Kind::File && data.is_none() {
                    return Err(format!("{path}: a new file needs content, text, environ, generate or kubeconfig"));
                }
                self.ensure_parents(&path);
                self.entries.insert(
                    path,
                    Inode {
                        kind,
                        mode: spec.mode.unwrap_or(default_mode),
                        uid: spec.uid.unwrap_or(0),
                        gid: spec.gid.unwrap_or(0),
                        data: data.unwrap_or_default(),
                        proc: spec.proc.unwrap_or(false),
                    },
                );
            }
        }
        Ok(())
    }
}

/// The components of a path, without empty ones.
fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

/// `/a/b` from ["a", "b"] (and `name` appended when not empty).
fn join(parts: &[String], name: &str) -> String {
    let mut s = String::new();
    for p in parts.iter().map(String::as_str).chain((!name.is_empty()).then_some(name)) {
        s.push('/');
        s.push_str(p);
    }
    if s.is_empty() { "/".to_owned() } else { s }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    node: NodeSection,
    #[serde(default)]
    entry: Vec<EntrySpec>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NodeSection {
    kubelet_config: Option<String>,
    /// What the node is and where its files come from (documentation only).
    #[allow(dead_code)]
    about: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySpec {
    path: String,
    kind: Option<String>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    /// A data file under src/sim/files.
    content: Option<String>,
    text: Option<String>,
    /// `/proc/PID/environ` entries.
    environ: Option<Vec<String>>,
    /// `private-key`, `public-key` or `certificate`.
    generate: Option<String>,
    kubeconfig: Option<KubeconfigSpec>,
    target: Option<String>,
    proc: Option<bool>,
    /// Where the mode, owner or contents come from (documentation only, read by people).
    #[allow(dead_code)]
    source: Option<String>,
}

/// A kubeconfig to make up: kubeadm's layout, with credentials embedded (`*-data`) or, for a kubelet whose
/// client certificate rotates, the paths of `client_cert`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KubeconfigSpec {
    cluster: String,
    server: String,
    user: String,
    client_cert: Option<String>,
}

/// Contents made up for files fleetaudit must never read (keys) or only stats: realistic in shape and size, the
/// keys marked [`SECRET_CANARY`] so a test can prove they never reach the database or a report.
/// Certificates are real, made at start ([`super::pki`]); a rotated kubelet certificate's key beside it is made up.
fn generate(generator: &str, path: &str) -> Result<Vec<u8>, String> {
    let key = || pem("EC PRIVATE KEY", &secret_bytes(path, 121));
    if let Some(pem) = super::pki::generate(generator, path, super::pki::KUBELET_DAYS, key) {
        return Ok(pem);
    }
    match generator {
        "private-key" => Ok(pem("RSA PRIVATE KEY", &secret_bytes(path, 1190)).into_bytes()),
        "public-key" => Ok(pem("PUBLIC KEY", &pseudo_random(path, 294)).into_bytes()),
        _ => Err(format!(
            "{path}: unknown generator {generator:?} (private-key, public-key, ca-certificate, certificate, \
             kubelet-certificate, kubelet-serving, kubelet-serving-rotated)"
        )),
    }
}

/// A kubeconfig as kubeadm writes one (`cmd/kubeadm/app/util/kubeconfig`): the cluster CA and the client's
/// certificate and key embedded, the key made up and marked with [`SECRET_CANARY`].
fn kubeconfig(spec: &KubeconfigSpec, path: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let KubeconfigSpec { cluster, server, user, client_cert } = spec;
    let ca = b64.encode(pem("CERTIFICATE", &pseudo_random(&format!("{cluster} ca"), 800)));
    let mut out = String::new();
    let _ = write!(
        out,
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  \
         name: {cluster}\ncontexts:\n- context:\n    cluster: {cluster}\n    user: {user}\n  name: {user}@{cluster}\n\
         current-context: {user}@{cluster}\nkind: Config\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n"
    );
    match client_cert {
        Some(p) => {
            let _ = write!(out, "    client-certificate: {p}\n    client-key: {p}\n");
        }
        None => {
            let cert = b64.encode(pem("CERTIFICATE", &pseudo_random(&format!("{path} cert"), 800)));
            let key = b64.encode(pem("RSA PRIVATE KEY", &secret_bytes(path, 1190)));
            let _ = write!(out, "    client-certificate-data: {cert}\n    client-key-data: {key}\n");
        }
    }
    out.into_bytes()
}

/// Marks the made-up secret files: the first bytes of every generated private key. Nothing fleetaudit stores
/// or shows may contain it (it is never to read a key), nor its base64 form.
pub const SECRET_CANARY: &str = "fleetaudit-simulated-secret";

/// [`SECRET_CANARY`] in base64 (27 bytes, so a clean 36-character prefix): how it shows in a PEM body and in an
/// encryption config's `secret:`.
pub const SECRET_CANARY_BASE64: &str = "ZmxlZXRhdWRpdC1zaW11bGF0ZWQtc2VjcmV0";

fn secret_bytes(path: &str, len: usize) -> Vec<u8> {
    let mut out = format!("{SECRET_CANARY} {path} ").into_bytes();
    out.extend(pseudo_random(path, len.saturating_sub(out.len())));
    out
}

/// Deterministic filler (xorshift64 seeded by the path), so every run serves the same bytes.
fn pseudo_random(seed: &str, len: usize) -> Vec<u8> {
    let mut state = fnv1a(seed.as_bytes()) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

/// A [`HUGE_FILE_BYTES`] kubelet config: 2 MiB of comment lines, then the node's real config at the very end,
/// so a reader that silently keeps only the first MiB parses nothing but comments (an empty config, whose
/// defaults are the secure ones: a false pass), while a reader that refuses the file says why.
fn huge_config(real: Option<&Inode>) -> Vec<u8> {
    let tail: &[u8] =
        real.map(|i| &i.data[..]).unwrap_or(b"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n");
    let line = b"# fleetaudit simulator: padding so this file is 2 MiB; the configuration is at the end of the file\n";
    let mut out = Vec::with_capacity(HUGE_FILE_BYTES);
    while out.len() + line.len() + tail.len() <= HUGE_FILE_BYTES {
        out.extend_from_slice(line);
    }
    out.resize(HUGE_FILE_BYTES - tail.len() - 1, b'#');
    out.push(b'\n');
    out.extend_from_slice(tail);
    debug_assert_eq!(out.len(), HUGE_FILE_BYTES);
    out
}

/// Levels of the [`Behavior::YamlBomb`], nine aliases of nine each: 9^9 = 387,420,489 strings once expanded.
pub const BOMB_LEVELS: usize = 9;

/// A "billion laughs" kubelet config: valid YAML of about 500 bytes whose anchors and aliases expand to
/// 387 million strings, placed between the header and the node's real settings.
fn yaml_bomb(real: Option<&Inode>) -> Vec<u8> {
    let mut out =
        String::from("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n# billion laughs\n");
    let names: Vec<char> = ('a'..='z').take(BOMB_LEVELS).collect();
    let _ = writeln!(out, "{0}: &{0} [{1}]", names[0], ["\"lol\""; 9].join(","));
    for pair in names.windows(2) {
        let _ = writeln!(out, "{0}: &{0} [{1}]", pair[1], vec![format!("*{}", pair[0]); 9].join(","));
    }
    if let Some(real) = real {
        let text = String::from_utf8_lossy(&real.data);
        for line in text.lines().filter(|l| !l.starts_with("apiVersion:") && !l.starts_with("kind:")) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.into_bytes()
}

/// Every file under `src/sim/files/` (manifests and contents), embedded; a unit test keeps this list and the
/// directory in step.
macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("files/", $path)) as &[u8])),*]
    };
}

static DATA: &[(&str, &[u8])] = embed![
    "busybox.toml",
    "busybox/group",
    "busybox/passwd",
    "busybox/tokens.csv",
    "common/base.toml",
    "common/etc/group",
    "common/etc/passwd",
    "etcd-only.toml",
    "etcd-only/etcd.service",
    "etcd-only/group",
    "etcd-only/passwd",
    "hyperkube.toml",
    "k3s.toml",
    "k3s/00-k3s-defaults.conf",
    "k3s/config.yaml",
    "kops.toml",
    "kops/kube-scheduler-config.yaml",
    "kops/kubelet.conf",
    "kops/sysconfig-kubelet",
    "kubeadm-default.toml",
    "kubeadm-hardened.toml",
    "kubeadm-hardened/admission.yaml",
    "kubeadm-hardened/audit-policy.yaml",
    "kubeadm-hardened/config.yaml",
    "kubeadm-hardened/default-kubelet",
    "kubeadm-hardened/encryption.yaml",
    "kubeadm-hardened/group",
    "kubeadm-hardened/manifests/kube-apiserver.yaml",
    "kubeadm-hardened/manifests/kube-controller-manager.yaml",
    "kubeadm-hardened/manifests/kube-scheduler.yaml",
    "kubeadm-hardened/passwd",
    "kubeadm-loose.toml",
    "kubeadm-loose/group",
    "kubeadm-loose/passwd",
    "kubeadm/10-flannel.conflist",
    "kubeadm/10-kubeadm.conf",
    "kubeadm/config.yaml",
    "kubeadm/control-plane.toml",
    "kubeadm/default-kubelet",
    "kubeadm/kubeadm-flags.env",
    "kubeadm/kubelet.service",
    "kubeadm/kube-proxy-config.conf",
    "kubeadm/manifests/etcd.yaml",
    "kubeadm/manifests/kube-apiserver.yaml",
    "kubeadm/manifests/kube-controller-manager.yaml",
    "kubeadm/manifests/kube-scheduler.yaml",
    "kubeadm/node.toml",
    "kubeadm/pki/apiserver-etcd-client.crt",
    "kubeadm/pki/apiserver-kubelet-client.crt",
    "kubeadm/pki/apiserver.crt",
    "kubeadm/pki/etcd/ca.crt",
    "kubeadm/pki/etcd/healthcheck-client.crt",
    "kubeadm/pki/etcd/peer.crt",
    "kubeadm/pki/etcd/server.crt",
    "kubeadm/pki/front-proxy-ca.crt",
    "kubeadm/pki/front-proxy-client.crt",
    "rke2.toml",
    "rke2/00-rke2-defaults.conf",
    "rke2/10-canal.conflist",
    "rke2/50-operator.conf",
    "rke2/99-old.conf.bak",
    "rke2/audit-policy.yaml",
    "rke2/config.yaml",
    "rke2/encryption-config.json",
    "rke2/etcd-config",
    "rke2/group",
    "rke2/passwd",
    "rke2/pod-manifests/etcd.yaml",
    "rke2/pod-manifests/kube-apiserver.yaml",
    "rke2/pod-manifests/kube-controller-manager.yaml",
    "rke2/pod-manifests/kube-scheduler.yaml",
    "rke2/rke2-pss.yaml",
    "systemd-hard-way.toml",
    "systemd-hard-way/encryption-config.yaml",
    "systemd-hard-way/etcd.service",
    "systemd-hard-way/kube-apiserver.service",
    "systemd-hard-way/kube-controller-manager.service",
    "systemd-hard-way/kube-scheduler.service",
    "systemd-hard-way/kube-scheduler.yaml",
    "worker.toml",
];

/// An embedded data file by its path under `src/sim/files/`.
fn data(name: &str) -> Result<&'static [u8], ManifestError> {
    DATA.iter().find(|(n, _)| *n == name).map(|(_, b)| *b).ok_or_else(|| ManifestError::Missing(name.to_owned()))
}

/// The embedded data files' names (for the test that checks them against the directory).
pub fn data_names() -> impl Iterator<Item = &'static str> {
    DATA.iter().map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> FileTree {
        let mut t = FileTree::default();
        t.insert_dir("/", 0o755, 0, 0);
        t.insert_dir("/etc/kubernetes", 0o755, 0, 0);
        t.insert_dir("/etc/kubernetes/manifests", 0o700, 0, 0);
        t.insert_file("/etc/kubernetes/manifests/etcd.yaml", 0o600, 0, 0, "x");
        t.insert_file("/etc/kubernetes/admin.conf", 0o600, 0, 0, "k");
        t.insert_file("/etc/kubernetes/group-read.conf", 0o640, 0, 1000, "g");
        t.insert_file("/etc/kubernetes/other-read.conf", 0o004, 1000, 0, "o");
        t.entries.insert(
            "/etc/k".into(),
            Inode {
                kind: Kind::Symlink("kubernetes".into()),
                mode: 0o777,
                uid: 0,
                gid: 0,
                data: Bytes::new(),
                proc: false,
            },
        );
        t.entries.insert(
            "/loop".into(),
            Inode { kind: Kind::Symlink("/loop".into()), mode: 0o777, uid: 0, gid: 0, data: Bytes::new(), proc: false },
        );
        t
    }

    #[test]
    fn lookups_apply_search_permission_and_follow_symlinks() {
        let t = tree();
        let audit = Identity { uid: 1000, gids: vec![1000] };
        assert_eq!(t.resolve("/etc/kubernetes/manifests", true, &audit).unwrap(), "/etc/kubernetes/manifests");
        assert_eq!(t.resolve("/etc/kubernetes/manifests/etcd.yaml", true, &audit), Err(Errno::Access));
        assert_eq!(t.resolve("/etc/kubernetes/manifests/etcd.yaml", true, &Identity::root()).unwrap().len(), 35);
        assert_eq!(t.resolve("/etc/k/admin.conf", true, &audit).unwrap(), "/etc/kubernetes/admin.conf");
        assert_eq!(t.resolve("/etc/k", false, &audit).unwrap(), "/etc/k");
        assert_eq!(
            t.resolve("/etc/./kubernetes/../kubernetes//admin.conf", true, &audit).unwrap(),
            "/etc/kubernetes/admin.conf"
        );
        assert_eq!(t.resolve("/etc/nothing", true, &audit), Err(Errno::NoEntry));
        assert_eq!(t.resolve("/etc/kubernetes/admin.conf/x", true, &audit), Err(Errno::NotDir));
        assert_eq!(t.resolve("/loop", true, &audit), Err(Errno::Loop));
        assert_eq!(t.resolve("/..", true, &audit).unwrap(), "/");

        let admin = t.get("/etc/kubernetes/admin.conf").unwrap();
        assert!(!audit.may(admin, 4) && Identity::root().may(admin, 4));
        assert!(audit.may(t.get("/etc/kubernetes/group-read.conf").unwrap(), 4), "group read");
        assert!(!audit.may(t.get("/etc/kubernetes/other-read.conf").unwrap(), 4), "the owner's bits, not the others'");
    }

    #[test]
    fn listings_are_in_hash_order_after_dot_entries() {
        let mut t = tree();
        for name in ["00-a.conf", "10-b.conf", "20-c.conf", "99-z.conf"] {
            t.insert_file(&format!("/d/{name}"), 0o600, 0, 0, "");
        }
        let names: Vec<String> = t.children("/d").into_iter().map(|(n, _)| n).collect();
        assert_eq!(&names[..2], [".", ".."]);
        let mut sorted = names[2..].to_vec();
        sorted.sort();
        assert_eq!(sorted, ["00-a.conf", "10-b.conf", "20-c.conf", "99-z.conf"]);
        assert_ne!(names[2..], sorted[..], "not lexical, as on ext4");
        assert_eq!(t.children("/d").len(), t.children("/d").len());
    }

    #[test]
    fn content_faults_replace_the_kubelet_config() {
        let mut base = FileTree::default();
        base.insert_file("/var/lib/kubelet/config.yaml", 0o644, 0, 0, "kind: KubeletConfiguration\nreadOnlyPort: 0\n");
        base.kubelet_config = Some("/var/lib/kubelet/config.yaml".into());
        let base = Arc::new(base);
        let huge = base.for_behavior(Behavior::HugeFile);
        let data = &huge.get("/var/lib/kubelet/config.yaml").unwrap().data;
        assert_eq!(data.len(), HUGE_FILE_BYTES);
        assert!(data[..1 << 20].iter().all(|b| *b != 0) && data.ends_with(b"readOnlyPort: 0\n"));
        assert!(!String::from_utf8_lossy(&data[..1 << 20]).lines().any(|l| !l.starts_with('#')));
        assert!(Arc::ptr_eq(&huge, &base.for_behavior(Behavior::HugeFile)), "built once");

        let bomb = base.for_behavior(Behavior::YamlBomb);
        let text = String::from_utf8(bomb.get("/var/lib/kubelet/config.yaml").unwrap().data.to_vec()).unwrap();
        assert!(text.len() < 1024, "{}", text.len());
        assert!(text.contains("i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]") && text.contains("readOnlyPort: 0"), "{text}");
        assert!(Arc::ptr_eq(&base.for_behavior(Behavior::SftpDenied), &base));
    }

    #[test]
    fn generated_secrets_look_real_and_carry_the_canary() {
        let key = generate("private-key", "/etc/kubernetes/pki/ca.key").unwrap();
        let text = String::from_utf8(key).unwrap();
        assert!(
            text.starts_with("-----BEGIN RSA PRIVATE KEY-----\n") && text.ends_with("-----END RSA PRIVATE KEY-----\n")
        );
        assert!((1600..1800).contains(&text.len()), "{}", text.len());
        let spec = KubeconfigSpec {
            cluster: "kubernetes".into(),
            server: "https://10.0.0.1:6443".into(),
            user: "kubernetes-admin".into(),
            client_cert: None,
        };
        let kc = String::from_utf8(kubeconfig(&spec, "/etc/kubernetes/admin.conf")).unwrap();
        assert!(kc.contains("server: https://10.0.0.1:6443") && kc.contains("client-key-data: "), "{kc}");
        assert!(generate("nope", "/a").is_err());
    }
}

#[cfg(test)]
mod data_tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;
    use crate::sim::PROFILES;

    /// The files under `src/sim/files/` (manifests and contents; not the notes and the scripts that made them).
    fn on_disk() -> BTreeSet<String> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else if !["md", "sh", "py"].iter().any(|x| path.extension().is_some_and(|e| e == *x)) {
                    out.insert(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sim/files");
        let mut out = BTreeSet::new();
        walk(&root, &root, &mut out);
        out
    }

    #[test]
    fn the_embedded_list_is_the_data_directory() {
        let embedded: BTreeSet<String> = data_names().map(str::to_owned).collect();
        let disk = on_disk();
        assert_eq!(
            embedded.difference(&disk).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "listed in DATA, not on disk"
        );
        assert_eq!(
            disk.difference(&embedded).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "on disk, not in DATA (src/sim/tree.rs)"
        );
    }

    #[test]
    fn every_profile_loads_and_every_data_file_is_used() {
        let mut used = BTreeSet::new();
        for p in PROFILES {
            let tree = FileTree::load(p.manifest).unwrap_or_else(|e| panic!("{}: {e}", p.name));
            for path in tree.paths() {
                let inode = tree.get(path).unwrap();
                for (name, bytes) in DATA {
                    if inode.kind == Kind::File && !inode.data.is_empty() && *bytes == &inode.data[..] {
                        used.insert(*name);
                    }
                }
            }
            // Every node has accounts, the audit login and a home for it.
            let audit = Identity::login(&tree, "audit");
            assert_eq!(audit.uid, 1000, "{}", p.name);
            assert!(tree.get("/home/audit").is_some_and(|i| i.kind == Kind::Dir && i.uid == 1000), "{}", p.name);
            if let Some(config) = tree.kubelet_config() {
                assert!(tree.get(config).is_some_and(|i| i.kind == Kind::File), "{}: {config}", p.name);
            }
            // A /proc/PID/environ belongs to a process the capture shows.
            let table = crate::ps::parse(p.capture.as_bytes()).unwrap();
            for path in tree.paths().filter(|p| p.ends_with("/environ")) {
                let pid: u32 = path.split('/').nth(2).unwrap().parse().unwrap();
                let process = table.processes.iter().find(|q| q.pid == pid);
                assert!(
                    process.is_some_and(|q| q.cmd.contains("etcd")),
                    "{}: {path} is no etcd of the capture",
                    p.name
                );
                assert!(tree.get(path).unwrap().proc);
            }
        }
        let manifests: BTreeSet<&str> = data_names().filter(|n| n.ends_with(".toml")).collect();
        let unused: Vec<&str> = data_names()
            .filter(|n| {
                !used.contains(n) && !manifests.contains(n) && !DATA.iter().any(|(m, b)| m == n && b.is_empty())
            })
            .collect();
        assert_eq!(unused, Vec::<&str>::new(), "data files no profile serves");
    }

    #[test]
    fn every_secret_carries_the_canary() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(b64.encode(SECRET_CANARY), SECRET_CANARY_BASE64);
        let mut secrets = 0;
        for p in PROFILES {
            let tree = p.files();
            for path in tree.paths() {
                let text = String::from_utf8_lossy(&tree.get(path).unwrap().data).into_owned();
                let secret = path.ends_with(".key")
                    || path.ends_with("-key.pem")
                    || text.contains("PRIVATE KEY-----")
                    || text.contains("secret:")
                    || text.contains("\"secret\":")
                    || text.contains("\"secret\":")
                    || path.ends_with("tokens.csv");
                if secret && !path.ends_with(".pub") && !path.ends_with("/passwd") && !path.ends_with("/group") {
                    secrets += 1;
                    let marked = text.contains(SECRET_CANARY) || text.contains(SECRET_CANARY_BASE64);
                    assert!(marked, "{}: {path} holds a secret without the canary", p.name);
                }
            }
        }
        assert!(secrets > 50, "{secrets}");
    }

    #[test]
    fn profiles_are_told_apart_by_their_captures() {
        for (i, a) in PROFILES.iter().enumerate() {
            for b in &PROFILES[i + 1..] {
                assert_ne!(
                    a.capture, b.capture,
                    "{} and {} serve the same table: their files could not be told apart",
                    a.name, b.name
                );
            }
            assert!(std::ptr::eq(crate::sim::files_for_table(a.capture.as_bytes()).as_ref(), a.files().as_ref()));
        }
        assert!(crate::sim::files_for_table(b"no profile").get("/etc/passwd").is_some());
    }

    #[test]
    fn kubeadm_files_have_the_modes_kubeadm_gives_them() {
        let tree = FileTree::load("kubeadm-default.toml").unwrap();
        let mode = |p: &str| tree.get(p).map(|i| (i.mode, i.uid, i.gid)).unwrap_or_else(|| panic!("{p}"));
        assert_eq!(mode("/etc/kubernetes/manifests/kube-apiserver.yaml"), (0o600, 0, 0));
        assert_eq!(mode("/etc/kubernetes/admin.conf"), (0o600, 0, 0));
        assert_eq!(mode("/etc/kubernetes/pki/ca.crt"), (0o644, 0, 0));
        assert_eq!(mode("/etc/kubernetes/pki/ca.key"), (0o600, 0, 0));
        assert_eq!(mode("/etc/kubernetes/pki/sa.pub"), (0o600, 0, 0));
        assert_eq!(mode("/var/lib/etcd"), (0o700, 0, 0));
        assert_eq!(mode("/var/lib/kubelet/config.yaml"), (0o644, 0, 0));
        assert!(tree.get("/etc/kubernetes/bootstrap-kubelet.conf").is_none(), "kubeadm init never writes it");
        let manifest =
            String::from_utf8_lossy(&tree.get("/etc/kubernetes/manifests/etcd.yaml").unwrap().data).into_owned();
        let capture = crate::sim::profile("kubeadm-default").unwrap();
        let etcd = capture.lines().find(|l| l.contains(" etcd --")).unwrap();
        for arg in etcd.split_once(" etcd ").unwrap().1.split(' ') {
            assert!(manifest.contains(&format!("    - {arg}\n")), "{arg} missing from etcd.yaml");
        }
        let hardened = FileTree::load("kubeadm-hardened.toml").unwrap();
        assert_eq!(hardened.get("/etc/kubernetes/manifests").unwrap().mode, 0o700);
        assert_eq!(hardened.get("/var/lib/etcd").unwrap().uid, 997);
        assert_eq!(Identity::login(&hardened, "etcd").uid, 997);
    }
}
