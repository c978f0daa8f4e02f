//! The SSH transport: one russh session per host, strict host keys, key and agent authentication, one fixed
//! remote command, and its output captured within a size cap and time limits.
//!
//! Owns: TCP connect, the SSH handshake, host key verification against OpenSSH known_hosts (and fleetaudit's
//! own accepted-keys file under `accept-new`), authentication, running [`REMOTE_COMMAND`].
//! Must not touch: rules, verdicts, the database. It returns bytes; the `ps` stage reads them.
//! Nothing from the inventory is ever sent as a command: the remote command is a constant.

pub mod known_hosts;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::time::timeout;

use self::known_hosts::{KnownHosts, Recorded, Verdict};

/// The one command fleetaudit runs on a host. A constant: nothing from the inventory reaches a remote shell.
pub const REMOTE_COMMAND: &str = "ps -ef";

/// Largest `ps` output accepted: a 5,000-process node prints ~2 MB, so 16 MiB is generous, and a host that
/// sends more is refused instead of filling memory.
pub const MAX_OUTPUT: usize = 16 << 20;

/// How much of the remote command's stderr is kept for the error message.
const MAX_STDERR: usize = 4 << 10;

pub use crate::inventory::HostKeyPolicy;

/// One host to reach.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub name: &'a str,
    pub address: &'a str,
    pub port: u16,
    pub user: &'a str,
    /// Key files to offer; empty means ssh-agent and the default `~/.ssh/id_*` files.
    pub identity_files: &'a [PathBuf],
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
}

/// Why a host could not be audited. [`SshError::kind`] is the stable name stored in the database.
#[derive(Debug, Error)]
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
    #[error("`{command}` exited with status {status}: {stderr}", command = REMOTE_COMMAND)]
    CommandFailed { status: u32, stderr: String },
    #[error("the connection closed before `{command}` finished ({reason})", command = REMOTE_COMMAND)]
    Disconnected { reason: String },
    #[error("SSH protocol error: {0}")]
    Protocol(String),
    #[error(
        "the inventory reaches this host through jump host {jump}, which this version cannot do yet; the host was \
         not audited (and not contacted directly)"
    )]
    JumpUnsupported { jump: String },
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
            SshError::OutputTooLarge { .. } => "output_too_large",
            SshError::CommandFailed { .. } => "ps_failed",
            SshError::Disconnected { .. } => "disconnected",
            SshError::Protocol(_) => "ssh_error",
            SshError::JumpUnsupported { .. } => "unsupported",
        }
    }
}

/// Settings shared by every connection of a scan.
pub struct TransportConfig {
    pub known_hosts: Vec<PathBuf>,
    pub policy: HostKeyPolicy,
    /// fleetaudit's own record of keys accepted under `accept-new`.
    pub accepted_hosts: PathBuf,
}

/// The SSH client of one scan: known hosts parsed and keys loaded once, shared by every host.
pub struct Transport {
    config: Arc<client::Config>,
    known: Arc<KnownHosts>,
    policy: HostKeyPolicy,
    accepted: Arc<Accepted>,
    keys: KeyCache,
}

impl Transport {
    /// The transport an inventory's settings call for.
    pub fn for_inventory(settings: &crate::inventory::Settings) -> std::io::Result<Transport> {
        Transport::new(TransportConfig {
            known_hosts: settings.known_hosts.clone(),
            policy: settings.host_key_policy,
            accepted_hosts: settings.accepted_hosts.clone(),
        })
    }

    pub fn new(cfg: TransportConfig) -> std::io::Result<Transport> {
        let mut files = cfg.known_hosts.clone();
        files.push(cfg.accepted_hosts.clone());
        let known = Arc::new(KnownHosts::load(&files)?);
        let config = client::Config {
            // A scan is one command per connection; nothing needs keep-alives.
            inactivity_timeout: None,
            // Without TCP_NODELAY each connection lost ~43 ms to Nagle's algorithm on loopback.
            nodelay: true,
            ..Default::default()
        };
        Ok(Transport {
            config: Arc::new(config),
            known,
            policy: cfg.policy,
            accepted: Arc::new(Accepted { path: cfg.accepted_hosts, seen: Mutex::new(HashMap::new()) }),
            keys: KeyCache::default(),
        })
    }

    /// Connects, checks the host key, authenticates and runs [`REMOTE_COMMAND`].
    #[tracing::instrument(level = "debug", skip_all, fields(host = target.name), err(level = "debug"))]
    pub async fn capture(&self, target: &Target<'_>) -> Result<Capture, SshError> {
        let (mut handle, fingerprint) = self.connect(target).await?;
        let result = timeout(target.command_timeout, run(&mut handle)).await;
        // A polite goodbye, but never let a slow host hold the scan.
        let _ = timeout(Duration::from_millis(200), handle.disconnect(Disconnect::ByApplication, "", "en")).await;
        match result {
            Ok(r) => r.map(|stdout| Capture { stdout, fingerprint }),
            Err(_) => Err(SshError::Timeout { stage: "waiting for `ps -ef` output", after: target.command_timeout }),
        }
    }

    /// Connects, checks the host key and authenticates, without running anything (`fleetaudit check`).
    pub async fn probe(&self, target: &Target<'_>) -> Result<String, SshError> {
        let (handle, fingerprint) = self.connect(target).await?;
        let _ = timeout(Duration::from_millis(200), handle.disconnect(Disconnect::ByApplication, "", "en")).await;
        Ok(fingerprint)
    }

    async fn connect(&self, t: &Target<'_>) -> Result<(Handle<Checker>, String), SshError> {
        let started = Instant::now();
        let limit = t.connect_timeout;
        let addrs: Vec<std::net::SocketAddr> = match timeout(limit, tokio::net::lookup_host((t.address, t.port))).await
        {
            Err(_) => return Err(SshError::Timeout { stage: "resolving the address", after: limit }),
            Ok(Err(e)) => return Err(SshError::Resolve { address: t.address.into(), reason: e.to_string() }),
            Ok(Ok(a)) => a.collect(),
        };
        let Some(addr) = addrs.first().copied() else {
            return Err(SshError::Resolve { address: t.address.into(), reason: "no addresses".into() });
        };
        let stream = match timeout(limit, TcpStream::connect(addr)).await {
            Err(_) => return Err(SshError::Timeout { stage: "connecting", after: limit }),
            Ok(Err(e)) => {
                return Err(SshError::Unreachable { address: t.address.into(), port: t.port, reason: e.to_string() });
            }
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let decision = Arc::new(Mutex::new(None));
        let checker = Checker {
            known: self.known.clone(),
            accepted: self.accepted.clone(),
            policy: self.policy,
            address: t.address.to_owned(),
            port: t.port,
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
        let fingerprint = match taken(&decision) {
            Some(KeyDecision::Trusted(fp)) => fp,
            Some(KeyDecision::Refused(err)) => return Err(err),
            None => return Err(SshError::Protocol("the server's host key was never checked".into())),
        };
        let remaining = limit.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
        match timeout(remaining, self.authenticate(&mut handle, t)).await {
            Err(_) => Err(SshError::Timeout { stage: "authenticating", after: limit }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Ok((handle, fingerprint)),
        }
    }

    async fn authenticate(&self, handle: &mut Handle<Checker>, t: &Target<'_>) -> Result<(), SshError> {
        let mut tried = Vec::new();
        let explicit = !t.identity_files.is_empty();
        let files: Vec<PathBuf> = if explicit { t.identity_files.to_vec() } else { default_identity_files() };
        let rsa_hash = handle.best_supported_rsa_hash().await.map_err(|e| SshError::Protocol(e.to_string()))?.flatten();
        let mut key_errors = Vec::new();
        for path in &files {
            let key = match self.keys.get(path) {
                Ok(k) => k,
                Err(reason) => {
                    key_errors.push(SshError::Key { path: path.clone(), reason });
                    continue;
                }
            };
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
            match AgentClient::connect_env().await {
                Ok(mut agent) => {
                    let identities = agent.request_identities().await.unwrap_or_default();
                    for id in identities {
                        let AgentIdentity::PublicKey { key, comment } = id else { continue };
                        tried.push(format!(
                            "agent key {}",
                            if comment.is_empty() { known_hosts::fingerprint(&key) } else { comment }
                        ));
                        if let Ok(r) = handle.authenticate_publickey_with(t.user, key, rsa_hash, &mut agent).await
                            && r.success()
                        {
                            return Ok(());
                        }
                    }
                }
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

/// Opens a session channel, runs the command and reads everything it sends, within [`MAX_OUTPUT`].
async fn run(handle: &mut Handle<Checker>) -> Result<Vec<u8>, SshError> {
    let mut channel = handle.channel_open_session().await.map_err(|e| SshError::Protocol(e.to_string()))?;
    channel.exec(true, REMOTE_COMMAND).await.map_err(|e| SshError::Protocol(e.to_string()))?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut status = None;
    // Read until the channel is gone: the exit status can arrive after EOF.
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                if stdout.len() + data.len() > MAX_OUTPUT {
                    return Err(SshError::OutputTooLarge { limit: MAX_OUTPUT });
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
    keys: Mutex<HashMap<PathBuf, Result<Arc<PrivateKey>, String>>>,
}

impl KeyCache {
    fn get(&self, path: &Path) -> Result<Arc<PrivateKey>, String> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.entry(path.to_owned())
            .or_insert_with(|| match russh::keys::load_secret_key(path, None) {
                Ok(k) => Ok(Arc::new(k)),
                Err(russh::keys::Error::KeyIsEncrypted) => {
                    Err("it is encrypted; load it into ssh-agent (`ssh-add`) and fleetaudit will use the agent".into())
                }
                Err(e) => Err(format!("{e}; check that it is an OpenSSH private key (ed25519, ECDSA or RSA)")),
            })
            .clone()
    }
}

/// fleetaudit's own known_hosts file for keys trusted on first use.
struct Accepted {
    path: PathBuf,
    /// Keys accepted during this scan, so two connections to one new host agree.
    seen: Mutex<HashMap<String, PublicKey>>,
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
        writeln!(file, "{}", known_hosts::line_for(address, port, key))?;
        seen.insert(name, key.clone());
        Ok(true)
    }
}

enum KeyDecision {
    Trusted(String),
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
            Verdict::Known => KeyDecision::Trusted(fingerprint),
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
                    Ok(true) => KeyDecision::Trusted(fingerprint),
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

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let decision = match server_key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => self.decide(key),
            russh::keys::PublicKeyOrCertificate::Certificate(_) => KeyDecision::Refused(SshError::Protocol(
                "the host presented a host certificate; fleetaudit checks plain host keys against known_hosts".into(),
            )),
        };
        let ok = matches!(decision, KeyDecision::Trusted(_));
        if let Ok(mut d) = self.decision.lock() {
            *d = Some(decision);
        }
        Ok(ok)
    }
}
