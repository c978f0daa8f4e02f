//! The SSH transport against a real OpenSSH sshd on loopback.

mod support;

use std::time::Duration;

use fleetaudit::ps;
use fleetaudit::ssh::{HostKeyPolicy, Target, Transport, TransportConfig};
use support::{Sshd, TEST_USER, keygen};

#[tokio::test]
async fn captures_the_process_table_of_a_pid_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "id_ed25519");
    let sshd = Sshd::start(
        &dir.path().join("node"),
        &[&key],
        &["kube-apiserver --anonymous-auth=false --kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt"],
        &[],
    );
    let known = dir.path().join("known_hosts");
    support::write(&known, &sshd.known_hosts_line("127.0.0.1"));
    let t = Transport::new(TransportConfig {
        known_hosts: vec![known],
        policy: HostKeyPolicy::Strict,
        accepted_hosts: dir.path().join("accepted"),
        shared_accepted: Vec::new(),
    })
    .unwrap();
    let keys = [key];
    let target = Target {
        name: "node",
        address: "127.0.0.1",
        port: sshd.port,
        user: TEST_USER,
        identity_files: &keys,
        known_hosts: &[],
        jump: &[],
        certificate_files: &[],
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(10),
    };
    let capture = t.capture(&target).await.unwrap();
    let table = ps::parse(&capture.stdout).unwrap();
    let cmds: Vec<&str> = table.processes.iter().map(|p| p.cmd.as_str()).collect();
    assert!(cmds.iter().any(|c| c.starts_with("kube-apiserver --anonymous-auth=false")), "{cmds:#?}");
    assert!(table.processes.iter().any(|p| p.pid == 1 && p.cmd.contains("sshd")), "{cmds:#?}");
    assert!(table.processes.len() < 12, "only the namespace's processes are visible: {cmds:#?}");
    assert!(cmds.contains(&"ps -ef"));
}
