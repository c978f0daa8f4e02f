//! Finding components in a process table by the program actually executed, never by substring: `grep
//! kube-apiserver`, `tail -F /var/log/kube-apiserver.log` and `/kube-apiserver-healthcheck` are not the API server.

use std::collections::HashMap;

use super::pack::{Component, Embedding};
use crate::ps::flags::{FlagStyle, Flags, Known};
use crate::ps::{Process, ProcessTable};

/// How a process runs a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The component's own binary (or a multi-call binary's subcommand): its flags start at argument `args_from`.
    Direct { args_from: usize },
    /// A program that runs the component inside itself (`k3s server`, `kubelite`): index into
    /// [`RuleSet::embeddings`](super::RuleSet) and into that embedding's `runs`.
    Embedded { embedding: usize, run: usize },
}

/// A process found to be a component.
#[derive(Debug, Clone)]
pub struct Found<'t> {
    pub component: usize,
    pub process: &'t Process,
    pub kind: Kind,
    /// The container runtime's shim the process runs under (`containerd-shim-runc-v2`, CRI-O's `conmon`), when
    /// one of its ancestors in the table is one: the paths it names are in its own mount namespace.
    pub container: Option<&'t str>,
}

impl Found<'_> {
    /// How the process sees the file system.
    pub fn viewer(&self) -> crate::files::mount::Viewer<'_> {
        crate::files::mount::Viewer { pid: self.process.pid, container: self.container }
    }
}

/// Programs that stay the parent of a container's first process: containerd's shims (Kubernetes with
/// containerd, Docker's `containerd-shim`), CRI-O's and Podman's `conmon`.
fn is_container_shim(program: &str) -> bool {
    program.starts_with("containerd-shim") || program == "docker-containerd-shim" || program == "conmon"
}

/// The container shim among a process's ancestors, following PPIDs (busybox prints none: no answer).
fn container_of<'t>(table: &'t ProcessTable, by_pid: &HashMap<u32, usize>, process: &Process) -> Option<&'t str> {
    let mut ppid = process.ppid?;
    // A bounded walk: a table can hold a PPID cycle (garbage, or PIDs reused between the lines `ps` read).
    for _ in 0..32 {
        let parent = &table.processes[*by_pid.get(&ppid)?];
        let arg0 = parent.argv().next()?;
        let program = arg0.rsplit('/').next().unwrap_or(arg0);
        if is_container_shim(program) {
            return Some(program);
        }
        ppid = parent.ppid.filter(|p| *p != ppid)?;
    }
    None
}

#[derive(Debug, Clone)]
enum Matcher {
    Program,
    Subcommands(Vec<String>),
    Embedded(usize),
}

/// An index from program name to the components it can be, built once per rule set.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    by_program: HashMap<String, Vec<(usize, Matcher)>>,
}

impl Detector {
    pub fn new(components: &[Component], embeddings: &[Embedding]) -> Detector {
        let mut by_program: HashMap<String, Vec<(usize, Matcher)>> = HashMap::new();
        for (i, c) in components.iter().enumerate() {
            for p in &c.programs {
                by_program.entry(p.clone()).or_default().push((i, Matcher::Program));
            }
            for (p, subs) in &c.subcommands {
                by_program.entry(p.clone()).or_default().push((i, Matcher::Subcommands(subs.clone())));
            }
        }
        for (e, embedding) in embeddings.iter().enumerate() {
            by_program.entry(embedding.program.clone()).or_default().push((e, Matcher::Embedded(e)));
        }
        Detector { by_program }
    }

    /// Every (process, component) pair in the table, in table order.
    pub fn find<'t>(&self, table: &'t ProcessTable, embeddings: &[Embedding]) -> Vec<Found<'t>> {
        let mut found = Vec::new();
        for process in &table.processes {
            let mut argv = process.argv();
            let Some(arg0) = argv.next() else { continue };
            // `argv[0]` may be a path; only its last part names the program. procps shows a login shell as
            // `-bash`, which is no component either way.
            let program = arg0.rsplit('/').next().unwrap_or(arg0);
            let Some(candidates) = self.by_program.get(program) else { continue };
            let arg1 = argv.next();
            for (index, matcher) in candidates {
                match matcher {
                    Matcher::Program => found.push(Found {
                        component: *index,
                        process,
                        kind: Kind::Direct { args_from: 1 },
                        container: None,
                    }),
                    Matcher::Subcommands(subs) if arg1.is_some_and(|a| subs.iter().any(|s| s == a)) => {
                        found.push(Found {
                            component: *index,
                            process,
                            kind: Kind::Direct { args_from: 2 },
                            container: None,
                        })
                    }
                    Matcher::Embedded(e) => {
                        let embedding = &embeddings[*e];
                        let args_from = match embedding.subcommands.is_empty() {
                            true => 1,
                            false if arg1.is_some_and(|a| embedding.subcommands.iter().any(|s| s == a)) => 2,
                            false => continue,
                        };
                        let args: Vec<&str> = process.argv().skip(args_from).collect();
                        let flags = Flags::parse(&args, FlagStyle::Pflag, &Known::default());
                        for (run, embedded) in embedding.runs.iter().enumerate() {
                            let absent = embedded.absent_if.as_ref().is_some_and(|(flag, value)| {
                                flags.get(flag).is_some_and(|f| same_value(f.effective(), value))
                            });
                            if !absent {
                                found.push(Found {
                                    component: embedded.component,
                                    process,
                                    kind: Kind::Embedded { embedding: *e, run },
                                    container: None,
                                });
                            }
                        }
                    }
                    Matcher::Subcommands(_) => {}
                }
            }
        }
        if !found.is_empty() {
            let by_pid: HashMap<u32, usize> = table.processes.iter().enumerate().map(|(i, p)| (p.pid, i)).collect();
            for f in &mut found {
                f.container = container_of(table, &by_pid, f.process);
            }
        }
        found
    }
}

/// Two flag values alike, booleans as Go reads them (`--disable-apiserver=1` is true).
fn same_value(actual: &str, expected: &str) -> bool {
    match (super::settings::go_bool(actual), super::settings::go_bool(expected)) {
        (Some(a), Some(b)) => a == b,
        _ => actual == expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ps;
    use crate::rules::RuleSet;

    fn components_in(cmds: &[&str]) -> Vec<(String, Kind)> {
        let set = RuleSet::embedded().unwrap();
        let mut text = String::from("UID PID PPID C STIME TTY TIME CMD\n");
        for (i, c) in cmds.iter().enumerate() {
            text.push_str(&format!("root {} 1 0 10:00 ? 00:00:00 {c}\n", i + 2));
        }
        let table = ps::parse(text.as_bytes()).unwrap();
        Detector::new(&set.components, &set.embeddings)
            .find(&table, &set.embeddings)
            .into_iter()
            .map(|f| (set.components[f.component].id.clone(), f.kind))
            .collect()
    }

    #[test]
    fn finds_components_by_the_program_executed() {
        let direct = |n| Kind::Direct { args_from: n };
        assert_eq!(components_in(&["kube-apiserver --a=1"]), [("apiserver".into(), direct(1))]);
        assert_eq!(components_in(&["/usr/local/bin/kube-apiserver --a=1"]), [("apiserver".into(), direct(1))]);
        assert_eq!(components_in(&["hyperkube kube-apiserver --a=1"]), [("apiserver".into(), direct(2))]);
        assert_eq!(components_in(&["/hyperkube apiserver --a=1"]), [("apiserver".into(), direct(2))]);
        assert_eq!(components_in(&["/hyperkube controller-manager"]), [("controller-manager".into(), direct(2))]);
        assert_eq!(components_in(&["/usr/bin/kubelet --config=/x"]), [("kubelet".into(), direct(1))]);
        assert_eq!(components_in(&["etcd --name=a"]), [("etcd".into(), direct(1))]);
        assert_eq!(components_in(&["kube-scheduler"]), [("scheduler".into(), direct(1))]);
    }

    #[test]
    fn never_by_substring() {
        assert!(
            components_in(&[
                "grep kube-apiserver",
                "tail -F /var/log/kube-apiserver.log",
                "/kube-apiserver-healthcheck --port=8080",
                "/bin/sh -c exec /usr/local/bin/kube-apiserver --a=1",
                "/go-runner --log-file=/var/log/kube-apiserver.log --also-stdout /usr/local/bin/kube-apiserver",
                "etcdctl get /",
                "hyperkube kubectl get pods",
                "hyperkube",
                "[kube-apiserver]",
                "vim /etc/kubernetes/manifests/kube-apiserver.yaml",
                "containerd-shim-runc-v2 -namespace k8s.io -id kube-apiserver",
            ])
            .is_empty()
        );
    }

    #[test]
    fn a_process_under_a_container_shim_runs_in_a_container() {
        let set = RuleSet::embedded().unwrap();
        let text = "UID PID PPID C STIME TTY TIME CMD\n\
                    root 1 0 0 10:00 ? 00:00:00 /sbin/init\n\
                    root 10 1 0 10:00 ? 00:00:00 /usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id abc\n\
                    root 11 10 0 10:00 ? 00:00:00 /pause\n\
                    root 12 10 0 10:00 ? 00:00:00 /usr/local/bin/kube-proxy --config=/var/lib/kube-proxy/config.conf\n\
                    root 13 1 0 10:00 ? 00:00:00 /usr/bin/kubelet --config=/var/lib/kubelet/config.yaml\n\
                    root 20 21 0 10:00 ? 00:00:00 /usr/bin/kube-scheduler\n\
                    root 21 20 0 10:00 ? 00:00:00 /usr/bin/sleep 1\n";
        let table = ps::parse(text.as_bytes()).unwrap();
        let found = Detector::new(&set.components, &set.embeddings).find(&table, &set.embeddings);
        let by_pid = |pid| found.iter().find(|f| f.process.pid == pid).unwrap().container;
        assert_eq!(by_pid(12), Some("containerd-shim-runc-v2"));
        assert_eq!(by_pid(13), None);
        // A PPID cycle ends the walk.
        assert_eq!(by_pid(20), None);
    }

    #[test]
    fn k3s_embeds_components() {
        let found = components_in(&["/usr/local/bin/k3s server"]);
        let ids: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["apiserver", "controller-manager", "scheduler", "etcd", "kubelet", "kube-proxy"]);
        assert!(found.iter().all(|(_, k)| matches!(k, Kind::Embedded { .. })));
        let agent: Vec<String> = components_in(&["k3s agent"]).into_iter().map(|(id, _)| id).collect();
        assert_eq!(agent, ["kubelet", "kube-proxy"]);
        assert!(components_in(&["k3s kubectl get nodes", "k3s"]).is_empty());
        // A component k3s is told not to run is not there.
        let split: Vec<String> = components_in(&["k3s server --disable-apiserver --disable-etcd=true"])
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(split, ["controller-manager", "scheduler", "kubelet", "kube-proxy"]);
    }

    #[test]
    fn kubelite_runs_the_control_plane_unless_told_not_to() {
        let ids = |cmd| components_in(&[cmd]).into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        let line = "/snap/microk8s/2346/kubelite --scheduler-args-file=/var/snap/microk8s/2346/args/kube-scheduler \
                    --apiserver-args-file=/var/snap/microk8s/2346/args/kube-apiserver --start-control-plane=true";
        assert_eq!(ids(line), ["apiserver", "controller-manager", "scheduler", "kubelet", "kube-proxy"]);
        let worker = "/snap/microk8s/2346/kubelite --start-control-plane=false";
        assert_eq!(ids(worker), ["kubelet", "kube-proxy"]);
        // The args file named after a component is no component.
        assert!(ids("cat /var/snap/microk8s/current/args/kube-apiserver").is_empty());
    }
}
