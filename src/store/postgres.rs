//! The PostgreSQL side of the store: its driver's types, its dialect, and the batch code compiled for it.
//!
//! Owns: what only PostgreSQL spells this way. Must not touch: anything the SQLite side would need too (that
//! belongs in `batch.rs` or the store itself).

pub(super) type Db = sqlx::Postgres;

/// Begins a transaction that writes. Rows are locked as they are written; the scan lock (an advisory lock)
/// keeps a second scan out.
pub(super) const BEGIN_WRITE: &str = "BEGIN";

/// The time now, as SQLite's side writes it: RFC 3339 UTC with milliseconds (`2026-12-04T18:20:01.123Z`), so the
/// same text sorts and compares the same on both. `clock_timestamp()`, not `now()`: the transaction's start
/// would give every statement of a long transaction one time.
pub(super) const NOW: &str = "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

/// Run first in every transaction that records hosts: a shared transaction-level advisory lock (key "fleetpru"
/// in ASCII), which any number of scanners hold at once and [`PRUNE_GUARD`] waits for.
pub(super) const WRITE_GUARD: Option<&str> = Some("SELECT pg_advisory_xact_lock_shared(7380385375773028981)");

/// Run first in a prune's transaction: the same lock, exclusive: a prune waits for the batches being written and
/// holds off new ones until it commits, so it never deletes a row a batch found and is about to point at.
pub(super) const PRUNE_GUARD: Option<&str> = Some("SELECT pg_advisory_xact_lock(7380385375773028981)");

// The same file is the other backend's `batch` too, on purpose: see its module comment.
#[allow(clippy::duplicate_mod)]
#[path = "batch.rs"]
pub(super) mod batch;
