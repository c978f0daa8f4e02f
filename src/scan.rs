//! The scheduler: one scan of the fleet. Reaches every host with bounded concurrency, judges what each sends,
//! and hands the outcomes to the store in batches as they arrive.
//!
//! Owns: the order and concurrency of host work, per-host outcomes (audited or the error kind), the decision
//! that a process table is too incomplete to judge, stopping cleanly when asked. On a history whose scans are
//! shared (PostgreSQL), where the hosts come from: claims on the shared scan in batches, a heartbeat that keeps
//! them, waiting for (and taking over) other scanners' hosts, and whether this scanner ends the scan.
//! Must not touch: SSH details (the transport), rule logic (the engine), SQL (the store).
//! Tokio tasks, not threads: a thousand hosts in flight cost a thousand small futures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::inventory::{Host, Inventory};
use crate::model::{self, Status};
use crate::output::{Summary, Totals};
use crate::ps;
use crate::rules::Engine;
use crate::ssh::{Target, Transport};
use crate::store::{
    FileRecord, FindingRecord, HostCertificateRecord, HostOutcome, HostRecord, HostResult, RuleMeta, ScanLock, Store,
    StoreError,
};

/// Outcomes are written in batches of this many (or every [`FLUSH_EVERY`]): one transaction per host would
/// cost an fsync each.
const BATCH: usize = 64;
const FLUSH_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Error)]
pub enum ScanError {
    #[error("no host in the inventory is named {0}; `fleetaudit check -i INVENTORY` lists them")]
    UnknownHost(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read known_hosts: {0}")]
    KnownHosts(std::io::Error),
    #[error("{host}: {message}")]
    Host { host: String, message: String },
}

/// What to scan.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Only these hosts (by name); empty means all.
    pub only: Vec<String>,
    /// Only this slice of the inventory (applied after `only`).
    pub shard: Option<Shard>,
    /// Told when the scan starts and as each host finishes (for a progress bar). The scheduler never waits on
    /// it: the channel is unbounded and a closed receiver is ignored.
    pub progress: Option<mpsc::UnboundedSender<ProgressEvent>>,
    /// Overrides the inventory's concurrency.
    pub concurrency: Option<usize>,
    /// After a stop request, how long hosts in flight may take to finish before they are abandoned (the scan is
    /// marked interrupted either way). `None`: as long as their own timeouts allow.
    pub grace: Option<Duration>,
    /// On a database whose scans are shared (PostgreSQL): claim only hosts of this zone (and of none).
    pub zone: Option<String>,
    /// On a shared database: how long this scanner's claims last without a heartbeat (default [`DEFAULT_LEASE`]).
    pub lease: Option<Duration>,
    /// On a shared database, for a daemon's scheduled run: its time less a margin (RFC 3339 UTC). A scan of the
    /// inventory started since then and ended is this run's: the scan is not run twice.
    pub not_before: Option<String>,
}

/// How long a claim on a host of a shared scan lasts without the scanner's heartbeat (every third of it): a
/// scanner that dies loses its hosts to the others this long after its last heartbeat.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// At most this many hosts are claimed at once (and never more than the free connection slots).
const CLAIM_BATCH: usize = 64;

/// How often a scanner with nothing to claim looks again (for hosts whose scanner died).
const POLL: Duration = Duration::from_millis(500);

/// What a scan tells its [`ScanOptions::progress`] listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// The scan is stored and about to start `hosts` hosts.
    Started { scan_id: i64, hosts: usize },
    /// A host is done: audited (its table judged) or not (its error kind).
    HostDone { name: String, audited: bool },
}

/// `--shard K/N`: the K-th of N disjoint slices of the inventory. A host's slice depends on its name alone
/// (the first 8 bytes of SHA-256(name), big-endian, mod N), so N scanners with K = 1..N cover every host exactly
/// once, and adding or removing a host moves no other host. Changing N reshuffles the slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based: 1 ≤ index ≤ count.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether the host named `name` belongs to this slice.
    pub fn contains(&self, name: &str) -> bool {
        Shard::slot(name, self.count) + 1 == self.index
    }

    /// The 0-based slice of `name` among `count`.
    pub fn slot(name: &str, count: u32) -> u32 {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(name.as_bytes());
        let head = u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"));
        (head % u64::from(count.max(1))) as u32
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let usage = || "write K/N with 1 <= K <= N, e.g. 2/5 for the second of five slices".to_owned();
        let (k, n) = s.split_once('/').ok_or_else(usage)?;
        let (index, count): (u32, u32) = (k.parse().map_err(|_| usage())?, n.parse().map_err(|_| usage())?);
        if count == 0 {
            return Err("N must be at least 1 (K/N: slice K of N)".to_owned());
        }
        if index == 0 || index > count {
            return Err(format!("K must be between 1 and N: 1/{count} to {count}/{count}"));
        }
        Ok(Shard { index, count })
    }
}

/// One host's result, for the summary a person reads.
#[derive(Debug, Clone)]
pub struct HostReport {
    pub name: String,
    pub cluster: Option<String>,
    pub duration: Duration,
    /// The verdict counts, or the error kind and message.
    pub result: Result<Summary, (String, String)>,
}

/// The result of a scan.
#[derive(Debug, Clone)]
pub struct ScanReport {
    pub scan_id: i64,
    pub hosts: Vec<HostReport>,
    pub interrupted: bool,
    pub elapsed: Duration,
    /// Verdict counts per rule id over the hosts recorded (a host that could not be audited is an error for
    /// every rule), for metrics.
    pub rules: std::collections::BTreeMap<String, Summary>,
    /// The rules CIS assesses manually.
    pub manual: std::collections::BTreeSet<String>,
    /// The cluster rules' verdicts, by cluster then rule (`cluster::judge_scan`).
    pub clusters: Vec<crate::store::ClusterFinding>,
    /// Clusters with hosts that `--only` or `--shard` left out of this scan: their verdicts are open by choice.
    pub partial_clusters: std::collections::BTreeSet<String>,
    /// Whether this process ended the scan (judged the cluster rules and marked it complete or interrupted):
    /// always, but for a scanner of a shared scan (PostgreSQL) that another scanner ends. Only the one that
    /// ended it renders the report.
    pub ended: bool,
    /// For a shared scan, the hosts of the whole scan (this report's `hosts` are this scanner's).
    pub shared_hosts: Option<usize>,
}

impl ScanReport {
    /// Counts over every (host, rule) verdict: a host that could not be audited counts as an error per rule,
    /// as in the database's `findings` view and the report.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for (rule, s) in &self.rules {
            let add = |to: &mut Summary| {
                to.pass += s.pass;
                to.fail += s.fail;
                to.error += s.error;
                to.not_applicable += s.not_applicable;
            };
            add(&mut t.all);
            if !self.manual.contains(rule) {
                add(&mut t.automated);
            }
        }
        t
    }

    pub fn unreachable(&self) -> usize {
        self.hosts.iter().filter(|h| h.result.is_err()).count()
    }
}

/// Runs one scan. `stop` turning true stops starting hosts; hosts in flight finish and are recorded, and the
/// scan is marked interrupted.
pub async fn run(
    inventory: &Inventory,
    engine: Arc<Engine>,
    store: &Store,
    lock: &ScanLock,
    options: &ScanOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<ScanReport, ScanError> {
    let started = Instant::now();
    let hosts = select_hosts(inventory, &options.only, options.shard)?;
    let hosts_selected: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    // On a shared history, the keys other scanners accepted on first use are trusted too.
    let shared_keys =
        match store.shares_scans() && inventory.settings.host_key_policy == crate::ssh::HostKeyPolicy::AcceptNew {
            true => store.accepted_host_keys().await?,
            false => Vec::new(),
        };
    let transport = Arc::new(Transport::for_inventory_sharing(inventory, shared_keys).map_err(ScanError::KnownHosts)?);
    let rules = rule_meta(&engine);
    // The store has no shard column; the scan's inventory label says which slice it audited.
    let inventory_name = match options.shard {
        Some(shard) => format!("{} [shard {shard}]", inventory.path.display()),
        None => inventory.path.display().to_string(),
    };
    let shared = store
        .shares_scans()
        .then(|| crate::store::Scanner::this_process(options.zone.clone(), options.lease.unwrap_or(DEFAULT_LEASE)));
    let scan_id = match &shared {
        None => store.begin_scan(lock, &inventory_name, &engine.rules.version(), &rules, hosts.len()).await?,
        Some(scanner) => {
            let work: Vec<(String, Option<String>)> = hosts.iter().map(|h| (h.name.clone(), h.zone.clone())).collect();
            let joined = store
                .join_scan(
                    &inventory_name,
                    &engine.rules.version(),
                    &rules,
                    &work,
                    scanner,
                    options.not_before.as_deref(),
                )
                .await?;
            tracing::info!(
                scan_id = joined.scan_id,
                scanner = %scanner.id,
                zone = scanner.zone.as_deref().unwrap_or("any"),
                started = joined.created,
                "shared scan joined"
            );
            joined.scan_id
        }
    };
    // A shared scan's hosts come from claims, looked up by name; the rest in the inventory's order.
    let (mut queue, by_name): (std::collections::VecDeque<Host>, std::collections::HashMap<String, Host>) =
        match &shared {
            Some(_) => (Default::default(), hosts.into_iter().map(|h| (h.name.clone(), h)).collect()),
            None => (hosts.into(), Default::default()),
        };
    let progress = |event| {
        if let Some(tx) = &options.progress {
            let _ = tx.send(event);
        }
    };
    progress(ProgressEvent::Started { scan_id, hosts: hosts_selected.len() });
    let span = tracing::info_span!("scan", scan_id);
    let _enter = span.enter();

    let concurrency = options.concurrency.unwrap_or(inventory.settings.concurrency).max(1);
    let rule_ids: Vec<String> = rules.iter().map(|r| r.rule_id.clone()).collect();
    let (tx, mut rx) = mpsc::channel::<(HostOutcome, HostReport)>(concurrency.max(BATCH) * 2);

    let producer = async {
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut tasks = JoinSet::new();
        let mut interrupted = false;
        let mut stop_alive = true;
        loop {
            if *stop.borrow() {
                interrupted = true;
                break;
            }
            let host = match (queue.pop_front(), &shared) {
                (Some(host), _) => host,
                (None, None) => break,
                (None, Some(scanner)) => {
                    let want = permits.available_permits().clamp(1, CLAIM_BATCH);
                    let claimed = store.claim_hosts(scan_id, scanner, want).await?;
                    if claimed.is_empty() {
                        if tasks.is_empty() && store.claimable_left(scan_id, scanner).await? == 0 {
                            break;
                        }
                        // Hosts in flight here or held by others: look again when one of ours ends, or soon
                        // (a scanner that died loses its claims when their lease runs out).
                        tokio::select! {
                            _ = tasks.join_next(), if !tasks.is_empty() => {}
                            _ = tokio::time::sleep(POLL) => {}
                            // Nobody can ask to stop any more: stop listening, or this loop would spin.
                            changed = stop.changed(), if stop_alive => if changed.is_err() { stop_alive = false },
                        }
                        continue;
                    }
                    for (name, was) in claimed {
                        if let Some(was) = was.filter(|w| *w != scanner.id) {
                            tracing::warn!(host = %name, from = %was, "taking over a host whose scanner's lease ran out");
                        }
                        // join_scan refused a scanner whose inventory differs: every claimed name is ours.
                        if let Some(host) = by_name.get(&name) {
                            queue.push_back(host.clone());
                        }
                    }
                    continue;
                }
            };
            let permit = loop {
                tokio::select! {
                    p = permits.clone().acquire_owned() => break Some(p.expect("semaphore is never closed")),
                    changed = stop.changed(), if stop_alive => match changed {
                        Ok(()) if *stop.borrow() => break None,
                        Ok(()) => {}
                        // Nobody can ask to stop any more: just wait for a permit.
                        Err(_) => stop_alive = false,
                    },
                }
            };
            let Some(permit) = permit else {
                interrupted = true;
                break;
            };
            let (tx, transport, engine) = (tx.clone(), transport.clone(), engine.clone());
            tasks.spawn(async move {
                let result = audit_host(&transport, &engine, &host).await;
                drop(permit);
                let _ = tx.send(result).await;
            });
            // Reap finished tasks as we go so the set does not grow with the fleet.
            while tasks.try_join_next().is_some() {}
        }
        drop(tx);
        if !interrupted {
            loop {
                tokio::select! {
                    done = tasks.join_next() => if done.is_none() { break },
                    changed = stop.changed(), if stop_alive => match changed {
                        Ok(()) if *stop.borrow() => { interrupted = true; break }
                        Ok(()) => {}
                        Err(_) => stop_alive = false,
                    },
                }
            }
        }
        if interrupted {
            let drain = async { while tasks.join_next().await.is_some() {} };
            let finished = match options.grace {
                Some(grace) => tokio::time::timeout(grace, drain).await.is_ok(),
                None => {
                    drain.await;
                    true
                }
            };
            if !finished {
                tracing::warn!(left = tasks.len(), "grace period over: abandoning the hosts still in flight");
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
        }
        Ok::<bool, StoreError>(interrupted)
    };

    let (shared_ref, transport_ref) = (&shared, &transport);
    let record = |batch: Vec<HostOutcome>| async move {
        match shared_ref {
            None => store.record_hosts(scan_id, &batch).await.map(|()| Vec::new()),
            Some(scanner) => {
                // Keys accepted on first use, shared before the hosts are: every scanner then trusts them.
                let accepted = transport_ref.take_accepted();
                if !accepted.is_empty() {
                    store.share_accepted_host_keys(scanner, &accepted).await?;
                }
                let lost = store.record_claimed(scan_id, scanner, &batch).await?;
                if !lost.is_empty() {
                    tracing::warn!(hosts = ?lost, "not recorded: another scanner took them over after this one's lease ran out");
                }
                Ok(lost)
            }
        }
    };
    let consumer = async {
        let mut lost: std::collections::HashSet<String> = Default::default();
        let mut reports = Vec::new();
        let mut rule_counts = std::collections::BTreeMap::new();
        let mut batch = Vec::with_capacity(BATCH);
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                item = rx.recv() => match item {
                    Some((outcome, report)) => {
                        progress(ProgressEvent::HostDone { name: report.name.clone(), audited: report.result.is_ok() });
                        count_rules(&mut rule_counts, &outcome, &rule_ids);
                        batch.push(outcome);
                        reports.push(report);
                        if batch.len() >= BATCH {
                            lost.extend(record(std::mem::take(&mut batch)).await?);
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => if !batch.is_empty() {
                    lost.extend(record(std::mem::take(&mut batch)).await?);
                },
            }
        }
        if !batch.is_empty() {
            lost.extend(record(batch).await?);
        }
        reports.retain(|r: &HostReport| !lost.contains(&r.name));
        Ok::<_, StoreError>((reports, rule_counts))
    };

    // A shared scan's claims are extended while this scanner works.
    let heartbeat = async {
        let Some(scanner) = &shared else { return std::future::pending().await };
        let mut beat = tokio::time::interval((scanner.lease / 3).max(Duration::from_millis(100)));
        loop {
            beat.tick().await;
            if let Err(e) = store.heartbeat(scan_id, scanner).await {
                tracing::warn!("cannot extend this scanner's leases: {e}");
            }
        }
    };
    let (interrupted, reports) = tokio::select! {
        both = async { tokio::join!(producer, consumer) } => both,
        () = heartbeat => unreachable!("the heartbeat never ends"),
    };
    // `ends`: this process judges the cluster rules and ends the scan; `ended`: the scan ended here at all.
    let (interrupted, (reports, rules), ends, ended) = match &shared {
        None => match (interrupted, reports) {
            (Ok(i), Ok(r)) => (i, r, true, true),
            (Err(e), _) | (_, Err(e)) => {
                let _ = store.finish_scan(scan_id, true).await;
                return Err(e.into());
            }
        },
        Some(scanner) => {
            // What this scanner still holds goes back to the others at once.
            let others = store.leave_scan(scan_id, scanner).await.unwrap_or(false);
            if !matches!(interrupted, Ok(false)) && !others {
                // Stopped or failed, and nobody else is working on it: the scan ends here, interrupted.
                let _ = store.finish_scan(scan_id, true).await;
            }
            let interrupted = interrupted?;
            let reports = reports?;
            // Otherwise another scanner ends the scan (or, interrupted, goes on with it): this one reports its
            // hosts.
            let ends = !interrupted && store.take_finish(scan_id, scanner).await?;
            (interrupted, reports, ends, ends || (interrupted && !others))
        }
    };
    let (clusters, partial) = match ends {
        true => judge_clusters(store, scan_id, &engine, inventory, &hosts_selected, interrupted).await?,
        false => Default::default(),
    };
    let report = ScanReport {
        scan_id,
        hosts: reports,
        interrupted,
        elapsed: started.elapsed(),
        rules,
        manual: manual_rules(&engine),
        clusters,
        partial_clusters: partial,
        ended,
        shared_hosts: shared.as_ref().map(|_| hosts_selected.len()),
    };
    let t = report.totals().all;
    tracing::info!(
        scan_id,
        hosts = report.hosts.len(),
        unreachable = report.unreachable(),
        pass = t.pass,
        fail = t.fail,
        error = t.error,
        interrupted,
        seconds = report.elapsed.as_secs_f64(),
        "scan finished"
    );
    Ok(report)
}

/// Once every host of the scan is recorded: the cluster rules judge what the store holds of them, for each
/// cluster with a host in this scan (one `--only` or `--shard` left out in part is judged open, naming the
/// rest); then the scan ends. Returns the verdicts and the clusters left open by choice.
async fn judge_clusters(
    store: &Store,
    scan_id: i64,
    engine: &Engine,
    inventory: &Inventory,
    hosts_selected: &[String],
    interrupted: bool,
) -> Result<(Vec<crate::store::ClusterFinding>, std::collections::BTreeSet<String>), ScanError> {
    let selected: std::collections::BTreeSet<&str> = hosts_selected.iter().map(String::as_str).collect();
    let mut members = cluster_members(inventory);
    members.retain(|_, names| names.iter().any(|n| selected.contains(n.as_str())));
    let partial: std::collections::BTreeSet<String> = members
        .iter()
        .filter(|(_, names)| names.iter().any(|n| !selected.contains(n.as_str())))
        .map(|(c, _)| c.clone())
        .collect();
    let stage = Instant::now();
    let clusters = match crate::cluster::judge_scan(store, scan_id, &engine.rules, &members, model::unix_now()).await {
        Ok(c) => c,
        Err(e) => {
            let _ = store.finish_scan(scan_id, true).await;
            return Err(e.into());
        }
    };
    // What benches/sim-scale.sh reports as the cluster stage's share of the scan (FLEETAUDIT_LOG=info).
    tracing::info!(
        scan_id,
        clusters = members.len(),
        verdicts = clusters.len(),
        seconds = stage.elapsed().as_secs_f64(),
        "cluster stage finished"
    );
    store.finish_scan(scan_id, interrupted).await?;
    Ok((clusters, partial))
}

/// The rules CIS assesses manually.
fn manual_rules(engine: &Engine) -> std::collections::BTreeSet<String> {
    engine
        .rules
        .rules
        .iter()
        .filter(|r| r.assessment == crate::rules::pack::Assessment::Manual)
        .map(|r| r.id.clone())
        .collect()
}

/// Every host the inventory puts in each cluster (hosts without a `cluster` are not judged together).
pub fn cluster_members(inventory: &Inventory) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut members: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for h in &inventory.hosts {
        if let Some(c) = &h.cluster {
            members.entry(c.clone()).or_default().push(h.name.clone());
        }
    }
    members
}

/// The metadata of every rule in force, as the store keeps it with each scan.
pub fn rule_meta(engine: &Engine) -> Vec<RuleMeta> {
    engine
        .rules
        .rules
        .iter()
        .map(|r| RuleMeta {
            rule_id: r.id.clone(),
            cis: r.cis.clone(),
            title: r.title.clone(),
            component: engine.rules.component(r).id.clone(),
            severity: r.severity.as_str().to_owned(),
            rationale: r.rationale.clone(),
            remediation: r.remediation.clone(),
            test: r.test.describe(),
            assessment: r.assessment.as_str().to_owned(),
            cis_previous: serde_json::to_string(&r.previous).expect("rule ids and benchmark names serialise"),
        })
        .collect()
}

fn count_rules(counts: &mut std::collections::BTreeMap<String, Summary>, outcome: &HostOutcome, rule_ids: &[String]) {
    let mut add = |rule: &str, status: Status| {
        let s = counts.entry(rule.to_owned()).or_default();
        match status {
            Status::Pass => s.pass += 1,
            Status::Fail => s.fail += 1,
            Status::Error => s.error += 1,
            Status::NotApplicable => s.not_applicable += 1,
        }
    };
    match &outcome.result {
        HostResult::Audited { findings, .. } => findings.iter().for_each(|f| add(&f.rule_id, f.status)),
        HostResult::Error { .. } => rule_ids.iter().for_each(|r| add(r, Status::Error)),
    }
}

/// The hosts to scan, in inventory order (or `only`'s order): those named in `only` (all when empty), then those
/// of `shard`. A name in `only` that the inventory lacks is an error even when another shard would hold it.
pub fn select_hosts(inventory: &Inventory, only: &[String], shard: Option<Shard>) -> Result<Vec<Host>, ScanError> {
    let hosts: Vec<&Host> = if only.is_empty() {
        inventory.hosts.iter().collect()
    } else {
        only.iter()
            .map(|name| inventory.host(name).ok_or_else(|| ScanError::UnknownHost(name.clone())))
            .collect::<Result<_, _>>()?
    };
    Ok(hosts.into_iter().filter(|h| shard.is_none_or(|s| s.contains(&h.name))).cloned().collect())
}

/// Reaches one host, reads its process table and the files its processes name, and judges them. Never
/// fails: every problem becomes the host's error outcome (a file that cannot be read is the error of the rules
/// that need it, not of the host).
async fn audit_host(transport: &Transport, engine: &Engine, host: &Host) -> (HostOutcome, HostReport) {
    let started_at = model::utc_now();
    let started = Instant::now();
    let (fingerprint, certificate, result) = match transport.open(&Target::of(host), &host.files).await {
        Err(e) => {
            tracing::warn!(host = %host.name, kind = e.kind(), "{e}");
            (None, None, HostResult::Error { kind: e.kind().to_owned(), message: e.to_string() })
        }
        Ok(mut session) => {
            let fingerprint = session.fingerprint().to_owned();
            let certificate = session.certificate().cloned();
            let result = match session.ps().await {
                Err(e) => {
                    tracing::warn!(host = %host.name, kind = e.kind(), "{e}");
                    HostResult::Error { kind: e.kind().to_owned(), message: e.to_string() }
                }
                Ok(stdout) => match table_of(host, &stdout) {
                    Err(result) => result,
                    Ok(table) => {
                        let (files, rounds, findings, certs) = engine.audit(&table, &mut session, &host.roles).await;
                        let stats = session.file_stats();
                        tracing::debug!(host = %host.name, rounds, requests = stats.requests,
                            round_trips = stats.round_trips, bytes = stats.bytes, "files read");
                        host_result(engine, &table, &files, &certs, findings)
                    }
                },
            };
            session.close().await;
            (Some(fingerprint), certificate, result)
        }
    };
    let duration = started.elapsed();
    let report = HostReport {
        name: host.name.clone(),
        cluster: host.cluster.clone(),
        duration,
        result: match &result {
            HostResult::Audited { findings, .. } => Ok(Summary::of(findings.iter().map(|f| f.status))),
            HostResult::Error { kind, message } => Err((kind.clone(), message.clone())),
        },
    };
    let outcome = HostOutcome {
        host: HostRecord {
            name: host.name.clone(),
            cluster: host.cluster.clone(),
            address: host.address.clone(),
            port: host.port,
            roles: host.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        },
        started_at,
        duration_ms: duration.as_millis() as u64,
        host_key_fingerprint: fingerprint,
        host_certificate: certificate.map(|c| HostCertificateRecord {
            description: c.to_string(),
            valid_after: crate::ssh::certs::time(c.valid_after),
            valid_before: crate::ssh::certs::time(c.valid_before),
            sha256: c.sha256,
            ca_fingerprint: c.ca_fingerprint,
            serial: c.serial,
            key_id: c.key_id,
            principals: c.principals,
        }),
        result,
    };
    (outcome, report)
}

/// What one host showed: its `ps -ef` output and the files its processes name, as a scan reads them (secrets
/// redacted): what `fleetaudit snapshot` writes.
pub struct HostSnapshot {
    pub ps: Vec<u8>,
    pub files: crate::files::FileSet,
    /// Batches of file requests it took.
    pub rounds: usize,
}

/// Reads one host as [`audit_host`] does, without judging or storing: for `fleetaudit snapshot`.
pub async fn snapshot_host(transport: &Transport, engine: &Engine, host: &Host) -> Result<HostSnapshot, ScanError> {
    let failed = |e: crate::ssh::SshError| ScanError::Host { host: host.name.clone(), message: e.to_string() };
    let mut session = transport.open(&Target::of(host), &host.files).await.map_err(failed)?;
    let ps = session.ps().await.map_err(failed)?;
    let table = table_of(host, &ps).map_err(|r| match r {
        HostResult::Error { message, .. } => ScanError::Host { host: host.name.clone(), message },
        HostResult::Audited { .. } => unreachable!("table_of fails only with an error"),
    })?;
    let (files, rounds) = engine.gather(&table, &mut session).await;
    session.close().await;
    Ok(HostSnapshot { ps, files, rounds })
}

/// Parses one host's `ps` output, refusing a table too incomplete to judge.
fn table_of(host: &Host, stdout: &[u8]) -> Result<ps::ProcessTable, HostResult> {
    let table = match ps::parse(stdout) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(host = %host.name, "unreadable ps output: {e}");
            return Err(HostResult::Error {
                kind: "unreadable_table".into(),
                message: format!("`ps -ef` output: {e}"),
            });
        }
    };
    if let Some(why) = incomplete(&table) {
        tracing::warn!(host = %host.name, "{why}");
        return Err(HostResult::Error { kind: "incomplete_table".into(), message: why });
    }
    Ok(table)
}

/// Parses and judges one host's `ps` output alone (no files: every file-backed setting is an error).
pub fn judge(engine: &Engine, host: &Host, stdout: &[u8]) -> HostResult {
    match table_of(host, stdout) {
        Err(result) => result,
        Ok(table) => judge_with_files(engine, host, &table, &crate::files::FileSet::none()),
    }
}

/// Judges one host's table and files into what the store keeps.
pub fn judge_with_files(
    engine: &Engine,
    host: &Host,
    table: &ps::ProcessTable,
    files: &crate::files::FileSet,
) -> HostResult {
    let certs = engine.certificate_roles(table, files);
    host_result(engine, table, files, &certs, engine.judge_with_files(table, files, &host.roles))
}

/// What the store keeps of one host's verdicts and files.
fn host_result(
    engine: &Engine,
    table: &ps::ProcessTable,
    files: &crate::files::FileSet,
    certs: &crate::rules::CertRoles,
    findings: Vec<crate::rules::Finding>,
) -> HostResult {
    // The rules of one component share its processes as evidence: serialise each distinct list once.
    let mut stored: Vec<(Vec<crate::rules::Evidence>, Option<String>)> = Vec::new();
    let findings = findings
        .into_iter()
        .map(|f| {
            let same = |e: &[crate::rules::Evidence]| {
                e.len() == f.evidence.len()
                    && e.iter()
                        .zip(&f.evidence)
                        .all(|(a, b)| (a.pid, &a.user, &a.cmdline) == (b.pid, &b.user, &b.cmdline))
            };
            let evidence = match stored.iter().find(|(e, _)| same(e)) {
                Some((_, doc)) => doc.clone(),
                None => {
                    let doc = stored_evidence(&f.evidence);
                    stored.push((f.evidence, doc.clone()));
                    doc
                }
            };
            FindingRecord {
                rule_id: engine.rules.rules[f.rule].id.clone(),
                status: f.status,
                evidence,
                reason: f.reason,
            }
        })
        .collect::<Vec<_>>();
    HostResult::Audited {
        ps_format: table.format.to_string(),
        processes: table.processes.len() as u32,
        findings,
        files: file_records(files, certs),
    }
}

/// What the store keeps of a host's files: every path asked, with owners named from the host's own account
/// files when they were read, and the roles of its certificate files.
pub fn file_records(files: &crate::files::FileSet, certs: &crate::rules::CertRoles) -> Vec<FileRecord> {
    use crate::files::{Entry, Kind};
    // The accounts the file rules parsed (kept in the set); numbers where the host's names are unknown.
    let unknown = crate::files::accounts::Accounts::default();
    let accounts = crate::rules::filecheck::host_accounts(files).as_ref().unwrap_or(&unknown);
    files
        .iter()
        .map(|(path, entry)| {
            let roles = certs.get(path).map(|r| r.iter().cloned().collect()).unwrap_or_default();
            match entry {
                Entry::Found { meta, content, .. } => FileRecord {
                    path: path.clone(),
                    kind: Some(
                        match meta.kind {
                            Kind::File => "file",
                            Kind::Dir => "dir",
                            Kind::Symlink => "symlink",
                            Kind::Other => "other",
                        }
                        .to_owned(),
                    ),
                    mode: Some(meta.mode),
                    uid: Some(meta.uid),
                    gid: Some(meta.gid),
                    owner: Some(accounts.owner(meta.uid, meta.gid)),
                    size: Some(meta.size),
                    sha256: content.as_ref().map(|c| c.sha256.iter().map(|b| format!("{b:02x}")).collect()),
                    redacted: content.as_ref().is_some_and(|c| c.redacted),
                    content: content.as_ref().map(|c| c.bytes.clone()),
                    problem: None,
                    problem_message: None,
                    roles,
                },
                Entry::Problem(p) => FileRecord { roles, ..FileRecord::of_problem(path, p.kind(), &p.to_string()) },
            }
        })
        .collect()
}

/// The evidence kept in the database: the processes' lines (already redacted) without what changes between
/// two scans of an unchanged host. The `ps` line number moves whenever an earlier process comes or goes, so it
/// is left out; the per-flag detail is in the finding's reason. Every rule of one component on one host then
/// shares one evidence row, and an unchanged rescan shares it with the previous scan.
fn stored_evidence(evidence: &[crate::rules::Evidence]) -> Option<String> {
    #[derive(serde::Serialize)]
    struct Stored<'a> {
        pid: u32,
        user: &'a str,
        cmdline: &'a str,
    }
    if evidence.is_empty() {
        return None;
    }
    let rows: Vec<Stored<'_>> =
        evidence.iter().map(|e| Stored { pid: e.pid, user: &e.user, cmdline: &e.cmdline }).collect();
    serde_json::to_string(&rows).ok()
}

/// Whether the table is too incomplete to judge. Every Linux process table shows PID 1 (init, or a PID
/// namespace's first process) unless `/proc` is mounted with `hidepid`, which hides other users' processes:
/// judging such a table would turn "cannot see the API server" into "the API server is not here".
pub fn incomplete(table: &ps::ProcessTable) -> Option<String> {
    if table.processes.iter().any(|p| p.pid == 1) {
        return None;
    }
    let users: std::collections::BTreeSet<&str> = table.processes.iter().map(|p| p.user.as_str()).collect();
    Some(format!(
        "the process table is incomplete: PID 1 is not visible and only processes of {} are, as when /proc is \
         mounted with hidepid; exempt the audit user (mount /proc with gid=GROUP and add the user to GROUP) or \
         audit as a user that sees every process",
        users.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(names: &[String]) -> Inventory {
        let mut text = String::from("[defaults]\nknown_hosts = \"/dev/null\"\n");
        for n in names {
            text += &format!("\n[[hosts]]\nname = \"{n}\"\naddress = \"127.0.0.1\"\n");
        }
        crate::inventory::parse(std::path::Path::new("inventory.toml"), &text).unwrap()
    }

    fn names(hosts: &[Host]) -> Vec<String> {
        hosts.iter().map(|h| h.name.clone()).collect()
    }

    #[test]
    fn shards_partition_the_inventory_and_do_not_move_when_it_grows() {
        let fleet: Vec<String> = (1..=50).map(|i| format!("node-{i}.dc1.example.com")).collect();
        let grown: Vec<String> = fleet.iter().cloned().chain((1..=20).map(|i| format!("late-{i}"))).collect();
        let (small, big) = (inventory(&fleet), inventory(&grown));
        for count in 1..=5 {
            let mut seen: Vec<String> = Vec::new();
            for index in 1..=count {
                let shard = Some(Shard { index, count });
                let slice = names(&select_hosts(&small, &[], shard).unwrap());
                assert!(slice.iter().all(|h| !seen.contains(h)), "{index}/{count} overlaps");
                seen.extend(slice.iter().cloned());
                let mut old_in_grown = names(&select_hosts(&big, &[], shard).unwrap());
                old_in_grown.retain(|h| fleet.contains(h));
                assert_eq!(old_in_grown, slice, "{index}/{count}: adding hosts moved others");
                if count > 1 {
                    assert!(!slice.is_empty() && slice.len() < fleet.len(), "{index}/{count}: {}", slice.len());
                }
            }
            seen.sort();
            let mut all = fleet.clone();
            all.sort();
            assert_eq!(seen, all, "the {count} slices cover every host once");
        }
    }

    #[test]
    fn a_hosts_slot_is_the_sha256_of_its_name() {
        // `printf cp-1 | sha256sum` starts cd590dae0f692213: anyone can compute a host's slice without us.
        for n in 1..=9u32 {
            assert_eq!(Shard::slot("cp-1", n), (0xcd59_0dae_0f69_2213_u64 % u64::from(n)) as u32);
        }
        assert_eq!(Shard::slot("anything", 1), 0);
    }

    #[test]
    fn only_and_shard_both_apply() {
        let fleet: Vec<String> = (1..=30).map(|i| format!("h{i}")).collect();
        let inv = inventory(&fleet);
        let only: Vec<String> = fleet[..12].to_vec();
        let a = names(&select_hosts(&inv, &only, Some(Shard { index: 1, count: 2 })).unwrap());
        let b = names(&select_hosts(&inv, &only, Some(Shard { index: 2, count: 2 })).unwrap());
        assert!(a.iter().all(|h| only.contains(h) && !b.contains(h)));
        assert_eq!(a.len() + b.len(), only.len());
        let err = select_hosts(&inv, &["nope".into()], Some(Shard { index: 1, count: 2 })).unwrap_err();
        assert!(matches!(err, ScanError::UnknownHost(n) if n == "nope"));
    }

    #[test]
    fn shard_specs() {
        assert_eq!("2/5".parse(), Ok(Shard { index: 2, count: 5 }));
        assert_eq!("1/1".parse(), Ok(Shard { index: 1, count: 1 }));
        for bad in ["0/3", "4/3", "x", "1/0", "0/0", "3", "1/2/3", "-1/3", "", "a/b"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(
                e.contains("K/N") || e.contains("between 1 and N: 1/3 to 3/3") || e.contains("at least 1"),
                "{bad:?}: {e}"
            );
        }
    }
}
