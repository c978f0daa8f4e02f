//! `fleetaudit demo`: a local fleet of simulated nodes, and the inventory, keys and known_hosts to scan it, so
//! the whole pipeline runs over real SSH on a machine with no cluster.
//!
//! Owns: which nodes the demo fleet holds. Must not touch: the scan itself (the demo scans with exactly the
//! code `fleetaudit scan` uses) or the files' format (the simulator's [`crate::sim::fleet`] writes them).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::sim::fleet::{self, Fleet, Member, ScanSettings};
use crate::sim::{self, Behavior, NodeSpec, SimError};

/// The demo fleet: (host name, cluster, profile); each node has its profile's roles.
const NODES: &[(&str, &str, &str)] = &[
    ("prod-cp-1", "prod", "kubeadm-hardened"),
    ("prod-cp-2", "prod", "kubeadm-default"),
    ("prod-worker-1", "prod", "worker"),
    ("prod-etcd-1", "prod", "etcd-only"),
    ("legacy-cp-1", "legacy", "hyperkube"),
    ("legacy-cp-2", "legacy", "systemd-hard-way"),
    ("kops-cp-1", "kops", "kops"),
    ("edge-1", "edge", "k3s"),
    ("appliance-1", "edge", "busybox"),
];

/// A host of the demo inventory that nothing answers on.
const UNREACHABLE: &str = "prod-cp-3";

/// The demo directory, ready to scan; the simulated nodes run while this lives.
pub type Demo = Fleet;

/// Starts the simulated nodes and writes `dir`/{id_ed25519, known_hosts, inventory.toml}.
pub async fn prepare(dir: &Path) -> Result<Demo, SimError> {
    let member = |name: &str, cluster: &str, roles: &[&str], behavior, table: &[u8], note: &str| Member {
        spec: NodeSpec { name: name.to_owned(), table: Arc::new(table.to_vec()), behavior, latency: Duration::ZERO },
        cluster: cluster.to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        note: note.to_owned(),
    };
    let mut members: Vec<Member> = NODES
        .iter()
        .filter_map(|(name, cluster, profile)| {
            let p = sim::find_profile(profile)?;
            Some(member(name, cluster, p.roles, Behavior::Normal, p.capture.as_bytes(), p.name))
        })
        .collect();
    members.push(member(UNREACHABLE, "prod", &["control-plane"], Behavior::Refused, b"", "nothing listens here"));
    let settings = ScanSettings {
        header: "# Written by `fleetaudit demo`: simulated nodes on 127.0.0.1 (new ports and host keys at each run).\n"
            .into(),
        concurrency: None,
        connect_timeout: Duration::from_secs(3),
        command_timeout: Duration::from_secs(10),
        sftp_command: Some(sim::SUDO_SFTP_COMMAND.to_owned()),
    };
    fleet::launch(dir, members, &settings).await
}
