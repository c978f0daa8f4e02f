//! Jump hosts end to end: `fleetaudit scan` reaches nodes that listen only on other loopback addresses through a
//! real OpenSSH bastion whose `PermitOpen` names exactly those nodes. The bastion's own key is checked, its
//! connection is shared by every node behind it, and each failure on the way is stored with its own kind.

mod support;
use support::{Sshd, SshdOptions, TEST_USER, fleetaudit, keygen, message, outcomes, sqlite, text, write};

const APISERVER: &str = "kube-apiserver --anonymous-auth=false --authorization-mode=Node,RBAC \
    --kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt --etcd-servers=https://127.0.0.1:2379";
const ETCD: &str = "etcd --name=cp1 --client-cert-auth=true --peer-client-cert-auth=true";

#[test]
fn nodes_behind_a_bastion_are_audited_through_one_shared_connection() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "id_ed25519");
    // The node listens on 127.0.0.2 and 127.0.0.3 (two inventory hosts) and 127.0.0.4 (one the bastion may not
    // reach); the test itself never connects to it.
    let node = Sshd::start_opts(
        &d.join("node"),
        &[&key],
        &[APISERVER, ETCD],
        &["127.0.0.3", "127.0.0.4"],
        &SshdOptions { address: Some("127.0.0.2"), log: true, ..SshdOptions::default() },
    );
    let closed = support::free_port();
    let tarpit = support::Silent::start();
    let (p, t) = (node.port, tarpit.port);
    // MaxSessions 1: OpenSSH counts session channels against it, not direct-tcpip ones, so concurrent tunnels
    // over the one shared connection must all open. The tarpit host keeps its tunnel open for its whole
    // connect_timeout while the others open theirs (they all wait for the same bastion connection, then open
    // their channels together).
    let bastion = Sshd::bastion(
        &d.join("bastion"),
        &[&key],
        &format!("127.0.0.2:{p} 127.0.0.3:{p} 127.0.0.2:{closed} 127.0.0.1:{t}"),
        "MaxSessions 1\n",
    );

    let node_lines: String = ["127.0.0.2", "127.0.0.3", "127.0.0.4"].iter().map(|a| node.known_hosts_line(a)).collect();
    let known = d.join("known_hosts");
    let inventory = d.join("inventory.toml");
    let db = d.join("history.db");
    let inv = format!(
        "[defaults]\nuser = \"{TEST_USER}\"\nidentity_file = \"{key}\"\nknown_hosts = \"{known}\"\n\
         connect_timeout = \"5s\"\ncommand_timeout = \"10s\"\nconcurrency = 8\n\
         [[clusters]]\nname = \"behind\"\njump = \"127.0.0.1:{b}\"\nroles = [\"control-plane\", \"etcd\"]\n\
         [[clusters.hosts]]\nname = \"n1\"\naddress = \"127.0.0.2\"\nport = {p}\n\
         [[clusters.hosts]]\nname = \"n2\"\naddress = \"127.0.0.3\"\nport = {p}\n\
         [[clusters.hosts]]\nname = \"n3-not-permitted\"\naddress = \"127.0.0.4\"\nport = {p}\n\
         [[clusters.hosts]]\nname = \"n4-closed-port\"\naddress = \"127.0.0.2\"\nport = {closed}\n\
         [[clusters.hosts]]\nname = \"n0-tarpit\"\naddress = \"127.0.0.1\"\nport = {t}\nconnect_timeout = \"2s\"\n",
        key = key.display(),
        known = known.display(),
        b = bastion.port,
    );
    write(&inventory, &inv);
    let scan = || fleetaudit(&["scan", "-i", inventory.to_str().unwrap(), "--db", db.to_str().unwrap()]);

    // 1. The bastion's key is unknown: nothing behind it is audited, each host says why, naming the bastion,
    //    and the node is never contacted directly (its only connection so far is the harness's readiness probe).
    let connections = || node.log().matches("Connection from").count();
    assert_eq!(connections(), 1, "{}", node.log());
    write(&known, &node_lines);
    let out = scan();
    assert_eq!(out.status.code(), Some(2), "{}{}", text(&out.stdout), text(&out.stderr));
    let expected = "n0-tarpit|error|jump_failed\nn1|error|jump_failed\nn2|error|jump_failed\n\
                    n3-not-permitted|error|jump_failed\nn4-closed-port|error|jump_failed\n";
    assert_eq!(outcomes(&db), expected);
    let m = message(&db, "n1");
    let b = bastion.port;
    assert!(m.starts_with(&format!("jump host {TEST_USER}@127.0.0.1:{b}: host key unknown")), "{m}");
    assert!(m.contains("[host_key_unknown]") && m.contains("ssh-keyscan"), "{m}");
    assert_eq!(connections(), 1, "the node was contacted: {}", node.log());
    assert_eq!(bastion.logins(), 0);

    // 2. The bastion's key is recorded as another key (the node's): refused as changed.
    write(&known, &format!("{node_lines}[127.0.0.1]:{b} {}\n", node.host_key));
    scan();
    assert_eq!(outcomes(&db), expected);
    let m = message(&db, "n2");
    assert!(m.contains("HOST KEY CHANGED for 127.0.0.1") && m.contains("[host_key_changed]"), "{m}");
    assert_eq!(connections(), 1, "the node was contacted: {}", node.log());

    // 3. The bastion is trusted: the permitted nodes are audited through it, one login for all of them.
    write(&known, &format!("{node_lines}{}", bastion.known_hosts_line("127.0.0.1")));
    let out = scan();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "two hosts cannot be reached:\n{stdout}{}", text(&out.stderr));
    assert_eq!(
        outcomes(&db),
        "n0-tarpit|error|timeout\nn1|audited|-\nn2|audited|-\nn3-not-permitted|error|jump_failed\n\
         n4-closed-port|error|unreachable\n"
    );
    let verdict = sqlite(
        &db,
        "SELECT host, status FROM findings WHERE rule_id = 'apiserver-kubelet-certificate-authority' \
         AND scan_id = (SELECT max(id) FROM scans) AND host IN ('n1', 'n2') ORDER BY host",
    );
    assert_eq!(verdict, "n1|pass\nn2|pass\n");
    let m = message(&db, "n3-not-permitted");
    assert!(
        m.contains(&format!("refused to open a tunnel to 127.0.0.4:{p} (administratively prohibited)"))
            && m.contains("PermitOpen"),
        "{m}"
    );
    let m = message(&db, "n4-closed-port");
    assert!(
        m.contains(&format!("127.0.0.2:{closed}")) && m.contains(&format!("jump host {TEST_USER}@127.0.0.1:{b}")),
        "{m}"
    );
    assert_eq!(bastion.logins(), 1, "one bastion login for the whole scan:\n{}", bastion.log());
    // The node saw its logins arrive from the bastion's tunnels (two hosts), not from us directly.
    assert_eq!(node.logins(), 2, "{}", node.log());
    let fp = sqlite(
        &db,
        "SELECT DISTINCT fingerprint FROM host_keys k JOIN scan_hosts sh ON sh.host_key_id = k.id \
         JOIN hosts h ON h.id = sh.host_id WHERE h.name IN ('n1', 'n2')",
    );
    let node_fp = text(
        &std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(node.dir.join("host_ed25519.pub"))
            .output()
            .unwrap()
            .stdout,
    );
    assert!(node_fp.contains(fp.trim()), "the node's key is the one recorded: {fp} vs {node_fp}");

    // `check` goes the same way.
    let out = fleetaudit(&["check", "-i", inventory.to_str().unwrap(), "--only", "n1", "n2"]);
    let check = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{check}{}", text(&out.stderr));
    assert!(check.contains("2 reachable, 0 not"), "{check}");
    assert_eq!(bastion.logins(), 2, "check opened one more bastion connection");
}

#[test]
fn a_dead_bastion_is_tried_once_per_scan_and_named_for_every_host_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "id_ed25519");
    // A bastion that accepts TCP and never speaks.
    let bastion = support::Silent::start();
    // Nothing listens at the hosts' addresses: reaching one directly would be `unreachable`, not `jump_failed`.
    let closed = support::free_port();
    let hosts: String = (0..3)
        .map(|i| format!("[[hosts]]\nname = \"n{i}\"\naddress = \"127.0.0.{}\"\nport = {closed}\n", i + 2))
        .collect();
    let inventory = d.join("inventory.toml");
    write(
        &inventory,
        &format!(
            "[defaults]\nuser = \"{TEST_USER}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\nconnect_timeout = \"1s\"\n\
             concurrency = 1\njump = \"127.0.0.1:{}\"\ndatabase = \"{}\"\nreport_dir = \"{}\"\n{hosts}",
            key.display(),
            d.join("known_hosts").display(),
            bastion.port,
            d.join("h.db").display(),
            d.join("report").display(),
        ),
    );
    let out = fleetaudit(&["scan", "-i", inventory.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}{}", text(&out.stdout), text(&out.stderr));
    let db = d.join("h.db");
    assert_eq!(outcomes(&db), "n0|error|jump_failed\nn1|error|jump_failed\nn2|error|jump_failed\n");
    for host in ["n0", "n1", "n2"] {
        let m = message(&db, host);
        let b = bastion.port;
        assert!(m.starts_with(&format!("jump host {TEST_USER}@127.0.0.1:{b}: timed out after 1s")), "{m}");
        assert!(m.contains("[timeout]"), "{m}");
    }
    // One host at a time, and still one connection attempt: the failure is kept for the scan.
    assert_eq!(bastion.accepted(), 1);
}

#[test]
fn a_chain_of_two_bastions_reaches_a_node_only_the_second_can_reach() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "id_ed25519");
    // The node listens on 127.0.0.6 and 127.0.0.7 (two inventory hosts); only the second bastion may reach it.
    let node = Sshd::start_opts(
        &d.join("node"),
        &[&key],
        &[APISERVER, ETCD],
        &["127.0.0.7"],
        &SshdOptions { address: Some("127.0.0.6"), log: true, ..SshdOptions::default() },
    );
    let p = node.port;
    let second = Sshd::start_opts(
        &d.join("second"),
        &[&key],
        &[],
        &[],
        &SshdOptions {
            address: Some("127.0.0.5"),
            config: &format!("AllowTcpForwarding yes\nPermitOpen 127.0.0.6:{p} 127.0.0.7:{p}\n"),
            log: true,
            ..SshdOptions::default()
        },
    );
    let s = second.port;
    // The first bastion may open tunnels to the second one only.
    let first = Sshd::bastion(&d.join("first"), &[&key], &format!("127.0.0.5:{s}"), "");
    let f = first.port;

    let known = d.join("known_hosts");
    let node_lines = format!("{}{}", node.known_hosts_line("127.0.0.6"), node.known_hosts_line("127.0.0.7"));
    let inventory = d.join("inventory.toml");
    let db = d.join("history.db");
    write(
        &inventory,
        &format!(
            "[defaults]\nuser = \"{TEST_USER}\"\nidentity_file = \"{key}\"\nknown_hosts = \"{known}\"\n\
             connect_timeout = \"5s\"\nroles = [\"control-plane\", \"etcd\"]\n\
             [[clusters]]\nname = \"deep\"\njump = [\"127.0.0.1:{f}\", \"127.0.0.5:{s}\"]\n\
             [[clusters.hosts]]\nname = \"n1\"\naddress = \"127.0.0.6\"\nport = {p}\n\
             [[clusters.hosts]]\nname = \"n2\"\naddress = \"127.0.0.7\"\nport = {p}\n\
             [[hosts]]\nname = \"n3-first-bastion-only\"\naddress = \"127.0.0.6\"\nport = {p}\njump = \"127.0.0.1:{f}\"\n",
            key = key.display(),
            known = known.display(),
        ),
    );
    let scan = || fleetaudit(&["scan", "-i", inventory.to_str().unwrap(), "--db", db.to_str().unwrap()]);

    // 1. The second bastion's key is unknown: every host behind it fails naming it (and the hop before it); the
    //    first bastion was logged in to once, the node never contacted.
    write(&known, &format!("{node_lines}{}", first.known_hosts_line("127.0.0.1")));
    let out = scan();
    assert_eq!(out.status.code(), Some(2), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(outcomes(&db), "n1|error|jump_failed\nn2|error|jump_failed\nn3-first-bastion-only|error|jump_failed\n");
    let m = message(&db, "n1");
    assert!(
        m.starts_with(&format!(
            "jump host {TEST_USER}@127.0.0.5:{s} (through {TEST_USER}@127.0.0.1:{f}): host key unknown: 127.0.0.5:{s}"
        )) && m.contains("[host_key_unknown]"),
        "{m}"
    );
    // The first bastion alone cannot reach the node: its PermitOpen names only the second bastion.
    let m = message(&db, "n3-first-bastion-only");
    assert!(m.contains("refused to open a tunnel to 127.0.0.6") && m.contains("administratively prohibited"), "{m}");
    assert_eq!(first.logins(), 1, "one login to the first bastion for the whole scan:\n{}", first.log());
    assert_eq!(node.logins(), 0);

    // 2. Every hop trusted: both nodes audited through one connection per chain prefix.
    write(
        &known,
        &format!("{node_lines}{}{}", first.known_hosts_line("127.0.0.1"), second.known_hosts_line("127.0.0.5")),
    );
    let out = scan();
    assert_eq!(out.status.code(), Some(2), "n3 still cannot be reached:\n{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(outcomes(&db), "n1|audited|-\nn2|audited|-\nn3-first-bastion-only|error|jump_failed\n");
    assert_eq!((first.logins(), second.logins(), node.logins()), (2, 1, 2), "{}", second.log());
    // The second bastion saw its connection come from the first one's tunnel, not from us.
    assert!(second.log().contains("Connection from 127.0.0.1"), "{}", second.log());

    // 3. The same chain from ssh_config: `ProxyJump a,b`, and a first hop whose own ProxyJump comes first.
    let config = d.join("ssh_config");
    write(
        &config,
        &format!(
            "Host node\n  HostName 127.0.0.6\n  Port {p}\n  ProxyJump first,second\nHost via-second\n  HostName 127.0.0.7\n  \
             Port {p}\n  ProxyJump second\nHost second\n  HostName 127.0.0.5\n  Port {s}\n  ProxyJump first\n\
             Host first\n  HostName 127.0.0.1\n  Port {f}\n"
        ),
    );
    let plain = d.join("plain.toml");
    write(
        &plain,
        &format!(
            "[defaults]\nuser = \"{TEST_USER}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\n\
             [[hosts]]\nname = \"a\"\naddress = \"node\"\n[[hosts]]\nname = \"b\"\naddress = \"via-second\"\n",
            key.display(),
            known.display()
        ),
    );
    let out = fleetaudit(&["check", "-i", plain.to_str().unwrap(), "--ssh-config", config.to_str().unwrap()]);
    let check = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{check}{}", text(&out.stderr));
    assert!(check.contains("2 reachable, 0 not"), "{check}");
    assert_eq!((first.logins(), second.logins()), (3, 2), "one more login per bastion for both hosts");
}
