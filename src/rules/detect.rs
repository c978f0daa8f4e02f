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
                    Matcher::Program => {
                        found.push(Found { component: *index, process, kind: Kind::Direct { args_from: 1 } })
                    }
                    Matcher::Subcommands(subs) if arg1.is_some_and(|a| subs.iter().any(|s| s == a)) => {
                        found.push(Found { component: *index, process, kind: Kind::Direct { args_from: 2 } })
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
                                });
                            }
                        }
                    }
                    Matcher::Subcommands(_) => {}
                }
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
