//! A rule's test: checks on flags (`set`, `eq`, `has`, ...) combined with `all` / `any`, evaluated against the
//! flags of one process.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::ps::flags::{self, Flags};

/// The comparison a check makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// The flag is given a non-empty value (a bare boolean counts).
    Set,
    /// The flag is absent or empty.
    Notset,
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
    pub const ALL: [Op; 12] = [
        Op::Set,
        Op::Notset,
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
        !matches!(self, Op::Set | Op::Notset)
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

/// One check on one flag, validated when the pack loaded (see [`Check::new`]).
#[derive(Debug, Clone)]
pub struct Check {
    /// As written in the pack: `--anonymous-auth`.
    pub flag: String,
    pub op: Op,
    pub value: Option<String>,
    /// The value Kubernetes uses when the flag is absent.
    pub default: Option<String>,
    /// The config-file field that can set the same thing (kubelet `--config`).
    pub config_key: Option<String>,
    compiled: Compiled,
}

#[derive(Debug, Clone)]
enum Compiled {
    Nothing,
    Number(f64),
    Regex(Regex),
    Elements(Vec<String>),
}

impl Check {
    /// Validates a check; the error says which field is wrong and why.
    pub fn new(
        flag: String,
        op: Op,
        value: Option<String>,
        default: Option<String>,
        config_key: Option<String>,
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
        Ok(Check { flag, op, value, default, config_key, compiled })
    }

    /// The flag's name without dashes, as the flag parser stores it.
    pub fn name(&self) -> &str {
        &self.flag[2..]
    }

    /// What the check requires, for people: `--anonymous-auth eq false`.
    pub fn requirement(&self) -> String {
        match &self.value {
            Some(v) => format!("{} {} {v}", self.flag, self.op),
            None => format!("{} {}", self.flag, self.op),
        }
    }

    fn eval(&self, flags: &Flags<'_>, hidden: Option<&Hidden<'_>>) -> FlagEvidence {
        let found = flags.get(self.name());
        let undecidable = |why: String| FlagEvidence {
            flag: self.flag.clone(),
            requirement: self.requirement(),
            value: found.map(|f| f.effective().to_owned()),
            source: Source::Hidden,
            passed: None,
            why,
        };
        let (value, source) = match (found, hidden) {
            (_, Some(Hidden::Replaces(path))) => {
                return undecidable(format!(
                    "the process reads its configuration from {path}, which replaces every command-line flag; \
                     fleetaudit reads command lines only: check {} there by hand",
                    self.flag
                ));
            }
            (Some(f), _) if !f.is_empty() => (Some(f.effective().to_owned()), Source::CommandLine),
            (Some(_), _) => (Some(String::new()), Source::CommandLine),
            (None, Some(Hidden::Fields(path))) if self.config_key.is_some() => {
                return undecidable(format!(
                    "{} is not on the command line, so the config file {path} decides (field {}); fleetaudit \
                     reads command lines only: check that field by hand or pass the flag",
                    self.flag,
                    self.config_key.as_deref().unwrap_or_default()
                ));
            }
            (None, Some(Hidden::Environment(prefix))) => {
                return undecidable(format!(
                    "the process has no flags, so it is configured through {prefix}* environment variables, \
                     which `ps` does not show; check {} by hand or pass it as a flag",
                    self.flag
                ));
            }
            (None, _) => match &self.default {
                Some(d) => (Some(d.clone()), Source::Default),
                None => (None, Source::Absent),
            },
        };
        let set = matches!(&value, Some(v) if !v.is_empty()) && source == Source::CommandLine;
        let passed = match (self.op, value.as_deref()) {
            (Op::Set, _) => set,
            (Op::Notset, _) => !set,
            (_, None) => false,
            (Op::Eq, Some(v)) => equals(v, self.value()),
            (Op::Noteq, Some(v)) => !equals(v, self.value()),
            (Op::Has, Some(v)) => flags::list(v).any(|e| e == self.value()),
            (Op::Nothave, Some(v)) => !flags::list(v).any(|e| e == self.value()),
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
            (Op::ValidElements, Some(v)) => match &self.compiled {
                Compiled::Elements(allowed) => {
                    let mut elements = flags::list(v).peekable();
                    elements.peek().is_some() && elements.all(|e| allowed.iter().any(|a| a == e))
                }
                _ => false,
            },
        };
        let shown = match (&value, source) {
            (None, _) => format!("{} is not set", self.flag),
            (Some(v), Source::CommandLine) if v.is_empty() => format!("{} is set to an empty value", self.flag),
            (Some(v), Source::CommandLine) => format!("{}={v}", self.flag),
            (Some(v), _) => format!("{} is not set, so its default {v:?} applies", self.flag),
        };
        let why = if passed { shown } else { format!("{shown}; required: {}", self.requirement()) };
        FlagEvidence {
            flag: self.flag.clone(),
            requirement: self.requirement(),
            value,
            source,
            passed: Some(passed),
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
    /// A config file or the environment, which `ps` does not show, decides.
    Hidden,
}

/// What one check saw: the evidence behind a verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagEvidence {
    pub flag: String,
    pub requirement: String,
    /// The value judged (from the command line or the default); secrets are redacted by the caller.
    pub value: Option<String>,
    pub source: Source,
    /// `None`: the check could not be decided from the command line.
    pub passed: Option<bool>,
    /// One sentence for people.
    pub why: String,
}

/// A rule's test: a check, or checks combined.
#[derive(Debug, Clone)]
pub enum Test {
    Check(Check),
    All(Vec<Test>),
    Any(Vec<Test>),
}

/// Configuration a process reads from somewhere `ps` does not show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hidden<'a> {
    /// A config file that can set some fields (the kubelet's `--config`); a flag on the command line overrides it.
    /// Absent flags whose check names a `config_key` cannot be decided.
    Fields(&'a str),
    /// A config file that replaces every flag (etcd's `--config-file`): nothing can be decided.
    Replaces(&'a str),
    /// No flags at all, so the process reads `PREFIX_*` environment variables (etcd under kops' etcd-manager).
    Environment(&'a str),
}

/// The result of a test on one process: `None` when it cannot be decided.
pub struct Outcome {
    pub passed: Option<bool>,
    pub evidence: Vec<FlagEvidence>,
}

impl Test {
    /// Evaluates the test on one process's flags; `hidden` is configuration the process reads from elsewhere.
    pub fn eval(&self, flags: &Flags<'_>, hidden: Option<&Hidden<'_>>) -> Outcome {
        match self {
            Test::Check(c) => {
                let e = c.eval(flags, hidden);
                Outcome { passed: e.passed, evidence: vec![e] }
            }
            Test::All(tests) | Test::Any(tests) => {
                let all = matches!(self, Test::All(_));
                let mut evidence = Vec::new();
                let (mut any_true, mut any_false, mut any_unknown) = (false, false, false);
                for t in tests {
                    let o = t.eval(flags, hidden);
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
                Outcome { passed, evidence }
            }
        }
    }

    /// Every check in the test, depth first.
    pub fn checks(&self) -> Vec<&Check> {
        match self {
            Test::Check(c) => vec![c],
            Test::All(ts) | Test::Any(ts) => ts.iter().flat_map(Test::checks).collect(),
        }
    }

    /// The test written out for people: `--a set and (--b eq x or --c notset)`.
    pub fn describe(&self) -> String {
        match self {
            Test::Check(c) => c.requirement(),
            Test::All(ts) | Test::Any(ts) => {
                let sep = if matches!(self, Test::All(_)) { " and " } else { " or " };
                let parts: Vec<String> = ts
                    .iter()
                    .map(|t| match t {
                        Test::Check(_) => t.describe(),
                        _ => format!("({})", t.describe()),
                    })
                    .collect();
                parts.join(sep)
            }
        }
    }
}

/// Go's `strconv.ParseBool`, which both pflag and Go's `flag` use for boolean flags.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
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
    use std::collections::HashSet;

    use super::*;
    use crate::ps::flags::FlagStyle;

    fn check(flag: &str, op: Op, value: Option<&str>, default: Option<&str>) -> Test {
        Test::Check(Check::new(flag.into(), op, value.map(Into::into), default.map(Into::into), None).unwrap())
    }

    fn run(test: &Test, line: &str) -> Option<bool> {
        let args: Vec<&str> = line.split_whitespace().collect();
        let flags = Flags::parse(&args, FlagStyle::Pflag, &HashSet::from(["profiling".to_string()]));
        test.eval(&flags, None).passed
    }

    #[test]
    fn set_and_notset() {
        let t = check("--kubelet-certificate-authority", Op::Set, None, None);
        assert_eq!(run(&t, "--kubelet-certificate-authority=/ca.crt"), Some(true));
        assert_eq!(run(&t, "--kubelet-certificate-authority /ca.crt"), Some(true));
        assert_eq!(run(&t, "--kubelet-certificate-authority="), Some(false), "empty is not set");
        assert_eq!(run(&t, "--other=1"), Some(false));
        let t = check("--token-auth-file", Op::Notset, None, None);
        assert_eq!(run(&t, "--x=1"), Some(true));
        assert_eq!(run(&t, "--token-auth-file="), Some(true));
        assert_eq!(run(&t, "--token-auth-file=/t.csv"), Some(false));
        // A default does not make a flag "set".
        let t = check("--profiling", Op::Set, None, Some("true"));
        assert_eq!(run(&t, ""), Some(false));
        assert_eq!(run(&t, "--profiling"), Some(true));
    }

    #[test]
    fn eq_and_noteq_with_booleans_numbers_and_defaults() {
        let t = check("--anonymous-auth", Op::Eq, Some("false"), Some("true"));
        assert_eq!(run(&t, "--anonymous-auth=false"), Some(true));
        assert_eq!(run(&t, "--anonymous-auth=False"), Some(true), "Go's ParseBool");
        assert_eq!(run(&t, "--anonymous-auth=0"), Some(true));
        assert_eq!(run(&t, "--anonymous-auth=true"), Some(false));
        assert_eq!(run(&t, ""), Some(false), "absent: the default true applies");
        assert_eq!(run(&t, "--anonymous-auth=false --anonymous-auth=true"), Some(false), "last wins");
        let t = check("--profiling", Op::Eq, Some("false"), Some("true"));
        assert_eq!(run(&t, "--profiling"), Some(false), "bare boolean is true");
        let t = check("--streaming-connection-idle-timeout", Op::Noteq, Some("0"), None);
        assert_eq!(run(&t, "--streaming-connection-idle-timeout=5m"), Some(true));
        assert_eq!(run(&t, "--streaming-connection-idle-timeout=0s"), Some(false), "0s is 0");
        assert_eq!(run(&t, ""), Some(false), "absent with no default fails");
        let t = check("--mode", Op::Eq, Some("RBAC"), None);
        assert_eq!(run(&t, "--mode=rbac"), Some(false), "strings are case-sensitive");
    }

    #[test]
    fn has_and_nothave_on_lists() {
        let t = check("--enable-admission-plugins", Op::Has, Some("NodeRestriction"), None);
        assert_eq!(run(&t, "--enable-admission-plugins=NamespaceLifecycle,NodeRestriction"), Some(true));
        assert_eq!(run(&t, "--enable-admission-plugins=NodeRestrictionX"), Some(false), "elements, not substrings");
        assert_eq!(run(&t, ""), Some(false));
        let t = check("--authorization-mode", Op::Nothave, Some("AlwaysAllow"), Some("AlwaysAllow"));
        assert_eq!(run(&t, "--authorization-mode=Node,RBAC"), Some(true));
        assert_eq!(run(&t, "--authorization-mode=RBAC,AlwaysAllow"), Some(false));
        assert_eq!(run(&t, ""), Some(false), "the default AlwaysAllow applies");
    }

    #[test]
    fn numeric_compares() {
        let gte = check("--audit-log-maxage", Op::Gte, Some("30"), None);
        assert_eq!(run(&gte, "--audit-log-maxage=30"), Some(true));
        assert_eq!(run(&gte, "--audit-log-maxage=29"), Some(false));
        assert_eq!(run(&gte, "--audit-log-maxage=abc"), Some(false));
        assert_eq!(run(&gte, ""), Some(false));
        let gt = check("--x", Op::Gt, Some("1m"), None);
        assert_eq!(run(&gt, "--x=61s"), Some(true));
        assert_eq!(run(&gt, "--x=60s"), Some(false));
        let lt = check("--x", Op::Lt, Some("10"), None);
        assert_eq!(run(&lt, "--x=9.5"), Some(true));
        assert_eq!(run(&lt, "--x=10"), Some(false));
        let lte = check("--x", Op::Lte, Some("10"), None);
        assert_eq!(run(&lte, "--x=10"), Some(true));
        assert_eq!(run(&lte, "--x=11"), Some(false));
    }

    #[test]
    fn regex_and_valid_elements() {
        let t = check("--tls-min-version", Op::Regex, Some("^VersionTLS1[23]$"), None);
        assert_eq!(run(&t, "--tls-min-version=VersionTLS13"), Some(true));
        assert_eq!(run(&t, "--tls-min-version=VersionTLS10"), Some(false));
        let t = check("--tls-cipher-suites", Op::ValidElements, Some("A,B,C"), None);
        assert_eq!(run(&t, "--tls-cipher-suites=A,C"), Some(true));
        assert_eq!(run(&t, "--tls-cipher-suites=A,D"), Some(false));
        assert_eq!(run(&t, "--tls-cipher-suites="), Some(false));
    }

    #[test]
    fn all_and_any() {
        let a = check("--a", Op::Set, None, None);
        let b = check("--b", Op::Set, None, None);
        let all = Test::All(vec![a.clone(), b.clone()]);
        let any = Test::Any(vec![a, b]);
        assert_eq!(run(&all, "--a=1 --b=1"), Some(true));
        assert_eq!(run(&all, "--a=1"), Some(false));
        assert_eq!(run(&any, "--a=1"), Some(true));
        assert_eq!(run(&any, ""), Some(false));
        assert_eq!(all.describe(), "--a set and --b set");
    }

    #[test]
    fn config_file_makes_an_absent_flag_undecidable() {
        let c = Check::new(
            "--anonymous-auth".into(),
            Op::Eq,
            Some("false".into()),
            Some("true".into()),
            Some("authentication.anonymous.enabled".into()),
        )
        .unwrap();
        let t = Test::Check(c);
        let args = ["--config=/var/lib/kubelet/config.yaml"];
        let flags = Flags::parse(&args, FlagStyle::Pflag, &HashSet::new());
        let o = t.eval(&flags, Some(&Hidden::Fields("/var/lib/kubelet/config.yaml")));
        assert_eq!(o.passed, None);
        assert!(o.evidence[0].why.contains("authentication.anonymous.enabled"));
        // On the command line, the flag overrides the config file, so it decides.
        let args = ["--anonymous-auth=false"];
        let flags = Flags::parse(&args, FlagStyle::Pflag, &HashSet::new());
        assert_eq!(t.eval(&flags, Some(&Hidden::Fields("/c.yaml"))).passed, Some(true));
        // An undecidable check makes `all` undecidable unless another check fails.
        let all = Test::All(vec![t.clone(), check("--x", Op::Set, None, None)]);
        let flags = Flags::parse(&["--x=1"], FlagStyle::Pflag, &HashSet::new());
        assert_eq!(all.eval(&flags, Some(&Hidden::Fields("/c.yaml"))).passed, None);
        let flags = Flags::parse(&[], FlagStyle::Pflag, &HashSet::new());
        assert_eq!(all.eval(&flags, Some(&Hidden::Fields("/c.yaml"))).passed, Some(false));
        // A check with no config field is decided by the command line and its default, config file or not.
        let x = check("--hostname-override", Op::Notset, None, None);
        assert_eq!(x.eval(&flags, Some(&Hidden::Fields("/c.yaml"))).passed, Some(true));
        // A config file that replaces all flags leaves nothing decidable; so does configuration by environment.
        let flags = Flags::parse(&["--x=1"], FlagStyle::Pflag, &HashSet::new());
        assert_eq!(x.eval(&flags, Some(&Hidden::Replaces("/etc/etcd.yaml"))).passed, None);
        let flags = Flags::parse(&["--hostname-override=a"], FlagStyle::Pflag, &HashSet::new());
        assert_eq!(x.eval(&flags, Some(&Hidden::Environment("ETCD_"))).passed, Some(false), "a flag present decides");
        let flags = Flags::parse(&[], FlagStyle::Pflag, &HashSet::new());
        assert_eq!(x.eval(&flags, Some(&Hidden::Environment("ETCD_"))).passed, None);
    }

    #[test]
    fn bad_checks_are_refused_with_the_field() {
        assert_eq!(Check::new("anonymous-auth".into(), Op::Set, None, None, None).unwrap_err().0, "flag");
        assert_eq!(Check::new("--a".into(), Op::Eq, None, None, None).unwrap_err().0, "value");
        assert_eq!(Check::new("--a".into(), Op::Set, Some("x".into()), None, None).unwrap_err().0, "value");
        assert_eq!(Check::new("--a".into(), Op::Gt, Some("lots".into()), None, None).unwrap_err().0, "value");
        assert_eq!(Check::new("--a".into(), Op::Regex, Some("(".into()), None, None).unwrap_err().0, "value");
        assert_eq!(Check::new("--a".into(), Op::ValidElements, Some(",".into()), None, None).unwrap_err().0, "value");
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
