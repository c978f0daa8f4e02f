//! JUnit XML of a stored scan (`fleetaudit scan --junit FILE`), for CI dashboards.
//!
//! Owns: the XML shape and its escaping. Must not touch: the store (it reads a [`ScanResults`]), rules, SSH.
//!
//! Shape: `<testsuites>` > one `<testsuite>` per cluster > one `<testcase>` per host × rule, with
//! `classname="CLUSTER.RULE_ID"` and `name="HOST"`. Jenkins builds its package › class › test tree by splitting
//! `classname` at its last dot, and GitLab lists `classname` as the "Suite" column beside the test name and
//! ignores `<testsuite>` names; rule ids have no dots while host names are often FQDNs full of them, so this
//! keeps Jenkins's tree cluster › rule › host intact, and a test's identity (rule, host) is stable from one
//! scan to the next, which both use for "failing since" and flaky-test history. A suite per cluster keeps the
//! number of suites small (a suite per rule would give 56 suites each as long as the fleet).
//!
//! A cluster rule's verdict is a test case of its cluster's suite too: `classname="CLUSTER.RULE_ID"`,
//! `name="(cluster)"`, so it sits beside the host verdicts of its cluster (no host is named `(cluster)`: the
//! inventory refuses parentheses in names).
//!
//! Verdicts: `fail` → `<failure>` (reason as the message; title, evidence and remediation in the body),
//! `error` → `<error>` (a host that could not be audited: its error kind as the type, for every rule; a rule
//! that could not be judged: type `not_judged`), `not_applicable` → `<skipped>`, `pass` → an empty test case.
//!
//! Everything a host sent is escaped; characters XML 1.0 cannot carry at all (C0 controls other than tab, line
//! feed and carriage return, U+FFFE, U+FFFF) and the C1 controls it discourages become U+FFFD.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};

use super::Summary;
use super::scan::{ScanResults, Verdict};
use crate::model::Status;
use crate::store::ClusterFinding;
use crate::store::ScanHost;

/// The suite name of hosts that belong to no cluster.
pub const NO_CLUSTER: &str = "(no cluster)";

/// The test-case name of a cluster rule's verdict on the whole cluster.
pub const WHOLE_CLUSTER: &str = "(cluster)";

/// Writes the scan as a JUnit XML document.
pub fn write(out: &mut dyn Write, r: &ScanResults) -> io::Result<()> {
    let mut clusters: BTreeMap<Option<&str>, Vec<&ScanHost>> = BTreeMap::new();
    for h in &r.hosts {
        clusters.entry(h.cluster.as_deref()).or_default().push(h);
    }
    let mut cluster_findings: BTreeMap<&str, Vec<&ClusterFinding>> = BTreeMap::new();
    for f in &r.clusters {
        cluster_findings.entry(&f.cluster).or_default().push(f);
        clusters.entry(Some(&f.cluster)).or_default();
    }
    let totals = r.totals() + Summary::of(r.clusters.iter().map(|f| f.status));
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="{}" {} time="{:.3}">"#,
        attr(&format!("fleetaudit scan {}", r.scan.id)),
        counts(&totals),
        r.elapsed_seconds().unwrap_or(0.0)
    )?;
    for (cluster, hosts) in &clusters {
        let judged = cluster.and_then(|c| cluster_findings.get(c)).map_or(&[][..], Vec::as_slice);
        let summary = Summary::of(
            hosts.iter().flat_map(|h| r.verdicts(h)).map(|v| v.status).chain(judged.iter().map(|f| f.status)),
        );
        let time: i64 = hosts.iter().map(|h| h.duration_ms).sum();
        writeln!(
            out,
            r#"  <testsuite name="{}" {} time="{:.3}" timestamp="{}">"#,
            attr(cluster.unwrap_or(NO_CLUSTER)),
            counts(&summary),
            time as f64 / 1000.0,
            // The JUnit schema's timestamp has no zone and no fraction; the stored time is UTC.
            attr(r.scan.started_at.get(..19).unwrap_or(&r.scan.started_at))
        )?;
        writeln!(out, "    <properties>")?;
        for (name, value) in [
            ("scan_id", r.scan.id.to_string().as_str()),
            ("started_at", &r.scan.started_at),
            ("inventory", &r.scan.inventory),
            ("rules_version", &r.scan.rules_version),
            ("fleetaudit_version", &r.scan.fleetaudit_version),
        ] {
            writeln!(out, r#"      <property name="{name}" value="{}"/>"#, attr(value))?;
        }
        writeln!(out, "    </properties>")?;
        for f in judged {
            cluster_testcase(out, f)?;
        }
        for host in hosts {
            for v in r.verdicts(host) {
                testcase(out, *cluster, &v)?;
            }
        }
        writeln!(out, "  </testsuite>")?;
    }
    writeln!(out, "</testsuites>")
}

fn counts(s: &Summary) -> String {
    format!(
        r#"tests="{}" failures="{}" errors="{}" skipped="{}""#,
        s.pass + s.fail + s.error + s.not_applicable,
        s.fail,
        s.error,
        s.not_applicable
    )
}

fn testcase(out: &mut dyn Write, cluster: Option<&str>, v: &Verdict<'_>) -> io::Result<()> {
    let classname = match cluster {
        Some(c) => format!("{c}.{}", v.rule_id),
        None => v.rule_id.to_owned(),
    };
    // The CIS assessment as a test-case property (as pytest's record_property writes them), so a dashboard can
    // tell a Manual check's failure (kube-bench's WARN) from an Automated one's.
    let assessment = v.rule.and_then(|r| r.assessment.as_deref()).map_or(String::new(), |a| {
        format!("\n      <properties><property name=\"assessment\" value=\"{}\"/></properties>", attr(a))
    });
    let open = format!(r#"    <testcase classname="{}" name="{}""#, attr(&classname), attr(&v.host.name));
    match v.status {
        Status::Pass if assessment.is_empty() => writeln!(out, "{open}/>"),
        Status::Pass => writeln!(out, "{open}>{assessment}\n    </testcase>"),
        Status::NotApplicable => {
            writeln!(out, "{open}>{assessment}\n      <skipped message=\"{}\"/>\n    </testcase>", attr(&v.reason))
        }
        Status::Fail => {
            let severity = v.rule.map_or("fail", |r| r.severity.as_str());
            writeln!(
                out,
                "{open}>{assessment}\n      <failure message=\"{}\" type=\"{}\">",
                attr(&v.reason),
                attr(severity)
            )?;
            writeln!(out, "{}</failure>\n    </testcase>", text(&body(v)))
        }
        Status::Error => {
            let kind = if v.host.outcome == "audited" {
                "not_judged"
            } else {
                v.host.error_kind.as_deref().unwrap_or("error")
            };
            writeln!(
                out,
                "{open}>{assessment}\n      <error message=\"{}\" type=\"{}\">",
                attr(&v.reason),
                attr(kind)
            )?;
            writeln!(out, "{}</error>\n    </testcase>", text(&body(v)))
        }
    }
}

fn cluster_testcase(out: &mut dyn Write, f: &ClusterFinding) -> io::Result<()> {
    let open = format!(
        r#"    <testcase classname="{}" name="{WHOLE_CLUSTER}""#,
        attr(&format!("{}.{}", f.cluster, f.rule_id))
    );
    let body = || {
        let cis = if f.cis.is_empty() { String::new() } else { format!(" (CIS {})", f.cis) };
        text(&format!("{}{cis}\n\n{}", f.title, f.reason)).into_owned()
    };
    match f.status {
        Status::Pass => writeln!(out, "{open}/>"),
        Status::NotApplicable => {
            writeln!(out, "{open}>\n      <skipped message=\"{}\"/>\n    </testcase>", attr(&f.reason))
        }
        Status::Fail => writeln!(
            out,
            "{open}>\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
            attr(&f.reason),
            attr(&f.severity),
            body()
        ),
        Status::Error => writeln!(
            out,
            "{open}>\n      <error message=\"{}\" type=\"not_judged\">{}</error>\n    </testcase>",
            attr(&f.reason),
            body()
        ),
    }
}

/// The body of a failure or error: what the rule is, why it failed, the process lines, how to fix it.
fn body(v: &Verdict<'_>) -> String {
    let mut b = String::new();
    if let Some(rule) = v.rule {
        let assessment = match rule.assessment.as_deref() {
            Some("manual") => ", Manual",
            Some("automated") => ", Automated",
            _ => "",
        };
        b.push_str(&format!("{} (CIS {}, severity {}{assessment})\n", rule.title, rule.cis, rule.severity));
    }
    b.push_str(&format!("host {}: {}\n", v.host.name, v.reason));
    if let Some(procs) = v.evidence.and_then(|e| e.as_array()) {
        b.push_str("\nEvidence:\n");
        for p in procs {
            let field = |k: &str| match &p[k] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            b.push_str(&format!("  pid {} ({}): {}\n", field("pid"), field("user"), field("cmdline")));
        }
    }
    if let Some(remediation) = v.rule.and_then(|r| r.remediation.as_deref()).filter(|t| !t.trim().is_empty())
        && v.status == Status::Fail
    {
        b.push_str(&format!("\nRemediation:\n{}\n", remediation.trim_end()));
    }
    b
}

/// Whether XML 1.0 can carry `c` (and does not merely discourage it, as it does the C1 controls).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{fffd}' | '\u{10000}'..)
}

fn escape(s: &str, attribute: bool) -> Cow<'_, str> {
    let plain = |c: char| xml_char(c) && !matches!(c, '&' | '<' | '>' | '"' | '\'' | '\t' | '\n' | '\r');
    if s.chars().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\'' if attribute => out.push_str("&apos;"),
            // An attribute's whitespace is normalised to spaces by every parser unless written as a reference.
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            // A bare CR becomes LF in any XML text; keep it as what it was.
            '\r' => out.push_str("&#13;"),
            c if xml_char(c) => out.push(c),
            _ => out.push('\u{fffd}'),
        }
    }
    Cow::Owned(out)
}

/// Escapes an attribute value (to go between double quotes).
pub fn attr(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// Escapes element text.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_char_is_escaped_or_replaced_into_well_formed_xml() {
        let hostile: String = (0u32..0x110000).step_by(7).chain(0..0x300).filter_map(char::from_u32).collect();
        let doc = format!("<a v=\"{}\">{}</a>", attr(&hostile), text(&hostile));
        let parsed = roxmltree::Document::parse(&doc).expect("well-formed");
        let root = parsed.root_element();
        let expected: String = hostile.chars().map(|c| if xml_char(c) { c } else { '\u{fffd}' }).collect();
        assert_eq!(root.attribute("v"), Some(expected.as_str()), "attributes keep tabs, newlines and quotes");
        assert_eq!(root.text(), Some(expected.as_str()), "text keeps carriage returns");
        assert!(!xml_char('\u{1b}') && !xml_char('\u{0}') && !xml_char('\u{fffe}') && !xml_char('\u{9b}'));
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(attr("prod-cp-1"), Cow::Borrowed(_)));
        assert_eq!(attr("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;");
        assert_eq!(text("x\u{7}y"), "x\u{fffd}y");
    }
}
