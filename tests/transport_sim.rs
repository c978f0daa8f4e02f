//! The SSH transport against the project's own russh simulator: host key policies, authentication, limits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fleetaudit::sim::{self, Behavior, NodeSpec};
use fleetaudit::ssh::{HostKeyPolicy, SshError, Target, Transport, TransportConfig, known_hosts};

struct Setup {
    dir: tempfile::TempDir,
    key_file: PathBuf,
    nodes: Vec<sim::RunningNode>,
}

async fn setup(specs: Vec<NodeSpec>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let client = sim::generate_key("client").unwrap();
    let key_file = dir.path().join("id_ed25519");
    std::fs::write(&key_file, sim::private_key_text(&client)).unwrap();
    let nodes = sim::start(specs, vec![client.public_key().clone()]).await.unwrap();
    Setup { dir, key_file, nodes }
}

fn node(name: &str, behavior: Behavior) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        table: Arc::new(sim::profile("kubeadm-default").unwrap().as_bytes().to_vec()),
        behavior,
        latency: Duration::ZERO,
    }
}

fn transport(known: &Path, accepted: &Path, policy: HostKeyPolicy) -> Transport {
    Transport::new(TransportConfig {
        known_hosts: vec![known.to_owned()],
        policy,
        accepted_hosts: accepted.to_owned(),
        shared_accepted: Vec::new(),
    })
    .unwrap()
}

fn target<'a>(port: u16, keys: &'a [PathBuf]) -> Target<'a> {
    Target {
        name: "n",
        address: "127.0.0.1",
        port,
        user: "audit",
        identity_files: keys,
        known_hosts: &[],
        jump: &[],
        certificate_files: &[],
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn known_key_captures_the_table() {
    let s = setup(vec![node("a", Behavior::Normal)]).await;
    let n = &s.nodes[0];
    let known = s.dir.path().join("known_hosts");
    std::fs::write(&known, known_hosts::line_for("127.0.0.1", n.addr.port(), &n.host_key) + "\n").unwrap();
    let t = transport(&known, &s.dir.path().join("accepted"), HostKeyPolicy::Strict);
    let keys = [s.key_file.clone()];
    let cap = t.capture(&target(n.addr.port(), &keys)).await.unwrap();
    assert_eq!(cap.stdout, sim::profile("kubeadm-default").unwrap().as_bytes());
    assert_eq!(cap.fingerprint, known_hosts::fingerprint(&n.host_key));
}

#[tokio::test]
async fn unknown_changed_and_accept_new() {
    let s = setup(vec![node("a", Behavior::Normal), node("b", Behavior::Normal)]).await;
    let (a, b) = (&s.nodes[0], &s.nodes[1]);
    let keys = [s.key_file.clone()];
    let known = s.dir.path().join("known_hosts");
    // a is unknown; b is on record with a's key: changed.
    std::fs::write(&known, known_hosts::line_for("127.0.0.1", b.addr.port(), &a.host_key) + "\n").unwrap();
    let accepted = s.dir.path().join("accepted");
    let strict = transport(&known, &accepted, HostKeyPolicy::Strict);
    let e = strict.capture(&target(a.addr.port(), &keys)).await.unwrap_err();
    assert_eq!(e.kind(), "host_key_unknown", "{e}");
    assert!(e.to_string().contains(&known_hosts::fingerprint(&a.host_key)), "{e}");
    assert!(e.to_string().contains("ssh-keyscan"), "{e}");
    let e = strict.capture(&target(b.addr.port(), &keys)).await.unwrap_err();
    assert_eq!(e.kind(), "host_key_changed", "{e}");
    assert!(e.to_string().contains("man-in-the-middle"), "{e}");

    // accept-new trusts a first-seen key and records it, but a changed key is still refused.
    let tofu = transport(&known, &accepted, HostKeyPolicy::AcceptNew);
    tofu.capture(&target(a.addr.port(), &keys)).await.unwrap();
    let recorded = std::fs::read_to_string(&accepted).unwrap();
    assert!(recorded.contains(&format!("[127.0.0.1]:{}", a.addr.port())));
    assert_eq!(tofu.capture(&target(b.addr.port(), &keys)).await.unwrap_err().kind(), "host_key_changed");
    // The recorded key is honoured by a later strict scan.
    let strict = transport(&known, &accepted, HostKeyPolicy::Strict);
    strict.capture(&target(a.addr.port(), &keys)).await.unwrap();
}

#[tokio::test]
async fn wrong_user_key_refused_port_and_silent_host() {
    let s = setup(vec![node("a", Behavior::Normal), node("m", Behavior::PsMissing)]).await;
    let known = s.dir.path().join("known_hosts");
    let lines: Vec<String> =
        s.nodes.iter().map(|n| known_hosts::line_for("127.0.0.1", n.addr.port(), &n.host_key)).collect();
    std::fs::write(&known, lines.join("\n")).unwrap();
    let t = transport(&known, &s.dir.path().join("accepted"), HostKeyPolicy::Strict);

    let other = s.dir.path().join("other_key");
    std::fs::write(&other, sim::private_key_text(&sim::generate_key("other").unwrap())).unwrap();
    let keys = [other.clone()];
    let e = t.capture(&target(s.nodes[0].addr.port(), &keys)).await.unwrap_err();
    assert_eq!(e.kind(), "auth_failed", "{e}");
    assert!(e.to_string().contains("other_key"), "{e}");

    let missing = [s.dir.path().join("no_such_key")];
    let e = t.capture(&target(s.nodes[0].addr.port(), &missing)).await.unwrap_err();
    assert_eq!(e.kind(), "auth_failed", "{e}");
    assert!(e.to_string().contains("no_such_key"), "{e}");

    let keys = [s.key_file.clone()];
    let e = t.capture(&target(s.nodes[1].addr.port(), &keys)).await.unwrap_err();
    assert!(matches!(e, SshError::CommandFailed { status: 127, .. }), "{e}");
    assert!(e.to_string().contains("ps: not found"), "{e}");

    let refused = sim::closed_port().await.unwrap();
    let e = t.capture(&target(refused.port(), &keys)).await.unwrap_err();
    assert_eq!(e.kind(), "unreachable", "{e}");

    // Accepts TCP, never speaks SSH.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut tgt = target(port, &keys);
    tgt.connect_timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let e = t.capture(&tgt).await.unwrap_err();
    assert_eq!(e.kind(), "timeout", "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.abort();
}

/// Latency is paid on every round trip, not once: a capture from a node 100 ms away takes many times 100 ms (the
/// SSH exchange is a series of round trips), and the table still arrives whole. A lower bound only: a delay
/// line cannot deliver early, however fast or slow the machine.
#[tokio::test]
async fn latency_is_paid_on_every_round_trip() {
    let latency = Duration::from_millis(100);
    let s = setup(vec![NodeSpec { latency, ..node("far", Behavior::Normal) }]).await;
    let n = &s.nodes[0];
    let known = s.dir.path().join("known_hosts");
    std::fs::write(&known, n.known_hosts_line().unwrap() + "\n").unwrap();
    let t = transport(&known, &s.dir.path().join("accepted"), HostKeyPolicy::Strict);
    let keys = [s.key_file.clone()];
    let started = std::time::Instant::now();
    let cap = t.capture(&target(n.addr.port(), &keys)).await.unwrap();
    let taken = started.elapsed();
    assert_eq!(cap.stdout, sim::profile("kubeadm-default").unwrap().as_bytes());
    assert!(taken >= 6 * latency, "{taken:?}");
}

#[tokio::test]
async fn outputs_over_a_mebibyte_draw_on_the_scans_shared_pool() {
    // A genuine 1.5 MiB table: past the free 1 MiB a host may buffer on its own.
    let mut table = sim::profile("kubeadm-default").unwrap().as_bytes().to_vec();
    let mut pid = 100_000;
    while table.len() < 3 << 19 {
        table.extend_from_slice(
            format!("root {pid:>7}       2  0 Nov28 ?        00:00:00 [kworker/u4:{pid}]\n").as_bytes(),
        );
        pid += 1;
    }
    let mut spec = node("big", Behavior::Normal);
    spec.table = Arc::new(table.clone());
    let s = setup(vec![spec]).await;
    let n = &s.nodes[0];
    let known = s.dir.path().join("known_hosts");
    std::fs::write(&known, known_hosts::line_for("127.0.0.1", n.addr.port(), &n.host_key) + "\n").unwrap();
    let keys = [s.key_file.clone()];
    let accepted = s.dir.path().join("accepted");

    // The default pool (256 MiB) takes it.
    let t = transport(&known, &accepted, HostKeyPolicy::Strict);
    assert_eq!(t.capture(&target(n.addr.port(), &keys)).await.unwrap().stdout, table);

    // A spent pool: refused as too large, saying why, not waited for.
    let spent = transport(&known, &accepted, HostKeyPolicy::Strict).with_output_pool(0);
    let e = spent.capture(&target(n.addr.port(), &keys)).await.unwrap_err();
    assert_eq!(e.kind(), "output_too_large", "{e}");
    assert!(e.to_string().contains("pool for large outputs"), "{e}");

    // A pool with room for one such host at a time: what a capture draws is given back when it ends.
    let small = transport(&known, &accepted, HostKeyPolicy::Strict).with_output_pool(1 << 20);
    for _ in 0..3 {
        assert_eq!(small.capture(&target(n.addr.port(), &keys)).await.unwrap().stdout, table);
    }
}
