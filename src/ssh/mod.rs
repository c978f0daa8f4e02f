//! The SSH transport: one russh session per host, strict host keys, key and agent authentication, jump hosts,
//! one fixed remote command, and its output captured within a size cap and time limits.
//!
//! Owns: TCP connect, the SSH handshake, host key verification against OpenSSH known_hosts (and fleetaudit's
//! own accepted-keys file under `accept-new`), authentication (key files and ssh-agent), jump hosts (one SSH
//! connection per bastion per scan, shared by every host behind it, each host's session tunnelled through a
//! `direct-tcpip` channel as OpenSSH's `ProxyJump` does), running [`REMOTE_COMMAND`], and, in a
//! [`HostSession`], reading the files the engine asks for over SFTP on the same connection ([`sftp`]).
//! Must not touch: rules, verdicts, the database. It returns bytes and file answers; later stages read them.
//! Nothing a host sends is ever sent back as a command: the remote command is a constant, and the only other
//! command, `sftp_command`, is operator text from the inventory.

pub mod certs;
mod jump;
pub mod known_hosts;
pub mod sftp;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{Certificate, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};
use tokio::time::timeout;

use self::certs::{CertError, HostCertRefusal, HostCertificate};
use self::known_hosts::{KnownHosts, Recorded, Verdict};

/// The one command fleetaudit runs on a host. A constant: nothing from the inventory reaches a remote shell.
pub const REMOTE_COMMAND: &str = "ps -ef";

/// Largest `ps` output accepted: a 5,000-process node prints ~2 MB, so 16 MiB is generous, and a host that
/// sends more is refused instead of filling memory.
pub const MAX_OUTPUT: usize = 16 << 20;

/// Output a host may buffer on its own: a 5,000-process table is ~0.7 MB. Beyond it, a host draws on the
/// scan's shared pool ([`SHARED_OUTPUT`]), so many hosts flooding at once cannot each hold [`MAX_OUTPUT`]
/// (512 of them would be 8 GiB): a scan buffers at most concurrency × 1 MiB + 256 MiB.
pub const FREE_OUTPUT: usize = 1 << 20;

/// The pool every host of a scan draws from for output beyond [`FREE_OUTPUT`], never waited for: a host that
/// finds it spent is refused (`output_too_large`) rather than stalling the scan.
pub const SHARED_OUTPUT: usize = 256 << 20;

/// How much of the remote command's stderr is kept for the error message.
const MAX_STDERR: usize = 4 << 10;

pub use self::sftp::FileStats;
pub use crate::inventory::{FileAccess, HostKeyPolicy, Jump};

/// One host to reach.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub name: &'a str,
    pub address: &'a str,
    pub port: u16,
    pub user: &'a str,
    /// Key files to offer; empty means ssh-agent and the default `~/.ssh/id_*` files.
    pub identity_files: &'a [PathBuf],
    /// User certificates to offer (besides a `KEY-cert.pub` beside each key file).
    pub certificate_files: &'a [PathBuf],
    /// known_hosts files holding this host's key; empty means the transport's (`TransportConfig::known_hosts`).
    pub known_hosts: &'a [PathBuf],
    /// The jump hosts the host is reached through, first hop first (`ssh -J a,b`); the host itself is then never
    /// contacted directly. Empty: connected to directly.
    pub jump: &'a [Jump],
    /// Covers everything up to a logged-in session: the jump host's connection (when this host is the first
    /// to need it), the tunnel, the host's handshake and authentication.
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

impl<'a> Target<'a> {
    /// How to reach an inventory host.
    pub fn of(host: &'a crate::inventory::Host) -> Target<'a> {
        Target {
            name: &host.name,
            address: &host.address,
            port: host.port,
            user: &host.user,
            identity_files: &host.identity_files,
            certificate_files: &host.certificate_files,
            known_hosts: &host.known_hosts,
            jump: &host.jump,
            connect_timeout: host.connect_timeout,
            command_timeout: host.command_timeout,
        }
    }
}

/// What a host sent back.
#[derive(Debug, Clone)]
pub struct Capture {
    pub stdout: Vec<u8>,
    pub fingerprint: String,
    /// The host certificate the host proved its key with, when a `@cert-authority` line vouched for it.
    pub certificate: Option<HostCertificate>,
}

/// Who a host proved to be: its host key and, when trusted through a CA, its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// `SHA256:...` of the host key (the key inside the certificate, for a certificate).
    pub fingerprint: String,
    pub certificate: Option<HostCertificate>,
}

/// Why a host could not be audited. [`SshError::kind`] is the stable name stored in the database.
/// Clone: one jump host's failure is every host's behind it.
#[derive(Debug, Clone, Error)]
pub enum SshError {
    #[error("cannot resolve {address}: {reason}; check the address in the inventory")]
    Resolve { address: String, reason: String },
    #[error("cannot connect to {address}:{port}: {reason}; is sshd running and the port open?")]
    Unreachable { address: String, port: u16, reason: String },
    #[error("timed out after {after:?} {stage}; raise connect_timeout/command_timeout or check the host")]
    Timeout { stage: &'static str, after: Duration },
    #[error(
        "host key unknown: {address}:{port} presented {fingerprint}, which no known_hosts file lists; after \
         checking the fingerprint out of band, trust it with `ssh-keyscan -p {port} {address} >> ~/.ssh/known_hosts` \
         (or add this line to a known_hosts file: {line}), or set host_key_policy = \"accept-new\""
    )]
    HostKeyUnknown { address: String, port: u16, fingerprint: String, line: String },
    #[error(
        "HOST KEY CHANGED for {address}:{port}: it presented {fingerprint}, but {recorded} records another key. \
         This may be a man-in-the-middle attack; the host was not audited. If the host was really re-keyed, \
         remove the old line (`ssh-keygen -R '{name}'`) and trust the new key after checking it"
    )]
    HostKeyChanged { address: String, port: u16, name: String, fingerprint: String, recorded: String },
    #[error("host key {fingerprint} of {address}:{port} is marked @revoked at {recorded}; the host was not audited")]
    HostKeyRevoked { address: String, port: u16, fingerprint: String, recorded: String },
    #[error("authentication as {user} failed; tried {tried}. Check the user, identity_file and authorized_keys")]
    AuthFailed { user: String, tried: String },
    #[error("cannot use key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the host sent more than {limit} bytes for `{command}`; refusing it rather than buffering it", command = REMOTE_COMMAND)]
    OutputTooLarge { limit: usize },
    #[error(
        "the host sent more than {free} bytes for `{command}` while the scan's {shared}-byte pool for large outputs \
         was taken by other hosts' large outputs; refused rather than buffered. If its table really is that large, \
         audit it on its own (`fleetaudit scan --host NAME`)",
        command = REMOTE_COMMAND
    )]
    OutputPoolSpent { free: usize, shared: usize },
    #[error("`{command}` exited with status {status}: {stderr}", command = REMOTE_COMMAND)]
    CommandFailed { status: u32, stderr: String },
    #[error("the connection closed before `{command}` finished ({reason})", command = REMOTE_COMMAND)]
    Disconnected { reason: String },
    #[error("SSH protocol error: {0}")]
    Protocol(String),
    #[error("cannot read known_hosts: {0}")]
    KnownHosts(String),
    /// The bastion could not be reached, its key was not trusted, or it refused the login: `cause` says which.
    #[error("jump host {jump}: {cause} [{kind}]; the host behind it was not audited (nor contacted directly)", kind = cause.kind())]
    JumpFailed { jump: String, cause: Box<SshError> },
    #[error(
        "jump host {jump} refused to open a tunnel to {address}:{port} ({reason}); allow it in the bastion's \
         sshd_config (AllowTcpForwarding, PermitOpen) or fix the host's address"
    )]
    JumpRefused { jump: String, address: String, port: u16, reason: String },
    /// A host certificate refused, or a user certificate out of its validity window: each its own kind.
    #[error(transparent)]
    Cert(#[from] CertError),
}

impl SshError {
    /// The error kind stored with a host's outcome; stable, documented in the README.
    pub fn kind(&self) -> &'static str {
        match self {
            SshError::Resolve { .. } | SshError::Unreachable { .. } => "unreachable",
            SshError::Timeout { .. } => "timeout",
            SshError::HostKeyUnknown { .. } => "host_key_unknown",
            SshError::HostKeyChanged { .. } => "host_key_changed",
            SshError::HostKeyRevoked { .. } => "host_key_revoked",
            SshError::AuthFailed { .. } | SshError::Key { .. } => "auth_failed",
            SshError::OutputTooLarge { .. } | SshError::OutputPoolSpent { .. } => "output_too_large",
            SshError::CommandFailed { .. } => "ps_failed",
            SshError::Disconnected { .. } => "disconnected",
            SshError::Protocol(_) | SshError::KnownHosts(_) => "ssh_error",
            // One kind for every bastion problem: the fix is on the bastion (or its known_hosts line), not on the
            // hosts behind it, and a query for `host_key_changed` should not list fifty nodes that were never
            // contacted. The message carries the bastion's own kind.
            SshError::JumpFailed { .. } | SshError::JumpRefused { .. } => "jump_failed",
            // host_cert_principal, host_cert_expired, host_cert_unknown_ca, host_ca_revoked, host_cert_invalid,
            // user_cert_expired: see `certs::CertError::kind`.
            SshError::Cert(e) => e.kind(),
        }
    }
}

/// Settings shared by every connection of a scan.
pub struct TransportConfig {
    /// The known_hosts files of a host that names none of its own.
    pub known_hosts: Vec<PathBuf>,
    pub policy: HostKeyPolicy,
    /// fleetaudit's own record of keys accepted under `accept-new`.
    pub accepted_hosts: PathBuf,
    /// Keys other scanners of a shared history accepted on first use (known_hosts lines, from the store):
    /// trusted as if listed in `accepted_hosts`.
    pub shared_accepted: Vec<String>,
}

/// The SSH client of one scan: known hosts parsed and keys loaded once, agent identities listed once, jump host
/// connections opened once, all shared by every host.
pub struct Transport {
    config: Arc<client::Config>,
    /// Parsed known_hosts, per list of files (hosts may name their own through ssh_config); the empty list is
    /// the default one.
    known: Mutex<HashMap<Vec<PathBuf>, Arc<KnownHosts>>>,
    default_known_hosts: Vec<PathBuf>,
    policy: HostKeyPolicy,
    accepted: Arc<Accepted>,
    keys: KeyCache,
    agent: OnceCell<Result<Vec<AgentIdentity>, String>>,
    bastions: Mutex<HashMap<BastionKey, Bastion>>,
    /// The shared output pool ([`SHARED_OUTPUT`]), one permit a KiB, and its size in bytes.
    output_pool: (Semaphore, usize),
}

/// One jump host connection: connected by the first host that needs it, awaited by the others. A failure is
/// kept for the rest of the scan, so fifty hosts behind a dead bastion cost one connection attempt, not fifty.
type Bastion = Arc<OnceCell<Result<Arc<Handle<Checker>>, SshError>>>;

/// Hosts share a bastion connection when they reach it the same way, through the same hops before it: the chain
/// up to and including that bastion.
type BastionKey = Vec<jump::HopKey>;

/// One SSH server to log in to: a host, or a bastion in front of it.
struct Hop<'a> {
    address: &'a str,
    port: u16,
    user: &'a str,
    identity_files: &'a [PathBuf],
    certificate_files: &'a [PathBuf],
    known_hosts: &'a [PathBuf],
}

impl Transport {
    /// The transport an inventory calls for. Reads every known_hosts file its hosts and jump hosts name, so an
    /// unreadable one stops the scan before it starts.
    pub fn for_inventory(inventory: &crate::inventory::Inventory) -> std::io::Result<Transport> {
        Transport::for_inventory_sharing(inventory, Vec::new())
    }

    /// [`Transport::for_inventory`], also trusting `shared_accepted`: the keys the scanners of a shared history
    /// accepted on first use (known_hosts lines).
    pub fn for_inventory_sharing(
        inventory: &crate::inventory::Inventory,
        shared_accepted: Vec<String>,
    ) -> std::io::Result<Transport> {
        let settings = &inventory.settings;
        let t = Transport::new(TransportConfig {
            known_hosts: settings.known_hosts.clone(),
            policy: settings.host_key_policy,
            accepted_hosts: settings.accepted_hosts.clone(),
            shared_accepted,
        })?;
        for h in &inventory.hosts {
            t.load_known(&h.known_hosts)?;
            for j in &h.jump {
                t.load_known(&j.known_hosts)?;
            }
        }
        Ok(t)
    }

    pub fn new(cfg: TransportConfig) -> std::io::Result<Transport> {
        let preferred = russh::Preferred {
            // Ask for host certificates first, as `ssh` does: a host with one proves its key through a CA that
            // an `@cert-authority` line trusts, and one whose CA nobody trusts falls back to its plain key.
            host_key_certificates: russh::Preferred::DEFAULT.key.clone(),
            ..russh::Preferred::DEFAULT
        };
        let config = client::Config {
            preferred,
            // A scan is one command per connection; nothing needs keep-alives.
            inactivity_timeout: None,
            // Without TCP_NODELAY each connection lost ~43 ms to Nagle's algorithm on loopback.
            nodelay: true,
            ..Default::default()
        };
        let t = Transport {
            config: Arc::new(config),
            known: Mutex::new(HashMap::new()),
            default_known_hosts: cfg.known_hosts,
            policy: cfg.policy,
            accepted: Arc::new(Accepted {
                path: cfg.accepted_hosts,
                seen: Mutex::new(HashMap::new()),
                fresh: Mutex::new(Vec::new()),
                shared: cfg.shared_accepted.join("\n"),
            }),
            keys: KeyCache::default(),
            agent: OnceCell::new(),
            bastions: Mutex::new(HashMap::new()),
            output_pool: (Semaphore::new(SHARED_OUTPUT >> 10), SHARED_OUTPUT),
        };
        t.load_known(&[])?;
        Ok(t)
    }

    /// The keys accepted on first use since the last call, as (host, known_hosts line), for the store to share
    /// with the other scanners of a shared history.
    pub fn take_accepted(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.accepted.fresh.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Sets the size of the scan's shared pool for outputs over [`FREE_OUTPUT`] (default [`SHARED_OUTPUT`]).
    pub fn with_output_pool(mut self, bytes: usize) -> Transport {
        self.output_pool = (Semaphore::new(bytes >> 10), bytes);
        self
    }

    /// The parsed known_hosts files of a list (empty: the default list), read once per scan.
    fn load_known(&self, files: &[PathBuf]) -> std::io::Result<Arc<KnownHosts>> {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = known.get(files) {
            return Ok(k.clone());
        }
        let mut all = if files.is_empty() { self.default_known_hosts.clone() } else { files.to_vec() };
        all.push(self.accepted.path.clone());
        let mut parsed = KnownHosts::load(&all)?;
        if !self.accepted.shared.is_empty() {
            parsed.add(Path::new("(the history's accepted_host_keys)"), &self.accepted.shared);
        }
        let parsed = Arc::new(parsed);
        known.insert(files.to_vec(), parsed.clone());
        Ok(parsed)
    }

    /// Connects, checks the host key, authenticates and runs [`REMOTE_COMMAND`].
    #[tracing::instrument(level = "debug", skip_all, fields(host = target.name), err(level = "debug"))]
    pub async fn capture(&self, target: &Target<'_>) -> Result<Capture, SshError> {
        let (handle, HostIdentity { fingerprint, certificate }) = self.connect(target).await?;
        let result = timeout(target.command_timeout, run(&handle, &self.output_pool)).await;
        // A polite goodbye, but never let a slow host hold the scan.
        let _ = timeout(Duration::from_millis(200), handle.disconnect(Disconnect::ByApplication, "", "en")).await;
        match result {
            Ok(r) => r.map(|stdout| Capture { stdout, fingerprint, certificate }),
            Err(_) => Err(SshError::Timeout { stage: "waiting for `ps -ef` output", after: target.command_timeout }),
        }
    }

    /// Connects, checks the host key and authenticates: a session to run [`HostSession::ps`] and read files
    /// in ([`HostSession::fetch`]), with `files` saying how (`sftp_command`) and how much.
    #[tracing::instrument(level = "debug", skip_all, fields(host = target.name), err(level = "debug"))]
    pub async fn open(&self, target: &Target<'_>, files: &FileAccess) -> Result<HostSession<'_>, SshError> {
        let (handle, identity) = self.connect(target).await?;
        Ok(HostSession {
            transport: self,
            handle,
            identity,
            user: target.user.to_owned(),
            command_timeout: target.command_timeout,
            files: sftp::Files::new(files, &self.output_pool),
        })
    }

    /// Connects, checks the host key and authenticates, without running anything (`fleetaudit check`).
    pub async fn probe(&self, target: &Target<'_>) -> Result<HostIdentity, SshError> {
        let (handle, identity) = self.connect(target).await?;
        let _ = timeout(Duration::from_millis(200), handle.disconnect(Disconnect::ByApplication, "", "en")).await;
        Ok(identity)
    }

    /// A logged-in session with the host: over TCP, or through its jump hosts' tunnels.
    async fn connect(&self, t: &Target<'_>) -> Result<(Handle<Checker>, HostIdentity), SshError> {
        let started = Instant::now();
        let limit = t.connect_timeout;
        let hop = Hop {
            address: t.address,
            port: t.port,
            user: t.user,
            identity_files: t.identity_files,
            certificate_files: t.certificate_files,
            known_hosts: t.known_hosts,
        };
        // An expired user certificate is refused before anything is sent anywhere.
        self.check_certificates(&hop)?;
        if t.jump.is_empty() {
            let stream = tcp(&hop, limit).await?;
            return self.login(stream, &hop, started, limit).await;
        }
        // Each bastion's connection runs under its own limit (connect_timeout, as for any host), so a dead
        // bastion is recorded as the bastion's failure, and kept for the hosts behind it, rather than as this
        // host's timeout: the second of slack lets that limit fire first.
        let hops = u32::try_from(t.jump.len()).unwrap_or(u32::MAX);
        let stream = match timeout(limit * hops + Duration::from_secs(1), self.tunnel(t.jump, t, limit)).await {
            Err(_) => {
                return Err(SshError::Timeout { stage: "reaching the host through its jump hosts", after: limit });
            }
            Ok(r) => r?,
        };
        self.login(stream, &hop, started, limit).await
    }

    /// The SSH handshake over `stream`, the host key decision and authentication, within what is left of `limit`.
    async fn login<S>(
        &self,
        stream: S,
        hop: &Hop<'_>,
        started: Instant,
        limit: Duration,
    ) -> Result<(Handle<Checker>, HostIdentity), SshError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let known = self.load_known(hop.known_hosts).map_err(|e| SshError::KnownHosts(e.to_string()))?;
        let decision = Arc::new(Mutex::new(None));
        let checker = Checker {
            known,
            accepted: self.accepted.clone(),
            policy: self.policy,
            address: hop.address.to_owned(),
            port: hop.port,
            decision: decision.clone(),
        };
        let remaining = limit.saturating_sub(started.elapsed());
        let handshake = timeout(remaining, client::connect_stream(self.config.clone(), stream, checker)).await;
        let taken = |d: &Arc<Mutex<Option<KeyDecision>>>| d.lock().map(|mut g| g.take()).unwrap_or(None);
        let mut handle = match handshake {
            Err(_) => return Err(SshError::Timeout { stage: "waiting for the SSH handshake", after: limit }),
            Ok(Err(e)) => {
                return Err(match taken(&decision) {
                    Some(KeyDecision::Refused(err)) => err,
                    _ => SshError::Protocol(e.to_string()),
                });
            }
            Ok(Ok(h)) => h,
        };
        let identity = match taken(&decision) {
            Some(KeyDecision::Trusted(id)) => id,
            Some(KeyDecision::Refused(err)) => return Err(err),
            None => return Err(SshError::Protocol("the server's host key was never checked".into())),
        };
        let remaining = limit.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
        match timeout(remaining, self.authenticate(&mut handle, hop)).await {
            Err(_) => Err(SshError::Timeout { stage: "authenticating", after: limit }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Ok((handle, identity)),
        }
    }

    /// The agent's keys and certificates, listed once per scan: a scan of thousands of hosts asks the agent
    /// once, not per host.
    async fn agent_identities(&self) -> &Result<Vec<AgentIdentity>, String> {
        self.agent
            .get_or_init(|| async {
                let mut agent = AgentClient::connect_env().await.map_err(|e| e.to_string())?;
                agent.request_identities().await.map_err(|e| e.to_string())
            })
            .await
    }

    /// The user certificates a hop logs in with: its `certificate_files`, then a `KEY-cert.pub` beside each key
    /// file (as `ssh` looks for one), each read once per scan.
    fn certificates(&self, t: &Hop<'_>) -> Vec<(PathBuf, Result<Arc<Certificate>, String>)> {
        let keys: Vec<PathBuf> =
            if t.identity_files.is_empty() { default_identity_files() } else { t.identity_files.to_vec() };
        let beside = keys.iter().map(|k| {
            let mut p = k.clone().into_os_string();
            p.push("-cert.pub");
            PathBuf::from(p)
        });
        let mut files: Vec<PathBuf> = t.certificate_files.to_vec();
        files.extend(beside.filter(|p| p.is_file()));
        files.dedup();
        files.into_iter().map(|p| (p.clone(), self.keys.certificate(&p))).collect()
    }

    /// Refuses a hop whose user certificate is unreadable or outside its validity window, before connecting:
    /// the server would only say "permission denied".
    fn check_certificates(&self, t: &Hop<'_>) -> Result<(), SshError> {
        let now = certs::now();
        for (path, cert) in self.certificates(t) {
            match cert {
                Err(reason) => return Err(SshError::Key { path, reason }),
                Ok(cert) => certs::check_user(&cert, &path, now)?,
            }
        }
        Ok(())
    }

    async fn authenticate(&self, handle: &mut Handle<Checker>, t: &Hop<'_>) -> Result<(), SshError> {
        let mut tried = Vec::new();
        let explicit = !t.identity_files.is_empty();
        let files: Vec<PathBuf> = if explicit { t.identity_files.to_vec() } else { default_identity_files() };
        let rsa_hash = handle.best_supported_rsa_hash().await.map_err(|e| SshError::Protocol(e.to_string()))?.flatten();
        let mut key_errors = Vec::new();
        // Public halves of key files that cannot be used directly (encrypted): the agent's copy is offered first.
        let mut wanted = Vec::new();
        // Certificates, already checked for validity (`check_certificates`); unreadable ones refused there.
        let certificates: Vec<(PathBuf, Arc<Certificate>)> =
            self.certificates(t).into_iter().filter_map(|(p, c)| c.ok().map(|c| (p, c))).collect();
        for path in &files {
            let key = match self.keys.get(path) {
                Ok(k) => k,
                Err(unusable) => {
                    wanted.extend(unusable.public.clone());
                    key_errors.push(SshError::Key { path: path.clone(), reason: unusable.reason.clone() });
                    continue;
                }
            };
            // The key's certificates first, as `ssh` offers them: a server trusting the CA may list no key.
            for (cert_path, cert) in certificates.iter().filter(|(_, c)| c.public_key() == key.public_key().key_data())
            {
                tried.push(format!("{} with certificate {}", path.display(), cert_path.display()));
                let auth = handle
                    .authenticate_openssh_cert(t.user, key.clone(), (**cert).clone())
                    .await
                    .map_err(|e| SshError::Protocol(e.to_string()))?;
                if auth.success() {
                    return Ok(());
                }
            }
            tried.push(path.display().to_string());
            let auth = handle
                .authenticate_publickey(t.user, PrivateKeyWithHashAlg::new(key, rsa_hash))
                .await
                .map_err(|e| SshError::Protocol(e.to_string()))?;
            if auth.success() {
                return Ok(());
            }
        }
        if std::env::var_os("SSH_AUTH_SOCK").is_some() {
            match self.agent_identities().await {
                Ok(ids) if !ids.is_empty() => {
                    // The agent's certificates first (an expired one is skipped: the server would refuse it),
                    // then the copies of the named key files, then the rest.
                    let key_of = |id: &AgentIdentity| match id {
                        AgentIdentity::PublicKey { key, .. } => key.key_data().clone(),
                        AgentIdentity::Certificate { certificate, .. } => certificate.public_key().clone(),
                    };
                    let mut ids: Vec<&AgentIdentity> = ids.iter().collect();
                    ids.sort_by_key(|id| {
                        let cert = matches!(id, AgentIdentity::Certificate { .. });
                        (!cert, !wanted.iter().any(|w| *w.key_data() == key_of(id)))
                    });
                    match AgentClient::connect_env().await {
                        Ok(mut agent) => {
                            for id in ids {
                                let r = match id {
                                    AgentIdentity::PublicKey { key, comment } => {
                                        tried.push(format!(
                                            "agent key {}",
                                            if comment.is_empty() {
                                                known_hosts::fingerprint(key)
                                            } else {
                                                comment.clone()
                                            }
                                        ));
                                        handle
                                            .authenticate_publickey_with(t.user, key.clone(), rsa_hash, &mut agent)
                                            .await
                                    }
                                    AgentIdentity::Certificate { certificate, comment } => {
                                        let what = if comment.is_empty() { certificate.key_id() } else { comment };
                                        if !certs::valid_now(certificate) {
                                            tried.push(format!("agent certificate {what} (skipped: not valid now)"));
                                            continue;
                                        }
                                        tried.push(format!("agent certificate {what}"));
                                        handle
                                            .authenticate_certificate_with(
                                                t.user,
                                                certificate.clone(),
                                                rsa_hash,
                                                &mut agent,
                                            )
                                            .await
                                    }
                                };
                                if let Ok(r) = r
                                    && r.success()
                                {
                                    return Ok(());
                                }
                            }
                        }
                        Err(e) => tried.push(format!("ssh-agent (unusable: {e})")),
                    }
                }
                Ok(_) => tried.push("ssh-agent (it holds no keys)".into()),
                Err(e) => tried.push(format!("ssh-agent (unusable: {e})")),
            }
        }
        // An explicit key file that cannot be used is the clearest error to report.
        if explicit && tried.is_empty() && !key_errors.is_empty() {
            return Err(key_errors.remove(0));
        }
        let mut what = if tried.is_empty() {
            "no keys (none configured, none in ~/.ssh, no ssh-agent)".to_owned()
        } else {
            tried.join(", ")
        };
        for e in &key_errors {
            let _ = write!(what, "; skipped {e}");
        }
        Err(SshError::AuthFailed { user: t.user.into(), tried: what })
    }
}

/// A TCP connection to the hop, within `limit`.
async fn tcp(t: &Hop<'_>, limit: Duration) -> Result<TcpStream, SshError> {
    let started = Instant::now();
    let addrs: Vec<std::net::SocketAddr> = match timeout(limit, tokio::net::lookup_host((t.address, t.port))).await {
        Err(_) => return Err(SshError::Timeout { stage: "resolving the address", after: limit }),
        Ok(Err(e)) => return Err(SshError::Resolve { address: t.address.into(), reason: e.to_string() }),
        Ok(Ok(a)) => a.collect(),
    };
    let Some(addr) = addrs.first().copied() else {
        return Err(SshError::Resolve { address: t.address.into(), reason: "no addresses".into() });
    };
    let stream = match timeout(limit.saturating_sub(started.elapsed()), TcpStream::connect(addr)).await {
        Err(_) => return Err(SshError::Timeout { stage: "connecting", after: limit }),
        Ok(Err(e)) => {
            return Err(SshError::Unreachable { address: t.address.into(), port: t.port, reason: e.to_string() });
        }
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A logged-in session with one host: `ps -ef`, then the files the engine asks for, over SFTP on the same
/// connection. Close it with [`HostSession::close`] (dropping it drops the connection).
pub struct HostSession<'t> {
    transport: &'t Transport,
    handle: Handle<Checker>,
    identity: HostIdentity,
    user: String,
    command_timeout: Duration,
    files: sftp::Files<'t>,
}

impl HostSession<'_> {
    /// `SHA256:...` of the host key (the key inside the certificate, for a certificate).
    pub fn fingerprint(&self) -> &str {
        &self.identity.fingerprint
    }

    /// The host certificate the host proved its key with, when a `@cert-authority` line vouched for it.
    pub fn certificate(&self) -> Option<&HostCertificate> {
        self.identity.certificate.as_ref()
    }

    pub fn identity(&self) -> &HostIdentity {
        &self.identity
    }

    /// Runs [`REMOTE_COMMAND`] (within [`MAX_OUTPUT`], the scan's pool past [`FREE_OUTPUT`] and
    /// `command_timeout`, as [`Transport::capture`] does) while opening the SFTP channel beside it: two channels
    /// of one connection, so SFTP's setup costs no round trip of its own. An SFTP that cannot be opened does not
    /// fail `ps`: every later file request answers `Problem::Unavailable` with the reason and the fix.
    pub async fn ps(&mut self) -> Result<Vec<u8>, SshError> {
        let limit = self.command_timeout;
        let HostSession { transport, handle, user, files, .. } = self;
        // `ps`'s channel is asked for first (join! polls in order), so a host allowing one session
        // (MaxSessions 1) still runs `ps`; only SFTP is then refused.
        let (out, ()) =
            tokio::join!(timeout(limit, run(handle, &transport.output_pool)), files.open(handle, user, limit));
        match out {
            Ok(r) => r,
            Err(_) => Err(SshError::Timeout { stage: "waiting for `ps -ef` output", after: limit }),
        }
    }

    /// Answers a batch of requests, one `(path, entry)` per request in their order, every request of the batch
    /// pipelined (sent before any answer is awaited): a batch costs two or three round trips whatever its size
    /// ([`sftp`]). Limits: `max_file_bytes` a file (larger: `TooLarge`, from fstat's size and never more than
    /// that plus one byte buffered), `max_files` requests and `file_budget` of time per host and scan (past
    /// them: `OverBudget`). Opens SFTP first if [`HostSession::ps`] did not.
    pub async fn fetch(&mut self, requests: &[crate::files::Request]) -> Vec<(String, crate::files::Entry)> {
        let limit = self.command_timeout;
        let HostSession { handle, user, files, .. } = self;
        files.open(handle, user, limit).await;
        files.fetch(requests).await
    }

    /// Why SFTP could not be opened on this host (also every file request's `Unavailable` reason), once tried.
    pub fn sftp_unavailable(&self) -> Option<&str> {
        self.files.unavailable()
    }

    /// What reading files has cost so far: requests, SFTP packets, round trips, bytes.
    pub fn file_stats(&self) -> FileStats {
        self.files.stats()
    }

    /// Closes the connection politely, never letting a slow host hold the scan.
    pub async fn close(self) {
        let HostSession { handle, files, .. } = self;
        drop(files);
        let _ = timeout(Duration::from_millis(200), handle.disconnect(Disconnect::ByApplication, "", "en")).await;
    }
}

impl crate::files::Fetch for HostSession<'_> {
    async fn fetch(&mut self, batch: &[crate::files::Request]) -> Vec<(String, crate::files::Entry)> {
        HostSession::fetch(self, batch).await
    }
}

/// Opens a session channel, runs the command and reads everything it sends, within [`MAX_OUTPUT`] and, past
/// [`FREE_OUTPUT`], what the scan's shared `pool` has left.
async fn run(handle: &Handle<Checker>, (pool, shared): &(Semaphore, usize)) -> Result<Vec<u8>, SshError> {
    let mut channel = handle.channel_open_session().await.map_err(|e| SshError::Protocol(e.to_string()))?;
    channel.exec(true, REMOTE_COMMAND).await.map_err(|e| SshError::Protocol(e.to_string()))?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut status = None;
    // KiB drawn from the pool, released when this host's output is done with.
    let mut drawn: Option<SemaphorePermit<'_>> = None;
    // Read until the channel is gone: the exit status can arrive after EOF.
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                let len = stdout.len() + data.len();
                if len > MAX_OUTPUT {
                    return Err(SshError::OutputTooLarge { limit: MAX_OUTPUT });
                }
                let held = drawn.as_ref().map_or(0, |p| p.num_permits());
                let need = len.saturating_sub(FREE_OUTPUT).div_ceil(1 << 10).saturating_sub(held);
                if need > 0 {
                    let more = u32::try_from(need)
                        .ok()
                        .and_then(|n| pool.try_acquire_many(n).ok())
                        .ok_or(SshError::OutputPoolSpent { free: FREE_OUTPUT, shared: *shared })?;
                    match drawn.as_mut() {
                        Some(p) => p.merge(more),
                        None => drawn = Some(more),
                    }
                }
                stdout.extend_from_slice(&data);
            }
            ChannelMsg::ExtendedData { data, .. } => {
                let room = MAX_STDERR.saturating_sub(stderr.len());
                stderr.extend_from_slice(&data[..data.len().min(room)]);
            }
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                return Err(SshError::Disconnected { reason: format!("`ps` was killed by signal {signal_name:?}") });
            }
            _ => {}
        }
    }
    match status {
        Some(0) => Ok(stdout),
        Some(status) => Err(SshError::CommandFailed {
            status,
            stderr: crate::ps::truncate(String::from_utf8_lossy(&stderr).trim(), 300),
        }),
        None => Err(SshError::Disconnected { reason: format!("no exit status after {} bytes", stdout.len()) }),
    }
}

fn default_identity_files() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME") else { return Vec::new() };
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|n| Path::new(&home).join(".ssh").join(n))
        .filter(|p| p.exists())
        .collect()
}

/// Private keys, each read and parsed once per scan however many hosts use it.
#[derive(Default)]
struct KeyCache {
    keys: Mutex<HashMap<PathBuf, LoadedKey>>,
    certificates: Mutex<HashMap<PathBuf, Result<Arc<Certificate>, String>>>,
}

type LoadedKey = Result<Arc<PrivateKey>, Arc<Unusable>>;

/// Why a key file cannot be used directly and, for an encrypted key, its public half (stored in the clear in
/// OpenSSH's format) so the agent's copy can be picked.
struct Unusable {
    reason: String,
    public: Option<PublicKey>,
}

impl KeyCache {
    /// A user certificate file (`KEY-cert.pub`, `CertificateFile`), read once per scan.
    fn certificate(&self, path: &Path) -> Result<Arc<Certificate>, String> {
        let mut certs = self.certificates.lock().unwrap_or_else(|e| e.into_inner());
        certs
            .entry(path.to_owned())
            .or_insert_with(|| {
                russh::keys::load_openssh_certificate(path).map(Arc::new).map_err(|e| {
                    format!("{e}; check that it is an OpenSSH certificate (ssh-keygen -L -f {})", path.display())
                })
            })
            .clone()
    }

    fn get(&self, path: &Path) -> LoadedKey {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.entry(path.to_owned())
            .or_insert_with(|| match russh::keys::load_secret_key(path, None) {
                Ok(k) => Ok(Arc::new(k)),
                Err(russh::keys::Error::KeyIsEncrypted) => {
                    let public = std::fs::read(path)
                        .ok()
                        .and_then(|pem| PrivateKey::from_openssh(pem).ok())
                        .map(|k| k.public_key().clone());
                    let reason = format!(
                        "it is encrypted; add it to ssh-agent (`ssh-add {}`) and run fleetaudit with SSH_AUTH_SOCK \
                         set: it then uses the agent's copy",
                        path.display()
                    );
                    Err(Arc::new(Unusable { reason, public }))
                }
                Err(e) => Err(Arc::new(Unusable {
                    reason: format!("{e}; check that it is an OpenSSH private key (ed25519, ECDSA or RSA)"),
                    public: None,
                })),
            })
            .clone()
    }
}

/// fleetaudit's own known_hosts file for keys trusted on first use.
struct Accepted {
    path: PathBuf,
    /// Keys accepted during this scan, so two connections to one new host agree.
    seen: Mutex<HashMap<String, PublicKey>>,
    /// Of those, the ones not yet handed to the store ([`Transport::take_accepted`]): (host, line).
    fresh: Mutex<Vec<(String, String)>>,
    /// Keys other scanners of a shared history accepted, as known_hosts text.
    shared: String,
}

impl Accepted {
    /// Records a first-seen key; returns false when another key was recorded for the host during this scan.
    fn accept(&self, address: &str, port: u16, key: &PublicKey) -> std::io::Result<bool> {
        let name = known_hosts::host_name(address, port);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = seen.get(&name) {
            return Ok(k.key_data() == key.key_data());
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(&self.path)?;
        let line = known_hosts::line_for(address, port, key);
        writeln!(file, "{line}")?;
        self.fresh.lock().unwrap_or_else(|e| e.into_inner()).push((name.clone(), line));
        seen.insert(name, key.clone());
        Ok(true)
    }
}

enum KeyDecision {
    Trusted(HostIdentity),
    Refused(SshError),
}

/// The russh client handler: its only job is the host key decision.
struct Checker {
    known: Arc<KnownHosts>,
    accepted: Arc<Accepted>,
    policy: HostKeyPolicy,
    address: String,
    port: u16,
    decision: Arc<Mutex<Option<KeyDecision>>>,
}

impl Checker {
    fn decide(&self, key: &PublicKey) -> KeyDecision {
        let fingerprint = known_hosts::fingerprint(key);
        let (address, port) = (self.address.clone(), self.port);
        let recorded = |r: &[Recorded]| r.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        match self.known.check(&self.address, self.port, key) {
            Verdict::Known => KeyDecision::Trusted(HostIdentity { fingerprint, certificate: None }),
            Verdict::Revoked(r) => {
                KeyDecision::Refused(SshError::HostKeyRevoked { address, port, fingerprint, recorded: r.to_string() })
            }
            Verdict::Changed(r) => KeyDecision::Refused(SshError::HostKeyChanged {
                name: known_hosts::host_name(&address, port),
                address,
                port,
                fingerprint,
                recorded: recorded(&r),
            }),
            Verdict::Unknown if self.policy == HostKeyPolicy::AcceptNew => {
                match self.accepted.accept(&address, port, key) {
                    Ok(true) => KeyDecision::Trusted(HostIdentity { fingerprint, certificate: None }),
                    Ok(false) => KeyDecision::Refused(SshError::HostKeyChanged {
                        name: known_hosts::host_name(&address, port),
                        address,
                        port,
                        fingerprint,
                        recorded: "a key accepted earlier in this scan".into(),
                    }),
                    Err(e) => KeyDecision::Refused(SshError::Protocol(format!(
                        "cannot record the new host key in {}: {e}",
                        self.accepted.path.display()
                    ))),
                }
            }
            Verdict::Unknown => KeyDecision::Refused(SshError::HostKeyUnknown {
                line: known_hosts::line_for(&address, port, key),
                address,
                port,
                fingerprint,
            }),
        }
    }
}

impl Checker {
    /// A host certificate: trusted when a `@cert-authority` line's CA vouches for it (`certs::check_host`).
    /// Otherwise, as `ssh` does ("No matching CA found. Retry with plain key"), the key inside it is judged as a
    /// plain key, so a host listed by its key still works beside CA-trusted ones; when that key is unknown too,
    /// the certificate's refusal is the one reported, as it names what to fix. Trust on first use never applies
    /// to a host a CA line names: an expired certificate must not turn into an accepted key.
    fn decide_certificate(&self, cert: &russh::keys::Certificate) -> KeyDecision {
        let key = PublicKey::new(cert.public_key().clone(), "");
        let fingerprint = known_hosts::fingerprint(&key);
        let refusal = match certs::check_host(cert, &self.known, &self.address, self.port, certs::now()) {
            Ok(certificate) => {
                return KeyDecision::Trusted(HostIdentity { fingerprint, certificate: Some(certificate) });
            }
            Err(HostCertRefusal::KeyRevoked(r)) => {
                return KeyDecision::Refused(SshError::HostKeyRevoked {
                    address: self.address.clone(),
                    port: self.port,
                    fingerprint,
                    recorded: r.to_string(),
                });
            }
            Err(HostCertRefusal::Cert(e @ CertError::CaRevoked { .. })) => return KeyDecision::Refused(e.into()),
            Err(HostCertRefusal::Cert(e)) => e,
        };
        let ca_named = !self.known.authorities(&self.address, self.port).is_empty();
        match self.known.check(&self.address, self.port, &key) {
            Verdict::Unknown if ca_named || self.policy == HostKeyPolicy::Strict => {
                KeyDecision::Refused(refusal.into())
            }
            _ => {
                let decision = self.decide(&key);
                if matches!(decision, KeyDecision::Trusted(_)) {
                    tracing::debug!(address = %self.address, "host certificate not trusted ({refusal}); its key is");
                }
                decision
            }
        }
    }
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let decision = match server_key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => self.decide(key),
            russh::keys::PublicKeyOrCertificate::Certificate(cert) => self.decide_certificate(cert),
        };
        let ok = matches!(decision, KeyDecision::Trusted(_));
        if let Ok(mut d) = self.decision.lock() {
            *d = Some(decision);
        }
        Ok(ok)
    }
}
