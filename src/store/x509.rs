//! Certificates and cluster verdicts in the history: what the cluster stage reads and writes.
//!
//! Owns: the statements behind [`Store::unparsed_certificates`] and [`Store::record_certificates`] (each
//! certificate file's contents parsed once into `x509_certificates`), [`Store::cluster_inputs`] (a scan's hosts
//! and their certificate files, as domain types), [`Store::record_cluster_results`] and the reads the outputs make
//! ([`Store::cluster_findings`], [`Store::held_certificates`], [`Store::cluster_rule_texts`],
//! [`Store::cluster_history`]). Schema:
//! `migrations/sqlite/20261202100000_x509_cluster_results.sql`.
//! Must not touch: what a certificate means (`files::x509` parses, `cluster` judges).

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::TryStreamExt;

use sha2::{Digest, Sha256};

use super::{Store, StoreError, on_pool, query_err, read_sql};
use crate::files::x509::Certificate;
use crate::model::Status;

/// A host of a scan, as the cluster stage needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterHost {
    pub name: String,
    pub cluster: Option<String>,
    pub address: String,
    /// `Err("kind: message")` for a host the scan could not audit.
    pub audited: Result<(), String>,
    /// The components that run on the host: those with a verdict whose evidence is one of its processes (a rule
    /// of a component that does not run has none, whatever its status).
    pub components: BTreeSet<String>,
    /// The host's verdict of the rule [`Store::cluster_inputs`] was asked about (status, reason).
    pub host_rule: Option<(Status, String)>,
}

/// A certificate file of a host in a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFile {
    pub host: String,
    pub path: String,
    pub roles: Vec<String>,
    /// What the scan learned: the certificates in file order, or why there are none (the path's problem, a file
    /// only stat'ed, contents that are no certificate).
    pub certificates: Result<Vec<Arc<Certificate>>, String>,
}

/// A scan's hosts and their certificate files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInputs {
    pub hosts: Vec<ClusterHost>,
    pub files: Vec<CertFile>,
}

/// A cluster rule as the history keeps it beside its verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRuleMeta {
    pub rule_id: String,
    pub cis: String,
    pub title: String,
    pub severity: String,
    pub rationale: String,
    pub remediation: String,
}

/// One cluster rule's verdict on one cluster, to store or as read back (with its rule's title and CIS number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFinding {
    pub cluster: String,
    pub rule_id: String,
    pub cis: String,
    pub title: String,
    pub severity: String,
    pub status: Status,
    pub reason: String,
    /// A JSON document.
    pub evidence: Option<String>,
}

/// A certificate of a scan, once per cluster however many files hold it, for expiry lists and calendars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCertificate {
    /// `None`: hosts the inventory puts in no cluster.
    pub cluster: Option<String>,
    pub fingerprint: String,
    pub subject: String,
    pub issuer: String,
    /// RFC 3339 UTC.
    pub not_before: String,
    pub not_after: String,
    pub is_ca: bool,
    /// The roles of the files holding it, deduplicated, in name order (`apiserver-kubelet-ca pki`).
    pub roles: Vec<String>,
    /// The first `host:path` that holds it (by host, then path) and how many files hold it in all.
    pub first_place: String,
    pub places: i64,
}

/// A cluster verdict of one scan, for `history`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClusterHistoryRow {
    pub scan_id: i64,
    pub started_at: String,
    pub cluster: String,
    pub rule_id: String,
    pub status: String,
    pub reason: String,
}

impl Store {
    /// The contents of the scan's certificate files not parsed yet, by `file_contents` id.
    pub async fn unparsed_certificates(&self, scan_id: i64) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        on_pool!(self, |pool, _side| sqlx::query_as(
            "SELECT DISTINCT c.id, c.body
               FROM scan_hosts sh
               JOIN file_set_members m ON m.set_id = sh.file_set_id
               JOIN file_observations o ON o.id = m.observation_id
               JOIN file_contents c ON c.id = o.content_id
              WHERE sh.scan_id = $1 AND o.roles IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM x509_contents x WHERE x.content_id = c.id)",
        )
        .bind(scan_id)
        .fetch_all(pool)
        .await
        .map_err(query_err("read the certificate files to parse")))
    }

    /// Stores what each contents parsed to: its certificates (each once however many files hold it), or why it
    /// holds none.
    pub async fn record_certificates(
        &self,
        parsed: &[(i64, Result<Vec<Certificate>, String>)],
    ) -> Result<(), StoreError> {
        let what = "store certificates";
        on_pool!(self, |pool, _side| {
            let mut tx = pool.begin().await.map_err(query_err(what))?;
            for (content_id, result) in parsed {
                sqlx::query("INSERT INTO x509_contents (content_id, error) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(content_id)
                    .bind(result.as_ref().err())
                    .execute(&mut *tx)
                    .await
                    .map_err(query_err(what))?;
                let Ok(certs) = result else { continue };
                for (position, c) in certs.iter().enumerate() {
                    sqlx::query(
                    // NOT EXISTS before ON CONFLICT: PostgreSQL draws an identity value for every row it tries
                    // to insert, so a conflict alone would leave a gap in the ids at each rescan.
                    "INSERT INTO x509_certificates (fingerprint, subject, issuer, serial, not_before, not_after, is_ca,
                                                    usages, dns_names, ip_addresses, der)
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11
                      WHERE NOT EXISTS (SELECT 1 FROM x509_certificates WHERE fingerprint = $1)
                     ON CONFLICT (fingerprint) DO NOTHING",
                )
                .bind(&c.fingerprint)
                .bind(&c.subject)
                .bind(&c.issuer)
                .bind(&c.serial)
                .bind(c.not_before_text())
                .bind(c.not_after_text())
                .bind(i64::from(c.is_ca))
                .bind(c.usages.join(","))
                .bind(serde_json::to_string(&c.dns_names).unwrap_or_else(|_| "[]".into()))
                .bind(serde_json::to_string(&c.ip_addresses).unwrap_or_else(|_| "[]".into()))
                .bind(&c.der)
                .execute(&mut *tx)
                .await
                .map_err(query_err(what))?;
                    sqlx::query(
                        "INSERT INTO content_certificates (content_id, position, certificate_id)
                     SELECT $1, $2, id FROM x509_certificates WHERE fingerprint = $3 ON CONFLICT DO NOTHING",
                    )
                    .bind(content_id)
                    .bind(position as i64)
                    .bind(&c.fingerprint)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_err(what))?;
                }
            }
            tx.commit().await.map_err(query_err(what))
        })
    }

    /// The scan's hosts and their certificate files, certificates parsed (see [`Store::record_certificates`]).
    /// `host_rule`: a host rule whose verdict on each host the cluster rules need (the seed rule's
    /// `apiserver-kubelet-certificate-authority`: whether the flag is set, unset, or cannot be known).
    pub async fn cluster_inputs(&self, scan_id: i64, host_rule: &str) -> Result<ClusterInputs, StoreError> {
        on_pool!(self, |pool, _side| {
            let what = "read the scan's hosts for the cluster rules";
            type HostRow = (
                String,
                Option<String>,
                String,
                String,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<String>,
                Option<String>,
            );
            let rows: Vec<HostRow> = sqlx::query_as(
                // Each result set's components and seed verdict once, not once per host: hosts share sets (a
                // homogeneous fleet, the simulator's 11 among 10,000 hosts), and per host this took 1.1 s there.
                "WITH per_set (id, components, status, reason) AS MATERIALIZED (
                  SELECT t.id,
                         (SELECT string_agg(c.component, ',')
                            FROM (SELECT DISTINCT m.component
                                    FROM results r
                                    JOIN rules m ON m.rules_version = s.rules_version AND m.rule_id = r.rule_id
                                   WHERE r.set_id = t.id AND r.evidence_id IS NOT NULL) c),
                         (SELECT r.status FROM results r WHERE r.set_id = t.id AND r.rule_id = $2),
                         (SELECT r.reason FROM results r WHERE r.set_id = t.id AND r.rule_id = $2)
                    FROM (SELECT DISTINCT result_set_id AS id FROM scan_hosts
                           WHERE scan_id = $1 AND result_set_id IS NOT NULL) t
                   CROSS JOIN scans s
                   WHERE s.id = $1)
             SELECT h.name, h.cluster, h.address, sh.outcome, sh.error_kind, sh.error_message, p.components, p.status,
                    p.reason
               FROM scan_hosts sh JOIN hosts h ON h.id = sh.host_id LEFT JOIN per_set p ON p.id = sh.result_set_id
              WHERE sh.scan_id = $1 ORDER BY h.name",
            )
            .bind(scan_id)
            .bind(host_rule)
            .fetch_all(pool)
            .await
            .map_err(query_err(what))?;
            let hosts = rows
                .into_iter()
                .map(|(name, cluster, address, outcome, kind, message, components, status, reason)| ClusterHost {
                    host_rule: status.and_then(|s| Status::parse(&s)).map(|s| (s, reason.unwrap_or_default())),
                    name,
                    cluster,
                    address,
                    audited: match outcome.as_str() {
                        "audited" => Ok(()),
                        _ => Err(format!("{}: {}", kind.unwrap_or_default(), message.unwrap_or_default())),
                    },
                    components: components.map(|c| c.split(',').map(str::to_owned).collect()).unwrap_or_default(),
                })
                .collect();

            let what = "read the scan's certificate files";
            // One read transaction, so the certificates and the files naming them agree.
            let mut tx = pool.begin().await.map_err(query_err(what))?;
            // A fleet's files hold few distinct certificates (every node has the cluster CA; 44 among 113,649 file
            // rows in a 10,000-node simulation): each is read, parsed and kept once, shared by every file holding it.
            let ders: Vec<(i64, Vec<u8>)> = sqlx::query_as(
                "SELECT DISTINCT c.id, c.der
               FROM scan_hosts sh
               JOIN file_set_members m ON m.set_id = sh.file_set_id
               JOIN file_observations o ON o.id = m.observation_id
               JOIN content_certificates cc ON cc.content_id = o.content_id
               JOIN x509_certificates c ON c.id = cc.certificate_id
              WHERE sh.scan_id = $1 AND o.roles IS NOT NULL",
            )
            .bind(scan_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(query_err(what))?;
            let mut parsed: std::collections::HashMap<i64, Arc<Certificate>> = std::collections::HashMap::new();
            for (id, der) in ders {
                // Stored by fleetaudit after parsing: a failure here is a database written by something else.
                let cert = crate::files::x509::parse_der(&der).map_err(|e| StoreError::Query {
                    what,
                    source: sqlx::Error::Decode(format!("stored certificate: {e}").into()),
                })?;
                parsed.insert(id, Arc::new(cert));
            }
            type FileRow =
                (String, String, String, Option<String>, Option<String>, Option<i64>, Option<String>, Option<i64>);
            // Streamed: a fleet's rows (one per certificate in each file of each host) are not held all at once.
            let mut rows = sqlx::query_as::<_, FileRow>(
                "SELECT h.name, o.path, o.roles, o.problem, o.problem_message, o.content_id, x.error, cc.certificate_id
               FROM scan_hosts sh
               JOIN hosts h ON h.id = sh.host_id
               JOIN file_set_members m ON m.set_id = sh.file_set_id
               JOIN file_observations o ON o.id = m.observation_id
               LEFT JOIN x509_contents x ON x.content_id = o.content_id
               LEFT JOIN content_certificates cc ON cc.content_id = o.content_id
              WHERE sh.scan_id = $1 AND o.roles IS NOT NULL
              ORDER BY h.name, o.path, cc.position",
            )
            .bind(scan_id)
            .fetch(&mut *tx);
            let mut files: Vec<CertFile> = Vec::new();
            while let Some(row) = rows.try_next().await.map_err(query_err(what))? {
                let (host, path, roles, problem, message, content_id, error, cert_id) = row;
                let same = files.last().is_some_and(|f| f.host == host && f.path == path);
                if !same {
                    let certificates = match (&problem, content_id, &error) {
                        (Some(kind), ..) => Err(format!("{kind}: {}", message.clone().unwrap_or_default())),
                        (None, None, _) => Err("only stat'ed, not read".to_owned()),
                        (None, Some(_), Some(e)) => Err(e.clone()),
                        (None, Some(_), None) => Ok(Vec::new()),
                    };
                    files.push(CertFile {
                        host: host.clone(),
                        path: path.clone(),
                        roles: roles.split(' ').map(str::to_owned).collect(),
                        certificates,
                    });
                }
                if let (Some(id), Some(Ok(certs))) = (cert_id, files.last_mut().map(|f| &mut f.certificates)) {
                    // Read above in the same transaction: a missing one is a database changed by something else.
                    let cert = parsed.get(&id).ok_or_else(|| StoreError::Query {
                        what,
                        source: sqlx::Error::Decode(
                            format!("certificate {id} is named by a file but not stored").into(),
                        ),
                    })?;
                    certs.push(Arc::clone(cert));
                }
            }
            drop(rows);
            tx.commit().await.map_err(query_err(what))?;
            Ok(ClusterInputs { hosts, files })
        })
    }

    /// Stores the cluster verdicts of a scan, with their rules.
    pub async fn record_cluster_results(
        &self,
        scan_id: i64,
        rules_version: &str,
        rules: &[ClusterRuleMeta],
        findings: &[ClusterFinding],
    ) -> Result<(), StoreError> {
        let what = "store the cluster verdicts";
        on_pool!(self, |pool, _side| {
            let mut tx = pool.begin().await.map_err(query_err(what))?;
            for r in rules {
                sqlx::query(
                    "INSERT INTO cluster_rules (rules_version, rule_id, cis, title, severity, rationale, remediation)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(rules_version)
                .bind(&r.rule_id)
                .bind(&r.cis)
                .bind(&r.title)
                .bind(&r.severity)
                .bind(&r.rationale)
                .bind(&r.remediation)
                .execute(&mut *tx)
                .await
                .map_err(query_err(what))?;
            }
            for f in findings {
                let evidence_id: Option<i64> = match &f.evidence {
                    None => None,
                    Some(body) => {
                        let sha: [u8; 32] = Sha256::digest(body.as_bytes()).into();
                        sqlx::query(
                            "INSERT INTO evidence (sha256, body) SELECT $1, $2
                          WHERE NOT EXISTS (SELECT 1 FROM evidence WHERE sha256 = $1)
                         ON CONFLICT (sha256) DO NOTHING",
                        )
                        .bind(sha.to_vec())
                        .bind(body)
                        .execute(&mut *tx)
                        .await
                        .map_err(query_err(what))?;
                        sqlx::query_scalar("SELECT id FROM evidence WHERE sha256 = $1")
                            .bind(sha.to_vec())
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(query_err(what))?
                    }
                };
                sqlx::query(
                    "INSERT INTO cluster_results (scan_id, cluster, rule_id, status, reason, evidence_id)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (scan_id, cluster, rule_id) DO UPDATE
                    SET status = excluded.status, reason = excluded.reason, evidence_id = excluded.evidence_id",
                )
                .bind(scan_id)
                .bind(&f.cluster)
                .bind(&f.rule_id)
                .bind(f.status.as_str())
                .bind(&f.reason)
                .bind(evidence_id)
                .execute(&mut *tx)
                .await
                .map_err(query_err(what))?;
            }
            tx.commit().await.map_err(query_err(what))
        })
    }

    /// A scan's cluster verdicts, by cluster then rule.
    pub async fn cluster_findings(&self, scan_id: i64) -> Result<Vec<ClusterFinding>, StoreError> {
        type Row = (String, String, Option<String>, Option<String>, Option<String>, String, String, Option<String>);
        let rows: Vec<Row> = on_pool!(self, |pool, _side| sqlx::query_as(read_sql::CLUSTER_FINDINGS)
            .bind(scan_id)
            .fetch_all(pool)
            .await
            .map_err(query_err("read the cluster verdicts")))?;
        Ok(rows
            .into_iter()
            .map(|(cluster, rule_id, cis, title, severity, status, reason, evidence)| ClusterFinding {
                cluster,
                title: title.unwrap_or_else(|| rule_id.clone()),
                rule_id,
                cis: cis.unwrap_or_default(),
                severity: severity.unwrap_or_default(),
                status: Status::parse(&status).unwrap_or(Status::Error),
                reason,
                evidence,
            })
            .collect())
    }

    /// The scan's certificates, each once per cluster, soonest to expire first (then by cluster and subject).
    pub async fn held_certificates(&self, scan_id: i64) -> Result<Vec<HeldCertificate>, StoreError> {
        type Row = (Option<String>, String, String, String, String, String, i64, String, String, i64);
        let rows: Vec<Row> = on_pool!(self, |pool, _side| sqlx::query_as(read_sql::HELD_CERTIFICATES)
            .bind(scan_id)
            .fetch_all(pool)
            .await
            .map_err(query_err("read the scan's certificates")))?;
        Ok(rows
            .into_iter()
            .map(|(cluster, fingerprint, subject, issuer, not_before, not_after, is_ca, roles, first_place, places)| {
                let roles: BTreeSet<String> =
                    roles.split([',', ' ']).filter(|r| !r.is_empty()).map(str::to_owned).collect();
                HeldCertificate {
                    cluster,
                    fingerprint,
                    subject,
                    issuer,
                    not_before,
                    not_after,
                    is_ca: is_ca != 0,
                    roles: roles.into_iter().collect(),
                    first_place,
                    places,
                }
            })
            .collect())
    }

    /// The cluster rules' texts of the rule set scan `scan_id` ran.
    pub async fn cluster_rule_texts(&self, scan_id: i64) -> Result<Vec<ClusterRuleMeta>, StoreError> {
        let rows: Vec<(String, String, String, String, String, String)> =
            on_pool!(self, |pool, _side| sqlx::query_as(read_sql::CLUSTER_RULE_TEXTS)
                .bind(scan_id)
                .fetch_all(pool)
                .await
                .map_err(query_err("read the cluster rules")))?;
        Ok(rows
            .into_iter()
            .map(|(rule_id, cis, title, severity, rationale, remediation)| ClusterRuleMeta {
                rule_id,
                cis,
                title,
                severity,
                rationale,
                remediation,
            })
            .collect())
    }

    /// Cluster verdicts over time: of `cluster` and/or `rule` (`None`: any), oldest scan first.
    pub async fn cluster_history(
        &self,
        cluster: Option<&str>,
        rule: Option<&str>,
    ) -> Result<Vec<ClusterHistoryRow>, StoreError> {
        let rows: Vec<(i64, String, String, String, String, String)> =
            on_pool!(self, |pool, _side| sqlx::query_as(read_sql::CLUSTER_HISTORY)
                .bind(cluster)
                .bind(rule)
                .fetch_all(pool)
                .await
                .map_err(query_err("read the cluster verdicts' history")))?;
        Ok(rows
            .into_iter()
            .map(|(scan_id, started_at, cluster, rule_id, status, reason)| ClusterHistoryRow {
                scan_id,
                started_at,
                cluster,
                rule_id,
                status,
                reason,
            })
            .collect())
    }
}
