//! `fleetaudit demo` (the README's "run it" command) works, and every example query in the README's Database
//! section runs against what it stored, with the sqlite3 CLI users query with.

mod support;

use support::{fleetaudit, sqlite, text};

fn readme_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```sql\n").expect("README has an ```sql block") + "```sql\n".len();
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    block.split(";\n").map(str::trim).filter(|q| !q.is_empty()).map(|q| format!("{q};")).collect()
}

#[test]
fn demo_runs_and_the_readme_queries_answer() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = fleetaudit(&["demo", "--dir", demo.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("10 hosts") && stdout.contains("9 audited, 1 not audited"), "{stdout}");
    assert!(stdout.contains("prod-cp-3") && stdout.contains("unreachable"), "{stdout}");
    let db = demo.join("fleetaudit.db");
    assert!(stdout.contains(&db.display().to_string()), "the summary says where the results are:\n{stdout}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&db).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "the database is readable by its owner only");

    // A second run: a history of two scans, so `changes` and per-scan queries have something to compare.
    let out = fleetaudit(&["demo", "--dir", demo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let queries = readme_queries();
    assert!(queries.len() >= 8, "{queries:#?}");
    for q in &queries {
        let rows = sqlite(&db, q);
        // Only "what changed" may be empty: the demo fleet does not change between runs.
        if !q.contains("FROM changes") {
            assert!(!rows.trim().is_empty(), "README query returned nothing:\n{q}");
        }
    }
    // And they say what the demo fleet is.
    let query =
        |part: &str| queries.iter().find(|q| q.contains(part)).unwrap_or_else(|| panic!("no query with {part}"));
    let reference = sqlite(&db, query("WHERE rule_id = 'apiserver-kubelet-certificate-authority' ORDER BY status"));
    assert!(reference.contains("prod-cp-2|fail|") && reference.contains("prod-cp-1|pass|"), "{reference}");
    let renumbered = sqlite(&db, query("json_each(r.cis_previous)"));
    assert_eq!(renumbered.trim(), "apiserver-kubelet-certificate-authority|1.2.5");
    let automated = sqlite(&db, query("assessment = 'automated'"));
    assert!(!automated.contains("apiserver-anonymous-auth|"), "a Manual check is not listed:\n{automated}");
    let unreachable = sqlite(&db, query("FROM host_status WHERE outcome = 'error'"));
    assert!(unreachable.starts_with("prod-cp-3|127.0.0.1|") && unreachable.contains("|unreachable|"), "{unreachable}");
    assert_eq!(sqlite(&db, "SELECT count(*), group_concat(status) FROM scans").trim(), "2|complete,complete");

    // `history --cluster`, as the README's Cluster rules section types it: prod's cluster verdicts of both scans;
    // the seed rule fails on kubeadm's self-signed kubelets, and the week-old certificate fails the expiry rule.
    let out = fleetaudit(&["history", "--db", db.to_str().unwrap(), "--cluster", "prod"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    for scan in ["1", "2"] {
        let line = |rule: &str| {
            said.lines()
                .find(|l| l.starts_with(&format!("{scan:<5} ")) && l.contains(&format!(" prod  {rule}  ")))
                .unwrap_or_else(|| panic!("no scan {scan} line of {rule}:\n{said}"))
                .to_owned()
        };
        let seed = line("cluster-kubelet-serving-certificates");
        assert!(seed.contains("  fail  2 of 3 kubelets") && seed.contains("prod-cp-2 ("), "{seed}");
        let expiry = line("cluster-kubelet-serving-certificates-expiry");
        assert!(expiry.contains("  fail  ") && expiry.contains(" days), at prod-worker-1:"), "{expiry}");
    }
    assert!(!said.contains(" kops "), "only prod's: {said}");
}

/// The commands `demo` prints after its summary run as typed, from the directory it ran in, with this build (not
/// a `fleetaudit` on PATH: a `cargo run` user has none).
#[test]
fn the_demo_next_steps_run_as_typed() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("my demo");
    let out = fleetaudit(&["demo", "--dir", demo.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    let next = &stdout[stdout.find("Next:\n").unwrap_or_else(|| panic!("no Next: in\n{stdout}")) + 6..];
    let steps: Vec<&str> = next.lines().take_while(|l| l.starts_with("  ")).map(str::trim).collect();
    assert!(steps.len() >= 3, "{steps:?}");
    assert!(!steps.iter().any(|s| s.contains(" scan -i ")), "the demo's nodes are gone once it exits: {steps:?}");
    let exe = env!("CARGO_BIN_EXE_fleetaudit");
    for step in &steps {
        assert!(
            step.starts_with("sqlite3 ") || step.starts_with("./") || step.starts_with(exe),
            "{step}: this build, by a path the shell finds"
        );
        let run = std::process::Command::new("sh").args(["-c", step]).env("NO_COLOR", "1").output().unwrap();
        let said = text(&run.stdout);
        assert_eq!(run.status.code(), Some(0), "{step}\n{said}\n{}", text(&run.stderr));
        assert!(!said.trim().is_empty(), "{step} printed nothing");
    }
    let history = steps.iter().find(|s| s.contains(" history ")).expect("a history step");
    let said = text(&std::process::Command::new("sh").args(["-c", history]).output().unwrap().stdout);
    assert!(said.contains("prod-cp-2") && said.contains("fail"), "{said}");
}
