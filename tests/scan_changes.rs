//! `fleetaudit scan --changes` against simulated nodes over SSH: news on the first scan, nothing at all on an
//! unchanged rescan (what makes cron mail only news), a node whose processes changed listed rule by rule, a node
//! that stopped answering and one that answers again listed once as a host.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{fleetaudit, text};

/// A `fleetaudit simulate` of one node, stopped when dropped.
struct Sim {
    child: Child,
    inventory: PathBuf,
}

impl Sim {
    fn start(dir: &Path, profile: &str) -> Sim {
        let child = Command::new(env!("CARGO_BIN_EXE_fleetaudit"))
            .args(["simulate", "--nodes", "1", "--profile", profile, "--dir", dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let inventory = dir.join("inventory.toml");
        let started = Instant::now();
        while !std::fs::metadata(&inventory).is_ok_and(|m| m.len() > 0) {
            assert!(started.elapsed() < Duration::from_secs(60), "the simulator did not write {}", inventory.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        Sim { child, inventory }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `scan --changes` of the inventory into `db`: its standard output.
fn changes(inventory: &Path, db: &Path) -> String {
    let out = fleetaudit(&["scan", "-i", inventory.to_str().unwrap(), "--db", db.to_str().unwrap(), "--changes"]);
    assert!(matches!(out.status.code(), Some(0..=2)), "{}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn scan_changes_prints_only_news() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("history.db");
    // The same host name, node-1, served by a hardened and by a default kubeadm control plane in turn.
    let hardened = Sim::start(&dir.path().join("hardened"), "kubeadm-hardened");

    let first = changes(&hardened.inventory, &db);
    assert!(first.contains("new hosts (1):") && first.contains("node-1") && first.contains("audited"), "{first}");
    assert!(first.contains(&format!("database: {}", db.display())), "{first}");

    let unchanged = changes(&hardened.inventory, &db);
    assert_eq!(unchanged, "", "an unchanged rescan prints nothing");

    let mut default = Sim::start(&dir.path().join("default"), "kubeadm-default");
    let switched = changes(&default.inventory, &db);
    let failing =
        switched.split("\nnewly failing (").nth(1).unwrap_or_else(|| panic!("no newly failing in\n{switched}"));
    assert!(
        failing.contains("node-1  apiserver-kubelet-certificate-authority  pass -> fail (since scan 2)"),
        "the reference rule, which the hardened node passes and kubeadm's default fails:\n{switched}"
    );
    assert!(!switched.contains("new hosts"), "node-1 is the same host:\n{switched}");

    default.stop();
    let gone = changes(&default.inventory, &db);
    assert!(gone.contains("no longer audited (1):\n  node-1  not audited: "), "{gone}");
    assert!(!gone.contains("newly failing") && !gone.contains("no longer judged"), "once, as a host:\n{gone}");
    assert_eq!(changes(&default.inventory, &db), "", "still unreachable is not news");

    let back = changes(&hardened.inventory, &db);
    assert!(back.contains("audited again (1):\n  node-1  audited"), "{back}");
    assert!(!back.contains("newly passing"), "once, as a host:\n{back}");

    // Retention keeping one scan deletes the previous scan only after the news is read from it.
    let out = fleetaudit(&[
        "scan",
        "-i",
        hardened.inventory.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--changes",
        "--prune",
        "1",
    ]);
    assert_eq!(text(&out.stdout), "", "unchanged, though --prune 1 leaves no earlier scan: {}", text(&out.stderr));
    assert_eq!(support::sqlite(&db, "SELECT count(*) FROM scans").trim(), "1", "pruned to one scan");
}
