//! A scan killed with SIGKILL half-way: the database stays whole, earlier scans are untouched, the hosts
//! already recorded are kept, and the next scan runs and marks the killed one interrupted.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetaudit::sim::{self, Behavior, NodeSpec};
use fleetaudit::ssh::known_hosts;
use support::{Silent, fleetaudit, sqlite, text, write};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_scan_loses_nothing_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let client = sim::generate_key("client").unwrap();
    let key = d.join("id_ed25519");
    write(&key, &sim::private_key_text(&client));
    let specs = (0..6)
        .map(|i| NodeSpec {
            name: format!("node-{i}"),
            table: Arc::new(sim::profile("kubeadm-default").unwrap().as_bytes().to_vec()),
            behavior: Behavior::Normal,
            latency: Duration::ZERO,
        })
        .collect();
    let nodes = sim::start(specs, vec![client.public_key().clone()]).await.unwrap();
    let silent = Silent::start();
    let known: String =
        nodes.iter().map(|n| known_hosts::line_for("127.0.0.1", n.addr.port(), &n.host_key) + "\n").collect();
    write(&d.join("known_hosts"), &known);
    let mut inv = format!(
        "[defaults]\nuser = \"audit\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\nconcurrency = 4\nconnect_timeout = \"60s\"\n",
        key.display(),
        d.join("known_hosts").display()
    );
    for n in &nodes {
        inv += &format!(
            "\n[[hosts]]\nname = \"{}\"\naddress = \"127.0.0.1\"\nport = {}\nroles = [\"control-plane\"]\n",
            n.name,
            n.addr.port()
        );
    }
    for i in 0..40 {
        inv += &format!("\n[[hosts]]\nname = \"hung-{i}\"\naddress = \"127.0.0.1\"\nport = {}\n", silent.port);
    }
    let inventory = d.join("inventory.toml");
    write(&inventory, &inv);
    let db = d.join("history.db");
    let (inv_s, db_s) = (inventory.to_str().unwrap().to_owned(), db.to_str().unwrap().to_owned());
    let healthy: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();

    // Scan 1: complete, healthy hosts only.
    let mut args = vec!["scan", "-i", &inv_s, "--db", &db_s, "--only"];
    args.extend(healthy.iter().map(String::as_str));
    let out = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || fleetaudit(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "kubelet config rules cannot be judged: {}", text(&out.stdout));
    let before = sqlite(&db, "SELECT count(*), group_concat(status) FROM findings WHERE scan_id = 1");

    // Scan 2: every host; the hung ones hold it open. Kill it once the healthy hosts are recorded.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fleetaudit"))
        .args(["scan", "-i", &inv_s, "--db", &db_s])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let recorded = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg("SELECT count(*) FROM scan_hosts WHERE scan_id = 2")
            .output()
            .map(|o| text(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        if recorded == "6" {
            break;
        }
        assert!(Instant::now() < deadline, "scan 2 never recorded its healthy hosts (saw {recorded:?})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert_eq!(sqlite(&db, "PRAGMA integrity_check").trim(), "ok");
    assert_eq!(sqlite(&db, "SELECT count(*), group_concat(status) FROM findings WHERE scan_id = 1"), before);
    assert_eq!(sqlite(&db, "SELECT status FROM scans ORDER BY id"), "complete\nrunning\n");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM scan_hosts WHERE scan_id = 2").trim(), "6", "recorded hosts kept");

    // The next scan takes the lock the dead process held, runs, and marks scan 2 interrupted.
    let out = tokio::task::spawn_blocking(move || {
        fleetaudit(&["scan", "-i", &inv_s, "--db", &db_s, "--only", "node-0", "--quiet"])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(sqlite(&db, "SELECT status FROM scans ORDER BY id"), "complete\ninterrupted\ncomplete\n");
    assert_eq!(sqlite(&db, "PRAGMA integrity_check").trim(), "ok");
}
