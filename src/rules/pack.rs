//! Rule packs: the TOML format, its validation, and the set of packs in force (the embedded CIS pack plus any
//! `--rules FILE`). Every error names the file, line and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use toml::Spanned;

use super::filecheck::{FileCheck, FileOp, Place, Target};
use super::settings::{FlagDecl, FlagType, Format, Gate, Precedence, Sets, Source, SourceKind};
use super::test::{Check, Op, Test};
use crate::model::{Role, Severity};
use crate::ps::flags::{Arity, FlagStyle, Known};
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
    /// The benchmark this pack's `cis` numbers follow, by id (`cis-1.12`): one of `benchmarks`.
    #[serde(default)]
    pub benchmark_id: Option<String>,
    /// The benchmark versions rules' `previous` and `since` name, oldest first, by id (kube-bench's cfg
    /// directory names: `cis-1.23`) and title.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub benchmarks: Vec<Benchmark>,
}

/// One version of the benchmark a pack follows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Benchmark {
    pub id: String,
    pub title: String,
}

/// How to recognise a component in a process table, how its binary reads flags, and where else it keeps its
/// settings.
#[derive(Debug, Clone)]
pub struct Component {
    pub id: String,
    pub title: String,
    /// Names of the executed program (`argv[0]`'s file name) that are this component.
    pub programs: Vec<String>,
    /// Multi-call binaries: program name → subcommands (`argv[1]`) that are this component.
    pub subcommands: BTreeMap<String, Vec<String>>,
    /// Roles that expect this component to run.
    pub roles: Vec<Role>,
    pub flag_style: FlagStyle,
    /// Every flag the binary is known to have, boolean or value-taking, for the parser.
    pub known: Known,
    /// The flags rules may read, by name without dashes, with their types, defaults and config fields.
    pub flags: BTreeMap<String, FlagDecl>,
    /// Places besides the command line the component itself reads settings from (a `--config` file).
    pub sources: Vec<Source>,
}

/// A program that runs components inside itself (k3s, MicroK8s' kubelite): their settings are not on any
/// command line of theirs.
#[derive(Debug, Clone)]
pub struct Embedding {
    /// The program (`argv[0]`'s file name) and the subcommands that run the components; empty: any.
    pub program: String,
    pub subcommands: Vec<String>,
    /// For people: `k3s server`.
    pub title: String,
    /// What it runs: index into [`RuleSet::components`], the sources that hold that component's settings
    /// (the embedding's own plus the component's), and a flag of the program that means it does not run it.
    pub runs: Vec<Embedded>,
}

#[derive(Debug, Clone)]
pub struct Embedded {
    pub component: usize,
    pub sources: Vec<Source>,
    /// `(flag without dashes, value)`: when the program's command line says so, the component does not run
    /// (`--disable-apiserver`, `--start-control-plane=false`).
    pub absent_if: Option<(String, String)>,
}

/// How CIS assesses a check: Automated checks are scored; Manual ones need a person's judgement (kube-bench
/// reports them as WARN), so a user may leave them out of the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Assessment {
    Automated,
    Manual,
}

impl Assessment {
    pub fn as_str(self) -> &'static str {
        match self {
            Assessment::Automated => "automated",
            Assessment::Manual => "manual",
        }
    }
}

/// A number a rule had in an earlier benchmark version: CIS renumbers controls between versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousId {
    /// The CIS control number then, e.g. `1.2.6`.
    pub cis: String,
    /// The benchmark versions that numbered it so, by id (`["cis-1.5", "cis-1.6", "cis-1.23"]`, see
    /// [`PackMeta::benchmarks`]).
    pub benchmarks: Vec<String>,
}

/// One rule, validated.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub cis: String,
    /// Its numbers in earlier benchmark versions, where they differ from `cis`.
    pub previous: Vec<PreviousId>,
    /// The first benchmark version (an id of [`PackMeta::benchmarks`]) with this check; `None`: the oldest.
    pub since: Option<String>,
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
    pub embeddings: Vec<Embedding>,
    /// The files file rules check.
    pub targets: Vec<Target>,
    pub rules: Vec<Rule>,
    /// Rules judged per cluster once every host of it is recorded (`[[cluster_rule]]`).
    pub cluster_rules: Vec<ClusterRule>,
}

/// A rule judged on a whole cluster from what its hosts' scans stored: the certificates their processes name.
#[derive(Debug, Clone)]
pub struct ClusterRule {
    pub id: String,
    /// The CIS number of the host rule it completes (`1.2.5` for the seed rule), or empty.
    pub cis: String,
    pub pack: String,
    pub title: String,
    pub severity: Severity,
    pub rationale: String,
    pub remediation: String,
    pub check: ClusterCheck,
}

/// What a cluster rule judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterCheck {
    /// Every kubelet's serving certificate chains to the CA each API server verifies kubelets with
    /// (`apiserver-kubelet-ca`), covers the node's name or address and is within its validity.
    KubeletServing,
    /// No certificate of the `roles` (of the `class`) has expired, is not yet valid, or expires within
    /// `warn_days`.
    Expiry { roles: Vec<String>, class: CertClass, warn_days: u32 },
}

/// Which certificates of a file an expiry rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertClass {
    /// CA certificates (basicConstraints CA:TRUE).
    Ca,
    /// Every other certificate.
    Leaf,
}

/// How a rule id given by a user (`rules show ID`) matched a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match<'a> {
    /// The rule's stable id.
    Id,
    /// Its CIS number in the pack's benchmark version.
    Cis,
    /// A number it had in earlier benchmark versions.
    Previous(&'a PreviousId),
    /// Its number now, which this earlier benchmark version (by id) gave it too.
    Same(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    pack: PackMeta,
    #[serde(default)]
    component: Vec<RawComponent>,
    #[serde(default)]
    embedding: Vec<RawEmbedding>,
    /// component id → flag (with dashes) → declaration.
    #[serde(default)]
    flags: BTreeMap<Spanned<String>, BTreeMap<Spanned<String>, Spanned<RawFlag>>>,
    /// component id → every flag name the binary has, by arity.
    #[serde(default)]
    known_flags: BTreeMap<Spanned<String>, RawKnown>,
    /// `[[file]]`: files file rules check.
    #[serde(default)]
    file: Vec<Spanned<RawTarget>>,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    cluster_rule: Vec<Spanned<RawClusterRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusterRule {
    id: String,
    #[serde(default)]
    cis: String,
    title: String,
    severity: Severity,
    rationale: String,
    remediation: String,
    /// `kubelet-serving` or `expiry`.
    check: String,
    #[serde(default)]
    roles: Vec<String>,
    class: Option<CertClass>,
    warn_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    id: String,
    component: Spanned<String>,
    what: String,
    at: Vec<RawPlace>,
    #[serde(default)]
    static_pod: bool,
    #[serde(default)]
    certificate: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum RawPlace {
    Path(String),
    In {
        component: String,
        flag: String,
        name: String,
        default: Option<String>,
    },
    Setting {
        flag: String,
        default: Option<String>,
    },
    Tree {
        tree: String,
        pattern: String,
        #[serde(default)]
        with_root: bool,
        #[serde(default)]
        dirs: bool,
    },
    TreeOf {
        tree_of: String,
        pattern: String,
        #[serde(default)]
        with_root: bool,
        #[serde(default)]
        dirs: bool,
    },
    Unit {
        unit_of_process: String,
    },
    KubeletServing {
        serving_cert: String,
        cert_dir: String,
        rotate: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    id: Spanned<String>,
    title: String,
    #[serde(default)]
    programs: Vec<String>,
    #[serde(default)]
    subcommands: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    roles: Vec<Role>,
    #[serde(default = "pflag")]
    flag_style: FlagStyle,
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
}

fn pflag() -> FlagStyle {
    FlagStyle::Pflag
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKnown {
    bool: Option<Spanned<Vec<String>>>,
    value: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlag {
    #[serde(rename = "type")]
    ty: FlagType,
    default: Option<String>,
    config: Option<String>,
    #[serde(default)]
    gates: BTreeMap<String, Gate>,
    #[serde(default)]
    or_with_config: bool,
    config_default: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSets {
    Word(String),
    Flags(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: SourceKind,
    flag: Option<String>,
    env: Option<String>,
    path: Option<String>,
    pattern: Option<String>,
    prefix: Option<String>,
    format: Format,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    #[serde(default)]
    defaults: bool,
    sets: RawSets,
    precedence: Precedence,
    what: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmbedding {
    program: String,
    #[serde(default)]
    subcommands: Vec<String>,
    title: String,
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
    /// component id → how this program passes it settings.
    components: BTreeMap<Spanned<String>, RawEmbedded>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmbedded {
    /// A flag of the program, each value one of the component's flags (k3s `--kube-apiserver-arg`).
    args_flag: Option<String>,
    /// A flag of the program naming a file of the component's flags (kubelite `--apiserver-args-file`).
    args_file: Option<String>,
    /// That file when the flag is absent.
    args_default: Option<String>,
    /// `--flag` (true) or `--flag=value` on the program's command line: the component does not run.
    absent_if: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    cis: Spanned<String>,
    #[serde(default)]
    previous: Vec<PreviousId>,
    since: Option<String>,
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
    /// A file check: the `[[file]]` target, and `mode` or `owner`.
    file: Option<String>,
    mode: Option<String>,
    owner: Option<String>,
    key: Option<String>,
    /// A field of the document the flag names (`@secrets_write_provider`).
    field: Option<String>,
    op: Option<Op>,
    value: Option<String>,
    /// Moved to the flag's declaration; named here only to say so.
    default: Option<String>,
    config_key: Option<String>,
    all: Option<Vec<Spanned<RawTest>>>,
    any: Option<Vec<Spanned<RawTest>>>,
}

/// `--name` → `name`, or why not.
fn flag_name(v: &str) -> Result<&str, String> {
    v.strip_prefix("--")
        .filter(|n| !n.is_empty() && !n.contains(['=', ' ']))
        .ok_or_else(|| format!("{v:?} is not a flag; write \"--name\""))
}

impl RuleSet {
    /// The embedded CIS pack alone.
    pub fn embedded() -> Result<RuleSet, PackError> {
        let mut set = RuleSet {
            packs: Vec::new(),
            components: Vec::new(),
            embeddings: Vec::new(),
            targets: Vec::new(),
            rules: Vec::new(),
            cluster_rules: Vec::new(),
        };
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

    /// Adds one pack's text. Component ids and rule ids must be new; a pack may declare flags of, embed, and
    /// write rules for components of earlier packs.
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
        if let Some(b) = &raw.pack.benchmark_id
            && !raw.pack.benchmarks.iter().any(|k| &k.id == b)
        {
            return Err(invalid(0..0, "pack.benchmark_id", format!("{b:?} is not one of the pack's `benchmarks`")));
        }
        // Validate into a copy, so that a pack refused half-way leaves the set as it was.
        let mut set = self.clone();
        let mut sources_to_check: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
        for c in raw.component {
            let id_span = c.id.span();
            let id = c.id.into_inner();
            if set.components.iter().any(|k| k.id == id) {
                return Err(invalid(id_span, "component.id", format!("component {id:?} is already defined")));
            }
            if c.programs.is_empty() && c.subcommands.is_empty() {
                return Err(invalid(
                    id_span,
                    "component.programs",
                    "a component needs `programs` or `subcommands` to be found".into(),
                ));
            }
            let mut sources = Vec::new();
            for s in c.source {
                let span = s.span();
                sources.push(build_source(s.into_inner()).map_err(|m| invalid(span.clone(), "component.source", m))?);
                sources_to_check.push((set.components.len(), span));
            }
            set.components.push(Component {
                id,
                title: c.title,
                programs: c.programs,
                subcommands: c.subcommands,
                roles: c.roles,
                flag_style: c.flag_style,
                known: Known::default(),
                flags: BTreeMap::new(),
                sources,
            });
        }
        let component_index = |set: &RuleSet, id: &Spanned<String>, field: &str| {
            set.components.iter().position(|c| c.id == *id.get_ref()).ok_or_else(|| {
                let known: Vec<&str> = set.components.iter().map(|c| c.id.as_str()).collect();
                invalid(id.span(), field, format!("unknown component {:?}; known: {}", id.get_ref(), known.join(", ")))
            })
        };
        for (component, names) in &raw.known_flags {
            let i = component_index(&set, component, "known_flags")?;
            for (list, arity) in [(&names.bool, Arity::Bool), (&names.value, Arity::Value)] {
                let Some(list) = list else { continue };
                for f in list.get_ref() {
                    // pflag shorthands are written `-v`.
                    let name = match f.strip_prefix("--") {
                        Some(n) => Ok(n),
                        None => f.strip_prefix('-').filter(|n| n.chars().count() == 1).ok_or_else(|| {
                            format!("{f:?} is not a flag; write \"--name\" (or \"-x\" for a shorthand)")
                        }),
                    }
                    .map_err(|m| invalid(list.span(), "known_flags", m))?;
                    if set.components[i].known.insert(name, arity).is_some_and(|a| a != arity) {
                        return Err(invalid(
                            list.span(),
                            "known_flags",
                            format!("{f} is listed as both bool and value"),
                        ));
                    }
                }
            }
        }
        for (component, decls) in raw.flags {
            let i = component_index(&set, &component, "flags")?;
            for (flag, decl) in decls {
                let span = decl.span();
                let name = flag_name(flag.get_ref()).map_err(|m| invalid(flag.span(), "flags", m))?.to_owned();
                let d = decl.into_inner();
                let field = format!("flags.{}.{}", component.get_ref(), flag.get_ref());
                if set.components[i].flags.contains_key(&name) {
                    return Err(invalid(span, &field, "this flag is already declared for the component".into()));
                }
                if !d.gates.is_empty() && d.ty != FlagType::FeatureGates {
                    return Err(invalid(span, &field, "only a feature_gates flag has gates".into()));
                }
                let arity = if d.ty == FlagType::Bool { Arity::Bool } else { Arity::Value };
                let c = &mut set.components[i];
                if c.known.insert(&name, arity).is_some_and(|a| a != arity) {
                    return Err(invalid(
                        span,
                        &field,
                        format!("known_flags lists it as the other arity than {:?}", d.ty.as_str()),
                    ));
                }
                if d.or_with_config && (d.ty != FlagType::Bool || d.config.is_none()) {
                    return Err(invalid(span, &field, "or_with_config needs a bool flag with a `config` field".into()));
                }
                c.flags.insert(
                    name,
                    FlagDecl {
                        ty: d.ty,
                        default: d.default,
                        config: d.config,
                        gates: d.gates,
                        or_with_config: d.or_with_config,
                        config_default: d.config_default,
                    },
                );
            }
        }
        for e in raw.embedding {
            let mut runs = Vec::new();
            let mut shared = Vec::new();
            for s in e.source {
                let span = s.span();
                shared.push(build_source(s.into_inner()).map_err(|m| invalid(span, "embedding.source", m))?);
            }
            for (component, how) in e.components {
                let i = component_index(&set, &component, "embedding.components")?;
                let span = component.span();
                let title = &set.components[i].title;
                let mut sources = shared.clone();
                if let Some(f) = &how.args_flag {
                    let name = flag_name(f).map_err(|m| invalid(span.clone(), "embedding.components.args_flag", m))?;
                    sources.push(Source {
                        kind: SourceKind::ArgsFlag,
                        flag: Some(name.to_owned()),
                        env: None,
                        path: None,
                        pattern: None,
                        prefix: None,
                        format: Format::ArgsFlag,
                        fields: BTreeMap::new(),
                        defaults: false,
                        sets: Sets::All,
                        precedence: Precedence::OverFlags,
                        what: format!("{}'s {title} flags", e.title),
                    });
                }
                if let Some(f) = &how.args_file {
                    let name = flag_name(f).map_err(|m| invalid(span.clone(), "embedding.components.args_file", m))?;
                    sources.push(Source {
                        kind: SourceKind::File,
                        flag: Some(name.to_owned()),
                        env: None,
                        path: how.args_default.clone(),
                        pattern: None,
                        prefix: None,
                        format: Format::Args,
                        fields: BTreeMap::new(),
                        defaults: false,
                        sets: Sets::All,
                        precedence: Precedence::OverFlags,
                        what: format!("{}'s {title} arguments file", e.title),
                    });
                }
                if sources.is_empty() {
                    return Err(invalid(
                        span,
                        "embedding.components",
                        "say where the component's settings are: `args_flag`, `args_file`, or the embedding's `source`"
                            .into(),
                    ));
                }
                let absent_if = match &how.absent_if {
                    Some(a) => {
                        let (f, v) = a.split_once('=').unwrap_or((a, "true"));
                        let name =
                            flag_name(f).map_err(|m| invalid(span.clone(), "embedding.components.absent_if", m))?;
                        Some((name.to_owned(), v.to_owned()))
                    }
                    None => None,
                };
                runs.push(Embedded { component: i, sources, absent_if });
            }
            // In pack order of the components, not the table's alphabetical one.
            runs.sort_by_key(|r| r.component);
            set.embeddings.push(Embedding { program: e.program, subcommands: e.subcommands, title: e.title, runs });
        }
        // Sources may name flags (`sets = ["--authorization-mode"]`) only once the component's flags are known.
        for (i, span) in sources_to_check {
            let c = &set.components[i];
            for s in &c.sources {
                if let Sets::Flags(names) = &s.sets
                    && let Some(n) = names.iter().find(|n| !c.flags.contains_key(*n))
                {
                    return Err(invalid(
                        span.clone(),
                        "component.source.sets",
                        format!("--{n} is not declared in [flags.{}]", c.id),
                    ));
                }
            }
        }
        for t in raw.file {
            let span = t.span();
            let t = t.into_inner();
            let component = component_index(&set, &t.component, "file.component")?;
            if set.targets.iter().any(|k| k.id == t.id) {
                return Err(invalid(span, "file.id", format!("file {:?} is already defined", t.id)));
            }
            let mut at = Vec::new();
            for p in t.at {
                let declared = |c: usize, f: &str| -> Result<String, PackError> {
                    let name = flag_name(f).map_err(|m| invalid(span.clone(), "file.at", m))?;
                    if !set.components[c].flags.contains_key(name) {
                        return Err(invalid(
                            span.clone(),
                            "file.at",
                            format!("{f} is not declared in [flags.{}]", set.components[c].id),
                        ));
                    }
                    Ok(name.to_owned())
                };
                at.push(match p {
                    RawPlace::Path(p) => Place::Path(p),
                    RawPlace::Setting { flag, default } => {
                        Place::Setting { flag: declared(component, &flag)?, default }
                    }
                    RawPlace::In { component: other, flag, name, default } => {
                        let c =
                            set.components.iter().position(|c| c.id == other).ok_or_else(|| {
                                invalid(span.clone(), "file.at", format!("unknown component {other:?}"))
                            })?;
                        Place::In { component: other, flag: declared(c, &flag)?, default, name }
                    }
                    RawPlace::Tree { tree, pattern, with_root, dirs } => {
                        Place::Tree { dir: tree, pattern, with_root, dirs }
                    }
                    RawPlace::TreeOf { tree_of, pattern, with_root, dirs } => {
                        Place::TreeOf { flag: declared(component, &tree_of)?, pattern, with_root, dirs }
                    }
                    RawPlace::Unit { unit_of_process } => {
                        if !unit_of_process.ends_with(".service") {
                            return Err(invalid(
                                span.clone(),
                                "file.at",
                                format!(
                                    "unit_of_process {unit_of_process:?}: name a service, such as \"kubelet.service\""
                                ),
                            ));
                        }
                        Place::Unit { default: unit_of_process }
                    }
                    RawPlace::KubeletServing { serving_cert, cert_dir, rotate } => Place::KubeletServing {
                        cert: declared(component, &serving_cert)?,
                        dir: declared(component, &cert_dir)?,
                        rotate: declared(component, &rotate)?,
                    },
                });
            }
            if let Some(role) = &t.certificate
                && (role.is_empty() || !role.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            {
                return Err(invalid(
                    span,
                    "file.certificate",
                    format!("{role:?}: a role is lower-case words joined by '-'"),
                ));
            }
            set.targets.push(Target {
                id: t.id,
                component,
                what: t.what,
                at,
                static_pod: t.static_pod,
                certificate: t.certificate,
            });
        }
        for r in raw.rule {
            let id_span = r.id.span();
            let id = r.id.into_inner();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                return Err(invalid(id_span, "rule.id", format!("{id:?}: use letters, digits, '.', '_' and '-'")));
            }
            if set.rules.iter().any(|k| k.id == id) {
                return Err(invalid(id_span, "rule.id", format!("rule {id:?} is already defined")));
            }
            let component = component_index(&set, &r.component, "rule.component")?;
            for (field, value) in
                [("rule.cis", &r.cis), ("rule.rationale", &r.rationale), ("rule.remediation", &r.remediation)]
            {
                if value.get_ref().trim().is_empty() {
                    return Err(invalid(value.span(), field, format!("rule {id}: must not be empty")));
                }
            }
            let known_benchmark = |b: &str| {
                raw.pack.benchmarks.iter().chain(set.packs.iter().flat_map(|p| &p.benchmarks)).any(|k| k.id == b)
            };
            if let Some(b) = r.previous.iter().flat_map(|p| &p.benchmarks).chain(&r.since).find(|b| !known_benchmark(b))
            {
                return Err(invalid(
                    id_span,
                    "rule.previous",
                    format!("rule {id}: benchmark {b:?} is not in the pack's `benchmarks`"),
                ));
            }
            let c = &set.components[component];
            let test = build_test(r.test, c, &set.targets, &|span, field, msg| {
                invalid(span, field, format!("rule {id}: {msg}"))
            })?;
            if let Some(f) = test.file_checks().iter().find(|f| set.targets[f.target].component != component) {
                return Err(invalid(
                    id_span,
                    "rule.test.file",
                    format!("rule {id}: file {:?} belongs to another component than the rule", f.target_id),
                ));
            }
            set.rules.push(Rule {
                id,
                cis: r.cis.into_inner(),
                previous: r.previous,
                since: r.since,
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
        for r in raw.cluster_rule {
            let span = r.span();
            let r = r.into_inner();
            let bad =
                |field: &str, msg: String| invalid(span.clone(), field, format!("cluster rule {:?}: {msg}", r.id));
            if r.id.is_empty() || !r.id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                return Err(bad("cluster_rule.id", "use letters, digits, '.', '_' and '-'".into()));
            }
            if set.cluster_rules.iter().any(|k| k.id == r.id) || set.rules.iter().any(|k| k.id == r.id) {
                return Err(bad("cluster_rule.id", "already defined".into()));
            }
            let known: std::collections::BTreeSet<&str> =
                set.targets.iter().filter_map(|t| t.certificate.as_deref()).collect();
            if let Some(role) = r.roles.iter().find(|role| !known.contains(role.as_str())) {
                return Err(bad("cluster_rule.roles", format!("no [[file]] has certificate = {role:?}")));
            }
            let check = match (r.check.as_str(), r.class, r.warn_days) {
                ("kubelet-serving", None, None) if r.roles.is_empty() => ClusterCheck::KubeletServing,
                ("kubelet-serving", ..) => {
                    return Err(bad("cluster_rule.check", "kubelet-serving takes no roles, class or warn_days".into()));
                }
                ("expiry", Some(class), Some(warn_days)) if !r.roles.is_empty() => {
                    ClusterCheck::Expiry { roles: r.roles.clone(), class, warn_days }
                }
                ("expiry", ..) => {
                    return Err(bad(
                        "cluster_rule.check",
                        "expiry needs roles, class (\"ca\" or \"leaf\") and warn_days".into(),
                    ));
                }
                (other, ..) => {
                    return Err(bad(
                        "cluster_rule.check",
                        format!("{other:?}: write \"kubelet-serving\" or \"expiry\""),
                    ));
                }
            };
            set.cluster_rules.push(ClusterRule {
                id: r.id,
                cis: r.cis,
                pack: raw.pack.id.clone(),
                title: r.title,
                severity: r.severity,
                rationale: r.rationale,
                remediation: r.remediation,
                check,
            });
        }
        set.packs.push(raw.pack);
        *self = set;
        Ok(())
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Every rule `id` names, and how: its stable id, its CIS number now, or a number it had in an earlier
    /// benchmark version (CIS 1.2.6 is the AlwaysAllow check in v1.12 and was the kubelet CA check in v1.5.1,
    /// v1.6.0 and the V1.23 benchmark, so one number can name two rules); current numbers first. `cis-1.2.6` is
    /// read as `1.2.6`. With `benchmark` (an id of the packs' `benchmarks`), only that version's numbering.
    pub fn find(&self, id: &str, benchmark: Option<&str>) -> Vec<(&Rule, Match<'_>)> {
        if let Some(r) = self.rule(id) {
            return vec![(r, Match::Id)];
        }
        let number = id.strip_prefix("cis-").or_else(|| id.strip_prefix("CIS-")).unwrap_or(id);
        if let Some(b) = benchmark {
            return self
                .rules
                .iter()
                .filter_map(|r| match self.number_in(r, b)? {
                    (n, m) if n == number => Some((r, m)),
                    _ => None,
                })
                .collect();
        }
        let mut found: Vec<(&Rule, Match<'_>)> =
            self.rules.iter().filter(|r| r.cis == number).map(|r| (r, Match::Cis)).collect();
        for r in &self.rules {
            if let Some(p) = r.previous.iter().find(|p| p.cis == number) {
                found.push((r, Match::Previous(p)));
            }
        }
        found
    }

    /// A rule's number in benchmark version `b`, and how it is known; `None` when that version lacks the check.
    fn number_in<'r>(&self, r: &'r Rule, b: &str) -> Option<(&'r str, Match<'r>)> {
        let meta = self.packs.iter().find(|p| p.id == r.pack)?;
        let order = |id: &str| meta.benchmarks.iter().position(|k| k.id == id);
        let at = order(b)?;
        if r.since.as_deref().and_then(order).is_some_and(|since| at < since) {
            return None;
        }
        match r.previous.iter().find(|p| p.benchmarks.iter().any(|x| x == b)) {
            Some(p) => Some((&p.cis, Match::Previous(p))),
            None if meta.benchmark_id.as_deref() == Some(b) => Some((&r.cis, Match::Cis)),
            None => Some((&r.cis, Match::Same(b.to_owned()))),
        }
    }

    /// The benchmark versions of every pack, oldest first within a pack.
    pub fn benchmarks(&self) -> impl Iterator<Item = &Benchmark> {
        self.packs.iter().flat_map(|p| &p.benchmarks)
    }

    pub fn component(&self, rule: &Rule) -> &Component {
        &self.components[rule.component]
    }

    /// One string naming every pack and version in force, stored with each scan: `cis-kubernetes@2026.11.0`.
    pub fn version(&self) -> String {
        self.packs.iter().map(|p| format!("{}@{}", p.id, p.version)).collect::<Vec<_>>().join("+")
    }
}

fn build_source(s: RawSource) -> Result<Source, String> {
    let flag = s.flag.as_deref().map(flag_name).transpose()?.map(str::to_owned);
    let sets = match s.sets {
        RawSets::Word(w) if w == "all" => Sets::All,
        RawSets::Word(w) if w == "config" => Sets::Config,
        RawSets::Word(w) => return Err(format!("sets = {w:?}: write \"all\", \"config\" or a list of flags")),
        RawSets::Flags(list) => {
            Sets::Flags(list.iter().map(|f| flag_name(f).map(str::to_owned)).collect::<Result<_, _>>()?)
        }
    };
    match s.kind {
        SourceKind::Environment if s.prefix.is_none() => return Err("an environment source needs `prefix`".into()),
        SourceKind::Dir if s.pattern.is_none() => return Err("a dir source needs `pattern` (e.g. \"*.conf\")".into()),
        SourceKind::File | SourceKind::Dir if flag.is_none() && s.path.is_none() && s.env.is_none() => {
            return Err("a file or dir source needs `flag`, `env` or `path`: where the process finds it".into());
        }
        SourceKind::ArgsFlag if flag.is_none() => return Err("an args_flag source needs `flag`".into()),
        _ => {}
    }
    Ok(Source {
        kind: s.kind,
        flag,
        env: s.env,
        path: s.path,
        pattern: s.pattern,
        prefix: s.prefix,
        format: s.format,
        fields: s
            .fields
            .iter()
            .map(|(f, p)| Ok((flag_name(f)?.to_owned(), p.clone())))
            .collect::<Result<_, String>>()?,
        defaults: s.defaults,
        sets,
        precedence: s.precedence,
        what: s.what,
    })
}

type Invalid<'a> = dyn Fn(std::ops::Range<usize>, &str, String) -> PackError + 'a;

fn build_test(
    raw: Spanned<RawTest>,
    component: &Component,
    targets: &[Target],
    invalid: &Invalid<'_>,
) -> Result<Test, PackError> {
    let span = raw.span();
    let t = raw.into_inner();
    if let Some(file) = &t.file {
        if t.flag.is_some()
            || t.op.is_some()
            || t.value.is_some()
            || t.key.is_some()
            || t.field.is_some()
            || t.all.is_some()
            || t.any.is_some()
        {
            return Err(invalid(span, "rule.test", "a file check has only `file` and `mode` or `owner`".into()));
        }
        let target = targets.iter().position(|k| &k.id == file).ok_or_else(|| {
            let known: Vec<&str> = targets.iter().map(|k| k.id.as_str()).collect();
            invalid(span.clone(), "rule.test.file", format!("no [[file]] {file:?}; known: {}", known.join(", ")))
        })?;
        let (op, value) = match (t.mode, t.owner) {
            (Some(m), None) => (FileOp::Mode, m),
            (None, Some(o)) => (FileOp::Owner, o),
            _ => return Err(invalid(span, "rule.test", "a file check needs exactly one of `mode` and `owner`".into())),
        };
        return FileCheck::new(target, file.clone(), op, value)
            .map(Test::File)
            .map_err(|m| invalid(span, "rule.test", m));
    }
    if t.default.is_some() || t.config_key.is_some() {
        return Err(invalid(
            span,
            "rule.test",
            format!(
                "`default` and `config_key` belong to the flag: declare them in [flags.{}] (\"--name\" = {{ type = \
                 \"...\", default = \"...\", config = \"...\" }})",
                component.id
            ),
        ));
    }
    let is_check = t.flag.is_some() || t.op.is_some() || t.value.is_some() || t.key.is_some();
    match (is_check, t.all, t.any) {
        (false, Some(list), None) | (false, None, Some(list)) if list.is_empty() => {
            Err(invalid(span, "rule.test", "`all`/`any` needs at least one test".into()))
        }
        (false, Some(list), None) => Ok(Test::All(
            list.into_iter().map(|t| build_test(t, component, targets, invalid)).collect::<Result<_, _>>()?,
        )),
        (false, None, Some(list)) => Ok(Test::Any(
            list.into_iter().map(|t| build_test(t, component, targets, invalid)).collect::<Result<_, _>>()?,
        )),
        (true, None, None) => {
            let flag = t.flag.ok_or_else(|| invalid(span.clone(), "rule.test.flag", "a check needs `flag`".into()))?;
            let op = t.op.ok_or_else(|| {
                let ops: Vec<&str> = Op::ALL.iter().map(|o| o.as_str()).collect();
                invalid(span.clone(), "rule.test.op", format!("a check needs `op`, one of {}", ops.join(", ")))
            })?;
            let check = Check::new(flag, t.key, op, t.value)
                .and_then(|c| match t.field {
                    Some(f) => c.with_field(f),
                    None => Ok(c),
                })
                .map_err(|(field, msg)| invalid(span.clone(), &format!("rule.test.{field}"), msg))?;
            let Some(decl) = component.flags.get(check.name()) else {
                return Err(invalid(
                    span,
                    "rule.test.flag",
                    format!(
                        "{} is not declared for component {}: add it to [flags.{}] with its type (bool, string, \
                         int, duration, list, array or feature_gates, as the component registers it)",
                        check.flag, component.id, component.id
                    ),
                ));
            };
            check.suits(decl).map_err(|(field, msg)| invalid(span, &format!("rule.test.{field}"), msg))?;
            Ok(Test::Check(check))
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
            "{HEADER}[[component]]\nid = \"site-agent\"\ntitle = \"site agent\"\nprograms = [\"site-agent\"]\nroles = [\"worker\"]\n\
             [flags.site-agent]\n\"--a\" = {{ type = \"string\" }}\n\"--b\" = {{ type = \"int\" }}\n\
             [[rule]]\nid = \"site-1\"\ncis = \"n/a\"\ntitle = \"t\"\ncomponent = \"site-agent\"\nseverity = \"low\"\n\
             rationale = \"r\"\nremediation = \"m\"\ntest = {{ any = [ {{ flag = \"--a\", op = \"set\" }}, {{ flag = \"--b\", op = \"eq\", value = \"1\" }} ] }}\n"
        ))
        .unwrap();
        let r = set.rule("site-1").unwrap();
        assert_eq!(set.component(r).id, "site-agent");
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
    fn a_rule_reads_only_declared_flags_with_an_op_that_suits_them() {
        let rule = |test: &str| {
            format!(
                "{HEADER}[[rule]]\nid = \"x-1\"\ncis = \"1\"\ntitle = \"t\"\ncomponent = \"apiserver\"\nseverity = \"low\"\n\
                 rationale = \"r\"\nremediation = \"m\"\ntest = {test}\n"
            )
        };
        let e = error(&rule("{ flag = \"--undeclared\", op = \"set\" }"));
        assert!(
            e.starts_with("extra.toml:13:") && e.contains("--undeclared is not declared for component apiserver"),
            "{e}"
        );
        // A list is searched, not compared.
        let e = error(&rule("{ flag = \"--authorization-mode\", op = \"eq\", value = \"RBAC\" }"));
        assert!(e.contains("rule.test.op") && e.contains("list flag"), "{e}");
        // Defaults belong to the declaration.
        let e = error(&rule("{ flag = \"--profiling\", op = \"eq\", value = \"false\", default = \"true\" }"));
        assert!(e.contains("[flags.apiserver]"), "{e}");
        // Declared in the same pack, the flag may be read.
        let declared = format!(
            "{}[flags.apiserver]\n\"--undeclared\" = {{ type = \"string\" }}\n",
            rule("{ flag = \"--undeclared\", op = \"set\" }")
        );
        assert!(add(&declared).is_ok());
        // But not declared twice, nor as two arities.
        let twice = format!("{HEADER}[flags.apiserver]\n\"--profiling\" = {{ type = \"bool\" }}\n");
        assert!(error(&twice).contains("already declared"));
        let arity = format!("{HEADER}[known_flags.apiserver]\nvalue = [\"--profiling\"]\n");
        assert!(error(&arity).contains("both bool and value"), "{}", error(&arity));
    }

    #[test]
    fn sources_and_embeddings_are_validated() {
        let source = |body: &str| {
            format!(
                "{HEADER}[[component]]\nid = \"c\"\ntitle = \"c\"\nprograms = [\"c\"]\n[[component.source]]\n{body}\n"
            )
        };
        let e = error(&source(
            "kind = \"dir\"\nflag = \"--d\"\nformat = \"document\"\nwhat = \"w\"\nsets = \"all\"\nprecedence = \"below_flags\"",
        ));
        assert!(e.contains("pattern"), "{e}");
        let e = error(&source(
            "kind = \"file\"\nformat = \"document\"\nwhat = \"w\"\nsets = \"all\"\nprecedence = \"below_flags\"",
        ));
        assert!(e.contains("needs `flag`, `env` or `path`"), "{e}");
        let e = error(&source(
            "kind = \"file\"\nflag = \"--c\"\nformat = \"document\"\nwhat = \"w\"\nsets = \"some\"\nprecedence = \"below_flags\"",
        ));
        assert!(e.contains("sets"), "{e}");
        let e = error(&source(
            "kind = \"file\"\nflag = \"--c\"\nformat = \"document\"\nwhat = \"w\"\nsets = [\"--nope\"]\nprecedence = \"below_flags\"",
        ));
        assert!(e.contains("--nope is not declared in [flags.c]"), "{e}");
        let e = error(&format!(
            "{HEADER}[[embedding]]\nprogram = \"p\"\ntitle = \"p\"\n[embedding.components]\napiserver = {{}}\n"
        ));
        assert!(e.contains("say where the component's settings are"), "{e}");
        let e = error(&format!(
            "{HEADER}[[embedding]]\nprogram = \"p\"\ntitle = \"p\"\n[embedding.components]\nnope = {{ args_flag = \"--x\" }}\n"
        ));
        assert!(e.contains("unknown component \"nope\""), "{e}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = RuleSet::load(&[PathBuf::from("/nonexistent/rules.toml")]).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/rules.toml") && e.contains("--rules"), "{e}");
    }
}
