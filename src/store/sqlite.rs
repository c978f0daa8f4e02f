//! The SQLite side of the store: its driver's types, its dialect, and the batch code compiled for it.
//!
//! Owns: what only SQLite spells this way. Must not touch: anything the PostgreSQL side would need too (that
//! belongs in `batch.rs` or the store itself).

pub(super) type Db = sqlx::Sqlite;

/// Begins a transaction that writes: SQLite takes the write lock at once, so two writers wait for each other
/// at the start (under `busy_timeout`) instead of one failing when it first writes.
pub(super) const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// The time now, as every stored time is written: RFC 3339 UTC with milliseconds.
pub(super) const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// Run first in every transaction that records hosts: nothing, SQLite's write lock already orders writers.
pub(super) const WRITE_GUARD: Option<&str> = None;

/// Run first in a prune's transaction: nothing (see [`WRITE_GUARD`]).
pub(super) const PRUNE_GUARD: Option<&str> = None;

// The same file is the other backend's `batch` too, on purpose: see its module comment.
#[allow(clippy::duplicate_mod)]
#[path = "batch.rs"]
pub(super) mod batch;
