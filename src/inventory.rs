//! The inventory: which nodes to audit and how to reach them.
//!
//! Owns: reading and validating the inventory file (TOML; `inventory.example.toml` documents every key),
//! inheritance `[defaults]` → `[[clusters]]` → host (the most specific value wins, a list replaces rather than
//! extends), expanding `~/` to `$HOME` and resolving relative paths against the inventory file's directory, and
//! checking that the key files it names exist.
//!
//! With an OpenSSH client config (`ssh_config` in `[defaults]`, or `--ssh-config`; [`ssh_config`] reads it),
//! each host's `address` is looked up in it as `ssh ADDRESS` would be: `HostName`, `Port`, `User`,
//! `IdentityFile`, `CertificateFile`, `ProxyJump` and `UserKnownHostsFile` fill in what the inventory does not set. The inventory
//! wins over ssh_config (a key set at any level, `[defaults]` included, counts as set), ssh_config wins over
//! fleetaudit's defaults. A jump host's name is looked up the same way.
//!
//! Must not touch: the network, SSH (no connection, no reading of keys or known_hosts contents), the database.
//! It only describes the scan that later stages perform.
//!
//! Every error names the file, line and key and says what is allowed: `inventory.toml:14:11: hosts[2].address:
//! "10.0.0.300" is not an IPv4/IPv6 address or DNS name`. Keys are written as paths with indexes counted from 0
//! in file order: `defaults.port`, `clusters[0].jump`, `clusters[0].hosts[1].address`, `hosts[2].roles`.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use thiserror::Error;
use toml::Spanned;

use crate::model::Role;
use crate::source::{self, Location};
use crate::store::Database;

pub mod ssh_config;

use self::ssh_config::{SshConfig, SshConfigError};

/// A validated inventory: run-wide settings and every host with its inherited values filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    /// The file it was read from, as given.
    pub path: PathBuf,
    pub settings: Settings,
    /// In the order they are written in the file.
    pub hosts: Vec<Host>,
}

/// Settings for the whole run, only from `[defaults]`. Paths are expanded and resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// OpenSSH known_hosts files holding the hosts' keys; `~/.ssh/known_hosts` when absent (none if `$HOME` is
    /// unset). Never empty when written.
    pub known_hosts: Vec<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    /// Where `accept-new` records first-seen keys; the database path with `.known_hosts` appended when absent
    /// (`fleetaudit.known_hosts` beside the inventory for a PostgreSQL database).
    pub accepted_hosts: PathBuf,
    /// Hosts audited at once, 1..=65535.
    pub concurrency: usize,
    /// The history: an SQLite file, or a PostgreSQL URL without a password.
    pub database: Database,
    pub report_dir: PathBuf,
    /// A cron expression, kept as written; the daemon validates it.
    pub schedule: Option<String>,
    /// How many scans to keep; every scan when `None`.
    pub keep_scans: Option<u32>,
    /// The OpenSSH client config the hosts were looked up in (`--ssh-config` or `ssh_config`), if any.
    pub ssh_config: Option<PathBuf>,
}

/// What to do with a host whose key is not in known_hosts. A changed key is refused under both.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HostKeyPolicy {
    /// Unknown key: the host is not audited (the default).
    Strict,
    /// Unknown key: trusted on first use and recorded in [`Settings::accepted_hosts`].
    AcceptNew,
}

impl HostKeyPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            HostKeyPolicy::Strict => "strict",
            HostKeyPolicy::AcceptNew => "accept-new",
        }
    }
}

/// One node to audit, with the values it inherits already applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    /// Unique (ignoring case), made of `[A-Za-z0-9._-]`: it names report files.
    pub name: String,
    /// The cluster it is nested in or names with `cluster = "..."`.
    pub cluster: Option<String>,
    /// IPv4, IPv6 (no brackets) or DNS name, as written.
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Key files to try in order, each present on disk when the inventory was read. Empty: the SSH layer uses
    /// ssh-agent and `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
    pub identity_files: Vec<PathBuf>,
    /// OpenSSH user certificates to log in with (`certificate_file`, else ssh_config's `CertificateFile`), each
    /// present on disk; a `KEY-cert.pub` beside an identity file is used as well, as `ssh` does.
    pub certificate_files: Vec<PathBuf>,
    pub roles: Vec<Role>,
    /// The jump hosts the host is reached through, the first one connected to directly (`ssh -J a,b`); empty:
    /// the host is connected to directly.
    pub jump: Vec<Jump>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// known_hosts files holding the host's key: the inventory's `known_hosts`, else ssh_config's
    /// `UserKnownHostsFile` for the host, else `~/.ssh/known_hosts`.
    pub known_hosts: Vec<PathBuf>,
    /// How the host's files are read over SFTP, and how much of them.
    pub files: FileAccess,
    /// The network zone it is reached from (`zone`): on a shared PostgreSQL history, only scanners started with
    /// `--zone` of that name (or with none) audit it.
    pub zone: Option<String>,
}

/// How a host's files are read (over SFTP on its SSH connection: `ssh::sftp`) and the limits on them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileAccess {
    /// The command run on the host instead of requesting the `sftp` subsystem, whose standard input and output
    /// then speak SFTP (`sudo -n /usr/lib/openssh/sftp-server -R`, as `sftp -s` runs it). Operator text from
    /// the inventory, never from a host. `None`: the host's `sftp` subsystem.
    pub sftp_command: Option<String>,
    /// The most bytes of one file read; a larger file is refused (`too_large`).
    pub max_file_bytes: u64,
    /// Paths asked about per host and scan; past it, `over_budget`.
    pub max_files: usize,
    /// Time for all of a host's file requests in a scan; past it, `over_budget`.
    pub file_budget: Duration,
}

impl Default for FileAccess {
    fn default() -> FileAccess {
        FileAccess {
            sftp_command: None,
            max_file_bytes: crate::files::MAX_FILE,
            max_files: DEFAULT_MAX_FILES,
            file_budget: DEFAULT_FILE_BUDGET,
        }
    }
}

/// A bastion to connect through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Jump {
    /// `None`: the host's own `user`.
    pub user: Option<String>,
    /// IPv4, IPv6 (no brackets) or DNS name (after ssh_config's `HostName`).
    pub address: String,
    /// 22 when not written (nor set by ssh_config).
    pub port: u16,
    /// Key files for the bastion, from ssh_config's `IdentityFile` for it; `None`: the host's.
    pub identity_files: Option<Vec<PathBuf>>,
    /// User certificates for the bastion, from ssh_config's `CertificateFile` for it; `None`: the host's.
    pub certificate_files: Option<Vec<PathBuf>>,
    /// known_hosts files holding the bastion's key, chosen as for a host; empty: the scan's default files.
    pub known_hosts: Vec<PathBuf>,
}

/// A jump host as written: what it does not say is filled in by ssh_config or defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
struct JumpSpec {
    user: Option<String>,
    address: String,
    port: Option<u16>,
}

impl Jump {
    /// Parses `host`, `host:port`, `user@host:port`, `user@[2001:db8::1]:port` or a bare IPv6 address.
    pub fn parse(spec: &str) -> Result<Jump, String> {
        let s = JumpSpec::parse(spec)?;
        Ok(Jump { user: s.user, address: s.address, port: s.port.unwrap_or(DEFAULT_PORT), ..Jump::default() })
    }
}

impl JumpSpec {
    fn parse(spec: &str) -> Result<JumpSpec, String> {
        let bad = |why: String| {
            format!(
                "{spec:?} is not a jump host ({why}): write \"host\", \"host:port\", \"user@host:port\" or \
                 \"user@[2001:db8::1]:port\""
            )
        };
        let (user, rest) = match spec.split_once('@') {
            Some((user, rest)) => {
                check_user(user).map_err(bad)?;
                (Some(user.to_owned()), rest)
            }
            None => (None, spec),
        };
        let port = |p: &str| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(bad(format!("port {p:?} is not 1 to 65535"))),
        };
        let (address, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (address, after) = inner.split_once(']').ok_or_else(|| bad("no closing ']'".into()))?;
            if address.parse::<Ipv6Addr>().is_err() {
                return Err(bad(format!("{address:?} is not an IPv6 address")));
            }
            let port = match after {
                "" => None,
                _ => port(after.strip_prefix(':').ok_or_else(|| bad("expected ':port' after ']'".into()))?)?,
            };
            (address, port)
        } else if rest.parse::<Ipv6Addr>().is_ok() {
            (rest, None)
        } else {
            match rest.split_once(':') {
                Some((address, p)) => (address, port(p)?),
                None => (rest, None),
            }
        };
        check_address(address).map_err(bad)?;
        Ok(JumpSpec { user, address: address.to_owned(), port })
    }
}

impl fmt::Display for Jump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.address.contains(':') {
            write!(f, "[{}]:{}", self.address, self.port)
        } else {
            write!(f, "{}:{}", self.address, self.port)
        }
    }
}

impl Inventory {
    /// The host with exactly this name.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

#[derive(Debug, Error)]
pub enum InventoryError {
    #[error("cannot read inventory {path}: {source}; check the inventory path")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{at}: {message}")]
    Syntax { at: Location, message: String },
    #[error("{at}: {key}: {message}")]
    Invalid { at: Location, key: String, message: String },
    #[error("{0}")]
    SshConfig(SshConfigError),
}

/// Reads and validates the inventory at `path`.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    load_with(path, &LoadOptions::default())
}

/// What the command line says beside the inventory.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// An OpenSSH client config to look the hosts up in, instead of the inventory's `ssh_config`.
    pub ssh_config: Option<PathBuf>,
}

/// Reads and validates the inventory at `path`, with command-line overrides.
pub fn load_with(path: &Path, options: &LoadOptions) -> Result<Inventory, InventoryError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| InventoryError::Read { path: path.to_owned(), source })?;
    parse_with(path, &text, options)
}

/// Validates inventory `text`; `path` names the file in messages and anchors relative paths. Checks that the
/// key files named exist.
pub fn parse(path: &Path, text: &str) -> Result<Inventory, InventoryError> {
    parse_with(path, text, &LoadOptions::default())
}

/// [`parse`] with command-line overrides.
pub fn parse_with(path: &Path, text: &str, options: &LoadOptions) -> Result<Inventory, InventoryError> {
    parse_in_with(path, text, &Env::from_process(), options)
}

/// What the inventory takes from the environment, passed in so tests need not change the process's.
struct Env {
    home: Option<PathBuf>,
    user: Option<String>,
}

impl Env {
    fn from_process() -> Env {
        Env {
            home: std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from),
            user: std::env::var("USER").ok().filter(|u| !u.is_empty()),
        }
    }
}

const DEFAULT_PORT: u16 = 22;
/// Longest jump chain: OpenSSH has no limit, but a chain past a handful of hops is a loop in the ssh_config.
const MAX_HOPS: usize = 8;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONCURRENCY: usize = 64;
/// A kubeadm control plane needs about 60 paths (manifests, kubeconfigs, PKI, the kubelet's config and unit,
/// passwd and group); 256 leaves room for drop-in directories and hosts running several distributions' files.
const DEFAULT_MAX_FILES: usize = 256;
const MAX_FILES: usize = 4096;
/// Every file read is held in memory until the host is judged.
const MAX_FILE_BYTES: u64 = 64 << 20;
/// A kubeadm node's files take 2 to 3 round trips: seconds only on a host that is failing.
const DEFAULT_FILE_BUDGET: Duration = Duration::from_secs(10);
/// Longest `sftp_command`: a sudo line, not a script.
const MAX_SFTP_COMMAND: usize = 1024;
const DEFAULT_DATABASE: &str = "fleetaudit.db";
const DEFAULT_REPORT_DIR: &str = "fleetaudit-report";

/// Keys only `[defaults]` accepts; named in the error when they appear elsewhere.
const DEFAULTS_ONLY: [&str; 9] = [
    "known_hosts",
    "ssh_config",
    "host_key_policy",
    "accepted_hosts",
    "concurrency",
    "database",
    "report_dir",
    "schedule",
    "keep_scans",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    clusters: Vec<Spanned<RawCluster>>,
    #[serde(default)]
    hosts: Vec<Spanned<RawHost>>,
}

/// Declares a table that also takes the keys a host inherits, so they are written once.
macro_rules! with_host_keys {
    (struct $name:ident { $($field:ident: $ty:ty,)* }) => {
        #[derive(Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $($field: $ty,)*
            user: Option<Spanned<String>>,
            port: Option<Spanned<i64>>,
            identity_file: Option<Spanned<Paths>>,
            certificate_file: Option<Spanned<Paths>>,
            roles: Option<Spanned<Vec<Spanned<String>>>>,
            jump: Option<Spanned<Paths>>,
            connect_timeout: Option<Spanned<RawDuration>>,
            command_timeout: Option<Spanned<RawDuration>>,
            sftp_command: Option<Spanned<String>>,
            max_file_bytes: Option<Spanned<i64>>,
            max_files: Option<Spanned<i64>>,
            file_budget: Option<Spanned<RawDuration>>,
            zone: Option<Spanned<String>>,
        }

        impl $name {
            fn host_keys(&self) -> HostKeys<'_> {
                HostKeys {
                    user: self.user.as_ref(),
                    port: self.port.as_ref(),
                    identity_file: self.identity_file.as_ref(),
                    certificate_file: self.certificate_file.as_ref(),
                    roles: self.roles.as_ref(),
                    jump: self.jump.as_ref(),
                    connect_timeout: self.connect_timeout.as_ref(),
                    command_timeout: self.command_timeout.as_ref(),
                    sftp_command: self.sftp_command.as_ref(),
                    max_file_bytes: self.max_file_bytes.as_ref(),
                    max_files: self.max_files.as_ref(),
                    file_budget: self.file_budget.as_ref(),
                    zone: self.zone.as_ref(),
                }
            }
        }
    };
}

with_host_keys!(
    struct RawDefaults {
        known_hosts: Option<Spanned<Paths>>,
        ssh_config: Option<Spanned<String>>,
        host_key_policy: Option<Spanned<String>>,
        accepted_hosts: Option<Spanned<String>>,
        concurrency: Option<Spanned<i64>>,
        database: Option<Spanned<String>>,
        report_dir: Option<Spanned<String>>,
        schedule: Option<Spanned<String>>,
        keep_scans: Option<Spanned<i64>>,
    }
);

with_host_keys!(
    struct RawCluster {
        name: Option<Spanned<String>>,
        hosts: Option<Vec<Spanned<RawHost>>>,
    }
);

with_host_keys!(
    struct RawHost {
        name: Option<Spanned<String>>,
        address: Option<Spanned<String>>,
        cluster: Option<Spanned<String>>,
    }
);

struct HostKeys<'a> {
    user: Option<&'a Spanned<String>>,
    port: Option<&'a Spanned<i64>>,
    identity_file: Option<&'a Spanned<Paths>>,
    certificate_file: Option<&'a Spanned<Paths>>,
    roles: Option<&'a Spanned<Vec<Spanned<String>>>>,
    jump: Option<&'a Spanned<Paths>>,
    connect_timeout: Option<&'a Spanned<RawDuration>>,
    command_timeout: Option<&'a Spanned<RawDuration>>,
    sftp_command: Option<&'a Spanned<String>>,
    max_file_bytes: Option<&'a Spanned<i64>>,
    max_files: Option<&'a Spanned<i64>>,
    file_budget: Option<&'a Spanned<RawDuration>>,
    zone: Option<&'a Spanned<String>>,
}

/// `identity_file`, `certificate_file`, `known_hosts` and `jump`: one string or a list of them.
struct Paths(Vec<String>);

impl<'de> Deserialize<'de> for Paths {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Paths, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Paths;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path or a list of paths")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Paths, E> {
                Ok(Paths(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Paths, A::Error> {
                let mut paths = Vec::new();
                while let Some(p) = seq.next_element::<String>()? {
                    paths.push(p);
                }
                Ok(Paths(paths))
            }
        }
        d.deserialize_any(V)
    }
}

/// A timeout as written: `"10s"` or a number of seconds.
enum RawDuration {
    Text(String),
    Seconds(i64),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawDuration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"500ms\", \"10s\", \"2m\" or a whole number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Seconds(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        d.deserialize_any(V)
    }
}

/// The host keys of one table, validated; `None` where the table does not set the key.
#[derive(Default)]
struct Layer {
    user: Option<String>,
    port: Option<u16>,
    identity_files: Option<Vec<PathBuf>>,
    certificate_files: Option<Vec<PathBuf>>,
    roles: Option<Vec<Role>>,
    /// `Some(vec![])`: `jump = ""` (or `[]`), connect directly even if an outer table names a jump host.
    jump: Option<Vec<JumpSpec>>,
    connect_timeout: Option<Duration>,
    command_timeout: Option<Duration>,
    /// `Some(None)`: `sftp_command = ""`, the `sftp` subsystem even if an outer table names a command.
    sftp_command: Option<Option<String>>,
    max_file_bytes: Option<u64>,
    max_files: Option<usize>,
    file_budget: Option<Duration>,
    zone: Option<String>,
}

/// The file being validated, to turn spans into errors and written paths into real ones.
struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    dir: PathBuf,
    env: &'a Env,
}

impl Ctx<'_> {
    fn invalid(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> InventoryError {
        InventoryError::Invalid {
            at: Location::of(self.file, self.text, span.start),
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// Validates `value` with `f` when present, reporting a failure at the value under `key`.
    fn check<T, U>(
        &self,
        value: Option<&Spanned<T>>,
        key: &str,
        f: impl FnOnce(&T) -> Result<U, String>,
    ) -> Result<Option<U>, InventoryError> {
        value.map(|v| f(v.get_ref()).map_err(|m| self.invalid(v.span(), key, m))).transpose()
    }

    /// `~/x` → `$HOME/x`; relative → next to the inventory; absolute as is.
    fn path(&self, written: &str) -> Result<PathBuf, String> {
        if written.is_empty() {
            return Err("empty path: write a file name".into());
        }
        if written == "~" || written.starts_with("~/") {
            let home =
                self.env.home.as_ref().ok_or_else(|| format!("{written:?}: $HOME is not set; write the full path"))?;
            return Ok(home.join(written.trim_start_matches('~').trim_start_matches('/')));
        }
        if written.starts_with('~') {
            return Err(format!("{written:?}: only \"~/\" (your home directory) is expanded; write the full path"));
        }
        Ok(self.dir.join(written))
    }

    fn layer(&self, prefix: &str, k: HostKeys<'_>) -> Result<Layer, InventoryError> {
        let key = |name: &str| format!("{prefix}.{name}");
        let mut roles = None;
        if let Some(list) = k.roles {
            let mut out = Vec::new();
            for r in list.get_ref() {
                let role = Role::parse(r.get_ref()).ok_or_else(|| {
                    let allowed: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                    self.invalid(
                        r.span(),
                        &key("roles"),
                        format!("unknown role {:?}: use {}", r.get_ref(), allowed.join(", ")),
                    )
                })?;
                if !out.contains(&role) {
                    out.push(role);
                }
            }
            roles = Some(out);
        }
        Ok(Layer {
            user: self.check(k.user, &key("user"), |u| check_user(u).map(|()| u.clone()))?,
            port: self.check(k.port, &key("port"), |&p| check_port(p))?,
            identity_files: self.check(k.identity_file, &key("identity_file"), |Paths(paths)| {
                paths.iter().map(|p| self.key_file(p)).collect()
            })?,
            certificate_files: self.check(k.certificate_file, &key("certificate_file"), |Paths(paths)| {
                paths.iter().map(|p| self.certificate_file(p)).collect()
            })?,
            roles,
            jump: self.check(k.jump, &key("jump"), |Paths(hops)| {
                // `"a,b"` is a chain as `ssh -J a,b` writes it; `["a", "b"]` the same; `""` or `[]` none.
                let hops: Vec<&str> = hops.iter().flat_map(|h| h.split(',')).filter(|h| !h.is_empty()).collect();
                if hops.len() > MAX_HOPS {
                    return Err(format!("{} jump hosts: at most {MAX_HOPS} in a chain", hops.len()));
                }
                hops.into_iter().map(JumpSpec::parse).collect()
            })?,
            connect_timeout: self.check(k.connect_timeout, &key("connect_timeout"), parse_timeout)?,
            command_timeout: self.check(k.command_timeout, &key("command_timeout"), parse_timeout)?,
            sftp_command: self.check(k.sftp_command, &key("sftp_command"), |c| check_sftp_command(c))?,
            max_file_bytes: self.check(k.max_file_bytes, &key("max_file_bytes"), |&n| match u64::try_from(n) {
                Ok(n @ 1..=MAX_FILE_BYTES) => Ok(n),
                _ => Err(format!(
                    "{n} bytes: use 1 to {MAX_FILE_BYTES} (64 MiB); every file read is held in memory. Default: {}",
                    crate::files::MAX_FILE
                )),
            })?,
            max_files: self.check(k.max_files, &key("max_files"), |&n| match usize::try_from(n) {
                Ok(n @ 1..=MAX_FILES) => Ok(n),
                _ => Err(format!("{n} paths: use 1 to {MAX_FILES}. Default: {DEFAULT_MAX_FILES}")),
            })?,
            file_budget: self.check(k.file_budget, &key("file_budget"), parse_timeout)?,
            zone: self.check(k.zone, &key("zone"), |z: &String| check_name(z, "zone").map(|()| z.clone()))?,
        })
    }

    fn certificate_file(&self, written: &str) -> Result<PathBuf, String> {
        let path = self.path(written)?;
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "missing certificate {}: sign the key's .pub with your CA (`ssh-keygen -s CA -I ID -n USER KEY.pub` \
                 writes KEY-cert.pub) or fix the path",
                path.display()
            ))
        }
    }

    fn key_file(&self, written: &str) -> Result<PathBuf, String> {
        let path = self.path(written)?;
        if path.is_file() {
            Ok(path)
        } else if path.exists() {
            Err(format!("{} is not a file: name the private key file", path.display()))
        } else {
            Err(format!("missing key file {}: create it with ssh-keygen or fix the path", path.display()))
        }
    }

    fn settings(&self, d: &RawDefaults) -> Result<Settings, InventoryError> {
        let path = |written: &String| self.path(written);
        let known_hosts = self.check(d.known_hosts.as_ref(), "defaults.known_hosts", |Paths(paths)| {
            if paths.is_empty() {
                return Err("empty list: name at least one known_hosts file".into());
            }
            paths.iter().map(|p| self.path(p)).collect()
        })?;
        let known_hosts =
            known_hosts.unwrap_or_else(|| self.env.home.iter().map(|h| h.join(".ssh/known_hosts")).collect());
        let host_key_policy =
            self.check(d.host_key_policy.as_ref(), "defaults.host_key_policy", |p| match p.as_str() {
                "strict" => Ok(HostKeyPolicy::Strict),
                "accept-new" => Ok(HostKeyPolicy::AcceptNew),
                other => Err(format!("{other:?} is not a host key policy: use \"strict\" or \"accept-new\"")),
            })?;
        let database =
            self.check(d.database.as_ref(), "defaults.database", |written: &String| match Database::parse(written) {
                url @ Database::Postgres(_) if url.has_password() => Err(format!(
                    "{url}: the URL holds a password; an inventory never does. Give it with PGPASSWORD or \
                     ~/.pgpass (https://www.postgresql.org/docs/current/libpq-pgpass.html)"
                )),
                url @ Database::Postgres(_) => Ok(url),
                Database::Sqlite(_) => path(written).map(Database::Sqlite),
            })?;
        let database = database.unwrap_or_else(|| Database::Sqlite(self.dir.join(DEFAULT_DATABASE)));
        let accepted_hosts = self.check(d.accepted_hosts.as_ref(), "defaults.accepted_hosts", path)?;
        let accepted_hosts = accepted_hosts.unwrap_or_else(|| match &database {
            Database::Sqlite(db) => {
                let mut p = db.clone().into_os_string();
                p.push(".known_hosts");
                PathBuf::from(p)
            }
            Database::Postgres(_) => self.dir.join("fleetaudit.known_hosts"),
        });
        let report_dir = self.check(d.report_dir.as_ref(), "defaults.report_dir", path)?;
        let ssh_config = self.check(d.ssh_config.as_ref(), "defaults.ssh_config", path)?;
        Ok(Settings {
            ssh_config,
            known_hosts,
            host_key_policy: host_key_policy.unwrap_or(HostKeyPolicy::Strict),
            accepted_hosts,
            concurrency: self
                .check(d.concurrency.as_ref(), "defaults.concurrency", |&n| match usize::try_from(n) {
                    Ok(n @ 1..=65535) => Ok(n),
                    _ => Err(format!("{n} hosts at once: use 1 to 65535")),
                })?
                .unwrap_or(DEFAULT_CONCURRENCY),
            database,
            report_dir: report_dir.unwrap_or_else(|| self.dir.join(DEFAULT_REPORT_DIR)),
            schedule: self.check(d.schedule.as_ref(), "defaults.schedule", |s| {
                if s.trim().is_empty() {
                    Err("empty schedule: write a cron expression such as \"0 */6 * * *\" or remove the key".into())
                } else {
                    Ok(s.clone())
                }
            })?,
            keep_scans: self.check(d.keep_scans.as_ref(), "defaults.keep_scans", |&n| match u32::try_from(n) {
                Ok(n) if n > 0 => Ok(n),
                _ => {
                    Err(format!("{n}: keep at least 1 scan (up to {}), or remove the key to keep every scan", u32::MAX))
                }
            })?,
        })
    }
}

/// A host table and where it sits: its key prefix, and its cluster when nested.
struct Entry<'a> {
    at: Range<usize>,
    prefix: String,
    raw: &'a RawHost,
    nested_in: Option<usize>,
}

#[cfg(test)]
fn parse_in(file: &Path, text: &str, env: &Env) -> Result<Inventory, InventoryError> {
    parse_in_with(file, text, env, &LoadOptions::default())
}

fn parse_in_with(file: &Path, text: &str, env: &Env, options: &LoadOptions) -> Result<Inventory, InventoryError> {
    let raw: RawInventory = toml::from_str(text).map_err(|e| syntax_error(file, text, &e))?;
    let cx = Ctx { file, text, dir: file.parent().map(Path::to_owned).unwrap_or_default(), env };

    let mut settings = cx.settings(&raw.defaults)?;
    if options.ssh_config.is_some() {
        settings.ssh_config.clone_from(&options.ssh_config);
    }
    let ssh = match &settings.ssh_config {
        Some(path) => Some(SshConfig::load(path, env.home.as_deref()).map_err(InventoryError::SshConfig)?),
        None => None,
    };
    let ssh = SshLookup { config: ssh.as_ref(), env, explicit_known_hosts: raw.defaults.known_hosts.is_some() };
    let defaults = cx.layer("defaults", raw.defaults.host_keys())?;

    // Clusters, by index: name and validated keys. Names are unique.
    let mut clusters: Vec<(String, Layer)> = Vec::new();
    let mut cluster_at: HashMap<String, usize> = HashMap::new();
    for (i, c) in raw.clusters.iter().enumerate() {
        let prefix = format!("clusters[{i}]");
        let name = c.get_ref().name.as_ref().ok_or_else(|| {
            cx.invalid(c.span(), &format!("{prefix}.name"), "missing name: add name = \"...\" to the cluster")
        })?;
        check_name(name.get_ref(), "cluster").map_err(|m| cx.invalid(name.span(), &format!("{prefix}.name"), m))?;
        // Offsets, turned into a line only for the error: a line per name would rescan the text each time.
        if let Some(first) = cluster_at.insert(name.get_ref().clone(), name.span().start) {
            let first = Location::of(file, text, first).line;
            return Err(cx.invalid(
                name.span(),
                &format!("{prefix}.name"),
                format!(
                    "cluster {:?} is already defined at line {first}: cluster names must be unique",
                    name.get_ref()
                ),
            ));
        }
        clusters.push((name.get_ref().clone(), cx.layer(&prefix, c.get_ref().host_keys())?));
    }

    // Hosts, nested and top level, in file order so a duplicate is reported at its second appearance.
    let mut entries = Vec::new();
    for (i, c) in raw.clusters.iter().enumerate() {
        for (j, h) in c.get_ref().hosts.iter().flatten().enumerate() {
            entries.push(Entry {
                at: h.span(),
                prefix: format!("clusters[{i}].hosts[{j}]"),
                raw: h.get_ref(),
                nested_in: Some(i),
            });
        }
    }
    for (i, h) in raw.hosts.iter().enumerate() {
        entries.push(Entry { at: h.span(), prefix: format!("hosts[{i}]"), raw: h.get_ref(), nested_in: None });
    }
    if entries.is_empty() {
        return Err(cx.invalid(0..0, "hosts", "the inventory lists no hosts: add a [[hosts]] table"));
    }
    entries.sort_by_key(|e| e.at.start);

    let mut host_at: HashMap<String, (String, usize)> = HashMap::new();
    let mut hosts = Vec::with_capacity(entries.len());
    for e in &entries {
        let key = |name: &str| format!("{}.{name}", e.prefix);
        let name = e.raw.name.as_ref().ok_or_else(|| {
            cx.invalid(e.at.clone(), &key("name"), "missing name: add name = \"...\" (letters, digits, '.', '_', '-')")
        })?;
        check_name(name.get_ref(), "host").map_err(|m| cx.invalid(name.span(), &key("name"), m))?;
        if let Some((first, first_at)) =
            host_at.insert(name.get_ref().to_ascii_lowercase(), (name.get_ref().clone(), name.span().start))
        {
            let first_line = Location::of(file, text, first_at).line;
            let also = if &first == name.get_ref() { String::new() } else { format!(" as {first:?}") };
            return Err(cx.invalid(
                name.span(),
                &key("name"),
                format!(
                    "host {:?} is already defined at line {first_line}{also}: host names must be unique, ignoring \
                     case, as they name report files",
                    name.get_ref()
                ),
            ));
        }
        let address = e.raw.address.as_ref().ok_or_else(|| {
            cx.invalid(
                e.at.clone(),
                &key("address"),
                format!("host {:?} has no address: add address = \"<IPv4, IPv6 or DNS name>\"", name.get_ref()),
            )
        })?;
        check_address(address.get_ref()).map_err(|m| cx.invalid(address.span(), &key("address"), m))?;

        let cluster = match (e.nested_in, &e.raw.cluster) {
            (Some(i), None) => Some(i),
            (Some(i), Some(named)) if named.get_ref() == &clusters[i].0 => Some(i),
            (Some(i), Some(named)) => {
                return Err(cx.invalid(
                    named.span(),
                    &key("cluster"),
                    format!(
                        "this host is nested in cluster {:?}: remove `cluster = {:?}` or move the host",
                        clusters[i].0,
                        named.get_ref()
                    ),
                ));
            }
            (None, Some(named)) => Some(clusters.iter().position(|(n, _)| n == named.get_ref()).ok_or_else(|| {
                let known: Vec<String> = clusters.iter().map(|(n, _)| format!("{n:?}")).collect();
                let known = if known.is_empty() {
                    "none is defined".to_owned()
                } else {
                    format!("defined: {}", known.join(", "))
                };
                cx.invalid(
                    named.span(),
                    &key("cluster"),
                    format!("unknown cluster {:?} ({known}): add a [[clusters]] table with that name", named.get_ref()),
                )
            })?),
            (None, None) => None,
        };

        let own = cx.layer(&e.prefix, e.raw.host_keys())?;
        let empty = Layer::default();
        let layers = [&own, cluster.map_or(&empty, |i| &clusters[i].1), &defaults];
        fn pick<T>(layers: &[&Layer; 3], f: impl Fn(&Layer) -> Option<T>) -> Option<T> {
            layers.iter().find_map(|l| f(l))
        }
        // What the inventory leaves unset, ssh_config may set for the address; fleetaudit's defaults come last.
        let for_host = |e: SshConfigError| {
            InventoryError::SshConfig(SshConfigError {
                message: format!(
                    "{} (looking up host {:?}, address {:?})",
                    e.message,
                    name.get_ref(),
                    address.get_ref()
                ),
                ..e
            })
        };
        let found = ssh.config.map(|c| c.resolve(address.get_ref())).unwrap_or_default();
        let written = address.get_ref();
        let address = ssh.hostname(&found, written).map_err(for_host)?;
        let port = pick(&layers, |l| l.port).or(found.port.as_ref().map(|p| p.value)).unwrap_or(DEFAULT_PORT);
        let user = match pick(&layers, |l| l.user.clone()) {
            Some(u) => u,
            None => ssh
                .user(&found)
                .map_err(for_host)?
                .unwrap_or_else(|| env.user.clone().unwrap_or_else(|| "root".to_owned())),
        };
        let tokens = ssh_config::Tokens {
            host: &address,
            original: written,
            port,
            user: &user,
            local_user: env.user.as_deref(),
            home: env.home.as_deref(),
        };
        let identity_files = match pick(&layers, |l| l.identity_files.clone()) {
            Some(files) => files,
            None => ssh.existing_files(&found.identity_files, &tokens).map_err(for_host)?,
        };
        let certificate_files = match pick(&layers, |l| l.certificate_files.clone()) {
            Some(files) => files,
            None => ssh.existing_files(&found.certificate_files, &tokens).map_err(for_host)?,
        };
        let known_hosts = ssh.known_hosts(&found, &tokens, &settings).map_err(for_host)?;
        let chain = match pick(&layers, |l| l.jump.clone()) {
            Some(chain) => chain,
            None => ssh.proxy_jump(&found).map_err(for_host)?,
        };
        let jump = ssh.chain(chain, &user, &settings).map_err(for_host)?;
        hosts.push(Host {
            name: name.get_ref().clone(),
            cluster: cluster.map(|i| clusters[i].0.clone()),
            address,
            port,
            user,
            identity_files,
            certificate_files,
            roles: pick(&layers, |l| l.roles.clone()).unwrap_or_default(),
            jump,
            connect_timeout: pick(&layers, |l| l.connect_timeout).unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            command_timeout: pick(&layers, |l| l.command_timeout).unwrap_or(DEFAULT_COMMAND_TIMEOUT),
            known_hosts,
            files: FileAccess {
                sftp_command: pick(&layers, |l| l.sftp_command.clone()).flatten(),
                max_file_bytes: pick(&layers, |l| l.max_file_bytes).unwrap_or(crate::files::MAX_FILE),
                max_files: pick(&layers, |l| l.max_files).unwrap_or(DEFAULT_MAX_FILES),
                file_budget: pick(&layers, |l| l.file_budget).unwrap_or(DEFAULT_FILE_BUDGET),
            },
            zone: pick(&layers, |l| l.zone.clone()),
        });
    }

    Ok(Inventory { path: file.to_owned(), settings, hosts })
}

/// Looks hosts and jump hosts up in the ssh_config (when there is one) and turns what it says into inventory
/// values, with the file and line of any value that does not fit.
struct SshLookup<'a> {
    config: Option<&'a SshConfig>,
    env: &'a Env,
    /// `known_hosts` written in the inventory: it then wins over `UserKnownHostsFile`.
    explicit_known_hosts: bool,
}

impl SshLookup<'_> {
    fn hostname(&self, found: &ssh_config::Resolved, written: &str) -> Result<String, SshConfigError> {
        let Some(h) = &found.hostname else { return Ok(written.to_owned()) };
        let address = ssh_config::expand_hostname(&h.value, written).map_err(|m| h.at.error(m))?;
        check_address(&address).map_err(|m| h.at.error(format!("HostName: {m}")))?;
        Ok(address)
    }

    fn user(&self, found: &ssh_config::Resolved) -> Result<Option<String>, SshConfigError> {
        found
            .user
            .as_ref()
            .map(|u| check_user(&u.value).map(|()| u.value.clone()).map_err(|m| u.at.error(format!("User: {m}"))))
            .transpose()
    }

    /// A file name from ssh_config: tokens and `~` expanded, relative to the directory of the file naming it.
    fn path(&self, v: &ssh_config::Value<String>, tokens: &ssh_config::Tokens<'_>) -> Result<PathBuf, SshConfigError> {
        let expanded = ssh_config::expand(&v.value, tokens).map_err(|m| v.at.error(m))?;
        if expanded.is_empty() {
            return Err(v.at.error("empty file name"));
        }
        Ok(v.at.file.parent().unwrap_or(Path::new("")).join(expanded))
    }

    /// The files of `IdentityFile` or `CertificateFile` lines that exist: like `ssh`, missing ones are skipped
    /// (configs often list several).
    fn existing_files(
        &self,
        written: &[ssh_config::Value<String>],
        tokens: &ssh_config::Tokens<'_>,
    ) -> Result<Vec<PathBuf>, SshConfigError> {
        let mut files = Vec::new();
        for f in written {
            let path = self.path(f, tokens)?;
            if path.is_file() {
                files.push(path);
            }
        }
        Ok(files)
    }

    fn known_hosts(
        &self,
        found: &ssh_config::Resolved,
        tokens: &ssh_config::Tokens<'_>,
        settings: &Settings,
    ) -> Result<Vec<PathBuf>, SshConfigError> {
        match &found.user_known_hosts {
            Some(files) if !self.explicit_known_hosts => {
                if files.value.iter().any(|f| f.eq_ignore_ascii_case("none")) {
                    // `ssh` then trusts no recorded key; an empty file says the same to fleetaudit.
                    return Ok(vec![PathBuf::from("/dev/null")]);
                }
                files
                    .value
                    .iter()
                    .map(|f| self.path(&ssh_config::Value { value: f.clone(), at: files.at.clone() }, tokens))
                    .collect()
            }
            _ => Ok(settings.known_hosts.clone()),
        }
    }

    /// `ProxyJump`: a chain of jump hosts (`a,b`), or `none` (an empty chain).
    fn proxy_jump(&self, found: &ssh_config::Resolved) -> Result<Vec<JumpSpec>, SshConfigError> {
        let Some(j) = &found.proxy_jump else { return Ok(Vec::new()) };
        if j.value.eq_ignore_ascii_case("none") {
            return Ok(Vec::new());
        }
        j.value
            .split(',')
            .map(|hop| {
                let spec = hop.strip_prefix("ssh://").unwrap_or(hop);
                JumpSpec::parse(spec).map_err(|m| j.at.error(format!("ProxyJump: {m}")))
            })
            .collect()
    }

    /// A chain as written, each hop completed from ssh_config, preceded by the chain ssh_config gives its first
    /// hop: `ssh -J a,b` reaches `a` as `ssh a` would, ProxyJump included, and `b` through `a` (b's own
    /// ProxyJump does not apply). A loop, or a chain longer than [`MAX_HOPS`], is refused at the line that
    /// makes it.
    fn chain(
        &self,
        mut chain: Vec<JumpSpec>,
        host_user: &str,
        settings: &Settings,
    ) -> Result<Vec<Jump>, SshConfigError> {
        while let Some(first) = chain.first() {
            let found = self.config.map(|c| c.resolve(&first.address)).unwrap_or_default();
            let before = self.proxy_jump(&found)?;
            // A jump host naming itself (`Host *` giving everything the same ProxyJump) is reached directly.
            let before: Vec<JumpSpec> = before.into_iter().filter(|b| b.address != first.address).collect();
            if before.is_empty() {
                break;
            }
            let at = &found.proxy_jump.as_ref().expect("proxy_jump returned hops").at;
            if before.iter().any(|b| chain.iter().any(|c| c.address == b.address))
                || chain.len() + before.len() > MAX_HOPS
            {
                return Err(at.error(format!(
                    "ProxyJump {}: the jump hosts loop or chain more than {MAX_HOPS} deep ({}); add `ProxyJump none` \
                     to the block of the jump host reachable directly",
                    found.proxy_jump.as_ref().map_or("", |p| p.value.as_str()),
                    chain.iter().map(|c| c.address.as_str()).collect::<Vec<_>>().join(" -> ")
                )));
            }
            chain.splice(0..0, before);
        }
        chain.into_iter().map(|spec| self.bastion(spec, host_user, settings)).collect()
    }

    /// A jump host as written, completed from ssh_config's entry for its name, then from defaults.
    fn bastion(&self, spec: JumpSpec, host_user: &str, settings: &Settings) -> Result<Jump, SshConfigError> {
        let found = self.config.map(|c| c.resolve(&spec.address)).unwrap_or_default();
        let address = self.hostname(&found, &spec.address)?;
        let port = spec.port.or(found.port.as_ref().map(|p| p.value)).unwrap_or(DEFAULT_PORT);
        let user = match spec.user {
            Some(u) => Some(u),
            None => self.user(&found)?,
        };
        let tokens = ssh_config::Tokens {
            host: &address,
            original: &spec.address,
            port,
            user: user.as_deref().unwrap_or(host_user),
            local_user: self.env.user.as_deref(),
            home: self.env.home.as_deref(),
        };
        let identity_files = self.existing_files(&found.identity_files, &tokens)?;
        let certificate_files = self.existing_files(&found.certificate_files, &tokens)?;
        let known_hosts = self.known_hosts(&found, &tokens, settings)?;
        Ok(Jump {
            user,
            address,
            port,
            identity_files: (!identity_files.is_empty()).then_some(identity_files),
            certificate_files: (!certificate_files.is_empty()).then_some(certificate_files),
            known_hosts,
        })
    }
}

/// toml's message, with the key it is about when toml leaves it out, and a hint for common mistakes.
fn syntax_error(file: &Path, text: &str, err: &toml::de::Error) -> InventoryError {
    let (at, mut message) = source::toml_error(file, text, err);
    message = message.replace("expected i64", "expected a whole number");
    let unknown = message.strip_prefix("unknown field `").and_then(|r| r.split_once('`')).map(|(f, _)| f.to_owned());
    match unknown.as_deref() {
        Some(f) if DEFAULTS_ONLY.contains(&f) => message.push_str(&format!("; `{f}` can only be set in [defaults]")),
        Some("identity_files") => message.push_str("; write identity_file = [\"...\", \"...\"]"),
        Some(_) => {}
        None if message.contains("expected a sequence") => message
            .push_str("; clusters and hosts are arrays of tables: write [[clusters]], [[clusters.hosts]], [[hosts]]"),
        None => {}
    }
    match err.span().and_then(|span| key_before(text, span.start)) {
        Some(key) => InventoryError::Syntax { at, message: format!("{key}: {message}") },
        None => InventoryError::Syntax { at, message },
    }
}

/// The key of a `key = value` line when `offset` is in its value: toml's type errors do not name it.
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let (key, _) = text[start..offset].split_once('=')?;
    let key = key.trim();
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    bare.then_some(key)
}

/// Host and cluster names: `[A-Za-z0-9._-]`, 1..=253 characters, not `.` or `..`.
pub(crate) fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("empty name: every {what} needs one (letters, digits, '.', '_', '-')"));
    }
    let ok = name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a usable {what} name: use 1 to 253 letters, digits, '.', '_' or '-' (not \".\" or \
             \"..\"); it names report files"
        ))
    }
}

pub(crate) fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        Err("empty user name".into())
    } else if user.chars().any(|c| c.is_whitespace() || c.is_control() || c == '@' || c == ':') {
        Err(format!("{user:?} is not a user name: no spaces, '@' or ':'"))
    } else {
        Ok(())
    }
}

fn check_port(port: i64) -> Result<u16, String> {
    match u16::try_from(port) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{port} is not a port: use 1 to 65535")),
    }
}

/// IPv4, IPv6 without brackets, or a DNS name (labels of `[A-Za-z0-9-]`, 1 to 63 characters, not starting or
/// ending with '-', at most 253 characters, a last label that is not all digits).
pub(crate) fn check_address(address: &str) -> Result<(), String> {
    if address.parse::<Ipv4Addr>().is_ok() || address.parse::<Ipv6Addr>().is_ok() || is_dns_name(address) {
        return Ok(());
    }
    let hint = if address.starts_with('[') {
        "; write IPv6 addresses without brackets"
    } else if address.contains('@') {
        "; set the user with `user`"
    } else if address.rsplit_once(':').is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
        "; set the port with `port`"
    } else {
        ""
    };
    Err(format!("{address:?} is not an IPv4/IPv6 address or DNS name{hint}"))
}

fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    // An all-digit last label would make "10.0.0.300" a name rather than a broken address.
    name.split('.').all(label_ok) && name.rsplit('.').next().is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

/// `sftp_command`: one line of operator text the host's shell runs; `""` means the `sftp` subsystem.
fn check_sftp_command(c: &str) -> Result<Option<String>, String> {
    if c.trim().is_empty() {
        return if c.is_empty() {
            Ok(None)
        } else {
            Err("only spaces: write the command (e.g. \"sudo -n /usr/lib/openssh/sftp-server -R\"), or \"\" for \
                 the sftp subsystem"
                .into())
        };
    }
    if c.len() > MAX_SFTP_COMMAND {
        return Err(format!("{} bytes: at most {MAX_SFTP_COMMAND}; run a script on the host instead", c.len()));
    }
    if let Some(bad) = c.chars().find(|ch| ch.is_control()) {
        return Err(format!(
            "contains the control character {bad:?}: write the command on one line (e.g. \"sudo -n \
             /usr/lib/openssh/sftp-server -R\")"
        ));
    }
    Ok(Some(c.to_owned()))
}

fn parse_timeout(raw: &RawDuration) -> Result<Duration, String> {
    let usage = "write \"500ms\", \"10s\", \"2m\", \"1h\" or a whole number of seconds";
    let d = match raw {
        RawDuration::Seconds(n) => {
            u64::try_from(*n).map(Duration::from_secs).map_err(|_| format!("{n} is not a duration: {usage}"))?
        }
        RawDuration::Text(s) => parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration: {usage}"))?,
    };
    if d.is_zero() {
        return Err(format!("a timeout of zero would fail every host: {usage}"));
    }
    Ok(d)
}

/// `"500ms"`, `"10s"`, `"2m"`, `"1h"`, or digits alone for seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    /// A directory holding the inventory (with `keys/id_ed25519`) and a home with `.ssh/id_{ed25519,ecdsa,rsa}`.
    struct Fixture {
        dir: TempDir,
        env: Env,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = TempDir::new().unwrap();
            let home = dir.path().join("home");
            std::fs::create_dir_all(home.join(".ssh")).unwrap();
            for key in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                std::fs::write(home.join(".ssh").join(key), "key").unwrap();
            }
            std::fs::create_dir_all(dir.path().join("keys")).unwrap();
            std::fs::write(dir.path().join("keys/id_ed25519"), "key").unwrap();
            Fixture { env: Env { home: Some(home), user: Some("tester".into()) }, dir }
        }

        fn file(&self) -> PathBuf {
            self.dir.path().join("inv.toml")
        }

        fn home(&self) -> PathBuf {
            self.env.home.clone().unwrap()
        }

        fn parse(&self, text: &str) -> Result<Inventory, InventoryError> {
            parse_in(&self.file(), text, &self.env)
        }
    }

    const HOST: &str = "[[hosts]]\nname = \"a\"\naddress = \"192.0.2.1\"\n";

    /// The jump host as written (who, where), without the files it is reached with.
    fn written(j: &[Jump]) -> Option<Jump> {
        assert!(j.len() <= 1, "a chain: {j:?}");
        j.first().cloned().map(|j| Jump { identity_files: None, certificate_files: None, known_hosts: Vec::new(), ..j })
    }

    #[test]
    fn the_plain_form_works() {
        let fx = Fixture::new();
        let inv = fx
            .parse(
                "[defaults]\nuser = \"audit\"\nidentity_file = \"keys/id_ed25519\"\nknown_hosts = \"~/.ssh/known_hosts\"\n\n\
                 [[hosts]]\nname = \"cp-1\"\naddress = \"192.0.2.1\"\nroles = [\"control-plane\", \"etcd\"]\n\n\
                 [[hosts]]\nname = \"w-1\"\naddress = \"w-1.example.internal\"\nport = 2222\nuser = \"root\"\n\
                 identity_file = \"~/.ssh/id_rsa\"\nroles = [\"worker\"]\n",
            )
            .unwrap();
        assert_eq!(inv.path, fx.file());
        assert_eq!(inv.settings.known_hosts, vec![fx.home().join(".ssh/known_hosts")]);
        assert_eq!(
            inv.hosts,
            vec![
                Host {
                    name: "cp-1".into(),
                    cluster: None,
                    address: "192.0.2.1".into(),
                    port: 22,
                    user: "audit".into(),
                    identity_files: vec![fx.dir.path().join("keys/id_ed25519")],
                    certificate_files: vec![],
                    roles: vec![Role::ControlPlane, Role::Etcd],
                    jump: vec![],
                    connect_timeout: Duration::from_secs(10),
                    command_timeout: Duration::from_secs(30),
                    known_hosts: vec![fx.home().join(".ssh/known_hosts")],
                    files: FileAccess::default(),
                    zone: None,
                },
                Host {
                    name: "w-1".into(),
                    cluster: None,
                    address: "w-1.example.internal".into(),
                    port: 2222,
                    user: "root".into(),
                    identity_files: vec![fx.home().join(".ssh/id_rsa")],
                    certificate_files: vec![],
                    roles: vec![Role::Worker],
                    jump: vec![],
                    connect_timeout: Duration::from_secs(10),
                    command_timeout: Duration::from_secs(30),
                    known_hosts: vec![fx.home().join(".ssh/known_hosts")],
                    files: FileAccess::default(),
                    zone: None,
                },
            ]
        );
        assert_eq!(inv.host("w-1").unwrap().port, 2222);
        assert!(inv.host("W-1").is_none());
    }

    #[test]
    fn built_in_defaults_apply_when_nothing_is_written() {
        let mut fx = Fixture::new();
        let inv = fx.parse(HOST).unwrap();
        let dir = fx.dir.path();
        assert_eq!(
            inv.settings,
            Settings {
                known_hosts: vec![fx.home().join(".ssh/known_hosts")],
                host_key_policy: HostKeyPolicy::Strict,
                accepted_hosts: dir.join("fleetaudit.db.known_hosts"),
                concurrency: 64,
                database: Database::Sqlite(dir.join("fleetaudit.db")),
                report_dir: dir.join("fleetaudit-report"),
                schedule: None,
                keep_scans: None,
                ssh_config: None,
            }
        );
        let h = &inv.hosts[0];
        assert_eq!((h.port, h.user.as_str(), h.cluster.as_deref()), (22, "tester", None));
        assert!(h.identity_files.is_empty() && h.roles.is_empty() && h.jump.is_empty());
        assert_eq!((h.connect_timeout, h.command_timeout), (Duration::from_secs(10), Duration::from_secs(30)));

        fx.env = Env { home: None, user: None };
        let inv = fx.parse(HOST).unwrap();
        assert_eq!(inv.hosts[0].user, "root");
        assert!(inv.settings.known_hosts.is_empty());
    }

    #[test]
    fn hosts_inherit_defaults_then_cluster_and_their_own_keys_win() {
        let fx = Fixture::new();
        let inv = fx
            .parse(
                "[defaults]\nuser = \"d\"\nport = 2200\nroles = [\"worker\"]\njump = \"bastion.example.internal\"\n\
                 connect_timeout = \"1s\"\ncommand_timeout = 7\nidentity_file = \"keys/id_ed25519\"\n\
                 [[hosts]]\nname = \"plain\"\naddress = \"192.0.2.3\"\n\
                 [[clusters]]\nname = \"prod\"\nuser = \"c\"\nroles = [\"control-plane\"]\njump = \"\"\n\
                 connect_timeout = \"2m\"\n\
                 [[clusters.hosts]]\nname = \"nested\"\naddress = \"192.0.2.1\"\nport = 2201\n\
                 [[hosts]]\nname = \"member\"\ncluster = \"prod\"\naddress = \"192.0.2.2\"\nuser = \"h\"\n\
                 identity_file = []\njump = \"j.example.internal:2022\"\ncommand_timeout = \"500ms\"\n",
            )
            .unwrap();
        let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["plain", "nested", "member"], "file order");
        let key = vec![fx.dir.path().join("keys/id_ed25519")];
        let bastion = Jump { user: None, address: "bastion.example.internal".into(), port: 22, ..Jump::default() };

        let plain = inv.host("plain").unwrap();
        assert_eq!((plain.user.as_str(), plain.port, plain.cluster.as_deref()), ("d", 2200, None));
        assert_eq!(
            (&plain.roles, &plain.identity_files, &written(&plain.jump)),
            (&vec![Role::Worker], &key, &Some(bastion))
        );
        assert_eq!(plain.jump[0].known_hosts, vec![fx.home().join(".ssh/known_hosts")]);
        assert_eq!((plain.connect_timeout, plain.command_timeout), (Duration::from_secs(1), Duration::from_secs(7)));

        let nested = inv.host("nested").unwrap();
        assert_eq!((nested.user.as_str(), nested.port, nested.cluster.as_deref()), ("c", 2201, Some("prod")));
        assert_eq!((&nested.roles, &nested.identity_files, &nested.jump), (&vec![Role::ControlPlane], &key, &vec![]));
        assert_eq!(
            (nested.connect_timeout, nested.command_timeout),
            (Duration::from_secs(120), Duration::from_secs(7))
        );

        let member = inv.host("member").unwrap();
        assert_eq!((member.user.as_str(), member.port, member.cluster.as_deref()), ("h", 2200, Some("prod")));
        assert_eq!(member.roles, vec![Role::ControlPlane]);
        assert!(member.identity_files.is_empty(), "an empty list replaces the inherited one");
        assert_eq!(
            written(&member.jump),
            Some(Jump { user: None, address: "j.example.internal".into(), port: 2022, ..Jump::default() })
        );
        assert_eq!(
            (member.connect_timeout, member.command_timeout),
            (Duration::from_secs(120), Duration::from_millis(500))
        );
    }

    #[test]
    fn relative_paths_resolve_next_to_the_inventory_and_tilde_is_home() {
        let fx = Fixture::new();
        let dir = fx.dir.path();
        let inv = fx
            .parse(&format!(
                "[defaults]\nknown_hosts = [\"kh\", \"~/.ssh/kh2\", \"/etc/ssh/ssh_known_hosts\"]\n\
                 database = \"data/fa.db\"\nreport_dir = \"/srv/report\"\n{HOST}identity_file = [\"keys/id_ed25519\", \"~/.ssh/id_ecdsa\"]\n"
            ))
            .unwrap();
        let s = &inv.settings;
        assert_eq!(s.known_hosts, vec![dir.join("kh"), fx.home().join(".ssh/kh2"), "/etc/ssh/ssh_known_hosts".into()]);
        assert_eq!(s.database, Database::Sqlite(dir.join("data/fa.db")));
        assert_eq!(s.accepted_hosts, dir.join("data/fa.db.known_hosts"), "next to the database by default");
        assert_eq!(s.report_dir, PathBuf::from("/srv/report"));
        assert_eq!(inv.hosts[0].identity_files, vec![dir.join("keys/id_ed25519"), fx.home().join(".ssh/id_ecdsa")]);

        let inv = fx
            .parse(&format!(
                "[defaults]\naccepted_hosts = \"~/tofu\"\nhost_key_policy = \"accept-new\"\nconcurrency = 1\n\
                 schedule = \"0 */6 * * *\"\nkeep_scans = 90\n{HOST}"
            ))
            .unwrap();
        let s = &inv.settings;
        assert_eq!(s.accepted_hosts, fx.home().join("tofu"));
        assert_eq!((s.host_key_policy, s.concurrency, s.keep_scans), (HostKeyPolicy::AcceptNew, 1, Some(90)));
        assert_eq!(s.schedule.as_deref(), Some("0 */6 * * *"));
    }

    #[test]
    fn ipv6_addresses_are_written_bare_and_bracketed_in_jumps() {
        let fx = Fixture::new();
        let inv = fx
            .parse(
                "[[hosts]]\nname = \"v6\"\naddress = \"2001:db8::1\"\njump = \"audit@[2001:db8::2]:2222\"\n\
                 [[hosts]]\nname = \"lo\"\naddress = \"::1\"\njump = \"2001:db8::3\"\n",
            )
            .unwrap();
        assert_eq!(inv.hosts[0].address, "2001:db8::1");
        let jump = written(&inv.hosts[0].jump).unwrap();
        assert_eq!(
            jump,
            Jump { user: Some("audit".into()), address: "2001:db8::2".into(), port: 2222, ..Jump::default() }
        );
        assert_eq!(jump.to_string(), "audit@[2001:db8::2]:2222");
        assert_eq!(inv.hosts[1].address, "::1");
        assert_eq!(
            written(&inv.hosts[1].jump),
            Some(Jump { user: None, address: "2001:db8::3".into(), port: 22, ..Jump::default() })
        );
    }

    #[test]
    fn jump_specs() {
        let j = |user: Option<&str>, address: &str, port| Jump {
            user: user.map(str::to_owned),
            address: address.into(),
            port,
            ..Jump::default()
        };
        let good = [
            ("bastion", j(None, "bastion", 22)),
            ("bastion.example.internal:2222", j(None, "bastion.example.internal", 2222)),
            ("audit@bastion:22", j(Some("audit"), "bastion", 22)),
            ("audit@192.0.2.9", j(Some("audit"), "192.0.2.9", 22)),
            ("[::1]:2222", j(None, "::1", 2222)),
            ("[2001:db8::1]", j(None, "2001:db8::1", 22)),
            ("me@[2001:db8::1]:1", j(Some("me"), "2001:db8::1", 1)),
            ("2001:db8::1", j(None, "2001:db8::1", 22)),
        ];
        for (spec, want) in good {
            assert_eq!(Jump::parse(spec), Ok(want), "{spec}");
        }
        let bad = [
            ("", "not an IPv4/IPv6"),
            ("@bastion", "empty user"),
            ("a b@bastion", "not a user name"),
            ("bastion:0", "port \"0\""),
            ("bastion:65536", "port \"65536\""),
            ("bastion:", "port \"\""),
            ("bastion:22:22", "port \"22:22\""),
            ("[::1", "closing"),
            ("[bastion]:22", "not an IPv6"),
            ("[::1]22", "':port'"),
            ("a@b@c", "not an IPv4/IPv6"),
            ("bastion,other", "not an IPv4/IPv6"),
        ];
        for (spec, why) in bad {
            let e = Jump::parse(spec).unwrap_err();
            assert!(e.contains(why) && e.contains("is not a jump host") && e.contains("user@host:port"), "{spec}: {e}");
        }
    }

    #[test]
    fn addresses() {
        for ok in [
            "192.0.2.1",
            "::1",
            "2001:db8::1",
            "node-1",
            "cp-1.prod.example.internal",
            "cp-1.prod.example.internal.",
            "a1",
            &format!("{}.example", "a".repeat(63)),
        ] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for (bad, hint) in [
            ("", ""),
            ("10.0.0.300", ""),
            ("1.2.3", ""),
            ("-node", ""),
            ("node-", ""),
            ("no de", ""),
            ("a/b", ""),
            ("a..b", ""),
            ("under_score", ""),
            ("[::1]", "without brackets"),
            ("fe80::1%eth0", ""),
            ("root@node", "`user`"),
            ("node:22", "`port`"),
            (&format!("{}.example", "a".repeat(64)), ""),
            (&["abcdefghi"; 26].join("."), ""),
        ] {
            let e = check_address(bad).unwrap_err();
            assert!(e.contains("is not an IPv4/IPv6 address or DNS name") && e.contains(hint), "{bad}: {e}");
        }
    }

    #[test]
    fn file_access_is_inherited_and_an_empty_sftp_command_cancels_it() {
        let fx = Fixture::new();
        let text = "[defaults]\nsftp_command = \"sudo -n /usr/lib/openssh/sftp-server -R\"\nmax_files = 100\n\
                    [[clusters]]\nname = \"c\"\nfile_budget = \"30s\"\nmax_file_bytes = 65536\n\
                    [[clusters.hosts]]\nname = \"a\"\naddress = \"192.0.2.1\"\n\
                    [[clusters.hosts]]\nname = \"b\"\naddress = \"192.0.2.2\"\nsftp_command = \"\"\nmax_files = 7\n\
                    [[hosts]]\nname = \"d\"\naddress = \"192.0.2.3\"\n";
        let inv = fx.parse(text).unwrap();
        let sudo = Some("sudo -n /usr/lib/openssh/sftp-server -R".to_owned());
        let files = |name: &str| inv.host(name).unwrap().files.clone();
        assert_eq!(
            files("a"),
            FileAccess {
                sftp_command: sudo.clone(),
                max_file_bytes: 65536,
                max_files: 100,
                file_budget: Duration::from_secs(30)
            }
        );
        assert_eq!(
            files("b"),
            FileAccess {
                sftp_command: None,
                max_file_bytes: 65536,
                max_files: 7,
                file_budget: Duration::from_secs(30)
            }
        );
        assert_eq!(files("d"), FileAccess { sftp_command: sudo, max_files: 100, ..FileAccess::default() });
        assert_eq!(
            FileAccess::default(),
            FileAccess {
                sftp_command: None,
                max_file_bytes: 1 << 20,
                max_files: 256,
                file_budget: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn durations() {
        let text = |s: &str| parse_timeout(&RawDuration::Text(s.into()));
        assert_eq!(text("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(text("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(text("10"), Ok(Duration::from_secs(10)));
        assert_eq!(text("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(text("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(&RawDuration::Seconds(5)), Ok(Duration::from_secs(5)));
        for bad in ["", "s", "10 s", "1.5s", "-1s", "10sec", "1d", "99999999999999999999h"] {
            assert!(text(bad).unwrap_err().contains("is not a duration"), "{bad}");
        }
        assert!(parse_timeout(&RawDuration::Seconds(-1)).unwrap_err().contains("is not a duration"));
        assert!(text("0ms").unwrap_err().contains("zero"));
        assert!(parse_timeout(&RawDuration::Seconds(0)).unwrap_err().contains("zero"));
    }

    #[test]
    fn every_error_names_file_line_and_key() {
        let fx = Fixture::new();
        let cluster = "[[clusters]]\nname = \"c\"\n";
        let nested = "[[clusters]]\nname = \"c\"\n[[clusters.hosts]]\nname = \"a\"\naddress = \"192.0.2.1\"\n";
        // (what, text, line, key (None: a TOML shape error, whose message names the key), part of the message)
        #[rustfmt::skip]
        let cases: Vec<(&str, String, usize, Option<&str>, &str)> = vec![
            ("syntax", "[[hosts]\nname = \"a\"\n".into(), 1, None, ""),
            ("unknown key", format!("{HOST}colour = 1\n"), 4, None, "unknown field `colour`"),
            ("defaults-only key", format!("{HOST}concurrency = 3\n"), 4, None, "`concurrency` can only be set in [defaults]"),
            ("identity_files", format!("[defaults]\nidentity_files = []\n{HOST}"), 2, None, "write identity_file = ["),
            ("wrong type", format!("{HOST}port = \"22\"\n"), 4, None, "port: invalid type: string \"22\", expected a whole number"),
            ("wrong type in a list", format!("{HOST}identity_file = [\"k\", 3]\n"), 4, None, "identity_file: invalid type: integer `3`"),
            ("single brackets", HOST.replace("[[hosts]]", "[hosts]"), 1, None, "write [[clusters]], [[clusters.hosts]], [[hosts]]"),
            ("nested host without a cluster", format!("{HOST}[[clusters.hosts]]\nname = \"b\"\n"), 4, None, "arrays of tables"),
            ("no hosts", "[defaults]\nuser = \"a\"\n".into(), 1, Some("hosts"), "the inventory lists no hosts: add a [[hosts]] table"),
            ("only an empty cluster", cluster.into(), 1, Some("hosts"), "lists no hosts"),
            ("duplicate host", format!("{HOST}[[hosts]]\nname = \"a\"\naddress = \"192.0.2.2\"\n"), 5, Some("hosts[1].name"), "host \"a\" is already defined at line 2"),
            ("duplicate host, other case", format!("{HOST}[[hosts]]\nname = \"A\"\naddress = \"192.0.2.2\"\n"), 5, Some("hosts[1].name"), "at line 2 as \"a\""),
            ("duplicate host, nested first", format!("{nested}{HOST}"), 7, Some("hosts[0].name"), "at line 4"),
            ("duplicate host, top level first", format!("{HOST}{nested}"), 7, Some("clusters[0].hosts[0].name"), "at line 2"),
            ("duplicate cluster", format!("{cluster}{cluster}{HOST}"), 4, Some("clusters[1].name"), "cluster \"c\" is already defined at line 2"),
            ("missing cluster name", format!("[[clusters]]\nuser = \"u\"\n{HOST}"), 1, Some("clusters[0].name"), "missing name"),
            ("bad cluster name", format!("[[clusters]]\nname = \"prod eu\"\n{HOST}"), 2, Some("clusters[0].name"), "not a usable cluster name"),
            ("unknown cluster", format!("{HOST}cluster = \"prod\"\n"), 4, Some("hosts[0].cluster"), "unknown cluster \"prod\" (none is defined)"),
            ("unknown cluster, some defined", format!("{cluster}{HOST}cluster = \"prod\"\n"), 6, Some("hosts[0].cluster"), "defined: \"c\""),
            ("nested host naming another cluster", format!("{nested}cluster = \"d\"\n"), 6, Some("clusters[0].hosts[0].cluster"), "nested in cluster \"c\""),
            ("empty name", "[[hosts]]\nname = \"\"\naddress = \"192.0.2.1\"\n".into(), 2, Some("hosts[0].name"), "empty name"),
            ("bad name", "[[hosts]]\nname = \"cp/1\"\naddress = \"192.0.2.1\"\n".into(), 2, Some("hosts[0].name"), "use 1 to 253 letters, digits, '.', '_' or '-'"),
            ("dot-dot name", "[[hosts]]\nname = \"..\"\naddress = \"192.0.2.1\"\n".into(), 2, Some("hosts[0].name"), "not a usable host name"),
            ("missing name", "[[hosts]]\naddress = \"192.0.2.1\"\n".into(), 1, Some("hosts[0].name"), "missing name"),
            ("missing address", format!("{HOST}[[hosts]]\nname = \"b\"\n"), 4, Some("hosts[1].address"), "host \"b\" has no address"),
            ("bad address", "\n[[hosts]]\nname = \"a\"\naddress = \"10.0.0.300\"\n".into(), 4, Some("hosts[0].address"), "\"10.0.0.300\" is not an IPv4/IPv6 address or DNS name"),
            ("bracketed IPv6", "[[hosts]]\nname = \"a\"\naddress = \"[::1]\"\n".into(), 3, Some("hosts[0].address"), "without brackets"),
            ("port 0", format!("{HOST}port = 0\n"), 4, Some("hosts[0].port"), "0 is not a port: use 1 to 65535"),
            ("port too big", format!("{HOST}port = 65536\n"), 4, Some("hosts[0].port"), "65536 is not a port"),
            ("cluster port", format!("{nested}[[clusters]]\nname = \"d\"\nport = -1\n"), 8, Some("clusters[1].port"), "-1 is not a port"),
            ("bad role", format!("{HOST}roles = [\"etcd\", \"master\"]\n"), 4, Some("hosts[0].roles"), "unknown role \"master\": use control-plane, etcd, worker"),
            ("bad duration", format!("{HOST}connect_timeout = \"10 s\"\n"), 4, Some("hosts[0].connect_timeout"), "\"10 s\" is not a duration: write \"500ms\""),
            ("zero duration", format!("[defaults]\ncommand_timeout = 0\n{HOST}"), 2, Some("defaults.command_timeout"), "zero"),
            ("bad policy", format!("[defaults]\nhost_key_policy = \"tofu\"\n{HOST}"), 2, Some("defaults.host_key_policy"), "\"tofu\" is not a host key policy: use \"strict\" or \"accept-new\""),
            ("concurrency 0", format!("[defaults]\nconcurrency = 0\n{HOST}"), 2, Some("defaults.concurrency"), "use 1 to 65535"),
            ("concurrency too big", format!("[defaults]\nconcurrency = 65536\n{HOST}"), 2, Some("defaults.concurrency"), "use 1 to 65535"),
            ("keep_scans 0", format!("[defaults]\nkeep_scans = 0\n{HOST}"), 2, Some("defaults.keep_scans"), "keep at least 1 scan"),
            ("empty schedule", format!("[defaults]\nschedule = \" \"\n{HOST}"), 2, Some("defaults.schedule"), "cron expression"),
            ("empty known_hosts", format!("[defaults]\nknown_hosts = []\n{HOST}"), 2, Some("defaults.known_hosts"), "at least one known_hosts file"),
            ("empty path", format!("[defaults]\ndatabase = \"\"\n{HOST}"), 2, Some("defaults.database"), "empty path"),
            ("~user path", format!("[defaults]\nreport_dir = \"~bob/r\"\n{HOST}"), 2, Some("defaults.report_dir"), "only \"~/\""),
            ("missing key file", format!("{HOST}identity_file = \"keys/nope\"\n"), 4, Some("hosts[0].identity_file"), "missing key file"),
            ("missing key file in a list", format!("[defaults]\nidentity_file = [\"keys/id_ed25519\", \"~/.ssh/id_dsa\"]\n{HOST}"), 2, Some("defaults.identity_file"), "id_dsa: create it with ssh-keygen or fix the path"),
            ("key path is a directory", format!("{cluster}identity_file = \"keys\"\n{HOST}"), 3, Some("clusters[0].identity_file"), "is not a file"),
            ("bad jump", format!("{HOST}jump = \"audit@bastion:0\"\n"), 4, Some("hosts[0].jump"), "\"audit@bastion:0\" is not a jump host"),
            ("bad user", format!("[defaults]\nuser = \"a b\"\n{HOST}"), 2, Some("defaults.user"), "\"a b\" is not a user name"),
            ("max_file_bytes 0", format!("{HOST}max_file_bytes = 0\n"), 4, Some("hosts[0].max_file_bytes"), "use 1 to 67108864 (64 MiB)"),
            ("max_file_bytes too big", format!("[defaults]\nmax_file_bytes = 67108865\n{HOST}"), 2, Some("defaults.max_file_bytes"), "use 1 to"),
            ("max_files 0", format!("{cluster}max_files = 0\n{HOST}"), 3, Some("clusters[0].max_files"), "0 paths: use 1 to 4096"),
            ("max_files as text", format!("{HOST}max_files = \"10\"\n"), 4, None, "max_files: invalid type: string"),
            ("zero file_budget", format!("{HOST}file_budget = \"0s\"\n"), 4, Some("hosts[0].file_budget"), "zero"),
            ("bad file_budget", format!("{HOST}file_budget = \"ten\"\n"), 4, Some("hosts[0].file_budget"), "is not a duration"),
            ("blank sftp_command", format!("{HOST}sftp_command = \"  \"\n"), 4, Some("hosts[0].sftp_command"), "only spaces"),
            ("multi-line sftp_command", format!("[defaults]\nsftp_command = \"sudo -n x\\nreboot\"\n{HOST}"), 2, Some("defaults.sftp_command"), "control character '\\n'"),
        ];
        let file = fx.file().display().to_string();
        for (what, text, line, key, part) in cases {
            let e = fx.parse(&text).expect_err(what).to_string();
            assert!(e.starts_with(&format!("{file}:{line}:")), "{what}: wrong place: {e}");
            if let Some(key) = key {
                assert!(e.contains(&format!(": {key}: ")), "{what}: key {key} not named: {e}");
            }
            assert!(e.contains(part), "{what}: {e}");
        }
        // Error positions point at the value: column too.
        let e = fx.parse("[[hosts]]\nname = \"a\"\naddress = \"10.0.0.300\"\n").unwrap_err().to_string();
        assert!(e.starts_with(&format!("{file}:3:11: hosts[0].address: ")), "{e}");
    }

    #[test]
    fn the_example_inventory_parses() {
        let fx = Fixture::new();
        let path = fx.dir.path().join("inventory.example.toml");
        let inv = parse_in(&path, include_str!("../inventory.example.toml"), &fx.env).unwrap();
        let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["prod-cp-1", "prod-cp-2", "prod-worker-1", "prod-worker-2", "lab-1"]);
        let s = &inv.settings;
        assert_eq!((s.host_key_policy, s.concurrency, s.keep_scans), (HostKeyPolicy::Strict, 64, Some(90)));
        assert_eq!(s.accepted_hosts, fx.dir.path().join("fleetaudit.db.known_hosts"));
        assert_eq!(s.schedule.as_deref(), Some("0 */6 * * *"));

        let bastion = Some(Jump {
            user: Some("audit".into()),
            address: "bastion.example.internal".into(),
            port: 2222,
            ..Jump::default()
        });
        let cp2 = inv.host("prod-cp-2").unwrap();
        assert_eq!(
            (cp2.address.as_str(), cp2.cluster.as_deref(), &written(&cp2.jump)),
            ("2001:db8::12", Some("prod"), &bastion)
        );
        assert_eq!((&cp2.roles, cp2.connect_timeout), (&vec![Role::ControlPlane, Role::Etcd], Duration::from_secs(5)));
        assert_eq!(cp2.identity_files, vec![fx.home().join(".ssh/id_ed25519")]);
        let w1 = inv.host("prod-worker-1").unwrap();
        assert_eq!((&w1.roles, w1.command_timeout), (&vec![Role::Worker], Duration::from_secs(60)));
        let w2 = inv.host("prod-worker-2").unwrap();
        assert_eq!(
            (w2.cluster.as_deref(), &written(&w2.jump), &w2.roles),
            (Some("prod"), &bastion, &vec![Role::Worker])
        );
        let lab = inv.host("lab-1").unwrap();
        assert_eq!((lab.port, lab.user.as_str(), lab.cluster.as_deref()), (2222, "admin", None));
        let chain: Vec<String> = lab.jump.iter().map(ToString::to_string).collect();
        assert_eq!(chain, ["[2001:db8::1]:22", "lab-gw.example.internal:22"]);
        assert_eq!(lab.identity_files, vec![fx.home().join(".ssh/id_ecdsa"), fx.home().join(".ssh/id_rsa")]);
        assert_eq!((lab.roles.len(), lab.connect_timeout), (3, Duration::from_secs(20)));
    }

    #[test]
    fn the_example_documents_every_key() {
        let example = include_str!("../inventory.example.toml");
        let keys = DEFAULTS_ONLY.iter().copied().chain([
            "user",
            "port",
            "identity_file",
            "certificate_file",
            "roles",
            "jump",
            "connect_timeout",
            "command_timeout",
            "sftp_command",
            "max_file_bytes",
            "max_files",
            "file_budget",
            "zone",
            "name",
            "address",
            "cluster",
        ]);
        for key in keys {
            let written = example.lines().any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = ")));
            assert!(written, "inventory.example.toml does not show `{key}`");
        }
        let addresses = regex::Regex::new(r#"address = "([^"]+)""#).unwrap();
        for c in addresses.captures_iter(example) {
            let a = &c[1];
            let documentation = a.starts_with("192.0.2.")
                || a.starts_with("198.51.100.")
                || a.starts_with("2001:db8:")
                || a.ends_with(".example.internal");
            assert!(documentation, "{a} is not a documentation address");
        }
    }

    /// The Debian package's /etc/fleetaudit/inventory.toml is the example with the package's paths: nothing
    /// else may drift.
    #[test]
    fn the_packaged_inventory_is_the_example_with_system_paths() {
        let example = include_str!("../inventory.example.toml");
        let packaged = include_str!("../packaging/inventory.toml");
        let body =
            packaged.split_once("#\n# fleetaudit inventory:").map(|(_, b)| format!("# fleetaudit inventory:{b}"));
        let body = body.expect("the package header, then the example");
        let differ: Vec<(&str, &str)> = example.lines().zip(body.lines()).filter(|(a, b)| a != b).collect();
        let keys: Vec<&str> = differ.iter().map(|(a, _)| a.split(" = ").next().unwrap_or(a)).collect();
        assert_eq!(keys, ["known_hosts", "accepted_hosts", "database", "report_dir", "identity_file"], "{differ:#?}");
        assert_eq!(example.lines().count(), body.lines().count());
        assert!(differ.iter().all(|(_, b)| b.contains("\"/etc/fleetaudit/") || b.contains("\"/var/lib/fleetaudit/")));
        // It parses but for the key, which the administrator makes (README, Install).
        let fx = Fixture::new();
        let with_key = packaged.replace("\"/etc/fleetaudit/id_ed25519\"", "\"~/.ssh/id_ed25519\"");
        let inv = parse_in(Path::new("/etc/fleetaudit/inventory.toml"), &with_key, &fx.env).unwrap();
        assert_eq!(inv.settings.database, Database::Sqlite(PathBuf::from("/var/lib/fleetaudit/history.db")));
    }

    #[test]
    fn ssh_config_fills_in_what_the_inventory_leaves_unset() {
        let fx = Fixture::new();
        let home = fx.home();
        let cfg = fx.dir.path().join("ssh_config");
        std::fs::write(
            &cfg,
            "Host cp-* !cp-9\n  HostName %h.prod.example.internal\n  Port 2201\n  User cfg-user\n  \
             IdentityFile ~/.ssh/id_ecdsa\n  IdentityFile ~/.ssh/not-there\n  UserKnownHostsFile ~/.ssh/kh-%h\n  \
             ProxyJump ssh://jumper\n\
             Host jumper\n  HostName 192.0.2.100\n  Port 2022\n  User jump-user\n  IdentityFile keys/id_ed25519\n  \
             ProxyJump none\n\
             Host direct\n  ProxyJump none\n  HostName 192.0.2.7\n",
        )
        .unwrap();
        let text = "[defaults]\nssh_config = \"ssh_config\"\n\
                    [[hosts]]\nname = \"a\"\naddress = \"cp-1\"\n\
                    [[hosts]]\nname = \"b\"\naddress = \"cp-2\"\nport = 22\nuser = \"me\"\nidentity_file = []\njump = \"\"\n\
                    [[hosts]]\nname = \"c\"\naddress = \"cp-9\"\n\
                    [[hosts]]\nname = \"d\"\naddress = \"direct\"\njump = \"jumper:1\"\n";
        let inv = fx.parse(text).unwrap();
        assert_eq!(inv.settings.ssh_config, Some(cfg.clone()));
        let a = inv.host("a").unwrap();
        assert_eq!((a.address.as_str(), a.port, a.user.as_str()), ("cp-1.prod.example.internal", 2201, "cfg-user"));
        assert_eq!(a.identity_files, vec![home.join(".ssh/id_ecdsa")], "missing IdentityFiles are skipped");
        assert_eq!(a.known_hosts, vec![home.join(".ssh/kh-cp-1.prod.example.internal")]);
        let j = &a.jump[0];
        assert_eq!((j.user.as_deref(), j.address.as_str(), j.port), (Some("jump-user"), "192.0.2.100", 2022));
        assert_eq!(j.identity_files, Some(vec![fx.dir.path().join("keys/id_ed25519")]), "relative to the config file");
        assert_eq!(j.known_hosts, vec![home.join(".ssh/known_hosts")]);
        // Whatever the inventory sets wins; `jump = ""` cancels ProxyJump.
        let b = inv.host("b").unwrap();
        assert_eq!((b.port, b.user.as_str(), b.identity_files.is_empty(), &b.jump), (22, "me", true, &vec![]));
        assert_eq!(b.address, "cp-2.prod.example.internal", "HostName maps the alias the inventory wrote");
        // Negated: fleetaudit's defaults.
        let c = inv.host("c").unwrap();
        assert_eq!((c.address.as_str(), c.port, c.user.as_str(), &c.jump), ("cp-9", 22, "tester", &vec![]));
        // An inventory jump's name is looked up too; its written port wins.
        let d = inv.host("d").unwrap();
        assert_eq!(d.address, "192.0.2.7");
        let j = &d.jump[0];
        assert_eq!((j.user.as_deref(), j.address.as_str(), j.port), (Some("jump-user"), "192.0.2.100", 1));

        // known_hosts written in the inventory wins over UserKnownHostsFile, for hosts and jump hosts.
        let inv = fx.parse(&format!("[defaults]\nknown_hosts = \"kh\"\n{}", &text[11..])).unwrap();
        let a = inv.host("a").unwrap();
        assert_eq!(
            (&a.known_hosts, &a.jump[0].known_hosts),
            (&vec![fx.dir.path().join("kh")], &vec![fx.dir.path().join("kh")])
        );

        // The command line's file replaces the inventory's.
        let other = fx.dir.path().join("other_config");
        std::fs::write(&other, "Host cp-1\n  Port 3000\n").unwrap();
        let options = LoadOptions { ssh_config: Some(other.clone()) };
        let inv = parse_in_with(&fx.file(), text, &fx.env, &options).unwrap();
        assert_eq!((inv.host("a").unwrap().port, inv.settings.ssh_config.as_ref()), (3000, Some(&other)));
    }

    #[test]
    fn jump_chains_and_user_certificates() {
        let fx = Fixture::new();
        std::fs::write(fx.dir.path().join("keys/id_ed25519-cert.pub"), "cert").unwrap();
        let inv = fx
            .parse(
                "[defaults]\njump = [\"ops@a.example.internal:2022\", \"b.example.internal\"]\n\
                 certificate_file = \"keys/id_ed25519-cert.pub\"\n\
                 [[hosts]]\nname = \"list\"\naddress = \"192.0.2.1\"\n\
                 [[hosts]]\nname = \"comma\"\naddress = \"192.0.2.2\"\njump = \"a,b:2\"\ncertificate_file = []\n\
                 [[hosts]]\nname = \"direct\"\naddress = \"192.0.2.3\"\njump = []\n",
            )
            .unwrap();
        let chain = |h: &str| inv.host(h).unwrap().jump.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(chain("list"), ["ops@a.example.internal:2022", "b.example.internal:22"]);
        assert_eq!(chain("comma"), ["a:22", "b:2"]);
        assert!(chain("direct").is_empty());
        assert_eq!(inv.host("list").unwrap().certificate_files, vec![fx.dir.path().join("keys/id_ed25519-cert.pub")]);
        assert!(inv.host("comma").unwrap().certificate_files.is_empty());
        for (text, part) in [
            (format!("{HOST}certificate_file = \"keys/nope-cert.pub\"\n"), "missing certificate"),
            (format!("{HOST}jump = [\"a\", \"b:0\"]\n"), "\"b:0\" is not a jump host"),
            (format!("{HOST}jump = \"{}\"\n", ["h"; 9].join(",")), "at most 8"),
        ] {
            let e = fx.parse(&text).unwrap_err().to_string();
            assert!(e.contains(":4:") && e.contains(part), "{e}");
        }

        // ssh_config: `ProxyJump a,b`, CertificateFile, and a first hop whose own ProxyJump goes before it.
        let cfg = fx.dir.path().join("ssh_config");
        std::fs::write(
            &cfg,
            "Host node\n  ProxyJump second,third\n  CertificateFile keys/id_ed25519-cert.pub\n  CertificateFile gone\n\
             Host second\n  HostName 192.0.2.52\n  ProxyJump first\nHost third\n  ProxyJump elsewhere\n",
        )
        .unwrap();
        let inv =
            fx.parse("[defaults]\nssh_config = \"ssh_config\"\n[[hosts]]\nname = \"n\"\naddress = \"node\"\n").unwrap();
        let n = &inv.hosts[0];
        let chain: Vec<String> = n.jump.iter().map(ToString::to_string).collect();
        assert_eq!(chain, ["first:22", "192.0.2.52:22", "third:22"], "only the first hop's ProxyJump applies");
        assert_eq!(n.certificate_files, vec![fx.dir.path().join("keys/id_ed25519-cert.pub")], "missing ones skipped");
    }

    #[test]
    fn ssh_config_errors_name_its_file_line_and_the_host() {
        let fx = Fixture::new();
        let cfg = fx.dir.path().join("ssh_config");
        let inv = "[defaults]\nssh_config = \"ssh_config\"\n[[hosts]]\nname = \"a\"\naddress = \"node\"\n";
        for (config, line, part) in [
            ("Host node\n  HostName not_an_address\n", 2, "HostName: \"not_an_address\" is not an IPv4/IPv6"),
            ("\nHost *\n  ProxyJump a,b@\n", 3, "ProxyJump: \"b@\" is not a jump host"),
            (
                "Host node\n  ProxyJump b1\nHost b1\n  ProxyJump b2\nHost b2\n  ProxyJump b1\n",
                6,
                "loop or chain more than 8",
            ),
            ("Host node\n  ProxyJump bad@@x\n", 2, "ProxyJump: \"bad@@x\" is not a jump host"),
            ("Host *\n  IdentityFile ~/.ssh/id_%C\n", 2, "token %C is not supported"),
            ("Host *\n  User \"a b\"\n", 2, "User: \"a b\" is not a user name"),
            ("Match exec true\n", 1, "Match exec"),
        ] {
            std::fs::write(&cfg, config).unwrap();
            let e = fx.parse(inv).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{}:{line}: ", cfg.display())) && e.contains(part), "{config:?}: {e}");
        }
        // A jump host naming itself (`Host *` giving everything the same ProxyJump) is not a chain.
        std::fs::write(&cfg, "Host *\n  ProxyJump bastion\n").unwrap();
        let h = fx.parse(inv).unwrap().hosts.remove(0);
        assert_eq!(h.jump.iter().map(|j| j.address.as_str()).collect::<Vec<_>>(), ["bastion"]);
        std::fs::remove_file(&cfg).unwrap();
        let e = fx.parse(inv).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: cannot read this ssh_config file: ", cfg.display())), "{e}");
    }

    #[test]
    fn load_reads_the_file_and_names_it_when_it_cannot() {
        let fx = Fixture::new();
        std::fs::write(fx.file(), HOST).unwrap();
        assert_eq!(load(&fx.file()).unwrap().hosts[0].name, "a");
        let missing = fx.dir.path().join("nope.toml");
        let e = load(&missing).unwrap_err();
        assert!(matches!(e, InventoryError::Read { .. }));
        assert!(e.to_string().contains(&missing.display().to_string()), "{e}");
    }
}
