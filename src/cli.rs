//! The command line: argument parsing, the commands, and the mapping of outcomes to exit codes.
//!
//! Owns: what the user types and what the process returns. `anyhow` lives here and nowhere below.
//! Must not hold pipeline logic: each command calls the library stages in order.

use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

use crate::model::{Role, Status};
use crate::output::{self, FindingJson, Style, Summary};
use crate::ps;
use crate::rules::{Engine, RuleSet};

/// Exit codes, as documented in the README: a script can tell "non-compliant" from "could not tell".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every rule passed or did not apply.
    Ok = 0,
    /// A rule failed.
    Fail = 1,
    /// Something could not be judged (a host could not be audited, a rule could not be decided).
    Error = 2,
    /// Bad input or usage: a broken inventory, rule pack or `ps` capture, an unknown option.
    BadInput = 3,
}

impl Exit {
    /// The exit code for a set of verdicts: errors outrank failures, which outrank passes.
    pub fn for_statuses(statuses: impl IntoIterator<Item = Status>) -> Exit {
        let s = Summary::of(statuses);
        if s.error > 0 {
            Exit::Error
        } else if s.fail > 0 {
            Exit::Fail
        } else {
            Exit::Ok
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "fleetaudit",
    version,
    about = "Agentless CIS compliance auditing of Kubernetes nodes over SSH",
    after_help = "Exit codes: 0 all pass, 1 a rule failed, 2 something could not be audited, 3 bad input or usage.\n\n\
                  Examples:\n  fleetaudit eval captured-ps.txt\n  ssh node ps -ef | fleetaudit eval - --format json\n  \
                  fleetaudit rules show cis-1.2.6"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Judge a captured `ps -ef` output offline.
    #[command(after_help = "Examples:\n  fleetaudit eval node1-ps.txt\n  ssh node1 ps -ef | fleetaudit eval -\n  \
                            fleetaudit eval --role control-plane --format json node1-ps.txt\n  \
                            fleetaudit eval --rules site-rules.toml node1-ps.txt")]
    Eval {
        /// The capture to judge, or `-` for standard input.
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// The host's role(s): a component a role expects but the table lacks fails instead of not applying.
        #[arg(long = "role", value_parser = parse_role)]
        roles: Vec<Role>,
        /// Extra rule pack(s) to load beside the embedded CIS pack.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
    },
    /// List the rules in force, or show one in full.
    #[command(after_help = "Examples:\n  fleetaudit rules\n  fleetaudit rules --format json\n  \
                            fleetaudit rules show cis-1.2.6")]
    Rules {
        #[command(subcommand)]
        show: Option<RulesCommand>,
        #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
        format: Format,
        /// Extra rule pack(s) to load beside the embedded CIS pack.
        #[arg(long = "rules", value_name = "FILE", global = true)]
        rules: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Show one rule: its test, rationale, audit, remediation and references.
    Show {
        /// The rule id, e.g. cis-1.2.6 (or its CIS id, e.g. 1.2.6).
        id: String,
    },
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
            if e.chain().any(|c| c.is::<BadInput>() || c.is::<ps::PsError>() || c.is::<crate::rules::PackError>()) {
                Exit::BadInput as i32
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

fn style() -> Style {
    Style { colour: io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) }
}

/// Largest capture `eval` reads: far above any real process table (a 5,000-process node prints ~2 MB).
const MAX_CAPTURE: u64 = 256 << 20;

fn run(cli: Cli) -> anyhow::Result<Exit> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match cli.command {
        Command::Eval { file, format, roles, rules } => {
            let engine = Engine::new(RuleSet::load(&rules)?);
            let bytes = read_capture(&file)?;
            let table =
                ps::parse(&bytes).with_context(|| format!("cannot read {} as `ps -ef` output", file.display()))?;
            let findings = engine.judge(&table, &roles);
            match format {
                Format::Json => {
                    let doc = serde_json::json!({
                        "source": file.display().to_string(),
                        "ps_format": table.format,
                        "processes": table.processes.len(),
                        "rules_version": engine.rules.version(),
                        "summary": Summary::of(findings.iter().map(|f| f.status)),
                        "findings": findings.iter().map(|f| FindingJson::new(&engine.rules, f)).collect::<Vec<_>>(),
                    });
                    serde_json::to_writer_pretty(&mut out, &doc)?;
                    writeln!(out)?;
                }
                Format::Text => {
                    writeln!(
                        out,
                        "{}: {} table, {} processes; rules {}\n",
                        file.display(),
                        table.format,
                        table.processes.len(),
                        engine.rules.version()
                    )?;
                    output::write_findings_text(&mut out, &engine.rules, &findings, style())?;
                }
            }
            out.flush()?;
            Ok(Exit::for_statuses(findings.iter().map(|f| f.status)))
        }
        Command::Rules { show, format, rules } => {
            let set = RuleSet::load(&rules)?;
            match show {
                None => match format {
                    Format::Json => output::write_rules_json(&mut out, &set)?,
                    Format::Text => output::write_rules_text(&mut out, &set)?,
                },
                Some(RulesCommand::Show { id }) => {
                    let Some(rule) = set.rule(&id).or_else(|| set.rules.iter().find(|r| r.cis == id)) else {
                        bail!(BadInput(format!("no rule {id:?}; `fleetaudit rules` lists them")));
                    };
                    match format {
                        Format::Json => output::write_rule_json(&mut out, &set, rule)?,
                        Format::Text => output::write_rule_text(&mut out, &set, rule)?,
                    }
                }
            }
            out.flush()?;
            Ok(Exit::Ok)
        }
    }
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
