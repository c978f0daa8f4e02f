//! A real PostgreSQL server for a test: its own cluster in a temporary directory, listening on a Unix socket
//! only (no TCP port), `fsync=off`, trust authentication for the socket's one role `fleetaudit`, stopped and
//! deleted when dropped. PostgreSQL refuses to run as root, so under root (CI) it runs as `nobody`.
//! Needs Debian's `postgresql` package (initdb and pg_ctl): missing, the test fails saying so.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The role the cluster is created with, a superuser.
pub const ROLE: &str = "fleetaudit";

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The TCP port on 127.0.0.1, for a server started with [`Postgres::start_tls`].
    pub port: Option<u16>,
}

/// initdb and pg_ctl of the newest PostgreSQL installed (Debian keeps them out of PATH).
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    found.sort_by_key(|b| {
        b.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    found.pop().unwrap_or_else(|| {
        panic!("this test needs a PostgreSQL server (initdb, pg_ctl): install it with `apt-get install -y postgresql` (.ci/run does)")
    })
}

fn as_server_user(bin: &Path, tool: &str) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn run(mut c: Command, what: &str, log: &Path) {
    let out = c.current_dir("/").output().unwrap_or_else(|e| panic!("{what}: {e} (setpriv is in util-linux)"));
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        out.status.success(),
        "{what} failed: {}{}\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    /// Creates the cluster and starts its server (about a second).
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// A server that also listens on 127.0.0.1 (a free port) with TLS, presenting `cert_pem` (its key
    /// `key_pem`); trust authentication there too.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Postgres {
        Postgres::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("socket")).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            for p in [dir.path().to_path_buf(), dir.path().join("socket")] {
                std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
            }
        }
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let mut initdb = as_server_user(&bin, "initdb");
        initdb.arg("-D").arg(&data).args(["-U", ROLE, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
        run(initdb, "initdb", &log);
        let mut options = format!(
            "-k {} -c fsync=off -c full_page_writes=off -c synchronous_commit=off",
            dir.path().join("socket").display()
        );
        let mut port = None;
        match tls {
            None => options.push_str(" -c listen_addresses=''"),
            Some((cert, key)) => {
                let (crt, pem) = (dir.path().join("server.crt"), dir.path().join("server.key"));
                std::fs::write(&crt, cert).unwrap();
                std::fs::write(&pem, key).unwrap();
                std::fs::set_permissions(&pem, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } == 0 {
                    for p in [&crt, &pem] {
                        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
                    }
                }
                let p = super::free_port();
                port = Some(p);
                options.push_str(&format!(
                    " -c listen_addresses=127.0.0.1 -p {p} -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                    crt.display(),
                    pem.display()
                ));
            }
        }
        let mut start = as_server_user(&bin, "pg_ctl");
        start.arg("-D").arg(&data).arg("-l").arg(&log).args(["-o", &options, "-w", "start"]);
        run(start, "pg_ctl start", &log);
        Postgres { dir, bin, port }
    }

    /// The URL of database `db` on this server, as sqlx takes it (a socket directory as `host`).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{ROLE}@localhost/{db}?host={}", self.dir.path().join("socket").display())
    }
}

impl Postgres {
    /// The URL of database `db` over TCP to 127.0.0.1 (or `host`, which must resolve to it), with `params`
    /// (`sslmode=...&sslrootcert=...`), for a server started with [`Postgres::start_tls`].
    pub fn tcp_url(&self, host: &str, db: &str, params: &str) -> String {
        let port = self.port.expect("a server started with start_tls");
        let query = if params.is_empty() { String::new() } else { format!("?{params}") };
        format!("postgres://{ROLE}@{host}:{port}/{db}{query}")
    }

    /// The server's Unix socket directory.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// Runs `sql` with `psql` (as a user would: meta-commands such as `\connect` work) on database `db` as
    /// the superuser; panics with psql's output if a statement fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Postgres::psql`], with a failure returned: psql's output and the statement.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let psql = self.bin.join("psql");
        let psql = if psql.exists() { psql } else { PathBuf::from("psql") };
        let mut child = Command::new(&psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.socket())
            .args(["-p", &self.port.unwrap_or(5432).to_string()])
            .args(["-U", ROLE, "-d", db, "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{}: {e} (psql is in postgresql-client, which postgresql installs)", psql.display())
            });
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), sql.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            return Err(format!(
                "psql failed: {}{}\n{sql}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = as_server_user(&self.bin, "pg_ctl");
        stop.arg("-D").arg(self.dir.path().join("data")).args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.current_dir("/").output();
    }
}
