//! SFTP version 3 on the wire (draft-ietf-secsh-filexfer-02, the version OpenSSH speaks): the requests the
//! client sends, written into one buffer, and the server's packets, parsed from the bytes it sent.
//!
//! Owns: the byte layout of packets, the packet size cap, refusing a malformed packet.
//! Must not touch: I/O, which requests are sent and when, what an answer means for a file.
//! Everything parsed here comes from a host: every length is checked against what arrived and against
//! [`MAX_PACKET`] before anything is allocated for it.

use bytes::{Buf, Bytes, BytesMut};

/// The protocol version fleetaudit speaks, as OpenSSH does.
pub const VERSION: u32 = 3;

/// Longest packet accepted (its length field): OpenSSH's sftp-server sends at most `SFTP_MAX_MSG_LENGTH`
/// (256 KiB, sftp-common.h), and a read asks for at most [`super::CHUNK`] bytes, which fits with its header.
pub const MAX_PACKET: usize = 256 << 10;

// Packet types (draft-02 §3).
const INIT: u8 = 1;
const VERSION_REPLY: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const READ: u8 = 5;
const FSTAT: u8 = 8;
const OPENDIR: u8 = 11;
const READDIR: u8 = 12;
const STAT: u8 = 17;
const STATUS: u8 = 101;
const HANDLE: u8 = 102;
const DATA: u8 = 103;
const NAME: u8 = 104;
const ATTRS: u8 = 105;

/// `SSH_FXF_READ`.
const OPEN_READ: u32 = 0x1;

// Attribute flags (draft-02 §5).
const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;
const ATTR_EXTENDED: u32 = 0x8000_0000;

// Status codes (draft-02 §7).
pub const STATUS_OK: u32 = 0;
pub const STATUS_EOF: u32 = 1;
pub const STATUS_NO_SUCH_FILE: u32 = 2;
pub const STATUS_PERMISSION_DENIED: u32 = 3;

/// A status code's name, as the draft gives them.
pub fn status_name(code: u32) -> String {
    let name = match code {
        STATUS_OK => "OK",
        STATUS_EOF => "EOF",
        STATUS_NO_SUCH_FILE => "NO_SUCH_FILE",
        STATUS_PERMISSION_DENIED => "PERMISSION_DENIED",
        4 => "FAILURE",
        5 => "BAD_MESSAGE",
        6 => "NO_CONNECTION",
        7 => "CONNECTION_LOST",
        8 => "OP_UNSUPPORTED",
        other => return format!("status {other}"),
    };
    name.to_owned()
}

/// A request the client sends. Paths and handles are bytes, never text a shell sees.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    Stat(&'a [u8]),
    Open(&'a [u8]),
    OpenDir(&'a [u8]),
    Fstat(&'a [u8]),
    Read { handle: &'a [u8], offset: u64, len: u32 },
    ReadDir(&'a [u8]),
    Close(&'a [u8]),
}

/// Appends the `SSH_FXP_INIT` packet.
pub fn put_init(out: &mut Vec<u8>) {
    out.extend_from_slice(&5u32.to_be_bytes());
    out.push(INIT);
    out.extend_from_slice(&VERSION.to_be_bytes());
}

/// Appends request `id`.
pub fn put(out: &mut Vec<u8>, id: u32, request: Request<'_>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let (kind, target) = match request {
        Request::Stat(p) => (STAT, p),
        Request::Open(p) => (OPEN, p),
        Request::OpenDir(p) => (OPENDIR, p),
        Request::Fstat(h) => (FSTAT, h),
        Request::Read { handle, .. } => (READ, handle),
        Request::ReadDir(h) => (READDIR, h),
        Request::Close(h) => (CLOSE, h),
    };
    out.push(kind);
    out.extend_from_slice(&id.to_be_bytes());
    put_string(out, target);
    match request {
        // Read only, no attributes.
        Request::Open(_) => {
            out.extend_from_slice(&OPEN_READ.to_be_bytes());
            out.extend_from_slice(&0u32.to_be_bytes());
        }
        Request::Read { offset, len, .. } => {
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
        }
        _ => {}
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// What the server may say about a path: the fields present, by the flags it sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `st_mode`, file-type bits included (OpenSSH sends it whole).
    pub permissions: Option<u32>,
}

/// One entry of a listing. The name is bytes: a Linux file name need not be UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub filename: Bytes,
    pub attrs: Attrs,
}

/// A reply to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status { code: u32, message: String },
    Handle(Bytes),
    Data(Bytes),
    Names(Vec<Name>),
    Attrs(Attrs),
}

/// The server's `SSH_FXP_VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub version: u32,
    /// The names of the extensions it announced.
    pub extensions: Vec<String>,
}

/// A packet the server should not have sent, or could not have meant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the SFTP server sent a packet of {0} bytes, more than the {MAX_PACKET} any SFTP server sends")]
    TooLong(usize),
    #[error("the SFTP server sent a packet of type {0}, which is no reply of SFTP version 3")]
    Type(u8),
    #[error("the SFTP server sent a packet of type {0} that ends before its fields do")]
    Short(u8),
    #[error("the SFTP server sent a packet of no bytes")]
    Empty,
}

/// Takes the next whole packet off `buf`: `None` until it has all arrived. The length is checked before any
/// of it is waited for.
fn packet(buf: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_PACKET {
        return Err(WireError::TooLong(len));
    }
    if len == 0 {
        return Err(WireError::Empty);
    }
    if buf.len() < 4 + len {
        // What is still to come has room to arrive without copying what came.
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The `SSH_FXP_VERSION` packet off `buf`, once it has all arrived.
pub fn version(buf: &mut BytesMut) -> Result<Option<Version>, WireError> {
    let Some(mut p) = packet(buf)? else { return Ok(None) };
    let kind = p.get_u8();
    if kind != VERSION_REPLY {
        return Err(WireError::Type(kind));
    }
    let short = || WireError::Short(kind);
    let version = u32_of(&mut p).ok_or_else(short)?;
    let mut extensions = Vec::new();
    while p.has_remaining() {
        let name = string(&mut p).ok_or_else(short)?;
        string(&mut p).ok_or_else(short)?;
        extensions.push(String::from_utf8_lossy(&name).into_owned());
    }
    Ok(Some(Version { version, extensions }))
}

/// The next reply off `buf` with the id it answers, once it has all arrived. Fields past the ones of SFTP
/// version 3 (a status's language tag, which some servers leave out) are not required.
pub fn reply(buf: &mut BytesMut) -> Result<Option<(u32, Reply)>, WireError> {
    let Some(mut p) = packet(buf)? else { return Ok(None) };
    let kind = p.get_u8();
    let short = || WireError::Short(kind);
    if !matches!(kind, STATUS | HANDLE | DATA | NAME | ATTRS) {
        return Err(WireError::Type(kind));
    }
    let id = u32_of(&mut p).ok_or_else(short)?;
    let reply = match kind {
        STATUS => {
            let code = u32_of(&mut p).ok_or_else(short)?;
            // The message is optional in practice: old servers send the code alone.
            let message = string(&mut p).map(|m| String::from_utf8_lossy(&m).into_owned()).unwrap_or_default();
            Reply::Status { code, message }
        }
        HANDLE => Reply::Handle(string(&mut p).ok_or_else(short)?),
        DATA => Reply::Data(string(&mut p).ok_or_else(short)?),
        NAME => {
            let count = u32_of(&mut p).ok_or_else(short)? as usize;
            // Each entry takes at least 12 bytes (two empty strings and the flags): never more room than that.
            let mut names = Vec::with_capacity(count.min(p.remaining() / 12));
            for _ in 0..count {
                let filename = string(&mut p).ok_or_else(short)?;
                string(&mut p).ok_or_else(short)?;
                let attrs = attrs(&mut p).ok_or_else(short)?;
                names.push(Name { filename, attrs });
            }
            Reply::Names(names)
        }
        ATTRS => Reply::Attrs(attrs(&mut p).ok_or_else(short)?),
        _ => unreachable!("checked above"),
    };
    Ok(Some((id, reply)))
}

fn u32_of(p: &mut Bytes) -> Option<u32> {
    (p.remaining() >= 4).then(|| p.get_u32())
}

fn u64_of(p: &mut Bytes) -> Option<u64> {
    (p.remaining() >= 8).then(|| p.get_u64())
}

/// A string field, sharing the packet's bytes.
fn string(p: &mut Bytes) -> Option<Bytes> {
    let len = u32_of(p)? as usize;
    (p.remaining() >= len).then(|| p.split_to(len))
}

fn attrs(p: &mut Bytes) -> Option<Attrs> {
    let flags = u32_of(p)?;
    let mut a = Attrs::default();
    if flags & ATTR_SIZE != 0 {
        a.size = Some(u64_of(p)?);
    }
    if flags & ATTR_UIDGID != 0 {
        a.uid = Some(u32_of(p)?);
        a.gid = Some(u32_of(p)?);
    }
    if flags & ATTR_PERMISSIONS != 0 {
        a.permissions = Some(u32_of(p)?);
    }
    if flags & ATTR_ACMODTIME != 0 {
        u32_of(p)?;
        u32_of(p)?;
    }
    if flags & ATTR_EXTENDED != 0 {
        for _ in 0..u32_of(p)? {
            string(p)?;
            string(p)?;
        }
    }
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet_of(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(kind);
        out.extend_from_slice(body);
        out
    }

    fn be(v: u32) -> [u8; 4] {
        v.to_be_bytes()
    }

    fn string_of(s: &[u8]) -> Vec<u8> {
        let mut out = be(s.len() as u32).to_vec();
        out.extend_from_slice(s);
        out
    }

    #[test]
    fn requests_are_laid_out_as_the_draft_says() {
        let mut out = Vec::new();
        put_init(&mut out);
        assert_eq!(out, [0, 0, 0, 5, 1, 0, 0, 0, 3]);
        out.clear();
        put(&mut out, 7, Request::Read { handle: b"\0\0\0\x01", offset: 65536, len: 4096 });
        let mut want = be(1 + 4 + 8 + 8 + 4).to_vec();
        want.push(READ);
        want.extend(be(7));
        want.extend(string_of(b"\0\0\0\x01"));
        want.extend(65536u64.to_be_bytes());
        want.extend(be(4096));
        assert_eq!(out, want);
        out.clear();
        put(&mut out, 8, Request::Open(b"/etc/passwd"));
        let mut want = be(1 + 4 + 15 + 8).to_vec();
        want.push(OPEN);
        want.extend(be(8));
        want.extend(string_of(b"/etc/passwd"));
        want.extend(be(OPEN_READ));
        want.extend(be(0));
        assert_eq!(out, want);
    }

    #[test]
    fn replies_are_parsed_once_whole_and_split_anywhere() {
        let mut body = be(9).to_vec();
        body.extend(be(2));
        for (name, mode) in [(&b"."[..], 0o040_755u32), (b"10-kubeadm.conf", 0o100_644)] {
            body.extend(string_of(name));
            body.extend(string_of(b"-rw-r--r-- 1 root root"));
            body.extend(be(ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME | ATTR_EXTENDED));
            body.extend(512u64.to_be_bytes());
            body.extend(be(0));
            body.extend(be(0));
            body.extend(be(mode));
            body.extend(be(1));
            body.extend(be(2));
            body.extend(be(1));
            body.extend(string_of(b"x@example.com"));
            body.extend(string_of(b"y"));
        }
        let mut bytes = packet_of(NAME, &body);
        bytes.extend(packet_of(
            STATUS,
            &[&be(10)[..], &be(STATUS_EOF), &string_of(b"End of file"), &string_of(b"")].concat(),
        ));
        let whole = Attrs { size: Some(512), uid: Some(0), gid: Some(0), permissions: Some(0o100_644) };
        for split in [1, 3, 4, 5, 17, bytes.len() - 1] {
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&bytes[..split]);
            let mut got = Vec::new();
            while let Some(r) = reply(&mut buf).unwrap() {
                got.push(r);
            }
            buf.extend_from_slice(&bytes[split..]);
            while let Some(r) = reply(&mut buf).unwrap() {
                got.push(r);
            }
            assert_eq!(got.len(), 2, "split at {split}");
            let (9, Reply::Names(names)) = &got[0] else { panic!("{:?}", got[0]) };
            assert_eq!(names[1], Name { filename: Bytes::from_static(b"10-kubeadm.conf"), attrs: whole });
            assert_eq!(got[1], (10, Reply::Status { code: STATUS_EOF, message: "End of file".into() }));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_status_without_its_message_is_still_a_status() {
        let mut buf = BytesMut::from(&packet_of(STATUS, &[&be(3)[..], &be(STATUS_NO_SUCH_FILE)].concat())[..]);
        assert_eq!(reply(&mut buf).unwrap(), Some((3, Reply::Status { code: 2, message: String::new() })));
    }

    #[test]
    fn hostile_packets_are_refused_before_anything_is_allocated_for_them() {
        // A length past the cap: refused from its four bytes, nothing waited for.
        let mut buf = BytesMut::from(&be(u32::MAX)[..]);
        assert_eq!(reply(&mut buf), Err(WireError::TooLong(u32::MAX as usize)));
        // A listing claiming four billion entries in a few bytes.
        let mut buf = BytesMut::from(&packet_of(NAME, &[&be(1)[..], &be(u32::MAX)].concat())[..]);
        assert_eq!(reply(&mut buf), Err(WireError::Short(NAME)));
        // A string longer than its packet.
        let mut buf = BytesMut::from(&packet_of(HANDLE, &[&be(1)[..], &be(1000), b"ab"].concat())[..]);
        assert_eq!(reply(&mut buf), Err(WireError::Short(HANDLE)));
        // Attributes whose flags promise more than came.
        let mut buf =
            BytesMut::from(&packet_of(ATTRS, &[&be(1)[..], &be(ATTR_SIZE | ATTR_UIDGID), &[0; 8]].concat())[..]);
        assert_eq!(reply(&mut buf), Err(WireError::Short(ATTRS)));
        // A request type sent back, and a version where a reply belongs.
        let mut buf = BytesMut::from(&packet_of(OPEN, &be(1))[..]);
        assert_eq!(reply(&mut buf), Err(WireError::Type(OPEN)));
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(reply(&mut buf), Err(WireError::Empty));
        let mut buf = BytesMut::from(&packet_of(STATUS, &be(3))[..]);
        assert_eq!(version(&mut buf), Err(WireError::Type(STATUS)));
    }

    #[test]
    fn the_version_lists_its_extensions() {
        let body = [
            &be(3)[..],
            &string_of(b"posix-rename@openssh.com"),
            &string_of(b"1"),
            &string_of(b"limits@openssh.com"),
            &string_of(b"1"),
        ]
        .concat();
        let mut buf = BytesMut::from(&packet_of(VERSION_REPLY, &body)[..]);
        let v = version(&mut buf).unwrap().unwrap();
        assert_eq!(
            v,
            Version { version: 3, extensions: vec!["posix-rename@openssh.com".into(), "limits@openssh.com".into()] }
        );
    }
}
