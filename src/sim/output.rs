//! What a simulated node sends back for its command: its table, or the misbehaviour of its [`Behavior`].
//! Large outputs are generated chunk by chunk as the client's window allows, never held whole.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::Notify;

use super::{Behavior, FLOOD_BYTES, NodeSpec};

/// Channel data is sent in pieces of this size, as a real sshd's writes arrive.
const CHUNK: usize = 32 << 10;

/// How long a dropping node waits after its last bytes before cutting the connection, so they reach the
/// delay line first.
const BEFORE_CUT: Duration = Duration::from_millis(50);

/// What an `exec` request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Command {
    /// fleetaudit's `ps -ef`.
    Ps,
    /// [`super::SUDO_SFTP_COMMAND`] on a node without sftp-server.
    NoSftpServer,
    /// Anything else.
    Unknown,
}

/// The answer to one `exec` request.
pub(super) struct Answer {
    pub handle: Handle,
    pub channel: ChannelId,
    pub spec: Arc<NodeSpec>,
    pub user: String,
    pub cut: Arc<Notify>,
    pub command: Command,
}

impl Answer {
    pub async fn send(self) {
        match self.command {
            Command::Ps => {}
            Command::NoSftpServer => {
                return self.finish(b"", b"sudo: /usr/lib/openssh/sftp-server: command not found\n", 1).await;
            }
            Command::Unknown => return self.finish(b"", b"sh: 1: command not found\n", 127).await,
        }
        let table: &[u8] = &self.spec.table;
        match self.spec.behavior {
            Behavior::PsMissing => self.finish(b"", b"sh: 1: ps: not found\n", 127).await,
            Behavior::DropMidOutput => {
                if self.stdout(&table[..table.len() / 2]).await {
                    tokio::time::sleep(BEFORE_CUT).await;
                    self.cut.notify_one();
                }
            }
            Behavior::Flood => {
                let mut flood = Flood::default();
                let mut sent = 0u64;
                while sent < FLOOD_BYTES {
                    let chunk = flood.next_chunk();
                    sent += chunk.len() as u64;
                    if self.handle.data(self.channel, chunk).await.is_err() {
                        return;
                    }
                }
                self.finish(b"", b"", 0).await;
            }
            Behavior::Drip => {
                for byte in table.chunks(1) {
                    if self.handle.data(self.channel, Bytes::copy_from_slice(byte)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                self.finish(b"", b"", 0).await;
            }
            Behavior::NonUtf8 => self.finish(&non_utf8(table), b"", 0).await,
            Behavior::Garbage => self.finish(&garbage(&self.spec.name), b"", 0).await,
            Behavior::Hidepid => self.finish(hidepid(&self.user).as_bytes(), b"", 0).await,
            Behavior::Normal
            | Behavior::UnknownHostKey
            | Behavior::ChangedHostKey
            | Behavior::AuthRefused
            | Behavior::Refused
            | Behavior::Silent
            | Behavior::SftpRefused
            | Behavior::SftpDenied
            | Behavior::SftpHostile
            | Behavior::HugeFile
            | Behavior::YamlBomb
            | Behavior::CertExpiring
            | Behavior::CertExpired => self.finish(table, b"", 0).await,
        }
    }

    /// Sends `out` as channel data; false when the client has gone.
    async fn stdout(&self, out: &[u8]) -> bool {
        for chunk in out.chunks(CHUNK) {
            if self.handle.data(self.channel, Bytes::copy_from_slice(chunk)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Sends stdout, stderr and the exit status, and closes the channel.
    async fn finish(&self, out: &[u8], err: &[u8], status: u32) {
        if !self.stdout(out).await {
            return;
        }
        if !err.is_empty() {
            let _ = self.handle.extended_data(self.channel, 1, Bytes::copy_from_slice(err)).await;
        }
        let _ = self.handle.exit_status_request(self.channel, status).await;
        let _ = self.handle.eof(self.channel).await;
        let _ = self.handle.close(self.channel).await;
    }
}

/// An endless `ps -ef` of container shims, produced [`CHUNK`] by chunk.
#[derive(Default)]
struct Flood {
    lines: u64,
}

impl Flood {
    fn next_chunk(&mut self) -> Bytes {
        use std::fmt::Write as _;
        let mut buf = BytesMut::with_capacity(CHUNK + 256);
        if self.lines == 0 {
            buf.put_slice(b"UID          PID    PPID  C STIME TTY          TIME CMD\n");
            buf.put_slice(b"root           1       0  0 Nov27 ?        00:00:09 /sbin/init\n");
        }
        while buf.len() < CHUNK {
            self.lines += 1;
            let pid = 1000 + self.lines;
            let _ = writeln!(
                buf,
                "root    {pid:>8}       1  0 Nov27 ?        00:00:00 /usr/bin/containerd-shim-runc-v2 -namespace \
                 k8s.io -id {:064x} -address /run/containerd/containerd.sock",
                u128::from(pid).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
            );
        }
        buf.freeze()
    }
}

/// The table with invalid UTF-8 appended to every fourth line that runs no Kubernetes component (the header
/// and the control plane's lines are left alone, so the verdicts are those of the clean table).
fn non_utf8(table: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(table.len() + table.len() / 16);
    for (i, line) in table.split_inclusive(|b| *b == b'\n').enumerate() {
        let (body, newline) = match line.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (line, &b""[..]),
        };
        out.extend_from_slice(body);
        let component = [&b"kube"[..], b"etcd", b"k3s"].iter().any(|w| body.windows(w.len()).any(|x| x == *w));
        if i > 0 && i % 4 == 1 && !body.is_empty() && !component {
            // Latin-1 "café", a lone continuation byte and bytes never valid in UTF-8.
            out.extend_from_slice(b" --label=caf\xe9 \x80\xfe\xff");
        }
        out.extend_from_slice(newline);
    }
    out
}

/// 64 KiB of pseudo-random bytes after an ELF header, as if a binary had been printed instead of a table;
/// the same for the same node name.
fn garbage(name: &str) -> Vec<u8> {
    let mut state =
        name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let mut out = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
    while out.len() < 64 << 10 {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out
}

/// What `ps -ef` shows when `/proc` is mounted with hidepid: the login's own processes, and no PID 1.
fn hidepid(user: &str) -> String {
    let user = if user.is_empty() { "audit" } else { user };
    format!(
        "UID          PID    PPID  C STIME TTY          TIME CMD\n\
         {user:<8}  41230   41229  0 10:22 ?        00:00:00 sshd: {user}@notty\n\
         {user:<8}  41231   41230  0 10:22 ?        00:00:00 sh -c ps -ef\n\
         {user:<8}  41232   41231  0 10:22 ?        00:00:00 ps -ef\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_outputs_are_what_they_claim() {
        let table = super::super::profile("kubeadm-default").unwrap().as_bytes();
        let bad = non_utf8(table);
        assert!(std::str::from_utf8(&bad).is_err());
        let parsed = crate::ps::parse(&bad).unwrap();
        let clean = crate::ps::parse(table).unwrap();
        assert_eq!(parsed.processes.len(), clean.processes.len());
        assert!(parsed.processes.iter().any(|p| p.cmd.contains('\u{FFFD}')));
        for (a, b) in parsed.processes.iter().zip(&clean.processes) {
            if a.cmd.contains("kube") || a.cmd.contains("etcd") {
                assert_eq!(a, b, "a control-plane line is left alone");
            }
        }

        let junk = garbage("n");
        assert_eq!(junk, garbage("n"));
        assert_ne!(junk, garbage("m"));
        assert!(crate::ps::parse(&junk).is_err());

        let hidden = crate::ps::parse(hidepid("audit").as_bytes()).unwrap();
        assert_eq!(hidden.processes.len(), 3);
        assert!(hidden.processes.iter().all(|p| p.pid != 1 && p.user == "audit"));

        let mut flood = Flood::default();
        let first = flood.next_chunk();
        assert!(first.len() >= CHUNK && first.len() < CHUNK + 512);
        let second = flood.next_chunk();
        let mut both = first.to_vec();
        both.extend_from_slice(&second);
        let t = crate::ps::parse(&both).unwrap();
        assert_eq!(t.processes[0].pid, 1);
        assert!(t.processes.len() > 300);
    }
}
