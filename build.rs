//! Rebuilds when a migration is added: `sqlx::migrate!` embeds `migrations/sqlite/` at compile time, but cargo does not
//! know the macro reads that directory, so without this a new migration file would be silently left out.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
