//! Parsing + judging a 5,000-process table: the per-host cost of the engine in a scan.
//! Run: `cargo bench --bench engine`. Target: >= 50 MB/s of `ps` text on one core.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fleetaudit::model::Role;
use fleetaudit::ps;
use fleetaudit::rules::{Engine, RuleSet};

/// A busy control-plane node: the kubeadm capture's processes, then workload processes up to `n` rows, with
/// Java-style long command lines among them.
fn big_table(n: usize) -> String {
    let kubeadm = include_str!("../src/captures/kubeadm-default.txt");
    let mut text = String::from(kubeadm);
    let mut pid = 100_000;
    let mut rows = kubeadm.lines().count() - 1;
    while rows < n {
        let cmd = match pid % 4 {
            0 => format!(
                "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id {pid:064x} -address /run/containerd/containerd.sock"
            ),
            1 => "/pause".to_string(),
            2 => format!(
                "java -Xms512m -Xmx2g -Dapp.instance={pid} -cp /app/lib/a.jar:/app/lib/b.jar:/app/lib/c.jar:/app/lib/d.jar com.example.orders.Main --spring.profiles.active=prod --server.port=8080"
            ),
            _ => format!("nginx: worker process {pid}"),
        };
        text.push_str(&format!("1000     {pid:>7}  100000  0 Nov27 ?        00:00:01 {cmd}\n"));
        pid += 1;
        rows += 1;
    }
    text
}

fn engine(c: &mut Criterion) {
    let engine = Engine::new(RuleSet::embedded().unwrap());
    let table = big_table(5_000);
    let mut group = c.benchmark_group("ps_5000");
    group.throughput(Throughput::Bytes(table.len() as u64));
    group.bench_function("parse", |b| b.iter(|| ps::parse(black_box(table.as_bytes())).unwrap()));
    group.bench_function("parse_and_judge", |b| {
        b.iter(|| {
            let t = ps::parse(black_box(table.as_bytes())).unwrap();
            engine.judge(&t, &[Role::ControlPlane, Role::Etcd, Role::Worker])
        })
    });
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
