//! The file a process means by a path: on the host, or in its container's mount namespace.
//!
//! Owns: [`Viewer`], which turns a path a running process names (`--config=/var/lib/kube-proxy/config.conf`)
//! into the requests that find it and, once answered, the entry that is that file. A process in a container
//! (kubeadm runs kube-proxy as a DaemonSet whose ConfigMap is mounted at /var/lib/kube-proxy) names paths in
//! its own mount namespace, which the host reaches at `/proc/PID/root/PATH` (proc(5): "a process's view of the
//! filesystem root"); the kernel lets only the process's own user or a privileged reader through there.
//! Must not touch: SSH, rules. It never decides what to read, only where a named path is.

use super::{Entry, FileSet, Problem, Request, Want};

/// How one process sees the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer<'a> {
    pub pid: u32,
    /// The container shim the process runs under, if it runs in a container.
    pub container: Option<&'a str>,
}

/// Where a named path was found, and what the host answered there.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<'f> {
    /// The path the entry is stored under (`/proc/PID/root/PATH` when read through the process's root).
    pub at: String,
    /// `None`: neither place has been asked yet.
    pub entry: Option<&'f Entry>,
    /// For people, when the place needs saying: read through the process's root, or at the host path only.
    pub note: Option<String>,
}

impl Viewer<'_> {
    /// A host process: paths are the host's.
    pub fn host(pid: u32) -> Viewer<'static> {
        Viewer { pid, container: None }
    }

    /// `/proc/PID/root/PATH`.
    pub fn through_root(&self, path: &str) -> String {
        format!("/proc/{}/root{}", self.pid, path)
    }

    /// The requests that find `path` as the process sees it: the host path, and for a process in a container
    /// the path through its root too, in the same batch (no round trip waits on the other).
    pub fn requests(&self, path: &str, want: Want) -> Vec<Request> {
        let path = &*super::clean(path);
        let host = Request { path: path.to_owned(), want };
        match self.container {
            None => vec![host],
            Some(_) => vec![Request { path: self.through_root(path), want }, host],
        }
    }

    /// The file the process means by `path`. For a process in a container: the file through its root when
    /// that could be read; else the host's file, said so (kubeadm mounts the control plane's files into its
    /// static pods at the same paths); a host path that does not exist while the root could not be searched is
    /// not "missing" but unknown, with the fix.
    pub fn locate<'f>(&self, files: &'f FileSet, path: &str) -> Located<'f> {
        let path = &*super::clean(path);
        let host = files.get(path);
        let Some(shim) = self.container else {
            return Located { at: path.to_owned(), entry: host, note: None };
        };
        let inside_at = self.through_root(path);
        let inside = files.get(&inside_at);
        match (inside, host) {
            (Some(e @ Entry::Found { .. }), _) => Located {
                at: inside_at.clone(),
                entry: Some(e),
                note: Some(format!("read in its container (under {shim}) at {inside_at}")),
            },
            (Some(Entry::Problem(Problem::Missing)), _) => Located { at: inside_at, entry: inside, note: None },
            (_, Some(e @ Entry::Found { .. })) => Located {
                at: path.to_owned(),
                entry: Some(e),
                note: Some(format!(
                    "read at the host path: the process runs in a container (under {shim}) and {inside_at} was not \
                     readable, so this is the file its container mounts only if it mounts the host's path there (as \
                     kubeadm's static pods do)"
                )),
            },
            (Some(Entry::Problem(p)), Some(Entry::Problem(Problem::Missing))) => {
                let why = match p {
                    Problem::Denied => "permission denied".to_owned(),
                    other => format!("{other:?}"),
                };
                Located {
                    at: inside_at.clone(),
                    entry: inside,
                    note: Some(format!(
                        "{path} does not exist on the host, and the process runs in a container (under {shim}) \
                         whose own files the audit login cannot see ({inside_at}: {why}): set sftp_command to a \
                         privileged SFTP server (README: Files over SFTP) to read it as the process does"
                    )),
                }
            }
            (None, _) | (_, None) => Located { at: path.to_owned(), entry: None, note: None },
            (Some(_), Some(e)) => Located { at: path.to_owned(), entry: Some(e), note: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Content, Kind, Meta};
    use super::*;

    fn found() -> Entry {
        Entry::Found {
            meta: Meta { kind: Kind::File, mode: 0o644, uid: 0, gid: 0, size: 2 },
            content: Some(Content::plain(b"{}".to_vec())),
            names: None,
        }
    }

    #[test]
    fn a_path_is_asked_and_found_as_the_kernel_reads_it() {
        let v = Viewer::host(7);
        assert_eq!(v.requests("/var/lib/rancher/etcd/", Want::Stat), [Request::stat("/var/lib/rancher/etcd")]);
        assert_eq!(v.requests("//etc/./kubernetes//pki/.", Want::List), [Request::list("/etc/kubernetes/pki")]);
        let mut files = FileSet::default();
        files.insert("/var/lib/rancher/etcd".into(), found());
        assert!(v.locate(&files, "/var/lib/rancher/etcd/").entry.is_some());
        assert_eq!(super::super::clean("/"), "/");
        assert_eq!(super::super::clean("/a/../b/"), "/a/../b", "`..` is the host's to resolve");
        assert_eq!(super::super::clean("rel/"), "rel/");
    }

    #[test]
    fn a_host_process_sees_the_host() {
        let v = Viewer::host(7);
        assert_eq!(v.requests("/a", Want::Read), [Request::read("/a")]);
        let mut files = FileSet::default();
        files.insert("/a".into(), found());
        let l = v.locate(&files, "/a");
        assert_eq!((l.at.as_str(), l.entry.is_some(), l.note), ("/a", true, None));
    }

    #[test]
    fn a_contained_process_is_read_through_its_root_first() {
        let v = Viewer { pid: 12, container: Some("containerd-shim-runc-v2") };
        assert_eq!(
            v.requests("/var/lib/kube-proxy/config.conf", Want::Read),
            [
                Request::read("/proc/12/root/var/lib/kube-proxy/config.conf"),
                Request::read("/var/lib/kube-proxy/config.conf")
            ]
        );
        let path = "/var/lib/kube-proxy/config.conf";
        let inside = "/proc/12/root/var/lib/kube-proxy/config.conf";
        // Readable inside: that decides, whatever the host has.
        let mut files = FileSet::default();
        files.insert(inside.into(), found());
        files.insert(path.into(), Entry::Problem(Problem::Missing));
        let l = v.locate(&files, path);
        assert_eq!(l.at, inside);
        assert!(l.note.unwrap().contains("in its container"));
        // Not readable inside, missing on the host: unknown, with the fix — not "missing".
        files.insert(inside.into(), Entry::Problem(Problem::Denied));
        let l = v.locate(&files, path);
        assert_eq!(l.entry, Some(&Entry::Problem(Problem::Denied)));
        assert!(l.note.unwrap().contains("sftp_command"));
        // Not readable inside, present on the host: the host's file, said so.
        files.insert(path.into(), found());
        let l = v.locate(&files, path);
        assert_eq!(l.at, path);
        assert!(l.note.unwrap().contains("read at the host path"));
        // Missing inside: missing, whatever the host has.
        files.insert(inside.into(), Entry::Problem(Problem::Missing));
        assert_eq!(v.locate(&files, path).entry, Some(&Entry::Problem(Problem::Missing)));
    }
}
