//! The engine with a host's files: a kubeadm control plane as `kubeadm init` leaves it (the process table from
//! src/captures/kubeadm-default.txt, the kubelet config from tests/fixtures/k8s), judged through the same
//! batches a scan sends, answered from a file set the test builds with real kubeadm modes and owners.

use std::collections::BTreeMap;

use fleetaudit::files::{Content, Entry, FileSet, Kind, Meta, Problem};
use fleetaudit::model::Status;
use fleetaudit::rules::{Engine, RuleSet};

const ROOT: (u32, u32) = (0, 0);

struct Host {
    files: FileSet,
}

impl Host {
    fn new() -> Host {
        let mut h = Host { files: FileSet::default() };
        h.file("/etc/passwd", 0o644, ROOT, "root:x:0:0:root:/root:/bin/bash\naudit:x:1000:1000::/home/audit:/bin/sh\n");
        h.file("/etc/group", 0o644, ROOT, "root:x:0:\naudit:x:1000:\n");
        h
    }

    fn meta(kind: Kind, mode: u32, (uid, gid): (u32, u32), size: u64) -> Meta {
        Meta { kind, mode, uid, gid, size }
    }

    fn file(&mut self, path: &str, mode: u32, owner: (u32, u32), text: &str) {
        let meta = Host::meta(Kind::File, mode, owner, text.len() as u64);
        self.files.insert(
            path.into(),
            Entry::Found { meta, content: Some(Content::plain(text.as_bytes().to_vec())), names: None },
        );
        self.dirs_for(path);
    }

    fn dir(&mut self, path: &str, mode: u32, owner: (u32, u32)) {
        let names = self.names_under(path);
        self.files.insert(
            path.into(),
            Entry::Found { meta: Host::meta(Kind::Dir, mode, owner, 4096), content: None, names: Some(names) },
        );
    }

    fn names_under(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        let mut names: Vec<String> = self
            .files
            .iter()
            .filter_map(|(p, _)| p.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Every directory above a path, with its listing brought up to date (kept mode and owner if known).
    fn dirs_for(&mut self, path: &str) {
        let mut dir = path;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if parent.is_empty() {
                break;
            }
            let (mode, owner) = match self.files.get(parent) {
                Some(Entry::Found { meta, .. }) if meta.kind == Kind::Dir => (meta.mode, (meta.uid, meta.gid)),
                _ => (0o755, ROOT),
            };
            self.dir(parent, mode, owner);
            dir = parent;
        }
    }

    fn problem(&mut self, path: &str, p: Problem) {
        self.files.insert(path.into(), Entry::Problem(p));
    }
}

fn kubeadm_control_plane() -> Host {
    let mut h = Host::new();
    let kubelet_config = include_str!("fixtures/k8s/kubeadm-kubelet-config.yaml");
    h.file("/var/lib/kubelet/config.yaml", 0o644, ROOT, kubelet_config);
    for m in ["kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml", "etcd.yaml"] {
        h.file(&format!("/etc/kubernetes/manifests/{m}"), 0o600, ROOT, "apiVersion: v1\nkind: Pod\n");
    }
    for k in ["admin.conf", "super-admin.conf", "scheduler.conf", "controller-manager.conf", "kubelet.conf"] {
        h.file(&format!("/etc/kubernetes/{k}"), 0o600, ROOT, "kubeconfig");
    }
    for (name, mode) in [
        ("ca.crt", 0o644),
        ("ca.key", 0o600),
        ("apiserver.crt", 0o644),
        ("apiserver.key", 0o600),
        ("sa.pub", 0o600),
        ("sa.key", 0o600),
    ] {
        h.file(&format!("/etc/kubernetes/pki/{name}"), mode, ROOT, "pem");
    }
    for (name, mode) in [("ca.crt", 0o644), ("ca.key", 0o600), ("server.crt", 0o644), ("server.key", 0o600)] {
        h.file(&format!("/etc/kubernetes/pki/etcd/{name}"), mode, ROOT, "pem");
    }
    h.dir("/var/lib/etcd", 0o700, ROOT);
    h.file("/etc/cni/net.d/10-flannel.conflist", 0o644, ROOT, "{}");
    h.file("/proc/1420/cgroup", 0o444, ROOT, "0::/system.slice/kubelet.service\n");
    h.file("/usr/lib/systemd/system/kubelet.service", 0o644, ROOT, "[Service]\n");
    h.file("/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf", 0o644, ROOT, "[Service]\n");
    h.dir("/etc/systemd/system", 0o755, ROOT);
    // kube-proxy runs in its DaemonSet pod: its root is not the audit login's to search.
    h.problem("/proc/1655/root/var/lib/kube-proxy/config.conf", Problem::Denied);
    h.problem("/proc/1655/root/var/lib/kube-proxy/kubeconfig.conf", Problem::Denied);
    // The etcd's environment, as a privileged SFTP server (sftp_command) reads it: no ETCD_* variable.
    h.file("/proc/1331/environ", 0o400, ROOT, "PATH=/usr/local/bin:/usr/bin\0HOSTNAME=cp1\0");
    h
}

/// Answers as an unprivileged login would see the host: a root process's root directory is not its to search
/// (proc(5): ptrace access mode).
struct Unprivileged<'f>(&'f FileSet);

impl fleetaudit::files::Fetch for Unprivileged<'_> {
    async fn fetch(&mut self, batch: &[fleetaudit::files::Request]) -> Vec<(String, Entry)> {
        batch
            .iter()
            .map(|r| {
                let in_root = r.path.starts_with("/proc/") && r.path.split('/').nth(3) == Some("root");
                let entry = match self.0.get(&r.path) {
                    None if in_root => Entry::Problem(Problem::Denied),
                    _ => self.0.answer(r, false),
                };
                (r.path.clone(), entry)
            })
            .collect()
    }
}

fn judge(host: &Host, capture: &str) -> (BTreeMap<String, (Status, String)>, usize) {
    let engine = Engine::new(RuleSet::embedded().unwrap());
    let table = fleetaudit::ps::parse(capture.as_bytes()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let (files, rounds) = rt.block_on(engine.gather(&table, &mut Unprivileged(&host.files)));
    let findings = engine.judge_with_files(&table, &files, &[]);
    let verdicts =
        findings.iter().map(|f| (engine.rules.rules[f.rule].cis.clone(), (f.status, f.reason.clone()))).collect();
    (verdicts, rounds)
}

const KUBEADM: &str = include_str!("../src/captures/kubeadm-default.txt");

#[test]
fn a_kubeadm_control_plane_as_kubeadm_leaves_it() {
    let (v, rounds) = judge(&kubeadm_control_plane(), KUBEADM);
    let status = |cis: &str| v.get(cis).unwrap_or_else(|| panic!("no rule {cis}")).0;
    let why = |cis: &str| v[cis].1.clone();
    for cis in ["1.1.1", "1.1.2", "1.1.3", "1.1.4", "1.1.5", "1.1.6", "1.1.7", "1.1.8", "1.1.10", "1.1.11"] {
        assert_eq!(status(cis), Status::Pass, "{cis}: {}", why(cis));
    }
    for cis in ["1.1.13", "1.1.14", "1.1.15", "1.1.16", "1.1.17", "1.1.18", "1.1.19", "1.1.20", "1.1.21"] {
        assert_eq!(status(cis), Status::Pass, "{cis}: {}", why(cis));
    }
    for cis in ["4.1.2", "4.1.5", "4.1.6", "4.1.7", "4.1.8", "4.1.10"] {
        assert_eq!(status(cis), Status::Pass, "{cis}: {}", why(cis));
    }
    // The evidence reads like `ls -l`.
    assert!(
        why("1.1.1").contains("-rw------- root:root /etc/kubernetes/manifests/kube-apiserver.yaml"),
        "{}",
        why("1.1.1")
    );
    // The CNI config kubeadm's flannel writes 0644; the kubelet config kubeadm writes 0644; the kubelet's unit
    // and drop-in from the packages are 0644: CIS fails them.
    assert_eq!(status("1.1.9"), Status::Fail, "{}", why("1.1.9"));
    assert!(
        why("1.1.9").contains("-rw-r--r-- root:root /etc/cni/net.d/10-flannel.conflist (644, allows 44 beyond 600)"),
        "{}",
        why("1.1.9")
    );
    assert_eq!(status("4.1.9"), Status::Fail, "{}", why("4.1.9"));
    assert_eq!(status("4.1.1"), Status::Fail, "{}", why("4.1.1"));
    assert!(why("4.1.1").contains("/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf"), "{}", why("4.1.1"));
    // No etcd user on a kubeadm node: CIS's verdict, and the premise said.
    assert_eq!(status("1.1.12"), Status::Fail);
    assert!(why("1.1.12").contains("no user etcd in /etc/passwd"), "{}", why("1.1.12"));
    // kube-proxy's files are in its container: unknown to an unprivileged login, with the fix.
    assert_eq!(status("4.1.3"), Status::Error, "{}", why("4.1.3"));
    assert!(why("4.1.3").contains("sftp_command"), "{}", why("4.1.3"));
    // The kubelet settings kubeadm keeps in config.yaml are judged from it.
    assert_eq!(status("4.2.1"), Status::Pass, "{}", why("4.2.1"));
    assert!(
        why("4.2.1").contains("/var/lib/kubelet/config.yaml:4: authentication.anonymous.enabled = false"),
        "{}",
        why("4.2.1")
    );
    assert_eq!(status("4.2.4"), Status::Pass, "read-only port: the file's default 0: {}", why("4.2.4"));
    // Defaults were asked with the first batch: the answers name nothing new but the listed trees' entries.
    assert!(rounds <= 2, "{rounds} batches");
}

#[test]
fn permissions_and_owners_that_fail_and_files_that_cannot_be_read() {
    let mut h = kubeadm_control_plane();
    h.file("/etc/kubernetes/manifests/kube-apiserver.yaml", 0o644, ROOT, "apiVersion: v1\n");
    h.file("/etc/kubernetes/admin.conf", 0o640, (0, 1000), "kubeconfig");
    h.file("/etc/kubernetes/pki/ca.key", 0o604, ROOT, "pem");
    h.file("/etc/kubernetes/pki/etcd/server.key", 0o600, (1000, 1000), "pem");
    h.file("/etc/kubernetes/manifests/kube-scheduler.yaml", 0o4600, ROOT, "apiVersion: v1\n");
    h.problem("/etc/kubernetes/controller-manager.conf", Problem::Denied);
    h.problem("/etc/kubernetes/pki/etcd", Problem::Denied);
    let (v, _) = judge(&h, KUBEADM);
    let get = |cis: &str| v[cis].clone();
    assert_eq!(get("1.1.1").0, Status::Fail);
    assert!(get("1.1.1").1.contains("(644, allows 44 beyond 600)"), "{}", get("1.1.1").1);
    assert_eq!(get("1.1.13").0, Status::Fail);
    assert_eq!(get("1.1.14").0, Status::Fail);
    assert!(get("1.1.14").1.contains("-rw-r----- root:audit /etc/kubernetes/admin.conf"), "{}", get("1.1.14").1);
    assert_eq!(get("1.1.21").0, Status::Fail, "world-readable key: {}", get("1.1.21").1);
    // The setuid bit is outside 600 too.
    assert_eq!(get("1.1.5").0, Status::Fail, "{}", get("1.1.5").1);
    // Denied: an error naming the path, never a pass.
    assert_eq!(get("1.1.17").0, Status::Error);
    assert!(
        get("1.1.17").1.contains("/etc/kubernetes/controller-manager.conf: permission denied"),
        "{}",
        get("1.1.17").1
    );
    // A subdirectory of the PKI tree it could not list: error, not a pass on what it saw.
    assert_eq!(get("1.1.19").0, Status::Error, "{}", get("1.1.19").1);
    assert!(get("1.1.19").1.contains("/etc/kubernetes/pki/etcd: permission denied"), "{}", get("1.1.19").1);
}

#[test]
fn a_file_named_by_a_flag_must_exist_and_defaults_only_if_they_do() {
    let mut h = kubeadm_control_plane();
    // The kubelet names --kubeconfig=/etc/kubernetes/kubelet.conf: missing is an error.
    h.problem("/etc/kubernetes/kubelet.conf", Problem::Missing);
    // super-admin.conf is a default location: missing is nothing to check.
    h.problem("/etc/kubernetes/super-admin.conf", Problem::Missing);
    let (v, _) = judge(&h, KUBEADM);
    assert_eq!(v["4.1.5"].0, Status::Error, "{}", v["4.1.5"].1);
    assert!(
        v["4.1.5"].1.contains("the process names /etc/kubernetes/kubelet.conf, which does not exist"),
        "{}",
        v["4.1.5"].1
    );
    assert_eq!(v["1.1.13"].0, Status::Pass, "{}", v["1.1.13"].1);
}

#[test]
fn an_etcd_whose_environment_cannot_be_read_is_undecided() {
    let mut h = kubeadm_control_plane();
    h.problem("/proc/1331/environ", Problem::Denied);
    let (v, _) = judge(&h, KUBEADM);
    // ETCD_CONFIG_FILE there would replace every flag: no etcd setting is known.
    for cis in ["1.1.11", "2.1"] {
        assert_eq!(v[cis].0, Status::Error, "{cis}: {}", v[cis].1);
        assert!(v[cis].1.contains("/proc/1331/environ"), "{}", v[cis].1);
    }
}

#[test]
fn static_pod_files_do_not_apply_to_an_embedded_control_plane() {
    let k3s = include_str!("../src/captures/k3s.txt");
    let (v, _) = judge(&Host::new(), k3s);
    for cis in ["1.1.1", "1.1.2", "1.1.3", "1.1.5"] {
        assert_eq!(v[cis].0, Status::NotApplicable, "{cis}: {}", v[cis].1);
        assert!(v[cis].1.contains("not from a pod specification"), "{}", v[cis].1);
    }
}

#[test]
fn the_encryption_config_decides_1_2_28_and_its_keys_are_never_kept() {
    let mut h = kubeadm_control_plane();
    let config = include_str!("fixtures/k8s/encryption-config.yaml");
    let capture = KUBEADM.replace(
        "kube-apiserver --advertise-address",
        "kube-apiserver --encryption-provider-config=/etc/kubernetes/enc/enc.yaml --advertise-address",
    );
    // At the host path (kubeadm mounts it into the static pod at the same path).
    h.file("/etc/kubernetes/enc/enc.yaml", 0o600, ROOT, config);
    let engine = Engine::new(RuleSet::embedded().unwrap());
    let (v, _) = judge(&h, &capture);
    let (status, why) = &v["1.2.28"];
    assert!(matches!(status, Status::Pass | Status::Fail), "{status:?}: {why}");
    // What the evidence shows of the file holds no key material.
    for line in config.lines().filter_map(|l| l.trim().strip_prefix("secret:")) {
        let secret = line.trim();
        assert!(!why.contains(secret), "{why}");
    }
    // The admitted content keeps the structure and drops the keys.
    let admitted = engine.admit("/etc/kubernetes/enc/enc.yaml", config.as_bytes().to_vec());
    assert!(admitted.redacted);
    let text = String::from_utf8(admitted.bytes).unwrap();
    for line in config.lines().filter_map(|l| l.trim().strip_prefix("secret:")) {
        assert!(!text.contains(line.trim()), "{text}");
    }
    // identity first: written unencrypted.
    let identity_first = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n      - aescbc:\n          keys:\n            - name: k\n              secret: c2VjcmV0\n";
    h.file("/etc/kubernetes/enc/enc.yaml", 0o600, ROOT, identity_first);
    let (v, _) = judge(&h, &capture);
    assert_eq!(v["1.2.28"].0, Status::Fail, "{}", v["1.2.28"].1);
    assert!(v["1.2.28"].1.contains("= identity"), "{}", v["1.2.28"].1);
    // No such file: the flag names it, so an error.
    h.problem("/etc/kubernetes/enc/enc.yaml", Problem::Missing);
    let (v, _) = judge(&h, &capture);
    assert_eq!(v["1.2.28"].0, Status::Error, "{}", v["1.2.28"].1);
}

#[test]
fn a_pki_subdirectory_it_could_not_list_leaves_the_certificate_and_key_checks_undecided() {
    let mut h = kubeadm_control_plane();
    // Root-only: stat'ed as a directory, but its listing (and so the path's answer) is `denied`.
    h.problem("/etc/kubernetes/pki/etcd", Problem::Denied);
    let (v, _) = judge(&h, KUBEADM);
    // Its *.crt and *.key files were never seen: not a pass on the files of /etc/kubernetes/pki alone.
    for cis in ["1.1.19", "1.1.20", "1.1.21"] {
        assert_eq!(v[cis].0, Status::Error, "{cis}: {}", v[cis].1);
        assert!(v[cis].1.contains("/etc/kubernetes/pki/etcd"), "{cis}: {}", v[cis].1);
        // With the fix.
        assert!(v[cis].1.contains("sftp_command"), "{cis}: {}", v[cis].1);
    }
}

#[test]
fn without_sftp_an_etcd_environment_not_read_says_why_and_how_to_enable_it() {
    let mut h = kubeadm_control_plane();
    let reason = "sshd has no `Subsystem sftp` line: add `Subsystem sftp internal-sftp`".to_owned();
    h.problem("/proc/1331/environ", Problem::Unavailable { reason: reason.clone() });
    let (v, _) = judge(&h, KUBEADM);
    assert_eq!(v["1.1.11"].0, Status::Error, "{}", v["1.1.11"].1);
    // Not "use a privileged SFTP server": there is no SFTP at all.
    assert!(v["1.1.11"].1.contains(&reason), "{}", v["1.1.11"].1);
}
