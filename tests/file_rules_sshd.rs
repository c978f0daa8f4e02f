//! File rules end to end: `fleetaudit scan` (and `snapshot` + `eval`) against real OpenSSH sshd servers whose
//! namespaces lay a test's files over /etc and /var/lib (overlayfs, invisible to the host), so the CIS default
//! places (/etc/kubernetes, /var/lib/etcd, /etc/systemd/system/kubelet.service.d, ...) hold a kubeadm control
//! plane's files with real modes and owners, behind fake control-plane processes with kubeadm's real argv
//! (src/captures/kubeadm-default.txt). The expected verdicts come from the CIS rules (600/644, root:root,
//! etcd:etcd), not from the tool's output.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Sshd, SshdOptions, TEST_USER, ensure_user, fleetaudit, keygen, sqlite, text, write};

/// A second unprivileged user, to own files the audit login is not.
const OTHER_USER: &str = "fleetaudit-test2";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
const ROOT: (u32, u32) = (0, 0);
/// The etcd user and group the hardened node has (CIS 1.1.12 wants etcd:etcd; kubeadm creates none).
const ETCD_ID: u32 = 59_871;

const KUBEADM: &str = include_str!("../src/captures/kubeadm-default.txt");
const KUBELET_CONFIG: &str = include_str!("fixtures/k8s/kubeadm-kubelet-config.yaml");
const PROXY_CONFIG: &str = include_str!("fixtures/k8s/kube-proxy-config.conf");
const KUBELET_UNIT: &str = include_str!("../src/sim/files/kubeadm/kubelet.service");
const KUBEADM_DROP_IN: &str = include_str!("../src/sim/files/kubeadm/10-kubeadm.conf");
const FLANNEL: &str = include_str!("../src/sim/files/kubeadm/10-flannel.conflist");

/// The command line of the capture's process `pid`, as `ps -ef` showed it.
fn argv(pid: u32) -> String {
    let mut lines = KUBEADM.lines();
    let cmd_at = lines.next().unwrap().find("CMD").unwrap();
    let line = lines
        .find(|l| l.split_whitespace().nth(1) == Some(&pid.to_string()))
        .unwrap_or_else(|| panic!("no pid {pid} in the capture"));
    line[cmd_at..].to_owned()
}

/// kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kubelet, kube-proxy: kubeadm's argv.
fn control_plane() -> Vec<String> {
    [1302, 1310, 1322, 1331, 1420, 1655].into_iter().map(argv).collect()
}
/// The kubelet's index in [`control_plane`] (its `$P` variable in the namespace's script).
const KUBELET: usize = 4;

/// A node's files: what a test lays over /etc and /var/lib, with real modes and owners.
struct Layout {
    etc: PathBuf,
    var_lib: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        let l = Layout { etc: dir.join("etc"), var_lib: dir.join("var-lib") };
        for d in [&l.etc, &l.var_lib] {
            std::fs::create_dir_all(d).unwrap();
            // The upper directory's own mode and owner are the merged directory's.
            own(d, 0o755, ROOT);
        }
        l
    }

    /// Where a host path is in the layout.
    fn at(&self, path: &str) -> PathBuf {
        if let Some(rest) = path.strip_prefix("/etc/") {
            self.etc.join(rest)
        } else if let Some(rest) = path.strip_prefix("/var/lib/") {
            self.var_lib.join(rest)
        } else {
            panic!("{path} is outside the overlays (/etc, /var/lib)")
        }
    }

    fn overlays(&self) -> [(&'static str, &Path); 2] {
        [("/etc", self.etc.as_path()), ("/var/lib", self.var_lib.as_path())]
    }

    /// A file with exactly this content, mode and owner (missing parents root's 0755).
    fn file(&self, path: &str, content: &[u8], mode: u32, owner: (u32, u32)) {
        let at = self.at(path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(&at, content).unwrap();
        own(&at, mode, owner);
    }

    /// A directory with this mode and owner (made if absent, missing parents root's 0755).
    fn dir(&self, path: &str, mode: u32, owner: (u32, u32)) {
        let at = self.at(path);
        std::fs::create_dir_all(&at).unwrap();
        own(&at, mode, owner);
    }

    /// The host's /etc/passwd and /etc/group with an etcd user and group, as a node that runs etcd as etcd.
    fn accounts_with_etcd(&self) {
        for (file, line) in [
            ("passwd", format!("etcd:x:{ETCD_ID}:{ETCD_ID}:etcd user:/var/lib/etcd:/usr/sbin/nologin\n")),
            ("group", format!("etcd:x:{ETCD_ID}:\n")),
        ] {
            let host = std::fs::read_to_string(format!("/etc/{file}")).unwrap();
            assert!(!host.lines().any(|l| l.split(':').nth(2) == Some(&ETCD_ID.to_string())), "{file}: {ETCD_ID}");
            self.file(&format!("/etc/{file}"), format!("{host}{line}").as_bytes(), 0o644, ROOT);
        }
    }

    /// sudo lets the audit login run the read-only sftp-server as root (README: Privilege), in the node's /etc
    /// only: the host's sudoers are not touched.
    fn sudoers(&self) {
        support::need("sudo", "sudo");
        support::need(SFTP_SERVER, "openssh-sftp-server");
        // sudo skips drop-ins whose name contains a '.' (sudoers(5), #includedir).
        let line = format!("{TEST_USER} ALL=(root) NOPASSWD: {SFTP_SERVER} -R\n");
        self.file("/etc/sudoers.d/fleetaudit-test-files", line.as_bytes(), 0o440, ROOT);
    }
}

fn own(path: &Path, mode: u32, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    // After chown, which clears set-id bits.
    std::fs::set_permissions(path, PermissionsExt::from_mode(mode)).unwrap();
}

/// `-rw-------` for a mode, as `ls -l` shows it.
fn ls(dir: bool, mode: u32) -> String {
    let mut s = String::from(if dir { "d" } else { "-" });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// How a kubeadm control plane's files are kept.
#[derive(Clone, Copy, PartialEq)]
enum Care {
    /// As CIS wants: 600 (certificates 644) root:root, the etcd data directory 700 etcd:etcd.
    Hardened,
    /// Every file CIS checks too open and owned by the audit login: 644 keys and kubeconfigs, 666 certificates,
    /// 777 directories.
    Loose,
}

/// One file a CIS file rule checks, as the test laid it out.
struct Checked {
    path: &'static str,
    dir: bool,
    mode: u32,
    owner: (u32, u32),
}

/// The CIS file rules: (cis, the file it names on a kubeadm control plane, "mode" with the most CIS allows or
/// "owner" with the owner CIS requires).
const FILE_RULES: [(&str, &str, Op); 31] = [
    ("1.1.1", "/etc/kubernetes/manifests/kube-apiserver.yaml", Op::Mode(0o600)),
    ("1.1.2", "/etc/kubernetes/manifests/kube-apiserver.yaml", Op::Owner("root:root")),
    ("1.1.3", "/etc/kubernetes/manifests/kube-controller-manager.yaml", Op::Mode(0o600)),
    ("1.1.4", "/etc/kubernetes/manifests/kube-controller-manager.yaml", Op::Owner("root:root")),
    ("1.1.5", "/etc/kubernetes/manifests/kube-scheduler.yaml", Op::Mode(0o600)),
    ("1.1.6", "/etc/kubernetes/manifests/kube-scheduler.yaml", Op::Owner("root:root")),
    ("1.1.7", "/etc/kubernetes/manifests/etcd.yaml", Op::Mode(0o600)),
    ("1.1.8", "/etc/kubernetes/manifests/etcd.yaml", Op::Owner("root:root")),
    ("1.1.9", "/etc/cni/net.d/10-flannel.conflist", Op::Mode(0o600)),
    ("1.1.10", "/etc/cni/net.d/10-flannel.conflist", Op::Owner("root:root")),
    ("1.1.11", "/var/lib/etcd", Op::Mode(0o700)),
    ("1.1.12", "/var/lib/etcd", Op::Owner("etcd:etcd")),
    ("1.1.13", "/etc/kubernetes/admin.conf", Op::Mode(0o600)),
    ("1.1.14", "/etc/kubernetes/admin.conf", Op::Owner("root:root")),
    ("1.1.15", "/etc/kubernetes/scheduler.conf", Op::Mode(0o600)),
    ("1.1.16", "/etc/kubernetes/scheduler.conf", Op::Owner("root:root")),
    ("1.1.17", "/etc/kubernetes/controller-manager.conf", Op::Mode(0o600)),
    ("1.1.18", "/etc/kubernetes/controller-manager.conf", Op::Owner("root:root")),
    ("1.1.19", "/etc/kubernetes/pki", Op::Owner("root:root")),
    ("1.1.20", "/etc/kubernetes/pki/apiserver.crt", Op::Mode(0o644)),
    ("1.1.21", "/etc/kubernetes/pki/ca.key", Op::Mode(0o600)),
    ("4.1.1", "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", Op::Mode(0o600)),
    ("4.1.2", "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", Op::Owner("root:root")),
    ("4.1.3", "/var/lib/kube-proxy/kubeconfig.conf", Op::Mode(0o600)),
    ("4.1.4", "/var/lib/kube-proxy/kubeconfig.conf", Op::Owner("root:root")),
    ("4.1.5", "/etc/kubernetes/kubelet.conf", Op::Mode(0o600)),
    ("4.1.6", "/etc/kubernetes/kubelet.conf", Op::Owner("root:root")),
    ("4.1.7", "/etc/kubernetes/pki/ca.crt", Op::Mode(0o644)),
    ("4.1.8", "/etc/kubernetes/pki/ca.crt", Op::Owner("root:root")),
    ("4.1.9", "/var/lib/kubelet/config.yaml", Op::Mode(0o600)),
    ("4.1.10", "/var/lib/kubelet/config.yaml", Op::Owner("root:root")),
];

#[derive(Clone, Copy)]
enum Op {
    Mode(u32),
    Owner(&'static str),
}

/// Lays out a kubeadm control plane's files (kubeadm's paths; contents from the fixtures and the simulator's
/// kubeadm profile) kept with `care`; returns every file and directory a file rule checks.
fn kubeadm_files(l: &Layout, care: Care) -> Vec<Checked> {
    let audit = ensure_user(TEST_USER);
    l.accounts_with_etcd();
    let etcd = (ETCD_ID, ETCD_ID);
    let mut checked = Vec::new();
    let mut file = |path: &'static str, content: &[u8], hardened: u32, loose: (u32, (u32, u32))| {
        let (mode, owner) = match care {
            Care::Hardened => (hardened, ROOT),
            Care::Loose => loose,
        };
        l.file(path, content, mode, owner);
        checked.push(Checked { path, dir: false, mode, owner });
    };
    let manifest = b"apiVersion: v1\nkind: Pod\n";
    file("/etc/kubernetes/manifests/kube-apiserver.yaml", manifest, 0o600, (0o644, audit));
    file("/etc/kubernetes/manifests/kube-controller-manager.yaml", manifest, 0o600, (0o644, audit));
    file("/etc/kubernetes/manifests/kube-scheduler.yaml", manifest, 0o600, (0o644, audit));
    file("/etc/kubernetes/manifests/etcd.yaml", manifest, 0o600, (0o644, audit));
    file("/etc/cni/net.d/10-flannel.conflist", FLANNEL.as_bytes(), 0o600, (0o644, audit));
    let kubeconfig = b"apiVersion: v1\nkind: Config\n";
    for k in ["admin.conf", "super-admin.conf", "kubelet.conf"] {
        let path: &'static str = format!("/etc/kubernetes/{k}").leak();
        file(path, kubeconfig, 0o600, (0o644, audit));
    }
    // Loose: the component kubeconfigs another unprivileged user's.
    for k in ["scheduler.conf", "controller-manager.conf"] {
        let path: &'static str = format!("/etc/kubernetes/{k}").leak();
        file(path, kubeconfig, 0o600, (0o640, ensure_user(OTHER_USER)));
    }
    for name in ["ca", "apiserver", "apiserver-kubelet-client", "front-proxy-ca", "etcd/ca", "etcd/server"] {
        let crt: &'static str = format!("/etc/kubernetes/pki/{name}.crt").leak();
        file(crt, b"-----BEGIN CERTIFICATE-----\n", 0o644, (0o666, audit));
        let key: &'static str = format!("/etc/kubernetes/pki/{name}.key").leak();
        file(key, b"-----BEGIN PRIVATE KEY-----\n", 0o600, (0o644, audit));
    }
    file("/etc/kubernetes/pki/sa.pub", b"-----BEGIN PUBLIC KEY-----\n", 0o600, (0o644, audit));
    file("/etc/systemd/system/kubelet.service", KUBELET_UNIT.as_bytes(), 0o600, (0o644, audit));
    file("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", KUBEADM_DROP_IN.as_bytes(), 0o600, (0o644, audit));
    file("/var/lib/kubelet/config.yaml", KUBELET_CONFIG.as_bytes(), 0o600, (0o644, audit));
    file("/var/lib/kube-proxy/config.conf", PROXY_CONFIG.as_bytes(), 0o600, (0o644, audit));
    file("/var/lib/kube-proxy/kubeconfig.conf", kubeconfig, 0o600, (0o644, audit));
    let mut dir = |path: &'static str, hardened: (u32, (u32, u32)), loose: u32| {
        let (mode, owner) = match care {
            Care::Hardened => hardened,
            Care::Loose => (loose, audit),
        };
        l.dir(path, mode, owner);
        checked.push(Checked { path, dir: true, mode, owner });
    };
    dir("/etc/kubernetes/pki", (0o755, ROOT), 0o777);
    dir("/etc/kubernetes/pki/etcd", (0o755, ROOT), 0o777);
    dir("/etc/kubernetes/manifests", (0o755, ROOT), 0o777);
    dir("/var/lib/etcd", (0o700, etcd), 0o777);
    l.dir("/var/lib/etcd/member", 0o700, etcd);
    checked
}

/// The script line that puts the kubelet in systemd's kubelet.service as far as its /proc/PID/cgroup says
/// (a file bound over it inside the namespace): the engine finds the kubelet's unit file by it (4.1.1, 4.1.2).
fn kubelet_in_its_service(dir: &Path) -> String {
    let cgroup = dir.join("kubelet.cgroup");
    write(&cgroup, "0::/system.slice/kubelet.service\n");
    std::fs::set_permissions(&cgroup, PermissionsExt::from_mode(0o444)).unwrap();
    format!("mount --bind {} /proc/$P{KUBELET}/cgroup || exit 95\n", cgroup.display())
}

/// A host of the inventory: an sshd with its layout, and the inventory lines that reach it.
struct Node {
    name: &'static str,
    sshd: Sshd,
}

/// A test's directory: the client key, known_hosts, inventory, database and report.
struct Fleet {
    // Before `dir`: fields drop in order, and each sshd's namespace (with its overlays on the layouts in `dir`)
    // goes before the directory is removed.
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    key: PathBuf,
}

/// The default places the nodes' files are at: the host must have none of them (its own would show through the
/// overlays), and the tests leave none behind.
const DEFAULT_PLACES: [&str; 6] = [
    "/etc/kubernetes",
    "/etc/cni",
    "/etc/systemd/system/kubelet.service.d",
    "/var/lib/etcd",
    "/var/lib/kubelet",
    "/var/lib/kube-proxy",
];

fn assert_host_has_no_default_places() {
    for p in DEFAULT_PLACES {
        assert!(
            !Path::new(p).exists(),
            "{p} exists on this host: the tests' nodes lay their own over /etc and /var/lib"
        );
    }
}

impl Fleet {
    fn new() -> Fleet {
        // Units the host itself has would be found beside the node's (systemd's unit directories outside /etc).
        for d in
            ["/usr/lib/systemd/system", "/lib/systemd/system", "/usr/local/lib/systemd/system", "/run/systemd/system"]
        {
            assert!(
                !Path::new(d).join("kubelet.service").exists() && !Path::new(d).join("kubelet.service.d").exists(),
                "this host has a kubelet unit in {d}: the tests' nodes would show it too"
            );
        }
        assert_host_has_no_default_places();
        let dir = tempfile::tempdir().unwrap();
        // sshd reads authorized_keys as the audit login.
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let key = keygen(dir.path(), "id_ed25519");
        Fleet { nodes: Vec::new(), dir, key }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A layout for the node `name` (lay it out, then [`Fleet::start`]).
    fn layout(&self, name: &str) -> Layout {
        Layout::new(&self.path(&format!("{name}-files")))
    }

    /// Starts `name`'s sshd with its layout over /etc and /var/lib and these processes.
    fn start(&mut self, name: &'static str, layout: &Layout, processes: &[String], options: SshdOptions<'_>) {
        let overlays = layout.overlays();
        let processes: Vec<&str> = processes.iter().map(String::as_str).collect();
        let sshd = Sshd::start_opts(
            &self.path(name),
            &[&self.key],
            &processes,
            &[],
            &SshdOptions { overlays: &overlays, ..options },
        );
        self.nodes.push(Node { name, sshd });
    }

    /// The inventory of every node started, `extra` lines in `[defaults]`.
    fn inventory(&self, extra: &str) -> PathBuf {
        self.inventory_in(extra, &|_| None, &[])
    }

    /// The same, each node in the cluster `cluster_of` names, and `absent` hosts (name, cluster) that no server
    /// answers for.
    fn inventory_in(
        &self,
        extra: &str,
        cluster_of: &dyn Fn(&str) -> Option<&'static str>,
        absent: &[(&str, &str)],
    ) -> PathBuf {
        let known = self.path("known_hosts");
        write(&known, &self.nodes.iter().map(|n| n.sshd.known_hosts_line("127.0.0.1")).collect::<String>());
        let mut inv = format!(
            "[defaults]\nuser = \"{TEST_USER}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\ndatabase = \"{}\"\n\
             report_dir = \"{}\"\nconnect_timeout = \"5s\"\ncommand_timeout = \"20s\"\n{extra}",
            self.key.display(),
            known.display(),
            self.db().display(),
            self.report().display(),
        );
        for n in &self.nodes {
            inv += &format!(
                "\n[[hosts]]\nname = \"{}\"\naddress = \"127.0.0.1\"\nport = {}\nroles = [\"control-plane\", \"etcd\", \"worker\"]\n",
                n.name, n.sshd.port
            );
            if let Some(c) = cluster_of(n.name) {
                inv += &format!("cluster = \"{c}\"\n");
            }
        }
        let mut clusters: Vec<&str> = self.nodes.iter().filter_map(|n| cluster_of(n.name)).collect();
        clusters.extend(absent.iter().map(|(_, c)| *c));
        clusters.sort_unstable();
        clusters.dedup();
        for c in clusters {
            inv += &format!("\n[[clusters]]\nname = \"{c}\"\n");
        }
        for (name, cluster) in absent {
            inv += &format!(
                "\n[[hosts]]\nname = \"{name}\"\naddress = \"127.0.0.1\"\nport = {}\nroles = [\"worker\"]\ncluster = \"{cluster}\"\n",
                support::free_port()
            );
        }
        let path = self.path("inventory.toml");
        write(&path, &inv);
        path
    }

    fn db(&self) -> PathBuf {
        self.path("history.db")
    }

    fn report(&self) -> PathBuf {
        self.path("report")
    }
}

/// One verdict: status and reason.
#[derive(Debug, Clone)]
struct Verdict {
    status: String,
    reason: String,
}

/// What a scan gave: verdicts by (host, CIS id) and status by (host, rule id), its JSON, its peak RSS (KiB).
struct Scanned {
    by_cis: BTreeMap<(String, String), Verdict>,
    by_rule: BTreeMap<(String, String), String>,
    json: String,
    max_rss_kib: i64,
    elapsed: Duration,
}

/// Not a timing assertion: only so that a hung scan fails the test instead of hanging CI.
const HUNG: Duration = Duration::from_secs(120);

/// `fleetaudit scan --format json`, with its peak resident memory.
fn scan(inventory: &Path) -> Scanned {
    let dir = inventory.parent().unwrap();
    let (stdout, stderr) = (dir.join("scan.json"), dir.join("scan.stderr"));
    let (code, max_rss_kib, elapsed) = support::run_measured(
        Command::new(env!("CARGO_BIN_EXE_fleetaudit"))
            .args(["scan", "-i", inventory.to_str().unwrap(), "--format", "json"])
            .env("NO_COLOR", "1")
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap()),
        HUNG,
    );
    let json = std::fs::read_to_string(&stdout).unwrap();
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert!(matches!(code, Some(0..=2)), "scan exited {code:?}:\n{json}\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}\n{err}"));
    support::assert_valid(&doc);
    for h in doc["hosts"].as_array().unwrap() {
        assert_eq!(h["outcome"], "audited", "{h}");
    }
    let (mut by_cis, mut by_rule) = (BTreeMap::new(), BTreeMap::new());
    // Format version 2: a finding is a verdict with the hosts that got it, and names its rule, whose CIS number
    // is in `rules`.
    for f in doc["findings"].as_array().unwrap() {
        let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
        let cis = doc["rules"][s("rule_id")]["cis"].as_str().unwrap_or_else(|| panic!("a rule for {f}")).to_owned();
        for host in f["hosts"].as_array().unwrap_or_else(|| panic!("hosts in {f}")) {
            let host = host.as_str().unwrap().to_owned();
            by_cis.insert((host.clone(), cis.clone()), Verdict { status: s("status"), reason: s("reason") });
            by_rule.insert((host, s("rule_id")), s("status"));
        }
    }
    Scanned { by_cis, by_rule, json, max_rss_kib, elapsed }
}

/// `fleetaudit snapshot` of `host`, then `fleetaudit eval` of it: the verdicts by rule id, and the tar.
fn snapshot_and_eval(dir: &Path, inventory: &Path, host: &str) -> (BTreeMap<String, String>, Vec<u8>, String) {
    let tar = dir.join(format!("{host}.tar"));
    let out = fleetaudit(&["snapshot", "-i", inventory.to_str().unwrap(), host, "-o", tar.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "snapshot: {}{}", text(&out.stdout), text(&out.stderr));
    let out = fleetaudit(&["eval", tar.to_str().unwrap(), "--format", "json"]);
    let stdout = text(&out.stdout);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
    let verdicts = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule_id"].as_str().unwrap().to_owned(), f["status"].as_str().unwrap().to_owned()))
        .collect();
    (verdicts, std::fs::read(&tar).unwrap(), stdout)
}

/// Scan verdicts of one host, by rule id.
fn of_host(by_rule: &BTreeMap<(String, String), String>, host: &str) -> BTreeMap<String, String> {
    by_rule.iter().filter(|((h, _), _)| h == host).map(|((_, r), s)| (r.clone(), s.clone())).collect()
}

fn get<'v>(v: &'v BTreeMap<(String, String), Verdict>, host: &str, cis: &str) -> &'v Verdict {
    v.get(&(host.to_owned(), cis.to_owned())).unwrap_or_else(|| panic!("no verdict for {host} {cis}"))
}

/// `user:group` by the names the node's /etc/passwd and /etc/group give (the users' own groups).
fn owner_name(owner: (u32, u32)) -> String {
    match owner {
        ROOT => "root:root".into(),
        (ETCD_ID, ETCD_ID) => "etcd:etcd".into(),
        o if o == ensure_user(TEST_USER) => format!("{TEST_USER}:{TEST_USER}"),
        o if o == ensure_user(OTHER_USER) => format!("{OTHER_USER}:{OTHER_USER}"),
        o => panic!("no name for {o:?}"),
    }
}

/// Every file rule's verdict on a kubeadm control plane kept with `care`, from the CIS requirement and the
/// modes and owners laid out.
fn assert_file_rules(v: &BTreeMap<(String, String), Verdict>, host: &str, checked: &[Checked]) {
    for (cis, path, op) in FILE_RULES {
        let c = checked.iter().find(|c| c.path == path).unwrap();
        let shown = format!("{} {} {path}", ls(c.dir, c.mode), owner_name(c.owner));
        let (ok, detail) = match op {
            Op::Mode(most) => {
                let beyond = c.mode & !most;
                (
                    beyond == 0,
                    match beyond {
                        0 => format!("{shown} ({:o})", c.mode),
                        _ => format!("{shown} ({:o}, allows {beyond:o} beyond {most:o})", c.mode),
                    },
                )
            }
            Op::Owner(want) => {
                let ok = owner_name(c.owner) == want;
                (ok, if ok { shown } else { format!("{shown}; required: {want}") })
            }
        };
        let got = get(v, host, cis);
        assert_eq!(got.status, if ok { "pass" } else { "fail" }, "{host} {cis} ({path}): {}", got.reason);
        assert!(got.reason.contains(&detail), "{host} {cis}: wanted {detail:?} in: {}", got.reason);
    }
}

#[test]
fn kubeadm_control_plane_through_sudo_hardened_passes_loose_fails_and_snapshots_judge_the_same() {
    let mut fleet = Fleet::new();
    let mut checked = BTreeMap::new();
    for (name, care) in [("hardened", Care::Hardened), ("loose", Care::Loose)] {
        let l = fleet.layout(name);
        checked.insert(name, kubeadm_files(&l, care));
        l.sudoers();
        let script = kubelet_in_its_service(&fleet.path(&format!("{name}-files")));
        fleet.start(name, &l, &control_plane(), SshdOptions { script: &script, ..SshdOptions::default() });
    }
    let inventory = fleet.inventory(&format!("sftp_command = \"sudo -n {SFTP_SERVER} -R\"\n"));
    let scanned = scan(&inventory);
    let (v, by_rule) = (&scanned.by_cis, &scanned.by_rule);

    assert_file_rules(v, "hardened", &checked["hardened"]);
    assert_file_rules(v, "loose", &checked["loose"]);
    // Everything under the PKI directory is checked, its subdirectory and files too.
    let pki = &get(v, "hardened", "1.1.19").reason;
    for p in
        ["drwxr-xr-x root:root /etc/kubernetes/pki/etcd", "-rw------- root:root /etc/kubernetes/pki/etcd/server.key"]
    {
        assert!(pki.contains(p), "{pki}");
    }
    let loose_keys = &get(v, "loose", "1.1.21").reason;
    assert!(loose_keys.contains("/etc/kubernetes/pki/etcd/server.key (644, allows 44 beyond 600)"), "{loose_keys}");
    // The unit file itself and its drop-in (4.1.1: the kubelet's cgroup named kubelet.service).
    let unit = &get(v, "hardened", "4.1.1").reason;
    assert!(unit.contains("-rw------- root:root /etc/systemd/system/kubelet.service (600)"), "{unit}");
    // The kubelet's settings come from its config file, read as root through sudo.
    for cis in ["4.2.1", "4.2.4"] {
        let k = get(v, "hardened", cis);
        assert_eq!(k.status, "pass", "{cis}: {}", k.reason);
    }
    let anon = &get(v, "hardened", "4.2.1").reason;
    assert!(anon.contains("/var/lib/kubelet/config.yaml:4: authentication.anonymous.enabled = false"), "{anon}");
    // The process table is judged as ever: kubeadm sets no --kubelet-certificate-authority.
    for host in ["hardened", "loose"] {
        assert_eq!(get(v, host, "1.2.5").status, "fail", "{}", get(v, host, "1.2.5").reason);
    }

    // snapshot + eval judge each node exactly as the scan did.
    for host in ["hardened", "loose"] {
        let (eval, _, _) = snapshot_and_eval(fleet.dir.path(), &inventory, host);
        let scan = of_host(by_rule, host);
        assert_eq!(eval.len(), scan.len(), "{host}: the same rules");
        let differ: Vec<_> =
            scan.iter().filter(|(r, s)| eval.get(*r) != Some(s)).map(|(r, s)| (r, s, eval.get(r))).collect();
        assert!(differ.is_empty(), "{host}: scan and snapshot+eval differ (rule, scan, eval): {differ:?}");
    }
    eprintln!("two kubeadm nodes scanned in {:?}, peak RSS {} KiB", scanned.elapsed, scanned.max_rss_kib);
    // The nodes' files were theirs alone: sudo read the node's sudoers drop-in, sshd the node's /etc/passwd (with
    // its etcd user, in 1.1.12's evidence), and the host has none of them.
    assert_host_has_no_default_places();
    assert!(!Path::new("/etc/sudoers.d/fleetaudit-test-files").exists());
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(!passwd.contains(&format!(":{ETCD_ID}:")), "the node's etcd user is in the host's /etc/passwd");
}

#[test]
fn a_root_only_directory_without_sudo_is_an_error_naming_the_path_and_the_fix() {
    let mut fleet = Fleet::new();
    let l = fleet.layout("cp");
    kubeadm_files(&l, Care::Hardened);
    // A hardened node keeps its manifests and etcd's PKI root-only (README: Privilege).
    l.dir("/etc/kubernetes/manifests", 0o700, ROOT);
    l.dir("/etc/kubernetes/pki/etcd", 0o700, ROOT);
    // The kubelet's config readable by the audit login (its staticPodPath names the manifests' directory).
    l.file("/var/lib/kubelet/config.yaml", KUBELET_CONFIG.as_bytes(), 0o644, ROOT);
    let script = kubelet_in_its_service(&fleet.path("cp-files"));
    fleet.start("cp", &l, &control_plane(), SshdOptions { script: &script, ..SshdOptions::default() });
    let scanned = scan(&fleet.inventory(""));
    let v = &scanned.by_cis;
    let fix = "set sftp_command to a privileged SFTP server";
    for (cis, name) in [
        ("1.1.1", "kube-apiserver.yaml"),
        ("1.1.2", "kube-apiserver.yaml"),
        ("1.1.3", "kube-controller-manager.yaml"),
        ("1.1.4", "kube-controller-manager.yaml"),
        ("1.1.5", "kube-scheduler.yaml"),
        ("1.1.6", "kube-scheduler.yaml"),
        ("1.1.7", "etcd.yaml"),
        ("1.1.8", "etcd.yaml"),
    ] {
        let got = get(v, "cp", cis);
        assert_eq!(got.status, "error", "{cis}: {}", got.reason);
        let path = format!("/etc/kubernetes/manifests/{name}: permission denied");
        assert!(
            got.reason.contains(&path) && got.reason.contains(fix),
            "{cis}: wanted {path:?} and the fix in: {}",
            got.reason
        );
    }
    for cis in ["1.1.19", "1.1.20", "1.1.21"] {
        let got = get(v, "cp", cis);
        assert_eq!(got.status, "error", "{cis}: {}", got.reason);
        assert!(
            got.reason.contains("/etc/kubernetes/pki/etcd")
                && got.reason.contains("permission denied")
                && got.reason.contains(fix),
            "{cis}: {}",
            got.reason
        );
    }
    // kube-proxy's root-only config names its kubeconfig: unknown, with the fix.
    for cis in ["4.1.3", "4.1.4"] {
        let got = get(v, "cp", cis);
        assert_eq!(got.status, "error", "{cis}: {}", got.reason);
        assert!(
            got.reason.contains("/var/lib/kube-proxy/config.conf") && got.reason.contains("sftp_command"),
            "{cis}: {}",
            got.reason
        );
    }
    // The etcd runs as root: its environment (ETCD_DATA_DIR, ETCD_CONFIG_FILE) is not the audit login's to read.
    for cis in ["1.1.11", "1.1.12"] {
        let got = get(v, "cp", cis);
        assert_eq!(got.status, "error", "{cis}: {}", got.reason);
        assert!(got.reason.contains("/environ") && got.reason.contains("sftp_command"), "{cis}: {}", got.reason);
    }
    // What the audit login may stat is judged: root's 0600 files in a searchable directory.
    for cis in ["1.1.13", "1.1.14", "1.1.15", "1.1.16", "1.1.17", "1.1.18", "4.1.1", "4.1.2", "4.1.5", "4.1.6"] {
        let got = get(v, "cp", cis);
        assert_eq!(got.status, "pass", "{cis}: {}", got.reason);
    }
}

#[test]
fn without_sftp_the_table_is_judged_and_every_file_rule_says_how_to_enable_it() {
    let mut fleet = Fleet::new();
    let l = fleet.layout("cp");
    kubeadm_files(&l, Care::Hardened);
    fleet.start("cp", &l, &control_plane(), SshdOptions { sftp_subsystem: Some(""), ..SshdOptions::default() });
    let scanned = scan(&fleet.inventory(""));
    let v = &scanned.by_cis;
    for (cis, _, _) in FILE_RULES {
        let got = get(v, "cp", cis);
        assert_eq!(got.status, "error", "{cis}: {}", got.reason);
        assert!(
            got.reason.contains("no `Subsystem sftp` line") && got.reason.contains("Subsystem sftp internal-sftp"),
            "{cis}: {}",
            got.reason
        );
    }
    // The kubelet's settings its config file holds cannot be known either, for the same reason.
    let anon = get(v, "cp", "4.2.1");
    assert_eq!(anon.status, "error", "{}", anon.reason);
    assert!(
        anon.reason.contains("/var/lib/kubelet/config.yaml") && anon.reason.contains("Subsystem sftp"),
        "{}",
        anon.reason
    );
    // What the command lines decide is judged: kubeadm sets no --kubelet-certificate-authority, and
    // --authorization-mode=Node,RBAC passes.
    assert_eq!(get(v, "cp", "1.2.5").status, "fail", "{}", get(v, "cp", "1.2.5").reason);
    let authz = v.iter().find(|((h, _), r)| h == "cp" && r.reason.contains("--authorization-mode")).map(|(_, r)| r);
    assert!(authz.is_some_and(|r| r.status == "pass"), "{authz:?}");
}

/// A KubeletConfiguration that leaves anonymous auth and the read-only port out (their v1beta1 defaults:
/// false and 0, pkg/kubelet/apis/config/v1beta1/defaults.go).
const KUBELET_CONFIG_SILENT: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
    authentication:\n  webhook:\n    enabled: true\nauthorization:\n  mode: Webhook\n\
    staticPodPath: /etc/kubernetes/manifests\n";

fn drop_in(body: &str) -> String {
    format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n{body}")
}

#[test]
fn kubelet_settings_come_from_defaults_then_config_then_drop_ins_in_order_then_flags() {
    let mut fleet = Fleet::new();
    let base = "/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml --kubeconfig=/etc/kubernetes/kubelet.conf";
    let with_dir = format!("{base} --config-dir=/etc/kubernetes/kubelet.conf.d");
    let with_flags = format!("{with_dir} --anonymous-auth=false --read-only-port=0");
    for (name, kubelet) in [("file-only", base.to_owned()), ("drop-ins", with_dir.clone()), ("flags", with_flags)] {
        let l = fleet.layout(name);
        l.file("/var/lib/kubelet/config.yaml", KUBELET_CONFIG_SILENT.as_bytes(), 0o644, ROOT);
        l.file("/etc/kubernetes/kubelet.conf", b"apiVersion: v1\nkind: Config\n", 0o600, ROOT);
        if name != "file-only" {
            let d = "/etc/kubernetes/kubelet.conf.d";
            // Written out of lexical order: the kubelet sorts them (and a later one wins), whatever the
            // directory's order.
            let on = drop_in("authentication:\n  anonymous:\n    enabled: true\n");
            l.file(&format!("{d}/20-anonymous-on.conf"), on.as_bytes(), 0o644, ROOT);
            let off = drop_in("authentication:\n  anonymous:\n    enabled: false\n");
            l.file(&format!("{d}/10-anonymous-off.conf"), off.as_bytes(), 0o644, ROOT);
            let port = drop_in("readOnlyPort: 10255\n");
            l.file(&format!("{d}/30-read-only-port.conf"), port.as_bytes(), 0o644, ROOT);
            // Not *.conf: the kubelet does not read it.
            let ignored = drop_in("readOnlyPort: 0\nauthentication:\n  anonymous:\n    enabled: false\n");
            l.file(&format!("{d}/99-ignored.yaml"), ignored.as_bytes(), 0o644, ROOT);
        }
        fleet.start(name, &l, &[kubelet], SshdOptions::default());
    }
    let scanned = scan(&fleet.inventory(""));
    let v = &scanned.by_cis;
    let check = |host: &str, cis: &str, status: &str, says: &[&str]| {
        let got = get(v, host, cis);
        assert_eq!(got.status, status, "{host} {cis}: {}", got.reason);
        for s in says {
            assert!(got.reason.contains(s), "{host} {cis}: wanted {s:?} in: {}", got.reason);
        }
    };
    // The file leaves both out: v1beta1's defaults, not the flags' (true, 10255).
    check(
        "file-only",
        "4.2.1",
        "pass",
        &["/var/lib/kubelet/config.yaml", "authentication.anonymous.enabled", "\"false\""],
    );
    check("file-only", "4.2.4", "pass", &["/var/lib/kubelet/config.yaml", "readOnlyPort", "\"0\""]);
    // The later drop-in wins over the earlier one and over the file; the .yaml is not read.
    check(
        "drop-ins",
        "4.2.1",
        "fail",
        &["/etc/kubernetes/kubelet.conf.d/20-anonymous-on.conf:5: authentication.anonymous.enabled = true"],
    );
    check(
        "drop-ins",
        "4.2.4",
        "fail",
        &["/etc/kubernetes/kubelet.conf.d/30-read-only-port.conf:3: readOnlyPort = 10255"],
    );
    // The command line wins over every file.
    check("flags", "4.2.1", "pass", &["--anonymous-auth=false"]);
    check("flags", "4.2.4", "pass", &["--read-only-port=0"]);
    for host in ["file-only", "drop-ins", "flags"] {
        let reason = &get(v, host, "4.2.1").reason;
        assert!(!reason.contains("99-ignored.yaml"), "{host}: {reason}");
    }
}

/// Where `needle` occurs in `haystack`, if anywhere.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            files_under(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

#[test]
fn the_encryption_config_decides_1_2_28_and_its_secrets_are_nowhere_kept() {
    const CANARY: &str = "CANARY";
    let config = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      \
                  - secrets\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              \
                  secret: CANARYaescbc0123456789abcdefghijklmnopqrstu=\n      - secretbox:\n          keys:\n            \
                  - name: key2\n              secret: \"CANARYsecretbox0123456789abcdefghijklmnopq=\"\n      \
                  - identity: {}\n";
    let mut fleet = Fleet::new();
    let l = fleet.layout("cp");
    kubeadm_files(&l, Care::Hardened);
    l.sudoers();
    l.file("/etc/kubernetes/enc/enc.yaml", config.as_bytes(), 0o600, ROOT);
    let mut processes = control_plane();
    processes[0] = processes[0].replace(
        "kube-apiserver --advertise-address",
        "kube-apiserver --encryption-provider-config=/etc/kubernetes/enc/enc.yaml --advertise-address",
    );
    assert!(processes[0].contains("--encryption-provider-config"), "{}", processes[0]);
    fleet.start("cp", &l, &processes, SshdOptions::default());
    let inventory = fleet.inventory(&format!("sftp_command = \"sudo -n {SFTP_SERVER} -R\"\n"));
    let scanned = scan(&inventory);
    // aescbc first for secrets: encrypted at rest, as CIS wants (aescbc, kms or secretbox).
    let got = get(&scanned.by_cis, "cp", "1.2.28");
    assert_eq!(got.status, "pass", "{}", got.reason);
    assert!(got.reason.contains("aescbc") && got.reason.contains("/etc/kubernetes/enc/enc.yaml"), "{}", got.reason);
    // The file was read and kept, redacted.
    let kept = sqlite(
        &fleet.db(),
        "SELECT redacted, problem IS NULL FROM host_files WHERE path = '/etc/kubernetes/enc/enc.yaml'",
    );
    assert_eq!(kept.trim(), "1|1", "{kept}");
    let body = sqlite(
        &fleet.db(),
        "SELECT c.body FROM host_files f JOIN file_contents c ON c.sha256 = f.sha256 \
         WHERE f.path = '/etc/kubernetes/enc/enc.yaml'",
    );
    assert!(body.contains("<redacted>") && body.contains("aescbc"), "{body}");

    let (_, tar, eval_json) = snapshot_and_eval(fleet.dir.path(), &inventory, "cp");
    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("scan --format json".into(), scanned.json.into_bytes()),
        ("the snapshot tar".into(), tar),
        ("eval --format json".into(), eval_json.into_bytes()),
    ];
    // The database with its write-ahead log, whatever SQLite left beside it.
    let db_name = fleet.db().file_name().unwrap().to_str().unwrap().to_owned();
    for e in std::fs::read_dir(fleet.dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_str().unwrap().starts_with(&db_name) {
            places.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    assert!(places.iter().any(|(p, _)| p.ends_with("history.db")), "no database file");
    let mut report = Vec::new();
    files_under(&fleet.report(), &mut report);
    assert!(report.iter().any(|p| p.ends_with("index.html")), "no report in {}", fleet.report().display());
    for p in report {
        places.push((p.display().to_string(), std::fs::read(&p).unwrap()));
    }
    for (place, bytes) in &places {
        if let Some(at) = find(bytes, CANARY.as_bytes()) {
            let around =
                String::from_utf8_lossy(&bytes[at.saturating_sub(80)..(at + 80).min(bytes.len())]).into_owned();
            panic!("a secret of the encryption config is in {place}: ...{around}...");
        }
    }
}

#[test]
fn a_yaml_bomb_and_a_huge_kubelet_config_are_errors_naming_the_file_with_bounded_memory() {
    let mut fleet = Fleet::new();
    // Billion laughs: 9^9 "lol"s once the aliases are expanded.
    let mut bomb = String::from("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n");
    bomb.push_str("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"].iter().zip(["b", "c", "d", "e", "f", "g", "h", "i"]) {
        bomb.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{prev}"); 9].join(",")));
    }
    let mut huge = String::from("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n");
    while huge.len() < 2 << 20 {
        huge.push_str("# padding padding padding padding padding padding padding padding padding padding pad\n");
    }
    let kubelet = "/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml --kubeconfig=/etc/kubernetes/kubelet.conf";
    for (name, config) in [("bomb", &bomb), ("huge", &huge)] {
        let l = fleet.layout(name);
        l.file("/var/lib/kubelet/config.yaml", config.as_bytes(), 0o644, ROOT);
        fleet.start(name, &l, &[kubelet.to_owned()], SshdOptions::default());
    }
    let scanned = scan(&fleet.inventory(""));
    let v = &scanned.by_cis;
    for cis in ["4.2.1", "4.2.4"] {
        let got = get(v, "bomb", cis);
        assert_eq!(got.status, "error", "bomb {cis}: {}", got.reason);
        assert!(got.reason.contains("/var/lib/kubelet/config.yaml"), "bomb {cis}: {}", got.reason);
        let got = get(v, "huge", cis);
        assert_eq!(got.status, "error", "huge {cis}: {}", got.reason);
        assert!(
            got.reason.contains("/var/lib/kubelet/config.yaml")
                && got.reason.contains(&format!("{}", huge.len()))
                && got.reason.contains("over the 1048576-byte limit (max_file_bytes)"),
            "huge {cis}: {}",
            got.reason
        );
    }
    // Expanded, the bomb would be gigabytes; refused after a few hundred events. Generous bounds, for a shared
    // CI machine: the scan of these two nodes takes about a second.
    eprintln!("bomb and huge scanned in {:?}, peak RSS {} KiB", scanned.elapsed, scanned.max_rss_kib);
    assert!(scanned.max_rss_kib < 64 << 10, "peak RSS {} KiB", scanned.max_rss_kib);
    assert!(scanned.elapsed < Duration::from_secs(30), "{:?}", scanned.elapsed);
}

/// CIS 4.1.9 asks for the config file's mode, which the fstat that found it too large gave: 0644 is a fail, and
/// the file's size does not change that. The transport keeps only `too_large` for the path (the mode and owner
/// it had are dropped), so the rule is `error` instead.
#[test]
fn a_kubelet_config_over_the_size_limit_still_has_its_mode_and_owner_judged() {
    let mut fleet = Fleet::new();
    let mut huge = String::from("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n");
    huge.push_str(&"#".repeat(2 << 20));
    let l = fleet.layout("huge");
    l.file("/var/lib/kubelet/config.yaml", huge.as_bytes(), 0o644, ROOT);
    let kubelet = "/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml".to_owned();
    fleet.start("huge", &l, &[kubelet], SshdOptions::default());
    let scanned = scan(&fleet.inventory(""));
    let got = get(&scanned.by_cis, "huge", "4.1.9");
    assert_eq!(got.status, "fail", "{}", got.reason);
    assert!(got.reason.contains("-rw-r--r-- root:root /var/lib/kubelet/config.yaml (644, allows 44 beyond 600)"));
    let got = get(&scanned.by_cis, "huge", "4.1.10");
    assert_eq!(got.status, "pass", "{}", got.reason);
}

/// The README's "complete hand-made snapshot of a kubeadm node", run as typed on a node as its root would (inside
/// the node's namespaces), with the kubelet's unit where the Debian package puts it (/usr/lib/systemd/system).
/// `eval` of that tar gives the scan's verdict on every rule whose evidence the README's list of paths holds;
/// the rest (etcd's environment, kube-proxy's files, which it leaves out) are `error` saying what the tar
/// lacks, never a pass or a fail of their own.
#[test]
fn the_readme_hand_made_snapshot_judges_as_the_scan_did() {
    let readme = include_str!("../README.md");
    let start = readme.find("A complete hand-made snapshot of a kubeadm node:").expect("the README's example");
    let block = &readme[start..];
    let block = &block[block.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];
    assert!(block.contains("tar chf node.tar") && block.contains("fleetaudit eval node.tar"), "{block}");

    let mut fleet = Fleet::new();
    let l = fleet.layout("byhand");
    kubeadm_files(&l, Care::Hardened);
    // What the CNI plugins keep (host-local IPAM's leases; none yet).
    l.dir("/var/lib/cni/networks", 0o755, ROOT);
    l.sudoers();
    // The unit and its drop-in as the Debian package installs them.
    let usr_units = fleet.path("byhand-files/usr-lib-systemd-system");
    std::fs::create_dir_all(&usr_units).unwrap();
    own(&usr_units, 0o755, ROOT);
    std::fs::rename(l.at("/etc/systemd/system/kubelet.service"), usr_units.join("kubelet.service")).unwrap();
    std::fs::rename(l.at("/etc/systemd/system/kubelet.service.d"), usr_units.join("kubelet.service.d")).unwrap();
    let mut overlays = l.overlays().to_vec();
    overlays.push(("/usr/lib/systemd/system", usr_units.as_path()));
    let script = kubelet_in_its_service(&fleet.path("byhand-files"));
    let processes = control_plane();
    let processes: Vec<&str> = processes.iter().map(String::as_str).collect();
    let sshd = Sshd::start_opts(
        &fleet.path("byhand"),
        &[&fleet.key],
        &processes,
        &[],
        &SshdOptions { overlays: &overlays, script: &script, ..SshdOptions::default() },
    );
    fleet.nodes.push(Node { name: "byhand", sshd });
    let inventory = fleet.inventory(&format!("sftp_command = \"sudo -n {SFTP_SERVER} -R\"\n"));
    let scanned = scan(&inventory);
    let scan = of_host(&scanned.by_rule, "byhand");
    // 4.1.1 found the unit in /usr/lib through the kubelet's cgroup, as on a package-installed node.
    let unit = &get(&scanned.by_cis, "byhand", "4.1.1");
    assert_eq!(unit.status, "pass", "{}", unit.reason);
    assert!(unit.reason.contains("/usr/lib/systemd/system/kubelet.service"), "{}", unit.reason);

    // The README's commands, as typed, by the node's root in a directory of its own.
    let work = fleet.path("byhand-work");
    std::fs::create_dir_all(&work).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_fleetaudit")).parent().unwrap();
    let pid = fleet.nodes[0].sshd.namespace_pid().to_string();
    let out = Command::new("nsenter")
        .args(["--target", &pid, "--mount", "--pid"])
        .arg(format!("--wd={}", work.display()))
        .args(["--", "sh", "-c", block])
        .env("PATH", format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()))
        .env("NO_COLOR", "1")
        .output()
        .expect("nsenter (util-linux)");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    // tar says only what the README says it says; eval judges (exit 1: kubeadm sets no kubelet CA; 2: errors).
    for line in stderr.lines() {
        assert!(line.contains("Removing leading `/'"), "the README's commands said: {line}\n{stderr}");
    }
    assert!(matches!(out.status.code(), Some(1 | 2)), "{:?}: {stdout}{stderr}", out.status);
    assert!(stdout.contains("FAIL   apiserver-kubelet-certificate-authority"), "{stdout}");

    let out = fleetaudit(&["eval", work.join("node.tar").to_str().unwrap(), "--format", "json"]);
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
    let mut differ = Vec::new();
    let mut same = 0;
    for f in doc["findings"].as_array().unwrap() {
        let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
        let (rule, status, reason, component) = (s("rule_id"), s("status"), s("reason"), s("component"));
        let scanned = &scan[&rule];
        if *scanned == status {
            same += 1;
            continue;
        }
        assert_eq!(status, "error", "{rule}: the scan said {scanned}, the hand-made tar {status}: {reason}");
        assert!(reason.contains("snapshot") || reason.contains("tar"), "{rule}: says what the tar lacks: {reason}");
        differ.push((component, rule, reason));
    }
    assert_eq!(same + differ.len(), scan.len());
    for (component, rule, reason) in &differ {
        assert!(
            component == "etcd" || component == "kube-proxy",
            "{rule} ({component}) differs from the scan: {reason}"
        );
    }
    eprintln!("hand-made tar: {same} rules as the scan, {} error for what it leaves out: {differ:?}", differ.len());
}

/// Certificates as a cluster's PKI and its kubelets make them (rcgen, P-256).
mod pki {
    pub struct Ca {
        pub pem: String,
        issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    }

    fn params(cn: &str, sans: &[&str], ca: bool) -> rcgen::CertificateParams {
        let mut p = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        if ca {
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        } else {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        }
        p
    }

    /// A CA (`ca`), or a certificate that is none (basicConstraints CA:FALSE) whose key still signs.
    pub fn ca(cn: &str, ca: bool) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let p = params(cn, &[], ca);
        let pem = p.self_signed(&key).unwrap().pem();
        Ca { pem, issuer: rcgen::Issuer::new(p, key) }
    }

    /// A serving certificate for `sans`, signed by `by`, valid until `days` from now (negative: expired).
    pub fn serving(cn: &str, sans: &[&str], by: &Ca, days: i64) -> String {
        let mut p = params(cn, sans, false);
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(400);
        p.not_after = now + time::Duration::days(days);
        p.signed_by(&rcgen::KeyPair::generate().unwrap(), &by.issuer).unwrap().pem()
    }

    /// What a kubelet without a serving certificate writes to kubelet.crt at start
    /// (client-go util/cert GenerateSelfSignedCertKey): a leaf for the host, then the `HOST-ca@TIME` CA that
    /// issued it, neither known to the cluster.
    pub fn kubelet_generated(host: &str) -> String {
        let ca = ca(&format!("{host}-ca@1764662400"), true);
        format!("{}{}", serving(&format!("{host}@1764662400"), &[host, "127.0.0.1"], &ca, 365), ca.pem)
    }
}

/// A kubelet run from kubeadm's config file (no tlsCertFile, no serverTLSBootstrap: it serves kubelet.crt).
const KUBELET_ARGV: &str =
    "/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml --kubeconfig=/etc/kubernetes/kubelet.conf";

/// A node's kubelet files with this kubelet.crt, and the cluster CA as its client CA.
fn kubelet_node(l: &Layout, ca: &pki::Ca, kubelet_crt: &str) {
    l.file("/var/lib/kubelet/config.yaml", KUBELET_CONFIG.as_bytes(), 0o644, ROOT);
    l.file("/etc/kubernetes/kubelet.conf", b"apiVersion: v1\nkind: Config\n", 0o600, ROOT);
    l.file("/etc/kubernetes/pki/ca.crt", ca.pem.as_bytes(), 0o644, ROOT);
    l.file("/var/lib/kubelet/pki/kubelet.crt", kubelet_crt.as_bytes(), 0o644, ROOT);
    l.file(
        "/var/lib/kubelet/pki/kubelet.key",
        b"-----BEGIN PRIVATE KEY-----\nCANARY-KUBELET-KEY\n-----END PRIVATE KEY-----\n",
        0o600,
        ROOT,
    );
}

/// The API server of kubeadm's capture, verifying kubelets with the CA file kubeadm has.
fn apiserver_verifying() -> String {
    format!("{} --kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt", argv(1302))
}

/// Cluster verdicts of the latest scan, by (cluster, rule id): (status, reason).
fn cluster_verdicts(db: &Path) -> BTreeMap<(String, String), (String, String)> {
    let out = sqlite(
        db,
        ".mode json\nSELECT cluster, rule_id, status, reason FROM cluster_findings WHERE scan_id = (SELECT max(id) FROM scans);",
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out }).unwrap();
    rows.iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_owned();
            ((s("cluster"), s("rule_id")), (s("status"), s("reason")))
        })
        .collect()
}

#[test]
fn the_seed_rule_for_a_whole_cluster_chains_every_kubelet_to_the_ca_its_api_server_trusts() {
    let mut fleet = Fleet::new();
    let ca = pki::ca("kubernetes", true);
    // prod: a control plane whose API server verifies kubelets with the cluster CA, and five kubelets.
    let serving = |host: &str, days: i64| pki::serving(host, &[host, "127.0.0.1"], &ca, days);
    let prod: [(&'static str, String); 6] = [
        ("cp", serving("cp", 365)),
        ("w-good", serving("w-good", 365)),
        ("w-self", pki::kubelet_generated("w-self")),
        ("w-san", pki::serving("w-san", &["elsewhere", "10.9.9.9"], &ca, 365)),
        ("w-soon", serving("w-soon", 7)),
        ("w-expired", serving("w-expired", -2)),
    ];
    for (name, crt) in &prod {
        let l = fleet.layout(name);
        kubelet_node(&l, &ca, crt);
        let processes = match *name {
            "cp" => vec![apiserver_verifying(), KUBELET_ARGV.to_owned()],
            _ => vec![KUBELET_ARGV.to_owned()],
        };
        fleet.start(name, &l, &processes, SshdOptions::default());
    }
    // odd: the API server's CA file is a certificate that is no CA, though its key signed the kubelet's.
    let not_a_ca = pki::ca("not-a-ca", false);
    let l = fleet.layout("odd-cp");
    kubelet_node(&l, &not_a_ca, &pki::serving("odd-cp", &["odd-cp"], &not_a_ca, 365));
    fleet.start("odd-cp", &l, &[apiserver_verifying(), KUBELET_ARGV.to_owned()], SshdOptions::default());

    let cluster_of = |n: &str| Some(if n == "odd-cp" { "odd" } else { "prod" });
    let inventory = fleet.inventory_in("", &cluster_of, &[]);
    scan(&inventory);
    let v = cluster_verdicts(&fleet.db());
    let get =
        |c: &str, r: &str| v.get(&(c.to_owned(), r.to_owned())).unwrap_or_else(|| panic!("{c} {r} in {v:?}")).clone();

    // The seed rule names exactly the kubelets the API server would refuse, each with why.
    let (status, reason) = get("prod", "cluster-kubelet-serving-certificates");
    assert_eq!(status, "fail", "{reason}");
    assert!(reason.starts_with("3 of 6 kubelets would fail"), "{reason}");
    assert!(reason.contains("w-self (not verified with /etc/kubernetes/pki/ca.crt of the API server on cp: self-signed by the kubelet (CN=w-self-ca@1764662400)"), "{reason}");
    assert!(reason.contains("w-san (names elsewhere, 10.9.9.9 but not the node (w-san at 127.0.0.1))"), "{reason}");
    assert!(reason.contains("w-expired (expired on "), "{reason}");
    for fine in ["cp (", "w-good", "w-soon"] {
        assert!(!reason.contains(fine), "{fine} chains: {reason}");
    }
    assert!(reason.contains("serverTLSBootstrap"), "the fix: {reason}");
    // Expiry: the kubelet certificate within 30 days and the expired one; the CA is far from it.
    let (status, reason) = get("prod", "cluster-kubelet-serving-certificates-expiry");
    assert_eq!(status, "fail", "{reason}");
    assert!(reason.starts_with("2 of "), "{reason}");
    assert!(reason.contains("CN=w-expired expired on ") && reason.contains("CN=w-soon expires on "), "{reason}");
    assert!(reason.find("w-expired").unwrap() < reason.find("w-soon").unwrap(), "soonest first: {reason}");
    let (status, reason) = get("prod", "cluster-ca-certificates-expiry");
    assert_eq!(status, "pass", "{reason}");
    // A CA file that is not a CA verifies nothing, whatever signed what.
    let (status, reason) = get("odd", "cluster-kubelet-serving-certificates");
    assert_eq!(status, "fail", "{reason}");
    assert!(reason.contains("CN=not-a-ca is not a CA certificate"), "{reason}");

    // The certificates are in the history, queryable; the kubelets' keys were never read.
    let rows = sqlite(
        &fleet.db(),
        "SELECT host, path, subject, is_ca FROM host_x509_certificates WHERE roles LIKE '%kubelet-serving%' AND position = 0 ORDER BY host;",
    );
    assert!(rows.contains("w-self|/var/lib/kubelet/pki/kubelet.crt|CN=w-self@1764662400|0"), "{rows}");
    assert_eq!(rows.lines().count(), 7, "{rows}");
    let bytes = std::fs::read(fleet.db()).unwrap();
    assert!(find(&bytes, b"CANARY-KUBELET-KEY").is_none(), "a kubelet key in the database");

    // A cluster with a host this scan could not reach leaves the seed rule open, never a pass.
    let nodes = ["cp", "w-good"];
    let cluster_of = |n: &str| nodes.contains(&n).then_some("partial");
    let inventory = fleet.inventory_in("", &cluster_of, &[("w-gone", "partial")]);
    let out = fleetaudit(&["scan", "-i", inventory.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}{}", text(&out.stdout), text(&out.stderr));
    let v = cluster_verdicts(&fleet.db());
    let (status, reason) = v[&("partial".to_owned(), "cluster-kubelet-serving-certificates".to_owned())].clone();
    assert_eq!(status, "error", "{reason}");
    assert!(reason.contains("hosts of the cluster this scan did not audit: w-gone not audited ("), "{reason}");
    assert!(text(&out.stdout).contains("cluster-kubelet-serving-certificates"), "{}", text(&out.stdout));
}
