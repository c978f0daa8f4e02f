//! The statements that write a batch of hosts, and read file sets back, compiled once per backend.
//!
//! `store::sqlite` and `store::postgres` each declare this file as their `batch` module, with their own `Db`:
//! the same code, type-checked against each driver's concrete types (sqlx's generic `Database` bounds would
//! have to be restated on every function for every bound type). So what is written here must hold on both:
//! `$N` placeholders (the query builder's are each driver's own), `ON CONFLICT` rather than `OR IGNORE`,
//! integers bound as `i64` (PostgreSQL has no unsigned types; every integer column there is BIGINT), no
//! function only one of them has.
//!
//! Owns: the SQL of `record_batch` and of the file-set reads. Must not touch: anything outside the one
//! transaction or connection the caller gives it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;

use sha2::{Digest, Sha256};
use sqlx::query_builder::Separated;
use sqlx::{Decode, Encode, QueryBuilder, Type};

use super::Db;
use crate::model::Status;
use crate::store::file_sets::{CONTENT_BYTES_PER_STATEMENT, Keyed, bad_file, decode_err, file_set_key};
use crate::store::{
    FileRecord, HostCertificateRecord, HostOutcome, HostResult, MAX_BINDS, RuleMeta, StoreError, WithEvidenceHash, hex,
    query_err, result_set_key,
};

/// This backend's connection.
pub(crate) type Conn = <Db as sqlx::Database>::Connection;

pub(crate) async fn mark_interrupted_raw(conn: &mut Conn) -> Result<u64, StoreError> {
    let done = sqlx::query("UPDATE scans SET status = 'interrupted' WHERE status = 'running'")
        .execute(conn)
        .await
        .map_err(query_err("mark scans interrupted"))?;
    Ok(done.rows_affected())
}

/// Stores the metadata of a rule set's rules, once per rule-set version (a scan's rules are stored when it
/// starts; another scan of the same version finds them).
pub(crate) async fn store_rules(conn: &mut Conn, rules_version: &str, rules: &[RuleMeta]) -> Result<(), StoreError> {
    for rule in rules {
        sqlx::query(
            "INSERT INTO rules (rules_version, rule_id, cis, title, component, severity,
                                rationale, remediation, test, assessment, cis_previous)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
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
        .execute(&mut *conn)
        .await
        .map_err(query_err("store the rule set"))?;
    }
    Ok(())
}

/// Writes a batch of hosts inside the caller's transaction.
///
/// Each step is one multi-row statement for the whole batch rather than one per row: the sqlx SQLite driver runs
/// every statement on its own thread, and that round trip (~100 µs on a 2-core VM) dominated. Measured with
/// `views_stay_fast_at_ten_thousand_hosts` (10,000 new hosts × 56 rules, batches of 100, release build): 105 s
/// with one statement per row, 13 s batched; a rescan of hosts whose verdicts are already stored takes 1.4 s.
pub(crate) async fn record_batch(conn: &mut Conn, scan_id: i64, outcomes: &[HostOutcome]) -> Result<(), StoreError> {
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
        " ON CONFLICT (fingerprint) DO NOTHING RETURNING fingerprint, id",
        &new_keys,
        1,
        |b, fingerprint| {
            b.push_bind(fingerprint.to_string());
        },
        "store host keys",
    )
    .await?;
    key_ids.extend(inserted);
    let select = "SELECT fingerprint, id FROM host_keys WHERE fingerprint IN (";
    found_concurrently(conn, select, &fingerprints, &mut key_ids, "store host keys").await?;
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
            HostResult::Audited { files, .. } => file_set_key(&o.host.name, files).map(Some),
            HostResult::Error { .. } => Ok(None),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let file_set_ids = intern_file_sets(conn, &file_keys).await?;

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
        let mut insert = QueryBuilder::<Db>::new(
            "INSERT INTO scan_hosts (scan_id, host_id, outcome, error_kind, error_message, started_at, duration_ms,
                                     host_key_id, ps_format, processes, result_set_id, host_certificate_id,
                                     file_set_id) ",
        );
        insert.push_values(chunk, |mut b, (outcome, host_id, host_key_id, set_id, cert_id, file_set_id)| {
            let (kind, error_kind, error_message, ps_format, processes) = match &outcome.result {
                HostResult::Audited { ps_format, processes, .. } => {
                    ("audited", None, None, Some(ps_format.clone()), Some(i64::from(*processes)))
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
    conn: &mut Conn,
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
        " ON CONFLICT (sha256) DO NOTHING RETURNING sha256, id",
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
    let select = "SELECT sha256, id FROM host_certificates WHERE sha256 IN (";
    found_concurrently(conn, select, &hashes, &mut ids, what).await?;
    Ok(ids)
}

/// Adds the batch's verdicts to `scan_rule_counts`, which `rule_compliance` reads. A host that could not be
/// audited counts as error for every rule of the scan's rule set, as in `findings`.
async fn add_rule_counts(conn: &mut Conn, scan_id: i64, outcomes: &[HostOutcome]) -> Result<(), StoreError> {
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
            "SELECT m.rule_id FROM scans s JOIN rules m ON m.rules_version = s.rules_version WHERE s.id = $1",
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
        let mut upsert = QueryBuilder::<Db>::new(
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
                 SET pass = scan_rule_counts.pass + excluded.pass, fail = scan_rule_counts.fail + excluded.fail,
                     error = scan_rule_counts.error + excluded.error,
                     not_applicable = scan_rule_counts.not_applicable + excluded.not_applicable",
        );
        upsert.build().execute(&mut *conn).await.map_err(query_err("count verdicts"))?;
    }
    Ok(())
}

/// Inserts or updates the batch's hosts (by name) and returns their ids.
async fn upsert_hosts(conn: &mut Conn, outcomes: &[HostOutcome]) -> Result<HashMap<String, i64>, StoreError> {
    let mut ids = HashMap::with_capacity(outcomes.len());
    for chunk in outcomes.chunks(MAX_BINDS / 5) {
        let mut upsert = QueryBuilder::<Db>::new("INSERT INTO hosts (name, cluster, address, port, roles) ");
        upsert.push_values(chunk, |mut b, outcome| {
            let host = &outcome.host;
            b.push_bind(host.name.clone())
                .push_bind(host.cluster.clone())
                .push_bind(host.address.clone())
                .push_bind(i64::from(host.port))
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
    conn: &mut Conn,
    sets: impl Iterator<Item = &'a (Vec<WithEvidenceHash<'a>>, [u8; 32])>,
) -> Result<HashMap<Vec<u8>, i64>, StoreError> {
    // Deduplicated, then inserted in key order: two scanners storing the same new sets insert them in one order
    // and so wait for each other rather than deadlock.
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
    let mut new_bodies: Vec<&([u8; 32], &str)> =
        bodies.iter().filter(|(h, _)| !evidence_ids.contains_key(&h[..])).collect();
    new_bodies.sort_unstable_by_key(|(h, _)| *h);
    let inserted = insert_returning(
        conn,
        "INSERT INTO evidence (sha256, body) ",
        " ON CONFLICT (sha256) DO NOTHING RETURNING sha256, id",
        &new_bodies,
        2,
        |b, (hash, body)| {
            b.push_bind(hash.to_vec()).push_bind(body.to_string());
        },
        "store evidence",
    )
    .await?;
    evidence_ids.extend(inserted);
    let select = "SELECT sha256, id FROM evidence WHERE sha256 IN (";
    found_concurrently(conn, select, &hashes, &mut evidence_ids, "store evidence").await?;

    let mut new_hashes: Vec<Vec<u8>> = new.iter().map(|(_, h)| h.to_vec()).collect();
    new_hashes.sort_unstable();
    let new_ids = insert_returning(
        conn,
        "INSERT INTO result_sets (sha256) ",
        " ON CONFLICT (sha256) DO NOTHING RETURNING sha256, id",
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
        // A set another scanner stored meanwhile (its transaction committed while this one waited on the
        // conflict) is whole already: it is looked up below, and its results are not written again.
        let Some(&set_id) = new_ids.get(&hash[..]) else { continue };
        for (finding, evidence) in items {
            let evidence_id = match evidence {
                Some(hash) => Some(*evidence_ids.get(&hash[..]).ok_or_else(unmatched)?),
                None => None,
            };
            results.push((set_id, *finding, evidence_id));
        }
    }
    for chunk in results.chunks(MAX_BINDS / 5) {
        let mut insert = QueryBuilder::<Db>::new("INSERT INTO results (set_id, rule_id, status, reason, evidence_id) ");
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
    let select = "SELECT sha256, id FROM result_sets WHERE sha256 IN (";
    found_concurrently(conn, select, &new_hashes, &mut ids, "store result sets").await?;
    Ok(ids)
}

/// A row just written or found is missing from what the database returned: a bug, or a concurrent writer that
/// ignored the scan lock.
fn unmatched() -> StoreError {
    StoreError::Query { what: "match the rows written to the batch", source: sqlx::Error::RowNotFound }
}

/// The ids of the rows whose unique key is in `keys`; `select` is `SELECT key, id FROM table WHERE key IN (`.
async fn find_ids<K>(
    conn: &mut Conn,
    select: &'static str,
    keys: &[K],
    what: &'static str,
) -> Result<HashMap<K, i64>, StoreError>
where
    K: for<'q> Encode<'q, Db> + for<'r> Decode<'r, Db> + Type<Db> + Clone + Eq + Hash + Send + Unpin,
{
    let mut ids = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(MAX_BINDS) {
        let mut query = QueryBuilder::<Db>::new(select);
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

/// Adds to `ids` the keys of `wanted` it lacks: rows another scanner inserted after this transaction looked
/// (`ON CONFLICT DO NOTHING` skipped them, and PostgreSQL's READ COMMITTED shows them to the next statement).
/// With one writer (SQLite's lock) nothing is missing and nothing is read.
async fn found_concurrently<K>(
    conn: &mut Conn,
    select: &'static str,
    wanted: &[K],
    ids: &mut HashMap<K, i64>,
    what: &'static str,
) -> Result<(), StoreError>
where
    K: for<'q> Encode<'q, Db> + for<'r> Decode<'r, Db> + Type<Db> + Clone + Eq + Hash + Send + Unpin,
{
    let missing: Vec<K> = wanted.iter().filter(|k| !ids.contains_key(*k)).cloned().collect();
    if !missing.is_empty() {
        ids.extend(find_ids(conn, select, &missing, what).await?);
    }
    Ok(())
}

/// Inserts `rows` (`insert` is `INSERT INTO table (key, ...) `; `push` binds one row's `binds_per_row` values)
/// and returns the new ids by key (`returning` is ` ON CONFLICT (key) DO NOTHING RETURNING key, id`). A row
/// another scanner inserted first is not returned: [`found_concurrently`] finds it.
async fn insert_returning<R, K>(
    conn: &mut Conn,
    insert: &'static str,
    returning: &'static str,
    rows: &[R],
    binds_per_row: usize,
    mut push: impl FnMut(&mut Separated<'_, Db, &'static str>, &R),
    what: &'static str,
) -> Result<HashMap<K, i64>, StoreError>
where
    K: for<'r> Decode<'r, Db> + Type<Db> + Eq + Hash + Send + Unpin,
{
    let mut ids = HashMap::with_capacity(rows.len());
    for chunk in rows.chunks(MAX_BINDS / binds_per_row) {
        let mut query = QueryBuilder::<Db>::new(insert);
        query.push_values(chunk, |mut b, row| push(&mut b, row));
        query.push(returning);
        let rows: Vec<(K, i64)> = query.build_query_as().fetch_all(&mut *conn).await.map_err(query_err(what))?;
        ids.extend(rows);
    }
    Ok(ids)
}

/// Returns the ids of the file sets holding exactly these observations (`None` for a host not audited), storing
/// the new ones with their observations and contents. As result sets: a stored set is immutable and was written
/// with all its members in one transaction, so finding its key is finding all of it; an unchanged host costs
/// one look-up and no write.
async fn intern_file_sets(
    conn: &mut Conn,
    keys: &[Option<(Vec<Keyed<'_>>, [u8; 32])>],
) -> Result<HashMap<Vec<u8>, i64>, StoreError> {
    let mut seen = HashSet::new();
    let unique: Vec<&(Vec<Keyed<'_>>, [u8; 32])> = keys.iter().flatten().filter(|(_, k)| seen.insert(*k)).collect();
    let hashes: Vec<Vec<u8>> = unique.iter().map(|(_, k)| k.to_vec()).collect();
    let what = "store file sets";
    let mut ids = find_ids(conn, "SELECT sha256, id FROM file_sets WHERE sha256 IN (", &hashes, what).await?;
    let new: Vec<&(Vec<Keyed<'_>>, [u8; 32])> = unique.into_iter().filter(|(_, k)| !ids.contains_key(&k[..])).collect();
    if new.is_empty() {
        return Ok(ids);
    }

    // Observations of the new sets, each once.
    let mut seen = HashSet::new();
    let observations: Vec<&Keyed<'_>> =
        new.iter().flat_map(|(m, _)| m.iter()).filter(|(_, k, _)| seen.insert(*k)).collect();
    let hashes: Vec<Vec<u8>> = observations.iter().map(|(_, k, _)| k.to_vec()).collect();
    let what = "store file observations";
    let mut observation_ids =
        find_ids(conn, "SELECT sha256, id FROM file_observations WHERE sha256 IN (", &hashes, what).await?;
    let mut new_observations: Vec<&&Keyed<'_>> =
        observations.iter().filter(|(_, k, _)| !observation_ids.contains_key(&k[..])).collect();
    new_observations.sort_unstable_by_key(|(_, k, _)| *k);

    let content_ids = intern_contents(conn, &new_observations).await?;
    let rows = new_observations
        .into_iter()
        .map(|keyed| {
            let content_id = match (&keyed.0.content, &keyed.0.sha256) {
                (Some(_), Some(sha)) => Some(*content_ids.get(sha).ok_or_else(unmatched)?),
                _ => None,
            };
            Ok((*keyed, content_id))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let inserted = insert_returning(
        conn,
        "INSERT INTO file_observations (sha256, path, kind, mode, uid, gid, owner, size, content_sha256, redacted, \
         content_id, problem, problem_message, roles) ",
        " ON CONFLICT (sha256) DO NOTHING RETURNING sha256, id",
        &rows,
        14,
        |b, ((file, key, _), content_id)| {
            b.push_bind(key.to_vec())
                .push_bind(file.path.clone())
                .push_bind(file.kind.clone())
                .push_bind(file.mode.map(i64::from))
                .push_bind(file.uid.map(i64::from))
                .push_bind(file.gid.map(i64::from))
                .push_bind(file.owner.clone())
                // SQLite integers are signed: a size past i64::MAX is a lying server's, kept as the largest.
                .push_bind(file.size.map(|s| i64::try_from(s).unwrap_or(i64::MAX)))
                .push_bind(file.sha256.clone())
                .push_bind(i64::from(file.redacted))
                .push_bind(*content_id)
                .push_bind(file.problem.clone())
                .push_bind(file.problem_message.clone())
                .push_bind(file.roles_text());
        },
        what,
    )
    .await?;
    observation_ids.extend(inserted);
    let select = "SELECT sha256, id FROM file_observations WHERE sha256 IN (";
    found_concurrently(conn, select, &hashes, &mut observation_ids, what).await?;

    let mut new_hashes: Vec<Vec<u8>> = new.iter().map(|(_, k)| k.to_vec()).collect();
    new_hashes.sort_unstable();
    let new_ids = insert_returning(
        conn,
        "INSERT INTO file_sets (sha256) ",
        " ON CONFLICT (sha256) DO NOTHING RETURNING sha256, id",
        &new_hashes,
        1,
        |b, hash| {
            b.push_bind(hash.clone());
        },
        "store file sets",
    )
    .await?;
    let mut members = Vec::new();
    for (files, key) in &new {
        // As for result sets: one another scanner stored meanwhile is whole already.
        let Some(&set_id) = new_ids.get(&key[..]) else { continue };
        for (_, observation, _) in files {
            members.push((set_id, *observation_ids.get(&observation[..]).ok_or_else(unmatched)?));
        }
    }
    for chunk in members.chunks(MAX_BINDS / 2) {
        let mut insert = QueryBuilder::<Db>::new("INSERT INTO file_set_members (set_id, observation_id) ");
        insert.push_values(chunk, |mut b, (set_id, observation_id)| {
            b.push_bind(*set_id).push_bind(*observation_id);
        });
        insert.build().execute(&mut *conn).await.map_err(query_err("store file set members"))?;
    }
    ids.extend(new_ids);
    let select = "SELECT sha256, id FROM file_sets WHERE sha256 IN (";
    found_concurrently(conn, select, &new_hashes, &mut ids, "store file sets").await?;
    Ok(ids)
}

/// The ids of the contents the new observations keep, by SHA-256, inserting those not stored yet. Each new
/// observation's contents are hashed here: `file_contents.sha256` is always the SHA-256 of `body`, and a record
/// whose hash is not its contents' is refused rather than pointed at contents that are not its own. (An
/// unchanged host has no new observation, so a rescan hashes nothing.)
async fn intern_contents(conn: &mut Conn, observations: &[&&Keyed<'_>]) -> Result<HashMap<String, i64>, StoreError> {
    let mut bodies: HashMap<&str, &[u8]> = HashMap::new();
    for &&&(file, _, host) in observations {
        let (Some(body), Some(sha)) = (&file.content, &file.sha256) else { continue };
        let actual: [u8; 32] = Sha256::digest(body).into();
        if hex(&actual) != *sha {
            return Err(bad_file(host, file, "sha256 is not the SHA-256 of the contents kept"));
        }
        bodies.insert(sha, body);
    }
    let mut hashes: Vec<String> = bodies.keys().map(|s| s.to_string()).collect();
    hashes.sort_unstable();
    let what = "store file contents";
    let mut ids = find_ids(conn, "SELECT sha256, id FROM file_contents WHERE sha256 IN (", &hashes, what).await?;
    let new: Vec<(&String, &[u8])> =
        hashes.iter().filter(|h| !ids.contains_key(*h)).map(|h| (h, bodies[h.as_str()])).collect();
    let mut start = 0;
    while start < new.len() {
        // At least one body a statement, however large.
        let mut end = start + 1;
        let mut bytes = new[start].1.len();
        while end < new.len() && end - start < MAX_BINDS / 2 && bytes + new[end].1.len() <= CONTENT_BYTES_PER_STATEMENT
        {
            bytes += new[end].1.len();
            end += 1;
        }
        let inserted = insert_returning(
            conn,
            "INSERT INTO file_contents (sha256, body) ",
            " ON CONFLICT (sha256) DO NOTHING RETURNING sha256, id",
            &new[start..end],
            2,
            |b, (sha, body)| {
                b.push_bind(sha.to_string()).push_bind(body.to_vec());
            },
            what,
        )
        .await?;
        ids.extend(inserted);
        start = end;
    }
    let select = "SELECT sha256, id FROM file_contents WHERE sha256 IN (";
    found_concurrently(conn, select, &hashes, &mut ids, what).await?;
    Ok(ids)
}

/// A row of `file_observations` (with its set), as the reads decode it.
type ObservationRow = (
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The files of each of `set_ids`, in path order; contents only when `content` is set.
pub(crate) async fn set_files(
    conn: &mut Conn,
    set_ids: &[i64],
    content: bool,
    what: &'static str,
) -> Result<HashMap<i64, Vec<FileRecord>>, StoreError> {
    let mut sets: HashMap<i64, Vec<FileRecord>> = set_ids.iter().map(|id| (*id, Vec::new())).collect();
    for chunk in set_ids.chunks(MAX_BINDS) {
        let mut query = QueryBuilder::<Db>::new(if content {
            "SELECT m.set_id, o.path, o.kind, o.mode, o.uid, o.gid, o.owner, o.size, o.content_sha256, o.redacted,
                    c.body, o.problem, o.problem_message, o.roles
               FROM file_set_members m JOIN file_observations o ON o.id = m.observation_id
               LEFT JOIN file_contents c ON c.id = o.content_id
              WHERE m.set_id IN ("
        } else {
            "SELECT m.set_id, o.path, o.kind, o.mode, o.uid, o.gid, o.owner, o.size, o.content_sha256, o.redacted,
                    NULL, o.problem, o.problem_message, o.roles
               FROM file_set_members m JOIN file_observations o ON o.id = m.observation_id
              WHERE m.set_id IN ("
        });
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(*id);
        }
        list.push_unseparated(") ORDER BY m.set_id, o.path");
        let rows: Vec<ObservationRow> = query.build_query_as().fetch_all(&mut *conn).await.map_err(query_err(what))?;
        for (
            set_id,
            path,
            kind,
            mode,
            uid,
            gid,
            owner,
            size,
            sha256,
            redacted,
            body,
            problem,
            problem_message,
            roles,
        ) in rows
        {
            let u32_of =
                |v: Option<i64>, column| v.map(|v| u32::try_from(v).map_err(|_| decode_err(what, column))).transpose();
            let record = FileRecord {
                path,
                kind,
                mode: u32_of(mode, "mode")?,
                uid: u32_of(uid, "uid")?,
                gid: u32_of(gid, "gid")?,
                owner,
                size: size.map(|s| u64::try_from(s).map_err(|_| decode_err(what, "size"))).transpose()?,
                sha256,
                redacted: redacted != 0,
                content: body,
                problem,
                problem_message,
                roles: roles.map(|r| r.split(' ').map(str::to_owned).collect()).unwrap_or_default(),
            };
            sets.entry(set_id).or_default().push(record);
        }
    }
    Ok(sets)
}
