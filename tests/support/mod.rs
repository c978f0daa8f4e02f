//! Test harness: real OpenSSH `sshd` servers on loopback, each in its own PID namespace with processes named
//! like control-plane binaries, so `ps -ef` over SSH shows exactly that node and parallel tests do not see each
//! other's processes. Needs root, `/usr/sbin/sshd` (openssh-server), `unshare` (util-linux) and `cc` (gcc):
//! a missing tool fails the test with what to install.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The unprivileged login every test sshd allows (root's shell start-up is slow and serialised here).
pub const TEST_USER: &str = "fleetaudit-test";

fn need(path: &str, package: &str) {
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
        if !Command::new("id").arg(TEST_USER).output().unwrap().status.success() {
            // Password '*': no password, but not locked, so sshd without PAM accepts the key.
            let out = Command::new("useradd")
                .args(["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh"])
                .args(["--password", "*", TEST_USER])
                .output()
                .unwrap();
            let again = Command::new("id").arg(TEST_USER).output().unwrap().status.success();
            assert!(again, "useradd {TEST_USER}: {}", String::from_utf8_lossy(&out.stderr));
        }
        // A process that ignores its arguments and waits: it can wear any command line.
        let dir = std::env::temp_dir().join(format!("fleetaudit-sleeper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("sleeper.c");
        std::fs::write(&src, "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n").unwrap();
        let bin = dir.join("sleeper");
        let out = Command::new("cc").arg("-O").arg("-o").arg(&bin).arg(&src).output().unwrap();
        assert!(out.status.success(), "cc: {}", String::from_utf8_lossy(&out.stderr));
        bin
    })
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

/// A running sshd in its own PID namespace; killed (with everything in the namespace) on drop.
pub struct Sshd {
    pub port: u16,
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
        let sleeper = prepare();
        std::fs::create_dir_all(dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        // sshd reads authorized_keys as the test user.
        let mut perms = std::fs::metadata(&dir).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&dir, perms).unwrap();
        let host_key = keygen(&dir, "host_ed25519");
        let mut keys = String::new();
        for k in authorized {
            keys.push_str(&std::fs::read_to_string(k.with_extension("pub")).unwrap());
        }
        std::fs::write(dir.join("authorized_keys"), keys).unwrap();
        let port = free_port();
        let mut listen = format!("ListenAddress 127.0.0.1:{port}\n");
        for a in extra_addrs {
            listen.push_str(&format!("ListenAddress {a}:{port}\n"));
        }
        let config = format!(
            "{listen}HostKey {hk}\nPidFile none\nAuthorizedKeysFile {dir}/authorized_keys\nAllowUsers {TEST_USER}\n\
             StrictModes no\nUsePAM no\nUseDNS no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin no\nX11Forwarding no\nAllowTcpForwarding no\nPrintMotd no\nMaxStartups 1000:30:1000\n\
             LogLevel ERROR\nSubsystem sftp internal-sftp\n",
            hk = host_key.display(),
            dir = dir.display()
        );
        let cfg = dir.join("sshd_config");
        std::fs::write(&cfg, config).unwrap();
        // PID 1 of the namespace is the shell, which starts the fake components and then becomes sshd.
        let mut script = String::new();
        for p in processes {
            let mut words = p.split_whitespace();
            let arg0 = words.next().unwrap();
            let rest: Vec<String> = words.map(|w| format!("'{}'", w.replace('\'', "'\\''"))).collect();
            script.push_str(&format!("(exec -a '{arg0}' {} {}) &\n", sleeper.display(), rest.join(" ")));
        }
        if hidepid {
            script.push_str("mount -o remount,hidepid=2 /proc || exit 97\n");
        }
        script.push_str(&format!("exec /usr/sbin/sshd -D -e -f {}\n", cfg.display()));
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
        let mut sshd = Sshd { port, dir, host_key, child };
        sshd.wait_ready();
        sshd
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                self.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("sshd exited with {status}: {err}");
            }
            if let Ok(s) = TcpStream::connect(("127.0.0.1", self.port)) {
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
    _thread: std::thread::JoinHandle<()>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().flatten() {
                held.push(s);
            }
        });
        Silent { port, _thread: thread }
    }
}

/// Runs the fleetaudit binary.
pub fn fleetaudit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fleetaudit")).args(args).env("NO_COLOR", "1").output().unwrap()
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
