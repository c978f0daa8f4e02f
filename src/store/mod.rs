//! The store: the SQLite history of every scan.
//!
//! Owns: the schema (`migrations/sqlite/`, applied on every open, so no caller ever sees an un-migrated database),
//! atomic per-host writes, deduplication of evidence, result sets and the files a scan read (`file_sets`), the
//! scan lock, marking scans whose process died as interrupted, retention ([`Store::prune`]), and every read the
//! report, the outputs and `history` make (`reads`, `file_sets`, `x509`): they get domain rows, never a pool.
//! Must not touch: SSH, rules evaluation, HTML. It stores the verdicts it is given and never judges them.
//!
//! The database is an interface: people query it with `sqlite3`, so the table and view names are stable and
//! documented column by column in `migrations/sqlite/20261129000000_initial.sql`. A host's verdicts are stored once as
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::hash::Hash;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::query_builder::Separated;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Decode, Encode, QueryBuilder, Sqlite, SqliteConnection, SqlitePool, Type};

use crate::model::Status;

mod file_sets;
mod reads;
#[cfg(test)]
mod tests;
mod x509;

pub use file_sets::{FileChange, FileChangeKind, FilesPage};
#[doc(hidden)]
pub use reads::sql as read_sql;
pub use reads::{Change, ClusterCounts, HistoryRow, HostTransition, ResultRow, RuleRow, ScanHost, ScanMeta, ScanRow};
pub use x509::{
    CertFile, ClusterFinding, ClusterHistoryRow, ClusterHost, ClusterInputs, ClusterRuleMeta, HeldCertificate,
};

/// The schema, embedded at build time (`build.rs` makes a new migration file trigger a rebuild).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

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

fn query_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

/// Proof that this process is the only scan writing to a database: an exclusive lock on `<db>.lock`.
///
/// The operating system releases the lock when the file is closed, so a scan killed with SIGKILL never leaves a
/// stale lock behind; the file itself stays (deleting it would let a third process lock a different inode).
#[derive(Debug)]
pub struct ScanLock {
    _file: File,
    path: PathBuf,
}

impl ScanLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
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

/// The scan history. Owns the connection pool; every method is one transaction.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating it, readable by its owner only, if it does not exist) and migrates the database.
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
        Ok(Store { pool })
    }

    /// Takes the scan lock of the database at `path` without waiting: if another process holds it, fails at once
    /// with [`StoreError::Locked`] naming that process.
    #[tracing::instrument(level = "trace", skip_all, err)]
    pub fn lock(path: &Path) -> Result<ScanLock, StoreError> {
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
        Ok(ScanLock { _file: file, path: lock_path })
    }

    /// Starts a scan and returns its id. Scans still marked running are first marked interrupted: the lock
    /// proves their process is gone.
    #[tracing::instrument(level = "trace", skip_all, err, fields(scan_id = tracing::field::Empty))]
    pub async fn begin_scan(
        &self,
        _lock: &ScanLock,
        inventory: &str,
        rules_version: &str,
        rules: &[RuleMeta],
        hosts_total: usize,
    ) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(query_err("begin a scan"))?;
        let interrupted = mark_interrupted_raw(&mut tx).await?;
        if interrupted > 0 {
            tracing::warn!(interrupted, "scans left running by a process that died are now marked interrupted");
        }
        for rule in rules {
            sqlx::query(
                "INSERT OR IGNORE INTO rules (rules_version, rule_id, cis, title, component, severity,
                                              rationale, remediation, test, assessment, cis_previous)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .bind(rules_version)
            .bind(&rule.rule_id)
            .bind(&rule.cis)
            .bind(&rule.title)
            .bind(&rule.component)
            .bind(&rule.severity)
            .bind(&rule.rationale)
            .bind(&rule.remediation)
            .bind(&rule.test)
            .bind(&rule.assessment)
            .bind(&rule.cis_previous)
            .execute(&mut *tx)
            .await
            .map_err(query_err("store the rule set"))?;
        }
        // Times are computed by SQLite, so every stored time has one format: RFC 3339 UTC with milliseconds.
        let scan_id: i64 = sqlx::query_scalar(
            "INSERT INTO scans (started_at, status, inventory, rules_version, fleetaudit_version, hosts_total, pid)
             VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'running', ?1, ?2, ?3, ?4, ?5)
             RETURNING id",
        )
        .bind(inventory)
        .bind(rules_version)
        .bind(env!("CARGO_PKG_VERSION"))
        .bind(i64::try_from(hosts_total).unwrap_or(i64::MAX))
        .bind(i64::from(std::process::id()))
        .fetch_one(&mut *tx)
        .await
        .map_err(query_err("begin a scan"))?;
        tx.commit().await.map_err(query_err("begin a scan"))?;
        tracing::Span::current().record("scan_id", scan_id);
        Ok(scan_id)
    }

    /// Records a batch of hosts in one transaction: every host of the batch is stored completely, or (on error)
    /// none is. Evidence and result sets already stored are reused, not copied.
    #[tracing::instrument(level = "trace", skip_all, err, fields(scan_id = scan_id, hosts = outcomes.len()))]
    pub async fn record_hosts(&self, scan_id: i64, outcomes: &[HostOutcome]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(query_err("record hosts"))?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM scans WHERE id = ?1")
            .bind(scan_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_err("record hosts"))?;
        if status.as_deref() != Some("running") {
            return Err(StoreError::NotRunning { scan_id });
        }
        record_batch(&mut tx, scan_id, outcomes).await?;
        tx.commit().await.map_err(query_err("record hosts"))
    }

    /// Ends a scan: `complete`, or `interrupted` when it was stopped before every host was recorded.
    #[tracing::instrument(level = "trace", skip_all, err, fields(scan_id = scan_id, interrupted = interrupted))]
    pub async fn finish_scan(&self, scan_id: i64, interrupted: bool) -> Result<(), StoreError> {
        let status = if interrupted { "interrupted" } else { "complete" };
        let done = sqlx::query(
            "UPDATE scans SET status = ?2, finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
              WHERE id = ?1 AND status = 'running'",
        )
        .bind(scan_id)
        .bind(status)
        .execute(&self.pool)
        .await
        .map_err(query_err("finish the scan"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotRunning { scan_id });
        }
        Ok(())
    }

    /// Marks every scan still `running` as `interrupted` and returns how many there were. Call it only while
    /// holding the [`ScanLock`]: otherwise a live scan would be marked.
    #[tracing::instrument(level = "trace", skip_all, err)]
    pub async fn mark_interrupted(&self) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(query_err("mark scans interrupted"))?;
        mark_interrupted_raw(&mut conn).await
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
    /// The file does not shrink: freed pages are reused by later scans. Only a database whose `auto_vacuum` is
    /// `incremental` gives them back here (`PRAGMA incremental_vacuum`); otherwise `VACUUM`, which rewrites the
    /// whole file, is the user's choice.
    #[tracing::instrument(level = "trace", skip_all, err, fields(keep = keep))]
    pub async fn prune(&self, _lock: &ScanLock, keep: u32) -> Result<Pruned, StoreError> {
        if keep == 0 {
            return Err(StoreError::KeepNone);
        }
        let what = "prune the history";
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(query_err(what))?;
        let mut deleted = [0; PRUNE_STATEMENTS.len()];
        for (sql, rows) in PRUNE_STATEMENTS.iter().zip(&mut deleted) {
            let mut query = sqlx::query(*sql);
            if sql.contains("?1") {
                query = query.bind(keep);
            }
            *rows = query.execute(&mut *tx).await.map_err(query_err(what))?.rows_affected();
        }
        // Host certificates go with host keys' count: both are what hosts presented.
        let [
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

        // 2 = INCREMENTAL. It can only be chosen before the first table is created or with a VACUUM; fleetaudit
        // leaves the default (NONE), so this only runs for a user who chose it.
        let auto_vacuum: i64 =
            sqlx::query_scalar("PRAGMA auto_vacuum").fetch_one(&mut *tx).await.map_err(query_err(what))?;
        if auto_vacuum == 2 {
            sqlx::query("PRAGMA incremental_vacuum").execute(&mut *tx).await.map_err(query_err(what))?;
        }
        tx.commit().await.map_err(query_err(what))?;
        let pruned =
            Pruned { scans, result_sets, evidence, host_keys, file_sets, file_observations, file_contents, hosts };
        tracing::debug!(?pruned, "pruned the history");
        Ok(pruned)
    }

    /// The pool, for the store's own tests: nothing outside the store runs SQL.
    #[cfg(test)]
    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection (which checkpoints the WAL and refreshes the query planner's statistics).
    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// The statements of [`Store::prune`], in order; `?1` is `keep`.
///
/// Children first: foreign keys are checked at each statement. Every `NOT IN` subquery leaves NULLs out, or the
/// NULL of a host that was not audited would make `NOT IN` unknown and nothing would be deleted. SQLite looks up
/// every deleted parent row in its child tables; `migrations/sqlite/20261129010000_prune_indexes.sql` makes those
/// look-ups index searches (`prune_searches_the_history_by_index` checks the plans).
const PRUNE_STATEMENTS: [&str; 17] = [
    "DELETE FROM cluster_results WHERE scan_id IN (
         SELECT id FROM scans WHERE status <> 'running' AND id NOT IN (
             SELECT id FROM scans WHERE status <> 'running' ORDER BY id DESC LIMIT ?1))",
    "DELETE FROM scan_rule_counts WHERE scan_id IN (
         SELECT id FROM scans WHERE status <> 'running' AND id NOT IN (
             SELECT id FROM scans WHERE status <> 'running' ORDER BY id DESC LIMIT ?1))",
    "DELETE FROM scan_hosts WHERE scan_id IN (
         SELECT id FROM scans WHERE status <> 'running' AND id NOT IN (
             SELECT id FROM scans WHERE status <> 'running' ORDER BY id DESC LIMIT ?1))",
    "DELETE FROM scans WHERE status <> 'running' AND id NOT IN (
         SELECT id FROM scans WHERE status <> 'running' ORDER BY id DESC LIMIT ?1)",
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

async fn mark_interrupted_raw(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let done = sqlx::query("UPDATE scans SET status = 'interrupted' WHERE status = 'running'")
        .execute(conn)
        .await
        .map_err(query_err("mark scans interrupted"))?;
    Ok(done.rows_affected())
}

/// At most this many values are bound to one statement (SQLite's limit is 32,766).
const MAX_BINDS: usize = 32_000;

/// Writes a batch of hosts inside the caller's transaction.
///
/// Each step is one multi-row statement for the whole batch rather than one per row: the sqlx SQLite driver runs
/// every statement on its own thread, and that round trip (~100 µs on a 2-core VM) dominated. Measured with
/// `views_stay_fast_at_ten_thousand_hosts` (10,000 new hosts × 56 rules, batches of 100, release build): 105 s
/// with one statement per row, 13 s batched; a rescan of hosts whose verdicts are already stored takes 1.4 s.
async fn record_batch(conn: &mut SqliteConnection, scan_id: i64, outcomes: &[HostOutcome]) -> Result<(), StoreError> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let host_ids = upsert_hosts(conn, outcomes).await?;

    let mut fingerprints: Vec<String> = outcomes.iter().filter_map(|o| o.host_key_fingerprint.clone()).collect();
    fingerprints.sort_unstable();
    fingerprints.dedup();
    let mut key_ids = find_ids(
        conn,
        "SELECT fingerprint, id FROM host_keys WHERE fingerprint IN (",
        &fingerprints,
        "store host keys",
    )
    .await?;
    let new_keys: Vec<&String> = fingerprints.iter().filter(|f| !key_ids.contains_key(*f)).collect();
    let inserted = insert_returning(
        conn,
        "INSERT INTO host_keys (fingerprint) ",
        " RETURNING fingerprint, id",
        &new_keys,
        1,
        |b, fingerprint| {
            b.push_bind(fingerprint.to_string());
        },
        "store host keys",
    )
    .await?;
    key_ids.extend(inserted);
    let cert_ids = intern_host_certificates(conn, outcomes).await?;

    let keyed: Vec<Option<(Vec<WithEvidenceHash<'_>>, [u8; 32])>> = outcomes
        .iter()
        .map(|o| match &o.result {
            HostResult::Audited { findings, .. } => Some(result_set_key(findings)),
            HostResult::Error { .. } => None,
        })
        .collect();
    let set_ids = intern_result_sets(conn, keyed.iter().flatten()).await?;
    let file_keys = outcomes
        .iter()
        .map(|o| match &o.result {
            HostResult::Audited { files, .. } => file_sets::file_set_key(&o.host.name, files).map(Some),
            HostResult::Error { .. } => Ok(None),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let file_set_ids = file_sets::intern_file_sets(conn, &file_keys).await?;

    let mut rows = Vec::with_capacity(outcomes.len());
    for ((outcome, key), file_key) in outcomes.iter().zip(&keyed).zip(&file_keys) {
        let host_id = *host_ids.get(&outcome.host.name).ok_or_else(unmatched)?;
        let host_key_id = match &outcome.host_key_fingerprint {
            Some(fingerprint) => Some(*key_ids.get(fingerprint).ok_or_else(unmatched)?),
            None => None,
        };
        let set_id = match key {
            Some((_, hash)) => Some(*set_ids.get(&hash[..]).ok_or_else(unmatched)?),
            None => None,
        };
        let cert_id = match &outcome.host_certificate {
            Some(c) => Some(*cert_ids.get(&c.sha256).ok_or_else(unmatched)?),
            None => None,
        };
        let file_set_id = match file_key {
            Some((_, hash)) => Some(*file_set_ids.get(&hash[..]).ok_or_else(unmatched)?),
            None => None,
        };
        rows.push((outcome, host_id, host_key_id, set_id, cert_id, file_set_id));
    }
    for chunk in rows.chunks(MAX_BINDS / 13) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO scan_hosts (scan_id, host_id, outcome, error_kind, error_message, started_at, duration_ms,
                                     host_key_id, ps_format, processes, result_set_id, host_certificate_id,
                                     file_set_id) ",
        );
        insert.push_values(chunk, |mut b, (outcome, host_id, host_key_id, set_id, cert_id, file_set_id)| {
            let (kind, error_kind, error_message, ps_format, processes) = match &outcome.result {
                HostResult::Audited { ps_format, processes, .. } => {
                    ("audited", None, None, Some(ps_format.clone()), Some(processes))
                }
                HostResult::Error { kind, message } => ("error", Some(kind.clone()), Some(message.clone()), None, None),
            };
            b.push_bind(scan_id)
                .push_bind(*host_id)
                .push_bind(kind)
                .push_bind(error_kind)
                .push_bind(error_message)
                .push_bind(outcome.started_at.clone())
                .push_bind(i64::try_from(outcome.duration_ms).unwrap_or(i64::MAX))
                .push_bind(*host_key_id)
                .push_bind(ps_format)
                .push_bind(processes)
                .push_bind(*set_id)
                .push_bind(*cert_id)
                .push_bind(*file_set_id);
        });
        insert.build().execute(&mut *conn).await.map_err(query_err("store hosts' scan outcomes"))?;
    }
    add_rule_counts(conn, scan_id, outcomes).await
}

/// The ids of the batch's host certificates, inserting those not stored yet.
async fn intern_host_certificates(
    conn: &mut SqliteConnection,
    outcomes: &[HostOutcome],
) -> Result<HashMap<String, i64>, StoreError> {
    let mut certs: Vec<&HostCertificateRecord> = outcomes.iter().filter_map(|o| o.host_certificate.as_ref()).collect();
    certs.sort_unstable_by(|a, b| a.sha256.cmp(&b.sha256));
    certs.dedup_by(|a, b| a.sha256 == b.sha256);
    let hashes: Vec<String> = certs.iter().map(|c| c.sha256.clone()).collect();
    let what = "store host certificates";
    let mut ids = find_ids(conn, "SELECT sha256, id FROM host_certificates WHERE sha256 IN (", &hashes, what).await?;
    let new: Vec<&&HostCertificateRecord> = certs.iter().filter(|c| !ids.contains_key(&c.sha256)).collect();
    let inserted = insert_returning(
        conn,
        "INSERT INTO host_certificates (sha256, ca_fingerprint, serial, key_id, principals, valid_after, \
         valid_before, description) ",
        " RETURNING sha256, id",
        &new,
        8,
        |b, c| {
            b.push_bind(c.sha256.clone())
                .push_bind(c.ca_fingerprint.clone())
                .push_bind(c.serial.to_string())
                .push_bind(c.key_id.clone())
                .push_bind(c.principals.join(","))
                .push_bind(c.valid_after.clone())
                .push_bind(c.valid_before.clone())
                .push_bind(c.description.clone());
        },
        what,
    )
    .await?;
    ids.extend(inserted);
    Ok(ids)
}

/// Adds the batch's verdicts to `scan_rule_counts`, which `rule_compliance` reads. A host that could not be
/// audited counts as error for every rule of the scan's rule set, as in `findings`.
async fn add_rule_counts(
    conn: &mut SqliteConnection,
    scan_id: i64,
    outcomes: &[HostOutcome],
) -> Result<(), StoreError> {
    let mut counts: BTreeMap<&str, [i64; 4]> = BTreeMap::new();
    let column = |status: Status| match status {
        Status::Pass => 0,
        Status::Fail => 1,
        Status::Error => 2,
        Status::NotApplicable => 3,
    };
    let mut unaudited = 0;
    for outcome in outcomes {
        match &outcome.result {
            HostResult::Audited { findings, .. } => {
                for finding in findings {
                    counts.entry(&finding.rule_id).or_default()[column(finding.status)] += 1;
                }
            }
            HostResult::Error { .. } => unaudited += 1,
        }
    }
    let rule_set: Vec<String> = if unaudited > 0 {
        sqlx::query_scalar(
            "SELECT m.rule_id FROM scans s JOIN rules m ON m.rules_version = s.rules_version WHERE s.id = ?1",
        )
        .bind(scan_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err("count verdicts"))?
    } else {
        Vec::new()
    };
    for rule_id in &rule_set {
        counts.entry(rule_id).or_default()[column(Status::Error)] += unaudited;
    }
    let counts: Vec<(&str, [i64; 4])> = counts.into_iter().collect();
    for chunk in counts.chunks(MAX_BINDS / 6) {
        let mut upsert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO scan_rule_counts (scan_id, rule_id, pass, fail, error, not_applicable) ",
        );
        upsert.push_values(chunk, |mut b, (rule_id, [pass, fail, error, not_applicable])| {
            b.push_bind(scan_id)
                .push_bind(rule_id.to_string())
                .push_bind(*pass)
                .push_bind(*fail)
                .push_bind(*error)
                .push_bind(*not_applicable);
        });
        upsert.push(
            " ON CONFLICT (scan_id, rule_id) DO UPDATE
                 SET pass = pass + excluded.pass, fail = fail + excluded.fail, error = error + excluded.error,
                     not_applicable = not_applicable + excluded.not_applicable",
        );
        upsert.build().execute(&mut *conn).await.map_err(query_err("count verdicts"))?;
    }
    Ok(())
}

/// Inserts or updates the batch's hosts (by name) and returns their ids.
async fn upsert_hosts(
    conn: &mut SqliteConnection,
    outcomes: &[HostOutcome],
) -> Result<HashMap<String, i64>, StoreError> {
    let mut ids = HashMap::with_capacity(outcomes.len());
    for chunk in outcomes.chunks(MAX_BINDS / 5) {
        let mut upsert = QueryBuilder::<Sqlite>::new("INSERT INTO hosts (name, cluster, address, port, roles) ");
        upsert.push_values(chunk, |mut b, outcome| {
            let host = &outcome.host;
            b.push_bind(host.name.clone())
                .push_bind(host.cluster.clone())
                .push_bind(host.address.clone())
                .push_bind(host.port)
                .push_bind(host.roles.join(","));
        });
        upsert.push(
            " ON CONFLICT (name) DO UPDATE
                 SET cluster = excluded.cluster, address = excluded.address, port = excluded.port,
                     roles = excluded.roles
              RETURNING name, id",
        );
        let rows: Vec<(String, i64)> =
            upsert.build_query_as().fetch_all(&mut *conn).await.map_err(query_err("store hosts"))?;
        ids.extend(rows);
    }
    Ok(ids)
}

/// Returns the ids of the result sets holding exactly these verdicts, storing the new ones with their results
/// and evidence. A stored set is immutable and was written with all its results in one transaction, so finding
/// its hash means finding all of it.
async fn intern_result_sets<'a>(
    conn: &mut SqliteConnection,
    sets: impl Iterator<Item = &'a (Vec<WithEvidenceHash<'a>>, [u8; 32])>,
) -> Result<HashMap<Vec<u8>, i64>, StoreError> {
    // Deduplicated in batch order, so ids follow the order hosts were scanned.
    let mut seen = HashSet::new();
    let unique: Vec<&(Vec<WithEvidenceHash<'a>>, [u8; 32])> = sets.filter(|(_, hash)| seen.insert(*hash)).collect();
    let hashes: Vec<Vec<u8>> = unique.iter().map(|(_, h)| h.to_vec()).collect();
    let mut ids =
        find_ids(conn, "SELECT sha256, id FROM result_sets WHERE sha256 IN (", &hashes, "store result sets").await?;
    let new: Vec<&(Vec<WithEvidenceHash<'a>>, [u8; 32])> =
        unique.into_iter().filter(|(_, hash)| !ids.contains_key(&hash[..])).collect();
    if new.is_empty() {
        return Ok(ids);
    }

    let mut seen = HashSet::new();
    let bodies: Vec<([u8; 32], &str)> = new
        .iter()
        .flat_map(|(items, _)| items.iter())
        .filter_map(|(finding, hash)| Some((*hash.as_ref()?, finding.evidence.as_deref()?)))
        .filter(|(hash, _)| seen.insert(*hash))
        .collect();
    let hashes: Vec<Vec<u8>> = bodies.iter().map(|(h, _)| h.to_vec()).collect();
    let mut evidence_ids =
        find_ids(conn, "SELECT sha256, id FROM evidence WHERE sha256 IN (", &hashes, "store evidence").await?;
    let new_bodies: Vec<&([u8; 32], &str)> =
        bodies.iter().filter(|(h, _)| !evidence_ids.contains_key(&h[..])).collect();
    let inserted = insert_returning(
        conn,
        "INSERT INTO evidence (sha256, body) ",
        " RETURNING sha256, id",
        &new_bodies,
        2,
        |b, (hash, body)| {
            b.push_bind(hash.to_vec()).push_bind(body.to_string());
        },
        "store evidence",
    )
    .await?;
    evidence_ids.extend(inserted);

    let new_hashes: Vec<Vec<u8>> = new.iter().map(|(_, h)| h.to_vec()).collect();
    let new_ids = insert_returning(
        conn,
        "INSERT INTO result_sets (sha256) ",
        " RETURNING sha256, id",
        &new_hashes,
        1,
        |b, hash| {
            b.push_bind(hash.clone());
        },
        "store result sets",
    )
    .await?;

    let mut results = Vec::new();
    for (items, hash) in &new {
        let set_id = *new_ids.get(&hash[..]).ok_or_else(unmatched)?;
        for (finding, evidence) in items {
            let evidence_id = match evidence {
                Some(hash) => Some(*evidence_ids.get(&hash[..]).ok_or_else(unmatched)?),
                None => None,
            };
            results.push((set_id, *finding, evidence_id));
        }
    }
    for chunk in results.chunks(MAX_BINDS / 5) {
        let mut insert =
            QueryBuilder::<Sqlite>::new("INSERT INTO results (set_id, rule_id, status, reason, evidence_id) ");
        insert.push_values(chunk, |mut b, (set_id, finding, evidence_id)| {
            b.push_bind(*set_id)
                .push_bind(finding.rule_id.clone())
                .push_bind(finding.status.as_str())
                .push_bind(finding.reason.clone())
                .push_bind(*evidence_id);
        });
        insert.build().execute(&mut *conn).await.map_err(query_err("store results"))?;
    }
    ids.extend(new_ids);
    Ok(ids)
}

/// A row just written or found is missing from what the database returned: a bug, or a concurrent writer that
/// ignored the scan lock.
fn unmatched() -> StoreError {
    StoreError::Query { what: "match the rows written to the batch", source: sqlx::Error::RowNotFound }
}

/// The ids of the rows whose unique key is in `keys`; `select` is `SELECT key, id FROM table WHERE key IN (`.
async fn find_ids<K>(
    conn: &mut SqliteConnection,
    select: &'static str,
    keys: &[K],
    what: &'static str,
) -> Result<HashMap<K, i64>, StoreError>
where
    K: for<'q> Encode<'q, Sqlite> + for<'r> Decode<'r, Sqlite> + Type<Sqlite> + Clone + Eq + Hash + Send + Unpin,
{
    let mut ids = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(MAX_BINDS) {
        let mut query = QueryBuilder::<Sqlite>::new(select);
        let mut list = query.separated(", ");
        for key in chunk {
            list.push_bind(key.clone());
        }
        list.push_unseparated(")");
        let rows: Vec<(K, i64)> = query.build_query_as().fetch_all(&mut *conn).await.map_err(query_err(what))?;
        ids.extend(rows);
    }
    Ok(ids)
}

/// Inserts `rows` (`insert` is `INSERT INTO table (key, ...) `; `push` binds one row's `binds_per_row` values)
/// and returns the new ids by key (`returning` is ` RETURNING key, id`).
async fn insert_returning<R, K>(
    conn: &mut SqliteConnection,
    insert: &'static str,
    returning: &'static str,
    rows: &[R],
    binds_per_row: usize,
    mut push: impl FnMut(&mut Separated<'_, Sqlite, &'static str>, &R),
    what: &'static str,
) -> Result<HashMap<K, i64>, StoreError>
where
    K: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + Eq + Hash + Send + Unpin,
{
    let mut ids = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(MAX_BINDS / binds_per_row) {
        let mut query = QueryBuilder::<Sqlite>::new(insert);
        query.push_values(chunk, |mut b, row| push(&mut b, row));
        query.push(returning);
        let rows: Vec<(K, i64)> = query.build_query_as().fetch_all(&mut *conn).await.map_err(query_err(what))?;
        ids.extend(rows);
    }
    Ok(ids)
}

/// A finding and the SHA-256 of its evidence.
type WithEvidenceHash<'a> = (&'a FindingRecord, Option<[u8; 32]>);

/// The findings sorted by rule id, each with the SHA-256 of its evidence, and the identity of the set: SHA-256
/// over that (rule_id, status, reason, evidence hash) list. Every field is length-prefixed so that no two
/// different lists encode to the same bytes.
fn result_set_key(findings: &[FindingRecord]) -> (Vec<WithEvidenceHash<'_>>, [u8; 32]) {
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
fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// Lowercase hex, as sha256sum prints a hash.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `<db>.lock`, beside the database.
fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}
