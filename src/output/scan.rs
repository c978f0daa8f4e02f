//! One stored scan as data for programs: the JSON document of `fleetaudit scan --format json`, and the verdicts
//! the JUnit ([`super::junit`]) and SARIF ([`super::sarif`]) writers turn into test cases and results.
//!
//! Owns: assembling a scan's hosts × rules from the store's reads (shared with the HTML report) and the JSON
//! document's shape (format version 2, described exactly by
//! schemas/scan-v2.schema.json: each rule's texts and each evidence document once, and each distinct verdict once
//! with the names of the hosts that got it, so a (host, rule) pair costs a host name, not a rule's texts, a reason
//! and a command line).
//! Must not touch: SSH, rule evaluation, SQL of its own. It reads only what the store holds, so these outputs say
//! exactly what the database says, and memory holds each distinct result set, evidence document and file set
//! (without contents, through `Store::scan_files`) once however many hosts share them.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::Summary;
use crate::model::Status;
use crate::report::ReportError;
use crate::store::{ClusterFinding, FileChange, FileRecord, Store};
use crate::store::{ResultRow, RuleRow, ScanHost, ScanMeta};

/// Hosts (and file changes) read per page from the store.
const FILES_PAGE: u32 = 500;

/// A scan read back from the store, indexed for per-host iteration.
pub struct ScanResults {
    pub scan: ScanMeta,
    /// In host-name order.
    pub hosts: Vec<ScanHost>,
    /// The verdicts of each result set, in rule-id order.
    sets: HashMap<i64, Vec<ResultRow>>,
    evidence: HashMap<i64, serde_json::Value>,
    /// The scan's rule set, in rule-id order.
    rules: Vec<RuleRow>,
    rule_index: HashMap<String, usize>,
    /// The files of each file set the scan's hosts point at, without contents, each set once and each distinct
    /// observation once (hosts' sets differ in a few paths: a certificate, a manifest with the host's address).
    file_sets: HashMap<i64, Vec<Arc<FileRecord>>>,
    /// Each host's file changes since its previous scan with files, in path order.
    file_changes: HashMap<String, Vec<FileChange>>,
    /// The cluster verdicts, by cluster then rule.
    pub clusters: Vec<ClusterFinding>,
}

/// One (host, rule) verdict, as the `findings` view has it: a host that could not be audited has an `error`
/// verdict for every rule, whose reason is `<error_kind>: <error_message>`.
pub struct Verdict<'a> {
    pub host: &'a ScanHost,
    pub rule_id: &'a str,
    /// The rule's stored texts (absent only for a rule-set version stored without them).
    pub rule: Option<&'a RuleRow>,
    pub status: Status,
    pub reason: Cow<'a, str>,
    /// The stored (redacted) evidence: a JSON array of `{pid, user, cmdline}`.
    pub evidence: Option<&'a serde_json::Value>,
}

impl Verdict<'_> {
    /// Whether CIS assesses the rule manually.
    pub fn is_manual(&self) -> bool {
        self.rule.and_then(|r| r.assessment.as_deref()) == Some("manual")
    }
}

impl ScanResults {
    /// Reads scan `scan_id` from the store.
    pub async fn load(store: &Store, scan_id: i64) -> Result<ScanResults, ReportError> {
        let scan = store.scan(scan_id).await?.ok_or(ReportError::NoScan(scan_id))?;
        let hosts = store.scan_hosts(scan_id).await?;
        let mut sets: HashMap<i64, Vec<ResultRow>> = HashMap::new();
        for r in store.scan_results(scan_id).await? {
            sets.entry(r.set_id).or_default().push(r);
        }
        // Stored evidence is valid JSON (a CHECK constraint says so); anything else is shown as the text it is.
        let evidence = store
            .scan_evidence(scan_id)
            .await?
            .into_iter()
            .map(|(id, body)| {
                let value = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
                (id, value)
            })
            .collect();
        let mut rules = store.rules(scan_id).await?;
        rules.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
        let rule_index = rules.iter().enumerate().map(|(i, r)| (r.rule_id.clone(), i)).collect();

        // Files through the store's paged reads: a set shared by many hosts is kept once.
        let mut file_sets: HashMap<i64, Vec<Arc<FileRecord>>> = HashMap::new();
        let mut observations: HashSet<Shared> = HashSet::new();
        let mut after: Option<String> = None;
        loop {
            let page = store.scan_files(scan_id, after.as_deref(), FILES_PAGE, false).await?;
            let Some((last, _)) = page.hosts.last() else { break };
            after = Some(last.clone());
            let full = page.hosts.len() == FILES_PAGE as usize;
            for (id, files) in page.sets {
                if let std::collections::hash_map::Entry::Vacant(slot) = file_sets.entry(id) {
                    let files = files.into_iter().map(|f| {
                        let f = Shared(Arc::new(f));
                        match observations.get(&f) {
                            Some(known) => known.0.clone(),
                            None => {
                                observations.insert(f.clone());
                                f.0
                            }
                        }
                    });
                    slot.insert(files.collect());
                }
            }
            if !full {
                break;
            }
        }
        let mut file_changes: HashMap<String, Vec<FileChange>> = HashMap::new();
        let mut last: Option<FileChange> = None;
        loop {
            let page = store.file_changes(scan_id, None, last.as_ref(), FILES_PAGE).await?;
            let full = page.len() == FILES_PAGE as usize;
            last = page.last().cloned();
            for c in page {
                file_changes.entry(c.host.clone()).or_default().push(c);
            }
            if !full {
                break;
            }
        }
        let clusters = store.cluster_findings(scan_id).await?;
        Ok(ScanResults { scan, hosts, sets, evidence, rules, rule_index, file_sets, file_changes, clusters })
    }

    /// What the scan saw of `host`'s files, in path order (without contents); `None` when it has none for the
    /// host (not audited, or stored before files were).
    pub fn files(&self, host: &ScanHost) -> Option<&[Arc<FileRecord>]> {
        host.file_set_id.map(|id| self.file_sets.get(&id).map_or(&[][..], Vec::as_slice))
    }

    /// `host`'s file changes since its previous scan with files, in path order.
    pub fn file_changes(&self, host: &ScanHost) -> &[FileChange] {
        self.file_changes.get(&host.name).map_or(&[], Vec::as_slice)
    }

    /// Every verdict of `host`, in rule-id order.
    pub fn verdicts<'a>(&'a self, host: &'a ScanHost) -> Box<dyn Iterator<Item = Verdict<'a>> + 'a> {
        match host.result_set_id {
            Some(set) => Box::new(self.sets.get(&set).into_iter().flatten().map(move |r| Verdict {
                host,
                rule_id: &r.rule_id,
                rule: self.rule_index.get(&r.rule_id).map(|&i| &self.rules[i]),
                // The table's CHECK constraint allows only the four statuses.
                status: Status::parse(&r.status).unwrap_or(Status::Error),
                reason: Cow::Borrowed(&r.reason),
                evidence: r.evidence_id.and_then(|id| self.evidence.get(&id)),
            })),
            None => {
                let reason = host.error_reason();
                Box::new(self.rules.iter().map(move |r| Verdict {
                    host,
                    rule_id: &r.rule_id,
                    rule: Some(r),
                    status: Status::Error,
                    reason: Cow::Owned(reason.clone()),
                    evidence: None,
                }))
            }
        }
    }

    /// The scan's rule set with its texts, in rule-id order.
    pub fn rules(&self) -> &[RuleRow] {
        &self.rules
    }

    /// Every verdict of the scan, host by host.
    pub fn all_verdicts(&self) -> impl Iterator<Item = Verdict<'_>> {
        self.hosts.iter().flat_map(|h| self.verdicts(h))
    }

    /// The verdict counts of one host.
    pub fn host_summary(&self, host: &ScanHost) -> Summary {
        Summary::of(self.verdicts(host).map(|v| v.status))
    }

    /// The verdict counts of the whole scan (as `rule_compliance` sums them).
    pub fn totals(&self) -> Summary {
        Summary::of(self.all_verdicts().map(|v| v.status))
    }

    /// The verdict counts of the CIS Automated checks alone (a rule stored without an assessment counts as
    /// automated: it was scored before assessments were recorded).
    pub fn automated_totals(&self) -> Summary {
        Summary::of(self.all_verdicts().filter(|v| !v.is_manual()).map(|v| v.status))
    }

    /// Hosts recorded that could not be audited.
    pub fn unaudited(&self) -> usize {
        self.hosts.iter().filter(|h| h.outcome != "audited").count()
    }

    /// Wall time from the scan's start to its end, when it ended.
    pub fn elapsed_seconds(&self) -> Option<f64> {
        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
        let (start, end) = (parse(&self.scan.started_at)?, parse(self.scan.finished_at.as_deref()?)?);
        Some((end - start).num_milliseconds() as f64 / 1000.0)
    }
}

/// The version of the document [`write_json`] writes, its top-level `format_version`. It changes when a field is
/// removed, renamed or changes meaning; the schema that describes it is `schemas/scan-v{N}.schema.json`.
pub const FORMAT_VERSION: u32 = 2;

#[derive(Serialize)]
struct Doc<'a> {
    format_version: u32,
    scan: ScanJson<'a>,
    summary: SummaryJson,
    /// Each rule's texts once, keyed by rule id.
    rules: RulesJson<'a>,
    hosts: Vec<HostJson<'a>>,
    /// Each distinct evidence document once, keyed by the store's id (as a string).
    evidence: EvidenceJson<'a>,
    findings: Findings<'a>,
    /// The cluster rules' verdicts, one per cluster and rule, each with its evidence.
    cluster_findings: Vec<ClusterFindingJson<'a>>,
}

#[derive(Serialize)]
struct ClusterFindingJson<'a> {
    cluster: &'a str,
    rule_id: &'a str,
    cis: &'a str,
    title: &'a str,
    severity: &'a str,
    status: Status,
    reason: &'a str,
    /// The document `cluster::judge` stored (`api_servers` and `kubelets`, or `certificates`); its text when it
    /// is not JSON.
    evidence: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct ScanJson<'a> {
    id: i64,
    started_at: &'a str,
    finished_at: Option<&'a str>,
    /// `complete` or `interrupted` (`running` only when read while another process scans).
    status: &'a str,
    interrupted: bool,
    elapsed_seconds: Option<f64>,
    inventory: &'a str,
    rules_version: &'a str,
    fleetaudit_version: &'a str,
    hosts_total: i64,
}

#[derive(Serialize)]
struct SummaryJson {
    hosts: usize,
    audited: usize,
    not_audited: usize,
    #[serde(flatten)]
    verdicts: Summary,
    /// The same counts for the CIS Automated checks alone (what `--automated-only` judges).
    automated: Summary,
}

#[derive(Serialize)]
struct HostJson<'a> {
    name: &'a str,
    cluster: Option<&'a str>,
    address: &'a str,
    port: i64,
    roles: Vec<&'a str>,
    /// `audited` or `error`.
    outcome: &'a str,
    error: Option<ErrorJson<'a>>,
    started_at: &'a str,
    duration_ms: i64,
    host_key_fingerprint: Option<&'a str>,
    host_certificate: Option<&'a str>,
    ps_format: Option<&'a str>,
    processes: Option<i64>,
    summary: Summary,
    /// What the scan saw of each path it asked about, as `eval --format json` shows it (no contents); `null` when
    /// the scan has no files for the host.
    files: Option<FilesJson<'a>>,
    /// What differs from the host's previous scan with files.
    file_changes: FileChangesJson<'a>,
}

/// A file record as a key: equal records (an observation many hosts' sets share) are kept once.
#[derive(Clone)]
struct Shared(Arc<FileRecord>);

impl PartialEq for Shared {
    fn eq(&self, other: &Shared) -> bool {
        *self.0 == *other.0
    }
}

impl Eq for Shared {}

impl Hash for Shared {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let f = &*self.0;
        (&f.path, &f.kind, f.mode, f.uid, f.gid, &f.owner, f.size).hash(h);
        (&f.sha256, f.redacted, &f.content, &f.problem, &f.problem_message).hash(h);
    }
}

/// A host's files, each serialized as [`FileJson`](super::FileJson) when written.
struct FilesJson<'a>(&'a [Arc<FileRecord>]);

impl Serialize for FilesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|f| super::FileJson::new(f)))
    }
}

/// A host's file changes, each as the `file_changes` view has it (modes as `stat -c %a` prints them).
struct FileChangesJson<'a>(&'a [FileChange]);

#[derive(Serialize)]
struct FileChangeJson<'a> {
    path: &'a str,
    previous_scan_id: i64,
    /// `["added"]`, `["removed"]`, or what differs: `problem`, `kind`, `mode`, `owner`, `content`.
    change: Vec<&'static str>,
    previous_mode: Option<String>,
    mode: Option<String>,
    previous_permissions: Option<&'a str>,
    permissions: Option<&'a str>,
    previous_owner: Option<&'a str>,
    owner: Option<&'a str>,
    previous_sha256: Option<&'a str>,
    sha256: Option<&'a str>,
    previous_problem: Option<&'a str>,
    problem: Option<&'a str>,
}

impl Serialize for FileChangesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|c| FileChangeJson {
            path: &c.path,
            previous_scan_id: c.previous_scan_id,
            change: c.change.iter().map(|k| k.as_str()).collect(),
            previous_mode: c.previous_mode.map(|m| format!("{m:o}")),
            mode: c.mode.map(|m| format!("{m:o}")),
            previous_permissions: c.previous_permissions.as_deref(),
            permissions: c.permissions.as_deref(),
            previous_owner: c.previous_owner.as_deref(),
            owner: c.owner.as_deref(),
            previous_sha256: c.previous_sha256.as_deref(),
            sha256: c.sha256.as_deref(),
            previous_problem: c.previous_problem.as_deref(),
            problem: c.problem.as_deref(),
        }))
    }
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    kind: &'a str,
    message: &'a str,
}

/// The scan's rules, keyed by id, in id order.
struct RulesJson<'a>(&'a [RuleRow]);

#[derive(Serialize)]
struct RuleJson<'a> {
    cis: &'a str,
    title: &'a str,
    component: &'a str,
    severity: &'a str,
    /// `automated` or `manual` (CIS's assessment); `null` for rules stored before assessments were.
    assessment: Option<&'a str>,
    /// What the rule tests, in words.
    test: Option<&'a str>,
    rationale: Option<&'a str>,
    remediation: Option<&'a str>,
}

impl Serialize for RulesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|r| {
            let rule = RuleJson {
                cis: &r.cis,
                title: &r.title,
                component: &r.component,
                severity: &r.severity,
                assessment: r.assessment.as_deref(),
                test: r.test.as_deref(),
                rationale: r.rationale.as_deref(),
                remediation: r.remediation.as_deref(),
            };
            (&r.rule_id, rule)
        }))
    }
}

/// The scan's evidence documents, keyed by the store's id, in id order.
struct EvidenceJson<'a>(&'a HashMap<i64, serde_json::Value>);

impl Serialize for EvidenceJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut ids: Vec<i64> = self.0.keys().copied().collect();
        ids.sort_unstable();
        s.collect_map(ids.into_iter().map(|id| (EvidenceId(id), &self.0[&id])))
    }
}

/// An evidence document's key: the store's id, written as a JSON string (an object key, and a finding's reference
/// to it) without an allocation per finding.
struct EvidenceId(i64);

impl Serialize for EvidenceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// One finding as the document has it: a verdict (rule, status, reason, evidence) with every host that got it.
/// Hosts that share a result set share its verdicts, so a fleet's hundreds of thousands of (host, rule) verdicts
/// are a few hundred distinct ones: written once each with their hosts' names, not once per host.
pub struct SharedVerdict<'a> {
    pub rule_id: &'a str,
    pub status: Status,
    pub reason: Cow<'a, str>,
    /// The store's id of the evidence document (a key of [`ScanResults`]'s evidence).
    pub evidence_id: Option<i64>,
    /// In name order.
    pub hosts: Vec<&'a str>,
}

impl ScanResults {
    /// The scan's verdicts, each distinct (rule, status, reason, evidence) once with the hosts that got it, in
    /// rule-id, status and reason order; together they are exactly [`ScanResults::all_verdicts`].
    pub fn shared_verdicts(&self) -> Vec<SharedVerdict<'_>> {
        // Hosts by result set, and hosts that could not be audited by their error: each group judged alike.
        let mut by_set: HashMap<i64, Vec<&str>> = HashMap::new();
        let mut by_error: HashMap<String, Vec<&str>> = HashMap::new();
        for h in &self.hosts {
            match h.result_set_id {
                Some(set) => by_set.entry(set).or_default().push(&h.name),
                None => by_error.entry(h.error_reason()).or_default().push(&h.name),
            }
        }
        let mut index: HashMap<VerdictKey<'_>, usize> = HashMap::new();
        let mut shared: Vec<SharedVerdict<'_>> = Vec::new();
        for (set, hosts) in &by_set {
            for r in self.sets.get(set).into_iter().flatten() {
                let status = Status::parse(&r.status).unwrap_or(Status::Error);
                let evidence_id = r.evidence_id.filter(|id| self.evidence.contains_key(id));
                let key = (r.rule_id.as_str(), status, Cow::Borrowed(r.reason.as_str()), evidence_id);
                share(&mut index, &mut shared, key, hosts);
            }
        }
        for (reason, hosts) in by_error {
            for rule in &self.rules {
                let key = (rule.rule_id.as_str(), Status::Error, Cow::Owned(reason.clone()), None);
                share(&mut index, &mut shared, key, &hosts);
            }
        }
        for v in &mut shared {
            v.hosts.sort_unstable();
        }
        shared.sort_by(|a, b| (a.rule_id, a.status, &a.reason).cmp(&(b.rule_id, b.status, &b.reason)));
        shared
    }
}

/// A verdict's identity: rule, status, reason, evidence.
type VerdictKey<'a> = (&'a str, Status, Cow<'a, str>, Option<i64>);

/// Adds `hosts` to the shared verdict `key`, which is new or already in `shared` (at `index[key]`).
fn share<'a>(
    index: &mut HashMap<VerdictKey<'a>, usize>,
    shared: &mut Vec<SharedVerdict<'a>>,
    key: VerdictKey<'a>,
    hosts: &[&'a str],
) {
    let i = match index.get(&key) {
        Some(&i) => i,
        None => {
            let (rule_id, status, reason, evidence_id) = key.clone();
            shared.push(SharedVerdict { rule_id, status, reason, evidence_id, hosts: Vec::new() });
            index.insert(key, shared.len() - 1);
            shared.len() - 1
        }
    };
    shared[i].hosts.extend_from_slice(hosts);
}

/// One finding: the rule and the evidence by reference (`rules[rule_id]`, `evidence[evidence]`), and the hosts.
#[derive(Serialize)]
struct FindingJson<'a> {
    rule_id: &'a str,
    status: Status,
    reason: &'a str,
    evidence: Option<EvidenceId>,
    hosts: &'a [&'a str],
}

struct Findings<'a>(Vec<SharedVerdict<'a>>);

impl Serialize for Findings<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|v| FindingJson {
            rule_id: v.rule_id,
            status: v.status,
            reason: &v.reason,
            evidence: v.evidence_id.map(EvidenceId),
            hosts: &v.hosts,
        }))
    }
}

/// Writes the scan as one compact JSON document (format version [`FORMAT_VERSION`]): `format_version`, `scan`,
/// `summary`, `rules`, `hosts`, `evidence`, `findings`, `cluster_findings` (README "Outputs"; schemas/scan-v2.schema.json).
pub fn write_json(out: &mut dyn Write, r: &ScanResults) -> io::Result<()> {
    let s = &r.scan;
    let totals = r.totals();
    let doc = Doc {
        format_version: FORMAT_VERSION,
        scan: ScanJson {
            id: s.id,
            started_at: &s.started_at,
            finished_at: s.finished_at.as_deref(),
            status: &s.status,
            interrupted: s.status == "interrupted",
            elapsed_seconds: r.elapsed_seconds(),
            inventory: &s.inventory,
            rules_version: &s.rules_version,
            fleetaudit_version: &s.fleetaudit_version,
            hosts_total: s.hosts_total,
        },
        summary: SummaryJson {
            hosts: r.hosts.len(),
            audited: r.hosts.len() - r.unaudited(),
            not_audited: r.unaudited(),
            verdicts: totals,
            automated: r.automated_totals(),
        },
        hosts: r
            .hosts
            .iter()
            .map(|h| HostJson {
                name: &h.name,
                cluster: h.cluster.as_deref(),
                address: &h.address,
                port: h.port,
                roles: h.roles.split(',').filter(|r| !r.is_empty()).collect(),
                outcome: &h.outcome,
                error: h
                    .error_kind
                    .as_deref()
                    .map(|kind| ErrorJson { kind, message: h.error_message.as_deref().unwrap_or("") }),
                started_at: &h.started_at,
                duration_ms: h.duration_ms,
                host_key_fingerprint: h.fingerprint.as_deref(),
                host_certificate: h.certificate.as_deref(),
                ps_format: h.ps_format.as_deref(),
                processes: h.processes,
                summary: r.host_summary(h),
                files: r.files(h).map(FilesJson),
                file_changes: FileChangesJson(r.file_changes(h)),
            })
            .collect(),
        rules: RulesJson(&r.rules),
        evidence: EvidenceJson(&r.evidence),
        findings: Findings(r.shared_verdicts()),
        cluster_findings: r
            .clusters
            .iter()
            .map(|c| ClusterFindingJson {
                cluster: &c.cluster,
                rule_id: &c.rule_id,
                cis: &c.cis,
                title: &c.title,
                severity: &c.severity,
                status: c.status,
                reason: &c.reason,
                evidence: c
                    .evidence
                    .as_deref()
                    .map(|e| serde_json::from_str(e).unwrap_or_else(|_| serde_json::Value::String(e.to_owned()))),
            })
            .collect(),
    };
    // stdout is line-buffered: without this, every line of the document would be a write(2).
    let mut w = io::BufWriter::with_capacity(1 << 16, out);
    serde_json::to_writer(&mut w, &doc)?;
    writeln!(w)?;
    w.flush()
}
