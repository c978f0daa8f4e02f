//! A process's settings, layer by layer: built-in defaults, config files and drop-ins, its environment, its
//! command line, files read after it, as the component itself applies them.
//!
//! Owns: turning the sources that apply to a process ([`Applied`]) and what the host's files held
//! ([`FileSet`]) into [`Layer`]s, once per process, and [`resolve`]: the value one setting has in the end, with
//! where it came from, or why it cannot be known (a place not read, denied, missing, unparseable), naming the
//! place and the fix.
//! Must not touch: SSH, the database. It reads only the FileSet the transport filled.

use std::collections::BTreeMap;

use super::doc::{Doc, Found, ScalarKind};
use super::pack::Component;
use super::settings::{self, Applied, FlagDecl, FlagType, Format, Origin, Precedence, Sets, SourceKind, Value, Via};
use crate::files::mount::Viewer;
use crate::files::{Entry, FileSet, Problem};
use crate::ps::flags::Flags;

/// One source of one process, loaded.
#[derive(Debug, Clone)]
pub struct Layer<'s> {
    pub applied: Applied<'s>,
    pub state: State,
}

/// What a source held for this process.
#[derive(Debug, Clone)]
pub enum State {
    /// Nothing was read for it: the judgement has no files (a `ps` capture alone), or the place was not fetched.
    NotRead(String),
    /// A place the process reads only if it exists, and it does not: the source does not apply.
    Absent,
    /// It applies but cannot be used; why, with the fix.
    Unusable(String),
    /// Documents in the order the component applies them (a drop-in directory: lexical order), by path.
    /// Shared with the set's memo: loading a layer each round copies no document.
    Docs(Vec<(String, std::sync::Arc<Doc>)>),
    /// Command-line arguments the component reads from the place (an args file, OpenShift's arguments, k3s's
    /// `--kube-apiserver-arg`), in order, with the place they came from.
    Args { place: String, tokens: Vec<String> },
    /// Environment variables with the source's prefix, from `/proc/PID/environ`.
    Env { path: String, vars: BTreeMap<String, String> },
}

/// Parses a text into a document; supplied by the files stage so that this module stays free of parsers.
pub type DocParser = dyn Fn(&str, &[u8]) -> Result<Doc, String>;

/// The sources of one process, loaded from `files`. `env_of` is the process's own environment layer, which an
/// environment-named file source (`ETCD_CONFIG_FILE`) needs.
pub fn load<'s>(applied: Vec<Applied<'s>>, files: &FileSet, viewer: Viewer<'_>, parse: &DocParser) -> Vec<Layer<'s>> {
    // The environment first: a file named only by an environment variable needs it.
    let mut layers: Vec<Layer<'s>> = Vec::with_capacity(applied.len());
    let env: Option<BTreeMap<String, String>> = applied
        .iter()
        .find(|a| a.source.kind == SourceKind::Environment)
        .and_then(|a| match load_one(a, files, viewer, parse, None) {
            State::Env { vars, .. } => Some(vars),
            _ => None,
        });
    for a in applied {
        let state = load_one(&a, files, viewer, parse, env.as_ref());
        layers.push(Layer { applied: a, state });
    }
    layers
}

fn not_read(files: &FileSet, place: &str) -> State {
    State::NotRead(if files.not_read {
        "not read: this judgement has only a process table (judge a snapshot of the host, or scan it)".to_owned()
    } else {
        format!("{place} was not read")
    })
}

/// Why a problem makes a place unusable, with the fix.
fn unusable(path: &str, problem: &Problem, via: Via) -> State {
    State::Unusable(match problem {
        Problem::Missing if via == Via::Default => return State::Absent,
        Problem::Missing => format!("the process names {path}, which does not exist"),
        Problem::Denied => format!(
            "permission denied reading {path}: give the audit login read access (group read or an ACL), or set \
             sftp_command to a privileged SFTP server (README: Files over SFTP)"
        ),
        Problem::TooLarge { size, limit, .. } => {
            format!("{path} is {size} bytes, over the {limit}-byte limit (max_file_bytes): not read")
        }
        Problem::OverBudget { what } => format!("{path} was not read: the host's file budget ran out ({what})"),
        Problem::Unavailable { reason } => format!("{path} could not be read: {reason}"),
        Problem::Failed { message } => format!("{path} could not be read: {message}"),
        Problem::NotInSnapshot => format!(
            "{path} is not in the snapshot{}: add it to the tar",
            if via == Via::Default { ", and the component reads it if it exists" } else { "" }
        ),
    })
}

fn load_one(
    a: &Applied<'_>,
    files: &FileSet,
    viewer: Viewer<'_>,
    parse: &DocParser,
    env: Option<&BTreeMap<String, String>>,
) -> State {
    let s = a.source;
    let pid = viewer.pid;
    match s.kind {
        SourceKind::ArgsFlag => State::NotRead(
            "fleetaudit does not model the embedding program's own defaults for the component".to_owned(),
        ),
        SourceKind::Environment => {
            let path = format!("/proc/{pid}/environ");
            match files.get(&path) {
                None => not_read(files, &format!("the environment ({path})")),
                Some(Entry::Problem(p)) => match unusable(&path, p, Via::Named) {
                    State::Unusable(why) => State::Unusable(format!("{why} (etcd's ETCD_* settings are there)")),
                    other => other,
                },
                Some(Entry::Found { content: Some(c), .. }) => {
                    let prefix = s.prefix.as_deref().unwrap_or_default();
                    let vars = c
                        .bytes
                        .split(|b| *b == 0)
                        .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
                        .filter(|(k, _)| k.starts_with(prefix))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect();
                    State::Env { path, vars }
                }
                Some(Entry::Found { .. }) => State::Unusable(format!("{path} has no contents")),
            }
        }
        SourceKind::File => {
            let path = match a.via {
                Via::Environment => {
                    let var = s.env.as_deref().unwrap_or_default();
                    match env {
                        None => {
                            // Why it was not read, with that problem's own fix (no SFTP at all is not fixed by
                            // a privileged SFTP server).
                            let environ = format!("/proc/{pid}/environ");
                            let why = match files.get(&environ).and_then(Entry::problem) {
                                Some(p) => match unusable(&environ, p, Via::Named) {
                                    State::Unusable(why) => why,
                                    _ => format!("{environ}: {p}"),
                                },
                                None => format!("read {environ} (privileged SFTP, README: Files over SFTP)"),
                            };
                            return State::NotRead(format!(
                                "its environment was not read, and ${var} there would name a file that replaces \
                                 every flag: {why}"
                            ));
                        }
                        Some(vars) => match vars.get(var) {
                            Some(p) if !p.is_empty() => p.clone(),
                            _ => return State::Absent,
                        },
                    }
                }
                _ => a.place.clone(),
            };
            read_doc(&path, a, files, viewer, parse)
        }
        SourceKind::Dir => {
            let named = a.place.trim_end_matches('/');
            let located = viewer.locate(files, named);
            if let (Some(Entry::Problem(_)), Some(note)) = (located.entry, &located.note) {
                return State::Unusable(note.clone());
            }
            let dir = located.at;
            let pattern = s.pattern.as_deref().unwrap_or("*");
            match drop_ins(&dir, pattern, files, 0) {
                Err(state) => match state {
                    State::Unusable(_)
                        if a.via == Via::Default
                            && matches!(files.get(&dir), Some(Entry::Problem(Problem::Missing))) =>
                    {
                        State::Absent
                    }
                    other => other,
                },
                Ok(paths) => {
                    let mut docs = Vec::new();
                    for p in paths {
                        // Entries of a listed directory are where the listing was: no second lookup.
                        match read_doc(&p, a, files, Viewer::host(pid), parse) {
                            State::Docs(mut d) => docs.append(&mut d),
                            State::Absent => {}
                            other => return other,
                        }
                    }
                    State::Docs(docs)
                }
            }
        }
    }
}

/// The drop-in files of `dir` matching `pattern`, in the order the kubelet merges them: lexical, descending into
/// subdirectories where they stand (cmd/kubelet/app/server.go mergeKubeletConfigurations walks the tree).
fn drop_ins(dir: &str, pattern: &str, files: &FileSet, depth: usize) -> Result<Vec<String>, State> {
    const MAX_DEPTH: usize = 4;
    let names = match files.get(dir) {
        None => return Err(not_read(files, dir)),
        Some(Entry::Problem(p)) => return Err(unusable(dir, p, Via::Named)),
        Some(Entry::Found { names: Some(n), .. }) => n,
        Some(Entry::Found { .. }) => return Err(State::Unusable(format!("{dir} is not a directory"))),
    };
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    let mut out = Vec::new();
    for name in sorted {
        let path = format!("{dir}/{name}");
        match files.get(&path) {
            Some(Entry::Found { names: Some(_), .. }) if depth < MAX_DEPTH => {
                out.extend(drop_ins(&path, pattern, files, depth + 1)?)
            }
            Some(Entry::Found { meta, .. }) if meta.kind == crate::files::Kind::Dir => {
                return Err(State::Unusable(format!("{path} is a directory fleetaudit did not list")));
            }
            _ if glob(pattern, name) => out.push(path),
            _ => {}
        }
    }
    Ok(out)
}

/// A shell-style pattern with one `*` (`*.conf`), as sources write them.
pub fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((head, tail)) => name.len() >= head.len() + tail.len() && name.starts_with(head) && name.ends_with(tail),
        None => pattern == name,
    }
}

fn read_doc(named: &str, a: &Applied<'_>, files: &FileSet, viewer: Viewer<'_>, parse: &DocParser) -> State {
    let located = viewer.locate(files, named);
    let path = located.at.as_str();
    let content = match located.entry {
        None => return not_read(files, named),
        Some(Entry::Problem(_)) if located.note.is_some() => {
            return State::Unusable(located.note.unwrap_or_default());
        }
        Some(Entry::Problem(p)) => return unusable(path, p, a.via),
        Some(Entry::Found { content: Some(c), .. }) => c,
        Some(Entry::Found { meta, .. }) if meta.kind == crate::files::Kind::Dir => {
            return State::Unusable(format!("{path} is a directory, not a file"));
        }
        Some(Entry::Found { .. }) => return not_read(files, path),
    };
    // Parsed once per host and parser, however many rounds and rules read it.
    let parsed = || {
        let key = format!("doc {:p} {path} {:x?}", parse as *const DocParser as *const (), content.sha256);
        files.memo(&key, || parse(path, &content.bytes).map(std::sync::Arc::new))
    };
    match a.source.format {
        Format::Document => match &*parsed() {
            Ok(doc) => State::Docs(vec![(path.to_owned(), std::sync::Arc::clone(doc))]),
            Err(e) => State::Unusable(format!("{e}: the component could not read it either")),
        },
        Format::Args => State::Args { place: path.to_owned(), tokens: args_file(&content.bytes) },
        Format::OpenshiftArguments => match &*parsed() {
            Ok(doc) => State::Args { place: path.to_owned(), tokens: openshift_arguments(doc) },
            Err(e) => State::Unusable(e.clone()),
        },
        Format::Env | Format::ArgsFlag => State::Unusable(format!("{path}: not a file source")),
    }
}

/// MicroK8s' args file as kubelite reads it (ReadArgsFromFile in microk8s' kubelite patch): each line trimmed,
/// blank lines and lines starting with `#` skipped, every `"` and `'` removed, split on single spaces. `$VAR`
/// stays as written: kubelite expands it from its own environment.
pub fn args_file(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut tokens = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line: String = line.chars().filter(|c| *c != '"' && *c != '\'').collect();
        tokens.extend(line.split(' ').map(str::to_owned));
    }
    tokens
}

/// OpenShift's KubeAPIServerConfig `apiServerArguments: {flag: [values]}` as the arguments it becomes: one
/// `--flag=value` per value, flags in the file's order.
fn openshift_arguments(doc: &Doc) -> Vec<String> {
    let mut tokens = Vec::new();
    if let Some(Doc::Map { entries, .. }) = doc.field("apiServerArguments") {
        for (flag, values) in entries {
            match values {
                Doc::List { items, .. } => {
                    for v in items {
                        if let Doc::Scalar { text, .. } = v {
                            tokens.push(format!("--{flag}={text}"));
                        }
                    }
                }
                Doc::Scalar { text, .. } => tokens.push(format!("--{flag}={text}")),
                _ => {}
            }
        }
    }
    tokens
}

/// A setting's final value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub value: Option<Value>,
    pub from: From,
    /// What made it, for the evidence: command-line occurrences as written, or `PATH:LINE: field = value`.
    pub texts: Vec<String>,
    /// A command-line occurrence that follows a bare flag fleetaudit does not know: the component may have
    /// read it as that flag's value.
    pub ambiguous: Option<String>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum From {
    /// These command-line occurrences (or arguments from a file read as a command line).
    CommandLine,
    /// `AllAlpha`/`AllBeta` on the command line, for a gate not set explicitly.
    Stage,
    /// A document's field.
    File,
    /// A document's own default for a field it leaves out.
    FileDefault,
    /// An environment variable.
    Env,
    /// The flag's default: nothing sets it.
    Default,
    /// Nothing sets it and it has no default.
    Absent,
}

impl From {
    /// Whether something the operator wrote set the value (not a default).
    pub fn is_given(&self) -> bool {
        matches!(self, From::CommandLine | From::Stage | From::File | From::Env)
    }
}

/// One process as the resolver sees it.
pub struct Process<'p, 'a> {
    /// Its own command line (none for a component run inside another program).
    pub flags: &'p Flags<'a>,
    pub args: &'p [&'a str],
    pub component: &'p Component,
    pub layers: &'p [Layer<'p>],
}

/// Why a setting cannot be known.
#[derive(Debug, Clone, PartialEq)]
pub struct Undecided {
    /// The places that decide and could not be used, for people (`the KubeletConfiguration file
    /// /var/lib/kubelet/config.yaml (field readOnlyPort)`), each with why: places with the same reason grouped.
    pub places: Vec<(Vec<String>, String)>,
    /// The command line sets it too, but the places can override that: the occurrences as written.
    pub overridden: Vec<String>,
}

impl Undecided {
    /// `A or B (not read: ...); C (permission denied ...)`.
    pub fn text(&self) -> String {
        self.places
            .iter()
            .map(|(places, why)| {
                let joined = match places.split_last() {
                    Some((last, [])) => last.clone(),
                    Some((last, rest)) => format!("{}, or {last}", rest.join(", ")),
                    None => String::new(),
                };
                format!("{joined} ({why})")
            })
            .collect::<Vec<_>>()
            .join("; or ")
    }
}

/// The value `name` (`key` for a feature gate) has for the process, or why it cannot be known.
pub fn resolve(p: &Process<'_, '_>, name: &str, key: Option<&str>, decl: &FlagDecl) -> Result<Setting, Undecided> {
    // Arguments read from a place join the command line, after it, as the component parses them: OpenShift's
    // arguments into the same flag set after argv, kubelite's file as the whole command line.
    // (Only then: resolving runs for every check of every rule, and most processes have no such place.)
    let mut argv_refs: Vec<&str> = Vec::new();
    for l in p.layers.iter().filter(|l| l.applied.source.sets(name, Some(decl))) {
        if let State::Args { tokens, .. } = &l.state {
            if argv_refs.is_empty() {
                argv_refs.extend_from_slice(p.args);
            }
            argv_refs.extend(tokens.iter().map(String::as_str));
        }
    }
    let combined;
    let (flags, args): (&Flags<'_>, &[&str]) = if argv_refs.is_empty() {
        (p.flags, p.args)
    } else {
        combined = Flags::parse(&argv_refs, p.component.flag_style, &p.component.known);
        (&combined, &argv_refs)
    };
    let on_line = settings::resolve(flags, name, decl, key);
    let given_on_line = matches!(on_line.origin, Origin::CommandLine(_));
    let true_on_line =
        given_on_line && matches!(&on_line.value, Some(Value::Scalar(v)) if settings::go_bool(v) == Some(true));

    // A place that can set this but cannot be read decides it, unless the command line overrides that place.
    // The environment first: it is read before any file it names.
    let mut relevant: Vec<&Layer<'_>> = p.layers.iter().filter(|l| l.applied.source.sets(name, Some(decl))).collect();
    relevant.sort_by_key(|l| l.applied.source.kind != SourceKind::Environment);
    let mut places: Vec<(Vec<String>, String)> = Vec::new();
    for l in relevant {
        let below = l.applied.source.precedence == Precedence::BelowFlags;
        let overridden = below && if decl.or_with_config { true_on_line } else { given_on_line };
        if overridden {
            continue;
        }
        if let State::NotRead(why) | State::Unusable(why) = &l.state {
            let place = place_text(&l.applied, name, decl, key);
            match places.iter_mut().find(|(_, w)| w == why) {
                Some((ps, _)) => ps.push(place),
                None => places.push((vec![place], why.clone())),
            }
        }
    }
    if !places.is_empty() {
        let overridden = match &on_line.origin {
            Origin::CommandLine(ix) => ix.iter().map(|i| flags.text(args, &flags.flags[*i])).collect(),
            _ => Vec::new(),
        };
        return Err(Undecided { places, overridden });
    }

    let field = |l: &Layer<'_>| -> Option<String> {
        let s = l.applied.source;
        let base = match (&s.sets, decl.config.as_deref(), s.fields.get(name)) {
            (_, _, Some(path)) => Some(path.clone()),
            (Sets::Config | Sets::Flags(_), Some(c), None) => Some(c.to_owned()),
            _ => None,
        }?;
        Some(match key {
            Some(k) => format!("{base}.{k}"),
            None => base,
        })
    };

    let mut setting = match decl.default.as_deref().filter(|_| key.is_none()) {
        Some(d) => {
            Setting { value: Some(default_value(decl.ty, d)), from: From::Default, texts: Vec::new(), ambiguous: None }
        }
        None => match key.and_then(|k| decl.gates.get(k)) {
            Some(g) => Setting {
                value: Some(Value::Scalar(g.default.to_string())),
                from: From::Default,
                texts: Vec::new(),
                ambiguous: None,
            },
            None => Setting { value: None, from: From::Absent, texts: Vec::new(), ambiguous: None },
        },
    };
    let apply_docs = |setting: &mut Setting, precedence: Precedence| -> Result<(), Undecided> {
        for l in p.layers.iter().filter(|l| l.applied.source.precedence == precedence) {
            if !l.applied.source.sets(name, Some(decl)) {
                continue;
            }
            match &l.state {
                State::Docs(docs) => {
                    let Some(path) = field(l) else { continue };
                    // The component defaults its configuration object first and then lays every document over it
                    // (kubelet: loadConfigFile, then mergeKubeletConfigurations for each drop-in, in
                    // cmd/kubelet/app/server.go), so a drop-in that leaves a field out keeps what came before.
                    if let (true, None, Some(d), Some((file, _))) =
                        (l.applied.source.defaults, key, &decl.config_default, docs.first())
                    {
                        *setting = Setting {
                            value: Some(default_value(decl.ty, d)),
                            from: From::FileDefault,
                            texts: vec![format!("{file} leaves {path} out, so its default {d:?} applies")],
                            ambiguous: None,
                        };
                    }
                    for (file, doc) in docs {
                        let found = from_doc(doc, &path, file, decl, key).map_err(|why| Undecided {
                            places: vec![(
                                vec![place_text(&l.applied, name, decl, key)],
                                format!("{why}: the component would refuse the file"),
                            )],
                            overridden: Vec::new(),
                        })?;
                        if let Some(s) = found {
                            *setting = s;
                        }
                    }
                }
                State::Env { path, vars } => {
                    let var = format!(
                        "{}{}",
                        l.applied.source.prefix.as_deref().unwrap_or_default(),
                        name.to_ascii_uppercase().replace('-', "_")
                    );
                    if let Some(v) = vars.get(&var) {
                        *setting = Setting {
                            value: Some(typed(decl.ty, v)),
                            from: From::Env,
                            texts: vec![format!("{var}={v} in {path}")],
                            ambiguous: None,
                        };
                    }
                }
                _ => {}
            }
        }
        Ok(())
    };
    apply_docs(&mut setting, Precedence::BelowFlags)?;
    let file_true = matches!(&setting.value, Some(Value::Scalar(v)) if settings::go_bool(v) == Some(true));
    match (&on_line.origin, key) {
        // OR with the file: a false on the command line does not turn off the file's true.
        (Origin::CommandLine(_), _) if decl.or_with_config && !true_on_line && file_true => {}
        (Origin::CommandLine(ix), _) => {
            setting = Setting {
                value: on_line.value.clone(),
                from: From::CommandLine,
                texts: ix.iter().map(|i| flags.text(args, &flags.flags[*i])).collect(),
                ambiguous: None,
            }
        }
        // AllAlpha/AllBeta on the command line reach a gate no file set explicitly.
        (Origin::Stage(ix), Some(_)) if !setting.from.is_given() => {
            setting = Setting {
                value: on_line.value.clone(),
                from: From::Stage,
                texts: ix.iter().map(|i| flags.text(args, &flags.flags[*i])).collect(),
                ambiguous: None,
            }
        }
        _ => {}
    }
    if !(decl.or_with_config && true_on_line) {
        apply_docs(&mut setting, Precedence::OverFlags)?;
    }
    // A command-line occurrence an unknown bare flag before it may have swallowed cannot be judged.
    if setting.from == From::CommandLine
        && let Origin::CommandLine(ix) = &on_line.origin
        && let Some(f) = ix.iter().map(|i| &flags.flags[*i]).find(|f| f.ambiguous)
    {
        setting.ambiguous = Some(flags.text(args, f));
    }
    Ok(setting)
}

fn default_value(ty: FlagType, d: &str) -> Value {
    match ty {
        FlagType::List | FlagType::Array => Value::List(crate::ps::flags::list(d).map(str::to_owned).collect()),
        _ => Value::Scalar(d.to_owned()),
    }
}

fn typed(ty: FlagType, v: &str) -> Value {
    match ty {
        FlagType::List => Value::List(crate::ps::flags::list(v).map(str::to_owned).collect()),
        FlagType::Array => Value::List(vec![v.to_owned()]),
        _ => Value::Scalar(v.to_owned()),
    }
}

/// A field of a document as a setting, if the document has it; an error if the field has the wrong shape for
/// the flag's type (the component's decoder would refuse the file).
fn from_doc(doc: &Doc, path: &str, file: &str, decl: &FlagDecl, key: Option<&str>) -> Result<Option<Setting>, String> {
    if let Some((dup, lines)) = doc.duplicate_along(path) {
        let lines: Vec<String> = lines.iter().map(usize::to_string).collect();
        return Err(format!(
            "{file}: {dup} is written {} times (lines {}): the kubelet and kube-proxy use the last, other components \
             refuse the file; write it once",
            lines.len(),
            lines.join(", ")
        ));
    }
    let Some(found) = doc.find(path) else { return Ok(None) };
    let line = found.line();
    let at = if line > 0 { format!("{file}:{line}") } else { file.to_owned() };
    let text = format!("{at}: {path} = {found}");
    let value = match (&found, decl.ty, key) {
        (Found::Scalar { text, kind, .. }, FlagType::String, None)
            if text.is_empty() && *kind == ScalarKind::String =>
        {
            // An empty string is "not set": the defaulting functions test for "" (v1alpha1 metricsBindAddress).
            return Ok(None);
        }
        (Found::Scalar { text, kind, .. }, FlagType::Bool, _) | (Found::Scalar { text, kind, .. }, _, Some(_)) => {
            if *kind != ScalarKind::Bool {
                return Err(format!("{text_at}: {path} is {text:?}, not a boolean", text_at = at));
            }
            Value::Scalar(text.clone())
        }
        (Found::Scalar { text, kind, .. }, FlagType::Int, None) => {
            if *kind != ScalarKind::Number {
                return Err(format!("{at}: {path} is {text:?}, not a number"));
            }
            Value::Scalar(text.clone())
        }
        (Found::Scalar { text, .. }, FlagType::String | FlagType::Duration, None) => Value::Scalar(text.clone()),
        (Found::List { items, .. }, FlagType::List | FlagType::Array, None) => Value::List(items.clone()),
        (Found::Other { .. }, _, _) => return Ok(None),
        (found, ty, _) => {
            return Err(format!("{at}: {path} is {found}, which a {} setting cannot be", ty.as_str()));
        }
    };
    Ok(Some(Setting { value: Some(value), from: From::File, texts: vec![text], ambiguous: None }))
}

/// A source for people, with the field or variable that would hold this setting:
/// `the KubeletConfiguration file /var/lib/kubelet/config.yaml (field authentication.anonymous.enabled)`.
pub fn place_text(a: &Applied<'_>, name: &str, decl: &FlagDecl, key: Option<&str>) -> String {
    let s = a.source;
    let mut text = match s.kind {
        SourceKind::Environment => format!(
            "{} ({}{})",
            s.what,
            s.prefix.as_deref().unwrap_or_default(),
            name.to_ascii_uppercase().replace('-', "_")
        ),
        SourceKind::ArgsFlag => format!("{} ({})", s.what, a.place),
        SourceKind::Dir => format!("{} ({} in {})", s.what, s.pattern.as_deref().unwrap_or("*"), a.place),
        SourceKind::File if a.via == Via::Environment => {
            format!("{}, if {} in its environment names one", s.what, a.place)
        }
        SourceKind::File => format!("{} {}", s.what, a.place),
    };
    if let (Sets::Config | Sets::Flags(_), Some(field)) = (&s.sets, &decl.config) {
        match key {
            Some(k) => text.push_str(&format!(" (field {field}.{k})")),
            None => text.push_str(&format!(" (field {field})")),
        }
    }
    if a.via == Via::Default {
        text.push_str(" if it exists");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelite_args_files_read_as_kubelite_does() {
        let file =
            b"# comment\n--anonymous-auth=false\n  --etcd-servers=\"unix://${SNAP_DATA}/kine.sock\"  \n\n--a b\n";
        assert_eq!(
            args_file(file),
            ["--anonymous-auth=false", "--etcd-servers=unix://${SNAP_DATA}/kine.sock", "--a", "b"]
        );
    }

    #[test]
    fn globs() {
        assert!(glob("*.conf", "00-rke2-defaults.conf"));
        assert!(!glob("*.conf", "README"));
        assert!(!glob("*.conf", ".conf.bak"));
        assert!(glob("*", "x"));
    }
}
