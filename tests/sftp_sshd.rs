//! Files over SFTP against a real OpenSSH sshd on loopback (`Subsystem sftp internal-sftp`, no Subsystem line,
//! OpenSSH's sftp-server logging every request, and sftp-server through sudo), the audit login the harness's
//! unprivileged user, the files created by each test with real modes and owners.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fleetaudit::files::{Entry, Kind, Meta, Problem, Request};
use fleetaudit::ssh::{FileAccess, HostKeyPolicy, HostSession, Target, Transport, TransportConfig};
use support::{Sshd, SshdOptions, TEST_USER, ensure_user, keygen};

/// A second unprivileged user, to own files the audit login is not.
const OTHER_USER: &str = "fleetaudit-test2";

const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// A node: an sshd in its own PID namespace, a directory of files the test lays out, and the client's key and
/// known_hosts.
struct Node {
    dir: tempfile::TempDir,
    keys: Vec<PathBuf>,
    known: PathBuf,
    sshd: Sshd,
}

impl Node {
    fn start(processes: &[&str], options: &SshdOptions<'_>) -> Node {
        let dir = tempfile::tempdir().unwrap();
        // The audit login must reach the files below it.
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        Node::start_in(dir, processes, options)
    }

    fn start_in(dir: tempfile::TempDir, processes: &[&str], options: &SshdOptions<'_>) -> Node {
        let key = keygen(dir.path(), "id_ed25519");
        let sshd = Sshd::start_opts(&dir.path().join("node"), &[&key], processes, &[], options);
        let known = dir.path().join("known_hosts");
        support::write(&known, &sshd.known_hosts_line("127.0.0.1"));
        Node { dir, keys: vec![key], known, sshd }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn transport(&self) -> Transport {
        Transport::new(TransportConfig {
            known_hosts: vec![self.known.clone()],
            policy: HostKeyPolicy::Strict,
            accepted_hosts: self.dir.path().join("accepted"),
            shared_accepted: Vec::new(),
        })
        .unwrap()
    }

    fn target(&self) -> Target<'_> {
        Target {
            name: "node",
            address: "127.0.0.1",
            port: self.sshd.port,
            user: TEST_USER,
            identity_files: &self.keys,
            certificate_files: &[],
            known_hosts: &[],
            jump: &[],
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(10),
        }
    }

    /// A session that has run `ps -ef` (and so opened SFTP beside it); returns the `ps` output too.
    async fn session<'t>(&self, t: &'t Transport, files: &FileAccess) -> (HostSession<'t>, String) {
        let mut s = t.open(&self.target(), files).await.unwrap();
        let ps = s.ps().await.unwrap();
        (s, String::from_utf8(ps).unwrap())
    }
}

/// Creates a file with exactly this content, mode and owner.
fn put(path: &Path, content: &[u8], mode: u32, owner: (u32, u32)) {
    std::fs::write(path, content).unwrap();
    own(path, mode, owner);
}

fn mkdir(path: &Path, mode: u32, owner: (u32, u32)) {
    std::fs::create_dir(path).unwrap();
    own(path, mode, owner);
}

fn own(path: &Path, mode: u32, (uid, gid): (u32, u32)) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    // After chown, which clears set-id bits.
    std::fs::set_permissions(path, PermissionsExt::from_mode(mode)).unwrap();
}

fn found(entry: &Entry) -> &Meta {
    entry.meta().unwrap_or_else(|| panic!("expected a stat, got {entry:?}"))
}

fn meta(kind: Kind, mode: u32, (uid, gid): (u32, u32), size: u64) -> Meta {
    Meta { kind, mode, uid, gid, size }
}

const ROOT: (u32, u32) = (0, 0);

/// A directory's size as the filesystem gives it (4096 on ext4, less on tmpfs).
fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[tokio::test]
async fn stat_read_and_list_answer_as_the_files_are_on_disk() {
    let audit = ensure_user(TEST_USER);
    let other = ensure_user(OTHER_USER);
    let node = Node::start(&[], &SshdOptions::default());
    let p = |name: &str| node.dir.path().join(name);
    let kubelet = b"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nreadOnlyPort: 0\n";
    put(&p("config.yaml"), kubelet, 0o644, audit);
    let admin = b"users:\n- name: kubernetes-admin\n";
    put(&p("admin.conf"), admin, 0o600, ROOT);
    put(&p("other.conf"), b"x", 0o640, other);
    std::os::unix::fs::symlink(p("config.yaml"), p("link.yaml")).unwrap();
    mkdir(&p("manifests"), 0o755, ROOT);
    for m in ["kube-scheduler.yaml", "etcd.yaml", "kube-apiserver.yaml"] {
        put(&p("manifests").join(m), b"kind: Pod\n", 0o600, ROOT);
    }
    mkdir(&p("pki"), 0o700, other);
    put(&p("pki/ca.key"), b"-----BEGIN", 0o600, other);
    // kubeadm's /var/lib/etcd: root-only, so what is inside cannot even be stat'ed.
    mkdir(&p("etcd"), 0o700, ROOT);
    mkdir(&p("etcd/member"), 0o700, ROOT);
    // Readable but not searchable: OpenSSH lists nothing of it (it lstats every entry and skips failures).
    mkdir(&p("unsearchable"), 0o744, ROOT);
    put(&p("unsearchable/10-drop-in.conf"), b"x", 0o644, ROOT);
    put(&p("big.bin"), &vec![b'x'; 2 << 20], 0o644, audit);

    let t = node.transport();
    let (mut s, _) = node.session(&t, &FileAccess::default()).await;
    let requests = [
        Request::stat(node.path("config.yaml")),
        Request::read(node.path("config.yaml")),
        Request::stat(node.path("admin.conf")),
        Request::read(node.path("admin.conf")),
        Request::stat(node.path("other.conf")),
        Request::stat(node.path("link.yaml")),
        Request::list(node.path("manifests")),
        Request::read(node.path("manifests")),
        Request::list(node.path("config.yaml")),
        Request::stat(node.path("pki")),
        Request::list(node.path("pki")),
        Request::stat(node.path("pki/ca.key")),
        Request::stat(node.path("etcd")),
        Request::stat(node.path("etcd/member")),
        Request::list(node.path("unsearchable")),
        Request::stat(node.path("missing")),
        Request::read(node.path("missing")),
        Request::list(node.path("missing")),
        Request::read(node.path("big.bin")),
        Request::stat("relative/path"),
    ];
    let answers = s.fetch(&requests).await;
    let paths: Vec<&str> = answers.iter().map(|(p, _)| p.as_str()).collect();
    let asked: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths[..asked.len()], asked, "one answer per request, in order");
    // Then the stats the listing of `manifests` gave with its names (its entries' lstat, as OpenSSH sends them):
    // what the engine would stat next, answered in the same round trips.
    let extra: Vec<(&str, &Entry)> = answers[asked.len()..].iter().map(|(p, e)| (p.as_str(), e)).collect();
    let manifest = |m: &str| node.path(&format!("manifests/{m}"));
    let expected = [manifest("etcd.yaml"), manifest("kube-apiserver.yaml"), manifest("kube-scheduler.yaml")];
    assert_eq!(extra.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>(), expected);
    for (_, e) in &extra {
        assert_eq!(found(e), &meta(Kind::File, 0o600, ROOT, 10));
    }
    let a: Vec<&Entry> = answers.iter().map(|(_, e)| e).collect();

    let size = kubelet.len() as u64;
    assert_eq!(found(a[0]), &meta(Kind::File, 0o644, audit, size));
    assert_eq!(found(a[1]), &meta(Kind::File, 0o644, audit, size));
    assert_eq!(a[1].content().unwrap().bytes, kubelet);
    assert_eq!(found(a[2]), &meta(Kind::File, 0o600, ROOT, admin.len() as u64));
    assert_eq!(a[3].problem(), Some(&Problem::Denied), "root's 0600 file: stat'ed above, not readable");
    assert_eq!(found(a[4]), &meta(Kind::File, 0o640, other, 1));
    assert_eq!(found(a[5]), &meta(Kind::File, 0o644, audit, size), "stat follows the symlink");
    let Entry::Found { meta: m, names: Some(names), .. } = a[6] else { panic!("{:?}", a[6]) };
    assert_eq!((m.kind, m.mode, m.uid), (Kind::Dir, 0o755, 0));
    assert_eq!(names, &["etcd.yaml", "kube-apiserver.yaml", "kube-scheduler.yaml"]);
    assert!(matches!(a[7], Entry::Found { meta: Meta { kind: Kind::Dir, .. }, content: None, .. }), "{:?}", a[7]);
    assert!(matches!(a[8], Entry::Found { meta: Meta { kind: Kind::File, .. }, names: None, .. }), "{:?}", a[8]);
    assert_eq!(found(a[9]), &meta(Kind::Dir, 0o700, other, size_of(&p("pki"))));
    assert_eq!(a[10].problem(), Some(&Problem::Denied));
    assert_eq!(a[11].problem(), Some(&Problem::Denied), "inside another user's 0700 directory");
    assert_eq!(found(a[12]), &meta(Kind::Dir, 0o700, ROOT, size_of(&p("etcd"))));
    assert_eq!(a[13].problem(), Some(&Problem::Denied));
    assert_eq!(a[14].problem(), Some(&Problem::Denied), "an unsearchable directory is not an empty one");
    for e in &a[15..18] {
        assert_eq!(e.problem(), Some(&Problem::Missing));
    }
    // Too large to read, but its stat is kept for its mode and owner rules.
    let stat = Some(meta(Kind::File, 0o644, audit, 2 << 20));
    assert_eq!(a[18].problem(), Some(&Problem::TooLarge { size: 2 << 20, limit: 1 << 20, meta: stat }));
    assert!(matches!(a[19].problem(), Some(Problem::Failed { message }) if message.contains("not an absolute path")));

    let stats = s.file_stats();
    // Everything read: the config, and of the 2 MiB file only the first read (64 KiB), sent with its fstat.
    assert_eq!(stats.bytes, size + (64 << 10), "{stats:?}");
    assert_eq!(stats.round_trips, 2, "stats, opens and opendirs; then fstats, reads and readdirs: {stats:?}");
    assert_eq!(stats.requests, requests.len());
    s.close().await;
}

#[tokio::test]
async fn zero_size_proc_files_are_read_to_their_end() {
    let (uid, gid) = ensure_user(TEST_USER);
    // An etcd configured by its environment, running as the audit user; PID 1 (bash, then sshd) is root's.
    let script = format!(
        "setpriv --reuid={uid} --regid={gid} --clear-groups env -i ETCD_NAME=node-1 \
         ETCD_DATA_DIR=/var/lib/etcd sleep 600 &\n"
    );
    let node = Node::start(&[], &SshdOptions { script: &script, ..SshdOptions::default() });
    let t = node.transport();
    let (mut s, ps) = node.session(&t, &FileAccess::default()).await;
    let table = fleetaudit::ps::parse(ps.as_bytes()).unwrap();
    let etcd = table.processes.iter().find(|p| p.cmd == "sleep 600").unwrap_or_else(|| panic!("{ps}"));
    let environ = format!("/proc/{}/environ", etcd.pid);
    let answers = s.fetch(&[Request::read(&environ), Request::read("/proc/1/environ")]).await;
    let (Entry::Found { meta, content: Some(c), .. }, Entry::Problem(root)) = (&answers[0].1, &answers[1].1) else {
        panic!("{answers:?}")
    };
    assert_eq!((meta.kind, meta.size, meta.uid), (Kind::File, 0, uid), "/proc reports size 0");
    assert_eq!(c.bytes, b"ETCD_NAME=node-1\0ETCD_DATA_DIR=/var/lib/etcd\0");
    assert_eq!(root, &Problem::Denied, "another user's environment");
    // OpenSSH's server answers a read with one read(2), and Linux answers one of /proc/PID/environ with all of
    // it up to the count asked: a short answer is its end, no round trip more than a regular file.
    assert_eq!(s.file_stats().round_trips, 2, "{:?}", s.file_stats());
    s.close().await;
}

#[tokio::test]
async fn a_proc_file_larger_than_the_first_read_is_read_to_its_end() {
    let (uid, gid) = ensure_user(TEST_USER);
    // 100,000 bytes of environment: more than the first read (64 KiB), so a full answer asks for the rest.
    let big = "x".repeat(100_000);
    let script = format!(
        "setpriv --reuid={uid} --regid={gid} --clear-groups env -i ETCD_NAME=node-1 ETCD_BIG={big} sleep 601 &\n"
    );
    let node = Node::start(&[], &SshdOptions { script: &script, ..SshdOptions::default() });
    let t = node.transport();
    let (mut s, ps) = node.session(&t, &FileAccess::default()).await;
    let table = fleetaudit::ps::parse(ps.as_bytes()).unwrap();
    let etcd = table.processes.iter().find(|p| p.cmd == "sleep 601").unwrap_or_else(|| panic!("{ps}"));
    let answers = s.fetch(&[Request::read(format!("/proc/{}/environ", etcd.pid))]).await;
    let Entry::Found { content: Some(c), .. } = &answers[0].1 else { panic!("{answers:?}") };
    assert_eq!(c.bytes, format!("ETCD_NAME=node-1\0ETCD_BIG={big}\0").as_bytes(), "whole, not the first 64 KiB");
    // Open; the first 64 KiB (a full answer); the rest, short but over 32 KiB, which a server reading 32 KiB at a
    // time could also answer; the end.
    assert_eq!(s.file_stats().round_trips, 4, "{:?}", s.file_stats());
    s.close().await;
}

#[tokio::test]
async fn without_a_subsystem_ps_still_works_and_every_file_says_how_to_enable_sftp() {
    let node = Node::start(
        &["kube-apiserver --anonymous-auth=false"],
        &SshdOptions { sftp_subsystem: Some(""), ..SshdOptions::default() },
    );
    let t = node.transport();
    let (mut s, ps) = node.session(&t, &FileAccess::default()).await;
    assert!(ps.contains("kube-apiserver --anonymous-auth=false"), "{ps}");
    let reason = s.sftp_unavailable().expect("SFTP refused").to_owned();
    assert!(reason.contains("no `Subsystem sftp` line") && reason.contains("Subsystem sftp internal-sftp"), "{reason}");
    let answers = s.fetch(&[Request::stat("/etc/passwd"), Request::read("/etc/group")]).await;
    for (_, e) in &answers {
        assert_eq!(e.problem(), Some(&Problem::Unavailable { reason: reason.clone() }));
    }
    s.close().await;
}

/// A sudoers drop-in, removed when dropped.
struct Sudoers(PathBuf);

impl Sudoers {
    fn allow(line: &str) -> Sudoers {
        support::need("sudo", "sudo");
        // sudo skips drop-ins whose name contains a '.' (sudoers(5), #includedir).
        let path = PathBuf::from(format!("/etc/sudoers.d/fleetaudit-test-sftp-{}", std::process::id()));
        std::fs::write(&path, format!("{line}\n")).unwrap();
        std::fs::set_permissions(&path, PermissionsExt::from_mode(0o440)).unwrap();
        let guard = Sudoers(path);
        let check = Command::new("visudo").arg("-cf").arg(&guard.0).output().unwrap();
        assert!(check.status.success(), "visudo -cf: {}", support::text(&check.stdout));
        guard
    }
}

impl Drop for Sudoers {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// sudo works inside the test's PID namespace: it needs no terminal with `-n` (and Debian's `Defaults use_pty`
/// applies only when sudo runs in a terminal, which a command over SSH without a pty does not), and it reads
/// /etc/sudoers from the shared filesystem.
#[tokio::test]
async fn the_read_only_sftp_server_through_sudo_reaches_root_only_files() {
    support::need(SFTP_SERVER, "openssh-sftp-server");
    let _sudoers = Sudoers::allow(&format!("{TEST_USER} ALL=(root) NOPASSWD: {SFTP_SERVER} -R"));
    let node = Node::start(&[], &SshdOptions::default());
    let p = |name: &str| node.dir.path().join(name);
    mkdir(&p("etcd"), 0o700, ROOT);
    mkdir(&p("etcd/member"), 0o700, ROOT);
    put(&p("etcd/member/snap"), b"root only", 0o600, ROOT);
    let requests = [
        Request::stat(node.path("etcd/member")),
        Request::read(node.path("etcd/member/snap")),
        Request::list(node.path("etcd")),
        Request::read("/proc/1/environ"),
    ];

    let t = node.transport();
    let (mut plain, _) = node.session(&t, &FileAccess::default()).await;
    let denied = plain.fetch(&requests).await;
    assert!(denied.iter().all(|(_, e)| e.problem() == Some(&Problem::Denied)), "{denied:?}");
    plain.close().await;

    let sudo = FileAccess { sftp_command: Some(format!("sudo -n {SFTP_SERVER} -R")), ..FileAccess::default() };
    let (mut s, _) = node.session(&t, &sudo).await;
    assert_eq!(s.sftp_unavailable(), None);
    let a = s.fetch(&requests).await;
    assert_eq!(found(&a[0].1), &meta(Kind::Dir, 0o700, ROOT, size_of(&p("etcd/member"))));
    assert_eq!(a[1].1.content().unwrap().bytes, b"root only");
    assert!(matches!(&a[2].1, Entry::Found { names: Some(n), .. } if n == &["member"]), "{:?}", a[2]);
    assert!(a[3].1.content().is_some_and(|c| !c.bytes.is_empty()), "root's process environment: {:?}", a[3]);
    s.close().await;

    // Anything but exactly the allowed command is refused by sudo, and the reason gives the sudoers line.
    let writable = FileAccess { sftp_command: Some(format!("sudo -n {SFTP_SERVER}")), ..FileAccess::default() };
    let (mut s, _) = node.session(&t, &writable).await;
    let reason = s.sftp_unavailable().expect("refused by sudo").to_owned();
    assert!(reason.contains("exited with status 1: ") && reason.contains("sudo: a password is required"), "{reason}");
    assert!(reason.contains(&format!("`{TEST_USER} ALL=(root) NOPASSWD: {SFTP_SERVER}`")), "{reason}");
    let e = s.fetch(&requests[..1]).await;
    assert_eq!(e[0].1.problem(), Some(&Problem::Unavailable { reason }));
    s.close().await;
    let missing =
        FileAccess { sftp_command: Some("/usr/lib/openssh/no-sftp-server -R".into()), ..FileAccess::default() };
    let (s, _) = node.session(&t, &missing).await;
    let reason = s.sftp_unavailable().expect("no such program").to_owned();
    assert!(
        reason.contains("exited with status 127") && reason.contains("/usr/libexec/openssh/sftp-server"),
        "{reason}"
    );
    s.close().await;

    // -R: the server the sudoers line allows refuses every write, whoever connects to it (OpenSSH's own client).
    let batch = p("batch");
    let target = p("etcd/written");
    support::write(&batch, &format!("put /etc/hostname {}\n", target.display()));
    let out = Command::new("sftp")
        .args(["-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", node.known.display()))
        .arg("-i")
        .arg(&node.keys[0])
        .args(["-P", &node.sshd.port.to_string(), "-s", &format!("sudo -n {SFTP_SERVER} -R"), "-b"])
        .arg(&batch)
        .arg(format!("{TEST_USER}@127.0.0.1"))
        .output()
        .expect("sftp (openssh-client)");
    assert!(!out.status.success(), "a write through the read-only server: {}", support::text(&out.stdout));
    assert!(support::text(&out.stderr).contains("Permission denied"), "{}", support::text(&out.stderr));
    assert!(!target.exists());
}

/// OpenSSH's sftp-server logging every request it serves, through the user's shell, which sshd runs a
/// Subsystem command with: returns the Subsystem line's command and the log.
fn logged_sftp_server(dir: &Path) -> (String, PathBuf) {
    support::need(SFTP_SERVER, "openssh-sftp-server");
    let log = dir.join("sftp-server.log");
    put(&log, b"", 0o644, ensure_user(TEST_USER));
    (format!("{SFTP_SERVER} -e -l DEBUG3 2>>{}", log.display()), log)
}

/// The requests sftp-server served, in the order it served them: ("open", path or handle), ("read", ...).
fn served(log: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(log).unwrap();
    let request = regex::Regex::new(r#"^debug\d: request \d+: (\w+)(?: flags \d+)?(?: "([^"]*)")?"#).unwrap();
    let named = regex::Regex::new(r#"^(?:open|stat name|opendir) "([^"]*)""#).unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(c) = request.captures(line).filter(|c| &c[1] != "sent") {
            out.push((c[1].to_owned(), c.get(2).map_or("", |m| m.as_str()).to_owned()));
        } else if let (Some(c), Some(last)) = (named.captures(line), out.last_mut()) {
            // open, stat and opendir log their path on the next line.
            last.1 = c[1].to_owned();
        }
    }
    out
}

#[tokio::test]
async fn a_batch_of_fifty_files_costs_the_round_trips_of_one() {
    let audit = ensure_user(TEST_USER);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let (subsystem, log) = logged_sftp_server(dir.path());
    let node = Node::start_in(dir, &[], &SshdOptions { sftp_subsystem: Some(&subsystem), ..SshdOptions::default() });
    for i in 0..50 {
        put(&node.dir.path().join(format!("f{i:02}.conf")), format!("file {i}\n").as_bytes(), 0o644, audit);
    }
    mkdir(&node.dir.path().join("d"), 0o755, audit);
    let t = node.transport();
    let (mut s, _) = node.session(&t, &FileAccess::default()).await;

    let one = s.fetch(&[Request::read(node.path("f00.conf"))]).await;
    assert_eq!(one[0].1.content().unwrap().bytes, b"file 0\n");
    let after_one = s.file_stats();
    assert_eq!(after_one.round_trips, 2, "{after_one:?}");

    let mut batch: Vec<Request> = (0..50).map(|i| Request::read(node.path(&format!("f{i:02}.conf")))).collect();
    batch.extend((0..10).map(|i| Request::stat(node.path(&format!("f{i:02}.conf")))));
    batch.push(Request::list(node.path("d")));
    let answers = s.fetch(&batch).await;
    for (i, (_, e)) in answers.iter().take(50).enumerate() {
        assert_eq!(e.content().unwrap().bytes, format!("file {i}\n").as_bytes());
    }
    assert!(answers[50..60].iter().all(|(_, e)| e.meta().is_some_and(|m| m.kind == Kind::File)));
    assert!(matches!(&answers[60].1, Entry::Found { names: Some(n), .. } if n.is_empty()), "{:?}", answers[60]);
    let stats = s.file_stats();
    assert_eq!(stats.round_trips - after_one.round_trips, 2, "61 requests, the round trips of one: {stats:?}");
    // A third batch makes sure the second's closes (sent without waiting) have reached the server.
    s.fetch(&[Request::stat(node.path("d"))]).await;
    s.close().await;

    // The server's side: each round came whole before the next began. Of the 50 files: every open before the
    // first fstat, every fstat and read before the first close.
    let served = served(&log);
    let mut kinds: Vec<&str> =
        served.iter().map(|(k, _)| k.as_str()).skip_while(|k| *k != "close").skip_while(|k| *k == "close").collect();
    // The second batch ends with its closes; the third batch's stat follows them.
    kinds.truncate(kinds.iter().rposition(|k| *k == "close").expect("closes") + 1);
    let last = |k: &str| kinds.iter().rposition(|x| *x == k).unwrap();
    let first = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
    assert_eq!(kinds.iter().filter(|k| **k == "open").count(), 50, "{kinds:?}");
    assert!(last("open") < first("fstat") && last("stat") < first("fstat"), "{kinds:?}");
    assert!(last("read") < first("close") && last("readdir") < first("close"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "read").count(), 50, "one read a file: {kinds:?}");
}

#[tokio::test]
async fn limits_refuse_rather_than_read() {
    let audit = ensure_user(TEST_USER);
    let node = Node::start(&[], &SshdOptions::default());
    let p = |name: &str| node.dir.path().join(name);
    put(&p("ten"), b"0123456789", 0o644, audit);
    put(&p("eleven"), b"0123456789A", 0o644, audit);
    // Opening a FIFO with no writer blocks OpenSSH's sftp-server for good: only the time budget ends it.
    let fifo = p("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    own(&fifo, 0o644, audit);
    let t = node.transport();

    let small = FileAccess { max_file_bytes: 10, max_files: 4, ..FileAccess::default() };
    let (mut s, _) = node.session(&t, &small).await;
    let a = s.fetch(&[Request::read(node.path("ten")), Request::read(node.path("eleven")), Request::stat("/")]).await;
    assert_eq!(a[0].1.content().unwrap().bytes, b"0123456789");
    let stat = Some(meta(Kind::File, 0o644, audit, 11));
    assert_eq!(a[1].1.problem(), Some(&Problem::TooLarge { size: 11, limit: 10, meta: stat }));
    let a = s.fetch(&[Request::stat("/etc"), Request::stat("/usr")]).await;
    assert!(a[0].1.meta().is_some());
    let Some(Problem::OverBudget { what }) = a[1].1.problem() else { panic!("{a:?}") };
    assert!(what.contains("max_files = 4") && what.contains("raise max_files"), "{what}");
    s.close().await;

    let budget = FileAccess { file_budget: Duration::from_secs(1), ..FileAccess::default() };
    let (mut s, _) = node.session(&t, &budget).await;
    let a = s.fetch(&[Request::stat(node.path("ten")), Request::read(node.path("fifo"))]).await;
    assert_eq!(found(&a[0].1).size, 10, "answered before the open that hung");
    let Some(Problem::OverBudget { what }) = a[1].1.problem() else { panic!("{a:?}") };
    assert!(what.contains("file_budget = 1s"), "{what}");
    let a = s.fetch(&[Request::stat("/")]).await;
    assert!(matches!(a[0].1.problem(), Some(Problem::OverBudget { .. })), "the budget is per host and scan: {a:?}");
    s.close().await;
}

/// The reads sftp-server served of `path`, in order: (offset, length) as asked.
fn reads_of(log: &Path, path: &str) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(log).unwrap();
    let read =
        regex::Regex::new(r#"^debug\d: request \d+: read "([^"]*)" \(handle \d+\) off (\d+) len (\d+)$"#).unwrap();
    let reads: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|l| read.captures(l))
        .filter(|c| &c[1] == path)
        .map(|c| (c[2].parse().unwrap(), c[3].parse().unwrap()))
        .collect();
    assert!(!reads.is_empty(), "no read of {path} in the log:\n{text}");
    reads
}

/// The bytes sftp-server read of `path` in all, as it logs them when the handle is closed.
fn bytes_read(log: &Path, path: &str) -> u64 {
    let text = std::fs::read_to_string(log).unwrap();
    let close = regex::Regex::new(r#"^close "([^"]*)" bytes read (\d+) written \d+$"#).unwrap();
    let read = text.lines().filter_map(|l| close.captures(l)).find(|c| &c[1] == path);
    read.unwrap_or_else(|| panic!("no close of {path} in the log:\n{text}"))[2].parse().unwrap()
}

/// Whether `pem` is laid out as Go's `pem.Encode` writes it: LF line ends, 64 base64 characters a line, the
/// last line of a block no longer.
fn go_layout(pem: &str) -> bool {
    let mut block: Vec<&str> = Vec::new();
    for line in pem.split_inclusive('\n') {
        let Some(line) = line.strip_suffix('\n') else { return false };
        if line.contains('\r') {
            return false;
        }
        if line.starts_with("-----BEGIN ") {
            block.clear();
        } else if line.starts_with("-----END ") {
            let Some((last, full)) = block.split_last() else { return false };
            if full.iter().any(|l| l.len() != 64) || last.is_empty() || last.len() > 64 {
                return false;
            }
        } else {
            block.push(line);
        }
    }
    pem.ends_with('\n')
}

/// The kubelet's rotated serving certificate (`kubelet-server-current.pem`: its certificates, then its private
/// key) asked for as certificates: the answer is the certificates alone, and sftp-server's own log shows it was
/// never asked for a byte past the key's BEGIN line (the 27 bytes that tell it is no certificate); of a file that
/// starts with its key, for that line alone.
#[tokio::test]
async fn a_rotated_serving_certificate_is_read_up_to_its_key_and_never_past_it() {
    let audit = ensure_user(TEST_USER);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let (subsystem, log) = logged_sftp_server(dir.path());
    let node = Node::start_in(dir, &[], &SshdOptions { sftp_subsystem: Some(&subsystem), ..SshdOptions::default() });

    // The cluster CA, and the node's serving certificate it signed, with its key, as rcgen writes them.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "kubernetes");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec!["node-1".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf_params.distinguished_name.push(rcgen::DnType::CommonName, "system:node:node-1");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap().pem();
    let key = leaf_key.serialize_pem();
    for pem in [&ca, &leaf, &key] {
        assert!(go_layout(pem), "rcgen no longer writes PEM as Go does:\n{pem}");
    }
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{key}");
    // The key's base64, which must never come back.
    let secret: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----")).collect();

    let certs = format!("{leaf}{ca}");
    let current = format!("{certs}{key}");
    let key_first = format!("{key}{leaf}");
    let p = |name: &str| node.dir.path().join(name);
    put(&p("kubelet-server-current.pem"), current.as_bytes(), 0o600, audit);
    put(&p("key-first.pem"), key_first.as_bytes(), 0o600, audit);
    put(&p("ca.crt"), ca.as_bytes(), 0o644, audit);

    let t = node.transport();
    let (mut s, _) = node.session(&t, &FileAccess::default()).await;
    let no_key = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("PRIVATE KEY") && !secret.iter().any(|l| text.contains(l)), "the key came back: {text}");
    };

    // The chain of two, then the key: both certificates, nothing of the key.
    let before = s.file_stats();
    let a = s.fetch(&[Request::certs(node.path("kubelet-server-current.pem"))]).await;
    assert_eq!(found(&a[0].1), &meta(Kind::File, 0o600, audit, current.len() as u64), "the file's own stat");
    let c = a[0].1.content().unwrap_or_else(|| panic!("{:?}", a[0]));
    no_key(&c.bytes);
    assert_eq!(String::from_utf8_lossy(&c.bytes), certs, "exactly the certificates, in order");
    let stats = s.file_stats();
    // Open; fstat and the first BEGIN line; each certificate's first line, then its rest and the next 27 bytes.
    assert_eq!(stats.round_trips - before.round_trips, 6, "{stats:?}");
    assert_eq!(stats.bytes - before.bytes, certs.len() as u64 + 27, "the key's BEGIN line came, no more: {stats:?}");

    // The key first: its BEGIN line alone is read, and nothing is kept (a file of no certificates).
    let before = s.file_stats();
    let a = s.fetch(&[Request::certs(node.path("key-first.pem"))]).await;
    let Entry::Found { meta: m, content: Some(c), names: None } = &a[0].1 else { panic!("{:?}", a[0]) };
    assert_eq!(m, &meta(Kind::File, 0o600, audit, key_first.len() as u64));
    assert!(c.bytes.is_empty(), "{c:?}");
    let stats = s.file_stats();
    assert_eq!(stats.round_trips - before.round_trips, 2, "open; fstat and the BEGIN line: {stats:?}");
    assert_eq!(stats.bytes - before.bytes, 27, "{stats:?}");

    // A certificate alone: read whole, the lookahead past it answered by the end of the file.
    let before = s.file_stats();
    let a = s.fetch(&[Request::certs(node.path("ca.crt"))]).await;
    assert_eq!(found(&a[0].1), &meta(Kind::File, 0o644, audit, ca.len() as u64));
    assert_eq!(String::from_utf8_lossy(&a[0].1.content().unwrap().bytes), ca);
    let stats = s.file_stats();
    assert_eq!(stats.bytes - before.bytes, ca.len() as u64, "{stats:?}");
    assert_eq!(stats.round_trips - before.round_trips, 5, "and a last read of the lookahead, the end: {stats:?}");
    // A last batch makes sure the closes (sent without waiting) have reached the server, which logs its tally.
    s.fetch(&[Request::stat(node.path("ca.crt"))]).await;
    s.close().await;

    // The server's side: what it was asked to read, whatever it answered, and what it read in all.
    let furthest = |reads: &[(u64, u64)]| reads.iter().map(|(off, len)| off + len).max().unwrap();
    let path = node.path("kubelet-server-current.pem");
    let reads = reads_of(&log, &path);
    let key_at = certs.len() as u64;
    assert_eq!(furthest(&reads), key_at + 27, "up to the key's BEGIN line and not a byte into it: {reads:?}");
    assert!(reads.windows(2).all(|w| w[1].0 == w[0].0 + w[0].1), "each from where the last ended: {reads:?}");
    assert_eq!(reads.len(), 5, "the BEGIN line; for each certificate its first line and its rest: {reads:?}");
    assert_eq!(bytes_read(&log, &path), key_at + 27);
    let path = node.path("key-first.pem");
    assert_eq!(reads_of(&log, &path), [(0, 27)], "the key's BEGIN line alone");
    assert_eq!(bytes_read(&log, &path), 27);
    // The lookahead past a file's last certificate asks past its end, and is answered by the end.
    let path = node.path("ca.crt");
    let reads = reads_of(&log, &path);
    let size = ca.len() as u64;
    assert_eq!(furthest(&reads), size + 27, "{reads:?}");
    assert_eq!(reads.last(), Some(&(size, 27)), "{reads:?}");
    assert_eq!(bytes_read(&log, &path), size);
}
