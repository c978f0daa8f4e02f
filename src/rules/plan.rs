//! Which paths a host's processes name, so the transport can read them: the first half of judging a host
//! with its files.
//!
//! Owns: deciding, from a process table and what has been read so far, the next [`Request`]s: the config
//! files, drop-in directories and environments the running components' sources name (and, inside a listed
//! directory, its drop-ins), the files file rules check, `/etc/passwd` and `/etc/group` for owner names.
//! Called until it asks for nothing new; each call's requests are one pipelined batch.
//! Must not touch: SSH. It never asks for a private key's or a kubeconfig's contents: file rules only stat.

use std::collections::BTreeSet;

use super::filecheck;
use super::judge;
use super::layers::glob;
use super::pack::RuleSet;
use super::settings::{SourceKind, Via};
use super::test::View;
use crate::files::{Entry, FileSet, Request, Want};
use crate::ps::ProcessTable;

/// The requests a host's files still need, given what `files` already holds; empty when nothing more is needed.
pub fn plan(set: &RuleSet, detector: &super::Detector, table: &ProcessTable, files: &FileSet) -> Vec<Request> {
    let found = detector.find(table, &set.embeddings);
    let procs = judge::Unloaded::all(set, &found, false);
    plan_parsed(set, &judge::Parsed::load_all(&procs, files), source_requests(&procs, files), files)
}

/// What the processes' settings sources need: their files, drop-in directories (and the drop-ins listed) and
/// environments.
pub(crate) fn source_requests(procs: &[judge::Unloaded<'_>], files: &FileSet) -> BTreeSet<Request> {
    let mut wanted: BTreeSet<Request> = BTreeSet::new();
    for p in procs {
        let f = p.found;
        let viewer = f.viewer();
        let env_path = format!("/proc/{}/environ", f.process.pid);
        for s in p.sources {
            let Some(a) = s.applied(&p.source_flags) else { continue };
            match s.kind {
                SourceKind::ArgsFlag => {}
                SourceKind::Environment => {
                    wanted.insert(Request::read(&env_path));
                }
                SourceKind::File => match a.via {
                    Via::Environment => {
                        // The file an environment variable names: known once the environment is read.
                        let var = s.env.as_deref().unwrap_or_default();
                        if let Some(path) = env_var(files, &env_path, var) {
                            wanted.extend(viewer.requests(path, Want::Read));
                        } else if files.get(&env_path).is_none() {
                            wanted.insert(Request::read(&env_path));
                        }
                    }
                    _ => wanted.extend(viewer.requests(&a.place, Want::Read)),
                },
                SourceKind::Dir => {
                    let pattern = s.pattern.as_deref().unwrap_or("*");
                    let named = a.place.trim_end_matches('/');
                    let located = viewer.locate(files, named);
                    match located.entry {
                        // Listed where the process sees it: its drop-ins are there.
                        Some(Entry::Found { .. }) => list_tree(&located.at, pattern, files, 0, &mut wanted),
                        Some(_) => {}
                        None => wanted.extend(viewer.requests(named, Want::List)),
                    }
                }
            }
        }
    }
    // The files file rules check, for the components that run here; with the host's account files for the
    // owners' names.
    wanted
}

/// The rest of [`plan`], from the processes' sources loaded from `files` (which judging the host, once
/// nothing more is asked, reuses): `wanted` holds what the sources asked for.
pub(crate) fn plan_parsed(
    set: &RuleSet,
    parsed: &[judge::Parsed<'_>],
    mut wanted: BTreeSet<Request>,
    files: &FileSet,
) -> Vec<Request> {
    let others = |component: &str, flag: &str| judge::other_setting(set, parsed, component, flag);
    let mut stats = Vec::new();
    // Rules share targets (a file's mode and its owner) and settings: each (target or setting, process) once.
    // Planning runs every round of every host; asking per rule was a fifth of a scan's CPU (perf).
    let (mut targets_done, mut fields_done) = (BTreeSet::new(), BTreeSet::new());
    let mut listed = std::collections::HashMap::new();
    for rule in &set.rules {
        let checks = rule.test.file_checks();
        let fields: Vec<_> = rule.test.checks().into_iter().filter(|c| c.field.is_some()).collect();
        if checks.is_empty() && fields.is_empty() {
            continue;
        }
        for (i, p) in parsed.iter().enumerate().filter(|(_, p)| p.found().component == rule.component) {
            let fields: Vec<_> = fields.iter().filter(|c| fields_done.insert((c.name(), i))).collect();
            let checks: Vec<_> = checks.iter().filter(|c| targets_done.insert((c.target, i))).collect();
            if checks.is_empty() && fields.is_empty() {
                continue;
            }
            let view = View {
                process: p.process(&set.components[rule.component]),
                embedded_in: match p.found().kind {
                    super::detect::Kind::Embedded { embedding, .. } => Some(set.embeddings[embedding].title.as_str()),
                    super::detect::Kind::Direct { .. } => None,
                },
                files,
                targets: &set.targets,
                others: &others,
                viewer: p.found().viewer(),
            };
            // The document a field check reads, where the process sees it.
            for c in &fields {
                let Some(decl) = view.process.component.flags.get(c.name()) else { continue };
                if let Ok(s) = super::layers::resolve(&view.process, c.name(), None, decl)
                    && s.from.is_given()
                    && let Some(path) = s.value.map(|v| v.text()).filter(|p| !p.is_empty())
                {
                    wanted.extend(view.viewer.requests(&path, Want::Read));
                }
            }
            if checks.is_empty() {
                continue;
            }
            for c in &checks {
                filecheck::requests(&set.targets[c.target], &view, files, &others, &mut stats, &mut listed);
            }
            wanted.insert(Request::read("/etc/passwd"));
            wanted.insert(Request::read("/etc/group"));
        }
    }
    // The certificates cluster rules judge, whatever rules this host's processes have.
    for target in set.targets.iter().filter(|t| t.certificate.is_some()) {
        judge::each_view(set, parsed, files, target.component, |view| {
            filecheck::requests(target, view, files, view.others, &mut stats, &mut listed);
        });
    }
    wanted.extend(stats);
    // One request a path: the transport answers each separately, and a stat and a read of one unreadable file
    // would answer twice. A read (or a listing) answers a stat too.
    let mut by_path: std::collections::BTreeMap<String, Want> = std::collections::BTreeMap::new();
    for r in wanted {
        let want = by_path.entry(r.path).or_insert(r.want);
        *want = match (*want, r.want) {
            // Never more than the leading certificates of a file that holds a key.
            (Want::Certs, _) | (_, Want::Certs) => Want::Certs,
            (Want::Read, _) | (_, Want::Read) => Want::Read,
            (Want::List, _) | (_, Want::List) => Want::List,
            _ => Want::Stat,
        };
    }
    by_path.into_iter().map(|(path, want)| Request { path, want }).filter(|r| !files.answers(r)).collect()
}

/// A drop-in directory: list it, read what matches, stat the rest to find subdirectories, list those.
fn list_tree(dir: &str, pattern: &str, files: &FileSet, depth: usize, wanted: &mut BTreeSet<Request>) {
    const MAX_DEPTH: usize = 4;
    wanted.insert(Request::list(dir));
    let Some(Entry::Found { names: Some(names), .. }) = files.get(dir) else { return };
    for name in names {
        let path = format!("{dir}/{name}");
        match files.get(&path) {
            Some(Entry::Found { names: Some(_), .. }) | Some(Entry::Found { .. }) if is_dir(files, &path) => {
                if depth < MAX_DEPTH {
                    list_tree(&path, pattern, files, depth + 1, wanted);
                }
            }
            _ if glob(pattern, name) => {
                wanted.insert(Request::read(&path));
            }
            _ => {
                wanted.insert(Request::stat(&path));
            }
        }
    }
}

fn is_dir(files: &FileSet, path: &str) -> bool {
    files.get(path).and_then(Entry::meta).is_some_and(|m| m.kind == crate::files::Kind::Dir)
}

/// The value of `var` in an environment file already read.
fn env_var<'f>(files: &'f FileSet, path: &str, var: &str) -> Option<&'f str> {
    let content = files.get(path)?.content()?;
    content
        .bytes
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
        .find(|(k, v)| *k == var && !v.is_empty())
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Want;
    use crate::rules::Engine;

    fn table(name: &str) -> ProcessTable {
        let path = format!("{}/src/captures/{name}", env!("CARGO_MANIFEST_DIR"));
        crate::ps::parse(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn a_kubeadm_node_asks_for_the_files_its_processes_name() {
        let engine = Engine::new(RuleSet::embedded().unwrap());
        let t = table("kubeadm-default.txt");
        let first = engine.plan(&t, &FileSet::default());
        let reads: Vec<&str> = first.iter().filter(|r| r.want == Want::Read).map(|r| r.path.as_str()).collect();
        for path in ["/var/lib/kubelet/config.yaml", "/var/lib/kube-proxy/config.conf", "/proc/1331/environ"] {
            assert!(reads.contains(&path), "{path} in {first:?}");
        }
        // Nothing is asked twice, and once answered a path is not asked again.
        let mut files = FileSet::default();
        for r in &first {
            files.insert(r.path.clone(), Entry::Problem(crate::files::Problem::Missing));
        }
        assert!(engine.plan(&t, &files).is_empty());
    }

    #[test]
    fn a_drop_in_directory_is_listed_then_read() {
        use crate::files::{Kind as FileKind, Meta};
        let engine = Engine::new(RuleSet::embedded().unwrap());
        let t = crate::ps::parse(
            b"UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init\n\
              root 9 1 0 10:00 ? 00:00:01 kubelet --config-dir=/etc/k.d\n",
        )
        .unwrap();
        // The drop-in directory's part of each batch (the file rules ask for their own paths beside it).
        let under = |rs: Vec<Request>| rs.into_iter().filter(|r| r.path.starts_with("/etc/k.d")).collect::<Vec<_>>();
        let first = under(engine.plan(&t, &FileSet::default()));
        assert_eq!(first, [Request::list("/etc/k.d")]);
        let mut files = FileSet::default();
        let dir = Meta { kind: FileKind::Dir, mode: 0o755, uid: 0, gid: 0, size: 0 };
        let names = ["b.conf", "a.conf", "sub", "notes.txt"].map(String::from).to_vec();
        files.insert("/etc/k.d".into(), Entry::Found { meta: dir, content: None, names: Some(names) });
        let second = under(engine.plan(&t, &files));
        assert_eq!(
            second,
            [
                Request::read("/etc/k.d/a.conf"),
                Request::read("/etc/k.d/b.conf"),
                Request::stat("/etc/k.d/notes.txt"),
                Request::stat("/etc/k.d/sub"),
            ]
        );
        files.insert("/etc/k.d/sub".into(), Entry::Found { meta: dir, content: None, names: None });
        assert!(engine.plan(&t, &files).contains(&Request::list("/etc/k.d/sub")), "a subdirectory is listed");
    }
}
