//! Several scanners, one PostgreSQL history, one scan: three `fleetaudit scan` processes on one simulated fleet
//! (a few hundred nodes with latency) share the scan, one is killed with SIGKILL mid-scan and the others take
//! its hosts over when its lease runs out; every host is recorded exactly once and one scanner ends the scan
//! and renders its report. Then two scanners of different zones split a scan by zone, neither touching the
//! other's hosts.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetaudit::sim::fleet::{self, Member, ScanSettings};
use fleetaudit::sim::{self, Behavior, NodeSpec};
use support::text;

const NODES: usize = 240;

fn scanner(inventory: &str, url: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fleetaudit"))
        .args(["scan", "-i", inventory, "--db", url, "--concurrency", "4", "--lease", "2"])
        .args(extra)
        .env("NO_COLOR", "1")
        .env("FLEETAUDIT_LOG", "warn")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("FLEETAUDIT_DB")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> (Option<i32>, String, String) {
    let out = child.wait_with_output().unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// `n` simulated worker nodes (`node-000`, ...) with `latency` a round trip, node i in cluster `cluster(i)`, and
/// their inventory, in `dir`/fleet.
fn workers(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    n: usize,
    latency: Duration,
    cluster: impl Fn(usize) -> &'static str,
) -> fleet::Fleet {
    let profile = sim::find_profile("worker").unwrap();
    let members: Vec<Member> = (0..n)
        .map(|i| Member {
            spec: NodeSpec {
                name: format!("node-{i:03}"),
                table: Arc::new(profile.capture.as_bytes().to_vec()),
                behavior: Behavior::Normal,
                latency,
            },
            cluster: cluster(i).into(),
            roles: profile.roles.iter().map(|r| (*r).to_owned()).collect(),
            note: "worker".into(),
        })
        .collect();
    let settings = ScanSettings {
        header: "# shared_scans test fleet\n".into(),
        concurrency: None,
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(20),
        sftp_command: None,
    };
    rt.block_on(fleet::launch(&dir.join("fleet"), members, &settings)).unwrap()
}

#[test]
fn three_scanners_share_one_scan_survive_a_kill_and_keep_to_their_zones() {
    let pg = support::postgres::Postgres::start();
    let url = pg.url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Two clusters, one per zone (the zones are written in for the second scan).
    let fleet =
        workers(&rt, dir.path(), NODES, Duration::from_millis(40), |i| if i % 2 == 0 { "east" } else { "west" });
    let inventory = fleet.inventory.display().to_string();

    // One scan, three scanners; the first is killed once it has hosts in flight.
    let started = Instant::now();
    let mut victim = scanner(&inventory, &url, &[]);
    let others = [scanner(&inventory, &url, &[]), scanner(&inventory, &url, &[])];
    let victim_id = victim.id();
    let claimed_by = |pid: u32| format!("SELECT count(*) FROM scan_work WHERE claimed_by LIKE '% pid {pid}'");
    loop {
        // (The tables appear once the first scanner has migrated the database.)
        let held: i64 = pg.try_psql("postgres", &claimed_by(victim_id)).map_or(0, |n| n.trim().parse().unwrap_or(0));
        if held >= 8 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the first scanner never claimed hosts");
        std::thread::sleep(Duration::from_millis(100));
    }
    victim.kill().unwrap();
    let _ = victim.wait();
    let ends: Vec<(Option<i32>, String, String)> = others.into_iter().map(finish).collect();
    for (code, stdout, stderr) in &ends {
        // 2: the worker profile has rules it cannot judge without root's files (no sftp_command here).
        assert!(
            matches!(code, Some(1 | 2)) && stdout.contains("shared scan: this scanner audited"),
            "{stdout}\n{stderr}"
        );
    }
    let q = |sql: &str| pg.psql("postgres", sql).trim().to_owned();
    assert_eq!(q("SELECT count(*) || ' ' || string_agg(status, ',') FROM scans"), "1 complete", "one scan");
    assert_eq!(
        q("SELECT count(*), count(DISTINCT host_id) FROM scan_hosts WHERE scan_id = 1"),
        format!("{NODES}|{NODES}")
    );
    assert_eq!(q("SELECT hosts_total FROM scans WHERE id = 1"), NODES.to_string());
    let audited = q("SELECT count(*) FROM scan_hosts WHERE scan_id = 1 AND outcome = 'audited'");
    assert_eq!(audited, NODES.to_string(), "no host lost to the kill");
    assert_eq!(q("SELECT count(*) FROM scan_work WHERE scan_id = 1 AND done = 0"), "0");
    // The victim's hosts in flight went to the others after its lease: its held-but-unrecorded ones.
    let takeovers: usize =
        ends.iter().map(|(_, _, e)| e.matches("taking over a host whose scanner's lease ran out").count()).sum();
    assert!(takeovers >= 1, "{:#?}", ends);
    assert!(ends.iter().any(|(_, _, e)| e.contains(&format!("pid {victim_id}"))), "the log names the dead scanner");
    let enders = ends.iter().filter(|(_, out, _)| out.contains("this scanner ended it")).count();
    assert_eq!(enders, 1, "exactly one scanner ends the scan: {ends:#?}");
    assert_eq!(q("SELECT count(*) FROM scanners WHERE scan_id = 1"), "3");
    assert_eq!(q("SELECT sum(finished) FROM scanners WHERE scan_id = 1"), "1");
    assert!(fleet.dir.join("report/index.html").exists(), "the ending scanner rendered the report");
    let rule_counts = q("SELECT sum(pass + fail + error + not_applicable) FROM scan_rule_counts WHERE scan_id = 1");
    let verdicts = q("SELECT count(*) FROM findings WHERE scan_id = 1");
    assert_eq!(rule_counts, verdicts, "every host's verdicts counted once");

    // Zones: `east` in zone a, `west` in zone b; one scanner of each.
    let text = std::fs::read_to_string(&fleet.inventory).unwrap();
    let zoned = text
        .replace("[[clusters]]\nname = \"east\"\n", "[[clusters]]\nname = \"east\"\nzone = \"a\"\n")
        .replace("[[clusters]]\nname = \"west\"\n", "[[clusters]]\nname = \"west\"\nzone = \"b\"\n");
    assert_ne!(zoned, text);
    std::fs::write(&fleet.inventory, zoned).unwrap();
    let a = scanner(&inventory, &url, &["--zone", "a"]);
    let b = scanner(&inventory, &url, &["--zone", "b"]);
    let (a_pid, b_pid) = (a.id(), b.id());
    for (code, stdout, stderr) in [finish(a), finish(b)] {
        assert!(
            matches!(code, Some(1 | 2)) && stdout.contains("shared scan: this scanner audited"),
            "{stdout}\n{stderr}"
        );
    }
    assert_eq!(q("SELECT status FROM scans WHERE id = 2"), "complete");
    assert_eq!(q("SELECT count(*) FROM scan_hosts WHERE scan_id = 2"), NODES.to_string());
    let by = |pid: u32| {
        q(&format!(
            "SELECT string_agg(DISTINCT zone, ',') || ' ' || count(*) FROM scan_work
          WHERE scan_id = 2 AND claimed_by LIKE '% pid {pid}'"
        ))
    };
    assert_eq!(by(a_pid), format!("a {}", NODES / 2), "zone a's scanner audited zone a's hosts only");
    assert_eq!(by(b_pid), format!("b {}", NODES / 2), "zone b's scanner audited zone b's hosts only");
    drop(fleet);
    drop(rt);
}

/// Keys accepted on first use are shared through the database: a second scanner with an empty `accepted_hosts`
/// trusts the keys the first one accepted rather than accepting again, and a key that differs from the shared
/// one is refused as changed.
#[test]
fn first_use_host_keys_are_shared_through_the_database() {
    let pg = support::postgres::Postgres::start();
    let url = pg.url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let fleet = workers(&rt, dir.path(), 6, Duration::ZERO, |_| "c");
    let inventory = fleet.inventory.display().to_string();
    let original = std::fs::read_to_string(&fleet.inventory).unwrap();
    std::fs::write(fleet.dir.join("empty_known_hosts"), "").unwrap();
    let with = |accepted: &str| {
        let text = original.replacen(
            "known_hosts = \"known_hosts\"\n",
            &format!("known_hosts = \"empty_known_hosts\"\nhost_key_policy = \"accept-new\"\naccepted_hosts = \"{accepted}\"\n"),
            1,
        );
        assert_ne!(text, original);
        std::fs::write(&fleet.inventory, text).unwrap();
    };
    let q = |sql: &str| pg.psql("postgres", sql).trim().to_owned();

    with("accepted-1");
    let (code, out, err) = finish(scanner(&inventory, &url, &[]));
    assert!(matches!(code, Some(1 | 2)), "{out}\n{err}");
    assert_eq!(q("SELECT count(*) FROM scan_hosts WHERE scan_id = 1 AND outcome = 'audited'"), "6", "{out}");
    assert_eq!(q("SELECT count(*) FROM accepted_host_keys"), "6");
    let first_file = std::fs::read_to_string(fleet.dir.join("accepted-1")).unwrap();
    assert_eq!(first_file.lines().count(), 6);

    // node-0's shared key replaced with node-1's: node-0 now presents a key that differs from the shared one.
    let host0 = q("SELECT host FROM accepted_host_keys ORDER BY host LIMIT 1");
    pg.psql(
        "postgres",
        &format!(
            "UPDATE accepted_host_keys SET line = '{host0} ' || split_part((SELECT line FROM accepted_host_keys
                     WHERE host <> '{host0}' ORDER BY host LIMIT 1), ' ', 2) || ' '
                     || split_part((SELECT line FROM accepted_host_keys WHERE host <> '{host0}' ORDER BY host LIMIT 1), ' ', 3)
              WHERE host = '{host0}'"
        ),
    );
    with("accepted-2");
    let (code, out, err) = finish(scanner(&inventory, &url, &[]));
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert_eq!(q("SELECT count(*) FROM scan_hosts WHERE scan_id = 2 AND outcome = 'audited'"), "5", "{out}");
    assert_eq!(
        q("SELECT count(*) FROM scan_hosts WHERE scan_id = 2 AND error_kind = 'host_key_changed'"),
        "1",
        "{out}"
    );
    let second_file = std::fs::read_to_string(fleet.dir.join("accepted-2")).unwrap_or_default();
    assert_eq!(second_file, "", "the shared keys were trusted, none accepted again");
    drop(fleet);
    drop(rt);
}
