//! A Prometheus textfile (node_exporter's textfile collector) describing the last scan, for cron users who
//! want alerts without a daemon. Written atomically: a scrape never sees half a file.
//!
//! Owns: the metric names and the file write. Must not touch: scanning or the database.

use std::fmt::Write as _;
use std::path::Path;

use crate::scan::ScanReport;

/// Escapes a label value as the text exposition format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition text for `report`. `last_success` is the Unix time of the newest complete scan.
pub fn render(report: &ScanReport, last_success: Option<u64>) -> String {
    let mut out = String::new();
    let t = report.totals().all;
    let _ = writeln!(out, "# HELP fleetaudit_rule_verdicts Verdicts of the last scan, by rule and status.");
    let _ = writeln!(out, "# TYPE fleetaudit_rule_verdicts gauge");
    for (rule, s) in &report.rules {
        for (status, n) in
            [("pass", s.pass), ("fail", s.fail), ("error", s.error), ("not_applicable", s.not_applicable)]
        {
            let _ = writeln!(out, "fleetaudit_rule_verdicts{{rule=\"{}\",status=\"{status}\"}} {n}", label(rule));
        }
    }
    let _ = writeln!(out, "# HELP fleetaudit_verdicts Verdicts of the last scan over all hosts and rules, by status.");
    let _ = writeln!(out, "# TYPE fleetaudit_verdicts gauge");
    for (status, n) in [("pass", t.pass), ("fail", t.fail), ("error", t.error), ("not_applicable", t.not_applicable)] {
        let _ = writeln!(out, "fleetaudit_verdicts{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP fleetaudit_hosts Hosts in the last scan.");
    let _ = writeln!(out, "# TYPE fleetaudit_hosts gauge");
    let _ = writeln!(out, "fleetaudit_hosts {}", report.hosts.len());
    let _ = writeln!(out, "# HELP fleetaudit_hosts_unreachable Hosts the last scan could not audit.");
    let _ = writeln!(out, "# TYPE fleetaudit_hosts_unreachable gauge");
    let _ = writeln!(out, "fleetaudit_hosts_unreachable {}", report.unreachable());
    let _ = writeln!(out, "# HELP fleetaudit_scan_duration_seconds Wall time of the last scan.");
    let _ = writeln!(out, "# TYPE fleetaudit_scan_duration_seconds gauge");
    let _ = writeln!(out, "fleetaudit_scan_duration_seconds {:.3}", report.elapsed.as_secs_f64());
    let _ = writeln!(out, "# HELP fleetaudit_scan_interrupted 1 if the last scan was interrupted.");
    let _ = writeln!(out, "# TYPE fleetaudit_scan_interrupted gauge");
    let _ = writeln!(out, "fleetaudit_scan_interrupted {}", u8::from(report.interrupted));
    if let Some(ts) = last_success {
        let _ = writeln!(out, "# HELP fleetaudit_last_success_timestamp_seconds When the last complete scan ended.");
        let _ = writeln!(out, "# TYPE fleetaudit_last_success_timestamp_seconds gauge");
        let _ = writeln!(out, "fleetaudit_last_success_timestamp_seconds {ts}");
    }
    out
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    write_atomic_with(path, |f| f.write_all(text.as_bytes()))
}

/// Writes what `write` produces to `path` through a buffered temporary file in the same directory and a rename:
/// a reader sees the old file or the new one, never half of one. On error the temporary file is removed.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "metrics".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        write(&mut f)?;
        f.into_inner().map_err(std::io::IntoInnerError::into_error)?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes the metrics of `report`, keeping the last success time of an earlier file when this scan did not
/// complete.
pub fn write(path: &Path, report: &ScanReport) -> std::io::Result<()> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let last_success = if report.interrupted {
        std::fs::read_to_string(path).ok().and_then(|old| {
            old.lines()
                .find_map(|l| l.strip_prefix("fleetaudit_last_success_timestamp_seconds "))
                .and_then(|v| v.trim().parse().ok())
        })
    } else {
        Some(now)
    };
    write_atomic(path, &render(report, last_success))
}
