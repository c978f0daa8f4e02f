//! What `scan` gives programs and CI besides the database: `--format json`, `--junit FILE`, `--fail-on`,
//! `--shard K/N`, the progress bar on a terminal, and `check --format json`. Each is checked against the database
//! the same scan wrote. The fleet is the project's russh simulator (src/sim.rs) on 127.0.0.1, plus a port nothing
//! listens on.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use fleetaudit::sim::{self, Behavior, NodeSpec, RunningNode};
use fleetaudit::ssh::known_hosts;
use support::{assert_valid, fleetaudit, on_a_terminal, scan_schema, sqlite, text, write};

/// A process line with markup and quotes in a flag value, as a hostile node could show.
const HOSTILE: &str = "--anonymous-auth=<script>alert(1)</script>&\"'";

const CP: &str = "\"control-plane\", \"etcd\"";

/// (name, cluster, profile, roles)
const NODES: &[(&str, Option<&str>, &str, &str)] = &[
    ("cp-default", Some("prod"), "kubeadm-default", CP),
    ("cp-hardened", Some("prod"), "kubeadm-hardened", CP),
    ("appliance", Some("edge"), "busybox", "\"control-plane\""),
    ("lonely-worker", None, "worker", "\"worker\""),
];

/// The simulated fleet and an inventory for it (plus `down`, a host nothing answers on); the nodes stop when
/// this is dropped.
struct Fleet {
    dir: tempfile::TempDir,
    inventory: PathBuf,
    db: PathBuf,
    _nodes: Vec<RunningNode>,
    _rt: tokio::runtime::Runtime,
}

impl Fleet {
    fn start(latency: Duration) -> Fleet {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let client = sim::generate_key("client").unwrap();
        let key = d.join("id_ed25519");
        write(&key, &sim::private_key_text(&client));
        let specs = NODES
            .iter()
            .map(|(name, _, profile, _)| {
                let mut table = sim::profile(profile).unwrap().to_owned();
                if *name == "cp-default" {
                    table = table.replacen("kube-apiserver ", &format!("kube-apiserver {HOSTILE} "), 1);
                }
                NodeSpec {
                    name: (*name).into(),
                    table: Arc::new(table.into_bytes()),
                    behavior: Behavior::Normal,
                    latency,
                }
            })
            .collect();
        let nodes = rt.block_on(sim::start(specs, vec![client.public_key().clone()])).unwrap();
        let down = support::free_port();
        let db = d.join("history.db");
        let mut known = String::new();
        let mut inv = format!(
            "[defaults]\nuser = \"audit\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\ndatabase = \"{}\"\n\
             report_dir = \"{}\"\nconnect_timeout = \"3s\"\ncommand_timeout = \"10s\"\n\n\
             [[clusters]]\nname = \"prod\"\n\n[[clusters]]\nname = \"edge\"\n",
            key.display(),
            d.join("known_hosts").display(),
            db.display(),
            d.join("report").display()
        );
        for (node, (name, cluster, _, roles)) in nodes.iter().zip(NODES) {
            known += &(known_hosts::line_for("127.0.0.1", node.addr.port(), &node.host_key) + "\n");
            inv += &host(name, *cluster, node.addr.port(), roles);
        }
        inv += &host("down", Some("prod"), down, CP);
        write(&d.join("known_hosts"), &known);
        let inventory = d.join("inventory.toml");
        write(&inventory, &inv);
        Fleet { dir, inventory, db, _nodes: nodes, _rt: rt }
    }

    fn inv(&self) -> &str {
        self.inventory.to_str().unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn host(name: &str, cluster: Option<&str>, port: u16, roles: &str) -> String {
    let cluster = cluster.map(|c| format!("cluster = \"{c}\"\n")).unwrap_or_default();
    format!("\n[[hosts]]\nname = \"{name}\"\n{cluster}address = \"127.0.0.1\"\nport = {port}\nroles = [{roles}]\n")
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or_else(|| panic!("killed by a signal: {}", text(&out.stderr)))
}

/// (host, rule, status) of every verdict of a scan, from the database's `findings` view.
fn db_verdicts(db: &Path, scan_id: i64) -> BTreeSet<(String, String, String)> {
    sqlite(db, &format!("SELECT host, rule_id, status FROM findings WHERE scan_id = {scan_id}"))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
        })
        .collect()
}

fn db_counts(db: &Path, scan_id: i64, filter: &str) -> BTreeMap<String, usize> {
    sqlite(db, &format!("SELECT status, count(*) FROM findings WHERE scan_id = {scan_id} {filter} GROUP BY status"))
        .lines()
        .map(|l| {
            let (s, n) = l.split_once('|').unwrap();
            (s.to_owned(), n.parse().unwrap())
        })
        .collect()
}

/// The cluster verdicts' counts by status, from the database's `cluster_findings` view.
fn db_cluster_counts(db: &Path, scan_id: i64, filter: &str) -> BTreeMap<String, usize> {
    sqlite(
        db,
        &format!("SELECT status, count(*) FROM cluster_findings WHERE scan_id = {scan_id} {filter} GROUP BY status"),
    )
    .lines()
    .map(|l| {
        let (s, n) = l.split_once('|').unwrap();
        (s.to_owned(), n.parse().unwrap())
    })
    .collect()
}

fn sum(a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    let mut out = a.clone();
    for (k, v) in b {
        *out.entry(k.clone()).or_default() += v;
    }
    out
}

#[test]
fn json_and_junit_say_what_the_database_says() {
    let fleet = Fleet::start(Duration::ZERO);
    let junit = fleet.path("junit.xml");
    let out = fleetaudit(&["scan", "-i", fleet.inv(), "--format", "json", "--junit", junit.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "a host is down: {}", text(&out.stderr));
    // ONE JSON document on stdout, nothing else, and the schema in the repository describes it.
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(doc["format_version"], 2);
    assert_valid(&doc);
    let db = &fleet.db;
    let scan_id: i64 = sqlite(db, "SELECT max(id) FROM scans").trim().parse().unwrap();
    assert_eq!(doc["scan"]["id"], scan_id);
    assert_eq!(doc["scan"]["status"], "complete");
    assert_eq!(doc["scan"]["interrupted"], false);
    assert_eq!(doc["scan"]["inventory"].as_str().unwrap(), fleet.inv());
    assert_eq!(doc["scan"]["rules_version"].as_str().unwrap(), sqlite(db, "SELECT rules_version FROM scans").trim());
    assert!(doc["scan"]["elapsed_seconds"].as_f64().unwrap() >= 0.0);

    // Hosts: every one, with its outcome; the down host with its error kind.
    let hosts = doc["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), NODES.len() + 1);
    let down = hosts.iter().find(|h| h["name"] == "down").unwrap();
    assert_eq!(down["outcome"], "error");
    assert_eq!(down["error"]["kind"], "unreachable");
    assert!(down["host_key_fingerprint"].is_null());
    let cp = hosts.iter().find(|h| h["name"] == "cp-default").unwrap();
    assert_eq!(cp["outcome"], "audited");
    assert_eq!(cp["cluster"], "prod");
    let fp = sqlite(db, "SELECT host_key_fingerprint FROM host_status WHERE host = 'cp-default'");
    assert_eq!(cp["host_key_fingerprint"].as_str().unwrap(), fp.trim());
    assert!(hosts.iter().find(|h| h["name"] == "lonely-worker").unwrap()["cluster"].is_null());
    // Files: each audited host's, as the database's host_files has them (no contents); none for the down host.
    for h in hosts.iter().filter(|h| h["outcome"] == "audited") {
        let name = h["name"].as_str().unwrap();
        let stored = sqlite(
            db,
            &format!(
                "SELECT path, coalesce(permissions, ''), coalesce(owner, ''), coalesce(problem, '') FROM host_files
                  WHERE scan_id = {scan_id} AND host = '{name}' ORDER BY path"
            ),
        );
        let files = h["files"].as_array().unwrap_or_else(|| panic!("{name} has files: {h}"));
        let from_json: String = files
            .iter()
            .map(|f| {
                let s = |k: &str| f[k].as_str().unwrap_or("").to_owned();
                format!("{}|{}|{}|{}\n", s("path"), s("permissions"), s("owner"), s("problem"))
            })
            .collect();
        assert_eq!(from_json, stored, "{name}");
        assert!(files.iter().all(|f| f.get("content").is_none()), "{name}: no contents in the JSON");
        assert_eq!(h["file_changes"], serde_json::json!([]), "{name}: the first scan has nothing to compare with");
    }
    assert!(!cp["files"].as_array().unwrap().is_empty(), "the kubeadm node's files were read: {cp}");
    assert!(down["files"].is_null());

    // Findings: each distinct verdict once with its hosts; one object per host and rule again (as the README's
    // jq `{host: .hosts[], ...}` makes them), exactly the database's verdicts, and its counts.
    let shared = doc["findings"].as_array().unwrap();
    let distinct: BTreeSet<String> =
        shared.iter().map(|f| format!("{}|{}|{}|{}", f["rule_id"], f["status"], f["reason"], f["evidence"])).collect();
    assert_eq!(distinct.len(), shared.len(), "each distinct verdict once");
    let findings: Vec<serde_json::Value> = shared
        .iter()
        .flat_map(|f| {
            f["hosts"].as_array().unwrap().iter().map(move |h| {
                let mut one = f.clone();
                one.as_object_mut().unwrap().remove("hosts");
                one["host"] = h.clone();
                one
            })
        })
        .collect();
    // (These five hosts differ; the report bench's 10,000 share a few hundred verdicts.)
    assert!(findings.len() > shared.len(), "some hosts share a verdict: {} for {}", shared.len(), findings.len());
    let findings = &findings;
    let from_json: BTreeSet<(String, String, String)> = findings
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap().to_owned();
            (s("host"), s("rule_id"), s("status"))
        })
        .collect();
    assert_eq!(from_json.len(), findings.len(), "one finding per host and rule");
    assert_eq!(from_json, db_verdicts(db, scan_id));
    let counts = db_counts(db, scan_id, "");
    for status in ["pass", "fail", "error", "not_applicable"] {
        assert_eq!(doc["summary"][status].as_u64().unwrap() as usize, counts.get(status).copied().unwrap_or(0));
    }
    assert_eq!(doc["summary"]["not_audited"], 1);
    // The Automated checks' own counts, and each finding's assessment, as the database's views have them.
    let automated = db_counts(db, scan_id, "AND assessment = 'automated'");
    for status in ["pass", "fail", "error", "not_applicable"] {
        let n = doc["summary"]["automated"][status].as_u64().unwrap() as usize;
        assert_eq!(n, automated.get(status).copied().unwrap_or(0), "automated {status}");
    }
    assert!(doc["summary"]["automated"]["fail"].as_u64() < doc["summary"]["fail"].as_u64(), "manual failures exist");
    let rules = doc["rules"].as_object().unwrap();
    assert_eq!(rules["apiserver-anonymous-auth"]["assessment"], "manual");

    // References resolve: every finding's host, rule and evidence is in the document, each rule's texts and each
    // evidence document are there once, and nothing is there that no finding refers to.
    let host_names: BTreeSet<&str> = hosts.iter().map(|h| h["name"].as_str().unwrap()).collect();
    let evidence_docs = doc["evidence"].as_object().unwrap();
    let mut referred = BTreeSet::new();
    for f in findings {
        assert!(host_names.contains(f["host"].as_str().unwrap()), "{f}");
        assert!(rules.contains_key(f["rule_id"].as_str().unwrap()), "{f}");
        if let Some(id) = f["evidence"].as_str() {
            assert!(evidence_docs.contains_key(id), "{f}");
            referred.insert(id);
        }
    }
    assert_eq!(referred, evidence_docs.keys().map(String::as_str).collect(), "no evidence nothing refers to");
    let rule_ids: BTreeSet<String> =
        sqlite(db, "SELECT DISTINCT rule_id FROM findings").lines().map(str::to_owned).collect();
    assert_eq!(rules.keys().cloned().collect::<BTreeSet<_>>(), rule_ids);

    // The reference rule fails on the kubeadm default node: evidence (redacted as stored) and remediation.
    let rule = "apiserver-kubelet-certificate-authority";
    let f = findings.iter().find(|f| f["host"] == "cp-default" && f["rule_id"] == rule).unwrap();
    assert_eq!(f["status"], "fail");
    assert_eq!(rules[rule]["cis"], "1.2.5");
    let severity = sqlite(db, &format!("SELECT severity FROM rules WHERE rule_id = '{rule}'"));
    assert_eq!(rules[rule]["severity"], severity.trim());
    let remediation = sqlite(db, &format!("SELECT remediation FROM rules WHERE rule_id = '{rule}'"));
    assert_eq!(rules[rule]["remediation"].as_str().unwrap(), remediation.trim_end_matches('\n'));
    let evidence =
        sqlite(db, &format!("SELECT evidence FROM findings WHERE host = 'cp-default' AND rule_id = '{rule}'"));
    let stored: serde_json::Value = serde_json::from_str(evidence.trim()).unwrap();
    let shown = &evidence_docs[f["evidence"].as_str().unwrap()];
    assert_eq!(*shown, stored);
    assert!(shown[0]["cmdline"].as_str().unwrap().contains(HOSTILE));
    let unreachable = findings.iter().filter(|f| f["host"] == "down").collect::<Vec<_>>();
    assert!(!unreachable.is_empty());
    assert!(unreachable.iter().all(|f| f["status"] == "error"
        && f["reason"].as_str().unwrap().starts_with("unreachable: ")
        && f["evidence"].is_null()));

    // Cluster verdicts: each of the database's, with its stored evidence; prod's down host leaves them open.
    let stored: BTreeSet<String> = sqlite(
        db,
        &format!("SELECT cluster || '|' || rule_id || '|' || status || '|' || evidence FROM cluster_findings WHERE scan_id = {scan_id}"),
    )
    .lines()
    .map(str::to_owned)
    .collect();
    let clusters = doc["cluster_findings"].as_array().unwrap();
    let from_json: BTreeSet<String> = clusters
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap().to_owned();
            format!("{}|{}|{}|{}", s("cluster"), s("rule_id"), s("status"), c["evidence"])
        })
        .collect();
    assert!(!stored.is_empty(), "the scan judged its clusters");
    assert_eq!(from_json, stored);
    let seed = clusters
        .iter()
        .find(|c| c["cluster"] == "prod" && c["rule_id"] == "cluster-kubelet-serving-certificates")
        .unwrap();
    assert_ne!(seed["status"], "pass", "a host of prod is down: {seed}");
    assert_eq!(seed["cis"], "1.2.5");
    assert!(seed["evidence"]["not_audited"].as_array().unwrap().iter().any(|h| h["host"] == "down"), "{seed}");

    // JUnit: well-formed, counts equal the database's, overall and per cluster (host and cluster verdicts).
    let counts = sum(&counts, &db_cluster_counts(db, scan_id, ""));
    let xml = std::fs::read_to_string(&junit).unwrap();
    let parsed = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let root = parsed.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let attr =
        |n: roxmltree::Node, a: &str| n.attribute(a).unwrap_or_else(|| panic!("no {a}")).parse::<usize>().unwrap();
    let total: usize = counts.values().sum();
    assert_eq!(attr(root, "tests"), total);
    assert_eq!(attr(root, "failures"), counts.get("fail").copied().unwrap_or(0));
    assert_eq!(attr(root, "errors"), counts.get("error").copied().unwrap_or(0));
    assert_eq!(attr(root, "skipped"), counts.get("not_applicable").copied().unwrap_or(0));
    let suites: Vec<roxmltree::Node> = root.children().filter(|n| n.has_tag_name("testsuite")).collect();
    let names: Vec<&str> = suites.iter().map(|s| s.attribute("name").unwrap()).collect();
    assert_eq!(names, ["(no cluster)", "edge", "prod"]);
    for suite in &suites {
        let name = suite.attribute("name").unwrap();
        let filter = match name {
            "(no cluster)" => "AND cluster IS NULL".to_owned(),
            c => format!("AND cluster = '{c}'"),
        };
        let c = match name {
            "(no cluster)" => db_counts(db, scan_id, &filter),
            _ => sum(&db_counts(db, scan_id, &filter), &db_cluster_counts(db, scan_id, &filter)),
        };
        let cases: Vec<roxmltree::Node> = suite.children().filter(|n| n.has_tag_name("testcase")).collect();
        let with = |tag: &str| cases.iter().filter(|c| c.children().any(|n| n.has_tag_name(tag))).count();
        assert_eq!(attr(*suite, "tests"), cases.len(), "{name}");
        let stamp = suite.attribute("timestamp").unwrap();
        assert!(stamp.len() == 19 && stamp.contains('T') && !stamp.ends_with('Z'), "{stamp}");
        assert_eq!(cases.len(), c.values().sum::<usize>(), "{name}");
        assert_eq!(
            (attr(*suite, "failures"), with("failure")),
            (c.get("fail").copied().unwrap_or(0), c.get("fail").copied().unwrap_or(0)),
            "{name}"
        );
        assert_eq!(
            (attr(*suite, "errors"), with("error")),
            (c.get("error").copied().unwrap_or(0), c.get("error").copied().unwrap_or(0)),
            "{name}"
        );
        assert_eq!(attr(*suite, "skipped"), with("skipped"), "{name}");
        assert_eq!(with("skipped"), c.get("not_applicable").copied().unwrap_or(0), "{name}");
    }
    let case = |host: &str, rule: &str| {
        parsed
            .descendants()
            .find(|n| {
                n.has_tag_name("testcase")
                    && n.attribute("name") == Some(host)
                    && n.attribute("classname").is_some_and(|c| c.ends_with(rule))
            })
            .unwrap_or_else(|| panic!("no test case {host} {rule}"))
    };
    // A cluster verdict is a test case of its cluster's suite, named for the whole cluster.
    let seed_case = parsed
        .descendants()
        .find(|n| n.attribute("classname") == Some("prod.cluster-kubelet-serving-certificates"))
        .expect("a test case of prod's seed rule");
    assert_eq!(seed_case.attribute("name"), Some("(cluster)"));
    let outcome = seed_case.children().find(|n| n.is_element()).map(|n| n.tag_name().name());
    assert_eq!(outcome, Some(if seed["status"] == "fail" { "failure" } else { "error" }), "{seed}");
    let failing = case("cp-default", rule);
    assert_eq!(failing.attribute("classname"), Some(format!("prod.{rule}").as_str()));
    let failure = failing.children().find(|n| n.has_tag_name("failure")).unwrap();
    let body = failure.text().unwrap();
    assert!(body.contains(remediation.trim()), "remediation in the body:\n{body}");
    assert!(body.contains(HOSTILE), "the hostile line survives escaping as text:\n{body}");
    assert!(!xml.contains("<script>"), "markup from a host is escaped");
    let error = case("down", rule).children().find(|n| n.has_tag_name("error")).unwrap();
    assert_eq!(error.attribute("type"), Some("unreachable"));
    assert!(error.attribute("message").unwrap().starts_with("unreachable: "));
    assert!(case("lonely-worker", "etcd-client-cert-auth").children().any(|n| n.has_tag_name("skipped")));
    let passing = case("cp-hardened", rule);
    let elements: Vec<&str> = passing.children().filter(|n| n.is_element()).map(|n| n.tag_name().name()).collect();
    assert_eq!(elements, ["properties"], "a pass holds only its properties");
    // Each test case carries the rule's CIS assessment, as the database has it.
    let assessment = |host: &str, rule: &str| {
        case(host, rule).descendants().find(|n| n.has_tag_name("property")).and_then(|p| p.attribute("value"))
    };
    assert_eq!(assessment("cp-hardened", rule), Some("automated"));
    assert_eq!(assessment("cp-default", "apiserver-anonymous-auth"), Some("manual"));
    assert_eq!(
        sqlite(db, "SELECT DISTINCT assessment FROM findings WHERE rule_id = 'apiserver-anonymous-auth'"),
        "manual\n"
    );

    // `check --format json` reaches the same hosts.
    let out = fleetaudit(&["check", "-i", fleet.inv(), "--format", "json"]);
    assert_eq!(code(&out), 2);
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!((check["reachable"].as_u64(), check["unreachable"].as_u64()), (Some(NODES.len() as u64), Some(1)));
    let probes = check["hosts"].as_array().unwrap();
    let down = probes.iter().find(|h| h["name"] == "down").unwrap();
    assert_eq!(down["reachable"], false);
    assert_eq!(down["error"]["kind"], "unreachable");
    let cp = probes.iter().find(|h| h["name"] == "cp-default").unwrap();
    assert_eq!(cp["host_key_fingerprint"].as_str().unwrap(), fp.trim());

    // A JUnit file in a directory that does not exist is refused before any scan.
    let scans = sqlite(db, "SELECT count(*) FROM scans");
    let out = fleetaudit(&["scan", "-i", fleet.inv(), "--junit", "/nonexistent/dir/j.xml"]);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("/nonexistent/dir"), "{}", text(&out.stderr));
    assert_eq!(sqlite(db, "SELECT count(*) FROM scans"), scans);
    // --quiet and --format json ask for opposite things.
    assert_eq!(code(&fleetaudit(&["scan", "-i", fleet.inv(), "--quiet", "--format", "json"])), 3);

    // The README's jq examples, run as typed (in the directory of an inventory.toml, with fleetaudit on PATH).
    let examples = readme_jq_examples();
    assert!(examples.len() >= 3, "{examples:?}");
    let mut said = String::new();
    for example in &examples {
        let out = as_typed(&fleet, example);
        assert!(out.status.success(), "{example}\n{}", text(&out.stderr));
        assert!(!text(&out.stderr).contains("jq: error"), "{example}\n{}", text(&out.stderr));
        said += &text(&out.stdout);
    }
    assert!(said.contains(&format!("cp-default {rule} {}\n", severity.trim())), "{said}");
    assert!(said.contains("down unreachable\n"), "{said}");
    assert!(said.contains("kube-apiserver "), "a failure's command line: {said}");
}

/// The README's `fleetaudit scan ... | jq ...` lines of the Outputs section.
fn readme_jq_examples() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let outputs = &readme[readme.find("\n## Outputs\n").unwrap()..];
    let outputs = &outputs[..outputs[1..].find("\n## ").unwrap()];
    outputs
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("fleetaudit scan ") && l.contains("| jq "))
        .map(str::to_owned)
        .collect()
}

/// Runs a README command line with sh in the fleet's directory, this build's fleetaudit first on PATH.
fn as_typed(fleet: &Fleet, line: &str) -> Output {
    support::need("jq", "jq");
    let bin = Path::new(env!("CARGO_BIN_EXE_fleetaudit")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    Command::new("sh").arg("-c").arg(line).current_dir(fleet.dir.path()).env("PATH", path).output().unwrap()
}

#[test]
fn the_schema_rejects_what_it_does_not_describe() {
    // A small document as the scan writes it, then broken one way at a time: each must be refused.
    let valid = serde_json::json!({
        "format_version": 2,
        "scan": { "id": 1, "started_at": "2026-12-02T10:00:00.000Z", "finished_at": "2026-12-02T10:00:01.000Z",
                  "status": "complete", "interrupted": false, "elapsed_seconds": 1.0, "inventory": "inv.toml",
                  "rules_version": "cis@1", "fleetaudit_version": "0.1.0", "hosts_total": 1 },
        "summary": { "hosts": 1, "audited": 1, "not_audited": 0, "pass": 0, "fail": 1, "error": 0,
                     "not_applicable": 0, "automated": { "pass": 0, "fail": 1, "error": 0, "not_applicable": 0 } },
        "rules": { "r1": { "cis": "1.2.5", "title": "T", "component": "apiserver", "severity": "high",
                           "assessment": "automated", "test": "t", "rationale": "why", "remediation": "fix" } },
        "hosts": [ { "name": "h", "cluster": null, "address": "10.0.0.1", "port": 22, "roles": ["control-plane"],
                     "outcome": "audited", "error": null, "started_at": "2026-12-02T10:00:00.000Z",
                     "duration_ms": 5, "host_key_fingerprint": "SHA256:x", "host_certificate": null,
                     "ps_format": "ps -ef", "processes": 3,
                     "summary": { "pass": 0, "fail": 1, "error": 0, "not_applicable": 0 },
                     "files": [ { "path": "/etc/x", "problem": "denied", "problem_message": "no" } ],
                     "file_changes": [] } ],
        "evidence": { "7": [ { "pid": 1, "user": "root", "cmdline": "kube-apiserver" } ] },
        "findings": [ { "rule_id": "r1", "status": "fail", "reason": "r", "evidence": "7", "hosts": ["h"] } ],
        "cluster_findings": [ { "cluster": "c", "rule_id": "cluster-kubelet-serving-certificates", "cis": "1.2.5",
                                "title": "T", "severity": "high", "status": "fail", "reason": "r",
                                "evidence": { "api_servers": [ { "host": "h", "kubelet_certificate_authority": null } ],
                                              "kubelets": [], "not_audited": [] } } ]
    });
    let schema = scan_schema();
    assert!(schema.is_valid(&valid), "{:?}", schema.iter_errors(&valid).map(|e| e.to_string()).collect::<Vec<_>>());
    type Breaks = fn(&mut serde_json::Value);
    let broken: Vec<(&str, Breaks)> = vec![
        ("an unknown status", |d| d["findings"][0]["status"] = "failed".into()),
        ("a finding with the rule's texts again", |d| d["findings"][0]["title"] = "T".into()),
        ("evidence inline", |d| d["findings"][0]["evidence"] = serde_json::json!([{ "pid": 1 }])),
        ("a finding without hosts", |d| d["findings"][0]["hosts"] = serde_json::json!([])),
        ("a finding of one host in the version 1 shape", |d| {
            d["findings"][0].as_object_mut().unwrap().remove("hosts");
            d["findings"][0]["host"] = "h".into();
        }),
        ("another format version", |d| d["format_version"] = 1.into()),
        ("no format version", |d| drop(d.as_object_mut().unwrap().remove("format_version"))),
        ("an unknown severity", |d| d["rules"]["r1"]["severity"] = "severe".into()),
        ("an unknown assessment", |d| d["rules"]["r1"]["assessment"] = "both".into()),
        ("an unknown outcome", |d| d["hosts"][0]["outcome"] = "skipped".into()),
        ("an unaudited host without its error", |d| d["hosts"][0]["outcome"] = "error".into()),
        ("a file both read and not", |d| d["hosts"][0]["files"][0]["kind"] = "file".into()),
        ("a negative count", |d| d["summary"]["fail"] = (-1).into()),
        ("no cluster verdicts", |d| drop(d.as_object_mut().unwrap().remove("cluster_findings"))),
        ("a cluster verdict with an unknown status", |d| d["cluster_findings"][0]["status"] = "open".into()),
        ("a cluster verdict without its cluster", |d| {
            drop(d["cluster_findings"][0].as_object_mut().unwrap().remove("cluster"))
        }),
        ("seed evidence with an unknown key", |d| d["cluster_findings"][0]["evidence"]["nodes"] = 1.into()),
        ("an evidence id that is no number", |d| {
            let e = d["evidence"].as_object_mut().unwrap().remove("7").unwrap();
            d["evidence"]["seven"] = e;
        }),
    ];
    for (what, breaks) in broken {
        let mut doc = valid.clone();
        breaks(&mut doc);
        assert!(!schema.is_valid(&doc), "the schema accepts {what}: {doc}");
    }
}

#[test]
fn fail_on_chooses_what_exits_non_zero() {
    let fleet = Fleet::start(Duration::ZERO);
    let inv = fleet.inv();
    // The whole fleet: failures, unjudgeable rules and a host that is down.
    for (policy, expected) in [(None, 2), (Some("fail"), 2), (Some("error"), 2), (Some("never"), 0)] {
        let mut args = vec!["scan", "-i", inv, "--quiet"];
        args.extend(policy.iter().flat_map(|p| ["--fail-on", *p]));
        assert_eq!(code(&fleetaudit(&args)), expected, "{policy:?}");
    }
    // The busybox appliance: failures and nothing unjudged.
    let only = fleetaudit(&["scan", "-i", inv, "--only", "appliance", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&only.stdout).unwrap();
    assert!(doc["summary"]["fail"].as_u64().unwrap() > 0 && doc["summary"]["error"] == 0, "{}", doc["summary"]);
    for (policy, expected) in [("fail", 1), ("error", 0), ("never", 0)] {
        let out = fleetaudit(&["scan", "-i", inv, "--only", "appliance", "--quiet", "--fail-on", policy]);
        assert_eq!(code(&out), expected, "{policy}");
    }
    // Bad input and a held lock keep their codes under `never`.
    let out = fleetaudit(&["scan", "-i", inv, "--only", "no-such-host", "--fail-on", "never"]);
    assert_eq!(code(&out), 3);
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(fleet.path("history.db.lock"))
        .unwrap();
    lock.lock().unwrap();
    let out = fleetaudit(&["scan", "-i", inv, "--fail-on", "never"]);
    assert_eq!(code(&out), 4, "{}", text(&out.stderr));
    drop(lock);
}

/// The host names a scan recorded.
fn scanned(db: &Path, scan_id: i64) -> BTreeSet<String> {
    sqlite(
        db,
        &format!("SELECT h.name FROM scan_hosts sh JOIN hosts h ON h.id = sh.host_id WHERE sh.scan_id = {scan_id}"),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn shards_cover_the_fleet_once_and_stay_put() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Connections to a port nothing listens on are refused at once: each host is recorded as unreachable.
    let port = support::free_port();
    let inventory = |names: &[String], path: &Path| {
        let mut inv = format!(
            "[defaults]\nuser = \"audit\"\nknown_hosts = \"{}\"\nreport_dir = \"{}\"\n",
            d.join("kh").display(),
            d.join("report").display()
        );
        for n in names {
            inv += &format!("\n[[hosts]]\nname = \"{n}\"\naddress = \"127.0.0.1\"\nport = {port}\n");
        }
        write(path, &inv);
    };
    write(&d.join("kh"), "");
    let fleet: Vec<String> = (1..=50).map(|i| format!("node-{i:02}.example.com")).collect();
    let bigger: Vec<String> = fleet.iter().cloned().chain((1..=15).map(|i| format!("new-{i}"))).collect();
    let (small_inv, big_inv) = (d.join("small.toml"), d.join("big.toml"));
    inventory(&fleet, &small_inv);
    inventory(&bigger, &big_inv);
    let db = d.join("shards.db");
    let mut scan_id = 0;
    let mut scan = |inv: &Path, shard: &str| {
        let out = fleetaudit(&[
            "scan",
            "-i",
            inv.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
            "--shard",
            shard,
            "--quiet",
        ]);
        assert_eq!(code(&out), 2, "{shard}: {}", text(&out.stderr));
        scan_id += 1;
        scan_id
    };
    let all: BTreeSet<String> = fleet.iter().cloned().collect();
    for n in 1..=5 {
        let mut union = BTreeSet::new();
        let mut sizes = Vec::new();
        for k in 1..=n {
            let id = scan(&small_inv, &format!("{k}/{n}"));
            let slice = scanned(&db, id);
            assert!(union.is_disjoint(&slice), "{k}/{n} overlaps an earlier slice");
            union.extend(slice.iter().cloned());
            sizes.push(slice.len());
            // The slice of the same shard of a larger inventory holds the same old hosts.
            let id = scan(&big_inv, &format!("{k}/{n}"));
            let grown = scanned(&db, id);
            assert_eq!(grown.intersection(&all).cloned().collect::<BTreeSet<_>>(), slice, "{k}/{n} moved hosts");
            let inv_label = sqlite(&db, &format!("SELECT inventory FROM scans WHERE id = {id}"));
            assert!(inv_label.trim().ends_with(&format!("[shard {k}/{n}]")), "{inv_label}");
        }
        assert_eq!(union, all, "the {n} slices cover every host");
        if n > 1 {
            assert!(sizes.iter().all(|&s| s < fleet.len()), "{n} slices: {sizes:?}");
        }
    }
    // --only and --shard both apply.
    let only: Vec<&str> = fleet[..10].iter().map(String::as_str).collect();
    let mut union = BTreeSet::new();
    for k in 1..=2 {
        let mut args = vec!["scan", "-i", small_inv.to_str().unwrap(), "--db", db.to_str().unwrap(), "--quiet"];
        let shard = format!("{k}/2");
        args.extend(["--shard", &shard, "--only"]);
        args.extend(&only);
        fleetaudit(&args);
        scan_id += 1;
        let slice = scanned(&db, scan_id);
        assert!(slice.is_disjoint(&union));
        union.extend(slice);
    }
    assert_eq!(union, only.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
}

/// Whether `s` holds an SGR (colour) escape sequence: ESC [ digits/semicolons m.
fn has_sgr(s: &str) -> bool {
    s.match_indices("\x1b[").any(|(i, _)| {
        let rest = &s[i + 2..];
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == ';')).unwrap_or(rest.len());
        rest[end..].starts_with('m')
    })
}

#[test]
fn a_progress_bar_only_on_a_terminal() {
    // Some latency so the bar has something to show; nothing here depends on timing.
    let fleet = Fleet::start(Duration::from_millis(150));
    let bin = env!("CARGO_BIN_EXE_fleetaudit");
    let scan = format!("{bin} scan -i {} --concurrency 2", fleet.inv());
    let bar = format!("/{} hosts", NODES.len() + 1);

    let (code, tty) = on_a_terminal(&scan, &[("NO_COLOR", Some("1"))]);
    assert_eq!(code, 2, "{tty}");
    assert!(tty.contains(&bar), "a bar on a terminal:\n{tty:?}");
    assert!(tty.contains("not audited"), "{tty:?}");
    assert!(!has_sgr(&tty), "NO_COLOR: no colour at all:\n{tty:?}");

    let (_, coloured) = on_a_terminal(&scan, &[("NO_COLOR", None)]);
    assert!(coloured.contains("\x1b[31;1mFAIL"), "a terminal without NO_COLOR gets colour:\n{coloured:?}");
    let (_, empty) = on_a_terminal(&scan, &[("NO_COLOR", Some(""))]);
    assert!(has_sgr(&empty), "an empty NO_COLOR does not disable colour (no-color.org)");

    let (_, quiet) = on_a_terminal(&format!("{scan} --quiet"), &[]);
    assert!(!quiet.contains(&bar), "--quiet: no bar:\n{quiet:?}");
    let (_, json) = on_a_terminal(&format!("{scan} --format json"), &[]);
    assert!(!json.contains(&bar), "--format json: no bar:\n{json:?}");

    // Pipes (cron, CI): no bar, no colour.
    let out = Command::new(bin)
        .args(["scan", "-i", fleet.inv()])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!stderr.contains(&bar) && !stdout.contains(&bar), "{stderr}");
    assert!(!has_sgr(&stdout) && !has_sgr(&stderr), "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn sarif_says_what_the_database_says() {
    let fleet = Fleet::start(Duration::ZERO);
    let out = fleetaudit(&["scan", "-i", fleet.inv(), "--format", "sarif"]);
    assert_eq!(code(&out), 2, "a host is down: {}", text(&out.stderr));
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    let db = &fleet.db;
    let scan_id: i64 = sqlite(db, "SELECT max(id) FROM scans").trim().parse().unwrap();
    assert_eq!(log["version"], "2.1.0");
    assert_eq!(log["$schema"], "https://json.schemastore.org/sarif-2.1.0.json");
    let runs = log["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["automationDetails"]["id"], format!("fleetaudit/scan/{scan_id}"));
    assert_eq!(run["invocations"][0]["executionSuccessful"], true);

    // The driver's rules: the scan's rule set, with the database's texts.
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "fleetaudit");
    let rules = driver["rules"].as_array().unwrap();
    let stored = sqlite(
        db,
        "SELECT rule_id, title, severity, cis, replace(remediation, char(10), '\\n') FROM rules
          WHERE rules_version = (SELECT rules_version FROM scans ORDER BY id DESC LIMIT 1) ORDER BY rule_id",
    );
    let from_sarif: String = rules
        .iter()
        .map(|r| {
            let help = r["help"]["text"].as_str().unwrap_or("").replace('\n', "\\n");
            let (title, props) = (&r["shortDescription"]["text"], &r["properties"]);
            format!(
                "{}|{}|{}|{}|{help}\n",
                r["id"].as_str().unwrap(),
                title.as_str().unwrap(),
                props["severity"].as_str().unwrap(),
                props["cis"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(from_sarif.trim_end(), stored.trim_end());
    for r in rules {
        let level = match r["properties"]["severity"].as_str().unwrap() {
            "critical" | "high" => "error",
            _ => "warning",
        };
        assert_eq!(r["defaultConfiguration"]["level"], level, "{r}");
    }

    // Results: a failed rule is `fail` at its severity's level, one that could not be judged is `open` (level
    // `none`, as SARIF requires for any kind but `fail`); passes and rules that do not apply are left out.
    let results = run["results"].as_array().unwrap();
    let counts = db_counts(db, scan_id, "");
    let of_kind = |k: &str| results.iter().filter(|r| r["kind"] == k).count();
    assert_eq!(of_kind("fail"), counts["fail"]);
    assert_eq!(of_kind("open"), counts["error"]);
    assert_eq!(results.len(), counts["fail"] + counts["error"]);
    let hosts: BTreeSet<&str> = NODES.iter().map(|n| n.0).chain(["down"]).collect();
    let mut verdicts = BTreeSet::new();
    for r in results {
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], r["ruleId"], "{r}");
        let expected = match r["kind"].as_str().unwrap() {
            "fail" => rules[index]["defaultConfiguration"]["level"].as_str().unwrap(),
            _ => "none",
        };
        assert_eq!(r["level"], expected, "{r}");
        assert!(!r["message"]["text"].as_str().unwrap().is_empty(), "{r}");
        let location = &r["locations"][0];
        let host = location["logicalLocations"][0]["name"].as_str().unwrap();
        assert!(hosts.contains(host), "{r}");
        let uri = location["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap();
        assert!(uri.starts_with("ssh://127.0.0.1:") && uri.ends_with('/'), "{uri}");
        let status = if r["kind"] == "fail" { "fail" } else { "error" };
        verdicts.insert((host.to_owned(), r["ruleId"].as_str().unwrap().to_owned(), status.to_owned()));
    }
    let problems: BTreeSet<_> =
        db_verdicts(db, scan_id).into_iter().filter(|v| v.2 == "fail" || v.2 == "error").collect();
    assert_eq!(verdicts, problems, "one result per failed or unjudged (host, rule), as the database has them");
    let down = results.iter().find(|r| r["locations"][0]["logicalLocations"][0]["name"] == "down").unwrap();
    assert!(down["message"]["text"].as_str().unwrap().starts_with("unreachable: "), "{down}");
    let fqn = &down["locations"][0]["logicalLocations"][0]["fullyQualifiedName"];
    assert_eq!(fqn, "prod/down");

    // SARIF is the scan's alone: other commands refuse it.
    let out = fleetaudit(&["check", "-i", fleet.inv(), "--format", "sarif"]);
    assert_eq!(code(&out), 3, "an unknown value is bad input: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("sarif"), "{}", text(&out.stderr));
}
