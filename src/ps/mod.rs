//! The `ps` stage: turns the bytes a host sent for `ps -ef` into a [`ProcessTable`].
//!
//! Owns: detecting the output format from its header (procps or busybox), splitting each line into its columns
//! and the command line into arguments, and the flag grammar of Kubernetes components ([`flags`]).
//! Must not touch: the network (the bytes arrive from the transport or a file), rules or verdicts, storage.
//!
//! Everything here is untrusted input. The parser works on bytes (non-UTF-8 becomes U+FFFD), replaces control
//! characters the way procps does (with `?`), and rejects a table it cannot read with the first bad line rather
//! than returning a partial or empty table.

pub mod flags;

use std::fmt;

use thiserror::Error;

/// Which `ps` printed the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PsFormat {
    /// procps-ng (Debian, Ubuntu, RHEL, ...): `UID PID PPID C STIME TTY TIME CMD`.
    Procps,
    /// busybox (Alpine, minimal images, some appliances): `PID USER TIME COMMAND` or `PID USER VSZ STAT COMMAND`.
    Busybox,
}

impl fmt::Display for PsFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PsFormat::Procps => "procps",
            PsFormat::Busybox => "busybox",
        })
    }
}

/// One row of the process table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// 1-based line number in the `ps` output, for evidence and error messages.
    pub line: usize,
    /// User name or numeric UID, as `ps` printed it.
    pub user: String,
    pub pid: u32,
    /// Parent PID; busybox does not print it.
    pub ppid: Option<u32>,
    /// The command column, control characters replaced with `?`.
    pub cmd: String,
}

impl Process {
    /// The command line split into arguments the way `ps` joined them: procps and busybox print
    /// `/proc/PID/cmdline` with each NUL made a space, so every single space separates two arguments and two
    /// spaces in a row hold an empty one (Bottlerocket's kubelet has `--register-with-taints  --pod-infra-...`:
    /// the value flag takes the empty argument, not the next flag). An argument that itself held a space cannot
    /// be told apart from two arguments: `ps` has already lost that.
    pub fn argv(&self) -> impl Iterator<Item = &str> {
        self.cmd.trim_matches(' ').split(' ')
    }

    /// Kernel threads have no command line; `ps` shows their name in brackets.
    pub fn is_kernel_thread(&self) -> bool {
        self.cmd.starts_with('[') && self.cmd.trim_end().ends_with(']') && !self.cmd.contains(' ')
    }
}

/// A parsed `ps` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessTable {
    pub format: PsFormat,
    pub processes: Vec<Process>,
}

/// Why a process table could not be read. Each variant names the line, so the user can look at the capture.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PsError {
    #[error("the ps output is empty: expected a header line such as `UID PID PPID C STIME TTY TIME CMD`")]
    Empty,
    #[error(
        "line {line}: not a ps header: {found:?}; expected `ps -ef` output from procps (`UID PID PPID C STIME TTY TIME CMD`) or busybox (`PID USER TIME COMMAND`)"
    )]
    UnknownHeader { line: usize, found: String },
    #[error("line {line}: expected {expected} columns before the command, found {found}: {text:?}")]
    MissingColumns { line: usize, expected: usize, found: usize, text: String },
    #[error("line {line}: column {column} should be a number, found {found:?}: {text:?}")]
    NotANumber { line: usize, column: &'static str, found: String, text: String },
    #[error("the ps output has a header but no processes: a real process table always lists at least `ps` itself")]
    NoProcesses,
}

/// The column layout read from the header: where PID, PPID and the user are, and how many columns precede the
/// command.
struct Layout {
    format: PsFormat,
    /// Columns before the command column.
    leading: usize,
    pid: usize,
    ppid: Option<usize>,
    user: usize,
}

impl Layout {
    fn from_header(header: &str, line: usize) -> Result<Layout, PsError> {
        let cols: Vec<&str> = header.split_ascii_whitespace().collect();
        let unknown = || PsError::UnknownHeader { line, found: truncate(header, 120) };
        let (last, leading) = cols.split_last().ok_or_else(unknown)?;
        if !matches!(*last, "CMD" | "COMMAND" | "ARGS") {
            return Err(unknown());
        }
        let find = |name: &str| leading.iter().position(|c| *c == name);
        let pid = find("PID").ok_or_else(unknown)?;
        let user = find("UID").or_else(|| find("USER")).ok_or_else(unknown)?;
        let ppid = find("PPID");
        // procps prints UID first; busybox prints PID first.
        let format = if user == 0 { PsFormat::Procps } else { PsFormat::Busybox };
        Ok(Layout { format, leading: leading.len(), pid, ppid, user })
    }
}

/// Parses `ps -ef` output. Rejects the whole table on the first line it cannot read.
pub fn parse(bytes: &[u8]) -> Result<ProcessTable, PsError> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split('\n').enumerate().map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)));
    let (header_line, header) = lines.by_ref().find(|(_, l)| !l.trim().is_empty()).ok_or(PsError::Empty)?;
    let layout = Layout::from_header(header, header_line)?;
    let mut processes = Vec::with_capacity(text.len() / 100);
    let mut cols: Vec<&str> = Vec::with_capacity(layout.leading);
    for (line, raw) in lines {
        if raw.trim().is_empty() {
            continue;
        }
        cols.clear();
        let mut rest = raw;
        for _ in 0..layout.leading {
            rest = rest.trim_start_matches(is_blank);
            let end = rest.find(is_blank).unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            cols.push(&rest[..end]);
            rest = &rest[end..];
        }
        let cmd = rest.trim_matches(is_blank);
        if cols.len() < layout.leading || cmd.is_empty() {
            return Err(PsError::MissingColumns {
                line,
                expected: layout.leading,
                found: cols.len(),
                text: truncate(raw, 120),
            });
        }
        let number = |idx: usize, column: &'static str| {
            cols[idx].parse::<u32>().map_err(|_| PsError::NotANumber {
                line,
                column,
                found: truncate(cols[idx], 40),
                text: truncate(raw, 120),
            })
        };
        let pid = number(layout.pid, "PID")?;
        let ppid = layout.ppid.map(|i| number(i, "PPID")).transpose()?;
        processes.push(Process { line, user: sanitize(cols[layout.user]), pid, ppid, cmd: sanitize(cmd) });
    }
    if processes.is_empty() {
        return Err(PsError::NoProcesses);
    }
    Ok(ProcessTable { format: layout.format, processes })
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Replaces control characters with `?`, as procps does when it prints a command line, so nothing a host sends
/// can move a terminal's cursor or forge a line of output.
fn sanitize(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
    } else {
        s.to_owned()
    }
}

/// Cuts `s` to at most `max` characters for an error message, marking the cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", sanitize(&s[..i])),
        None => sanitize(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROCPS: &str = "\
UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 Nov27 ?        00:00:05 /sbin/init
root           2       0  0 Nov27 ?        00:00:00 [kthreadd]
systemd+     612       1  0 Nov27 ?        00:00:01 /lib/systemd/systemd-resolved
1000       41234   41200  0 10:22 pts/0    00:00:00 -bash
verylongusername 5   1  2 2025 ?        1-02:03:04 /usr/bin/thing --a=b   --c d
";

    #[test]
    fn procps_columns_and_odd_users() {
        let t = parse(PROCPS.as_bytes()).unwrap();
        assert_eq!(t.format, PsFormat::Procps);
        assert_eq!(t.processes.len(), 5);
        assert_eq!(t.processes[0].pid, 1);
        assert_eq!(t.processes[0].ppid, Some(0));
        assert_eq!(t.processes[1].cmd, "[kthreadd]");
        assert!(t.processes[1].is_kernel_thread());
        assert!(!t.processes[0].is_kernel_thread());
        assert_eq!(t.processes[2].user, "systemd+");
        assert_eq!(t.processes[3].user, "1000");
        assert_eq!(t.processes[3].cmd, "-bash");
        assert_eq!(t.processes[4].user, "verylongusername");
        assert_eq!(t.processes[4].line, 6);
        // Internal spacing of the command is kept as ps printed it; argv splits on each space, so a run of n
        // spaces holds n - 1 empty arguments, as /proc/PID/cmdline had them.
        assert_eq!(t.processes[4].cmd, "/usr/bin/thing --a=b   --c d");
        assert_eq!(t.processes[4].argv().collect::<Vec<_>>(), ["/usr/bin/thing", "--a=b", "", "", "--c", "d"]);
    }

    #[test]
    fn busybox_both_layouts() {
        let t = parse(b"  PID USER     TIME  COMMAND\n    1 root      0:01 /sbin/init\n   17 1001      0:00 [kworker/0:1]\n  230 root      2:13 kube-apiserver --a=1\n").unwrap();
        assert_eq!(t.format, PsFormat::Busybox);
        assert_eq!(t.processes.len(), 3);
        assert_eq!(t.processes[2].pid, 230);
        assert_eq!(t.processes[2].ppid, None);
        assert_eq!(t.processes[1].user, "1001");
        assert_eq!(t.processes[2].cmd, "kube-apiserver --a=1");

        let old = parse(b"  PID USER       VSZ STAT COMMAND\n    1 root      1536 S    init\n").unwrap();
        assert_eq!(old.format, PsFormat::Busybox);
        assert_eq!(old.processes[0].cmd, "init");
    }

    #[test]
    fn long_lines_and_crlf() {
        let long = format!("--x={}", "a".repeat(200_000));
        let text =
            format!("UID PID PPID C STIME TTY TIME CMD\r\nroot 7 1 0 10:22 ? 00:00:00 kube-apiserver {long}\r\n");
        let t = parse(text.as_bytes()).unwrap();
        assert_eq!(t.processes[0].cmd.len(), "kube-apiserver ".len() + long.len());
        assert!(!t.processes[0].cmd.ends_with('\r'));
    }

    #[test]
    fn control_characters_and_invalid_utf8_are_neutralised() {
        let t =
            parse(b"UID PID PPID C STIME TTY TIME CMD\nroot 7 1 0 10:22 ? 00:00:00 evil \x1b[2Jx \xff\xfe\n").unwrap();
        assert_eq!(t.processes[0].cmd, "evil ?[2Jx \u{FFFD}\u{FFFD}");
    }

    #[test]
    fn unreadable_tables_name_the_line() {
        assert_eq!(parse(b""), Err(PsError::Empty));
        assert_eq!(parse(b"\n  \n"), Err(PsError::Empty));
        assert!(matches!(parse(b"hello world\n"), Err(PsError::UnknownHeader { line: 1, .. })));
        assert!(matches!(parse(b"sh: ps: not found\n"), Err(PsError::UnknownHeader { .. })));
        assert_eq!(parse(b"UID PID PPID C STIME TTY TIME CMD\n"), Err(PsError::NoProcesses));
        let err = parse(
            b"UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:22 ? 00:00:00 init\nroot x 0 0 10:22 ? 00:00:00 init\n",
        )
        .unwrap_err();
        assert!(matches!(err, PsError::NotANumber { line: 3, column: "PID", .. }), "{err}");
        assert!(err.to_string().starts_with("line 3: column PID"));
        let err = parse(b"UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0\n").unwrap_err();
        assert!(matches!(err, PsError::MissingColumns { line: 2, expected: 7, found: 4, .. }), "{err}");
    }
}
