//! Files over SFTP on a host's SSH connection: the transport's side of [`crate::files`].
//!
//! Owns: opening the SFTP channel beside the `ps` channel (the host's `sftp` subsystem, or the inventory's
//! `sftp_command` run on a session channel as `sftp -s COMMAND` does), answering the engine's [`Request`]s
//! with every request of a batch pipelined, the limits (bytes per file, paths per host, a time budget per host,
//! the scan's shared pool for large outputs), and turning SFTP answers into [`Entry`]s and [`Problem`]s.
//! Must not touch: which paths are read (the engine plans them from the process table), rules, the database.
//! No path a host names (a directory entry, a symlink target) is ever opened: only the paths asked for.
//!
//! Round trips of a batch, whatever its size (up to [`MAX_OPEN`] files and directories at once):
//! 1. every stat, open and opendir;
//! 2. every fstat with the first read of each file, two readdirs of each directory;
//! 3. only for what is not done yet: the rest of a file over 64 KiB, the end of a file that reports size 0
//!    (`/proc`; except `environ` and `cgroup` from OpenSSH's server, see [`short_read_ends`]), a directory of
//!    more than ~200 entries (OpenSSH sends at most 100 a reply).
//!
//! The client is our own ([`wire`] has the packets): a round's requests are written into one buffer and sent as
//! one channel write, and the replies are parsed from the channel's data on the host's own task, matched to
//! their requests by id; no task, lock, channel or timer per request. Closes are not waited for: they leave with
//! the next round's requests. [`FileStats::round_trips`] counts the rounds sent: each round's requests all
//! leave before any of its answers is read, and the next round only after all of them came.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use russh::client::{self, Handle, Msg};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::{Instant, timeout_at};

use crate::files::{Content, Entry, Kind, Meta, Problem, Request, Want};
use crate::inventory::FileAccess;

mod wire;

/// The first read of a file: Kubernetes configs, manifests, `/etc/passwd` and an etcd's environment are a few
/// KiB, so one read returns all of them.
const FIRST_READ: u64 = 64 << 10;

/// Later reads: OpenSSH's sftp-server answers at most `SFTP_MAX_READ_LENGTH` (256 KiB - 1 KiB) a read
/// (sftp-server.c), which fits in the largest packet accepted ([`wire::MAX_PACKET`]).
const CHUNK: u64 = 261_120;

/// Files and directories held open at once. OpenSSH's sftp-server has one descriptor per handle (up to
/// `RLIMIT_NOFILE`, often 1024); a batch larger than this takes a few more round trips instead of failing.
pub const MAX_OPEN: usize = 128;

/// Bytes asked for in one round, over every file: a bound on what arrives at once, whatever the batch.
const ROUND_BYTES: u64 = 8 << 20;

/// Entries of one directory: a drop-in directory has a handful; past this the listing is refused, never cut
/// short (a missing drop-in could turn a verdict).
const MAX_NAMES: usize = 4096;

/// Longest directory entry Linux has (`NAME_MAX`); a longer one is a lie.
const NAME_MAX: usize = 255;

/// Longest path asked for (`PATH_MAX`).
const PATH_MAX: usize = 4096;

/// Rounds of one batch: reads and listings progress every round, so only a host answering a byte at a time
/// gets here.
const MAX_ROUNDS: u32 = 256;

/// How much of an SFTP command's stderr, and of what it wrote before failing, is kept to explain the failure.
const MAX_STDERR: usize = 4 << 10;
const FIRST_BYTES: usize = 64;

/// What reading a host's files cost, for benchmarks and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Requests the engine made (answered, refused or over budget).
    pub requests: usize,
    /// SFTP requests sent for them (stat, open, fstat, read, opendir, readdir, close).
    pub packets: u64,
    /// Round trips the requests cost, summed over batches: for each batch, the longest chain of SFTP requests
    /// each sent only after an answer to the one before it had arrived, measured as they are sent and
    /// answered. Opening SFTP is not counted: it overlaps `ps -ef`.
    pub round_trips: u32,
    /// File bytes received (of a file refused as too large, what came before it was refused).
    pub bytes: u64,
}

/// A host's files for one scan: its SFTP session (or why there is none), the limits and what they have used.
pub(super) struct Files<'t> {
    state: State,
    access: FileAccess,
    asked: usize,
    spent: Duration,
    pool: Pool<'t>,
    stats: FileStats,
}

enum State {
    NotOpen,
    Open(Sftp),
    Unavailable(String),
}

impl<'t> Files<'t> {
    pub(super) fn new(access: &FileAccess, pool: &'t (Semaphore, usize)) -> Files<'t> {
        Files {
            state: State::NotOpen,
            access: access.clone(),
            asked: 0,
            spent: Duration::ZERO,
            pool: Pool { shared: pool, held: 0, drawn: None },
            stats: FileStats::default(),
        }
    }

    pub(super) fn stats(&self) -> FileStats {
        self.stats
    }

    /// Why SFTP cannot be used on this host, once it was tried.
    pub(super) fn unavailable(&self) -> Option<&str> {
        match &self.state {
            State::Unavailable(reason) => Some(reason),
            _ => None,
        }
    }

    /// Opens the SFTP channel unless it was opened (or failed) already.
    pub(super) async fn open<H: client::Handler>(&mut self, handle: &Handle<H>, user: &str, limit: Duration) {
        if let State::NotOpen = self.state {
            self.state = match open(handle, self.access.sftp_command.as_deref(), user, limit).await {
                Ok(sftp) => State::Open(sftp),
                Err(reason) => {
                    tracing::debug!(%reason, "SFTP unavailable");
                    State::Unavailable(reason)
                }
            };
        }
    }

    /// Answers `requests`, one answer per request in their order, every request of the batch pipelined.
    pub(super) async fn fetch(&mut self, requests: &[Request]) -> Vec<(String, Entry)> {
        let started = Instant::now();
        let budget = self.access.file_budget;
        let out_of_time = self.spent >= budget;
        let mut answers: Vec<Option<Entry>> = Vec::with_capacity(requests.len());
        let mut works: Vec<Work<'_>> = Vec::new();
        let mut work_of: Vec<Option<usize>> = Vec::with_capacity(requests.len());
        let mut by_path: HashMap<&str, usize> = HashMap::new();
        let whole_reads = matches!(&self.state, State::Open(s) if s.whole_reads);
        for r in requests {
            let refused = if let Err(message) = check_path(&r.path) {
                Some(Problem::Failed { message })
            } else if let State::Unavailable(reason) = &self.state {
                Some(Problem::Unavailable { reason: reason.clone() })
            } else if let State::NotOpen = &self.state {
                Some(Problem::Unavailable { reason: "SFTP was not opened on this connection".into() })
            } else if self.asked >= self.access.max_files {
                Some(Problem::OverBudget {
                    what: format!(
                        "max_files = {}: this host was already asked about that many paths in this scan; raise \
                         max_files in the inventory",
                        self.access.max_files
                    ),
                })
            } else if out_of_time {
                Some(over_time(budget))
            } else {
                None
            };
            if !matches!(refused, Some(Problem::Failed { .. }) | Some(Problem::Unavailable { .. })) {
                self.asked += 1;
            }
            if let Some(p) = refused {
                answers.push(Some(Entry::Problem(p)));
                work_of.push(None);
                continue;
            }
            let w = *by_path.entry(r.path.as_str()).or_insert_with(|| {
                works.push(Work::new(&r.path, whole_reads));
                works.len() - 1
            });
            works[w].want(r.want);
            answers.push(None);
            work_of.push(Some(w));
        }
        self.stats.requests += requests.len();

        if let (State::Open(sftp), false) = (&mut self.state, works.is_empty()) {
            let deadline = started + budget.saturating_sub(self.spent);
            let sent = sftp.rounds;
            let cap = self.access.max_file_bytes;
            let mut link = Live { sftp: &mut *sftp, deadline };
            run_rounds(&mut works, cap, &mut self.pool, &mut self.stats, &mut link).await;
            self.stats.round_trips += sftp.rounds - sent;
        }
        self.spent += started.elapsed();

        assemble(requests, answers, &work_of, &mut works, &over_time(budget))
    }
}

/// Where a batch's rounds go: the host's SFTP session, or (in tests) a server in memory.
trait Exchange {
    /// Sends every request of a round (with the closes queued before it), then collects the answers until all
    /// came or the batch's time ran out. Returns the replies by request (`None`: not answered in time) and
    /// whether the time ran out.
    fn round(&mut self, ops: &[Op]) -> impl Future<Output = (Vec<Option<Reply>>, bool)>;

    /// Queues a close of `handle`, sent with the next round and not waited for.
    fn close(&mut self, handle: Bytes);
}

/// The rounds of a batch: plan what every path needs next, send it all and gather the answers, absorb them and
/// close what finished; until nothing is left, the time budget ran out or [`MAX_ROUNDS`]. Returns the number
/// of rounds sent.
async fn run_rounds(
    works: &mut [Work<'_>],
    cap: u64,
    pool: &mut Pool<'_>,
    stats: &mut FileStats,
    link: &mut impl Exchange,
) -> u32 {
    let mut rounds = 0;
    loop {
        let ops = plan(works, cap);
        if ops.is_empty() {
            break;
        }
        if rounds == MAX_ROUNDS {
            for w in works.iter_mut() {
                w.fail("the host answered a little at a time for too long; refused rather than waited for");
            }
            break;
        }
        rounds += 1;
        stats.packets += ops.len() as u64;
        let (replies, timed_out) = link.round(&ops).await;
        absorb(works, &ops, replies, cap, pool, stats);
        for handle in works.iter_mut().flat_map(Work::finished_handles) {
            link.close(handle);
            stats.packets += 1;
        }
        if timed_out {
            break;
        }
    }
    // Cut short: what is still open is closed too.
    for handle in works.iter_mut().flat_map(Work::open_handles) {
        link.close(handle);
        stats.packets += 1;
    }
    rounds
}

/// One answer per request, in their order: refused ones as refused, the others from their path's work; what
/// the batch did not finish is `late`.
fn assemble(
    requests: &[Request],
    mut answers: Vec<Option<Entry>>,
    work_of: &[Option<usize>],
    works: &mut [Work<'_>],
    late: &Problem,
) -> Vec<(String, Entry)> {
    let mut given: HashMap<usize, usize> = HashMap::new();
    let mut out: Vec<(String, Entry)> = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let entry = match (answers[i].take(), work_of[i]) {
            (Some(e), _) => Some(e),
            (None, Some(w)) => match r.want {
                Want::Stat => works[w].stat_answer(),
                Want::List => works[w].list_answer(),
                // A file's contents are moved out once; a second read of the same path gets a copy.
                Want::Read | Want::Certs => match given.get(&w) {
                    Some(&first) => Some(out[first].1.clone()),
                    None => {
                        given.insert(w, i);
                        works[w].take_read()
                    }
                },
            },
            (None, None) => None,
        };
        out.push((r.path.clone(), entry.unwrap_or_else(|| Entry::Problem(late.clone()))));
    }
    // After the answers, one per request: the stats a listing gave for free (the engine keeps every pair).
    for w in works.iter_mut() {
        let dir = w.path.trim_end_matches('/');
        for (name, meta) in std::mem::take(&mut w.children) {
            out.push((format!("{dir}/{name}"), Entry::Found { meta, content: None, names: None }));
        }
    }
    out
}

fn over_time(budget: Duration) -> Problem {
    Problem::OverBudget {
        what: format!(
            "file_budget = {budget:?}: this host's file requests took that long in this scan before this path was \
             answered; raise file_budget in the inventory, or find out why the host answers slowly"
        ),
    }
}

fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        Err(format!("{path:?} is not an absolute path; fleetaudit asks only for absolute paths"))
    } else if path.len() > PATH_MAX {
        Err(format!("a path of {} bytes: longer than PATH_MAX ({PATH_MAX})", path.len()))
    } else if path.contains('\0') {
        Err("a path containing a NUL byte".into())
    } else {
        Ok(())
    }
}

/// File bytes beyond [`super::FREE_OUTPUT`] a host draws from the scan's shared pool, as `ps` output does;
/// held until the host's session is closed (its files are being judged until then), never waited for.
struct Pool<'t> {
    shared: &'t (Semaphore, usize),
    held: u64,
    drawn: Option<SemaphorePermit<'t>>,
}

impl Pool<'_> {
    fn take(&mut self, bytes: u64) -> Result<(), String> {
        let want = self.held + bytes;
        let need = want.saturating_sub(super::FREE_OUTPUT as u64).div_ceil(1 << 10);
        let have = self.drawn.as_ref().map_or(0, |p| p.num_permits() as u64);
        if need > have {
            let (pool, size) = self.shared;
            let more = u32::try_from(need - have).ok().and_then(|n| pool.try_acquire_many(n).ok()).ok_or_else(|| {
                format!(
                    "this host's files passed {} bytes while the scan's {size}-byte pool for large outputs was taken \
                     by other hosts; audit it on its own (`fleetaudit scan --host NAME`) or lower max_file_bytes",
                    super::FREE_OUTPUT
                )
            })?;
            match self.drawn.as_mut() {
                Some(p) => p.merge(more),
                None => self.drawn = Some(more),
            }
        }
        self.held = want;
        Ok(())
    }
}

/// One path of a batch and what is being learned about it.
struct Work<'r> {
    path: &'r str,
    stat: Stat,
    read: Reading,
    list: Listing,
    /// A finished listing's entries with their attributes (see [`OpenDir::children`]).
    children: Vec<(String, Meta)>,
    /// A short read of this file is its end (see [`short_read_ends`]).
    short_ends: bool,
    /// Only its leading certificates are read ([`Want::Certs`], see [`Cut`]).
    certs: bool,
}

enum Stat {
    No,
    Todo,
    Sent,
    Done(Result<Meta, Problem>),
}

enum Reading {
    No,
    Todo,
    Opening,
    Open(OpenFile),
    /// Done; the handle, if any, still to be closed.
    Done(Entry, Option<Bytes>),
    Taken,
}

struct OpenFile {
    handle: Bytes,
    /// A short read is the end even though the size says 0 (see [`short_read_ends`]).
    short_ends: bool,
    /// Reading only the leading certificates: where that stands.
    cut: Option<Cut>,
    /// From `fstat` on the handle: the inode actually read.
    meta: Option<Meta>,
    data: Vec<u8>,
}

enum Listing {
    No,
    Todo,
    Opening,
    Open(OpenDir),
    Done(Result<Vec<String>, Problem>, Option<Bytes>),
}

struct OpenDir {
    handle: Bytes,
    names: Vec<String>,
    /// The entries' own attributes, as the listing gave them (OpenSSH's readdir sends each entry's lstat):
    /// answers the stats the engine would ask next, saving it a round trip. Symlinks are left out (a stat
    /// follows them; the listing's attributes are the link's own).
    children: Vec<(String, Meta)>,
    /// Entries the server sent, `.` and `..` included.
    seen: usize,
}

impl<'r> Work<'r> {
    /// Work on `path`, from a server that answers a read with one read(2) of at least [`FIRST_READ`] bytes
    /// (`whole_reads`).
    fn new(path: &'r str, whole_reads: bool) -> Work<'r> {
        let short_ends = whole_reads && short_read_ends(path);
        Work {
            path,
            stat: Stat::No,
            read: Reading::No,
            list: Listing::No,
            children: Vec::new(),
            short_ends,
            certs: false,
        }
    }

    fn want(&mut self, want: Want) {
        match want {
            Want::Stat => self.stat = Stat::Todo,
            Want::Read => self.read = Reading::Todo,
            Want::Certs => {
                self.read = Reading::Todo;
                self.certs = true;
            }
            // A listing needs the directory's own stat (a file asked to be listed is answered by its stat).
            Want::List => {
                self.stat = Stat::Todo;
                self.list = Listing::Todo;
            }
        }
    }

    /// Handles held (or being opened), for [`MAX_OPEN`].
    fn handles(&self) -> usize {
        usize::from(matches!(self.read, Reading::Opening | Reading::Open(_)))
            + usize::from(matches!(self.list, Listing::Opening | Listing::Open(_)))
    }

    fn fail(&mut self, why: &str) {
        let p = || Problem::Failed { message: why.to_owned() };
        if matches!(self.stat, Stat::Todo | Stat::Sent) {
            self.stat = Stat::Done(Err(p()));
        }
        self.read = match std::mem::replace(&mut self.read, Reading::No) {
            Reading::Todo | Reading::Opening => Reading::Done(Entry::Problem(p()), None),
            Reading::Open(f) => Reading::Done(Entry::Problem(p()), Some(f.handle)),
            other => other,
        };
        self.list = match std::mem::replace(&mut self.list, Listing::No) {
            Listing::Todo | Listing::Opening => Listing::Done(Err(p()), None),
            Listing::Open(d) => Listing::Done(Err(p()), Some(d.handle)),
            other => other,
        };
    }

    /// Handles of what finished, to close (each once).
    fn finished_handles(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        if let Reading::Done(_, h) = &mut self.read {
            out.extend(h.take());
        }
        if let Listing::Done(_, h) = &mut self.list {
            out.extend(h.take());
        }
        out
    }

    /// Every handle still open (a batch cut short by its time budget).
    fn open_handles(&mut self) -> Vec<Bytes> {
        let mut out = self.finished_handles();
        if let Reading::Open(f) = &self.read {
            out.push(f.handle.clone());
        }
        if let Listing::Open(d) = &self.list {
            out.push(d.handle.clone());
        }
        out
    }

    fn stat_answer(&self) -> Option<Entry> {
        match &self.stat {
            Stat::Done(Ok(meta)) => Some(Entry::Found { meta: *meta, content: None, names: None }),
            Stat::Done(Err(p)) => Some(Entry::Problem(p.clone())),
            _ => None,
        }
    }

    fn list_answer(&self) -> Option<Entry> {
        match (&self.stat, &self.list) {
            (Stat::Done(Err(p)), _) => Some(Entry::Problem(p.clone())),
            // Not a directory: its stat is the answer (opendir failed with ENOTDIR, which says nothing more).
            (Stat::Done(Ok(meta)), _) if meta.kind != Kind::Dir => {
                Some(Entry::Found { meta: *meta, content: None, names: None })
            }
            (Stat::Done(Ok(meta)), Listing::Done(Ok(names), _)) => {
                Some(Entry::Found { meta: *meta, content: None, names: Some(names.clone()) })
            }
            (Stat::Done(Ok(_)), Listing::Done(Err(p), _)) => Some(Entry::Problem(p.clone())),
            _ => None,
        }
    }

    fn take_read(&mut self) -> Option<Entry> {
        match std::mem::replace(&mut self.read, Reading::Taken) {
            Reading::Done(e, _) => Some(e),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Stat,
    Open,
    OpenDir,
    Fstat,
    Read,
    ReadDir,
}

/// One SFTP request of a round: for work `work`, on a path (stat, open, opendir) or a handle.
struct Op {
    work: usize,
    kind: OpKind,
    target: Bytes,
    offset: u64,
    len: u32,
}

impl Op {
    fn new(work: usize, kind: OpKind, target: &[u8]) -> Op {
        Op { work, kind, target: Bytes::copy_from_slice(target), offset: 0, len: 0 }
    }

    fn on(work: usize, kind: OpKind, handle: &Bytes) -> Op {
        Op { work, kind, target: handle.clone(), offset: 0, len: 0 }
    }

    fn request(&self) -> wire::Request<'_> {
        let t = &self.target[..];
        match self.kind {
            OpKind::Stat => wire::Request::Stat(t),
            OpKind::Open => wire::Request::Open(t),
            OpKind::OpenDir => wire::Request::OpenDir(t),
            OpKind::Fstat => wire::Request::Fstat(t),
            OpKind::Read => wire::Request::Read { handle: t, offset: self.offset, len: self.len },
            OpKind::ReadDir => wire::Request::ReadDir(t),
        }
    }
}

enum Answer {
    Attrs(wire::Attrs),
    Handle(Bytes),
    Data(Bytes),
    Names(Vec<wire::Name>),
}

/// Why a request has no answer.
#[derive(Debug, Clone)]
enum Fail {
    /// The server answered with a status (`SSH_FXP_STATUS`).
    Status { code: u32, message: String },
    /// The session broke before the answer came: the reason.
    Session(String),
}

type Reply = Result<Answer, Fail>;

fn answer(reply: wire::Reply) -> Reply {
    match reply {
        wire::Reply::Status { code, message } => Err(Fail::Status { code, message }),
        wire::Reply::Handle(h) => Ok(Answer::Handle(h)),
        wire::Reply::Data(d) => Ok(Answer::Data(d)),
        wire::Reply::Names(n) => Ok(Answer::Names(n)),
        wire::Reply::Attrs(a) => Ok(Answer::Attrs(a)),
    }
}

/// The requests of the next round: whatever each path needs next, all sent before any answer is awaited.
fn plan(works: &mut [Work<'_>], cap: u64) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut open: usize = works.iter().map(Work::handles).sum();
    let mut bytes = 0;
    for (i, w) in works.iter_mut().enumerate() {
        if let Stat::Todo = w.stat {
            ops.push(Op::new(i, OpKind::Stat, w.path.as_bytes()));
            w.stat = Stat::Sent;
        }
        match &w.read {
            Reading::Todo if open < MAX_OPEN => {
                ops.push(Op::new(i, OpKind::Open, w.path.as_bytes()));
                w.read = Reading::Opening;
                open += 1;
            }
            Reading::Open(f) if f.cut.is_some() => {
                if f.meta.is_none() {
                    ops.push(Op::on(i, OpKind::Fstat, &f.handle));
                }
                if let Some((offset, len)) = f.cut.and_then(|c| c.next_read(f.data.len() as u64)) {
                    ops.push(Op { offset, len, ..Op::on(i, OpKind::Read, &f.handle) });
                    bytes += u64::from(len);
                }
            }
            Reading::Open(f) if bytes < ROUND_BYTES => match f.meta {
                // Just opened: its fstat and the first read together.
                None => {
                    ops.push(Op::on(i, OpKind::Fstat, &f.handle));
                    let len = FIRST_READ.min(cap + 1);
                    ops.push(Op { len: len as u32, ..Op::on(i, OpKind::Read, &f.handle) });
                    bytes += len;
                }
                Some(meta) => {
                    let got = f.data.len() as u64;
                    // One byte past the size fstat gave (or, for a `/proc` file, which says 0, twice what came so
                    // far): a short answer there is the end, a full one a file that grew.
                    let end = if meta.size > got { meta.size.min(cap) + 1 } else { (got * 2).max(got + CHUNK) };
                    let end = end.min(cap + 1);
                    let mut at = got;
                    while at < end {
                        let len = CHUNK.min(end - at);
                        ops.push(Op { offset: at, len: len as u32, ..Op::on(i, OpKind::Read, &f.handle) });
                        at += len;
                    }
                    bytes += end - got;
                }
            },
            _ => {}
        }
        match &w.list {
            Listing::Todo if open < MAX_OPEN => {
                ops.push(Op::new(i, OpKind::OpenDir, w.path.as_bytes()));
                w.list = Listing::Opening;
                open += 1;
            }
            // Two readdirs a round: OpenSSH sends up to 100 entries a reply, so a directory of fewer than 100
            // ends (EOF) in the same round trip.
            Listing::Open(d) => {
                ops.push(Op::on(i, OpKind::ReadDir, &d.handle));
                ops.push(Op::on(i, OpKind::ReadDir, &d.handle));
            }
            _ => {}
        }
    }
    ops
}

/// Applies a round's answers to the works they were for.
fn absorb(
    works: &mut [Work<'_>],
    ops: &[Op],
    replies: Vec<Option<Reply>>,
    cap: u64,
    pool: &mut Pool<'_>,
    stats: &mut FileStats,
) {
    // A file's answers are applied together, in offset order (the order they were planned in).
    let mut fstats: HashMap<usize, Option<Reply>> = HashMap::new();
    let mut reads: HashMap<usize, Vec<(u64, u32, Option<Reply>)>> = HashMap::new();
    let mut readdirs: HashMap<usize, Vec<Option<Reply>>> = HashMap::new();
    for (op, reply) in ops.iter().zip(replies) {
        let w = &mut works[op.work];
        match op.kind {
            OpKind::Stat => {
                if let Some(reply) = reply {
                    w.stat = Stat::Done(meta_of(reply));
                }
            }
            OpKind::Open => match reply {
                Some(Ok(Answer::Handle(handle))) => {
                    let short_ends = w.short_ends;
                    let cut = w.certs.then_some(Cut::Header { at: 0 });
                    w.read = Reading::Open(OpenFile { handle, short_ends, cut, meta: None, data: Vec::new() });
                }
                Some(Ok(_)) => w.read = Reading::Done(Entry::Problem(unexpected()), None),
                Some(Err(e)) => w.read = Reading::Done(Entry::Problem(problem(&e)), None),
                None => {}
            },
            OpKind::OpenDir => match reply {
                Some(Ok(Answer::Handle(handle))) => {
                    w.list = Listing::Open(OpenDir { handle, names: Vec::new(), children: Vec::new(), seen: 0 });
                }
                Some(Ok(_)) => w.list = Listing::Done(Err(unexpected()), None),
                Some(Err(e)) => w.list = Listing::Done(Err(problem(&e)), None),
                None => {}
            },
            OpKind::Fstat => {
                fstats.insert(op.work, reply);
            }
            OpKind::Read => {
                if let Some(Ok(Answer::Data(d))) = &reply {
                    stats.bytes += d.len() as u64;
                }
                reads.entry(op.work).or_default().push((op.offset, op.len, reply));
            }
            OpKind::ReadDir => readdirs.entry(op.work).or_default().push(reply),
        }
    }
    let files: Vec<usize> = {
        let mut v: Vec<usize> = reads.keys().chain(fstats.keys()).copied().collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    for i in files {
        let w = &mut works[i];
        let Reading::Open(f) = &mut w.read else { continue };
        let outcome = f.absorb(fstats.remove(&i), reads.remove(&i).unwrap_or_default(), cap);
        if let Some(mut entry) = outcome {
            if let Entry::Found { content: Some(c), .. } = &entry {
                let len = c.bytes.len() as u64;
                if let Err(what) = pool.take(len) {
                    entry = Entry::Problem(Problem::OverBudget { what });
                }
            }
            let Reading::Open(f) = std::mem::replace(&mut w.read, Reading::No) else { unreachable!() };
            w.read = Reading::Done(entry, Some(f.handle));
        }
    }
    for (i, replies) in readdirs {
        let w = &mut works[i];
        let Listing::Open(d) = &mut w.list else { continue };
        if let Some(result) = d.absorb(replies) {
            let Listing::Open(d) = std::mem::replace(&mut w.list, Listing::No) else { unreachable!() };
            if result.is_ok() {
                w.children = d.children;
            }
            w.list = Listing::Done(result, Some(d.handle));
        }
    }
}

impl OpenFile {
    /// Applies a round's fstat (the first round) and reads; `Some` when the file is done.
    fn absorb(
        &mut self,
        fstat: Option<Option<Reply>>,
        reads: Vec<(u64, u32, Option<Reply>)>,
        cap: u64,
    ) -> Option<Entry> {
        if let Some(reply) = fstat {
            // Unanswered (the time budget ran out): stays open, and is answered over budget.
            let reply = reply?;
            match meta_of(reply) {
                Ok(m) => self.meta = Some(m),
                Err(p) => return Some(Entry::Problem(p)),
            }
        }
        let meta = self.meta?;
        // A directory opens (open(2) with O_RDONLY works on one) and a device would read forever: only regular
        // files are read, the rest answered by their stat.
        if meta.kind != Kind::File {
            return Some(Entry::Found { meta, content: None, names: None });
        }
        if let Some(cut) = self.cut {
            return self.absorb_cut(cut, meta, reads, cap);
        }
        if meta.size > cap {
            return Some(Entry::Problem(Problem::TooLarge { size: meta.size, limit: cap, meta: Some(meta) }));
        }
        let mut eof = false;
        let mut short = false;
        for (offset, asked, reply) in reads {
            // After a short answer or the end, later offsets would leave a gap: asked again next round.
            if eof || short || offset != self.data.len() as u64 {
                break;
            }
            match reply? {
                Ok(Answer::Data(d)) if d.len() <= asked as usize => {
                    short = d.len() < asked as usize;
                    self.data.extend_from_slice(&d);
                }
                Ok(_) => return Some(Entry::Problem(unexpected())),
                Err(Fail::Status { code: wire::STATUS_EOF, .. }) => eof = true,
                Err(e) => return Some(Entry::Problem(problem(&e))),
            }
        }
        let got = self.data.len() as u64;
        if got > cap {
            let size = meta.size.max(got);
            return Some(Entry::Problem(Problem::TooLarge { size, limit: cap, meta: Some(Meta { size, ..meta }) }));
        }
        // The end: an EOF answer, or a regular file's short read once its whole size has come (OpenSSH answers a
        // read with one read(2), which on a regular file is short only at the end of the file).
        if eof
            || (short && meta.size > 0 && got >= meta.size)
            || (short && meta.size == 0 && self.short_ends && got < READ_LIMIT_FLOOR)
        {
            return Some(Entry::Found {
                meta,
                content: Some(Content::plain(std::mem::take(&mut self.data))),
                names: None,
            });
        }
        None
    }
}

impl OpenFile {
    /// Applies a round's read of a file whose leading certificates alone are wanted (see [`Cut`]).
    fn absorb_cut(&mut self, cut: Cut, meta: Meta, reads: Vec<(u64, u32, Option<Reply>)>, cap: u64) -> Option<Entry> {
        use crate::files::x509::{MAX_CERTS, PEM_BEGIN};
        let (offset, asked, reply) = reads.into_iter().next()?;
        let eof = match reply? {
            Ok(Answer::Data(d)) if d.len() <= asked as usize && offset == self.data.len() as u64 => {
                self.data.extend_from_slice(&d);
                // Short is not the end: a server may answer less than asked.
                d.is_empty()
            }
            Ok(_) => return Some(Entry::Problem(unexpected())),
            Err(Fail::Status { code: wire::STATUS_EOF, .. }) => true,
            Err(e) => return Some(Entry::Problem(problem(&e))),
        };
        let got = self.data.len() as u64;
        let layout = |why: &str| {
            Some(Entry::Problem(Problem::Failed {
                message: format!(
                    "{why}: fleetaudit reads a file that holds a key only up to its certificates, as Go's pem.Encode                      and OpenSSL write them (64 base64 characters a line, LF line ends), and this one is not laid                      out so"
                ),
            }))
        };
        let done = |data: &mut Vec<u8>, kept: u64| {
            data.truncate(kept as usize);
            Some(Entry::Found { meta, content: Some(Content::plain(std::mem::take(data))), names: None })
        };
        if got < cut.target() && !eof {
            return None;
        }
        match cut {
            Cut::Header { at } => {
                if self.data.get(at as usize..).is_some_and(|h| h == PEM_BEGIN) {
                    self.cut = Some(Cut::Length { at });
                    None
                } else {
                    // Another block's BEGIN line, or the end: header text only was read, and is not kept.
                    done(&mut self.data, at)
                }
            }
            Cut::Length { at } => {
                let line = &self.data[(at as usize + PEM_BEGIN.len()).min(self.data.len())..];
                let Some(end) = Cut::block_end(at, line) else {
                    return layout("the first line of a certificate does not say its length");
                };
                if end > cap || end - at > CHUNK {
                    return Some(Entry::Problem(Problem::TooLarge { size: end, limit: cap, meta: Some(meta) }));
                }
                self.cut = Some(Cut::Rest { at, end, blocks: 1 + self.blocks_before(at) });
                None
            }
            Cut::Rest { end, blocks, .. } => {
                if got < end {
                    return layout("the file ends inside a certificate");
                }
                let footer = &self.data[end as usize - crate::files::x509::PEM_END.len() - 1..end as usize];
                if !footer.starts_with(crate::files::x509::PEM_END) || footer.last() != Some(&b'\n') {
                    return layout("a certificate's END line is not where its length puts it");
                }
                let next = &self.data[end as usize..];
                if next == PEM_BEGIN && blocks < MAX_CERTS {
                    self.cut = Some(Cut::Length { at: end });
                    None
                } else {
                    done(&mut self.data, end)
                }
            }
        }
    }

    /// Certificates read whole before the one at `at` (each ends where the next begins).
    fn blocks_before(&self, at: u64) -> usize {
        let begin = crate::files::x509::PEM_BEGIN;
        self.data[..at as usize].windows(begin.len()).filter(|w| *w == begin).count()
    }
}

/// Where reading only a PEM file's leading certificates stands ([`Want::Certs`]). Each step reads exactly
/// what it must and never past the last certificate's END line, whatever follows it: a private key is never
/// sent. A block that is not a certificate is recognised by its BEGIN line alone (27 bytes of header text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The 27 bytes at `at` must be a certificate's BEGIN line (read with the fstat for the first).
    Header { at: u64 },
    /// The certificate at `at` (its BEGIN line read): its first base64 line, which gives the DER's length.
    Length { at: u64 },
    /// The rest of the certificate at `at`, which ends at `end`, and the 27 bytes after it (the next BEGIN line,
    /// if a certificate follows).
    Rest { at: u64, end: u64, blocks: usize },
}

impl Cut {
    /// How far this step reads: the BEGIN line; the newline and first line of 64 base64 characters after it
    /// (inside the certificate, whatever it is); the certificate's end and the next 27 bytes.
    fn target(self) -> u64 {
        let begin = crate::files::x509::PEM_BEGIN.len() as u64;
        match self {
            Cut::Header { at } => at + begin,
            Cut::Length { at } => at + begin + 65,
            Cut::Rest { end, .. } => end + begin,
        }
    }

    /// The next read, given `got` bytes so far: (offset, length), from where the last answer ended.
    fn next_read(self, got: u64) -> Option<(u64, u32)> {
        let want = self.target().saturating_sub(got).min(CHUNK);
        (want > 0).then_some((got, want as u32))
    }

    /// Where the certificate whose BEGIN line is at `at` ends (after its END line's newline), from its first
    /// base64 line (`line`, starting with the newline after BEGIN), laid out as Go's `pem.Encode` writes it:
    /// 64 characters a line, the last line shorter, LF.
    fn block_end(at: u64, line: &[u8]) -> Option<u64> {
        use base64::Engine;
        let b64 = line.strip_prefix(b"\n")?;
        let head = base64::engine::general_purpose::STANDARD.decode(b64.get(..8)?).ok()?;
        // A DER SEQUENCE: tag 0x30, then its length (short form, or 0x81..0x83 and that many bytes).
        if head[0] != 0x30 {
            return None;
        }
        let der = match head[1] {
            n @ 0..=0x7f => 2 + u64::from(n),
            0x81 => 3 + u64::from(head[2]),
            0x82 => 4 + (u64::from(head[2]) << 8 | u64::from(head[3])),
            0x83 => 5 + (u64::from(head[2]) << 16 | u64::from(head[3]) << 8 | u64::from(head[4])),
            _ => return None,
        };
        let chars = der.div_ceil(3) * 4;
        let lines = chars.div_ceil(64);
        let begin = crate::files::x509::PEM_BEGIN.len() as u64 + 1;
        let end = crate::files::x509::PEM_END.len() as u64 + 1;
        Some(at + begin + chars + lines + end)
    }
}

impl OpenDir {
    /// Applies a round's readdirs; `Some` when the listing is done.
    fn absorb(&mut self, replies: Vec<Option<Reply>>) -> Option<Result<Vec<String>, Problem>> {
        for reply in replies {
            match reply? {
                Ok(Answer::Names(files)) => {
                    for f in files {
                        self.seen += 1;
                        let Ok(name) = String::from_utf8(f.filename.to_vec()) else {
                            return Some(Err(Problem::Failed {
                                message: format!(
                                    "the SFTP server listed an entry whose name is not UTF-8 ({}); refused rather \
                                     than listed without it",
                                    crate::ps::truncate(&String::from_utf8_lossy(&f.filename), 80)
                                ),
                            }));
                        };
                        if name.len() > NAME_MAX || name.contains(['/', '\0']) || name.is_empty() {
                            return Some(Err(Problem::Failed {
                                message: format!(
                                    "the SFTP server listed an entry no Linux file name can be ({}); refused",
                                    crate::ps::truncate(&name, 80)
                                ),
                            }));
                        }
                        if name == "." || name == ".." {
                            continue;
                        }
                        if self.names.len() >= MAX_NAMES {
                            return Some(Err(Problem::Failed {
                                message: format!("more than {MAX_NAMES} entries: refused rather than listed in part"),
                            }));
                        }
                        if let Ok(m) = meta(&f.attrs)
                            && m.kind != Kind::Symlink
                        {
                            self.children.push((name.clone(), m));
                        }
                        self.names.push(name);
                    }
                }
                Ok(_) => return Some(Err(unexpected())),
                Err(Fail::Status { code: wire::STATUS_EOF, .. }) => {
                    // OpenSSH's sftp-server leaves out every entry it cannot lstat, `.` and `..` included: a
                    // directory the audit login may read but not search (r without x) lists as nothing at all,
                    // which would look like an empty drop-in directory. Every real directory has `.`.
                    if self.seen == 0 {
                        return Some(Err(Problem::Denied));
                    }
                    let mut names = std::mem::take(&mut self.names);
                    names.sort_unstable();
                    return Some(Ok(names));
                }
                Err(e) => return Some(Err(problem(&e))),
            }
        }
        None
    }
}

/// Below this, a short answer cannot be a server's own read limit: servers "SHOULD support packets of at least
/// 34000 bytes" (draft-ietf-secsh-filexfer-02 §3), and the smallest limit among servers that greet with OpenSSH's
/// extension names is Go's pkg/sftp (`maxTxPacket`, 32 KiB a read), which otherwise answers with ReadAt:
/// whole up to its limit.
const READ_LIMIT_FLOOR: u64 = 32 << 10;

/// Whether a read of `path` that returns less than asked is its end although its size says 0: the two `/proc`
/// files the engine reads. Linux answers a read of `/proc/PID/environ` with everything up to the count asked
/// (`environ_read` in fs/proc/base.c loops page by page until the count or the end of the environment), and
/// `/proc/PID/cgroup` is a `single_open` seq_file (`proc_cgroup_show`), whose one record `seq_read_iter`
/// (fs/seq_file.c) builds whole before copying up to the count. OpenSSH's sftp-server answers a read with one
/// read(2) of up to 64 KiB at least (255 KiB since 8.6), so from OpenSSH's server (see [`Sftp::whole_reads`])
/// a short answer there (under [`READ_LIMIT_FLOOR`]) is the end: no round trip to be told EOF. Any other file of
/// size 0 (a seq_file of many records may stop at a page) is read until the server says EOF.
fn short_read_ends(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/proc/") else { return false };
    let Some((pid, file)) = rest.split_once('/') else { return false };
    !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && matches!(file, "environ" | "cgroup")
}

/// The path's [`Meta`] from a stat's or fstat's reply.
fn meta_of(reply: Reply) -> Result<Meta, Problem> {
    match reply {
        Ok(Answer::Attrs(a)) => meta(&a),
        Ok(_) => Err(unexpected()),
        Err(e) => Err(problem(&e)),
    }
}

/// A path's type, mode, owner and size from SFTP attributes. All four are required: a default would be a lie
/// (uid 0 is root, mode 0 the most restrictive).
fn meta(a: &wire::Attrs) -> Result<Meta, Problem> {
    let (Some(mode), Some(uid), Some(gid), Some(size)) = (a.permissions, a.uid, a.gid, a.size) else {
        return Err(Problem::Failed {
            message: "the SFTP server left out the type, mode, owner or size of this path".into(),
        });
    };
    // The file-type bits of st_mode (S_IFMT), as OpenSSH sends st_mode whole.
    let kind = match mode & 0o170_000 {
        0o100_000 => Kind::File,
        0o040_000 => Kind::Dir,
        0o120_000 => Kind::Symlink,
        _ => Kind::Other,
    };
    Ok(Meta { kind, mode: mode & 0o7777, uid, gid, size })
}

/// SFTP statuses as [`Problem`]s: OpenSSH maps ENOENT and ENOTDIR to NO_SUCH_FILE, EACCES and EPERM to
/// PERMISSION_DENIED (sftp-server.c, `errno_to_portable`).
fn problem(e: &Fail) -> Problem {
    match e {
        Fail::Status { code: wire::STATUS_NO_SUCH_FILE, .. } => Problem::Missing,
        Fail::Status { code: wire::STATUS_PERMISSION_DENIED, .. } => Problem::Denied,
        Fail::Status { code, message } => {
            let said = crate::ps::truncate(message.trim(), 200);
            Problem::Failed { message: format!("the SFTP server answered {}: {said}", wire::status_name(*code)) }
        }
        Fail::Session(why) => Problem::Failed {
            message: crate::ps::truncate(&format!("the SFTP session failed before answering: {why}"), 300),
        },
    }
}

fn unexpected() -> Problem {
    Problem::Failed { message: "the SFTP server answered with a packet of the wrong type".into() }
}

/// An SFTP session over a session channel of the host's connection, driven on the host's own task.
pub(super) struct Sftp {
    read: ChannelReadHalf,
    write: ChannelWriteHalf<Msg>,
    /// What the server sent and is not parsed yet: at most the start of one packet.
    inbox: BytesMut,
    next_id: u32,
    /// Close requests queued since the last round: they leave with the next one, their answers ignored.
    closes: Vec<u8>,
    /// Rounds sent: each is one round trip (see the module's doc).
    rounds: u32,
    /// Why the session cannot be used any more, once it cannot: every later request is answered with it.
    broken: Option<String>,
    /// The server is OpenSSH's sftp-server (its greeting lists OpenSSH's extensions, `posix-rename@openssh.com`
    /// and others, as every release since 5.x does): it answers a read with one read(2) of up to 64 KiB at least
    /// (`process_read` in sftp-server.c), never less because of a limit of its own.
    whole_reads: bool,
}

/// A batch's rounds on a session, within the batch's deadline.
struct Live<'s> {
    sftp: &'s mut Sftp,
    deadline: Instant,
}

impl Exchange for Live<'_> {
    async fn round(&mut self, ops: &[Op]) -> (Vec<Option<Reply>>, bool) {
        let mut replies: Vec<Option<Reply>> = (0..ops.len()).map(|_| None).collect();
        let Sftp { read, write, inbox, next_id, closes, rounds, broken, .. } = &mut *self.sftp;
        if let Some(why) = broken {
            replies.iter_mut().for_each(|r| *r = Some(Err(Fail::Session(why.clone()))));
            return (replies, false);
        }
        let base = *next_id;
        *next_id = base.wrapping_add(ops.len() as u32);
        let mut out = std::mem::take(closes);
        for (i, op) in ops.iter().enumerate() {
            wire::put(&mut out, base.wrapping_add(i as u32), op.request());
        }
        *rounds += 1;
        let mut awaiting = Awaiting { base, replies, left: ops.len() };
        let exchange = async {
            // Sent while the answers are read: a round larger than the channel's window still goes out whole.
            let send = write.data_bytes(Bytes::from(out));
            tokio::pin!(send);
            let mut sent = false;
            loop {
                awaiting.take(inbox)?;
                if awaiting.left == 0 && sent {
                    return Ok(());
                }
                tokio::select! {
                    r = &mut send, if !sent => {
                        sent = true;
                        if let Err(e) = r {
                            return Err(format!("the connection failed while sending SFTP requests: {e}"));
                        }
                    }
                    msg = read.wait() => match msg {
                        Some(ChannelMsg::Data { data }) => inbox.extend_from_slice(&data),
                        Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                            return Err("the host closed the SFTP channel".to_owned());
                        }
                        // Its stderr, exit status, window changes: nothing an answer needs.
                        Some(_) => {}
                    },
                }
            }
        };
        let outcome = timeout_at(self.deadline, exchange).await;
        let mut replies = awaiting.replies;
        match outcome {
            Ok(Ok(())) => (replies, false),
            Ok(Err(why)) => {
                for slot in replies.iter_mut().filter(|r| r.is_none()) {
                    *slot = Some(Err(Fail::Session(why.clone())));
                }
                *broken = Some(why);
                (replies, false)
            }
            Err(_) => {
                // A request may be half sent: nothing more goes on this channel.
                *broken = Some("the host's file_budget ran out with requests unanswered".to_owned());
                (replies, true)
            }
        }
    }

    fn close(&mut self, handle: Bytes) {
        let s = &mut *self.sftp;
        wire::put(&mut s.closes, s.next_id, wire::Request::Close(&handle));
        s.next_id = s.next_id.wrapping_add(1);
    }
}

/// A round's requests, ids `base..base + replies.len()`, and the answers so far.
struct Awaiting {
    base: u32,
    replies: Vec<Option<Reply>>,
    /// Requests not answered yet.
    left: usize,
}

impl Awaiting {
    /// Applies every whole packet `inbox` holds. An answer goes to its request by id, in whatever order the
    /// server sends them; an id outside the round (a close's answer, or one the server made up) and a second
    /// answer to the same request are dropped. A packet that is not a reply ends the session: the error says why.
    fn take(&mut self, inbox: &mut BytesMut) -> Result<(), String> {
        while let Some((id, reply)) = wire::reply(inbox).map_err(|e| e.to_string())? {
            if let Some(slot @ None) = self.replies.get_mut(id.wrapping_sub(self.base) as usize) {
                *slot = Some(answer(reply));
                self.left -= 1;
            }
        }
        Ok(())
    }
}

/// What the SFTP channel said besides SFTP, to explain a failure.
#[derive(Default)]
struct Report {
    /// The server answered the subsystem or exec request with a failure.
    refused: bool,
    exit: Option<u32>,
    signal: Option<String>,
    stderr: Vec<u8>,
    /// The first bytes of its output (a login script's banner is not SFTP).
    first: Vec<u8>,
}

impl Report {
    /// Keeps what `msg` says; whether the channel's output has ended.
    fn absorb(&mut self, msg: &ChannelMsg) -> bool {
        match msg {
            ChannelMsg::Data { data } => {
                let take = data.len().min(FIRST_BYTES.saturating_sub(self.first.len()));
                self.first.extend_from_slice(&data[..take]);
            }
            ChannelMsg::ExtendedData { data, .. } => {
                let room = MAX_STDERR.saturating_sub(self.stderr.len());
                self.stderr.extend_from_slice(&data[..data.len().min(room)]);
            }
            ChannelMsg::Failure => {
                self.refused = true;
                return true;
            }
            ChannelMsg::ExitStatus { exit_status } => self.exit = Some(*exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => self.signal = Some(format!("{signal_name:?}")),
            ChannelMsg::Eof | ChannelMsg::Close => return true,
            _ => {}
        }
        false
    }
}

/// Opens a session channel, starts SFTP on it (the subsystem, or `command`) and exchanges versions, within
/// `limit`. The SFTP greeting is sent right behind the subsystem request, without waiting for its answer: the
/// channel costs two round trips, the same as `ps -ef`'s beside it. Errors are the reason, with the fix.
async fn open<H: client::Handler>(
    handle: &Handle<H>,
    command: Option<&str>,
    user: &str,
    limit: Duration,
) -> Result<Sftp, String> {
    let deadline = Instant::now() + limit;
    let channel = match timeout_at(deadline, handle.channel_open_session()).await {
        Err(_) => return Err(format!("the host did not open a second session channel within {limit:?}")),
        Ok(Err(e)) => {
            return Err(format!(
                "the host refused a second session channel on the connection ({e}): files are read on a channel \
                 beside `ps -ef`'s, so sshd's MaxSessions must be at least 2 (OpenSSH's default is 10)"
            ));
        }
        Ok(Ok(c)) => c,
    };
    let started = match command {
        Some(c) => channel.exec(true, c).await,
        None => channel.request_subsystem(true, "sftp").await,
    };
    if let Err(e) = started {
        return Err(format!("the connection failed while starting SFTP: {e}"));
    }
    let (mut read, write) = channel.split();
    let mut init = Vec::new();
    wire::put_init(&mut init);
    let mut report = Report::default();
    let mut inbox = BytesMut::new();
    let greeting = async {
        // sshd opens a session channel's window only once the subsystem or command has started: the greeting
        // waits for that while the channel is watched for a refusal.
        let send = write.data_bytes(init);
        tokio::pin!(send);
        let mut sent = false;
        loop {
            match wire::version(&mut inbox) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(_) => return Err(Failure::Garbled),
            }
            tokio::select! {
                r = &mut send, if !sent => {
                    sent = true;
                    if let Err(e) = r {
                        return Err(Failure::Send(e.to_string()));
                    }
                }
                msg = read.wait() => {
                    let Some(msg) = msg else { return Err(Failure::Closed) };
                    if report.absorb(&msg) {
                        return Err(Failure::Closed);
                    }
                    if let ChannelMsg::Data { data } = msg {
                        inbox.extend_from_slice(&data);
                    }
                }
            }
        }
    };
    let failure = match timeout_at(deadline, greeting).await {
        Ok(Ok(v)) if v.version == wire::VERSION => {
            let whole_reads = v.extensions.iter().any(|k| k.ends_with("@openssh.com"));
            return Ok(Sftp {
                read,
                write,
                inbox,
                next_id: 1,
                closes: Vec::new(),
                rounds: 0,
                broken: None,
                whole_reads,
            });
        }
        Ok(Ok(v)) => Failure::Version(v.version),
        Ok(Err(f)) => f,
        Err(_) => Failure::TimedOut(limit),
    };
    // A command's exit status and the rest of its stderr come after its output ends.
    let rest = async {
        while let Some(msg) = read.wait().await {
            if matches!(msg, ChannelMsg::Close) {
                break;
            }
            report.absorb(&msg);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), rest).await;
    Err(explain(command, user, &report, failure))
}

enum Failure {
    TimedOut(Duration),
    /// The channel ended before the greeting.
    Closed,
    /// What came was not an SFTP packet.
    Garbled,
    /// The connection failed while the greeting was sent.
    Send(String),
    Version(u32),
}

/// Why SFTP could not be started, and what to change.
fn explain(command: Option<&str>, user: &str, r: &Report, failure: Failure) -> String {
    let what = match command {
        Some(c) => format!("sftp_command `{c}`"),
        None => "the `sftp` subsystem".to_owned(),
    };
    // One line per line it printed (sshd's own "Could not chdir to home directory" comes first).
    let stderr = String::from_utf8_lossy(&r.stderr);
    let stderr = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" / ");
    let stderr = crate::ps::truncate(&stderr, 300);
    let first = crate::ps::truncate(String::from_utf8_lossy(&r.first).trim(), FIRST_BYTES);
    if r.refused {
        return match command {
            None => "the host's sshd refused the `sftp` subsystem: its sshd_config has no `Subsystem sftp` line. \
                     Add `Subsystem sftp internal-sftp` and reload sshd, or set sftp_command in the inventory"
                .to_owned(),
            Some(_) => format!(
                "the host's sshd refused to run {what} (a ForceCommand, or a restricted login?); run it by hand \
                 with `ssh {user}@HOST 'COMMAND'` to see why"
            ),
        };
    }
    if r.exit.is_some() || r.signal.is_some() {
        let how = match (&r.exit, &r.signal) {
            (Some(s), _) => format!("exited with status {s}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            (None, None) => unreachable!(),
        };
        let said = if stderr.is_empty() { String::new() } else { format!(": {stderr}") };
        let fix = match command {
            Some(c) => command_hint(c, &stderr, user),
            None => "; check the program the host's `Subsystem sftp` line names, or use `Subsystem sftp \
                     internal-sftp`"
                .to_owned(),
        };
        return format!("{what} {how}{said}{fix}");
    }
    let speaks = match command {
        Some(_) => {
            "; it must run an SFTP server on its standard input and output, such as `sudo -n \
                    /usr/lib/openssh/sftp-server -R`"
        }
        None => "",
    };
    match failure {
        Failure::Version(v) => format!("{what} speaks SFTP version {v}; fleetaudit speaks version 3, as OpenSSH does"),
        _ if !first.is_empty() => format!(
            "{what} did not speak SFTP: its output began with {first:?} (a login script printing to standard \
             output, or not an SFTP server){speaks}"
        ),
        Failure::TimedOut(limit) => format!("{what} sent no SFTP greeting within {limit:?}{speaks}"),
        Failure::Closed => format!("{what} closed the channel before the SFTP greeting{speaks}"),
        Failure::Send(e) => format!("the connection failed while starting {what}: {e}"),
        Failure::Garbled => format!("{what} did not answer the SFTP greeting with an SFTP packet{speaks}"),
    }
}

/// The fix for a failed `sftp_command`, from what it printed.
fn command_hint(command: &str, stderr: &str, user: &str) -> String {
    let refused = [
        "password is required",
        "a terminal is required",
        "askpass",
        "not allowed to execute",
        "not in the sudoers file",
        "may not run sudo",
        "not allowed to run sudo",
    ];
    if refused.iter().any(|s| stderr.contains(s)) {
        format!(
            "; sudo did not let {user} run it without a password: allow exactly that command with the sudoers \
             line `{user} ALL=(root) NOPASSWD: {}` (visudo -f /etc/sudoers.d/fleetaudit; README \"Files over SFTP\")",
            sudo_target(command)
        )
    } else if stderr.contains("not found") || stderr.contains("No such file") {
        "; the program is not at that path on this host: OpenSSH's SFTP server is /usr/lib/openssh/sftp-server \
         on Debian and Ubuntu, /usr/libexec/openssh/sftp-server on RHEL and Fedora"
            .to_owned()
    } else {
        String::new()
    }
}

/// The command sudo is asked to run (what a sudoers line must allow): `sudo -n -u root X -R` → `X -R`.
fn sudo_target(command: &str) -> String {
    let mut words = command.split_whitespace().peekable();
    if words.peek().is_some_and(|w| w.rsplit('/').next() == Some("sudo")) {
        words.next();
        while let Some(w) = words.peek() {
            if *w == "--" {
                words.next();
                break;
            }
            if !w.starts_with('-') {
                break;
            }
            // Options taking a value (sudo(8)).
            let takes_value = ["-u", "-g", "-C", "-D", "-h", "-p", "-R", "-r", "-t", "-T", "-U"].contains(w);
            words.next();
            if takes_value {
                words.next();
            }
        }
    }
    words.collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SFTP server in memory, answering the planned requests as a host may (honest or not), so the
    /// planning and the caps can be driven round by round. Handles are the paths.
    #[derive(Default)]
    struct Fake {
        /// path → (st_mode, the size stat claims, the bytes a read finds)
        files: HashMap<String, (u32, u64, Vec<u8>)>,
        dirs: HashMap<String, Vec<String>>,
        /// Most bytes a read answers (a server with a small read limit), 0: as asked.
        per_read: usize,
        /// Answer reads with one byte more than they asked for.
        overfill: bool,
        /// Leave `.` and `..` out of listings.
        no_dots: bool,
        cursor: HashMap<String, usize>,
        /// Bytes of each file asked for, over all reads.
        asked: HashMap<String, u64>,
        /// The furthest offset any read of each file reached.
        furthest: HashMap<String, u64>,
    }

    fn status(code: u32) -> Reply {
        Err(Fail::Status { code, message: String::new() })
    }

    impl Fake {
        fn file(mut self, path: &str, size: u64, data: Vec<u8>) -> Fake {
            self.files.insert(path.into(), (0o100_644, size, data));
            self
        }

        fn dir(mut self, path: &str, entries: usize) -> Fake {
            self.dirs.insert(path.into(), (0..entries).map(|i| format!("{i:05}.conf")).collect());
            self
        }

        fn attrs(&self, path: &str) -> Reply {
            let (mode, size) = match (self.files.get(path), self.dirs.contains_key(path)) {
                (Some((mode, size, _)), _) => (*mode, *size),
                (None, true) => (0o040_755, 4096),
                (None, false) => return status(wire::STATUS_NO_SUCH_FILE),
            };
            let a = wire::Attrs { size: Some(size), uid: Some(0), gid: Some(0), permissions: Some(mode) };
            Ok(Answer::Attrs(a))
        }

        fn serve(&mut self, op: &Op) -> Reply {
            let path = String::from_utf8(op.target.to_vec()).expect("the fake's handles are its paths");
            let known = self.files.contains_key(&path) || self.dirs.contains_key(&path);
            match op.kind {
                OpKind::Stat | OpKind::Fstat => self.attrs(&path),
                OpKind::Open if known => Ok(Answer::Handle(path.into())),
                OpKind::OpenDir if self.dirs.contains_key(&path) => Ok(Answer::Handle(path.into())),
                OpKind::Open | OpKind::OpenDir => status(wire::STATUS_NO_SUCH_FILE),
                OpKind::Read => {
                    *self.asked.entry(path.clone()).or_default() += u64::from(op.len);
                    let far = self.furthest.entry(path.clone()).or_default();
                    *far = (*far).max(op.offset + u64::from(op.len));
                    let data = &self.files[&path].2;
                    let at = op.offset as usize;
                    if at >= data.len() {
                        return status(wire::STATUS_EOF);
                    }
                    let mut n = (op.len as usize).min(data.len() - at);
                    if self.per_read > 0 {
                        n = n.min(self.per_read);
                    }
                    if self.overfill {
                        return Ok(Answer::Data(vec![b'!'; op.len as usize + 1].into()));
                    }
                    Ok(Answer::Data(Bytes::copy_from_slice(&data[at..at + n])))
                }
                OpKind::ReadDir => {
                    let mut all: Vec<String> = if self.no_dots { vec![] } else { vec![".".into(), "..".into()] };
                    all.extend(self.dirs[&path].iter().cloned());
                    let at = self.cursor.entry(path).or_default();
                    if *at >= all.len() {
                        return status(wire::STATUS_EOF);
                    }
                    // OpenSSH's sftp-server: at most 100 entries a reply.
                    let chunk: Vec<wire::Name> = all[*at..(*at + 100).min(all.len())]
                        .iter()
                        .map(|n| wire::Name { filename: n.clone().into(), attrs: wire::Attrs::default() })
                        .collect();
                    *at += chunk.len();
                    Ok(Answer::Names(chunk))
                }
            }
        }
    }

    impl Exchange for Fake {
        async fn round(&mut self, ops: &[Op]) -> (Vec<Option<Reply>>, bool) {
            (ops.iter().map(|op| Some(self.serve(op))).collect(), false)
        }

        fn close(&mut self, _: Bytes) {}
    }

    /// Runs a batch against `fake` as `Files::fetch` does: the answers and the rounds it took.
    fn drive(fake: &mut Fake, requests: &[Request], cap: u64) -> (Vec<Entry>, u32) {
        drive_with(fake, requests, cap, true)
    }

    /// [`drive`], from a server that does (`whole_reads`) or may not answer reads whole.
    fn drive_with(fake: &mut Fake, requests: &[Request], cap: u64, whole_reads: bool) -> (Vec<Entry>, u32) {
        let mut works: Vec<Work<'_>> = Vec::new();
        let mut work_of = Vec::new();
        for r in requests {
            let w = works.iter().position(|w| w.path == r.path).unwrap_or_else(|| {
                works.push(Work::new(&r.path, whole_reads));
                works.len() - 1
            });
            works[w].want(r.want);
            work_of.push(Some(w));
        }
        let shared = (Semaphore::new(super::super::SHARED_OUTPUT >> 10), super::super::SHARED_OUTPUT);
        let mut pool = Pool { shared: &shared, held: 0, drawn: None };
        let mut stats = FileStats::default();
        let batch = run_rounds(&mut works, cap, &mut pool, &mut stats, fake);
        let rounds = futures_util::FutureExt::now_or_never(batch).expect("the fake answers at once");
        let late = Problem::OverBudget { what: "late".into() };
        let answers = assemble(requests, vec![None; requests.len()], &work_of, &mut works, &late);
        (answers.into_iter().map(|(_, e)| e).collect(), rounds)
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_file_lying_about_its_size_is_never_buffered_past_the_cap() {
        let mut fake = Fake::default().file("/lies", 10, vec![b'x'; 3 << 20]);
        let (a, _) = drive(&mut fake, &[Request::read("/lies")], MIB);
        assert!(
            matches!(a[0].problem(), Some(Problem::TooLarge { size, limit: MIB, meta: Some(m) }) if *size == MIB + 1 && m.size == MIB + 1),
            "{:?}",
            a[0]
        );
        assert_eq!(fake.asked["/lies"], MIB + 1, "asked for the cap and one byte, no more");
    }

    /// A serving certificate as a kubelet's certificate manager keeps it, PEM as Go writes it.
    fn certificate(cn: &str) -> String {
        let mut p = rcgen::CertificateParams::new(vec![cn.to_owned()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().pem()
    }

    #[test]
    fn of_a_file_that_holds_a_key_only_its_certificates_are_ever_asked_for() {
        let key =
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIKEYKEYKEYSECRETSECRETSECRET\n-----END EC PRIVATE KEY-----\n";
        let one = certificate("node-1");
        let two = format!("{}{}", certificate("node-2"), certificate("intermediate"));
        for (certs, rounds) in [(one.as_str(), 4), (two.as_str(), 6)] {
            let data = format!("{certs}{key}").into_bytes();
            let mut fake = Fake::default().file("/k.pem", data.len() as u64, data);
            let (a, r) = drive(&mut fake, &[Request::certs("/k.pem")], MIB);
            let content = a[0].content().unwrap();
            assert_eq!(String::from_utf8_lossy(&content.bytes), certs);
            // Every byte of the certificates, and the next block's BEGIN line (27 bytes of header text): no more.
            assert_eq!(fake.asked["/k.pem"], certs.len() as u64 + 27, "asked");
            assert_eq!(r, rounds, "rounds: open, fstat + BEGIN line, first line, rest + next BEGIN line");
            // A server answering a few bytes a read is read the same way, only in more rounds.
            let data = format!("{certs}{key}").into_bytes();
            let mut fake = Fake { per_read: 100, ..Fake::default() }.file("/k.pem", data.len() as u64, data);
            let (a, _) = drive(&mut fake, &[Request::certs("/k.pem")], MIB);
            assert_eq!(String::from_utf8_lossy(&a[0].content().unwrap().bytes), certs);
            assert_eq!(fake.furthest["/k.pem"], certs.len() as u64 + 27, "asked at 100 bytes a read");
        }
        // A key first: its BEGIN line alone is looked at, nothing is kept.
        let data = format!("{key}{one}").into_bytes();
        let mut fake = Fake::default().file("/k.pem", data.len() as u64, data);
        let (a, _) = drive(&mut fake, &[Request::certs("/k.pem")], MIB);
        assert!(a[0].content().unwrap().bytes.is_empty());
        assert_eq!(fake.asked["/k.pem"], 27);
        // A certificate not laid out as Go writes it (CRLF): refused, saying why.
        let data = one.replace('\n', "\r\n").into_bytes();
        let mut fake = Fake::default().file("/k.pem", data.len() as u64, data);
        let (a, _) = drive(&mut fake, &[Request::certs("/k.pem")], MIB);
        assert!(a[0].problem().unwrap().to_string().contains("LF line ends"), "{:?}", a[0]);
    }

    #[test]
    fn a_file_larger_than_the_cap_is_refused_from_its_fstat() {
        let mut fake = Fake::default().file("/big", 2 * MIB, vec![b'x'; 2 << 20]);
        let (a, rounds) = drive(&mut fake, &[Request::read("/big")], MIB);
        assert!(
            matches!(a[0].problem(), Some(Problem::TooLarge { size, limit: MIB, meta: Some(m) }) if *size == 2 * MIB && m.kind == Kind::File),
            "{:?}",
            a[0]
        );
        assert_eq!((fake.asked["/big"], rounds), (FIRST_READ, 2), "the first read went with the fstat, no other");
    }

    #[test]
    fn files_are_read_whole_whatever_the_server_answers_a_read_with() {
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        // Regular, larger than the first read: the rest in one round.
        let mut fake = Fake::default().file("/f", data.len() as u64, data.clone());
        let (a, rounds) = drive(&mut fake, &[Request::read("/f")], MIB);
        assert_eq!((a[0].content().unwrap().bytes.as_slice(), rounds), (data.as_slice(), 3));
        // /proc: size 0, read until EOF.
        let mut fake = Fake::default().file("/proc/9/environ", 0, data[..200_000].to_vec());
        let (a, _) = drive(&mut fake, &[Request::read("/proc/9/environ")], MIB);
        assert_eq!(a[0].content().unwrap().bytes, &data[..200_000]);
        // An etcd's environment and a kubelet's cgroup: a short first read is their end, one round trip fewer
        // than another file of size 0, which is read until EOF.
        for (path, rounds) in [("/proc/9/environ", 2), ("/proc/9/cgroup", 2), ("/proc/9/status", 3)] {
            let mut fake = Fake::default().file(path, 0, data[..3000].to_vec());
            let (a, r) = drive(&mut fake, &[Request::read(path)], MIB);
            assert_eq!((a[0].content().unwrap().bytes.as_slice(), r), (&data[..3000], rounds), "{path}");
        }
        // From a server that greets as OpenSSH but reads at most 32 KiB at a time (Go's pkg/sftp), a 40,000-byte
        // environment comes back short at 32 KiB: not its end.
        let mut fake =
            Fake { per_read: 32 << 10, ..Fake::default() }.file("/proc/9/environ", 0, data[..40_000].to_vec());
        let (a, _) = drive(&mut fake, &[Request::read("/proc/9/environ")], MIB);
        assert_eq!(a[0].content().unwrap().bytes, &data[..40_000]);
        // From a server not known to answer reads whole (one with a small read limit would answer short), read
        // until EOF.
        let mut fake = Fake { per_read: 1000, ..Fake::default() }.file("/proc/9/environ", 0, data[..3000].to_vec());
        let (a, r) = drive_with(&mut fake, &[Request::read("/proc/9/environ")], MIB, false);
        assert_eq!((a[0].content().unwrap().bytes.as_slice(), r), (&data[..3000], 5));
        // Grown since its fstat: read on to the end.
        let mut fake = Fake::default().file("/grew", 100, data[..150].to_vec());
        let (a, rounds) = drive(&mut fake, &[Request::read("/grew")], MIB);
        assert_eq!((a[0].content().unwrap().bytes.as_slice(), rounds), (&data[..150], 2));
        // A server answering 1,000 bytes a read: still whole.
        let mut fake = Fake { per_read: 1000, ..Fake::default() }.file("/slow", 5000, data[..5000].to_vec());
        let (a, _) = drive(&mut fake, &[Request::read("/slow")], MIB);
        assert_eq!(a[0].content().unwrap().bytes, &data[..5000]);
        // One sending more than asked is refused.
        let mut fake = Fake { overfill: true, ..Fake::default() }.file("/over", 5, b"12345".to_vec());
        let (a, _) = drive(&mut fake, &[Request::read("/over")], MIB);
        assert!(matches!(a[0].problem(), Some(Problem::Failed { message }) if message.contains("wrong type")), "{a:?}");
    }

    #[test]
    fn a_host_answering_a_byte_at_a_time_is_given_up_on() {
        let mut fake = Fake { per_read: 1, ..Fake::default() }.file("/drip", 1000, vec![b'x'; 1000]);
        let (a, rounds) = drive(&mut fake, &[Request::read("/drip"), Request::stat("/drip")], MIB);
        assert!(matches!(a[0].problem(), Some(Problem::Failed { message }) if message.contains("a little at a time")));
        assert!(a[1].meta().is_some(), "what was answered stays answered");
        assert_eq!(rounds, MAX_ROUNDS, "rounds sent");
    }

    #[test]
    fn listings_are_whole_or_refused() {
        let mut fake = Fake::default().dir("/d", 250).dir("/huge", MAX_NAMES + 1).dir("/empty", 0);
        let reqs = [Request::list("/d"), Request::list("/huge"), Request::list("/empty"), Request::list("/none")];
        let (a, rounds) = drive(&mut fake, &reqs, MIB);
        let Entry::Found { names: Some(names), .. } = &a[0] else { panic!("{:?}", a[0]) };
        assert_eq!((names.len(), names[0].as_str(), names[249].as_str()), (250, "00000.conf", "00249.conf"));
        assert!(matches!(a[1].problem(), Some(Problem::Failed { message }) if message.contains("more than 4096")));
        assert!(matches!(&a[2], Entry::Found { names: Some(n), .. } if n.is_empty()));
        assert_eq!(a[3].problem(), Some(&Problem::Missing));
        assert!(rounds > 3, "the huge one took its rounds ({rounds})");
        let (a, rounds) = drive(&mut Fake::default().dir("/d", 250), &reqs[..1], MIB);
        assert_eq!((a[0].meta().map(|m| m.kind), rounds), (Some(Kind::Dir), 3), "200 entries a round");
        // Nothing at all, not even `.`: what OpenSSH sends for a directory it cannot search.
        let mut fake = Fake { no_dots: true, ..Fake::default() }.dir("/x", 0);
        assert_eq!(drive(&mut fake, &[Request::list("/x")], MIB).0[0].problem(), Some(&Problem::Denied));
    }

    #[test]
    fn more_files_than_handles_at_once_take_more_rounds_not_failures() {
        let n = MAX_OPEN * 2 + 1;
        let mut fake = Fake::default();
        for i in 0..n {
            fake = fake.file(&format!("/f{i}"), 2, b"ok".to_vec());
        }
        let reqs: Vec<Request> = (0..n).map(|i| Request::read(format!("/f{i}"))).collect();
        let (a, rounds) = drive(&mut fake, &reqs, MIB);
        assert!(a.iter().all(|e| e.content().is_some_and(|c| c.bytes == b"ok")));
        assert_eq!(rounds, 6, "three windows of two rounds");
    }

    #[test]
    fn sudo_target_is_what_a_sudoers_line_must_allow() {
        assert_eq!(sudo_target("sudo -n /usr/lib/openssh/sftp-server -R"), "/usr/lib/openssh/sftp-server -R");
        assert_eq!(
            sudo_target("/usr/bin/sudo -n -u root -- /usr/lib/openssh/sftp-server -R"),
            "/usr/lib/openssh/sftp-server -R"
        );
        assert_eq!(sudo_target("doas /usr/lib/openssh/sftp-server"), "doas /usr/lib/openssh/sftp-server");
    }

    #[test]
    fn attributes_without_an_owner_or_mode_are_refused_not_defaulted() {
        let full = wire::Attrs { size: Some(3), uid: Some(0), gid: Some(5), permissions: Some(0o100_640) };
        assert_eq!(meta(&full), Ok(Meta { kind: Kind::File, mode: 0o640, uid: 0, gid: 5, size: 3 }));
        let dir = wire::Attrs { permissions: Some(0o041_777), ..full };
        assert_eq!(meta(&dir).map(|m| (m.kind, m.mode)), Ok((Kind::Dir, 0o1777)));
        let fifo = wire::Attrs { permissions: Some(0o010_600), ..full };
        assert_eq!(meta(&fifo).map(|m| m.kind), Ok(Kind::Other));
        for partial in [
            wire::Attrs { uid: None, ..full },
            wire::Attrs { permissions: None, ..full },
            wire::Attrs { size: None, ..full },
        ] {
            assert!(matches!(meta(&partial), Err(Problem::Failed { .. })));
        }
    }

    /// An SFTP reply packet as a server writes it: length, type, id, then the fields.
    fn reply_packet(kind: u8, id: u32, fields: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> =
            [&[kind][..], &id.to_be_bytes()].into_iter().chain(fields.iter().copied()).flatten().copied().collect();
        [&(body.len() as u32).to_be_bytes()[..], &body].concat()
    }

    fn string_field(s: &[u8]) -> Vec<u8> {
        [&(s.len() as u32).to_be_bytes()[..], s].concat()
    }

    #[test]
    fn answers_go_to_their_requests_by_id_whatever_the_order_and_strays_are_dropped() {
        let eof = [&1u32.to_be_bytes()[..], &string_field(b"EOF"), &string_field(b"")].concat();
        let ok = [&0u32.to_be_bytes()[..], &string_field(b""), &string_field(b"")].concat();
        let mut bytes = Vec::new();
        // A close's answer from before the round, then the round's three answers last first, a second answer
        // to a request already answered, and one to an id nobody asked.
        bytes.extend(reply_packet(101, 6, &[&ok]));
        bytes.extend(reply_packet(102, 12, &[&string_field(b"h2")]));
        bytes.extend(reply_packet(103, 11, &[&string_field(b"data")]));
        bytes.extend(reply_packet(101, 10, &[&eof]));
        bytes.extend(reply_packet(102, 12, &[&string_field(b"again")]));
        bytes.extend(reply_packet(102, 99, &[&string_field(b"made up")]));
        let mut awaiting = Awaiting { base: 10, replies: (0..3).map(|_| None).collect(), left: 3 };
        // Arriving a few bytes at a time: nothing is taken before its packet is whole.
        let mut inbox = BytesMut::new();
        for chunk in bytes.chunks(5) {
            inbox.extend_from_slice(chunk);
            awaiting.take(&mut inbox).unwrap();
        }
        assert_eq!(awaiting.left, 0);
        assert!(inbox.is_empty());
        assert!(matches!(&awaiting.replies[0], Some(Err(Fail::Status { code: wire::STATUS_EOF, .. }))));
        assert!(matches!(&awaiting.replies[1], Some(Ok(Answer::Data(d))) if &d[..] == b"data"));
        assert!(
            matches!(&awaiting.replies[2], Some(Ok(Answer::Handle(h))) if &h[..] == b"h2"),
            "the first answer counts"
        );
    }

    #[test]
    fn a_packet_that_is_no_reply_ends_the_session_keeping_what_came_before() {
        let mut inbox = BytesMut::new();
        inbox.extend_from_slice(&reply_packet(102, 1, &[&string_field(b"h")]));
        inbox.extend_from_slice(&reply_packet(3, 2, &[]));
        let mut awaiting = Awaiting { base: 1, replies: (0..2).map(|_| None).collect(), left: 2 };
        let why = awaiting.take(&mut inbox).unwrap_err();
        assert!(why.contains("type 3"), "{why}");
        assert!(awaiting.replies[0].is_some() && awaiting.replies[1].is_none());
        // A length past the cap is refused from its four bytes.
        let mut inbox = BytesMut::from(&0x4000_0000u32.to_be_bytes()[..]);
        let why = awaiting.take(&mut inbox).unwrap_err();
        assert!(why.contains("1073741824 bytes"), "{why}");
    }

    #[test]
    fn paths_must_be_absolute_and_plain() {
        assert!(check_path("/etc/kubernetes/manifests").is_ok());
        assert!(check_path("etc/passwd").unwrap_err().contains("not an absolute path"));
        assert!(check_path("/etc/\0").unwrap_err().contains("NUL"));
        assert!(check_path(&format!("/{}", "a".repeat(PATH_MAX))).unwrap_err().contains("PATH_MAX"));
    }

    #[test]
    fn failures_say_what_to_change() {
        let refused = Report { refused: true, ..Report::default() };
        let e = explain(None, "audit", &refused, Failure::Closed);
        assert!(e.contains("Subsystem sftp internal-sftp"), "{e}");
        let sudo = Report { exit: Some(1), stderr: b"sudo: a password is required\n".to_vec(), ..Report::default() };
        let e = explain(Some("sudo -n /usr/lib/openssh/sftp-server -R"), "audit", &sudo, Failure::Closed);
        assert!(e.contains("exited with status 1: sudo: a password is required"), "{e}");
        assert!(e.contains("`audit ALL=(root) NOPASSWD: /usr/lib/openssh/sftp-server -R`"), "{e}");
        let banner = Report { first: b"Welcome to node-1\n".to_vec(), ..Report::default() };
        let e =
            explain(Some("/usr/lib/openssh/sftp-server"), "audit", &banner, Failure::TimedOut(Duration::from_secs(3)));
        assert!(e.contains("did not speak SFTP: its output began with \"Welcome to node-1\""), "{e}");
    }
}
