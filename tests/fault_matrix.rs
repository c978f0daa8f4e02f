//! The fault matrix: one scan by the real binary over a fleet started by `fleetaudit simulate`, holding one node
//! of every fault beside healthy nodes of four profiles, every connection paying a per-round-trip latency.
//! Every healthy node is audited with the verdicts `fleetaudit eval` gives its capture, every faulty node is
//! recorded with its own error kind, everything stored is valid UTF-8, nothing panics, the scan ends, and the
//! scanner's peak memory stays far below the 100 MB one node floods it with.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetaudit::sim::Behavior;
use support::{fleetaudit, sqlite, text};

/// The reference rule every healthy node's verdict is checked on.
const RULE: &str = "apiserver-kubelet-certificate-authority";

/// Peak resident memory allowed to the scanner: one node sends 100 MB, the transport keeps at most 16 MiB, so
/// holding that node's output would alone pass this. The debug build peaked at 62-63.5 MB (two runs) before it
/// linked the PostgreSQL driver and at 65-66 MB (four runs) after, on a 2-core VM: 64 MiB was too tight.
const MAX_RSS_KIB: i64 = 80 << 10;

/// Not a timing assertion: only so that a hung scan fails the test instead of hanging CI.
const HUNG: Duration = Duration::from_secs(300);

/// `fleetaudit simulate`, stopped with SIGTERM (or killed, if the test fails first).
struct Simulator {
    child: Child,
    stderr: PathBuf,
}

impl Simulator {
    fn start(dir: &Path, args: &[&str]) -> Simulator {
        let stderr = dir.join("simulate.stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_fleetaudit"))
            .arg("simulate")
            .args(args)
            .arg("--dir")
            .arg(dir.join("fleet"))
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("simulate.stdout")).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut sim = Simulator { child, stderr };
        let inventory = dir.join("fleet/inventory.toml");
        let started = Instant::now();
        while !inventory.exists() {
            if let Some(status) = sim.child.try_wait().unwrap() {
                panic!("fleetaudit simulate exited with {status}: {}", std::fs::read_to_string(&sim.stderr).unwrap());
            }
            assert!(started.elapsed() < HUNG, "fleetaudit simulate wrote no inventory");
            std::thread::sleep(Duration::from_millis(50));
        }
        sim
    }

    /// SIGTERM; the simulator must exit 0 without a panic.
    fn stop(mut self) {
        // SAFETY: signalling our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
        let status = self.child.wait().unwrap();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap();
        assert_eq!(status.code(), Some(0), "simulate: {stderr}");
        assert!(!stderr.contains("panicked"), "the simulator panicked: {stderr}");
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to its end: its exit code and peak resident memory in KiB.
fn run_measured(cmd: &mut Command) -> (Option<i32>, i64) {
    let (code, rss, _) = support::run_measured(cmd, HUNG);
    (code, rss)
}

/// The verdict of every rule for a capture, as `fleetaudit eval` gives it.
fn eval(capture: &Path, roles: &[String]) -> BTreeMap<String, String> {
    let mut args = vec!["eval".to_owned(), "--format".into(), "json".into()];
    for r in roles {
        args.extend(["--role".to_owned(), r.clone()]);
    }
    args.push(capture.display().to_string());
    let out = fleetaudit(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule_id"].as_str().unwrap().to_owned(), f["status"].as_str().unwrap().to_owned()))
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn every_fault_is_recorded_with_its_own_kind_and_healthy_nodes_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sim = Simulator::start(
        d,
        &["--nodes", "4", "--profile", "mix", "--faults", "all", "--latency", "20ms"]
            .into_iter()
            .chain(["--connect-timeout", "2s", "--command-timeout", "3s"])
            .collect::<Vec<_>>(),
    );
    let inventory_path = d.join("fleet/inventory.toml");
    let inventory = fleetaudit::inventory::load(&inventory_path).unwrap();
    assert_eq!(inventory.hosts.len(), 4 + Behavior::FAULTS.len());

    let db = d.join("scan.db");
    let (stdout, stderr) = (d.join("scan.stdout"), d.join("scan.stderr"));
    let (code, max_rss) = run_measured(
        Command::new(env!("CARGO_BIN_EXE_fleetaudit"))
            .args(["scan", "-i"])
            .arg(&inventory_path)
            .arg("--db")
            .arg(&db)
            .env("NO_COLOR", "1")
            .env("FLEETAUDIT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap()),
    );
    let (out, err) = (std::fs::read_to_string(&stdout).unwrap(), std::fs::read_to_string(&stderr).unwrap());
    assert_eq!(code, Some(2), "hosts could not be audited: exit 2\n{out}\n{err}");
    assert!(!err.contains("panicked") && !out.contains("panicked"), "{err}");
    assert!(max_rss > 0 && max_rss < MAX_RSS_KIB, "the scanner's peak RSS was {max_rss} KiB\n{out}");

    // Every host recorded, each with the outcome its behaviour calls for.
    let rows = sqlite(&db, "SELECT host, outcome, coalesce(error_kind, '-') FROM host_status ORDER BY host");
    let recorded: BTreeMap<&str, (&str, &str)> = rows
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f[0], (f[1], f[2]))
        })
        .collect();
    assert_eq!(recorded.len(), inventory.hosts.len(), "{rows}");
    let mut audited = Vec::new();
    let mut kinds = BTreeSet::new();
    for host in &inventory.hosts {
        let behavior = if host.name.starts_with("node-") {
            Behavior::Normal
        } else {
            Behavior::parse(host.name.rsplit_once('-').unwrap().0).unwrap()
        };
        let got = recorded[host.name.as_str()];
        match behavior.expected_kind() {
            Some(kind) => {
                assert_eq!(got, ("error", kind), "{} ({behavior:?})", host.name);
                kinds.insert(kind);
            }
            None => {
                assert_eq!(got, ("audited", "-"), "{} ({behavior:?})", host.name);
                audited.push((host, behavior));
            }
        }
    }
    // Silent and drip both time out (at different stages); every other fault that stops the audit has a kind of
    // its own.
    let stopping: Vec<&Behavior> = Behavior::FAULTS.iter().filter(|b| b.expected_kind().is_some()).collect();
    assert_eq!(kinds.len(), stopping.len() - 1, "{kinds:?}");
    // The faults that do not stop the audit: non-UTF-8 lines, those that show only in the files (SFTP refused
    // or denied, a huge or hostile kubelet config), whose rules the scanner judges `error`, and the kubelet
    // certificates that expire soon or expired, which their cluster's rules judge.
    let audited_faults = Behavior::FAULTS.len() - stopping.len();
    assert_eq!(audited_faults, 8, "non-UTF-8, the five file faults and the two certificate faults");
    let expiry = sqlite(
        &db,
        "SELECT cluster || '|' || status || '|' || reason FROM cluster_findings \
          WHERE rule_id = 'cluster-kubelet-serving-certificates-expiry'",
    );
    for (fault, says) in [("cert-expiring", "expires on "), ("cert-expired", "expired on ")] {
        let host = inventory.hosts.iter().find(|h| h.name.starts_with(fault)).unwrap();
        let cluster = host.cluster.as_deref().unwrap();
        let line = expiry.lines().find(|l| l.starts_with(&format!("{cluster}|"))).unwrap_or_else(|| panic!("{expiry}"));
        assert!(line.contains("|fail|") && line.contains(says), "{fault}: {line}");
        assert!(line.contains(&format!("at {}:", host.name)), "{fault} names its host: {line}");
    }
    assert_eq!(audited.len(), 4 + audited_faults, "four healthy nodes and the faults that are still audited");

    // Each audited node has exactly the verdicts `fleetaudit eval` gives a `fleetaudit snapshot` of it (its
    // process table and the files it served, or why not: a refused SFTP, a huge file, a YAML bomb), and the fleet
    // disagrees on the reference rule, so the check can fail.
    let mut reference = BTreeSet::new();
    for (host, behavior) in &audited {
        let profile = host.cluster.as_deref().unwrap();
        let tar = d.join(format!("{}.tar", host.name));
        let snap =
            fleetaudit(&["snapshot", "-i", inventory_path.to_str().unwrap(), &host.name, "-o", tar.to_str().unwrap()]);
        assert_eq!(snap.status.code(), Some(0), "{}: {}", host.name, text(&snap.stderr));
        let roles: Vec<String> = host.roles.iter().map(|r| r.as_str().to_owned()).collect();
        let expected = eval(&tar, &roles);
        // And the process table alone: what the files decide is error there, never a pass or not applicable.
        let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/captures").join(format!("{profile}.txt"));
        let bare = eval(&capture, &roles);
        for (rule, status) in &bare {
            if status != &expected[rule] {
                assert_eq!(
                    status, "error",
                    "{}: {rule} is {status} from ps alone, {} with files",
                    host.name, expected[rule]
                );
            }
        }
        let stored: BTreeMap<String, String> =
            sqlite(&db, &format!("SELECT rule_id, status FROM latest_findings WHERE host = '{}'", host.name))
                .lines()
                .map(|l| {
                    let (rule, status) = l.split_once('|').unwrap();
                    (rule.to_owned(), status.to_owned())
                })
                .collect();
        assert_eq!(stored, expected, "{} ({behavior:?}, profile {profile})", host.name);
        reference.insert(expected[RULE].clone());
    }
    assert!(reference.contains("pass") && reference.contains("fail"), "{reference:?}");

    // Whatever hosts sent (binary junk, Latin-1) is stored as valid UTF-8.
    for sql in [
        "SELECT hex(error_message) FROM scan_hosts WHERE error_message IS NOT NULL",
        "SELECT hex(body) FROM evidence",
        "SELECT hex(reason) FROM results",
    ] {
        let rows = sqlite(&db, sql);
        assert!(!rows.trim().is_empty(), "{sql}");
        for row in rows.lines() {
            let bytes = unhex(row.trim());
            assert!(String::from_utf8(bytes.clone()).is_ok(), "{sql}: {}", String::from_utf8_lossy(&bytes));
        }
    }
    // An SFTP server claiming a 4 GiB packet: refused at its length, and every rule that needed a file says so.
    let hostile = sqlite(&db, "SELECT status || '|' || reason FROM latest_findings WHERE host = 'sftp-hostile-1'");
    let said = format!("a packet of {} bytes, more than the", fleetaudit::sim::HOSTILE_LENGTH);
    let refused: Vec<&str> = hostile.lines().filter(|l| l.contains(&said)).collect();
    assert!(refused.len() >= 5, "{hostile}");
    assert!(refused.iter().all(|l| l.starts_with("error|")), "{hostile}");
    let garbage = sqlite(&db, "SELECT error_message FROM host_status WHERE host = 'garbage-1'");
    assert!(garbage.contains("not a ps header"), "{garbage}");
    sim.stop();
}

#[test]
fn simulate_rejects_unknown_faults_and_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("fleet");
    let out = fleetaudit(&["simulate", "--faults", "flod=2", "--dir", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("unknown fault \"flod\"") && text(&out.stderr).contains("drip"));
    let out = fleetaudit(&["simulate", "--profile", "k8s", "--dir", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("kubeadm-hardened"), "{}", text(&out.stderr));
    assert!(!d.exists(), "nothing is written before the arguments are read");
}
