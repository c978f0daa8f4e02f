//! Snapshots: what a scan of one host read, as a tar file that `fleetaudit eval FILE.tar` judges offline.
//!
//! Owns: writing a snapshot ([`write`]) and reading one back ([`read`]), whether fleetaudit wrote it or an
//! operator made it by hand on a node with GNU tar. Everything in a tar is untrusted: the archive, each member
//! and the manifest are size-capped ([`TarLimits`]), paths are normalised and refused if they climb (`..`),
//! links are never followed, device files are never read, and a broken archive is an error naming the member
//! and the fix, never a partial snapshot.
//! Must not touch: the network, SSH, rules, the database, the local file system (nothing is unpacked).
//!
//! # Snapshot format
//!
//! A snapshot is a plain tar (GNU format; `.tar.gz` is read too) that `tar tvf` lists and `tar xf` unpacks:
//!
//! - `ps-ef.txt` at the top: the `ps -ef` output, as the scan received it.
//! - `fleetaudit-snapshot.json` (written by fleetaudit, absent from a hand-made tar): what tar headers cannot
//!   say. `{"fleetaudit_snapshot": 1, "not_read": false, "entries": {PATH: {"size", "sha256", "redacted",
//!   "content", "names"}}, "problems": {PATH: {"kind": "missing" | "denied" | "too_large" | ...}}}`: a file's
//!   size and SHA-256 on the host (its contents may have been redacted since), whether it was stat'ed only
//!   (`"content": false`, a private key), a directory's listing, and each path that could not be read and why,
//!   so `eval` gives exactly the scan's verdicts, errors included.
//! - Every path the scan stat'ed or read, at its absolute path without the leading `/`
//!   (`var/lib/kubelet/config.yaml`), as a regular file (its contents as stored: secrets already redacted;
//!   empty when only stat'ed) or a directory, with the host's mode, uid/gid and user/group names in the header.
//!   Modification times are 0, so the same scan gives the same bytes.
//!
//! A tar made by hand on a node (`ps -ef > ps-ef.txt; tar cf node.tar ps-ef.txt /var/lib/kubelet/config.yaml
//! /etc/kubernetes/pki`; `z` for gzip) is read the same way: GNU tar strips the leading `/` (and says so),
//! long names (GNU or PAX headers) are handled, a directory's listing is the members under it, a hard link is
//! the file it links to, and the owner names in the headers are the node's own. Without a manifest, a path that
//! is not in the tar is [`Snapshot::made_by`] `Hand`: "not in the snapshot", which is neither missing nor
//! denied. A symbolic link or a device file in a hand-made tar is recorded as a problem for its path, with
//! the fix (`tar -h` follows links). A hand-made tar's contents are as the operator packed them, secrets and
//! private keys included if named: the caller redacts them as it redacts what SFTP reads, and keeps only the
//! stat of what it never reads.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader, Read, Write};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::accounts::Accounts;
use super::{Content, Entry, FileSet, Kind, MAX_FILE, Meta, Problem};

/// The member holding the `ps -ef` output.
pub const PS_MEMBER: &str = "ps-ef.txt";
/// The member holding what tar headers cannot say.
pub const MANIFEST_MEMBER: &str = "fleetaudit-snapshot.json";
const FORMAT: u32 = 1;

/// What a snapshot may hold before it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarLimits {
    /// Bytes of the archive after decompression (headers, long names and padding included).
    pub max_total: u64,
    /// Members (long-name and PAX headers included).
    pub max_members: usize,
    /// Bytes of one file's contents: past this a file is `TooLarge`, as the scan would have found it.
    pub max_file: u64,
    /// Bytes of `ps-ef.txt` (the transport's own cap on `ps -ef` output).
    pub max_ps: u64,
    /// Bytes of the manifest.
    pub max_manifest: u64,
}

impl TarLimits {
    /// A scan reads at most a few hundred files of at most [`MAX_FILE`]; a real snapshot is well under 1 MiB.
    pub const DEFAULT: TarLimits = TarLimits {
        max_total: 256 << 20,
        max_members: 10_000,
        max_file: MAX_FILE,
        max_ps: 16 << 20,
        max_manifest: 8 << 20,
    };
}

/// Who made the snapshot: it decides what a path absent from it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MadeBy {
    /// `fleetaudit snapshot`: the manifest records every problem; an absent path was not asked for.
    Fleetaudit,
    /// By hand (`tar cf`): an absent path is simply not in the snapshot.
    Hand,
}

/// A snapshot read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The `ps -ef` output.
    pub ps: Vec<u8>,
    pub files: FileSet,
    /// User and group names from the members' headers: the host's own (what `ls -l` showed there).
    pub accounts: Accounts,
    pub made_by: MadeBy,
    /// What was not taken as it stood (a symlink, a device, a member repeated), in archive order.
    pub notes: Vec<String>,
}

#[derive(Debug, Error)]
pub enum TarError {
    #[error("cannot read the snapshot: {0}; check the file")]
    Io(#[from] io::Error),
    #[error("not a tar archive fleetaudit can read: {0}; make it with `tar cf` (or `tar czf`)")]
    NotTar(String),
    #[error("the snapshot ends inside member {member}: it was truncated; copy it again")]
    Truncated { member: String },
    #[error("{what} is larger than {limit} bytes: refused rather than read")]
    TooLarge { what: String, limit: u64 },
    #[error("more than {limit} members in the snapshot: not one scan's files")]
    TooManyMembers { limit: usize },
    #[error("member {member:?}: {why}")]
    BadMember { member: String, why: String },
    #[error(
        "no {PS_MEMBER} at the top of the snapshot: make it with `ps -ef > {PS_MEMBER}` and name it first in `tar cf`"
    )]
    NoPs,
    #[error("{MANIFEST_MEMBER}: {0}; the snapshot was altered, write it again with `fleetaudit snapshot`")]
    BadManifest(String),
}

// ---- Manifest ------------------------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    fleetaudit_snapshot: u32,
    not_read: bool,
    #[serde(default)]
    entries: BTreeMap<String, EntryRecord>,
    #[serde(default)]
    problems: BTreeMap<String, Problem>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryRecord {
    /// The size on the host (a redacted file's contents are shorter or longer; a directory's is its inode's).
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    redacted: bool,
    /// False when the file was stat'ed only: the member is empty.
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    content: bool,
    /// A directory's listing, when it was listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    names: Option<Vec<String>>,
    /// `symlink` or `other` for what the scan saw as such (the member is then an empty regular file).
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
}

fn yes() -> bool {
    true
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

// ---- Writing -------------------------------------------------------------------------------------------------

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Writes a snapshot of one host: `ps` (the `ps -ef` output) and every entry of `files` (contents as they are
/// stored, secrets already redacted), the owners named from `accounts` (the host's own).
pub fn write(out: &mut dyn Write, ps: &[u8], files: &FileSet, accounts: &Accounts) -> io::Result<()> {
    let mut manifest = Manifest {
        fleetaudit_snapshot: FORMAT,
        not_read: files.not_read,
        entries: BTreeMap::new(),
        problems: BTreeMap::new(),
    };
    for (path, entry) in files.iter() {
        let member = member_name(path)?;
        match entry {
            Entry::Problem(p) => {
                manifest.problems.insert(path.clone(), p.clone());
            }
            Entry::Found { meta, content, names } => {
                let mut r = EntryRecord { content: true, size: Some(meta.size), ..EntryRecord::default() };
                match meta.kind {
                    Kind::File => {
                        r.content = content.is_some();
                        if let Some(c) = content {
                            r.sha256 = Some(hex(&c.sha256));
                            r.redacted = c.redacted;
                        }
                    }
                    Kind::Dir => r.names = names.clone(),
                    Kind::Symlink | Kind::Other => {
                        r.kind = Some(if meta.kind == Kind::Symlink { "symlink" } else { "other" }.into());
                    }
                }
                if member.is_empty() {
                    return Err(invalid(format!("{path}: not a path a snapshot can hold")));
                }
                manifest.entries.insert(path.clone(), r);
            }
        }
    }
    let manifest = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;

    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Deterministic);
    let plain = |size: u64, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    b.append_data(&mut plain(ps.len() as u64, 0o644), PS_MEMBER, ps)?;
    b.append_data(&mut plain(manifest.len() as u64, 0o644), MANIFEST_MEMBER, manifest.as_slice())?;
    for (path, entry) in files.iter() {
        let Entry::Found { meta, content, .. } = entry else { continue };
        let member = member_name(path)?;
        let data: &[u8] = match (meta.kind, content) {
            (Kind::File, Some(c)) => &c.bytes,
            _ => &[],
        };
        let mut h = plain(data.len() as u64, meta.mode & 0o7777);
        if meta.kind == Kind::Dir {
            h.set_entry_type(tar::EntryType::Directory);
        }
        h.set_uid(meta.uid.into());
        h.set_gid(meta.gid.into());
        // A name longer than the header's 32 bytes is left out: the reader then shows the number.
        if let Some(name) = accounts.name_of_uid(meta.uid) {
            let _ = h.set_username(name);
        }
        if let Some(name) = accounts.name_of_gid(meta.gid) {
            let _ = h.set_groupname(name);
        }
        let name = if meta.kind == Kind::Dir { format!("{member}/") } else { member };
        b.append_data(&mut h, name, data)?;
    }
    b.into_inner()?.flush()
}

/// `/var/lib/kubelet/config.yaml` → `var/lib/kubelet/config.yaml`; refuses what `read` would not take back.
fn member_name(path: &str) -> io::Result<String> {
    let normal = normalise(path).map_err(|why| invalid(format!("{path:?}: {why}")))?;
    if normal != path || path == "/" {
        return Err(invalid(format!("{path:?} is not an absolute, normalised path a snapshot can hold")));
    }
    let member = &path[1..];
    if member == PS_MEMBER || member == MANIFEST_MEMBER {
        return Err(invalid(format!("{path} has the name of a snapshot's own member")));
    }
    Ok(member.to_owned())
}

// ---- Reading -------------------------------------------------------------------------------------------------

/// A member name as the absolute path it stands for: leading `/` and `./` dropped (GNU tar strips the first,
/// `tar cf x.tar .` writes the second), `.` and empty components removed; `..` refused.
fn normalise(name: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("climbs out of the snapshot (`..`): refused".into()),
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// One member as read, before the manifest is applied.
struct Member {
    meta: Meta,
    /// `None`: stat only (a directory, or a file past the size limit).
    bytes: Option<Vec<u8>>,
    too_large: bool,
}

/// Counts bytes read through it, to say how far a truncated archive got.
struct Counted<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = (self.limit + 1).saturating_sub(self.read);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(TOO_BIG));
        }
        Ok(n)
    }
}

const TOO_BIG: &str = "fleetaudit: archive over its size limit";

/// Reads a snapshot (plain or gzip-compressed tar) within `limits`.
pub fn read(input: impl Read, limits: &TarLimits) -> Result<Snapshot, TarError> {
    let mut buffered = BufReader::new(input);
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let total_err = || TarError::TooLarge { what: "the snapshot (uncompressed)".into(), limit: limits.max_total };
    let source: Box<dyn Read> =
        if gzip { Box::new(flate2::bufread::MultiGzDecoder::new(buffered)) } else { Box::new(buffered) };
    let mut archive = tar::Archive::new(Counted { inner: source, read: 0, limit: limits.max_total });
    let map_io = |e: io::Error, member: &str| -> TarError {
        if e.to_string().contains(TOO_BIG) {
            total_err()
        } else if e.kind() == io::ErrorKind::UnexpectedEof || e.to_string().contains("unexpected EOF") {
            // tar-rs says "unexpected EOF during skip" (kind Other) when a member's data runs out.
            TarError::Truncated { member: member.to_owned() }
        } else if gzip && e.kind() == io::ErrorKind::InvalidInput {
            TarError::NotTar(format!("gzip data: {e}"))
        } else {
            TarError::NotTar(e.to_string())
        }
    };

    let mut ps = None;
    let mut manifest_bytes = None;
    let mut members: BTreeMap<String, Member> = BTreeMap::new();
    let mut problems: BTreeMap<String, Problem> = BTreeMap::new();
    let mut notes = Vec::new();
    let mut accounts = Accounts::default();
    let mut count = 0usize;
    let mut last = String::from("(the first member)");
    let entries = archive.entries().map_err(|e| map_io(e, &last))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| map_io(e, &last))?;
        count += 1;
        if count > limits.max_members {
            return Err(TarError::TooManyMembers { limit: limits.max_members });
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8(raw)
            .map_err(|_| TarError::BadMember { member: last.clone(), why: "a name that is not UTF-8".into() })?;
        if name.contains('\0') {
            return Err(TarError::BadMember { member: name, why: "a NUL in its name".into() });
        }
        last = name.clone();
        let bad = |why: String| TarError::BadMember { member: name.clone(), why };
        let path = normalise(&name).map_err(bad)?;
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            continue;
        }
        let header = entry.header().clone();
        let mut uid = header.uid().map_err(|e| bad(format!("bad uid: {e}")))?;
        let mut gid = header.gid().map_err(|e| bad(format!("bad gid: {e}")))?;
        let mut uname = header.username().ok().flatten().map(str::to_owned);
        let mut gname = header.groupname().ok().flatten().map(str::to_owned);
        // PAX records (`tar --format=posix`) carry ids and names that do not fit the header.
        if let Some(pax) = entry.pax_extensions().map_err(|e| map_io(e, &name))? {
            for ext in pax.flatten() {
                let (Ok(k), Ok(v)) = (ext.key(), ext.value()) else { continue };
                match k {
                    "uid" => uid = v.parse().map_err(|_| bad(format!("PAX uid {v:?}")))?,
                    "gid" => gid = v.parse().map_err(|_| bad(format!("PAX gid {v:?}")))?,
                    "uname" => uname = Some(v.to_owned()),
                    "gname" => gname = Some(v.to_owned()),
                    _ => {}
                }
            }
        }
        let uid = u32::try_from(uid).map_err(|_| bad(format!("uid {uid} is past 32 bits")))?;
        let gid = u32::try_from(gid).map_err(|_| bad(format!("gid {gid} is past 32 bits")))?;
        for (id, n, user) in [(uid, &uname, true), (gid, &gname, false)] {
            if let Some(n) = n.as_deref().filter(|n| !n.is_empty() && !n.chars().any(char::is_control)) {
                if user { accounts.add_user(id, n) } else { accounts.add_group(id, n) }
            }
        }
        let mode = header.mode().map_err(|e| bad(format!("bad mode: {e}")))? & 0o7777;
        let size = entry.size();
        let meta = |kind: Kind, size: u64| Meta { kind, mode, uid, gid, size };

        // The snapshot's own members, at the top level only.
        if path == format!("/{PS_MEMBER}") && kind.is_file() {
            if size > limits.max_ps {
                return Err(TarError::TooLarge { what: PS_MEMBER.into(), limit: limits.max_ps });
            }
            ps = Some(read_member(&mut entry, &name, &map_io)?);
            continue;
        }
        if path == format!("/{MANIFEST_MEMBER}") && kind.is_file() {
            if size > limits.max_manifest {
                return Err(TarError::TooLarge { what: MANIFEST_MEMBER.into(), limit: limits.max_manifest });
            }
            manifest_bytes = Some(read_member(&mut entry, &name, &map_io)?);
            continue;
        }
        if path == "/" {
            continue;
        }
        if members.contains_key(&path) || problems.contains_key(&path) {
            // GNU tar appends a path named twice (`tar rf`); extracting keeps the last, and so does this.
            notes.push(format!("{name}: in the snapshot twice; the last one counts"));
            members.remove(&path);
            problems.remove(&path);
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if size > limits.max_file {
                    members.insert(path, Member { meta: meta(Kind::File, size), bytes: None, too_large: true });
                } else {
                    let bytes = read_member(&mut entry, &name, &map_io)?;
                    members.insert(path, Member { meta: meta(Kind::File, size), bytes: Some(bytes), too_large: false });
                }
            }
            tar::EntryType::Directory => {
                members.insert(path, Member { meta: meta(Kind::Dir, 0), bytes: None, too_large: false });
            }
            tar::EntryType::Link => {
                // A hard link: GNU tar writes the first name as the file and later ones as links to it.
                let target =
                    entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                let target = normalise(&target).map_err(|why| bad(format!("hard link target: {why}")))?;
                match members.get(&target) {
                    Some(m) if m.meta.kind == Kind::File => {
                        let (bytes, too_large, size) = (m.bytes.clone(), m.too_large, m.meta.size);
                        members.insert(path, Member { meta: meta(Kind::File, size), bytes, too_large });
                    }
                    _ => {
                        let message = format!(
                            "a hard link to {target}, which is not a file earlier in the tar: add the file itself"
                        );
                        notes.push(format!("{name}: {message}"));
                        problems.insert(path, Problem::Failed { message });
                    }
                }
            }
            tar::EntryType::Symlink => {
                let target =
                    entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                let message = format!(
                    "a symbolic link (to {target:?}) in the tar, which fleetaudit does not follow: make the tar \
                     with `tar -h` (--dereference) so it holds what the link points to"
                );
                notes.push(format!("{name}: {message}"));
                problems.insert(path, Problem::Failed { message });
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let message = "a device or FIFO in the tar: not read; it is no config file".to_owned();
                notes.push(format!("{name}: {message}"));
                problems.insert(path, Problem::Failed { message });
            }
            tar::EntryType::GNUSparse => {
                return Err(bad("a sparse file: config files are not sparse; make the tar without -S".into()));
            }
            other => {
                return Err(bad(format!("member type {:?} is not one a snapshot holds", other.as_byte() as char)));
            }
        }
    }
    let ps = ps.ok_or(TarError::NoPs)?;

    let mut files = FileSet::default();
    let made_by = match manifest_bytes {
        None => {
            // Hand-made: a directory's listing is what the tar holds under it.
            let mut children: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for path in members.keys().chain(problems.keys()) {
                if let Some((parent, child)) = path.rsplit_once('/') {
                    let parent = if parent.is_empty() { "/" } else { parent };
                    children.entry(parent.to_owned()).or_default().insert(child.to_owned());
                }
            }
            for (path, m) in members {
                let entry = if m.too_large {
                    Entry::Problem(Problem::TooLarge { size: m.meta.size, limit: limits.max_file, meta: Some(m.meta) })
                } else {
                    let names = (m.meta.kind == Kind::Dir)
                        .then(|| children.remove(&path).unwrap_or_default().into_iter().collect());
                    Entry::Found { meta: m.meta, content: m.bytes.map(Content::plain), names }
                };
                files.insert(path, entry);
            }
            for (path, p) in problems {
                files.insert(path, Entry::Problem(p));
            }
            files.not_read = files.is_empty();
            MadeBy::Hand
        }
        Some(bytes) => {
            apply_manifest(&bytes, members, problems, &mut files, limits)?;
            MadeBy::Fleetaudit
        }
    };
    Ok(Snapshot { ps, files, accounts, made_by, notes })
}

fn read_member(
    entry: &mut impl Read,
    name: &str,
    map_io: &dyn Fn(io::Error, &str) -> TarError,
) -> Result<Vec<u8>, TarError> {
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(|e| map_io(e, name))?;
    Ok(bytes)
}

/// Rebuilds the scan's [`FileSet`] from fleetaudit's members and manifest; any disagreement between them is
/// an altered snapshot.
fn apply_manifest(
    bytes: &[u8],
    mut members: BTreeMap<String, Member>,
    tar_problems: BTreeMap<String, Problem>,
    files: &mut FileSet,
    limits: &TarLimits,
) -> Result<(), TarError> {
    let bad = |m: String| TarError::BadManifest(m);
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if manifest.fleetaudit_snapshot != FORMAT {
        return Err(bad(format!(
            "format {} (this fleetaudit reads format {FORMAT}): use the fleetaudit that wrote it",
            manifest.fleetaudit_snapshot
        )));
    }
    if let Some(path) = tar_problems.keys().next() {
        return Err(bad(format!("{path} is a link or device member, which fleetaudit never writes")));
    }
    for (path, p) in manifest.problems {
        if normalise(&path).ok().as_deref() != Some(path.as_str()) || path == "/" {
            return Err(bad(format!("{path:?} is not a normalised absolute path")));
        }
        if members.contains_key(&path) {
            return Err(bad(format!("{path} is both a member and a problem")));
        }
        files.insert(path, Entry::Problem(p));
    }
    for (path, r) in manifest.entries {
        let m = members.remove(&path).ok_or_else(|| bad(format!("{path} is listed but not in the tar")))?;
        let kind = match (r.kind.as_deref(), m.meta.kind) {
            (None, k) => k,
            (Some("symlink"), Kind::File) => Kind::Symlink,
            (Some("other"), Kind::File) => Kind::Other,
            (Some(k), _) => return Err(bad(format!("{path}: kind {k:?}"))),
        };
        let mut meta = Meta { kind, ..m.meta };
        if let Some(size) = r.size {
            meta.size = size;
        }
        let content = match (kind, r.content, m.bytes) {
            (Kind::File, true, Some(bytes)) => {
                let sha = r.sha256.as_deref().and_then(unhex).ok_or_else(|| bad(format!("{path}: no valid sha256")))?;
                Some(Content { bytes, sha256: sha, redacted: r.redacted })
            }
            (Kind::File, true, None) => {
                return Err(bad(format!("{path}: its contents are past {} bytes", limits.max_file)));
            }
            (_, _, Some(bytes)) if !bytes.is_empty() => {
                return Err(bad(format!("{path}: contents where the scan read none")));
            }
            _ => None,
        };
        let names = if kind == Kind::Dir { r.names } else { None };
        files.insert(path, Entry::Found { meta, content, names });
    }
    if let Some(path) = members.keys().next() {
        return Err(bad(format!("{path} is in the tar but not in the manifest")));
    }
    files.not_read = manifest.not_read;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> (Vec<u8>, FileSet, Accounts) {
        let ps = b"UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init\n".to_vec();
        let mut files = FileSet::default();
        let meta = |kind, mode, uid, gid, size| Meta { kind, mode, uid, gid, size };
        let config = b"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n".to_vec();
        files.insert(
            "/var/lib/kubelet/config.yaml".into(),
            Entry::Found {
                meta: meta(Kind::File, 0o644, 0, 0, config.len() as u64),
                content: Some(Content::plain(config)),
                names: None,
            },
        );
        let redacted = Content { bytes: b"secret: <redacted>\n".to_vec(), sha256: [7; 32], redacted: true };
        files.insert(
            "/etc/kubernetes/enc/encryption-config.yaml".into(),
            Entry::Found { meta: meta(Kind::File, 0o600, 0, 0, 1234), content: Some(redacted), names: None },
        );
        files.insert(
            "/etc/kubernetes/pki/ca.key".into(),
            Entry::Found { meta: meta(Kind::File, 0o600, 0, 0, 1679), content: None, names: None },
        );
        files.insert(
            "/etc/kubernetes/pki".into(),
            Entry::Found {
                meta: meta(Kind::Dir, 0o755, 0, 0, 4096),
                content: None,
                names: Some(vec!["ca.crt".into(), "ca.key".into(), "etcd".into()]),
            },
        );
        files.insert(
            "/etc/kubernetes/manifests".into(),
            Entry::Found { meta: meta(Kind::Dir, 0o700, 0, 0, 4096), content: None, names: None },
        );
        let deep = format!("/opt/{}config.yaml", "very-long-directory-name/".repeat(8));
        files.insert(
            deep,
            Entry::Found {
                meta: meta(Kind::File, 0o640, 998, 997, 0),
                content: Some(Content::plain(Vec::new())),
                names: None,
            },
        );
        files.insert("/var/lib/etcd".into(), Entry::Problem(Problem::Denied));
        files.insert("/etc/kubernetes/admission.yaml".into(), Entry::Problem(Problem::Missing));
        files.insert(
            "/var/log/huge.yaml".into(),
            Entry::Problem(Problem::TooLarge { size: 2 << 20, limit: 1 << 20, meta: None }),
        );
        files.insert("/etc/k".into(), Entry::Problem(Problem::OverBudget { what: "file count (200)".into() }));
        files.insert("/run/x".into(), Entry::Problem(Problem::Failed { message: "odd \"answer\"\n".into() }));
        files.insert(
            "/run/link".into(),
            Entry::Found { meta: meta(Kind::Symlink, 0o777, 0, 0, 12), content: None, names: None },
        );
        files.insert(
            "/dev/null".into(),
            Entry::Found { meta: meta(Kind::Other, 0o666, 0, 0, 0), content: None, names: None },
        );
        let mut accounts = Accounts::default();
        accounts.add_user(0, "root");
        accounts.add_group(0, "root");
        accounts.add_user(998, "etcd");
        accounts.add_group(997, "etcd-readers");
        (ps, files, accounts)
    }

    fn roundtrip(ps: &[u8], files: &FileSet, accounts: &Accounts) -> Snapshot {
        let mut out = Vec::new();
        write(&mut out, ps, files, accounts).unwrap();
        read(out.as_slice(), &TarLimits::DEFAULT).unwrap()
    }

    #[test]
    fn write_then_read_gives_the_scan_back() {
        let (ps, files, accounts) = sample();
        let back = roundtrip(&ps, &files, &accounts);
        assert_eq!(back.ps, ps);
        assert_eq!(back.files, files, "every entry, problems and stat-only files included");
        assert_eq!((back.made_by, back.notes.len()), (MadeBy::Fleetaudit, 0));
        assert_eq!(back.accounts.owner(998, 997), "etcd:etcd-readers");
        assert_eq!(back.accounts.owner(0, 0), "root:root");

        // Deterministic: the same scan gives the same bytes.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write(&mut a, &ps, &files, &accounts).unwrap();
        write(&mut b, &ps, &files, &accounts).unwrap();
        assert_eq!(a, b);

        // A bare process table (nothing read) stays "not read"; an empty read set stays read.
        assert!(roundtrip(&ps, &FileSet::none(), &accounts).files.not_read);
        assert!(!roundtrip(&ps, &FileSet::default(), &accounts).files.not_read);
    }

    #[test]
    fn the_tar_lists_and_extracts_as_a_tar() {
        let (ps, files, accounts) = sample();
        let mut out = Vec::new();
        write(&mut out, &ps, &files, &accounts).unwrap();
        let mut archive = tar::Archive::new(out.as_slice());
        let mut names = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            names.push((
                e.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                h.username().unwrap().map(str::to_owned),
                h.mtime().unwrap(),
            ));
        }
        assert_eq!(names[0].0, PS_MEMBER, "ps-ef.txt at the top");
        assert_eq!(names[1].0, MANIFEST_MEMBER);
        let key = names.iter().find(|n| n.0 == "etc/kubernetes/pki/ca.key").unwrap();
        assert_eq!((key.1, key.2.as_deref(), key.3), (0o600, Some("root"), 0));
        assert!(names.iter().any(|n| n.0 == "etc/kubernetes/pki/" || n.0 == "etc/kubernetes/pki"));
        assert!(!names.iter().any(|n| n.0.starts_with('/') || n.0.contains("etcd") && n.0.starts_with("var")));
    }

    #[test]
    fn what_write_refuses() {
        let (ps, _, accounts) = sample();
        for path in ["relative/path", "/a/../b", "/a//b", "/ps-ef.txt", "/fleetaudit-snapshot.json", "/"] {
            let mut files = FileSet::default();
            files.insert(path.into(), Entry::Problem(Problem::Missing));
            let e = write(&mut Vec::new(), &ps, &files, &accounts).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{path}: {e}");
        }
    }
}
