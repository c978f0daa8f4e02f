//! The report: a static HTML site rendered from the database.
//!
//! Owns: writing the static site from what the store's reads return (`store::reads`, `Store::scan_files` and
//! the cluster reads): an index of scans, per scan a fleet overview, a page per rule and per host, and
//! `latest/`. Must not touch: SSH, rules evaluation, SQL (the store owns every statement). It reads only the database, so a report can be re-rendered at any
//! time (`fleetaudit report`). Everything that came from a host (names, reasons, process lines, error messages)
//! is escaped by the templates (askama, `templates/`); pages carry a Content-Security-Policy that forbids
//! scripts and every external resource, and link only relatively, so they work from `file://`.

mod clusters;
mod files;
mod matrix;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use askama::Template;

use crate::model::Severity;
use crate::rules::prose::{self, Block, Span};
use crate::store::{Change, ResultRow, RuleRow, ScanHost, ScanRow, Store, StoreError};
use files::{ChangeCursor, FileChangeView, FilesFragment, SetCursor};

/// Host lists longer than this are split into pages.
pub const PAGE: usize = 500;
/// Longer process lines are shown as an excerpt around the tested flag (the host page lists them in full).
const EXCERPT: usize = 240;
/// Scans drawn in the trend.
const TREND: usize = 30;
/// Rows shown per change list.
const CHANGES_SHOWN: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {path}: {source}; check that the report directory is writable")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot render a page: {0}")]
    Template(#[from] askama::Error),
    #[error("a thread writing the report's pages stopped unexpectedly; run `fleetaudit report` again")]
    Writer,
    #[error("no scan {0} in the database; `fleetaudit history` or the report's index lists them")]
    NoScan(i64),
    #[error("the database holds no scan yet; run `fleetaudit scan` first")]
    Empty,
}

/// What [`render`] wrote.
#[derive(Debug, Clone)]
pub struct RenderSummary {
    pub scan_id: i64,
    /// The report's `index.html`.
    pub index: PathBuf,
    /// The scan's overview.
    pub overview: PathBuf,
    pub pages: usize,
    pub bytes: u64,
    /// The largest page written and its size.
    pub largest: (PathBuf, u64),
}

/// Renders scan `scan_id` (default: the newest), the index of scans and `latest/` into `out`.
pub async fn render(store: &Store, scan_id: Option<i64>, out: &Path) -> Result<RenderSummary, ReportError> {
    let scans = store.scans().await?;
    let newest = scans.first().ok_or(ReportError::Empty)?.id;
    let scan_id = scan_id.unwrap_or(newest);
    let scan = scans.iter().find(|s| s.id == scan_id).ok_or(ReportError::NoScan(scan_id))?.clone();

    let hosts = store.scan_hosts(scan_id).await?;
    let results = store.scan_results(scan_id).await?;
    let evidence = store.scan_evidence(scan_id).await?;
    let rules = store.rules(scan_id).await?;
    let changes = store.changes(scan_id, None, None).await?;
    let unaudited_now = store.newly_unaudited(scan_id).await?;
    let cluster_trend = store.cluster_trend(scan_id, TREND as i64).await?;

    let mut w = Writer::new();
    mkdir(out)?;
    let dir_name = format!("scan-{scan_id}");
    let tmp = out.join(format!(".{dir_name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    mkdir(&tmp)?;
    mkdir(&tmp.join("rules"))?;
    mkdir(&tmp.join("hosts"))?;

    let data = ScanData::new(&hosts, &results, &evidence, &rules);
    let cluster_findings = store.cluster_findings(scan_id).await?;
    let cluster_texts = store.cluster_rule_texts(scan_id).await?;
    let held = store.held_certificates(scan_id).await?;
    let cluster_data = clusters::ClusterData {
        findings: &cluster_findings,
        texts: &cluster_texts,
        held: &held,
        now: crate::model::unix_of_rfc3339(&scan.started_at).unwrap_or_else(crate::model::unix_now),
    };
    write_host_lists(&mut w, &tmp, &scan, &data)?;
    write_rule_pages(&mut w, &tmp, &scan, &data)?;
    matrix::write(&mut w, &tmp, scan.id, &data)?;
    clusters::write(&mut w, &tmp, scan.id, &hosts, &cluster_data)?;
    // The host pages walk the scan's file changes; the overview gets the first of them and their count.
    let file_changes = write_host_pages(&mut w, &tmp, &scan, &data, store).await?;
    let trend = (&changes[..], &unaudited_now[..], &file_changes, &cluster_trend[..]);
    write_overview(&mut w, &tmp, &scan, &scans, &data, trend, &cluster_data)?;
    // Every page of the scan is on disk before its directory is swapped in.
    w.finish()?;

    // Swap the fresh directory in: a reader sees the old scan pages or the new ones, never half of each.
    let dest = out.join(&dir_name);
    let old = out.join(format!(".{dir_name}.old-{}", std::process::id()));
    if dest.exists() {
        std::fs::rename(&dest, &old).map_err(io_err(&dest))?;
    }
    std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }

    let index = IndexPage { root: "", title: "Scans".into(), scans: scans.iter().map(ScanView::of).collect() };
    w.page(&out.join("index.html"), &index)?;
    mkdir(&out.join("latest"))?;
    let latest = LatestPage { root: "../", title: "Latest scan".into(), scan_id: newest };
    w.page(&out.join("latest").join("index.html"), &latest)?;

    remove_pruned(out, &scans)?;

    let largest = w.largest.clone();
    let largest = (largest.0.strip_prefix(&tmp).map(|p| dest.join(p)).unwrap_or(largest.0), largest.1);
    Ok(RenderSummary {
        scan_id,
        index: out.join("index.html"),
        overview: dest.join("index.html"),
        pages: w.pages,
        bytes: w.bytes,
        largest,
    })
}

/// Deletes the pages of scans that are no longer in the database (pruned by retention): `scan-ID` only.
fn remove_pruned(out: &Path, scans: &[ScanRow]) -> Result<(), ReportError> {
    let kept: std::collections::HashSet<i64> = scans.iter().map(|s| s.id).collect();
    for entry in std::fs::read_dir(out).map_err(io_err(out))? {
        let entry = entry.map_err(io_err(out))?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_prefix("scan-")).and_then(|n| n.parse::<i64>().ok()) else {
            continue;
        };
        if !kept.contains(&id) && entry.file_type().map_err(io_err(out))?.is_dir() {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// Replaces every character outside `[A-Za-z0-9._-]` with `_`, and a leading dot too (no `..`, no hidden file).
pub fn file_name(name: &str) -> String {
    let mut s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with('.') {
        s.insert(0, '_');
    }
    s
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io { path: path.to_path_buf(), source }
}

fn mkdir(path: &Path) -> Result<(), ReportError> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(io_err(path))
}

/// Renders the report's pages on the caller's thread and writes them to disk on threads beside it. Writing was
/// two thirds of a 10,000-host report's CPU (perf: the kernel copying 880 MB into the page cache), all on one
/// core while the other idled. [`Writer::finish`] waits for every page and says what failed.
struct Writer {
    pages: usize,
    bytes: u64,
    largest: (PathBuf, u64),
    /// Pages to write, to the threads; `None` once finished (pages are then written here).
    jobs: Option<std::sync::mpsc::SyncSender<(PathBuf, String)>>,
    /// Buffers written out, back for the next pages.
    spare: std::sync::mpsc::Receiver<String>,
    threads: Vec<std::thread::JoinHandle<Result<(), ReportError>>>,
}

impl Writer {
    /// Pages rendered but not written yet, at most (with one being written per thread): a bound on memory.
    const QUEUED: usize = 16;

    fn new() -> Writer {
        let writers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
        let (jobs, queue) = std::sync::mpsc::sync_channel::<(PathBuf, String)>(Self::QUEUED);
        let (back, spare) = std::sync::mpsc::channel();
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        let threads = (0..writers)
            .map(|_| {
                let (queue, back) = (queue.clone(), back.clone());
                std::thread::spawn(move || {
                    loop {
                        // The lock is held only to take the next page; a poisoned one means a writer panicked.
                        let job = queue.lock().map_err(|_| ReportError::Writer)?.recv();
                        let Ok((path, buf)) = job else { return Ok(()) };
                        std::fs::write(&path, buf.as_bytes()).map_err(io_err(&path))?;
                        let _ = back.send(buf);
                    }
                })
            })
            .collect();
        Writer { pages: 0, bytes: 0, largest: (PathBuf::new(), 0), jobs: Some(jobs), spare, threads }
    }

    fn page(&mut self, path: &Path, page: &impl Template) -> Result<(), ReportError> {
        let mut buf = self.spare.try_recv().unwrap_or_default();
        buf.clear();
        page.render_into(&mut buf)?;
        let len = buf.len() as u64;
        self.pages += 1;
        self.bytes += len;
        if len > self.largest.1 {
            self.largest = (path.to_path_buf(), len);
        }
        match &self.jobs {
            Some(jobs) => {
                if jobs.send((path.to_path_buf(), buf)).is_err() {
                    // Every writer stopped: the first one's error says why.
                    return self.finish().and(Err(ReportError::Writer));
                }
                Ok(())
            }
            None => std::fs::write(path, buf.as_bytes()).map_err(io_err(path)),
        }
    }

    /// Waits until every page sent is written; the first error a writer met, if any.
    fn finish(&mut self) -> Result<(), ReportError> {
        self.jobs = None;
        let mut first = Ok(());
        for t in self.threads.drain(..) {
            let done = t.join().unwrap_or(Err(ReportError::Writer));
            if first.is_ok() {
                first = done;
            }
        }
        first
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A render that failed half way: the writers still finish the pages they have, then stop.
        let _ = self.finish();
    }
}

/// A process of an evidence document.
#[derive(Debug, Clone, serde::Deserialize)]
struct Process {
    #[serde(default)]
    pid: serde_json::Value,
    #[serde(default)]
    user: String,
    #[serde(default)]
    cmdline: String,
}

/// A piece of a process line; `mark` pieces are the tested flag.
#[derive(Debug, Clone)]
pub struct Seg {
    pub text: String,
    pub mark: bool,
}

/// A process line, possibly shortened around the flag.
#[derive(Debug, Clone)]
pub struct Line {
    pub pid: String,
    pub user: String,
    pub segs: Vec<Seg>,
}

/// The flag a rule tests: the first `--flag` of its test description.
fn rule_flag(test: Option<&str>) -> Option<String> {
    let token = test?.split_whitespace().map(|t| t.trim_start_matches('(')).find(|t| t.starts_with("--"))?;
    let flag: String =
        token.chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
    (flag.len() > 2).then_some(flag)
}

fn floor(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Splits `cmdline` into plain and marked pieces (tokens `FLAG` or `FLAG=...`); with `excerpt`, keeps about
/// [`EXCERPT`] bytes around the first mark.
pub fn highlight(cmdline: &str, flag: Option<&str>, excerpt: bool) -> Vec<Seg> {
    let mut marks: Vec<(usize, usize)> = Vec::new();
    if let Some(flag) = flag {
        let mut pos = 0;
        for token in cmdline.split(' ') {
            if token == flag || token.strip_prefix(flag).is_some_and(|rest| rest.starts_with('=')) {
                marks.push((pos, pos + token.len()));
            }
            pos += token.len() + 1;
        }
    }
    let (mut from, mut to) = (0, cmdline.len());
    if excerpt && cmdline.len() > EXCERPT {
        match marks.first() {
            Some(&(s, e)) => {
                from = floor(cmdline, s.saturating_sub(EXCERPT / 2));
                to = floor(cmdline, (e + EXCERPT / 2).max(from + EXCERPT));
            }
            None => to = floor(cmdline, EXCERPT),
        }
    }
    let mut segs = Vec::new();
    if from > 0 {
        segs.push(Seg { text: "…".into(), mark: false });
    }
    let mut at = from;
    for (s, e) in marks {
        if s < at || e > to {
            continue;
        }
        if s > at {
            segs.push(Seg { text: cmdline[at..s].to_string(), mark: false });
        }
        segs.push(Seg { text: cmdline[s..e].to_string(), mark: true });
        at = e;
    }
    if at < to {
        segs.push(Seg { text: cmdline[at..to].to_string(), mark: false });
    }
    if to < cmdline.len() {
        segs.push(Seg { text: "…".into(), mark: false });
    }
    segs
}

fn pct_text(p: Option<f64>) -> String {
    match p {
        Some(p) => format!("{p:.1}\u{a0}%"),
        None => "–".into(),
    }
}

fn pages_of(n: usize) -> usize {
    n.div_ceil(PAGE).max(1)
}

/// `NAME.html`, `NAME-2.html`, ...
fn paged(name: &str, page: usize) -> String {
    if page <= 1 { format!("{name}.html") } else { format!("{name}-{page}.html") }
}

#[derive(Debug, Clone)]
pub struct PageLink {
    pub href: String,
    pub number: usize,
    pub current: bool,
}

fn page_links(name: &str, pages: usize, current: usize) -> Vec<PageLink> {
    if pages <= 1 {
        return Vec::new();
    }
    (1..=pages).map(|n| PageLink { href: paged(name, n), number: n, current: n == current }).collect()
}

/// Everything the pages of one scan need, indexed.
struct ScanData<'a> {
    hosts: &'a [ScanHost],
    /// Verdicts by result set, in rule order.
    sets: HashMap<i64, Vec<&'a ResultRow>>,
    evidence: HashMap<i64, Vec<Process>>,
    rules: &'a [RuleRow],
    flags: HashMap<&'a str, Option<String>>,
    counts: HashMap<i64, [i64; 4]>,
}

impl<'a> ScanData<'a> {
    fn new(
        hosts: &'a [ScanHost],
        results: &'a [ResultRow],
        evidence: &[(i64, String)],
        rules: &'a [RuleRow],
    ) -> ScanData<'a> {
        let mut sets: HashMap<i64, Vec<&ResultRow>> = HashMap::new();
        let mut counts: HashMap<i64, [i64; 4]> = HashMap::new();
        for r in results {
            sets.entry(r.set_id).or_default().push(r);
            let c = counts.entry(r.set_id).or_default();
            match r.status.as_str() {
                "pass" => c[0] += 1,
                "fail" => c[1] += 1,
                "error" => c[2] += 1,
                _ => c[3] += 1,
            }
        }
        let evidence = evidence
            .iter()
            .map(|(id, body)| {
                let procs: Vec<Process> = serde_json::from_str(body).unwrap_or_default();
                (*id, procs)
            })
            .collect();
        let flags = rules.iter().map(|r| (r.rule_id.as_str(), rule_flag(r.test.as_deref()))).collect();
        ScanData { hosts, sets, evidence, rules, flags, counts }
    }

    /// pass, fail, error, not applicable of a host.
    fn host_counts(&self, h: &ScanHost) -> [i64; 4] {
        match h.result_set_id {
            Some(id) => self.counts.get(&id).copied().unwrap_or_default(),
            None => [0, 0, self.rules.len() as i64, 0],
        }
    }

    fn lines(&self, evidence_id: Option<i64>, rule_id: &str, excerpt: bool) -> Vec<Line> {
        let flag = self.flags.get(rule_id).cloned().flatten();
        evidence_id
            .and_then(|id| self.evidence.get(&id))
            .map(|procs| {
                procs
                    .iter()
                    .map(|p| Line {
                        pid: match &p.pid {
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Null => String::new(),
                            v => v.to_string(),
                        },
                        user: p.user.clone(),
                        segs: highlight(&p.cmdline, flag.as_deref(), excerpt),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

// ---- view models and templates ----

#[derive(Debug, Clone)]
pub struct ScanView {
    pub id: i64,
    pub started_at: String,
    pub finished_at: String,
    pub status: String,
    pub hosts: String,
    pub unaudited: i64,
    pub pass: i64,
    pub fail: i64,
    pub error: i64,
    pub compliance: String,
}

impl ScanView {
    fn of(s: &ScanRow) -> ScanView {
        ScanView {
            id: s.id,
            started_at: s.started_at.clone(),
            finished_at: s.finished_at.clone().unwrap_or_else(|| "–".into()),
            status: s.status.clone(),
            hosts: if s.recorded == s.hosts_total {
                s.recorded.to_string()
            } else {
                format!("{} of {}", s.recorded, s.hosts_total)
            },
            unaudited: s.unaudited,
            pass: s.pass,
            fail: s.fail,
            error: s.error,
            compliance: pct_text(s.compliance()),
        }
    }
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    root: &'static str,
    title: String,
    scans: Vec<ScanView>,
}

#[derive(Template)]
#[template(path = "latest.html")]
struct LatestPage {
    root: &'static str,
    title: String,
    scan_id: i64,
}

#[derive(Debug, Clone)]
pub struct RuleSummary {
    pub file: String,
    pub rule_id: String,
    pub cis: String,
    pub title: String,
    pub severity: String,
    pub assessment: &'static str,
    pub pass: i64,
    pub fail: i64,
    pub error: i64,
    pub not_applicable: i64,
    pub compliance: String,
    pub bar: i64,
}

#[derive(Debug, Clone)]
pub struct ClusterRow {
    pub cluster: String,
    /// Its cluster page, when the scan judged cluster rules on it.
    pub file: String,
    pub hosts: usize,
    pub unaudited: usize,
    pub pass: i64,
    pub fail: i64,
    pub error: i64,
    pub compliance: String,
    /// Compliance in the last scans up to this one (the sparkline's `x,y` points, 0–100 px by 0–24 px).
    pub trend_points: String,
    /// In words: `62.0 % at scan 3 → 75.0 % now`, or `first scan`.
    pub trend: String,
}

#[derive(Debug, Clone)]
pub struct ProblemHost {
    pub file: String,
    pub name: String,
    pub cluster: String,
    pub kind: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ChangeView {
    pub file: String,
    pub host: String,
    pub rule_file: String,
    pub rule_id: String,
    pub previous_status: String,
    pub status: String,
}

#[derive(Debug, Clone)]
pub struct TrendPoint {
    pub x: String,
    pub y: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    root: &'static str,
    title: String,
    scan: ScanView,
    /// Compliance apart: the Automated checks, the Manual ones, and the share that could not be judged.
    shares: Vec<Share>,
    /// The failing rules to fix first: severity × failing hosts, highest first.
    fix_first: Vec<FixFirst>,
    fix_first_more: usize,
    /// The hosts with the most failures (then errors), worst first.
    worst_hosts: Vec<HostSummary>,
    rules: Vec<RuleSummary>,
    clusters: Vec<ClusterRow>,
    unaudited: Vec<ProblemHost>,
    unaudited_more: usize,
    trend_points: String,
    trend: Vec<TrendPoint>,
    previous: Option<i64>,
    newly_failing: Vec<ChangeView>,
    newly_failing_more: usize,
    newly_passing: Vec<ChangeView>,
    newly_passing_more: usize,
    newly_unreachable: Vec<ProblemHost>,
    other_changes: usize,
    file_changes: Vec<FileChangeView>,
    file_changes_more: usize,
    trend_len: usize,
    /// The cluster rules (`(rule_id, heading, title)`) and each cluster's verdicts of them.
    cluster_rule_heads: Vec<(String, String, String)>,
    cluster_rules: Vec<clusters::ClusterRulesRow>,
    expiring: Vec<clusters::CertView>,
}

/// One line of the overview's compliance breakdown.
#[derive(Debug, Clone)]
pub struct Share {
    pub label: &'static str,
    pub value: String,
    pub detail: String,
}

/// Compliance of the Automated checks and of the Manual ones, each over the verdicts that were judged (pass or
/// fail), and how many verdicts could not be judged at all, which the headline compliance counts as not passing.
fn shares(rules: &[RuleRow]) -> Vec<Share> {
    let sum = |manual: bool| {
        rules
            .iter()
            .filter(|r| (r.assessment.as_deref() == Some("manual")) == manual)
            .fold([0i64; 3], |a, r| [a[0] + r.pass, a[1] + r.fail, a[2] + r.error])
    };
    let judged = |label: &'static str, [pass, fail, error]: [i64; 3]| Share {
        label,
        value: pct_text(crate::model::pct(pass, fail, 0)),
        detail: format!("{pass} pass of {} judged; {error} more could not be judged", pass + fail),
    };
    let (automated, manual) = (sum(false), sum(true));
    let errors = automated[2] + manual[2];
    let all: i64 = automated.iter().chain(&manual).sum();
    vec![
        judged("Automated checks", automated),
        judged("Manual checks", manual),
        Share {
            label: "Could not judge",
            value: pct_text(crate::model::pct(errors, all - errors, 0)),
            detail: format!(
                "{errors} of the {all} verdicts of rules that apply: a host not audited, or evidence that cannot decide"
            ),
        },
    ]
}

/// A failing rule on the overview's "fix first" list.
#[derive(Debug, Clone)]
pub struct FixFirst {
    pub file: String,
    pub rule_id: String,
    pub title: String,
    pub severity: String,
    pub fail: i64,
    /// Severity weight × failing hosts: what the list is ranked by.
    pub score: i64,
    /// The remediation's first line.
    pub remediation: String,
}

/// Rows the overview's "fix first" and "worst hosts" lists show.
const TOP: usize = 10;

/// How much a failure of this severity weighs in the "fix first" ranking ([`Severity::weight`]; 1 for a
/// severity the pack does not know).
fn severity_weight(severity: &str) -> i64 {
    Severity::parse(severity).map_or(1, Severity::weight)
}

/// The first non-empty line of a text, at most 200 characters.
fn first_line(text: Option<&str>) -> String {
    let line = text.unwrap_or_default().lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    crate::ps::truncate(line, 200)
}

fn truncate<T>(mut v: Vec<T>) -> (Vec<T>, usize) {
    let more = v.len().saturating_sub(CHANGES_SHOWN);
    v.truncate(CHANGES_SHOWN);
    (v, more)
}

/// The fleet-wide file changes the overview lists: the first [`CHANGES_SHOWN`] and how many in all.
struct FileChanges {
    first: Vec<crate::store::FileChange>,
    total: usize,
}

/// What changed since the previous scan: verdicts, newly unaudited hosts, files, and each cluster's trend.
type Since<'a> = (&'a [Change], &'a [(String, String, String)], &'a FileChanges, &'a [crate::store::ClusterCounts]);

fn write_overview(
    w: &mut Writer,
    dir: &Path,
    scan: &ScanRow,
    scans: &[ScanRow],
    data: &ScanData<'_>,
    (changes, newly_unaudited, file_changes, cluster_trend): Since<'_>,
    cluster_data: &clusters::ClusterData<'_>,
) -> Result<(), ReportError> {
    let rules = data
        .rules
        .iter()
        .map(|r| RuleSummary {
            file: format!("rules/{}.html", file_name(&r.rule_id)),
            rule_id: r.rule_id.clone(),
            cis: r.cis.clone(),
            title: r.title.clone(),
            severity: r.severity.clone(),
            assessment: r.assessment_label(),
            pass: r.pass,
            fail: r.fail,
            error: r.error,
            not_applicable: r.not_applicable,
            compliance: pct_text(r.compliance_pct),
            bar: r.compliance_pct.map(|p| p.round() as i64).unwrap_or(0),
        })
        .collect();

    let mut fix_first: Vec<FixFirst> = data
        .rules
        .iter()
        .filter(|r| r.fail > 0)
        .map(|r| FixFirst {
            file: format!("rules/{}.html", file_name(&r.rule_id)),
            rule_id: r.rule_id.clone(),
            title: r.title.clone(),
            severity: r.severity.clone(),
            fail: r.fail,
            score: severity_weight(&r.severity) * r.fail,
            remediation: first_line(r.remediation.as_deref()),
        })
        .collect();
    fix_first.sort_by(|a, b| (b.score, b.fail, &a.rule_id).cmp(&(a.score, a.fail, &b.rule_id)));
    let fix_first_more = fix_first.len().saturating_sub(TOP);
    fix_first.truncate(TOP);
    let mut worst: Vec<(&ScanHost, [i64; 4])> =
        data.hosts.iter().filter(|h| h.outcome == "audited").map(|h| (h, data.host_counts(h))).collect();
    worst.retain(|(_, c)| c[1] + c[2] > 0);
    worst.sort_by(|(a, x), (b, y)| (y[1], y[2], &a.name).cmp(&(x[1], x[2], &b.name)));
    let worst_hosts = worst.into_iter().take(TOP).map(|(h, c)| HostSummary::of(h, c)).collect();

    let mut clusters: BTreeMap<String, ClusterRow> = BTreeMap::new();
    for h in data.hosts {
        let name = h.cluster.clone().unwrap_or_else(|| "(none)".into());
        let row = clusters.entry(name.clone()).or_insert_with(|| ClusterRow {
            file: match cluster_data.findings.iter().any(|f| f.cluster == name) {
                true => format!("clusters/{}.html", file_name(&name)),
                false => String::new(),
            },
            cluster: name,
            hosts: 0,
            unaudited: 0,
            pass: 0,
            fail: 0,
            error: 0,
            compliance: String::new(),
            trend_points: String::new(),
            trend: String::new(),
        });
        let c = data.host_counts(h);
        row.hosts += 1;
        row.unaudited += usize::from(h.outcome != "audited");
        row.pass += c[0];
        row.fail += c[1];
        row.error += c[2];
    }
    // Per cluster: compliance in each of the last TREND scans that had hosts of it.
    let mut past: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
    for t in cluster_trend {
        if let Some(p) = crate::model::pct(t.pass, t.fail, t.error) {
            past.entry(t.cluster.clone().unwrap_or_else(|| "(none)".into())).or_default().push((t.scan_id, p));
        }
    }
    let mut clusters: Vec<ClusterRow> = clusters
        .into_values()
        .map(|mut c| {
            let now = crate::model::pct(c.pass, c.fail, c.error);
            c.compliance = pct_text(now);
            let points = past.remove(&c.cluster).unwrap_or_default();
            let step = if points.len() > 1 { 100.0 / (points.len() - 1) as f64 } else { 0.0 };
            if points.len() > 1 {
                for (i, (_, p)) in points.iter().enumerate() {
                    let _ = write!(c.trend_points, "{:.1},{:.1} ", step * i as f64, 23.0 - p * 0.22);
                }
            }
            c.trend = match (points.first(), now) {
                (Some((first, was)), Some(now)) if points.len() > 1 => {
                    format!("{} at scan {first} → {} now", pct_text(Some(*was)), pct_text(Some(now)))
                }
                _ => "no earlier scan".into(),
            };
            c
        })
        .collect();
    // Worst first: the lowest compliance, then the most failures; clusters with nothing judged last.
    clusters.sort_by(|a, b| {
        let key = |c: &ClusterRow| crate::model::pct(c.pass, c.fail, c.error).unwrap_or(f64::INFINITY);
        key(a).total_cmp(&key(b)).then(b.fail.cmp(&a.fail)).then(a.cluster.cmp(&b.cluster))
    });

    let problem = |name: &str, cluster: Option<&str>, kind: &str, message: &str| ProblemHost {
        file: format!("hosts/{}.html", file_name(name)),
        name: name.to_string(),
        cluster: cluster.unwrap_or("–").to_string(),
        kind: kind.to_string(),
        message: message.to_string(),
    };
    let unaudited: Vec<ProblemHost> = data
        .hosts
        .iter()
        .filter(|h| h.outcome != "audited")
        .map(|h| {
            problem(
                &h.name,
                h.cluster.as_deref(),
                h.error_kind.as_deref().unwrap_or(""),
                h.error_message.as_deref().unwrap_or(""),
            )
        })
        .collect();
    let (unaudited, unaudited_more) = truncate(unaudited);

    // The trend: the last TREND scans up to this one, oldest first.
    let mut past: Vec<&ScanRow> = scans.iter().filter(|s| s.id <= scan.id).take(TREND).collect();
    past.reverse();
    let step = if past.len() > 1 { 560.0 / (past.len() - 1) as f64 } else { 0.0 };
    let trend: Vec<TrendPoint> = past
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let p = s.compliance()?;
            Some(TrendPoint {
                x: format!("{:.1}", 20.0 + step * i as f64),
                y: format!("{:.1}", 110.0 - p),
                label: format!("scan {}: {}", s.id, pct_text(Some(p))),
            })
        })
        .collect();
    let mut trend_points = String::new();
    for t in &trend {
        let _ = write!(trend_points, "{},{} ", t.x, t.y);
    }

    let view = |c: &Change| ChangeView {
        file: format!("hosts/{}.html", file_name(&c.host)),
        host: c.host.clone(),
        rule_file: format!("rules/{}.html", file_name(&c.rule_id)),
        rule_id: c.rule_id.clone(),
        previous_status: c.previous_status.clone(),
        status: c.status.clone(),
    };
    let failing: Vec<ChangeView> = changes.iter().filter(|c| c.status == "fail").map(view).collect();
    let passing: Vec<ChangeView> =
        changes.iter().filter(|c| c.status == "pass" && c.previous_status != "not_applicable").map(view).collect();
    let other_changes = changes.len() - failing.len() - passing.len();
    let (newly_failing, newly_failing_more) = truncate(failing);
    let (newly_passing, newly_passing_more) = truncate(passing);
    let cluster_of: HashMap<&str, Option<&str>> =
        data.hosts.iter().map(|h| (h.name.as_str(), h.cluster.as_deref())).collect();
    let newly_unreachable = newly_unaudited
        .iter()
        .map(|(name, kind, message)| problem(name, cluster_of.get(name.as_str()).copied().flatten(), kind, message))
        .collect();

    let page = OverviewPage {
        root: "../",
        title: format!("Fleet overview, scan {}", scan.id),
        scan: ScanView::of(scan),
        shares: shares(data.rules),
        fix_first,
        fix_first_more,
        worst_hosts,
        rules,
        clusters,
        unaudited,
        unaudited_more,
        trend_points,
        trend,
        trend_len: TREND,
        previous: scans.iter().find(|s| s.id < scan.id).map(|s| s.id),
        newly_failing,
        newly_failing_more,
        newly_passing,
        newly_passing_more,
        newly_unreachable,
        other_changes,
        file_changes: file_changes.first.iter().map(FileChangeView::of).collect(),
        file_changes_more: file_changes.total - file_changes.first.len(),
        cluster_rule_heads: clusters::rule_heads(cluster_data),
        cluster_rules: clusters::overview_rows(cluster_data),
        expiring: clusters::soonest(cluster_data),
    };
    w.page(&dir.join("index.html"), &page)
}

#[derive(Debug, Clone)]
pub struct HostSummary {
    pub file: String,
    pub name: String,
    pub cluster: String,
    pub address: String,
    pub outcome: String,
    pub error: String,
    pub pass: i64,
    pub fail: i64,
    pub errors: i64,
    pub not_applicable: i64,
}

impl HostSummary {
    /// A host's row in a host list, from its verdict counts (pass, fail, error, not applicable).
    fn of(h: &ScanHost, c: [i64; 4]) -> HostSummary {
        HostSummary {
            file: format!("hosts/{}.html", file_name(&h.name)),
            name: h.name.clone(),
            cluster: h.cluster.clone().unwrap_or_else(|| "–".into()),
            address: h.address.clone(),
            outcome: h.outcome.clone(),
            error: match (&h.error_kind, &h.error_message) {
                (Some(k), Some(m)) => format!("{k}: {m}"),
                _ => String::new(),
            },
            pass: c[0],
            fail: c[1],
            errors: c[2],
            not_applicable: c[3],
        }
    }
}

#[derive(Template)]
#[template(path = "hosts.html")]
struct HostsPage {
    root: &'static str,
    title: String,
    scan_id: i64,
    hosts: Vec<HostSummary>,
    pages: Vec<PageLink>,
}

fn write_host_lists(w: &mut Writer, dir: &Path, scan: &ScanRow, data: &ScanData<'_>) -> Result<(), ReportError> {
    let pages = pages_of(data.hosts.len());
    for page in 1..=pages {
        let hosts = data.hosts.iter().skip((page - 1) * PAGE).take(PAGE);
        let hosts = hosts.map(|h| HostSummary::of(h, data.host_counts(h))).collect();
        let p = HostsPage {
            root: "../",
            title: format!("Hosts of scan {}", scan.id),
            scan_id: scan.id,
            hosts,
            pages: page_links("hosts", pages, page),
        };
        w.page(&dir.join(paged("hosts", page)), &p)?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct RuleHost {
    pub file: String,
    pub name: String,
    pub cluster: String,
    pub status: String,
    pub reason: String,
    pub lines: Vec<Line>,
}

/// What a block of a rule text is, for the templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProseKind {
    Para,
    Steps,
    Bullets,
    Code,
}

/// A block of a rule text as the templates draw it ([`crate::rules::prose`]): a paragraph's lines or a list's
/// items as spans, or a code block's text.
#[derive(Debug, Clone)]
pub struct Prose {
    pub kind: ProseKind,
    pub lines: Vec<Vec<Span>>,
    pub code: String,
}

/// A stored rule text's blocks; none when the rule set stored no text.
fn prose(text: Option<&str>) -> Vec<Prose> {
    let block = |kind, lines| Prose { kind, lines, code: String::new() };
    prose::parse(text.unwrap_or_default())
        .into_iter()
        .map(|b| match b {
            Block::Para(lines) => block(ProseKind::Para, lines),
            Block::List { ordered: true, items } => block(ProseKind::Steps, items),
            Block::List { ordered: false, items } => block(ProseKind::Bullets, items),
            Block::Code(code) => Prose { kind: ProseKind::Code, lines: Vec::new(), code },
        })
        .collect()
}

#[derive(Template)]
#[template(path = "rule.html")]
struct RulePage<'a> {
    root: &'static str,
    title: String,
    scan_id: i64,
    rule: &'a RuleRow,
    rationale: Vec<Prose>,
    remediation: Vec<Prose>,
    compliance: String,
    flag: String,
    hosts: Vec<RuleHost>,
    total: usize,
    pages: Vec<PageLink>,
}

fn write_rule_pages(w: &mut Writer, dir: &Path, scan: &ScanRow, data: &ScanData<'_>) -> Result<(), ReportError> {
    // Per rule: the hosts that fail it or could not be judged, as references (a verdict, or `None` for a host
    // not audited). Only one page's rows are built at a time: materialising every failing host's highlighted
    // process lines for every rule at once cost hundreds of MB at 10,000 hosts.
    let mut by_rule: HashMap<&str, Vec<(&ScanHost, Option<&ResultRow>)>> = HashMap::new();
    for h in data.hosts {
        match h.result_set_id {
            Some(set) => {
                for r in data.sets.get(&set).into_iter().flatten() {
                    if r.status == "fail" || r.status == "error" {
                        by_rule.entry(r.rule_id.as_str()).or_default().push((h, Some(r)));
                    }
                }
            }
            None => {
                data.rules.iter().for_each(|rule| by_rule.entry(rule.rule_id.as_str()).or_default().push((h, None)))
            }
        }
    }
    let row = |(h, verdict): (&ScanHost, Option<&ResultRow>)| {
        let (status, reason, lines) = match verdict {
            Some(r) => (r.status.clone(), r.reason.clone(), data.lines(r.evidence_id, &r.rule_id, true)),
            None => ("error".to_owned(), h.error_reason(), Vec::new()),
        };
        RuleHost {
            file: format!("../hosts/{}.html", file_name(&h.name)),
            name: h.name.clone(),
            cluster: h.cluster.clone().unwrap_or_else(|| "–".into()),
            status,
            reason,
            lines,
        }
    };
    let failed = |v: &Option<&ResultRow>| v.is_some_and(|r| r.status == "fail");
    for rule in data.rules {
        let mut hosts = by_rule.remove(rule.rule_id.as_str()).unwrap_or_default();
        // Failures first, then hosts that could not be judged; by name within each.
        hosts.sort_by(|a, b| (!failed(&a.1), &a.0.name).cmp(&(!failed(&b.1), &b.0.name)));
        let total = hosts.len();
        let name = file_name(&rule.rule_id);
        let pages = pages_of(total);
        let mut rest = hosts.into_iter();
        for page in 1..=pages {
            let chunk: Vec<RuleHost> = rest.by_ref().take(PAGE).map(row).collect();
            let p = RulePage {
                root: "../../",
                title: format!("{} ({})", rule.title, rule.rule_id),
                scan_id: scan.id,
                rule,
                rationale: prose(rule.rationale.as_deref()),
                remediation: prose(rule.remediation.as_deref()),
                compliance: pct_text(rule.compliance_pct),
                flag: data.flags.get(rule.rule_id.as_str()).cloned().flatten().unwrap_or_default(),
                hosts: chunk,
                total,
                pages: page_links(&name, pages, page),
            };
            w.page(&dir.join("rules").join(paged(&name, page)), &p)?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Verdict {
    pub rule_file: String,
    pub rule_id: String,
    pub title: String,
    pub severity: String,
    pub assessment: &'static str,
    pub status: String,
    pub reason: String,
    /// Items of `reason` left out of a collapsed row (see [`brief`]); 0 where it is shown whole.
    pub cut: usize,
    pub lines: Vec<Line>,
}

/// Longest reason a collapsed row (a pass, a rule that does not apply) shows whole. A file rule's pass lists
/// every file it checked (a kubeadm control plane's PKI rules: 30 files, 3.5 KB a row), which the host page's
/// "Files read" table shows anyway; cutting them took 5 KB off a simulated control plane's 68 KB page.
const BRIEF_REASON: usize = 320;

/// `reason` cut after the `; `-separated items that fit in [`BRIEF_REASON`] bytes (one at least), and how many
/// items were left out.
fn brief(reason: &str) -> (String, usize) {
    if reason.len() <= BRIEF_REASON {
        return (reason.to_owned(), 0);
    }
    let items: Vec<&str> = reason.split("; ").collect();
    let mut kept = 1;
    let mut len = items[0].len();
    while kept < items.len() && len + 2 + items[kept].len() <= BRIEF_REASON {
        len += 2 + items[kept].len();
        kept += 1;
    }
    (items[..kept].join("; "), items.len() - kept)
}

#[derive(Debug, Clone)]
pub struct ProcessView {
    pub pid: String,
    pub user: String,
    pub cmdline: String,
}

/// The verdicts of one result set; rendered once and shared by every host page that shows the set.
#[derive(Template)]
#[template(path = "verdicts.html")]
struct VerdictsFragment {
    /// Failures and errors by severity, most severe first: (severity, its verdicts, failures before errors).
    attention: Vec<(String, Vec<Verdict>)>,
    failed: usize,
    errors: usize,
    /// Passes and rules that do not apply: (heading, anchor, verdicts), shown collapsed.
    collapsed: [(&'static str, &'static str, Vec<Verdict>); 2],
    processes: Vec<ProcessView>,
}

impl VerdictsFragment {
    /// A host's verdicts (in rule-id order) as its page shows them: what needs attention first, grouped by
    /// severity, each at full width; passes and rules that do not apply collapsed below.
    fn of(verdicts: Vec<Verdict>, processes: Vec<ProcessView>) -> VerdictsFragment {
        let (mut failed, mut errors) = (0, 0);
        let (mut passed, mut not_applicable) = (Vec::new(), Vec::new());
        let mut attention: Vec<(String, Vec<Verdict>)> = Vec::new();
        for v in verdicts {
            match v.status.as_str() {
                "pass" => passed.push(v),
                "not_applicable" => not_applicable.push(v),
                status => {
                    if status == "fail" {
                        failed += 1;
                    } else {
                        errors += 1;
                    }
                    match attention.iter_mut().find(|(s, _)| *s == v.severity) {
                        Some((_, group)) => group.push(v),
                        None => attention.push((v.severity.clone(), vec![v])),
                    }
                }
            }
        }
        // Most severe first; a severity the pack does not know after the known ones.
        attention.sort_by_key(|(severity, _)| std::cmp::Reverse(Severity::parse(severity)));
        for (_, group) in &mut attention {
            // Stable: rule-id order within failures and within errors.
            group.sort_by_key(|v| v.status != "fail");
        }
        let collapsed = [("Passed", "passed", passed), ("Not applicable", "not-applicable", not_applicable)];
        VerdictsFragment { attention, failed, errors, collapsed, processes }
    }
}

#[derive(Template)]
#[template(path = "host.html")]
struct HostPage<'a> {
    root: &'static str,
    title: String,
    scan_id: i64,
    host: &'a ScanHost,
    counts: [i64; 4],
    verdicts: &'a str,
    /// The "Files read" table; `None` when the scan has no files for the host.
    files: Option<&'a str>,
    file_changes: Vec<FileChangeView>,
    file_changes_more: usize,
}

async fn write_host_pages(
    w: &mut Writer,
    dir: &Path,
    scan: &ScanRow,
    data: &ScanData<'_>,
    store: &Store,
) -> Result<FileChanges, ReportError> {
    let meta: HashMap<&str, &RuleRow> = data.rules.iter().map(|r| (r.rule_id.as_str(), r)).collect();
    // A result set's verdicts are rendered once and kept only while hosts still to come share it: hosts with a
    // set of their own (pids differ between real hosts) must not pile up 10,000 fragments in memory.
    let mut uses: HashMap<i64, usize> = HashMap::new();
    for set in data.hosts.iter().filter_map(|h| h.result_set_id) {
        *uses.entry(set).or_default() += 1;
    }
    let mut fragments: HashMap<i64, std::rc::Rc<str>> = HashMap::new();
    // The same for file sets: the store's pages are read as the hosts (in name order) come, a set's table
    // rendered once while hosts still to come share it.
    let mut file_uses: HashMap<i64, usize> = HashMap::new();
    for set in data.hosts.iter().filter_map(|h| h.file_set_id) {
        *file_uses.entry(set).or_default() += 1;
    }
    let mut file_fragments: HashMap<i64, std::rc::Rc<str>> = HashMap::new();
    let mut sets = SetCursor::new(store, scan.id);
    let mut changes = ChangeCursor::new(store, scan.id, CHANGES_SHOWN);
    for h in data.hosts {
        let verdicts: Option<std::rc::Rc<str>> = match h.result_set_id {
            Some(set) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = fragments.entry(set) {
                    let mut processes = Vec::new();
                    let mut seen = std::collections::HashSet::new();
                    let verdicts = data
                        .sets
                        .get(&set)
                        .into_iter()
                        .flatten()
                        .map(|r| {
                            if let Some(id) = r.evidence_id
                                && seen.insert(id)
                            {
                                for p in data.evidence.get(&id).into_iter().flatten() {
                                    let pid = match &p.pid {
                                        serde_json::Value::String(s) => s.clone(),
                                        v => v.to_string(),
                                    };
                                    if !processes.iter().any(|q: &ProcessView| q.pid == pid && q.cmdline == p.cmdline) {
                                        processes.push(ProcessView {
                                            pid,
                                            user: p.user.clone(),
                                            cmdline: p.cmdline.clone(),
                                        });
                                    }
                                }
                            }
                            let m = meta.get(r.rule_id.as_str());
                            // What needs attention is shown whole, with its process line; a collapsed row
                            // briefly.
                            let attention = r.status == "fail" || r.status == "error";
                            let (reason, cut) = if attention { (r.reason.clone(), 0) } else { brief(&r.reason) };
                            Verdict {
                                rule_file: format!("../rules/{}.html", file_name(&r.rule_id)),
                                rule_id: r.rule_id.clone(),
                                title: m.map(|m| m.title.clone()).unwrap_or_default(),
                                severity: m.map(|m| m.severity.clone()).unwrap_or_default(),
                                assessment: m.map_or("", |m| m.assessment_label()),
                                status: r.status.clone(),
                                reason,
                                cut,
                                // The process lines are listed in full below the table; a failure or an error
                                // repeats the line with the tested flag marked (a pass's reason quotes the flag).
                                lines: if attention { data.lines(r.evidence_id, &r.rule_id, true) } else { Vec::new() },
                            }
                        })
                        .collect();
                    slot.insert(VerdictsFragment::of(verdicts, processes).render()?.into());
                }
                let fragment = fragments[&set].clone();
                if let Some(left) = uses.get_mut(&set) {
                    *left -= 1;
                    if *left == 0 {
                        fragments.remove(&set);
                    }
                }
                Some(fragment)
            }
            None => None,
        };
        let verdicts = verdicts.as_deref().unwrap_or("");
        let files: Option<std::rc::Rc<str>> = match h.file_set_id {
            Some(set) => {
                let records = sets.files(&h.name).await?;
                if let std::collections::hash_map::Entry::Vacant(slot) = file_fragments.entry(set) {
                    slot.insert(FilesFragment::of(records.unwrap_or_default()).render()?.into());
                }
                let fragment = file_fragments[&set].clone();
                if let Some(left) = file_uses.get_mut(&set) {
                    *left -= 1;
                    if *left == 0 {
                        file_fragments.remove(&set);
                    }
                }
                Some(fragment)
            }
            None => None,
        };
        let (host_changes, file_changes_more) = match h.file_set_id {
            Some(_) => changes.of_host(&h.name, CHANGES_SHOWN).await?,
            None => (Vec::new(), 0),
        };
        let p = HostPage {
            root: "../../",
            title: format!("Host {}", h.name),
            scan_id: scan.id,
            host: h,
            counts: data.host_counts(h),
            verdicts,
            files: files.as_deref(),
            file_changes: host_changes.iter().map(FileChangeView::of).collect(),
            file_changes_more,
        };
        w.page(&dir.join("hosts").join(format!("{}.html", file_name(&h.name))), &p)?;
    }
    changes.finish().await?;
    Ok(FileChanges { first: std::mem::take(&mut changes.first), total: changes.total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_segs(segs: &[Seg]) -> String {
        segs.iter().map(|s| if s.mark { format!("[{}]", s.text) } else { s.text.clone() }).collect()
    }

    #[test]
    fn the_flag_token_is_marked() {
        let segs = highlight(
            "kube-apiserver --a=1 --anonymous-auth=false --anonymous-authx=1",
            Some("--anonymous-auth"),
            true,
        );
        assert_eq!(render_segs(&segs), "kube-apiserver --a=1 [--anonymous-auth=false] --anonymous-authx=1");
        let segs = highlight("kubelet --flag", Some("--flag"), true);
        assert_eq!(render_segs(&segs), "kubelet [--flag]");
        assert_eq!(render_segs(&highlight("x --y", None, true)), "x --y");
    }

    #[test]
    fn long_lines_are_cut_around_the_flag() {
        let line = format!("{} --target=1 {}", "a".repeat(2000), "é".repeat(2000));
        let s = render_segs(&highlight(&line, Some("--target"), true));
        assert!(s.starts_with('…') && s.ends_with('…') && s.contains("[--target=1]"), "{s}");
        assert!(s.len() < 1000);
    }

    #[test]
    fn a_page_that_cannot_be_written_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let page = LatestPage { root: "", title: "Latest scan".into(), scan_id: 1 };
        let mut w = Writer::new();
        w.page(&dir.path().join("fine.html"), &page).unwrap();
        let missing = dir.path().join("no-such-dir").join("index.html");
        // Written by a thread: the error comes at the latest from `finish`, and names the page.
        let sent = w.page(&missing, &page);
        let err = sent.and_then(|()| w.finish()).unwrap_err();
        assert!(matches!(&err, ReportError::Io { path, .. } if *path == missing), "{err}");
        assert!(err.to_string().contains("no-such-dir/index.html"), "{err}");
        assert!(dir.path().join("fine.html").exists());
        assert_eq!(w.pages, 2);
    }

    #[test]
    fn collapsed_reasons_are_cut_between_items() {
        assert_eq!(brief("kubelet (pid 9): --x = 1"), ("kubelet (pid 9): --x = 1".to_owned(), 0));
        let item = format!("-rw------- root:root /etc/kubernetes/pki/{}.key", "k".repeat(40));
        let reason = format!("kube-apiserver (pid 1): {}", vec![item.as_str(); 20].join("; "));
        let (shown, cut) = brief(&reason);
        assert!(shown.len() <= BRIEF_REASON && shown.ends_with(".key"), "{shown}");
        assert_eq!(shown.split("; ").count() + cut, 20);
        assert!(cut > 0);
        // One item longer than the limit is kept whole: never cut inside an item.
        let long = "x".repeat(BRIEF_REASON * 2);
        assert_eq!(brief(&format!("{long}; y")), (long, 1));
    }

    #[test]
    fn file_names_are_sanitized() {
        assert_eq!(file_name("prod-cp-1.example_x"), "prod-cp-1.example_x");
        assert_eq!(file_name("../etc/passwd"), "_.._etc_passwd");
        assert_eq!(file_name("a b/<c>"), "a_b__c_");
        assert_eq!(file_name(""), "_");
    }

    #[test]
    fn the_flag_comes_from_the_test_text() {
        assert_eq!(rule_flag(Some("--enable-admission-plugins has X")).as_deref(), Some("--enable-admission-plugins"));
        assert_eq!(rule_flag(Some("(--a eq 1)")).as_deref(), Some("--a"));
        assert_eq!(
            rule_flag(Some("--kubelet-certificate-authority set")).as_deref(),
            Some("--kubelet-certificate-authority")
        );
        assert_eq!(rule_flag(None), None);
    }
}
