//! The command line: argument parsing, the commands, and the mapping of outcomes to exit codes.
//!
//! Owns: what the user types and what the process returns. `anyhow` lives here and nowhere below.
//! Must not hold pipeline logic: each command calls the library stages in order.

mod eval;
mod inventory;
mod snapshot;

use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::model::{Role, Status};
use crate::output::{self, Style, Summary};
use crate::ps;
use crate::rules::{Engine, RuleSet};
use crate::scan::{ScanError, ScanOptions, ScanReport, Shard};
use crate::store::{Database, Store, StoreError};

/// Exit codes, as documented in the README: a script can tell "non-compliant" from "could not tell".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Every rule passed or did not apply.
    Ok = 0,
    /// A rule failed.
    Fail = 1,
    /// Something could not be judged (a host could not be audited, a rule could not be decided).
    Error = 2,
    /// Bad input or usage: a broken inventory, rule pack or `ps` capture, an unknown option.
    BadInput = 3,
    /// Another scan holds the database's lock.
    Locked = 4,
}

impl Exit {
    /// The exit code for verdict counts: errors outrank failures, which outrank passes.
    pub fn for_summary(s: &Summary) -> Exit {
        if s.error > 0 {
            Exit::Error
        } else if s.fail > 0 {
            Exit::Fail
        } else {
            Exit::Ok
        }
    }

    /// This exit code under a `--fail-on` policy: `error` lets failures pass, `never` lets failures and errors
    /// pass. Only verdict codes (1, 2) change; bad input (3) and a held lock (4) never do.
    pub fn under(self, policy: FailOn) -> Exit {
        match (policy, self) {
            (FailOn::Error, Exit::Fail) | (FailOn::Never, Exit::Fail | Exit::Error) => Exit::Ok,
            (_, exit) => exit,
        }
    }
}

/// `--fail-on`: which verdicts make the exit code non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum FailOn {
    /// 1 if a rule failed, 2 if a host could not be audited or a rule judged (the default).
    #[default]
    Fail,
    /// 2 if a host could not be audited or a rule judged; failed rules exit 0.
    Error,
    /// 0 whatever the verdicts; 3 (bad input) and 4 (locked) still happen.
    Never,
}

#[derive(Debug, Parser)]
#[command(
    name = "fleetaudit",
    version,
    about = "Agentless CIS compliance auditing of Kubernetes nodes over SSH",
    after_help = "Exit codes: 0 all pass, 1 a rule failed, 2 something could not be audited, 3 bad input or usage.\n\n\
                  Examples:\n  fleetaudit eval captured-ps.txt\n  ssh node ps -ef | fleetaudit eval - --format json\n  \
                  fleetaudit rules show 1.2.6"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on stderr as text (for people) or JSON (for log shippers). The level comes from
    /// FLEETAUDIT_LOG (e.g. `info`, `fleetaudit=debug`); default: info for `daemon`, warnings for a `scan` on a
    /// terminal, nothing otherwise.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Colour in text output (and logs): `auto` when the stream is a terminal and NO_COLOR is unset or empty.
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, global = true)]
    color: ColorWhen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ColorWhen {
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    /// Whether to colour a stream that `is_terminal` or not.
    fn colour(self, is_terminal: bool) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            // no-color.org: NO_COLOR present and not empty disables colour.
            ColorWhen::Auto => is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// What `scan` prints: its own list, since SARIF describes a scan and nothing else the other commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ScanFormat {
    /// A line per host, then the totals.
    Text,
    /// The scan as one JSON document (README "Outputs", schemas/scan-v2.schema.json).
    Json,
    /// The scan's failed and unjudged rules as a SARIF 2.1.0 log, for code-scanning dashboards.
    Sarif,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Audit every host of an inventory over SSH, store the verdicts, print a summary.
    #[command(after_help = "Examples:\n  fleetaudit scan -i inventory.toml\n  \
                            fleetaudit scan -i inventory.toml --only prod-cp-1 prod-cp-2 --concurrency 16\n  \
                            fleetaudit scan -i inventory.toml --db /var/lib/fleetaudit/history.db --quiet\n  \
                            fleetaudit scan -i inventory.toml --format json | jq '.findings[] | select(.status == \"fail\")'\n  \
                            fleetaudit scan -i inventory.toml --junit fleetaudit.xml --fail-on error\n  \
                            fleetaudit scan -i inventory.toml --format sarif > fleetaudit.sarif\n  \
                            fleetaudit scan -i inventory.toml --shard 2/4\n  \
                            fleetaudit scan -i inventory.toml --automated-only --quiet\n  \
                            fleetaudit scan -i inventory.toml --changes\n\n\
                            Exit codes: 0 all pass, 1 a rule failed, 2 a host or rule could not be audited, \
                            3 bad configuration, 4 another scan holds the database. --fail-on error: failed rules \
                            exit 0; --fail-on never: 1 and 2 become 0.")]
    Scan {
        #[command(flatten)]
        fleet: FleetArgs,
        /// The history: an SQLite file, or a postgres:// URL (default: the inventory's `database`).
        #[arg(long, env = "FLEETAUDIT_DB", hide_env_values = true, value_parser = parse_database)]
        db: Option<Database>,
        /// Hosts audited at once (default: the inventory's `concurrency`, else 64).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Print nothing (the exit code and the database say it all); for cron.
        #[arg(short, long)]
        quiet: bool,
        /// Print only what changed since each host's previous scan (newly failing, newly passing, no longer
        /// judged; hosts no longer audited, audited again, new), and nothing when nothing did: cron mails only news.
        #[arg(long, conflicts_with_all = ["quiet", "format"])]
        changes: bool,
        /// Extra rule pack(s) to load beside the embedded CIS pack.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
        /// After the scan, keep only the newest KEEP scans (default: the inventory's `keep_scans`).
        #[arg(long, value_name = "KEEP")]
        prune: Option<u32>,
        /// Write Prometheus metrics of the scan to this file (atomically), for node_exporter's textfile collector.
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<PathBuf>,
        #[command(flatten)]
        outputs: ScanOutputs,
    },
    /// Run scans on a cron schedule until SIGTERM/SIGINT: the service.
    #[command(after_help = "Examples:\n  fleetaudit daemon -i /etc/fleetaudit/inventory.toml\n  \
                            fleetaudit daemon -i inventory.toml --schedule '*/30 * * * *' --log-format json\n  \
                            fleetaudit daemon -i inventory.toml --schedule '0 */10 * * * *' --metrics-file /var/lib/node_exporter/fleetaudit.prom\n\n\
                            The schedule is a cron expression: 5 fields, or 6 with seconds first. Ticks that pass while a scan \
                            runs are skipped. SIGTERM/SIGINT: no new hosts are started, hosts in flight get --grace to finish, \
                            the scan is marked interrupted if cut short, and the daemon exits 0; a second signal exits at once.")]
    Daemon {
        /// The inventory (TOML), re-read before every scan.
        #[arg(short, long, value_name = "FILE")]
        inventory: PathBuf,
        /// Cron expression (default: the inventory's `schedule`).
        #[arg(long)]
        schedule: Option<String>,
        /// The history: an SQLite file, or a postgres:// URL (default: the inventory's `database`).
        #[arg(long, env = "FLEETAUDIT_DB", hide_env_values = true, value_parser = parse_database)]
        db: Option<Database>,
        /// Hosts audited at once (default: the inventory's `concurrency`).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Seconds hosts in flight may take to finish after SIGTERM.
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        grace: u64,
        /// After each scan keep only the newest KEEP scans (default: the inventory's `keep_scans`).
        #[arg(long, value_name = "KEEP")]
        prune: Option<u32>,
        /// Write Prometheus metrics after each scan to this file.
        #[arg(long, value_name = "PATH")]
        metrics_file: Option<PathBuf>,
        /// Extra rule pack(s) to load beside the embedded CIS pack.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
        /// OpenSSH client config to look the hosts up in (default: the inventory's `ssh_config`).
        #[arg(long, value_name = "PATH")]
        ssh_config: Option<PathBuf>,
        /// Audit only slice K of N of the inventory at every scan, as `scan --shard` (one daemon per slice, each
        /// with its own database).
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
        #[command(flatten)]
        sharing: SharingArgs,
    },
    /// Validate an inventory and reach every host (host key and login), without storing anything.
    #[command(after_help = "Examples:\n  fleetaudit check -i inventory.toml\n  \
                            fleetaudit check -i inventory.toml --only prod-cp-1\n  \
                            fleetaudit check -i inventory.toml --format json | jq -r '.hosts[] | select(.reachable | not) | .name'")]
    Check {
        #[command(flatten)]
        fleet: FleetArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Start a simulated fleet on 127.0.0.1, scan it over real SSH, and show where the results are.
    #[command(after_help = "Examples:\n  fleetaudit demo\n  fleetaudit demo --dir /tmp/fleetaudit-demo")]
    Demo {
        /// Where the demo's inventory, keys and database go.
        #[arg(long, default_value = "fleetaudit-demo")]
        dir: PathBuf,
    },
    /// Start a simulated fleet on 127.0.0.1 (russh servers, healthy and faulty) and serve it until SIGINT/SIGTERM,
    /// with the inventory, known_hosts and key to scan it from another shell.
    #[command(after_help = crate::sim::fleet::help())]
    Simulate {
        /// Healthy nodes to start (faulty ones come on top).
        #[arg(long, default_value_t = 10)]
        nodes: usize,
        /// Added to every round trip of every connection, e.g. 50ms.
        #[arg(long, default_value = "0ms", value_parser = parse_duration)]
        latency: Duration,
        /// What the nodes' `ps -ef` shows: a profile name or `mix` (each profile in turn).
        #[arg(long, default_value = "mix", value_parser = crate::sim::fleet::parse_profile)]
        profile: ProfileChoice,
        /// Faulty nodes to add: `none`, `all` (one of each), or KIND=COUNT,... (see below).
        #[arg(long, default_value = "none", value_parser = crate::sim::fleet::parse_faults)]
        faults: FaultCounts,
        /// The connect_timeout written to the inventory.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        connect_timeout: Duration,
        /// The command_timeout written to the inventory.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        command_timeout: Duration,
        /// Where the inventory, known_hosts and client key are written.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Render the HTML report of a scan from the database (the newest by default).
    #[command(after_help = "Examples:\n  fleetaudit report -i inventory.toml\n  \
                            fleetaudit report --db history.db --out report --scan 12\n\n\
                            Writes OUT/index.html (every scan), OUT/scan-ID/ (overview, rules/, hosts/) and \
                            OUT/latest/index.html (a redirect to the newest scan). Only the chosen scan's pages are \
                            re-rendered.")]
    Report {
        /// The scan to render (default: the newest).
        #[arg(long, value_name = "ID")]
        scan: Option<i64>,
        /// The report directory (default: the inventory's `report_dir`).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[command(flatten)]
        source: DbArgs,
    },
    /// The verdicts of a host, rule or cluster over time, and what changed in the latest scan.
    #[command(after_help = "Examples:\n  fleetaudit history -i inventory.toml --host prod-cp-2\n  \
                            fleetaudit history --db history.db --rule apiserver-anonymous-auth --format json\n  \
                            fleetaudit history --db history.db --cluster prod\n  \
                            fleetaudit history --db history.db --rule cluster-kubelet-serving-certificates")]
    History {
        #[command(flatten)]
        source: DbArgs,
        /// Only this host.
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
        /// The cluster rules' verdicts on this cluster (with `--rule`, of that cluster rule only).
        #[arg(long, value_name = "NAME", conflicts_with = "host")]
        cluster: Option<String>,
        /// Only this rule id.
        #[arg(long, value_name = "ID")]
        rule: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Judge a host offline: a snapshot tar (`fleetaudit snapshot`, or made by hand on the node), or a captured
    /// `ps -ef` output alone (every file-backed check is then an error).
    #[command(after_help = "Examples:\n  fleetaudit eval cp1.tar\n  fleetaudit eval node1-ps.txt\n  \
                            ssh node1 ps -ef | fleetaudit eval -\n  \
                            fleetaudit eval --role control-plane --format json cp1.tar\n  \
                            fleetaudit eval --rules site-rules.toml node1-ps.txt\n  \
                            fleetaudit eval --automated-only node1-ps.txt\n\n\
                            A tar made by hand on a node: `ps -ef > ps-ef.txt; tar cf node.tar ps-ef.txt \
                            /etc/kubernetes /var/lib/kubelet/config.yaml ...` (README: Snapshots).")]
    Eval {
        /// The snapshot tar or `ps -ef` capture to judge, or `-` for standard input.
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// The host's role(s): a component a role expects but the table lacks fails instead of not applying.
        #[arg(long = "role", value_parser = parse_role)]
        roles: Vec<Role>,
        /// Extra rule pack(s) to load beside the embedded CIS pack.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
        /// Which verdicts make the exit code non-zero: fail (1 for a failure, 2 for an error), error (only
        /// errors: 2), never (always 0).
        #[arg(long, value_enum, default_value_t = FailOn::Fail)]
        fail_on: FailOn,
        #[command(flatten)]
        judge: JudgeArgs,
    },
    /// Read one host as a scan does (its `ps -ef` and the files its processes name, secrets redacted) and
    /// write it as a tar that `fleetaudit eval` judges offline.
    #[command(after_help = "Examples:\n  fleetaudit snapshot -i inventory.toml cp1 -o cp1.tar\n  \
                            fleetaudit eval cp1.tar\n\n\
                            The tar holds ps-ef.txt first and each file at its path without the leading /, with its \
                            mode, owner ids and names in the headers; private keys and kubeconfigs only as their \
                            stat (empty members). `tar tvf cp1.tar` lists it.")]
    Snapshot {
        /// The inventory (TOML) that names the host.
        #[arg(short, long, value_name = "FILE")]
        inventory: PathBuf,
        /// The host, by its inventory name.
        host: String,
        /// Where to write the tar (`-`: standard output).
        #[arg(short, long, value_name = "FILE")]
        out: PathBuf,
        /// OpenSSH client config to look the host up in (default: the inventory's `ssh_config`).
        #[arg(long, value_name = "PATH")]
        ssh_config: Option<PathBuf>,
        /// Extra rule pack(s) whose files to read too.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
    },
    /// List the rules in force, or show one in full.
    #[command(after_help = "Examples:\n  fleetaudit rules\n  fleetaudit rules --format json\n  \
                            fleetaudit rules show 1.2.6")]
    Rules {
        #[command(subcommand)]
        show: Option<RulesCommand>,
        #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
        format: Format,
        /// Extra rule pack(s) to load beside the embedded CIS pack.
        #[arg(long = "rules", value_name = "FILE", global = true)]
        rules: Vec<PathBuf>,
    },
    /// Import an inventory from Ansible or kubectl, or validate one offline.
    #[command(
        subcommand,
        after_help = "Examples:\n  fleetaudit inventory import ansible hosts.ini --out inventory.toml\n  \
                      fleetaudit inventory import kubectl nodes.json --cluster prod --out inventory.toml\n  \
                      fleetaudit inventory check -i inventory.toml"
    )]
    Inventory(inventory::InventoryCommand),
    /// Print a shell completion script.
    #[command(after_help = "Examples:\n  fleetaudit completions bash > /etc/bash_completion.d/fleetaudit\n  \
                            fleetaudit completions zsh > \"${fpath[1]}/_fleetaudit\"\n  \
                            fleetaudit completions fish > ~/.config/fish/completions/fleetaudit.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// How a scanner takes part in scans it shares with others (a PostgreSQL history).
#[derive(Debug, Clone, clap::Args)]
struct SharingArgs {
    /// On a PostgreSQL history, where scanners share each scan: audit only the hosts whose inventory `zone` is
    /// NAME (and those with no zone); the others are left to scanners of their zone.
    #[arg(long, value_name = "NAME")]
    zone: Option<String>,
    /// On a PostgreSQL history: how long this scanner's claim on a host lasts without its heartbeat; a scanner
    /// that dies loses its hosts to the others this long after.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::scan::DEFAULT_LEASE.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    lease: u64,
}

/// What `scan` prints and writes besides the database, and how it exits.
#[derive(Debug, clap::Args)]
struct ScanOutputs {
    /// stdout: a summary per host (text), the whole scan as one JSON document (json), or its failed and unjudged
    /// rules as SARIF 2.1.0 (sarif); see README "Outputs".
    #[arg(long, value_enum, default_value_t = ScanFormat::Text, conflicts_with = "quiet")]
    format: ScanFormat,
    /// Also write the scan as JUnit XML to FILE (atomically): a test suite per cluster, a test case per host and rule.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Which verdicts make the exit code non-zero: fail (1 for a failed rule, 2 for a host or rule that could
    /// not be audited), error (only the latter: 2), never (always 0; bad input 3 and a held lock 4 still exit so).
    #[arg(long, value_enum, default_value_t = FailOn::Fail)]
    fail_on: FailOn,
    /// Audit only slice K of N of the inventory (1 <= K <= N), chosen by a hash of each host's name: N scanners
    /// with K = 1..N cover every host exactly once. Applies after --only.
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,
    #[command(flatten)]
    sharing: SharingArgs,
    #[command(flatten)]
    judge: JudgeArgs,
}

/// Which checks the exit code judges.
#[derive(Debug, Clone, Copy, clap::Args)]
struct JudgeArgs {
    /// Let only CIS Automated checks decide the exit code, as kube-bench users do with its WARN results: Manual
    /// checks are still judged, stored and reported, but their failures and errors exit 0. A host that could not
    /// be audited still exits 2.
    #[arg(long)]
    automated_only: bool,
}

#[derive(Debug, clap::Args)]
struct FleetArgs {
    /// The inventory (TOML): see inventory.example.toml.
    #[arg(short, long, value_name = "FILE")]
    inventory: PathBuf,
    /// Only these hosts, by name.
    #[arg(long, value_name = "NAME", num_args = 1..)]
    only: Vec<String>,
    /// OpenSSH client config to look the hosts up in, e.g. ~/.ssh/config (default: the inventory's
    /// `ssh_config`): HostName, User, Port, IdentityFile, ProxyJump, UserKnownHostsFile.
    #[arg(long, value_name = "PATH")]
    ssh_config: Option<PathBuf>,
}

impl FleetArgs {
    fn load(&self) -> Result<crate::inventory::Inventory, crate::inventory::InventoryError> {
        let options = crate::inventory::LoadOptions { ssh_config: self.ssh_config.clone() };
        crate::inventory::load_with(&self.inventory, &options)
    }
}

/// Where the history is: `--db`, or the inventory's `database`.
#[derive(Debug, clap::Args)]
struct DbArgs {
    /// The history: an SQLite file, or a postgres:// URL (default: the inventory's `database`).
    #[arg(long, env = "FLEETAUDIT_DB", hide_env_values = true, value_parser = parse_database)]
    db: Option<Database>,
    /// The inventory whose `database` (and `report_dir`) to use.
    #[arg(short, long, value_name = "FILE")]
    inventory: Option<PathBuf>,
}

/// `--db`: a `postgres://` URL or an SQLite path. A URL with a password is taken (a user may have no other way)
/// but the password is never printed: [`Database`]'s `Display` hides it.
fn parse_database(text: &str) -> Result<Database, String> {
    if text.is_empty() {
        return Err("empty: give an SQLite file or a postgres:// URL".into());
    }
    Ok(Database::parse(text))
}

impl DbArgs {
    /// The database (an SQLite file must exist: reading never creates one) and the inventory's report
    /// directory.
    fn resolve(&self) -> anyhow::Result<(Database, Option<PathBuf>)> {
        let inventory = self.inventory.as_deref().map(crate::inventory::load).transpose()?;
        let report_dir = inventory.as_ref().map(|i| i.settings.report_dir.clone());
        let db = match (&self.db, &inventory) {
            (Some(db), _) => db.clone(),
            (None, Some(i)) => i.settings.database.clone(),
            (None, None) => bail!(BadInput(
                "give the database with --db PATH (or URL, or FLEETAUDIT_DB) or an inventory with -i FILE".into()
            )),
        };
        if let Some(path) = db.path().filter(|p| !p.exists()) {
            bail!(BadInput(format!("no database at {}; run `fleetaudit scan` first", path.display())));
        }
        Ok((db, report_dir))
    }
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Show a rule: its test, rationale, audit, remediation and references.
    #[command(after_help = "Examples:\n  fleetaudit rules show apiserver-kubelet-certificate-authority\n  \
                            fleetaudit rules show 1.2.5 --format json\n  fleetaudit rules show 1.2.6\n  \
                            fleetaudit rules show 1.2.6 --benchmark cis-1.23\n\n\
                            A CIS number finds the rule it numbers now and any rule it numbered in an earlier benchmark \
                            (1.2.6 is the AlwaysAllow check in CIS 1.12 and was the kubelet certificate authority check \
                            in v1.5.1, v1.6.0 and the V1.23 benchmark); `cis-1.2.6` is read as 1.2.6. With several \
                            matches, --format json prints an array.")]
    Show {
        /// The rule id (apiserver-kubelet-certificate-authority), or a CIS number now or in an earlier benchmark
        /// (1.2.5, 1.2.6, cis-1.2.6).
        id: String,
        /// Read a CIS number as this benchmark version numbers it: cis-1.5, cis-1.6, cis-1.20, cis-1.23,
        /// cis-1.24, cis-1.7 ... cis-1.12 (kube-bench's names; `fleetaudit rules --format json` lists them).
        #[arg(long, value_name = "VERSION")]
        benchmark: Option<String>,
    },
}

/// `--profile`: `None` is `mix`. (Aliases, so clap takes the parsed value whole rather than as an optional or
/// repeated argument.)
type ProfileChoice = Option<&'static crate::sim::Profile>;
/// `--faults`: how many nodes of each fault.
type FaultCounts = Vec<(crate::sim::Behavior, usize)>;

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::inventory::parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration: e.g. 50ms, 10s, 2m"))
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role {s:?}; one of control-plane, etcd, worker"))
}

/// Errors that mean "bad input or usage" (exit 3) rather than "could not audit" (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => Exit::BadInput as i32,
            };
        }
    };
    match run(cli) {
        Ok(code) => code as i32,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("fleetaudit: error: {e:#}");
            if e.chain().any(|c| {
                c.is::<BadInput>()
                    || c.is::<ps::PsError>()
                    || c.is::<crate::rules::PackError>()
                    || c.is::<crate::inventory::InventoryError>()
                    || c.is::<crate::import::ImportError>()
                    || matches!(
                        c.downcast_ref::<crate::daemon::DaemonError>(),
                        Some(
                            crate::daemon::DaemonError::NoSchedule
                                | crate::daemon::DaemonError::BadSchedule { .. }
                                | crate::daemon::DaemonError::Inventory(_)
                        )
                    )
                    || matches!(c.downcast_ref::<ScanError>(), Some(ScanError::UnknownHost(_)))
            }) {
                Exit::BadInput as i32
            } else if e.chain().any(|c| {
                matches!(c.downcast_ref::<StoreError>(), Some(StoreError::Locked { .. }))
                    || matches!(
                        c.downcast_ref::<crate::daemon::DaemonError>(),
                        Some(crate::daemon::DaemonError::Store(StoreError::Locked { .. }))
                    )
                    || matches!(c.downcast_ref::<ScanError>(), Some(ScanError::Store(StoreError::Locked { .. })))
            }) {
                Exit::Locked as i32
            } else {
                Exit::Error as i32
            }
        }
    }
}

/// A closed pipe (`fleetaudit rules | head`) ends output quietly, as ripgrep does.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}

/// Largest capture `eval` reads: far above any real process table (a 5,000-process node prints ~2 MB).
const MAX_CAPTURE: u64 = 256 << 20;

fn run(cli: Cli) -> anyhow::Result<Exit> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let style = Style { colour: cli.color.colour(io::stdout().is_terminal()) };
    let log_colour = cli.color.colour(io::stderr().is_terminal());
    match cli.command {
        Command::Scan { fleet, db, concurrency, quiet, changes, rules, prune, metrics_file, outputs } => {
            init_logging(cli.log_format, if io::stderr().is_terminal() { "warn" } else { "off" }, log_colour);
            if let Some(junit) = &outputs.junit {
                // Before the scan, not after: a typo should not cost a whole scan.
                let dir = junit.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
                if !dir.is_dir() {
                    bail!(BadInput(format!("--junit {}: no directory {}", junit.display(), dir.display())));
                }
            }
            let inventory = fleet.load()?;
            let engine = Arc::new(Engine::new(RuleSet::load(&rules)?));
            let db = db.unwrap_or_else(|| inventory.settings.database.clone());
            // A bar only for a person watching: stderr a terminal, and no --quiet or JSON asked for.
            let progress = (io::stderr().is_terminal() && !quiet && !changes && outputs.format == ScanFormat::Text)
                .then(output::progress::Progress::start);
            let options = ScanOptions {
                only: fleet.only,
                shard: outputs.shard,
                concurrency,
                grace: None,
                progress: progress.as_ref().map(output::progress::Progress::sender),
                zone: outputs.sharing.zone.clone(),
                lease: Some(Duration::from_secs(outputs.sharing.lease)),
                not_before: None,
            };
            let after = crate::daemon::DaemonOptions {
                inventory: fleet.inventory.clone(),
                schedule: None,
                db: Some(db.clone()),
                concurrency,
                grace: Duration::ZERO,
                keep_scans: prune,
                metrics_file,
                ssh_config: fleet.ssh_config.clone(),
                shard: outputs.shard,
                zone: outputs.sharing.zone.clone(),
                lease: Duration::from_secs(outputs.sharing.lease),
            };
            let read_back =
                ReadBack { results: outputs.format != ScanFormat::Text || outputs.junit.is_some(), news: changes };
            let scanned = runtime()?.block_on(scan(&inventory, engine, &db, &options, Some(&after), read_back));
            drop(options);
            if let Some(progress) = progress {
                progress.finish();
            }
            let (report, html, results, news) = scanned?;
            if let (Some(path), Some(results)) = (&outputs.junit, &results) {
                crate::metrics::write_atomic_with(path, |w| output::junit::write(w, results))
                    .with_context(|| format!("cannot write the JUnit report {}", path.display()))?;
            }
            match (&results, outputs.format) {
                (Some(results), ScanFormat::Json) => output::scan::write_json(&mut out, results)?,
                (Some(results), ScanFormat::Sarif) => output::sarif::write(&mut out, results)?,
                _ if quiet => {}
                _ => match &news {
                    Some(news) => news.write(&mut out, &db, html.as_deref())?,
                    None => write_scan_summary(&mut out, &report, &db, html.as_deref(), style)?,
                },
            }
            out.flush()?;
            Ok(scan_exit(&report, outputs.judge.automated_only).under(outputs.fail_on))
        }
        Command::Daemon {
            inventory,
            schedule,
            db,
            concurrency,
            grace,
            prune,
            metrics_file,
            rules,
            ssh_config,
            shard,
            sharing,
        } => {
            init_logging(cli.log_format, "info", log_colour);
            let engine = Arc::new(Engine::new(RuleSet::load(&rules)?));
            let options = crate::daemon::DaemonOptions {
                inventory,
                schedule,
                db,
                concurrency,
                grace: Duration::from_secs(grace),
                keep_scans: prune,
                metrics_file,
                ssh_config,
                shard,
                zone: sharing.zone,
                lease: Duration::from_secs(sharing.lease),
            };
            runtime()?.block_on(async {
                let (stop, signals) = stop_on_signals();
                let result = crate::daemon::run(options, engine, stop).await;
                signals.abort();
                result
            })?;
            Ok(Exit::Ok)
        }
        Command::Check { fleet, format } => {
            let inventory = fleet.load()?;
            let probes = runtime()?.block_on(check(&inventory, &fleet.only))?;
            let name = inventory.path.display().to_string();
            match format {
                Format::Json => output::write_check_json(&mut out, &name, &probes)?,
                Format::Text => output::write_check_text(&mut out, &name, &probes, style)?,
            }
            out.flush()?;
            Ok(if probes.iter().any(|p| !p.reachable) { Exit::Error } else { Exit::Ok })
        }
        Command::Demo { dir } => {
            let rt = runtime()?;
            rt.block_on(async {
                let demo = crate::demo::prepare(&dir).await.with_context(|| format!("preparing {}", dir.display()))?;
                let inventory = crate::inventory::load(&demo.inventory)?;
                let engine = Arc::new(Engine::new(RuleSet::embedded()?));
                let db = inventory.settings.database.clone();
                let answering = demo.nodes.iter().filter(|n| n.behavior == crate::sim::Behavior::Normal).count();
                writeln!(
                    out,
                    "Simulated fleet: {answering} nodes on 127.0.0.1 and one that does not answer; scanning over SSH...\n",
                )?;
                // No retention or metrics; the report goes to the inventory's report_dir, DIR/report.
                let after = crate::daemon::DaemonOptions {
                    inventory: demo.inventory.clone(),
                    schedule: None,
                    db: Some(db.clone()),
                    concurrency: None,
                    grace: Duration::ZERO,
                    keep_scans: None,
                    metrics_file: None,
                    ssh_config: None,
                    shard: None,
                    zone: None,
                    lease: crate::scan::DEFAULT_LEASE,
                };
                let (report, html, _, _) =
                    scan(&inventory, engine, &db, &ScanOptions::default(), Some(&after), ReadBack::default()).await?;
                write_scan_summary(&mut out, &report, &db, html.as_deref(), style)?;
                let code = scan_exit(&report, false) as i32;
                writeln!(out, "\nA scan of this fleet exits {code} (`{} scan --help` says why). Next:", crate::demo::invoked_as())?;
                let Some(db) = db.path() else { unreachable!("the demo's inventory names an SQLite file") };
                for step in crate::demo::next_steps(db, &dir) {
                    writeln!(out, "  {step}")?;
                }
                drop(demo);
                Ok::<_, anyhow::Error>(())
            })?;
            Ok(Exit::Ok)
        }
        Command::Simulate { nodes, latency, profile, faults, connect_timeout, command_timeout, dir } => {
            init_logging(cli.log_format, "warn", log_colour);
            let options = crate::sim::fleet::SimulateOptions {
                nodes,
                latency,
                profile,
                faults,
                connect_timeout,
                command_timeout,
            };
            runtime()?.block_on(async {
                let fleet = crate::sim::fleet::simulate(&dir, &options)
                    .await
                    .with_context(|| format!("starting the simulated fleet in {}", dir.display()))?;
                writeln!(out, "{}", crate::sim::fleet::summary(&fleet, latency))?;
                out.flush()?;
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
                drop(fleet);
                anyhow::Ok(())
            })?;
            Ok(Exit::Ok)
        }
        Command::Report { scan, out: dir, source } => {
            let (db, report_dir) = source.resolve()?;
            let Some(dir) = dir.or(report_dir) else {
                bail!(BadInput("give the report directory with --out DIR or an inventory with -i FILE".into()));
            };
            let summary = runtime()?.block_on(async {
                let store = Store::connect(&db, false).await?;
                let summary = crate::report::render(&store, scan, &dir).await;
                store.close().await;
                anyhow::Ok(summary?)
            })?;
            writeln!(
                out,
                "scan {}: {} pages, {:.1} MB\nreport: {}",
                summary.scan_id,
                summary.pages,
                summary.bytes as f64 / 1e6,
                summary.index.display()
            )?;
            Ok(Exit::Ok)
        }
        Command::History { source, host, rule, cluster, format } => {
            let (db, _) = source.resolve()?;
            if host.is_none() && rule.is_none() && cluster.is_none() {
                bail!(BadInput("give --host NAME and/or --rule ID, or --cluster NAME".into()));
            }
            // Host verdicts unless a cluster is asked for; cluster verdicts for a cluster, or for a rule alone
            // (a cluster rule's id has only cluster verdicts, a host rule's only host verdicts).
            let hosts_too = cluster.is_none();
            let clusters_too = cluster.is_some() || host.is_none();
            let (rows, cluster_rows, latest, changes) = runtime()?.block_on(async {
                let store = Store::connect(&db, false).await?;
                let rows = match hosts_too {
                    true => store.history(host.as_deref(), rule.as_deref()).await?,
                    false => Vec::new(),
                };
                let cluster_rows = match clusters_too {
                    true => store.cluster_history(cluster.as_deref(), rule.as_deref()).await?,
                    false => Vec::new(),
                };
                // The latest ended scan and what changed in it since each host's previous scan.
                let latest = store.scans().await?.into_iter().find(|s| s.status != "running");
                let changes = match (&latest, hosts_too) {
                    (Some(s), true) => store.changes(s.id, host.as_deref(), rule.as_deref()).await?,
                    _ => Vec::new(),
                };
                store.close().await;
                anyhow::Ok((rows, cluster_rows, latest.map(|s| s.id), changes))
            })?;
            match format {
                Format::Json => {
                    let doc = serde_json::json!({
                        "host": host, "rule": rule, "cluster": cluster, "findings": rows,
                        "cluster_findings": cluster_rows, "latest_scan": latest, "changes": changes,
                    });
                    serde_json::to_writer_pretty(&mut out, &doc)?;
                    writeln!(out)?;
                }
                Format::Text => {
                    // A cluster rule's id alone has no host verdicts: only its cluster table is shown.
                    let host_table = hosts_too && (!rows.is_empty() || cluster_rows.is_empty());
                    if host_table {
                        writeln!(out, "SCAN  STARTED                   HOST  RULE  STATUS  REASON")?;
                        for r in &rows {
                            writeln!(
                                out,
                                "{:<5} {:<25} {}  {}  {}  {}",
                                r.scan_id, r.started_at, r.host, r.rule_id, r.status, r.reason
                            )?;
                        }
                    }
                    if clusters_too && (!cluster_rows.is_empty() || !hosts_too) {
                        if host_table {
                            writeln!(out)?;
                        }
                        writeln!(out, "SCAN  STARTED                   CLUSTER  RULE  STATUS  REASON")?;
                        for r in &cluster_rows {
                            writeln!(
                                out,
                                "{:<5} {:<25} {}  {}  {}  {}",
                                r.scan_id, r.started_at, r.cluster, r.rule_id, r.status, r.reason
                            )?;
                        }
                    }
                    match (latest, hosts_too) {
                        (Some(id), true) => {
                            writeln!(out, "\nchanges in scan {id}: {}", changes.len())?;
                            for c in &changes {
                                writeln!(
                                    out,
                                    "{}  {}  {} -> {} (since scan {})",
                                    c.host, c.rule_id, c.previous_status, c.status, c.previous_scan_id
                                )?;
                            }
                        }
                        (None, _) => writeln!(out, "\nno ended scan yet")?,
                        (Some(_), false) => {}
                    }
                }
            }
            out.flush()?;
            Ok(Exit::Ok)
        }
        Command::Eval { file, format, roles, rules, fail_on, judge } => {
            let args = eval::EvalArgs {
                file: &file,
                format,
                roles: &roles,
                rules: &rules,
                fail_on,
                automated_only: judge.automated_only,
            };
            eval::run(args, &mut out, style)
        }
        Command::Snapshot { inventory, host, out: path, ssh_config, rules } => {
            let args =
                snapshot::SnapshotArgs { inventory: &inventory, ssh_config, host: &host, out: &path, rules: &rules };
            snapshot::run(args, &mut out)
        }
        Command::Rules { show, format, rules } => {
            let set = RuleSet::load(&rules)?;
            match show {
                None => match format {
                    Format::Json => output::write_rules_json(&mut out, &set)?,
                    Format::Text => output::write_rules_text(&mut out, &set)?,
                },
                Some(RulesCommand::Show { id, benchmark }) => {
                    if let Some(b) = &benchmark
                        && !set.benchmarks().any(|k| &k.id == b)
                    {
                        let known: Vec<&str> = set.benchmarks().map(|k| k.id.as_str()).collect();
                        bail!(BadInput(format!("unknown benchmark {b:?}; one of {}", known.join(", "))));
                    }
                    let found = set.find(&id, benchmark.as_deref());
                    if found.is_empty() {
                        let within = benchmark.as_ref().map_or(String::new(), |b| format!(" in {b}"));
                        bail!(BadInput(format!("no rule {id:?}{within}; `fleetaudit rules` lists them")));
                    }
                    match format {
                        Format::Json => output::write_rules_found_json(&mut out, &set, &found)?,
                        Format::Text => output::write_rules_found_text(&mut out, &set, &id, &found)?,
                    }
                }
            }
            out.flush()?;
            Ok(Exit::Ok)
        }
        Command::Inventory(command) => inventory::run(command, &mut out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "fleetaudit", &mut out);
            out.flush()?;
            Ok(Exit::Ok)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Stop requests from SIGINT/SIGTERM: the first turns the flag true (stop starting hosts, finish, mark the
/// scan interrupted); a second exits at once, which SQLite's WAL survives with every committed host intact.
fn stop_on_signals() -> (tokio::sync::watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else { return };
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
        tracing::warn!("stopping: finishing the hosts in flight (signal again to quit at once)");
        let _ = tx.send(true);
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} }
        std::process::exit(130);
    });
    (stop, task)
}

/// Logs on stderr (above the progress bar when one is drawn), coloured when `colour`.
fn init_logging(format: LogFormat, default: &str, colour: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLEETAUDIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output::progress::LogWriter)
        .with_target(false)
        .with_ansi(colour);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// What [`scan`] returns: the scheduler's report, the HTML report's index, and (when asked for) the scan as
/// stored, for JSON and JUnit.
type Scanned = (ScanReport, Option<PathBuf>, Option<output::scan::ScanResults>, Option<output::changes::News>);

/// What [`scan`] reads back from the store once the scan is recorded.
#[derive(Debug, Clone, Copy, Default)]
struct ReadBack {
    /// The whole scan, for JSON and JUnit.
    results: bool,
    /// What it changed, for `--changes`.
    news: bool,
}

/// Takes the database's lock, runs one scan (stopping cleanly on signals), then retention, metrics and the
/// report; then reads back from the store what `read_back` asks for.
async fn scan(
    inventory: &crate::inventory::Inventory,
    engine: Arc<Engine>,
    db: &Database,
    options: &ScanOptions,
    after: Option<&crate::daemon::DaemonOptions>,
    read_back: ReadBack,
) -> anyhow::Result<Scanned> {
    let store = Store::connect(db, true).await?;
    let lock = store.lock().await?;
    let (stop, signals) = stop_on_signals();
    let report = crate::scan::run(inventory, engine, &store, &lock, options, stop).await;
    signals.abort();
    // What changed is read before retention runs: `--prune 1` would delete the scan it is compared with.
    let news = match (&report, read_back.news) {
        (Ok(r), true) => Some(output::changes::News::load(&store, r.scan_id, r.interrupted).await),
        _ => None,
    };
    let mut html = None;
    if let (Ok(report), Some(after)) = (&report, after) {
        html = crate::daemon::after_scan(after, inventory, &store, &lock, report).await;
    }
    let results = match (&report, read_back.results) {
        (Ok(report), true) => Some(output::scan::ScanResults::load(&store, report.scan_id).await),
        _ => None,
    };
    store.close().await;
    drop(lock);
    let results = results.transpose().context("reading the scan back from the database")?;
    let news = news.transpose().context("reading what the scan changed from the database")?;
    Ok((report?, html, results, news))
}

/// 2 if a host could not be audited or a rule judged, else 1 if a rule failed, else 0; with `automated_only`,
/// the verdicts of Manual checks do not count (a host that could not be audited still does).
fn scan_exit(report: &ScanReport, automated_only: bool) -> Exit {
    if report.unreachable() > 0 || report.interrupted {
        return Exit::Error;
    }
    let hosts = Exit::for_summary(report.totals().judged(automated_only));
    // A cluster the scan's --only or --shard left in part is open by the user's choice, not the fleet's state.
    let judged = report.clusters.iter().filter(|c| !report.partial_clusters.contains(&c.cluster));
    let clusters = Exit::for_summary(&crate::output::Summary::of(judged.map(|c| c.status)));
    hosts.max(clusters)
}

fn write_scan_summary(
    out: &mut dyn Write,
    report: &ScanReport,
    db: &Database,
    html: Option<&std::path::Path>,
    style: Style,
) -> io::Result<()> {
    let mut hosts: Vec<&crate::scan::HostReport> = report.hosts.iter().collect();
    hosts.sort_by(|a, b| (a.result.is_ok(), &a.name).cmp(&(b.result.is_ok(), &b.name)));
    let width = hosts.iter().map(|h| h.name.len()).max().unwrap_or(4).max(4);
    let cwidth = hosts.iter().map(|h| h.cluster.as_deref().unwrap_or("-").len()).max().unwrap_or(7).max(7);
    writeln!(out, "{:<width$}  {:<cwidth$}  RESULT", "HOST", "CLUSTER")?;
    for h in hosts {
        let cluster = h.cluster.as_deref().unwrap_or("-");
        match &h.result {
            Ok(s) => {
                let status = if s.error > 0 {
                    Status::Error
                } else if s.fail > 0 {
                    Status::Fail
                } else {
                    Status::Pass
                };
                writeln!(out, "{:<width$}  {cluster:<cwidth$}  {}  {s}", h.name, style.status(status))?;
            }
            Err((kind, message)) => {
                writeln!(
                    out,
                    "{:<width$}  {cluster:<cwidth$}  {}  {kind}: {message}",
                    h.name,
                    style.status(Status::Error)
                )?;
            }
        }
    }
    if !report.clusters.is_empty() {
        let width = report.clusters.iter().map(|c| c.cluster.len()).max().unwrap_or(7).max(7);
        writeln!(out, "\n{:<width$}  CLUSTER RULE", "CLUSTER")?;
        for c in &report.clusters {
            writeln!(out, "{:<width$}  {}  {}: {}", c.cluster, style.status(c.status), c.rule_id, c.reason)?;
        }
    }
    let t = report.totals();
    writeln!(
        out,
        "\nscan {}{}: {} hosts in {:.1} s, {} audited, {} not audited; verdicts: {t}",
        report.scan_id,
        if report.interrupted { " (interrupted)" } else { "" },
        report.hosts.len(),
        report.elapsed.as_secs_f64(),
        report.hosts.len() - report.unreachable(),
        report.unreachable(),
    )?;
    if let Some(total) = report.shared_hosts {
        let who = if report.ended { "this scanner ended it" } else { "another scanner ends it and renders the report" };
        writeln!(out, "shared scan: this scanner audited {} of its {total} hosts; {who}", report.hosts.len())?;
    }
    writeln!(out, "database: {db}")?;
    if let Some(html) = html {
        writeln!(out, "report: {}", html.display())?;
    }
    Ok(())
}

/// Reaches every host (host key + login), in inventory (or `only`) order.
async fn check(inventory: &crate::inventory::Inventory, only: &[String]) -> anyhow::Result<Vec<output::Probe>> {
    let hosts: Vec<&crate::inventory::Host> = if only.is_empty() {
        inventory.hosts.iter().collect()
    } else {
        only.iter()
            .map(|n| inventory.host(n).ok_or_else(|| ScanError::UnknownHost(n.clone())))
            .collect::<Result<_, _>>()?
    };
    let transport = Arc::new(crate::ssh::Transport::for_inventory(inventory)?);
    let permits = Arc::new(tokio::sync::Semaphore::new(inventory.settings.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, h) in hosts.iter().enumerate() {
        let (h, transport, permits) = ((*h).clone(), transport.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = transport.probe(&crate::ssh::Target::of(&h)).await;
            (i, h.name.clone(), result)
        });
    }
    let mut results = tasks.join_all().await;
    results.sort_by_key(|r| r.0);
    Ok(results
        .into_iter()
        .map(|(i, name, r)| output::Probe {
            name,
            address: hosts[i].address.clone(),
            port: hosts[i].port,
            reachable: r.is_ok(),
            error: r.as_ref().err().map(|e| output::ProbeError { kind: e.kind().to_owned(), message: e.to_string() }),
            host_certificate: r.as_ref().ok().and_then(|id| id.certificate.as_ref()).map(ToString::to_string),
            host_key_fingerprint: r.ok().map(|id| id.fingerprint),
        })
        .collect())
}

fn read_capture(file: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let reader: Box<dyn Read> = if file.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(std::fs::File::open(file).map_err(|e| BadInput(format!("cannot open {}: {e}", file.display())))?)
    };
    reader.take(MAX_CAPTURE + 1).read_to_end(&mut bytes).with_context(|| format!("reading {}", file.display()))?;
    if bytes.len() as u64 > MAX_CAPTURE {
        bail!(BadInput(format!("{} is larger than {} MiB: not a process table", file.display(), MAX_CAPTURE >> 20)));
    }
    Ok(bytes)
}
