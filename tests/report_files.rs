//! The files a scan read, as the report and `scan --format json` show them: two scans recorded through the real
//! store (the kubelet config's mode and contents change between them, a manifest is denied, a path holds markup),
//! the report rendered from the database alone, and the JSON document read back from it. A fleet past the store's
//! page size checks that every host page gets its own files and drift while sets and changes are read a page at
//! a time.

mod support;

use std::path::Path;

use fleetaudit::model::Status;
use fleetaudit::output::scan::{ScanResults, write_json};
use fleetaudit::store::{FileRecord, FindingRecord, HostOutcome, HostRecord, HostResult, RuleMeta, ScanLock, Store};
use support::records::{AFTER, BEFORE, CONFIG, DENIED, problem, read, sha, stat};

const HOSTILE: &str = "/etc/kubernetes/<script>alert(1)</script>.yaml";

fn record(name: &str) -> HostRecord {
    HostRecord {
        name: name.to_string(),
        cluster: Some("prod".to_string()),
        address: "127.0.0.1".to_string(),
        port: 22,
        roles: vec!["control-plane".to_string()],
    }
}

fn host(name: &str, files: Vec<FileRecord>) -> HostOutcome {
    HostOutcome {
        host: record(name),
        started_at: "2026-12-02T02:00:00.000Z".to_string(),
        duration_ms: 420,
        host_key_fingerprint: Some(format!("SHA256:key-of-{name}")),
        host_certificate: None,
        result: HostResult::Audited {
            ps_format: "procps".to_string(),
            processes: 180,
            findings: vec![FindingRecord {
                rule_id: "kubelet-read-only-port".to_string(),
                status: Status::Pass,
                reason: "from /var/lib/kubelet/config.yaml: readOnlyPort = 0".to_string(),
                evidence: None,
            }],
            files,
        },
    }
}

fn unreachable(name: &str) -> HostOutcome {
    HostOutcome {
        host: record(name),
        started_at: "2026-12-02T02:00:00.000Z".to_string(),
        duration_ms: 3001,
        host_key_fingerprint: None,
        host_certificate: None,
        result: HostResult::Error { kind: "unreachable".to_string(), message: "cannot connect".to_string() },
    }
}

fn rules() -> Vec<RuleMeta> {
    vec![RuleMeta {
        rule_id: "kubelet-read-only-port".to_string(),
        cis: "4.2.4".to_string(),
        title: "Verify that the --read-only-port argument is set to 0".to_string(),
        component: "kubelet".to_string(),
        severity: "medium".to_string(),
        rationale: String::new(),
        remediation: String::new(),
        test: String::new(),
        assessment: "automated".to_string(),
        cis_previous: "[]".to_string(),
    }]
}

fn cp(config: FileRecord) -> HostOutcome {
    host(
        "prod-cp-1",
        vec![
            config,
            stat("/etc/kubernetes/pki", "dir", 0o755),
            stat("/etc/kubernetes/pki/ca.key", "file", 0o600),
            FileRecord { redacted: true, ..read("/etc/kubernetes/admin.conf", 0o600, "token: <redacted>\n") },
            problem("/etc/kubernetes/manifests/etcd.yaml", "denied", DENIED),
            stat(HOSTILE, "file", 0o644),
        ],
    )
}

fn worker(name: &str) -> HostOutcome {
    host(
        name,
        vec![read(CONFIG, 0o600, "kind: KubeletConfiguration\n"), stat("/etc/kubernetes/kubelet.conf", "file", 0o644)],
    )
}

async fn record_scans(db: &Path, scans: &[Vec<HostOutcome>]) -> Store {
    let store = Store::open(db).await.unwrap();
    let lock = ScanLock::on_file(db).unwrap();
    for hosts in scans {
        let id = store.begin_scan(&lock, "inventory.toml", "2026.12.0", &rules(), hosts.len()).await.unwrap();
        store.record_hosts(id, hosts).await.unwrap();
        store.finish_scan(id, false).await.unwrap();
    }
    store
}

fn page(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text between `from` and the next `</table>` (or the end).
fn section<'a>(html: &'a str, from: &str) -> &'a str {
    let start = html.find(from).unwrap_or_else(|| panic!("no {from:?} in\n{html}"));
    let rest = &html[start..];
    &rest[..rest.find("</table>").map_or(rest.len(), |e| e + "</table>".len())]
}

/// A table row of the "Files read" table: permissions, owner, size and path.
fn file_row(permissions: &str, owner: &str, size: u64, path: &str) -> String {
    format!(
        "<tr><td><code>{permissions}</code></td><td>{owner}</td><td class=\"n\">{size}</td><td><code>{path}</code></td>"
    )
}

fn json(store: &Store, scan_id: i64) -> serde_json::Value {
    let rt = tokio::runtime::Handle::current();
    let results = tokio::task::block_in_place(|| rt.block_on(ScanResults::load(store, scan_id))).unwrap();
    let mut out = Vec::new();
    write_json(&mut out, &results).unwrap();
    let doc = serde_json::from_slice(&out).unwrap();
    support::assert_valid(&doc);
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_pages_overview_and_json_show_the_files_and_their_drift() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let scans = [
        vec![cp(read(CONFIG, 0o600, BEFORE)), worker("prod-w-1"), worker("prod-w-2"), unreachable("prod-w-3")],
        vec![cp(read(CONFIG, 0o644, AFTER)), worker("prod-w-1"), worker("prod-w-2"), unreachable("prod-w-3")],
    ];
    let store = record_scans(&db, &scans).await;
    let out = dir.path().join("report");
    fleetaudit::report::render(&store, Some(1), &out).await.unwrap();
    let summary = fleetaudit::report::render(&store, None, &out).await.unwrap();
    assert_eq!(summary.scan_id, 2);
    let hosts = out.join("scan-2").join("hosts");

    // The control plane's page: a row per path, in path order, as ls shows them; the problem with its message.
    let html = page(&hosts.join("prod-cp-1.html"));
    let files = section(&html, "<h2 id=\"files\">Files read</h2>");
    let (before, after) = (sha(BEFORE.as_bytes()), sha(AFTER.as_bytes()));
    let rows = [
        file_row("-rw-------", "root:root", 18, "/etc/kubernetes/admin.conf"),
        "<td colspan=\"3\" class=\"s-error\">denied</td><td><code>/etc/kubernetes/manifests/etcd.yaml</code></td>"
            .into(),
        file_row("drwxr-xr-x", "root:root", 4096, "/etc/kubernetes/pki"),
        file_row("-rw-------", "root:root", 5632, "/etc/kubernetes/pki/ca.key"),
        file_row("-rw-r--r--", "root:root", AFTER.len() as u64, CONFIG),
    ];
    let mut at = 0;
    for row in &rows {
        let found = files[at..].find(row.as_str()).unwrap_or_else(|| panic!("no {row} (in order) in\n{files}"));
        at += found + row.len();
    }
    assert!(files.contains(&format!("<code>{}</code></td></tr>", &after[..12])), "the short sha256:\n{files}");
    assert!(files.contains("<code>/etc/kubernetes/admin.conf</code></td><td><code>"), "{files}");
    assert_eq!(files.matches("redacted").count(), 1, "admin.conf alone was redacted:\n{files}");
    assert!(files.contains("<td>denied: permission denied: the audit login cannot read it"), "{files}");
    assert!(!html.contains("apiVersion") && !html.contains("token:"), "contents are not shown");
    // A path a host named is text, never markup.
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(
        files.contains("/etc/kubernetes/&#60;script&#62;alert(1)&#60;/script&#62;.yaml")
            || files.contains("/etc/kubernetes/&lt;script&gt;alert(1)&lt;/script&gt;.yaml"),
        "{files}"
    );

    // Its drift since scan 1: the kubelet config's mode and contents, nothing else.
    let drift = section(&html, "<h2 id=\"file-changes\">");
    assert!(drift.contains("since the host's previous scan with files (1)"), "{drift}");
    assert!(drift.contains(&format!("<td><code>{CONFIG}</code></td>")), "{drift}");
    assert!(drift.contains("mode -rw------- → -rw-r--r--"), "{drift}");
    assert!(drift.contains(&format!("content sha256 {} → {}", &before[..12], &after[..12])), "{drift}");
    assert_eq!(drift.matches("<tr>").count(), 2, "a header and one change:\n{drift}");

    // Workers share one file set: both pages have its rows, and no drift.
    for w in ["prod-w-1", "prod-w-2"] {
        let html = page(&hosts.join(format!("{w}.html")));
        let files = section(&html, "<h2 id=\"files\">Files read</h2>");
        assert!(files.contains(&file_row("-rw-------", "root:root", 27, CONFIG)), "{w}:\n{files}");
        assert!(files.contains(&file_row("-rw-r--r--", "root:root", 5632, "/etc/kubernetes/kubelet.conf")), "{files}");
        assert!(html.contains("File changes since the host's previous scan with files (0)"), "{w}:\n{html}");
        assert!(html.contains("None: the host's files are as its previous scan"), "{w}");
    }
    // A host not audited has no files section.
    let html = page(&hosts.join("prod-w-3.html"));
    assert!(!html.contains("Files read") && !html.contains("File changes"), "{html}");

    // The overview lists the fleet's file changes with a link to the host page.
    let overview = page(&out.join("scan-2").join("index.html"));
    let changes = section(&overview, "<h3 id=\"file-changes\">");
    assert!(changes.contains("File changes (1)"), "{changes}");
    assert!(changes.contains("<td><a href=\"hosts/prod-cp-1.html\">prod-cp-1</a></td>"), "{changes}");
    assert!(changes.contains("mode -rw------- → -rw-r--r--"), "{changes}");
    assert!(!changes.contains("prod-w-1"), "{changes}");
    // The first scan has nothing to compare with.
    let first = page(&out.join("scan-1").join("index.html"));
    assert!(first.contains("File changes (0)</h3>\n<p class=\"muted\">None"), "{first}");
    let first_cp = page(&out.join("scan-1").join("hosts").join("prod-cp-1.html"));
    assert!(first_cp.contains(&file_row("-rw-------", "root:root", BEFORE.len() as u64, CONFIG)), "{first_cp}");
    assert!(first_cp.contains("with files (0)"), "{first_cp}");

    // JSON: each host's files as `eval --format json` shows them (no contents), and its changes.
    let doc = json(&store, 2);
    let host = |name: &str| doc["hosts"].as_array().unwrap().iter().find(|h| h["name"] == name).unwrap().clone();
    let cp = host("prod-cp-1");
    let files = cp["files"].as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/etc/kubernetes/<script>alert(1)</script>.yaml",
            "/etc/kubernetes/admin.conf",
            "/etc/kubernetes/manifests/etcd.yaml",
            "/etc/kubernetes/pki",
            "/etc/kubernetes/pki/ca.key",
            CONFIG
        ]
    );
    let config = &files[5];
    assert_eq!(config["mode"], "644");
    assert_eq!(config["permissions"], "-rw-r--r--");
    assert_eq!(config["owner"], "root:root");
    assert_eq!(config["sha256"], after.as_str());
    assert!(config.get("content").is_none() && config.get("redacted").is_none(), "{config}");
    assert_eq!(files[1]["redacted"], true);
    assert_eq!(files[2]["problem"], "denied");
    assert_eq!(files[2]["problem_message"], DENIED);
    assert!(files[2].get("mode").is_none());
    let changes = cp["file_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["path"], CONFIG);
    assert_eq!(changes[0]["previous_scan_id"], 1);
    assert_eq!(changes[0]["change"], serde_json::json!(["mode", "content"]));
    assert_eq!((changes[0]["previous_mode"].as_str(), changes[0]["mode"].as_str()), (Some("600"), Some("644")));
    assert_eq!(changes[0]["previous_permissions"], "-rw-------");
    assert_eq!(
        (changes[0]["previous_sha256"].as_str(), changes[0]["sha256"].as_str()),
        (Some(&before[..]), Some(&after[..]))
    );
    let w = host("prod-w-2");
    assert_eq!(w["files"].as_array().unwrap().len(), 2);
    assert_eq!(w["file_changes"], serde_json::json!([]));
    let down = host("prod-w-3");
    assert!(down["files"].is_null(), "{down}");
    assert_eq!(down["file_changes"], serde_json::json!([]));
    // The first scan: files, no changes.
    let doc = json(&store, 1);
    let cp = doc["hosts"].as_array().unwrap().iter().find(|h| h["name"] == "prod-cp-1").unwrap().clone();
    assert_eq!(cp["files"][5]["mode"], "600");
    assert_eq!(cp["file_changes"], serde_json::json!([]));
}

/// More hosts than a page of the store's reads (500): every page gets its own host's files and changes, the
/// overview caps its list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_past_a_page_gets_each_host_its_own_files() {
    const HOSTS: usize = 1_130;
    let changes = |i: usize| i % 3 != 1;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let fleet = |mode: u32| -> Vec<HostOutcome> {
        (0..HOSTS)
            .map(|i| {
                let name = format!("node-{i:04}");
                // Two hosts in three change their config's mode; each host has a path of its own.
                let mode = if changes(i) { mode } else { 0o600 };
                host(&name, vec![read(CONFIG, mode, BEFORE), stat(&format!("/etc/own/{name}"), "file", 0o640)])
            })
            .collect()
    };
    let store = record_scans(&db, &[fleet(0o600), fleet(0o644)]).await;
    let out = dir.path().join("report");
    fleetaudit::report::render(&store, None, &out).await.unwrap();
    let hosts = out.join("scan-2").join("hosts");
    let changed = (0..HOSTS).filter(|i| changes(*i)).count();
    for i in 0..HOSTS {
        let name = format!("node-{i:04}");
        let html = page(&hosts.join(format!("{name}.html")));
        let files = section(&html, "<h2 id=\"files\">Files read</h2>");
        assert!(files.contains(&format!("<code>/etc/own/{name}</code>")), "{name}:\n{files}");
        assert_eq!(files.matches("/etc/own/").count(), 1, "{name}: only its own path:\n{files}");
        let drift = section(&html, "<h2 id=\"file-changes\">");
        if changes(i) {
            assert!(drift.contains("(1)") && drift.contains("mode -rw------- → -rw-r--r--"), "{name}:\n{drift}");
        } else {
            assert!(drift.contains("(0)"), "{name}:\n{drift}");
        }
    }
    let overview = page(&out.join("scan-2").join("index.html"));
    let changes = section(&overview, "<h3 id=\"file-changes\">");
    assert!(changes.contains(&format!("File changes ({changed})")), "{changes}");
    assert_eq!(changes.matches("<tr>").count(), 1 + 500, "a header and the first 500");
    assert!(overview.contains(&format!("and {} more", changed - 500)), "{overview}");
    let doc = json(&store, 2);
    let with_changes =
        doc["hosts"].as_array().unwrap().iter().filter(|h| h["file_changes"] != serde_json::json!([])).count();
    assert_eq!(with_changes, changed);
    assert!(doc["hosts"].as_array().unwrap().iter().all(|h| h["files"].as_array().unwrap().len() == 2));
}
