//! `fleetaudit demo`: a local fleet of simulated nodes, and the inventory, keys and known_hosts to scan it, so
//! the whole pipeline runs over real SSH on a machine with no cluster.
//!
//! Owns: the demo directory's files and the simulated nodes' lifetime. Must not touch: the scan itself (the
//! demo scans with exactly the code `fleetaudit scan` uses).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::sim::{self, Behavior, NodeSpec, RunningNode};
use crate::ssh::known_hosts;

/// The demo fleet: (host name, cluster, roles, profile).
const NODES: &[(&str, &str, &[&str], &str)] = &[
    ("prod-cp-1", "prod", &["control-plane", "etcd", "worker"], "kubeadm-hardened"),
    ("prod-cp-2", "prod", &["control-plane", "etcd", "worker"], "kubeadm-default"),
    ("prod-worker-1", "prod", &["worker"], "worker"),
    ("prod-etcd-1", "prod", &["etcd"], "etcd-only"),
    ("legacy-cp-1", "legacy", &["control-plane", "etcd", "worker"], "hyperkube"),
    ("legacy-cp-2", "legacy", &["control-plane", "etcd"], "systemd-hard-way"),
    ("kops-cp-1", "kops", &["control-plane", "etcd"], "kops"),
    ("edge-1", "edge", &["control-plane", "worker"], "k3s"),
    ("appliance-1", "edge", &["control-plane", "etcd"], "busybox"),
];

/// A host of the demo inventory that nothing answers on.
const UNREACHABLE: &str = "prod-cp-3";

/// The demo directory, ready to scan; the simulated nodes run while this lives.
pub struct Demo {
    pub dir: PathBuf,
    pub inventory: PathBuf,
    pub nodes: Vec<RunningNode>,
}

/// Starts the simulated nodes and writes `dir`/{id_ed25519, known_hosts, inventory.toml}.
pub async fn prepare(dir: &Path) -> std::io::Result<Demo> {
    create_private_dir(dir)?;
    let dir = dir.canonicalize()?;
    let client = sim::generate_key("fleetaudit-demo")?;
    write_private(&dir.join("id_ed25519"), &sim::private_key_text(&client))?;
    let specs = NODES
        .iter()
        .map(|(name, _, _, profile)| NodeSpec {
            name: (*name).to_owned(),
            table: Arc::new(sim::profile(profile).unwrap_or_default().as_bytes().to_vec()),
            behavior: Behavior::Normal,
            latency: Duration::ZERO,
        })
        .collect();
    let nodes = sim::start(specs, vec![client.public_key().clone()]).await?;
    let closed = sim::closed_port().await?;

    let mut known = String::new();
    let mut inventory = String::from(
        "# Written by `fleetaudit demo`: simulated nodes on 127.0.0.1 (new ports and host keys at each run).\n\
         [defaults]\nuser = \"audit\"\nidentity_file = \"id_ed25519\"\nknown_hosts = \"known_hosts\"\n\
         database = \"fleetaudit.db\"\nreport_dir = \"report\"\nconnect_timeout = \"3s\"\ncommand_timeout = \"10s\"\n",
    );
    let mut clusters: Vec<&str> = NODES.iter().map(|n| n.1).collect();
    clusters.dedup();
    for c in clusters {
        let _ = write!(inventory, "\n[[clusters]]\nname = \"{c}\"\n");
    }
    for (node, (name, cluster, roles, profile)) in nodes.iter().zip(NODES) {
        known.push_str(&known_hosts::line_for("127.0.0.1", node.addr.port(), &node.host_key));
        known.push('\n');
        host_table(&mut inventory, name, cluster, roles, node.addr.port(), profile);
    }
    host_table(&mut inventory, UNREACHABLE, "prod", &["control-plane"], closed.port(), "nothing listens here");
    write_private(&dir.join("known_hosts"), &known)?;
    let inventory_path = dir.join("inventory.toml");
    write_private(&inventory_path, &inventory)?;
    Ok(Demo { dir, inventory: inventory_path, nodes })
}

fn host_table(out: &mut String, name: &str, cluster: &str, roles: &[&str], port: u16, note: &str) {
    let roles: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
    let _ = write!(
        out,
        "\n[[hosts]]  # {note}\nname = \"{name}\"\ncluster = \"{cluster}\"\naddress = \"127.0.0.1\"\nport = {port}\n\
         roles = [{}]\n",
        roles.join(", ")
    );
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Writes a file readable by its owner only: keys, and files naming them.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(text.as_bytes())
}
