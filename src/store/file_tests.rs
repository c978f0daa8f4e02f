//! The files of each host in the history (`file_sets.rs`, `migrations/sqlite/20261202000000_host_files.sql`), against
//! real SQLite files.

use super::*;
use std::collections::HashSet;

/// A path found, only stat'ed.
pub(super) fn stat(path: &str, kind: &str, mode: u32, owner: &str) -> FileRecord {
    FileRecord {
        path: path.to_string(),
        kind: Some(kind.to_string()),
        mode: Some(mode),
        uid: Some(0),
        gid: Some(if owner.ends_with(":root") { 0 } else { 996 }),
        owner: Some(owner.to_string()),
        size: Some(if kind == "dir" { 4096 } else { 1675 }),
        sha256: None,
        redacted: false,
        content: None,
        problem: None,
        problem_message: None,
        roles: Vec::new(),
    }
}

/// A file read, its contents kept.
pub(super) fn read(path: &str, mode: u32, body: &str) -> FileRecord {
    FileRecord {
        size: Some(body.len() as u64),
        sha256: Some(sha(body.as_bytes())),
        content: Some(body.as_bytes().to_vec()),
        ..stat(path, "file", mode, "root:root")
    }
}

pub(super) fn problem(path: &str, kind: &str, message: &str) -> FileRecord {
    FileRecord::of_problem(path, kind, message)
}

pub(super) fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";

/// What a kubeadm control plane's processes name, more or less: a config read, a PKI tree, keys and
/// kubeconfigs stat'ed, a manifests directory the audit login may not read, no etcd data directory.
pub(super) fn node_files(config: &str) -> Vec<FileRecord> {
    vec![
        read(KUBELET_CONFIG, 0o600, config),
        stat("/etc/kubernetes/pki", "dir", 0o755, "root:root"),
        read("/etc/kubernetes/pki/ca.crt", 0o644, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
        stat("/etc/kubernetes/pki/ca.key", "file", 0o600, "root:root"),
        stat("/etc/kubernetes/kubelet.conf", "file", 0o600, "root:root"),
        stat("/etc/kubernetes/manifests", "dir", 0o700, "root:root"),
        problem("/etc/kubernetes/manifests/etcd.yaml", "denied", "permission denied: use sftp_command with sudo"),
        problem("/var/lib/etcd", "missing", "no such file or directory"),
    ]
}

pub(super) fn with_files(mut outcome: HostOutcome, new: Vec<FileRecord>) -> HostOutcome {
    if let HostResult::Audited { files, .. } = &mut outcome.result {
        *files = new;
    }
    outcome
}

/// A node with `node_files`, its kubelet config naming it.
fn node(name: &str) -> HostOutcome {
    with_files(audited(name, "prod", [P, F, NA, P]), node_files(&format!("nodeName: {name}\n")))
}

async fn one_scan(store: &Store, lock: &ScanLock, hosts: &[HostOutcome]) -> i64 {
    let id = store.begin_scan(lock, "inventory.toml", "2026.11.0", &rule_meta(&RULES), hosts.len()).await.unwrap();
    store.record_hosts(id, hosts).await.unwrap();
    store.finish_scan(id, false).await.unwrap();
    id
}

async fn file_counts(store: &Store) -> [i64; 4] {
    [
        scalar(store, "SELECT count(*) FROM file_sets").await,
        scalar(store, "SELECT count(*) FROM file_set_members").await,
        scalar(store, "SELECT count(*) FROM file_observations").await,
        scalar(store, "SELECT count(*) FROM file_contents").await,
    ]
}

#[tokio::test]
async fn an_unchanged_host_adds_no_observation_and_a_changed_mode_exactly_one() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    // Two hosts with the same files (a config that does not name the node) share one set.
    let twin = |name: &str| with_files(audited(name, "prod", [P, P, P, P]), node_files("shared: true\n"));
    one_scan(&store, &lock, &[node("cp-1"), twin("w-1"), twin("w-2")]).await;
    // cp-1's 8 paths; the twins' own config; the rest shared: 8 + 1 observations, 2 sets, 3 contents.
    assert_eq!(file_counts(&store).await, [2, 16, 9, 3]);

    // The same again, files in another order: nothing new.
    let mut reordered = node("cp-1");
    if let HostResult::Audited { files, .. } = &mut reordered.result {
        files.reverse();
    }
    one_scan(&store, &lock, &[reordered, twin("w-1"), twin("w-2")]).await;
    assert_eq!(file_counts(&store).await, [2, 16, 9, 3]);

    // w-2's kubelet config becomes 0644: one observation, one set (of 8 members) and no contents more.
    let mut loosened = twin("w-2");
    if let HostResult::Audited { files, .. } = &mut loosened.result {
        files[0].mode = Some(0o644);
    }
    let s3 = one_scan(&store, &lock, &[node("cp-1"), twin("w-1"), loosened]).await;
    assert_eq!(file_counts(&store).await, [3, 24, 10, 3]);
    let distinct_sets = scalar(&store, "SELECT count(DISTINCT file_set_id) FROM scan_hosts WHERE scan_id = 3").await;
    assert_eq!((s3, distinct_sets), (3, 3));
    assert_integrity(&store).await;
}

#[tokio::test]
async fn an_audited_host_without_files_has_the_empty_set_and_an_unaudited_one_none() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let s1 = one_scan(
        &store,
        &lock,
        &[
            audited("cp-1", "prod", [P, P, P, P]),
            audited("w-1", "prod", [NA, NA, NA, F]),
            errored("w-2", "dev", "unreachable", "connection refused", false),
        ],
    )
    .await;
    assert_eq!(file_counts(&store).await, [1, 0, 0, 0], "one empty set, shared");
    let ids = strings(&store, "SELECT quote(file_set_id) FROM scan_hosts ORDER BY host_id").await;
    assert_eq!(ids, ["1", "1", "NULL"]);
    assert_eq!(store.host_files(s1, "cp-1", true).await.unwrap(), Some(Vec::new()));
    assert_eq!(store.host_files(s1, "w-2", true).await.unwrap(), None, "not audited");
    assert_eq!(store.host_files(s1, "nobody", true).await.unwrap(), None, "not in the scan");
    assert_eq!(store.host_files(s1 + 1, "cp-1", true).await.unwrap(), None, "no such scan");
    assert_eq!(scalar(&store, "SELECT count(*) FROM host_files").await, 0);

    // A host that is no longer audited cannot point at files: the schema says so too.
    let refused =
        sqlx::query("UPDATE scan_hosts SET file_set_id = 1 WHERE outcome = 'error'").execute(store.pool()).await;
    assert!(refused.is_err(), "an error outcome with a file set was accepted");
    assert_integrity(&store).await;
}

#[tokio::test]
async fn host_files_show_modes_as_stat_and_permissions_as_ls_print_them() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let mut files = node_files("nodeName: cp-1\n");
    files.extend([
        stat("/etc/kubernetes/pki/etcd", "dir", 0o700, "etcd:etcd"),
        stat("/etc/kubernetes/admin.conf", "symlink", 0o777, "root:root"),
        stat("/tmp", "dir", 0o1777, "root:root"),
        stat("/usr/bin/sudo", "file", 0o4755, "root:root"),
        stat("/srv/shared", "dir", 0o2750, "root:kube"),
        stat("/srv/odd", "file", 0o7644, "root:root"),
        stat("/run/containerd/containerd.sock", "other", 0o660, "root:root"),
        stat("/etc/empty", "file", 0, "root:root"),
    ]);
    let s1 = one_scan(&store, &lock, &[with_files(audited("cp-1", "prod", [P, P, P, P]), files.clone())]).await;

    type Row =
        (String, Option<String>, Option<String>, Option<String>, Option<String>, Option<i64>, Option<String>, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT path, kind, mode, permissions, owner, size, sha256, redacted FROM host_files
          WHERE scan_id = ?1 AND host = 'cp-1' ORDER BY path",
    )
    .bind(s1)
    .fetch_all(store.pool())
    .await
    .unwrap();
    let shown: Vec<(&str, Option<&str>, Option<&str>)> =
        rows.iter().map(|r| (r.0.as_str(), r.2.as_deref(), r.3.as_deref())).collect();
    assert_eq!(
        shown,
        [
            ("/etc/empty", Some("0"), Some("----------")),
            ("/etc/kubernetes/admin.conf", Some("777"), Some("lrwxrwxrwx")),
            ("/etc/kubernetes/kubelet.conf", Some("600"), Some("-rw-------")),
            ("/etc/kubernetes/manifests", Some("700"), Some("drwx------")),
            ("/etc/kubernetes/manifests/etcd.yaml", None, None),
            ("/etc/kubernetes/pki", Some("755"), Some("drwxr-xr-x")),
            ("/etc/kubernetes/pki/ca.crt", Some("644"), Some("-rw-r--r--")),
            ("/etc/kubernetes/pki/ca.key", Some("600"), Some("-rw-------")),
            ("/etc/kubernetes/pki/etcd", Some("700"), Some("drwx------")),
            ("/run/containerd/containerd.sock", Some("660"), Some("?rw-rw----")),
            ("/srv/odd", Some("7644"), Some("-rwSr-Sr-T")),
            ("/srv/shared", Some("2750"), Some("drwxr-s---")),
            ("/tmp", Some("1777"), Some("drwxrwxrwt")),
            ("/usr/bin/sudo", Some("4755"), Some("-rwsr-xr-x")),
            ("/var/lib/etcd", None, None),
            (KUBELET_CONFIG, Some("600"), Some("-rw-------")),
        ]
    );
    let config = rows.iter().find(|r| r.0 == KUBELET_CONFIG).unwrap();
    assert_eq!(config.1.as_deref(), Some("file"));
    assert_eq!(config.4.as_deref(), Some("root:root"));
    assert_eq!(config.5, Some("nodeName: cp-1\n".len() as i64));
    assert_eq!(config.6.as_deref(), Some(sha(b"nodeName: cp-1\n").as_str()));
    assert_eq!(config.7, 0);
    let etcd = rows.iter().find(|r| r.0 == "/etc/kubernetes/pki/etcd").unwrap();
    assert_eq!(etcd.4.as_deref(), Some("etcd:etcd"));

    let problems: Vec<(String, Option<String>, String, String)> = sqlx::query_as(
        "SELECT path, kind, problem, problem_message FROM host_files WHERE problem IS NOT NULL ORDER BY path",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        problems,
        [
            (
                "/etc/kubernetes/manifests/etcd.yaml".into(),
                None,
                "denied".into(),
                "permission denied: use sftp_command with sudo".into()
            ),
            ("/var/lib/etcd".into(), None, "missing".into(), "no such file or directory".into()),
        ]
    );

    // The Rust rendering agrees with the view's for every path.
    for file in &files {
        let shown = rows.iter().find(|r| r.0 == file.path).unwrap();
        assert_eq!(file.permissions(), shown.3, "{}", file.path);
    }
    assert_integrity(&store).await;
}

/// Every permission bit pattern of every kind, through the view and through [`FileRecord::permissions`]: one
/// host of 16,384 paths, which also takes the observation inserts past one statement's binds.
#[tokio::test]
async fn permissions_agree_with_the_view_for_every_mode_of_every_kind() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let files: Vec<FileRecord> = ["file", "dir", "symlink", "other"]
        .into_iter()
        .flat_map(|kind| (0..=0o7777).map(move |mode| stat(&format!("/{kind}/{mode:04o}"), kind, mode, "root:root")))
        .collect();
    assert!(files.len() * 13 > MAX_BINDS);
    let s1 = one_scan(&store, &lock, &[with_files(audited("cp-1", "prod", [P, P, P, P]), files.clone())]).await;
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT path, mode, permissions FROM host_files WHERE scan_id = ?1 ORDER BY path")
            .bind(s1)
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), files.len());
    let mut sorted = files.clone();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for (file, (path, mode, permissions)) in sorted.iter().zip(&rows) {
        assert_eq!(&file.path, path);
        assert_eq!(mode, &format!("{:o}", file.mode.unwrap()), "stat -c %a prints no leading zero");
        assert_eq!(file.permissions().as_ref(), Some(permissions), "{path}");
    }
    // GNU ls for a few, written out.
    let of = |p: &str| rows.iter().find(|r| r.0 == p).unwrap().2.clone();
    assert_eq!(of("/file/0600"), "-rw-------");
    assert_eq!(of("/dir/0700"), "drwx------");
    assert_eq!(of("/symlink/0777"), "lrwxrwxrwx");
    assert_eq!(of("/dir/1777"), "drwxrwxrwt");
    assert_eq!(of("/dir/1776"), "drwxrwxrwT");
    assert_eq!(of("/file/4755"), "-rwsr-xr-x");
    assert_eq!(of("/file/4644"), "-rwSr--r--");
    assert_eq!(of("/file/2711"), "-rwx--s--x");
    assert_eq!(of("/file/2701"), "-rwx--S--x");
    assert_eq!(of("/file/7777"), "-rwsrwsrwt");
    assert_eq!(store.host_files(s1, "cp-1", false).await.unwrap().unwrap(), sorted, "read back as written");
    assert_integrity(&store).await;
}

/// cp-1 over five scans, w-1 unchanged throughout, w-2 new in scan 2:
/// 1: `node_files`, plus /etc/cni/net.d a file and /etc/kubernetes/old.conf.
/// 2: the config 0644 with new contents, ca.key replaced (only stat'ed: its size), the PKI directory owned by
///    kube, etcd.yaml readable now, /etc/cni/net.d a directory, old.conf gone, new.conf new.
/// 3: cp-1 unreachable.
/// 4: the config back to 0600 (compared with scan 2: scan 3 saw no files), owner and mode of ca.key changed.
/// 5 (running): the config missing.
async fn drift(store: &Store, lock: &ScanLock) -> [i64; 5] {
    let first = || {
        let mut files = node_files("nodeName: cp-1\n");
        files.push(stat("/etc/cni/net.d", "file", 0o755, "root:root"));
        files.push(stat("/etc/kubernetes/old.conf", "file", 0o644, "root:root"));
        files
    };
    let second = || {
        let mut files = first();
        files[0] = read(KUBELET_CONFIG, 0o644, "nodeName: cp-1\nreadOnlyPort: 10255\n");
        files[1].owner = Some("root:kube".to_string());
        files[1].gid = Some(996);
        files[3].size = Some(1679);
        files[6] = read("/etc/kubernetes/manifests/etcd.yaml", 0o600, "kind: Pod\n");
        files[8].kind = Some("dir".to_string());
        files[9] = stat("/etc/kubernetes/new.conf", "file", 0o600, "root:root");
        files
    };
    let fourth = || {
        let mut files = second();
        files[0].mode = Some(0o600);
        files[3].mode = Some(0o640);
        files[3].owner = Some("root:kube".to_string());
        files
    };
    let fifth = || {
        let mut files = fourth();
        files[0] = problem(KUBELET_CONFIG, "missing", "no such file or directory");
        files
    };
    let w1 = || node("w-1");
    let cp = |files| with_files(audited("cp-1", "prod", [P, F, NA, P]), files);
    let s1 = one_scan(store, lock, &[cp(first()), w1()]).await;
    let s2 = one_scan(store, lock, &[cp(second()), w1(), node("w-2")]).await;
    let s3 = one_scan(store, lock, &[errored("cp-1", "prod", "unreachable", "no route", false), w1()]).await;
    let s4 = one_scan(store, lock, &[cp(fourth()), w1()]).await;
    let s5 = store.begin_scan(lock, "inventory.toml", "2026.11.0", &rule_meta(&RULES), 2).await.unwrap();
    store.record_hosts(s5, &[cp(fifth())]).await.unwrap();
    [s1, s2, s3, s4, s5]
}

type ChangeRow = (i64, String, String, String, Option<String>, Option<String>, Option<String>, Option<String>);

async fn view_changes(store: &Store, scan: i64) -> Vec<ChangeRow> {
    sqlx::query_as(
        "SELECT previous_scan_id, host, path, change, previous_mode, mode, previous_owner, owner FROM file_changes
          WHERE scan_id = ?1 ORDER BY host, path",
    )
    .bind(scan)
    .fetch_all(store.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn file_changes_show_mode_owner_content_added_removed_and_problems() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let [s1, s2, s3, s4, s5] = drift(&store, &lock).await;
    assert_eq!(view_changes(&store, s1).await, [], "the first scan has nothing to compare with");

    let some = |s: &str| Some(s.to_string());
    let row = |previous: i64, path: &str, change: &str, modes: [Option<&str>; 2], owners: [Option<&str>; 2]| {
        (
            previous,
            "cp-1".to_string(),
            path.to_string(),
            change.to_string(),
            modes[0].map(String::from),
            modes[1].map(String::from),
            owners[0].map(String::from),
            owners[1].map(String::from),
        )
    };
    let root = Some("root:root");
    assert_eq!(
        view_changes(&store, s2).await,
        [
            row(s1, "/etc/cni/net.d", "kind", [Some("755"); 2], [root; 2]),
            row(s1, "/etc/kubernetes/manifests/etcd.yaml", "problem", [None, Some("600")], [None, root]),
            row(s1, "/etc/kubernetes/new.conf", "added", [None, Some("600")], [None, root]),
            row(s1, "/etc/kubernetes/old.conf", "removed", [Some("644"), None], [root, None]),
            row(s1, "/etc/kubernetes/pki", "owner", [Some("755"); 2], [root, Some("root:kube")]),
            row(s1, "/etc/kubernetes/pki/ca.key", "content", [Some("600"); 2], [root; 2]),
            row(s1, KUBELET_CONFIG, "mode,content", [Some("600"), Some("644")], [root; 2]),
            // w-1 did not change; w-2 is new.
        ]
    );
    assert_eq!(view_changes(&store, s3).await, [], "cp-1 has no files in scan 3, w-1 did not change");
    assert_eq!(
        view_changes(&store, s4).await,
        [
            row(s2, "/etc/kubernetes/pki/ca.key", "mode,owner", [Some("600"), Some("640")], [root, Some("root:kube")]),
            row(s2, KUBELET_CONFIG, "mode", [Some("644"), Some("600")], [root; 2]),
        ]
    );
    // A running scan's changes show as it goes.
    assert_eq!(view_changes(&store, s5).await, [row(s4, KUBELET_CONFIG, "problem", [Some("600"), None], [root, None])]);

    // The hashes, problems and permissions of both sides.
    type Sides = (Option<String>, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>);
    let config: Sides = sqlx::query_as(
        "SELECT previous_sha256, sha256, previous_problem, problem, previous_permissions, permissions
               FROM file_changes WHERE scan_id = ?1 AND path = ?2",
    )
    .bind(s2)
    .bind(KUBELET_CONFIG)
    .fetch_one(store.pool())
    .await
    .unwrap();
    let (before, after) = (sha(b"nodeName: cp-1\n"), sha(b"nodeName: cp-1\nreadOnlyPort: 10255\n"));
    assert_eq!(config, (some(&before), some(&after), None, None, some("-rw-------"), some("-rw-r--r--")));
    let missing: (Option<String>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT previous_problem, problem, permissions FROM file_changes WHERE scan_id = ?1 AND path = ?2",
    )
    .bind(s5)
    .bind(KUBELET_CONFIG)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(missing, (None, some("missing"), None));

    // The Rust read says the same, a page at a time.
    let all = store.file_changes(s2, None, None, 100).await.unwrap();
    assert_eq!(all.len(), 7);
    let config = all.iter().find(|c| c.path == KUBELET_CONFIG).unwrap();
    assert_eq!(config.change, [FileChangeKind::Mode, FileChangeKind::Content]);
    assert_eq!((config.previous_mode, config.mode), (Some(0o600), Some(0o644)));
    assert_eq!((config.previous_sha256.as_deref(), config.sha256.as_deref()), (Some(&before[..]), Some(&after[..])));
    assert_eq!(config.permissions.as_deref(), Some("-rw-r--r--"));
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.file_changes(s2, None, after.as_ref(), 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().cloned();
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let words: Vec<String> =
        all.iter().map(|c| c.change.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(",")).collect();
    let view: Vec<String> = view_changes(&store, s2).await.into_iter().map(|r| r.3).collect();
    assert_eq!(words, view);
    assert_eq!(store.file_changes(s2, Some("w-1"), None, 100).await.unwrap(), []);
    assert_eq!(store.file_changes(s4, Some("cp-1"), None, 1).await.unwrap().len(), 1);
    assert_integrity(&store).await;
}

#[tokio::test]
async fn latest_host_files_are_each_hosts_newest_ended_scan() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let [_, s2, _, s4, _] = drift(&store, &lock).await;
    let latest: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT host, scan_id, count(*) FROM latest_host_files GROUP BY host, scan_id ORDER BY host")
            .fetch_all(store.pool())
            .await
            .unwrap();
    // Scan 5 is running; w-2 was last seen in scan 2.
    assert_eq!(latest, [("cp-1".into(), s4, 10), ("w-1".into(), s4, 8), ("w-2".into(), s2, 8)]);
    let mode: String = sqlx::query_scalar("SELECT mode FROM latest_host_files WHERE host = 'cp-1' AND path = ?1")
        .bind(KUBELET_CONFIG)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "600");

    // A host whose latest ended scan could not audit it has no files there.
    one_scan(&store, &lock, &[errored("w-1", "prod", "timeout", "ps did not answer", true)]).await;
    let hosts = strings(&store, "SELECT DISTINCT host FROM latest_host_files ORDER BY host").await;
    assert_eq!(hosts, ["cp-1", "w-2"]);
    assert_integrity(&store).await;
}

#[tokio::test]
async fn prune_deletes_the_files_only_pruned_scans_used() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let [_, _, _, s4, s5] = drift(&store, &lock).await;
    store.finish_scan(s5, false).await.unwrap();
    let kept = format!("scan_id IN ({s4}, {s5})");
    let views = [
        ("host_files", kept.clone()),
        ("latest_host_files", kept.clone()),
        ("file_changes", format!("{kept} AND previous_scan_id IN ({s4}, {s5})")),
    ];
    let mut before = Vec::new();
    for (view, filter) in &views {
        let rows = dump(&store, view, filter).await;
        assert!(!rows.is_empty(), "{view} shows nothing of the kept scans: the test proves nothing");
        before.push(rows);
    }
    assert!(!dump(&store, "file_changes", &format!("scan_id = {s4}")).await.is_empty());
    let contents_of = |scans: String| {
        format!(
            "SELECT DISTINCT c.sha256 FROM scan_hosts sh JOIN file_set_members m ON m.set_id = sh.file_set_id
               JOIN file_observations o ON o.id = m.observation_id JOIN file_contents c ON c.id = o.content_id
              WHERE sh.scan_id {scans} ORDER BY 1"
        )
    };
    let query = async |sql: String| -> Vec<String> {
        sqlx::query_scalar(AssertSqlSafe(sql)).fetch_all(store.pool()).await.unwrap()
    };
    let kept_contents = query(contents_of(format!("IN ({s4}, {s5})"))).await;
    let observations_of = |scans: String| {
        format!(
            "SELECT DISTINCT hex(o.sha256) FROM scan_hosts sh JOIN file_set_members m ON m.set_id = sh.file_set_id
               JOIN file_observations o ON o.id = m.observation_id WHERE sh.scan_id {scans} ORDER BY 1"
        )
    };
    let kept_observations = query(observations_of(format!("IN ({s4}, {s5})"))).await;
    let before_counts = file_counts(&store).await;

    let pruned = store.prune(&lock, 2).await.unwrap();
    assert_eq!(pruned.scans, 3);
    // Sets: cp-1's of scans 1 and 2, and w-2's (only scan 2 saw it); w-1's is used by every scan.
    // Observations: scan 1's config, /etc/cni/net.d as a file and old.conf; scan 2's config (0644) and ca.key
    // (1679 bytes, 0600); w-2's config. The rest are w-1's or scan 4's too. Contents: scan 1's config and w-2's
    // (scan 2's config has the contents of scan 4's, in mode 0644).
    assert_eq!((pruned.file_sets, pruned.file_observations, pruned.file_contents), (3, 6, 2), "{pruned:?}");
    let after_counts = file_counts(&store).await;
    assert_eq!(after_counts[0], before_counts[0] - 3);
    assert_eq!(after_counts[2], before_counts[2] - 6);
    assert_eq!(after_counts[3], before_counts[3] - 2);
    assert_eq!(query("SELECT sha256 FROM file_contents ORDER BY 1".into()).await, kept_contents);
    assert_eq!(query("SELECT hex(sha256) FROM file_observations ORDER BY 1".into()).await, kept_observations);
    let mut after = Vec::new();
    for (view, _) in &views {
        after.push(dump(&store, view, "true").await);
    }
    assert_eq!(after, before, "the kept scans read as before");
    assert_eq!(store.prune(&lock, 2).await.unwrap(), Pruned::default(), "pruning twice deletes nothing more");
    assert_integrity(&store).await;

    // The history goes on: scan 1's files come back as new rows.
    one_scan(&store, &lock, &[node("w-2")]).await;
    assert_eq!(file_counts(&store).await[3], after_counts[3] + 1);
    assert_integrity(&store).await;
}

/// Paths are whatever a host's processes name: quotes, newlines, backslashes, percent signs, SQL, any UTF-8. They
/// are bound, never formatted into SQL, and come back byte for byte.
#[tokio::test]
async fn hostile_paths_and_owners_are_stored_verbatim() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let hostile = [
        "/etc/kubernetes/it's.conf",
        "/etc/\"quoted\"/x",
        "/etc/new\nline.yaml",
        "/etc/tab\there",
        "/etc/'); DROP TABLE file_observations; --",
        "/etc/%s%n%x/\\\\back\\slash",
        "/etc/kubernetes/证书/ключ.pem",
        "/etc/\u{202e}txt.exe",
        "/etc/\u{1b}[31mred",
        "relative/../../path",
        "",
    ];
    let mut files: Vec<FileRecord> = hostile.iter().map(|p| read(p, 0o600, &format!("path: {p}\n"))).collect();
    files[0].owner = Some("r'oot:wh\neel".to_string());
    files[1] = problem(hostile[1], "failed", "the server said: '\"; DELETE FROM scans; --\n");
    let s1 = one_scan(&store, &lock, &[with_files(audited("cp-'1 ✓", "prod", [P, P, P, P]), files.clone())]).await;

    let mut sorted = files.clone();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(store.host_files(s1, "cp-'1 ✓", true).await.unwrap().unwrap(), sorted);
    let paths: Vec<String> = sqlx::query_scalar("SELECT path FROM host_files WHERE host = ?1 ORDER BY path")
        .bind("cp-'1 ✓")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(paths, sorted.iter().map(|f| f.path.clone()).collect::<Vec<_>>());
    assert_eq!(scalar(&store, "SELECT count(*) FROM scans").await, 1);
    assert_eq!(scalar(&store, "SELECT count(*) FROM file_observations").await, hostile.len() as i64);

    // Changed in place, each shows up in file_changes under its own name.
    let mut changed = files.clone();
    for f in changed.iter_mut().filter(|f| f.kind.is_some()) {
        f.mode = Some(0o644);
    }
    let s2 = one_scan(&store, &lock, &[with_files(audited("cp-'1 ✓", "prod", [P, P, P, P]), changed)]).await;
    let changes = store.file_changes(s2, Some("cp-'1 ✓"), None, 100).await.unwrap();
    let mut expected: Vec<&str> = hostile.iter().copied().filter(|p| *p != hostile[1]).collect();
    expected.sort_unstable();
    assert_eq!(changes.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(), expected);
    assert!(changes.iter().all(|c| c.change == [FileChangeKind::Mode]));
    assert_integrity(&store).await;
}

#[tokio::test]
async fn the_schema_refuses_file_rows_outside_its_vocabulary() {
    let (_dir, _path, store) = open_temp().await;
    let columns = "INSERT INTO file_observations (sha256, path, kind, mode, uid, gid, owner, size, content_sha256,
                                                  redacted, content_id, problem, problem_message) VALUES";
    let good_found = "(x'01', '/a', 'file', 384, 0, 0, 'root:root', 3, NULL, 0, NULL, NULL, NULL)";
    let good_problem =
        "(x'02', '/b', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, 'denied', 'permission denied')";
    let hex = "'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'";
    {
        let mut tx = store.pool().begin().await.unwrap();
        for row in [good_found, good_problem] {
            sqlx::raw_sql(AssertSqlSafe(format!("{columns} {row}"))).execute(&mut *tx).await.unwrap();
        }
        let contents = format!("INSERT INTO file_contents (sha256, body) VALUES ({hex}, x'')");
        sqlx::raw_sql(AssertSqlSafe(contents)).execute(&mut *tx).await.unwrap();
    }
    let refused = [
        // A kind outside the vocabulary, a problem outside it.
        "(x'03', '/a', 'fifo', 384, 0, 0, 'root:root', 3, NULL, 0, NULL, NULL, NULL)".to_string(),
        "(x'03', '/b', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, 'gone', 'x')".to_string(),
        // Both, and neither.
        "(x'03', '/a', 'file', 384, 0, 0, 'root:root', 3, NULL, 0, NULL, 'denied', 'x')".to_string(),
        "(x'03', '/a', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL)".to_string(),
        // A path found without its mode, uid, gid or size; a problem with any of them, or without its message.
        "(x'03', '/a', 'file', NULL, 0, 0, 'root:root', 3, NULL, 0, NULL, NULL, NULL)".to_string(),
        "(x'03', '/a', 'file', 384, NULL, 0, 'root:root', 3, NULL, 0, NULL, NULL, NULL)".to_string(),
        "(x'03', '/a', 'file', 384, 0, NULL, 'root:root', 3, NULL, 0, NULL, NULL, NULL)".to_string(),
        "(x'03', '/a', 'file', 384, 0, 0, 'root:root', NULL, NULL, 0, NULL, NULL, NULL)".to_string(),
        "(x'03', '/b', NULL, 384, NULL, NULL, NULL, NULL, NULL, 0, NULL, 'denied', 'x')".to_string(),
        "(x'03', '/b', NULL, NULL, NULL, NULL, 'root:root', NULL, NULL, 0, NULL, 'denied', 'x')".to_string(),
        "(x'03', '/b', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, 'denied', NULL)".to_string(),
        format!("(x'03', '/b', NULL, NULL, NULL, NULL, NULL, NULL, {hex}, 0, NULL, 'denied', 'x')"),
        "(x'03', '/b', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1, NULL, 'denied', 'x')".to_string(),
        // Out of range: mode past 0o7777 (file type bits), negative ids and sizes, ids past 32 bits.
        "(x'03', '/a', 'file', 33188, 0, 0, 'root:root', 3, NULL, 0, NULL, NULL, NULL)".to_string(),
        "(x'03', '/a', 'file', -1, 0, 0, 'root:root', 3, NULL, 0, NULL, NULL, NULL)".to_string(),
        "(x'03', '/a', 'file', 384, -1, 0, 'root:root', 3, NULL, 0, NULL, NULL, NULL)".to_string(),
        "(x'03', '/a', 'file', 384, 0, 4294967296, 'root:root', 3, NULL, 0, NULL, NULL, NULL)".to_string(),
        "(x'03', '/a', 'file', 384, 0, 0, 'root:root', -3, NULL, 0, NULL, NULL, NULL)".to_string(),
        "(x'03', '/a', 'file', 384, 0, 0, 'root:root', 3, NULL, 2, NULL, NULL, NULL)".to_string(),
        // A hash that is not 64 lowercase hex digits; contents without a hash; contents that do not exist.
        "(x'03', '/a', 'file', 384, 0, 0, 'root:root', 3, 'E3B0', 0, NULL, NULL, NULL)".to_string(),
        format!("(x'03', '/a', 'file', 384, 0, 0, 'root:root', 3, upper({hex}), 0, NULL, NULL, NULL)"),
        "(x'03', '/a', 'file', 384, 0, 0, 'root:root', 3, NULL, 0, 1, NULL, NULL)".to_string(),
        format!("(x'03', '/a', 'file', 384, 0, 0, 'root:root', 3, {hex}, 0, 42, NULL, NULL)"),
        // The same key twice.
        "(x'01', '/c', 'file', 384, 0, 0, 'root:root', 3, NULL, 0, NULL, NULL, NULL)".to_string(),
    ];
    for row in &refused {
        let mut tx = store.pool().begin().await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("{columns} {good_found}; {columns} {good_problem}")))
            .execute(&mut *tx)
            .await
            .unwrap();
        let result = sqlx::raw_sql(AssertSqlSafe(format!("{columns} {row}"))).execute(&mut *tx).await;
        assert!(result.is_err(), "accepted: {row}");
    }
    for sql in [
        "INSERT INTO file_contents (sha256, body) VALUES ('abc', x'00')",
        "INSERT INTO file_contents (sha256, body) VALUES (NULL, x'00')",
        "INSERT INTO file_sets (id, sha256) VALUES (1, x'01'); INSERT INTO file_set_members VALUES (1, 42)",
        "INSERT INTO file_set_members VALUES (42, 1)",
    ] {
        let mut tx = store.pool().begin().await.unwrap();
        let result = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await;
        assert!(result.is_err(), "accepted: {sql}");
    }
    assert_integrity(&store).await;
}

/// A record the schema would refuse fails naming the host and the path, and the batch leaves nothing behind.
#[tokio::test]
async fn a_bad_file_record_names_its_host_and_path_and_leaves_no_host_behind() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let id = store.begin_scan(&lock, "inventory.toml", "v1", &rule_meta(&RULES), 2).await.unwrap();
    type Break = fn(&mut FileRecord);
    let bad: [(Break, &str); 9] = [
        (|f| f.kind = Some("fifo".into()), "kind must be"),
        (|f| f.problem = Some("denied".into()), "exactly one of kind and problem"),
        (|f| f.mode = None, "needs its mode, uid, gid and size"),
        (|f| f.mode = Some(0o100600), "more than permission bits"),
        (|f| f.sha256 = Some("E3".repeat(32)), "64 lowercase hex"),
        (|f| f.sha256 = None, "contents kept need their sha256"),
        (|f| f.problem_message = Some("x".into()), "no problem message"),
        (|f| *f = FileRecord { problem_message: None, ..problem(&f.path, "denied", "") }, "needs its message"),
        (|f| *f = FileRecord { problem: Some("gone".into()), ..problem(&f.path, "denied", "x") }, "unknown problem"),
    ];
    for (spoil, why) in bad {
        let mut files = node_files("x: 1\n");
        spoil(&mut files[0]);
        let err = store.record_hosts(id, &[node("cp-1"), with_files(audited("w-1", "prod", [P; 4]), files)]).await;
        let err = err.unwrap_err().to_string();
        assert!(err.contains(&format!("{KUBELET_CONFIG:?} on w-1")) && err.contains(why), "{why}: {err}");
        assert!(err.ends_with("this is a bug in fleetaudit, please report it"), "{err}");
        assert_eq!(scalar(&store, "SELECT count(*) FROM scan_hosts").await, 0, "cp-1 was kept: {err}");
        assert_eq!(file_counts(&store).await, [0; 4]);
    }
    let mut twice = node_files("x: 1\n");
    twice.push(stat(KUBELET_CONFIG, "file", 0o600, "root:root"));
    let err = store.record_hosts(id, &[with_files(audited("w-1", "prod", [P; 4]), twice)]).await.unwrap_err();
    assert!(err.to_string().contains("recorded twice"), "{err}");
    // A hash that is not the contents': refused before anything is stored.
    let mut lying = node_files("nodeName: w-1\n");
    lying[0].content = Some(b"something else".to_vec());
    let err = store.record_hosts(id, &[with_files(audited("w-1", "prod", [P; 4]), lying)]).await.unwrap_err();
    assert!(err.to_string().contains(&format!("{KUBELET_CONFIG:?} on w-1: sha256 is not the SHA-256")), "{err}");
    assert_eq!(file_counts(&store).await, [0; 4]);

    // A size only a lying server sends is kept as the largest SQLite has.
    let mut huge = node_files("x: 1\n");
    huge[3].size = Some(u64::MAX);
    store.record_hosts(id, &[with_files(audited("w-1", "prod", [P; 4]), huge)]).await.unwrap();
    let size: i64 = sqlx::query_scalar("SELECT size FROM host_files WHERE path = '/etc/kubernetes/pki/ca.key'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(size, i64::MAX);
    assert_integrity(&store).await;
}

#[tokio::test]
async fn scan_files_pages_hosts_and_reads_each_set_once() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    // 7 hosts: 5 sharing one set, 1 of its own, 1 not audited.
    let mut hosts: Vec<HostOutcome> =
        (0..5).map(|i| with_files(audited(&format!("w-{i}"), "prod", [P; 4]), node_files("shared: true\n"))).collect();
    hosts.push(node("cp-1"));
    hosts.push(errored("w-9", "prod", "timeout", "no answer", true));
    let s1 = one_scan(&store, &lock, &hosts).await;

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.scan_files(s1, after.as_deref(), 2, false).await.unwrap();
        if page.hosts.is_empty() {
            assert!(page.sets.is_empty());
            break;
        }
        pages += 1;
        assert!(page.hosts.len() <= 2);
        for (host, set) in &page.hosts {
            let files = &page.sets[set];
            assert_eq!(files.len(), 8);
            assert!(files.iter().all(|f| f.content.is_none()), "contents only when asked");
            assert_eq!(Some(files.clone()), store.host_files(s1, host, false).await.unwrap());
        }
        let distinct: HashSet<i64> = page.hosts.iter().map(|(_, s)| *s).collect();
        assert_eq!(page.sets.len(), distinct.len(), "each set once");
        after = page.hosts.last().map(|(h, _)| h.clone());
        seen.extend(page.hosts.into_iter().map(|(h, _)| h));
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["cp-1", "w-0", "w-1", "w-2", "w-3", "w-4"], "every host with files, in order, once");

    let with = store.scan_files(s1, None, 1, true).await.unwrap();
    let files = &with.sets[&with.hosts[0].1];
    let config = files.iter().find(|f| f.path == KUBELET_CONFIG).unwrap();
    assert_eq!(config.content.as_deref(), Some(&b"nodeName: cp-1\n"[..]));
    assert_eq!(files.iter().filter(|f| f.content.is_some()).count(), 2, "the config and ca.crt were read");
    let mut expected = node_files("nodeName: cp-1\n");
    expected.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(files, &expected, "read back exactly as written");
}

/// The views and the reads search by index, whatever the history's length: no plan reads a whole table that
/// grows with scans or hosts (scan_hosts, file_set_members, file_observations, file_contents).
#[tokio::test]
async fn file_views_search_by_index() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    drift(&store, &lock).await;
    for sql in [
        "SELECT * FROM host_files WHERE scan_id = 2",
        "SELECT * FROM host_files WHERE host = 'cp-1'",
        "SELECT * FROM host_files WHERE scan_id = 2 AND host = 'cp-1'",
        "SELECT * FROM latest_host_files",
        "SELECT * FROM latest_host_files WHERE host = 'cp-1'",
        "SELECT * FROM file_changes WHERE scan_id = 2",
        "SELECT * FROM file_changes WHERE scan_id = 2 AND host = 'cp-1'",
    ] {
        let plan: Vec<String> = sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| sqlx::Row::get(row, 3))
            .collect();
        for line in &plan {
            for table in ["scan_hosts", "sh", "c", "file_set_members", "m", "file_observations", "o", "file_contents"] {
                assert!(!line.starts_with(&format!("SCAN {table}")), "{sql}\nreads {table} whole: {plan:#?}");
            }
            assert!(!line.contains("AUTOMATIC"), "{sql}\nbuilds an index each time: {plan:#?}");
        }
    }
}

/// The example queries at the head of the migration run and find something.
#[tokio::test]
async fn the_migrations_example_queries_run() {
    let (_dir, path, store) = open_temp().await;
    let lock = ScanLock::on_file(&path).unwrap();
    let [_, _, _, _, s5] = drift(&store, &lock).await;
    store.finish_scan(s5, false).await.unwrap();
    // Scan 12 of the last example is scan 2 here.
    let header: String = include_str!("../../migrations/sqlite/20261202000000_host_files.sql")
        .lines()
        .take_while(|l| l.starts_with("--"))
        .filter_map(|l| l.strip_prefix("--   "))
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{}\n", l.replace("scan_id = 12", "scan_id = 2")))
        .collect();
    let queries: Vec<&str> = header.split(';').map(str::trim).filter(|q| !q.is_empty()).collect();
    assert_eq!(queries.len(), 4, "{queries:#?}");
    for query in queries {
        let rows = sqlx::query(AssertSqlSafe(query.to_string())).fetch_all(store.pool()).await;
        let rows = rows.unwrap_or_else(|e| panic!("{query}\n{e}"));
        assert!(!rows.is_empty(), "example query returns nothing:\n{query}");
    }
}
