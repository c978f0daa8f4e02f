//! ssh-agent authentication against a real OpenSSH `ssh-agent` started by the test: an encrypted key named in
//! the inventory is used through the agent (and refused with the fix when there is no agent), an agent-only key
//! logs in, and the agent's keys are listed once per scan, not once per host.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Sshd, TEST_USER, fleetaudit_env, keygen, sqlite, text, write};

const APISERVER: &str = "kube-apiserver --anonymous-auth=false --kubelet-certificate-authority=/etc/ca.crt";

/// A running `ssh-agent -d` (debug: it stays in the foreground and logs each request); killed on drop.
struct Agent {
    sock: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
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
    fn add(&self, key: &Path, passphrase: &str) {
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
    fn requests(&self, kind: u8) -> usize {
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

fn outcomes(db: &Path) -> String {
    sqlite(
        db,
        "SELECT h.name, sh.outcome, coalesce(sh.error_kind, '-') FROM scan_hosts sh JOIN hosts h ON h.id = sh.host_id \
         WHERE sh.scan_id = (SELECT max(id) FROM scans) ORDER BY h.name",
    )
}

#[test]
fn an_encrypted_key_works_through_the_agent_and_agent_keys_are_listed_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An encrypted key named in the inventory, and a key that exists only in the agent.
    let encrypted = d.join("id_encrypted");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "correct horse", "-C", "encrypted", "-f"])
        .arg(&encrypted)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let agent_only = keygen(d, "agent_only");
    let node = Sshd::start(&d.join("node"), &[&encrypted, &agent_only], &[APISERVER], &["127.0.0.2", "127.0.0.3"]);
    let known = d.join("known_hosts");
    write(
        &known,
        &["127.0.0.1", "127.0.0.2", "127.0.0.3"].iter().map(|a| node.known_hosts_line(a)).collect::<String>(),
    );
    // An empty home: no ~/.ssh/id_* of the machine's user gets in the way.
    let home = d.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let hosts: String = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .iter()
        .enumerate()
        .map(|(i, a)| {
            format!(
                "[[hosts]]\nname = \"n{i}\"\naddress = \"{a}\"\nport = {}\nroles = [\"control-plane\"]\n",
                node.port
            )
        })
        .collect();
    let inventory = |identity: &str| {
        let path = d.join(format!("inventory-{}.toml", identity.len()));
        write(
            &path,
            &format!(
                "[defaults]\nuser = \"{TEST_USER}\"\n{identity}known_hosts = \"{}\"\ndatabase = \"{}\"\n\
                 report_dir = \"{}\"\n{hosts}",
                known.display(),
                d.join("history.db").display(),
                d.join("report").display(),
            ),
        );
        path
    };
    let with_key = inventory(&format!("identity_file = \"{}\"\n", encrypted.display()));
    let agent_keys_only = inventory("");
    let db = d.join("history.db");
    let scan = |inv: &Path, env: &[(&str, &Path)]| {
        let mut env = env.to_vec();
        env.push(("HOME", &home));
        let out = fleetaudit_env(&["scan", "-i", inv.to_str().unwrap()], &env);
        (out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
    };

    // No agent: the encrypted key cannot be used, and the error says how to fix it.
    let (code, out) = scan(&with_key, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert_eq!(outcomes(&db), "n0|error|auth_failed\nn1|error|auth_failed\nn2|error|auth_failed\n");
    let msg = sqlite(&db, "SELECT error_message FROM scan_hosts WHERE error_kind IS NOT NULL LIMIT 1");
    assert!(
        msg.contains(&format!("cannot use key {}: it is encrypted", encrypted.display()))
            && msg.contains(&format!("ssh-add {}", encrypted.display()))
            && msg.contains("SSH_AUTH_SOCK"),
        "{msg}"
    );

    // The agent holds both keys; the encrypted one is offered first, as the inventory names it.
    let agent = Agent::start(d);
    agent.add(&agent_only, "");
    agent.add(&encrypted, "correct horse");
    let (before_list, before_sign) = (agent.requests(11), agent.requests(13));
    let (code, out) = scan(&with_key, &[("SSH_AUTH_SOCK", &agent.sock)]);
    assert_eq!(code, Some(1), "audited, with failing rules: {out}");
    assert_eq!(outcomes(&db), "n0|audited|-\nn1|audited|-\nn2|audited|-\n");
    // Three hosts, one listing of the agent's keys; one signature each (the right key first).
    assert_eq!(agent.requests(11) - before_list, 1, "{}", std::fs::read_to_string(&agent.log).unwrap());
    assert_eq!(agent.requests(13) - before_sign, 3);

    // No key file at all: the agent's keys alone log in.
    let (code, out) = scan(&agent_keys_only, &[("SSH_AUTH_SOCK", &agent.sock)]);
    assert_eq!(code, Some(1), "audited, with failing rules: {out}");
    assert_eq!(outcomes(&db), "n0|audited|-\nn1|audited|-\nn2|audited|-\n");

    // An agent without the keys: authentication fails, naming what was tried.
    let empty = Agent::start(&d.join("home"));
    let (code, _) = scan(&agent_keys_only, &[("SSH_AUTH_SOCK", &empty.sock)]);
    assert_eq!(code, Some(2));
    assert_eq!(outcomes(&db), "n0|error|auth_failed\nn1|error|auth_failed\nn2|error|auth_failed\n");
    let msg = sqlite(&db, "SELECT error_message FROM scan_hosts WHERE scan_id = (SELECT max(id) FROM scans) LIMIT 1");
    assert!(msg.contains("ssh-agent (it holds no keys)"), "{msg}");
}
