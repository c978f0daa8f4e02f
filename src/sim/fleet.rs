//! A simulated fleet and the directory a scanner needs to audit it: the client key (`id_ed25519`, mode 0600),
//! `known_hosts` (right, missing or wrong keys as each node's [`Behavior`] calls for) and `inventory.toml`.
//! Shared by `fleetaudit demo` (its fixed fleet) and `fleetaudit simulate` (a fleet of any size, with faults).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Behavior, NodeSpec, PROFILES, Profile, RunningNode, SimError};

/// A node of a fleet, with what the inventory says about it.
#[derive(Debug, Clone)]
pub struct Member {
    pub spec: NodeSpec,
    pub cluster: String,
    pub roles: Vec<String>,
    /// A comment for the node's inventory entry.
    pub note: String,
}

/// The run-wide settings written to the inventory's `[defaults]`.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// The inventory's first comment line(s), each starting with `#`.
    pub header: String,
    pub concurrency: Option<usize>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Written as `sftp_command`: the nodes' files are read as root through it, as the README recommends.
    pub sftp_command: Option<String>,
}

/// A running fleet and its directory; the nodes run while this lives.
pub struct Fleet {
    pub dir: PathBuf,
    pub inventory: PathBuf,
    pub nodes: Vec<RunningNode>,
}

impl Fleet {
    /// How many nodes behave in each way, in [`Behavior::FAULTS`] order after the healthy ones.
    pub fn counts(&self) -> Vec<(Behavior, usize)> {
        std::iter::once(Behavior::Normal)
            .chain(Behavior::FAULTS.iter().copied())
            .map(|b| (b, self.nodes.iter().filter(|n| n.behavior == b).count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Starts `members` on 127.0.0.1 and writes `dir`/{id_ed25519, known_hosts, inventory.toml}. The inventory
/// is written last, by renaming a complete file, so whoever waits for it finds the fleet up.
pub async fn launch(dir: &Path, members: Vec<Member>, settings: &ScanSettings) -> Result<Fleet, SimError> {
    let io = |what: &str, path: &Path| {
        let what = format!("{what} {}", path.display());
        move |source| SimError::Io { what, source }
    };
    create_private_dir(dir).map_err(io("cannot create", dir))?;
    let dir = dir.canonicalize().map_err(io("cannot resolve", dir))?;
    let client = super::generate_key("fleetaudit-simulated-fleet").map_err(SimError::Key)?;
    let key_path = dir.join("id_ed25519");
    write_private(&key_path, &super::private_key_text(&client)).map_err(io("cannot write", &key_path))?;
    let specs = members.iter().map(|m| m.spec.clone()).collect();
    let nodes = super::start(specs, vec![client.public_key().clone()]).await?;

    let mut known = String::new();
    for node in &nodes {
        if let Some(line) = node.known_hosts_line() {
            known.push_str(&line);
            known.push('\n');
        }
    }
    let known_path = dir.join("known_hosts");
    write_private(&known_path, &known).map_err(io("cannot write", &known_path))?;

    let inventory = inventory_text(&members, &nodes, settings);
    let path = dir.join("inventory.toml");
    let partial = dir.join("inventory.toml.partial");
    write_private(&partial, &inventory).map_err(io("cannot write", &partial))?;
    std::fs::rename(&partial, &path).map_err(io("cannot write", &path))?;
    Ok(Fleet { dir, inventory: path, nodes })
}

fn inventory_text(members: &[Member], nodes: &[RunningNode], s: &ScanSettings) -> String {
    let mut out = s.header.clone();
    let _ = write!(
        out,
        "\n[defaults]\nuser = \"audit\"\nidentity_file = \"id_ed25519\"\nknown_hosts = \"known_hosts\"\n\
         database = \"fleetaudit.db\"\nreport_dir = \"report\"\nconnect_timeout = \"{}\"\ncommand_timeout = \"{}\"\n",
        duration_text(s.connect_timeout),
        duration_text(s.command_timeout)
    );
    if let Some(c) = s.concurrency {
        let _ = writeln!(out, "concurrency = {c}");
    }
    if let Some(c) = &s.sftp_command {
        let _ = writeln!(
            out,
            "# Files are read as root through sudo's read-only SFTP server (README: Files over SFTP); without this line,\n\
             # as the audit user, which cannot read root-only files (kubeadm's /var/lib/etcd, an etcd's environment).\n\
             sftp_command = \"{c}\""
        );
    }
    let mut clusters: Vec<&str> = Vec::new();
    for m in members {
        if !clusters.contains(&m.cluster.as_str()) {
            clusters.push(&m.cluster);
        }
    }
    for c in clusters {
        let _ = write!(out, "\n[[clusters]]\nname = \"{c}\"\n");
    }
    for (m, node) in members.iter().zip(nodes) {
        let roles: Vec<String> = m.roles.iter().map(|r| format!("{r:?}")).collect();
        let _ = write!(
            out,
            "\n[[hosts]]  # {}\nname = \"{}\"\ncluster = \"{}\"\naddress = \"{}\"\nport = {}\nroles = [{}]\n",
            m.note,
            node.name,
            m.cluster,
            node.addr.ip(),
            node.addr.port(),
            roles.join(", ")
        );
    }
    out
}

/// A duration the inventory reads back: whole seconds as `"10s"`, else milliseconds.
fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
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

/// What `fleetaudit simulate` starts.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// Healthy nodes.
    pub nodes: usize,
    /// Added to every flight of bytes a node sends.
    pub latency: Duration,
    /// The profile every node serves; `None`: each profile in turn.
    pub profile: Option<&'static Profile>,
    /// Faulty nodes added beside the healthy ones: how many of each fault.
    pub faults: Vec<(Behavior, usize)>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

/// Reads `--profile`: a profile name or `mix`.
pub fn parse_profile(s: &str) -> Result<Option<&'static Profile>, String> {
    if s == "mix" {
        return Ok(None);
    }
    super::find_profile(s).map(Some).ok_or_else(|| {
        let names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
        format!("unknown profile {s:?}; one of mix, {}", names.join(", "))
    })
}

/// Reads `--faults`: `none`, `all` (one node of every fault), or a comma-separated list of `KIND` (one node)
/// and `KIND=COUNT`, which may also include `all`.
pub fn parse_faults(s: &str) -> Result<Vec<(Behavior, usize)>, String> {
    let mut counts: Vec<(Behavior, usize)> = Behavior::FAULTS.iter().map(|b| (*b, 0)).collect();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item {
            "none" => {}
            "all" => counts.iter_mut().for_each(|(_, n)| *n += 1),
            _ => {
                let (name, count) = item.split_once('=').unwrap_or((item, "1"));
                let count: usize =
                    count.trim().parse().map_err(|_| format!("{item:?}: the count after `=` must be a number"))?;
                let slot = counts.iter_mut().find(|(b, _)| b.name() == name.trim()).ok_or_else(|| {
                    let names: Vec<&str> = Behavior::FAULTS.iter().map(|b| b.name()).collect();
                    format!("unknown fault {name:?}; one of {}", names.join(", "))
                })?;
                slot.1 += count;
            }
        }
    }
    counts.retain(|(_, n)| *n > 0);
    Ok(counts)
}

/// The `--help` text listing what `--profile` and `--faults` accept.
pub fn help() -> String {
    let mut s = String::from(
        "Examples:\n  fleetaudit simulate --nodes 10000 --latency 50ms --dir /tmp/fleet\n    \
         then, in another shell: fleetaudit scan -i /tmp/fleet/inventory.toml --concurrency 512\n  \
         fleetaudit simulate --nodes 5 --faults all --dir /tmp/faults\n  \
         fleetaudit simulate --nodes 100 --profile kubeadm-default --faults flood=2,silent=3 --dir /tmp/fleet\n\n\
         Serves until SIGINT/SIGTERM; every start writes new ports and keys. Profiles (what a node's ps -ef shows, \
         and the cluster it is listed in): mix (each in turn)",
    );
    for p in PROFILES {
        let _ = write!(s, ", {}", p.name);
    }
    s.push_str(".\n\nFaults (and what a correct scanner records):\n");
    for b in Behavior::FAULTS {
        let what = match (b.expected_kind(), b.file_effect()) {
            (Some(kind), _) => kind.to_owned(),
            (None, Some(effect)) => format!("audited; {effect}"),
            (None, None) => "audited as a healthy node".to_owned(),
        };
        let _ = writeln!(s, "  {:<18} {what}", b.name());
    }
    s
}

/// The nodes `fleetaudit simulate` starts: the healthy ones (`node-N`), then the faulty ones (`FAULT-N`),
/// each listed in the cluster named after its profile, with that profile's roles. With profiles in turn, a
/// fault that replaces the kubelet's config goes to the next profile whose kubelet has one, so that it shows.
pub fn plan(o: &SimulateOptions) -> Vec<Member> {
    let tables: Vec<Arc<Vec<u8>>> = PROFILES.iter().map(|p| Arc::new(p.capture.as_bytes().to_vec())).collect();
    let pick = |i: usize, behavior: Behavior| match o.profile {
        Some(p) => PROFILES.iter().position(|q| q.name == p.name).unwrap_or(0),
        None => (0..PROFILES.len())
            .map(|k| (i + k) % PROFILES.len())
            .find(|k| {
                (!behavior.replaces_kubelet_config() || PROFILES[*k].files().kubelet_config().is_some())
                    && (!behavior.replaces_kubelet_certificate() || PROFILES[*k].files().kubelet_serving().is_some())
            })
            .unwrap_or(i % PROFILES.len()),
    };
    let width = o.nodes.max(1).to_string().len();
    let member = |i: usize, name: String, behavior: Behavior| {
        let k = pick(i, behavior);
        let p = &PROFILES[k];
        let note = match behavior.expected_kind() {
            _ if behavior == Behavior::Normal => format!("profile {}", p.name),
            Some(kind) => format!("profile {}, fault {}: a scanner should record {kind}", p.name, behavior.name()),
            None => match behavior.file_effect() {
                Some(effect) => format!("profile {}, fault {}: audited; {effect}", p.name, behavior.name()),
                None => format!("profile {}, fault {}: a scanner should audit it", p.name, behavior.name()),
            },
        };
        Member {
            spec: NodeSpec { name, table: tables[k].clone(), behavior, latency: o.latency },
            cluster: p.name.to_owned(),
            roles: p.roles.iter().map(|r| (*r).to_owned()).collect(),
            note,
        }
    };
    let mut members: Vec<Member> =
        (0..o.nodes).map(|i| member(i, format!("node-{:0width$}", i + 1), Behavior::Normal)).collect();
    for (behavior, count) in &o.faults {
        for k in 0..*count {
            members.push(member(members.len(), format!("{}-{}", behavior.name(), k + 1), *behavior));
        }
    }
    members
}

/// Starts the fleet `o` describes and writes its directory.
pub async fn simulate(dir: &Path, o: &SimulateOptions) -> Result<Fleet, SimError> {
    let members = plan(o);
    let settings = ScanSettings {
        header: format!(
            "# Written by `fleetaudit simulate`: {} simulated nodes on 127.0.0.1 (new ports and host keys at each \
             run); the cluster of a node is its profile.\n",
            members.len()
        ),
        concurrency: Some(256),
        connect_timeout: o.connect_timeout,
        command_timeout: o.command_timeout,
        sftp_command: Some(super::SUDO_SFTP_COMMAND.to_owned()),
    };
    launch(dir, members, &settings).await
}

/// The one-line summary `fleetaudit simulate` prints once the fleet is up.
pub fn summary(fleet: &Fleet, latency: Duration) -> String {
    let ports = fleet.nodes.iter().map(|n| n.addr.port());
    let (lo, hi) = (ports.clone().min().unwrap_or(0), ports.max().unwrap_or(0));
    let counts: Vec<String> = fleet.counts().iter().map(|(b, n)| format!("{n} {}", b.name())).collect();
    let latency = if latency.is_zero() { "no added latency".to_owned() } else { format!("{latency:?} a round trip") };
    format!(
        "simulating {} nodes ({}) on 127.0.0.1 ports {lo}-{hi}, {latency}; scan them with: \
         fleetaudit scan -i {} --concurrency 512 (Ctrl-C stops the fleet)",
        fleet.nodes.len(),
        counts.join(", "),
        fleet.inventory.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_and_profiles_parse() {
        assert_eq!(parse_faults("none").unwrap(), []);
        assert_eq!(parse_faults("all").unwrap().len(), Behavior::FAULTS.len());
        assert_eq!(
            parse_faults("flood=2, silent,flood=1").unwrap(),
            [(Behavior::Silent, 1), (Behavior::Flood, 3)],
            "in FAULTS order, counts added up"
        );
        assert!(parse_faults("all,hidepid=2").unwrap().contains(&(Behavior::Hidepid, 3)));
        assert!(parse_faults("flod=2").unwrap_err().contains("unknown fault \"flod\""));
        assert!(parse_faults("flood=x").unwrap_err().contains("must be a number"));
        assert!(parse_profile("mix").unwrap().is_none());
        assert_eq!(parse_profile("k3s").unwrap().unwrap().name, "k3s");
        assert!(parse_profile("k8s").unwrap_err().contains("kubeadm-default"));
        for b in Behavior::FAULTS {
            assert_eq!(Behavior::parse(b.name()), Some(*b));
        }
    }

    #[test]
    fn plan_names_profiles_and_shares_tables() {
        let o = SimulateOptions {
            nodes: 12,
            latency: Duration::from_millis(5),
            profile: None,
            faults: vec![(Behavior::Flood, 2)],
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(1500),
        };
        let m = plan(&o);
        assert_eq!(m.len(), 14);
        assert_eq!(m[0].spec.name, "node-01");
        assert_eq!(m[11].spec.name, "node-12");
        assert_eq!((m[12].spec.name.as_str(), m[12].spec.behavior), ("flood-1", Behavior::Flood));
        assert_eq!(m[1].cluster, PROFILES[1].name);
        let n = PROFILES.len();
        assert!(n < 12, "the fleet goes round the profiles");
        assert_eq!(m[n].cluster, m[0].cluster, "profiles in turn");
        assert!(Arc::ptr_eq(&m[n].spec.table, &m[0].spec.table), "one table per profile, not per node");
        assert!(m.iter().all(|n| n.spec.latency == o.latency));
        assert_eq!(duration_text(o.command_timeout), "1500ms");

        // A fault that replaces the kubelet's config lands on a profile whose kubelet has one.
        let faults = Behavior::FAULTS.iter().map(|b| (*b, 3)).collect();
        for member in plan(&SimulateOptions { nodes: 0, faults, ..o.clone() }) {
            if member.spec.behavior.replaces_kubelet_config() {
                let profile = super::super::find_profile(&member.cluster).unwrap();
                assert!(profile.files().kubelet_config().is_some(), "{} on {}", member.spec.name, member.cluster);
            }
            if member.spec.behavior.replaces_kubelet_certificate() {
                let profile = super::super::find_profile(&member.cluster).unwrap();
                assert!(profile.files().kubelet_serving().is_some(), "{} on {}", member.spec.name, member.cluster);
            }
        }
        assert_eq!(duration_text(o.connect_timeout), "1s");
    }
}
