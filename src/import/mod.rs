//! Inventory import: the nodes operators already list elsewhere, written as a fleetaudit inventory.
//!
//! Owns: reading an Ansible inventory ([`ansible`]: INI or YAML) or `kubectl get nodes -o json` output
//! ([`kubectl`]) into [`Imported`] hosts, and writing them as a commented inventory ([`render`]) that
//! `inventory::parse` accepts. Whatever the source says that fleetaudit cannot use (a variable it has no key
//! for, a connection that is not SSH, a name that cannot be a host name) becomes a [`Note`] naming its place in
//! the source: it is printed and written into the inventory as a comment, never dropped silently.
//! Must not touch: the network, SSH, the database. The source is untrusted input: its size is capped
//! ([`MAX_SOURCE`]), and YAML's nesting and aliases are limited (`ansible`).

pub mod ansible;
pub mod kubectl;

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::model::Role;

/// Largest source read: an Ansible inventory of 100,000 hosts is ~10 MB, `kubectl get nodes -o json` of
/// 5,000 nodes ~40 MB.
pub const MAX_SOURCE: u64 = 64 << 20;

/// A host as the source describes it, in fleetaudit's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedHost {
    pub name: String,
    pub cluster: Option<String>,
    pub address: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub identity_file: Option<String>,
    /// Jump hosts, first hop first, as `jump` takes them.
    pub jump: Vec<String>,
    pub roles: Vec<Role>,
    /// Where the source defines it: `hosts.ini:12`.
    pub origin: String,
}

/// Something the source says that the inventory cannot carry, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `file:line` (or `file: items[3]` where a line is not known).
    pub at: String,
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// What an import found.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    /// `ansible inventory hosts.ini`, for the header.
    pub source: String,
    /// In source order.
    pub hosts: Vec<ImportedHost>,
    pub notes: Vec<Note>,
}

/// Keys for `[defaults]`, from the command line: what the source does not say.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub jump: Option<String>,
}

#[derive(Debug, Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}; check the path")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is larger than {} MiB: not an inventory fleetaudit imports", MAX_SOURCE >> 20)]
    TooLarge { path: PathBuf },
    #[error("{at}: {message}")]
    Syntax { at: String, message: String },
    #[error("{source_name}: no host could be imported{why}; nothing was written")]
    Empty { source_name: String, why: String },
    #[error("{0}")]
    Usage(String),
}

/// Reads a source file (or standard input for `-`) within [`MAX_SOURCE`].
pub fn read_source(path: &Path) -> Result<String, ImportError> {
    use std::io::Read as _;
    let fail = |source| ImportError::Read { path: path.to_owned(), source };
    let reader: Box<dyn std::io::Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(fail)?)
    };
    let mut text = String::new();
    reader.take(MAX_SOURCE + 1).read_to_string(&mut text).map_err(fail)?;
    if text.len() as u64 > MAX_SOURCE {
        return Err(ImportError::TooLarge { path: path.to_owned() });
    }
    Ok(text)
}

/// A name fleetaudit accepts for a host or cluster, made from the source's: characters other than
/// `[A-Za-z0-9._-]` become `-`. `None` when nothing usable is left.
pub(crate) fn clean_name(name: &str) -> Option<String> {
    let cleaned: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
    let cleaned = cleaned.trim_matches('-').chars().take(253).collect::<String>();
    crate::inventory::check_name(&cleaned, "host").is_ok().then_some(cleaned)
}

/// Keeps host names unique (ignoring case, as the inventory requires): a second `node-1` becomes `node-1-2`,
/// with a note.
fn dedup_names(imported: &mut Imported) {
    let mut seen = std::collections::HashSet::new();
    for h in &mut imported.hosts {
        if seen.insert(h.name.to_ascii_lowercase()) {
            continue;
        }
        let mut n = 2;
        while !seen.insert(format!("{}-{n}", h.name).to_ascii_lowercase()) {
            n += 1;
        }
        imported.notes.push(Note {
            at: h.origin.clone(),
            message: format!(
                "a second host named {:?} (after cleaning): imported as {:?}",
                h.name,
                format!("{}-{n}", h.name)
            ),
        });
        h.name = format!("{}-{n}", h.name);
    }
}

/// A TOML string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn roles_value(roles: &[Role]) -> String {
    format!("[{}]", roles.iter().map(|r| quote(r.as_str())).collect::<Vec<_>>().join(", "))
}

fn jump_value(jump: &[String]) -> String {
    match jump {
        [one] => quote(one),
        many => format!("[{}]", many.iter().map(|j| quote(j)).collect::<Vec<_>>().join(", ")),
    }
}

/// The keys a host may inherit from its cluster, rendered; a key every host of a cluster has alike is written
/// once, on the cluster.
fn host_keys(h: &ImportedHost) -> [(&'static str, Option<String>); 5] {
    [
        ("user", h.user.as_deref().map(quote)),
        ("port", h.port.map(|p| p.to_string())),
        ("identity_file", h.identity_file.as_deref().map(quote)),
        ("jump", (!h.jump.is_empty()).then(|| jump_value(&h.jump))),
        ("roles", (!h.roles.is_empty()).then(|| roles_value(&h.roles))),
    ]
}

/// The inventory text for `imported`: a header naming the source and every note, `[defaults]` from the command
/// line, a `[[clusters]]` table per cluster with the keys all its hosts share, then every host with where the
/// source defines it.
pub fn render(imported: &Imported, defaults: &Defaults, command: &str) -> String {
    let mut out = format!(
        "# fleetaudit inventory imported from {} by `{command}`.\n# Each host names the place in the source it \
         comes from. Check the roles: they decide which components a host must run.\n",
        imported.source
    );
    if imported.notes.is_empty() {
        out.push_str("# Everything in the source was imported.\n");
    } else {
        let _ = writeln!(out, "#\n# Not imported ({}; also printed when importing):", imported.notes.len());
        for n in &imported.notes {
            for (i, line) in n.to_string().lines().enumerate() {
                let _ = writeln!(out, "#{} {line}", if i == 0 { "" } else { "  " });
            }
        }
    }
    out.push_str("\n[defaults]\n");
    let mut any = false;
    let mut put = |out: &mut String, k: &str, v: Option<String>| {
        if let Some(v) = v {
            let _ = writeln!(out, "{k} = {v}");
            any = true;
        }
    };
    put(&mut out, "user", defaults.user.as_deref().map(quote));
    put(&mut out, "identity_file", defaults.identity_file.as_ref().map(|p| quote(&p.display().to_string())));
    put(&mut out, "known_hosts", defaults.known_hosts.as_ref().map(|p| quote(&p.display().to_string())));
    put(&mut out, "jump", defaults.jump.as_deref().map(quote));
    if !any {
        out.push_str("# user, identity_file, known_hosts, jump: see inventory.example.toml\n");
    }

    let mut clusters: Vec<&str> = Vec::new();
    for h in &imported.hosts {
        if let Some(c) = h.cluster.as_deref()
            && !clusters.contains(&c)
        {
            clusters.push(c);
        }
    }
    // Per cluster, the keys every host of it has with the same value.
    let mut shared: Vec<(&str, Vec<(&'static str, String)>)> = Vec::new();
    for c in &clusters {
        let members: Vec<&ImportedHost> = imported.hosts.iter().filter(|h| h.cluster.as_deref() == Some(*c)).collect();
        let first = host_keys(members[0]);
        let common: Vec<(&'static str, String)> = first
            .into_iter()
            .enumerate()
            .filter_map(|(i, (k, v))| {
                let v = v?;
                members.iter().all(|m| host_keys(m)[i].1.as_ref() == Some(&v)).then_some((k, v))
            })
            .collect();
        let _ = write!(out, "\n[[clusters]]\nname = {}\n", quote(c));
        for (k, v) in &common {
            let _ = writeln!(out, "{k} = {v}");
        }
        shared.push((c, common));
    }
    for h in &imported.hosts {
        let _ = write!(out, "\n[[hosts]]  # {}\nname = {}\n", h.origin, quote(&h.name));
        if let Some(c) = &h.cluster {
            let _ = writeln!(out, "cluster = {}", quote(c));
        }
        let _ = writeln!(out, "address = {}", quote(&h.address));
        let common = shared.iter().find(|(c, _)| Some(*c) == h.cluster.as_deref()).map(|(_, k)| k.as_slice());
        for (k, v) in host_keys(h) {
            if let Some(v) = v
                && !common.unwrap_or_default().iter().any(|(ck, _)| *ck == k)
            {
                let _ = writeln!(out, "{k} = {v}");
            }
        }
    }
    out
}

/// The notes of an import, and a check that there is something to write.
fn finish(mut imported: Imported, source_name: &str) -> Result<Imported, ImportError> {
    if imported.hosts.is_empty() {
        let why = if imported.notes.is_empty() {
            String::new()
        } else {
            format!(":\n  {}", imported.notes.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))
        };
        return Err(ImportError::Empty { source_name: source_name.to_owned(), why });
    }
    dedup_names(&mut imported);
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, cluster: Option<&str>, user: Option<&str>, roles: &[Role]) -> ImportedHost {
        ImportedHost {
            name: name.into(),
            cluster: cluster.map(str::to_owned),
            address: "192.0.2.1".into(),
            port: None,
            user: user.map(str::to_owned),
            identity_file: None,
            jump: vec![],
            roles: roles.to_vec(),
            origin: format!("src:{}", name.len()),
        }
    }

    #[test]
    fn shared_keys_go_on_the_cluster_and_the_result_parses() {
        let imported = Imported {
            source: "test".into(),
            hosts: vec![
                host("a", Some("prod"), Some("ops"), &[Role::ControlPlane]),
                host("b", Some("prod"), Some("ops"), &[Role::Worker]),
                ImportedHost { jump: vec!["j1".into(), "j2:2222".into()], ..host("c", None, None, &[]) },
                host("a", Some("lab \"x\""), None, &[]),
            ],
            notes: vec![Note { at: "src:3".into(), message: "ansible_become: not used".into() }],
        };
        let mut imported = finish(imported, "test").unwrap();
        assert_eq!(imported.hosts[3].name, "a-2");
        assert!(imported.notes[1].message.contains("imported as \"a-2\""));
        imported.hosts[3].cluster = Some("lab".into());
        let text = render(&imported, &Defaults { user: Some("audit".into()), ..Defaults::default() }, "cmd");
        assert!(text.contains("# src:3: ansible_become: not used\n"), "{text}");
        assert!(text.contains("[[clusters]]\nname = \"prod\"\nuser = \"ops\"\n"), "{text}");
        let inv = crate::inventory::parse(Path::new("/nonexistent/inventory.toml"), &text).unwrap();
        let a = inv.host("a").unwrap();
        assert_eq!(
            (a.user.as_str(), a.roles.as_slice(), a.cluster.as_deref()),
            ("ops", &[Role::ControlPlane][..], Some("prod"))
        );
        let c = inv.host("c").unwrap();
        assert_eq!((c.user.as_str(), c.jump.len(), c.jump[1].port), ("audit", 2, 2222));
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("node 1.example"), Some("node-1.example".into()));
        assert_eq!(clean_name("[web]"), Some("web".into()));
        assert_eq!(clean_name("***"), None);
        assert_eq!(clean_name(".."), None);
    }
}
