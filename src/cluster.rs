//! Cluster rules: judged once every host of a cluster is recorded, from what the store holds of them.
//!
//! Owns: the stage between the store and the report that no single-node tool has: [`judge_scan`] parses the
//! certificate files the scan read (once each, into the store), reads the scan's hosts and certificate files
//! back as domain types, and judges every `[[cluster_rule]]` of the pack on every cluster of the inventory
//! ([`judge`], pure): whether each kubelet's serving certificate chains to the CA each API server verifies
//! kubelets with, covers the node and is valid (CIS 1.2.5 as it works, not only as it is set), and which
//! certificates have expired or expire within a rule's window. A cluster with hosts this scan did not audit
//! never passes: the verdict names them.
//! Must not touch: SSH, SQL (the store runs every statement), how a certificate is parsed (`files::x509`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::files::x509::Certificate;
use crate::model::Status;
use crate::rules::{CertClass, ClusterCheck, ClusterRule, RuleSet};
use crate::store::{CertFile, ClusterFinding, ClusterHost, ClusterInputs, ClusterRuleMeta, Store, StoreError};

/// The host rule the seed rule completes: whether each API server sets --kubelet-certificate-authority at all
/// (an API server inside k3s sets it from defaults fleetaudit does not model: that host rule says `error`).
const SEED_HOST_RULE: &str = "apiserver-kubelet-certificate-authority";

/// How many nodes or certificates a reason names before "and N more" (the evidence has them all).
const NAMED: usize = 5;

/// The cluster stage of a scan: parses what is new, judges every cluster rule on every cluster that has hosts
/// in `members` (cluster → every host the inventory puts in it), stores the verdicts and returns them.
pub async fn judge_scan(
    store: &Store,
    scan_id: i64,
    set: &RuleSet,
    members: &BTreeMap<String, Vec<String>>,
    now: i64,
) -> Result<Vec<ClusterFinding>, StoreError> {
    if set.cluster_rules.is_empty() || members.is_empty() {
        return Ok(Vec::new());
    }
    let unparsed = store.unparsed_certificates(scan_id).await?;
    let parsed: Vec<_> = unparsed.into_iter().map(|(id, body)| (id, crate::files::x509::parse_pem(&body))).collect();
    store.record_certificates(&parsed).await?;
    let inputs = store.cluster_inputs(scan_id, SEED_HOST_RULE).await?;
    let findings = judge(&set.cluster_rules, &inputs, members, now);
    store.record_cluster_results(scan_id, &set.version(), &rule_meta(set), &findings).await?;
    Ok(findings)
}

/// The cluster rules as the store keeps them.
pub fn rule_meta(set: &RuleSet) -> Vec<ClusterRuleMeta> {
    set.cluster_rules
        .iter()
        .map(|r| ClusterRuleMeta {
            rule_id: r.id.clone(),
            cis: r.cis.clone(),
            title: r.title.clone(),
            severity: r.severity.as_str().to_owned(),
            rationale: r.rationale.clone(),
            remediation: r.remediation.clone(),
        })
        .collect()
}

/// Every cluster rule on every cluster of `members`, judged from `inputs` at time `now` (Unix seconds).
pub fn judge(
    rules: &[ClusterRule],
    inputs: &ClusterInputs,
    members: &BTreeMap<String, Vec<String>>,
    now: i64,
) -> Vec<ClusterFinding> {
    let mut out = Vec::new();
    for (cluster, names) in members {
        let view = Cluster::of(cluster, names, inputs);
        for rule in rules {
            let (status, reason, evidence) = match &rule.check {
                ClusterCheck::KubeletServing => kubelet_serving(&view, now),
                ClusterCheck::Expiry { roles, class, warn_days } => expiry(&view, roles, *class, *warn_days, now),
            };
            out.push(ClusterFinding {
                cluster: cluster.clone(),
                rule_id: rule.id.clone(),
                cis: rule.cis.clone(),
                title: rule.title.clone(),
                severity: rule.severity.as_str().to_owned(),
                status,
                reason,
                evidence: Some(evidence.to_string()),
            });
        }
    }
    out
}

/// One cluster's part of a scan.
struct Cluster<'a> {
    /// Audited hosts.
    hosts: Vec<&'a ClusterHost>,
    /// Hosts of the cluster this scan did not audit, with why.
    open: Vec<(String, String)>,
    files: BTreeMap<&'a str, Vec<&'a CertFile>>,
}

impl<'a> Cluster<'a> {
    fn of(cluster: &str, names: &[String], inputs: &'a ClusterInputs) -> Cluster<'a> {
        let recorded: BTreeMap<&str, &ClusterHost> = inputs
            .hosts
            .iter()
            .filter(|h| h.cluster.as_deref() == Some(cluster))
            .map(|h| (h.name.as_str(), h))
            .collect();
        let mut hosts = Vec::new();
        let mut open = Vec::new();
        for name in names {
            match recorded.get(name.as_str()) {
                Some(h) => match &h.audited {
                    Ok(()) => hosts.push(*h),
                    Err(why) => open.push((name.clone(), format!("not audited ({why})"))),
                },
                None => open.push((name.clone(), "not in this scan".to_owned())),
            }
        }
        let audited: BTreeSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        let mut files: BTreeMap<&str, Vec<&CertFile>> = BTreeMap::new();
        for f in &inputs.files {
            if audited.contains(f.host.as_str()) {
                files.entry(f.host.as_str()).or_default().push(f);
            }
        }
        Cluster { hosts, open, files }
    }

    fn running(&self, component: &str) -> Vec<&'a ClusterHost> {
        self.hosts.iter().copied().filter(|h| h.components.contains(component)).collect()
    }

    fn with_role(&self, host: &str, role: &str) -> Vec<&'a CertFile> {
        self.files.get(host).into_iter().flatten().copied().filter(|f| f.roles.iter().any(|r| r == role)).collect()
    }

    fn open_text(&self) -> String {
        names(self.open.iter().map(|(h, why)| format!("{h} {why}")))
    }
}

/// `a, b, c, d, e and 3 more`.
fn names(items: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = items.collect();
    let shown = all.iter().take(NAMED).cloned().collect::<Vec<_>>().join("; ");
    match all.len() > NAMED {
        true => format!("{shown}; and {} more", all.len() - NAMED),
        false => shown,
    }
}

fn day(secs: i64) -> String {
    crate::model::rfc3339(secs, 0).get(..10).unwrap_or_default().to_owned()
}

/// A certificate as a cluster verdict's evidence names it (the store keeps the whole of it in `x509_certificates`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    /// RFC 3339 UTC.
    pub not_before: String,
    pub not_after: String,
    pub is_ca: bool,
    #[serde(default)]
    pub dns_names: Vec<String>,
    #[serde(default)]
    pub ip_addresses: Vec<String>,
}

impl CertSummary {
    fn of(c: &Certificate) -> CertSummary {
        CertSummary {
            subject: c.subject.clone(),
            issuer: c.issuer.clone(),
            serial: c.serial.clone(),
            fingerprint: c.fingerprint.clone(),
            not_before: c.not_before_text(),
            not_after: c.not_after_text(),
            is_ca: c.is_ca,
            dns_names: c.dns_names.clone(),
            ip_addresses: c.ip_addresses.clone(),
        }
    }
}

/// A host of the cluster this scan did not audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenHost {
    pub host: String,
    pub why: String,
}

/// An API server in the seed rule's evidence: the CA file it verifies kubelets with (`None`: the flag is not
/// set, or not known to be), and what that file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiServerEvidence {
    pub host: String,
    pub kubelet_certificate_authority: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A kubelet in the seed rule's evidence: its serving certificate and what would break with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KubeletEvidence {
    pub host: String,
    #[serde(default)]
    pub address: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertSummary>,
    #[serde(default)]
    pub self_signed: bool,
    /// Empty: it chains to every API server's CA, covers the node and is valid.
    #[serde(default)]
    pub problems: Vec<String>,
    /// The file could not be read or parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The evidence of a [`ClusterCheck::KubeletServing`] verdict, stored as JSON beside it (`cluster_findings`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KubeletServingEvidence {
    pub api_servers: Vec<ApiServerEvidence>,
    pub kubelets: Vec<KubeletEvidence>,
    #[serde(default)]
    pub not_audited: Vec<OpenHost>,
}

/// A certificate in an expiry verdict's evidence, with every `host:path` that holds it and its problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpiryCertificate {
    #[serde(flatten)]
    pub certificate: CertSummary,
    pub at: Vec<String>,
    pub problem: Option<String>,
}

/// The evidence of a [`ClusterCheck::Expiry`] verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExpiryEvidence {
    pub warn_days: u32,
    pub certificates: Vec<ExpiryCertificate>,
    #[serde(default)]
    pub not_audited: Vec<OpenHost>,
}

impl Cluster<'_> {
    fn open_hosts(&self) -> Vec<OpenHost> {
        self.open.iter().map(|(host, why)| OpenHost { host: host.clone(), why: why.clone() }).collect()
    }
}

fn to_json(v: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(v).expect("evidence serializes")
}

/// Why a certificate file of a role says nothing: its problem, or a rotated certificate's file that holds its key.
fn unread(f: &CertFile, why: &str) -> String {
    if crate::rules::filecheck::holds_key(&f.path) {
        return format!(
            "{}: the kubelet rotates its serving certificate (serverTLSBootstrap) into {}, which holds its private \
             key beside it; fleetaudit does not read that file, so the certificate is not judged",
            f.host, f.path
        );
    }
    format!("{}: {} ({why})", f.host, f.path)
}

/// A CA file the API servers in `apis` verify kubelets with; `key`: the fingerprints of what it holds.
struct Bundle<'a> {
    path: &'a str,
    key: Vec<&'a str>,
    cas: &'a [Arc<Certificate>],
    apis: Vec<&'a str>,
}

/// The seed rule as it works: see [`ClusterCheck::KubeletServing`].
fn kubelet_serving(c: &Cluster<'_>, now: i64) -> (Status, String, serde_json::Value) {
    let apis = c.running("apiserver");
    let kubelets = c.running("kubelet");
    let mut fails: Vec<String> = Vec::new();
    let mut undecided: Vec<String> = Vec::new();
    // The CA bundles the API servers verify kubelets with, each once with every API server that uses it: a
    // control plane of N API servers sharing one CA file costs each kubelet one chain check, not N.
    let mut bundles: Vec<Bundle<'_>> = Vec::new();
    let mut api_json = Vec::new();
    for api in &apis {
        let files = c.with_role(&api.name, "apiserver-kubelet-ca");
        if files.is_empty() {
            // Unset, or not known to be set: the host's own verdict of the flag decides which.
            match &api.host_rule {
                Some((Status::Fail, _)) => fails.push(format!(
                    "{}: the API server does not set --kubelet-certificate-authority, so it verifies no kubelet's \
                     serving certificate",
                    api.name
                )),
                Some((_, why)) => undecided.push(format!(
                    "{}: the API server's CA file for kubelets is not known ({SEED_HOST_RULE}: {why})",
                    api.name
                )),
                None => undecided.push(format!("{}: the host has no verdict of {SEED_HOST_RULE}", api.name)),
            }
            api_json.push(ApiServerEvidence {
                host: api.name.clone(),
                kubelet_certificate_authority: None,
                certificates: Vec::new(),
                error: None,
            });
        }
        for f in files {
            match &f.certificates {
                Ok(certs) if !certs.is_empty() => {
                    let key: Vec<&str> = certs.iter().map(|c| c.fingerprint.as_str()).collect();
                    match bundles.iter_mut().find(|b| b.path == f.path && b.key == key) {
                        Some(b) => b.apis.push(api.name.as_str()),
                        None => bundles.push(Bundle { path: &f.path, key, cas: certs, apis: vec![api.name.as_str()] }),
                    }
                    api_json.push(ApiServerEvidence {
                        host: api.name.clone(),
                        kubelet_certificate_authority: Some(f.path.clone()),
                        certificates: certs.iter().map(|c| CertSummary::of(c)).collect(),
                        error: None,
                    });
                }
                Ok(_) => undecided.push(unread(f, "no certificate in it")),
                Err(why) => {
                    undecided.push(unread(f, why));
                    api_json.push(ApiServerEvidence {
                        host: api.name.clone(),
                        kubelet_certificate_authority: Some(f.path.clone()),
                        certificates: Vec::new(),
                        error: Some(why.clone()),
                    });
                }
            }
        }
    }
    if apis.is_empty() && !kubelets.is_empty() {
        undecided.push(
            "no API server of the cluster was audited: add its control plane nodes to the inventory (a managed \
             control plane cannot be judged from its nodes)"
                .to_owned(),
        );
    }
    let mut broken: Vec<String> = Vec::new();
    let mut kubelet_json = Vec::new();
    for k in &kubelets {
        let files = c.with_role(&k.name, "kubelet-serving");
        if files.is_empty() {
            undecided.push(format!("{}: the kubelet's serving certificate was not among the files read", k.name));
        }
        for f in files {
            let leaf_and_chain = match &f.certificates {
                Ok(certs) if !certs.is_empty() => certs,
                Ok(_) => {
                    undecided.push(unread(f, "no certificate in it"));
                    continue;
                }
                Err(why) => {
                    undecided.push(unread(f, why));
                    kubelet_json.push(KubeletEvidence {
                        host: k.name.clone(),
                        address: k.address.clone(),
                        path: f.path.clone(),
                        certificate: None,
                        self_signed: false,
                        problems: Vec::new(),
                        error: Some(why.clone()),
                    });
                    continue;
                }
            };
            let leaf = &leaf_and_chain[0];
            let mut problems: Vec<String> = Vec::new();
            for b in &bundles {
                if let Err(why) = chains(leaf, &leaf_and_chain[1..], b.cas) {
                    let servers = match b.apis.len() {
                        1 => "server",
                        _ => "servers",
                    };
                    problems.push(format!(
                        "not verified with {} of the API {servers} on {}: {why}",
                        b.path,
                        names(b.apis.iter().map(|a| a.to_string()))
                    ));
                }
            }
            if !leaf.covers(&k.name) && !leaf.covers(&k.address) {
                let mut named: Vec<&str> = leaf.dns_names.iter().map(String::as_str).collect();
                named.extend(leaf.ip_addresses.iter().map(String::as_str));
                problems.push(format!(
                    "names {} but not the node ({} at {})",
                    if named.is_empty() { "nothing".to_owned() } else { named.join(", ") },
                    k.name,
                    k.address
                ));
            }
            if leaf.not_after < now {
                problems.push(format!("expired on {}", day(leaf.not_after)));
            } else if leaf.not_before > now {
                problems.push(format!("not valid before {}", day(leaf.not_before)));
            }
            if !problems.is_empty() {
                broken.push(format!("{} ({})", k.name, problems.join("; ")));
            }
            kubelet_json.push(KubeletEvidence {
                host: k.name.clone(),
                address: k.address.clone(),
                path: f.path.clone(),
                certificate: Some(CertSummary::of(leaf)),
                self_signed: leaf.self_signed(),
                problems,
                error: None,
            });
        }
    }
    let evidence =
        to_json(&KubeletServingEvidence { api_servers: api_json, kubelets: kubelet_json, not_audited: c.open_hosts() });
    if apis.is_empty() && kubelets.is_empty() {
        return match c.open.is_empty() {
            true => {
                (Status::NotApplicable, "no API server or kubelet runs on the cluster's hosts".to_owned(), evidence)
            }
            false => (
                Status::Error,
                format!("open: no audited host runs an API server or a kubelet, and {}", c.open_text()),
                evidence,
            ),
        };
    }
    if !fails.is_empty() || !broken.is_empty() {
        let mut reason = String::new();
        if !broken.is_empty() {
            reason.push_str(&format!(
                "{} of {} kubelets would fail the API server's verification (kubectl logs, exec and port-forward \
                 break for them once it verifies): {}",
                broken.len(),
                kubelets.len(),
                names(broken.iter().cloned())
            ));
        }
        if !fails.is_empty() {
            if !reason.is_empty() {
                reason.push_str(". ");
            }
            reason.push_str(&names(fails.iter().cloned()));
        }
        reason.push_str(
            ". Fix: serverTLSBootstrap: true on the kubelets, approve their certificate requests, and \
                         --kubelet-certificate-authority set to the CA that signs them",
        );
        return (Status::Fail, reason, evidence);
    }
    if !undecided.is_empty() || !c.open.is_empty() {
        let mut parts: Vec<String> = undecided;
        if !c.open.is_empty() {
            parts.push(format!("hosts of the cluster this scan did not audit: {}", c.open_text()));
        }
        return (Status::Error, format!("cannot be judged: {}", names(parts.into_iter())), evidence);
    }
    (
        Status::Pass,
        format!(
            "all {} kubelets' serving certificates chain to the CA the {} API server{} verif{} kubelets with, cover \
             their nodes and are valid",
            kubelets.len(),
            apis.len(),
            if apis.len() == 1 { "" } else { "s" },
            if apis.len() == 1 { "ies" } else { "y" }
        ),
        evidence,
    )
}

/// Whether `leaf` chains to one of `cas`, directly or through the intermediates its file holds after it (as
/// Go's `x509.Certificate.Verify` builds a chain from the intermediates the TLS peer sends). Signatures, not names,
/// decide.
fn chains(leaf: &Certificate, intermediates: &[Arc<Certificate>], cas: &[Arc<Certificate>]) -> Result<(), String> {
    let mut first_why = None;
    for ca in cas {
        match leaf.signed_by(ca) {
            Ok(()) => return Ok(()),
            Err(why) => {
                first_why.get_or_insert(why);
            }
        }
    }
    for mid in intermediates.iter().filter(|m| m.is_ca) {
        if leaf.signed_by(mid).is_ok() && cas.iter().any(|ca| mid.signed_by(ca).is_ok()) {
            return Ok(());
        }
    }
    let why = first_why.unwrap_or_else(|| "the CA file holds no certificate".to_owned());
    Err(match leaf.self_signed() || leaf.issuer.contains("-ca@") {
        true => format!("self-signed by the kubelet ({}), {why}", leaf.issuer),
        false => why,
    })
}

/// No certificate of `roles` and `class` expired, not yet valid, or expiring within `warn_days`.
fn expiry(
    c: &Cluster<'_>,
    roles: &[String],
    class: CertClass,
    warn_days: u32,
    now: i64,
) -> (Status, String, serde_json::Value) {
    let window = i64::from(warn_days) * 86_400;
    // Each certificate once, with every host and path holding it.
    let mut certs: BTreeMap<&str, (&Certificate, BTreeSet<String>)> = BTreeMap::new();
    let mut undecided = Vec::new();
    for (host, files) in &c.files {
        for f in files.iter().filter(|f| f.roles.iter().any(|r| roles.contains(r))) {
            match &f.certificates {
                Ok(list) => {
                    for cert in list.iter().filter(|x| x.is_ca == (class == CertClass::Ca)) {
                        certs
                            .entry(cert.fingerprint.as_str())
                            .or_insert((cert, BTreeSet::new()))
                            .1
                            .insert(format!("{host}:{}", f.path));
                    }
                }
                // A file absent where the process or the pack's default names one is not a certificate to judge.
                Err(why) if why.starts_with("missing") => {}
                Err(why) => undecided.push(unread(f, why)),
            }
        }
    }
    let mut sorted: Vec<&(&Certificate, BTreeSet<String>)> = certs.values().collect();
    sorted.sort_by_key(|(cert, _)| (cert.not_after, cert.fingerprint.clone()));
    let mut bad = Vec::new();
    let mut json_certs = Vec::new();
    for (cert, at) in &sorted {
        let problem = if cert.not_after < now {
            Some(format!("expired on {}", day(cert.not_after)))
        } else if cert.not_before > now {
            Some(format!("not valid before {}", day(cert.not_before)))
        } else if cert.not_after < now + window {
            Some(format!("expires on {} (in {} days)", day(cert.not_after), (cert.not_after - now) / 86_400))
        } else {
            None
        };
        if let Some(p) = &problem {
            let first = at.iter().next().cloned().unwrap_or_default();
            let more = match at.len() {
                1 => String::new(),
                n => format!(" and {} more places", n - 1),
            };
            bad.push(format!("{} {p}, at {first}{more}", cert.subject));
        }
        json_certs.push(ExpiryCertificate {
            certificate: CertSummary::of(cert),
            at: at.iter().cloned().collect(),
            problem,
        });
    }
    let evidence = to_json(&ExpiryEvidence { warn_days, certificates: json_certs, not_audited: c.open_hosts() });
    if !bad.is_empty() {
        return (
            Status::Fail,
            format!("{} of {} certificates: {}", bad.len(), sorted.len(), names(bad.into_iter())),
            evidence,
        );
    }
    if !undecided.is_empty() || !c.open.is_empty() {
        let mut parts = undecided;
        if !c.open.is_empty() {
            parts.push(format!("hosts of the cluster this scan did not audit: {}", c.open_text()));
        }
        return (Status::Error, format!("cannot be judged: {}", names(parts.into_iter())), evidence);
    }
    match sorted.first() {
        None => (
            Status::NotApplicable,
            "no certificate of this kind among the files the cluster's processes name".to_owned(),
            evidence,
        ),
        Some((first, at)) => (
            Status::Pass,
            format!(
                "{} certificates valid for {} days or more; the first to expire: {} on {} ({})",
                sorted.len(),
                warn_days,
                first.subject,
                day(first.not_after),
                at.iter().next().cloned().unwrap_or_default()
            ),
            evidence,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::x509::parse_pem;
    use crate::rules::RuleSet;
    use crate::sim::pki;

    fn host(name: &str, components: &[&str]) -> ClusterHost {
        ClusterHost {
            name: name.to_owned(),
            cluster: Some("prod".to_owned()),
            address: "127.0.0.1".to_owned(),
            audited: Ok(()),
            components: components.iter().map(|c| c.to_string()).collect(),
            host_rule: Some((Status::Pass, "set".to_owned())),
        }
    }

    fn file(host: &str, path: &str, role: &str, pem: &[u8]) -> CertFile {
        CertFile {
            host: host.to_owned(),
            path: path.to_owned(),
            roles: vec![role.to_owned()],
            certificates: Ok(parse_pem(pem)
                .expect("a generated certificate parses")
                .into_iter()
                .map(Arc::new)
                .collect()),
        }
    }

    /// Three API servers sharing one CA file: each kubelet is checked against that bundle once, and a kubelet
    /// that fails it is named once, with every API server that would refuse it (not three times over).
    #[test]
    fn api_servers_sharing_a_ca_file_judge_each_kubelet_once_and_are_named_together() {
        let ca = pki::generate("ca-certificate", "/etc/kubernetes/pki/ca.crt", 365, String::new).unwrap();
        let good = pki::generate("kubelet-serving", "/var/lib/kubelet/pki/kubelet.crt", 365, String::new).unwrap();
        let own = pki::generate("kubelet-certificate", "/var/lib/kubelet/pki/kubelet.crt", 365, String::new).unwrap();
        let mut inputs = ClusterInputs::default();
        for api in ["cp-a", "cp-b", "cp-c"] {
            inputs.hosts.push(host(api, &["apiserver"]));
            inputs.files.push(file(api, "/etc/kubernetes/pki/ca.crt", "apiserver-kubelet-ca", &ca));
        }
        inputs.hosts.push(host("w-good", &["kubelet"]));
        inputs.files.push(file("w-good", "/var/lib/kubelet/pki/kubelet.crt", "kubelet-serving", &good));
        inputs.hosts.push(host("w-self", &["kubelet"]));
        inputs.files.push(file("w-self", "/var/lib/kubelet/pki/kubelet.crt", "kubelet-serving", &own));
        let members = BTreeMap::from([(
            "prod".to_owned(),
            ["cp-a", "cp-b", "cp-c", "w-good", "w-self"].map(str::to_owned).to_vec(),
        )]);
        let set = RuleSet::embedded().unwrap();
        let findings = judge(&set.cluster_rules, &inputs, &members, crate::model::unix_now());
        let seed = findings.iter().find(|f| f.rule_id == "cluster-kubelet-serving-certificates").unwrap();
        assert_eq!(seed.status, Status::Fail, "{}", seed.reason);
        assert!(seed.reason.starts_with("1 of 2 kubelets would fail"), "{}", seed.reason);
        assert_eq!(seed.reason.matches("not verified with").count(), 1, "{}", seed.reason);
        assert!(
            seed.reason.contains("/etc/kubernetes/pki/ca.crt of the API servers on cp-a; cp-b; cp-c: self-signed"),
            "{}",
            seed.reason
        );
        let evidence: KubeletServingEvidence = serde_json::from_str(seed.evidence.as_deref().unwrap()).unwrap();
        assert_eq!(evidence.api_servers.len(), 3, "each API server keeps its own entry");
        let problems = |h: &str| evidence.kubelets.iter().find(|k| k.host == h).unwrap().problems.clone();
        assert!(problems("w-good").is_empty(), "{:?}", problems("w-good"));
        assert_eq!(problems("w-self").len(), 1, "{:?}", problems("w-self"));
    }
}
