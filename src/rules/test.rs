//! A rule's test: checks on flags (`set`, `eq`, `has`, ...) combined with `all` / `any`, evaluated against the
//! flags of one process.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::filecheck::{FileCheck, Others, Target};
use super::layers::{self, From, Setting};
use super::settings::{self, FlagDecl, FlagType, Precedence, Value, go_bool};
use crate::files::FileSet;
use crate::ps::flags;

/// The comparison a check makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// The flag is given a non-empty value (a bare boolean counts).
    Set,
    /// The flag is absent or empty.
    Notset,
    /// The flag is not on the command line at all: an empty `--flag=` is present (`--admission-control=`
    /// turns every admission plugin off).
    Absent,
    /// Equal: as booleans when the value is `true`/`false`, as numbers (or Go durations) when both sides are
    /// numbers, else as strings.
    Eq,
    Noteq,
    /// The comma-separated value contains the element.
    Has,
    Nothave,
    Gt,
    Gte,
    Lt,
    Lte,
    /// The value matches the regular expression (unanchored, as kube-bench does; anchor it to match the whole).
    Regex,
    /// Every element of the comma-separated value is one of the allowed, comma-separated elements.
    ValidElements,
}

impl Op {
    pub const ALL: [Op; 13] = [
        Op::Set,
        Op::Notset,
        Op::Absent,
        Op::Eq,
        Op::Noteq,
        Op::Has,
        Op::Nothave,
        Op::Gt,
        Op::Gte,
        Op::Lt,
        Op::Lte,
        Op::Regex,
        Op::ValidElements,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Notset => "notset",
            Op::Absent => "absent",
            Op::Eq => "eq",
            Op::Noteq => "noteq",
            Op::Has => "has",
            Op::Nothave => "nothave",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::Regex => "regex",
            Op::ValidElements => "valid_elements",
        }
    }

    pub fn needs_value(self) -> bool {
        !matches!(self, Op::Set | Op::Notset | Op::Absent)
    }

    fn is_numeric(self) -> bool {
        matches!(self, Op::Gt | Op::Gte | Op::Lt | Op::Lte)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check on one flag, validated when the pack loaded (see [`Check::new`] and [`Check::suits`]).
#[derive(Debug, Clone)]
pub struct Check {
    /// As written in the pack: `--anonymous-auth`.
    pub flag: String,
    /// For a feature-gates flag: the gate (`RotateKubeletServerCertificate`).
    pub key: Option<String>,
    pub op: Op,
    pub value: Option<String>,
    /// A field of the document the flag names, judged instead of the flag (`@secrets_write_provider` of the
    /// `--encryption-provider-config` file): see [`super::doc::Doc::find`].
    pub field: Option<String>,
    compiled: Compiled,
    /// [`Check::requirement`], written once: every judgement of every host shows it.
    requirement: String,
}

#[derive(Debug, Clone)]
enum Compiled {
    Nothing,
    Number(f64),
    Regex(Regex),
    Elements(Vec<String>),
}

impl Check {
    /// Validates a check on its own; the error says which field is wrong and why.
    pub fn new(
        flag: String,
        key: Option<String>,
        op: Op,
        value: Option<String>,
    ) -> Result<Check, (&'static str, String)> {
        if !flag.starts_with("--") || flag.len() < 3 || flag[2..].contains(['=', ' ']) {
            return Err(("flag", format!("{flag:?} is not a flag name; write it as \"--name\"")));
        }
        let compiled = match (&value, op) {
            (None, op) if op.needs_value() => {
                return Err(("value", format!("op {op} compares against a value; add value = \"...\"")));
            }
            (Some(_), op) if !op.needs_value() => {
                return Err(("value", format!("op {op} takes no value; remove it")));
            }
            (None, _) => Compiled::Nothing,
            (Some(v), op) if op.is_numeric() => Compiled::Number(
                number(v).ok_or_else(|| ("value", format!("op {op} needs a number or duration, found {v:?}")))?,
            ),
            (Some(v), Op::Regex) => {
                Compiled::Regex(Regex::new(v).map_err(|e| ("value", format!("not a valid regular expression: {e}")))?)
            }
            (Some(v), Op::ValidElements) => {
                let elements: Vec<String> = flags::list(v).map(str::to_owned).collect();
                if elements.is_empty() {
                    return Err(("value", "valid_elements needs a comma-separated list of allowed values".into()));
                }
                Compiled::Elements(elements)
            }
            (Some(_), _) => Compiled::Nothing,
        };
        let mut check = Check { flag, key, op, value, field: None, compiled, requirement: String::new() };
        check.requirement = check.describe();
        Ok(check)
    }

    /// The check judges `field` of the document the flag names.
    pub fn with_field(mut self, field: String) -> Result<Check, (&'static str, String)> {
        if self.key.is_some() {
            return Err(("field", "a check has `key` or `field`, not both".into()));
        }
        if let Some(name) = field.strip_prefix('@')
            && super::doc::derived(name).is_none()
        {
            let known: Vec<String> = super::doc::DERIVED.iter().map(|(n, _, _)| format!("@{n}")).collect();
            return Err(("field", format!("{field:?} is no derived field; known: {}", known.join(", "))));
        }
        if field.is_empty() || self.op == Op::Absent {
            return Err(("field", "a field check needs a field path and an op other than `absent`".into()));
        }
        self.field = Some(field);
        self.requirement = self.describe();
        Ok(self)
    }

    /// Whether the check makes sense for the flag's declared type: a list is searched (`has`), a boolean
    /// compared (`eq`), a feature gate named (`key`).
    pub fn suits(&self, decl: &FlagDecl) -> Result<(), (&'static str, String)> {
        if self.field.is_some() {
            // The field's own type is the document's: scalars compare, lists search.
            return match decl.ty {
                FlagType::String => Ok(()),
                other => Err((
                    "field",
                    format!("{} is {}, not a file path: a field check reads a file", self.flag, other.as_str()),
                )),
            };
        }
        let allowed: &[Op] = match (decl.ty, &self.key) {
            (FlagType::FeatureGates, None) => &[Op::Set, Op::Notset, Op::Absent],
            (FlagType::FeatureGates, Some(key)) => {
                if !decl.gates.contains_key(key) {
                    return Err(("key", format!("gate {key:?} is not declared in the flag's `gates`")));
                }
                &[Op::Eq, Op::Noteq]
            }
            (_, Some(_)) => {
                return Err((
                    "key",
                    format!("only a feature_gates flag has keys; {} is {}", self.flag, decl.ty.as_str()),
                ));
            }
            (FlagType::Bool, None) => &[Op::Set, Op::Notset, Op::Absent, Op::Eq, Op::Noteq],
            (FlagType::Int | FlagType::Duration, None) => {
                &[Op::Set, Op::Notset, Op::Absent, Op::Eq, Op::Noteq, Op::Gt, Op::Gte, Op::Lt, Op::Lte, Op::Regex]
            }
            (FlagType::String, None) => &[Op::Set, Op::Notset, Op::Absent, Op::Eq, Op::Noteq, Op::Regex],
            (FlagType::List | FlagType::Array, None) => {
                &[Op::Set, Op::Notset, Op::Absent, Op::Has, Op::Nothave, Op::ValidElements, Op::Regex]
            }
        };
        if !allowed.contains(&self.op) {
            let names: Vec<&str> = allowed.iter().map(|o| o.as_str()).collect();
            return Err(("op", format!("{} is a {} flag: use {}", self.flag, decl.ty.as_str(), names.join(", "))));
        }
        if let (FlagType::Bool, Some(v)) | (FlagType::FeatureGates, Some(v)) = (decl.ty, &self.value)
            && go_bool(v).is_none()
        {
            return Err(("value", format!("{} takes a boolean; {v:?} is not one", self.flag)));
        }
        Ok(())
    }

    /// The flag's name without dashes, as the flag parser stores it.
    pub fn name(&self) -> &str {
        &self.flag[2..]
    }

    /// What the check requires, for people: `--anonymous-auth eq false`, `--feature-gates:Gate noteq false`.
    pub fn requirement(&self) -> String {
        self.requirement.clone()
    }

    fn describe(&self) -> String {
        let subject = match (&self.key, &self.field) {
            (Some(k), _) => format!("{}:{k}", self.flag),
            (None, Some(_)) => self.subject(),
            (None, None) => self.flag.clone(),
        };
        match &self.value {
            Some(v) => format!("{subject} {} {v}", self.op),
            None => format!("{subject} {}", self.op),
        }
    }

    /// The subject for people: `--anonymous-auth`, or `RotateKubeletServerCertificate in --feature-gates`.
    fn subject(&self) -> String {
        match (&self.key, &self.field) {
            (Some(k), _) => format!("{k} in {}", self.flag),
            (None, Some(f)) => match f.strip_prefix('@').and_then(super::doc::derived) {
                Some(what) => format!("{what} (in the file {} names)", self.flag),
                None => format!("{f} in the file {} names", self.flag),
            },
            (None, None) => self.flag.clone(),
        }
    }

    /// For a field check: the field's value in the document the flag names, as a setting.
    fn field_setting(&self, field: &str, path: Setting, view: &View<'_, '_>) -> Result<Setting, String> {
        let Some(named) = path.value.as_ref().map(Value::text).filter(|p| !p.is_empty() && path.from.is_given()) else {
            return Ok(Setting { value: None, from: From::Absent, texts: Vec::new(), ambiguous: None });
        };
        let located = view.viewer.locate(view.files, &named);
        let at = located.at.as_str();
        let content = match located.entry {
            _ if view.files.not_read => {
                return Err(format!(
                    "{} names {named}, which was not read: this judgement has only a process table (judge a \
                     snapshot of the host, or scan it)",
                    self.flag
                ));
            }
            None => return Err(format!("{} names {named}, which was not read", self.flag)),
            Some(crate::files::Entry::Problem(_)) if located.note.is_some() => {
                return Err(located.note.unwrap_or_default());
            }
            Some(crate::files::Entry::Problem(p)) => {
                return Err(format!("{} names {at}: {}", self.flag, super::filecheck::problem_text(p)));
            }
            Some(e) => e.content().ok_or_else(|| format!("{at} is not a file fleetaudit read"))?,
        };
        let doc = super::doc::parse(at, &content.bytes)
            .map_err(|e| format!("{e}: the component could not read it either"))?;
        match doc.find(field) {
            None => {
                let why = match field.strip_prefix('@').and_then(super::doc::derived_absent) {
                    Some(absent) => format!("{at}: {absent}"),
                    None => format!("{at} has no {field}"),
                };
                Ok(Setting { value: None, from: From::Absent, texts: vec![why], ambiguous: None })
            }
            Some(found) => {
                let line = found.line();
                let place = if line > 0 { format!("{at}:{line}") } else { at.to_owned() };
                let value = match &found {
                    super::doc::Found::Scalar { text, .. } => Value::Scalar(text.clone()),
                    super::doc::Found::List { items, .. } => Value::List(items.clone()),
                    super::doc::Found::Other { .. } => {
                        return Err(format!("{place}: {field} is not a value"));
                    }
                };
                Ok(Setting {
                    value: Some(value),
                    from: From::File,
                    texts: vec![format!("{place}: {field} = {found}")],
                    ambiguous: None,
                })
            }
        }
    }

    fn eval(&self, view: &View<'_, '_>) -> FlagEvidence {
        let decl = view.process.component.flags.get(self.name());
        let Some(decl) = decl else {
            // The pack refuses checks on undeclared flags; a component built by hand may lack one.
            return self.evidence(None, Vec::new(), Source::Hidden, None, format!("{} is not declared", self.flag));
        };
        let setting = match layers::resolve(&view.process, self.name(), self.key.as_deref(), decl) {
            Ok(s) => s,
            Err(u) => {
                let why = match (view.embedded_in, u.overridden.is_empty()) {
                    (Some(program), _) => {
                        format!("it runs inside `{program}`, so {} is set by {}", self.subject(), u.text())
                    }
                    (None, false) => format!(
                        "{} is on the command line ({}), but {} can override it",
                        self.subject(),
                        u.overridden.join(" "),
                        u.text()
                    ),
                    (None, true) => format!(
                        "{} is not on the command line, so it is set by {}{}",
                        self.subject(),
                        u.text(),
                        if view.process.layers.iter().all(|l| l.applied.source.precedence == Precedence::BelowFlags) {
                            format!("; or set {} on the command line", self.flag)
                        } else {
                            String::new()
                        }
                    ),
                };
                return self.evidence(None, u.overridden, Source::Hidden, None, why);
            }
        };
        let setting = match &self.field {
            None => setting,
            Some(field) => match self.field_setting(field, setting, view) {
                Ok(s) => s,
                Err(why) => return self.evidence(None, Vec::new(), Source::Hidden, None, why),
            },
        };
        let value_text = setting.value.as_ref().map(Value::text);
        let undecidable =
            |why: String| self.evidence(value_text.clone(), setting.texts.clone(), Source::Hidden, None, why);
        if let Some(token) = &setting.ambiguous {
            return undecidable(format!(
                "`{token}` follows a flag without a value that fleetaudit does not know: if that flag takes a \
                 value, the component read `{token}` as it. Give that flag its value with `=` or add it to the \
                 pack's [known_flags]"
            ));
        }
        if let Some(v) = &setting.value
            && self.field.is_none()
            && let Some(want) = settings::malformed(if self.key.is_some() { FlagType::Bool } else { decl.ty }, v)
        {
            return undecidable(format!(
                "{} is {:?}, which is not {want}: the component would refuse it and not start, so this process \
                 is not running with it; check what it really runs",
                self.subject(),
                v.text()
            ));
        }
        let source = match setting.from {
            From::CommandLine | From::Stage => Source::CommandLine,
            From::File | From::FileDefault | From::Env => Source::File,
            From::Default => Source::Default,
            From::Absent => Source::Absent,
        };
        let elements: Vec<&str> = match &setting.value {
            Some(Value::List(l)) => l.iter().map(String::as_str).collect(),
            Some(Value::Scalar(s)) => flags::list(s).collect(),
            None => Vec::new(),
        };
        let scalar = value_text.as_deref();
        // `set`: given (on the command line or in a file) with something in it.
        let given = setting.from.is_given();
        let set = given && scalar.is_some_and(|v| !v.is_empty());
        let passed = match (self.op, scalar) {
            (Op::Set, _) => set,
            (Op::Notset, _) => !set,
            (Op::Absent, _) => !given,
            (_, None) => false,
            (Op::Eq, Some(v)) => equals(v, self.value()),
            (Op::Noteq, Some(v)) => !equals(v, self.value()),
            (Op::Has, Some(_)) => elements.contains(&self.value()),
            (Op::Nothave, Some(_)) => !elements.contains(&self.value()),
            (op @ (Op::Gt | Op::Gte | Op::Lt | Op::Lte), Some(v)) => match (number(v), &self.compiled) {
                (Some(a), Compiled::Number(b)) => match op {
                    Op::Gt => a > *b,
                    Op::Gte => a >= *b,
                    Op::Lt => a < *b,
                    _ => a <= *b,
                },
                _ => false,
            },
            (Op::Regex, Some(v)) => matches!(&self.compiled, Compiled::Regex(r) if r.is_match(v)),
            (Op::ValidElements, Some(_)) => match &self.compiled {
                Compiled::Elements(allowed) => {
                    !elements.is_empty() && elements.iter().all(|e| allowed.iter().any(|a| a == e))
                }
                _ => false,
            },
        };
        let occurrences = view.process.flags.all(self.name()).count();
        let shown = self.shown(&setting, scalar, occurrences, decl);
        let why = if passed { shown } else { format!("{shown}; required: {}", self.requirement()) };
        self.evidence(value_text, setting.texts, source, Some(passed), why)
    }

    /// The value judged, for people, with what made it. `occurrences`: how many times the flag is on the
    /// process's own command line.
    fn shown(&self, setting: &Setting, value: Option<&str>, occurrences: usize, decl: &FlagDecl) -> String {
        let subject = self.subject();
        let texts = &setting.texts;
        match (&setting.from, value) {
            (_, None) if self.field.is_some() && !texts.is_empty() => texts.join("; "),
            (_, None) if self.field.is_some() => format!("{} is not set: nothing configures it", self.flag),
            (_, None) => format!("{} is not set", self.flag),
            (From::CommandLine, Some(v)) if self.key.is_some() => {
                format!("{subject} is {v} (from {})", texts.join(" "))
            }
            (From::CommandLine, Some("")) => format!("{} is set to an empty value", self.flag),
            (From::CommandLine, Some(v)) if texts.len() == 1 => {
                // The occurrence as it reads (`--authorization-mode=Node,RBAC`), or as `--flag=value` for a
                // separate value or a bare boolean; a scalar given more than once says the last one won.
                let written = if texts[0].contains('=') { texts[0].clone() } else { format!("{}={v}", self.flag) };
                match occurrences {
                    0 | 1 => written,
                    n => format!("{written} (the last of {n} occurrences)"),
                }
            }
            (From::CommandLine, Some(v)) if decl.ty.accumulates() => {
                format!("{} is {v} from {} occurrences ({})", self.flag, texts.len(), texts.join(" "))
            }
            (From::CommandLine, Some(v)) => format!("{}={v}", self.flag),
            (From::Stage, Some(v)) => format!(
                "{subject} is not set explicitly, so {} turns it {}",
                texts.join(" "),
                if v == "true" { "on" } else { "off" }
            ),
            (From::File | From::Env, Some(_)) => format!("{subject}: from {}", texts.join("; ")),
            (From::FileDefault, Some(_)) => format!("{subject}: {}", texts.join("; ")),
            (From::Default, Some(v)) if self.key.is_some() => {
                format!("{subject} is not set, so the gate's default {v} applies")
            }
            (_, Some(v)) => format!("{} is not set, so its default {v:?} applies", self.flag),
        }
    }

    fn evidence(
        &self,
        value: Option<String>,
        occurrences: Vec<String>,
        source: Source,
        passed: Option<bool>,
        why: String,
    ) -> FlagEvidence {
        FlagEvidence {
            flag: self.flag.clone(),
            key: self.key.clone(),
            requirement: self.requirement(),
            value,
            occurrences,
            source,
            passed,
            why,
        }
    }

    fn value(&self) -> &str {
        self.value.as_deref().unwrap_or_default()
    }
}

/// Where the value a check judged came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    CommandLine,
    /// The flag was absent; the rule's documented default was judged.
    Default,
    /// The flag was absent and has no default.
    Absent,
    /// A config file, drop-in or the environment the process reads.
    File,
    /// A place the process reads settings from leaves it undecided.
    Hidden,
}

/// What one check saw: the evidence behind a verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagEvidence {
    pub flag: String,
    /// The feature gate, for a check on one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub requirement: String,
    /// The value judged (from the command line or the default); secrets are redacted by the caller.
    pub value: Option<String>,
    /// Every occurrence on the command line that made the value, as written (a scalar's last one, each
    /// occurrence of a list), secrets redacted.
    pub occurrences: Vec<String>,
    pub source: Source,
    /// `None`: the check could not be decided.
    pub passed: Option<bool>,
    /// One sentence for people.
    pub why: String,
}

/// One process as a check sees it: its command line, its component, and its settings sources, loaded.
pub struct View<'p, 'a> {
    pub process: layers::Process<'p, 'a>,
    /// The program the component runs inside (`k3s server`), which has its settings instead of a command line.
    pub embedded_in: Option<&'p str>,
    /// The host's files, for file checks.
    pub files: &'p FileSet,
    pub targets: &'p [Target],
    /// Other components' settings on the same host (the kubelet's staticPodPath for a manifest's path).
    pub others: &'p Others<'p>,
    /// How the process sees the file system (a container's own mounts).
    pub viewer: crate::files::mount::Viewer<'p>,
}

/// A rule's test: a check, or checks combined.
#[derive(Debug, Clone)]
pub enum Test {
    Check(Check),
    /// The mode or owner of files (CIS 1.1.x, 4.1.x).
    File(FileCheck),
    All(Vec<Test>),
    Any(Vec<Test>),
}

/// The result of a test on one process: `None` when it cannot be decided.
pub struct Outcome {
    pub passed: Option<bool>,
    pub evidence: Vec<FlagEvidence>,
    /// It passed only because what it checks is not there (no such file in use): the rule does not apply.
    pub inapplicable: bool,
}

impl Test {
    /// Evaluates the test on one process.
    pub fn eval(&self, view: &View<'_, '_>) -> Outcome {
        match self {
            Test::Check(c) => {
                let e = c.eval(view);
                Outcome { passed: e.passed, evidence: vec![e], inapplicable: false }
            }
            Test::File(c) => {
                let (e, inapplicable) = c.eval(&view.targets[c.target], view, view.files, view.others);
                Outcome { passed: e.passed, evidence: vec![e], inapplicable }
            }
            Test::All(tests) | Test::Any(tests) => {
                let all = matches!(self, Test::All(_));
                let mut evidence = Vec::new();
                let (mut any_true, mut any_false, mut any_unknown) = (false, false, false);
                let mut inapplicable = true;
                for t in tests {
                    let o = t.eval(view);
                    inapplicable &= o.inapplicable;
                    match o.passed {
                        Some(true) => any_true = true,
                        Some(false) => any_false = true,
                        None => any_unknown = true,
                    }
                    evidence.extend(o.evidence);
                }
                let passed = match (all, any_true, any_false, any_unknown) {
                    (true, _, true, _) => Some(false),
                    (true, _, false, true) => None,
                    (true, _, false, false) => Some(true),
                    (false, true, _, _) => Some(true),
                    (false, false, _, true) => None,
                    (false, false, _, false) => Some(false),
                };
                Outcome { passed, evidence, inapplicable: inapplicable && passed == Some(true) }
            }
        }
    }

    /// Every check in the test, depth first.
    pub fn checks(&self) -> Vec<&Check> {
        match self {
            Test::Check(c) => vec![c],
            Test::File(_) => Vec::new(),
            Test::All(ts) | Test::Any(ts) => ts.iter().flat_map(Test::checks).collect(),
        }
    }

    /// Every file check in the test.
    pub fn file_checks(&self) -> Vec<&FileCheck> {
        match self {
            Test::File(c) => vec![c],
            Test::Check(_) => Vec::new(),
            Test::All(ts) | Test::Any(ts) => ts.iter().flat_map(Test::file_checks).collect(),
        }
    }

    /// The test written out for people: `--a set and (--b eq x or --c notset)`.
    pub fn describe(&self) -> String {
        match self {
            Test::Check(c) => c.requirement(),
            Test::File(c) => c.requirement(),
            Test::All(ts) | Test::Any(ts) => {
                let sep = if matches!(self, Test::All(_)) { " and " } else { " or " };
                let parts: Vec<String> = ts
                    .iter()
                    .map(|t| match t {
                        Test::Check(_) | Test::File(_) => t.describe(),
                        _ => format!("({})", t.describe()),
                    })
                    .collect();
                parts.join(sep)
            }
        }
    }
}

fn equals(actual: &str, expected: &str) -> bool {
    if matches!(expected, "true" | "false")
        && let Some(a) = go_bool(actual)
    {
        return a == (expected == "true");
    }
    if let (Some(a), Some(b)) = (number(actual), number(expected)) {
        return a == b;
    }
    actual == expected
}

/// A plain number, or a Go duration (`90s`, `1h30m`, `500ms`) in seconds: Kubernetes takes both, and
/// `--streaming-connection-idle-timeout=0s` must compare equal to `0`.
pub fn number(s: &str) -> Option<f64> {
    if let Ok(n) = s.parse::<f64>() {
        return n.is_finite().then_some(n);
    }
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    Some(sign * total)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::ps::flags::{FlagStyle, Flags};
    use crate::rules::RuleSet;
    use crate::rules::pack::Component;
    use crate::rules::settings::Applied;

    /// A component `t` with the flags a test declares (TOML lines for `[flags.t]`) and the given sources.
    fn component(flags: &str, sources: &str) -> Component {
        let text = format!(
            "[pack]\nid = \"t\"\ntitle = \"t\"\nversion = \"1\"\n[[component]]\nid = \"t\"\ntitle = \"t\"\n\
             programs = [\"t\"]\n{sources}\n[flags.t]\n{flags}\n"
        );
        let mut set = RuleSet {
            packs: Vec::new(),
            components: Vec::new(),
            embeddings: Vec::new(),
            targets: Vec::new(),
            rules: Vec::new(),
            cluster_rules: Vec::new(),
        };
        set.add(Path::new("t.toml"), &text).unwrap();
        set.components.remove(0)
    }

    const FLAGS: &str = r#"
"--anonymous-auth" = { type = "bool", default = "true" }
"--profiling" = { type = "bool", default = "true" }
"--kubelet-certificate-authority" = { type = "string" }
"--token-auth-file" = { type = "string" }
"--mode" = { type = "string" }
"--authorization-mode" = { type = "list", default = "AlwaysAllow" }
"--enable-admission-plugins" = { type = "list", default = "" }
"--tls-cipher-suites" = { type = "list" }
"--tls-min-version" = { type = "string" }
"--audit-log-maxage" = { type = "int", default = "0" }
"--read-only-port" = { type = "int", default = "10255", config = "readOnlyPort" }
"--streaming-connection-idle-timeout" = { type = "duration", default = "4h0m0s", config = "streamingConnectionIdleTimeout" }
"--x" = { type = "duration" }
"--hostname-override" = { type = "string" }
"--feature-gates" = { type = "feature_gates", config = "featureGates", gates = { RotateKubeletServerCertificate = { default = true, stage = "beta" } } }
"--config" = { type = "string" }
"#;

    fn check(flag: &str, op: Op, value: Option<&str>) -> Test {
        Test::Check(Check::new(flag.into(), None, op, value.map(Into::into)).unwrap())
    }

    fn gate(op: Op, value: &str) -> Test {
        let key = Some("RotateKubeletServerCertificate".to_string());
        Test::Check(Check::new("--feature-gates".into(), key, op, Some(value.into())).unwrap())
    }

    fn eval_with(test: &Test, c: &Component, line: &str, embedded_in: Option<&str>) -> Outcome {
        eval_files(test, c, line, embedded_in, &FileSet::none())
    }

    fn eval_files(test: &Test, c: &Component, line: &str, embedded_in: Option<&str>, files: &FileSet) -> Outcome {
        let args: Vec<&str> = line.split_whitespace().collect();
        let flags = Flags::parse(&args, FlagStyle::Pflag, &c.known);
        let applied: Vec<Applied<'_>> = c.sources.iter().filter_map(|s| s.applied(&flags)).collect();
        let layers = layers::load(applied, files, crate::files::mount::Viewer::host(42), &crate::rules::doc::parse);
        for check in test.checks() {
            check.suits(&c.flags[check.name()]).unwrap();
        }
        let process = layers::Process { flags: &flags, args: &args, component: c, layers: &layers };
        test.eval(&View {
            process,
            embedded_in,
            files,
            targets: &[],
            others: &|_: &str, _: &str| None,
            viewer: crate::files::mount::Viewer::host(42),
        })
    }

    fn run(test: &Test, line: &str) -> Option<bool> {
        eval_with(test, &component(FLAGS, ""), line, None).passed
    }

    fn why(test: &Test, line: &str) -> String {
        eval_with(test, &component(FLAGS, ""), line, None).evidence[0].why.clone()
    }

    #[test]
    fn set_and_notset() {
        let t = check("--kubelet-certificate-authority", Op::Set, None);
        assert_eq!(run(&t, "--kubelet-certificate-authority=/ca.crt"), Some(true));
        assert_eq!(run(&t, "--kubelet-certificate-authority /ca.crt"), Some(true));
        assert_eq!(run(&t, "--kubelet-certificate-authority="), Some(false), "empty is not set");
        assert_eq!(run(&t, "--other=1"), Some(false));
        assert_eq!(run(&t, "--kubelet_certificate_authority=/ca.crt"), Some(true), "pflag normalises _ to -");
        let t = check("--token-auth-file", Op::Notset, None);
        assert_eq!(run(&t, "--x=1"), Some(true));
        assert_eq!(run(&t, "--token-auth-file="), Some(true));
        assert_eq!(run(&t, "--token-auth-file=/t.csv"), Some(false));
        // A default does not make a flag "set".
        let t = check("--profiling", Op::Set, None);
        assert_eq!(run(&t, ""), Some(false));
        assert_eq!(run(&t, "--profiling"), Some(true));
    }

    #[test]
    fn eq_and_noteq_with_booleans_numbers_and_defaults() {
        let t = check("--anonymous-auth", Op::Eq, Some("false"));
        assert_eq!(run(&t, "--anonymous-auth=false"), Some(true));
        assert_eq!(run(&t, "--anonymous-auth=False"), Some(true), "Go's ParseBool");
        assert_eq!(run(&t, "--anonymous-auth=0"), Some(true));
        assert_eq!(run(&t, "--anonymous-auth=true"), Some(false));
        assert_eq!(run(&t, ""), Some(false), "absent: the default true applies");
        assert_eq!(run(&t, "--anonymous-auth=false --anonymous-auth=true"), Some(false), "last wins");
        assert_eq!(run(&t, "--anonymous-auth=false --anonymous_auth=true"), Some(false), "also when spelt with _");
        let w = why(&t, "--anonymous-auth=false --anonymous_auth=true");
        assert!(w.starts_with("--anonymous_auth=true (the last of 2 occurrences)"), "{w}");
        assert_eq!(run(&t, "--anonymous-auth false"), Some(false), "a bare boolean then a positional `false`");
        let t = check("--profiling", Op::Eq, Some("false"));
        assert_eq!(run(&t, "--profiling"), Some(false), "bare boolean is true");
        let t = check("--streaming-connection-idle-timeout", Op::Noteq, Some("0"));
        assert_eq!(run(&t, "--streaming-connection-idle-timeout=5m"), Some(true));
        assert_eq!(run(&t, "--streaming-connection-idle-timeout=0s"), Some(false), "0s is 0");
        let t = check("--x", Op::Noteq, Some("0"));
        assert_eq!(run(&t, ""), Some(false), "absent with no default fails");
        let t = check("--mode", Op::Eq, Some("RBAC"));
        assert_eq!(run(&t, "--mode=rbac"), Some(false), "strings are case-sensitive");
    }

    #[test]
    fn a_value_the_component_would_refuse_cannot_be_judged() {
        let t = check("--anonymous-auth", Op::Eq, Some("false"));
        let o = eval_with(&t, &component(FLAGS, ""), "--anonymous-auth=no", None);
        assert_eq!(o.passed, None);
        assert!(o.evidence[0].why.contains("not a boolean"), "{}", o.evidence[0].why);
        let t = check("--audit-log-maxage", Op::Gte, Some("30"));
        assert_eq!(run(&t, "--audit-log-maxage=30d"), None, "not an integer");
    }

    #[test]
    fn has_and_nothave_on_lists_count_every_occurrence() {
        let t = check("--enable-admission-plugins", Op::Has, Some("NodeRestriction"));
        assert_eq!(run(&t, "--enable-admission-plugins=NamespaceLifecycle,NodeRestriction"), Some(true));
        assert_eq!(run(&t, "--enable-admission-plugins=NodeRestrictionX"), Some(false), "elements, not substrings");
        assert_eq!(run(&t, ""), Some(false));
        assert_eq!(run(&t, "--enable-admission-plugins=A --enable-admission-plugins=NodeRestriction"), Some(true));
        // The issue's case: a repeated list flag appends, so AlwaysAdmit stays enabled.
        let t = check("--enable-admission-plugins", Op::Nothave, Some("AlwaysAdmit"));
        let line = "--enable-admission-plugins=AlwaysAdmit --enable-admission-plugins=NodeRestriction";
        assert_eq!(run(&t, line), Some(false));
        let w = why(&t, line);
        assert!(
            w.contains("from 2 occurrences")
                && w.contains("--enable-admission-plugins=AlwaysAdmit --enable-admission-plugins=NodeRestriction"),
            "{w}"
        );
        assert_eq!(run(&t, ""), Some(true), "the default is an empty list");
        let t = check("--authorization-mode", Op::Nothave, Some("AlwaysAllow"));
        assert_eq!(run(&t, "--authorization-mode=Node,RBAC"), Some(true));
        assert_eq!(run(&t, "--authorization-mode=RBAC,AlwaysAllow"), Some(false));
        assert_eq!(run(&t, "--authorization-mode=RBAC --authorization-mode=AlwaysAllow"), Some(false));
        assert_eq!(run(&t, ""), Some(false), "the default AlwaysAllow applies");
        assert_eq!(run(&t, "--authorization-mode RBAC"), Some(true), "--flag value");
    }

    #[test]
    fn numeric_compares() {
        let gte = check("--audit-log-maxage", Op::Gte, Some("30"));
        assert_eq!(run(&gte, "--audit-log-maxage=30"), Some(true));
        assert_eq!(run(&gte, "--audit-log-maxage=29"), Some(false));
        assert_eq!(run(&gte, ""), Some(false));
        assert_eq!(run(&gte, "--audit-log-maxage=30 --audit-log-maxage=7"), Some(false), "last wins");
        let gt = check("--x", Op::Gt, Some("1m"));
        assert_eq!(run(&gt, "--x=61s"), Some(true));
        assert_eq!(run(&gt, "--x=60s"), Some(false));
        let lt = check("--x", Op::Lt, Some("10"));
        assert_eq!(run(&lt, "--x=9.5"), Some(true));
        assert_eq!(run(&lt, "--x=10"), Some(false));
        let lte = check("--x", Op::Lte, Some("10"));
        assert_eq!(run(&lte, "--x=10"), Some(true));
        assert_eq!(run(&lte, "--x=11"), Some(false));
    }

    #[test]
    fn regex_and_valid_elements() {
        let t = check("--tls-min-version", Op::Regex, Some("^VersionTLS1[23]$"));
        assert_eq!(run(&t, "--tls-min-version=VersionTLS13"), Some(true));
        assert_eq!(run(&t, "--tls-min-version=VersionTLS10"), Some(false));
        let t = check("--tls-cipher-suites", Op::ValidElements, Some("A,B,C"));
        assert_eq!(run(&t, "--tls-cipher-suites=A,C"), Some(true));
        assert_eq!(run(&t, "--tls-cipher-suites=A,D"), Some(false));
        assert_eq!(run(&t, "--tls-cipher-suites="), Some(false));
        // The issue's case: a second occurrence appends a weak suite.
        assert_eq!(run(&t, "--tls-cipher-suites=A --tls-cipher-suites=WEAK"), Some(false));
        assert_eq!(run(&t, "--tls-cipher-suites=A --tls-cipher-suites=B"), Some(true));
    }

    #[test]
    fn feature_gates_merge_per_key() {
        let t = gate(Op::Eq, "true");
        assert_eq!(run(&t, ""), Some(true), "the gate's default");
        assert_eq!(run(&t, "--feature-gates=Other=true"), Some(true));
        // The issue's case: a later occurrence for another key leaves the gate off.
        let line = "--feature-gates=RotateKubeletServerCertificate=false --feature-gates=Other=true";
        assert_eq!(run(&t, line), Some(false));
        assert!(why(&t, line).contains("--feature-gates=RotateKubeletServerCertificate=false"), "{}", why(&t, line));
        assert_eq!(run(&t, "--feature-gates=AllBeta=false"), Some(false), "AllBeta turns a beta gate off");
        assert!(why(&t, "--feature-gates=AllBeta=false").contains("AllBeta=false"));
        assert_eq!(run(&t, "--feature-gates=AllBeta=false,RotateKubeletServerCertificate=true"), Some(true));
        assert_eq!(run(&t, "--feature-gates=RotateKubeletServerCertificate=maybe"), None, "not a boolean");
    }

    #[test]
    fn all_and_any() {
        let a = check("--mode", Op::Set, None);
        let b = check("--hostname-override", Op::Set, None);
        let all = Test::All(vec![a.clone(), b.clone()]);
        let any = Test::Any(vec![a, b]);
        assert_eq!(run(&all, "--mode=1 --hostname-override=1"), Some(true));
        assert_eq!(run(&all, "--mode=1"), Some(false));
        assert_eq!(run(&any, "--mode=1"), Some(true));
        assert_eq!(run(&any, ""), Some(false));
        assert_eq!(all.describe(), "--mode set and --hostname-override set");
    }

    const KUBELET_CONFIG: &str = "[[component.source]]\nkind = \"file\"\nflag = \"--config\"\nformat = \"document\"\n\
        what = \"the KubeletConfiguration file\"\nsets = \"config\"\nprecedence = \"below_flags\"\n";

    #[test]
    fn a_config_file_decides_what_the_command_line_leaves_out() {
        let c = component(FLAGS, KUBELET_CONFIG);
        let t = check("--read-only-port", Op::Eq, Some("0"));
        let o = eval_with(&t, &c, "--config=/var/lib/kubelet/config.yaml", None);
        assert_eq!(o.passed, None, "the file may set readOnlyPort: never judged on the flag's default");
        let w = &o.evidence[0].why;
        assert!(w.contains("/var/lib/kubelet/config.yaml") && w.contains("field readOnlyPort"), "{w}");
        // On the command line, the flag overrides the config file, so it decides.
        assert_eq!(eval_with(&t, &c, "--config=/c.yaml --read-only-port=0", None).passed, Some(true));
        assert_eq!(eval_with(&t, &c, "--config=/c.yaml --read-only-port=10255", None).passed, Some(false));
        // Without the file, the default decides.
        assert_eq!(eval_with(&t, &c, "", None).passed, Some(false));
        // A flag with no config field is the command line's alone.
        let x = check("--hostname-override", Op::Notset, None);
        assert_eq!(eval_with(&x, &c, "--config=/c.yaml", None).passed, Some(true));
        // A gate set on the command line decides; one left out is the file's (featureGates.Gate).
        let g = gate(Op::Eq, "true");
        assert_eq!(
            eval_with(&g, &c, "--config=/c.yaml --feature-gates=RotateKubeletServerCertificate=false", None).passed,
            Some(false)
        );
        let o = eval_with(&g, &c, "--config=/c.yaml --feature-gates=AllBeta=true", None);
        assert_eq!(o.passed, None);
        assert!(o.evidence[0].why.contains("featureGates.RotateKubeletServerCertificate"), "{}", o.evidence[0].why);
        // An undecidable check makes `all` undecidable unless another check fails.
        let all = Test::All(vec![t.clone(), check("--mode", Op::Set, None)]);
        assert_eq!(eval_with(&all, &c, "--config=/c --mode=1", None).passed, None);
        assert_eq!(eval_with(&all, &c, "--config=/c", None).passed, Some(false));
    }

    /// A FileSet from (path, content) pairs; a content of `None` is a missing file, `Some(b"\0denied")` denied.
    fn files(entries: &[(&str, Option<&str>)]) -> FileSet {
        use crate::files::{Content, Entry, Kind, Meta, Problem};
        let mut set = FileSet::default();
        for (path, content) in entries {
            let entry = match content {
                None => Entry::Problem(Problem::Missing),
                Some("\0denied") => Entry::Problem(Problem::Denied),
                Some(c) if c.starts_with("\0dir:") => Entry::Found {
                    meta: Meta { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, size: 0 },
                    content: None,
                    names: Some(c[5..].split(',').filter(|n| !n.is_empty()).map(str::to_owned).collect()),
                },
                Some(c) => Entry::Found {
                    meta: Meta { kind: Kind::File, mode: 0o600, uid: 0, gid: 0, size: c.len() as u64 },
                    content: Some(Content::plain(c.as_bytes().to_vec())),
                    names: None,
                },
            };
            set.insert(path.to_string(), entry);
        }
        set
    }

    const KUBELET_SOURCES: &str = "[[component.source]]\nkind = \"file\"\nflag = \"--config\"\nformat = \"document\"\n\
        defaults = true\nwhat = \"the KubeletConfiguration file\"\nsets = \"config\"\nprecedence = \"below_flags\"\n\
        [[component.source]]\nkind = \"dir\"\nflag = \"--config-dir\"\npattern = \"*.conf\"\nformat = \"document\"\n\
        what = \"the kubelet's config drop-ins\"\nsets = \"config\"\nprecedence = \"below_flags\"\n";

    fn kubelet() -> Component {
        let flags = format!(
            "{FLAGS}\"--config-dir\" = {{ type = \"string\" }}\n\
             \"--anonymous\" = {{ type = \"bool\", default = \"true\", config = \"authentication.anonymous.enabled\", config_default = \"false\" }}\n\
             \"--port\" = {{ type = \"int\", default = \"10255\", config = \"readOnlyPort\", config_default = \"0\" }}\n\
             \"--ciphers\" = {{ type = \"list\", config = \"tlsCipherSuites\" }}\n\
             \"--seccomp\" = {{ type = \"bool\", default = \"false\", config = \"seccompDefault\", config_default = \"false\", or_with_config = true }}\n"
        );
        component(&flags.replace("\"--read-only-port\"", "\"--unused-port\""), KUBELET_SOURCES)
    }

    fn judge_files(test: &Test, line: &str, entries: &[(&str, Option<&str>)]) -> (Option<bool>, String) {
        let o = eval_files(test, &kubelet(), line, None, &files(entries));
        let why = o.evidence.iter().map(|e| e.why.clone()).collect::<Vec<_>>().join("; ");
        (o.passed, why)
    }

    #[test]
    fn the_kubelet_config_file_its_defaults_drop_ins_and_flags_in_order() {
        let port = check("--port", Op::Eq, Some("0"));
        let cfg = "/var/lib/kubelet/config.yaml";
        // The file sets it.
        let (p, w) =
            judge_files(&port, "--config=/var/lib/kubelet/config.yaml", &[(cfg, Some(r#"{"readOnlyPort": 10255}"#))]);
        assert_eq!(p, Some(false), "{w}");
        assert!(w.contains("/var/lib/kubelet/config.yaml:1: readOnlyPort = 10255"), "{w}");
        // The file leaves it out: the file's default (0), not the flag's (10255).
        let (p, w) = judge_files(&port, "--config=/var/lib/kubelet/config.yaml", &[(cfg, Some("{}"))]);
        assert_eq!(p, Some(true), "{w}");
        assert!(w.contains("leaves readOnlyPort out, so its default \"0\" applies"), "{w}");
        // A drop-in overrides the file; a later drop-in (lexical order) the earlier one.
        let dir = "/etc/kubelet.conf.d";
        let entries = [
            (cfg, Some("{}")),
            (dir, Some("\0dir:20-b.conf,10-a.conf,README")),
            ("/etc/kubelet.conf.d/10-a.conf", Some(r#"{"readOnlyPort": 0}"#)),
            ("/etc/kubelet.conf.d/20-b.conf", Some(r#"{"readOnlyPort": 10255}"#)),
        ];
        let line = "--config=/var/lib/kubelet/config.yaml --config-dir=/etc/kubelet.conf.d";
        let (p, w) = judge_files(&port, line, &entries);
        assert_eq!(p, Some(false), "{w}");
        assert!(w.contains("20-b.conf:1: readOnlyPort = 10255"), "{w}");
        // A drop-in that leaves it out keeps the file's value, not the default: the default is laid down once,
        // under every document.
        let entries_keep = [
            (cfg, Some(r#"{"readOnlyPort": 10255}"#)),
            (dir, Some("\0dir:10-a.conf")),
            ("/etc/kubelet.conf.d/10-a.conf", Some(r#"{"address": "0.0.0.0"}"#)),
        ];
        let (p, w) = judge_files(&port, line, &entries_keep);
        assert_eq!(p, Some(false), "{w}");
        assert!(w.contains("config.yaml:1: readOnlyPort = 10255"), "{w}");
        // The command line wins over both, wherever it stands.
        let (p, _) = judge_files(&port, &format!("--port=0 {line}"), &entries);
        assert_eq!(p, Some(true));
        // Drop-ins without --config start from the flag defaults.
        let (p, w) = judge_files(&port, "--config-dir=/etc/kubelet.conf.d", &[(dir, Some("\0dir:"))]);
        assert_eq!(p, Some(false), "{w}");
        assert!(w.contains("default \"10255\""), "{w}");
    }

    #[test]
    fn an_unreadable_config_is_an_error_naming_the_place_and_the_fix() {
        let anonymous = check("--anonymous", Op::Eq, Some("false"));
        let line = "--config=/var/lib/kubelet/config.yaml";
        let (p, w) = judge_files(&anonymous, line, &[("/var/lib/kubelet/config.yaml", Some("\0denied"))]);
        assert_eq!(p, None);
        assert!(
            w.contains("permission denied reading /var/lib/kubelet/config.yaml") && w.contains("sftp_command"),
            "{w}"
        );
        let (p, w) = judge_files(&anonymous, line, &[("/var/lib/kubelet/config.yaml", None)]);
        assert_eq!(p, None);
        assert!(w.contains("the process names /var/lib/kubelet/config.yaml, which does not exist"), "{w}");
        let (p, w) = judge_files(&anonymous, line, &[("/var/lib/kubelet/config.yaml", Some("{not json"))]);
        assert_eq!(p, None);
        assert!(w.contains("/var/lib/kubelet/config.yaml:2:1"), "{w}");
        // A field of the wrong type: the kubelet would not start with it.
        let (p, w) = judge_files(
            &anonymous,
            line,
            &[("/var/lib/kubelet/config.yaml", Some(r#"{"authentication": {"anonymous": {"enabled": "no"}}}"#))],
        );
        assert_eq!(p, None);
        assert!(w.contains("not a boolean"), "{w}");
        // But a flag on the command line decides whatever the file is.
        let (p, _) = judge_files(
            &anonymous,
            &format!("{line} --anonymous=false"),
            &[("/var/lib/kubelet/config.yaml", Some("\0denied"))],
        );
        assert_eq!(p, Some(true));
    }

    #[test]
    fn lists_gates_and_or_with_config_from_files() {
        let cfg = "/c.json";
        let ciphers = check("--ciphers", Op::ValidElements, Some("A,B"));
        let (p, w) = judge_files(&ciphers, "--config=/c.json", &[(cfg, Some(r#"{"tlsCipherSuites": ["A", "WEAK"]}"#))]);
        assert_eq!(p, Some(false), "{w}");
        // A list on the command line replaces the file's.
        let (p, _) =
            judge_files(&ciphers, "--config=/c.json --ciphers=A", &[(cfg, Some(r#"{"tlsCipherSuites": ["WEAK"]}"#))]);
        assert_eq!(p, Some(true));
        let g = gate(Op::Eq, "true");
        let (p, w) = judge_files(
            &g,
            "--config=/c.json",
            &[(cfg, Some(r#"{"featureGates": {"RotateKubeletServerCertificate": false}}"#))],
        );
        assert_eq!(p, Some(false), "{w}");
        // A gate on the command line wins; one only in the file is the file's.
        let (p, _) = judge_files(
            &g,
            "--config=/c.json --feature-gates=RotateKubeletServerCertificate=true",
            &[(cfg, Some(r#"{"featureGates": {"RotateKubeletServerCertificate": false}}"#))],
        );
        assert_eq!(p, Some(true));
        // seccomp: flag OR file.
        let seccomp = check("--seccomp", Op::Eq, Some("true"));
        let (p, _) =
            judge_files(&seccomp, "--config=/c.json --seccomp=false", &[(cfg, Some(r#"{"seccompDefault": true}"#))]);
        assert_eq!(p, Some(true), "the file's true is not turned off by the flag's false");
        let (p, _) = judge_files(&seccomp, "--config=/c.json --seccomp=true", &[(cfg, Some("\0denied"))]);
        assert_eq!(p, Some(true), "a true flag decides without the file");
        let (p, _) = judge_files(&seccomp, "--config=/c.json --seccomp=false", &[(cfg, Some("\0denied"))]);
        assert_eq!(p, None, "a false flag leaves it to the unreadable file");
    }

    #[test]
    fn a_source_over_the_flags_leaves_nothing_to_the_command_line() {
        let over = "[[component.source]]\nkind = \"file\"\nflag = \"--openshift-config\"\nformat = \"openshift-arguments\"\n\
                    what = \"the OpenShift config\"\nsets = \"all\"\nprecedence = \"over_flags\"\n";
        let c = component(&format!("{FLAGS}\"--openshift-config\" = {{ type = \"string\" }}\n"), over);
        let t = check("--anonymous-auth", Op::Eq, Some("false"));
        let o = eval_with(&t, &c, "--openshift-config=/etc/os.yaml --anonymous-auth=false", None);
        assert_eq!(o.passed, None);
        assert!(o.evidence[0].why.contains("/etc/os.yaml") && o.evidence[0].why.contains("can override"));
        assert_eq!(eval_with(&t, &c, "--anonymous-auth=false", None).passed, Some(true), "no file, no doubt");
    }

    #[test]
    fn an_embedded_component_is_never_judged_on_defaults() {
        let args = "[[component.source]]\nkind = \"args_flag\"\nflag = \"--kube-apiserver-arg\"\nformat = \"args-flag\"\n\
                    what = \"k3s's API server flags\"\nsets = \"all\"\nprecedence = \"over_flags\"\n";
        let c = component(FLAGS, args);
        let t = check("--profiling", Op::Eq, Some("false"));
        let o = eval_with(&t, &c, "", Some("k3s server"));
        assert_eq!(o.passed, None);
        assert!(
            o.evidence[0].why.contains("runs inside `k3s server`")
                && o.evidence[0].why.contains("--kube-apiserver-arg")
        );
    }

    #[test]
    fn an_occurrence_an_unknown_flag_may_have_swallowed_is_not_judged() {
        let t = check("--anonymous-auth", Op::Eq, Some("false"));
        let o = eval_with(&t, &component(FLAGS, ""), "--mystery --anonymous-auth=false", None);
        assert_eq!(o.passed, None);
        assert!(o.evidence[0].why.contains("--anonymous-auth=false") && o.evidence[0].why.contains("known_flags"));
    }

    #[test]
    fn checks_must_suit_the_flag_type() {
        let c = component(FLAGS, "");
        let suits = |flag: &str, key: Option<&str>, op: Op, value: Option<&str>| {
            Check::new(flag.into(), key.map(Into::into), op, value.map(Into::into)).unwrap().suits(&c.flags[&flag[2..]])
        };
        assert_eq!(suits("--authorization-mode", None, Op::Eq, Some("RBAC")).unwrap_err().0, "op");
        assert_eq!(suits("--anonymous-auth", None, Op::Has, Some("x")).unwrap_err().0, "op");
        assert_eq!(suits("--anonymous-auth", None, Op::Eq, Some("nope")).unwrap_err().0, "value");
        assert_eq!(suits("--feature-gates", Some("Unknown"), Op::Eq, Some("true")).unwrap_err().0, "key");
        assert_eq!(suits("--feature-gates", None, Op::Has, Some("A=true")).unwrap_err().0, "op");
        assert_eq!(suits("--mode", Some("K"), Op::Eq, Some("x")).unwrap_err().0, "key");
        assert!(suits("--feature-gates", Some("RotateKubeletServerCertificate"), Op::Noteq, Some("false")).is_ok());
    }

    #[test]
    fn bad_checks_are_refused_with_the_field() {
        assert_eq!(Check::new("anonymous-auth".into(), None, Op::Set, None).unwrap_err().0, "flag");
        assert_eq!(Check::new("--a".into(), None, Op::Eq, None).unwrap_err().0, "value");
        assert_eq!(Check::new("--a".into(), None, Op::Set, Some("x".into())).unwrap_err().0, "value");
        assert_eq!(Check::new("--a".into(), None, Op::Gt, Some("lots".into())).unwrap_err().0, "value");
        assert_eq!(Check::new("--a".into(), None, Op::Regex, Some("(".into())).unwrap_err().0, "value");
        assert_eq!(Check::new("--a".into(), None, Op::ValidElements, Some(",".into())).unwrap_err().0, "value");
    }

    #[test]
    fn numbers_and_durations() {
        assert_eq!(number("30"), Some(30.0));
        assert_eq!(number("1h30m"), Some(5400.0));
        assert_eq!(number("500ms"), Some(0.5));
        assert_eq!(number("-1s"), Some(-1.0));
        assert_eq!(number("0s"), Some(0.0));
        assert_eq!(number("NaN"), None);
        assert_eq!(number("5x"), None);
        assert_eq!(number("m"), None);
        assert_eq!(number(""), None);
    }
}
