//! `fleetaudit demo`: a local fleet of simulated nodes, and the inventory, keys and known_hosts to scan it, so
//! the whole pipeline runs over real SSH on a machine with no cluster.
//!
//! Owns: which nodes the demo fleet holds, and the next steps it prints (commands that run as typed). Must not
//! touch: the scan itself (the demo scans with exactly the code `fleetaudit scan` uses) or the files' format (the
//! simulator's [`crate::sim::fleet`] writes them).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::sim::fleet::{self, Fleet, Member, ScanSettings};
use crate::sim::{self, Behavior, NodeSpec, SimError};

/// The demo fleet: (host name, cluster, profile); each node has its profile's roles.
const NODES: &[(&str, &str, &str)] = &[
    ("prod-cp-1", "prod", "kubeadm-hardened"),
    ("prod-cp-2", "prod", "kubeadm-default"),
    ("prod-worker-1", "prod", "worker"),
    ("prod-etcd-1", "prod", "etcd-only"),
    ("legacy-cp-1", "legacy", "hyperkube"),
    ("legacy-cp-2", "legacy", "systemd-hard-way"),
    ("kops-cp-1", "kops", "kops"),
    ("edge-1", "edge", "k3s"),
    ("appliance-1", "edge", "busybox"),
];

/// A node whose kubelet serves a certificate that expires in a week (the `cert-expiring` fault), so the demo's
/// expiry rules and the report's expiry list have something to say.
const EXPIRING: &str = "prod-worker-1";

/// A host of the demo inventory that nothing answers on.
const UNREACHABLE: &str = "prod-cp-3";

/// The demo directory, ready to scan; the simulated nodes run while this lives.
pub type Demo = Fleet;

/// Starts the simulated nodes and writes `dir`/{id_ed25519, known_hosts, inventory.toml}.
pub async fn prepare(dir: &Path) -> Result<Demo, SimError> {
    let member = |name: &str, cluster: &str, roles: &[&str], behavior, table: &[u8], note: &str| Member {
        spec: NodeSpec { name: name.to_owned(), table: Arc::new(table.to_vec()), behavior, latency: Duration::ZERO },
        cluster: cluster.to_owned(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        note: note.to_owned(),
    };
    let mut members: Vec<Member> = NODES
        .iter()
        .filter_map(|(name, cluster, profile)| {
            let p = sim::find_profile(profile)?;
            let behavior = if *name == EXPIRING { Behavior::CertExpiring } else { Behavior::Normal };
            Some(member(name, cluster, p.roles, behavior, p.capture.as_bytes(), p.name))
        })
        .collect();
    members.push(member(UNREACHABLE, "prod", &["control-plane"], Behavior::Refused, b"", "nothing listens here"));
    let settings = ScanSettings {
        header: "# Written by `fleetaudit demo`: simulated nodes on 127.0.0.1 (new ports and host keys at each run).\n"
            .into(),
        concurrency: None,
        connect_timeout: Duration::from_secs(3),
        command_timeout: Duration::from_secs(10),
        sftp_command: Some(sim::SUDO_SFTP_COMMAND.to_owned()),
    };
    fleet::launch(dir, members, &settings).await
}

/// What to run after the demo, as commands that run as typed in the shell the demo ran from: this binary by the
/// name that finds it (`fleetaudit` when that is it on `PATH`, else its path, relative to the working directory
/// when under it: `./target/debug/fleetaudit` for a `cargo run` user), the `sqlite3` query only when `sqlite3` is
/// on `PATH`, and no scan of the demo's inventory, whose nodes stop when the demo does.
pub fn next_steps(db: &Path, dir: &Path) -> Vec<String> {
    let me = invoked_as();
    let (db, dir) = (shell_word(&db.display().to_string()), shell_word(&dir.display().to_string()));
    let mut steps = vec![
        format!("{me} history --db {db} --rule apiserver-kubelet-certificate-authority"),
        format!("{me} rules show apiserver-kubelet-certificate-authority"),
    ];
    if on_path("sqlite3").is_some() {
        steps.push(format!(
            "sqlite3 {db} \"SELECT host, rule_id, status FROM latest_findings WHERE status = 'fail' LIMIT 10\""
        ));
    }
    steps.push(format!("{me} demo --dir {dir}"));
    steps
}

/// This binary as the shell finds it (see [`next_steps`]).
pub fn invoked_as() -> String {
    let Ok(exe) = std::env::current_exe() else { return "fleetaudit".to_owned() };
    let same = |p: &Path| p.canonicalize().ok() == exe.canonicalize().ok();
    if on_path("fleetaudit").is_some_and(|p| same(&p)) {
        return "fleetaudit".to_owned();
    }
    let shown = match std::env::current_dir().ok().and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_owned)) {
        Some(relative) => format!("./{}", relative.display()),
        None => exe.display().to_string(),
    };
    shell_word(&shown)
}

/// The first file named `name` in `PATH`'s directories that may be executed.
fn on_path(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// `s` as one POSIX shell word: as it is when it holds nothing the shell treats specially, else single-quoted.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./-:=@,+%".contains(c);
    if !s.is_empty() && s.chars().all(plain) { s.to_owned() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_survive_the_shell() {
        assert_eq!(shell_word("/tmp/demo/fleetaudit.db"), "/tmp/demo/fleetaudit.db");
        assert_eq!(shell_word("/tmp/my demo"), "'/tmp/my demo'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
