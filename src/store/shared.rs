//! Scans that several scanners share, on PostgreSQL: joining the running scan of an inventory (or creating it
//! with a row per host in `scan_work`), claiming hosts in batches under a lease (`FOR UPDATE SKIP LOCKED`), the
//! heartbeat that extends the leases, recording only hosts still held, and electing the one scanner that ends
//! the scan. Schema: `migrations/*/20261205000000_shared_scans.sql`.
//!
//! Owns: every statement of the above, and the rule that a host is recorded once (a scanner whose lease ran out
//! and was taken over drops its result). Must not touch: SSH, rules, which hosts a scanner can reach (the
//! inventory's `zone` says it, the scanner's `--zone` chooses).
//!
//! Times that decide (leases, liveness) are the database's clock in milliseconds, never a scanner's: scanners on
//! different machines disagree on the time, the server is one.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Pool, RuleMeta, Store, StoreError, postgres, query_err};
use crate::store::{HostOutcome, MAX_BINDS};

/// The database's clock now, in milliseconds since 1970.
const NOW_MS: &str = "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)";

/// The transaction advisory lock joining and ending shared scans take ("fleetjoi" in ASCII): one scanner at a
/// time decides whether a scan exists, is dead, or is over.
const JOIN_LOCK: i64 = 0x666c_6565_746a_6f69;

/// A scanner's part in a shared scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanner {
    /// `hostname pid 4242`: unique among the scanners alive at once.
    pub id: String,
    /// `--zone`: only hosts of this zone, or of none, are claimed. `None`: any host.
    pub zone: Option<String>,
    /// How long a claim lasts without a heartbeat: a scanner that dies loses its hosts this long after.
    pub lease: Duration,
}

impl Scanner {
    /// This process, as a scanner of `zone`.
    pub fn this_process(zone: Option<String>, lease: Duration) -> Scanner {
        let mut name = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates what fits.
        let ok = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } == 0;
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        let host = if ok { String::from_utf8_lossy(&name[..end]).into_owned() } else { "unknown".into() };
        Scanner { id: format!("{host} pid {}", std::process::id()), zone, lease }
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 4).max(1)
    }
}

/// What [`Store::join_scan`] found: the scan this scanner works on, and whether it started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub scan_id: i64,
    pub created: bool,
}

/// SHA-256 over the sorted (host, zone) list: scanners of one shared scan must have the same inventory.
fn inventory_key(hosts: &[(String, Option<String>)]) -> String {
    let mut sorted: Vec<&(String, Option<String>)> = hosts.iter().collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    hasher.update(b"fleetaudit shared inventory v1\0");
    for (host, zone) in sorted {
        super::field(&mut hasher, host.as_bytes());
        super::field(&mut hasher, zone.as_deref().unwrap_or("").as_bytes());
    }
    super::hex(&hasher.finalize())
}

impl Store {
    /// Whether scans on this database are shared by every scanner of an inventory (PostgreSQL), rather than one
    /// scanner's under the scan lock (SQLite).
    pub fn shares_scans(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    fn shared_pool(&self) -> Result<&sqlx::PgPool, StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => Ok(pool),
            Pool::Sqlite(_) => Err(StoreError::NotShared),
        }
    }

    /// Joins the running scan of `inventory`, or starts it with a row per host of `hosts` (name, zone). A running
    /// scan of the inventory none of whose scanners is alive is first ended as interrupted. Refused when the
    /// running scan was started with other rules or another inventory's hosts. `not_before` (RFC 3339 UTC, a
    /// daemon's scheduled time less a margin): a scan of the inventory that started since then and has ended is
    /// this run's, done by other scanners: [`StoreError::RunDone`] rather than a second scan of one run.
    #[tracing::instrument(level = "trace", skip_all, err, fields(scanner = %scanner.id))]
    pub async fn join_scan(
        &self,
        inventory: &str,
        rules_version: &str,
        rules: &[RuleMeta],
        hosts: &[(String, Option<String>)],
        scanner: &Scanner,
        not_before: Option<&str>,
    ) -> Result<Joined, StoreError> {
        let pool = self.shared_pool()?;
        let what = "join the shared scan";
        let key = inventory_key(hosts);
        let mut tx = pool.begin().await.map_err(query_err(what))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(JOIN_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(query_err(what))?;
        let dead = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE scans SET status = 'interrupted', finished_at = {}
              WHERE status = 'running' AND inventory = $1
                AND NOT EXISTS (SELECT 1 FROM scanners s WHERE s.scan_id = scans.id AND s.alive_until > {NOW_MS})",
            postgres::NOW
        )))
        .bind(inventory)
        .execute(&mut *tx)
        .await
        .map_err(query_err(what))?
        .rows_affected();
        if dead > 0 {
            tracing::warn!(dead, "shared scans whose scanners all died are now marked interrupted");
        }
        let running: Option<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT s.id, s.rules_version,
                    (SELECT w.inventory_sha256 FROM scanners w WHERE w.scan_id = s.id ORDER BY w.joined_at LIMIT 1)
               FROM scans s WHERE s.status = 'running' AND s.inventory = $1 ORDER BY s.id DESC LIMIT 1",
        )
        .bind(inventory)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_err(what))?;
        let joined = match running {
            Some((scan_id, version, first_key)) => {
                if version != rules_version {
                    return Err(StoreError::SharedDiffers {
                        scan_id,
                        what: format!("rules {version}, this scanner has {rules_version}"),
                    });
                }
                if first_key.as_deref().is_some_and(|k| k != key) {
                    return Err(StoreError::SharedDiffers {
                        scan_id,
                        what: "another inventory's hosts or zones".into(),
                    });
                }
                Joined { scan_id, created: false }
            }
            None => {
                if let Some(since) = not_before {
                    let done: Option<i64> = sqlx::query_scalar(
                        "SELECT id FROM scans WHERE inventory = $1 AND started_at >= $2 ORDER BY id DESC LIMIT 1",
                    )
                    .bind(inventory)
                    .bind(since)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(query_err(what))?;
                    if let Some(scan_id) = done {
                        return Err(StoreError::RunDone { scan_id });
                    }
                }
                postgres::batch::store_rules(&mut tx, rules_version, rules).await?;
                let scan_id: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO scans (started_at, status, inventory, rules_version, fleetaudit_version, hosts_total,
                                        pid)
                     VALUES ({}, 'running', $1, $2, $3, $4, $5) RETURNING id",
                    postgres::NOW
                )))
                .bind(inventory)
                .bind(rules_version)
                .bind(env!("CARGO_PKG_VERSION"))
                .bind(i64::try_from(hosts.len()).unwrap_or(i64::MAX))
                .bind(i64::from(std::process::id()))
                .fetch_one(&mut *tx)
                .await
                .map_err(query_err(what))?;
                for chunk in hosts.chunks(MAX_BINDS / 3) {
                    let mut insert =
                        sqlx::QueryBuilder::<sqlx::Postgres>::new("INSERT INTO scan_work (scan_id, host, zone) ");
                    insert.push_values(chunk, |mut b, (host, zone)| {
                        b.push_bind(scan_id).push_bind(host.clone()).push_bind(zone.clone());
                    });
                    insert.build().execute(&mut *tx).await.map_err(query_err(what))?;
                }
                Joined { scan_id, created: true }
            }
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO scanners (scan_id, scanner, zone, joined_at, alive_until, inventory_sha256)
             VALUES ($1, $2, $3, {}, {NOW_MS} + 3 * $4, $5)
             ON CONFLICT (scan_id, scanner) DO UPDATE SET alive_until = excluded.alive_until",
            postgres::NOW
        )))
        .bind(joined.scan_id)
        .bind(&scanner.id)
        .bind(&scanner.zone)
        .bind(scanner.lease_ms())
        .bind(&key)
        .execute(&mut *tx)
        .await
        .map_err(query_err(what))?;
        tx.commit().await.map_err(query_err(what))?;
        Ok(joined)
    }

    /// Claims up to `n` hosts of the scan that nobody holds (or whose holder's lease ran out: a scanner that
    /// died), in name order, skipping rows another scanner is claiming at this moment. Returns them, each with
    /// the scanner it was taken over from, if any.
    pub async fn claim_hosts(
        &self,
        scan_id: i64,
        scanner: &Scanner,
        n: usize,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let pool = self.shared_pool()?;
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH picked AS (
                 SELECT host, claimed_by AS was FROM scan_work
                  WHERE scan_id = $1 AND done = 0 AND (claimed_by IS NULL OR lease_until < {NOW_MS})
                    AND ($3::text IS NULL OR zone IS NULL OR zone = $3)
                  ORDER BY host LIMIT $4
                  FOR UPDATE SKIP LOCKED)
             UPDATE scan_work w SET claimed_by = $2, lease_until = {NOW_MS} + $5
               FROM picked WHERE w.scan_id = $1 AND w.host = picked.host
             RETURNING w.host, picked.was"
        )))
        .bind(scan_id)
        .bind(&scanner.id)
        .bind(&scanner.zone)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(scanner.lease_ms())
        .fetch_all(pool)
        .await
        .map_err(query_err("claim hosts of the shared scan"))
    }

    /// Extends the leases of the hosts this scanner holds, and says it is alive.
    pub async fn heartbeat(&self, scan_id: i64, scanner: &Scanner) -> Result<(), StoreError> {
        let pool = self.shared_pool()?;
        let what = "extend this scanner's leases";
        let mut tx = pool.begin().await.map_err(query_err(what))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE scan_work SET lease_until = {NOW_MS} + $3 WHERE scan_id = $1 AND claimed_by = $2 AND done = 0"
        )))
        .bind(scan_id)
        .bind(&scanner.id)
        .bind(scanner.lease_ms())
        .execute(&mut *tx)
        .await
        .map_err(query_err(what))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE scanners SET alive_until = {NOW_MS} + 3 * $3 WHERE scan_id = $1 AND scanner = $2"
        )))
        .bind(scan_id)
        .bind(&scanner.id)
        .bind(scanner.lease_ms())
        .execute(&mut *tx)
        .await
        .map_err(query_err(what))?;
        tx.commit().await.map_err(query_err(what))
    }

    /// Records the hosts of `outcomes` this scanner still holds, in one transaction, and marks them done; returns
    /// the names of those it no longer held (its lease ran out and another scanner took them over), which are
    /// not recorded: that scanner records them. A host is recorded once.
    #[tracing::instrument(level = "trace", skip_all, err, fields(scan_id = scan_id, hosts = outcomes.len()))]
    pub async fn record_claimed(
        &self,
        scan_id: i64,
        scanner: &Scanner,
        outcomes: &[HostOutcome],
    ) -> Result<Vec<String>, StoreError> {
        let pool = self.shared_pool()?;
        let what = "record hosts";
        let mut tx = pool.begin().await.map_err(query_err(what))?;
        if let Some(guard) = postgres::WRITE_GUARD {
            sqlx::query(guard).execute(&mut *tx).await.map_err(query_err(what))?;
        }
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM scans WHERE id = $1")
            .bind(scan_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_err(what))?;
        if status.as_deref() != Some("running") {
            return Err(StoreError::NotRunning { scan_id });
        }
        let names: Vec<String> = outcomes.iter().map(|o| o.host.name.clone()).collect();
        let held: Vec<String> = sqlx::query_scalar(
            "UPDATE scan_work SET done = 1
              WHERE scan_id = $1 AND claimed_by = $2 AND done = 0 AND host = ANY($3) RETURNING host",
        )
        .bind(scan_id)
        .bind(&scanner.id)
        .bind(&names)
        .fetch_all(&mut *tx)
        .await
        .map_err(query_err(what))?;
        let held: std::collections::HashSet<String> = held.into_iter().collect();
        if held.len() == outcomes.len() {
            postgres::batch::record_batch(&mut tx, scan_id, outcomes).await?;
        } else {
            // Rare (a lease ran out): only then are the held hosts' outcomes copied out of the batch.
            let kept: Vec<HostOutcome> = outcomes.iter().filter(|o| held.contains(&o.host.name)).cloned().collect();
            postgres::batch::record_batch(&mut tx, scan_id, &kept).await?;
        }
        tx.commit().await.map_err(query_err(what))?;
        Ok(names.into_iter().filter(|n| !held.contains(n)).collect())
    }

    /// How many hosts of the scan not recorded yet this scanner's zone lets it claim (now, or when their lease
    /// runs out): none left, it has nothing more to do in this scan.
    pub async fn claimable_left(&self, scan_id: i64, scanner: &Scanner) -> Result<i64, StoreError> {
        let pool = self.shared_pool()?;
        sqlx::query_scalar(
            "SELECT count(*) FROM scan_work
              WHERE scan_id = $1 AND done = 0 AND ($2::text IS NULL OR zone IS NULL OR zone = $2)",
        )
        .bind(scan_id)
        .bind(&scanner.zone)
        .fetch_one(pool)
        .await
        .map_err(query_err("read what is left of the shared scan"))
    }

    /// Elects this scanner to end the scan: true for exactly one scanner, once every host is recorded. That
    /// scanner judges the cluster rules, calls [`Store::finish_scan`] and renders the report.
    pub async fn take_finish(&self, scan_id: i64, scanner: &Scanner) -> Result<bool, StoreError> {
        let pool = self.shared_pool()?;
        let what = "end the shared scan";
        let mut tx = pool.begin().await.map_err(query_err(what))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(JOIN_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(query_err(what))?;
        let taken: Option<i64> = sqlx::query_scalar(
            "UPDATE scanners SET finished = 1
              WHERE scan_id = $1 AND scanner = $2
                AND NOT EXISTS (SELECT 1 FROM scan_work WHERE scan_id = $1 AND done = 0)
                AND NOT EXISTS (SELECT 1 FROM scanners WHERE scan_id = $1 AND finished = 1)
             RETURNING scan_id",
        )
        .bind(scan_id)
        .bind(&scanner.id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_err(what))?;
        tx.commit().await.map_err(query_err(what))?;
        Ok(taken.is_some())
    }

    /// Leaves the scan: the hosts this scanner still holds are given back at once (not when their lease runs
    /// out), and it no longer counts as alive. Returns whether another scanner of the scan is alive.
    pub async fn leave_scan(&self, scan_id: i64, scanner: &Scanner) -> Result<bool, StoreError> {
        let pool = self.shared_pool()?;
        let what = "leave the shared scan";
        let mut tx = pool.begin().await.map_err(query_err(what))?;
        sqlx::query(
            "UPDATE scan_work SET claimed_by = NULL, lease_until = NULL
              WHERE scan_id = $1 AND claimed_by = $2 AND done = 0",
        )
        .bind(scan_id)
        .bind(&scanner.id)
        .execute(&mut *tx)
        .await
        .map_err(query_err(what))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE scanners SET alive_until = {NOW_MS} - 1 WHERE scan_id = $1 AND scanner = $2"
        )))
        .bind(scan_id)
        .bind(&scanner.id)
        .execute(&mut *tx)
        .await
        .map_err(query_err(what))?;
        let others: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM scanners WHERE scan_id = $1 AND scanner <> $2 AND alive_until > {NOW_MS}"
        )))
        .bind(scan_id)
        .bind(&scanner.id)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_err(what))?;
        tx.commit().await.map_err(query_err(what))?;
        Ok(others > 0)
    }

    /// The host keys scanners of this history accepted on first use, as known_hosts lines (PostgreSQL; an
    /// SQLite history has none: its one scanner keeps them in its `accepted_hosts` file).
    pub async fn accepted_host_keys(&self) -> Result<Vec<String>, StoreError> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(Vec::new()),
            Pool::Postgres(pool) => sqlx::query_scalar("SELECT line FROM accepted_host_keys ORDER BY host")
                .fetch_all(pool)
                .await
                .map_err(query_err("read the host keys accepted on first use")),
        }
    }

    /// Shares the keys this scanner accepted on first use, `(host, known_hosts line)`: the first key recorded
    /// for a host stays (a later scanner that sees another key for it is refused, as with known_hosts).
    pub async fn share_accepted_host_keys(
        &self,
        scanner: &Scanner,
        keys: &[(String, String)],
    ) -> Result<(), StoreError> {
        let pool = self.shared_pool()?;
        for chunk in keys.chunks(MAX_BINDS / 3) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
                "INSERT INTO accepted_host_keys (host, line, scanner, accepted_at) SELECT v.host, v.line, v.scanner, {} \
                   FROM (",
                postgres::NOW
            ));
            insert.push_values(chunk, |mut b, (host, line)| {
                b.push_bind(host.clone()).push_bind(line.clone()).push_bind(scanner.id.clone());
            });
            insert.push(") AS v (host, line, scanner) ON CONFLICT (host) DO NOTHING");
            insert.build().execute(pool).await.map_err(query_err("share the host keys accepted on first use"))?;
        }
        Ok(())
    }
}
