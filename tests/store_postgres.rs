//! The history's PostgreSQL schema (`migrations/postgres/`) against the SQLite one (`migrations/sqlite/`), on a
//! real PostgreSQL server the test starts (`support::postgres`): the same tables and views, the same columns in
//! the same order with the types the store reads, and migration versions that stay in step. The store's
//! PostgreSQL side (issue 13) builds on this schema; users' queries name these tables, views and columns.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sqlx::Row;

fn migrations(backend: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend)
}

/// Relation → (table or view, its columns in order as (name, type)).
type Shape = BTreeMap<String, (String, Vec<(String, String)>)>;

fn add(shape: &mut Shape, relation: String, kind: &str, column: String, ty: String) {
    let kind = if kind.eq_ignore_ascii_case("view") { "view" } else { "table" };
    shape.entry(relation).or_insert_with(|| (kind.to_owned(), Vec::new())).1.push((column, ty));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_postgresql_schema_has_the_sqlite_schemas_tables_views_and_columns() {
    let pg = support::postgres::Postgres::start();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&pg.url("postgres")).await.unwrap();
    let migrator = sqlx::migrate::Migrator::new(migrations("postgres")).await.unwrap();
    migrator.run(&pool).await.unwrap();
    // A second open finds everything applied.
    migrator.run(&pool).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&pool).await.unwrap();
    assert_eq!(applied, migrator.iter().count() as i64);

    let mut postgres = Shape::new();
    let rows = sqlx::query(
        "SELECT c.table_name::text, t.table_type::text, c.column_name::text, c.data_type::text
           FROM information_schema.columns c
           JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
          WHERE c.table_schema = 'public' AND c.table_name NOT LIKE '\\_sqlx%'
          ORDER BY c.table_name, c.ordinal_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for r in rows {
        let kind: String = r.get(1);
        add(&mut postgres, r.get(0), if kind == "VIEW" { "view" } else { "table" }, r.get(2), r.get(3));
    }
    pool.close().await;

    // The SQLite side as fleetaudit creates it.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    fleetaudit::store::Store::open(&db).await.unwrap().close().await;
    let lite = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db).read_only(true))
        .await
        .unwrap();
    let mut sqlite = Shape::new();
    let rows = sqlx::query(
        "SELECT m.name, m.type, p.name, p.type FROM sqlite_master m, pragma_table_info(m.name) p
          WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
            AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\'
          ORDER BY m.name, p.cid",
    )
    .fetch_all(&lite)
    .await
    .unwrap();
    for r in rows {
        let kind: String = r.get(1);
        add(&mut sqlite, r.get(0), &kind, r.get(2), r.get(3));
    }
    lite.close().await;
    assert!(sqlite.len() >= 30 && sqlite.contains_key("findings") && sqlite.contains_key("scan_hosts"), "{sqlite:?}");

    let names = |s: &Shape| s.iter().map(|(k, (kind, _))| format!("{kind} {k}")).collect::<Vec<_>>();
    assert_eq!(names(&postgres), names(&sqlite), "the same tables and views");
    for (relation, (kind, columns)) in &sqlite {
        let pg_columns = &postgres[relation].1;
        let pg_names: Vec<&str> = pg_columns.iter().map(|(n, _)| n.as_str()).collect();
        let lite_names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(pg_names, lite_names, "{kind} {relation}: the same columns in the same order");
        // What the store decodes: i64 from INTEGER and BIGINT, strings from TEXT, bytes from BLOB and BYTEA.
        if kind == "table" {
            for ((name, lite_type), (_, pg_type)) in columns.iter().zip(pg_columns) {
                let want = match lite_type.as_str() {
                    "INTEGER" => "bigint",
                    "TEXT" => "text",
                    "BLOB" => "bytea",
                    other => panic!("{relation}.{name}: SQLite type {other} has no PostgreSQL counterpart here"),
                };
                assert_eq!(pg_type, want, "{relation}.{name} ({lite_type})");
            }
        }
    }
}

/// The same file observations into both, read back through `file_attributes`, the view whose formatting differs
/// most between the dialects (SQLite's printf('%o') and bit tests, written another way for PostgreSQL).
#[tokio::test(flavor = "multi_thread")]
async fn file_attributes_read_the_same_on_both() {
    let modes = [0o600, 0o4755, 0o2750, 0o1777, 0o644, 0, 0o055, 0o7777, 0o6711];
    let kinds = ["file", "dir", "symlink", "other"];
    let insert = "INSERT INTO file_observations (id, sha256, path, kind, mode, uid, gid, owner, size, redacted)
                  VALUES ($1, $2, $3, $4, $5, 0, 0, 'root:root', 10, 0)";
    let problem = "INSERT INTO file_observations (id, sha256, path, redacted, problem, problem_message)
                   VALUES (100, $1, '/etc/kubernetes/admin.conf', 0, 'denied', 'permission denied')";
    let read = "SELECT observation_id, path, kind, mode, permissions, uid, gid, owner, size, sha256, redacted, problem,
                       problem_message FROM file_attributes ORDER BY observation_id";
    type Row = (i64, String, Option<String>, Option<String>, Option<String>, Option<i64>, Option<i64>);

    // The same statements and binds on either pool (sqlx's pools are different types, the code the same).
    macro_rules! fill_and_read {
        ($pool:expr) => {{
            let pool = $pool;
            for (i, mode) in modes.iter().enumerate() {
                sqlx::query(insert)
                    .bind(i as i64)
                    .bind(vec![i as u8; 32])
                    .bind(format!("/p{i}"))
                    .bind(kinds[i % kinds.len()])
                    .bind(*mode as i64)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            sqlx::query(problem).bind(vec![100u8; 32]).execute(&pool).await.unwrap();
            let rows: Vec<Row> = sqlx::query(read)
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6)))
                .collect();
            pool.close().await;
            rows
        }};
    }

    let pg = support::postgres::Postgres::start();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&pg.url("postgres")).await.unwrap();
    sqlx::migrate::Migrator::new(migrations("postgres")).await.unwrap().run(&pool).await.unwrap();
    let from_pg = fill_and_read!(pool);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    fleetaudit::store::Store::open(&db).await.unwrap().close().await;
    let lite = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db))
        .await
        .unwrap();
    let from_sqlite = fill_and_read!(lite);

    assert_eq!(from_sqlite.len(), modes.len() + 1);
    assert_eq!(from_sqlite[0].4.as_deref(), Some("-rw-------"), "{:?}", from_sqlite[0]);
    assert_eq!(from_sqlite[1].4.as_deref(), Some("drwsr-xr-x"), "{:?}", from_sqlite[1]);
    assert_eq!(from_pg, from_sqlite);
}

/// Two scans of two hosts (the second scan could not reach one, and changed a verdict of the other), as rows.
const HISTORY_ROWS: &[&str] = &[
    "INSERT INTO scans (id, started_at, finished_at, status, inventory, rules_version, fleetaudit_version,
                        hosts_total, pid)
     VALUES (1, '2026-12-01T00:00:00.000Z', '2026-12-01T00:01:00.000Z', 'complete', 'fleet.toml', 'v1', '0.1', 2, 7),
            (2, '2026-12-02T00:00:00.000Z', '2026-12-02T00:01:00.000Z', 'complete', 'fleet.toml', 'v1', '0.1', 2, 8)",
    "INSERT INTO rules (rules_version, rule_id, cis, title, component, severity, rationale, assessment)
     VALUES ('v1', 'r1', '1.2.5', 'Verify the kubelet', 'apiserver', 'high', 'Because', 'automated'),
            ('v1', 'r2', '1.2.6', 'Authorize', 'apiserver', 'medium', NULL, 'manual')",
    "INSERT INTO hosts (id, name, cluster, address, port, roles)
     VALUES (1, 'cp-1', 'prod', '10.0.0.1', 22, 'control-plane'), (2, 'cp-2', 'prod', '10.0.0.2', 2222, 'control-plane')",
    "INSERT INTO host_keys (id, fingerprint) VALUES (1, 'SHA256:abc')",
    "INSERT INTO evidence (id, sha256, body) VALUES (1, $1, '[{\"pid\": 1, \"cmdline\": \"kube-apiserver\"}]')",
    "INSERT INTO result_sets (id, sha256) VALUES (1, $1), (2, $2)",
    "INSERT INTO results (set_id, rule_id, status, reason, evidence_id)
     VALUES (1, 'r1', 'pass', 'set', 1), (1, 'r2', 'fail', 'unset', NULL),
            (2, 'r1', 'fail', 'unset', 1), (2, 'r2', 'fail', 'unset', NULL)",
    "INSERT INTO scan_hosts (scan_id, host_id, outcome, error_kind, error_message, started_at, duration_ms,
                             host_key_id, ps_format, processes, result_set_id)
     VALUES (1, 1, 'audited', NULL, NULL, '2026-12-01T00:00:01.000Z', 40, 1, 'procps', 120, 1),
            (1, 2, 'audited', NULL, NULL, '2026-12-01T00:00:01.000Z', 41, 1, 'procps', 121, 1),
            (2, 1, 'audited', NULL, NULL, '2026-12-02T00:00:01.000Z', 42, 1, 'procps', 122, 2),
            (2, 2, 'error', 'unreachable', 'connection refused', '2026-12-02T00:00:01.000Z', 3, NULL, NULL, NULL, NULL)",
    "INSERT INTO scan_rule_counts (scan_id, rule_id, pass, fail, error, not_applicable)
     VALUES (1, 'r1', 2, 0, 0, 0), (1, 'r2', 0, 2, 0, 0), (2, 'r1', 0, 1, 1, 0), (2, 'r2', 0, 1, 1, 0)",
    // A host in no cluster, new in scan 2.
    "INSERT INTO hosts (id, name, cluster, address, port, roles) VALUES (3, 'lone', NULL, '10.0.0.3', 22, 'worker')",
    "INSERT INTO scan_hosts (scan_id, host_id, outcome, started_at, duration_ms, ps_format, processes, result_set_id)
     VALUES (2, 3, 'audited', '2026-12-02T00:00:02.000Z', 44, 'procps', 90, 1)",
    // The CA certificate scan 2 read on cp-1, at two paths with two roles, and lone's copy of it.
    "INSERT INTO file_contents (id, sha256, body)
     VALUES (1, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', $1)",
    "INSERT INTO file_observations (id, sha256, path, kind, mode, uid, gid, owner, size, content_sha256, redacted,
                                    content_id, roles)
     VALUES (11, $1, '/etc/kubernetes/pki/ca.crt', 'file', 420, 0, 0, 'root:root', 32,
             'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 0, 1, 'client-ca'),
            (12, $2, '/var/lib/kubelet/pki/ca.crt', 'file', 420, 0, 0, 'root:root', 32,
             'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 0, 1, 'kubelet-ca trust')",
    "INSERT INTO file_sets (id, sha256) VALUES (1, $1), (2, $2)",
    "INSERT INTO file_set_members (set_id, observation_id) VALUES (1, 11), (1, 12), (2, 11)",
    "UPDATE scan_hosts SET file_set_id = 1 WHERE scan_id = 2 AND host_id = 1",
    "UPDATE scan_hosts SET file_set_id = 2 WHERE scan_id = 2 AND host_id = 3",
    "INSERT INTO x509_certificates (id, fingerprint, subject, issuer, serial, not_before, not_after, is_ca, usages,
                                    dns_names, ip_addresses, der)
     VALUES (1, 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'CN=kubernetes', 'CN=kubernetes',
             '01', '2026-01-01T00:00:00Z', '2036-01-01T00:00:00Z', 1, 'keyCertSign', '[]', '[]', $1)",
    "INSERT INTO x509_contents (content_id, error) VALUES (1, NULL)",
    "INSERT INTO content_certificates (content_id, position, certificate_id) VALUES (1, 0, 1)",
    "INSERT INTO cluster_rules (rules_version, rule_id, cis, title, severity, rationale, remediation)
     VALUES ('v1', 'cluster-seed', '1.2.5', 'Kubelets are verified', 'high', 'Because', 'Sign them')",
    "INSERT INTO cluster_results (scan_id, cluster, rule_id, status, reason, evidence_id)
     VALUES (2, 'prod', 'cluster-seed', 'fail', 'cp-2 was not audited', 1)",
];

/// Runs one read on `pool` with its binds and keeps its rows, printed, in `out`.
macro_rules! read {
    ($pool:expr, $out:expr, $t:ty, $sql:expr $(, $bind:expr)*) => {{
        let rows: Vec<$t> = sqlx::query_as($sql)$(.bind($bind))*.fetch_all(&$pool).await
            .unwrap_or_else(|e| panic!("{}: {e}", $sql));
        assert!(!rows.is_empty(), "{}: no rows", $sql);
        $out.push(format!("{rows:?}"));
    }};
}

/// Every read the report, the outputs and `history` make (`store::reads`), run on both backends over the same
/// rows: the statements are one text for both, and must give the same rows, decoded into the same types.
#[tokio::test(flavor = "multi_thread")]
async fn the_stores_reads_give_the_same_rows_on_both() {
    use fleetaudit::store::read_sql as sql;
    use fleetaudit::store::{Change, ClusterCounts, HistoryRow, HostTransition, ResultRow, RuleRow, ScanHost};
    use fleetaudit::store::{ScanMeta, ScanRow};

    macro_rules! fill_and_read {
        ($pool:expr) => {{
            let pool = $pool;
            for statement in HISTORY_ROWS {
                let mut q = sqlx::query(*statement);
                for i in 0..statement.matches('$').count() {
                    q = q.bind(vec![i as u8; 32]);
                }
                q.execute(&pool).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
            }
            let mut out: Vec<String> = Vec::new();
            read!(pool, out, ScanRow, sql::SCANS);
            read!(pool, out, ScanMeta, sql::SCAN, 2i64);
            read!(pool, out, ScanHost, sql::SCAN_HOSTS, 2i64);
            read!(pool, out, ResultRow, sql::SCAN_RESULTS, 1i64);
            read!(pool, out, (i64, String), sql::SCAN_EVIDENCE, 1i64);
            read!(pool, out, RuleRow, sql::RULES, 2i64);
            read!(pool, out, Change, sql::CHANGES, 2i64, None::<&str>, None::<&str>);
            read!(pool, out, Change, sql::CHANGES, 2i64, Some("cp-1"), Some("r1"));
            read!(pool, out, ClusterCounts, sql::CLUSTER_TREND, 2i64, 30i64);
            read!(pool, out, HostTransition, sql::HOST_TRANSITIONS, 2i64);
            read!(pool, out, HistoryRow, sql::HISTORY_OF_HOST, "cp-2", None::<&str>);
            read!(pool, out, HistoryRow, sql::HISTORY, None::<&str>, Some("r2"));
            type Finding = (String, String, Option<String>, Option<String>, Option<String>, String, String, Option<String>);
            read!(pool, out, Finding, sql::CLUSTER_FINDINGS, 2i64);
            type Held = (Option<String>, String, String, String, String, String, i64, String, String, i64);
            read!(pool, out, Held, sql::HELD_CERTIFICATES, 2i64);
            read!(pool, out, (String, String, String, String, String, String), sql::CLUSTER_RULE_TEXTS, 2i64);
            type Past = (i64, String, String, String, String, String);
            read!(pool, out, Past, sql::CLUSTER_HISTORY, Some("prod"), None::<&str>);
            pool.close().await;
            out
        }};
    }

    let pg = support::postgres::Postgres::start();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&pg.url("postgres")).await.unwrap();
    sqlx::migrate::Migrator::new(migrations("postgres")).await.unwrap().run(&pool).await.unwrap();
    let from_pg = fill_and_read!(pool);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    fleetaudit::store::Store::open(&db).await.unwrap().close().await;
    let lite = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&db))
        .await
        .unwrap();
    let from_sqlite = fill_and_read!(lite);

    // What the rows say, so that agreeing on nothing cannot pass: scan 2's totals, the change of cp-1's r1, and
    // cp-2 no longer audited.
    assert!(
        from_sqlite[0].contains("id: 2") && from_sqlite[0].contains("pass: 0, fail: 2, error: 2"),
        "{}",
        from_sqlite[0]
    );
    assert!(
        from_sqlite[7].contains("host: \"cp-1\", rule_id: \"r1\", previous_status: \"pass\", status: \"fail\""),
        "{}",
        from_sqlite[7]
    );
    assert!(
        from_sqlite[9].contains("host: \"cp-2\", previous_outcome: Some(\"audited\"), outcome: \"error\""),
        "{}",
        from_sqlite[9]
    );
    // The hostless-cluster host sorts first in the trend; the CA is held once per cluster, with both roles.
    let trend = &from_sqlite[8];
    let (none, prod) = (trend.find("scan_id: 2, cluster: None"), trend.find("scan_id: 2, cluster: Some"));
    assert!(none.is_some() && none < prod, "{trend}");
    assert!(
        from_sqlite[13].contains("(None, \"bbbb") && from_sqlite[13].contains("(Some(\"prod\"), \"bbbb"),
        "{}",
        from_sqlite[13]
    );
    assert!(
        from_sqlite[13].contains("\"client-ca,kubelet-ca trust\"")
            || from_sqlite[13].contains("\"kubelet-ca trust,client-ca\""),
        "{}",
        from_sqlite[13]
    );
    assert_eq!(from_pg.len(), from_sqlite.len());
    for (i, (p, l)) in from_pg.iter().zip(&from_sqlite).enumerate() {
        assert_eq!(p, l, "read {i}");
    }
}

/// Migration versions from their file names.
fn versions(backend: &str) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(migrations(backend))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sql"))
        .map(|n| n.split('_').next().unwrap().parse().unwrap())
        .collect();
    v.sort_unstable();
    v
}

/// PostgreSQL's history starts with SQLite's schema as it stood at its first version; from there on, a change of
/// the schema is a migration in both directories under the same version.
#[test]
fn the_two_backends_migrations_stay_in_step() {
    let (lite, pg) = (versions("sqlite"), versions("postgres"));
    let first = *pg.first().expect("migrations/postgres/ has the schema");
    let lite_since: Vec<u64> = lite.iter().copied().filter(|v| *v >= first).collect();
    assert_eq!(pg, lite_since, "every version from {first} on is in both directories");
}
