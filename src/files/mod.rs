//! The files a host's processes name: what the rule engine asks for, and what the host answered.
//!
//! Owns: the vocabulary between the rule engine, which plans which paths to stat, read or list from a process
//! table ([`Request`]), the transport, which fetches them over SFTP (`ssh::sftp`), and everything downstream,
//! which sees the answers ([`FileSet`]): a file's type, mode, owner and size, its contents (capped, with
//! secrets already redacted by the engine as they arrive), a directory's names, or why not (missing, permission
//! denied, too large, SFTP unavailable).
//! Must not touch: SSH, rules, the database. A path is data here, never shell text.

pub mod accounts;
pub mod mount;
pub mod redact;
pub mod tar;
pub mod x509;
pub mod yaml;

/// `path` as the kernel reads it, written one way: empty and `.` components dropped (`/var/lib/rancher/etcd/`, an
/// etcd `--data-dir` as RKE writes it, is `/var/lib/rancher/etcd`; `//` and `/./` are `/`). `..` stays: what it
/// climbs to depends on symlinks only the host knows. A set holds each path once, under this spelling, and a
/// snapshot can hold it. A relative path is left alone (the transport refuses it).
pub fn clean(path: &str) -> std::borrow::Cow<'_, str> {
    let untidy =
        path.len() > 1 && (path.ends_with('/') || path.ends_with("/.") || path.contains("//") || path.contains("/./"));
    if !path.starts_with('/') || !untidy {
        return path.into();
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    format!("/{}", parts.join("/")).into()
}

use std::collections::BTreeMap;

use serde::Serialize;

/// The most bytes of one file fleetaudit reads: Kubernetes config files are a few KiB; a larger one is refused
/// (`TooLarge`) rather than buffered.
pub const MAX_FILE: u64 = 1 << 20;

/// One thing to learn about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Want {
    /// Type, mode, owner, size (following symlinks, as the component opening the file does).
    Stat,
    /// Stat and contents.
    Read,
    /// Stat and a directory's entry names.
    List,
    /// Stat and the leading certificate blocks of a PEM file, never a byte past them: the kubelet's rotated
    /// `kubelet-server-current.pem` holds its private key after its certificate.
    Certs,
}

/// A path the engine needs, and what for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Request {
    /// An absolute path, as the process or the pack names it.
    pub path: String,
    pub want: Want,
}

impl Request {
    pub fn stat(path: impl Into<String>) -> Request {
        Request { path: path.into(), want: Want::Stat }
    }

    pub fn read(path: impl Into<String>) -> Request {
        Request { path: path.into(), want: Want::Read }
    }

    pub fn list(path: impl Into<String>) -> Request {
        Request { path: path.into(), want: Want::List }
    }

    pub fn certs(path: impl Into<String>) -> Request {
        Request { path: path.into(), want: Want::Certs }
    }
}

/// What kind of thing a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// A path's inode, as `stat` (through SFTP) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits (`0o600`), without the file type.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

/// A file's contents as the engine keeps them: redacted where the format holds secrets, and hashed before that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The bytes, secrets replaced by `<redacted>` (the raw bytes are never kept).
    pub bytes: Vec<u8>,
    /// SHA-256 of the bytes as the host sent them, so a change shows even where the change was a secret.
    pub sha256: [u8; 32],
    /// Whether anything was redacted.
    pub redacted: bool,
}

impl Content {
    /// Contents with nothing to redact.
    pub fn plain(bytes: Vec<u8>) -> Content {
        use sha2::Digest;
        let sha256 = sha2::Sha256::digest(&bytes).into();
        Content { bytes, sha256, redacted: false }
    }
}

/// Why a path could not be learned. Each is its own stored kind, with the fix in its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Problem {
    /// No such file or directory.
    Missing,
    /// The audit login may not read it: its owner, group and mode (or an ACL) keep it out.
    Denied,
    /// Larger than the per-file limit: refused rather than read. Its stat, when known, still decides its mode
    /// and owner rules.
    TooLarge {
        size: u64,
        limit: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meta: Option<Meta>,
    },
    /// The host's per-host file budget (count or time) ran out before this path: raise it in the inventory.
    OverBudget { what: String },
    /// SFTP is not available on the host (no `Subsystem sftp`, or the configured `sftp_command` failed).
    Unavailable { reason: String },
    /// Anything else the SFTP server answered.
    Failed { message: String },
    /// Judging a snapshot made by hand: the path is not in it, and no directory of the snapshot holds it, so
    /// whether the node has it is unknown.
    NotInSnapshot,
}

impl Problem {
    /// Short and machine-readable, as stored: `missing`, `denied`, `too_large`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Missing => "missing",
            Problem::Denied => "denied",
            Problem::TooLarge { .. } => "too_large",
            Problem::OverBudget { .. } => "over_budget",
            Problem::Unavailable { .. } => "unavailable",
            Problem::Failed { .. } => "failed",
            Problem::NotInSnapshot => "not_in_snapshot",
        }
    }
}

impl std::fmt::Display for Problem {
    /// For people, with what to do.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing => f.write_str("no such file or directory"),
            Problem::Denied => f.write_str(
                "permission denied: give the audit login read access (group read or an ACL), or set sftp_command to \
                 a privileged SFTP server (README: Files over SFTP)",
            ),
            Problem::TooLarge { size, limit, .. } => {
                write!(f, "{size} bytes, over the {limit}-byte limit (max_file_bytes): not read")
            }
            Problem::OverBudget { what } => write!(f, "not read: the host's file budget ran out ({what})"),
            Problem::Unavailable { reason } => write!(f, "SFTP unavailable: {reason}"),
            Problem::Failed { message } => f.write_str(message),
            Problem::NotInSnapshot => f.write_str("not in the snapshot: add it to the tar"),
        }
    }
}

/// Something that answers batches of requests: a host's SFTP session, or a snapshot of one.
pub trait Fetch {
    /// One `(path, entry)` per request; contents raw, as the host sent them (the engine admits them).
    fn fetch(&mut self, batch: &[Request]) -> impl std::future::Future<Output = Vec<(String, Entry)>>;
}

/// A file set answering as the host it was taken from ([`FileSet::answer`]).
pub struct Answering<'f> {
    pub files: &'f FileSet,
    /// A snapshot made by hand: see [`FileSet::answer`].
    pub hand_made: bool,
}

impl Fetch for Answering<'_> {
    async fn fetch(&mut self, batch: &[Request]) -> Vec<(String, Entry)> {
        batch.iter().map(|r| (r.path.clone(), self.files.answer(r, self.hand_made))).collect()
    }
}

/// What the host answered for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A stat'ed path (a file read, or a directory listed, carries its contents or names too).
    Found {
        meta: Meta,
        content: Option<Content>,
        names: Option<Vec<String>>,
    },
    Problem(Problem),
}

impl Entry {
    pub fn meta(&self) -> Option<&Meta> {
        match self {
            Entry::Found { meta, .. } => Some(meta),
            Entry::Problem(_) => None,
        }
    }

    pub fn content(&self) -> Option<&Content> {
        match self {
            Entry::Found { content, .. } => content.as_ref(),
            Entry::Problem(_) => None,
        }
    }

    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Entry::Problem(p) => Some(p),
            Entry::Found { .. } => None,
        }
    }
}

/// Everything learned about a host's files in one scan, by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSet {
    entries: BTreeMap<String, Entry>,
    /// Set when files were not looked at all (an offline `eval` of a bare `ps` capture): every source then is
    /// "not read" rather than missing.
    pub not_read: bool,
    accounts: Cache<AccountsOnce>,
    memo: Cache<Memo>,
    /// Like `memo`, for values derived from the whole set as it is: forgotten when it changes.
    current: Cache<Memo>,
}

/// Something a set keeps beside its entries to save work: not part of its value (any two are equal, a clone
/// starts empty).
#[derive(Default)]
struct Cache<T>(T);

impl<T: Default> Clone for Cache<T> {
    fn clone(&self) -> Self {
        Cache::default()
    }
}

impl<T> PartialEq for Cache<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Cache<T> {}

impl<T> std::fmt::Debug for Cache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache")
    }
}

/// Values derived from the set's entries, computed once per key (a config document parsed once per host, not
/// once per planning round and again for judging: the parses were 6% of a scan's CPU in `perf`). Keys name what
/// the value is derived from (a document's path and its contents' SHA-256), so entries added later leave them
/// true. Not part of the set's value.
#[derive(Default)]
struct Memo(std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<dyn std::any::Any + Send + Sync>>>);

impl Memo {
    fn get<T: std::any::Any + Send + Sync>(&self, key: &str, make: impl FnOnce() -> T) -> std::sync::Arc<T> {
        // Not held while `make` runs: it may ask for other values.
        if let Some(v) = self.lock().get(key).and_then(|v| std::sync::Arc::clone(v).downcast::<T>().ok()) {
            return v;
        }
        let v = std::sync::Arc::new(make());
        self.lock().insert(key.to_owned(), v.clone());
        v
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::sync::Arc<dyn std::any::Any + Send + Sync>>>
    {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The host's accounts, parsed from the set's /etc/passwd and /etc/group the first time a rule asks (every file
/// rule of every process names owners: parsing them for each was the scan's hottest function, 2.5% of its CPU in
/// `perf`). Forgotten when the set changes; not part of the set's value.
type AccountsOnce = std::sync::OnceLock<Result<accounts::Accounts, String>>;

impl FileSet {
    /// No files: an offline judgement of a process table alone.
    pub fn none() -> FileSet {
        FileSet { not_read: true, ..FileSet::default() }
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn insert(&mut self, path: String, entry: Entry) {
        self.not_read = false;
        self.accounts = Cache::default();
        self.current = Cache::default();
        self.entries.insert(path, entry);
    }

    /// What `make` derives under `key` from the set as it is now (a file target's paths, which the last batch's
    /// planning and the judging both need), computed once until an entry is added.
    pub fn derived<T: std::any::Any + Send + Sync>(&self, key: &str, make: impl FnOnce() -> T) -> std::sync::Arc<T> {
        let key = format!("{key} {}", self.not_read);
        self.current.0.get(&key, make)
    }

    /// What `make` derives under `key`, computed the first time it is asked for. `key` must identify everything
    /// the value depends on (contents by their hash): it is kept however the set grows.
    pub fn memo<T: std::any::Any + Send + Sync>(&self, key: &str, make: impl FnOnce() -> T) -> std::sync::Arc<T> {
        self.memo.0.get(key, make)
    }

    /// The host's users and groups as `parse` reads them from this set (its /etc/passwd and /etc/group), or why
    /// they are unknown: parsed once, however many rules ask.
    pub fn accounts(
        &self,
        parse: impl FnOnce(&FileSet) -> Result<accounts::Accounts, String>,
    ) -> &Result<accounts::Accounts, String> {
        self.accounts.0.get_or_init(|| parse(self))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Answers a request from what this set holds, as a host's SFTP server would: contents only for a read,
    /// names only for a listing. A path the set does not hold is `absent` (`Missing` for a host simulated in
    /// full; for a snapshot made by hand, `Missing` only inside a directory it holds, else `NotInSnapshot`).
    pub fn answer(&self, request: &Request, hand_made: bool) -> Entry {
        match self.entries.get(&request.path) {
            Some(Entry::Found { meta, content, names }) => Entry::Found {
                meta: *meta,
                content: match request.want {
                    Want::Read => content.clone(),
                    // A hand-made tar may hold the whole file: only its leading certificates are kept.
                    Want::Certs => {
                        content.as_ref().map(|c| Content::plain(x509::leading_certificates(&c.bytes).to_vec()))
                    }
                    Want::Stat | Want::List => None,
                },
                names: if request.want == Want::List { names.clone() } else { None },
            },
            Some(problem) => problem.clone(),
            None if !hand_made => Entry::Problem(Problem::Missing),
            None => {
                let mut dir = request.path.as_str();
                while let Some((parent, _)) = dir.rsplit_once('/') {
                    dir = parent;
                    if let Some(Entry::Found { names: Some(_), .. }) =
                        self.entries.get(if dir.is_empty() { "/" } else { dir })
                    {
                        return Entry::Problem(Problem::Missing);
                    }
                }
                Entry::Problem(Problem::NotInSnapshot)
            }
        }
    }

    /// Whether the host already answered this request (a read answers a stat too).
    pub fn answers(&self, request: &Request) -> bool {
        self.answered(&request.path, request.want)
    }

    /// Whether the set answers `want` of `path` (see [`FileSet::answers`]), for a request not yet made.
    pub fn answered(&self, path: &str, want: Want) -> bool {
        match self.entries.get(path) {
            None => false,
            Some(Entry::Problem(_)) => true,
            // A read of a directory (or a listing of a file) is answered by its stat: there is nothing more.
            Some(Entry::Found { meta, content, names }) => match want {
                Want::Stat => true,
                Want::Read | Want::Certs => content.is_some() || meta.kind != Kind::File,
                Want::List => names.is_some() || meta.kind != Kind::Dir,
            },
        }
    }
}
