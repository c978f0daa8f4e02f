//! The reads the report, the JSON and JUnit outputs and `fleetaudit history` make: each returns domain rows,
//! so no caller holds SQL of its own. Runtime queries with positional binds only.
//!
//! Owns: these statements and their row types. Must not touch: rendering, what a verdict means.

use serde::Serialize;

use super::{Store, StoreError, on_pool, query_err};

/// The reads' statements, written to run unchanged on SQLite and PostgreSQL (`tests/store_postgres.rs` runs each
/// on both against the same rows): `$N` placeholders, each first used in the order of its number (SQLite numbers
/// `$N` by first use); sums cast to BIGINT (PostgreSQL's sum of BIGINT is NUMERIC); counts of a condition as
/// `sum(CASE ...)`, not of a boolean; every subquery in FROM named; NULLs ordered first explicitly (SQLite
/// puts them first, PostgreSQL last).
#[doc(hidden)]
pub mod sql {
    pub const SCANS: &str = "SELECT s.id, s.started_at, s.finished_at, s.status, s.hosts_total,
            (SELECT count(*) FROM scan_hosts h WHERE h.scan_id = s.id) AS recorded,
            (SELECT count(*) FROM scan_hosts h WHERE h.scan_id = s.id AND h.outcome = 'error') AS unaudited,
            CAST(coalesce(sum(c.pass), 0) AS BIGINT) AS pass, CAST(coalesce(sum(c.fail), 0) AS BIGINT) AS fail,
            CAST(coalesce(sum(c.error), 0) AS BIGINT) AS error
       FROM scans s LEFT JOIN scan_rule_counts c ON c.scan_id = s.id
      GROUP BY s.id ORDER BY s.id DESC";

    pub const SCAN: &str =
        "SELECT id, started_at, finished_at, status, inventory, rules_version, fleetaudit_version, hosts_total
           FROM scans WHERE id = $1";

    pub const SCAN_HOSTS: &str =
        "SELECT h.name, h.cluster, h.address, h.port, h.roles, sh.outcome, sh.error_kind, sh.error_message,
                sh.started_at, sh.duration_ms, k.fingerprint, c.description AS certificate, sh.ps_format,
                sh.processes, sh.result_set_id, sh.file_set_id
           FROM scan_hosts sh
           JOIN hosts h ON h.id = sh.host_id
           LEFT JOIN host_keys k ON k.id = sh.host_key_id
           LEFT JOIN host_certificates c ON c.id = sh.host_certificate_id
          WHERE sh.scan_id = $1
          ORDER BY h.name";

    pub const SCAN_RESULTS: &str = "SELECT r.set_id, r.rule_id, r.status, r.reason, r.evidence_id
           FROM results r
          WHERE r.set_id IN (SELECT DISTINCT result_set_id FROM scan_hosts
                              WHERE scan_id = $1 AND result_set_id IS NOT NULL)
          ORDER BY r.set_id, r.rule_id";

    pub const SCAN_EVIDENCE: &str = "SELECT e.id, e.body FROM evidence e
          WHERE e.id IN (SELECT r.evidence_id FROM results r
                          WHERE r.set_id IN (SELECT DISTINCT result_set_id FROM scan_hosts
                                              WHERE scan_id = $1 AND result_set_id IS NOT NULL))
          ORDER BY e.id";

    pub const RULES: &str = "SELECT rc.rule_id, rc.cis, rc.title, rc.severity, m.component, rc.pass, rc.fail, rc.error,
                rc.not_applicable, rc.compliance_pct, m.rationale, m.remediation, m.test, m.assessment
           FROM rule_compliance rc
           JOIN scans s ON s.id = rc.scan_id
           JOIN rules m ON m.rules_version = s.rules_version AND m.rule_id = rc.rule_id
          WHERE rc.scan_id = $1
          ORDER BY rc.compliance_pct IS NULL, rc.compliance_pct, rc.rule_id";

    pub const CHANGES: &str = "SELECT scan_id, previous_scan_id, host, rule_id, previous_status, status FROM changes
          WHERE scan_id = $1 AND ($2 IS NULL OR host = $2) AND ($3 IS NULL OR rule_id = $3)
          ORDER BY host, rule_id";

    pub const CLUSTER_TREND: &str = "WITH past AS (SELECT id, rules_version FROM scans WHERE id <= $1
                                ORDER BY id DESC LIMIT $2),
              sets AS (SELECT r.set_id, sum(CASE WHEN r.status = 'pass' THEN 1 ELSE 0 END) AS pass,
                              sum(CASE WHEN r.status = 'fail' THEN 1 ELSE 0 END) AS fail,
                              sum(CASE WHEN r.status = 'error' THEN 1 ELSE 0 END) AS error
                         FROM results r
                        WHERE r.set_id IN (SELECT DISTINCT result_set_id FROM scan_hosts
                                            WHERE scan_id IN (SELECT id FROM past) AND result_set_id IS NOT NULL)
                        GROUP BY r.set_id),
              width AS (SELECT p.id, (SELECT count(*) FROM rules m WHERE m.rules_version = p.rules_version) AS n
                          FROM past p)
         SELECT sh.scan_id, h.cluster, CAST(coalesce(sum(c.pass), 0) AS BIGINT) AS pass,
                CAST(coalesce(sum(c.fail), 0) AS BIGINT) AS fail,
                CAST(coalesce(sum(CASE WHEN sh.result_set_id IS NULL THEN w.n ELSE c.error END), 0) AS BIGINT) AS error
           FROM scan_hosts sh
           JOIN width w ON w.id = sh.scan_id
           JOIN hosts h ON h.id = sh.host_id
           LEFT JOIN sets c ON c.set_id = sh.result_set_id
          WHERE sh.scan_id IN (SELECT id FROM past)
          GROUP BY sh.scan_id, h.cluster
          ORDER BY sh.scan_id, h.cluster IS NOT NULL, h.cluster";

    pub const HOST_TRANSITIONS: &str = "SELECT name AS host, previous_outcome, outcome, error_kind, error_message
           FROM (SELECT h.name, sh.outcome, sh.error_kind, sh.error_message,
                        (SELECT l.outcome FROM scan_hosts l CROSS JOIN scans ls
                          WHERE l.host_id = sh.host_id AND l.scan_id < sh.scan_id AND ls.id = l.scan_id
                            AND ls.status <> 'running'
                          ORDER BY l.scan_id DESC LIMIT 1) AS previous_outcome
                   FROM scan_hosts sh JOIN hosts h ON h.id = sh.host_id
                  WHERE sh.scan_id = $1) AS hosts_of_scan
          WHERE previous_outcome IS NULL OR previous_outcome <> outcome
          ORDER BY name";

    /// A literal `host = $1` (not `$1 IS NULL OR ...`) lets SQLite push the filter into the view's
    /// scan_hosts_by_host index instead of reading the whole history.
    pub const HISTORY_OF_HOST: &str = "SELECT f.scan_id, s.started_at, f.host, f.rule_id, f.status, f.reason
           FROM findings f JOIN scans s ON s.id = f.scan_id
          WHERE f.host = $1 AND ($2 IS NULL OR f.rule_id = $2)
          ORDER BY f.scan_id, f.host, f.rule_id";

    pub const CLUSTER_FINDINGS: &str =
        "SELECT cluster, rule_id, cis, title, severity, status, reason, evidence FROM cluster_findings
          WHERE scan_id = $1 ORDER BY cluster, rule_id";

    /// Each certificate once per cluster with the places it was found and the roles it had there. Grouped twice
    /// (by role set, then by certificate): neither backend has a two-argument aggregate that takes DISTINCT.
    pub const HELD_CERTIFICATES: &str = "WITH by_roles AS (
             SELECT cluster, fingerprint, roles, min(subject) AS subject, min(issuer) AS issuer,
                    min(not_before) AS not_before, min(not_after) AS not_after, max(is_ca) AS is_ca,
                    min(host || ':' || path) AS first_place, count(*) AS places
               FROM host_x509_certificates WHERE scan_id = $1
              GROUP BY cluster, fingerprint, roles)
         SELECT cluster, fingerprint, min(subject), min(issuer), min(not_before), min(not_after), max(is_ca),
                string_agg(roles, ',' ORDER BY roles), min(first_place), CAST(sum(places) AS BIGINT)
           FROM by_roles
          GROUP BY cluster, fingerprint
          ORDER BY min(not_after), cluster IS NOT NULL, cluster, min(subject), fingerprint";

    pub const CLUSTER_RULE_TEXTS: &str = "SELECT m.rule_id, m.cis, m.title, m.severity, m.rationale, m.remediation
           FROM cluster_rules m JOIN scans s ON s.rules_version = m.rules_version
          WHERE s.id = $1 ORDER BY m.rule_id";

    pub const CLUSTER_HISTORY: &str = "SELECT f.scan_id, s.started_at, f.cluster, f.rule_id, f.status, f.reason
           FROM cluster_findings f JOIN scans s ON s.id = f.scan_id
          WHERE ($1 IS NULL OR f.cluster = $1) AND ($2 IS NULL OR f.rule_id = $2)
          ORDER BY f.scan_id, f.cluster, f.rule_id";

    pub const HISTORY: &str = "SELECT f.scan_id, s.started_at, f.host, f.rule_id, f.status, f.reason
           FROM findings f JOIN scans s ON s.id = f.scan_id
          WHERE $1 IS NULL AND ($2 IS NULL OR f.rule_id = $2)
          ORDER BY f.scan_id, f.host, f.rule_id";
}

/// One scan with its verdict totals (from `scan_rule_counts`, as `rule_compliance` counts them).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ScanRow {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub hosts_total: i64,
    pub recorded: i64,
    pub unaudited: i64,
    pub pass: i64,
    pub fail: i64,
    pub error: i64,
}

impl ScanRow {
    /// pass / (pass + fail + error), in percent; None when nothing was judged.
    pub fn compliance(&self) -> Option<f64> {
        crate::model::pct(self.pass, self.fail, self.error)
    }
}

/// One scan's own row, as `scans` stores it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ScanMeta {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub inventory: String,
    pub rules_version: String,
    pub fleetaudit_version: String,
    pub hosts_total: i64,
}

/// A host of one scan.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScanHost {
    pub name: String,
    pub cluster: Option<String>,
    pub address: String,
    pub port: i64,
    pub roles: String,
    pub outcome: String,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub started_at: String,
    pub duration_ms: i64,
    pub fingerprint: Option<String>,
    /// The host certificate's description, when a CA vouched for the key.
    pub certificate: Option<String>,
    pub ps_format: Option<String>,
    pub processes: Option<i64>,
    pub result_set_id: Option<i64>,
    /// The host's files in this scan (`Store::scan_files`); `None` when the scan has none for it (not audited, or
    /// stored before files were).
    pub file_set_id: Option<i64>,
}

impl ScanHost {
    /// The reason of every verdict of a host that could not be audited: `<error_kind>: <error_message>` (as
    /// the `findings` view has it).
    pub fn error_reason(&self) -> String {
        format!("{}: {}", self.error_kind.as_deref().unwrap_or("error"), self.error_message.as_deref().unwrap_or(""))
    }
}

/// A verdict of a result set.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ResultRow {
    pub set_id: i64,
    pub rule_id: String,
    pub status: String,
    pub reason: String,
    pub evidence_id: Option<i64>,
}

/// A rule of the scan's rule set with its counts (from `rule_compliance`) and texts.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RuleRow {
    pub rule_id: String,
    pub cis: String,
    pub title: String,
    pub severity: String,
    pub component: String,
    pub pass: i64,
    pub fail: i64,
    pub error: i64,
    pub not_applicable: i64,
    pub compliance_pct: Option<f64>,
    pub rationale: Option<String>,
    pub remediation: Option<String>,
    pub test: Option<String>,
    /// `automated` or `manual`; NULL for a rule set stored before schema 3.
    pub assessment: Option<String>,
}

impl RuleRow {
    /// `Automated`, `Manual`, or empty when not recorded.
    pub fn assessment_label(&self) -> &'static str {
        match self.assessment.as_deref() {
            Some("manual") => "Manual",
            Some("automated") => "Automated",
            _ => "",
        }
    }
}

/// A verdict that differs from the host's previous scan (the `changes` view).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Change {
    pub scan_id: i64,
    pub previous_scan_id: i64,
    pub host: String,
    pub rule_id: String,
    pub previous_status: String,
    pub status: String,
}

/// One cluster's verdict totals in one scan (as `scan_rule_counts` counts them: a host that could not be
/// audited is an error for every rule of the scan's rule set). `cluster` is the host's current one, NULL for
/// hosts without one.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClusterCounts {
    pub scan_id: i64,
    pub cluster: Option<String>,
    pub pass: i64,
    pub fail: i64,
    pub error: i64,
}

/// A host whose outcome is news in a scan: audited or not, against its previous ended scan (`None`: it has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct HostTransition {
    pub host: String,
    pub previous_outcome: Option<String>,
    pub outcome: String,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
}

/// A verdict in the history (the `findings` view).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HistoryRow {
    pub scan_id: i64,
    pub started_at: String,
    pub host: String,
    pub rule_id: String,
    pub status: String,
    pub reason: String,
}

impl Store {
    /// Every scan, newest first.
    pub async fn scans(&self) -> Result<Vec<ScanRow>, StoreError> {
        on_pool!(self, |pool, _side| sqlx::query_as(sql::SCANS)
            .fetch_all(pool)
            .await
            .map_err(query_err("list the scans")))
    }

    /// The row of scan `scan_id`, if the database has it.
    pub async fn scan(&self, scan_id: i64) -> Result<Option<ScanMeta>, StoreError> {
        on_pool!(self, |pool, _side| sqlx::query_as(sql::SCAN)
            .bind(scan_id)
            .fetch_optional(pool)
            .await
            .map_err(query_err("read the scan")))
    }

    pub async fn scan_hosts(&self, scan_id: i64) -> Result<Vec<ScanHost>, StoreError> {
        on_pool!(self, |pool, _side| sqlx::query_as(sql::SCAN_HOSTS)
            .bind(scan_id)
            .fetch_all(pool)
            .await
            .map_err(query_err("read the scan's hosts")))
    }

    /// The verdicts of every result set the scan's hosts point at (each set once, however many hosts share it).
    pub async fn scan_results(&self, scan_id: i64) -> Result<Vec<ResultRow>, StoreError> {
        on_pool!(self, |pool, _side| sqlx::query_as(sql::SCAN_RESULTS)
            .bind(scan_id)
            .fetch_all(pool)
            .await
            .map_err(query_err("read the scan's verdicts")))
    }

    /// The evidence documents the scan's verdicts refer to.
    pub async fn scan_evidence(&self, scan_id: i64) -> Result<Vec<(i64, String)>, StoreError> {
        on_pool!(self, |pool, _side| sqlx::query_as(sql::SCAN_EVIDENCE)
            .bind(scan_id)
            .fetch_all(pool)
            .await
            .map_err(query_err("read the scan's evidence")))
    }

    pub async fn rules(&self, scan_id: i64) -> Result<Vec<RuleRow>, StoreError> {
        on_pool!(self, |pool, _side| sqlx::query_as(sql::RULES)
            .bind(scan_id)
            .fetch_all(pool)
            .await
            .map_err(query_err("read the rule compliance")))
    }

    /// The changes of one scan, optionally for one host and/or rule.
    pub async fn changes(
        &self,
        scan_id: i64,
        host: Option<&str>,
        rule: Option<&str>,
    ) -> Result<Vec<Change>, StoreError> {
        on_pool!(self, |pool, _side| sqlx::query_as(sql::CHANGES)
            .bind(scan_id)
            .bind(host)
            .bind(rule)
            .fetch_all(pool)
            .await
            .map_err(query_err("read the changes")))
    }

    /// The verdict totals per cluster of the last `scans` scans up to `scan_id`, oldest first.
    pub async fn cluster_trend(&self, scan_id: i64, scans: i64) -> Result<Vec<ClusterCounts>, StoreError> {
        on_pool!(self, |pool, _side| sqlx::query_as(sql::CLUSTER_TREND)
            .bind(scan_id)
            .bind(scans)
            .fetch_all(pool)
            .await
            .map_err(query_err("read the compliance per cluster over time")))
    }

    /// Hosts the scan could not audit that the host's previous ended scan did audit: (name, error kind, message).
    pub async fn newly_unaudited(&self, scan_id: i64) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(self
            .host_transitions(scan_id)
            .await?
            .into_iter()
            .filter(|h| h.previous_outcome.as_deref() == Some("audited") && h.outcome == "error")
            .map(|h| (h.host, h.error_kind.unwrap_or_default(), h.error_message.unwrap_or_default()))
            .collect())
    }

    /// The scan's hosts that are new (no previous ended scan), no longer audited, or audited again, by name.
    pub async fn host_transitions(&self, scan_id: i64) -> Result<Vec<HostTransition>, StoreError> {
        on_pool!(self, |pool, _side| sqlx::query_as(sql::HOST_TRANSITIONS)
            .bind(scan_id)
            .fetch_all(pool)
            .await
            .map_err(query_err("read the hosts whose outcome changed")))
    }

    /// The verdicts over time of a host and/or a rule, oldest scan first.
    pub async fn history(&self, host: Option<&str>, rule: Option<&str>) -> Result<Vec<HistoryRow>, StoreError> {
        let sql = match host {
            Some(_) => sql::HISTORY_OF_HOST,
            None => sql::HISTORY,
        };
        on_pool!(self, |pool, _side| sqlx::query_as(sql)
            .bind(host)
            .bind(rule)
            .fetch_all(pool)
            .await
            .map_err(query_err("read the findings")))
    }
}
