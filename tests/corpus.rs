//! Verdicts on real command lines collected from public sources (tests/corpus/, each file's source, what is
//! verbatim and what was reconstructed in tests/corpus/SOURCES.md): RKE2's CIS self-assessment guides, the k3s
//! and MicroK8s docs, OpenShift, kind, kops, kubeadm, EKS, AKS, Canonical k8s, k0s, Kubernetes the Hard Way,
//! kube-bench issues. The expectations follow from the flags on those lines and Kubernetes' own semantics.

use fleetaudit::model::{Role, Status};
use fleetaudit::ps;
use fleetaudit::rules::{Engine, Finding, RuleSet};

use Status::{Error as E, Fail as F, NotApplicable as NA, Pass as P};

const CP: &[Role] = &[Role::ControlPlane];
const CP_ETCD: &[Role] = &[Role::ControlPlane, Role::Etcd];
const CP_ETCD_WORKER: &[Role] = &[Role::ControlPlane, Role::Etcd, Role::Worker];
const WORKER: &[Role] = &[Role::Worker];

struct Case {
    file: &'static str,
    roles: &'static [Role],
    /// (rule id, status, a fragment the reason must contain)
    expect: &'static [(&'static str, Status, &'static str)],
}

const CASES: &[Case] = &[
    Case {
        // RKE2 v1.33–1.36 (CIS 1.12 guide): hardened static pods; the kubelet keeps its settings in --config-dir.
        file: "rke2-v1.33-v1.36-cis1.12.txt",
        roles: CP_ETCD_WORKER,
        expect: &[
            ("apiserver-kubelet-certificate-authority", P, "/var/lib/rancher/rke2/server/tls/server-ca.crt"),
            ("apiserver-anonymous-auth", P, "--anonymous-auth=false"),
            ("apiserver-authz-node", P, "--authorization-mode=Node,RBAC"),
            ("apiserver-admission-node-restriction", P, "--enable-admission-plugins=NodeRestriction"),
            ("apiserver-admission-always-pull-images", F, "required: --enable-admission-plugins has AlwaysPullImages"),
            ("apiserver-admission-no-always-admit", P, "--enable-admission-plugins=NodeRestriction"),
            ("apiserver-profiling", P, "--profiling=false"),
            ("apiserver-audit-policy-file", P, "--audit-policy-file=/etc/rancher/rke2/audit-policy.yaml"),
            ("controller-manager-bind-address", P, "--bind-address=127.0.0.1"),
            ("scheduler-bind-address", P, "--bind-address=127.0.0.1"),
            // No etcd process in the guide: the role expects one.
            ("etcd-client-cert-auth", F, "etcd is not running"),
            (
                "kubelet-anonymous-auth",
                E,
                "the kubelet's config drop-ins (*.conf in /var/lib/rancher/rke2/agent/etc/kubelet.conf.d) (field authentication.anonymous.enabled)",
            ),
            ("kubelet-read-only-port", P, "--read-only-port=0"),
            // A flag on the command line still wins over the drop-ins.
            ("kubelet-no-hostname-override", F, "--hostname-override=server-0"),
        ],
    },
    Case {
        // RKE2 v1.28–1.31 (CIS 1.10 guide): a kubelet with flags only.
        file: "rke2-v1.28-v1.31-cis1.10.txt",
        roles: CP_ETCD_WORKER,
        expect: &[
            ("kubelet-anonymous-auth", P, "--anonymous-auth=false"),
            ("kubelet-read-only-port", P, "--read-only-port=0"),
            ("kubelet-client-ca-file", P, "--client-ca-file=/var/lib/rancher/rke2/agent/client-ca.crt"),
            // Absent, and the kubelet's default is false (kube-bench passes it).
            ("kubelet-rotate-certificates", F, "its default \"false\" applies"),
            ("kube-proxy-metrics-bind-address", P, "default \"127.0.0.1:10249\""),
            ("apiserver-strong-ciphers", P, "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
        ],
    },
    Case {
        // RKE2 1.24: PodSecurityPolicy still in the list.
        file: "rke2-v1.24-cis1.24.txt",
        roles: CP_ETCD_WORKER,
        expect: &[
            ("apiserver-admission-node-restriction", P, "NodeRestriction,PodSecurityPolicy"),
            ("apiserver-kubelet-certificate-authority", P, "server-ca.crt"),
        ],
    },
    Case {
        // k3s: every component runs inside `k3s server`.
        file: "k3s-v1.26-server-ps.txt",
        roles: CP,
        expect: &[
            ("apiserver-kubelet-certificate-authority", E, "runs inside `k3s server`"),
            ("apiserver-anonymous-auth", E, "--kube-apiserver-arg"),
            ("etcd-client-cert-auth", E, "--etcd-arg"),
            ("kubelet-anonymous-auth", E, "/etc/rancher/k3s/config.yaml"),
            ("kube-proxy-metrics-bind-address", E, "--kube-proxy-arg"),
        ],
    },
    Case {
        // MicroK8s: one kubelite process runs the control plane, kubelet and proxy from args files.
        file: "microk8s-kubelite.txt",
        roles: CP_ETCD_WORKER,
        expect: &[
            (
                "apiserver-kubelet-certificate-authority",
                E,
                "arguments file /var/snap/microk8s/2346/args/kube-apiserver",
            ),
            ("scheduler-profiling", E, "/var/snap/microk8s/2346/args/kube-scheduler"),
            ("kubelet-read-only-port", E, "/var/snap/microk8s/2346/args/kubelet"),
            ("kube-proxy-metrics-bind-address", E, "/var/snap/microk8s/2346/args/kube-proxy"),
            // MicroK8s keeps its data in k8s-dqlite: no etcd, which the etcd role expects.
            ("etcd-client-cert-auth", F, "etcd is not running"),
        ],
    },
    Case {
        // OpenShift 4: kube-apiserver reads --openshift-config after its command line.
        file: "openshift-4-kube-apiserver-container.txt",
        roles: CP,
        expect: &[
            (
                "apiserver-kubelet-certificate-authority",
                E,
                "OpenShift's KubeAPIServerConfig /etc/kubernetes/static-pod-resources/configmaps/config/config.yaml",
            ),
            ("apiserver-anonymous-auth", E, "OpenShift's KubeAPIServerConfig"),
            ("apiserver-authz-not-always-allow", E, "config.yaml"),
        ],
    },
    Case {
        // OpenShift 4 master: `hyperkube kubelet` with --config and a bare --rotate-certificates.
        file: "openshift-4-openstack-master-hyperkube-kubelet.txt",
        roles: WORKER,
        expect: &[
            ("kubelet-rotate-certificates", P, "--rotate-certificates=true"),
            ("kubelet-anonymous-auth", E, "/etc/kubernetes/kubelet.conf"),
        ],
    },
    Case {
        // kind v1.34 control plane: kubeadm defaults.
        file: "kind-v1.34-control-plane-node.txt",
        roles: CP_ETCD_WORKER,
        expect: &[
            ("apiserver-kubelet-certificate-authority", F, "--kubelet-certificate-authority is not set"),
            ("apiserver-anonymous-auth", F, "default \"true\" applies"),
            ("apiserver-authz-rbac", P, "--authorization-mode=Node,RBAC"),
            ("apiserver-profiling", F, "default \"true\" applies"),
            ("controller-manager-bind-address", P, "--bind-address=127.0.0.1"),
            ("scheduler-profiling", F, "default \"true\" applies"),
            // etcd's command line can be overridden by a file its environment names.
            ("etcd-client-cert-auth", E, "ETCD_CONFIG_FILE"),
            ("kubelet-anonymous-auth", E, "/var/lib/kubelet/config.yaml (field authentication.anonymous.enabled)"),
            // kube-proxy --config replaces its flags: the file decides.
            ("kube-proxy-metrics-bind-address", E, "/var/lib/kube-proxy/config.conf (field metricsBindAddress)"),
        ],
    },
    Case {
        // kops golden output: go-runner wrappers and their children; the scheduler and proxy by config file.
        file: "kops-control-plane-golden.txt",
        roles: CP,
        expect: &[
            ("apiserver-kubelet-certificate-authority", F, "(pid 2102): --kubelet-certificate-authority is not set"),
            ("apiserver-anonymous-auth", P, "(pid 2102): --anonymous-auth=false"),
            ("apiserver-admission-namespace-lifecycle", P, "--disable-admission-plugins"),
            // Absent --bind-address listens on every interface.
            ("controller-manager-bind-address", F, "its default \"0.0.0.0\" applies"),
            ("scheduler-profiling", E, "/var/lib/kube-scheduler/config.yaml (field enableProfiling)"),
        ],
    },
    Case {
        // Kubernetes the Hard Way controller: etcd over plain http with `--flag value` forms.
        file: "kthw-server.txt",
        roles: CP_ETCD,
        expect: &[
            (
                "apiserver-kubelet-certificate-authority",
                P,
                "--kubelet-certificate-authority=/var/lib/kubernetes/ca.crt",
            ),
            ("apiserver-audit-log-maxbackup", F, "--audit-log-maxbackup=3"),
            ("controller-manager-bind-address", F, "--bind-address=0.0.0.0"),
            // With --config, kube-scheduler ignores --profiling: the file decides.
            ("scheduler-profiling", E, "/etc/kubernetes/config/kube-scheduler.yaml (field enableProfiling)"),
            ("etcd-cert-file", E, "ETCD_CONFIG_FILE"),
        ],
    },
    Case {
        // kubeadm (skyao): stock static pods, no kubelet line.
        file: "kubeadm-skyao-k8s112-control-plane.txt",
        roles: CP_ETCD,
        expect: &[
            ("apiserver-kubelet-certificate-authority", F, "(pid 1398): --kubelet-certificate-authority is not set"),
            ("apiserver-admission-node-restriction", P, "--enable-admission-plugins=NodeRestriction"),
            ("scheduler-bind-address", P, "--bind-address=127.0.0.1"),
            ("etcd-client-cert-auth", E, "(--client-cert-auth=true), but etcd's configuration file"),
            // metrics-server's --kubelet-* flags are not a kubelet.
            ("kubelet-anonymous-auth", NA, "kubelet does not run"),
        ],
    },
    Case {
        // kubeadm 1.26 (CKA lab): a kubelet with a repeated flag in both forms.
        file: "kubeadm-v1.26-cka-controlplane.txt",
        roles: CP,
        expect: &[
            ("apiserver-authz-node", P, "--authorization-mode=Node,RBAC"),
            ("kubelet-read-only-port", E, "/var/lib/kubelet/config.yaml"),
        ],
    },
    Case {
        // k0s controller+worker: empty --feature-gates= on the control plane.
        file: "k0s-controller-worker-docker.txt",
        roles: CP,
        expect: &[
            ("apiserver-kubelet-certificate-authority", P, "--kubelet-certificate-authority=/var/lib/k0s/pki/ca.crt"),
            // `--feature-gates=` sets no gate: the gate's default applies.
            ("controller-manager-rotate-kubelet-server-certificate", P, "the gate's default true applies"),
            ("scheduler-profiling", P, "--profiling=false"),
            ("kubelet-anonymous-auth", E, "/run/k0s/kubelet/config.yaml"),
        ],
    },
    Case {
        // AKS Ubuntu 22.04 node: kubelet flags with `--flag value` and a repeated --kubeconfig; kube-proxy on
        // every interface.
        file: "aks-ubuntu2204-node.txt",
        roles: WORKER,
        expect: &[
            ("kubelet-anonymous-auth", P, "--anonymous-auth=false"),
            ("kubelet-rotate-certificates", P, "--rotate-certificates=true"),
            // TLS_RSA_* suites are not in CIS 1.12's kubelet list.
            ("kubelet-strong-ciphers", F, "TLS_RSA_WITH_AES_256_GCM_SHA384"),
            ("kube-proxy-metrics-bind-address", F, "--metrics-bind-address=0.0.0.0:10249"),
        ],
    },
    Case {
        // EKS (Amazon Linux 2, 2019): `--config /etc/...` with a space.
        file: "eks-al2-kubelet-2019.txt",
        roles: WORKER,
        expect: &[("kubelet-anonymous-auth", E, "/etc/kubernetes/kubelet/kubelet-config.json")],
    },
    Case {
        // EKS Bottlerocket: `--register-with-taints  --pod-infra-container-image ...` (an empty argument).
        file: "eks-bottlerocket-kubelet.txt",
        roles: WORKER,
        expect: &[("kubelet-read-only-port", E, "/etc/kubernetes/kubelet/config")],
    },
    Case {
        // Canonical k8s-snap worker: every kubelet setting on the command line.
        file: "canonical-k8s-snap-worker-kubelet.txt",
        roles: WORKER,
        expect: &[
            ("kubelet-anonymous-auth", P, "--anonymous-auth=false"),
            ("kubelet-authz-not-always-allow", P, "--authorization-mode=Webhook"),
            ("kubelet-read-only-port", P, "--read-only-port=0"),
        ],
    },
    Case {
        // kubespray: a kubelet with --config and a feature gate for something else.
        file: "kubespray-kubelet.txt",
        roles: WORKER,
        expect: &[
            ("kubelet-rotate-server-certificates", E, "featureGates.RotateKubeletServerCertificate"),
            ("kubelet-no-hostname-override", F, "--hostname-override=mynode-n3"),
        ],
    },
];

fn engine() -> Engine {
    Engine::new(RuleSet::embedded().unwrap())
}

fn judge(engine: &Engine, file: &str, roles: &[Role]) -> Vec<Finding> {
    let path = format!("{}/tests/corpus/{file}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let table = ps::parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
    engine.judge(&table, roles)
}

#[test]
fn verdicts_on_captures_from_public_sources() {
    let engine = engine();
    let mut wrong = Vec::new();
    for case in CASES {
        let findings = judge(&engine, case.file, case.roles);
        assert_eq!(findings.len(), engine.rules.rules.len());
        for (rule_id, status, fragment) in case.expect {
            let f = findings
                .iter()
                .find(|f| engine.rules.rules[f.rule].id == *rule_id)
                .unwrap_or_else(|| panic!("no rule {rule_id}"));
            if f.status != *status || !f.reason.contains(fragment) {
                wrong.push(format!(
                    "{}: {rule_id}: {} {:?}, expected {status} with {fragment:?}",
                    case.file, f.status, f.reason
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_capture_is_read_and_has_its_source() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");
    let sources = std::fs::read_to_string(format!("{dir}/SOURCES.md")).unwrap();
    let engine = engine();
    let mut captures = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".txt") {
            continue;
        }
        captures += 1;
        assert!(sources.contains(&name), "{name} has no entry in tests/corpus/SOURCES.md");
        let findings = judge(&engine, &name, &[]);
        // Every capture shows at least one component, found by the program it runs.
        assert!(findings.iter().any(|f| f.status != NA), "{name}: no component found");
    }
    assert!(captures >= 20, "{captures} captures");
    assert!(CASES.len() >= 15);
}

/// A component run where its settings live elsewhere is `error` on every rule, naming the place: never
/// `not_applicable`, never a verdict on a default the place may override.
#[test]
fn components_whose_settings_live_elsewhere_are_never_judged_on_defaults() {
    let engine = engine();
    let forms: &[(&str, &str, &str)] = &[
        // (capture, component, a place every one of its verdicts names)
        ("microk8s-kubelite.txt", "apiserver", "/var/snap/microk8s/2346/args/kube-apiserver"),
        ("microk8s-kubelite.txt", "controller-manager", "/var/snap/microk8s/2346/args/kube-controller-manager"),
        ("microk8s-kubelite.txt", "kubelet", "/var/snap/microk8s/2346/args/kubelet"),
        ("microk8s-kubelite.txt", "kube-proxy", "/var/snap/microk8s/2346/args/kube-proxy"),
        ("openshift-4-kube-apiserver-container.txt", "apiserver", "static-pod-resources/configmaps/config/config.yaml"),
        ("k3s-v1.26-server-ps.txt", "apiserver", "/etc/rancher/k3s/config.yaml"),
        ("k3s-v1.26-server-ps.txt", "etcd", "/etc/rancher/k3s/config.yaml"),
        ("k3s-v1.26-server-ps.txt", "kubelet", "/etc/rancher/k3s/config.yaml"),
    ];
    for (file, component, place) in forms {
        let findings = judge(&engine, file, &[]);
        let mine: Vec<&Finding> =
            findings.iter().filter(|f| engine.rules.component(&engine.rules.rules[f.rule]).id == *component).collect();
        assert!(!mine.is_empty());
        for f in mine {
            let rule = &engine.rules.rules[f.rule];
            let id = &rule.id;
            // A component run inside another program has no pod specification file: that check does not apply.
            let pod_spec = rule.test.file_checks().iter().any(|c| engine.rules.targets[c.target].static_pod);
            if pod_spec && f.status == Status::NotApplicable {
                assert!(f.reason.contains("not from a pod specification"), "{file}: {id}: {}", f.reason);
                assert!(file.starts_with("microk8s") || file.starts_with("k3s"), "{file}: {id}: only embedded");
                continue;
            }
            assert_eq!(f.status, E, "{file}: {id}: {}", f.reason);
            // A file check at a fixed place needs the file, not the settings: "not read" is its error.
            if rule.test.checks().is_empty() && !f.reason.contains("--") {
                assert!(f.reason.contains("not read"), "{file}: {id}: {}", f.reason);
                continue;
            }
            assert!(f.reason.contains(place), "{file}: {id}: {} lacks {place}", f.reason);
        }
    }
    // The kubelet's drop-in directory (RKE2 1.33): every rule whose setting a KubeletConfiguration field holds is
    // `error` naming it; the rest (flags with no config field) are decided by the command line.
    let findings = judge(&engine, "rke2-v1.33-v1.36-cis1.12.txt", &[]);
    let kubelet = engine.rules.components.iter().find(|c| c.id == "kubelet").unwrap();
    for f in findings.iter().filter(|f| engine.rules.component(&engine.rules.rules[f.rule]).id == "kubelet") {
        let rule = &engine.rules.rules[f.rule];
        if rule.test.checks().is_empty() {
            // A file check: its files, not its settings, are what a process table lacks.
            assert!(matches!(f.status, E | NA), "{}: {}", rule.id, f.reason);
            continue;
        }
        let configurable =
            rule.test.checks().iter().any(|c| kubelet.flags.get(c.name()).is_some_and(|d| d.config.is_some()));
        let on_command_line = f.evidence.iter().flat_map(|e| &e.flags).all(|e| !e.occurrences.is_empty());
        match (configurable, on_command_line) {
            (true, false) => assert!(
                f.status == E && f.reason.contains("/var/lib/rancher/rke2/agent/etc/kubelet.conf.d"),
                "{}: {}",
                rule.id,
                f.reason
            ),
            _ => assert_ne!(f.status, E, "{}: {}", rule.id, f.reason),
        }
        assert_ne!(f.status, NA, "{}", rule.id);
    }
}
