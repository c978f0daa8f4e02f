//! The README's example queries about files, run with the sqlite3 CLI users query with (Debian 12 has 3.40,
//! older than the SQLite fleetaudit embeds) against a history the store wrote: two scans of three hosts, with
//! modes 600 and 644, a denied and a missing path, and a kubelet config whose mode and contents changed.

mod support;

use fleetaudit::model::Status;
use fleetaudit::store::{FileRecord, FindingRecord, HostOutcome, HostRecord, HostResult, RuleMeta, ScanLock, Store};
use support::records::{AFTER, BEFORE, CONFIG, DENIED, problem, read, sha, stat};
use support::sqlite;

fn host(name: &str, files: Vec<FileRecord>) -> HostOutcome {
    HostOutcome {
        host: HostRecord {
            name: name.to_string(),
            cluster: Some("prod".to_string()),
            address: "127.0.0.1".to_string(),
            port: 22,
            roles: vec!["control-plane".to_string()],
        },
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

fn cp(config: FileRecord) -> HostOutcome {
    host(
        "prod-cp-1",
        vec![
            config,
            stat("/etc/kubernetes/pki", "dir", 0o755),
            stat("/etc/kubernetes/pki/ca.key", "file", 0o600),
            stat("/etc/kubernetes/admin.conf", "file", 0o600),
        ],
    )
}

fn worker() -> HostOutcome {
    host(
        "prod-w-1",
        vec![
            read(CONFIG, 0o600, "kind: KubeletConfiguration\n"),
            stat("/etc/kubernetes/kubelet.conf", "file", 0o644),
            stat("/etc/kubernetes/manifests", "dir", 0o700),
            problem("/etc/kubernetes/manifests/etcd.yaml", "denied", DENIED),
        ],
    )
}

/// The ```sql block after the README's "Files (" line, split into statements.
fn readme_file_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("Files (`tests/store_files.rs`").expect("README has the files queries")..];
    let start = section.find("```sql\n").unwrap() + "```sql\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    block.split(";\n").map(str::trim).filter(|q| !q.is_empty()).map(|q| format!("{q};")).collect()
}

#[tokio::test]
async fn the_readme_file_queries_answer_what_the_scans_saw() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    let store = Store::open(&db).await.unwrap();
    let lock = ScanLock::on_file(&db).unwrap();
    let rules = [RuleMeta {
        rule_id: "kubelet-read-only-port".to_string(),
        cis: "4.2.4".to_string(),
        title: "Verify that the --read-only-port argument is set to 0".to_string(),
        component: "kubelet".to_string(),
        severity: "medium".to_string(),
        rationale: String::new(),
        remediation: String::new(),
        test: String::new(),
        assessment: "manual".to_string(),
        cis_previous: "[]".to_string(),
    }];
    let scans = [
        vec![cp(read(CONFIG, 0o600, BEFORE)), worker()],
        vec![
            cp(read(CONFIG, 0o644, AFTER)),
            worker(),
            host(
                "prod-w-2",
                vec![
                    problem(CONFIG, "missing", "no such file or directory"),
                    problem("/etc/kubernetes/pki/ca.crt", "denied", DENIED),
                ],
            ),
        ],
    ];
    for hosts in &scans {
        let id = store.begin_scan(&lock, "inventory.toml", "2026.12.0", &rules, hosts.len()).await.unwrap();
        store.record_hosts(id, hosts).await.unwrap();
        store.finish_scan(id, false).await.unwrap();
    }
    store.close().await;

    let queries = readme_file_queries();
    assert!(queries.len() >= 3, "{queries:#?}");
    let answer = |part: &str| {
        let q = queries.iter().find(|q| q.contains(part)).unwrap_or_else(|| panic!("no README query with {part}"));
        sqlite(&db, q)
    };
    let (before, after) = (sha(BEFORE.as_bytes()), sha(AFTER.as_bytes()));
    assert_eq!(
        answer("mode <> '600'"),
        "prod-cp-1|/var/lib/kubelet/config.yaml|644|-rw-r--r--|root:root\n\
         prod-w-1|/etc/kubernetes/kubelet.conf|644|-rw-r--r--|root:root\n"
    );
    assert_eq!(
        answer("path = '/var/lib/kubelet/config.yaml' ORDER BY scan_id"),
        format!("2|1|mode,content|600|644|{before}|{after}\n")
    );
    assert_eq!(answer("GROUP BY problem"), format!("denied|2|2|{DENIED}\nmissing|1|1|no such file or directory\n"));
    assert_eq!(
        answer("ORDER BY problem, host, path"),
        format!(
            "prod-w-1|/etc/kubernetes/manifests/etcd.yaml|denied|{DENIED}\n\
             prod-w-2|/etc/kubernetes/pki/ca.crt|denied|{DENIED}\n\
             prod-w-2|/var/lib/kubelet/config.yaml|missing|no such file or directory\n"
        )
    );
    assert_eq!(
        answer("status <> 'running'"),
        "prod-cp-1|/var/lib/kubelet/config.yaml|mode,content|-rw-------|-rw-r--r--|root:root|root:root\n"
    );
    assert_eq!(answer("CAST(c.body AS TEXT)"), format!("{AFTER}\n"));
    // Every query of the block is one of those above.
    for q in &queries {
        assert!(!sqlite(&db, q).trim().is_empty(), "README query returned nothing:\n{q}");
    }
    assert_eq!(queries.len(), 6, "a new README query needs its expected answer here: {queries:#?}");
}
