//! Table-driven verdicts on realistic `ps -ef` captures of the setups fleetaudit meets in the field.

use fleetaudit::model::{Role, Status};
use fleetaudit::ps;
use fleetaudit::rules::{Engine, RuleSet};

const REFERENCE: &str = "apiserver-kubelet-certificate-authority";
const ANONYMOUS: &str = "apiserver-anonymous-auth";
const PROFILING: &str = "apiserver-profiling";
const AUTHZ: &str = "apiserver-authz-not-always-allow";
const AUTHZ_NODE: &str = "apiserver-authz-node";
const ETCD_CLIENT_CERT: &str = "etcd-client-cert-auth";

use Status::{Error as E, Fail as F, NotApplicable as NA, Pass as P};

struct Case {
    capture: &'static str,
    roles: &'static [Role],
    /// (rule id, expected status, a fragment the reason must contain)
    expect: &'static [(&'static str, Status, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        capture: "kubeadm-default.txt",
        roles: &[Role::ControlPlane, Role::Etcd],
        expect: &[
            (REFERENCE, F, "--kubelet-certificate-authority is not set"),
            (ANONYMOUS, F, "default \"true\" applies"),
            (PROFILING, F, "default \"true\" applies"),
            (AUTHZ, P, "--authorization-mode=Node,RBAC"),
            (AUTHZ_NODE, P, "Node,RBAC"),
            // etcd ignores its command line when ETCD_CONFIG_FILE in its environment names a file.
            (ETCD_CLIENT_CERT, E, "ETCD_CONFIG_FILE"),
        ],
    },
    Case {
        capture: "kubeadm-hardened.txt",
        roles: &[Role::ControlPlane, Role::Etcd, Role::Worker],
        expect: &[
            (REFERENCE, P, "--kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt"),
            (ANONYMOUS, P, "--anonymous-auth=false"),
            (PROFILING, P, "--profiling=false"),
            (AUTHZ, P, "Node,RBAC"),
            (ETCD_CLIENT_CERT, E, "--client-cert-auth=true"),
            ("kubelet-anonymous-auth", P, "--anonymous-auth=false"),
            ("kubelet-read-only-port", P, "--read-only-port=0"),
        ],
    },
    Case {
        capture: "hyperkube.txt",
        roles: &[Role::ControlPlane, Role::Etcd, Role::Worker],
        expect: &[
            (REFERENCE, F, "(pid 1302)"),
            (ANONYMOUS, P, "--anonymous-auth=false"),
            (PROFILING, P, "--profiling=false"),
            (AUTHZ, P, "--authorization-mode=RBAC"),
            (AUTHZ_NODE, F, "--authorization-mode=RBAC; required: --authorization-mode has Node"),
            // `--peer-client-cert-auth --client-cert-auth --name=...`: bare booleans, read as true, and still
            // overridable by a file ETCD_CONFIG_FILE may name.
            (ETCD_CLIENT_CERT, E, "--client-cert-auth is on the command line (--client-cert-auth)"),
            ("kubelet-anonymous-auth", P, "(pid 1420)"),
        ],
    },
    Case {
        capture: "kops.txt",
        roles: &[Role::ControlPlane, Role::Etcd],
        expect: &[
            // The go-runner wrapper (pid 1290) carries `--anonymous-auth=true --profiling=true` in its own
            // arguments; only the real kube-apiserver (pid 1302) is judged.
            (REFERENCE, P, "(pid 1302): --kubelet-certificate-authority=/srv/kubernetes/ca.crt"),
            (ANONYMOUS, P, "(pid 1302): --anonymous-auth=false"),
            (PROFILING, F, "(pid 1302): --profiling is not set"),
            (AUTHZ, P, "Node,RBAC"),
            // etcd-manager starts etcd without flags and configures it through ETCD_* variables.
            (ETCD_CLIENT_CERT, E, "etcd's environment (ETCD_CLIENT_CERT_AUTH)"),
        ],
    },
    Case {
        capture: "systemd-hard-way.txt",
        roles: &[Role::ControlPlane, Role::Etcd],
        expect: &[
            (REFERENCE, P, "--kubelet-certificate-authority=/var/lib/kubernetes/ca.pem"),
            (ANONYMOUS, F, "--anonymous-auth is not set"),
            (PROFILING, F, "--profiling is not set"),
            (AUTHZ, P, "Node,RBAC"),
            // `--client-cert-auth --initial-advertise-peer-urls https://...`: a bare boolean before `--flag value`.
            (ETCD_CLIENT_CERT, E, "(pid 720): --client-cert-auth is on the command line (--client-cert-auth)"),
            // With --config, kube-scheduler ignores --profiling: the file's enableProfiling decides.
            (
                "scheduler-profiling",
                E,
                "KubeSchedulerConfiguration file /etc/kubernetes/config/kube-scheduler.yaml (field enableProfiling)",
            ),
        ],
    },
    Case {
        capture: "k3s.txt",
        roles: &[Role::ControlPlane],
        expect: &[
            (REFERENCE, E, "runs inside `k3s server`"),
            (ANONYMOUS, E, "--kube-apiserver-arg"),
            (PROFILING, E, "k3s server"),
            (AUTHZ, E, "k3s server"),
            (ETCD_CLIENT_CERT, E, "--etcd-arg"),
        ],
    },
    Case {
        capture: "worker.txt",
        roles: &[Role::Worker],
        expect: &[
            (REFERENCE, NA, "kube-apiserver does not run on this host"),
            (ANONYMOUS, NA, "does not run"),
            (PROFILING, NA, "does not run"),
            (AUTHZ, NA, "does not run"),
            (ETCD_CLIENT_CERT, NA, "etcd does not run"),
            // kubeadm sets the kubelet's anonymous auth in /var/lib/kubelet/config.yaml, not on the command line.
            (
                "kubelet-anonymous-auth",
                E,
                "KubeletConfiguration file /var/lib/kubelet/config.yaml (field authentication.anonymous.enabled)",
            ),
            // No config field can set it, so the command line decides even with a config file.
            ("kubelet-no-hostname-override", P, "--hostname-override is not set"),
        ],
    },
    Case {
        capture: "worker.txt",
        roles: &[Role::ControlPlane, Role::Worker],
        expect: &[
            (REFERENCE, F, "kube-apiserver is not running, but the host's role control-plane expects it"),
            (ETCD_CLIENT_CERT, NA, "etcd does not run"),
        ],
    },
    Case {
        capture: "etcd-only.txt",
        roles: &[Role::Etcd],
        expect: &[
            (REFERENCE, NA, "does not run"),
            (ANONYMOUS, NA, "does not run"),
            (PROFILING, NA, "does not run"),
            (AUTHZ, NA, "does not run"),
            (ETCD_CLIENT_CERT, E, "(--client-cert-auth=false), but etcd's configuration file"),
        ],
    },
    Case {
        capture: "busybox.txt",
        roles: &[],
        expect: &[
            (REFERENCE, P, "--kubelet-certificate-authority=/etc/k8s/ca.crt"),
            (ANONYMOUS, P, "--anonymous-auth=false"),
            // Bare `--profiling` is true.
            (PROFILING, F, "--profiling=true"),
            (AUTHZ, F, "--authorization-mode=AlwaysAllow"),
            // An API server appliance: its etcd runs elsewhere.
            (ETCD_CLIENT_CERT, NA, "etcd does not run"),
        ],
    },
];

fn capture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/src/captures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn verdicts_on_real_world_captures() {
    let engine = Engine::new(RuleSet::embedded().unwrap());
    for case in CASES {
        let table = ps::parse(&capture(case.capture)).unwrap_or_else(|e| panic!("{}: {e}", case.capture));
        let findings = engine.judge(&table, case.roles);
        assert_eq!(findings.len(), engine.rules.rules.len(), "one finding per rule");
        for (rule_id, status, fragment) in case.expect {
            let f = findings
                .iter()
                .find(|f| engine.rules.rules[f.rule].id == *rule_id)
                .unwrap_or_else(|| panic!("no rule {rule_id}"));
            assert_eq!(f.status, *status, "{} {:?}: {rule_id}: {}", case.capture, case.roles, f.reason);
            assert!(
                f.reason.contains(fragment),
                "{}: {rule_id}: reason {:?} lacks {fragment:?}",
                case.capture,
                f.reason
            );
        }
    }
}

#[test]
fn evidence_is_the_redacted_process_line_and_the_deciding_flag() {
    let engine = Engine::new(RuleSet::embedded().unwrap());
    let table = ps::parse(&capture("busybox.txt")).unwrap();
    let findings = engine.judge(&table, &[]);
    let authz = findings.iter().find(|f| engine.rules.rules[f.rule].id == AUTHZ).unwrap();
    let ev = &authz.evidence[0];
    assert_eq!((ev.pid, ev.line, ev.user.as_str()), (501, 5, "root"));
    assert!(ev.cmdline.starts_with("/usr/local/bin/kube-apiserver --anonymous-auth=false"));
    // The etcd URL's credentials never reach the evidence.
    assert!(ev.cmdline.contains("--etcd-servers=https://<redacted>@127.0.0.1:2379"), "{}", ev.cmdline);
    assert!(!findings.iter().any(|f| f.evidence.iter().any(|e| e.cmdline.contains("s3cret"))));
    assert_eq!(ev.flags.len(), 1);
    assert_eq!(ev.flags[0].flag, "--authorization-mode");
    assert_eq!(ev.flags[0].value.as_deref(), Some("AlwaysAllow"));
    assert_eq!(ev.flags[0].passed, Some(false));
}

#[test]
fn any_failing_process_fails_the_rule() {
    let engine = Engine::new(RuleSet::embedded().unwrap());
    let text = "UID PID PPID C STIME TTY TIME CMD\n\
                root 10 1 0 10:00 ? 00:00:01 kube-apiserver --kubelet-certificate-authority=/ca.crt\n\
                root 11 1 0 10:00 ? 00:00:01 /usr/bin/kube-apiserver --secure-port=6444\n\
                root 12 1 0 10:00 ? 00:00:01 kube-apiserver --kubelet-certificate-authority=/ca.crt\n";
    let table = ps::parse(text.as_bytes()).unwrap();
    let findings = engine.judge(&table, &[Role::ControlPlane]);
    let f = findings.iter().find(|f| engine.rules.rules[f.rule].id == REFERENCE).unwrap();
    assert_eq!(f.status, Status::Fail);
    let statuses: Vec<Status> = f.evidence.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [Status::Pass, Status::Fail, Status::Pass]);
    assert!(f.reason.contains("pid 11"), "{}", f.reason);
}

#[test]
fn every_rule_is_complete_and_every_operator_is_used() {
    let set = RuleSet::embedded().unwrap();
    assert!(set.rules.len() >= 50, "the CIS command-line checks: {}", set.rules.len());
    for r in &set.rules {
        assert!(!r.remediation.trim().is_empty(), "{}: remediation", r.id);
        assert!(!r.rationale.trim().is_empty(), "{}: rationale", r.id);
        assert!(!r.cis.trim().is_empty(), "{}: CIS id", r.id);
        assert!(!r.test.checks().is_empty() || !r.test.file_checks().is_empty(), "{}: test", r.id);
    }
    for component in ["apiserver", "controller-manager", "scheduler", "etcd", "kubelet", "kube-proxy"] {
        assert!(set.rules.iter().any(|r| set.component(r).id == component), "no rule for {component}");
    }
    let reference = set.rule(REFERENCE).unwrap();
    assert_eq!(reference.test.describe(), "--kubelet-certificate-authority set");
    assert!(reference.rationale.contains("man-in-the-middle"));
    assert!(reference.remediation.contains("--kubelet-certificate-authority"));
    assert_eq!(set.packs[0].benchmark_version.as_deref(), Some("1.12"));
}

/// Every check of CIS Kubernetes Benchmark v1.12 in the sections a node's processes and files can answer
/// (kube-bench cfg/cis-1.12: 1.1, 1.2, 1.3, 1.4, 2, 3.2, 4.1, 4.2, 4.3), by id.
const CIS_1_12: &[&str] = &[
    "1.1.1", "1.1.2", "1.1.3", "1.1.4", "1.1.5", "1.1.6", "1.1.7", "1.1.8", "1.1.9", "1.1.10", "1.1.11", "1.1.12",
    "1.1.13", "1.1.14", "1.1.15", "1.1.16", "1.1.17", "1.1.18", "1.1.19", "1.1.20", "1.1.21", "4.1.1", "4.1.2",
    "4.1.3", "4.1.4", "4.1.5", "4.1.6", "4.1.7", "4.1.8", "4.1.9", "4.1.10", "1.2.1", "1.2.2", "1.2.3", "1.2.4",
    "1.2.5", "1.2.6", "1.2.7", "1.2.8", "1.2.9", "1.2.10", "1.2.11", "1.2.12", "1.2.13", "1.2.14", "1.2.15", "1.2.16",
    "1.2.17", "1.2.18", "1.2.19", "1.2.20", "1.2.21", "1.2.22", "1.2.23", "1.2.24", "1.2.25", "1.2.26", "1.2.27",
    "1.2.28", "1.2.29", "1.2.30", "1.3.1", "1.3.2", "1.3.3", "1.3.4", "1.3.5", "1.3.6", "1.3.7", "1.4.1", "1.4.2",
    "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "3.2.1", "3.2.2", "4.2.1", "4.2.2", "4.2.3", "4.2.4", "4.2.5",
    "4.2.6", "4.2.7", "4.2.8", "4.2.9", "4.2.10", "4.2.11", "4.2.12", "4.2.13", "4.2.14", "4.3.1",
];

#[test]
fn the_pack_has_every_cis_1_12_command_line_check_or_says_why_not() {
    let set = RuleSet::embedded().unwrap();
    // The pack header's "Left out, and why" block: `#   1.2.20 --request-timeout ...`.
    let header: String = fleetaudit::rules::pack::EMBEDDED_CIS
        .lines()
        .skip_while(|l| !l.starts_with("# Left out"))
        .take_while(|l| l.starts_with('#') && !l.starts_with("# And outside"))
        .collect::<Vec<_>>()
        .join("\n");
    let left_out: Vec<&str> = header
        .lines()
        .filter_map(|l| l.trim_start_matches('#').split_whitespace().next())
        .filter(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect();
    assert!(!left_out.is_empty(), "no left-out list in the pack header");
    for id in CIS_1_12 {
        let present = set.rules.iter().any(|r| r.cis == *id);
        assert!(present ^ left_out.contains(id), "CIS {id}: in the pack {present}, listed as left out {}", !present);
    }
    assert_eq!(set.packs[0].benchmark_id.as_deref(), Some("cis-1.12"));
    // Every rule's CIS number is one of the benchmark's.
    for r in &set.rules {
        assert!(CIS_1_12.contains(&r.cis.as_str()), "{}: CIS {} is not a v1.12 id", r.id, r.cis);
    }
}
