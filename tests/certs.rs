//! OpenSSH certificates end to end, against real `sshd`s whose host certificates and trusted user CA are made by
//! `ssh-keygen -s` in the test: a host trusted only through a `@cert-authority` line is audited with no host key
//! in known_hosts, each refusal (wrong principal, expired, unknown CA, revoked CA) is stored with its own kind,
//! a plain key still works beside the CA, and fleetaudit logs in with user certificates from a file beside the
//! key, from ssh_config's `CertificateFile` and from ssh-agent; an expired user certificate fails before any
//! connection.

mod support;

use std::path::Path;
use std::process::Command;

use support::{
    Agent, HostCert, Sshd, SshdOptions, TEST_USER, fleetaudit, fleetaudit_env, keygen, message, outcomes, sign, sqlite,
    text, write,
};

const APISERVER: &str = "kube-apiserver --anonymous-auth=false --kubelet-certificate-authority=/etc/ca.crt";

fn public(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub")).unwrap().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen").arg("-lf").arg(key.with_extension("pub")).output().unwrap();
    text(&out.stdout).split_whitespace().nth(1).unwrap().to_owned()
}

#[test]
fn hosts_are_trusted_through_their_ca_and_each_refusal_has_its_kind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = keygen(d, "id_ed25519");
    let ca = keygen(d, "host_ca");
    let other_ca = keygen(d, "other_ca");
    // One node with a certificate for 127.0.0.2 only, also listening on 127.0.0.3 (the wrong principal), and one
    // whose certificate expired an hour ago.
    let node = Sshd::start_opts(
        &d.join("node"),
        &[&key],
        &[APISERVER],
        &["127.0.0.3"],
        &SshdOptions {
            address: Some("127.0.0.2"),
            host_cert: Some(HostCert {
                ca: &ca,
                principals: "127.0.0.2,node-a.example.internal",
                validity: "-5m:+1h",
                serial: 42,
                key_id: "node-a host key",
            }),
            ..SshdOptions::default()
        },
    );
    let expired = Sshd::start_opts(
        &d.join("expired"),
        &[&key],
        &[APISERVER],
        &[],
        &SshdOptions {
            address: Some("127.0.0.4"),
            host_cert: Some(HostCert {
                ca: &ca,
                principals: "127.0.0.4",
                validity: "-2h:-1h",
                serial: 7,
                key_id: "node-c",
            }),
            ..SshdOptions::default()
        },
    );
    let known = d.join("known_hosts");
    let inventory = d.join("inventory.toml");
    let db = d.join("history.db");
    write(
        &inventory,
        &format!(
            "[defaults]\nuser = \"{TEST_USER}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\nroles = [\"control-plane\"]\n\
             [[hosts]]\nname = \"a-good\"\naddress = \"127.0.0.2\"\nport = {p}\n\
             [[hosts]]\nname = \"b-wrong-principal\"\naddress = \"127.0.0.3\"\nport = {p}\n\
             [[hosts]]\nname = \"c-expired\"\naddress = \"127.0.0.4\"\nport = {e}\n",
            key.display(),
            known.display(),
            p = node.port,
            e = expired.port,
        ),
    );
    let scan = || {
        let out = fleetaudit(&["scan", "-i", inventory.to_str().unwrap(), "--db", db.to_str().unwrap()]);
        (out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
    };
    let ca_line = |ca: &Path| format!("@cert-authority [127.0.0.*]:* {}\n", public(ca));

    // 1. Only a CA line (with a wildcard port, as `ssh` matches `[host]:port` names): no host key anywhere.
    write(&known, &format!("# our fleet's host CA\n{}", ca_line(&ca)));
    let (code, out) = scan();
    assert_eq!(code, Some(2), "{out}");
    assert_eq!(
        outcomes(&db),
        "a-good|audited|-\nb-wrong-principal|error|host_cert_principal\nc-expired|error|host_cert_expired\n"
    );
    // The stored identity: the host key, and the certificate that vouched for it.
    let identity = sqlite(
        &db,
        "SELECT k.fingerprint, c.ca_fingerprint, c.serial, c.key_id, c.principals, c.description FROM scan_hosts sh \
         JOIN hosts h ON h.id = sh.host_id JOIN host_keys k ON k.id = sh.host_key_id \
         JOIN host_certificates c ON c.id = sh.host_certificate_id WHERE h.name = 'a-good'",
    );
    let (ca_fp, host_fp) = (fingerprint(&ca), fingerprint(&node.dir.join("host_ed25519")));
    assert_eq!(
        identity.trim(),
        format!(
            "{host_fp}|{ca_fp}|42|node-a host key|127.0.0.2,node-a.example.internal|certificate signed by CA \
             {ca_fp}, serial 42, key id \"node-a host key\""
        )
    );
    let m = message(&db, "b-wrong-principal");
    assert!(m.contains("is for \"127.0.0.2\", \"node-a.example.internal\", not 127.0.0.3") && m.contains("-n"), "{m}");
    let m = message(&db, "c-expired");
    assert!(m.contains("is expired: valid from ") && m.contains("Renew the host's certificate"), "{m}");
    // The report and `check` say who vouched for the host.
    let page = std::fs::read_to_string(d.join("fleetaudit-report").join("latest/index.html")).unwrap_or_default();
    assert!(!page.is_empty(), "the report was rendered");
    let host_page = std::fs::read_dir(d.join("fleetaudit-report"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("hosts/a-good.html"))
        .find(|p| p.exists())
        .unwrap();
    let html = std::fs::read_to_string(host_page).unwrap();
    assert!(html.contains(&format!("certificate signed by CA {ca_fp}, serial 42")), "{html}");
    let out = fleetaudit(&["check", "-i", inventory.to_str().unwrap(), "--only", "a-good", "--format", "json"]);
    let check = text(&out.stdout);
    assert!(check.contains(&format!("\"host_certificate\": \"certificate signed by CA {ca_fp}")), "{check}");

    // 2. Another CA for the same names: this one is unknown, and the message offers both fixes.
    write(&known, &ca_line(&other_ca));
    scan();
    assert_eq!(
        outcomes(&db),
        "a-good|error|host_cert_unknown_ca\nb-wrong-principal|error|host_cert_unknown_ca\nc-expired|error|host_cert_unknown_ca\n"
    );
    let m = message(&db, "a-good");
    assert!(
        m.contains(&format!("signed by CA {ca_fp}"))
            && m.contains("@cert-authority")
            && m.contains("the CAs trusted for it"),
        "{m}"
    );

    // 3. Several CAs, ours revoked: refused however valid the certificate.
    write(&known, &format!("{}{}@revoked * {}\n", ca_line(&other_ca), ca_line(&ca), public(&ca)));
    scan();
    assert_eq!(
        outcomes(&db),
        "a-good|error|host_ca_revoked\nb-wrong-principal|error|host_ca_revoked\nc-expired|error|host_ca_revoked\n"
    );
    assert!(message(&db, "a-good").contains("marked @revoked at"), "{}", message(&db, "a-good"));

    // 4. No CA for these hosts, but a plain known_hosts line for one: it works beside certificates, as in OpenSSH.
    write(
        &known,
        &format!("@cert-authority *.example.internal {}\n{}", public(&other_ca), node.known_hosts_line("127.0.0.2")),
    );
    scan();
    assert_eq!(
        outcomes(&db),
        "a-good|audited|-\nb-wrong-principal|error|host_cert_unknown_ca\nc-expired|error|host_cert_unknown_ca\n"
    );
    let certs =
        sqlite(&db, "SELECT count(host_certificate_id) FROM scan_hosts WHERE scan_id = (SELECT max(id) FROM scans)");
    assert_eq!(certs.trim(), "0", "trusted by its key, not its certificate");

    // 5. A hashed CA line (`|1|salt|HMAC-SHA1(salt, "[host]:port")`, hiding the names it trusts) works too.
    use base64::Engine as _;
    use hmac::{KeyInit as _, Mac as _};
    let salt = b"fleetaudit-test-salt!";
    let mut mac = <hmac::Hmac<sha1::Sha1>>::new_from_slice(salt).unwrap();
    mac.update(format!("[127.0.0.2]:{}", node.port).as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD;
    let hashed = format!("|1|{}|{}", b64.encode(salt), b64.encode(mac.finalize().into_bytes()));
    write(&known, &format!("@cert-authority {hashed} {}\n", public(&ca)));
    scan();
    let rows = outcomes(&db);
    assert!(rows.starts_with("a-good|audited|-\nb-wrong-principal|error|host_cert_unknown_ca\n"), "{rows}");
}

#[test]
fn logins_with_user_certificates_from_files_ssh_config_and_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let user_ca = keygen(d, "user_ca");
    // sshd trusts the user CA and lists no user key: only a certificate logs in.
    let node = Sshd::start_opts(
        &d.join("node"),
        &[],
        &[APISERVER],
        &[],
        &SshdOptions {
            config: &format!("TrustedUserCAKeys {}\n", user_ca.with_extension("pub").display()),
            log: true,
            ..SshdOptions::default()
        },
    );
    let known = d.join("known_hosts");
    write(&known, &node.known_hosts_line("127.0.0.1"));
    let home = d.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let db = d.join("history.db");
    let inventory = |name: &str, defaults: &str| {
        let path = d.join(name);
        write(
            &path,
            &format!(
                "[defaults]\nuser = \"{TEST_USER}\"\nknown_hosts = \"{}\"\ndatabase = \"{}\"\nreport_dir = \"{}\"\n{defaults}\
                 [[hosts]]\nname = \"n1\"\naddress = \"127.0.0.1\"\nport = {}\nroles = [\"control-plane\"]\n",
                known.display(),
                db.display(),
                d.join("report").display(),
                node.port
            ),
        );
        path
    };
    let scan = |inv: &Path, env: &[(&str, &Path)]| {
        let mut env = env.to_vec();
        env.push(("HOME", &home));
        let out = fleetaudit_env(&["scan", "-i", inv.to_str().unwrap()], &env);
        (out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
    };

    // A key with its certificate beside it (KEY-cert.pub), as `ssh` looks for one.
    let beside = keygen(d, "id_beside");
    sign(&user_ca, &beside, &["-I", "beside", "-n", TEST_USER, "-V", "-5m:+1h"]);
    let inv = inventory("beside.toml", &format!("identity_file = \"{}\"\n", beside.display()));
    let (code, out) = scan(&inv, &[]);
    assert_eq!((code, outcomes(&db)), (Some(1), "n1|audited|-\n".to_owned()), "{out}");
    assert!(
        node.log().contains("Accepted publickey for fleetaudit-test") && node.log().contains("ID beside"),
        "{}",
        node.log()
    );

    // Without the certificate the same key is refused: it is in no authorized_keys.
    let plain = keygen(d, "id_plain");
    let inv = inventory("plain.toml", &format!("identity_file = \"{}\"\n", plain.display()));
    let (code, _) = scan(&inv, &[]);
    assert_eq!((code, outcomes(&db)), (Some(2), "n1|error|auth_failed\n".to_owned()));

    // `certificate_file` in the inventory, and ssh_config's CertificateFile, for a certificate kept elsewhere.
    let elsewhere = keygen(d, "id_elsewhere");
    let cert = sign(&user_ca, &elsewhere, &["-I", "elsewhere", "-n", TEST_USER, "-V", "-5m:+1h"]);
    let kept = d.join("certs/elsewhere.pub");
    std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
    std::fs::rename(&cert, &kept).unwrap();
    let inv = inventory(
        "certificate_file.toml",
        &format!("identity_file = \"{}\"\ncertificate_file = \"{}\"\n", elsewhere.display(), kept.display()),
    );
    let (code, out) = scan(&inv, &[]);
    assert_eq!((code, outcomes(&db)), (Some(1), "n1|audited|-\n".to_owned()), "{out}");
    let config = d.join("ssh_config");
    write(
        &config,
        &format!("Host 127.0.0.1\n  IdentityFile {}\n  CertificateFile {}\n", elsewhere.display(), kept.display()),
    );
    let inv = inventory("ssh_config.toml", &format!("ssh_config = \"{}\"\n", config.display()));
    let (code, out) = scan(&inv, &[]);
    assert_eq!((code, outcomes(&db)), (Some(1), "n1|audited|-\n".to_owned()), "{out}");

    // From the agent: `ssh-add` loads the key with its certificate beside it; no key file in the inventory.
    let agent_key = keygen(d, "id_agent");
    sign(&user_ca, &agent_key, &["-I", "agent", "-n", TEST_USER, "-V", "-5m:+1h"]);
    let agent = Agent::start(d);
    let out = Command::new("ssh-add").arg(&agent_key).env("SSH_AUTH_SOCK", &agent.sock).output().unwrap();
    assert!(out.status.success() && text(&out.stderr).contains("Certificate added"), "{}", text(&out.stderr));
    let inv = inventory("agent.toml", "");
    let (code, out) = scan(&inv, &[("SSH_AUTH_SOCK", &agent.sock)]);
    assert_eq!((code, outcomes(&db)), (Some(1), "n1|audited|-\n".to_owned()), "{out}");
    assert!(node.log().contains("ID agent"), "{}", node.log());

    // An expired certificate is refused before connecting: sshd sees no new connection.
    let stale = keygen(d, "id_stale");
    sign(&user_ca, &stale, &["-I", "stale", "-n", TEST_USER, "-V", "-2h:-1h"]);
    let inv = inventory("stale.toml", &format!("identity_file = \"{}\"\n", stale.display()));
    let connections = node.log().matches("Connection from").count();
    let (code, _) = scan(&inv, &[]);
    assert_eq!((code, outcomes(&db)), (Some(2), "n1|error|user_cert_expired\n".to_owned()));
    let m = message(&db, "n1");
    assert!(m.contains("id_stale-cert.pub") && m.contains("is expired") && m.contains("Renew it"), "{m}");
    assert_eq!(node.log().matches("Connection from").count(), connections, "{}", node.log());
}
