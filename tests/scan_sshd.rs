//! `fleetaudit scan` end to end against real OpenSSH sshd servers on loopback: verdicts stored for healthy
//! hosts, and each kind of unreachable host stored as its own error kind while the others are audited.

mod support;

use std::path::Path;

use support::{Silent, Sshd, TEST_USER, fleetaudit, keygen, sqlite, text, write};

const APISERVER_DEFAULT: &str = "kube-apiserver --advertise-address=192.0.2.10 --allow-privileged=true \
    --authorization-mode=Node,RBAC --client-ca-file=/etc/kubernetes/pki/ca.crt --enable-admission-plugins=NodeRestriction \
    --etcd-servers=https://127.0.0.1:2379 --secure-port=6443 --token-auth-file=/etc/kubernetes/tokens.csv";
const APISERVER_HARDENED: &str = "/usr/local/bin/kube-apiserver --anonymous-auth=false --profiling=false \
    --authorization-mode=Node,RBAC --kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt \
    --etcd-servers=https://etcd:s3cret@127.0.0.1:2379";
const ETCD: &str = "etcd --name=cp1 --data-dir=/var/lib/etcd --client-cert-auth=true --peer-client-cert-auth=true \
    --cert-file=/etc/kubernetes/pki/etcd/server.crt --key-file=/etc/kubernetes/pki/etcd/server.key";
const KUBELET: &str =
    "/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml --kubeconfig=/etc/kubernetes/kubelet.conf";

fn host(name: &str, addr: &str, port: u16, roles: &str, extra: &str) -> String {
    format!("\n[[hosts]]\nname = \"{name}\"\naddress = \"{addr}\"\nport = {port}\nroles = [{roles}]\n{extra}")
}

fn status(db: &Path, host: &str, rule: &str) -> String {
    sqlite(db, &format!("SELECT status FROM findings WHERE host = '{host}' AND rule_id = '{rule}' AND scan_id = (SELECT max(id) FROM scans)"))
        .trim()
        .to_owned()
}

#[test]
fn scan_stores_verdicts_and_each_failure_kind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "id_ed25519");
    let other = keygen(d, "other_ed25519");
    let a = Sshd::start(
        &d.join("a"),
        &[&key],
        &[APISERVER_DEFAULT, ETCD, "kube-scheduler --bind-address=127.0.0.1"],
        &["127.0.0.2", "127.0.0.3"],
    );
    let b = Sshd::start(&d.join("b"), &[&key], &[APISERVER_HARDENED, ETCD], &[]);
    let c = Sshd::start(&d.join("c"), &[&key], &[KUBELET], &[]);
    let silent = Silent::start();
    let refused = support::free_port();

    // Known: a and b and c on 127.0.0.1; 127.0.0.3 recorded with b's key (changed); 127.0.0.2 not at all.
    let known = d.join("known_hosts");
    write(
        &known,
        &format!(
            "{}{}{}[127.0.0.3]:{} {}\n",
            a.known_hosts_line("127.0.0.1"),
            b.known_hosts_line("127.0.0.1"),
            c.known_hosts_line("127.0.0.1"),
            a.port,
            b.host_key
        ),
    );
    let cp = "\"control-plane\", \"etcd\"";
    let mut inv = format!(
        "[defaults]\nuser = \"{TEST_USER}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\nconnect_timeout = \"2s\"\ncommand_timeout = \"10s\"\n",
        key.display(),
        known.display()
    );
    inv += &host("cp-default", "127.0.0.1", a.port, cp, "");
    inv += &host("cp-hardened", "127.0.0.1", b.port, cp, "");
    inv += &host("cp-no-apiserver", "127.0.0.1", c.port, "\"control-plane\", \"worker\"", "");
    inv += &host("unknown-key", "127.0.0.2", a.port, cp, "");
    inv += &host("changed-key", "127.0.0.3", a.port, cp, "");
    inv += &host("wrong-user-key", "127.0.0.1", a.port, cp, &format!("identity_file = \"{}\"\n", other.display()));
    inv += &host("refused", "127.0.0.1", refused, cp, "");
    inv += &host("silent", "127.0.0.1", silent.port, cp, "");
    let inventory = d.join("inventory.toml");
    write(&inventory, &inv);
    let db = d.join("history.db");

    let out = fleetaudit(&["scan", "-i", inventory.to_str().unwrap(), "--db", db.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "hosts could not be audited:\n{stdout}\n{}", text(&out.stderr));
    for name in ["cp-default", "cp-hardened", "unknown-key", "changed-key", "wrong-user-key", "refused", "silent"] {
        assert!(stdout.contains(name), "summary lacks {name}:\n{stdout}");
    }

    let outcomes = sqlite(
        &db,
        "SELECT h.name, sh.outcome, coalesce(sh.error_kind, '-') FROM scan_hosts sh JOIN hosts h ON h.id = sh.host_id ORDER BY h.name",
    );
    let expected = "changed-key|error|host_key_changed\ncp-default|audited|-\ncp-hardened|audited|-\ncp-no-apiserver|audited|-\n\
                    refused|error|unreachable\nsilent|error|timeout\nunknown-key|error|host_key_unknown\nwrong-user-key|error|auth_failed\n";
    assert_eq!(outcomes, expected);

    // The reference rule: kubeadm default fails, hardened passes, a control plane without an API server fails.
    assert_eq!(status(&db, "cp-default", "apiserver-kubelet-certificate-authority"), "fail");
    assert_eq!(status(&db, "cp-hardened", "apiserver-kubelet-certificate-authority"), "pass");
    assert_eq!(status(&db, "cp-no-apiserver", "apiserver-kubelet-certificate-authority"), "fail");
    assert_eq!(status(&db, "cp-default", "apiserver-token-auth-file"), "fail");
    assert_eq!(status(&db, "cp-default", "apiserver-anonymous-auth"), "fail");
    assert_eq!(status(&db, "cp-hardened", "apiserver-anonymous-auth"), "pass");
    // etcd ignores its flags when ETCD_CONFIG_FILE in its environment names a file, which `ps` cannot show.
    assert_eq!(status(&db, "cp-default", "etcd-client-cert-auth"), "error");
    assert_eq!(status(&db, "cp-no-apiserver", "etcd-client-cert-auth"), "not_applicable");
    assert_eq!(status(&db, "cp-no-apiserver", "kubelet-anonymous-auth"), "error", "kubelet --config decides");
    // Hosts that could not be audited have an error verdict for every rule, with the reason.
    assert_eq!(status(&db, "changed-key", "apiserver-kubelet-certificate-authority"), "error");
    let reason = sqlite(&db, "SELECT reason FROM findings WHERE host = 'changed-key' LIMIT 1");
    assert!(reason.contains("man-in-the-middle"), "{reason}");
    let reason = sqlite(&db, "SELECT reason FROM findings WHERE host = 'unknown-key' LIMIT 1");
    assert!(reason.contains("SHA256:") && reason.contains("ssh-keyscan"), "{reason}");

    // Evidence: the process line from the host, secrets redacted, host key fingerprint recorded.
    let evidence = sqlite(
        &db,
        "SELECT evidence FROM findings WHERE host = 'cp-hardened' AND rule_id = 'apiserver-kubelet-certificate-authority'",
    );
    assert!(evidence.contains("/usr/local/bin/kube-apiserver --anonymous-auth=false"), "{evidence}");
    assert!(evidence.contains("<redacted>") && !evidence.contains("s3cret"), "{evidence}");
    let fp = sqlite(
        &db,
        "SELECT fingerprint FROM host_keys k JOIN scan_hosts sh ON sh.host_key_id = k.id JOIN hosts h ON h.id = sh.host_id WHERE h.name = 'cp-hardened'",
    );
    assert!(fp.starts_with("SHA256:"), "{fp}");
    assert_eq!(sqlite(&db, "SELECT status FROM scans").trim(), "complete");
    assert_eq!(sqlite(&db, "PRAGMA integrity_check").trim(), "ok");

    // `check` reaches the same hosts without storing a scan.
    let out = fleetaudit(&["check", "-i", inventory.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let check = text(&out.stdout);
    assert!(check.contains("host_key_changed") && check.contains("3 reachable, 5 not"), "{check}");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM scans").trim(), "1");
}

#[test]
fn a_table_hidden_by_hidepid_is_an_error_not_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "id_ed25519");
    let node = Sshd::start_with(&d.join("n"), &[&key], &[APISERVER_DEFAULT], &[], true);
    let known = d.join("known_hosts");
    write(&known, &node.known_hosts_line("127.0.0.1"));
    let inv = format!(
        "[defaults]\nuser = \"{TEST_USER}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\ndatabase = \"{}\"\n{}",
        key.display(),
        known.display(),
        d.join("h.db").display(),
        host("hidden", "127.0.0.1", node.port, "\"control-plane\"", "")
    );
    let inventory = d.join("inventory.toml");
    write(&inventory, &inv);
    let out = fleetaudit(&["scan", "-i", inventory.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let row = sqlite(&d.join("h.db"), "SELECT outcome, error_kind, error_message FROM scan_hosts");
    assert!(row.starts_with("error|incomplete_table|") && row.contains("hidepid"), "{row}");
}
