//! The fleet simulator: simulated Kubernetes nodes as real SSH servers (russh) on 127.0.0.1, each serving a
//! realistic `ps -ef`. Used by `fleetaudit demo` and by tests and benchmarks, so scans go over real SSH without
//! any external host.
//!
//! Owns: generating node keys, listening on loopback ports, answering `ps -ef` per the node's profile and
//! behaviour. Must not touch: the scanner's code paths (it is the other end of the wire), rules, the database.
//! Listens on 127.0.0.1 only.

use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{self, Auth, Msg, Session};
use russh::{Channel, ChannelId};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The `ps -ef` captures the simulator serves, named by what they show.
pub const PROFILES: &[(&str, &str)] = &[
    ("kubeadm-hardened", include_str!("captures/kubeadm-hardened.txt")),
    ("kubeadm-default", include_str!("captures/kubeadm-default.txt")),
    ("hyperkube", include_str!("captures/hyperkube.txt")),
    ("kops", include_str!("captures/kops.txt")),
    ("systemd-hard-way", include_str!("captures/systemd-hard-way.txt")),
    ("k3s", include_str!("captures/k3s.txt")),
    ("worker", include_str!("captures/worker.txt")),
    ("etcd-only", include_str!("captures/etcd-only.txt")),
    ("busybox", include_str!("captures/busybox.txt")),
];

/// A profile's capture by name.
pub fn profile(name: &str) -> Option<&'static str> {
    PROFILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// How a simulated node answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Serves its table and exits 0.
    Normal,
    /// `ps` is missing: exit 127 with a shell's message.
    PsMissing,
}

/// One node to simulate.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub table: Arc<Vec<u8>>,
    pub behavior: Behavior,
    /// Delay before answering the command, as a real host's round trips would take.
    pub latency: Duration,
}

/// A node that is up.
pub struct RunningNode {
    pub name: String,
    pub addr: SocketAddr,
    pub host_key: PublicKey,
    task: JoinHandle<()>,
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fresh ed25519 key from the OS's random source.
pub fn generate_key(comment: &str) -> std::io::Result<PrivateKey> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    Ok(key)
}

/// An OpenSSH private key file's text.
pub fn private_key_text(key: &PrivateKey) -> String {
    key.to_openssh(LineEnding::LF).map(|s| s.to_string()).unwrap_or_default()
}

/// Starts `nodes` on 127.0.0.1 (ephemeral ports), accepting the `authorized` client keys for any user.
pub async fn start(nodes: Vec<NodeSpec>, authorized: Vec<PublicKey>) -> std::io::Result<Vec<RunningNode>> {
    let authorized: Arc<HashSet<Vec<u8>>> = Arc::new(authorized.iter().filter_map(|k| k.to_bytes().ok()).collect());
    let mut running = Vec::with_capacity(nodes.len());
    for spec in nodes {
        let key = generate_key(&spec.name)?;
        let host_key = key.public_key().clone();
        let config = Arc::new(server::Config {
            keys: vec![key],
            auth_rejection_time: Duration::from_millis(10),
            auth_rejection_time_initial: Some(Duration::ZERO),
            inactivity_timeout: Some(Duration::from_secs(60)),
            nodelay: true,
            ..Default::default()
        });
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let node = Node { spec: Arc::new(spec.clone()), authorized: authorized.clone() };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let (config, handler) = (config.clone(), node.clone());
                tokio::spawn(async move {
                    if let Ok(session) = server::run_stream(config, stream, handler).await {
                        let _ = session.await;
                    }
                });
            }
        });
        running.push(RunningNode { name: spec.name, addr, host_key, task });
    }
    Ok(running)
}

/// A loopback port with nothing listening: connections to it are refused.
pub async fn closed_port() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    listener.local_addr()
}

#[derive(Clone)]
struct Node {
    spec: Arc<NodeSpec>,
    authorized: Arc<HashSet<Vec<u8>>>,
}

impl server::Handler for Node {
    type Error = russh::Error;

    async fn auth_publickey(&mut self, _user: &str, key: server::VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let known = key.public_key.to_bytes().is_ok_and(|b| self.authorized.contains(&b));
        Ok(if known { Auth::Accept } else { Auth::reject() })
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let handle = session.handle();
        let spec = self.spec.clone();
        let is_ps = data == crate::ssh::REMOTE_COMMAND.as_bytes();
        tokio::spawn(async move {
            if !spec.latency.is_zero() {
                tokio::time::sleep(spec.latency).await;
            }
            let (out, err, status): (&[u8], &[u8], u32) = match (&spec.behavior, is_ps) {
                (Behavior::Normal, true) => (&spec.table, b"", 0),
                (Behavior::PsMissing, true) => (b"", b"sh: 1: ps: not found\n", 127),
                (_, false) => (b"", b"sh: 1: command not found\n", 127),
            };
            // Sent in 32 KiB pieces, as a real sshd's channel writes arrive.
            for chunk in out.chunks(32 << 10) {
                if handle.data(channel, bytes::Bytes::copy_from_slice(chunk)).await.is_err() {
                    return;
                }
            }
            if !err.is_empty() {
                let _ = handle.extended_data(channel, 1, bytes::Bytes::copy_from_slice(err)).await;
            }
            let _ = handle.exit_status_request(channel, status).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }
}
