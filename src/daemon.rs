//! The service: scans on a cron schedule, for months, unattended.
//!
//! Owns: the schedule (5-field crontab lines and 6-field ones with seconds), never running two scans at once
//! (ticks that pass during a scan are skipped and logged; a scan started by cron holds the same database lock),
//! re-reading the inventory before each scan (a broken edit keeps the last good inventory), retention and
//! metrics after each scan, and stopping cleanly.
//! Must not touch: how a scan works (it calls [`crate::scan::run`]), SSH, SQL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Local;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use thiserror::Error;
use tokio::sync::watch;

use crate::inventory::{self, Inventory, InventoryError};
use crate::rules::Engine;
use crate::scan::{self, ScanOptions, ScanReport};
use crate::store::{Store, StoreError};

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("no schedule: set `schedule` in the inventory's [defaults] or pass --schedule (e.g. \"0 */6 * * *\")")]
    NoSchedule,
    #[error(
        "bad schedule {expr:?}: {reason}; write a cron expression such as \"0 */6 * * *\" or, with seconds, \"*/10 * * * * *\""
    )]
    BadSchedule { expr: String, reason: String },
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses a cron expression: five fields (minute hour day month weekday) or six with seconds first.
pub fn parse_schedule(expr: &str) -> Result<Cron, DaemonError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| DaemonError::BadSchedule { expr: expr.to_owned(), reason: e.to_string() })
}

/// How the daemon runs, beyond what the inventory says.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub inventory: PathBuf,
    /// Overrides the inventory's `schedule`.
    pub schedule: Option<String>,
    /// Overrides the inventory's `database`.
    pub db: Option<crate::store::Database>,
    pub concurrency: Option<usize>,
    /// How long hosts in flight may take to finish after SIGTERM.
    pub grace: Duration,
    /// Overrides the inventory's `keep_scans`.
    pub keep_scans: Option<u32>,
    pub metrics_file: Option<PathBuf>,
    /// Overrides the inventory's `ssh_config`.
    pub ssh_config: Option<PathBuf>,
    /// Audit only this slice of the inventory (`--shard K/N`), as `scan --shard` does.
    pub shard: Option<scan::Shard>,
    /// On a shared (PostgreSQL) history: claim only this zone's hosts (`--zone`).
    pub zone: Option<String>,
    /// On a shared history: how long a claim lasts without a heartbeat (`--lease`).
    pub lease: Duration,
}

/// Runs scans on the schedule until `stop` turns true. Returns how many scans ran.
pub async fn run(
    options: DaemonOptions,
    engine: Arc<Engine>,
    mut stop: watch::Receiver<bool>,
) -> Result<u64, DaemonError> {
    let load_options = inventory::LoadOptions { ssh_config: options.ssh_config.clone() };
    let mut inventory = inventory::load_with(&options.inventory, &load_options)?;
    let mut expr = schedule_of(&options, &inventory)?;
    let mut cron = parse_schedule(&expr)?;
    let db = options.db.clone().unwrap_or_else(|| inventory.settings.database.clone());
    let store = Store::connect(&db, true).await?;
    tracing::info!(inventory = %options.inventory.display(), %db, schedule = %expr, "daemon started");
    let mut scans = 0;
    loop {
        let now = Local::now();
        let Ok(next) = cron.find_next_occurrence(&now, false) else {
            tracing::error!(schedule = %expr, "the schedule has no next time; stopping");
            break;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tracing::debug!(next = %next, "waiting for the next tick");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wait_for_stop(&mut stop) => break,
        }

        // Re-read the inventory: an edit takes effect at the next scan, a broken one is survived.
        match inventory::load_with(&options.inventory, &load_options) {
            Ok(fresh) => {
                if options.schedule.is_none() && fresh.settings.schedule != inventory.settings.schedule {
                    match fresh.settings.schedule.as_deref().map(parse_schedule) {
                        Some(Ok(c)) => {
                            expr = fresh.settings.schedule.clone().unwrap_or_default();
                            cron = c;
                            tracing::info!(schedule = %expr, "schedule changed");
                        }
                        Some(Err(e)) => tracing::warn!("keeping the schedule {expr:?}: {e}"),
                        None => tracing::warn!("the inventory no longer has a schedule; keeping {expr:?}"),
                    }
                }
                inventory = fresh;
            }
            Err(e) => tracing::warn!("the inventory is broken, scanning with the last good one: {e}"),
        }

        let lock = match store.lock().await {
            Ok(l) => l,
            Err(StoreError::Locked { holder, .. }) => {
                tracing::warn!(%holder, "tick skipped: another scan is using the database");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let started = Local::now();
        let scan_options = ScanOptions {
            concurrency: options.concurrency,
            grace: Some(options.grace),
            shard: options.shard,
            zone: options.zone.clone(),
            lease: Some(options.lease),
            // Daemons on one schedule tick at about the same time; one that ticks after the others have ended
            // this run's shared scan must not scan the fleet again. (Clocks of machines differ a little.)
            not_before: Some(
                (next - chrono::Duration::seconds(30))
                    .with_timezone(&chrono::Utc)
                    .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                    .to_string(),
            ),
            ..ScanOptions::default()
        };
        match scan::run(&inventory, engine.clone(), &store, &lock, &scan_options, stop.clone()).await {
            Ok(report) => {
                scans += 1;
                after_scan(&options, &inventory, &store, &lock, &report).await;
            }
            Err(scan::ScanError::Store(StoreError::RunDone { scan_id })) => {
                tracing::info!(scan_id, "tick skipped: other scanners already ran this tick's shared scan");
            }
            Err(e) => tracing::error!("scan failed: {e}"),
        }
        drop(lock);
        let skipped = skipped_ticks(&cron, started, Local::now());
        if skipped > 0 {
            tracing::warn!(skipped, "ticks passed while the scan ran and were skipped: scans never overlap");
        }
        if *stop.borrow() {
            break;
        }
    }
    store.close().await;
    tracing::info!(scans, "daemon stopped");
    Ok(scans)
}

fn schedule_of(options: &DaemonOptions, inventory: &Inventory) -> Result<String, DaemonError> {
    options.schedule.clone().or_else(|| inventory.settings.schedule.clone()).ok_or(DaemonError::NoSchedule)
}

/// Resolves when a stop is requested (never, if the sender is gone).
async fn wait_for_stop(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Ticks of `cron` strictly between `from` and `to`.
fn skipped_ticks(cron: &Cron, from: chrono::DateTime<Local>, to: chrono::DateTime<Local>) -> usize {
    let mut n = 0;
    let mut t = from;
    while let Ok(next) = cron.find_next_occurrence(&t, false) {
        if next >= to || n > 10_000 {
            break;
        }
        n += 1;
        t = next;
    }
    n
}

/// Retention, metrics and the HTML report (into the inventory's `report_dir`); their failures are logged,
/// never fatal to the service. Returns the report's `index.html` when it was rendered.
pub async fn after_scan(
    options: &DaemonOptions,
    inventory: &Inventory,
    store: &Store,
    lock: &crate::store::ScanLock,
    report: &ScanReport,
) -> Option<PathBuf> {
    if let Some(keep) = options.keep_scans.or(inventory.settings.keep_scans).filter(|_| report.ended) {
        match store.prune(lock, keep).await {
            Ok(p) if p.scans > 0 => tracing::info!(deleted = p.scans, keep, "old scans pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!("pruning old scans failed: {e}"),
        }
    }
    if let Some(path) = &options.metrics_file
        && let Err(e) = crate::metrics::write(path, report)
    {
        tracing::warn!("cannot write metrics to {}: {e}", path.display());
    }
    if !report.ended {
        // A shared scan another scanner ends: that one prunes and renders the report, once.
        tracing::info!(scan_id = report.scan_id, "another scanner ends this shared scan and renders its report");
        return None;
    }
    let out = &inventory.settings.report_dir;
    match crate::report::render(store, Some(report.scan_id), out).await {
        Ok(r) => {
            tracing::info!(scan_id = r.scan_id, pages = r.pages, index = %r.index.display(), "report rendered");
            Some(r.index)
        }
        Err(e) => {
            tracing::warn!("cannot render the report into {}: {e}", out.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_field_schedules() {
        assert!(parse_schedule("0 */6 * * *").is_ok());
        assert!(parse_schedule("*/10 * * * * *").is_ok());
        let e = parse_schedule("every hour").unwrap_err().to_string();
        assert!(e.contains("every hour") && e.contains("0 */6 * * *"), "{e}");
        assert!(parse_schedule("61 * * * *").is_err());
    }

    #[test]
    fn ticks_missed_during_a_scan_are_counted() {
        let cron = parse_schedule("*/2 * * * * *").unwrap();
        let from = Local::now();
        assert_eq!(skipped_ticks(&cron, from, from), 0);
        let later = from + chrono::Duration::seconds(9);
        assert!((4..=5).contains(&skipped_ticks(&cron, from, later)));
    }
}
