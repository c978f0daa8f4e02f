//! Rule packs: the TOML format, its validation, and the set of packs in force (the embedded CIS pack plus any
//! `--rules FILE`). Every error names the file, line and field.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use toml::Spanned;

use super::test::{Check, Op, Test};
use crate::model::{Role, Severity};
use crate::ps::flags::FlagStyle;
use crate::source::{self, Location};

/// The CIS pack, compiled into the binary so a scan needs no files besides the inventory.
pub const EMBEDDED_CIS: &str = include_str!("cis-kubernetes.toml");
const EMBEDDED_NAME: &str = "<embedded>/cis-kubernetes.toml";

#[derive(Debug, Error)]
pub enum PackError {
    #[error("cannot read rule pack {path}: {source}; check the path given to --rules")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{at}: {message}")]
    Syntax { at: Location, message: String },
    #[error("{at}: {field}: {message}")]
    Invalid { at: Location, field: String, message: String },
}

/// A pack's header; its `version` is stored with every scan so a verdict can be traced to the rules that made it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PackMeta {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub benchmark: Option<String>,
    #[serde(default)]
    pub benchmark_version: Option<String>,
    pub version: String,
}

/// How to recognise a component in a process table, and how its binary reads flags.
#[derive(Debug, Clone)]
pub struct Component {
    pub id: String,
    pub title: String,
    /// Names of the executed program (`argv[0]`'s file name) that are this component.
    pub programs: Vec<String>,
    /// Multi-call binaries: program name → subcommands (`argv[1]`) that are this component.
    pub subcommands: BTreeMap<String, Vec<String>>,
    /// Programs that run this component inside themselves (k3s): program name → subcommands.
    pub embedded: BTreeMap<String, Vec<String>>,
    /// Roles that expect this component to run.
    pub roles: Vec<Role>,
    pub flag_style: FlagStyle,
    /// Boolean flags by name without dashes: `--flag next` does not take `next` as their value.
    pub bool_flags: HashSet<String>,
    /// The flag naming the component's config file (without dashes), whose fields can stand in for flags.
    pub config_flag: Option<String>,
    /// Whether that config file replaces every flag (etcd's `--config-file`) rather than filling in absent ones.
    pub config_replaces_flags: bool,
    /// A process with no flags at all is configured through environment variables with this prefix (`ETCD_`).
    pub env_prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Assessment {
    Automated,
    Manual,
}

/// One rule, validated.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub cis: String,
    /// Id of the pack the rule came from.
    pub pack: String,
    pub title: String,
    /// Index into [`RuleSet::components`].
    pub component: usize,
    pub severity: Severity,
    pub assessment: Assessment,
    pub rationale: String,
    pub audit: String,
    pub remediation: String,
    pub references: Vec<String>,
    pub test: Test,
}

/// The rules in force: the packs loaded, their components and rules, in pack order.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub packs: Vec<PackMeta>,
    pub components: Vec<Component>,
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    pack: PackMeta,
    #[serde(default)]
    component: Vec<RawComponent>,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    id: Spanned<String>,
    title: String,
    programs: Vec<String>,
    #[serde(default)]
    subcommands: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    embedded: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    roles: Vec<Role>,
    #[serde(default = "pflag")]
    flag_style: FlagStyle,
    #[serde(default)]
    bool_flags: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    config_flag: Option<Spanned<String>>,
    #[serde(default)]
    config_replaces_flags: bool,
    #[serde(default)]
    env_prefix: Option<String>,
}

fn pflag() -> FlagStyle {
    FlagStyle::Pflag
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    cis: Spanned<String>,
    title: String,
    component: Spanned<String>,
    severity: Severity,
    #[serde(default = "automated")]
    assessment: Assessment,
    rationale: Spanned<String>,
    #[serde(default)]
    audit: String,
    remediation: Spanned<String>,
    #[serde(default)]
    references: Vec<String>,
    test: Spanned<RawTest>,
}

fn automated() -> Assessment {
    Assessment::Automated
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    flag: Option<String>,
    op: Option<Op>,
    value: Option<String>,
    default: Option<String>,
    config_key: Option<String>,
    all: Option<Vec<Spanned<RawTest>>>,
    any: Option<Vec<Spanned<RawTest>>>,
}

impl RuleSet {
    /// The embedded CIS pack alone.
    pub fn embedded() -> Result<RuleSet, PackError> {
        let mut set = RuleSet { packs: Vec::new(), components: Vec::new(), rules: Vec::new() };
        set.add(Path::new(EMBEDDED_NAME), EMBEDDED_CIS)?;
        Ok(set)
    }

    /// The embedded pack plus the packs in `files`, in order.
    pub fn load(files: &[PathBuf]) -> Result<RuleSet, PackError> {
        let mut set = RuleSet::embedded()?;
        for path in files {
            let text =
                std::fs::read_to_string(path).map_err(|source| PackError::Read { path: path.clone(), source })?;
            set.add(path, &text)?;
        }
        Ok(set)
    }

    /// Adds one pack's text. Component ids and rule ids must be new; rules may use components of earlier packs.
    pub fn add(&mut self, file: &Path, text: &str) -> Result<(), PackError> {
        let raw: RawPack = toml::from_str(text).map_err(|e| {
            let (at, message) = source::toml_error(file, text, &e);
            PackError::Syntax { at, message }
        })?;
        let invalid = |span: std::ops::Range<usize>, field: &str, message: String| PackError::Invalid {
            at: Location::of(file, text, span.start),
            field: field.to_owned(),
            message,
        };
        if self.packs.iter().any(|p| p.id == raw.pack.id) {
            return Err(invalid(0..0, "pack.id", format!("a pack with id {:?} is already loaded", raw.pack.id)));
        }
        for c in raw.component {
            let id_span = c.id.span();
            let id = c.id.into_inner();
            if self.components.iter().any(|k| k.id == id) {
                return Err(invalid(id_span, "component.id", format!("component {id:?} is already defined")));
            }
            if c.programs.is_empty() && c.subcommands.is_empty() {
                return Err(invalid(
                    id_span,
                    "component.programs",
                    "a component needs `programs` or `subcommands` to be found".into(),
                ));
            }
            let bool_span = c.bool_flags.as_ref().map_or(id_span.clone(), |b| b.span());
            let mut bool_flags = HashSet::new();
            for f in c.bool_flags.map(Spanned::into_inner).unwrap_or_default() {
                let name = f.strip_prefix("--").filter(|n| !n.is_empty()).ok_or_else(|| {
                    invalid(bool_span.clone(), "component.bool_flags", format!("{f:?} is not a flag; write \"--name\""))
                })?;
                bool_flags.insert(name.to_owned());
            }
            let config_flag = match c.config_flag {
                Some(s) => {
                    let span = s.span();
                    let v = s.into_inner();
                    Some(v.strip_prefix("--").filter(|n| !n.is_empty()).map(str::to_owned).ok_or_else(|| {
                        invalid(span, "component.config_flag", format!("{v:?} is not a flag; write \"--name\""))
                    })?)
                }
                None => None,
            };
            self.components.push(Component {
                id,
                title: c.title,
                programs: c.programs,
                subcommands: c.subcommands,
                embedded: c.embedded,
                roles: c.roles,
                flag_style: c.flag_style,
                bool_flags,
                config_flag,
                config_replaces_flags: c.config_replaces_flags,
                env_prefix: c.env_prefix,
            });
        }
        for r in raw.rule {
            let id_span = r.id.span();
            let id = r.id.into_inner();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                return Err(invalid(id_span, "rule.id", format!("{id:?}: use letters, digits, '.', '_' and '-'")));
            }
            if self.rules.iter().any(|k| k.id == id) {
                return Err(invalid(id_span, "rule.id", format!("rule {id:?} is already defined")));
            }
            let component_span = r.component.span();
            let component_id = r.component.into_inner();
            let component = self.components.iter().position(|c| c.id == component_id).ok_or_else(|| {
                let known: Vec<&str> = self.components.iter().map(|c| c.id.as_str()).collect();
                invalid(
                    component_span,
                    "rule.component",
                    format!("unknown component {component_id:?}; known: {}", known.join(", ")),
                )
            })?;
            for (field, value) in
                [("rule.cis", &r.cis), ("rule.rationale", &r.rationale), ("rule.remediation", &r.remediation)]
            {
                if value.get_ref().trim().is_empty() {
                    return Err(invalid(value.span(), field, format!("rule {id}: must not be empty")));
                }
            }
            let test = build_test(r.test, &|span, field, msg| invalid(span, field, format!("rule {id}: {msg}")))?;
            self.rules.push(Rule {
                id,
                cis: r.cis.into_inner(),
                pack: raw.pack.id.clone(),
                title: r.title,
                component,
                severity: r.severity,
                assessment: r.assessment,
                rationale: r.rationale.into_inner(),
                audit: r.audit,
                remediation: r.remediation.into_inner(),
                references: r.references,
                test,
            });
        }
        self.packs.push(raw.pack);
        Ok(())
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    pub fn component(&self, rule: &Rule) -> &Component {
        &self.components[rule.component]
    }

    /// One string naming every pack and version in force, stored with each scan: `cis-kubernetes@2026.11.0`.
    pub fn version(&self) -> String {
        self.packs.iter().map(|p| format!("{}@{}", p.id, p.version)).collect::<Vec<_>>().join("+")
    }
}

type Invalid<'a> = dyn Fn(std::ops::Range<usize>, &str, String) -> PackError + 'a;

fn build_test(raw: Spanned<RawTest>, invalid: &Invalid<'_>) -> Result<Test, PackError> {
    let span = raw.span();
    let t = raw.into_inner();
    let is_check =
        t.flag.is_some() || t.op.is_some() || t.value.is_some() || t.default.is_some() || t.config_key.is_some();
    match (is_check, t.all, t.any) {
        (false, Some(list), None) | (false, None, Some(list)) if list.is_empty() => {
            Err(invalid(span, "rule.test", "`all`/`any` needs at least one test".into()))
        }
        (false, Some(list), None) => {
            Ok(Test::All(list.into_iter().map(|t| build_test(t, invalid)).collect::<Result<_, _>>()?))
        }
        (false, None, Some(list)) => {
            Ok(Test::Any(list.into_iter().map(|t| build_test(t, invalid)).collect::<Result<_, _>>()?))
        }
        (true, None, None) => {
            let flag = t.flag.ok_or_else(|| invalid(span.clone(), "rule.test.flag", "a check needs `flag`".into()))?;
            let op = t.op.ok_or_else(|| {
                let ops: Vec<&str> = Op::ALL.iter().map(|o| o.as_str()).collect();
                invalid(span.clone(), "rule.test.op", format!("a check needs `op`, one of {}", ops.join(", ")))
            })?;
            Check::new(flag, op, t.value, t.default, t.config_key)
                .map(Test::Check)
                .map_err(|(field, msg)| invalid(span, &format!("rule.test.{field}"), msg))
        }
        _ => Err(invalid(
            span,
            "rule.test",
            "a test is either a check (`flag`, `op`, ...) or exactly one of `all = [...]` / `any = [...]`".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(text: &str) -> Result<RuleSet, PackError> {
        let mut set = RuleSet::embedded().unwrap();
        set.add(Path::new("extra.toml"), text).map(|_| set)
    }

    const HEADER: &str = "[pack]\nid = \"extra\"\ntitle = \"t\"\nversion = \"1\"\n";

    #[test]
    fn an_extra_pack_adds_rules_and_components() {
        let set = add(&format!(
            "{HEADER}[[component]]\nid = \"kube-proxy\"\ntitle = \"kube-proxy\"\nprograms = [\"kube-proxy\"]\nroles = [\"worker\"]\n\
             [[rule]]\nid = \"site-1\"\ncis = \"n/a\"\ntitle = \"t\"\ncomponent = \"kube-proxy\"\nseverity = \"low\"\n\
             rationale = \"r\"\nremediation = \"m\"\ntest = {{ any = [ {{ flag = \"--a\", op = \"set\" }}, {{ flag = \"--b\", op = \"eq\", value = \"1\" }} ] }}\n"
        ))
        .unwrap();
        let r = set.rule("site-1").unwrap();
        assert_eq!(set.component(r).id, "kube-proxy");
        assert_eq!(r.pack, "extra");
        assert!(set.version().ends_with("+extra@1"));
    }

    fn error(text: &str) -> String {
        add(text).unwrap_err().to_string()
    }

    #[test]
    fn broken_packs_name_file_line_and_field() {
        let rule = "[[rule]]\nid = \"x-1\"\ncis = \"1\"\ntitle = \"t\"\ncomponent = \"apiserver\"\nseverity = \"low\"\nrationale = \"r\"\nremediation = \"m\"\n";
        // Syntax.
        let e = error(&format!("{HEADER}[[rule]\n"));
        assert!(e.starts_with("extra.toml:5:"), "{e}");
        // Unknown key.
        let e = error(&format!("{HEADER}{rule}test = {{ flag = \"--a\", op = \"set\" }}\ncolour = 1\n"));
        assert!(e.starts_with("extra.toml:") && e.contains("colour"), "{e}");
        // Bad op.
        let e = error(&format!("{HEADER}{rule}test = {{ flag = \"--a\", op = \"bigger\" }}\n"));
        assert!(e.starts_with("extra.toml:13:") && e.contains("bigger"), "{e}");
        // Missing value, reported on the test's line with the field.
        let e = error(&format!("{HEADER}{rule}test = {{ flag = \"--a\", op = \"eq\" }}\n"));
        assert!(e.starts_with("extra.toml:13:") && e.contains("rule.test.value") && e.contains("x-1"), "{e}");
        // Unknown component.
        let e = error(&format!(
            "{HEADER}{}test = {{ flag = \"--a\", op = \"set\" }}\n",
            rule.replace("apiserver", "apisrv")
        ));
        assert!(e.starts_with("extra.toml:9:") && e.contains("rule.component") && e.contains("apiserver"), "{e}");
        // Duplicate id with the embedded pack.
        let e = error(&format!(
            "{HEADER}{}test = {{ flag = \"--a\", op = \"set\" }}\n",
            rule.replace("x-1", "apiserver-profiling")
        ));
        assert!(e.starts_with("extra.toml:6:") && e.contains("already defined"), "{e}");
        // Empty remediation.
        let e = error(&format!(
            "{HEADER}{}test = {{ flag = \"--a\", op = \"set\" }}\n",
            rule.replace("remediation = \"m\"", "remediation = \" \"")
        ));
        assert!(e.contains("rule.remediation"), "{e}");
        // A test that is neither a check nor a combination.
        let e = error(&format!("{HEADER}{rule}test = {{ flag = \"--a\", op = \"set\", all = [] }}\n"));
        assert!(e.contains("rule.test"), "{e}");
        let e = error(&format!("{HEADER}{rule}test = {{ all = [] }}\n"));
        assert!(e.contains("at least one"), "{e}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = RuleSet::load(&[PathBuf::from("/nonexistent/rules.toml")]).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/rules.toml") && e.contains("--rules"), "{e}");
    }
}
