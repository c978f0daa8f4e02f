//! The store against real SQLite files in temporary directories.

use std::os::unix::fs::PermissionsExt;

use sqlx::AssertSqlSafe;

use super::*;
use crate::model::Status::{self, Error as E, Fail as F, NotApplicable as NA, Pass as P};

const RULES: [&str; 4] = ["cis-1.2.6", "cis-1.2.7", "cis-2.1.1", "cis-4.2.1"];

fn rule_meta(ids: &[&str]) -> Vec<RuleMeta> {
    ids.iter()
        .map(|id| RuleMeta {
            rule_id: id.to_string(),
            cis: id.trim_start_matches("cis-").to_string(),
            title: format!("title of {id}"),
            component: "kube-apiserver".to_string(),
            severity: "high".to_string(),
            rationale: format!("rationale of {id}"),
            remediation: format!("remediation of {id}"),
            test: format!("test of {id}"),
            assessment: if id.ends_with('7') { "manual" } else { "automated" }.to_string(),
            cis_previous: "[]".to_string(),
        })
        .collect()
}

fn host(name: &str, cluster: &str) -> HostRecord {
    HostRecord {
        name: name.to_string(),
        cluster: Some(cluster.to_string()),
        address: format!("{name}.example.net"),
        port: 22,
        roles: vec!["control-plane".to_string(), "etcd".to_string()],
    }
}

/// A verdict; `not_applicable` ones carry no evidence, the others a small JSON document naming the host.
fn finding(host: &str, rule_id: &str, status: Status) -> FindingRecord {
    let evidence = (status != NA).then(|| {
        format!(
            r#"[{{"user":"root","cmdline":"kube-apiserver --anonymous-auth=false --host={host}","flags":[{{"flag":"{rule_id}","value":"x"}}]}}]"#
        )
    });
    FindingRecord { rule_id: rule_id.to_string(), status, reason: format!("{rule_id} is {status}"), evidence }
}

fn audited(name: &str, cluster: &str, statuses: [Status; 4]) -> HostOutcome {
    HostOutcome {
        host: host(name, cluster),
        started_at: "2026-11-29T02:00:00.000Z".to_string(),
        duration_ms: 812,
        host_key_fingerprint: Some(format!("SHA256:key-of-{name}")),
        host_certificate: None,
        result: HostResult::Audited {
            files: Vec::new(),
            ps_format: "procps".to_string(),
            processes: 214,
            findings: RULES.iter().zip(statuses).map(|(rule, status)| finding(name, rule, status)).collect(),
        },
    }
}

fn errored(name: &str, cluster: &str, kind: &str, message: &str, key: bool) -> HostOutcome {
    HostOutcome {
        host: host(name, cluster),
        started_at: "2026-11-29T02:00:00.000Z".to_string(),
        duration_ms: 30_000,
        host_key_fingerprint: key.then(|| format!("SHA256:key-of-{name}")),
        host_certificate: None,
        result: HostResult::Error { kind: kind.to_string(), message: message.to_string() },
    }
}

async fn scalar(store: &Store, sql: &'static str) -> i64 {
    on_pool!(store, |pool, _side| sqlx::query_scalar(sql).fetch_one(pool).await.unwrap())
}

/// SQLite's own checks of the file and its foreign keys (PostgreSQL enforces foreign keys at every statement).
async fn assert_integrity(store: &Store) {
    if store.shares_scans() {
        return;
    }
    let check: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check").fetch_all(store.pool()).await.unwrap();
    assert_eq!(check, ["ok"]);
    let fk = sqlx::query("PRAGMA foreign_key_check").fetch_all(store.pool()).await.unwrap();
    assert!(fk.is_empty(), "foreign key violations: {}", fk.len());
}

/// Bytes of the database file once the WAL is folded into it.
async fn db_bytes(store: &Store) -> i64 {
    let (busy, _, _): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(store.pool()).await.unwrap();
    assert_eq!(busy, 0, "checkpoint blocked by a reader");
    scalar(store, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()").await
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Three scans of a small fleet:
/// 1 (complete): cp-1 and w-1 audited, w-2 unreachable.
/// 2 (complete): cp-1 fixed cis-1.2.7, w-1 timed out, w-2 audited, w-3 new.
/// 3 (left running): only cp-1, which now fails cis-1.2.6.
async fn scenario(store: &Store, lock: &ScanLock) -> [i64; 3] {
    let rules = rule_meta(&RULES);
    let s1 = store.begin_scan(lock, "inventory.toml", "2026.11.0", &rules, 3).await.unwrap();
    store
        .record_hosts(
            s1,
            &[
                audited("cp-1", "prod", [P, F, NA, P]),
                audited("w-1", "prod", [NA, NA, NA, F]),
                errored("w-2", "dev", "unreachable", "connection refused", false),
            ],
        )
        .await
        .unwrap();
    store.finish_scan(s1, false).await.unwrap();

    let s2 = store.begin_scan(lock, "inventory.toml", "2026.11.0", &rules, 4).await.unwrap();
    store.record_hosts(s2, &[audited("cp-1", "prod", [P, P, NA, P])]).await.unwrap();
    store
        .record_hosts(
            s2,
            &[
                errored("w-1", "prod", "timeout", "ps did not answer within 30s", true),
                audited("w-2", "dev", [NA, NA, NA, P]),
                audited("w-3", "dev", [NA, NA, NA, F]),
            ],
        )
        .await
        .unwrap();
    store.finish_scan(s2, false).await.unwrap();

    let s3 = store.begin_scan(lock, "inventory.toml", "2026.11.0", &rules, 4).await.unwrap();
    store.record_hosts(s3, &[audited("cp-1", "prod", [F, P, NA, P])]).await.unwrap();
    [s1, s2, s3]
}

/// A test of the store written once, run on both backends: `both! { async fn name(store, lock) { ... } }` makes
/// `name::sqlite` (a temporary file and its lock) and `name::postgres` (a real server, `support::postgres`).
macro_rules! both {
    (async fn $name:ident($store:ident, $lock:ident) $body:block) => {
        mod $name {
            use super::*;

            async fn run($store: Store, $lock: ScanLock) $body

            #[tokio::test]
            async fn sqlite() {
                let (_dir, path, store) = open_temp().await;
                let lock = ScanLock::on_file(&path).unwrap();
                run(store, lock).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                let server = pg::Postgres::start();
                let store = Store::connect(&Database::parse(&server.url("postgres")), true).await.unwrap();
                let lock = store.lock().await.unwrap();
                run(store, lock).await
            }
        }
    };
}

/// The integration tests' PostgreSQL server, for the store's tests that run on both backends.
#[allow(dead_code)]
#[path = "../../tests/support/postgres.rs"]
mod pg;

/// A free TCP port on 127.0.0.1 (what `pg` asks its parent module for).
#[allow(dead_code)]
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn open_temp() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let store = Store::open(&path).await.unwrap();
    (dir, path, store)
}

#[tokio::test]
async fn open_creates_a_private_migrated_database() {
    let (_dir, path, store) = open_temp().await;
    assert_eq!(mode(&path), 0o600);

    let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(store.pool()).await.unwrap();
    assert_eq!(journal, "wal");
    assert_eq!(scalar(&store, "PRAGMA foreign_keys").await, 1);
    assert_eq!(scalar(&store, "PRAGMA synchronous").await, 1, "NORMAL");
    assert_eq!(scalar(&store, "PRAGMA busy_timeout").await, 5000);

    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE '\\_%' ESCAPE '\\'
          ORDER BY name",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let expected = [
        "accepted_host_keys",
        "changes",
        "cluster_findings",
        "cluster_results",
        "cluster_rules",
        "content_certificates",
        "evidence",
        "file_attributes",
        "file_changes",
        "file_contents",
        "file_observations",
        "file_set_members",
        "file_sets",
        "findings",
        "host_certificates",
        "host_files",
        "host_keys",
        "host_status",
        "host_x509_certificates",
        "hosts",
        "latest_findings",
        "latest_host_files",
        "result_sets",
        "results",
        "rule_compliance",
        "rules",
        "scan_hosts",
        "scan_rule_counts",
        "scan_work",
        "scanners",
        "scans",
        "x509_certificates",
        "x509_contents",
    ];
    assert_eq!(names, expected);

    // The WAL appears on the first write; it must be as private as the database.
    let lock = ScanLock::on_file(&path).unwrap();
    store.begin_scan(&lock, "inventory.toml", "v1", &rule_meta(&RULES), 1).await.unwrap();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    assert_eq!(mode(Path::new(&wal)), 0o600);
    assert_integrity(&store).await;
}

/// Released migrations as databases in the field recorded them (`_sqlx_migrations.checksum`, SHA-384 of the
/// file): sqlx refuses to open a database whose applied migration's file changed, so a released file is never
/// edited, moved into another directory byte for byte only. New migrations are added below, once released.
const RELEASED: [(i64, &str); 8] = [
    (
        20261129000000,
        "96c4354c33e4a08490054a614b35f704bca396c73a9c07382e9f816edbd44faa0bc00e9616539cf00f3dba1ef3dbe465",
    ),
    (
        20261129010000,
        "417d45ef4f5d9d3992606e61f8751550ac26e68c088c1522ebe0ff0dde56074920608a23e89d169c2c5ded4f4d56e107",
    ),
    (
        20261129020000,
        "36b8be020fc39b28e9339aaae677e1f89e6b36f198e8abd9dd5a35a7684668ffee4360bbd6c8b69083ea85df3764ff10",
    ),
    (
        20261201000000,
        "cc70815a1b9c6289ce7840b4175c8068c22f82f9336f18995ed77044d264193d842777a26deacf167da7865988644cb3",
    ),
    (
        20261201100000,
        "427e3405e38e007f595285b5d60212f1e0f3d806b885463fbdf5e641f7124e1eaf9bab333b42a50d8d964d2626ee1225",
    ),
    (
        20261202000000,
        "89a60a156416cc7be2fd226caf2b09c92df4014896a0e47fbeb20f2c992976719511fa286499503cc57d2fc69145bbb9",
    ),
    (
        20261202100000,
        "207f5f92dab089cbec9b412b08b3d4788b3a1a0b0da72044d0cec97dfdd06c0d5e9567dbb4c6fdc77ef2993c3d91b3b0",
    ),
    (
        20261204000000,
        "0545469943f6a7734f80b90cf6d77e9f7710bde881d4447885df8129cd210a6f06c5a69f4dca96c10c49c40194a4bd7e",
    ),
];

#[test]
fn released_migrations_keep_their_checksums() {
    let embedded: Vec<(i64, String)> = MIGRATOR
        .iter()
        .map(|m| (m.version, m.checksum.iter().map(|b| format!("{b:02x}")).collect::<String>()))
        .collect();
    for (i, (version, checksum)) in RELEASED.iter().enumerate() {
        assert_eq!(embedded.get(i).map(|(v, _)| v), Some(version), "released migration {version} is gone or moved");
        assert_eq!(&embedded[i].1, checksum, "migration {version} was edited after release; add a new one instead");
    }
}

#[tokio::test]
async fn reopening_keeps_the_history_and_migrates_once() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let scans = scenario(&store, &lock).await;
    store.finish_scan(scans[2], false).await.unwrap();
    store.close().await;

    for _ in 0..2 {
        let store = Store::open(&path).await.unwrap();
        let migrations = scalar(&store, "SELECT count(*) FROM _sqlx_migrations").await;
        assert_eq!(migrations, MIGRATOR.iter().count() as i64);
        assert_eq!(scalar(&store, "SELECT count(*) FROM scans").await, 3);
        assert_eq!(scalar(&store, "SELECT count(*) FROM scan_hosts").await, 8);
        assert_integrity(&store).await;
        store.close().await;
    }
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test]
async fn a_second_lock_fails_at_once_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let first = ScanLock::on_file(&path).unwrap();
    assert_eq!(std::path::Path::new(first.place()), dir.path().join("history.db.lock"));
    assert_eq!(mode(std::path::Path::new(first.place())), 0o600);

    match ScanLock::on_file(&path) {
        Err(StoreError::Locked { path: locked, holder }) => {
            assert_eq!(locked, path);
            assert!(holder.starts_with(&format!("pid {} started 20", std::process::id())), "{holder}");
            let message = StoreError::Locked { path: locked, holder }.to_string();
            assert!(message.starts_with("another scan (pid "), "{message}");
            assert!(message.ends_with("; wait for it to finish or stop it"), "{message}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }

    drop(first);
    let again = ScanLock::on_file(&path).unwrap();
    let text = std::fs::read_to_string(again.place()).unwrap();
    assert_eq!(text.lines().count(), 1, "the new holder replaces the old line: {text:?}");
}

both! {
    async fn findings_show_audited_and_unreachable_hosts(store, lock) {
    let [s1, _, _] = scenario(&store, &lock).await;

    type Row = (String, String, Option<String>, String, String, String, Option<String>);
    let rows: Vec<Row> = on_pool!(store, |pool, _side| sqlx::query_as(
        "SELECT host, rule_id, cis, title, status, reason, evidence FROM findings WHERE scan_id = $1
          ORDER BY host, rule_id",
    )
    .bind(s1)
    .fetch_all(pool).await.unwrap());
    assert_eq!(rows.len(), 12, "3 hosts x 4 rules");

    let cp = &rows[1];
    assert_eq!((cp.0.as_str(), cp.1.as_str(), cp.4.as_str()), ("cp-1", "cis-1.2.7", "fail"));
    assert_eq!(cp.2.as_deref(), Some("1.2.7"));
    assert_eq!(cp.3, "title of cis-1.2.7");
    assert_eq!(cp.5, "cis-1.2.7 is fail");
    assert_eq!(cp.6, finding("cp-1", "cis-1.2.7", F).evidence);
    assert_eq!(rows[2].6, None, "not_applicable carries no evidence");

    let unreachable: Vec<&Row> = rows.iter().filter(|r| r.0 == "w-2").collect();
    assert_eq!(unreachable.len(), RULES.len(), "one error row per rule of the scan's rule set");
    for row in unreachable {
        assert_eq!(row.4, "error");
        assert_eq!(row.5, "unreachable: connection refused");
        assert_eq!(row.6, None);
        assert!(row.2.is_some(), "rule metadata joined");
    }

    let cluster: Option<String> = on_pool!(store, |pool, _side| sqlx::query_scalar("SELECT DISTINCT cluster FROM findings WHERE host = 'w-2'")
        .fetch_one(pool).await.unwrap());
    assert_eq!(cluster.as_deref(), Some("dev"));
    assert_integrity(&store).await;
}
}

both! {
    async fn latest_findings_are_from_each_hosts_newest_ended_scan(store, lock) {
    let [_, s2, s3] = scenario(&store, &lock).await;

    let latest = async || -> Vec<(String, i64, String, String, String)> {
        on_pool!(store, |pool, _side| sqlx::query_as("SELECT host, scan_id, rule_id, status, reason FROM latest_findings ORDER BY host, rule_id")
            .fetch_all(pool).await.unwrap())
    };
    // Scan 3 is still running: it is not the truth yet, so cp-1's latest verdicts are scan 2's.
    let rows = latest().await;
    assert_eq!(rows.len(), 4 * RULES.len());
    assert!(rows.iter().all(|r| r.1 == s2));
    assert_eq!(rows[0], ("cp-1".into(), s2, "cis-1.2.6".into(), "pass".into(), "cis-1.2.6 is pass".into()));
    let w1: Vec<_> = rows.iter().filter(|r| r.0 == "w-1").collect();
    assert!(w1.iter().all(|r| r.3 == "error" && r.4 == "timeout: ps did not answer within 30s"), "{w1:?}");

    // Once scan 3 ends (even interrupted), cp-1's verdicts come from it; hosts it did not reach stay at scan 2.
    store.finish_scan(s3, true).await.unwrap();
    let rows = latest().await;
    assert_eq!(rows.len(), 4 * RULES.len());
    for row in &rows {
        assert_eq!(row.1, if row.0 == "cp-1" { s3 } else { s2 }, "{row:?}");
    }
    assert_eq!(rows[0].3, "fail");
    assert_integrity(&store).await;
}
}

both! {
    async fn rule_compliance_counts_each_status(store, lock) {
    let [s1, s2, s3] = scenario(&store, &lock).await;

    type Row = (String, Option<String>, Option<String>, i64, i64, i64, i64, Option<f64>);
    let compliance = async |scan: i64| -> Vec<Row> {
        on_pool!(store, |pool, _side| sqlx::query_as(
            "SELECT rule_id, cis, severity, pass, fail, error, not_applicable, compliance_pct
               FROM rule_compliance WHERE scan_id = $1 ORDER BY rule_id",
        )
        .bind(scan)
        .fetch_all(pool).await.unwrap())
    };
    let pct = |rows: &[Row]| rows.iter().map(|r| r.7.map(|p| (p * 100.0).round() / 100.0)).collect::<Vec<_>>();
    let counts = |rows: &[Row]| rows.iter().map(|r| [r.3, r.4, r.5, r.6]).collect::<Vec<_>>();

    // Scan 1: cp-1 [P F NA P], w-1 [NA NA NA F], w-2 unreachable.
    let rows = compliance(s1).await;
    assert_eq!(rows[0].1.as_deref(), Some("1.2.6"));
    assert_eq!(rows[0].2.as_deref(), Some("high"));
    assert_eq!(counts(&rows), [[1, 0, 1, 1], [0, 1, 1, 1], [0, 0, 1, 2], [1, 1, 1, 0]]);
    assert_eq!(pct(&rows), [Some(50.0), Some(0.0), Some(0.0), Some(33.33)]);

    // Scan 2: cp-1 [P P NA P], w-1 timed out, w-2 [NA NA NA P], w-3 [NA NA NA F].
    assert_eq!(counts(&compliance(s2).await), [[1, 0, 1, 2], [1, 0, 1, 2], [0, 0, 1, 3], [2, 1, 1, 0]]);

    // Scan 3 (running): only cp-1 [F P NA P]; no host was judged for cis-2.1.1, so no percentage.
    let rows = compliance(s3).await;
    assert_eq!(counts(&rows), [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]]);
    assert_eq!(pct(&rows), [Some(0.0), Some(100.0), None, Some(100.0)]);

    // The counts kept as hosts are recorded agree with the verdicts in findings, for every scan and rule.
    let disagreeing = scalar(
        &store,
        "SELECT count(*) FROM rule_compliance c
          WHERE c.pass <> (SELECT count(*) FROM findings f
                            WHERE f.scan_id = c.scan_id AND f.rule_id = c.rule_id AND f.status = 'pass')
             OR c.fail <> (SELECT count(*) FROM findings f
                            WHERE f.scan_id = c.scan_id AND f.rule_id = c.rule_id AND f.status = 'fail')
             OR c.error <> (SELECT count(*) FROM findings f
                             WHERE f.scan_id = c.scan_id AND f.rule_id = c.rule_id AND f.status = 'error')
             OR c.not_applicable <> (SELECT count(*) FROM findings f
                                      WHERE f.scan_id = c.scan_id AND f.rule_id = c.rule_id
                                        AND f.status = 'not_applicable')",
    )
    .await;
    assert_eq!(disagreeing, 0);
    assert_eq!(scalar(&store, "SELECT count(*) FROM rule_compliance").await, 3 * RULES.len() as i64);

    // A scan that recorded no host yet lists its rules, with nothing judged.
    let s4 = store.begin_scan(&lock, "inventory.toml", "2026.11.0", &rule_meta(&RULES), 4).await.unwrap();
    let rows = compliance(s4).await;
    assert_eq!(counts(&rows), [[0; 4]; 4]);
    assert_eq!(pct(&rows), [None; 4]);
    assert_integrity(&store).await;
}
}

both! {
    async fn host_status_shows_each_hosts_latest_outcome(store, lock) {
    let [_, s2, _] = scenario(&store, &lock).await;

    type Row = (
        String,
        Option<String>,
        String,
        i64,
        String,
        String,
        Option<String>,
        Option<String>,
        i64,
        i64,
        i64,
        i64,
        Option<String>,
    );
    let rows: Vec<Row> = on_pool!(store, |pool, _side| sqlx::query_as(
        "SELECT host, cluster, address, scan_id, scanned_at, outcome, error_kind, error_message,
                pass, fail, error, not_applicable, host_key_fingerprint
           FROM host_status ORDER BY host",
    )
    .fetch_all(pool).await.unwrap());
    let hosts: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(hosts, ["cp-1", "w-1", "w-2", "w-3"]);
    assert!(rows.iter().all(|r| r.3 == s2), "the running scan 3 is not latest");

    let cp = &rows[0];
    assert_eq!((cp.1.as_deref(), cp.2.as_str()), (Some("prod"), "cp-1.example.net"));
    assert_eq!((cp.4.as_str(), cp.5.as_str()), ("2026-11-29T02:00:00.000Z", "audited"));
    assert_eq!([cp.8, cp.9, cp.10, cp.11], [3, 0, 0, 1]);
    assert_eq!(cp.12.as_deref(), Some("SHA256:key-of-cp-1"));

    let w1 = &rows[1];
    assert_eq!((w1.5.as_str(), w1.6.as_deref()), ("error", Some("timeout")));
    assert_eq!(w1.7.as_deref(), Some("ps did not answer within 30s"));
    assert_eq!([w1.8, w1.9, w1.10, w1.11], [0, 0, 4, 0], "every rule is an error, as in findings");
    assert_eq!(w1.12.as_deref(), Some("SHA256:key-of-w-1"));

    assert_eq!([rows[2].8, rows[2].9, rows[2].10, rows[2].11], [1, 0, 0, 3]);
    assert_eq!([rows[3].8, rows[3].9, rows[3].10, rows[3].11], [0, 1, 0, 3]);
    assert_integrity(&store).await;
}
}

both! {
    async fn changes_compare_each_host_with_its_previous_scan(store, lock) {
    let [s1, s2, s3] = scenario(&store, &lock).await;

    let changes = async |scan: i64| -> Vec<(i64, String, String, String, String)> {
        on_pool!(store, |pool, _side| sqlx::query_as(
            "SELECT previous_scan_id, host, rule_id, previous_status, status FROM changes WHERE scan_id = $1
              ORDER BY host, rule_id",
        )
        .bind(scan)
        .fetch_all(pool).await.unwrap())
    };
    assert_eq!(changes(s1).await, [], "the first scan has nothing to compare with");

    let row =
        |host: &str, rule: &str, before: &str, now: &str| (s1, host.into(), rule.into(), before.into(), now.into());
    assert_eq!(
        changes(s2).await,
        [
            // Fixed.
            row("cp-1", "cis-1.2.7", "fail", "pass"),
            // Audited, then timed out: every rule becomes error.
            row("w-1", "cis-1.2.6", "not_applicable", "error"),
            row("w-1", "cis-1.2.7", "not_applicable", "error"),
            row("w-1", "cis-2.1.1", "not_applicable", "error"),
            row("w-1", "cis-4.2.1", "fail", "error"),
            // Unreachable, then audited.
            row("w-2", "cis-1.2.6", "error", "not_applicable"),
            row("w-2", "cis-1.2.7", "error", "not_applicable"),
            row("w-2", "cis-2.1.1", "error", "not_applicable"),
            row("w-2", "cis-4.2.1", "error", "pass"),
            // w-3 is new: no previous scan, no changes.
        ]
    );
    assert_eq!(changes(s3).await, [(s2, "cp-1".into(), "cis-1.2.6".into(), "pass".into(), "fail".into())]);
    assert_integrity(&store).await;
}
}

#[tokio::test]
async fn example_queries_of_the_module_doc_run() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let [_, _, s3] = scenario(&store, &lock).await;
    store.finish_scan(s3, false).await.unwrap();

    let doc: String = include_str!("mod.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .skip_while(|l| l.trim() != "```sql")
        .skip(1)
        .take_while(|l| l.trim() != "```")
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect();
    let queries: Vec<&str> = doc.split(';').map(str::trim).filter(|q| !q.is_empty()).collect();
    assert!(queries.len() >= 5, "{queries:?}");
    for query in queries {
        let rows = sqlx::query(AssertSqlSafe(query.to_string())).fetch_all(store.pool()).await;
        let rows = rows.unwrap_or_else(|e| panic!("{query}\n{e}"));
        assert!(!rows.is_empty(), "example query returns nothing on the test fleet:\n{query}");
    }
}

#[tokio::test]
async fn an_unchanged_rescan_reuses_result_sets_and_costs_little() {
    // Enough hosts that a 4 KiB page is a few bytes per host.
    const HOSTS: usize = 1000;
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let rule_ids: Vec<String> = (0..56).map(|i| format!("cis-{}.{}.{}", 1 + i / 20, i / 5 % 4, i)).collect();
    let ids: Vec<&str> = rule_ids.iter().map(String::as_str).collect();
    let rules = rule_meta(&ids);
    // Every host has its own evidence (its name is in the command lines), hence its own result set, and its own
    // files: 40 paths, its kubelet config naming it, its own certificate, 30 more each only stat'ed.
    let node_files = |name: &str| {
        let mut files = files::node_files(&format!("nodeName: {name}\n"));
        files.push(files::read("/var/lib/kubelet/pki/kubelet.crt", 0o644, &format!("certificate of {name}\n")));
        files.push(files::stat("/etc/kubernetes/pki/etcd", "dir", 0o700, "etcd:etcd"));
        files.extend(
            (0..30).map(|i| files::stat(&format!("/etc/kubernetes/pki/etcd/{i}.key"), "file", 0o600, "etcd:etcd")),
        );
        files
    };
    let fleet: Vec<HostOutcome> = (0..HOSTS)
        .map(|h| {
            let name = format!("node-{h:04}");
            let statuses = [P, F, NA, P, E];
            HostOutcome {
                host: host(&name, "prod"),
                started_at: "2026-11-29T02:00:00.000Z".to_string(),
                duration_ms: 640,
                host_key_fingerprint: Some(format!("SHA256:key-of-{name}")),
                host_certificate: None,
                result: HostResult::Audited {
                    files: node_files(&name),
                    ps_format: "procps".to_string(),
                    processes: 230,
                    findings: ids.iter().enumerate().map(|(i, id)| finding(&name, id, statuses[i % 5])).collect(),
                },
            }
        })
        .collect();

    let scan = async || {
        let id = store.begin_scan(&lock, "inventory.toml", "2026.11.0", &rules, HOSTS).await.unwrap();
        for batch in fleet.chunks(64) {
            store.record_hosts(id, batch).await.unwrap();
        }
        store.finish_scan(id, false).await.unwrap();
    };
    scan().await;
    let counts = async || {
        [
            scalar(&store, "SELECT count(*) FROM result_sets").await,
            scalar(&store, "SELECT count(*) FROM results").await,
            scalar(&store, "SELECT count(*) FROM evidence").await,
            scalar(&store, "SELECT count(*) FROM hosts").await,
            scalar(&store, "SELECT count(*) FROM host_keys").await,
            scalar(&store, "SELECT count(*) FROM file_sets").await,
            scalar(&store, "SELECT count(*) FROM file_set_members").await,
            scalar(&store, "SELECT count(*) FROM file_observations").await,
            scalar(&store, "SELECT count(*) FROM file_contents").await,
        ]
    };
    let first = counts().await;
    assert_eq!(first[..2], [HOSTS as i64, (HOSTS * 56) as i64]);
    // Per host: its set of 40; its config and certificate (observations and contents); the rest shared.
    assert_eq!(first[5..], [HOSTS as i64, (HOSTS * 40) as i64, (HOSTS * 2 + 38) as i64, (HOSTS * 2 + 1) as i64]);
    let before = db_bytes(&store).await;

    scan().await;
    assert_eq!(counts().await, first, "the rescan stored no new set, result, evidence, host, key or file");
    assert_eq!(scalar(&store, "SELECT count(DISTINCT result_set_id) FROM scan_hosts").await, HOSTS as i64);
    assert_eq!(scalar(&store, "SELECT count(DISTINCT file_set_id) FROM scan_hosts").await, HOSTS as i64);
    let after = db_bytes(&store).await;
    let per_host = (after - before) / HOSTS as i64;
    eprintln!("unchanged rescan: {} bytes for {HOSTS} hosts = {per_host} bytes/host", after - before);
    assert!(per_host <= 200, "an unchanged rescan grew the database by {per_host} bytes per host");
    assert_eq!(scalar(&store, "SELECT count(*) FROM changes").await, 0);
    assert_eq!(scalar(&store, "SELECT count(*) FROM file_changes").await, 0);
    assert_integrity(&store).await;
}

both! {
    async fn identical_verdicts_share_one_result_set_whatever_their_order(store, lock) {
    let id = store.begin_scan(&lock, "inventory.toml", "v1", &rule_meta(&RULES), 2).await.unwrap();
    let a = audited("a", "prod", [P, F, NA, P]);
    let mut b = a.clone();
    b.host.name = "b".to_string();
    if let HostResult::Audited { findings, .. } = &mut b.result {
        findings.reverse();
    }
    store.record_hosts(id, &[a, b]).await.unwrap();
    assert_eq!(scalar(&store, "SELECT count(*) FROM result_sets").await, 1);
    assert_eq!(scalar(&store, "SELECT count(*) FROM results").await, 4);
    assert_eq!(scalar(&store, "SELECT count(*) FROM evidence").await, 3);
    assert_integrity(&store).await;
}
}

#[test]
fn the_result_set_key_changes_with_every_field() {
    let base: Vec<FindingRecord> = RULES.iter().map(|r| finding("h", r, P)).collect();
    let key = |f: &[FindingRecord]| result_set_key(f).1;
    let mut reversed = base.clone();
    reversed.reverse();
    assert_eq!(key(&base), key(&reversed));

    let variants: [fn(&mut FindingRecord); 5] = [
        |f| f.rule_id.push('x'),
        |f| f.status = F,
        |f| f.reason.push('.'),
        |f| f.evidence = None,
        |f| f.evidence = Some("[]".to_string()),
    ];
    for change in variants {
        let mut changed = base.clone();
        change(&mut changed[1]);
        assert_ne!(key(&base), key(&changed));
    }
    // Length prefixes: moving a character from one field to the next is a different set.
    let one = [FindingRecord { rule_id: "ab".into(), status: P, reason: "c".into(), evidence: None }];
    let two = [FindingRecord { rule_id: "a".into(), status: P, reason: "bc".into(), evidence: None }];
    assert_ne!(key(&one), key(&two));
    assert_ne!(key(&[]), key(&one));
}

#[tokio::test]
async fn a_scan_left_running_is_interrupted_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let rules = rule_meta(&RULES);
    {
        // A scan whose process dies half-way: one host recorded, never finished.
        let store = Store::open(&path).await.unwrap();
        let lock = ScanLock::on_file(&path).unwrap();
        let id = store.begin_scan(&lock, "inventory.toml", "v1", &rules, 2).await.unwrap();
        store.record_hosts(id, &[audited("cp-1", "prod", [P, P, P, P])]).await.unwrap();
        store.close().await;
    }
    let store = Store::open(&path).await.unwrap();
    let lock = ScanLock::on_file(&path).unwrap();
    assert_eq!(scalar(&store, "SELECT count(*) FROM latest_findings").await, 0, "a running scan is not latest");

    let second = store.begin_scan(&lock, "inventory.toml", "v1", &rules, 2).await.unwrap();
    let scans: Vec<(i64, String, Option<String>, i64, i64)> =
        sqlx::query_as("SELECT id, status, finished_at, hosts_total, pid FROM scans ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(scans[0].1, "interrupted");
    assert_eq!(scans[0].2, None, "nobody saw it end");
    assert_eq!(scans[0].3, 2);
    assert_eq!(scans[0].4, i64::from(std::process::id()));
    assert_eq!((scans[1].0, scans[1].1.as_str()), (second, "running"));
    // What the dead scan recorded stays, and is now the latest ended verdicts.
    assert_eq!(scalar(&store, "SELECT count(*) FROM latest_findings").await, 4);

    assert_eq!(store.mark_interrupted().await.unwrap(), 1);
    assert_eq!(store.mark_interrupted().await.unwrap(), 0);
    assert!(
        matches!(store.finish_scan(second, false).await, Err(StoreError::NotRunning { scan_id }) if scan_id == second)
    );
    assert!(matches!(
        store.record_hosts(second, &[audited("w-1", "prod", [P, P, P, P])]).await,
        Err(StoreError::NotRunning { .. })
    ));
    assert!(matches!(store.record_hosts(999, &[]).await, Err(StoreError::NotRunning { scan_id: 999 })));
    assert_integrity(&store).await;
}

both! {
    async fn finishing_sets_the_status_and_end_time_once(store, lock) {
    let id = store.begin_scan(&lock, "inventory.toml", "v1", &rule_meta(&RULES), 0).await.unwrap();
    store.finish_scan(id, false).await.unwrap();
    let (status, started, finished, version): (String, String, Option<String>, String) =
        on_pool!(store, |pool, _side| sqlx::query_as("SELECT status, started_at, finished_at, fleetaudit_version FROM scans WHERE id = $1")
            .bind(id)
            .fetch_one(pool).await.unwrap());
    assert_eq!(status, "complete");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let finished = finished.unwrap();
    for time in [&started, &finished] {
        assert_eq!(time.len(), "2026-11-29T02:00:00.000Z".len(), "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
    }
    assert!(finished >= started);
    assert!(matches!(store.finish_scan(id, true).await, Err(StoreError::NotRunning { .. })));
}
}

both! {
    async fn a_failing_batch_leaves_no_host_behind(store, lock) {
    let id = store.begin_scan(&lock, "inventory.toml", "v1", &rule_meta(&RULES), 3).await.unwrap();
    let good = audited("cp-1", "prod", [P, F, NA, P]);

    // The same rule twice: the results primary key refuses the second.
    let mut duplicate_rule = audited("w-1", "prod", [P, P, P, P]);
    if let HostResult::Audited { findings, .. } = &mut duplicate_rule.result {
        findings[1].rule_id = findings[0].rule_id.clone();
    }
    // Evidence that is not JSON: the CHECK on evidence.body refuses it.
    let mut bad_evidence = audited("w-2", "prod", [P, P, P, P]);
    if let HostResult::Audited { findings, .. } = &mut bad_evidence.result {
        findings[3].evidence = Some("kube-apiserver --not-json".to_string());
    }
    // The same host twice in one scan: the scan_hosts primary key refuses the second.
    let batches = [
        vec![good.clone(), duplicate_rule],
        vec![good.clone(), bad_evidence],
        vec![good.clone(), errored("w-3", "dev", "auth", "refused", true), good.clone()],
    ];
    let tables = async || {
        let mut counts = Vec::new();
        for sql in [
            "SELECT count(*) FROM hosts",
            "SELECT count(*) FROM host_keys",
            "SELECT count(*) FROM evidence",
            "SELECT count(*) FROM result_sets",
            "SELECT count(*) FROM results",
            "SELECT count(*) FROM scan_hosts",
            "SELECT count(*) FROM scan_rule_counts",
        ] {
            counts.push(scalar(&store, sql).await);
        }
        counts
    };
    for batch in &batches {
        let err = store.record_hosts(id, batch).await.unwrap_err();
        assert!(matches!(err, StoreError::Query { .. }), "{err}");
        assert_eq!(tables().await, [0; 7], "a partial batch was kept after: {err}");
    }

    store.record_hosts(id, &[good]).await.unwrap();
    assert_eq!(tables().await, [1, 1, 3, 1, 4, 1, 4]);
    store.finish_scan(id, false).await.unwrap();
    assert_integrity(&store).await;
}
}

#[tokio::test]
async fn the_schema_refuses_values_outside_its_vocabulary() {
    let (_dir, _path, store) = open_temp().await;
    for sql in [
        "INSERT INTO scans (started_at, status, inventory, rules_version, fleetaudit_version, hosts_total, pid)
         VALUES ('2026-11-29T00:00:00.000Z', 'done', 'i', 'v', '0', 0, 1)",
        "INSERT INTO result_sets (id, sha256) VALUES (1, x'00'); INSERT INTO results VALUES (1, 'r', 'maybe', '', NULL)",
        "INSERT INTO results VALUES (42, 'r', 'pass', '', NULL)",
        "INSERT INTO evidence (sha256, body) VALUES (x'01', 'not json')",
    ] {
        let mut tx = store.pool().begin().await.unwrap();
        let result = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await;
        assert!(result.is_err(), "accepted: {sql}");
    }
    assert_integrity(&store).await;
}

/// cp-1's cis-1.2.7 evidence while it ran an older kube-apiserver: only the two oldest scans of `history` use it.
const OLD_BINARY: &str = r#"[{"user":"root","cmdline":"kube-apiserver --version=1.29.0 --host=cp-1"}]"#;

/// Five ended scans; 4 and 5 are the two that `prune(keep = 2)` keeps.
/// 1: cp-1 [P F NA P] on the old binary (old key), w-1 [NA NA NA F], w-2 unreachable, old-1 [P P P P].
/// 2: as 1, but w-2 audited [NA NA NA P].
/// 3 (interrupted): cp-1 fixed cis-1.2.7 on the new binary [P P NA P] (old key still), w-1 timed out, w-2 as
///    in 2; old-1 is gone.
/// 4: cp-1 as in 3 with a new host key, w-1 as in 1 and 2, w-2 unreachable, w-3 new [NA NA NA F].
/// 5: cp-1 now fails cis-1.2.6 [F P NA P], w-1 [NA NA NA P], w-2 as in 2, w-3 as in 4.
async fn history(store: &Store, lock: &ScanLock) -> [i64; 5] {
    let rules = rule_meta(&RULES);
    let old_cp = || {
        let mut cp = audited("cp-1", "prod", [P, F, NA, P]);
        cp.host_key_fingerprint = Some("SHA256:old-key-of-cp-1".to_string());
        if let HostResult::Audited { findings, .. } = &mut cp.result {
            findings[1].evidence = Some(OLD_BINARY.to_string());
        }
        cp
    };
    let mut old_new_cp = audited("cp-1", "prod", [P, P, NA, P]);
    old_new_cp.host_key_fingerprint = Some("SHA256:old-key-of-cp-1".to_string());
    let scans = [
        vec![
            old_cp(),
            audited("w-1", "prod", [NA, NA, NA, F]),
            errored("w-2", "dev", "unreachable", "connection refused", false),
            audited("old-1", "prod", [P, P, P, P]),
        ],
        vec![
            old_cp(),
            audited("w-1", "prod", [NA, NA, NA, F]),
            audited("w-2", "dev", [NA, NA, NA, P]),
            audited("old-1", "prod", [P, P, P, P]),
        ],
        vec![
            old_new_cp,
            errored("w-1", "prod", "timeout", "ps did not answer within 30s", true),
            audited("w-2", "dev", [NA, NA, NA, P]),
        ],
        vec![
            audited("cp-1", "prod", [P, P, NA, P]),
            audited("w-1", "prod", [NA, NA, NA, F]),
            errored("w-2", "dev", "unreachable", "no route to host", false),
            audited("w-3", "dev", [NA, NA, NA, F]),
        ],
        vec![
            audited("cp-1", "prod", [F, P, NA, P]),
            audited("w-1", "prod", [NA, NA, NA, P]),
            audited("w-2", "dev", [NA, NA, NA, P]),
            audited("w-3", "dev", [NA, NA, NA, F]),
        ],
    ];
    let mut ids = [0; 5];
    for (i, hosts) in scans.iter().enumerate() {
        ids[i] = store.begin_scan(lock, "inventory.toml", "2026.11.0", &rules, hosts.len()).await.unwrap();
        store.record_hosts(ids[i], hosts).await.unwrap();
        store.finish_scan(ids[i], i == 2).await.unwrap();
    }
    ids
}

/// Every row of a view or table matching `filter`, each as its columns `quote()`d and joined, in order.
/// (On PostgreSQL each column as text, `NULL` for NULL: the rows compare among themselves, not with SQLite's.)
async fn dump(store: &Store, table: &str, filter: &str) -> Vec<String> {
    let (columns_sql, quote) = match store.shares_scans() {
        false => ("SELECT name FROM pragma_table_info($1) ORDER BY cid", "quote({c})"),
        true => (
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns WHERE table_name = $1
              ORDER BY ordinal_position",
            "coalesce(CAST({c} AS TEXT), 'NULL')",
        ),
    };
    let columns: Vec<String> =
        on_pool!(store, |pool, _side| sqlx::query_scalar(columns_sql).bind(table).fetch_all(pool).await.unwrap());
    assert!(!columns.is_empty(), "no table {table}");
    let row = columns.iter().map(|c| quote.replace("{c}", c)).collect::<Vec<_>>().join(" || '|' || ");
    let sql = format!("SELECT {row} FROM {table} WHERE {filter} ORDER BY 1");
    on_pool!(store, |pool, _side| sqlx::query_scalar(AssertSqlSafe(sql.clone())).fetch_all(pool).await.unwrap())
}

async fn strings(store: &Store, sql: &'static str) -> Vec<String> {
    on_pool!(store, |pool, _side| sqlx::query_scalar(sql).fetch_all(pool).await.unwrap())
}

#[tokio::test]
async fn prune_keeps_the_newest_scans_and_what_they_use() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let [s1, s2, s3, s4, s5] = history(&store, &lock).await;
    let kept = format!("scan_id IN ({s4}, {s5})");
    let both_kept = format!("{kept} AND previous_scan_id IN ({s4}, {s5})");
    let views = [
        ("findings", kept.as_str()),
        ("latest_findings", &kept),
        ("rule_compliance", &kept),
        ("host_status", &kept),
        ("changes", &both_kept),
    ];
    let mut before = Vec::new();
    for (view, filter) in views {
        let all = dump(&store, view, "true").await;
        let from_kept = dump(&store, view, filter).await;
        assert!(!from_kept.is_empty(), "{view} shows nothing of the kept scans: the test proves nothing");
        assert!(from_kept.len() < all.len(), "{view} shows nothing of the pruned scans: the test proves nothing");
        before.push(from_kept);
    }
    let s5_changes = format!("scan_id = {s5}");
    let s5_changes_before = dump(&store, "changes", &s5_changes).await;
    assert_eq!(s5_changes_before.len(), 6, "{s5_changes_before:#?}");
    assert!(!dump(&store, "changes", &format!("scan_id = {s4}")).await.is_empty());

    // What the kept scans use, and what only the pruned ones do, by content hash.
    let sets_of = |scans: &str| {
        format!(
            "SELECT DISTINCT hex(rs.sha256) FROM scan_hosts sh JOIN result_sets rs ON rs.id = sh.result_set_id
              WHERE sh.scan_id {scans} ORDER BY 1"
        )
    };
    let evidence_of = |scans: &str| {
        format!(
            "SELECT DISTINCT hex(e.sha256) FROM scan_hosts sh JOIN results r ON r.set_id = sh.result_set_id
               JOIN evidence e ON e.id = r.evidence_id
              WHERE sh.scan_id {scans} ORDER BY 1"
        )
    };
    let query = async |sql: String| -> Vec<String> {
        sqlx::query_scalar(AssertSqlSafe(sql)).fetch_all(store.pool()).await.unwrap()
    };
    let kept_ids = format!("IN ({s4}, {s5})");
    let pruned_ids = format!("IN ({s1}, {s2}, {s3})");
    let kept_sets = query(sets_of(&kept_ids)).await;
    let kept_evidence = query(evidence_of(&kept_ids)).await;
    let only_pruned_sets: Vec<String> =
        query(sets_of(&pruned_ids)).await.into_iter().filter(|s| !kept_sets.contains(s)).collect();
    let only_pruned_evidence: Vec<String> =
        query(evidence_of(&pruned_ids)).await.into_iter().filter(|e| !kept_evidence.contains(e)).collect();
    // cp-1 on the old binary and old-1; w-1's [NA NA NA F] of scans 1 and 2 is used again by scan 4.
    assert_eq!((kept_sets.len(), only_pruned_sets.len()), (6, 2));
    // OLD_BINARY and old-1's four documents.
    assert_eq!((kept_evidence.len(), only_pruned_evidence.len()), (6, 5));
    let old_binary: String = Sha256::digest(OLD_BINARY).iter().map(|b| format!("{b:02X}")).collect();
    assert!(only_pruned_evidence.contains(&old_binary));
    let (sets_before, evidence_before) = (
        scalar(&store, "SELECT count(*) FROM result_sets").await,
        scalar(&store, "SELECT count(*) FROM evidence").await,
    );
    assert_eq!((sets_before, evidence_before), (8, 11), "nothing else is stored");

    let pruned = store.prune(&lock, 2).await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            scans: 3,
            result_sets: 2,
            evidence: 5,
            host_keys: 2,
            file_sets: 0,
            file_observations: 0,
            file_contents: 0,
            hosts: 1
        }
    );

    let scans: Vec<i64> = sqlx::query_scalar("SELECT id FROM scans ORDER BY id").fetch_all(store.pool()).await.unwrap();
    assert_eq!(scans, [s4, s5]);
    for (table, rows) in [("scan_hosts", 8), ("scan_rule_counts", 8), ("results", 6 * 4)] {
        assert_eq!(dump(&store, table, "true").await.len(), rows, "{table}");
    }
    assert_eq!(query("SELECT hex(sha256) FROM result_sets ORDER BY 1".into()).await, kept_sets);
    assert_eq!(query("SELECT hex(sha256) FROM evidence ORDER BY 1".into()).await, kept_evidence);
    assert_eq!(strings(&store, "SELECT name FROM hosts ORDER BY name").await, ["cp-1", "w-1", "w-2", "w-3"]);
    assert_eq!(
        strings(&store, "SELECT fingerprint FROM host_keys ORDER BY fingerprint").await,
        ["SHA256:key-of-cp-1", "SHA256:key-of-w-1", "SHA256:key-of-w-2", "SHA256:key-of-w-3"]
    );

    // The kept scans read exactly as before; what is gone is what came from the pruned scans: old-1 (only
    // they included it) and scan 4's changes, whose previous scan was 3.
    let after_pruning = async || {
        let mut after = Vec::new();
        for (view, _) in views {
            after.push(dump(&store, view, "true").await);
        }
        after
    };
    assert_eq!(after_pruning().await, before);
    assert_eq!(dump(&store, "changes", &s5_changes).await, s5_changes_before);
    assert_integrity(&store).await;

    assert_eq!(store.prune(&lock, 2).await.unwrap(), Pruned::default(), "pruning twice deletes nothing more");
    assert_eq!(after_pruning().await, before);
    assert_integrity(&store).await;

    // The history goes on: a new scan reuses what is left, and re-creates what was pruned.
    let s6 = store.begin_scan(&lock, "inventory.toml", "2026.11.0", &rule_meta(&RULES), 2).await.unwrap();
    store
        .record_hosts(s6, &[audited("cp-1", "prod", [F, P, NA, P]), audited("old-1", "prod", [P, P, P, P])])
        .await
        .unwrap();
    store.finish_scan(s6, false).await.unwrap();
    assert_eq!(scalar(&store, "SELECT count(*) FROM result_sets").await, 7);
    assert_eq!(dump(&store, "changes", &format!("scan_id = {s6}")).await, Vec::<String>::new());
    assert_integrity(&store).await;
}

both! {
    async fn prune_never_deletes_a_running_scan(store, lock) {
    // Scan 3 is running (this process may be scanning while it prunes); its cp-1 [F P NA P] is its own set.
    let [s1, s2, s3] = scenario(&store, &lock).await;
    let scans = async || -> Vec<(i64, String)> {
        on_pool!(store, |pool, _side| sqlx::query_as("SELECT id, status FROM scans ORDER BY id").fetch_all(pool).await.unwrap())
    };

    let pruned = store.prune(&lock, 1).await.unwrap();
    assert_eq!(pruned.scans, 1, "a running scan does not count towards keep");
    assert_eq!(scans().await, [(s2, "complete".into()), (s3, "running".into())]);
    let s3_findings = format!("scan_id = {s3}");
    assert_eq!(dump(&store, "findings", &s3_findings).await.len(), RULES.len());
    assert_eq!(dump(&store, "findings", &format!("scan_id = {s1}")).await, Vec::<String>::new());
    assert_integrity(&store).await;

    // The running scan goes on as if nothing happened.
    store.record_hosts(s3, &[audited("w-1", "prod", [NA, NA, NA, F])]).await.unwrap();
    store.finish_scan(s3, false).await.unwrap();
    assert_eq!(dump(&store, "findings", &s3_findings).await.len(), 2 * RULES.len());

    // However old: a scan can only be left running behind newer ones by hand, but prune must not rely on it.
    let s4 = store.begin_scan(&lock, "inventory.toml", "2026.11.0", &rule_meta(&RULES), 1).await.unwrap();
    store.record_hosts(s4, &[audited("cp-1", "prod", [P, P, P, P])]).await.unwrap();
    store.finish_scan(s4, false).await.unwrap();
    on_pool!(store, |pool, _side| sqlx::query("UPDATE scans SET status = 'running' WHERE id = $1").bind(s2).execute(pool).await.unwrap().rows_affected());
    let s2_findings = dump(&store, "findings", &format!("scan_id = {s2}")).await;
    assert_eq!(s2_findings.len(), 4 * RULES.len());

    assert_eq!(store.prune(&lock, 1).await.unwrap().scans, 1);
    assert_eq!(scans().await, [(s2, "running".into()), (s4, "complete".into())]);
    assert_eq!(dump(&store, "findings", &format!("scan_id = {s2}")).await, s2_findings);
    assert_eq!(strings(&store, "SELECT name FROM hosts ORDER BY name").await, ["cp-1", "w-1", "w-2", "w-3"]);
    assert_integrity(&store).await;
}
}

both! {
    async fn prune_keeps_at_least_one_scan(store, lock) {
    let [_, _, s3] = scenario(&store, &lock).await;
    store.finish_scan(s3, false).await.unwrap();

    let err = store.prune(&lock, 0).await.unwrap_err();
    assert!(matches!(err, StoreError::KeepNone), "{err}");
    assert!(err.to_string().contains("keep at least 1"), "{err}");
    assert_eq!(scalar(&store, "SELECT count(*) FROM scans").await, 3);

    assert_eq!(store.prune(&lock, 3).await.unwrap(), Pruned::default());
    assert_eq!(store.prune(&lock, u32::MAX).await.unwrap(), Pruned::default());
    let pruned = store.prune(&lock, 1).await.unwrap();
    // Scans 1 and 2, and with them w-1, w-2 and w-3 and their keys: only scan 3's cp-1 is left.
    assert_eq!(pruned.scans, 2);
    assert_eq!((pruned.host_keys, pruned.hosts), (3, 3));
    assert_eq!(strings(&store, "SELECT name FROM hosts").await, ["cp-1"]);
    assert_eq!(scalar(&store, "SELECT count(*) FROM latest_findings").await, RULES.len() as i64);
    assert_integrity(&store).await;
}
}

/// 56 rules on each of `hosts` hosts; host `h`'s `generation(h)` is in every evidence document and in its
/// kubelet config, so each generation's verdicts are result sets and evidence of their own, and its files a
/// file set with an observation and contents of their own.
fn big_fleet(hosts: usize, generation: impl Fn(usize) -> usize) -> Vec<HostOutcome> {
    (0..hosts)
        .map(|h| {
            let name = format!("node-{h:05}");
            let statuses = [P, F, NA, P, P, P, F];
            let config = format!("nodeName: {name}\ngeneration: {}\n", generation(h));
            let mut outcome = files::with_files(audited(&name, "prod", [P, P, P, P]), files::node_files(&config));
            if let HostResult::Audited { findings, .. } = &mut outcome.result {
                *findings = (0..56)
                    .map(|i| {
                        let mut f = finding(&name, &format!("cis-{i:02}"), statuses[(i + h) % statuses.len()]);
                        f.evidence = f
                            .evidence
                            .map(|e| e.replace("--host=", &format!("--generation={} --host=", generation(h))));
                        f
                    })
                    .collect();
            }
            outcome
        })
        .collect()
}

#[tokio::test]
async fn prune_gives_space_back_only_when_auto_vacuum_is_incremental() {
    let rule_ids: Vec<String> = (0..56).map(|i| format!("cis-{i:02}")).collect();
    let rules = rule_meta(&rule_ids.iter().map(String::as_str).collect::<Vec<_>>());
    for incremental in [false, true] {
        let (_dir, path, store) = open_temp().await;
        if incremental {
            let mut conn = store.pool().acquire().await.unwrap();
            sqlx::query("PRAGMA auto_vacuum = INCREMENTAL").execute(&mut *conn).await.unwrap();
            sqlx::query("VACUUM").execute(&mut *conn).await.unwrap();
            // Asked on this connection: the others read the header again at their next transaction.
            let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum").fetch_one(&mut *conn).await.unwrap();
            assert_eq!(mode, 2, "INCREMENTAL");
        }
        let lock = ScanLock::on_file(&path).unwrap();
        let scan = async |generation| {
            let id = store.begin_scan(&lock, "inventory.toml", "v1", &rules, 100).await.unwrap();
            store.record_hosts(id, &big_fleet(100, |_| generation)).await.unwrap();
            store.finish_scan(id, false).await.unwrap();
        };
        scan(1).await;
        scan(2).await;
        let before = db_bytes(&store).await;

        let pruned = store.prune(&lock, 1).await.unwrap();
        assert_eq!((pruned.scans, pruned.result_sets), (1, 100));
        assert_eq!((pruned.file_sets, pruned.file_observations, pruned.file_contents), (100, 100, 100));
        let after = db_bytes(&store).await;
        let free = scalar(&store, "PRAGMA freelist_count").await;
        eprintln!("incremental {incremental}: {before} bytes before, {after} after, {free} free pages");
        if incremental {
            assert_eq!(free, 0);
            assert!(after < before * 2 / 3, "{before} -> {after}");
        } else {
            assert_eq!(after, before, "the file keeps its size");
            assert!(free > 0);
            // A later scan of the same size fills the freed pages instead of growing the file.
            scan(3).await;
            let rescanned = db_bytes(&store).await;
            eprintln!("rescan after pruning: {rescanned} bytes");
            assert!(rescanned <= before + before / 20, "{before} -> {rescanned}");
        }
        assert_integrity(&store).await;
    }
}

/// Every row pruning deletes is found by index: the parents in their child tables, for the foreign keys, and the
/// scans' rows by primary key. A full scan of `scan_hosts` or `results` per deleted row took minutes at 10,000
/// hosts x 50 scans. Only the parent tables (scans, result_sets, evidence, host_keys, file_sets,
/// file_observations, file_contents, hosts), which grow with what changes rather than with scans, are read whole.
#[tokio::test]
async fn prune_searches_the_history_by_index() {
    let (_dir, _path, store) = open_temp().await;
    for sql in PRUNE_STATEMENTS {
        let plan: Vec<String> = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .bind(1)
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| sqlx::Row::get(row, 3))
            .collect();
        for line in &plan {
            for child in ["scan_hosts", "results", "scan_rule_counts", "file_set_members"] {
                assert!(!line.starts_with(&format!("SCAN {child}")), "{sql}\nreads {child} whole: {plan:#?}");
            }
        }
    }
}

/// `changes` read from the scan's hosts, never from all results: with the planner statistics of a real
/// 10,000-host database (11 result sets shared by the hosts, `PRAGMA optimize` after the scan) the first
/// migration's view scanned `results` whole and looked up each result's hosts (1.1 s; its report took a third
/// longer). The statistics are planted here as SQLite documents (`sqlite_stat1`, reloaded by `ANALYZE
/// sqlite_schema`).
#[tokio::test]
async fn the_changes_view_reads_the_scans_hosts_first() {
    let (_dir, _path, store) = open_temp().await;
    let mut conn = store.pool().acquire().await.unwrap();
    sqlx::query("ANALYZE").execute(&mut *conn).await.unwrap();
    sqlx::query("DELETE FROM sqlite_stat1").execute(&mut *conn).await.unwrap();
    for (tbl, idx, stat) in [
        ("scan_hosts", "scan_hosts_by_result_set", "10000 667"),
        ("scan_hosts", "scan_hosts_by_host", "10000 1 1"),
        ("scan_hosts", "scan_hosts", "10000 2001 1"),
        ("results", "results", "1012 92 1"),
        ("results", "results_by_evidence", "783 20"),
    ] {
        sqlx::query("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?1, ?2, ?3)")
            .bind(tbl)
            .bind(idx)
            .bind(stat)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    sqlx::query("ANALYZE sqlite_schema").execute(&mut *conn).await.unwrap();
    let plan: Vec<String> = sqlx::query("EXPLAIN QUERY PLAN SELECT * FROM changes WHERE scan_id = ?1")
        .bind(2)
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .iter()
        .map(|row| sqlx::Row::get(row, 3))
        .collect();
    assert!(plan.iter().any(|l| l.starts_with("SEARCH c USING PRIMARY KEY (scan_id=?)")), "{plan:#?}");
    for line in &plan {
        assert!(!line.starts_with("SCAN r"), "reads results whole: {plan:#?}");
    }
}

/// The views at the scale they are written for: `cargo test --release store -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "slow: 10,000 hosts x 56 rules, run by hand"]
async fn views_stay_fast_at_ten_thousand_hosts() {
    use std::time::Instant;
    const HOSTS: usize = 10_000;
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let rule_ids: Vec<String> = (0..56).map(|i| format!("cis-{i:02}")).collect();
    let ids: Vec<&str> = rule_ids.iter().map(String::as_str).collect();
    let rules = rule_meta(&ids);
    let statuses = [P, F, NA, P, P, P, F];
    let fleet = |scan: usize| -> Vec<HostOutcome> {
        (0..HOSTS)
            .map(|h| {
                let name = format!("node-{h:05}");
                if scan == 1 && h % 100 == 0 {
                    return errored(&name, "prod", "timeout", "no answer", true);
                }
                // One host in ten changes a verdict, and its kubelet config's mode, between scans.
                let drift = if scan == 1 && h % 10 == 0 { 1 } else { 0 };
                let mut files = files::node_files(&format!("nodeName: {name}\n"));
                files[0].mode = Some(if drift == 1 { 0o644 } else { 0o600 });
                HostOutcome {
                    host: host(&name, &format!("c{}", h % 10)),
                    started_at: "2026-11-29T02:00:00.000Z".to_string(),
                    duration_ms: 640,
                    host_key_fingerprint: Some(format!("SHA256:key-of-{name}")),
                    host_certificate: None,
                    result: HostResult::Audited {
                        files,
                        ps_format: "procps".to_string(),
                        processes: 230,
                        findings: ids
                            .iter()
                            .enumerate()
                            .map(|(i, id)| finding(&name, id, statuses[(i + h + drift) % statuses.len()]))
                            .collect(),
                    },
                }
            })
            .collect()
    };
    for scan in 0..2 {
        let hosts = fleet(scan);
        let start = Instant::now();
        let id = store.begin_scan(&lock, "inventory.toml", "v1", &rules, HOSTS).await.unwrap();
        for batch in hosts.chunks(100) {
            store.record_hosts(id, batch).await.unwrap();
        }
        store.finish_scan(id, false).await.unwrap();
        eprintln!("scan {id}: recorded {HOSTS} hosts in {:?}", start.elapsed());
    }
    for sql in [
        "SELECT count(*) FROM findings WHERE scan_id = 2",
        "SELECT count(*) FROM findings WHERE host = 'node-00100'",
        "SELECT count(*) FROM latest_findings",
        "SELECT count(*) FROM latest_findings WHERE host = 'node-00100'",
        "SELECT count(*) FROM (SELECT * FROM rule_compliance WHERE scan_id = 2)",
        "SELECT count(*) FROM (SELECT * FROM rule_compliance
          WHERE scan_id = (SELECT max(id) FROM scans WHERE status = 'complete'))",
        "SELECT count(*) FROM findings WHERE scan_id = (SELECT max(id) FROM scans WHERE status = 'complete')",
        "SELECT count(*) FROM changes WHERE scan_id = (SELECT max(id) FROM scans WHERE status = 'complete')",
        "SELECT count(*) FROM (SELECT * FROM host_status)",
        "SELECT count(*) FROM (SELECT * FROM changes WHERE scan_id = 2)",
        "SELECT count(*) FROM host_files WHERE scan_id = 2",
        "SELECT count(*) FROM host_files WHERE host = 'node-00100'",
        "SELECT count(*) FROM latest_host_files",
        "SELECT count(*) FROM latest_host_files WHERE host = 'node-00100'",
        "SELECT count(*) FROM latest_host_files WHERE kind = 'file' AND mode <> '600'",
        "SELECT count(*) FROM (SELECT * FROM file_changes WHERE scan_id = 2)",
        "SELECT count(*) FROM (SELECT * FROM file_changes
          WHERE scan_id = (SELECT max(id) FROM scans WHERE status = 'complete'))",
    ] {
        let start = Instant::now();
        let n: i64 = sqlx::query_scalar(sql).fetch_one(store.pool()).await.unwrap();
        let took = start.elapsed();
        eprintln!("{took:>8?} {n:>7} rows  {sql}");
        if sql.contains("file") {
            // Measured (release, 2-core VM): each well under 100 ms but latest_host_files whole (~0.3 s).
            assert!(took < Duration::from_secs(2), "{sql}: {took:?}");
        }
    }
    let changed = store.file_changes(2, None, None, 10_000).await.unwrap();
    assert_eq!(changed.len(), HOSTS / 10 - HOSTS / 100, "one host in ten, less those that timed out in scan 1");
    assert!(changed.iter().all(|c| c.change == [FileChangeKind::Mode] && c.previous_scan_id == 1));
    let start = Instant::now();
    let mut after = None;
    let mut hosts = 0;
    loop {
        let page = store.scan_files(2, after.as_deref(), 500, false).await.unwrap();
        let Some((last, _)) = page.hosts.last() else { break };
        after = Some(last.clone());
        hosts += page.hosts.len();
    }
    eprintln!("{:>8?} {hosts:>7} hosts read with Store::scan_files, 500 a page", start.elapsed());
    assert_eq!(hosts, HOSTS - HOSTS / 100, "every host audited in scan 2");
    eprintln!("database: {} MB", db_bytes(&store).await / 1_000_000);
}

/// Pruning at the scale of the views: `cargo test --release store -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "slow: 10,000 hosts x 56 rules x 50 scans, run by hand"]
async fn prune_stays_fast_at_ten_thousand_hosts_and_fifty_scans() {
    use std::time::Instant;
    const HOSTS: usize = 10_000;
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let rule_ids: Vec<String> = (0..56).map(|i| format!("cis-{i:02}")).collect();
    let rules = rule_meta(&rule_ids.iter().map(String::as_str).collect::<Vec<_>>());
    let start = Instant::now();
    for scan in 0..50 {
        // Each host's evidence changes every 10 scans, a tenth of the fleet at each scan.
        let fleet = big_fleet(HOSTS, |h| (scan + h % 10) / 10);
        let id = store.begin_scan(&lock, "inventory.toml", "v1", &rules, HOSTS).await.unwrap();
        for batch in fleet.chunks(100) {
            store.record_hosts(id, batch).await.unwrap();
        }
        store.finish_scan(id, false).await.unwrap();
    }
    let counts = async || {
        let mut counts = Vec::new();
        for sql in [
            "SELECT count(*) FROM scan_hosts",
            "SELECT count(*) FROM result_sets",
            "SELECT count(*) FROM results",
            "SELECT count(*) FROM evidence",
        ] {
            counts.push(scalar(&store, sql).await);
        }
        counts
    };
    eprintln!("50 scans in {:?}; scan_hosts, result_sets, results, evidence: {:?}", start.elapsed(), counts().await);
    eprintln!("database: {} MB", db_bytes(&store).await / 1_000_000);
    for keep in [49, 2] {
        let start = Instant::now();
        let pruned = store.prune(&lock, keep).await.unwrap();
        let took = start.elapsed();
        eprintln!("prune(keep = {keep}) in {took:?}: {pruned:?}; left {:?}", counts().await);
        // Measured: 3.5 s for the oldest scan, 43 s for the 47 oldest (90% of a 934 MB database).
        assert!(took < Duration::from_secs(if keep == 49 { 10 } else { 120 }), "{took:?}");
    }
    assert_integrity(&store).await;
}

/// A host certificate is stored once however many scans see it, u64 serials survive SQLite's signed integers,
/// and pruning deletes the certificates only pruned scans saw.
#[tokio::test]
async fn host_certificates_are_stored_once_and_pruned_with_their_scans() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let rules = rule_meta(&RULES);
    let cert = |sha: &str, serial: u64| HostCertificateRecord {
        sha256: sha.to_string(),
        ca_fingerprint: "SHA256:the-ca".to_string(),
        serial,
        key_id: "cp-1 host".to_string(),
        principals: vec!["cp-1.example.internal".to_string(), "192.0.2.1".to_string()],
        valid_after: "2026-11-29T00:00:00Z".to_string(),
        valid_before: "forever".to_string(),
        description: format!("certificate signed by CA SHA256:the-ca, serial {serial}, key id \"cp-1 host\""),
    };
    let with =
        |c: HostCertificateRecord| HostOutcome { host_certificate: Some(c), ..audited("cp-1", "prod", [P, P, NA, P]) };
    let mut ids = Vec::new();
    for hosts in [
        vec![with(cert("old", u64::MAX)), audited("w-1", "prod", [NA, NA, NA, F])],
        vec![with(cert("new", 7))],
        vec![with(cert("new", 7))],
    ] {
        let id = store.begin_scan(&lock, "inventory.toml", "2026.11.0", &rules, hosts.len()).await.unwrap();
        store.record_hosts(id, &hosts).await.unwrap();
        store.finish_scan(id, false).await.unwrap();
        ids.push(id);
    }
    let rows =
        strings(&store, "SELECT sha256 || '|' || serial || '|' || principals FROM host_certificates ORDER BY id").await;
    assert_eq!(
        rows,
        ["old|18446744073709551615|cp-1.example.internal,192.0.2.1", "new|7|cp-1.example.internal,192.0.2.1"]
    );
    let pointing = scalar(&store, "SELECT count(*) FROM scan_hosts WHERE host_certificate_id IS NOT NULL").await;
    assert_eq!(pointing, 3);
    let pruned = store.prune(&lock, 2).await.unwrap();
    assert_eq!(pruned.scans, 1);
    assert_eq!(strings(&store, "SELECT sha256 FROM host_certificates").await, ["new"]);
    assert_integrity(&store).await;
}

#[path = "file_tests.rs"]
mod files;
