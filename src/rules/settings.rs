//! Where a component's settings come from, and what a flag's occurrences add up to.
//!
//! Owns: flag types as Kubernetes registers them ([`FlagType`]: a scalar's last occurrence wins, a pflag
//! `StringSlice` appends, a feature-gate map merges per key), their defaults and component-config fields
//! ([`FlagDecl`]), and the places besides the command line a component reads settings from ([`Source`]: a
//! kubelet's `--config` file and `--config-dir` drop-ins, etcd's environment, MicroK8s' args files, ...), all
//! as rule-pack data. [`resolve`] turns a process's occurrences of one flag into the value it runs with.
//! Must not touch: SSH, files, the database. Sources are descriptions: which file would decide, never its
//! contents.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::ps::flags::{Flag, Flags};

/// A flag's type, as the component's parser registers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagType {
    /// `BoolVar`: Go's `strconv.ParseBool` values; a bare flag is true; the last occurrence wins.
    Bool,
    /// `StringVar` and friends (paths, addresses, modes): the last occurrence wins.
    String,
    /// `IntVar`, `Int32Var`, ...: an integer; the last occurrence wins.
    Int,
    /// `DurationVar`: a Go duration (`4h0m0s`) or a plain number of seconds; the last occurrence wins.
    Duration,
    /// pflag `StringSliceVar`: comma-separated (read with encoding/csv); the first occurrence replaces the
    /// default and every later one appends (spf13/pflag string_slice.go `Set`).
    List,
    /// pflag `StringArrayVar`: one element per occurrence, no comma splitting; occurrences append.
    Array,
    /// component-base `featuregate` / `cliflag.MapStringBool`: `Key=bool` pairs, merged per key across
    /// occurrences (a later key wins); `AllAlpha=` / `AllBeta=` set every gate of that stage not set
    /// explicitly.
    FeatureGates,
}

impl FlagType {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagType::Bool => "bool",
            FlagType::String => "string",
            FlagType::Int => "int",
            FlagType::Duration => "duration",
            FlagType::List => "list",
            FlagType::Array => "array",
            FlagType::FeatureGates => "feature_gates",
        }
    }

    /// Whether every occurrence counts (appended or merged) rather than only the last.
    pub fn accumulates(self) -> bool {
        matches!(self, FlagType::List | FlagType::Array | FlagType::FeatureGates)
    }
}

/// A feature gate's maturity, which decides whether `AllAlpha` / `AllBeta` reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Alpha,
    Beta,
    Ga,
    Deprecated,
}

/// A feature gate a rule reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Its value when nothing sets it.
    pub default: bool,
    pub stage: Stage,
    /// Locked to its default (`LockToDefault`): setting it otherwise stops the component from starting.
    #[serde(default)]
    pub locked: bool,
}

/// A flag as the pack declares it for one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagDecl {
    pub ty: FlagType,
    /// The value the component uses when the flag is absent (a list's elements comma-separated); `None` when
    /// it has none worth judging (an unset path).
    pub default: Option<String>,
    /// The component-config field that sets the same thing (`authentication.anonymous.enabled`), for sources
    /// that `sets = "config"`.
    pub config: Option<String>,
    /// For feature gates: the gates rules read.
    pub gates: BTreeMap<String, Gate>,
    /// The value a component-config document gives the field when it leaves it out (KubeletConfiguration
    /// v1beta1's SetDefaults, which differ from the flag defaults: anonymous auth false, Webhook, port 0).
    pub config_default: Option<String>,
    /// The component runs with this flag's value OR its config file's (the kubelet's `--seccomp-default`:
    /// `KubeletFlags.SeccompDefault || KubeletConfiguration.SeccompDefault`), so only `true` on the command
    /// line decides.
    pub or_with_config: bool,
}

/// What kind of place a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// One file.
    File,
    /// A directory of drop-in files (`pattern`), read in lexical order, each overriding the ones before.
    Dir,
    /// The process's environment variables starting with `prefix` (`/proc/PID/environ`).
    Environment,
    /// A flag of the program that embeds the component, each value one of the component's flags (k3s
    /// `--kube-apiserver-arg=anonymous-auth=false`).
    ArgsFlag,
}

/// Which of the component's settings a source can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sets {
    /// Every flag.
    All,
    /// The flags whose declaration names a component-config field (`config`).
    Config,
    /// These flags (names without dashes).
    Flags(Vec<String>),
}

/// How a source's settings combine with the process's command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precedence {
    /// The command line wins: a flag given there decides, an absent one is the source's to set (the
    /// kubelet's `--config`, etcd's environment).
    BelowFlags,
    /// The source wins over the command line, or replaces it: nothing it can set is decided by the command
    /// line (etcd's `--config-file`, MicroK8s' args files, OpenShift's `--openshift-config`).
    OverFlags,
}

/// A place a component reads settings from besides its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    /// The flag naming the place, on the command line of the process that reads it (without dashes).
    pub flag: Option<String>,
    /// An environment variable that can name the place instead (`ETCD_CONFIG_FILE`); `ps` does not show it,
    /// so such a source may always apply.
    pub env: Option<String>,
    /// The place when neither names it: the component reads it if it exists.
    pub path: Option<String>,
    /// For `dir`: which files of it are read (`*.conf`).
    pub pattern: Option<String>,
    /// For `environment`: the variables' prefix (`ETCD_`).
    pub prefix: Option<String>,
    /// How the place is written, which decides how its settings are read.
    pub format: Format,
    /// For a document: where in it each flag's setting is (flag without dashes → a dotted path; `[]` collects
    /// a field of every element: `authorizers[].type`). Flags with a `config` field need no entry here when
    /// `sets = "config"`.
    pub fields: BTreeMap<String, String>,
    /// A document whose own defaults apply to every field it leaves out (the `config_default` of each flag):
    /// the kubelet's `--config` file, unlike its drop-ins, and the scheduler's and kube-proxy's configs.
    pub defaults: bool,
    pub sets: Sets,
    pub precedence: Precedence,
    /// For people: what the place is (`the KubeletConfiguration file`).
    pub what: String,
}

/// How a source is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// A YAML or JSON document whose fields hold settings (KubeletConfiguration, KubeSchedulerConfiguration,
    /// KubeProxyConfiguration, AuthorizationConfiguration, AuthenticationConfiguration, etcd's config file,
    /// k3s's config.yaml).
    Document,
    /// A file of command-line arguments (MicroK8s kubelite's `--*-args-file`: microk8s ReadArgsFromFile).
    Args,
    /// OpenShift's KubeAPIServerConfig: `apiServerArguments: {flag: [values]}`, parsed after the command line.
    OpenshiftArguments,
    /// NUL-separated `NAME=value` pairs (`/proc/PID/environ`): `PREFIX_NAME` sets `--name`.
    Env,
    /// Arguments on the embedding program's own command line (k3s `--kube-apiserver-arg=flag=value`).
    ArgsFlag,
}

/// A source that applies to one process, with the place it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<'s> {
    pub source: &'s Source,
    /// The file, directory or variable prefix, as the process names it or by default.
    pub place: String,
    /// How the process comes to read it.
    pub via: Via,
}

/// How a source reaches a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Its flag names it on the command line: it is read.
    Named,
    /// Its default path: read if it exists.
    Default,
    /// Only an environment variable `ps` does not show could name it: read if one does.
    Environment,
    /// Always there (the environment, the embedding program's flags).
    Always,
}

impl Source {
    /// Whether the source applies to a process with these flags, and where.
    pub fn applied<'s>(&'s self, flags: &Flags<'_>) -> Option<Applied<'s>> {
        let named = self.flag.as_deref().and_then(|f| flags.get(f)).filter(|f| !f.is_empty());
        let (place, via) = match (self.kind, named, &self.env, &self.path) {
            (SourceKind::Environment, ..) => {
                (format!("{}* environment variables", self.prefix.as_deref().unwrap_or_default()), Via::Always)
            }
            (SourceKind::ArgsFlag, ..) => (format!("--{}", self.flag.as_deref().unwrap_or_default()), Via::Always),
            (_, Some(f), ..) => (f.effective().to_owned(), Via::Named),
            (_, None, Some(env), Some(path)) => (format!("{path} (or the file ${env} names)"), Via::Default),
            (_, None, Some(env), None) => (format!("${env}"), Via::Environment),
            (_, None, None, Some(path)) => (path.clone(), Via::Default),
            (_, None, None, None) => return None,
        };
        Some(Applied { source: self, place, via })
    }

    /// Whether the source can set `flag` (without dashes) of a component whose declaration is `decl`.
    pub fn sets(&self, flag: &str, decl: Option<&FlagDecl>) -> bool {
        match &self.sets {
            Sets::All => true,
            Sets::Config => decl.is_some_and(|d| d.config.is_some()),
            Sets::Flags(names) => names.iter().any(|n| n == flag),
        }
    }
}

/// A flag's value as the process runs with it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar, as written (a bare boolean is `"true"`).
    Scalar(String),
    /// A list's or array's elements.
    List(Vec<String>),
}

impl Value {
    /// The value written for people: a list comma-separated.
    pub fn text(&self) -> String {
        match self {
            Value::Scalar(s) => s.clone(),
            Value::List(l) => l.join(","),
        }
    }
}

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// These occurrences of the flag (indexes into [`Flags::flags`]) made the value.
    CommandLine(Vec<usize>),
    /// The flag (or the gate) is not on the command line; the declared default applies.
    Default,
    /// Not on the command line and no default.
    Absent,
    /// A feature gate not set explicitly, set by `AllAlpha`/`AllBeta` in these occurrences.
    Stage(Vec<usize>),
}

/// What one flag (or one feature gate of it) adds up to on a command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub value: Option<Value>,
    pub origin: Origin,
}

/// The value `name` (without dashes; `key` for a feature gate) has for a process with `flags`.
pub fn resolve(flags: &Flags<'_>, name: &str, decl: &FlagDecl, key: Option<&str>) -> Resolved {
    let occurrences: Vec<(usize, &Flag<'_>)> = flags.flags.iter().enumerate().filter(|(_, f)| f.name == name).collect();
    match decl.ty {
        FlagType::Bool | FlagType::String | FlagType::Int | FlagType::Duration => match occurrences.last() {
            Some((i, f)) => {
                Resolved { value: Some(Value::Scalar(f.effective().to_owned())), origin: Origin::CommandLine(vec![*i]) }
            }
            None => default_of(decl, |d| Value::Scalar(d.to_owned())),
        },
        FlagType::List | FlagType::Array if !occurrences.is_empty() => {
            let mut elements: Vec<String> = Vec::new();
            for (_, f) in &occurrences {
                match decl.ty {
                    FlagType::List => elements.extend(csv_elements(f.effective()).map(str::to_owned)),
                    _ => elements.push(f.effective().to_owned()),
                }
            }
            Resolved {
                value: Some(Value::List(elements)),
                origin: Origin::CommandLine(occurrences.iter().map(|(i, _)| *i).collect()),
            }
        }
        FlagType::List | FlagType::Array => {
            default_of(decl, |d| Value::List(csv_elements(d).map(str::to_owned).collect()))
        }
        FlagType::FeatureGates => resolve_gate(&occurrences, decl, key),
    }
}

fn default_of(decl: &FlagDecl, value: impl Fn(&str) -> Value) -> Resolved {
    match &decl.default {
        Some(d) => Resolved { value: Some(value(d)), origin: Origin::Default },
        None => Resolved { value: None, origin: Origin::Absent },
    }
}

/// pflag's `readAsCSV` on one occurrence: elements as written (`--x=` is no element). Blank elements and the
/// spaces around them are dropped, as Kubernetes does for the flags rules read (an admission plugin or cipher
/// suite name with spaces in it stops the component from starting).
fn csv_elements(value: &str) -> impl Iterator<Item = &str> {
    crate::ps::flags::list(value)
}

/// A feature gate: the last explicit `KEY=bool`; else the last `AllAlpha`/`AllBeta` for the gate's stage;
/// else its default. With no key, the merged map is reported as the occurrences' text.
fn resolve_gate(occurrences: &[(usize, &Flag<'_>)], decl: &FlagDecl, key: Option<&str>) -> Resolved {
    let Some(key) = key else {
        return match occurrences.is_empty() {
            true => default_of(decl, |d| Value::Scalar(d.to_owned())),
            false => Resolved {
                value: Some(Value::List(occurrences.iter().map(|(_, f)| f.effective().to_owned()).collect())),
                origin: Origin::CommandLine(occurrences.iter().map(|(i, _)| *i).collect()),
            },
        };
    };
    // Since 1.31 the API server, controller manager and scheduler also take `kube:Gate=bool`
    // (component-base ColonSeparatedMultimapStringString): `kube:` names Kubernetes' own gates.
    let pair = |f: &Flag<'_>, k: &str| -> Option<String> {
        f.effective()
            .split(',')
            .filter_map(|p| p.split_once('='))
            .rfind(|(name, _)| {
                let name = name.trim();
                name.strip_prefix("kube:").unwrap_or(name) == k
            })
            .map(|(_, v)| v.trim().to_owned())
    };
    if let Some((i, v)) = occurrences.iter().rev().find_map(|(i, f)| pair(f, key).map(|v| (*i, v))) {
        return Resolved { value: Some(Value::Scalar(v)), origin: Origin::CommandLine(vec![i]) };
    }
    let gate = decl.gates.get(key);
    let stage_key = match gate.map(|g| g.stage) {
        Some(Stage::Alpha) => Some("AllAlpha"),
        Some(Stage::Beta) => Some("AllBeta"),
        _ => None,
    };
    if let Some(stage_key) = stage_key
        && let Some((i, v)) = occurrences.iter().rev().find_map(|(i, f)| pair(f, stage_key).map(|v| (*i, v)))
    {
        return Resolved { value: Some(Value::Scalar(v)), origin: Origin::Stage(vec![i]) };
    }
    match gate {
        Some(g) => Resolved { value: Some(Value::Scalar(g.default.to_string())), origin: Origin::Default },
        None => Resolved { value: None, origin: Origin::Absent },
    }
}

/// Why a value cannot be what the process runs with: the component's parser would have refused it and the
/// process would not have started. `None` when it is well formed.
pub fn malformed(ty: FlagType, value: &Value) -> Option<&'static str> {
    let Value::Scalar(v) = value else { return None };
    let ok = match ty {
        FlagType::Bool => go_bool(v).is_some(),
        FlagType::Int => v.parse::<i64>().is_ok(),
        FlagType::Duration => super::test::number(v).is_some(),
        _ => true,
    };
    (!ok).then_some(match ty {
        FlagType::Bool => "a boolean (true, false, 1, 0, t, f)",
        FlagType::Int => "an integer",
        _ => "a duration (e.g. 5m0s)",
    })
}

/// Go's `strconv.ParseBool`, which both pflag and Go's `flag` use for boolean flags.
pub fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ps::flags::{FlagStyle, Known};

    fn decl(ty: FlagType, default: Option<&str>) -> FlagDecl {
        FlagDecl {
            ty,
            default: default.map(Into::into),
            config: None,
            gates: BTreeMap::new(),
            or_with_config: false,
            config_default: None,
        }
    }

    fn flags(line: &'static str) -> Flags<'static> {
        let args: &'static [&'static str] = Vec::leak(line.split_whitespace().collect());
        Flags::parse(args, FlagStyle::Pflag, &Known::default())
    }

    fn value(line: &'static str, name: &str, d: &FlagDecl, key: Option<&str>) -> Option<Value> {
        resolve(&flags(line), name, d, key).value
    }

    fn list(items: &[&str]) -> Option<Value> {
        Some(Value::List(items.iter().map(|s| s.to_string()).collect()))
    }

    #[test]
    fn scalars_take_the_last_occurrence() {
        let d = decl(FlagType::Bool, Some("true"));
        let r = resolve(&flags("--anonymous-auth=false --x=1 --anonymous-auth=true"), "anonymous-auth", &d, None);
        assert_eq!(r.value, Some(Value::Scalar("true".into())));
        assert_eq!(r.origin, Origin::CommandLine(vec![2]));
        let r = resolve(&flags("--x=1"), "anonymous-auth", &d, None);
        assert_eq!((r.value, r.origin), (Some(Value::Scalar("true".into())), Origin::Default));
        let r = resolve(&flags(""), "audit-log-path", &decl(FlagType::String, None), None);
        assert_eq!((r.value, r.origin), (None, Origin::Absent));
    }

    #[test]
    fn lists_append_every_occurrence_and_replace_the_default() {
        let d = decl(FlagType::List, Some("AlwaysAllow"));
        assert_eq!(value("--authorization-mode=Node,RBAC", "authorization-mode", &d, None), list(&["Node", "RBAC"]));
        assert_eq!(
            value(
                "--enable-admission-plugins=AlwaysAdmit --enable-admission-plugins=NodeRestriction",
                "enable-admission-plugins",
                &d,
                None
            ),
            list(&["AlwaysAdmit", "NodeRestriction"]),
            "the second occurrence appends; the default is gone"
        );
        assert_eq!(value("", "authorization-mode", &d, None), list(&["AlwaysAllow"]));
        assert_eq!(value("--authorization-mode=", "authorization-mode", &d, None), list(&[]), "empty replaces");
        let r = resolve(&flags("--a=X --b=1 --a=Y,Z"), "a", &d, None);
        assert_eq!(r.origin, Origin::CommandLine(vec![0, 2]));
    }

    #[test]
    fn arrays_append_without_splitting() {
        let d = decl(FlagType::Array, None);
        assert_eq!(value("--a=x,y --a=z", "a", &d, None), list(&["x,y", "z"]));
        assert_eq!(value("", "a", &d, None), None);
    }

    #[test]
    fn feature_gates_merge_per_key_and_honour_all_beta() {
        let mut d = decl(FlagType::FeatureGates, None);
        d.gates
            .insert("RotateKubeletServerCertificate".into(), Gate { default: true, stage: Stage::Beta, locked: false });
        d.gates.insert("Done".into(), Gate { default: true, stage: Stage::Ga, locked: true });
        let key = Some("RotateKubeletServerCertificate");
        let v = |line| value(line, "feature-gates", &d, key);
        let s = |x: &str| Some(Value::Scalar(x.into()));
        assert_eq!(v("--feature-gates=RotateKubeletServerCertificate=false --feature-gates=Other=true"), s("false"));
        assert_eq!(v("--feature-gates=Other=true,RotateKubeletServerCertificate=false"), s("false"));
        assert_eq!(
            v("--feature-gates=RotateKubeletServerCertificate=false,RotateKubeletServerCertificate=true"),
            s("true")
        );
        assert_eq!(v("--feature-gates=Other=true"), s("true"), "the gate's default");
        assert_eq!(v("--feature-gates=kube:RotateKubeletServerCertificate=false"), s("false"), "1.31+ kube: prefix");
        assert_eq!(v(""), s("true"));
        let r = resolve(&flags("--feature-gates=AllBeta=false"), "feature-gates", &d, key);
        assert_eq!((r.value, r.origin), (s("false"), Origin::Stage(vec![0])), "AllBeta=false turns a beta gate off");
        // An explicit key wins over AllBeta wherever it stands.
        assert_eq!(v("--feature-gates=RotateKubeletServerCertificate=true --feature-gates=AllBeta=false"), s("true"));
        assert_eq!(v("--feature-gates=AllBeta=false,RotateKubeletServerCertificate=true"), s("true"));
        // AllAlpha does not reach a beta gate, nor AllBeta a GA one.
        assert_eq!(v("--feature-gates=AllAlpha=false"), s("true"));
        assert_eq!(value("--feature-gates=AllBeta=false", "feature-gates", &d, Some("Done")), s("true"));
    }

    #[test]
    fn malformed_values_are_named() {
        assert!(malformed(FlagType::Bool, &Value::Scalar("maybe".into())).is_some());
        assert!(malformed(FlagType::Bool, &Value::Scalar("False".into())).is_none());
        assert!(malformed(FlagType::Int, &Value::Scalar("10255x".into())).is_some());
        assert!(malformed(FlagType::Duration, &Value::Scalar("4h0m0s".into())).is_none());
        assert!(malformed(FlagType::String, &Value::Scalar("anything".into())).is_none());
    }
}
