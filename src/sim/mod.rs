//! The fleet simulator: simulated Kubernetes nodes as real SSH servers (russh) on 127.0.0.1, each serving a
//! realistic `ps -ef` and, over SFTP on the same connection, the files its processes name, or misbehaving in
//! one of the ways real hosts do ([`Behavior`]). Used by `fleetaudit demo`, `fleetaudit simulate`, tests and
//! benchmarks, so scans go over real SSH without any external host.
//!
//! Owns: node keys, one loopback listener per node, the SSH server side (russh) over a delay line that holds
//! back every flight of server bytes for the node's latency ([`wire`]), what each node answers ([`output`]),
//! each profile's file tree ([`tree`], data in `src/sim/files/`) and the read-only SFTP server over it
//! ([`sftp`]), and the directory a scanner needs to reach a fleet ([`fleet`]: inventory, known_hosts, client
//! key).
//! Must not touch: the scanner's code paths (it is the other end of the wire), rules, the database.
//! Listens on 127.0.0.1 only. Nothing here buffers a whole misbehaving output: floods are generated in chunks.

pub mod fleet;
mod output;
pub mod pki;
mod sftp;
pub use sftp::HOSTILE_LENGTH;
pub mod tree;
mod wire;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{self, Auth, Msg, Session};
use russh::{Channel, ChannelId};
use thiserror::Error;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use tree::FileTree;

/// A capture the simulator serves, the roles of the node it was taken on, and its files.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub name: &'static str,
    pub roles: &'static [&'static str],
    pub capture: &'static str,
    /// The manifest of the node's files, under `src/sim/files/`.
    pub manifest: &'static str,
}

impl Profile {
    /// The node's files (loaded once, then shared by every node of the profile).
    pub fn files(&self) -> Arc<FileTree> {
        static TREES: OnceLock<Vec<Arc<FileTree>>> = OnceLock::new();
        let trees = TREES.get_or_init(|| {
            PROFILES
                .iter()
                // The manifests are embedded data; `tree::tests` loads every one, so this cannot fail at run time.
                .map(|p| Arc::new(FileTree::load(p.manifest).unwrap_or_else(|e| panic!("profile {}: {e}", p.name))))
                .collect()
        });
        let i = PROFILES.iter().position(|p| p.name == self.name).unwrap_or(0);
        trees[i].clone()
    }
}

/// The files of a node serving `table`: those of the profile whose capture it is, byte for byte, else a base
/// system's (`/etc/passwd`, `/etc/group` and little else).
pub fn files_for_table(table: &[u8]) -> Arc<FileTree> {
    static MINIMAL: OnceLock<Arc<FileTree>> = OnceLock::new();
    match PROFILES.iter().find(|p| p.capture.len() == table.len() && p.capture.as_bytes() == table) {
        Some(p) => p.files(),
        None => MINIMAL.get_or_init(|| Arc::new(FileTree::minimal())).clone(),
    }
}

/// The command that starts a privileged, read-only SFTP server through sudo (OpenSSH's answer for an audit
/// login that may not read everything: `sftp -s "sudo -n /usr/lib/openssh/sftp-server -R"`); the simulator
/// serves its SFTP as root to exactly this `exec` request.
pub const SUDO_SFTP_COMMAND: &str = "sudo -n /usr/lib/openssh/sftp-server -R";

const CP_ETCD_WORKER: &[&str] = &["control-plane", "etcd", "worker"];
const CP_ETCD: &[&str] = &["control-plane", "etcd"];
const CP: &[&str] = &["control-plane"];

/// The `ps -ef` captures the simulator serves, named by what they show.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "kubeadm-hardened",
        roles: CP_ETCD_WORKER,
        capture: include_str!("../captures/kubeadm-hardened.txt"),
        manifest: "kubeadm-hardened.toml",
    },
    Profile {
        name: "kubeadm-default",
        roles: CP_ETCD_WORKER,
        capture: include_str!("../captures/kubeadm-default.txt"),
        manifest: "kubeadm-default.toml",
    },
    Profile {
        name: "hyperkube",
        roles: CP_ETCD_WORKER,
        capture: include_str!("../captures/hyperkube.txt"),
        manifest: "hyperkube.toml",
    },
    Profile { name: "kops", roles: CP_ETCD, capture: include_str!("../captures/kops.txt"), manifest: "kops.toml" },
    Profile {
        name: "systemd-hard-way",
        roles: CP_ETCD,
        capture: include_str!("../captures/systemd-hard-way.txt"),
        manifest: "systemd-hard-way.toml",
    },
    Profile {
        name: "k3s",
        roles: &["control-plane", "worker"],
        capture: include_str!("../captures/k3s.txt"),
        manifest: "k3s.toml",
    },
    Profile {
        name: "worker",
        roles: &["worker"],
        capture: include_str!("../captures/worker.txt"),
        manifest: "worker.toml",
    },
    Profile {
        name: "etcd-only",
        roles: &["etcd"],
        capture: include_str!("../captures/etcd-only.txt"),
        manifest: "etcd-only.toml",
    },
    // An API server appliance whose etcd runs elsewhere.
    Profile { name: "busybox", roles: CP, capture: include_str!("../captures/busybox.txt"), manifest: "busybox.toml" },
    // kubeadm's files with the permissions CIS 1.1.x and 4.1.x fail: world-readable kubeconfigs and keys, an
    // etcd data directory another user owns.
    Profile {
        name: "kubeadm-loose",
        roles: CP_ETCD_WORKER,
        capture: include_str!("../captures/kubeadm-loose.txt"),
        manifest: "kubeadm-loose.toml",
    },
    // RKE2 v1.33 under its CIS profile: the kubelet configured by a `--config-dir` drop-in, etcd by a file.
    Profile {
        name: "rke2",
        roles: CP_ETCD_WORKER,
        capture: include_str!("../captures/rke2.txt"),
        manifest: "rke2.toml",
    },
];

/// A profile by name.
pub fn find_profile(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// A profile's capture by name.
pub fn profile(name: &str) -> Option<&'static str> {
    find_profile(name).map(|p| p.capture)
}

/// How a simulated node answers: healthy, or one of the faults a scanner meets in a real fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Behavior {
    /// Serves its table and exits 0.
    Normal,
    /// Nothing listens on its port: connections are refused.
    Refused,
    /// Accepts TCP connections and never sends a byte (a hung sshd, a tarpit).
    Silent,
    /// Speaks SSH but rejects every key.
    AuthRefused,
    /// A healthy node the scanner's known_hosts does not list (see [`RunningNode::known_key`]).
    UnknownHostKey,
    /// A healthy node the scanner's known_hosts lists with another key (see [`RunningNode::known_key`]).
    ChangedHostKey,
    /// Sends part of its table, then closes the TCP connection without an exit status.
    DropMidOutput,
    /// Sends [`FLOOD_BYTES`] of plausible `ps` lines, generated on the fly.
    Flood,
    /// Sends its table one byte a second.
    Drip,
    /// `ps` is missing: exit 127 with a shell's message.
    PsMissing,
    /// A valid table where some lines that are no control-plane process carry invalid UTF-8.
    NonUtf8,
    /// Binary junk instead of a table, exit 0.
    Garbage,
    /// `/proc` mounted with hidepid: the table shows only the session's own processes (no PID 1).
    Hidepid,
    /// `ps` works but there is no SFTP: the `sftp` subsystem request is refused (no `Subsystem sftp` line in
    /// sshd_config) and [`SUDO_SFTP_COMMAND`] finds no sftp-server.
    SftpRefused,
    /// SFTP answers stats, but every file open and directory open is `PERMISSION_DENIED` (a mandatory access
    /// policy confining sftp-server), even for root.
    SftpDenied,
    /// The SFTP server greets as it should, then answers the first request with a packet whose length says
    /// 4 GiB ([`sftp::HOSTILE_LENGTH`]) and keeps the channel open: a client that believed it would wait or
    /// allocate for it.
    SftpHostile,
    /// The kubelet's config file is 2 MiB ([`tree::HUGE_FILE_BYTES`]): comment lines, the real settings at the
    /// end.
    HugeFile,
    /// The kubelet's config file is a "billion laughs" YAML: nine levels of nine aliases (9^9 strings).
    YamlBomb,
    /// The kubelet's serving certificate expires in a week ([`pki::EXPIRING_DAYS`]).
    CertExpiring,
    /// The kubelet's serving certificate expired two days ago ([`pki::EXPIRED_DAYS`]).
    CertExpired,
}

/// How much a [`Behavior::Flood`] node sends: far above any limit a scanner should accept.
pub const FLOOD_BYTES: u64 = 100 << 20;

impl Behavior {
    /// Every fault, in a stable order.
    pub const FAULTS: &'static [Behavior] = &[
        Behavior::Refused,
        Behavior::Silent,
        Behavior::AuthRefused,
        Behavior::UnknownHostKey,
        Behavior::ChangedHostKey,
        Behavior::DropMidOutput,
        Behavior::Flood,
        Behavior::Drip,
        Behavior::PsMissing,
        Behavior::NonUtf8,
        Behavior::Garbage,
        Behavior::Hidepid,
        Behavior::SftpRefused,
        Behavior::SftpDenied,
        Behavior::SftpHostile,
        Behavior::HugeFile,
        Behavior::YamlBomb,
        Behavior::CertExpiring,
        Behavior::CertExpired,
    ];

    /// The name used on the command line and in simulated host names.
    pub fn name(self) -> &'static str {
        match self {
            Behavior::Normal => "normal",
            Behavior::Refused => "refused",
            Behavior::Silent => "silent",
            Behavior::AuthRefused => "auth-refused",
            Behavior::UnknownHostKey => "unknown-host-key",
            Behavior::ChangedHostKey => "changed-host-key",
            Behavior::DropMidOutput => "drop-mid-output",
            Behavior::Flood => "flood",
            Behavior::Drip => "drip",
            Behavior::PsMissing => "ps-missing",
            Behavior::NonUtf8 => "non-utf8",
            Behavior::Garbage => "garbage",
            Behavior::Hidepid => "hidepid",
            Behavior::SftpRefused => "sftp-refused",
            Behavior::SftpDenied => "sftp-denied",
            Behavior::SftpHostile => "sftp-hostile",
            Behavior::HugeFile => "huge-file",
            Behavior::YamlBomb => "yaml-bomb",
            Behavior::CertExpiring => "cert-expiring",
            Behavior::CertExpired => "cert-expired",
        }
    }

    /// The behavior of a [`Behavior::name`].
    pub fn parse(name: &str) -> Option<Behavior> {
        std::iter::once(Behavior::Normal).chain(Behavior::FAULTS.iter().copied()).find(|b| b.name() == name)
    }

    /// What a correct scanner records for such a node: the error kind (`scan_hosts.error_kind`), or `None`
    /// when the node must be audited (the file faults too: the host is audited, the rules that need the files
    /// it could not read are `error`, see [`Behavior::file_effect`]).
    pub fn expected_kind(self) -> Option<&'static str> {
        match self {
            Behavior::Normal
            | Behavior::NonUtf8
            | Behavior::SftpRefused
            | Behavior::SftpDenied
            | Behavior::SftpHostile
            | Behavior::HugeFile
            | Behavior::YamlBomb
            | Behavior::CertExpiring
            | Behavior::CertExpired => None,
            Behavior::Refused => Some("unreachable"),
            Behavior::Silent | Behavior::Drip => Some("timeout"),
            Behavior::AuthRefused => Some("auth_failed"),
            Behavior::UnknownHostKey => Some("host_key_unknown"),
            Behavior::ChangedHostKey => Some("host_key_changed"),
            Behavior::DropMidOutput => Some("disconnected"),
            Behavior::Flood => Some("output_too_large"),
            Behavior::PsMissing => Some("ps_failed"),
            Behavior::Garbage => Some("unreadable_table"),
            Behavior::Hidepid => Some("incomplete_table"),
        }
    }

    /// For a fault that shows only once files are read, what a correct scanner makes of the node's files.
    pub fn file_effect(self) -> Option<&'static str> {
        match self {
            Behavior::SftpRefused => Some("SFTP unavailable: every rule that needs a file is error"),
            Behavior::SftpDenied => Some("every file permission denied: rules that read a file are error"),
            Behavior::SftpHostile => Some(
                "the SFTP server answers with a 4 GiB packet: refused at once, every rule that needs a file is error",
            ),
            Behavior::HugeFile => Some("the kubelet config exceeds the size limit: refused, its rules error"),
            Behavior::YamlBomb => Some("the kubelet config is a YAML bomb: refused quickly, its rules error"),
            Behavior::CertExpiring => {
                Some("the kubelet's serving certificate expires in 7 days: its cluster's expiry rule fails")
            }
            Behavior::CertExpired => {
                Some("the kubelet's serving certificate expired: its cluster's seed and expiry rules fail")
            }
            _ => None,
        }
    }

    /// Whether the fault replaces the kubelet's config file (a node showing it needs a profile with one).
    pub fn replaces_kubelet_config(self) -> bool {
        matches!(self, Behavior::HugeFile | Behavior::YamlBomb)
    }

    /// Whether the fault replaces the kubelet's serving certificate (a node showing it needs a profile with one).
    pub fn replaces_kubelet_certificate(self) -> bool {
        matches!(self, Behavior::CertExpiring | Behavior::CertExpired)
    }
}

/// One node to simulate. Its files are those of the profile whose capture `table` is ([`files_for_table`]);
/// [`start_with_files`] gives a node any tree.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub table: Arc<Vec<u8>>,
    pub behavior: Behavior,
    /// Added to every flight of bytes the node sends, so each round trip of the SSH exchange (version, key
    /// exchange, authentication, channel, command, output) takes this long, as on a distant host.
    pub latency: Duration,
}

/// Why the simulator could not start.
#[derive(Debug, Error)]
pub enum SimError {
    #[error(
        "simulating {nodes} nodes needs about {needed} open files, but the hard limit is {hard} (`ulimit -Hn`); \
         raise it (`ulimit -n {needed}` as root, or LimitNOFILE= in a systemd unit) or simulate fewer nodes"
    )]
    TooFewFiles { nodes: usize, needed: u64, hard: u64 },
    #[error("cannot read or raise the open-file limit: {0}")]
    Limit(std::io::Error),
    #[error("cannot generate a key: {0}")]
    Key(std::io::Error),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("cannot listen on 127.0.0.1 for node {node}: {source}")]
    Listen { node: String, source: std::io::Error },
}

/// A node that is up (or, for [`Behavior::Refused`], a port held so that nothing else listens on it).
pub struct RunningNode {
    pub name: String,
    pub addr: SocketAddr,
    pub behavior: Behavior,
    /// The key the node presents.
    pub host_key: PublicKey,
    /// The key the scanner's known_hosts should record for this node: its own key, none for
    /// [`Behavior::UnknownHostKey`], another key for [`Behavior::ChangedHostKey`].
    pub known_key: Option<PublicKey>,
    _guard: Guard,
}

enum Guard {
    Task(JoinHandle<()>),
    /// A socket bound to the port but not listening: connections are refused, and no other socket can take
    /// the port while the node exists (a closed port could be handed to the next listener).
    Port(#[allow(dead_code)] TcpSocket),
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Task(task) = self {
            task.abort();
        }
    }
}

impl RunningNode {
    /// The known_hosts line the scanner should have for this node, if any.
    pub fn known_hosts_line(&self) -> Option<String> {
        let key = self.known_key.as_ref()?;
        Some(crate::ssh::known_hosts::line_for(&self.addr.ip().to_string(), self.addr.port(), key))
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

/// File descriptors wanted beyond one listener per node: connections in flight, the runtime, files.
const SPARE_FILES: u64 = 2048;
/// The fewest spare descriptors a fleet can start with (a few connections at a time).
const MIN_SPARE_FILES: u64 = 32;

/// Raises the soft open-file limit to the hard limit when `nodes` listeners (plus connections in flight) need
/// more than the soft limit allows; fails with what to do when even the hard limit leaves too few.
pub fn ensure_file_limit(nodes: usize) -> Result<(), SimError> {
    let needed = nodes as u64 + SPARE_FILES;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes a plain struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(SimError::Limit(std::io::Error::last_os_error()));
    }
    if limit.rlim_cur >= needed {
        return Ok(());
    }
    if limit.rlim_max < nodes as u64 + MIN_SPARE_FILES {
        return Err(SimError::TooFewFiles { nodes, needed, hard: limit.rlim_max });
    }
    // An unlimited hard limit still cannot be the soft one (the kernel caps it at fs.nr_open): ask for what is needed.
    limit.rlim_cur = if limit.rlim_max == libc::RLIM_INFINITY { needed } else { limit.rlim_max };
    // SAFETY: setrlimit reads a plain struct we own; raising the soft limit up to the hard one is allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(SimError::Limit(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Server settings shared by every node with the same host key.
fn server_config(key: PrivateKey) -> Arc<server::Config> {
    Arc::new(server::Config {
        keys: vec![key],
        auth_rejection_time: Duration::from_millis(10),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(60)),
        nodelay: true,
        ..Default::default()
    })
}

/// Starts `nodes` on 127.0.0.1 (ephemeral ports), accepting the `authorized` client keys for any user, each
/// with its own host key and the files of its table's profile. Raises the open-file limit when the fleet
/// needs it.
pub async fn start(nodes: Vec<NodeSpec>, authorized: Vec<PublicKey>) -> Result<Vec<RunningNode>, SimError> {
    let nodes = nodes
        .into_iter()
        .map(|spec| {
            let files = files_for_table(&spec.table);
            (spec, files)
        })
        .collect();
    start_with_files(nodes, authorized).await
}

/// [`start`], each node serving the given file tree (with its behavior's content fault applied).
pub async fn start_with_files(
    nodes: Vec<(NodeSpec, Arc<FileTree>)>,
    authorized: Vec<PublicKey>,
) -> Result<Vec<RunningNode>, SimError> {
    ensure_file_limit(nodes.len())?;
    let authorized: Arc<HashSet<Vec<u8>>> = Arc::new(authorized.iter().filter_map(|k| k.to_bytes().ok()).collect());
    let mut running = Vec::with_capacity(nodes.len());
    let mut ports = Ports::new()?;
    for (spec, files) in nodes {
        let key = generate_key(&spec.name).map_err(SimError::Key)?;
        let host_key = key.public_key().clone();
        let known_key = match spec.behavior {
            Behavior::UnknownHostKey => None,
            Behavior::ChangedHostKey => Some(generate_key("another key").map_err(SimError::Key)?.public_key().clone()),
            _ => Some(host_key.clone()),
        };
        let listen_error = |source| SimError::Listen { node: spec.name.clone(), source };
        let (addr, guard) = if spec.behavior == Behavior::Refused {
            let socket = ports.bind(false).map_err(listen_error)?;
            // Bound, never listening: connections are refused.
            (socket.local_addr().map_err(listen_error)?, Guard::Port(socket))
        } else {
            let listener = ports.listener().map_err(listen_error)?;
            let addr = listener.local_addr().map_err(listen_error)?;
            let node = Node {
                files: files.for_behavior(spec.behavior),
                spec: Arc::new(spec.clone()),
                authorized: authorized.clone(),
                user: String::new(),
                cut: Arc::new(Notify::new()),
                channels: HashMap::new(),
            };
            (addr, Guard::Task(tokio::spawn(accept_loop(listener, server_config(key), node))))
        };
        running.push(RunningNode {
            name: spec.name,
            addr,
            behavior: spec.behavior,
            host_key,
            known_key,
            _guard: guard,
        });
    }
    Ok(running)
}

/// Where nodes listen: ports taken in turn from a random point of [`Ports::RANGE`]. Asking the kernel for any
/// free port instead (port 0) searched every bound port on each bind: 10,000 nodes took 4.9 s, 90% of it in
/// `bind`. The range lies below Linux's ephemeral ports, so the scanner's own connections keep all of theirs.
struct Ports {
    next: u16,
    tried: usize,
}

impl Ports {
    const RANGE: std::ops::Range<u16> = 10_000..32_768;

    fn new() -> Result<Ports, SimError> {
        let mut seed = [0u8; 2];
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed)).map_err(SimError::Key)?;
        let span = Self::RANGE.end - Self::RANGE.start;
        Ok(Ports { next: Self::RANGE.start + u16::from_le_bytes(seed) % span, tried: 0 })
    }

    /// A listener on the next free port of the range.
    fn listener(&mut self) -> std::io::Result<TcpListener> {
        loop {
            match self.bind(true)?.listen(1024) {
                // Another process bound the port too (both allowing re-binding) and listened first.
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                other => return other,
            }
        }
    }

    /// A socket bound to the next free port of the range (or, once the range is used up, to any port). A
    /// listener allows re-binding over connections in TIME_WAIT; a refused node's socket does not, so that no
    /// listener can share its port.
    fn bind(&mut self, listener: bool) -> std::io::Result<TcpSocket> {
        let span = usize::from(Self::RANGE.end - Self::RANGE.start);
        loop {
            let port = if self.tried < span {
                let p = self.next;
                self.next = if p + 1 >= Self::RANGE.end { Self::RANGE.start } else { p + 1 };
                self.tried += 1;
                p
            } else {
                0
            };
            let socket = TcpSocket::new_v4()?;
            socket.set_reuseaddr(listener)?;
            match socket.bind(SocketAddr::from(([127, 0, 0, 1], port))) {
                Ok(()) => return Ok(socket),
                Err(e) if port != 0 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A loopback port with nothing listening: connections to it are refused (until something else binds it).
pub async fn closed_port() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    listener.local_addr()
}

/// How long a listener waits after a failed accept (out of file descriptors, most likely) before trying again,
/// instead of spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

async fn accept_loop(listener: TcpListener, config: Arc<server::Config>, node: Node) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(node = %node.spec.name, "accept failed, backing off: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = node.connection();
        tokio::spawn(serve(stream, config.clone(), handler));
    }
}

/// One connection: a silent node holds it without a word; any other runs an SSH session over the delay line.
async fn serve(stream: TcpStream, config: Arc<server::Config>, node: Node) {
    if node.spec.behavior == Behavior::Silent {
        wire::hold(stream).await;
        return;
    }
    let (session_end, wire_end) = tokio::io::duplex(wire::PIPE_BYTES);
    let (latency, cut) = (node.spec.latency, node.cut.clone());
    let session = async move {
        if let Ok(session) = server::run_stream(config, session_end, node).await {
            let _ = session.await;
        }
    };
    tokio::join!(session, wire::pump(stream, wire_end, latency, cut));
}

/// The SSH server side of one connection (and, in the accept loop, the template each connection starts from).
struct Node {
    spec: Arc<NodeSpec>,
    /// The files it serves over SFTP.
    files: Arc<FileTree>,
    authorized: Arc<HashSet<Vec<u8>>>,
    /// The user who logged in, for the processes a hidepid table shows and the SFTP login's identity.
    user: String,
    /// Tells this connection's delay line to drop the TCP connection after the bytes already sent.
    cut: Arc<Notify>,
    /// Session channels opened and not yet given a request: an `exec` or `subsystem` request takes its
    /// channel out (a channel kept but never read would stall the session once its queue filled).
    channels: HashMap<ChannelId, Channel<Msg>>,
}

impl Node {
    /// A fresh handler for a new connection.
    fn connection(&self) -> Node {
        Node {
            spec: self.spec.clone(),
            files: self.files.clone(),
            authorized: self.authorized.clone(),
            user: String::new(),
            cut: Arc::new(Notify::new()),
            channels: HashMap::new(),
        }
    }

    /// Runs the SFTP server on `channel` for `who`.
    async fn serve_sftp(&self, channel: Channel<Msg>, who: tree::Identity) {
        if self.spec.behavior == Behavior::SftpHostile {
            tokio::spawn(sftp::hostile(channel));
            return;
        }
        let home = if who.uid == 0 { "/root".to_owned() } else { format!("/home/{}", self.user) };
        let opens = if self.spec.behavior == Behavior::SftpDenied { sftp::Opens::Denied } else { sftp::Opens::Checked };
        let session = sftp::Session::new(self.files.clone(), who, home, opens);
        russh_sftp::server::run(channel.into_stream(), session).await;
    }
}

impl server::Handler for Node {
    type Error = russh::Error;

    async fn auth_publickey(&mut self, user: &str, key: server::VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let known = key.public_key.to_bytes().is_ok_and(|b| self.authorized.contains(&b));
        if known && self.spec.behavior != Behavior::AuthRefused {
            self.user = user.to_owned();
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let opened = self.channels.remove(&channel);
        session.channel_success(channel)?;
        let command = if data == crate::ssh::REMOTE_COMMAND.as_bytes() {
            output::Command::Ps
        } else if data == SUDO_SFTP_COMMAND.as_bytes() {
            match opened {
                // sudo runs sftp-server as root: a privileged, still read-only, SFTP session.
                Some(channel) if self.spec.behavior != Behavior::SftpRefused => {
                    self.serve_sftp(channel, tree::Identity::root()).await;
                    return Ok(());
                }
                _ => output::Command::NoSftpServer,
            }
        } else {
            output::Command::Unknown
        };
        let answer = output::Answer {
            handle: session.handle(),
            channel,
            spec: self.spec.clone(),
            user: self.user.clone(),
            cut: self.cut.clone(),
            command,
        };
        tokio::spawn(answer.send());
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.remove(&channel) {
            Some(opened) if name == "sftp" && self.spec.behavior != Behavior::SftpRefused => {
                session.channel_success(channel)?;
                let who = tree::Identity::login(&self.files, &self.user);
                self.serve_sftp(opened, who).await;
            }
            // As sshd without a `Subsystem sftp` line: "subsystem request for sftp by user audit failed,
            // subsystem not found".
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_beyond_the_hard_file_limit_is_refused_with_what_to_do() {
        ensure_file_limit(0).unwrap();
        match ensure_file_limit(50_000_000) {
            Err(e @ SimError::TooFewFiles { .. }) => assert!(e.to_string().contains("ulimit -n"), "{e}"),
            // An unlimited hard limit: the kernel refuses a soft limit that high.
            Err(SimError::Limit(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}
