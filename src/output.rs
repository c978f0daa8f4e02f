//! Presenting verdicts and rules on a terminal (text) or to programs (JSON). Reads findings; judges nothing.
//!
//! Submodules: [`scan`] (a stored scan read back: its JSON document, and the verdicts [`junit`] writes as JUnit
//! XML and [`sarif`] as SARIF 2.1.0), [`changes`] (what a scan changed, for `scan --changes`) and [`progress`]
//! (the scan's progress bar on a terminal).

pub mod changes;
pub mod junit;
pub mod progress;
pub mod sarif;
pub mod scan;

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use crate::model::Status;
use crate::rules::pack::Match;
use crate::rules::test::Test;
use crate::rules::{Evidence, Finding, Rule, RuleSet};

/// Counts of verdicts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub error: usize,
    pub not_applicable: usize,
}

impl Summary {
    pub fn of(statuses: impl IntoIterator<Item = Status>) -> Summary {
        let mut s = Summary::default();
        for st in statuses {
            match st {
                Status::Pass => s.pass += 1,
                Status::Fail => s.fail += 1,
                Status::Error => s.error += 1,
                Status::NotApplicable => s.not_applicable += 1,
            }
        }
        s
    }
}

impl std::ops::Add for Summary {
    type Output = Summary;

    fn add(self, o: Summary) -> Summary {
        Summary {
            pass: self.pass + o.pass,
            fail: self.fail + o.fail,
            error: self.error + o.error,
            not_applicable: self.not_applicable + o.not_applicable,
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} pass, {} fail, {} error, {} not applicable",
            self.pass, self.fail, self.error, self.not_applicable
        )
    }
}

/// All verdict counts and those of the CIS Automated checks alone: `summary` in every JSON document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    #[serde(flatten)]
    pub all: Summary,
    /// The Automated checks only: what `--automated-only` makes the exit code judge.
    pub automated: Summary,
}

impl Totals {
    /// Counts `(status, is_manual)` pairs.
    pub fn of(verdicts: impl IntoIterator<Item = (Status, bool)>) -> Totals {
        let (mut all, mut automated) = (Vec::new(), Vec::new());
        for (status, manual) in verdicts {
            all.push(status);
            if !manual {
                automated.push(status);
            }
        }
        Totals { all: Summary::of(all), automated: Summary::of(automated) }
    }

    /// The counts an exit code judges: every check's, or the Automated ones' alone.
    pub fn judged(&self, automated_only: bool) -> &Summary {
        if automated_only { &self.automated } else { &self.all }
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\nCIS Automated checks alone: {}", self.all, self.automated)
    }
}

/// Terminal styling: colour only when asked for (`--color always`, or a TTY without `NO_COLOR`).
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    pub fn status(&self, s: Status) -> String {
        let (label, code) = match s {
            Status::Fail => ("FAIL ", "31;1"),
            Status::Error => ("ERROR", "33;1"),
            Status::Pass => ("PASS ", "32"),
            Status::NotApplicable => ("N/A  ", "2"),
        };
        if self.colour { format!("\x1b[{code}m{label}\x1b[0m") } else { label.to_owned() }
    }
}

/// One finding as JSON: self-contained, so a consumer needs no rule pack to read it.
#[derive(Serialize)]
pub struct FindingJson<'a> {
    pub rule_id: &'a str,
    pub cis: &'a str,
    pub title: &'a str,
    pub component: &'a str,
    pub severity: &'a str,
    pub assessment: crate::rules::pack::Assessment,
    pub status: Status,
    pub reason: &'a str,
    /// The flags the rule tests.
    pub flags: Vec<&'a str>,
    pub test: String,
    pub evidence: &'a [Evidence],
}

impl<'a> FindingJson<'a> {
    pub fn new(set: &'a RuleSet, f: &'a Finding) -> FindingJson<'a> {
        let rule = &set.rules[f.rule];
        FindingJson {
            rule_id: &rule.id,
            cis: &rule.cis,
            title: &rule.title,
            component: &set.component(rule).id,
            severity: rule.severity.as_str(),
            assessment: rule.assessment,
            status: f.status,
            reason: &f.reason,
            flags: flags_of(&rule.test),
            test: rule.test.describe(),
            evidence: &f.evidence,
        }
    }
}

fn flags_of(test: &Test) -> Vec<&str> {
    let mut flags: Vec<&str> = test.checks().into_iter().map(|c| c.flag.as_str()).collect();
    flags.dedup();
    flags
}

/// One path a judgement used, as JSON: `ls -l`'s view of it, or why it could not be learned.
#[derive(Serialize)]
pub struct FileJson<'a> {
    pub path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'a str>,
    /// Octal, as `stat -c %a` prints it: `"600"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// As `ls -l` prints it: `-rw-------`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem_message: Option<&'a str>,
}

impl<'a> FileJson<'a> {
    pub fn new(f: &'a crate::store::FileRecord) -> FileJson<'a> {
        let kind = match f.kind.as_deref() {
            Some("dir") => crate::files::Kind::Dir,
            Some("symlink") => crate::files::Kind::Symlink,
            Some("other") => crate::files::Kind::Other,
            _ => crate::files::Kind::File,
        };
        FileJson {
            path: &f.path,
            kind: f.kind.as_deref(),
            mode: f.mode.map(|m| format!("{m:o}")),
            permissions: f.mode.map(|m| crate::rules::filecheck::mode_text(kind, m)),
            owner: f.owner.as_deref(),
            uid: f.uid,
            gid: f.gid,
            size: f.size,
            sha256: f.sha256.as_deref(),
            redacted: f.redacted,
            problem: f.problem.as_deref(),
            problem_message: f.problem_message.as_deref(),
        }
    }
}

/// A host's files as the store keeps them, for JSON output.
pub fn files_json(files: &crate::files::FileSet, certs: &crate::rules::CertRoles) -> Vec<serde_json::Value> {
    crate::scan::file_records(files, certs)
        .iter()
        .map(|f| serde_json::to_value(FileJson::new(f)).unwrap_or(serde_json::Value::Null))
        .collect()
}

/// Findings for people: grouped by component, the groups with failures first, failures first within a group;
/// components absent from the host collapse to one line.
pub fn write_findings_text(out: &mut dyn Write, set: &RuleSet, findings: &[Finding], style: Style) -> io::Result<()> {
    let mut groups: BTreeMap<usize, Vec<&Finding>> = BTreeMap::new();
    for f in findings {
        groups.entry(set.rules[f.rule].component).or_default().push(f);
    }
    let mut groups: Vec<(usize, Vec<&Finding>)> = groups.into_iter().collect();
    for (_, fs) in &mut groups {
        fs.sort_by_key(|f| (f.status, f.rule));
    }
    groups.sort_by_key(|(c, fs)| (fs.first().map(|f| f.status), *c));
    let width = findings.iter().map(|f| set.rules[f.rule].id.len()).max().unwrap_or(0);
    let manual = |f: &Finding| set.rules[f.rule].assessment == crate::rules::pack::Assessment::Manual;
    for (component, fs) in &groups {
        let title = &set.components[*component].title;
        if fs.iter().all(|f| f.status == Status::NotApplicable) {
            writeln!(out, "{title}: {} rules not applicable ({})", fs.len(), fs[0].reason)?;
            continue;
        }
        writeln!(out, "{title}")?;
        for f in fs {
            let rule = &set.rules[f.rule];
            let assessment = if manual(f) { "manual" } else { "auto" };
            writeln!(
                out,
                "  {}  {:<width$}  {:<8}  {assessment:<6}  {}",
                style.status(f.status),
                rule.id,
                rule.severity.as_str(),
                rule.title
            )?;
            if matches!(f.status, Status::Fail | Status::Error) {
                writeln!(out, "         {}", f.reason)?;
            }
        }
    }
    writeln!(out, "\n{}", Totals::of(findings.iter().map(|f| (f.status, manual(f)))))
}

#[derive(Serialize)]
struct RuleJson<'a> {
    id: &'a str,
    cis: &'a str,
    /// Its CIS numbers in earlier benchmark versions.
    previous: &'a [crate::rules::pack::PreviousId],
    pack: &'a str,
    title: &'a str,
    component: &'a str,
    severity: &'a str,
    assessment: crate::rules::pack::Assessment,
    flags: Vec<&'a str>,
    test: String,
    rationale: &'a str,
    audit: &'a str,
    remediation: &'a str,
    references: &'a [String],
}

fn rule_json<'a>(set: &'a RuleSet, r: &'a Rule) -> RuleJson<'a> {
    RuleJson {
        id: &r.id,
        cis: &r.cis,
        previous: &r.previous,
        pack: &r.pack,
        title: &r.title,
        component: &set.component(r).id,
        severity: r.severity.as_str(),
        assessment: r.assessment,
        flags: flags_of(&r.test),
        test: r.test.describe(),
        rationale: &r.rationale,
        audit: &r.audit,
        remediation: &r.remediation,
        references: &r.references,
    }
}

pub fn write_rules_json(out: &mut dyn Write, set: &RuleSet) -> io::Result<()> {
    let rules: Vec<RuleJson<'_>> = set.rules.iter().map(|r| rule_json(set, r)).collect();
    serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "packs": set.packs, "rules": rules }))?;
    writeln!(out)
}

pub fn write_rules_text(out: &mut dyn Write, set: &RuleSet) -> io::Result<()> {
    let width = set.rules.iter().map(|r| r.id.len()).max().unwrap_or(2);
    writeln!(out, "{:<width$}  {:<8}  {:<18}  {:<9}  {:<40}  TITLE", "ID", "CIS", "COMPONENT", "SEVERITY", "TEST")?;
    for r in &set.rules {
        let mut test = r.test.describe();
        if test.chars().count() > 40 {
            test = format!("{}…", test.chars().take(39).collect::<String>());
        }
        let (id, cis, component, severity) = (&r.id, &r.cis, &set.component(r).id, r.severity.as_str());
        writeln!(out, "{id:<width$}  {cis:<8}  {component:<18}  {severity:<9}  {test:<40}  {}", r.title)?;
    }
    writeln!(out, "\n{} rules from {}", set.rules.len(), set.version())
}

/// The rules an id matched (`rules show`): one object when it names one rule, an array when a CIS number names
/// several (1.2.6 is one rule now and another in earlier benchmarks); each says how it matched.
pub fn write_rules_found_json(out: &mut dyn Write, set: &RuleSet, found: &[(&Rule, Match<'_>)]) -> io::Result<()> {
    #[derive(Serialize)]
    struct Found<'a> {
        #[serde(flatten)]
        rule: RuleJson<'a>,
        /// `id`, `cis` (the number now) or `previous` (a number it had before).
        matched: &'static str,
        /// For `previous`: the benchmarks that numbered it so.
        #[serde(skip_serializing_if = "Option::is_none")]
        matched_in: Option<&'a [String]>,
    }
    let docs: Vec<Found<'_>> = found
        .iter()
        .map(|(r, m)| Found {
            rule: rule_json(set, r),
            matched: match m {
                Match::Id => "id",
                Match::Cis | Match::Same(_) => "cis",
                Match::Previous(_) => "previous",
            },
            matched_in: match m {
                Match::Previous(p) => Some(&p.benchmarks),
                _ => None,
            },
        })
        .collect();
    match docs.as_slice() {
        [one] => serde_json::to_writer_pretty(&mut *out, one)?,
        many => serde_json::to_writer_pretty(&mut *out, many)?,
    }
    writeln!(out)
}

/// The rules an id matched, in full, each introduced by how the id names it when it is not the rule's own id.
pub fn write_rules_found_text(
    out: &mut dyn Write,
    set: &RuleSet,
    asked: &str,
    found: &[(&Rule, Match<'_>)],
) -> io::Result<()> {
    for (i, (r, m)) in found.iter().enumerate() {
        if i > 0 {
            writeln!(out, "\n{}\n", "-".repeat(72))?;
        }
        let benchmark = |r: &Rule| {
            set.packs
                .iter()
                .find(|p| p.id == r.pack)
                .and_then(|p| p.benchmark_version.as_deref())
                .map_or(String::new(), |v| format!(" v{v}"))
        };
        match m {
            Match::Id => {}
            Match::Cis if found.len() > 1 => {
                writeln!(out, "CIS {asked} is this rule in the current benchmark{}:\n", benchmark(r))?
            }
            Match::Cis => {}
            Match::Same(b) => {
                writeln!(out, "CIS {asked} in {}, as now:\n", benchmark_titles(set, std::slice::from_ref(b)))?
            }
            Match::Previous(p) => writeln!(
                out,
                "CIS {asked} was this rule in {} (it is CIS {} in{}):\n",
                benchmark_titles(set, &p.benchmarks),
                r.cis,
                benchmark(r)
            )?,
        }
        write_rule_text(out, set, r)?;
    }
    Ok(())
}

/// `CIS Kubernetes Benchmark v1.5.1, CIS Kubernetes Benchmark v1.6.0 and ...` for benchmark ids.
fn benchmark_titles(set: &RuleSet, ids: &[String]) -> String {
    let titles: Vec<String> = ids
        .iter()
        .map(|id| set.benchmarks().find(|b| &b.id == id).map_or_else(|| id.clone(), |b| format!("{} ({id})", b.title)))
        .collect();
    match titles.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

pub fn write_rule_text(out: &mut dyn Write, set: &RuleSet, r: &Rule) -> io::Result<()> {
    let c = set.component(r);
    writeln!(
        out,
        "{}  (CIS {}, {})",
        r.id,
        r.cis,
        set.packs.iter().find(|p| p.id == r.pack).map_or("", |p| p.title.as_str())
    )?;
    writeln!(out, "{}\n", r.title)?;
    for p in &r.previous {
        writeln!(out, "Earlier:     CIS {} in {}", p.cis, p.benchmarks.join(", "))?;
    }
    writeln!(out, "Component:   {} ({})", c.title, c.id)?;
    writeln!(out, "Severity:    {}", r.severity)?;
    writeln!(out, "Assessment:  {:?}", r.assessment)?;
    writeln!(out, "Test:        {}", r.test.describe())?;
    let mut seen: Vec<&str> = Vec::new();
    for check in r.test.checks() {
        if seen.contains(&check.flag.as_str()) {
            continue;
        }
        seen.push(&check.flag);
        let Some(decl) = c.flags.get(check.name()) else { continue };
        let mut about = format!("{} is a {} flag", check.flag, decl.ty.as_str());
        match (&check.key, decl.gates.get(check.key.as_deref().unwrap_or_default()), &decl.default) {
            (Some(k), Some(g), _) => about.push_str(&format!("; gate {k} defaults to {} ({:?})", g.default, g.stage)),
            (None, _, Some(d)) => about.push_str(&format!(" defaulting to {d:?} when absent")),
            _ => {}
        }
        if decl.ty.accumulates() {
            about.push_str("; every occurrence counts");
        }
        if let Some(k) = &decl.config {
            about.push_str(&format!("; config-file field {k}"));
        }
        writeln!(out, "             {about}")?;
    }
    // The places besides the command line that can set what this rule reads.
    for s in c.sources.iter().filter(|s| r.test.checks().iter().any(|k| s.sets(k.name(), c.flags.get(k.name())))) {
        let place = s.flag.as_deref().map(|f| format!("--{f}")).or_else(|| s.path.clone()).unwrap_or_default();
        writeln!(out, "Settings:    also from {} ({place})", s.what)?;
    }
    writeln!(out, "\nRationale:\n{}\n", as_text(&r.rationale))?;
    if !r.audit.trim().is_empty() {
        writeln!(out, "Audit:\n{}\n", as_text(&r.audit))?;
    }
    writeln!(out, "Remediation:\n{}", as_text(&r.remediation))?;
    if !r.references.is_empty() {
        writeln!(out, "\nReferences:")?;
        for reference in &r.references {
            writeln!(out, "  {reference}")?;
        }
    }
    Ok(())
}

/// A rule text as the terminal shows it: its paragraphs, numbered steps and code ([`crate::rules::prose`]),
/// indented under its heading.
fn as_text(text: &str) -> String {
    crate::rules::prose::to_text(&crate::rules::prose::parse(text), "  ")
}

/// One host as `fleetaudit check` reached it: its host key's fingerprint, or why not.
#[derive(Debug, Serialize)]
pub struct Probe {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub reachable: bool,
    pub host_key_fingerprint: Option<String>,
    /// `certificate signed by CA SHA256:..., serial N, key id "..."` when a CA vouched for the host's key.
    pub host_certificate: Option<String>,
    pub error: Option<ProbeError>,
}

#[derive(Debug, Serialize)]
pub struct ProbeError {
    pub kind: String,
    pub message: String,
}

pub fn write_check_text(out: &mut dyn Write, inventory: &str, probes: &[Probe], style: Style) -> io::Result<()> {
    let width = probes.iter().map(|p| p.name.len()).max().unwrap_or(4);
    writeln!(out, "inventory {inventory}: {} hosts", probes.len())?;
    for p in probes {
        match (&p.host_key_fingerprint, &p.error) {
            (_, Some(e)) => {
                writeln!(out, "{:<width$}  {}  {}: {}", p.name, style.status(Status::Error), e.kind, e.message)?
            }
            (fp, None) => match &p.host_certificate {
                Some(cert) => writeln!(out, "{:<width$}  ok     {} ({cert})", p.name, fp.as_deref().unwrap_or(""))?,
                None => writeln!(out, "{:<width$}  ok     {}", p.name, fp.as_deref().unwrap_or(""))?,
            },
        }
    }
    let failed = probes.iter().filter(|p| !p.reachable).count();
    writeln!(out, "\n{} reachable, {failed} not", probes.len() - failed)
}

pub fn write_check_json(out: &mut dyn Write, inventory: &str, probes: &[Probe]) -> io::Result<()> {
    let failed = probes.iter().filter(|p| !p.reachable).count();
    let doc = serde_json::json!({
        "inventory": inventory,
        "hosts": probes,
        "reachable": probes.len() - failed,
        "unreachable": failed,
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}
