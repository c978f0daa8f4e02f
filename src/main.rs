//! The `fleetaudit` binary: parses arguments, runs the command, maps the outcome to an exit code.

/// The top-level entry point: everything else is in the library.
fn main() {
    std::process::exit(fleetaudit::cli::main());
}
