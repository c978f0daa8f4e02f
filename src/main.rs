//! The `fleetaudit` binary: parses arguments, runs the command, maps the outcome to an exit code.

// glibc's malloc was a third of a 10,000-node simulated scan's CPU (perf: `_int_malloc`, `malloc_consolidate`,
// `unlink_chunk` across tokio's worker threads, where every host's parse, plan and judge allocate small strings).
// mimalloc 3's thread-local free lists cut the scanner's CPU per host by a fifth to a quarter in paired runs
// (README, "The allocator"). The cost is a C library built by `cc` (already needed for SQLite) and the memory
// settings below.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's own declarations (libmimalloc-sys links the library; its Rust constants follow mimalloc 2's
// numbering, so the two options used are numbered here from mimalloc 3's `mimalloc.h`, `mi_option_e`).
#[cfg(target_os = "linux")]
unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    #[cfg(test)]
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
}
/// `mi_option_arena_eager_commit`.
#[cfg(target_os = "linux")]
const ARENA_EAGER_COMMIT: std::ffi::c_int = 4;
/// `mi_option_purge_delay` (milliseconds; 1,000 by default).
#[cfg(target_os = "linux")]
const PURGE_DELAY: std::ffi::c_int = 15;

/// With its defaults mimalloc commits its arenas eagerly and keeps freed pages a second: a scan of 16 hostile
/// hosts (one flooding 100 MB of `ps` output at the capped reader) peaked at 94–95 MB against the 64 MB that
/// tests/fault_matrix.rs holds it to. Committing on demand and returning freed pages at once keeps it under,
/// and cost no CPU in paired 10,000-node runs (README, "The allocator").
#[cfg(target_os = "linux")]
extern "C" fn tune_allocator() {
    // SAFETY: plain setters of mimalloc's option table, run before `main` (below) on one thread.
    unsafe {
        mi_option_set(ARENA_EAGER_COMMIT, 0);
        mi_option_set(PURGE_DELAY, 0);
    }
}

// Run before the first allocation: mimalloc reserves its first arena on it, reading the commit option then,
// so setting it in `main` (after std's runtime has allocated) was too late (the scan above still peaked at
// 80 MB). The environment (`MIMALLOC_*`) would do the same but is the user's, not ours.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

/// The top-level entry point: everything else is in the library.
fn main() {
    std::process::exit(fleetaudit::cli::main());
}

#[cfg(test)]
mod tests {
    // Only Linux runs the constructor that sets the options (`.init_array`, above).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_allocator_options_are_the_ones_meant() {
        // A wrong option number would set something else silently: the two are set (the constructor ran in
        // this binary too), and the numbering matches mimalloc 3's where defaults are distinctive (`os_tag`
        // 100 and `max_errors` 32, numbers 18 and 19).
        // SAFETY: getters of mimalloc's option table.
        let get = |option| unsafe { super::mi_option_get(option) };
        assert_eq!((get(super::ARENA_EAGER_COMMIT), get(super::PURGE_DELAY)), (0, 0));
        assert_eq!((get(18), get(19)), (100, 32), "mimalloc's option numbering changed: see mimalloc.h");
    }
}
