//! The cluster pages and the overview's cluster-rule and certificate-expiry sections.
//!
//! Owns: turning what the store returns of a scan's cluster stage (its verdicts with their evidence, the rules'
//! texts, the certificates the hosts hold, each once per cluster) into views: per cluster its verdicts, its API
//! servers and the CA files they verify kubelets with, each kubelet's serving certificate and whether it chains,
//! and the expiry calendar of every certificate its hosts hold.
//! Must not touch: SQL (the store's `cluster_findings`, `cluster_rule_texts` and `held_certificates` reads), and
//! what a verdict means: the evidence is shown as `cluster::judge` recorded it (its typed evidence documents),
//! never re-judged here.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use askama::Template;

use super::{PAGE, Prose, ProseKind, ReportError, Writer, file_name, prose};
use crate::cluster::{CertSummary, ExpiryEvidence, KubeletServingEvidence};
use crate::model::Status;
use crate::store::ScanHost;
use crate::store::{ClusterFinding, ClusterRuleMeta, HeldCertificate};

/// Certificates the overview lists as expiring soonest.
const SOONEST: usize = 10;
/// The window a certificate is marked in when no expiry rule of the scan says one.
const DEFAULT_WARN_DAYS: i64 = 30;

/// A scan's cluster stage, as the store returned it.
pub struct ClusterData<'a> {
    pub findings: &'a [ClusterFinding],
    pub texts: &'a [ClusterRuleMeta],
    pub held: &'a [HeldCertificate],
    /// The scan's start (Unix seconds): "in N days" counts from it, so a report re-rendered later says the same.
    pub now: i64,
}

impl ClusterData<'_> {
    /// The expiry rules' window, for marking certificates on the calendars (the widest if rules differ).
    fn warn_days(&self) -> i64 {
        self.findings
            .iter()
            .filter_map(|f| serde_json::from_str::<ExpiryEvidence>(f.evidence.as_deref()?).ok())
            .map(|e| i64::from(e.warn_days))
            .max()
            .unwrap_or(DEFAULT_WARN_DAYS)
    }

    fn cert_view(&self, c: &HeldCertificate, warn_days: i64) -> CertView {
        let not_after = crate::model::unix_of_rfc3339(&c.not_after);
        let not_before = crate::model::unix_of_rfc3339(&c.not_before);
        let (days, state) = match not_after {
            Some(t) => {
                let days = (t - self.now).div_euclid(86_400);
                let state = if t < self.now {
                    "expired"
                } else if not_before.is_some_and(|b| b > self.now) {
                    "not yet valid"
                } else if days < warn_days {
                    "expires soon"
                } else {
                    "valid"
                };
                (days.to_string(), state)
            }
            None => (String::new(), "unknown"),
        };
        CertView {
            cluster: c.cluster.clone().unwrap_or_else(|| "–".into()),
            cluster_file: c.cluster.as_deref().map(|n| format!("clusters/{}.html", file_name(n))).unwrap_or_default(),
            expires: day(&c.not_after),
            days,
            state,
            class: match state {
                "valid" => "s-pass",
                "unknown" => "s-error",
                _ => "s-fail",
            },
            subject: c.subject.clone(),
            issuer: c.issuer.clone(),
            kind: kind(c),
            first_place: c.first_place.clone(),
            other_places: c.places - 1,
            fingerprint: c.fingerprint.get(..16).unwrap_or(&c.fingerprint).to_owned(),
        }
    }
}

fn day(rfc3339: &str) -> String {
    rfc3339.get(..10).unwrap_or(rfc3339).to_owned()
}

/// CA, kubelet serving, or control plane: the classes the expiry rules judge apart.
fn kind(c: &HeldCertificate) -> &'static str {
    if c.is_ca {
        "CA"
    } else if c.roles.iter().any(|r| r == "kubelet-serving") {
        "kubelet serving"
    } else {
        "control plane"
    }
}

#[derive(Debug, Clone)]
pub struct CertView {
    pub cluster: String,
    /// From the scan directory; empty for hosts in no cluster.
    pub cluster_file: String,
    /// `2027-12-01`.
    pub expires: String,
    /// Days from the scan's start to its end (negative: expired).
    pub days: String,
    pub state: &'static str,
    pub class: &'static str,
    pub subject: String,
    pub issuer: String,
    pub kind: &'static str,
    /// `host:path`.
    pub first_place: String,
    pub other_places: i64,
    pub fingerprint: String,
}

/// The overview's "certificates expiring soonest".
pub fn soonest(data: &ClusterData<'_>) -> Vec<CertView> {
    let warn_days = data.warn_days();
    data.held.iter().take(SOONEST).map(|c| data.cert_view(c, warn_days)).collect()
}

/// One cluster's row of the overview's cluster-rule table: a status per cluster rule, in the rules' order.
#[derive(Debug, Clone)]
pub struct ClusterRulesRow {
    pub cluster: String,
    pub file: String,
    pub cells: Vec<StatusCell>,
}

#[derive(Debug, Clone)]
pub struct StatusCell {
    pub status: &'static str,
    /// The reason, as the cell's tooltip.
    pub reason: String,
}

/// The overview table's columns: `(rule_id, short heading, title)`, rules with a CIS number (the seed rule)
/// first, then by id. The heading is the id without its `cluster-` prefix.
pub fn rule_heads(data: &ClusterData<'_>) -> Vec<(String, String, String)> {
    let mut heads: BTreeMap<(bool, &str), &str> = BTreeMap::new();
    for f in data.findings {
        heads.entry((f.cis.is_empty(), &f.rule_id)).or_insert(&f.title);
    }
    heads
        .into_iter()
        .map(|((_, id), title)| (id.to_owned(), id.strip_prefix("cluster-").unwrap_or(id).to_owned(), title.to_owned()))
        .collect()
}

/// The overview's cluster-rule table: failing clusters first, then those left open, then by name.
pub fn overview_rows(data: &ClusterData<'_>) -> Vec<ClusterRulesRow> {
    let heads = rule_heads(data);
    let mut by_cluster: BTreeMap<&str, HashMap<&str, &ClusterFinding>> = BTreeMap::new();
    for f in data.findings {
        by_cluster.entry(&f.cluster).or_default().insert(&f.rule_id, f);
    }
    let mut rows: Vec<(u8, ClusterRulesRow)> = by_cluster
        .into_iter()
        .map(|(cluster, of)| {
            let cells: Vec<StatusCell> = heads
                .iter()
                .map(|(id, ..)| match of.get(id.as_str()) {
                    Some(f) => StatusCell { status: f.status.as_str(), reason: f.reason.clone() },
                    None => StatusCell { status: "not_applicable", reason: "not judged in this scan".into() },
                })
                .collect();
            let rank = match () {
                _ if cells.iter().any(|c| c.status == "fail") => 0,
                _ if cells.iter().any(|c| c.status == "error") => 1,
                _ => 2,
            };
            (
                rank,
                ClusterRulesRow {
                    cluster: cluster.to_owned(),
                    file: format!("clusters/{}.html", file_name(cluster)),
                    cells,
                },
            )
        })
        .collect();
    rows.sort_by(|(a, x), (b, y)| (a, &x.cluster).cmp(&(b, &y.cluster)));
    rows.into_iter().map(|(_, r)| r).collect()
}

#[derive(Debug, Clone)]
pub struct VerdictView {
    pub status: &'static str,
    pub rule_id: String,
    pub title: String,
    pub cis: String,
    pub severity: String,
    pub reason: String,
    pub rationale: Vec<Prose>,
    pub remediation: Vec<Prose>,
}

#[derive(Debug, Clone)]
pub struct ApiServerView {
    pub host: String,
    pub file: String,
    /// The `--kubelet-certificate-authority` file, or empty when not set (or not known to be).
    pub ca_file: String,
    pub certificates: Vec<CaView>,
    pub error: String,
}

#[derive(Debug, Clone)]
pub struct CaView {
    pub subject: String,
    pub not_after: String,
    pub is_ca: bool,
    pub fingerprint: String,
}

impl CaView {
    fn of(c: &CertSummary) -> CaView {
        CaView {
            subject: c.subject.clone(),
            not_after: day(&c.not_after),
            is_ca: c.is_ca,
            fingerprint: c.fingerprint.get(..16).unwrap_or(&c.fingerprint).to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct KubeletView {
    pub host: String,
    pub file: String,
    pub address: String,
    pub path: String,
    pub subject: String,
    pub issuer: String,
    pub names: String,
    pub not_after: String,
    /// `self-signed`, `by the kubelet's own CA` (what kubelet.crt is when the kubelet generated it: a leaf signed
    /// by a CA named `HOST-ca@TIMESTAMP`, both in the file), or empty.
    pub origin: &'static str,
    /// pass: chains, covers the node, valid; fail: what breaks; error: the file could not be judged.
    pub status: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct MonthView {
    /// `2027-12`.
    pub month: String,
    pub certificates: usize,
    pub ca: usize,
    pub marked: bool,
}

#[derive(Debug, Clone)]
pub struct OpenView {
    pub host: String,
    pub file: String,
    pub why: String,
}

#[derive(Template)]
#[template(path = "cluster.html")]
struct ClusterPage {
    root: &'static str,
    title: String,
    scan_id: i64,
    cluster: String,
    hosts: usize,
    audited: usize,
    open: Vec<OpenView>,
    verdicts: Vec<VerdictView>,
    /// Whether the seed rule's evidence was there to show (a scan of an older rule set has none).
    seed_shown: bool,
    api_servers: Vec<ApiServerView>,
    kubelets: Vec<KubeletView>,
    kubelets_more: usize,
    kubelets_failing: usize,
    warn_days: i64,
    months: Vec<MonthView>,
    certificates: Vec<CertView>,
    certificates_more: usize,
}

/// Writes `clusters/NAME.html` for every cluster the scan judged.
pub fn write(
    w: &mut Writer,
    dir: &Path,
    scan_id: i64,
    hosts: &[ScanHost],
    data: &ClusterData<'_>,
) -> Result<(), ReportError> {
    if data.findings.is_empty() {
        return Ok(());
    }
    let out = dir.join("clusters");
    super::mkdir(&out)?;
    let texts: HashMap<&str, &ClusterRuleMeta> = data.texts.iter().map(|t| (t.rule_id.as_str(), t)).collect();
    let warn_days = data.warn_days();
    let mut findings: BTreeMap<&str, Vec<&ClusterFinding>> = BTreeMap::new();
    for f in data.findings {
        findings.entry(&f.cluster).or_default().push(f);
    }
    let mut held: HashMap<&str, Vec<&HeldCertificate>> = HashMap::new();
    for c in data.held {
        if let Some(cluster) = &c.cluster {
            held.entry(cluster).or_default().push(c);
        }
    }
    let host_file = |name: &str| format!("../hosts/{}.html", file_name(name));
    for (cluster, of) in findings {
        let members: Vec<&ScanHost> = hosts.iter().filter(|h| h.cluster.as_deref() == Some(cluster)).collect();
        let audited = members.iter().filter(|h| h.outcome == "audited").count();

        let mut verdicts: Vec<VerdictView> = of
            .iter()
            .map(|f| {
                let text = texts.get(f.rule_id.as_str());
                VerdictView {
                    status: f.status.as_str(),
                    rule_id: f.rule_id.clone(),
                    title: f.title.clone(),
                    cis: f.cis.clone(),
                    severity: f.severity.clone(),
                    reason: f.reason.clone(),
                    rationale: prose(text.map(|t| t.rationale.as_str())),
                    remediation: prose(text.map(|t| t.remediation.as_str())),
                }
            })
            .collect();
        verdicts.sort_by_key(|v| (status_rank(v.status), v.rule_id.clone()));

        // The seed rule's evidence: what each API server trusts and what each kubelet serves.
        let seed = of.iter().find_map(|f| {
            let e: KubeletServingEvidence = serde_json::from_str(f.evidence.as_deref()?).ok()?;
            Some(e)
        });
        let seed_shown = seed.is_some();
        let seed = seed.unwrap_or_default();
        let api_servers: Vec<ApiServerView> = seed
            .api_servers
            .iter()
            .map(|a| ApiServerView {
                host: a.host.clone(),
                file: host_file(&a.host),
                ca_file: a.kubelet_certificate_authority.clone().unwrap_or_default(),
                certificates: a.certificates.iter().map(CaView::of).collect(),
                error: a.error.clone().unwrap_or_default(),
            })
            .collect();
        let mut kubelets: Vec<KubeletView> = seed
            .kubelets
            .iter()
            .map(|k| {
                let (status, detail) = match (&k.error, k.problems.is_empty()) {
                    (Some(e), _) => ("error", e.clone()),
                    (None, true) => ("pass", "chains to every API server's CA, covers the node, valid".to_owned()),
                    (None, false) => ("fail", k.problems.join("; ")),
                };
                let c = k.certificate.as_ref();
                let mut names: Vec<String> = c.map(|c| c.dns_names.clone()).unwrap_or_default();
                names.extend(c.map(|c| c.ip_addresses.clone()).unwrap_or_default());
                KubeletView {
                    host: k.host.clone(),
                    file: host_file(&k.host),
                    address: k.address.clone(),
                    path: k.path.clone(),
                    subject: c.map(|c| c.subject.clone()).unwrap_or_default(),
                    issuer: c.map(|c| c.issuer.clone()).unwrap_or_default(),
                    names: names.join(", "),
                    not_after: c.map(|c| day(&c.not_after)).unwrap_or_default(),
                    origin: match (k.self_signed, c.is_some_and(|c| c.issuer.contains("-ca@"))) {
                        (true, _) => "self-signed",
                        (false, true) => "by the kubelet's own CA",
                        (false, false) => "",
                    },
                    status,
                    detail,
                }
            })
            .collect();
        // What breaks first, then what cannot be judged, then the rest; by host within each.
        kubelets.sort_by(|a, b| (status_rank(a.status), &a.host).cmp(&(status_rank(b.status), &b.host)));
        let kubelets_failing = kubelets.iter().filter(|k| k.status == "fail").count();
        let kubelets_more = kubelets.len().saturating_sub(PAGE);
        kubelets.truncate(PAGE);

        let certs = held.remove(cluster).unwrap_or_default();
        let mut months: BTreeMap<String, MonthView> = BTreeMap::new();
        for c in &certs {
            let month = c.not_after.get(..7).unwrap_or_default().to_owned();
            let m = months.entry(month.clone()).or_insert(MonthView { month, certificates: 0, ca: 0, marked: false });
            m.certificates += 1;
            m.ca += usize::from(c.is_ca);
            let t = crate::model::unix_of_rfc3339(&c.not_after);
            m.marked |= t.is_none_or(|t| t < data.now + warn_days * 86_400);
        }
        let certificates_more = certs.len().saturating_sub(PAGE);
        let certificates = certs.iter().take(PAGE).map(|c| data.cert_view(c, warn_days)).collect();

        let open = members
            .iter()
            .filter(|h| h.outcome != "audited")
            .map(|h| OpenView { host: h.name.clone(), file: host_file(&h.name), why: h.error_reason() })
            .chain(seed.not_audited.iter().filter(|o| !members.iter().any(|h| h.name == o.host)).map(|o| OpenView {
                host: o.host.clone(),
                file: String::new(),
                why: o.why.clone(),
            }))
            .collect();

        let page = ClusterPage {
            root: "../../",
            title: format!("Cluster {cluster}, scan {scan_id}"),
            scan_id,
            cluster: cluster.to_owned(),
            hosts: members.len(),
            audited,
            open,
            verdicts,
            seed_shown,
            api_servers,
            kubelets,
            kubelets_more,
            kubelets_failing,
            warn_days,
            months: months.into_values().collect(),
            certificates,
            certificates_more,
        };
        w.page(&out.join(format!("{}.html", file_name(cluster))), &page)?;
    }
    Ok(())
}

fn status_rank(status: &str) -> u8 {
    match Status::parse(status) {
        Some(Status::Fail) => 0,
        Some(Status::Error) => 1,
        Some(Status::Pass) => 2,
        _ => 3,
    }
}
