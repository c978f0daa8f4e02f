//! An OpenSSH client config honoured end to end: the inventory names hosts only by alias, and ssh_config (with
//! an `Include`) supplies HostName, Port, User, IdentityFile (with `%r`), UserKnownHostsFile and a ProxyJump
//! whose own alias it resolves too; what the inventory does set wins. Against real OpenSSH sshd on loopback.

mod support;

use support::{Sshd, TEST_USER, fleetaudit, keygen, sqlite, text, write};

#[test]
fn hosts_known_only_by_alias_are_reached_as_ssh_would() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The key's file name is only found through `IdentityFile .../id_%r`.
    let key = keygen(d, &format!("id_{TEST_USER}"));
    let node = Sshd::start(&d.join("node"), &[&key], &["kube-apiserver --anonymous-auth=false"], &["127.0.0.2"]);
    let p = node.port;
    let bastion = Sshd::bastion(&d.join("bastion"), &[&key], &format!("127.0.0.2:{p}"), "");
    // Known hosts only in the file ssh_config names: the inventory names none.
    write(
        &d.join("known_hosts_from_ssh_config"),
        &format!(
            "{}{}{}",
            node.known_hosts_line("127.0.0.1"),
            node.known_hosts_line("127.0.0.2"),
            bastion.known_hosts_line("127.0.0.1")
        ),
    );
    std::fs::create_dir_all(d.join("ssh_config.d")).unwrap();
    write(
        &d.join("ssh_config.d/common.conf"),
        &format!(
            "Host *\n  User {TEST_USER}\n  IdentityFile {d}/id_%r\n  IdentityFile {d}/missing_key_is_skipped\n  \
             UserKnownHostsFile {d}/known_hosts_from_ssh_config\n",
            d = d.display()
        ),
    );
    let config = d.join("ssh_config");
    write(
        &config,
        &format!(
            "# as in ~/.ssh/config\nInclude {d}/ssh_config.d/*.conf\n\nHost node-a\n  HostName 127.0.0.1\n  Port {p}\n\n\
             Host node-b\n  HostName 127.0.0.2\n  Port={p}\n  ProxyJump jump-box\n\nHost jump-box\n  HostName 127.0.0.1\n  \
             Port {b}\n  ProxyJump none\n  User nobody-wins-over-this\n",
            d = d.display(),
            b = bastion.port
        ),
    );
    let hosts = "[[hosts]]\nname = \"a\"\naddress = \"node-a\"\n\
                 [[hosts]]\nname = \"b\"\naddress = \"node-b\"\n\
                 [[hosts]]\nname = \"a-port-1\"\naddress = \"node-a\"\nport = 1\n";
    let inventory = d.join("inventory.toml");
    write(&inventory, &format!("[defaults]\nssh_config = \"ssh_config\"\nroles = [\"control-plane\"]\n{hosts}"));
    let db = d.join("history.db");

    let out = fleetaudit(&["scan", "-i", inventory.to_str().unwrap(), "--db", db.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "a-port-1 is unreachable:\n{stdout}{}", text(&out.stderr));
    let rows = sqlite(
        &db,
        "SELECT h.name, h.address, h.port, sh.outcome, coalesce(sh.error_kind, '-') FROM scan_hosts sh \
         JOIN hosts h ON h.id = sh.host_id ORDER BY h.name",
    );
    // HostName and Port from ssh_config; the inventory's own `port = 1` wins over ssh_config's Port.
    assert_eq!(
        rows,
        format!("a|127.0.0.1|{p}|audited|-\na-port-1|127.0.0.1|1|error|unreachable\nb|127.0.0.2|{p}|audited|-\n")
    );
    // b went through the bastion as the jump host's alias says, logging in as the host's User: the jump-box
    // block's own `User` comes after `Host *` set one, and the first value wins.
    assert_eq!(bastion.logins(), 1, "{}", bastion.log());
    assert!(bastion.log().contains(&format!("Accepted publickey for {TEST_USER}")), "{}", bastion.log());

    // --ssh-config on an inventory that names none does the same. (Without it the aliases would go to DNS,
    // which tests do not query: their traffic stays on loopback.)
    let plain = d.join("plain.toml");
    write(&plain, &format!("[defaults]\nroles = [\"control-plane\"]\n{hosts}"));
    let out = fleetaudit(&[
        "check",
        "-i",
        plain.to_str().unwrap(),
        "--only",
        "a",
        "b",
        "--ssh-config",
        config.to_str().unwrap(),
    ]);
    let check = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{check}{}", text(&out.stderr));
    assert!(check.contains("2 reachable, 0 not"), "{check}");

    // A broken ssh_config is bad input (exit 3), named by file and line.
    write(&d.join("ssh_config.d/zz-broken.conf"), "Host *\n  Port ssh\n");
    let out = fleetaudit(&["check", "-i", inventory.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2: Port \"ssh\" is not a port number",
            d.join("ssh_config.d/zz-broken.conf").display()
        )),
        "{err}"
    );
}
