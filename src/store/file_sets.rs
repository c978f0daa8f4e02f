//! The files a scan read on each host, in the history: writing them deduplicated, and reading them back.
//!
//! Owns: the keys that deduplicate observations (what a scan saw of one path) and file sets (one host's
//! observations in one scan), their interning inside `batch::record_batch`'s transaction (`batch.rs`), and
//! the reads the report and the JSON output make ([`Store::host_files`], [`Store::scan_files`],
//! [`Store::file_changes`]). The schema and the views are `migrations/sqlite/20261202000000_host_files.sql`.
//! Must not touch: what a file means (the engine judges it), secrets (redacted before they get here).
//!
//! Every value, paths included, is a bound parameter: a path a host named may hold quotes, newlines or any
//! UTF-8, and is stored and read back byte for byte.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::{FileRecord, Store, StoreError, field, on_pool, query_err};

/// The kinds of path `file_observations.kind` accepts.
const KINDS: [&str; 4] = ["file", "dir", "symlink", "other"];
/// The problems `file_observations.problem` accepts.
const PROBLEMS: [&str; 7] =
    ["missing", "denied", "too_large", "over_budget", "unavailable", "failed", "not_in_snapshot"];
/// Contents are inserted in statements of at most this many bytes, so a batch of large files is not copied
/// into one statement's arguments all at once.
pub(super) const CONTENT_BYTES_PER_STATEMENT: usize = 16 << 20;

/// A file record, the host it is from (for errors) and its observation's key.
pub(super) type Keyed<'a> = (&'a FileRecord, [u8; 32], &'a str);

/// One page of a scan's files ([`Store::scan_files`]): hosts in name order, and the files of each file set they
/// point at, each set once however many of the page's hosts share it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilesPage {
    /// Each host of the page with its file set's id (a key of `sets`). Empty when there is no more.
    pub hosts: Vec<(String, i64)>,
    /// The files of each set, in path order.
    pub sets: HashMap<i64, Vec<FileRecord>>,
}

/// What differs about a path between a host's scan and its previous scan with files (the `file_changes` view).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileChangeKind {
    /// In this scan's files, not in the previous scan's.
    Added,
    /// In the previous scan's files, not in this one's.
    Removed,
    /// The path's problem differs: it went missing, became unreadable, or can be read again.
    Problem,
    /// Its type.
    Kind,
    /// Its permission bits.
    Mode,
    /// Its owner (names, uid or gid).
    Owner,
    /// Its contents' SHA-256 (or, for a file only stat'ed both times, its size).
    Content,
}

impl FileChangeKind {
    /// The word the `file_changes` view uses.
    pub fn as_str(self) -> &'static str {
        match self {
            FileChangeKind::Added => "added",
            FileChangeKind::Removed => "removed",
            FileChangeKind::Problem => "problem",
            FileChangeKind::Kind => "kind",
            FileChangeKind::Mode => "mode",
            FileChangeKind::Owner => "owner",
            FileChangeKind::Content => "content",
        }
    }

    fn parse(word: &str) -> Option<FileChangeKind> {
        [
            FileChangeKind::Added,
            FileChangeKind::Removed,
            FileChangeKind::Problem,
            FileChangeKind::Kind,
            FileChangeKind::Mode,
            FileChangeKind::Owner,
            FileChangeKind::Content,
        ]
        .into_iter()
        .find(|k| k.as_str() == word)
    }
}

/// A row of the `file_changes` view. The `previous_` fields are the previous scan's; either side is `None` where
/// the path was absent (added, removed) or had a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub scan_id: i64,
    pub previous_scan_id: i64,
    pub host: String,
    pub path: String,
    /// `[Added]`, `[Removed]`, or what differs, in the order `Problem`, `Kind`, `Mode`, `Owner`, `Content`.
    pub change: Vec<FileChangeKind>,
    pub previous_mode: Option<u32>,
    pub mode: Option<u32>,
    /// As `ls -l` prints them: `-rw-------`.
    pub previous_permissions: Option<String>,
    pub permissions: Option<String>,
    pub previous_owner: Option<String>,
    pub owner: Option<String>,
    pub previous_sha256: Option<String>,
    pub sha256: Option<String>,
    pub previous_problem: Option<String>,
    pub problem: Option<String>,
}

impl FileRecord {
    /// The roles as the `roles` column holds them: space-separated, `None` when there are none.
    pub fn roles_text(&self) -> Option<String> {
        (!self.roles.is_empty()).then(|| self.roles.join(" "))
    }

    /// The path's type and mode as `ls -l` prints them (`-rw-------`, `drwx------`, `lrwxrwxrwx`; `?` for a type
    /// `other`), as the `file_attributes` view computes them; `None` for a path that could not be learned.
    pub fn permissions(&self) -> Option<String> {
        let (kind, mode) = (self.kind.as_deref()?, self.mode?);
        let mut out = String::with_capacity(10);
        out.push(match kind {
            "file" => '-',
            "dir" => 'd',
            "symlink" => 'l',
            _ => '?',
        });
        // (read, write, execute, special bit, special letter) for user, group, other.
        for (r, w, x, special, letter) in
            [(0o400, 0o200, 0o100, 0o4000, 's'), (0o40, 0o20, 0o10, 0o2000, 's'), (0o4, 0o2, 0o1, 0o1000, 't')]
        {
            out.push(if mode & r != 0 { 'r' } else { '-' });
            out.push(if mode & w != 0 { 'w' } else { '-' });
            out.push(match (mode & special != 0, mode & x != 0) {
                (true, true) => letter,
                (true, false) => letter.to_ascii_uppercase(),
                (false, true) => 'x',
                (false, false) => '-',
            });
        }
        Some(out)
    }
}

/// Checks one host's files as the schema will, so that a bad record fails naming the host and path rather than
/// with a bare CHECK constraint; returns them sorted by path, each with its observation key, and the key of the
/// whole set: SHA-256 over the members' keys in path order.
pub(super) fn file_set_key<'a>(
    host: &'a str,
    files: &'a [FileRecord],
) -> Result<(Vec<Keyed<'a>>, [u8; 32]), StoreError> {
    let mut keyed = Vec::with_capacity(files.len());
    for file in files {
        check(file).map_err(|why| bad_file(host, file, why))?;
        keyed.push((file, observation_key(file), host));
    }
    keyed.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    if let Some(pair) = keyed.windows(2).find(|pair| pair[0].0.path == pair[1].0.path) {
        return Err(bad_file(host, pair[0].0, "the path is recorded twice (a host's files hold one record per path)"));
    }
    let mut hasher = Sha256::new();
    hasher.update(b"fleetaudit file set v1\0");
    hasher.update((keyed.len() as u64).to_le_bytes());
    for (_, key, _) in &keyed {
        hasher.update(key);
    }
    Ok((keyed, hasher.finalize().into()))
}

pub(super) fn bad_file(host: &str, file: &FileRecord, why: &'static str) -> StoreError {
    StoreError::BadFile { host: host.to_string(), path: file.path.clone(), why }
}

/// What the schema's CHECK constraints on `file_observations` refuse, said for people.
fn check(f: &FileRecord) -> Result<(), &'static str> {
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match (&f.kind, &f.problem) {
        (Some(kind), None) => {
            if !KINDS.contains(&kind.as_str()) {
                return Err("kind must be file, dir, symlink or other");
            }
            if f.mode.is_none() || f.uid.is_none() || f.gid.is_none() || f.size.is_none() {
                return Err("a path found needs its mode, uid, gid and size (a default would be a lie)");
            }
            if f.mode.is_some_and(|m| m > 0o7777) {
                return Err("mode holds more than permission bits (0o7777)");
            }
            if f.problem_message.is_some() {
                return Err("a path found has no problem message");
            }
        }
        (None, Some(problem)) => {
            if !PROBLEMS.contains(&problem.as_str()) {
                return Err("unknown problem kind");
            }
            if f.problem_message.is_none() {
                return Err("a problem needs its message");
            }
            if f.mode.is_some() || f.uid.is_some() || f.gid.is_some() || f.owner.is_some() || f.size.is_some() {
                return Err("a path with a problem has no mode, owner or size");
            }
            if f.sha256.is_some() || f.content.is_some() || f.redacted {
                return Err("a path with a problem has no contents");
            }
        }
        _ => return Err("exactly one of kind and problem must be set"),
    }
    let role_word =
        |r: &String| !r.is_empty() && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !f.roles.iter().all(role_word) || f.roles.windows(2).any(|w| w[0] >= w[1]) {
        return Err("roles must be distinct lower-case words in name order");
    }
    match (&f.sha256, &f.content) {
        (Some(sha), _) if !hex(sha) => Err("sha256 must be 64 lowercase hex digits"),
        (None, Some(_)) => Err("contents kept need their sha256"),
        _ => Ok(()),
    }
}

/// The observation's identity: SHA-256 over every field (contents by their hash, and whether they were kept).
fn observation_key(f: &FileRecord) -> [u8; 32] {
    fn optional(hasher: &mut Sha256, value: Option<&[u8]>) {
        match value {
            Some(bytes) => {
                hasher.update([1]);
                field(hasher, bytes);
            }
            None => hasher.update([0]),
        }
    }
    let mut hasher = Sha256::new();
    hasher.update(b"fleetaudit file observation v1\0");
    field(&mut hasher, f.path.as_bytes());
    optional(&mut hasher, f.kind.as_deref().map(str::as_bytes));
    for number in [f.mode, f.uid, f.gid] {
        optional(&mut hasher, number.map(u32::to_le_bytes).as_ref().map(|b| &b[..]));
    }
    optional(&mut hasher, f.owner.as_deref().map(str::as_bytes));
    optional(&mut hasher, f.size.map(u64::to_le_bytes).as_ref().map(|b| &b[..]));
    optional(&mut hasher, f.sha256.as_deref().map(str::as_bytes));
    hasher.update([u8::from(f.redacted), u8::from(f.content.is_some())]);
    optional(&mut hasher, f.problem.as_deref().map(str::as_bytes));
    optional(&mut hasher, f.problem_message.as_deref().map(str::as_bytes));
    // Only certificate files have roles; every other observation keeps the key it had before roles existed.
    if let Some(roles) = f.roles_text() {
        hasher.update(b"roles\0");
        field(&mut hasher, roles.as_bytes());
    }
    hasher.finalize().into()
}

/// A stored integer that does not fit the Rust type: only a database written by something else holds one.
pub(super) fn decode_err(what: &'static str, column: &'static str) -> StoreError {
    StoreError::Query {
        what,
        source: sqlx::Error::ColumnDecode { index: column.to_string(), source: "out of range".into() },
    }
}

/// A row of the `file_changes` view.
#[derive(sqlx::FromRow)]
struct ChangeRow {
    scan_id: i64,
    previous_scan_id: i64,
    host: String,
    path: String,
    change: String,
    previous_mode: Option<String>,
    mode: Option<String>,
    previous_permissions: Option<String>,
    permissions: Option<String>,
    previous_owner: Option<String>,
    owner: Option<String>,
    previous_sha256: Option<String>,
    sha256: Option<String>,
    previous_problem: Option<String>,
    problem: Option<String>,
}

impl Store {
    /// What scan `scan_id` saw of `host`'s files, in path order, with their contents when `content` is set.
    /// `None` when the scan has no files for the host: it did not include it, could not audit it, or was stored
    /// before files were (an audited host without files has `Some` of an empty list).
    #[tracing::instrument(level = "trace", skip_all, err, fields(scan_id = scan_id))]
    pub async fn host_files(
        &self,
        scan_id: i64,
        host: &str,
        content: bool,
    ) -> Result<Option<Vec<FileRecord>>, StoreError> {
        let what = "read a host's files";
        on_pool!(self, |pool, side| {
            let mut conn = pool.acquire().await.map_err(query_err(what))?;
            let set_id: Option<Option<i64>> = sqlx::query_scalar(
                "SELECT sh.file_set_id FROM scan_hosts sh JOIN hosts h ON h.id = sh.host_id
                  WHERE sh.scan_id = $1 AND h.name = $2",
            )
            .bind(scan_id)
            .bind(host)
            .fetch_optional(&mut *conn)
            .await
            .map_err(query_err(what))?;
            let Some(Some(set_id)) = set_id else { return Ok(None) };
            let mut sets = side::batch::set_files(&mut conn, &[set_id], content, what).await?;
            Ok(sets.remove(&set_id))
        })
    }

    /// A page of scan `scan_id`'s files: the first `limit` hosts (by name) after `after` that have files in the
    /// scan, and each distinct file set of theirs once. Memory stays at one page: pass the last host's name as
    /// `after` for the next page, until `hosts` comes back empty. Contents only when `content` is set.
    #[tracing::instrument(level = "trace", skip_all, err, fields(scan_id = scan_id))]
    pub async fn scan_files(
        &self,
        scan_id: i64,
        after: Option<&str>,
        limit: u32,
        content: bool,
    ) -> Result<FilesPage, StoreError> {
        let what = "read a scan's files";
        on_pool!(self, |pool, side| {
            let mut conn = pool.acquire().await.map_err(query_err(what))?;
            let hosts: Vec<(String, i64)> = sqlx::query_as(
                "SELECT h.name, sh.file_set_id FROM scan_hosts sh JOIN hosts h ON h.id = sh.host_id
                  WHERE sh.scan_id = $1 AND sh.file_set_id IS NOT NULL AND ($2 IS NULL OR h.name > $2)
                  ORDER BY h.name LIMIT $3",
            )
            .bind(scan_id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await
            .map_err(query_err(what))?;
            let mut set_ids: Vec<i64> = hosts.iter().map(|(_, id)| *id).collect();
            set_ids.sort_unstable();
            set_ids.dedup();
            let sets = side::batch::set_files(&mut conn, &set_ids, content, what).await?;
            Ok(FilesPage { hosts, sets })
        })
    }

    /// The `file_changes` of scan `scan_id` (for one host when `host` is given), ordered by host and path: at most
    /// `limit` of them after `after` (the last change of the previous page), so a fleet-wide change is read a
    /// page at a time.
    #[tracing::instrument(level = "trace", skip_all, err, fields(scan_id = scan_id))]
    pub async fn file_changes(
        &self,
        scan_id: i64,
        host: Option<&str>,
        after: Option<&FileChange>,
        limit: u32,
    ) -> Result<Vec<FileChange>, StoreError> {
        let what = "read the file changes";
        let rows: Vec<ChangeRow> = on_pool!(self, |pool, _side| sqlx::query_as(
            "SELECT scan_id, previous_scan_id, host, path, change, previous_mode, mode, previous_permissions,
                    permissions, previous_owner, owner, previous_sha256, sha256, previous_problem, problem
               FROM file_changes
              WHERE scan_id = $1 AND ($2 IS NULL OR host = $2) AND ($3 IS NULL OR (host, path) > ($3, $4))
              ORDER BY host, path LIMIT $5",
        )
        .bind(scan_id)
        .bind(host)
        .bind(after.map(|c| c.host.as_str()))
        .bind(after.map(|c| c.path.as_str()))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(query_err(what))?);
        let octal = |mode: Option<String>, column| {
            mode.map(|m| u32::from_str_radix(&m, 8).map_err(|_| decode_err(what, column))).transpose()
        };
        rows.into_iter()
            .map(|r| {
                let change = r
                    .change
                    .split(',')
                    .map(|word| FileChangeKind::parse(word).ok_or_else(|| decode_err(what, "change")))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(FileChange {
                    scan_id: r.scan_id,
                    previous_scan_id: r.previous_scan_id,
                    host: r.host,
                    path: r.path,
                    change,
                    previous_mode: octal(r.previous_mode, "previous_mode")?,
                    mode: octal(r.mode, "mode")?,
                    previous_permissions: r.previous_permissions,
                    permissions: r.permissions,
                    previous_owner: r.previous_owner,
                    owner: r.owner,
                    previous_sha256: r.previous_sha256,
                    sha256: r.sha256,
                    previous_problem: r.previous_problem,
                    problem: r.problem,
                })
            })
            .collect()
    }
}
