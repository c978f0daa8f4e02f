//! ssh-agent authentication against a real OpenSSH `ssh-agent` started by the test: an encrypted key named in
//! the inventory is used through the agent (and refused with the fix when there is no agent), an agent-only key
//! logs in, and the agent's keys are listed once per scan, not once per host.

mod support;

use std::path::Path;
use std::process::Command;

use support::{Agent, Sshd, TEST_USER, fleetaudit_env, keygen, outcomes, sqlite, text, write};

const APISERVER: &str = "kube-apiserver --anonymous-auth=false --kubelet-certificate-authority=/etc/ca.crt";

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
