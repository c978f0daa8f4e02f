//! The simulator's SFTP server: a read-only `sftp-server` over a node's in-memory [`FileTree`], answering as
//! OpenSSH's `sftp-server -R` does for the login it runs as (the audit user through the `sftp` subsystem, root
//! through [`super::SUDO_SFTP_COMMAND`]).
//!
//! Owns: the SFTP v3 requests it serves (init, stat, lstat, fstat, open for reading, read, close, opendir,
//! readdir, realpath; anything else is `SSH_FX_OP_UNSUPPORTED`, any open for writing `PERMISSION_DENIED`), the
//! mapping of the kernel's errno to SFTP status codes as `sftp-server.c` (`errno_to_portable`) maps them, and
//! its limits (read length, directory batch, open handles). Must not touch: the tree's permission rules
//! (`tree.rs` owns them), the SSH session (`mod.rs` hands it a channel).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use russh_sftp::protocol::{
    Attrs, Data, ExtendedReply, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;

use super::tree::{Errno, FileTree, Identity, Inode, Kind};

/// The OpenSSH extension that tells a client the server's limits.
const LIMITS: &str = "limits@openssh.com";

/// The most bytes one read returns: OpenSSH's `SFTP_MAX_READ_LENGTH` (256 KiB less 1 KiB); a client asking
/// for more gets a short read, as from a real server.
const MAX_READ: u32 = (256 << 10) - 1024;

/// Names per readdir answer: OpenSSH's `NUM_ENTRIES`.
const DIR_BATCH: usize = 100;

/// Open handles per session; past it an open fails (OpenSSH is bounded by its file descriptors). Bounds the
/// memory a client can make the simulator hold.
const MAX_HANDLES: usize = 256;

/// What [`hostile`] says its first reply's length is: 16 bytes short of 4 GiB.
pub const HOSTILE_LENGTH: u32 = 0xFFFF_FFF0;

/// [`super::Behavior::SftpHostile`]: answers `SSH_FXP_INIT` with version 3, then the first request with
/// [`HOSTILE_LENGTH`] and a few bytes of a DATA packet, and holds the channel open reading what comes, so
/// that only the client's own limits end the session.
pub(super) async fn hostile(channel: russh::Channel<russh::server::Msg>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = channel.into_stream();
    let mut init = [0u8; 9];
    if stream.read_exact(&mut init).await.is_err() || stream.write_all(&[0, 0, 0, 5, 2, 0, 0, 0, 3]).await.is_err() {
        return;
    }
    let mut length = [0u8; 4];
    if stream.read_exact(&mut length).await.is_err() {
        return;
    }
    let mut reply = HOSTILE_LENGTH.to_be_bytes().to_vec();
    reply.extend_from_slice(&[103, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xE0]);
    reply.extend_from_slice(&[b'x'; 64]);
    if stream.write_all(&reply).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// How the session treats file opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opens {
    /// As the permission bits say.
    Checked,
    /// Every open and opendir is refused (`PERMISSION_DENIED`) while stats still answer: a mandatory access
    /// policy (SELinux, AppArmor) that confines sftp-server.
    Denied,
}

enum Open {
    File { data: Bytes, inode: Inode },
    Dir { entries: Vec<File>, sent: usize, inode: Inode },
}

/// One SFTP session.
pub(super) struct Session {
    tree: Arc<FileTree>,
    who: Identity,
    /// Where relative paths start: the login's home directory.
    home: String,
    opens: Opens,
    handles: HashMap<String, Open>,
    next_handle: u64,
    initialised: bool,
    /// uid → user name and gid → group name, from the node's own /etc/passwd and /etc/group (for `ls -l`
    /// long names).
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Session {
    pub(super) fn new(tree: Arc<FileTree>, who: Identity, home: String, opens: Opens) -> Session {
        let (users, groups) = (tree.names("/etc/passwd"), tree.names("/etc/group"));
        Session { tree, who, home, opens, handles: HashMap::new(), next_handle: 0, initialised: false, users, groups }
    }

    /// An absolute path from a client's (relative ones start at the home directory).
    fn absolute(&self, path: &str) -> String {
        if path.starts_with('/') {
            path.to_owned()
        } else if path.is_empty() || path == "." {
            self.home.clone()
        } else {
            format!("{}/{path}", self.home)
        }
    }

    fn attrs(&self, inode: &Inode) -> FileAttributes {
        FileAttributes {
            size: Some(inode.size()),
            uid: Some(inode.uid),
            user: None,
            gid: Some(inode.gid),
            group: None,
            permissions: Some(inode.type_bits() | inode.mode),
            atime: Some(inode.mtime()),
            mtime: Some(inode.mtime()),
        }
    }

    /// An `ls -l` line as OpenSSH's `ls_file` writes it for readdir.
    fn long_name(&self, name: &str, inode: &Inode) -> String {
        let kind = match inode.kind {
            Kind::Dir => 'd',
            Kind::Symlink(_) => 'l',
            Kind::File => '-',
        };
        let mut perms = String::with_capacity(10);
        perms.push(kind);
        for shift in [6, 3, 0] {
            let bits = (inode.mode >> shift) & 7;
            perms.push(if bits & 4 != 0 { 'r' } else { '-' });
            perms.push(if bits & 2 != 0 { 'w' } else { '-' });
            perms.push(if bits & 1 != 0 { 'x' } else { '-' });
        }
        let user = self.users.get(&inode.uid).cloned().unwrap_or_else(|| inode.uid.to_string());
        let group = self.groups.get(&inode.gid).cloned().unwrap_or_else(|| inode.gid.to_string());
        format!("{perms}    1 {user:<8} {group:<8} {:>8} Nov 27  2024 {name}", inode.size())
    }

    fn stat_path(&self, path: &str, follow: bool) -> Result<FileAttributes, StatusReply> {
        let (_, inode) = self.tree.lookup(&self.absolute(path), follow, &self.who).map_err(status)?;
        Ok(self.attrs(inode))
    }

    fn new_handle(&mut self, open: Open) -> Result<String, StatusReply> {
        if self.handles.len() >= MAX_HANDLES {
            return Err(StatusCode::Failure.with_message("too many open handles"));
        }
        self.next_handle += 1;
        let handle = self.next_handle.to_string();
        self.handles.insert(handle.clone(), open);
        Ok(handle)
    }

    fn refuse_opens(&self) -> Result<(), StatusReply> {
        match self.opens {
            Opens::Checked => Ok(()),
            Opens::Denied => Err(StatusCode::PermissionDenied.with_message("Permission denied")),
        }
    }
}

/// The SFTP status for a failed lookup, as OpenSSH's `errno_to_portable` maps errno.
fn status(e: Errno) -> StatusReply {
    match e {
        Errno::NoEntry | Errno::NotDir | Errno::Loop => StatusCode::NoSuchFile.with_message("No such file"),
        Errno::Access => StatusCode::PermissionDenied.with_message("Permission denied"),
    }
}

fn ok(id: u32) -> Status {
    Status { id, status_code: StatusCode::Ok, error_message: "Success".into(), language_tag: "en-US".into() }
}

impl russh_sftp::server::Handler for Session {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.with_message("Operation unsupported")
    }

    async fn init(&mut self, _version: u32, _extensions: HashMap<String, String>) -> Result<Version, Self::Error> {
        if self.initialised {
            return Err(StatusCode::BadMessage.with_message("init sent twice"));
        }
        self.initialised = true;
        // Version 3 with the one OpenSSH extension served here, `limits@openssh.com` (PROTOCOL in OpenSSH's
        // source): like sftp-server, this server answers each read whole up to [`MAX_READ`], and says so.
        let mut v = Version::new();
        v.extensions.insert(LIMITS.into(), "1".into());
        Ok(v)
    }

    async fn extended(&mut self, id: u32, request: String, _data: Vec<u8>) -> Result<Packet, Self::Error> {
        if request != LIMITS {
            return Err(self.unimplemented());
        }
        // max-packet-length, max-read-length, max-write-length (read-only: 0), max-open-handles.
        let mut data = Vec::with_capacity(32);
        for n in [256u64 << 10, u64::from(MAX_READ), 0, MAX_HANDLES as u64] {
            data.extend_from_slice(&n.to_be_bytes());
        }
        Ok(Packet::ExtendedReply(ExtendedReply { id, data }))
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs { id, attrs: self.stat_path(&path, true)? })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs { id, attrs: self.stat_path(&path, false)? })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let inode = match self.handles.get(&handle) {
            Some(Open::File { inode, .. } | Open::Dir { inode, .. }) => inode,
            None => return Err(StatusCode::Failure.with_message("invalid handle")),
        };
        Ok(Attrs { id, attrs: self.attrs(inode) })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let writes =
            OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::EXCLUDE;
        if pflags.intersects(writes) {
            // sftp-server -R: "Refusing open request in read-only mode".
            return Err(StatusCode::PermissionDenied.with_message("Permission denied"));
        }
        self.refuse_opens()?;
        let (_, inode) = self.tree.lookup(&self.absolute(&filename), true, &self.who).map_err(status)?;
        if !self.who.may(inode, 4) {
            return Err(StatusCode::PermissionDenied.with_message("Permission denied"));
        }
        let open = Open::File { data: inode.data.clone(), inode: inode.clone() };
        Ok(Handle { id, handle: self.new_handle(open)? })
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Result<Data, Self::Error> {
        match self.handles.get(&handle) {
            Some(Open::File { data, inode }) => {
                if inode.kind == Kind::Dir {
                    // read(2) on a directory: EISDIR, which OpenSSH reports as a plain failure.
                    return Err(StatusCode::Failure.with_message("Is a directory"));
                }
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                if start >= data.len() {
                    return Err(StatusCode::Eof.with_message("End of file"));
                }
                let end = start.saturating_add(len.min(MAX_READ) as usize).min(data.len());
                Ok(Data { id, data: data[start..end].to_vec() })
            }
            Some(Open::Dir { .. }) => Err(StatusCode::Failure.with_message("Is a directory")),
            None => Err(StatusCode::Failure.with_message("invalid handle")),
        }
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(_) => Ok(ok(id)),
            None => Err(StatusCode::Failure.with_message("invalid handle")),
        }
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        self.refuse_opens()?;
        let (canonical, inode) = self.tree.lookup(&self.absolute(&path), true, &self.who).map_err(status)?;
        if inode.kind != Kind::Dir {
            return Err(status(Errno::NotDir));
        }
        if !self.who.may(inode, 4) {
            return Err(StatusCode::PermissionDenied.with_message("Permission denied"));
        }
        // sftp-server lstat()s each name for its attributes and skips those it cannot stat: without search
        // permission on the directory that is every one, so the listing is empty.
        let entries = if self.who.may(inode, 1) {
            self.tree
                .children(&canonical)
                .into_iter()
                .map(|(name, child)| File {
                    longname: self.long_name(&name, child),
                    attrs: self.attrs(child),
                    filename: name,
                })
                .collect()
        } else {
            Vec::new()
        };
        let open = Open::Dir { entries, sent: 0, inode: inode.clone() };
        Ok(Handle { id, handle: self.new_handle(open)? })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.handles.get_mut(&handle) {
            Some(Open::Dir { entries, sent, .. }) => {
                if *sent >= entries.len() {
                    return Err(StatusCode::Eof.with_message("End of file"));
                }
                let end = (*sent + DIR_BATCH).min(entries.len());
                let files = entries[*sent..end].to_vec();
                *sent = end;
                Ok(Name { id, files })
            }
            Some(Open::File { .. }) | None => Err(StatusCode::Failure.with_message("invalid handle")),
        }
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let canonical = self.tree.resolve(&self.absolute(&path), true, &self.who).map_err(status)?;
        Ok(Name {
            id,
            files: vec![File { filename: canonical.clone(), longname: canonical, attrs: FileAttributes::empty() }],
        })
    }
}
