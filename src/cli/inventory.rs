//! `fleetaudit inventory`: `import` writes an inventory from an Ansible inventory or `kubectl get nodes -o json`
//! output (the work is `crate::import`'s), `check` validates one without connecting to anything.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::{BadInput, Exit, Format};
use crate::import::{self, Defaults, Imported, ansible};
use crate::model::Role;

#[derive(Debug, Subcommand)]
pub(super) enum InventoryCommand {
    /// Write an inventory from the nodes another tool lists: an Ansible inventory or `kubectl get nodes -o json`.
    #[command(
        subcommand,
        after_help = "Examples:\n  fleetaudit inventory import ansible hosts.ini --out inventory.toml\n  \
                      kubectl get nodes -o json | fleetaudit inventory import kubectl - --cluster prod\n\n\
                      What cannot be mapped is listed on stderr and in the written file, with its line; the result \
                      is read back with fleetaudit's inventory reader (exit 3 if it does not load)."
    )]
    Import(ImportSource),
    /// Validate an inventory (and the ssh_config it names) without connecting to anything: what `check` does
    /// before it connects.
    #[command(after_help = "Examples:\n  fleetaudit inventory check -i inventory.toml\n  \
                            fleetaudit inventory check -i inventory.toml --ssh-config ~/.ssh/config --format json\n\n\
                            Exit codes: 0 valid, 3 not (the error names the file, line and key).")]
    Check {
        /// The inventory (TOML).
        #[arg(short, long, value_name = "FILE")]
        inventory: PathBuf,
        /// OpenSSH client config to look the hosts up in (default: the inventory's `ssh_config`).
        #[arg(long, value_name = "PATH")]
        ssh_config: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum ImportSource {
    /// From an Ansible inventory, INI or YAML: groups become clusters (the outermost group that is not a role
    /// group), role groups roles, ansible_host/port/user/ssh_private_key_file and -J/ProxyJump in
    /// ansible_ssh_common_args the host's keys.
    #[command(after_help = "Examples:\n  fleetaudit inventory import ansible hosts.ini --out inventory.toml\n  \
                            fleetaudit inventory import ansible inventory/prod/hosts.yaml --cluster prod --known-hosts ~/.ssh/known_hosts\n  \
                            fleetaudit inventory import ansible hosts.ini --role ingress=worker --out inventory.toml --force\n\n\
                            Role groups: kube_control_plane, kube_master, control_plane, masters, master, server -> \
                            control-plane; etcd -> etcd; kube_node, nodes, node, workers, worker, agent -> worker. \
                            Whatever cannot be mapped is listed on stderr and in the inventory's header, with its line.")]
    Ansible {
        /// The Ansible inventory file (`-`: standard input).
        file: PathBuf,
        /// INI or YAML (default: by extension, else by content).
        #[arg(long = "source-format", value_enum)]
        source_format: Option<SourceFormat>,
        /// Put every host in this cluster instead of deriving clusters from groups.
        #[arg(long, value_name = "NAME")]
        cluster: Option<String>,
        /// A group whose hosts have a role, besides the built-in names: GROUP=control-plane|etcd|worker.
        #[arg(long = "role", value_name = "GROUP=ROLE", value_parser = parse_group_role)]
        roles: Vec<(String, Role)>,
        #[command(flatten)]
        output: ImportOutput,
    },
    /// From `kubectl get nodes -o json` output: each node at its InternalIP, roles from its
    /// node-role.kubernetes.io/* labels (a node without one is a worker), all in the cluster --cluster names.
    #[command(after_help = "Examples:\n  kubectl get nodes -o json > nodes.json\n  \
                            fleetaudit inventory import kubectl nodes.json --cluster prod --user audit --out inventory.toml\n  \
                            kubectl get nodes -o json | fleetaudit inventory import kubectl - --cluster prod --jump audit@bastion.example.internal")]
    Kubectl {
        /// The JSON document (`-`: standard input).
        file: PathBuf,
        /// The cluster the nodes belong to (kubectl's output does not say).
        #[arg(long, value_name = "NAME")]
        cluster: String,
        #[command(flatten)]
        output: ImportOutput,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum SourceFormat {
    Ini,
    Yaml,
}

/// Where the inventory goes and what its `[defaults]` say.
#[derive(Debug, clap::Args)]
pub(super) struct ImportOutput {
    /// Write the inventory here (default: standard output).
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    /// `user` in [defaults]: the SSH user for hosts the source gives none.
    #[arg(long)]
    user: Option<String>,
    /// `identity_file` in [defaults].
    #[arg(long, value_name = "PATH")]
    identity_file: Option<PathBuf>,
    /// `known_hosts` in [defaults].
    #[arg(long, value_name = "PATH")]
    known_hosts: Option<PathBuf>,
    /// `jump` in [defaults]: a jump host (or chain "a,b") for hosts the source gives none.
    #[arg(long, value_name = "SPEC")]
    jump: Option<String>,
}

fn parse_group_role(s: &str) -> Result<(String, Role), String> {
    let (g, r) = s.split_once('=').ok_or_else(|| format!("{s:?}: write GROUP=ROLE, e.g. ingress=worker"))?;
    let role =
        Role::parse(r).ok_or_else(|| format!("{s:?}: unknown role {r:?}; one of control-plane, etcd, worker"))?;
    Ok((g.to_owned(), role))
}

pub(super) fn run(command: InventoryCommand, out: &mut dyn Write) -> anyhow::Result<Exit> {
    match command {
        InventoryCommand::Check { inventory, ssh_config, format } => {
            let options = crate::inventory::LoadOptions { ssh_config };
            let inv = crate::inventory::load_with(&inventory, &options)?;
            let mut clusters: Vec<&str> = inv.hosts.iter().filter_map(|h| h.cluster.as_deref()).collect();
            clusters.sort_unstable();
            clusters.dedup();
            match format {
                Format::Json => {
                    let hosts: Vec<serde_json::Value> = inv
                        .hosts
                        .iter()
                        .map(|h| {
                            serde_json::json!({
                                "name": h.name, "cluster": h.cluster, "address": h.address, "port": h.port,
                                "user": h.user, "roles": h.roles,
                                "jump": h.jump.iter().map(ToString::to_string).collect::<Vec<_>>(),
                            })
                        })
                        .collect();
                    let doc = serde_json::json!({
                        "inventory": inv.path.display().to_string(), "valid": true, "clusters": clusters, "hosts": hosts,
                    });
                    serde_json::to_writer_pretty(&mut *out, &doc)?;
                    writeln!(out)?;
                }
                Format::Text => {
                    for h in &inv.hosts {
                        let jump: Vec<String> = h.jump.iter().map(ToString::to_string).collect();
                        let roles: Vec<&str> = h.roles.iter().map(|r| r.as_str()).collect();
                        writeln!(
                            out,
                            "{}  {}  {}@{}:{}{}  [{}]",
                            h.name,
                            h.cluster.as_deref().unwrap_or("-"),
                            h.user,
                            h.address,
                            h.port,
                            if jump.is_empty() { String::new() } else { format!(" via {}", jump.join(" -> ")) },
                            roles.join(", ")
                        )?;
                    }
                    writeln!(
                        out,
                        "\ninventory {}: {} hosts in {} clusters, valid (nothing was contacted; `fleetaudit check` \
                         reaches every host)",
                        inv.path.display(),
                        inv.hosts.len(),
                        clusters.len()
                    )?;
                }
            }
            out.flush()?;
            Ok(Exit::Ok)
        }
        InventoryCommand::Import(source) => {
            let command: Vec<String> = std::env::args().skip(1).collect();
            let command = format!("fleetaudit {}", command.join(" "));
            let (imported, output) = match source {
                ImportSource::Ansible { file, source_format, cluster, roles, output } => {
                    let text = import::read_source(&file)?;
                    let format = match source_format {
                        Some(SourceFormat::Ini) => ansible::Format::Ini,
                        Some(SourceFormat::Yaml) => ansible::Format::Yaml,
                        None => ansible::Format::detect(&file, &text),
                    };
                    let options = ansible::Options { cluster, roles };
                    (ansible::import(&file, &text, format, &options)?, output)
                }
                ImportSource::Kubectl { file, cluster, output } => {
                    let text = import::read_source(&file)?;
                    (import::kubectl::import(&file, &text, &cluster)?, output)
                }
            };
            write_import(&imported, output, &command, out)
        }
    }
}

/// Writes the inventory, lists what was not imported, and checks that the result loads with fleetaudit's own
/// reader (exit 3, naming what to fix, if it does not: a key file it names that is missing, say).
fn write_import(imported: &Imported, o: ImportOutput, command: &str, out: &mut dyn Write) -> anyhow::Result<Exit> {
    let defaults = Defaults { user: o.user, identity_file: o.identity_file, known_hosts: o.known_hosts, jump: o.jump };
    let text = import::render(imported, &defaults, command);
    let target = match &o.out {
        Some(path) => {
            if path.exists() && !o.force {
                bail!(BadInput(format!(
                    "{} exists: choose another --out, or add --force to replace it",
                    path.display()
                )));
            }
            crate::metrics::write_atomic_with(path, |w| w.write_all(text.as_bytes()))
                .with_context(|| format!("cannot write {}", path.display()))?;
            path.clone()
        }
        None => {
            out.write_all(text.as_bytes())?;
            out.flush()?;
            std::env::current_dir()?.join("inventory.toml")
        }
    };
    for n in &imported.notes {
        eprintln!("fleetaudit: not imported: {n}");
    }
    let mut clusters: Vec<&str> = imported.hosts.iter().filter_map(|h| h.cluster.as_deref()).collect();
    clusters.sort_unstable();
    clusters.dedup();
    let written = o.out.as_deref().map_or("standard output".to_owned(), |p| p.display().to_string());
    eprintln!(
        "fleetaudit: imported {} hosts in {} clusters from {} to {written}{}",
        imported.hosts.len(),
        clusters.len(),
        imported.source,
        match imported.notes.len() {
            0 => String::new(),
            n => format!("; {n} things not imported (listed above and in the file's header)"),
        }
    );
    if let Err(e) = crate::inventory::parse(&target, &text) {
        bail!(BadInput(format!(
            "the inventory was written to {written}, but it does not load yet: {e}. Fix it there (or the source \
             and import again); `fleetaudit inventory check -i FILE` tells when it loads"
        )));
    }
    Ok(Exit::Ok)
}
