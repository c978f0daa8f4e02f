//! `fleetaudit daemon` and the scan lock: scheduled scans against real sshd hosts, a broken inventory edit
//! survived, SIGTERM mid-scan, a concurrent scan refused, retention.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Silent, Sshd, TEST_USER, fleetaudit, keygen, sqlite, text, write};

const APISERVER: &str = "kube-apiserver --authorization-mode=Node,RBAC --anonymous-auth=false";

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fleetaudit"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -TERM");
}

/// Waits for a child to exit, at most `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> (i32, String) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `sql` until it prints `want` (trimmed), at most `limit`.
fn wait_for(db: &Path, sql: &str, want: impl Fn(&str) -> bool, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let got = if db.exists() {
            Command::new("sqlite3")
                .arg(db)
                .arg(sql)
                .output()
                .map(|o| text(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        if want(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "waited {limit:?} for {sql:?}; last saw {got:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Fleet {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    _nodes: Vec<Sshd>,
    inventory: PathBuf,
    db: PathBuf,
}

/// Two real sshd hosts, plus `hung` hosts that accept TCP and never answer.
fn fleet(hung: usize, extra_defaults: &str) -> (Fleet, Option<Silent>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let key = keygen(&dir, "id_ed25519");
    let nodes: Vec<Sshd> =
        (0..2).map(|i| Sshd::start(&dir.join(format!("n{i}")), &[&key], &[APISERVER], &[])).collect();
    let known: String = nodes.iter().map(|n| n.known_hosts_line("127.0.0.1")).collect();
    write(&dir.join("known_hosts"), &known);
    let db = dir.join("history.db");
    let mut inv = format!(
        "[defaults]\nuser = \"{TEST_USER}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\ndatabase = \"{}\"\n{extra_defaults}",
        key.display(),
        dir.join("known_hosts").display(),
        db.display()
    );
    for (i, n) in nodes.iter().enumerate() {
        inv += &format!(
            "\n[[hosts]]\nname = \"cp-{i}\"\naddress = \"127.0.0.1\"\nport = {}\nroles = [\"control-plane\"]\n",
            n.port
        );
    }
    let silent = (hung > 0).then(Silent::start);
    for i in 0..hung {
        inv += &format!(
            "\n[[hosts]]\nname = \"hung-{i}\"\naddress = \"127.0.0.1\"\nport = {}\n",
            silent.as_ref().unwrap().port
        );
    }
    let inventory = dir.join("inventory.toml");
    write(&inventory, &inv);
    (Fleet { _dir: tmp, dir, _nodes: nodes, inventory, db }, silent)
}

#[test]
fn scheduled_scans_survive_a_broken_edit_and_stop_on_sigterm() {
    let (f, _) = fleet(0, "");
    let metrics = f.dir.join("fleetaudit.prom");
    let mut daemon = spawn(&[
        "daemon",
        "-i",
        f.inventory.to_str().unwrap(),
        "--schedule",
        "*/2 * * * * *",
        "--metrics-file",
        metrics.to_str().unwrap(),
    ]);
    wait_for(&f.db, "SELECT count(*) FROM scans WHERE status = 'complete'", |s| s == "1", Duration::from_secs(10));
    let good = std::fs::read_to_string(&f.inventory).unwrap();
    write(&f.inventory, "[defaults\nthis is not TOML");
    wait_for(
        &f.db,
        "SELECT count(*) FROM scans WHERE status = 'complete'",
        |s| s.parse().unwrap_or(0) >= 3,
        Duration::from_secs(12),
    );
    write(&f.inventory, &good);
    sigterm(&daemon);
    let (code, stderr) = wait_exit(&mut daemon, Duration::from_secs(15));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("the inventory is broken, scanning with the last good one"), "{stderr}");
    assert!(stderr.contains("scan finished"), "one log line per scan:\n{stderr}");
    assert!(stderr.contains("daemon stopped"), "{stderr}");

    // Every scan complete, each with both hosts, and no two overlapping in time.
    let rows = sqlite(
        &f.db,
        "SELECT id, status, started_at, finished_at, (SELECT count(*) FROM scan_hosts WHERE scan_id = scans.id) FROM scans ORDER BY id",
    );
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split('|').collect()).collect();
    assert!(rows.len() >= 3, "{rows:?}");
    for r in &rows {
        assert_eq!((r[1], r[4]), ("complete", "2"), "{rows:?}");
    }
    for pair in rows.windows(2) {
        assert!(pair[0][3] <= pair[1][2], "scan {} ended after scan {} started: {rows:?}", pair[0][0], pair[1][0]);
    }
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("fleetaudit_hosts 2\n") && prom.contains("fleetaudit_hosts_unreachable 0\n"), "{prom}");
    assert!(prom.contains("fleetaudit_rule_verdicts{rule=\"apiserver-anonymous-auth\",status=\"pass\"} 2"), "{prom}");
    assert!(prom.contains("fleetaudit_last_success_timestamp_seconds "), "{prom}");
    assert_eq!(sqlite(&f.db, "PRAGMA integrity_check").trim(), "ok");
}

#[test]
fn sigterm_in_a_slow_scan_marks_it_interrupted_and_exits_0() {
    let (f, _silent) = fleet(6, "connect_timeout = \"60s\"\nconcurrency = 8\n");
    let mut daemon =
        spawn(&["daemon", "-i", f.inventory.to_str().unwrap(), "--schedule", "* * * * * *", "--grace", "1"]);
    wait_for(&f.db, "SELECT count(*) FROM scan_hosts", |s| s == "2", Duration::from_secs(15));
    assert_eq!(sqlite(&f.db, "SELECT status FROM scans").trim(), "running", "the hung hosts hold the scan open");
    let asked = Instant::now();
    sigterm(&daemon);
    let (code, stderr) = wait_exit(&mut daemon, Duration::from_secs(10));
    assert_eq!(code, 0, "{stderr}");
    assert!(asked.elapsed() < Duration::from_secs(8), "the grace period bounds the stop");
    assert_eq!(sqlite(&f.db, "SELECT status, finished_at IS NOT NULL FROM scans").trim(), "interrupted|1");
    assert_eq!(sqlite(&f.db, "SELECT count(*) FROM scan_hosts").trim(), "2", "the hosts audited are kept");
    assert_eq!(sqlite(&f.db, "PRAGMA integrity_check").trim(), "ok");
}

#[test]
fn a_second_scan_on_the_same_database_is_refused() {
    let (f, _silent) = fleet(3, "connect_timeout = \"60s\"\n");
    let inv = f.inventory.to_str().unwrap();
    let mut first = spawn(&["scan", "-i", inv]);
    wait_for(&f.db, "SELECT status FROM scans", |s| s == "running", Duration::from_secs(15));
    let second = fleetaudit(&["scan", "-i", inv]);
    assert_eq!(second.status.code(), Some(4), "{}", text(&second.stderr));
    let err = text(&second.stderr);
    assert!(err.contains(&format!("pid {}", first.id())) && err.contains("wait for it"), "{err}");
    // The daemon skips a tick rather than waiting or interleaving.
    let mut daemon = spawn(&["daemon", "-i", inv, "--schedule", "* * * * * *"]);
    std::thread::sleep(Duration::from_millis(2500));
    sigterm(&daemon);
    let (code, stderr) = wait_exit(&mut daemon, Duration::from_secs(10));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("tick skipped: another scan is using the database"), "{stderr}");
    assert_eq!(sqlite(&f.db, "SELECT count(*) FROM scans").trim(), "1");
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn prune_keeps_the_newest_scans_and_what_they_reference() {
    let (f, _) = fleet(0, "");
    let inv = f.inventory.to_str().unwrap();
    for _ in 0..4 {
        let out = fleetaudit(&["scan", "-i", inv, "--quiet", "--prune", "2"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    }
    assert_eq!(sqlite(&f.db, "SELECT group_concat(id) FROM scans").trim(), "3,4");
    let kept = sqlite(&f.db, "SELECT count(*) FROM findings WHERE scan_id = 4 AND evidence IS NOT NULL");
    assert!(kept.trim().parse::<u32>().unwrap() > 0);
    assert_eq!(sqlite(&f.db, "SELECT count(*) FROM scan_hosts WHERE scan_id < 3").trim(), "0");
    assert_eq!(sqlite(&f.db, "PRAGMA foreign_key_check"), "");
    assert_eq!(sqlite(&f.db, "PRAGMA integrity_check").trim(), "ok");
}

#[test]
fn a_sharded_daemon_scans_only_its_slice() {
    let (f, _) = fleet(0, "");
    // With three slices the two hosts land in different ones; the daemon audits slice 1 only.
    let slot = |name: &str| fleetaudit::scan::Shard::slot(name, 3);
    let want: Vec<&str> = ["cp-0", "cp-1"].into_iter().filter(|n| slot(n) == 0).collect();
    let mut daemon =
        spawn(&["daemon", "-i", f.inventory.to_str().unwrap(), "--schedule", "* * * * * *", "--shard", "1/3"]);
    wait_for(&f.db, "SELECT count(*) FROM scans WHERE status = 'complete'", |s| s == "1", Duration::from_secs(10));
    sigterm(&daemon);
    let (code, stderr) = wait_exit(&mut daemon, Duration::from_secs(15));
    assert_eq!(code, 0, "{stderr}");
    let first = "(SELECT min(id) FROM scans)";
    let scanned = sqlite(
        &f.db,
        &format!(
            "SELECT h.name FROM scan_hosts sh JOIN hosts h ON h.id = sh.host_id WHERE sh.scan_id = {first} ORDER BY 1"
        ),
    );
    assert_eq!(scanned.lines().collect::<Vec<_>>(), want, "slots: cp-0 {}, cp-1 {}", slot("cp-0"), slot("cp-1"));
    let label = sqlite(&f.db, &format!("SELECT inventory FROM scans WHERE id = {first}"));
    assert!(label.trim_end().ends_with("[shard 1/3]"), "{label}");
}
