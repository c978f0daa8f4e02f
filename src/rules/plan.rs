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
use crate::files::{Entry, FileSet, Request};
use crate::ps::ProcessTable;

/// The requests a host's files still need, given what `files` already holds; empty when nothing more is needed.
pub fn plan(set: &RuleSet, detector: &super::Detector, table: &ProcessTable, files: &FileSet) -> Vec<Request> {
    let mut wanted: BTreeSet<Request> = BTreeSet::new();
    let found = detector.find(table, &set.embeddings);
    for f in &found {
        let p = judge::Unloaded::of(set, f);
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
                            wanted.insert(Request::read(path));
                        } else if files.get(&env_path).is_none() {
                            wanted.insert(Request::read(&env_path));
                        }
                    }
                    _ => {
                        wanted.insert(Request::read(&a.place));
                    }
                },
                SourceKind::Dir => {
                    let pattern = s.pattern.as_deref().unwrap_or("*");
                    list_tree(a.place.trim_end_matches('/'), pattern, files, 0, &mut wanted);
                }
            }
        }
    }
    // The files file rules check, for the components that run here; with the host's account files for the
    // owners' names.
    let parsed: Vec<judge::Parsed<'_>> = found.iter().map(|f| judge::Parsed::new(set, f, files)).collect();
    let others = |component: &str, flag: &str| judge::other_setting(set, &parsed, component, flag);
    let mut stats = Vec::new();
    for rule in &set.rules {
        let checks = rule.test.file_checks();
        if checks.is_empty() {
            continue;
        }
        for p in parsed.iter().filter(|p| p.found.component == rule.component) {
            let view = View {
                process: p.process(&set.components[rule.component]),
                embedded_in: None,
                files,
                targets: &set.targets,
                others: &others,
            };
            for c in &checks {
                filecheck::requests(&set.targets[c.target], &view, files, &others, &mut stats);
            }
            wanted.insert(Request::read("/etc/passwd"));
            wanted.insert(Request::read("/etc/group"));
        }
    }
    wanted.extend(stats);
    wanted.into_iter().filter(|r| !files.answers(r)).collect()
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
        let first = engine.plan(&t, &FileSet::default());
        assert_eq!(first, [Request::list("/etc/k.d")]);
        let mut files = FileSet::default();
        let dir = Meta { kind: FileKind::Dir, mode: 0o755, uid: 0, gid: 0, size: 0 };
        let names = ["b.conf", "a.conf", "sub", "notes.txt"].map(String::from).to_vec();
        files.insert("/etc/k.d".into(), Entry::Found { meta: dir, content: None, names: Some(names) });
        let second = engine.plan(&t, &files);
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
