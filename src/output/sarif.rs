//! A stored scan as SARIF 2.1.0 (`fleetaudit scan --format sarif`), for code-scanning dashboards.
//!
//! Owns: the SARIF document's shape. Reads the same [`ScanResults`] as the JSON document and JUnit, so it says what
//! the database says. One `run`: `tool.driver.rules` is the scan's rule set; `results` are the verdicts that need
//! attention only — a failed rule (`kind: fail`, `level` from its severity) and a rule that could not be judged
//! (`kind: open`: SARIF's "the rule was evaluated but there was not enough information to decide", which is
//! what an `error` verdict is; SARIF requires `level: none` for any kind but `fail`). Passes and rules that do
//! not apply are left out: dashboards list problems, and 10,000 hosts' passes would only make the file large.
//! Each result's location is the host: a logical location named after it, and an `ssh://ADDRESS:PORT/` URI.

use std::borrow::Cow;
use std::io::{self, Write};

use serde::{Serialize, Serializer};

use super::scan::{ScanResults, Verdict};
use crate::model::Status;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Log<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: [Run<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Run<'a> {
    tool: Tool<'a>,
    automation_details: AutomationDetails,
    invocations: [Invocation<'a>; 1],
    results: Results<'a>,
}

#[derive(Serialize)]
struct Tool<'a> {
    driver: Driver<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver<'a> {
    name: &'static str,
    version: &'a str,
    semantic_version: &'a str,
    rules: Vec<RuleDescriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuleDescriptor<'a> {
    id: &'a str,
    short_description: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    full_description: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<Text<'a>>,
    default_configuration: Configuration,
    properties: RuleProperties<'a>,
}

#[derive(Serialize)]
struct Text<'a> {
    text: &'a str,
}

#[derive(Serialize)]
struct Configuration {
    level: &'static str,
}

#[derive(Serialize)]
struct RuleProperties<'a> {
    severity: &'a str,
    cis: &'a str,
    component: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    assessment: Option<&'a str>,
    /// GitHub code scanning ranks security results by this CVSS-like score ("critical" above 9.0).
    #[serde(rename = "security-severity")]
    security_severity: &'static str,
    tags: [&'static str; 2],
}

#[derive(Serialize)]
struct AutomationDetails {
    /// `fleetaudit/scan/ID`: the database's scan id.
    id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Invocation<'a> {
    /// Whether the scan ran to its end (an interrupted scan is not).
    execution_successful: bool,
    start_time_utc: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time_utc: Option<&'a str>,
}

/// The results, serialized one by one as they are assembled.
struct Results<'a> {
    scan: &'a ScanResults,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult<'a> {
    rule_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_index: Option<usize>,
    kind: &'static str,
    level: &'static str,
    message: Message<'a>,
    locations: [Location<'a>; 1],
}

#[derive(Serialize)]
struct Message<'a> {
    text: Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location<'a> {
    physical_location: PhysicalLocation,
    logical_locations: [LogicalLocation<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
}

#[derive(Serialize)]
struct ArtifactLocation {
    uri: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogicalLocation<'a> {
    name: &'a str,
    /// `CLUSTER/HOST`, or the host's name when it has no cluster.
    fully_qualified_name: String,
    kind: &'static str,
}

/// The SARIF level of a failed rule of `severity`.
fn level(severity: &str) -> &'static str {
    match severity {
        "critical" | "high" => "error",
        _ => "warning",
    }
}

fn security_severity(severity: &str) -> &'static str {
    match severity {
        "critical" => "9.5",
        "high" => "8.0",
        "medium" => "5.5",
        _ => "3.0",
    }
}

/// `ssh://ADDRESS:PORT/`, an IPv6 address in brackets.
fn host_uri(address: &str, port: i64) -> String {
    if address.contains(':') { format!("ssh://[{address}]:{port}/") } else { format!("ssh://{address}:{port}/") }
}

impl Serialize for Results<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.scan;
        let index = |id: &str| r.rules().binary_search_by(|rule| rule.rule_id.as_str().cmp(id)).ok();
        s.collect_seq(r.all_verdicts().filter_map(|v: Verdict<'_>| {
            let (kind, level) = match v.status {
                Status::Fail => ("fail", level(v.rule.map_or("", |r| r.severity.as_str()))),
                Status::Error => ("open", "none"),
                Status::Pass | Status::NotApplicable => return None,
            };
            let h = v.host;
            Some(SarifResult {
                rule_id: v.rule_id,
                rule_index: index(v.rule_id),
                kind,
                level,
                message: Message { text: v.reason },
                locations: [Location {
                    physical_location: PhysicalLocation {
                        artifact_location: ArtifactLocation { uri: host_uri(&h.address, h.port) },
                    },
                    logical_locations: [LogicalLocation {
                        name: &h.name,
                        fully_qualified_name: match &h.cluster {
                            Some(c) => format!("{c}/{}", h.name),
                            None => h.name.clone(),
                        },
                        kind: "resource",
                    }],
                }],
            })
        }))
    }
}

/// Writes the scan as one SARIF 2.1.0 log (compact JSON) with one run.
pub fn write(out: &mut dyn Write, r: &ScanResults) -> io::Result<()> {
    let s = &r.scan;
    let rules = r
        .rules()
        .iter()
        .map(|rule| RuleDescriptor {
            id: &rule.rule_id,
            short_description: Text { text: &rule.title },
            full_description: rule.rationale.as_deref().filter(|t| !t.trim().is_empty()).map(|text| Text { text }),
            help: rule.remediation.as_deref().filter(|t| !t.trim().is_empty()).map(|text| Text { text }),
            default_configuration: Configuration { level: level(&rule.severity) },
            properties: RuleProperties {
                severity: &rule.severity,
                cis: &rule.cis,
                component: &rule.component,
                assessment: rule.assessment.as_deref(),
                security_severity: security_severity(&rule.severity),
                tags: ["security", "cis-kubernetes"],
            },
        })
        .collect();
    let log = Log {
        schema: SCHEMA,
        version: "2.1.0",
        runs: [Run {
            tool: Tool {
                driver: Driver {
                    name: "fleetaudit",
                    version: &s.fleetaudit_version,
                    semantic_version: &s.fleetaudit_version,
                    rules,
                },
            },
            automation_details: AutomationDetails { id: format!("fleetaudit/scan/{}", s.id) },
            invocations: [Invocation {
                execution_successful: s.status == "complete",
                start_time_utc: &s.started_at,
                end_time_utc: s.finished_at.as_deref(),
            }],
            results: Results { scan: r },
        }],
    };
    let mut w = io::BufWriter::with_capacity(1 << 16, out);
    serde_json::to_writer(&mut w, &log)?;
    writeln!(w)?;
    w.flush()
}
