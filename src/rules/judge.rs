//! Judging one host: every rule against every process of its component, with the evidence behind each verdict.

use serde::Serialize;

use super::detect::{Found, Kind};
use super::layers::{self, Layer};
use super::pack::RuleSet;
use super::settings::{Applied, Source};
use super::test::{self, FlagEvidence, View};
use crate::files::FileSet;
use crate::model::{Role, Status};
use crate::ps::ProcessTable;
use crate::ps::flags::{FlagStyle, Flags, Known};

/// The verdict of one rule on one host, with its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Index into [`RuleSet::rules`].
    #[serde(skip)]
    pub rule: usize,
    pub status: Status,
    /// One sentence saying what decided the verdict.
    pub reason: String,
    /// One entry per process of the rule's component, in table order.
    pub evidence: Vec<Evidence>,
}

/// What one process showed for one rule.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evidence {
    pub pid: u32,
    /// Line of the `ps` output.
    pub line: usize,
    pub user: String,
    /// The command line with secret values redacted.
    pub cmdline: String,
    pub status: Status,
    /// The flags tested, with the values judged (redacted where secret).
    pub flags: Vec<FlagEvidence>,
}

/// Judges `table` against every rule. `roles` are the host's roles from the inventory (empty when unknown): a
/// component they expect but the table lacks is a failure to find it, not `not_applicable`.
pub fn judge(
    set: &RuleSet,
    detector: &super::Detector,
    table: &ProcessTable,
    files: &FileSet,
    roles: &[Role],
) -> Vec<Finding> {
    let found = detector.find(table, &set.embeddings);
    judge_procs(set, &Unloaded::all(set, &found, true), files, roles)
}

/// [`judge`] for a host whose component processes were already found and parsed (with their command lines
/// redacted), as planning its files did.
pub(crate) fn judge_procs(set: &RuleSet, procs: &[Unloaded<'_>], files: &FileSet, roles: &[Role]) -> Vec<Finding> {
    // Load each component process's settings sources once, not once per rule.
    judge_parsed(set, &Parsed::load_all(procs, files), files, roles)
}

/// [`judge`] for a host whose component processes' sources were loaded from `files` already, as the last
/// planning round did.
pub(crate) fn judge_parsed(set: &RuleSet, parsed: &[Parsed<'_>], files: &FileSet, roles: &[Role]) -> Vec<Finding> {
    let others = |component: &str, flag: &str| other_setting(set, parsed, component, flag);
    set.rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let component = &set.components[rule.component];
            let mut evidence = Vec::new();
            let mut reasons: Vec<(Status, String)> = Vec::new();
            for p in parsed.iter().filter(|p| p.found().component == rule.component) {
                let proc = p.found().process;
                let embedded_in = match &p.found().kind {
                    Kind::Embedded { embedding, .. } => Some(set.embeddings[*embedding].title.as_str()),
                    Kind::Direct { .. } => None,
                };
                let view = View {
                    process: p.process(component),
                    embedded_in,
                    files,
                    targets: &set.targets,
                    others: &others,
                    viewer: p.found().viewer(),
                };
                let outcome = rule.test.eval(&view);
                let status = match outcome.passed {
                    Some(true) if outcome.inapplicable => Status::NotApplicable,
                    Some(true) => Status::Pass,
                    Some(false) => Status::Fail,
                    None => Status::Error,
                };
                let flags: Vec<FlagEvidence> = outcome.evidence.into_iter().map(redact_evidence).collect();
                // The checks that decided: a pass's passing ones (one branch of an `any`), a failure's failing ones,
                // an error's undecidable ones.
                let relevant = flags.iter().filter(|e| match status {
                    Status::Fail => e.passed == Some(false),
                    Status::Error => e.passed.is_none(),
                    _ => e.passed == Some(true),
                });
                let mut whys: Vec<&str> = Vec::new();
                for e in relevant {
                    if !whys.contains(&e.why.as_str()) {
                        whys.push(&e.why);
                    }
                }
                reasons.push((status, format!("{} (pid {}): {}", component.title, proc.pid, whys.join("; "))));
                evidence.push(Evidence {
                    pid: proc.pid,
                    line: proc.line,
                    user: proc.user.clone(),
                    cmdline: p.base.redacted_cmdline.clone(),
                    status,
                    flags,
                });
            }
            let (status, reason) = if evidence.is_empty() {
                let expected_by: Vec<&str> =
                    roles.iter().filter(|r| component.roles.contains(r)).map(|r| r.as_str()).collect();
                if expected_by.is_empty() {
                    (Status::NotApplicable, format!("{} does not run on this host", component.title))
                } else {
                    let why = format!(
                        "{} is not running, but the host's role {} expects it: it may be down, renamed, or run \
                         where `ps` cannot see it",
                        component.title,
                        expected_by.join(", ")
                    );
                    (Status::Fail, why)
                }
            } else {
                // Any failing process fails the rule; otherwise any undecidable one makes it an error.
                let worst = evidence.iter().map(|e| e.status).min().unwrap_or(Status::Pass);
                let reason = reasons.iter().filter(|(s, _)| *s == worst).map(|(_, r)| r.as_str()).collect::<Vec<_>>();
                (worst, reason.join("; "))
            };
            Finding { rule: i, status, reason, evidence }
        })
        .collect()
}

/// One component process with its settings sources loaded from a host's files, for every rule.
pub(crate) struct Parsed<'a> {
    base: &'a Unloaded<'a>,
    /// The places besides the command line it reads settings from, loaded.
    layers: Vec<Layer<'a>>,
}

impl<'a> Parsed<'a> {
    pub(crate) fn found(&self) -> &'a Found<'a> {
        self.base.found
    }

    /// The process as the resolver sees it.
    pub(crate) fn process<'p>(&'p self, component: &'p super::pack::Component) -> layers::Process<'p, 'a> {
        layers::Process { flags: &self.base.flags, args: &self.base.args, component, layers: &self.layers }
    }

    /// Every process of `procs` with its sources loaded from `files`.
    pub(crate) fn load_all(procs: &'a [Unloaded<'a>], files: &FileSet) -> Vec<Parsed<'a>> {
        procs.iter().map(|p| Parsed::load(p, files)).collect()
    }

    /// `p` with its sources loaded from `files` (planning loads them each round, from what has come so far).
    pub(crate) fn load(p: &'a Unloaded<'a>, files: &FileSet) -> Parsed<'a> {
        let applied: Vec<Applied<'a>> = p.sources.iter().filter_map(|s| s.applied(&p.source_flags)).collect();
        let layers = layers::load(applied, files, p.found.viewer(), &super::doc::parse);
        Parsed { base: p, layers }
    }
}

impl<'t> Unloaded<'t> {
    /// Each process of `found`, as [`Unloaded::of`] makes it.
    pub(crate) fn all(set: &'t RuleSet, found: &'t [Found<'t>], redact: bool) -> Vec<Unloaded<'t>> {
        found.iter().map(|f| Unloaded::of(set, f, redact)).collect()
    }

    /// The process's own flags (or its embedding program's), and the sources its component reads; with its
    /// command line redacted for evidence when `redact` is set (empty otherwise: planning shows nothing).
    pub(crate) fn of(set: &'t RuleSet, found: &'t Found<'t>, redact: bool) -> Unloaded<'t> {
        let component = &set.components[found.component];
        let argv: Vec<&'t str> = found.process.argv().collect();
        match found.kind {
            Kind::Direct { args_from } => {
                let args = argv[args_from.min(argv.len())..].to_vec();
                let flags = Flags::parse(&args, component.flag_style, &component.known);
                let redacted_cmdline = if redact { redact_cmdline(&argv, args_from, &flags) } else { String::new() };
                Unloaded {
                    found,
                    source_flags: flags.clone(),
                    args,
                    flags,
                    sources: &component.sources,
                    redacted_cmdline,
                }
            }
            Kind::Embedded { embedding, run } => {
                let e = &set.embeddings[embedding];
                let from = if e.subcommands.is_empty() { 1 } else { 2 };
                let host_args = &argv[from.min(argv.len())..];
                let host_flags = Flags::parse(host_args, FlagStyle::Pflag, &Known::default());
                let redacted_cmdline =
                    if redact { redact_cmdline(&argv, from.min(argv.len()), &host_flags) } else { String::new() };
                Unloaded {
                    found,
                    args: Vec::new(),
                    flags: Flags::default(),
                    source_flags: host_flags,
                    sources: &e.runs[run].sources,
                    redacted_cmdline,
                }
            }
        }
    }
}

/// Hands `f` each of the host's processes of `component` as checks see it.
pub(crate) fn each_view(
    set: &RuleSet,
    parsed: &[Parsed<'_>],
    files: &FileSet,
    component: usize,
    mut f: impl FnMut(&View<'_, '_>),
) {
    let others = |c: &str, flag: &str| other_setting(set, parsed, c, flag);
    for p in parsed.iter().filter(|p| p.found().component == component) {
        let view = View {
            process: p.process(&set.components[component]),
            embedded_in: match &p.found().kind {
                Kind::Embedded { embedding, .. } => Some(set.embeddings[*embedding].title.as_str()),
                Kind::Direct { .. } => None,
            },
            files,
            targets: &set.targets,
            others: &others,
            viewer: p.found().viewer(),
        };
        f(&view);
    }
}

/// The certificate files of the host's processes, each with the roles its certificates play there (the API
/// server's `--client-ca-file` and the kubelet's are often one `ca.crt`): what cluster rules select by.
pub(crate) fn certificate_roles(
    set: &RuleSet,
    parsed: &[Parsed<'_>],
    files: &FileSet,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut roles: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> = Default::default();
    for target in &set.targets {
        let Some(role) = &target.certificate else { continue };
        each_view(set, parsed, files, target.component, |view| {
            for path in super::filecheck::certificate_paths(target, view, files) {
                roles.entry(path).or_default().insert(role.clone());
            }
        });
    }
    roles
}

/// A setting of another component's process on the host (the first one), for file rules that find a file in
/// a directory it names.
pub(crate) fn other_setting(
    set: &RuleSet,
    parsed: &[Parsed<'_>],
    component: &str,
    flag: &str,
) -> Option<Result<Option<String>, String>> {
    let ci = set.components.iter().position(|c| c.id == component)?;
    let p = parsed.iter().find(|p| p.found().component == ci)?;
    let c = &set.components[ci];
    let decl = c.flags.get(flag)?;
    Some(match layers::resolve(&p.process(c), flag, None, decl) {
        Ok(s) => Ok(s.value.map(|v| v.text()).filter(|v| !v.is_empty())),
        Err(u) => Err(format!("the {} process's --{flag} is set by {}", c.title, u.text())),
    })
}

/// A component process found in a host's table, its flags parsed: what planning every round and judging share.
pub(crate) struct Unloaded<'t> {
    pub(crate) found: &'t Found<'t>,
    pub(crate) args: Vec<&'t str>,
    pub(crate) flags: Flags<'t>,
    /// The flags that name its sources: its own, or those of the program it runs inside.
    pub(crate) source_flags: Flags<'t>,
    pub(crate) sources: &'t [Source],
    pub(crate) redacted_cmdline: String,
}

const REDACTED: &str = "<redacted>";

/// Whether a flag's value is a secret: tokens, passwords and the like. Flags naming a file, path or directory
/// hold a path, not the secret, and are kept: CIS 1.2.2 reports `--token-auth-file` by its path.
pub fn is_secret_flag(name: &str) -> bool {
    const SECRET: [&str; 8] = ["password", "passwd", "secret", "token", "credential", "apikey", "api-key", "auth-key"];
    const PATHS: [&str; 4] = ["-file", "-path", "-dir", "-directory"];
    // Flag names are lower case: lowered only when one is not (this runs for every flag judged on every host).
    let name: std::borrow::Cow<'_, str> = match name.bytes().any(|b| b.is_ascii_uppercase()) {
        true => name.to_ascii_lowercase().into(),
        false => name.into(),
    };
    SECRET.iter().any(|s| name.contains(s)) && !PATHS.iter().any(|p| name.ends_with(p))
}

fn is_harmless_value(v: &str) -> bool {
    matches!(v, "true" | "false" | "") || super::test::number(v).is_some()
}

/// The command line with the values of secret flags and any `user:password@` in URLs replaced by `<redacted>`.
fn redact_cmdline(argv: &[&str], args_from: usize, flags: &Flags<'_>) -> String {
    let mut out: Vec<String> = argv.iter().map(|a| redact_text(a)).collect();
    for f in &flags.flags {
        let Some(value) = f.value else { continue };
        if !is_secret_flag(&f.name) || is_harmless_value(value) {
            continue;
        }
        match f.value_token {
            Some(t) => out[args_from + t] = REDACTED.to_owned(),
            None => {
                out[args_from + f.token] =
                    format!("{}={REDACTED}", argv[args_from + f.token].split('=').next().unwrap_or(""))
            }
        }
    }
    out.join(" ")
}

fn redact_evidence(mut e: FlagEvidence) -> FlagEvidence {
    let name = e.flag.trim_start_matches('-');
    let secret = is_secret_flag(name);
    for o in e.occurrences.iter_mut() {
        let (flag, value) = o.split_once(['=', ' ']).unwrap_or((o, ""));
        match secret && !is_harmless_value(value) {
            true => *o = format!("{flag}={REDACTED}"),
            false => redact_in_place(o),
        }
    }
    if let Some(v) = &mut e.value {
        if e.source == test::Source::CommandLine && secret && !is_harmless_value(v) {
            e.why = e.why.replace(v.as_str(), REDACTED);
            *v = REDACTED.to_owned();
        } else {
            redact_in_place(&mut e.why);
            redact_in_place(v);
        }
    }
    e
}

/// [`redact_text`] in place, copying only a text that holds a URL.
fn redact_in_place(s: &mut String) {
    if s.contains("://") {
        *s = redact_text(s);
    }
}

/// Replaces the `user:password@` part of any URL in `s`.
pub fn redact_text(s: &str) -> String {
    crate::files::redact::redact_urls(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_urls_are_redacted() {
        assert!(is_secret_flag("token"));
        assert!(is_secret_flag("etcd-password"));
        assert!(is_secret_flag("bootstrap-token"));
        assert!(!is_secret_flag("token-auth-file"));
        assert!(!is_secret_flag("kubelet-certificate-authority"));
        assert_eq!(
            redact_text("https://u:p@etcd:2379,https://e2:2379"),
            "https://<redacted>@etcd:2379,https://e2:2379"
        );
        assert_eq!(redact_text("no urls here"), "no urls here");
        assert_eq!(redact_text("a://b"), "a://b");
    }

    #[test]
    fn redacts_every_form_on_the_command_line() {
        let argv = [
            "kube-apiserver",
            "--token=abc",
            "--password",
            "hunter2",
            "--token-auth-file=/t.csv",
            "--etcd-servers=https://u:pw@h:2379",
            "--enable-bootstrap-token-auth=true",
        ];
        let flags = Flags::parse(&argv[1..], crate::ps::flags::FlagStyle::Pflag, &Default::default());
        assert_eq!(
            redact_cmdline(&argv, 1, &flags),
            "kube-apiserver --token=<redacted> --password <redacted> --token-auth-file=/t.csv \
             --etcd-servers=https://<redacted>@h:2379 --enable-bootstrap-token-auth=true"
        );
    }
}
