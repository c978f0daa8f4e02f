//! Rendering the report of a 10,000-host scan: the time `fleetaudit report` (and every scan) spends on HTML;
//! then the same scan as `scan --format json`, `--junit FILE` and `--format sarif` output.
//! Run: `cargo bench --bench report`. Targets: the report <= 3 s, no page over a few MB; the JSON <= 1 s, <= 100 MB.
//!
//! The database is synthetic but realistic: the real engine judges the bundled captures (56 rules each), hosts
//! draw one of them round-robin (so a few distinct result sets are shared by thousands of hosts, as in a real
//! fleet), and one host in twenty is unreachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetaudit::inventory::Host;
use fleetaudit::model::Role;
use fleetaudit::rules::{Engine, RuleSet};
use fleetaudit::store::{HostOutcome, HostRecord, HostResult, ScanLock, Store};

const HOSTS: usize = 10_000;

fn host(name: &str, roles: Vec<Role>) -> Host {
    Host {
        name: name.into(),
        cluster: None,
        address: "127.0.0.1".into(),
        port: 22,
        user: "audit".into(),
        identity_files: Vec::new(),
        roles,
        jump: Vec::new(),
        certificate_files: Vec::new(),
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        known_hosts: Vec::new(),
        files: Default::default(),
        zone: None,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run());
}

async fn run() {
    let engine = Arc::new(Engine::new(RuleSet::embedded().unwrap()));
    let cp = vec![Role::ControlPlane, Role::Etcd];
    let captures: Vec<(&str, Vec<Role>)> = vec![
        (include_str!("../src/captures/kubeadm-default.txt"), cp.clone()),
        (include_str!("../src/captures/kubeadm-hardened.txt"), cp.clone()),
        (include_str!("../src/captures/kops.txt"), cp.clone()),
        (include_str!("../src/captures/hyperkube.txt"), cp.clone()),
        (include_str!("../src/captures/systemd-hard-way.txt"), cp),
        (include_str!("../src/captures/worker.txt"), vec![Role::Worker]),
        (include_str!("../src/captures/etcd-only.txt"), vec![Role::Etcd]),
    ];
    let results: Vec<HostResult> = captures
        .iter()
        .map(|(text, roles)| fleetaudit::scan::judge(&engine, &host("x", roles.clone()), text.as_bytes()))
        .collect();
    let rules = fleetaudit::scan::rule_meta(&engine);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let store = Store::open(&db).await.unwrap();
    let lock = ScanLock::on_file(&db).unwrap();
    let t = Instant::now();
    let scan_id = store.begin_scan(&lock, "bench", &engine.rules.version(), &rules, HOSTS).await.unwrap();
    let outcomes: Vec<HostOutcome> = (0..HOSTS)
        .map(|i| HostOutcome {
            host: HostRecord {
                name: format!("node-{i:05}"),
                cluster: Some(format!("cluster-{}", i % 20)),
                address: format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                port: 22,
                roles: vec!["control-plane".into()],
            },
            started_at: fleetaudit::model::utc_now(),
            duration_ms: 120,
            host_key_fingerprint: Some(format!("SHA256:bench{i:05}")),
            host_certificate: None,
            result: if i % 20 == 19 {
                HostResult::Error { kind: "unreachable".into(), message: "connection refused".into() }
            } else {
                results[i % results.len()].clone()
            },
        })
        .collect();
    for chunk in outcomes.chunks(500) {
        store.record_hosts(scan_id, chunk).await.unwrap();
    }
    store.finish_scan(scan_id, false).await.unwrap();
    eprintln!("database of {HOSTS} hosts written in {:.1} s", t.elapsed().as_secs_f64());

    let out = dir.path().join("report");
    let mut best = Duration::MAX;
    for run in 1..=3 {
        let t = Instant::now();
        let summary = fleetaudit::report::render(&store, None, &out).await.unwrap();
        let took = t.elapsed();
        best = best.min(took);
        println!(
            "render {run}: {:.2} s, {} pages, {:.0} MB, largest page {} ({:.0} KB)",
            took.as_secs_f64(),
            summary.pages,
            summary.bytes as f64 / 1e6,
            summary.largest.0.strip_prefix(&out).unwrap_or(&summary.largest.0).display(),
            summary.largest.1 as f64 / 1e3,
        );
        assert!(summary.largest.1 < 4_000_000, "a page over 4 MB");
    }
    println!("report of {HOSTS} hosts: best {:.2} s (target <= 3 s)", best.as_secs_f64());

    // `scan --format json` and `--junit FILE` of the same scan: read back from the store, then written.
    for run in 1..=3 {
        let t = Instant::now();
        let results = fleetaudit::output::scan::ScanResults::load(&store, scan_id).await.unwrap();
        let loaded = t.elapsed();
        let json = dir.path().join("scan.json");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&json).unwrap());
        fleetaudit::output::scan::write_json(&mut w, &results).unwrap();
        drop(w);
        let json_done = t.elapsed();
        let junit = dir.path().join("junit.xml");
        fleetaudit::metrics::write_atomic_with(&junit, |w| fleetaudit::output::junit::write(w, &results)).unwrap();
        let junit_done = t.elapsed();
        let sarif = dir.path().join("scan.sarif");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&sarif).unwrap());
        fleetaudit::output::sarif::write(&mut w, &results).unwrap();
        drop(w);
        let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len() as f64 / 1e6;
        println!(
            "outputs {run}: load {:.2} s, JSON {:.2} s ({:.1} MB; target <= 1 s, <= 100 MB), JUnit {:.2} s ({:.0} MB), \
             SARIF {:.2} s ({:.0} MB)",
            loaded.as_secs_f64(),
            (json_done - loaded).as_secs_f64(),
            size(&json),
            (junit_done - json_done).as_secs_f64(),
            size(&junit),
            (t.elapsed() - junit_done).as_secs_f64(),
            size(&sarif),
        );
    }
    store.close().await;
}
