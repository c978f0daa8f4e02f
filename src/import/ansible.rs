//! Ansible inventories, INI or YAML, read as `ansible-inventory` reads them (the parts that describe how to
//! reach a host): groups with hosts, `:vars`/`vars`, `:children`/`children` nesting, host ranges
//! (`node[01:20]`, `db-[a:c]`, `[1:9:2]`), and variable precedence `all` < parent group < child group (groups
//! of one depth in name order, as Ansible merges them) < the host's own.
//!
//! Mapped: `ansible_host`, `ansible_port`, `ansible_user`, `ansible_ssh_private_key_file` (and their
//! `ansible_ssh_*` forms), `ansible_ssh_common_args`/`ansible_ssh_extra_args` `-J a,b` and `-o ProxyJump=...`.
//! A host's cluster is its outermost group that is not a role group (`--cluster` overrides); its roles come
//! from role groups (kubespray's `kube_control_plane`, `kube_node`, `etcd`; `masters`, `workers`; k3s-ansible's
//! `server`, `agent`; more with `--role GROUP=ROLE`). Every other variable, a connection that is not SSH, and
//! anything else not mapped is a [`Note`] at its line.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::{ImportError, Imported, ImportedHost, Note};
use crate::files::yaml::{self, Data, Node, YamlErrorKind};
use crate::model::Role;

/// Deepest YAML nesting read: an Ansible inventory nests groups a handful deep; a file nested deeper than this
/// is not one (and would cost stack to walk).
const MAX_DEPTH: usize = 64;
/// Most YAML aliases read: inventories use anchors for shared vars at most a few hundred times; past this, a
/// file is refused before its aliases are expanded, as is one whose aliases would copy more than
/// [`ALIAS_NODES`] nodes.
const MAX_ALIASES: usize = 1_000;
const ALIAS_NODES: usize = 10_000;
/// The YAML limits of an inventory: as large as [`super::MAX_SOURCE`], a node per ~4 bytes at most.
const YAML_LIMITS: yaml::Limits = yaml::Limits {
    max_bytes: super::MAX_SOURCE as usize,
    max_depth: MAX_DEPTH,
    max_aliases: MAX_ALIASES,
    max_nodes: (super::MAX_SOURCE / 4) as usize,
    max_alias_nodes: ALIAS_NODES,
};
/// Most hosts one range line may expand to.
const MAX_RANGE: usize = 100_000;

/// INI (`[group]` sections) or YAML (`all:` with `hosts`/`children`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ini,
    Yaml,
}

impl Format {
    /// By extension (`.yml`, `.yaml`), else by content: YAML starts with `---` or a `name:` line.
    pub fn detect(path: &Path, text: &str) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yml" | "yaml") => return Format::Yaml,
            Some("ini" | "cfg") => return Format::Ini,
            _ => {}
        }
        let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
        match first {
            Some(l) if l.starts_with("---") || (l.ends_with(':') && !l.starts_with('[')) => Format::Yaml,
            _ => Format::Ini,
        }
    }
}

/// What `--cluster` and `--role` say.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Every host in this cluster, whatever its groups.
    pub cluster: Option<String>,
    /// Extra role groups: (group name, role), winning over the built-in names.
    pub roles: Vec<(String, Role)>,
}

/// Group names that say what a host runs, as common Kubernetes playbooks name them (compared lower-case,
/// with `-` read as `_`).
const ROLE_GROUPS: &[(&str, Role)] = &[
    ("kube_control_plane", Role::ControlPlane),
    ("kube_master", Role::ControlPlane),
    ("k8s_control_plane", Role::ControlPlane),
    ("control_plane", Role::ControlPlane),
    ("controlplane", Role::ControlPlane),
    ("masters", Role::ControlPlane),
    ("master", Role::ControlPlane),
    ("server", Role::ControlPlane),
    ("etcd", Role::Etcd),
    ("kube_node", Role::Worker),
    ("k8s_nodes", Role::Worker),
    ("nodes", Role::Worker),
    ("node", Role::Worker),
    ("workers", Role::Worker),
    ("worker", Role::Worker),
    ("agent", Role::Worker),
];

#[derive(Debug, Clone)]
struct Var {
    key: String,
    value: String,
    line: usize,
}

#[derive(Debug, Clone)]
struct HostEntry {
    name: String,
    line: usize,
    vars: Vec<Var>,
}

#[derive(Debug, Clone, Default)]
struct Group {
    name: String,
    hosts: Vec<HostEntry>,
    vars: Vec<Var>,
    children: Vec<String>,
}

/// Groups in the order the file first names them.
#[derive(Debug, Default)]
struct Parsed {
    groups: Vec<Group>,
    notes: Vec<Note>,
}

impl Parsed {
    fn group(&mut self, name: &str) -> &mut Group {
        let i = match self.groups.iter().position(|g| g.name == name) {
            Some(i) => i,
            None => {
                self.groups.push(Group { name: name.to_owned(), ..Group::default() });
                self.groups.len() - 1
            }
        };
        &mut self.groups[i]
    }
}

/// Imports the Ansible inventory `text` read from `path`.
pub fn import(path: &Path, text: &str, format: Format, options: &Options) -> Result<Imported, ImportError> {
    let file = path.display().to_string();
    let parsed = match format {
        Format::Ini => parse_ini(&file, text)?,
        Format::Yaml => parse_yaml(&file, text)?,
    };
    let what = match format {
        Format::Ini => "Ansible inventory (INI)",
        Format::Yaml => "Ansible inventory (YAML)",
    };
    let imported = resolve(&file, parsed, options);
    super::finish(Imported { source: format!("{what} {file}"), ..imported }, &file)
}

// ---- INI ---------------------------------------------------------------------------------------------------

fn parse_ini(file: &str, text: &str) -> Result<Parsed, ImportError> {
    let syntax = |line: usize, message: String| ImportError::Syntax { at: format!("{file}:{line}"), message };
    let mut p = Parsed::default();
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Hosts,
        Vars,
        Children,
    }
    let mut current = ("ungrouped".to_owned(), Kind::Hosts);
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(inner) = line.strip_prefix('[') {
            let inner = inner
                .split_once(']')
                .map(|(s, rest)| (s, rest.trim()))
                .filter(|(_, rest)| rest.is_empty() || rest.starts_with('#') || rest.starts_with(';'))
                .map(|(s, _)| s)
                .ok_or_else(|| {
                    syntax(
                        n,
                        format!("{line:?} is not a section header: write [group], [group:vars] or [group:children]"),
                    )
                })?;
            let (name, kind) = match inner.rsplit_once(':') {
                Some((name, "vars")) => (name, Kind::Vars),
                Some((name, "children")) => (name, Kind::Children),
                Some((_, other)) => {
                    return Err(syntax(
                        n,
                        format!("[{inner}]: unknown section kind {other:?}: use :vars or :children"),
                    ));
                }
                None => (inner, Kind::Hosts),
            };
            if name.is_empty() {
                return Err(syntax(n, "empty group name".into()));
            }
            p.group(name);
            current = (name.to_owned(), kind);
            continue;
        }
        match current.1 {
            Kind::Hosts => {
                let words = split_words(line).map_err(|m| syntax(n, m))?;
                let Some((pattern, rest)) = words.split_first() else { continue };
                let mut vars = Vec::new();
                for w in rest {
                    let (k, v) = w.split_once('=').ok_or_else(|| {
                        syntax(n, format!("{w:?} after host {pattern:?} is not key=value (quote values with spaces)"))
                    })?;
                    vars.push(Var { key: k.to_owned(), value: v.to_owned(), line: n });
                }
                for name in expand_range(pattern).map_err(|m| syntax(n, m))? {
                    p.group(&current.0).hosts.push(HostEntry { name, line: n, vars: vars.clone() });
                }
            }
            Kind::Vars => {
                let (k, v) = line
                    .split_once('=')
                    .ok_or_else(|| syntax(n, format!("{line:?} in [{}:vars] is not key=value", current.0)))?;
                let value = unquote(v.trim());
                p.group(&current.0).vars.push(Var { key: k.trim().to_owned(), value, line: n });
            }
            Kind::Children => {
                let words = split_words(line).map_err(|m| syntax(n, m))?;
                let [child] = words.as_slice() else {
                    return Err(syntax(n, format!("{line:?} in [{}:children]: one group name a line", current.0)));
                };
                p.group(child);
                let parent = current.0.clone();
                p.group(&parent).children.push(child.clone());
            }
        }
    }
    Ok(p)
}

/// Words as Python's `shlex.split(line, comments=True)` makes them (Ansible's INI host lines): whitespace
/// separated, `'...'` literal, `"..."` with `\` escapes, `#` starting a word starts a comment.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => break,
            _ => {}
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.extend(chars.next()),
                        Some(c) => word.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                },
                '\\' => word.extend(chars.next()),
                c => word.push(c),
            }
        }
        words.push(word);
    }
    Ok(words)
}

/// A `[group:vars]` value as Ansible evaluates a Python literal string: quotes removed.
fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_owned();
        }
    }
    v.to_owned()
}

/// `node[01:03].example` → node01.example, node02.example, node03.example; `[a:c]`, `[0:10:5]` strides.
fn expand_range(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else { return Ok(vec![pattern.to_owned()]) };
    let close = pattern[open..].find(']').map(|c| open + c).ok_or_else(|| format!("{pattern:?}: '[' without ']'"))?;
    let (head, spec, tail) = (&pattern[..open], &pattern[open + 1..close], &pattern[close + 1..]);
    let bad = || format!("{pattern:?}: a host range is [START:END] or [START:END:STEP], numbers or letters");
    let parts: Vec<&str> = spec.split(':').collect();
    let (start, end, step) = match parts.as_slice() {
        [s, e] => (*s, *e, 1usize),
        [s, e, st] => (*s, *e, st.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    let items: Vec<String> = if let (Ok(a), Ok(b)) = (start.parse::<u64>(), end.parse::<u64>()) {
        if a > b || (b - a) as usize / step >= MAX_RANGE {
            return Err(bad());
        }
        // A leading zero sets the width, as Ansible pads `[01:10]`.
        let width = if start.starts_with('0') { start.len() } else { 0 };
        (a..=b).step_by(step).map(|n| format!("{n:0width$}")).collect()
    } else if let ([a], [b]) = (start.as_bytes(), end.as_bytes())
        && a.is_ascii_alphabetic()
        && b.is_ascii_alphabetic()
        && a <= b
    {
        (*a..=*b).step_by(step).map(|c| (c as char).to_string()).collect()
    } else {
        return Err(bad());
    };
    let rest = expand_range(tail)?;
    if items.len().saturating_mul(rest.len()) > MAX_RANGE {
        return Err(format!("{pattern:?}: more than {MAX_RANGE} hosts"));
    }
    Ok(items.iter().flat_map(|i| rest.iter().map(move |r| format!("{head}{i}{r}"))).collect())
}

// ---- YAML --------------------------------------------------------------------------------------------------

/// The shared reader ([`crate::files::yaml`]) in this module's error terms: the limits say what an Ansible
/// inventory is not.
fn yaml_error(file: &str, e: yaml::YamlError) -> ImportError {
    let message = match e.kind {
        YamlErrorKind::TooDeep => format!("nested more than {MAX_DEPTH} deep: not an Ansible inventory"),
        YamlErrorKind::TooManyAliases => {
            format!("more than {MAX_ALIASES} aliases (*name): refused rather than expanded")
        }
        YamlErrorKind::Syntax if !e.message.starts_with("YAML") => format!("YAML: {}", e.message),
        _ => e.message,
    };
    ImportError::Syntax { at: format!("{file}:{}", e.line), message }
}

fn parse_yaml(file: &str, text: &str) -> Result<Parsed, ImportError> {
    let doc = yaml::parse(file, text, &YAML_LIMITS).map_err(|e| yaml_error(file, e))?;
    // Ansible's YAML loader refuses a key twice in one mapping, as saphyr's loader did here before.
    if let Some(d) = doc.duplicates().iter().find(|d| d.lines.len() - d.merged > 1) {
        return Err(ImportError::Syntax {
            at: format!("{file}:{}", d.lines.last().copied().unwrap_or(0)),
            message: format!("YAML: duplicated key in mapping ({})", d.path),
        });
    }
    let mut p = Parsed::default();
    let root = &doc.root;
    let note =
        |p: &mut Parsed, line: usize, message: String| p.notes.push(Note { at: format!("{file}:{line}"), message });
    if let Some(line) = doc.more {
        note(&mut p, line, "a second YAML document: only the first is an inventory".into());
    }
    let Data::Map(groups) = &root.data else {
        if !root.is_null() {
            return Err(ImportError::Syntax {
                at: format!("{file}:{}", root.line),
                message: "an Ansible YAML inventory is a mapping of groups (all: {hosts: ..., children: ...})".into(),
            });
        }
        return Ok(p);
    };
    for yaml::Entry { key: k, value: v, .. } in groups {
        let Some(name) = scalar(k) else {
            note(&mut p, k.line, "a group name that is not a string".into());
            continue;
        };
        yaml_group(file, &mut p, &name, v);
    }
    Ok(p)
}

/// A scalar's text as YAML 1.2's core schema reads it (`null` is empty, numbers in Rust's form); `None` for a
/// collection or a value its tag refuses.
fn scalar(n: &Node) -> Option<String> {
    match n.as_scalar()?.core().ok()? {
        yaml::Value::Null => Some(String::new()),
        v => Some(v.to_string()),
    }
}

fn yaml_vars(file: &str, p: &mut Parsed, node: &Node, owner: &str) -> Vec<Var> {
    let mut vars = Vec::new();
    match &node.data {
        Data::Map(m) => {
            for yaml::Entry { key: k, value: v, .. } in m {
                let (Some(key), line) = (scalar(k), k.line) else { continue };
                match scalar(v) {
                    Some(value) => vars.push(Var { key, value, line }),
                    None => p.notes.push(Note {
                        at: format!("{file}:{line}"),
                        message: format!("{key} ({owner}): a list or mapping, which no fleetaudit key takes"),
                    }),
                }
            }
        }
        _ if node.is_null() => {}
        _ => p.notes.push(Note {
            at: format!("{file}:{}", node.line),
            message: format!("vars of {owner} are not a mapping: not imported"),
        }),
    }
    vars
}

fn yaml_group(file: &str, p: &mut Parsed, name: &str, node: &Node) {
    p.group(name);
    let Data::Map(m) = &node.data else {
        if !node.is_null() {
            p.notes.push(Note {
                at: format!("{file}:{}", node.line),
                message: format!("group {name} is not a mapping of hosts, vars and children: not imported"),
            });
        }
        return;
    };
    for yaml::Entry { key: k, value: v, .. } in m {
        let key = scalar(k).unwrap_or_default();
        match key.as_str() {
            "hosts" => match &v.data {
                Data::Map(hosts) => {
                    for yaml::Entry { key: hk, value: hv, .. } in hosts {
                        let Some(pattern) = scalar(hk) else { continue };
                        let line = hk.line;
                        let vars = yaml_vars(file, p, hv, &format!("host {pattern}"));
                        match expand_range(&pattern) {
                            Ok(names) => {
                                for host in names {
                                    p.group(name).hosts.push(HostEntry { name: host, line, vars: vars.clone() });
                                }
                            }
                            Err(m) => p
                                .notes
                                .push(Note { at: format!("{file}:{line}"), message: format!("{m}: not imported") }),
                        }
                    }
                }
                _ if v.is_null() => {}
                _ => p.notes.push(Note {
                    at: format!("{file}:{}", v.line),
                    message: format!("hosts of group {name} are not a mapping (host: vars): not imported"),
                }),
            },
            "vars" => {
                let vars = yaml_vars(file, p, v, &format!("group {name}"));
                p.group(name).vars.extend(vars);
            }
            "children" => match &v.data {
                Data::Map(children) => {
                    for yaml::Entry { key: ck, value: cv, .. } in children {
                        let Some(child) = scalar(ck) else { continue };
                        p.group(name).children.push(child.clone());
                        yaml_group(file, p, &child, cv);
                    }
                }
                _ if v.is_null() => {}
                _ => p.notes.push(Note {
                    at: format!("{file}:{}", v.line),
                    message: format!("children of group {name} are not a mapping of groups: not imported"),
                }),
            },
            other => p.notes.push(Note {
                at: format!("{file}:{}", k.line),
                message: format!("{other:?} in group {name}: a group has only hosts, vars and children; not imported"),
            }),
        }
    }
}

// ---- From groups to hosts ----------------------------------------------------------------------------------

fn role_of(group: &str, options: &Options) -> Option<Role> {
    let norm = group.to_ascii_lowercase().replace('-', "_");
    if let Some((_, r)) = options.roles.iter().find(|(g, _)| g.to_ascii_lowercase().replace('-', "_") == norm) {
        return Some(*r);
    }
    ROLE_GROUPS.iter().find(|(g, _)| *g == norm).map(|(_, r)| *r)
}

fn resolve(file: &str, mut p: Parsed, options: &Options) -> Imported {
    let mut notes = std::mem::take(&mut p.notes);
    let at = |line: usize| format!("{file}:{line}");
    // Parents of each group; a group nobody lists as a child is a child of `all`.
    let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
    for g in &p.groups {
        for c in &g.children {
            parents.entry(c.as_str()).or_default().push(g.name.as_str());
        }
    }
    // Depth from `all`, breadth first (a loop just stops).
    let mut depth: HashMap<&str, usize> = HashMap::from([("all", 0)]);
    let mut frontier: Vec<&str> = vec!["all"];
    for g in &p.groups {
        if g.name != "all" && !parents.contains_key(g.name.as_str()) {
            depth.insert(&g.name, 1);
            frontier.push(&g.name);
        }
    }
    while let Some(g) = frontier.pop() {
        let d = depth[g];
        let Some(group) = p.groups.iter().find(|x| x.name == g) else { continue };
        for c in &group.children {
            if depth.get(c.as_str()).is_none_or(|&cd| cd > d + 1) && c != "all" {
                depth.insert(c, d + 1);
                frontier.push(c);
            }
        }
    }
    let ancestors = |g: &str| -> Vec<String> {
        let mut seen: Vec<String> = vec![g.to_owned()];
        let mut i = 0;
        while i < seen.len() {
            for parent in parents.get(seen[i].as_str()).into_iter().flatten() {
                if !seen.iter().any(|s| s == parent) {
                    seen.push((*parent).to_owned());
                }
            }
            i += 1;
        }
        if !seen.iter().any(|s| s == "all") {
            seen.push("all".into());
        }
        seen
    };

    // Hosts in order of first appearance, with the groups naming them.
    let mut order: Vec<String> = Vec::new();
    let mut entries: HashMap<String, Vec<(&str, &HostEntry)>> = HashMap::new();
    for g in &p.groups {
        for h in &g.hosts {
            if !entries.contains_key(&h.name) {
                order.push(h.name.clone());
            }
            entries.entry(h.name.clone()).or_default().push((&g.name, h));
        }
    }
    // Variables are reported once where they are written, however many hosts inherit them.
    let mut reported: BTreeSet<(usize, String)> = BTreeSet::new();
    let mut report = |notes: &mut Vec<Note>, line: usize, key: &str, message: String| {
        if reported.insert((line, key.to_owned())) {
            notes.push(Note { at: at(line), message });
        }
    };
    let mut hosts = Vec::new();
    'hosts: for name in order {
        let found = &entries[&name];
        let first_line = found.iter().map(|(_, h)| h.line).min().unwrap_or(0);
        let mut groups: Vec<String> = Vec::new();
        for (g, _) in found {
            for a in ancestors(g) {
                if !groups.contains(&a) {
                    groups.push(a);
                }
            }
        }
        let depth_of = |g: &str| depth.get(g).copied().unwrap_or(1);
        let mut by_precedence: Vec<&String> = groups.iter().collect();
        by_precedence.sort_by(|a, b| (depth_of(a), a.as_str()).cmp(&(depth_of(b), b.as_str())));
        let mut vars: Vec<(&Var, String)> = Vec::new();
        for g in by_precedence {
            if let Some(group) = p.groups.iter().find(|x| &x.name == g) {
                vars.extend(group.vars.iter().map(|v| (v, format!("group {g}"))));
            }
        }
        for (_, h) in found {
            vars.extend(h.vars.iter().map(|v| (v, format!("host {name}"))));
        }
        // Last definition wins; earlier ones of a mapped key are simply overridden.
        let mut last: Vec<(&Var, String)> = Vec::new();
        for (v, owner) in vars {
            last.retain(|(x, _)| x.key != v.key);
            last.push((v, owner));
        }
        let mut host = ImportedHost {
            name: String::new(),
            cluster: None,
            address: name.clone(),
            port: None,
            user: None,
            identity_file: None,
            jump: Vec::new(),
            roles: Vec::new(),
            origin: at(first_line),
        };
        for (v, owner) in &last {
            let skip = |notes: &mut Vec<Note>, why: String| {
                notes.push(Note { at: at(v.line), message: format!("host {name} not imported: {why}") });
            };
            match v.key.as_str() {
                "ansible_host" | "ansible_ssh_host" => host.address = v.value.clone(),
                "ansible_port" | "ansible_ssh_port" => match v.value.parse::<u16>() {
                    Ok(p) if p > 0 => host.port = Some(p),
                    _ => {
                        skip(&mut notes, format!("{}={} ({owner}) is not a port", v.key, v.value));
                        continue 'hosts;
                    }
                },
                "ansible_user" | "ansible_ssh_user" => match crate::inventory::check_user(&v.value) {
                    Ok(()) => host.user = Some(v.value.clone()),
                    Err(m) => {
                        skip(&mut notes, format!("{} ({owner}): {m}", v.key));
                        continue 'hosts;
                    }
                },
                "ansible_ssh_private_key_file" | "ansible_private_key_file" => {
                    // Ansible hands a relative path to `ssh -i`, so it is relative to where Ansible runs (here:
                    // where the import runs); the inventory would read it relative to its own directory.
                    let written = Path::new(&v.value);
                    host.identity_file = Some(match std::env::current_dir() {
                        Ok(cwd) if written.is_relative() && !v.value.starts_with('~') => {
                            cwd.join(written).display().to_string()
                        }
                        _ => v.value.clone(),
                    });
                }
                "ansible_ssh_common_args" | "ansible_ssh_extra_args" => {
                    let (jump, rest) = ssh_args(&v.value);
                    if let Some(j) = jump {
                        host.jump = j;
                    }
                    for r in rest {
                        report(&mut notes, v.line, &format!("{} {r}", v.key), format!("{} ({owner}): {r}", v.key));
                    }
                }
                "ansible_connection" if matches!(v.value.as_str(), "ssh" | "paramiko" | "smart") => {}
                "ansible_connection" => {
                    skip(
                        &mut notes,
                        format!("ansible_connection={} ({owner}): fleetaudit audits over SSH only", v.value),
                    );
                    continue 'hosts;
                }
                "ansible_password" | "ansible_ssh_pass" | "ansible_ssh_password" => report(
                    &mut notes,
                    v.line,
                    &v.key,
                    format!("{} ({owner}): fleetaudit logs in with keys, not passwords; set identity_file", v.key),
                ),
                other => report(
                    &mut notes,
                    v.line,
                    other,
                    format!("{other}={} ({owner}): not used by fleetaudit", truncate(&v.value)),
                ),
            }
        }
        let Some(clean) = super::clean_name(&name) else {
            notes.push(Note {
                at: at(first_line),
                message: format!("host {name:?}: no usable name left; not imported"),
            });
            continue;
        };
        if clean != name {
            notes.push(Note { at: at(first_line), message: format!("host {name:?} imported as {clean:?}") });
        }
        host.name = clean;
        if let Err(m) = crate::inventory::check_address(&host.address) {
            notes
                .push(Note { at: at(first_line), message: format!("host {name} not imported: {m}; set ansible_host") });
            continue;
        }
        for j in &host.jump {
            if let Err(m) = crate::inventory::Jump::parse(j) {
                notes.push(Note {
                    at: at(first_line),
                    message: format!("host {name}: jump host {m}; imported without it"),
                });
                host.jump.clear();
                break;
            }
        }
        let mut roles: Vec<Role> = groups.iter().filter_map(|g| role_of(g, options)).collect();
        roles.sort();
        roles.dedup();
        host.roles = roles;
        host.cluster = match &options.cluster {
            Some(c) => Some(c.clone()),
            None => {
                let mut candidates: Vec<&String> = groups
                    .iter()
                    .filter(|g| !matches!(g.as_str(), "all" | "ungrouped") && role_of(g, options).is_none())
                    .collect();
                // The outermost group; among equals, the first the file names.
                let index = |g: &str| p.groups.iter().position(|x| x.name == g).unwrap_or(usize::MAX);
                candidates.sort_by_key(|g| (depth_of(g), index(g)));
                if let [chosen, others @ ..] = candidates.as_slice() {
                    let outer: Vec<&&String> = others.iter().filter(|o| depth_of(o) == depth_of(chosen)).collect();
                    if !outer.is_empty() {
                        notes.push(Note {
                            at: at(first_line),
                            message: format!(
                                "host {name} is also in group(s) {}: a host belongs to one cluster, {chosen}",
                                outer.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                        });
                    }
                }
                candidates.first().and_then(|g| super::clean_name(g))
            }
        };
        hosts.push(host);
    }
    Imported { source: String::new(), hosts, notes }
}

fn truncate(v: &str) -> String {
    if v.chars().count() > 60 { format!("{}...", v.chars().take(60).collect::<String>()) } else { v.to_owned() }
}

/// The jump chain in ssh arguments (`-J a,b`, `-Ja`, `-o ProxyJump=a`, `-oProxyJump a`), and every other
/// argument, which fleetaudit does not use.
fn ssh_args(args: &str) -> (Option<Vec<String>>, Vec<String>) {
    let words = split_words(args).unwrap_or_else(|_| vec![args.to_owned()]);
    let (mut jump, mut rest) = (None, Vec::new());
    let chain =
        |v: &str| v.split(',').filter(|h| !h.is_empty()).map(|h| h.trim_start_matches("ssh://").to_owned()).collect();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w == "-J" {
            match it.next() {
                Some(v) => jump = Some(chain(v)),
                None => rest.push("-J without a value".into()),
            }
        } else if let Some(v) = w.strip_prefix("-J") {
            jump = Some(chain(v));
        } else if w == "-o" || w.starts_with("-o") {
            let opt = if w == "-o" { it.next().cloned().unwrap_or_default() } else { w[2..].to_owned() };
            let (k, v) = opt.split_once(['=', ' ']).map_or((opt.as_str(), ""), |(k, v)| (k.trim(), v.trim()));
            if k.eq_ignore_ascii_case("proxyjump") {
                jump = if v.eq_ignore_ascii_case("none") { Some(Vec::new()) } else { Some(chain(v)) };
            } else {
                rest.push(format!("-o {opt}: not used by fleetaudit"));
            }
        } else {
            rest.push(format!("{w}: not used by fleetaudit"));
        }
    }
    (jump, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ini(text: &str, options: &Options) -> Imported {
        import(Path::new("hosts.ini"), text, Format::Ini, options).unwrap()
    }

    fn notes(i: &Imported) -> Vec<String> {
        i.notes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn ini_groups_children_vars_ranges_and_precedence() {
        let text = "# kubespray-style\n\
                    bastion ansible_host=192.0.2.100 ansible_user=jump\n\
                    [kube_control_plane]\n\
                    cp[1:2] ansible_port=2222\n\
                    [etcd]\n\
                    cp1\n\
                    [kube_node]\n\
                    node[01:03].example.internal  ansible_user='ubuntu' # workers\n\
                    [k8s_cluster:children]\n\
                    kube_control_plane\n\
                    kube_node\n\
                    [k8s_cluster:vars]\n\
                    ansible_user = admin\n\
                    ansible_ssh_common_args='-o ProxyJump=jump@192.0.2.100 -o StrictHostKeyChecking=no'\n\
                    ansible_become=true\n\
                    [all:vars]\n\
                    ansible_ssh_private_key_file=~/.ssh/k8s\n\
                    ansible_python_interpreter=/usr/bin/python3\n\
                    [kube_control_plane:vars]\n\
                    ansible_user=cp-admin\n";
        let imp = ini(text, &Options::default());
        let names: Vec<&str> = imp.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["bastion", "cp1", "cp2", "node01.example.internal", "node02.example.internal", "node03.example.internal"]
        );
        let cp1 = &imp.hosts[1];
        assert_eq!(
            (cp1.address.as_str(), cp1.port, cp1.user.as_deref()),
            ("cp1", Some(2222), Some("cp-admin")),
            "the child group wins over its parent"
        );
        assert_eq!(cp1.roles, vec![Role::ControlPlane, Role::Etcd]);
        assert_eq!((cp1.cluster.as_deref(), cp1.origin.as_str()), (Some("k8s_cluster"), "hosts.ini:4"));
        assert_eq!(cp1.jump, vec!["jump@192.0.2.100".to_owned()]);
        assert_eq!(cp1.identity_file.as_deref(), Some("~/.ssh/k8s"));
        let n1 = &imp.hosts[3];
        assert_eq!((n1.user.as_deref(), n1.roles.as_slice()), (Some("ubuntu"), &[Role::Worker][..]), "host vars win");
        let b = &imp.hosts[0];
        assert_eq!((b.address.as_str(), b.cluster.as_deref(), b.jump.len()), ("192.0.2.100", None, 0));
        let n = notes(&imp);
        for want in [
            "hosts.ini:14: ansible_ssh_common_args (group k8s_cluster): -o StrictHostKeyChecking=no: not used by fleetaudit",
            "hosts.ini:15: ansible_become=true (group k8s_cluster): not used by fleetaudit",
            "hosts.ini:18: ansible_python_interpreter=/usr/bin/python3 (group all): not used by fleetaudit",
        ] {
            assert!(n.iter().any(|x| x == want), "{want} not in {n:#?}");
        }
        assert_eq!(n.iter().filter(|x| x.contains("ansible_become")).count(), 1, "once where written: {n:#?}");

        // --cluster and --role.
        let o = Options { cluster: Some("prod".into()), roles: vec![("kube_node".into(), Role::Etcd)] };
        let imp = ini(text, &o);
        assert!(imp.hosts.iter().all(|h| h.cluster.as_deref() == Some("prod")));
        assert_eq!(imp.hosts[3].roles, vec![Role::Etcd]);
    }

    #[test]
    fn what_cannot_be_mapped_is_noted_at_its_line() {
        let text = "[web]\nwin1 ansible_connection=winrm\nlocal ansible_connection=local\nok1 ansible_host=192.0.2.9\n\
                    bad ansible_host=10.0.0.300\nsecret ansible_host=192.0.2.8 ansible_password=hunter2\n\
                    weird_name! ansible_host=192.0.2.7\nport ansible_host=192.0.2.6 ansible_port=x\n";
        let imp = ini(text, &Options::default());
        let names: Vec<&str> = imp.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["ok1", "secret", "weird_name"]);
        let n = notes(&imp).join("\n");
        for want in [
            "hosts.ini:2: host win1 not imported: ansible_connection=winrm",
            "hosts.ini:3: host local not imported: ansible_connection=local",
            "hosts.ini:5: host bad not imported: \"10.0.0.300\" is not an IPv4/IPv6 address",
            "hosts.ini:6: ansible_password (host secret): fleetaudit logs in with keys",
            "hosts.ini:7: host \"weird_name!\" imported as \"weird_name\"",
            "hosts.ini:8: host port not imported: ansible_port=x (host port) is not a port",
        ] {
            assert!(n.contains(want), "{want}\nnot in:\n{n}");
        }
        assert!(!n.contains("hunter2"), "a password is never repeated: {n}");
        for (text, line, part) in [
            ("[web\nh\n", 1, "not a section header"),
            ("[web:foo]\n", 1, "unknown section kind"),
            ("[web]\nh x\n", 2, "is not key=value"),
            ("[web:vars]\nnovalue\n", 2, "is not key=value"),
            ("[web]\nh[1:x]\n", 2, "a host range is"),
            ("[web]\nh a='open\n", 2, "unterminated"),
            ("[web]\nh[1:999999]\n", 2, "a host range is"),
        ] {
            let e = import(Path::new("hosts.ini"), text, Format::Ini, &Options::default()).unwrap_err().to_string();
            assert!(e.starts_with(&format!("hosts.ini:{line}: ")) && e.contains(part), "{text:?}: {e}");
        }
        let e = import(Path::new("hosts.ini"), "[web]\nw ansible_connection=local\n", Format::Ini, &Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no host could be imported") && e.contains("ansible_connection=local"), "{e}");
    }

    #[test]
    fn yaml_inventories_with_nesting_anchors_and_limits() {
        let text = "---\nall:\n  vars:\n    ansible_user: audit\n    common: &common\n      - a\n  children:\n    prod:\n      \
                    vars:\n        ansible_ssh_common_args: -J ops@192.0.2.100:2222,192.0.2.101\n      children:\n        \
                    masters:\n          hosts:\n            cp-[a:b].prod.example.internal:\n              ansible_port: 2200\n        \
                    workers:\n          hosts:\n            w1:\n              ansible_host: 192.0.2.21\n            w2:\n    \
                    lab:\n      hosts:\n        lab1: {ansible_host: 192.0.2.31, ansible_connection: ssh}\n      oddity: 1\n";
        let imp = import(Path::new("hosts.yml"), text, Format::Yaml, &Options::default()).unwrap();
        let names: Vec<&str> = imp.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["cp-a.prod.example.internal", "cp-b.prod.example.internal", "w1", "w2", "lab1"]);
        let cp = &imp.hosts[0];
        assert_eq!((cp.port, cp.user.as_deref(), cp.cluster.as_deref()), (Some(2200), Some("audit"), Some("prod")));
        assert_eq!((cp.roles.as_slice(), cp.origin.as_str()), (&[Role::ControlPlane][..], "hosts.yml:14"));
        assert_eq!(cp.jump, vec!["ops@192.0.2.100:2222".to_owned(), "192.0.2.101".to_owned()]);
        assert_eq!((imp.hosts[2].address.as_str(), imp.hosts[4].cluster.as_deref()), ("192.0.2.21", Some("lab")));
        let n = notes(&imp).join("\n");
        assert!(n.contains("hosts.yml:5: common (group all): a list or mapping"), "{n}");
        assert!(n.contains("hosts.yml:24: \"oddity\" in group lab"), "{n}");

        let deep = format!("all:\n  vars:\n    x: {}1{}\n", "[".repeat(100), "]".repeat(100));
        let e = import(Path::new("h.yml"), &deep, Format::Yaml, &Options::default()).unwrap_err().to_string();
        assert!(e.starts_with("h.yml:3: nested more than 64"), "{e}");
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9 {
            laughs.push_str(&format!(
                "{}: &{} [{}]\n",
                (b'b' + i) as char,
                (b'b' + i) as char,
                vec![format!("*{}", (b'a' + i) as char); 10].join(", ")
            ));
        }
        let e = import(Path::new("h.yml"), &laughs, Format::Yaml, &Options::default()).unwrap_err().to_string();
        assert!(e.contains("alias"), "{e}");
        let e = import(Path::new("h.yml"), "all:\n  hosts: [a\n", Format::Yaml, &Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("h.yml:") && e.contains("YAML"), "{e}");
    }

    #[test]
    fn yaml_merge_keys_and_duplicate_keys() {
        // Ansible's YAML (PyYAML, YAML 1.1) merges `<<`; the shared reader applies it as go-yaml v2 does.
        let text = "all:\n  vars:\n    <<: &base {ansible_user: ops, ansible_port: 2222}\n  hosts:\n    \
                    h1: {<<: *base, ansible_port: 22}\n";
        let imp = import(Path::new("h.yml"), text, Format::Yaml, &Options::default()).unwrap();
        assert_eq!((imp.hosts[0].user.as_deref(), imp.hosts[0].port), (Some("ops"), Some(22)));
        let e = import(Path::new("h.yml"), "all:\n  hosts:\n    a:\n    a:\n", Format::Yaml, &Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("h.yml:4: YAML: duplicated key"), "{e}");
    }

    #[test]
    fn relative_key_files_are_relative_to_where_the_import_runs() {
        let imp = ini(
            "h1 ansible_ssh_private_key_file=keys/id\nh2 ansible_ssh_private_key_file=~/.ssh/id\n",
            &Options::default(),
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(imp.hosts[0].identity_file.as_deref(), Some(cwd.join("keys/id").to_str().unwrap()));
        assert_eq!(imp.hosts[1].identity_file.as_deref(), Some("~/.ssh/id"));
    }

    // The source may come from anywhere: whatever it holds, an import returns hosts or an error, never panics.
    proptest::proptest! {
        #[test]
        fn ini_never_panics(
            lines in proptest::collection::vec(
                ("(\\[[a-z_:]{0,12}\\]?|[a-z0-9\\[\\]:.-]{0,12})", "( [a-z_]{0,20}=['\"a-z0-9@,:. -]{0,20}){0,3}"),
                0..20,
            )
        ) {
            let text: String = lines.iter().map(|(a, b)| format!("{a}{b}\n")).collect();
            let _ = import(Path::new("h.ini"), &text, Format::Ini, &Options::default());
        }

        #[test]
        fn yaml_never_panics(text in "(?s)[a-z0-9:\\-\\[\\]{}&*!|>'\" \n]{0,300}") {
            let _ = import(Path::new("h.yml"), &text, Format::Yaml, &Options::default());
        }

        #[test]
        fn kubectl_never_panics(text in "(?s)[a-zA-Z0-9:{}\\[\\],\" \n./-]{0,300}") {
            let _ = crate::import::kubectl::import(Path::new("n.json"), &text, "c");
        }
    }

    #[test]
    fn formats_are_detected() {
        assert_eq!(Format::detect(Path::new("x.yml"), ""), Format::Yaml);
        assert_eq!(Format::detect(Path::new("hosts"), "# c\nall:\n  hosts:\n"), Format::Yaml);
        assert_eq!(Format::detect(Path::new("hosts"), "[web]\nh\n"), Format::Ini);
        assert_eq!(Format::detect(Path::new("hosts"), "h1\nh2\n"), Format::Ini);
    }

    #[test]
    fn ssh_arguments() {
        assert_eq!(ssh_args("-J a,b").0, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(ssh_args("-Jssh://a").0, Some(vec!["a".to_owned()]));
        assert_eq!(ssh_args("-oProxyJump=none").0, Some(vec![]));
        assert_eq!(ssh_args("-o 'ProxyJump u@h:2'").0, Some(vec!["u@h:2".to_owned()]));
        let (j, rest) = ssh_args("-o ProxyCommand=\"ssh -W %h:%p b\" -C");
        assert_eq!((j, rest.len()), (None, 2));
    }
}
