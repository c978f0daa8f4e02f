//! Test harness: real OpenSSH `sshd` servers on loopback, each in its own PID namespace with processes named
//! like control-plane binaries, so `ps -ef` over SSH shows exactly that node and parallel tests do not see each
//! other's processes. Needs root, `/usr/sbin/sshd` (openssh-server), `unshare` (util-linux) and `cc` (gcc):
//! a missing tool fails the test with what to install. [`SshdOptions::overlays`] lays a test's files over the
//! host's /etc or /var/lib inside the namespace only (overlayfs).

#![allow(dead_code)]

pub mod postgres;
pub mod records;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The unprivileged login every test sshd allows (root's shell start-up is slow and serialised here).
pub const TEST_USER: &str = "fleetaudit-test";

pub fn need(path: &str, package: &str) {
    assert!(
        Path::new(path).exists() || which(path),
        "this test needs {path}: install it with `apt-get install -y {package}` (.ci/run does)"
    );
}

fn which(cmd: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {cmd}")]).output().is_ok_and(|o| o.status.success())
}

/// Creates the test user once per test binary, and the sleeper binary the fake components run.
fn prepare() -> &'static PathBuf {
    static SLEEPER: OnceLock<PathBuf> = OnceLock::new();
    SLEEPER.get_or_init(|| {
        need("/usr/sbin/sshd", "openssh-server");
        need("unshare", "util-linux");
        need("cc", "gcc libc6-dev");
        let uid = Command::new("id").arg("-u").output().unwrap();
        assert_eq!(String::from_utf8_lossy(&uid.stdout).trim(), "0", "the sshd tests run as root (CI does)");
        std::fs::create_dir_all("/run/sshd").unwrap();
        ensure_user(TEST_USER);
        // A process that ignores its arguments and waits: it can wear any command line. Kept in cargo's
        // scratch directory for tests (target/tmp), not the host's /tmp, where one directory per test binary
        // run was left behind; made under a name of its own and renamed, as test binaries run at once.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let bin = dir.join("fleetaudit-sleeper");
        if !bin.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            let src = dir.join(format!("fleetaudit-sleeper-{}.c", std::process::id()));
            std::fs::write(&src, "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n").unwrap();
            let made = dir.join(format!("fleetaudit-sleeper-{}", std::process::id()));
            let out = Command::new("cc").arg("-O").arg("-o").arg(&made).arg(&src).output().unwrap();
            let _ = std::fs::remove_file(&src);
            assert!(out.status.success(), "cc: {}", String::from_utf8_lossy(&out.stderr));
            std::fs::rename(&made, &bin).unwrap();
        }
        bin
    })
}

/// overlayfs in the kernel (for [`SshdOptions::overlays`]).
fn need_overlayfs() {
    let known = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !known.lines().any(|l| l.split_whitespace().last() == Some("overlay")) {
        // Loaded on first use where it is a module.
        let _ = Command::new("modprobe").arg("overlay").output();
        let known = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        assert!(
            known.lines().any(|l| l.split_whitespace().last() == Some("overlay")),
            "this test needs overlayfs: `modprobe overlay` (kernel module overlay, CONFIG_OVERLAY_FS)"
        );
    }
}

/// Creates the unprivileged system user `name` unless it exists; returns its (uid, gid).
pub fn ensure_user(name: &str) -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id").arg(flag).arg(name).output().unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().unwrap())
    };
    if id("-u").is_none() {
        // Password '*': no password, but not locked, so sshd without PAM accepts the key.
        let out = Command::new("useradd")
            .args(["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh"])
            .args(["--password", "*", name])
            .output()
            .unwrap();
        // Another test binary may have created it meanwhile.
        assert!(id("-u").is_some(), "useradd {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (id("-u").unwrap(), id("-g").unwrap())
}

/// An OpenSSH key pair made with ssh-keygen.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen (openssh-client)");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    path
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// How a test sshd differs from the harness's default one.
#[derive(Default)]
pub struct SshdOptions<'a> {
    /// Listen on this loopback address instead of 127.0.0.1 (same port).
    pub address: Option<&'a str>,
    /// Hide other users' processes from the login user, as `mount -o hidepid=invisible` does on hardened hosts.
    pub hidepid: bool,
    /// sshd_config lines placed before the harness's own: sshd keeps the first value of a keyword, so these win
    /// (e.g. "AllowTcpForwarding yes\nPermitOpen 127.0.0.2:22\n").
    pub config: &'a str,
    /// Log connections and logins (LogLevel VERBOSE) to `dir/sshd.log`, read with [`Sshd::log`].
    pub log: bool,
    /// Present a host certificate for the host key, signed with `ssh-keygen -s` as [`HostCert`] says.
    pub host_cert: Option<HostCert<'a>>,
    /// The `Subsystem sftp` line's command: `None` is `internal-sftp`, `Some("")` leaves the line out (a host
    /// without SFTP), `Some("internal-sftp -l DEBUG3")` logs every SFTP request.
    pub sftp_subsystem: Option<&'a str>,
    /// Shell lines run as root inside the namespace before sshd starts, after the fake processes (e.g. a process
    /// started as the test user: `setpriv --reuid=... sleep 600 &`). `$P0`, `$P1`, ... are the PIDs (in the
    /// namespace) of the fake processes, in the order given (e.g. `mount --bind FILE /proc/$P4/cgroup`).
    pub script: &'a str,
    /// Directories laid over the host's inside the namespace only, before anything else starts: `(target,
    /// upper)` mounts an overlayfs at `target` (e.g. "/etc") with the host's directory below and `upper` (the
    /// test's layout, with real modes and owners) on top, so the node shows files at default places
    /// (/etc/kubernetes, /var/lib/etcd) that the host never gets. `upper`'s own mode and owner become the
    /// target's; its work directory is `UPPER.overlay-work`, made beside it (overlayfs wants the same
    /// filesystem). Writes inside the namespace land in `upper`, never on the host.
    pub overlays: &'a [(&'a str, &'a Path)],
}

/// A host certificate for a test sshd: `ssh-keygen -s CA -h -n PRINCIPALS -V VALIDITY -z SERIAL -I KEY_ID`.
pub struct HostCert<'a> {
    /// The CA's private key file.
    pub ca: &'a Path,
    /// Comma-separated, as `-n` takes them.
    pub principals: &'a str,
    /// As `-V` takes it, e.g. `-5m:+1h`.
    pub validity: &'a str,
    pub serial: u64,
    pub key_id: &'a str,
}

/// Signs `key`'s public half (`KEY.pub`) with the CA key file `ca` (`ssh-keygen -s`), writing `KEY-cert.pub`;
/// `args` adds options such as `-h` (a host certificate), `-n`, `-V`, `-z`, `-I`, `-O`.
pub fn sign(ca: &Path, key: &Path, args: &[&str]) -> PathBuf {
    let out = Command::new("ssh-keygen")
        .arg("-q")
        .arg("-s")
        .arg(ca)
        .args(args)
        .arg(key.with_extension("pub"))
        .output()
        .expect("ssh-keygen (openssh-client)");
    assert!(out.status.success(), "ssh-keygen -s: {}", String::from_utf8_lossy(&out.stderr));
    let mut cert = key.as_os_str().to_owned();
    cert.push("-cert.pub");
    PathBuf::from(cert)
}

/// A running sshd in its own PID namespace; killed (with everything in the namespace) on drop.
pub struct Sshd {
    pub port: u16,
    /// The address it listens on (besides any extra ones).
    pub address: String,
    pub dir: PathBuf,
    /// `ssh-ed25519 AAAA...` of the host key.
    pub host_key: String,
    child: Child,
}

impl Sshd {
    /// Starts sshd on `127.0.0.1:port` (and on each of `extra_addrs`), accepting `authorized` for
    /// [`TEST_USER`], with one fake process per command line in `processes` (`argv[0]` first).
    pub fn start(dir: &Path, authorized: &[&Path], processes: &[&str], extra_addrs: &[&str]) -> Sshd {
        Sshd::start_with(dir, authorized, processes, extra_addrs, false)
    }

    /// As [`Sshd::start`]; with `hidepid`, the namespace's /proc hides other users' processes from the login
    /// user, as `mount -o hidepid=invisible` does on hardened hosts.
    pub fn start_with(
        dir: &Path,
        authorized: &[&Path],
        processes: &[&str],
        extra_addrs: &[&str],
        hidepid: bool,
    ) -> Sshd {
        Sshd::start_opts(dir, authorized, processes, extra_addrs, &SshdOptions { hidepid, ..SshdOptions::default() })
    }

    /// A jump host: no control-plane processes, TCP forwarding allowed only to the `permit` list (sshd's
    /// `PermitOpen` syntax, `ADDR:PORT ...`), `extra` sshd_config lines, connections logged.
    pub fn bastion(dir: &Path, authorized: &[&Path], permit: &str, extra: &str) -> Sshd {
        let config = format!("AllowTcpForwarding yes\nPermitOpen {permit}\n{extra}");
        Sshd::start_opts(
            dir,
            authorized,
            &[],
            &[],
            &SshdOptions { config: &config, log: true, ..SshdOptions::default() },
        )
    }

    /// As [`Sshd::start`], with [`SshdOptions`].
    pub fn start_opts(
        dir: &Path,
        authorized: &[&Path],
        processes: &[&str],
        extra_addrs: &[&str],
        options: &SshdOptions<'_>,
    ) -> Sshd {
        let sleeper = prepare();
        std::fs::create_dir_all(dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        // sshd reads authorized_keys as the test user.
        let mut perms = std::fs::metadata(&dir).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&dir, perms).unwrap();
        let host_key = keygen(&dir, "host_ed25519");
        let host_certificate = options.host_cert.as_ref().map(|c| {
            let serial = c.serial.to_string();
            let cert =
                sign(c.ca, &host_key, &["-h", "-n", c.principals, "-V", c.validity, "-z", &serial, "-I", c.key_id]);
            format!("HostCertificate {}\n", cert.display())
        });
        let mut keys = String::new();
        for k in authorized {
            keys.push_str(&std::fs::read_to_string(k.with_extension("pub")).unwrap());
        }
        std::fs::write(dir.join("authorized_keys"), keys).unwrap();
        let port = free_port();
        let address = options.address.unwrap_or("127.0.0.1").to_owned();
        let mut listen = format!("ListenAddress {address}:{port}\n");
        for a in extra_addrs {
            listen.push_str(&format!("ListenAddress {a}:{port}\n"));
        }
        let log = dir.join("sshd.log");
        let config = format!(
            "{extra}{level}{listen}HostKey {hk}\n{cert}PidFile none\nAuthorizedKeysFile {dir}/authorized_keys\nAllowUsers {TEST_USER}\n\
             StrictModes no\nUsePAM no\nUseDNS no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin no\nX11Forwarding no\nAllowTcpForwarding no\nPrintMotd no\nMaxStartups 1000:30:1000\n\
             LogLevel ERROR\n{sftp}",
            hk = host_key.display(),
            dir = dir.display(),
            extra = options.config,
            level = if options.log { "LogLevel VERBOSE\n" } else { "" },
            cert = host_certificate.unwrap_or_default(),
            sftp = match options.sftp_subsystem {
                None => "Subsystem sftp internal-sftp\n".to_owned(),
                Some("") => String::new(),
                Some(command) => format!("Subsystem sftp {command}\n"),
            },
        );
        let cfg = dir.join("sshd_config");
        std::fs::write(&cfg, config).unwrap();
        // PID 1 of the namespace is the shell, which mounts the overlays, starts the fake components and then
        // becomes sshd. `unshare --mount-proc` gives it a mount namespace of its own (propagation private), so
        // nothing it mounts is seen outside, and it all goes when the namespace's last process exits.
        let mut script = String::new();
        if !options.overlays.is_empty() {
            need_overlayfs();
        }
        for (target, upper) in options.overlays {
            let upper = upper.canonicalize().unwrap();
            let mut work = upper.as_os_str().to_owned();
            work.push(".overlay-work");
            let work = PathBuf::from(work);
            std::fs::create_dir_all(&work).unwrap();
            for p in [Path::new(target), &upper, &work] {
                let s = p.to_str().unwrap();
                assert!(!s.contains([',', ':', '\'', '\\', ' ']), "an overlay path mount(8) would misread: {s}");
            }
            script.push_str(&format!(
                "mount -t overlay overlay -o lowerdir={target},upperdir={up},workdir={} {target} || {{ echo \
                 'overlay over {target} failed: {up} must be on a filesystem overlayfs takes as upper (ext4, xfs, \
                 tmpfs; not overlayfs itself, as in a container): point TMPDIR at one' >&2; exit 96; }}\n",
                work.display(),
                up = upper.display(),
            ));
        }
        for (i, p) in processes.iter().enumerate() {
            let mut words = p.split_whitespace();
            let arg0 = words.next().unwrap();
            let rest: Vec<String> = words.map(|w| format!("'{}'", w.replace('\'', "'\\''"))).collect();
            script.push_str(&format!("(exec -a '{arg0}' {} {}) &\nP{i}=$!\n", sleeper.display(), rest.join(" ")));
        }
        script.push_str(options.script);
        if options.hidepid {
            script.push_str("mount -o remount,hidepid=2 /proc || exit 97\n");
        }
        let log_to = if options.log { format!("-E {}", log.display()) } else { "-e".to_owned() };
        script.push_str(&format!("exec /usr/sbin/sshd -D {log_to} -f {}\n", cfg.display()));
        let child = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child", "/bin/bash", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("unshare");
        let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let host_key = public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let mut sshd = Sshd { port, address, dir, host_key, child };
        sshd.wait_ready();
        sshd
    }

    /// The host PID of the namespace's first process (the shell that starts the fake processes and execs sshd), for
    /// `nsenter --target PID --mount --pid` to run a command on the node as its own root would.
    pub fn namespace_pid(&self) -> u32 {
        let id = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{id}/task/{id}/children")).unwrap();
        children.split_whitespace().next().and_then(|p| p.parse().ok()).expect("unshare has forked its child")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                self.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("sshd exited with {status}: {err}");
            }
            if let Ok(s) = TcpStream::connect((self.address.as_str(), self.port)) {
                let mut line = String::new();
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                if BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with("SSH-") {
                    // Processes started before sshd have had time to exec by now; give them a moment anyway.
                    std::thread::sleep(Duration::from_millis(50));
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sshd on port {} did not answer within 15 s", self.port);
    }

    /// What sshd logged so far (with [`SshdOptions::log`]).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// How many logins sshd accepted so far (with [`SshdOptions::log`]).
    pub fn logins(&self) -> usize {
        self.log().matches("Accepted publickey for").count()
    }

    /// The known_hosts line trusting this sshd at `addr`.
    pub fn known_hosts_line(&self, addr: &str) -> String {
        format!("[{addr}]:{} {}\n", self.port, self.host_key)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // --kill-child: when unshare dies, the namespace's PID 1 dies, and with it every process inside.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback listener that accepts connections and never says a word (a hung sshd, a tarpit).
pub struct Silent {
    pub port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _thread: std::thread::JoinHandle<()>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().flatten() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(s);
            }
        });
        Silent { port, accepted, _thread: thread }
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The schema in the repository, compiled.
pub fn scan_schema() -> jsonschema::Validator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/scan-v2.schema.json");
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema).expect("the schema is a valid draft 2020-12 schema")
}

/// Asserts that `doc` is what schemas/scan-v2.schema.json describes, listing every violation.
pub fn assert_valid(doc: &serde_json::Value) {
    let errors: Vec<String> =
        scan_schema().iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "the document breaks schemas/scan-v2.schema.json:\n{}", errors.join("\n"));
}

/// Runs the fleetaudit binary (without the caller's ssh-agent: each test decides which agent, if any).
pub fn fleetaudit(args: &[&str]) -> std::process::Output {
    fleetaudit_env(args, &[])
}

/// Runs the fleetaudit binary with extra environment variables (e.g. `SSH_AUTH_SOCK`), set in the child only:
/// tests run in parallel and must not change the test process's environment.
pub fn fleetaudit_env(args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetaudit"));
    cmd.args(args).env("NO_COLOR", "1").env_remove("SSH_AUTH_SOCK").env_remove("FLEETAUDIT_DB");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs SQL with the `sqlite3` CLI users query with (statements on stdin, `|`-separated output).
pub fn sqlite(db: &Path, sql: &str) -> String {
    let mut child = Command::new("sqlite3")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sqlite3: apt-get install -y sqlite3");
    child.stdin.take().unwrap().write_all(sql.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "sqlite3 {sql}: {}", text(&out.stderr));
    text(&out.stdout)
}

pub fn write(path: &Path, text: &str) {
    std::fs::File::create(path).unwrap().write_all(text.as_bytes()).unwrap();
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Runs the shell command line `cmd` with a pseudo-terminal as its stdin, stdout and stderr (`script` from
/// bsdutils on Debian 12, util-linux on later releases), with `TERM=xterm` and the environment changes in `env`
/// (`None` removes the variable). Returns the exit code and everything the command wrote to the terminal.
pub fn on_a_terminal(cmd: &str, env: &[(&str, Option<&str>)]) -> (i32, String) {
    need("script", "bsdutils");
    let mut c = Command::new("script");
    c.args(["-qec", cmd, "/dev/null"]).env("TERM", "xterm").stdin(Stdio::null());
    for (k, v) in env {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = c.output().unwrap();
    (out.status.code().expect("script exits"), text(&out.stdout))
}

/// (host, outcome, error kind) of every host of the latest scan, one `name|outcome|kind` line each.
pub fn outcomes(db: &Path) -> String {
    sqlite(
        db,
        "SELECT h.name, sh.outcome, coalesce(sh.error_kind, '-') FROM scan_hosts sh JOIN hosts h ON h.id = sh.host_id \
         WHERE sh.scan_id = (SELECT max(id) FROM scans) ORDER BY h.name",
    )
}

/// The stored error message of `host` in the latest scan.
pub fn message(db: &Path, host: &str) -> String {
    sqlite(
        db,
        &format!(
            "SELECT error_message FROM scan_hosts sh JOIN hosts h ON h.id = sh.host_id WHERE h.name = '{host}' \
             AND sh.scan_id = (SELECT max(id) FROM scans)"
        ),
    )
}

/// A running `ssh-agent -d` (debug: it stays in the foreground and logs each request); killed on drop.
pub struct Agent {
    pub sock: PathBuf,
    pub log: PathBuf,
    child: Child,
}

impl Agent {
    pub fn start(dir: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let log = dir.join("agent.log");
        let child = Command::new("ssh-agent")
            .arg("-d")
            .arg("-a")
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("ssh-agent: apt-get install -y openssh-client");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not create {}", sock.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { sock, log, child }
    }

    /// Adds a key, answering its passphrase prompt through SSH_ASKPASS (no terminal in tests).
    pub fn add(&self, key: &Path, passphrase: &str) {
        let askpass = key.with_extension("askpass");
        write(&askpass, &format!("#!/bin/sh\necho '{passphrase}'\n"));
        std::fs::set_permissions(&askpass, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.sock)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", "x")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "ssh-add {}: {}", key.display(), text(&out.stderr));
    }

    /// How many requests of an SSH agent protocol message type the agent has served
    /// (11: list identities, 13: sign).
    pub fn requests(&self, kind: u8) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap();
        log.lines().filter(|l| l.contains("process_message:") && l.ends_with(&format!(" type {kind}"))).count()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to its end and returns its exit code (None when a signal ended it), its peak resident memory in KiB
/// (`ru_maxrss` from wait4: std's `wait` does not report resource usage) and how long it ran. Killed and failed
/// after `hung`: not a timing assertion, only so a hung child fails the test instead of hanging CI.
#[allow(dead_code, clippy::zombie_processes)]
pub fn run_measured(cmd: &mut Command, hung: Duration) -> (Option<i32>, i64, Duration) {
    let child = cmd.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waiting for our own child; the pointers are to locals.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break;
        }
        if started.elapsed() > hung {
            // SAFETY: our own child, not reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{cmd:?} did not end within {hung:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage.ru_maxrss, started.elapsed())
}
