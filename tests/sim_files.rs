//! The simulator's SFTP side, tested on its own with an SFTP client (russh-sftp over a russh client connection,
//! and OpenSSH's own `sftp`): each profile's files with the modes, owners and bytes of its manifest, the
//! permission checks a real server applies to an unprivileged login, the privileged session through sudo,
//! the file faults, and round trips paid honestly over the delay line.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetaudit::sim::tree::{FileTree, HUGE_FILE_BYTES, Kind};
use fleetaudit::sim::{self, Behavior, NodeSpec};
use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

/// Accepts exactly the node's host key.
struct Client {
    host_key: PublicKey,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(
            matches!(key, russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.host_key.key_data()),
        )
    }
}

struct Fleet {
    client_key: Arc<PrivateKey>,
    nodes: Vec<sim::RunningNode>,
}

fn spec(profile: &str, behavior: Behavior, latency: Duration) -> NodeSpec {
    NodeSpec {
        name: format!("{profile}-{}", behavior.name()),
        table: Arc::new(sim::profile(profile).unwrap().as_bytes().to_vec()),
        behavior,
        latency,
    }
}

async fn fleet(specs: Vec<NodeSpec>) -> Fleet {
    let client = sim::generate_key("client").unwrap();
    let nodes = sim::start(specs, vec![client.public_key().clone()]).await.unwrap();
    Fleet { client_key: Arc::new(client), nodes }
}

impl Fleet {
    async fn connect(&self, i: usize) -> client::Handle<Client> {
        let node = &self.nodes[i];
        let config = Arc::new(client::Config::default());
        let mut handle = client::connect(config, node.addr, Client { host_key: node.host_key.clone() }).await.unwrap();
        let auth = handle
            .authenticate_publickey("audit", PrivateKeyWithHashAlg::new(self.client_key.clone(), None))
            .await
            .unwrap();
        assert!(auth.success(), "{}: the simulator refused the client key", node.name);
        handle
    }

    /// An SFTP session as the audit login (the `sftp` subsystem).
    async fn sftp(&self, i: usize) -> Sftp {
        let handle = self.connect(i).await;
        let mut channel = handle.channel_open_session().await.unwrap();
        channel.request_subsystem(true, "sftp").await.unwrap();
        match channel.wait().await {
            Some(ChannelMsg::Success) => {}
            other => panic!("{}: the sftp subsystem was refused: {other:?}", self.nodes[i].name),
        }
        Sftp::start(handle, channel).await
    }

    /// An SFTP session as root, through `sudo -n /usr/lib/openssh/sftp-server -R`.
    async fn sudo_sftp(&self, i: usize) -> Sftp {
        let handle = self.connect(i).await;
        let channel = handle.channel_open_session().await.unwrap();
        channel.exec(true, sim::SUDO_SFTP_COMMAND).await.unwrap();
        Sftp::start(handle, channel).await
    }

    /// Runs `command` and returns (stdout, stderr, exit status).
    async fn exec(&self, i: usize, command: &str) -> (Vec<u8>, Vec<u8>, Option<u32>) {
        let handle = self.connect(i).await;
        let mut channel = handle.channel_open_session().await.unwrap();
        channel.exec(true, command).await.unwrap();
        let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, .. } => err.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        (out, err, status)
    }
}

struct Sftp {
    raw: Arc<RawSftpSession>,
    _handle: client::Handle<Client>,
}

impl Sftp {
    async fn start(handle: client::Handle<Client>, channel: russh::Channel<client::Msg>) -> Sftp {
        let raw = RawSftpSession::new(channel.into_stream());
        let version = raw.init().await.unwrap();
        assert_eq!(version.version, 3);
        Sftp { raw: Arc::new(raw), _handle: handle }
    }

    async fn stat(&self, path: &str) -> Result<FileAttributes, StatusCode> {
        self.raw.stat(path).await.map(|a| a.attrs).map_err(code)
    }

    /// The whole file, read in 32 KiB requests as a client does.
    async fn read(&self, path: &str) -> Result<Vec<u8>, StatusCode> {
        let handle = self.raw.open(path, OpenFlags::READ, FileAttributes::empty()).await.map_err(code)?.handle;
        let mut out = Vec::new();
        loop {
            match self.raw.read(&handle, out.len() as u64, 32 << 10).await {
                Ok(data) => out.extend_from_slice(&data.data),
                Err(e) if code(e.clone()) == StatusCode::Eof => break,
                Err(e) => panic!("read {path}: {e}"),
            }
        }
        self.raw.close(&handle).await.unwrap();
        Ok(out)
    }

    /// The names of a directory with their attributes, in the order the server gave them.
    async fn list(&self, path: &str) -> Result<Vec<(String, FileAttributes)>, StatusCode> {
        let handle = self.raw.opendir(path).await.map_err(code)?.handle;
        let mut out = Vec::new();
        loop {
            match self.raw.readdir(&handle).await {
                Ok(name) => out.extend(name.files.into_iter().map(|f| (f.filename, f.attrs))),
                Err(e) if code(e.clone()) == StatusCode::Eof => break,
                Err(e) => panic!("readdir {path}: {e}"),
            }
        }
        self.raw.close(&handle).await.unwrap();
        Ok(out)
    }
}

fn code(e: SftpError) -> StatusCode {
    match e {
        SftpError::Status(s) => s.status_code,
        other => panic!("not a status: {other}"),
    }
}

/// (permission bits with the file type, uid, gid, size) as the profile's manifest has them.
fn expected(tree: &FileTree, path: &str) -> (u32, u32, u32, u64) {
    let i = tree.get(path).unwrap_or_else(|| panic!("{path} is not in the profile's tree"));
    (i.type_bits() | i.mode, i.uid, i.gid, i.size())
}

fn got(a: &FileAttributes) -> (u32, u32, u32, u64) {
    (a.permissions.unwrap(), a.uid.unwrap(), a.gid.unwrap(), a.size.unwrap())
}

const NEW_PROFILES: &[&str] = &["kubeadm-default", "kubeadm-hardened", "kubeadm-loose", "rke2"];

/// Every path of every new profile, stat'ed by root (nothing is hidden from it), answers with exactly the
/// manifest's mode, owner and size; the audit login sees the same where the directories let it through.
#[tokio::test]
async fn stat_answers_with_the_manifests_modes_and_owners() {
    let f = fleet(NEW_PROFILES.iter().map(|p| spec(p, Behavior::Normal, Duration::ZERO)).collect()).await;
    for (i, profile) in NEW_PROFILES.iter().enumerate() {
        let tree = sim::find_profile(profile).unwrap().files();
        let root = f.sudo_sftp(i).await;
        let audit = f.sftp(i).await;
        let mut audited = 0;
        for path in tree.paths() {
            let lstat = root.raw.lstat(path).await.map_err(code).unwrap_or_else(|e| panic!("{profile} {path}: {e:?}"));
            assert_eq!(got(&lstat.attrs), expected(&tree, path), "{profile} {path}");
            if let Ok(attrs) = audit.raw.lstat(path).await.map_err(code) {
                assert_eq!(got(&attrs.attrs), expected(&tree, path), "{profile} {path} as audit");
                audited += 1;
            }
        }
        assert!(audited > 10, "{profile}: the audit login stat'ed only {audited} paths");
    }

    // Spot checks against kubeadm's own modes, read over the wire.
    let default = f.sftp(0).await;
    for (path, mode) in [
        ("/etc/kubernetes/manifests/kube-apiserver.yaml", 0o100600),
        ("/etc/kubernetes/admin.conf", 0o100600),
        ("/etc/kubernetes/super-admin.conf", 0o100600),
        ("/etc/kubernetes/pki/ca.crt", 0o100644),
        ("/etc/kubernetes/pki/ca.key", 0o100600),
        ("/var/lib/etcd", 0o040700),
        ("/var/lib/kubelet/config.yaml", 0o100644),
        ("/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf", 0o100644),
    ] {
        let a = default.stat(path).await.unwrap();
        assert_eq!((a.permissions.unwrap(), a.uid.unwrap(), a.gid.unwrap()), (mode, 0, 0), "{path}");
    }
    let loose = f.sftp(2).await;
    assert_eq!(loose.stat("/etc/kubernetes/admin.conf").await.unwrap().permissions, Some(0o100644));
    let etcd = loose.stat("/var/lib/etcd").await.unwrap();
    assert_eq!((etcd.permissions, etcd.uid, etcd.gid), (Some(0o040755), Some(1001), Some(1001)));
    let rke2 = f.sudo_sftp(3).await;
    let etcd = rke2.stat("/var/lib/rancher/rke2/server/db/etcd").await.unwrap();
    assert_eq!((etcd.permissions, etcd.uid, etcd.gid), (Some(0o040700), Some(997), Some(997)), "etcd:etcd 700");
    // A symlink: stat follows it, lstat does not.
    let link = "/var/lib/kubelet/pki/kubelet-client-current.pem";
    assert_eq!(default.stat(link).await.unwrap().permissions, Some(0o100600));
    assert_eq!(default.raw.lstat(link).await.unwrap().attrs.permissions, Some(0o120777));
    // Paths as a client may send them.
    assert_eq!(
        default.raw.realpath("/etc/kubernetes/../kubernetes/./pki//ca.crt").await.unwrap().files[0].filename,
        "/etc/kubernetes/pki/ca.crt"
    );
    assert_eq!(default.raw.realpath(".").await.unwrap().files[0].filename, "/home/audit");
    assert_eq!(default.stat("/etc/kubernetes/bootstrap-kubelet.conf").await.unwrap_err(), StatusCode::NoSuchFile);
}

/// A read returns the file's bytes, whatever the request size; /proc/PID/environ stats as empty and reads whole.
#[tokio::test]
async fn reads_return_the_files_bytes() {
    let f = fleet(vec![
        spec("kubeadm-default", Behavior::Normal, Duration::ZERO),
        spec("rke2", Behavior::Normal, Duration::ZERO),
    ])
    .await;
    let tree = sim::find_profile("kubeadm-default").unwrap().files();
    let audit = f.sftp(0).await;
    let config = audit.read("/var/lib/kubelet/config.yaml").await.unwrap();
    assert_eq!(config, tree.get("/var/lib/kubelet/config.yaml").unwrap().data.to_vec());
    let text = String::from_utf8(config).unwrap();
    for line in [
        "  anonymous:\n    enabled: false",
        "clientCAFile: /etc/kubernetes/pki/ca.crt",
        "  mode: Webhook",
        "rotateCertificates: true",
    ] {
        assert!(text.contains(line), "kubeadm's generated config has {line:?}");
    }
    let passwd = String::from_utf8(audit.read("/etc/passwd").await.unwrap()).unwrap();
    assert!(passwd.starts_with("root:x:0:0:") && passwd.contains("\naudit:x:1000:1000:"), "{passwd}");
    let cert = audit.read("/etc/kubernetes/pki/apiserver.crt").await.unwrap();
    assert!(cert.starts_with(b"-----BEGIN CERTIFICATE-----\n"));

    // etcd's environment: only root may read it; size 0 in stat, bytes on read, no ETCD_CONFIG_FILE.
    let environ = "/proc/1331/environ";
    assert_eq!(audit.read(environ).await.unwrap_err(), StatusCode::PermissionDenied);
    let root = f.sudo_sftp(0).await;
    assert_eq!(root.stat(environ).await.unwrap().size, Some(0));
    let env = root.read(environ).await.unwrap();
    let vars: Vec<&[u8]> = env.split(|b| *b == 0).filter(|v| !v.is_empty()).collect();
    assert!(env.ends_with(b"\0") && vars.len() >= 5, "{:?}", String::from_utf8_lossy(&env));
    assert!(vars.contains(&&b"KUBERNETES_SERVICE_HOST=10.96.0.1"[..]));
    assert!(!vars.iter().any(|v| v.starts_with(b"ETCD_")), "kubeadm's etcd is configured by flags alone");

    // A request past the server's read limit gets a short read, the rest on the next request.
    let handle =
        root.raw.open("/etc/kubernetes/manifests/kube-apiserver.yaml", OpenFlags::READ, FileAttributes::empty());
    let handle = handle.await.unwrap().handle;
    let first = root.raw.read(&handle, 0, 1 << 20).await.unwrap().data;
    assert_eq!(first, tree.get("/etc/kubernetes/manifests/kube-apiserver.yaml").unwrap().data.to_vec());
    assert_eq!(code(root.raw.read(&handle, first.len() as u64, 100).await.unwrap_err()), StatusCode::Eof);
    let fstat = root.raw.fstat(&handle).await.unwrap().attrs;
    assert_eq!(fstat.size, Some(first.len() as u64));
    root.raw.close(&handle).await.unwrap();
    assert_eq!(code(root.raw.close(&handle).await.unwrap_err()), StatusCode::Failure, "a closed handle is gone");

    // RKE2's drop-in and etcd config, verbatim from its CIS guide.
    let rke2 = f.sudo_sftp(1).await;
    let dropin = rke2.read("/var/lib/rancher/rke2/agent/etc/kubelet.conf.d/00-rke2-defaults.conf").await.unwrap();
    let research = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sim/files/rke2/00-rke2-defaults.conf");
    assert_eq!(dropin, std::fs::read(research).unwrap());
    let etcd = String::from_utf8(rke2.read("/var/lib/rancher/rke2/server/db/etcd/config").await.unwrap()).unwrap();
    assert!(etcd.contains("data-dir: /var/lib/rancher/rke2/server/db/etcd\n"), "{etcd}");
}

/// readdir lists a drop-in directory whole, `.` and `..` first, the rest in the filesystem's (hashed, not
/// lexical) order, each with its attributes; a client sorts the names itself, as the kubelet does.
#[tokio::test]
async fn readdir_lists_a_drop_in_directory() {
    let f = fleet(vec![spec("rke2", Behavior::Normal, Duration::ZERO)]).await;
    let tree = sim::find_profile("rke2").unwrap().files();
    let dir = "/var/lib/rancher/rke2/agent/etc/kubelet.conf.d";
    let audit = f.sftp(0).await;
    let listed = audit.list(dir).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    let served: Vec<String> = tree.children(dir).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, served, "the tree's order, over the wire");
    assert_eq!(&names[..2], [".", ".."]);
    let mut files: Vec<&str> = names[2..].to_vec();
    files.sort_unstable();
    assert_eq!(files, ["00-rke2-defaults.conf", "50-operator.conf", "99-old.conf.bak"]);
    for (name, attrs) in &listed[2..] {
        assert_eq!(got(attrs), expected(&tree, &format!("{dir}/{name}")), "{name}");
    }
    // The drop-ins themselves are 0600 root: listed, stat'ed, but not readable by the audit login.
    assert_eq!(audit.read(&format!("{dir}/00-rke2-defaults.conf")).await.unwrap_err(), StatusCode::PermissionDenied);
    // Not a directory; not there; a directory without search permission lists nothing.
    assert_eq!(audit.list("/etc/passwd").await.unwrap_err(), StatusCode::NoSuchFile);
    assert_eq!(audit.list("/etc/nothing").await.unwrap_err(), StatusCode::NoSuchFile);
    assert_eq!(audit.list("/var/lib/rancher/rke2/server").await.unwrap_err(), StatusCode::PermissionDenied);
}

/// The checks a real server's kernel applies to an unprivileged login, and what root may do instead.
#[tokio::test]
async fn what_the_login_may_not_read_is_denied() {
    let f = fleet(vec![
        spec("kubeadm-default", Behavior::Normal, Duration::ZERO),
        spec("kubeadm-hardened", Behavior::Normal, Duration::ZERO),
    ])
    .await;
    let audit = f.sftp(0).await;
    // No read permission: stat works, open is denied.
    assert!(audit.stat("/etc/kubernetes/admin.conf").await.is_ok());
    assert_eq!(audit.read("/etc/kubernetes/admin.conf").await.unwrap_err(), StatusCode::PermissionDenied);
    assert_eq!(audit.read("/etc/kubernetes/pki/ca.key").await.unwrap_err(), StatusCode::PermissionDenied);
    // No search permission on the directory: even a stat inside is denied (kubeadm's etcd data, 0700 root).
    assert!(audit.stat("/var/lib/etcd").await.is_ok());
    assert_eq!(audit.stat("/var/lib/etcd/member").await.unwrap_err(), StatusCode::PermissionDenied);
    assert_eq!(
        audit.stat("/var/lib/etcd/nothing").await.unwrap_err(),
        StatusCode::PermissionDenied,
        "not NoSuchFile: the name cannot be looked up"
    );

    // The hardened node closes the manifests directory and the kubelet's config: root reads both.
    let hardened = f.sftp(1).await;
    let manifest = "/etc/kubernetes/manifests/kube-apiserver.yaml";
    assert_eq!(hardened.stat(manifest).await.unwrap_err(), StatusCode::PermissionDenied);
    assert_eq!(hardened.read("/var/lib/kubelet/config.yaml").await.unwrap_err(), StatusCode::PermissionDenied);
    let root = f.sudo_sftp(1).await;
    let config = String::from_utf8(root.read("/var/lib/kubelet/config.yaml").await.unwrap()).unwrap();
    for setting in [
        "readOnlyPort: 0",
        "protectKernelDefaults: true",
        "serverTLSBootstrap: true",
        "seccompDefault: true",
        "podPidsLimit: 4096",
        "tlsCipherSuites:",
    ] {
        assert!(config.contains(setting), "{setting}");
    }
    assert!(String::from_utf8(root.read(manifest).await.unwrap()).unwrap().contains("--profiling=false"));

    // Read-only, even for root: any open for writing is refused; other requests are unsupported.
    for flags in [
        OpenFlags::WRITE,
        OpenFlags::READ | OpenFlags::APPEND,
        OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
    ] {
        let e = root.raw.open("/etc/passwd", flags, FileAttributes::empty()).await.unwrap_err();
        assert_eq!(code(e), StatusCode::PermissionDenied, "{flags:?}");
    }
    assert_eq!(code(root.raw.remove("/etc/passwd").await.unwrap_err()), StatusCode::OpUnsupported);
    assert_eq!(code(root.raw.mkdir("/tmp/x", FileAttributes::empty()).await.unwrap_err()), StatusCode::OpUnsupported);
    assert_eq!(
        code(root.raw.readlink("/var/lib/kubelet/pki/kubelet-client-current.pem").await.unwrap_err()),
        StatusCode::OpUnsupported
    );
}

/// Each file fault, as the simulator serves it.
#[tokio::test]
async fn the_file_faults_behave_as_described() {
    let f = fleet(vec![
        spec("kubeadm-default", Behavior::SftpRefused, Duration::ZERO),
        spec("kubeadm-default", Behavior::SftpDenied, Duration::ZERO),
        spec("kubeadm-default", Behavior::HugeFile, Duration::ZERO),
        spec("rke2", Behavior::YamlBomb, Duration::ZERO),
        spec("kubeadm-default", Behavior::SftpHostile, Duration::ZERO),
    ])
    .await;

    // sftp-refused: the subsystem request fails, sudo finds no sftp-server, ps still answers.
    let handle = f.connect(0).await;
    let mut channel = handle.channel_open_session().await.unwrap();
    channel.request_subsystem(true, "sftp").await.unwrap();
    assert!(matches!(channel.wait().await, Some(ChannelMsg::Failure)));
    let (out, err, status) = f.exec(0, sim::SUDO_SFTP_COMMAND).await;
    assert_eq!((out.len(), status), (0, Some(1)));
    assert!(String::from_utf8_lossy(&err).contains("sftp-server: command not found"));
    let (table, _, status) = f.exec(0, fleetaudit::ssh::REMOTE_COMMAND).await;
    assert_eq!((table.as_slice(), status), (sim::profile("kubeadm-default").unwrap().as_bytes(), Some(0)));
    handle.disconnect(Disconnect::ByApplication, "", "en").await.unwrap();

    // sftp-denied: stats answer, every open (file or directory) is denied, even for root.
    for sftp in [f.sftp(1).await, f.sudo_sftp(1).await] {
        assert_eq!(sftp.stat("/etc/passwd").await.unwrap().permissions, Some(0o100644));
        assert_eq!(sftp.read("/etc/passwd").await.unwrap_err(), StatusCode::PermissionDenied);
        assert_eq!(sftp.read("/var/lib/kubelet/config.yaml").await.unwrap_err(), StatusCode::PermissionDenied);
        assert_eq!(sftp.list("/etc/kubernetes").await.unwrap_err(), StatusCode::PermissionDenied);
    }

    // huge-file: the kubelet's config is 2 MiB, the first MiB nothing but comments, the real settings last.
    let huge = f.sftp(2).await;
    let path = "/var/lib/kubelet/config.yaml";
    let attrs = huge.stat(path).await.unwrap();
    assert_eq!((attrs.size, attrs.permissions), (Some(HUGE_FILE_BYTES as u64), Some(0o100644)));
    let data = huge.read(path).await.unwrap();
    assert_eq!(data.len(), HUGE_FILE_BYTES);
    assert!(String::from_utf8_lossy(&data[..1 << 20]).lines().all(|l| l.starts_with('#')));
    let real = sim::find_profile("kubeadm-default").unwrap().files();
    assert!(data.ends_with(&real.get(path).unwrap().data), "the real config closes the file");
    assert!(huge.read("/etc/passwd").await.is_ok(), "the other files are as usual");

    // yaml-bomb: the kubelet's drop-in is small, valid YAML whose aliases expand nine levels deep.
    let bomb = f.sudo_sftp(3).await;
    let dropin = "/var/lib/rancher/rke2/agent/etc/kubelet.conf.d/00-rke2-defaults.conf";
    let text = String::from_utf8(bomb.read(dropin).await.unwrap()).unwrap();
    assert!(text.len() < 4096, "{} bytes", text.len());
    let mut parser = saphyr_parser::Parser::new_from_str(&text);
    let (mut anchors, mut aliases) = (0, 0);
    for event in parser.by_ref() {
        match event.expect("the bomb is valid YAML: a reader must refuse it for its aliases, not its syntax").0 {
            saphyr_parser::Event::Alias(_) => aliases += 1,
            saphyr_parser::Event::SequenceStart(anchor, _) if anchor > 0 => anchors += 1,
            _ => {}
        }
    }
    assert_eq!((anchors, aliases), (9, 8 * 9), "nine levels, each of nine aliases to the level below: 9^9 strings");
    assert!(text.contains("authentication:"), "the node's real settings follow the bomb");

    // sftp-hostile: a proper greeting, then a reply whose length says 4 GiB, and the channel stays open.
    let handle = f.connect(4).await;
    let mut channel = handle.channel_open_session().await.unwrap();
    channel.request_subsystem(true, "sftp").await.unwrap();
    let stat = [&[0u8, 0, 0, 19, 17, 0, 0, 0, 1, 0, 0, 0, 10][..], b"/etc/hosts"].concat();
    channel.data(&[0u8, 0, 0, 5, 1, 0, 0, 0, 3][..]).await.unwrap();
    let mut got = Vec::new();
    let mut stat_sent = false;
    while got.len() < 9 + 4 + 9 {
        match tokio::time::timeout(Duration::from_secs(10), channel.wait()).await.expect("the server answers") {
            Some(ChannelMsg::Data { data }) => got.extend_from_slice(&data),
            Some(ChannelMsg::Success | ChannelMsg::WindowAdjusted { .. }) => {}
            other => panic!("{other:?} after {got:?}"),
        }
        if got.len() >= 9 && !stat_sent {
            assert_eq!(got[..9], [0, 0, 0, 5, 2, 0, 0, 0, 3], "SSH_FXP_VERSION 3");
            channel.data(&stat[..]).await.unwrap();
            stat_sent = true;
        }
    }
    assert_eq!(got[9..13], sim::HOSTILE_LENGTH.to_be_bytes());
    assert_eq!(got[13], 103, "the start of an SSH_FXP_DATA packet");
    let more = tokio::time::timeout(Duration::from_millis(300), channel.wait()).await;
    assert!(matches!(more, Err(_) | Ok(Some(ChannelMsg::Data { .. }))), "the channel stays open: {more:?}");
    handle.disconnect(Disconnect::ByApplication, "", "en").await.unwrap();
}

/// Pipelined requests cost one round trip, sequential ones one each: the delay line holds back every flight
/// of the server's bytes. Lower bounds are exact (a delay line cannot deliver early); the one upper bound has
/// two latencies of slack for a busy machine.
#[tokio::test]
async fn pipelined_requests_cost_one_round_trip() {
    let latency = Duration::from_millis(100);
    let f = fleet(vec![spec("kubeadm-default", Behavior::Normal, latency)]).await;
    let sftp = f.sftp(0).await;
    let tree = sim::find_profile("kubeadm-default").unwrap().files();
    let paths: Vec<String> =
        tree.paths().filter(|p| p.starts_with("/etc/kubernetes/")).take(20).map(str::to_owned).collect();
    assert_eq!(paths.len(), 20);

    let started = Instant::now();
    for path in &paths {
        sftp.stat(path).await.unwrap();
    }
    let sequential = started.elapsed();
    assert!(sequential >= 20 * latency, "20 sequential stats took {sequential:?}");

    let started = Instant::now();
    let mut batch = tokio::task::JoinSet::new();
    for path in paths.clone() {
        let raw = sftp.raw.clone();
        batch.spawn(async move { raw.stat(path).await.map(|a| a.attrs.permissions) });
    }
    let mut answered = 0;
    while let Some(result) = batch.join_next().await {
        assert!(result.unwrap().unwrap().is_some());
        answered += 1;
    }
    let pipelined = started.elapsed();
    assert_eq!(answered, 20);
    assert!(pipelined >= latency, "{pipelined:?}: faster than the latency");
    assert!(pipelined < 3 * latency, "20 pipelined stats took {pipelined:?}, sequential {sequential:?}");
}

/// OpenSSH's own `sftp` client lists and fetches from the simulator: the server speaks SFTP as OpenSSH does.
#[tokio::test]
async fn openssh_sftp_lists_and_fetches() {
    let sftp = Path::new("/usr/bin/sftp");
    assert!(sftp.exists(), "this test needs OpenSSH's sftp client: apt-get install openssh-client");
    let f = fleet(vec![
        spec("rke2", Behavior::Normal, Duration::ZERO),
        spec("kubeadm-default", Behavior::Normal, Duration::ZERO),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&key).unwrap();
        file.write_all(sim::private_key_text(&f.client_key).as_bytes()).unwrap();
    }
    let known = dir.path().join("known_hosts");
    let lines: Vec<String> = f.nodes.iter().map(|n| n.known_hosts_line().unwrap()).collect();
    std::fs::write(&known, lines.join("\n") + "\n").unwrap();
    // The client runs beside the simulator's tasks, never blocking the runtime they share.
    let run = async |node: &sim::RunningNode, batch: &str| {
        let batch_file = dir.path().join("batch");
        std::fs::write(&batch_file, batch).unwrap();
        let out = tokio::process::Command::new(sftp)
            .arg("-b")
            .arg(&batch_file)
            .args(["-P", &node.addr.port().to_string(), "-i"])
            .arg(&key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .arg("audit@127.0.0.1")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&f.nodes[0], "ls -l /var/lib/rancher/rke2/agent/etc/kubelet.conf.d\n").await;
    assert!(ok, "{out}\n{err}");
    for name in ["00-rke2-defaults.conf", "50-operator.conf", "99-old.conf.bak"] {
        let line = out.lines().find(|l| l.ends_with(name)).unwrap_or_else(|| panic!("{name} not listed: {out}"));
        assert!(line.starts_with("-rw-------") && line.contains(" root "), "{line}");
    }
    let local = dir.path().join("config.yaml");
    let (ok, out, err) = run(&f.nodes[1], &format!("get /var/lib/kubelet/config.yaml {}\n", local.display())).await;
    assert!(ok, "{out}\n{err}");
    let tree = sim::find_profile("kubeadm-default").unwrap().files();
    assert_eq!(std::fs::read(&local).unwrap(), tree.get("/var/lib/kubelet/config.yaml").unwrap().data.to_vec());
    // A file the login cannot read: OpenSSH reports the server's PERMISSION_DENIED.
    let (ok, out, err) =
        run(&f.nodes[1], &format!("get /etc/kubernetes/admin.conf {}\n", dir.path().join("x").display())).await;
    assert!(!ok && err.contains("Permission denied"), "{out}\n{err}");
    assert!(tree.get("/etc/kubernetes/admin.conf").is_some_and(|i| i.kind == Kind::File));
}
