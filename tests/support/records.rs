//! FileRecords as the store keeps them, for the tests that record scans with files (store_files, report_files):
//! a kubelet config whose contents change between two scans, a path the audit login may not read.

use fleetaudit::store::FileRecord;
use sha2::{Digest, Sha256};

pub const CONFIG: &str = "/var/lib/kubelet/config.yaml";
pub const BEFORE: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nreadOnlyPort: 0\n";
pub const AFTER: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nreadOnlyPort: 10255\n";
pub const DENIED: &str = "permission denied: the audit login cannot read it; see Privilege in the README";

/// SHA-256 as lowercase hex, as the store keeps it.
pub fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A path stat'ed only, root's.
pub fn stat(path: &str, kind: &str, mode: u32) -> FileRecord {
    FileRecord {
        path: path.to_string(),
        kind: Some(kind.to_string()),
        mode: Some(mode),
        uid: Some(0),
        gid: Some(0),
        owner: Some("root:root".to_string()),
        size: Some(if kind == "dir" { 4096 } else { 5632 }),
        sha256: None,
        redacted: false,
        content: None,
        problem: None,
        problem_message: None,
        roles: Vec::new(),
    }
}

/// A file read, with its contents.
pub fn read(path: &str, mode: u32, body: &str) -> FileRecord {
    FileRecord {
        size: Some(body.len() as u64),
        sha256: Some(sha(body.as_bytes())),
        content: Some(body.as_bytes().to_vec()),
        ..stat(path, "file", mode)
    }
}

/// A path that could not be learned.
pub fn problem(path: &str, kind: &str, message: &str) -> FileRecord {
    FileRecord::of_problem(path, kind, message)
}
