//! `fleetaudit inventory import` end to end: realistic Ansible inventories (INI in kubespray's shape, YAML with
//! nested groups, ranges and anchors) and a `kubectl get nodes -o json` document (tests/fixtures/import/) are
//! imported by the binary, the result is read back by fleetaudit's own inventory reader (`inventory check`),
//! what could not be mapped is reported with its line, and the imported inventory is scanned against simulated
//! nodes. The fixtures use documentation addresses; an ssh_config maps each to its simulated node on 127.0.0.1,
//! as a user's `~/.ssh/config` maps names to addresses.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleetaudit::sim::{self, Behavior, NodeSpec, RunningNode};
use fleetaudit::ssh::known_hosts;
use support::{fleetaudit_env, sqlite, text, write};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/import");

/// Simulated nodes for the fixture's hosts, with the directory a scan of them needs: `home/.ssh/k8s-audit` (the
/// key the fixtures name), `known_hosts`, and `ssh_config` mapping each source address to its node.
struct Nodes {
    dir: tempfile::TempDir,
    _nodes: Vec<RunningNode>,
    _rt: tokio::runtime::Runtime,
}

impl Nodes {
    /// `hosts`: (address in the source, profile).
    fn start(hosts: &[(&str, &str)]) -> Nodes {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("home/.ssh")).unwrap();
        let client = sim::generate_key("importer").unwrap();
        write(&d.join("home/.ssh/k8s-audit"), &sim::private_key_text(&client));
        let specs = hosts
            .iter()
            .map(|(address, profile)| NodeSpec {
                name: (*address).into(),
                table: Arc::new(sim::profile(profile).unwrap().as_bytes().to_vec()),
                behavior: Behavior::Normal,
                latency: std::time::Duration::ZERO,
            })
            .collect();
        let nodes = rt.block_on(sim::start(specs, vec![client.public_key().clone()])).unwrap();
        let (mut known, mut config) = (String::new(), String::new());
        for (node, (address, _)) in nodes.iter().zip(hosts) {
            known += &(known_hosts::line_for("127.0.0.1", node.addr.port(), &node.host_key) + "\n");
            config += &format!("Host {address}\n  HostName 127.0.0.1\n  Port {}\n", node.addr.port());
        }
        // Addresses that no node answers at (a bastion, say): a closed port on loopback.
        config += &format!("Host *\n  HostName 127.0.0.1\n  Port {}\n", support::free_port());
        write(&d.join("known_hosts"), &known);
        write(&d.join("ssh_config"), &config);
        Nodes { dir, _nodes: nodes, _rt: rt }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let home = self.path("home");
        let out = fleetaudit_env(args, &[("HOME", &home)]);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    }

    /// Imports with the binary, then checks the result with fleetaudit's own reader; returns the import's
    /// stderr and the checked inventory (JSON).
    fn import(&self, args: &[&str]) -> (String, serde_json::Value) {
        let out = self.path("inventory.toml");
        let known = self.path("known_hosts");
        let mut all = vec!["inventory", "import"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--out", out.to_str().unwrap(), "--known-hosts", known.to_str().unwrap()]);
        let (code, stdout, stderr) = self.run(&all);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        let (code, json, err) = self.run(&["inventory", "check", "-i", out.to_str().unwrap(), "--format", "json"]);
        assert_eq!(
            code,
            Some(0),
            "the imported inventory does not load: {err}\n{}",
            std::fs::read_to_string(&out).unwrap()
        );
        (stderr, serde_json::from_str(&json).unwrap())
    }

    /// Scans the imported inventory through the ssh_config; returns (host, outcome, error kind) rows.
    fn scan(&self, only: &[&str]) -> String {
        let (inv, db, cfg) = (self.path("inventory.toml"), self.path("history.db"), self.path("ssh_config"));
        let mut args = vec!["scan", "-i", inv.to_str().unwrap(), "--db", db.to_str().unwrap()];
        args.extend_from_slice(&["--ssh-config", cfg.to_str().unwrap()]);
        if !only.is_empty() {
            args.push("--only");
            args.extend_from_slice(only);
        }
        let (code, stdout, stderr) = self.run(&args);
        assert!(matches!(code, Some(1 | 2)), "{stdout}{stderr}");
        outcomes(&db)
    }
}

fn outcomes(db: &Path) -> String {
    sqlite(
        db,
        "SELECT h.name, coalesce(h.cluster, '-'), sh.outcome, coalesce(sh.error_kind, '-') FROM scan_hosts sh \
         JOIN hosts h ON h.id = sh.host_id WHERE sh.scan_id = (SELECT max(id) FROM scans) ORDER BY h.name",
    )
}

/// (name, cluster, roles, jump) of each host `inventory check --format json` lists.
fn hosts(inv: &serde_json::Value) -> Vec<String> {
    inv["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let list = |v: &serde_json::Value| {
                v.as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect::<Vec<_>>().join(",")
            };
            format!(
                "{} {} {} {} [{}] [{}]",
                h["name"].as_str().unwrap(),
                h["cluster"].as_str().unwrap_or("-"),
                h["user"].as_str().unwrap(),
                h["port"],
                list(&h["roles"]),
                list(&h["jump"])
            )
        })
        .collect()
}

#[test]
fn a_kubespray_ini_inventory_is_imported_and_scanned() {
    let nodes = Nodes::start(&[
        ("192.0.2.11", "kubeadm-default"),
        ("192.0.2.12", "kubeadm-hardened"),
        ("192.0.2.13", "kubeadm-default"),
        ("192.0.2.14", "worker"),
        ("192.0.2.15", "worker"),
    ]);
    let fixture = format!("{FIXTURES}/kubespray.ini");
    let (stderr, inv) = nodes.import(&["ansible", &fixture]);
    assert_eq!(
        hosts(&inv),
        [
            "node1 k8s_cluster audit 22 [control-plane,etcd] []",
            "node2 k8s_cluster audit 22 [control-plane,etcd] []",
            "node3 k8s_cluster audit 22 [control-plane,etcd] []",
            "node4 k8s_cluster audit 22 [worker] []",
            "node5 k8s_cluster audit 22 [worker] []",
            "edge1 edge audit 22 [] [jump@192.0.2.100:22]",
            "edge2 edge audit 22 [] [jump@192.0.2.100:22]",
            "bastion bastion jump 22 [] []",
        ]
    );
    // Each thing not imported, once, at its line.
    for want in [
        "kubespray.ini:8: ip=10.3.0.1 (host node1): not used by fleetaudit",
        "kubespray.ini:8: etcd_member_name=etcd1 (host node1): not used by fleetaudit",
        "kubespray.ini:15: host win1 not imported: ansible_connection=winrm (host win1): fleetaudit audits over SSH only",
        "kubespray.ini:50: ansible_ssh_common_args (group edge): -o StrictHostKeyChecking=no: not used by fleetaudit",
        "kubespray.ini:54: ansible_become=true (group all): not used by fleetaudit",
    ] {
        assert_eq!(stderr.matches(want).count(), 1, "{want} not once in:\n{stderr}");
    }
    assert!(stderr.contains("imported 8 hosts in 3 clusters"), "{stderr}");
    let written = std::fs::read_to_string(nodes.path("inventory.toml")).unwrap();
    assert!(
        written.contains("# Not imported (") && written.contains("kubespray.ini:15: host win1 not imported"),
        "{written}"
    );
    assert!(written.contains(&format!("[[hosts]]  # {fixture}:8\nname = \"node1\"")), "{written}");

    // The nodes are audited through the ssh_config; the edge nodes fail at their (absent) bastion.
    assert_eq!(
        nodes.scan(&[]),
        "bastion|bastion|error|unreachable\nedge1|edge|error|jump_failed\nedge2|edge|error|jump_failed\n\
         node1|k8s_cluster|audited|-\nnode2|k8s_cluster|audited|-\nnode3|k8s_cluster|audited|-\n\
         node4|k8s_cluster|audited|-\nnode5|k8s_cluster|audited|-\n"
    );
    // The roles came through: the hardened control plane passes the reference rule, a default one fails it.
    let verdicts = sqlite(
        &nodes.path("history.db"),
        "SELECT host, status FROM latest_findings WHERE rule_id = 'apiserver-kubelet-certificate-authority' \
         AND host IN ('node1', 'node2', 'node4') ORDER BY host",
    );
    assert_eq!(verdicts, "node1|fail\nnode2|pass\nnode4|not_applicable\n");
}

#[test]
fn a_yaml_inventory_with_nested_groups_is_imported_and_scanned() {
    let nodes = Nodes::start(&[
        ("prod-cp-1.example.internal", "kubeadm-default"),
        ("prod-cp-2.example.internal", "kubeadm-default"),
        ("192.0.2.21", "worker"),
        ("192.0.2.22", "worker"),
    ]);
    let fixture = format!("{FIXTURES}/hosts.yml");
    let (stderr, inv) = nodes.import(&["ansible", &fixture]);
    assert_eq!(
        hosts(&inv),
        [
            "prod-cp-1.example.internal prod audit 22 [control-plane] []",
            "prod-cp-2.example.internal prod audit 22 [control-plane] []",
            "prod-w1 prod audit 22 [worker] []",
            "prod-w2 prod ubuntu 22 [worker] []",
            "lab-1 lab audit 22 [] []",
        ]
    );
    for want in [
        "hosts.yml:8: ntp_servers (group all): a list or mapping, which no fleetaudit key takes",
        "hosts.yml:14: ansible_python_interpreter=/usr/bin/python3 (group prod): not used by fleetaudit",
        "hosts.yml:28: chrony (group lab): a list or mapping",
        "hosts.yml:34: host lab-local not imported: ansible_connection=local",
    ] {
        assert_eq!(stderr.matches(want).count(), 1, "{want} not once in:\n{stderr}");
    }
    assert_eq!(
        nodes.scan(&["prod-cp-1.example.internal", "prod-cp-2.example.internal", "prod-w1", "prod-w2"]),
        "prod-cp-1.example.internal|prod|audited|-\nprod-cp-2.example.internal|prod|audited|-\n\
         prod-w1|prod|audited|-\nprod-w2|prod|audited|-\n"
    );
}

#[test]
fn kubectl_nodes_are_imported_into_the_named_cluster_and_scanned() {
    let nodes = Nodes::start(&[("192.0.2.41", "kubeadm-default"), ("192.0.2.42", "worker"), ("192.0.2.43", "worker")]);
    let fixture = format!("{FIXTURES}/nodes.json");
    let key = nodes.path("home/.ssh/k8s-audit");
    let (stderr, inv) = nodes.import(&[
        "kubectl",
        &fixture,
        "--cluster",
        "prod",
        "--user",
        "audit",
        "--identity-file",
        key.to_str().unwrap(),
    ]);
    assert_eq!(
        hosts(&inv),
        [
            "cp-1 prod audit 22 [control-plane] []",
            "worker-1 prod audit 22 [worker] []",
            "gpu-1 prod audit 22 [worker] []"
        ]
    );
    for want in [
        "nodes.json:68 (items[2]): node gpu-1: label node-role.kubernetes.io/gpu: fleetaudit has no such role",
        "nodes.json:84 (items[3]): node virtual-kubelet has no InternalIP (Hostname virtual-kubelet): not imported",
    ] {
        assert_eq!(stderr.matches(want).count(), 1, "{want} not once in:\n{stderr}");
    }
    assert_eq!(nodes.scan(&[]), "cp-1|prod|audited|-\ngpu-1|prod|audited|-\nworker-1|prod|audited|-\n");

    // A missing --cluster, an existing --out without --force, and a source that is not a node list: exit 3.
    let out = nodes.path("inventory.toml");
    let (code, _, err) = nodes.run(&["inventory", "import", "kubectl", &fixture]);
    assert_eq!(code, Some(3), "{err}");
    let (code, _, err) =
        nodes.run(&["inventory", "import", "kubectl", &fixture, "--cluster", "p", "--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(3));
    assert!(err.contains("exists: choose another --out, or add --force"), "{err}");
    let (code, _, err) =
        nodes.run(&["inventory", "import", "kubectl", &format!("{FIXTURES}/hosts.yml"), "--cluster", "p"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("hosts.yml:1: not JSON"), "{err}");
    // A key file the source names that does not exist: written, but refused as not loading, naming the file.
    let (code, _, err) = nodes.run(&[
        "inventory",
        "import",
        "kubectl",
        &fixture,
        "--cluster",
        "p",
        "--identity-file",
        "/nonexistent/key",
        "--out",
        nodes.path("other.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(3));
    assert!(err.contains("does not load yet") && err.contains("missing key file /nonexistent/key"), "{err}");
}
