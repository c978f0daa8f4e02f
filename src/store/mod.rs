//! The store: the history of every scan, in an SQLite file or a PostgreSQL database.
//!
//! Owns: the schema (`migrations/sqlite/` and `migrations/postgres/`, applied on every open that may migrate,
//! so no caller ever sees an un-migrated database), which backend a [`Database`] names (`sqlite`, `postgres`:
//! each side's dialect and its compilation of `batch.rs`),
//! atomic per-host writes, deduplication of evidence, result sets and the files a scan read (`file_sets`), the
//! scan lock, marking scans whose process died as interrupted, retention ([`Store::prune`]), and every read the
//! report, the outputs and `history` make (`reads`, `file_sets`, `x509`): they get domain rows, never a pool.
//! Must not touch: SSH, rules evaluation, HTML. It stores the verdicts it is given and never judges them.
//!
//! The database is an interface: people query it with `sqlite3` or `psql`, so the table and view names are
//! stable and documented column by column in `migrations/sqlite/20261129000000_initial.sql`. A host's verdicts are stored once as
//! a *result set*, shared by every scan and host that produced exactly the same ones, so a rescan of an
//! unchanged fleet adds about a hundred bytes per host. That only holds while the evidence and reasons given to
//! [`Store::record_hosts`] do not carry values that change on every scan (a `ps` line number, a timestamp).
//! [`Store::prune`] deletes old scans and whatever only they used; the file keeps its size and later scans
//! reuse the space.
//!
//! Views, with example queries (run by the tests; keep them valid):
//!
//! - `findings`: every verdict of every scan; a host that could not be audited has one `error` row per rule.
//! - `latest_findings`: `findings` of each host's most recent scan that has ended (complete or interrupted).
//! - `rule_compliance`: pass/fail/error/not_applicable counts and `compliance_pct` per scan and rule (from
//!   `scan_rule_counts`, which [`Store::record_hosts`] keeps in the same transaction as the hosts it counts).
//! - `host_status`: each host's latest outcome and verdict counts.
//! - `changes`: per scan, the verdicts that differ from the host's previous scan.
//! - `host_files`, `latest_host_files`, `file_changes`: the files each scan read on each host, and how they
//!   changed; see `file_sets` and `migrations/sqlite/20261202000000_host_files.sql` (their example queries are tested
//!   there and in `tests/store_files.rs`).
//!
//! ```sql
//! -- The scans, newest first, and how many of their hosts were recorded.
//! SELECT id, started_at, finished_at, status, rules_version, hosts_total,
//!        (SELECT count(*) FROM scan_hosts WHERE scan_id = scans.id) AS recorded
//!   FROM scans ORDER BY id DESC LIMIT 10;
//!
//! -- Everything that needs attention now: failed rules and hosts that could not be judged.
//! SELECT host, cluster, rule_id, severity, status, reason
//!   FROM latest_findings WHERE status IN ('fail', 'error') ORDER BY host, rule_id;
//!
//! -- One host's verdicts in scan 1, with the process line that decided each.
//! SELECT rule_id, status, reason, json_extract(evidence, '$[0].cmdline') AS cmdline
//!   FROM findings WHERE scan_id = 1 AND host = 'cp-1' ORDER BY rule_id;
//!
//! -- The least-followed rules of the latest complete scan.
//! SELECT rule_id, cis, title, pass, fail, error, not_applicable, round(compliance_pct, 1) AS pct
//!   FROM rule_compliance
//!  WHERE scan_id = (SELECT max(id) FROM scans WHERE status = 'complete')
//!  ORDER BY compliance_pct, rule_id;
//!
//! -- Hosts whose last scan could not audit them, and why.
//! SELECT host, address, scanned_at, error_kind, error_message
//!   FROM host_status WHERE outcome = 'error' ORDER BY host;
//!
//! -- Per cluster: hosts, failed verdicts now.
//! SELECT cluster, count(*) AS hosts, sum(fail) AS failed_verdicts
//!   FROM host_status GROUP BY cluster ORDER BY cluster;
//!
//! -- What changed in the latest ended scan.
//! SELECT host, rule_id, previous_status, status FROM changes
//!  WHERE scan_id = (SELECT max(id) FROM scans WHERE status <> 'running') ORDER BY host, rule_id;
//!
//! -- One rule's history on one host.
//! SELECT scan_id, status, reason FROM findings WHERE host = 'cp-1' AND rule_id = 'cis-1.2.6' ORDER BY scan_id;
//! ```

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::model::Status;

mod file_sets;
mod postgres;
mod reads;
mod shared;
mod sqlite;
#[cfg(test)]
mod tests;
mod x509;

pub use file_sets::{FileChange, FileChangeKind, FilesPage};
#[doc(hidden)]
pub use reads::sql as read_sql;
pub use reads::{Change, ClusterCounts, HistoryRow, HostTransition, ResultRow, RuleRow, ScanHost, ScanMeta, ScanRow};
pub use shared::{Joined, Scanner};
pub use x509::{
    CertFile, ClusterFinding, ClusterHistoryRow, ClusterHost, ClusterInputs, ClusterRuleMeta, HeldCertificate,
};

/// The schema, embedded at build time (`build.rs` makes a new migration file trigger a rebuild).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
/// The same schema in PostgreSQL's dialect, under the same version numbers.
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// At most this many values are bound to one statement (SQLite's limit is 32,766, PostgreSQL's 65,535).
const MAX_BINDS: usize = 32_000;

/// What can go wrong with the history; each message says what failed and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create database {path}: {source}; check that the directory exists and is writable")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot open database {path}: {source}; check that it is a fleetaudit SQLite database")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("another scan ({holder}) is using {path}; wait for it to finish or stop it")]
    Locked { path: PathBuf, holder: String },
    #[error("cannot lock {path}: {source}; check that its directory is writable")]
    Lock { path: PathBuf, source: io::Error },
    #[error(
        "cannot update the schema of {path}: {source}; a database written by a newer fleetaudit needs that version"
    )]
    Migrate { path: PathBuf, source: sqlx::migrate::MigrateError },
    #[error(
        "cannot connect to the PostgreSQL database {url}: {source}; check the URL, that the server is up, and the \
         password (PGPASSWORD or ~/.pgpass, never the inventory)"
    )]
    Connect { url: String, source: sqlx::Error },
    #[error(
        "cannot update the schema of {url}: {source}; the role fleetaudit connects as must own the schema to \
         migrate it (run one `fleetaudit scan` as the owner role), and a database written by a newer fleetaudit \
         needs that version"
    )]
    MigrateServer { url: String, source: sqlx::migrate::MigrateError },
    #[error(
        "the database {url} has {}, this fleetaudit needs schema version {expected}; run `fleetaudit scan` once \
         as the role that owns the schema to migrate it (or use the fleetaudit that wrote it)",
        .found.map_or("no fleetaudit schema".to_owned(), |v| format!("schema version {v}"))
    )]
    Schema { url: String, found: Option<i64>, expected: i64 },
    #[error(
        "TLS to the PostgreSQL database {url} failed: {source}; {}",
        if *verified {
            "fleetaudit verifies the server's certificate against the system's CAs and its name against the URL's \
             host by default (sslmode=verify-full): add sslrootcert=/path/to/ca.pem to the URL for a private CA, \
             or choose sslmode in the URL (sslmode=disable only for a loopback tunnel)"
        } else {
            "check the URL's sslmode and sslrootcert, and the server's ssl settings"
        }
    )]
    Tls { url: String, source: sqlx::Error, verified: bool },
    #[error("this run's shared scan {scan_id} already ended: other scanners did it")]
    RunDone { scan_id: i64 },
    #[error("scans are shared by scanners on PostgreSQL only; this history is an SQLite file")]
    NotShared,
    #[error(
        "the running shared scan {scan_id} of this inventory was started with {what}; give every scanner the same \
         inventory and fleetaudit version, or wait for scan {scan_id} to end"
    )]
    SharedDiffers { scan_id: i64, what: String },
    #[error("database error while trying to {what}: {source}")]
    Query { what: &'static str, source: sqlx::Error },
    #[error("scan {scan_id} is not running (finished, or marked interrupted by another process); start a new scan")]
    NotRunning { scan_id: i64 },
    #[error("cannot prune the history down to 0 scans; keep at least 1 (the newest scan is the fleet's current state)")]
    KeepNone,
    #[error(
        "cannot store what the scan saw of {path:?} on {host}: {why}; this is a bug in fleetaudit, please report it"
    )]
    BadFile { host: String, path: String, why: &'static str },
}

pub(crate) fn query_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

/// Proof that this process is the only scan writing to an SQLite database: an exclusive lock on `<db>.lock`
/// (on PostgreSQL, where scanners share scans, a token that excludes nobody).
///
/// The operating system releases the file lock when the file is closed, so a scan killed with SIGKILL never
/// leaves a stale lock behind; the lock file itself stays (deleting it would let a third process lock a
/// different inode).
#[derive(Debug)]
pub struct ScanLock {
    /// The locked file; none on PostgreSQL.
    _file: Option<File>,
    place: String,
}

impl ScanLock {
    /// What is locked: the lock file's path, or the database's URL (password hidden).
    pub fn place(&self) -> &str {
        &self.place
    }
}

/// The metadata of one rule, stored once per rule-set version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMeta {
    pub rule_id: String,
    pub cis: String,
    pub title: String,
    pub component: String,
    pub severity: String,
    /// Why the rule matters.
    pub rationale: String,
    /// How to fix a failing host.
    pub remediation: String,
    /// The test the rule applies, described for people.
    pub test: String,
    /// `automated` or `manual`, as CIS marks the check.
    pub assessment: String,
    /// Its CIS numbers in earlier benchmark versions: a JSON array (`[{"cis":"1.2.6","benchmarks":[...]}]`).
    pub cis_previous: String,
}

/// A host as the inventory describes it; upserted by name at each scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    pub name: String,
    pub cluster: Option<String>,
    pub address: String,
    pub port: u16,
    pub roles: Vec<String>,
}

/// One verdict to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRecord {
    pub rule_id: String,
    pub status: Status,
    pub reason: String,
    /// A JSON document (the database rejects anything else).
    pub evidence: Option<String>,
}

/// One path as a scan saw it on a host: its inode, the contents kept (secrets already redacted), or why it
/// could not be learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub path: String,
    /// `file`, `dir`, `symlink`, `other`; `None` when the path could not be learned.
    pub kind: Option<String>,
    /// Permission bits (`0o600`).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `root:root` by the host's own names (a number where it has none).
    pub owner: Option<String>,
    pub size: Option<u64>,
    /// SHA-256 (hex) of the contents as kept, for a file read (see `files::redact::admit`).
    pub sha256: Option<String>,
    /// Whether secrets were redacted from the contents.
    pub redacted: bool,
    /// The contents as kept, for a file read (a config document, an environment reduced to what rules read).
    pub content: Option<Vec<u8>>,
    /// For a path that could not be learned: the kind (`missing`, `denied`, `too_large`, `over_budget`,
    /// `unavailable`, `failed`, `not_in_snapshot`) and what to do.
    pub problem: Option<String>,
    pub problem_message: Option<String>,
    /// For a certificate file: the roles its certificates play on the host (`kubelet-serving`), in name order;
    /// empty for every other file.
    pub roles: Vec<String>,
}

impl FileRecord {
    /// A path that could not be learned: its problem's `kind` (see [`FileRecord::problem`]) and what to do.
    pub fn of_problem(path: &str, kind: &str, message: &str) -> FileRecord {
        FileRecord {
            path: path.to_owned(),
            kind: None,
            mode: None,
            uid: None,
            gid: None,
            owner: None,
            size: None,
            sha256: None,
            redacted: false,
            content: None,
            problem: Some(kind.to_owned()),
            problem_message: Some(message.to_owned()),
            roles: Vec::new(),
        }
    }
}

/// What the scan learned about one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostResult {
    /// The host's process table was judged, with the files its processes name: one finding per rule.
    Audited { ps_format: String, processes: u32, findings: Vec<FindingRecord>, files: Vec<FileRecord> },
    /// The host could not be audited; `kind` is short and machine-readable (`unreachable`, `host_key_changed`).
    Error { kind: String, message: String },
}

/// One host's part of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOutcome {
    pub host: HostRecord,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub duration_ms: u64,
    pub host_key_fingerprint: Option<String>,
    /// The host certificate the host proved its key with, when a CA vouched for it.
    pub host_certificate: Option<HostCertificateRecord>,
    pub result: HostResult,
}

/// A host certificate to store (`host_certificates`): who signed it, and which one it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCertificateRecord {
    /// SHA-256 of the certificate (hex): the deduplication key.
    pub sha256: String,
    pub ca_fingerprint: String,
    pub serial: u64,
    pub key_id: String,
    pub principals: Vec<String>,
    /// RFC 3339 UTC, `always` or `forever`.
    pub valid_after: String,
    pub valid_before: String,
    /// `certificate signed by CA SHA256:..., serial 42, key id "node-1"`.
    pub description: String,
}

/// What [`Store::prune`] deleted: rows of `scans`, `result_sets` (with their `results`), `evidence`, `host_keys`
/// (with `host_certificates`), `file_sets` (with their `file_set_members`), `file_observations`, `file_contents`
/// and `hosts`. The `scan_hosts` and `scan_rule_counts` rows of the deleted scans go with them, uncounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub scans: u64,
    pub result_sets: u64,
    pub evidence: u64,
    pub host_keys: u64,
    pub file_sets: u64,
    pub file_observations: u64,
    pub file_contents: u64,
    pub hosts: u64,
}

/// Where the history is: an SQLite file, or a PostgreSQL database (`postgres://` or `postgresql://` URL).
///
/// A URL's password is never shown: [`Database`]'s `Display` prints `***` in its place. Give the password
/// with `PGPASSWORD` or `~/.pgpass` rather than in the URL; an inventory may not name one at all.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Database {
    /// A `postgres://` / `postgresql://` URL is PostgreSQL; anything else is the path of an SQLite file.
    pub fn parse(text: &str) -> Database {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Database::Postgres(text.to_owned())
        } else {
            Database::Sqlite(PathBuf::from(text))
        }
    }

    /// The SQLite file, if the history is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }

    /// Whether the URL carries a password (`postgres://user:secret@host/db`).
    pub fn has_password(&self) -> bool {
        match self {
            Database::Sqlite(_) => false,
            Database::Postgres(url) => url_password_span(url).is_some(),
        }
    }
}

/// The value of query parameter `name` in a URL (`...?host=/run/postgresql&sslmode=disable`), undecoded.
fn url_parameter<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1.split('#').next()?;
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// The byte range of the password in `scheme://user:password@host...`, if there is one.
fn url_password_span(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    let at = url[start..authority_end].rfind('@')? + start;
    let colon = url[start..at].find(':')? + start;
    Some(colon + 1..at)
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => match url_password_span(url) {
                Some(span) => write!(f, "{}***{}", &url[..span.start], &url[span.end..]),
                None => f.write_str(url),
            },
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({self})")
    }
}

/// The connection pool of one backend.
#[derive(Debug, Clone)]
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$pool` bound to the store's pool and `$side` to its backend's module (`sqlite` or
/// `postgres`: its `BEGIN_WRITE`, `NOW` and `batch`). The body is compiled once per backend, against each
/// driver's own types.
macro_rules! on_pool {
    ($store:expr, |$pool:ident, $side:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => {
                #[allow(unused_imports)]
                use $crate::store::sqlite as $side;
                $body
            }
            $crate::store::Pool::Postgres($pool) => {
                #[allow(unused_imports)]
                use $crate::store::postgres as $side;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// The scan history. Owns the connection pool; every method is one transaction.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    database: Database,
}

impl Store {
    /// Opens (creating it, readable by its owner only, if it does not exist) and migrates an SQLite database.
    #[tracing::instrument(level = "trace", skip_all, err)]
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        // SQLite would create the file with the umask's permissions; create it ourselves so verdicts and host
        // names are private from the first byte. The -wal and -shm files inherit the database file's mode.
        match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(StoreError::Create { path: path.to_path_buf(), source }),
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            // WAL: people can query while a scan writes. NORMAL is durable at every checkpoint and never
            // corrupts; a power cut loses at most the last transactions, which the next scan redoes.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .optimize_on_close(true, None);
        let pool = SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        MIGRATOR.run(&pool).await.map_err(|source| StoreError::Migrate { path: path.to_path_buf(), source })?;
        Ok(Store { pool: Pool::Sqlite(pool), database: Database::Sqlite(path.to_path_buf()) })
    }

    /// Opens the history at `location`: an SQLite file as [`Store::open`] does, or a PostgreSQL database,
    /// migrated (`migrations/postgres/`) unless `migrate` is false (a read-only role cannot, and `report`
    /// and `history` do not need to: they then refuse a schema older or newer than this build's).
    #[tracing::instrument(level = "trace", skip_all, err)]
    pub async fn connect(location: &Database, migrate: bool) -> Result<Store, StoreError> {
        let url = match location {
            Database::Sqlite(path) => return Store::open(path).await,
            Database::Postgres(url) => url,
        };
        let shown = location.to_string();
        let options: sqlx::postgres::PgConnectOptions =
            url.parse().map_err(|source| StoreError::Connect { url: shown.clone(), source })?;
        // Over TCP the connection is TLS, the server's certificate verified against the system's CAs (or the
        // URL's sslrootcert) and its name against the host, unless the URL or PGSSLMODE chooses otherwise
        // (libpq's default, prefer, takes an unverified or no TLS, which would let a machine in the middle read
        // verdicts and credentials). A Unix socket has no TLS and needs none.
        let socket = options.get_socket().is_some() || options.get_host().starts_with('/');
        let chosen = url_parameter(url, "sslmode").is_some() || std::env::var_os("PGSSLMODE").is_some();
        let verified = !socket && !chosen;
        let options = if verified { options.ssl_mode(sqlx::postgres::PgSslMode::VerifyFull) } else { options };
        // rustls's verdict on the certificate comes back as an I/O error of kind InvalidData.
        let connect_err = |source: sqlx::Error| match source {
            sqlx::Error::Tls(_) => StoreError::Tls { url: shown.clone(), source, verified },
            sqlx::Error::Io(ref e) if !socket && e.kind() == io::ErrorKind::InvalidData => {
                StoreError::Tls { url: shown.clone(), source, verified }
            }
            source => StoreError::Connect { url: shown.clone(), source },
        };
        // One connection first, for its own error: the pool retries a refused or failing connection until its
        // timeout and then says only that it timed out.
        let probe = sqlx::ConnectOptions::connect(&options).await.map_err(connect_err)?;
        let _ = sqlx::Connection::close(probe).await;
        // Every statement is one round trip to a server that may be far away; a scan writes from one task
        // and the report reads from one, so a few connections are enough.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.application_name("fleetaudit"))
            .await
            .map_err(connect_err)?;
        // Migrated only when behind: the scanner role may write rows but not create tables, so only the owner
        // role's first scan after an upgrade migrates (README "PostgreSQL").
        match check_schema(&pool, &shown).await {
            Ok(()) => {}
            Err(StoreError::Schema { found, expected, .. }) if migrate && found.is_none_or(|f| f < expected) => {
                POSTGRES_MIGRATOR
                    .run(&pool)
                    .await
                    .map_err(|source| StoreError::MigrateServer { url: shown.clone(), source })?;
            }
            Err(e) => return Err(e),
        }
        Ok(Store { pool: Pool::Postgres(pool), database: location.clone() })
    }

    /// Where this history is.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Takes the scan lock without waiting: if another process holds it, fails at once with
    /// [`StoreError::Locked`] naming that process. SQLite: an exclusive lock on `<db>.lock`. PostgreSQL: no
    /// lock, as scanners share scans there ([`Store::join_scan`]); writers and a prune are ordered by
    /// transaction advisory locks instead.
    #[tracing::instrument(level = "trace", skip_all, err)]
    pub async fn lock(&self) -> Result<ScanLock, StoreError> {
        match (&self.pool, &self.database) {
            (Pool::Sqlite(_), Database::Sqlite(path)) => ScanLock::on_file(path),
            // Scans on PostgreSQL are shared (`Store::join_scan`): no scanner excludes another. The token is what
            // `prune` and `begin_scan` take.
            (Pool::Postgres(_), _) => Ok(ScanLock { _file: None, place: self.database.to_string() }),
            (Pool::Sqlite(_), Database::Postgres(_)) => unreachable!("an SQLite pool is opened from a path"),
        }
    }

    /// Starts a scan and returns its id. Scans still marked running are first marked interrupted: the lock
    /// proves their process is gone. That holds on SQLite; on PostgreSQL, where the lock excludes nobody,
    /// scanners start scans with [`Store::join_scan`], and this is for one writer alone (the store's tests).
    #[tracing::instrument(level = "trace", skip_all, err, fields(scan_id = tracing::field::Empty))]
    pub async fn begin_scan(
        &self,
        _lock: &ScanLock,
        inventory: &str,
        rules_version: &str,
        rules: &[RuleMeta],
        hosts_total: usize,
    ) -> Result<i64, StoreError> {
        let scan_id = on_pool!(self, |pool, side| {
            let mut tx = pool.begin_with(side::BEGIN_WRITE).await.map_err(query_err("begin a scan"))?;
            let interrupted = side::batch::mark_interrupted_raw(&mut tx).await?;
            if interrupted > 0 {
                tracing::warn!(interrupted, "scans left running by a process that died are now marked interrupted");
            }
            side::batch::store_rules(&mut tx, rules_version, rules).await?;
            // Times are computed by the database, so every stored time has one format: RFC 3339 UTC with
            // milliseconds.
            let insert = format!(
                "INSERT INTO scans (started_at, status, inventory, rules_version, fleetaudit_version, hosts_total, pid)
                 VALUES ({}, 'running', $1, $2, $3, $4, $5)
                 RETURNING id",
                side::NOW
            );
            let scan_id: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(insert))
                .bind(inventory)
                .bind(rules_version)
                .bind(env!("CARGO_PKG_VERSION"))
                .bind(i64::try_from(hosts_total).unwrap_or(i64::MAX))
                .bind(i64::from(std::process::id()))
                .fetch_one(&mut *tx)
                .await
                .map_err(query_err("begin a scan"))?;
            tx.commit().await.map_err(query_err("begin a scan"))?;
            scan_id
        });
        tracing::Span::current().record("scan_id", scan_id);
        Ok(scan_id)
    }

    /// Records a batch of hosts in one transaction: every host of the batch is stored completely, or (on error)
    /// none is. Evidence and result sets already stored are reused, not copied.
    #[tracing::instrument(level = "trace", skip_all, err, fields(scan_id = scan_id, hosts = outcomes.len()))]
    pub async fn record_hosts(&self, scan_id: i64, outcomes: &[HostOutcome]) -> Result<(), StoreError> {
        on_pool!(self, |pool, side| {
            let mut tx = pool.begin_with(side::BEGIN_WRITE).await.map_err(query_err("record hosts"))?;
            if let Some(guard) = side::WRITE_GUARD {
                sqlx::query(guard).execute(&mut *tx).await.map_err(query_err("record hosts"))?;
            }
            let status: Option<String> = sqlx::query_scalar("SELECT status FROM scans WHERE id = $1")
                .bind(scan_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_err("record hosts"))?;
            if status.as_deref() != Some("running") {
                return Err(StoreError::NotRunning { scan_id });
            }
            side::batch::record_batch(&mut tx, scan_id, outcomes).await?;
            tx.commit().await.map_err(query_err("record hosts"))
        })
    }

    /// Ends a scan: `complete`, or `interrupted` when it was stopped before every host was recorded.
    #[tracing::instrument(level = "trace", skip_all, err, fields(scan_id = scan_id, interrupted = interrupted))]
    pub async fn finish_scan(&self, scan_id: i64, interrupted: bool) -> Result<(), StoreError> {
        let status = if interrupted { "interrupted" } else { "complete" };
        let done = on_pool!(self, |pool, side| {
            let update = format!(
                "UPDATE scans SET status = $2, finished_at = {} WHERE id = $1 AND status = 'running'",
                side::NOW
            );
            sqlx::query(sqlx::AssertSqlSafe(update))
                .bind(scan_id)
                .bind(status)
                .execute(pool)
                .await
                .map_err(query_err("finish the scan"))?
                .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotRunning { scan_id });
        }
        Ok(())
    }

    /// Marks every scan still `running` as `interrupted` and returns how many there were. Call it only while
    /// holding the [`ScanLock`]: otherwise a live scan would be marked.
    #[tracing::instrument(level = "trace", skip_all, err)]
    pub async fn mark_interrupted(&self) -> Result<u64, StoreError> {
        on_pool!(self, |pool, side| {
            let mut conn = pool.acquire().await.map_err(query_err("mark scans interrupted"))?;
            side::batch::mark_interrupted_raw(&mut conn).await
        })
    }

    /// Deletes all but the newest `keep` scans (by id) that are not running, with their `scan_hosts` and
    /// `scan_rule_counts` rows, then every result set (with its results), evidence document, host key, file set
    /// (with its members), file observation and file contents that no remaining scan references, and every host
    /// that no remaining `scan_hosts` row references. One transaction:
    /// readers see the history before or after, never half-pruned. Returns what was deleted; pruning again with
    /// the same `keep` deletes nothing.
    ///
    /// A `running` scan is never deleted and does not count towards `keep`: the `_lock` proves no other process
    /// is scanning, but this process may be. `keep` must be at least 1 ([`StoreError::KeepNone`] otherwise): the
    /// newest ended scan is the fleet's current state.
    ///
    /// What the kept scans show is unchanged: their `findings`, `rule_compliance`, `host_files`, and the
    /// `latest_findings`, `latest_host_files` and `host_status` rows that come from them. Two things do go with the
    /// deleted scans: hosts that only they included leave the `latest_` views and `host_status`, and a `changes`
    /// or `file_changes` row whose `previous_scan_id` was deleted is gone (the oldest kept scan has nothing left
    /// to compare with).
    ///
    /// An SQLite file does not shrink: freed pages are reused by later scans. Only a database whose
    /// `auto_vacuum` is `incremental` gives them back here (`PRAGMA incremental_vacuum`); otherwise `VACUUM`,
    /// which rewrites the whole file, is the user's choice. PostgreSQL's autovacuum reclaims the rows.
    #[tracing::instrument(level = "trace", skip_all, err, fields(keep = keep))]
    pub async fn prune(&self, _lock: &ScanLock, keep: u32) -> Result<Pruned, StoreError> {
        if keep == 0 {
            return Err(StoreError::KeepNone);
        }
        let what = "prune the history";
        let deleted = on_pool!(self, |pool, side| {
            let mut tx = pool.begin_with(side::BEGIN_WRITE).await.map_err(query_err(what))?;
            if let Some(guard) = side::PRUNE_GUARD {
                sqlx::query(guard).execute(&mut *tx).await.map_err(query_err(what))?;
            }
            let mut deleted = [0; PRUNE_STATEMENTS.len()];
            for (sql, rows) in PRUNE_STATEMENTS.iter().zip(&mut deleted) {
                let mut query = sqlx::query(*sql);
                if sql.contains("$1") {
                    query = query.bind(i64::from(keep));
                }
                *rows = query.execute(&mut *tx).await.map_err(query_err(what))?.rows_affected();
            }
            if matches!(self.pool, Pool::Sqlite(_)) {
                // 2 = INCREMENTAL. It can only be chosen before the first table is created or with a VACUUM;
                // fleetaudit leaves the default (NONE), so this only runs for a user who chose it.
                let auto_vacuum: i64 =
                    sqlx::query_scalar("PRAGMA auto_vacuum").fetch_one(&mut *tx).await.map_err(query_err(what))?;
                if auto_vacuum == 2 {
                    sqlx::query("PRAGMA incremental_vacuum").execute(&mut *tx).await.map_err(query_err(what))?;
                }
            }
            tx.commit().await.map_err(query_err(what))?;
            deleted
        });
        // Host certificates go with host keys' count: both are what hosts presented.
        let [
            _,
            _,
            _,
            _,
            _,
            scans,
            _,
            result_sets,
            evidence,
            host_keys,
            certificates,
            _,
            file_sets,
            file_observations,
            _,
            _,
            file_contents,
            _,
            hosts,
        ] = deleted;
        let host_keys = host_keys + certificates;
        let pruned =
            Pruned { scans, result_sets, evidence, host_keys, file_sets, file_observations, file_contents, hosts };
        tracing::debug!(?pruned, "pruned the history");
        Ok(pruned)
    }

    /// The SQLite pool, for the store's own tests: nothing outside the store runs SQL.
    #[cfg(test)]
    fn pool(&self) -> &sqlx::SqlitePool {
        match &self.pool {
            Pool::Sqlite(pool) => pool,
            Pool::Postgres(_) => panic!("the store's SQLite tests were given a PostgreSQL store"),
        }
    }

    /// Closes every connection (for SQLite, this checkpoints the WAL and refreshes the query planner's
    /// statistics).
    pub async fn close(self) {
        on_pool!(self, |pool, _side| pool.close().await)
    }
}

/// Whether the PostgreSQL database's schema is this build's: [`StoreError::Schema`] says what it has instead
/// (`found: None` for a database fleetaudit never migrated).
async fn check_schema(pool: &sqlx::PgPool, shown: &str) -> Result<(), StoreError> {
    let table: Option<String> = sqlx::query_scalar("SELECT CAST(to_regclass('_sqlx_migrations') AS TEXT)")
        .fetch_one(pool)
        .await
        .map_err(|source| StoreError::Connect { url: shown.to_owned(), source })?;
    let applied: Vec<i64> = match table {
        None => Vec::new(),
        Some(_) => sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await
            .map_err(|source| StoreError::Connect { url: shown.to_owned(), source })?,
    };
    let expected: Vec<i64> = POSTGRES_MIGRATOR.iter().map(|m| m.version).collect();
    if applied != expected {
        return Err(StoreError::Schema {
            url: shown.to_owned(),
            found: applied.last().copied(),
            expected: expected.last().copied().unwrap_or_default(),
        });
    }
    Ok(())
}

impl ScanLock {
    /// Takes the scan lock of the SQLite database at `path` without waiting, before or without opening it: the
    /// exclusive lock on `<db>.lock` (see [`Store::lock`]).
    pub fn on_file(path: &Path) -> Result<ScanLock, StoreError> {
        let lock_path = lock_path(path);
        let lock_err = |source| StoreError::Lock { path: lock_path.clone(), source };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // The holder wrote one short line; a larger file is not ours to print.
                let _ = (&mut file).take(200).read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "process unknown".to_string(),
                    h => h.to_string(),
                };
                return Err(StoreError::Locked { path: path.to_path_buf(), holder });
            }
            Err(TryLockError::Error(source)) => return Err(lock_err(source)),
        }
        file.set_len(0).map_err(lock_err)?;
        writeln!(file, "pid {} started {}", std::process::id(), crate::model::utc_now()).map_err(lock_err)?;
        Ok(ScanLock { _file: Some(file), place: lock_path.display().to_string() })
    }
}

/// The statements of [`Store::prune`], in order; `$1` is `keep`.
///
/// Children first: foreign keys are checked at each statement. Every `NOT IN` subquery leaves NULLs out, or the
/// NULL of a host that was not audited would make `NOT IN` unknown and nothing would be deleted. SQLite looks up
/// every deleted parent row in its child tables; `migrations/sqlite/20261129010000_prune_indexes.sql` makes those
/// look-ups index searches (`prune_searches_the_history_by_index` checks the plans).
const PRUNE_STATEMENTS: [&str; 19] = [
    "DELETE FROM scan_work WHERE scan_id IN (
         SELECT id FROM scans WHERE status <> 'running' AND id NOT IN (
             SELECT id FROM scans WHERE status <> 'running' ORDER BY id DESC LIMIT $1))",
    "DELETE FROM scanners WHERE scan_id IN (
         SELECT id FROM scans WHERE status <> 'running' AND id NOT IN (
             SELECT id FROM scans WHERE status <> 'running' ORDER BY id DESC LIMIT $1))",
    "DELETE FROM cluster_results WHERE scan_id IN (
         SELECT id FROM scans WHERE status <> 'running' AND id NOT IN (
             SELECT id FROM scans WHERE status <> 'running' ORDER BY id DESC LIMIT $1))",
    "DELETE FROM scan_rule_counts WHERE scan_id IN (
         SELECT id FROM scans WHERE status <> 'running' AND id NOT IN (
             SELECT id FROM scans WHERE status <> 'running' ORDER BY id DESC LIMIT $1))",
    "DELETE FROM scan_hosts WHERE scan_id IN (
         SELECT id FROM scans WHERE status <> 'running' AND id NOT IN (
             SELECT id FROM scans WHERE status <> 'running' ORDER BY id DESC LIMIT $1))",
    "DELETE FROM scans WHERE status <> 'running' AND id NOT IN (
         SELECT id FROM scans WHERE status <> 'running' ORDER BY id DESC LIMIT $1)",
    // Through result_sets, so that only the doomed sets' results are read (by primary key), not all of them.
    "DELETE FROM results WHERE set_id IN (
         SELECT id FROM result_sets WHERE id NOT IN (
             SELECT result_set_id FROM scan_hosts WHERE result_set_id IS NOT NULL))",
    "DELETE FROM result_sets WHERE id NOT IN (SELECT result_set_id FROM scan_hosts WHERE result_set_id IS NOT NULL)",
    "DELETE FROM evidence WHERE id NOT IN (SELECT evidence_id FROM results WHERE evidence_id IS NOT NULL)
         AND id NOT IN (SELECT evidence_id FROM cluster_results WHERE evidence_id IS NOT NULL)",
    "DELETE FROM host_keys WHERE id NOT IN (SELECT host_key_id FROM scan_hosts WHERE host_key_id IS NOT NULL)",
    "DELETE FROM host_certificates WHERE id NOT IN (
         SELECT host_certificate_id FROM scan_hosts WHERE host_certificate_id IS NOT NULL)",
    // As results: only the doomed sets' members are read.
    "DELETE FROM file_set_members WHERE set_id IN (
         SELECT id FROM file_sets WHERE id NOT IN (SELECT file_set_id FROM scan_hosts WHERE file_set_id IS NOT NULL))",
    "DELETE FROM file_sets WHERE id NOT IN (SELECT file_set_id FROM scan_hosts WHERE file_set_id IS NOT NULL)",
    "DELETE FROM file_observations WHERE id NOT IN (SELECT observation_id FROM file_set_members)",
    "DELETE FROM content_certificates WHERE content_id NOT IN (
         SELECT content_id FROM file_observations WHERE content_id IS NOT NULL)",
    "DELETE FROM x509_contents WHERE content_id NOT IN (
         SELECT content_id FROM file_observations WHERE content_id IS NOT NULL)",
    "DELETE FROM file_contents WHERE id NOT IN (SELECT content_id FROM file_observations WHERE content_id IS NOT NULL)",
    "DELETE FROM x509_certificates WHERE id NOT IN (SELECT certificate_id FROM content_certificates)",
    "DELETE FROM hosts WHERE id NOT IN (SELECT host_id FROM scan_hosts)",
];

/// A finding and the SHA-256 of its evidence.
pub(crate) type WithEvidenceHash<'a> = (&'a FindingRecord, Option<[u8; 32]>);

/// The findings sorted by rule id, each with the SHA-256 of its evidence, and the identity of the set: SHA-256
/// over that (rule_id, status, reason, evidence hash) list. Every field is length-prefixed so that no two
/// different lists encode to the same bytes.
pub(crate) fn result_set_key(findings: &[FindingRecord]) -> (Vec<WithEvidenceHash<'_>>, [u8; 32]) {
    // The rules of one component share its evidence document: hash each distinct document once (a host has a
    // handful; comparing bytes is far cheaper than hashing them again).
    let mut seen: Vec<(&str, [u8; 32])> = Vec::new();
    let mut sorted: Vec<WithEvidenceHash<'_>> = Vec::with_capacity(findings.len());
    for f in findings {
        let hash = f.evidence.as_deref().map(|e| match seen.iter().find(|(s, _)| *s == e) {
            Some((_, h)) => *h,
            None => {
                let h: [u8; 32] = Sha256::digest(e).into();
                seen.push((e, h));
                h
            }
        });
        sorted.push((f, hash));
    }
    sorted.sort_by(|a, b| a.0.rule_id.cmp(&b.0.rule_id));
    let mut hasher = Sha256::new();
    hasher.update(b"fleetaudit result set v1\0");
    for (finding, evidence) in &sorted {
        field(&mut hasher, finding.rule_id.as_bytes());
        field(&mut hasher, finding.status.as_str().as_bytes());
        field(&mut hasher, finding.reason.as_bytes());
        match evidence {
            Some(hash) => {
                hasher.update([1]);
                hasher.update(hash);
            }
            None => hasher.update([0]),
        }
    }
    let hash = hasher.finalize().into();
    (sorted, hash)
}

/// Feeds one field of a deduplication key to `hasher`, length first, so that no two different lists of fields
/// encode to the same bytes.
pub(crate) fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// Lowercase hex, as sha256sum prints a hash.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `<db>.lock`, beside the database.
fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}
