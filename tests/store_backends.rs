//! One history, two backends: the same scans of the same simulated fleet stored in SQLite and in a real
//! PostgreSQL server (`support::postgres`), through `fleetaudit scan --db`, must give the same report, the same
//! JSON and the same `history`, and the store's guarantees (one scan at a time, deduplication, retention,
//! interrupted scans) must hold on both.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use fleetaudit::model::Status;
use fleetaudit::store::{
    Database, FileRecord, FindingRecord, HostOutcome, HostRecord, HostResult, Pruned, RuleMeta, Store, StoreError,
};
use support::records::{AFTER, BEFORE, CONFIG, read, stat};
use support::{fleetaudit, fleetaudit_env, text};

/// Times and durations differ between two scans of the same fleet; everything else must not.
fn normalized(text: &str) -> String {
    let time = regex::Regex::new(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?Z?( UTC)?").unwrap();
    let ms = regex::Regex::new(r#"("duration_ms"|"elapsed_ms"|"elapsed_seconds"|"duration_s"): ?[0-9.]+"#).unwrap();
    let secs = regex::Regex::new(r"\b\d+(\.\d+)? (ms|s)\b").unwrap();
    // The demo's expiring certificate ends a week after the simulator started: "in 7 days", then "in 6 days".
    let days = regex::Regex::new(r"\b(in|ago:?) \d+ days?\b|\b\d+ days? (ago|left)\b").unwrap();
    let text = time.replace_all(text, "TIME");
    let text = ms.replace_all(&text, "$1: N");
    let text = secs.replace_all(&text, "N $2");
    days.replace_all(&text, "N days").into_owned()
}

/// A scan's JSON with what two runs may differ in taken out: evidence ids (given in the order hosts were
/// recorded) become the evidence itself, and every array is sorted (the grouping of findings follows ids).
fn canonical_json(doc: &str) -> String {
    fn walk(v: &mut serde_json::Value, ids: &BTreeMap<String, String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    match (key.as_str(), &*value) {
                        ("duration_ms" | "elapsed_seconds" | "started_at" | "finished_at" | "scanned_at", _) => {
                            *value = serde_json::Value::Null;
                        }
                        ("evidence", serde_json::Value::String(id)) if ids.contains_key(id) => {
                            *value = serde_json::Value::String(ids[id].clone());
                        }
                        _ => walk(value, ids),
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for item in items.iter_mut() {
                    walk(item, ids);
                }
                items.sort_by_key(|item| item.to_string());
            }
            _ => {}
        }
    }
    let mut doc: serde_json::Value = serde_json::from_str(doc).unwrap();
    let evidence = doc.get_mut("evidence").map(serde_json::Value::take).unwrap_or_default();
    let ids: BTreeMap<String, String> = match &evidence {
        serde_json::Value::Object(map) => map.iter().map(|(id, body)| (id.clone(), body.to_string())).collect(),
        _ => BTreeMap::new(),
    };
    assert!(!ids.is_empty(), "the scan's JSON has no evidence");
    let mut bodies: Vec<&String> = ids.values().collect();
    bodies.sort();
    doc["evidence"] = serde_json::json!(bodies);
    walk(&mut doc, &ids);
    normalized(&doc.to_string())
}

/// Every file under `dir`, by relative path, normalized.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, normalized(&String::from_utf8_lossy(&std::fs::read(&path).unwrap())));
            }
        }
    }
    out
}

/// Fails naming `what` and showing where `a` and `b` first differ.
fn same(a: &str, b: &str, what: &str) {
    if a == b {
        return;
    }
    let at = a.bytes().zip(b.bytes()).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    let around = |t: &str| {
        let start = t.floor_char_boundary(at.saturating_sub(200));
        let end = t.ceil_char_boundary((at + 200).min(t.len()));
        t[start..end].to_owned()
    };
    panic!("{what} differs at byte {at}:\npostgres: {}\nsqlite:   {}", around(a), around(b));
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.code().is_some_and(|c| c <= 2),
        "{what}: exit {:?}\n{}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn the_same_scans_give_the_same_report_json_and_history_from_postgresql_and_sqlite() {
    let pg = support::postgres::Postgres::start();
    let url = pg.url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let demo = rt.block_on(fleetaudit::demo::prepare(&dir.path().join("fleet"))).unwrap();
    let inventory = demo.inventory.display().to_string();
    let lite = dir.path().join("history.db").display().to_string();

    // Two scans into each, alternating, so both hold a history with a previous scan to compare with.
    let mut json: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for round in 0..2 {
        for (name, db) in [("sqlite", lite.as_str()), ("postgres", url.as_str())] {
            // One host at a time: hosts are recorded in the order they finish, and that order gives the
            // evidence its ids, which the JSON shows.
            let out = fleetaudit(&["scan", "-i", &inventory, "--db", db, "--format", "json", "--concurrency", "1"]);
            let doc = ok(out, &format!("scan {round} into {name}"));
            json.entry(name).or_default().push(canonical_json(&doc));
        }
    }
    assert!(json["sqlite"][1].contains(r#""scan":{"#) && json["sqlite"][1].contains(r#""id":2,"#));
    assert!(json["sqlite"][1].contains("apiserver-kubelet-certificate-authority"), "{}", &json["sqlite"][1][..400]);
    for (round, (pg, lite)) in json["postgres"].iter().zip(&json["sqlite"]).enumerate() {
        same(pg, lite, &format!("scan {}'s JSON", round + 1));
    }

    // The report, every page, from each.
    let mut reports = Vec::new();
    for (name, db) in [("sqlite", lite.as_str()), ("postgres", url.as_str())] {
        let out_dir = dir.path().join(format!("report-{name}"));
        let out = fleetaudit(&["report", "--db", db, "--out", &out_dir.display().to_string()]);
        let said = ok(out, &format!("report from {name}"));
        assert!(said.contains("scan 2:"), "{said}");
        reports.push(tree(&out_dir));
    }
    let (from_sqlite, from_pg) = (&reports[0], &reports[1]);
    assert!(from_sqlite.len() > 10, "{:?}", from_sqlite.keys());
    assert_eq!(from_pg.keys().collect::<Vec<_>>(), from_sqlite.keys().collect::<Vec<_>>());
    for (page, lite_text) in from_sqlite {
        same(&from_pg[page], lite_text, page);
    }

    // `history`, host and cluster verdicts, as text and JSON; the URL from FLEETAUDIT_DB the second time.
    for args in [
        &["history", "--rule", "apiserver-kubelet-certificate-authority", "--format", "json"][..],
        &["history", "--host", "prod-cp-2"][..],
        &["history", "--cluster", "prod", "--format", "json"][..],
    ] {
        let from_sqlite = ok(fleetaudit(&[args, &["--db", &lite]].concat()), "history from sqlite");
        let from_pg = ok(fleetaudit(&[args, &["--db", &url]].concat()), "history from postgres");
        let from_env = ok(fleetaudit_env(args, &[("FLEETAUDIT_DB", Path::new(&url))]), "history, FLEETAUDIT_DB");
        assert!(from_sqlite.lines().count() > 2, "{from_sqlite}");
        same(&normalized(&from_pg), &normalized(&from_sqlite), &format!("{args:?}"));
        assert_eq!(from_env, from_pg, "{args:?}");
    }
    drop(demo);
    drop(rt);
}

/// The one rule the stores' scans here judge, `r1`.
fn rule() -> RuleMeta {
    RuleMeta {
        rule_id: "r1".into(),
        cis: "1.2.5".into(),
        title: "Verify the kubelet".into(),
        component: "apiserver".into(),
        severity: "high".into(),
        rationale: String::new(),
        remediation: String::new(),
        test: String::new(),
        assessment: "automated".into(),
        cis_previous: "[]".into(),
    }
}

fn host(name: &str) -> HostRecord {
    HostRecord {
        name: name.into(),
        cluster: Some("prod".into()),
        address: "10.0.0.1".into(),
        port: 22,
        roles: vec!["control-plane".into()],
    }
}

fn audited(name: &str, status: Status, config: &str) -> HostOutcome {
    HostOutcome {
        host: host(name),
        started_at: "2026-12-04T00:00:00.000Z".into(),
        duration_ms: 40,
        host_key_fingerprint: Some(format!("SHA256:{name}")),
        host_certificate: None,
        result: HostResult::Audited {
            ps_format: "procps".into(),
            processes: 120,
            findings: vec![FindingRecord {
                rule_id: "r1".into(),
                status,
                reason: format!("{status:?}"),
                evidence: Some(r#"[{"pid": 1, "cmdline": "kube-apiserver"}]"#.into()),
            }],
            files: vec![read(CONFIG, 0o600, config), stat("/etc/kubernetes", "dir", 0o755)],
        },
    }
}

fn unreachable(name: &str) -> HostOutcome {
    HostOutcome {
        result: HostResult::Error { kind: "unreachable".into(), message: "connection refused".into() },
        host_key_fingerprint: None,
        ..audited(name, Status::Pass, BEFORE)
    }
}

/// What one run of the store's guarantees saw, to compare between the backends.
#[derive(Debug, PartialEq)]
struct Seen {
    second_lock: String,
    scans: Vec<(i64, String)>,
    same_set: bool,
    not_running: String,
    files: Option<Vec<FileRecord>>,
    changes: Vec<String>,
    pruned: Pruned,
    after_prune: Vec<i64>,
}

async fn guarantees(db: &Database) -> Seen {
    let rules = [rule()];
    let store = Store::connect(db, true).await.unwrap();
    let other = Store::connect(db, true).await.unwrap();
    let lock = store.lock().await.unwrap();
    // SQLite: one scan at a time, a second process refused at once, naming the first. PostgreSQL: scanners
    // share scans, so nobody is locked out (the shared-scan tests cover what keeps them apart).
    let second_lock = match other.lock().await {
        Err(e @ StoreError::Locked { .. }) => e.to_string().split(" is using ").next().unwrap().to_owned(),
        Ok(_) if other.shares_scans() => "shared".to_owned(),
        other => panic!("a second lock on {db}: {other:?}"),
    };

    let begin = |lock| store.begin_scan(lock, "fleet.toml", "v1", &rules, 2);
    let first = begin(&lock).await.unwrap();
    store.record_hosts(first, &[audited("cp-1", Status::Pass, BEFORE), unreachable("cp-2")]).await.unwrap();
    store.finish_scan(first, false).await.unwrap();
    // The same verdicts again: the same result set, not a copy; then a changed verdict and file.
    let second = begin(&lock).await.unwrap();
    store.record_hosts(second, &[audited("cp-1", Status::Pass, BEFORE)]).await.unwrap();
    store.record_hosts(second, &[audited("cp-2", Status::Fail, AFTER)]).await.unwrap();
    store.finish_scan(second, false).await.unwrap();
    let sets = |scan| {
        let store = &store;
        async move { store.scan_hosts(scan).await.unwrap().into_iter().map(|h| (h.name, h.result_set_id)).collect() }
    };
    type Sets = Vec<(String, Option<i64>)>;
    let (one, two): (Sets, Sets) = (sets(first).await, sets(second).await);
    let same_set = one[0] == two[0] && one[0].1.is_some() && two[1].1 != two[0].1;
    let not_running =
        store.record_hosts(first, &[audited("cp-1", Status::Pass, BEFORE)]).await.unwrap_err().to_string();
    // A scan whose process died: the next scan under the lock marks it interrupted.
    let died = begin(&lock).await.unwrap();
    store.record_hosts(died, &[audited("cp-1", Status::Fail, AFTER)]).await.unwrap();
    let last = begin(&lock).await.unwrap();
    store.record_hosts(last, &[audited("cp-1", Status::Pass, BEFORE)]).await.unwrap();
    store.finish_scan(last, false).await.unwrap();
    let scans = store.scans().await.unwrap().into_iter().map(|s| (s.id, s.status)).collect();
    let files = store.host_files(second, "cp-2", true).await.unwrap();
    let changes = store
        .changes(second, None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|c| format!("{} {} {}->{}", c.host, c.rule_id, c.previous_status, c.status))
        .collect();
    let pruned = store.prune(&lock, 1).await.unwrap();
    let after_prune = store.scans().await.unwrap().into_iter().map(|s| s.id).collect();
    drop(lock);
    // The lock goes with its holder, however it ended.
    let again = other.lock().await.unwrap();
    drop(again);
    store.close().await;
    other.close().await;
    Seen { second_lock, scans, same_set, not_running, files, changes, pruned, after_prune }
}

/// The store's guarantees, run on both backends: deduplicated result sets, no writes to an ended scan,
/// interrupted scans marked, files read back byte for byte, changes, retention; and on SQLite one scan at a time.
#[tokio::test(flavor = "multi_thread")]
async fn the_stores_guarantees_hold_on_postgresql_as_on_sqlite() {
    let pg = support::postgres::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let lite = guarantees(&Database::Sqlite(dir.path().join("history.db"))).await;
    let from_pg = guarantees(&Database::parse(&pg.url("postgres"))).await;

    assert!(lite.second_lock.starts_with("another scan ("), "{}", lite.second_lock);
    assert_eq!(from_pg.second_lock, "shared");
    let statuses: Vec<&str> = lite.scans.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(statuses, ["complete", "interrupted", "complete", "complete"], "newest first");
    assert!(lite.same_set, "an unchanged host's verdicts are stored once");
    assert!(lite.not_running.starts_with("scan 1 is not running"), "{}", lite.not_running);
    let files = lite.files.as_ref().unwrap();
    assert_eq!(files[1].content.as_deref(), Some(AFTER.as_bytes()), "{files:?}");
    assert_eq!(lite.changes, ["cp-2 r1 error->fail"]);
    assert_eq!((lite.pruned.scans, lite.after_prune.as_slice()), (3, &[4][..]));
    assert!(lite.pruned.result_sets >= 1 && lite.pruned.file_sets >= 1, "{:?}", lite.pruned);

    // Everything but the lock holder's description, the same on PostgreSQL.
    assert_eq!(Seen { second_lock: String::new(), ..from_pg }, Seen { second_lock: String::new(), ..lite });
}

/// The README's ```sql block after `heading` (its first line containing it), as written.
fn readme_block(heading: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find(heading).unwrap_or_else(|| panic!("README has {heading:?}"))..];
    let start = section.find("```sql\n").unwrap() + "```sql\n".len();
    section[start..start + section[start..].find("```").unwrap()].to_owned()
}

/// The README's roles, as its PostgreSQL section creates them: the owner's scan migrates, the scanner's scan
/// writes without being able to change the schema, the reader renders the report and runs `history` but cannot
/// scan; and the README's example queries answer on PostgreSQL with `psql` as they do on SQLite.
#[test]
fn the_readme_roles_migrate_write_and_read_and_its_queries_answer_on_postgresql() {
    let pg = support::postgres::Postgres::start();
    pg.psql("postgres", &readme_block("As a superuser (`sudo -u postgres psql`)"));
    let url = |role: &str| format!("postgres://{role}@localhost/fleetaudit?host={}", pg.socket().display());
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let demo = rt.block_on(fleetaudit::demo::prepare(&dir.path().join("fleet"))).unwrap();
    let inventory = demo.inventory.display().to_string();
    let scan = |role: &str| fleetaudit(&["scan", "-i", &inventory, "--db", &url(role), "--quiet"]);

    // A fresh database: the scanner cannot create the schema, and says who can.
    let refused = scan("fleetaudit_scanner");
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("must own the schema"), "{}", text(&refused.stderr));
    let owner = scan("fleetaudit_owner");
    assert_eq!(owner.status.code(), Some(2), "the demo has an unreachable host: {}", text(&owner.stderr));
    let scanner = scan("fleetaudit_scanner");
    assert_eq!(scanner.status.code(), Some(2), "{}", text(&scanner.stderr));
    let reader = scan("fleetaudit_reader");
    assert!(text(&reader.stderr).contains("permission denied for table"), "{}", text(&reader.stderr));

    let out_dir = dir.path().join("report");
    let report = fleetaudit(&["report", "--db", &url("fleetaudit_reader"), "--out", &out_dir.display().to_string()]);
    assert_eq!(report.status.code(), Some(0), "{}", text(&report.stderr));
    assert!(text(&report.stdout).starts_with("scan 2:"), "the scanner's scan is the latest: {}", text(&report.stdout));
    let history = fleetaudit(&["history", "--db", &url("fleetaudit_reader"), "--host", "prod-cp-2"]);
    assert_eq!(history.status.code(), Some(0), "{}", text(&history.stderr));
    let owned = pg.psql("fleetaudit", "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'");
    assert_eq!(owned.trim(), "fleetaudit_owner");

    // The Database section's example queries, on PostgreSQL, but for the ones the section gives in SQLite's
    // own spelling (its JSON functions, a BLOB cast to text).
    let sqlite_only = ["json_extract", "json_each", "CAST(c.body AS TEXT)"];
    let mut ran = 0;
    for block in [readme_block("## Database"), readme_block("Files (`tests/store_files.rs`")] {
        for query in block.split(";\n").map(str::trim).filter(|q| !q.is_empty()) {
            if sqlite_only.iter().any(|s| query.contains(s)) {
                continue;
            }
            let rows = pg.psql("fleetaudit", &format!("{query};"));
            if !query.contains("FROM changes") && !query.contains("FROM file_changes") {
                assert!(!rows.trim().is_empty(), "README query returned nothing on PostgreSQL:\n{query}");
            }
            ran += 1;
        }
    }
    assert!(ran >= 15, "{ran} queries");
    // The PostgreSQL spellings the section gives for those.
    let cmdline = pg.psql(
        "fleetaudit",
        "SELECT rule_id, CAST(evidence AS jsonb) -> 0 ->> 'cmdline' FROM findings
          WHERE scan_id = 1 AND host = 'prod-cp-2' AND rule_id = 'apiserver-kubelet-certificate-authority'",
    );
    assert!(cmdline.contains("|/usr/local/bin/kube-apiserver ") || cmdline.contains("|kube-apiserver "), "{cmdline}");
    let renumbered = pg.psql(
        "fleetaudit",
        "SELECT DISTINCT r.rule_id FROM rules r, jsonb_array_elements(CAST(r.cis_previous AS jsonb)) p
          WHERE p.value ->> 'cis' = '1.2.6'",
    );
    assert_eq!(renumbered.trim(), "apiserver-kubelet-certificate-authority");
    let config = pg.psql(
        "fleetaudit",
        "SELECT convert_from(c.body, 'UTF8') FROM host_files f JOIN file_contents c ON c.sha256 = f.sha256
          WHERE f.scan_id = 2 AND f.host = 'prod-cp-1' AND f.path = '/var/lib/kubelet/config.yaml'",
    );
    assert!(config.contains("kind: KubeletConfiguration"), "{config}");
    let reference = pg.psql(
        "fleetaudit",
        "SELECT host, status FROM latest_findings WHERE rule_id = 'apiserver-kubelet-certificate-authority' ORDER BY host",
    );
    assert!(reference.contains("prod-cp-1|pass") && reference.contains("prod-cp-2|fail"), "{reference}");
    drop(demo);
    drop(rt);
}

/// Many writers on one PostgreSQL database: two stores record disjoint hosts of one scan at once, every batch
/// holding the same new verdicts, evidence, files and host key, while a third prunes. Before the store used
/// `ON CONFLICT`, the second writer's insert of the same new evidence failed on its unique key; and a prune
/// could delete a row a batch had just found.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_a_prune_store_each_host_once_on_postgresql() {
    let pg = support::postgres::Postgres::start();
    let db = Database::parse(&pg.url("postgres"));
    let rules = [rule()];
    let (a, b, c) = (
        Store::connect(&db, true).await.unwrap(),
        Store::connect(&db, true).await.unwrap(),
        Store::connect(&db, true).await.unwrap(),
    );
    let lock = a.lock().await.unwrap();
    for config in [BEFORE, AFTER] {
        let old = a.begin_scan(&lock, "fleet.toml", "v1", &rules, 1).await.unwrap();
        a.record_hosts(old, &[audited("old", Status::Pass, config)]).await.unwrap();
        a.finish_scan(old, false).await.unwrap();
    }
    let scan = a.begin_scan(&lock, "fleet.toml", "v1", &rules, 400).await.unwrap();
    let write = |store: &Store, side: &'static str| {
        let store = store.clone();
        async move {
            for round in 0..40 {
                // New verdicts and files every round, the same for both writers.
                let config = format!("{AFTER}# round {round}\n");
                let batch: Vec<HostOutcome> = (0..5)
                    .map(|i| {
                        let mut o = audited(&format!("{side}-{round}-{i}"), Status::Fail, &config);
                        if let HostResult::Audited { findings, .. } = &mut o.result {
                            findings[0].reason = format!("round {round}");
                            findings[0].evidence = Some(format!(r#"[{{"round": {round}}}]"#));
                        }
                        o.host_key_fingerprint = Some(format!("SHA256:round-{round}"));
                        o
                    })
                    .collect();
                store.record_hosts(scan, &batch).await.unwrap_or_else(|e| panic!("{side} round {round}: {e}"));
            }
        }
    };
    let prune = async {
        let mut pruned = 0;
        for _ in 0..20 {
            pruned += c.prune(&lock, 1).await.unwrap().scans;
        }
        pruned
    };
    let ((), (), pruned) = tokio::join!(write(&a, "a"), write(&b, "b"), prune);
    a.finish_scan(scan, false).await.unwrap();

    assert_eq!(pruned, 1, "the older of the two ended scans, once");
    let hosts = a.scan_hosts(scan).await.unwrap();
    assert_eq!(hosts.len(), 400, "every host recorded once");
    let sets: std::collections::BTreeSet<i64> = hosts.iter().filter_map(|h| h.result_set_id).collect();
    assert_eq!(sets.len(), 40, "one result set per round, shared by both writers' hosts");
    let results = a.scan_results(scan).await.unwrap();
    assert_eq!(results.len(), 40, "each set's one result stored once: {results:?}");
    let counts = a.rules(scan).await.unwrap();
    assert_eq!((counts[0].fail, counts[0].pass), (400, 0), "{counts:?}");
    let files = a.host_files(scan, "b-39-4", true).await.unwrap().unwrap();
    assert_eq!(files[1].content.as_deref(), Some(format!("{AFTER}# round 39\n").as_bytes()));
    drop(lock);
    for s in [a, b, c] {
        s.close().await;
    }
}

/// The rules of joining a shared scan (PostgreSQL): a second scanner joins the running scan; one with another
/// inventory is refused; a daemon that ticks after its run's scan ended does not scan again; a scan whose
/// scanners all died is ended as interrupted by the next to start; and on SQLite there is nothing to share.
#[tokio::test(flavor = "multi_thread")]
async fn joining_a_shared_scan() {
    use fleetaudit::store::Scanner;
    let pg = support::postgres::Postgres::start();
    let store = Store::connect(&Database::parse(&pg.url("postgres")), true).await.unwrap();
    let hosts = vec![("cp-1".to_owned(), None), ("cp-2".to_owned(), Some("eu".to_owned()))];
    let one = Scanner { id: "a pid 1".into(), zone: None, lease: Duration::from_secs(60) };
    let two = Scanner { id: "b pid 2".into(), zone: Some("us".into()), lease: Duration::from_secs(60) };
    let first = store.join_scan("fleet.toml", "v1", &[], &hosts, &one, None).await.unwrap();
    assert!(first.created);
    let joined = store.join_scan("fleet.toml", "v1", &[], &hosts, &two, None).await.unwrap();
    assert_eq!((joined.scan_id, joined.created), (first.scan_id, false));
    let other = store.join_scan("fleet.toml", "v1", &[], &hosts[..1], &two, None).await.unwrap_err();
    assert!(other.to_string().contains("another inventory's hosts"), "{other}");
    let rules = store.join_scan("fleet.toml", "v2", &[], &hosts, &two, None).await.unwrap_err();
    assert!(rules.to_string().contains("rules v1, this scanner has v2"), "{rules}");

    // Zone us claims only hosts without a zone; nothing claimed twice.
    let claimed = store.claim_hosts(first.scan_id, &two, 10).await.unwrap();
    assert_eq!(claimed, [("cp-1".to_owned(), None)]);
    assert!(store.claim_hosts(first.scan_id, &one, 10).await.unwrap() == [("cp-2".to_owned(), None)]);
    assert!(!store.take_finish(first.scan_id, &one).await.unwrap(), "hosts left");
    let lost = store.record_claimed(first.scan_id, &two, &[audited("cp-1", Status::Pass, BEFORE)]).await.unwrap();
    assert!(lost.is_empty());
    let lost = store.record_claimed(first.scan_id, &two, &[audited("cp-2", Status::Pass, BEFORE)]).await.unwrap();
    assert_eq!(lost, ["cp-2"], "a host another scanner holds is not recorded");
    store.record_claimed(first.scan_id, &one, &[audited("cp-2", Status::Pass, BEFORE)]).await.unwrap();
    assert!(store.take_finish(first.scan_id, &two).await.unwrap());
    assert!(!store.take_finish(first.scan_id, &one).await.unwrap(), "one scanner ends it");
    store.finish_scan(first.scan_id, false).await.unwrap();

    // A daemon ticking late: its run's scan ended already.
    let late = store.join_scan("fleet.toml", "v1", &[], &hosts, &one, Some("2000-01-01T00:00:00.000Z")).await;
    assert!(matches!(late, Err(StoreError::RunDone { scan_id }) if scan_id == first.scan_id), "{late:?}");
    // Scanners that die: a lease of 1 ms, and nobody alive after it.
    let brief = Scanner { id: "c pid 3".into(), zone: None, lease: Duration::from_millis(1) };
    let dying = store.join_scan("fleet.toml", "v1", &[], &hosts, &brief, None).await.unwrap();
    assert!(dying.created && dying.scan_id > first.scan_id);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let next = store.join_scan("fleet.toml", "v1", &[], &hosts, &one, None).await.unwrap();
    assert!(next.created && next.scan_id > dying.scan_id);
    let statuses: Vec<(i64, String)> = store.scans().await.unwrap().into_iter().map(|s| (s.id, s.status)).collect();
    assert_eq!(statuses[1], (dying.scan_id, "interrupted".to_owned()), "{statuses:?}");
    store.close().await;

    let dir = tempfile::tempdir().unwrap();
    let lite = Store::open(&dir.path().join("history.db")).await.unwrap();
    assert!(!lite.shares_scans());
    assert!(matches!(lite.claim_hosts(1, &one, 1).await, Err(StoreError::NotShared)));
}
