//! What a scan changed since each host's previous scan, for `fleetaudit scan --changes`: newly failing and newly
//! passing rules, rules no longer judged, hosts no longer audited, audited again, or new; and nothing at all when
//! nothing changed, so that a crontab mails only news.
//!
//! Owns: grouping a stored scan's changes for people. Must not touch: SQL (the reads are the store's, shared
//! with the report and `history`), the scan, the verdicts.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::Path;

use crate::report::ReportError;
use crate::store::{Change, HostTransition, Store};

/// A heading and what belongs under it.
type Group<T> = (&'static str, fn(&T) -> bool);

/// A scan's news, read back from the store.
#[derive(Debug)]
pub struct News {
    pub scan_id: i64,
    pub interrupted: bool,
    /// Hosts new to the history, no longer audited, or audited again.
    pub hosts: Vec<HostTransition>,
    /// Verdicts that differ from the host's previous scan, for hosts audited both times.
    pub changes: Vec<Change>,
}

impl News {
    /// Reads scan `scan_id`'s news from the store.
    pub async fn load(store: &Store, scan_id: i64, interrupted: bool) -> Result<News, ReportError> {
        let hosts = store.host_transitions(scan_id).await?;
        // A host that went from audited to not (or back) changed every verdict: it is news once, as a host.
        let whole: HashSet<&str> =
            hosts.iter().filter(|h| h.previous_outcome.is_some()).map(|h| h.host.as_str()).collect();
        let changes = store
            .changes(scan_id, None, None)
            .await?
            .into_iter()
            .filter(|c| !whole.contains(c.host.as_str()))
            .collect();
        Ok(News { scan_id, interrupted, hosts, changes })
    }

    pub fn is_empty(&self) -> bool {
        !self.interrupted && self.hosts.is_empty() && self.changes.is_empty()
    }

    /// The news as text, or nothing when there is none.
    pub fn write(&self, out: &mut dyn Write, db: &crate::store::Database, report: Option<&Path>) -> io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        writeln!(out, "scan {}: what changed since each host's previous scan", self.scan_id)?;
        if self.interrupted {
            writeln!(out, "\nthe scan was interrupted: the hosts it had not reached are not audited")?;
        }
        let changed = |c: &Change| {
            format!("{}  {} -> {} (since scan {})", c.rule_id, c.previous_status, c.status, c.previous_scan_id)
        };
        let groups: [Group<Change>; 4] = [
            ("newly failing", |c| c.status == "fail"),
            ("newly passing", |c| c.status == "pass"),
            ("no longer judged (error)", |c| c.status == "error"),
            ("other changes", |c| !matches!(c.status.as_str(), "fail" | "pass" | "error")),
        ];
        for group in groups {
            section(out, group, &self.changes, |c| &c.host, changed)?;
        }
        let outcome = |h: &HostTransition| match h.outcome.as_str() {
            "audited" => "audited".to_owned(),
            _ => format!(
                "not audited: {}: {}",
                h.error_kind.as_deref().unwrap_or("error"),
                h.error_message.as_deref().unwrap_or("")
            ),
        };
        let host_groups: [Group<HostTransition>; 3] = [
            ("no longer audited", |h| h.previous_outcome.as_deref() == Some("audited")),
            ("audited again", |h| h.previous_outcome.is_some() && h.outcome == "audited"),
            ("new hosts", |h| h.previous_outcome.is_none()),
        ];
        for group in host_groups {
            section(out, group, &self.hosts, |h| &h.host, outcome)?;
        }
        writeln!(out, "\ndatabase: {db}")?;
        if let Some(report) = report {
            writeln!(out, "report: {}", report.display())?;
        }
        Ok(())
    }
}

/// One heading and its rows (`host  what`, hosts aligned), or nothing when no row belongs under it.
fn section<T>(
    out: &mut dyn Write,
    (title, wanted): Group<T>,
    all: &[T],
    host: impl Fn(&T) -> &str,
    what: impl Fn(&T) -> String,
) -> io::Result<()> {
    let rows: Vec<&T> = all.iter().filter(|r| wanted(r)).collect();
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{title} ({}):", rows.len())?;
    let width = rows.iter().map(|r| host(r).len()).max().unwrap_or(0);
    for r in rows {
        writeln!(out, "  {:<width$}  {}", host(r), what(r))?;
    }
    Ok(())
}
