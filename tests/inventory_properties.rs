//! Property tests for the inventory reader, the other file a user hands fleetaudit: it never panics on any
//! text, every error points at a line that exists in the file, and what it accepts is consistent (unique host
//! names, ports and timeouts in range, every host with an address). Inputs come from three generators:
//! arbitrary text, mutations of `inventory.example.toml`, and inventories built from the real keys with a mix
//! of valid and invalid values. Failures found are kept in proptest-regressions/.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fleetaudit::inventory::{self, Inventory, InventoryError, Jump};
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../inventory.example.toml");

/// A directory holding the key files the generated inventories name (`k1`, `k2`), so valid ones can load.
fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fleetaudit-inventory-props-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for k in ["k1", "k2"] {
            std::fs::write(dir.join(k), "not read by the inventory, only checked to exist\n").unwrap();
        }
        dir
    })
}

/// Parses `text` as `DIR/inventory.toml` and checks the properties every outcome must have.
fn check(text: &str) -> Result<Option<Inventory>, TestCaseError> {
    let path = dir().join("inventory.toml");
    match inventory::parse(&path, text) {
        Ok(inv) => {
            let mut names = HashSet::new();
            for h in &inv.hosts {
                prop_assert!(names.insert(h.name.to_ascii_lowercase()), "duplicate host {} accepted", h.name);
                prop_assert!(!h.name.is_empty() && !h.address.is_empty());
                prop_assert!(
                    h.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                    "host name {:?} would not be a safe file name",
                    h.name
                );
                prop_assert!(h.port > 0);
                prop_assert!(!h.connect_timeout.is_zero() && !h.command_timeout.is_zero());
                prop_assert!(!h.user.is_empty());
                for f in &h.identity_files {
                    prop_assert!(f.exists(), "identity file {} accepted but missing", f.display());
                }
                for j in &h.jump {
                    prop_assert!(j.port > 0 && !j.address.is_empty());
                }
            }
            prop_assert!(inv.settings.concurrency >= 1);
            Ok(Some(inv))
        }
        Err(e) => {
            let lines = text.lines().count() + 1;
            let line = match &e {
                InventoryError::Syntax { at, .. } | InventoryError::Invalid { at, .. } => at.line,
                InventoryError::Read { .. } => return Err(TestCaseError::fail(format!("parse read a file: {e}"))),
                // Only an `ssh_config = ...` the text names (an edit can uncomment the example's) is read.
                InventoryError::SshConfig(_) if text.contains("ssh_config") => return Ok(None),
                InventoryError::SshConfig(_) => return Err(TestCaseError::fail(format!("read an ssh_config: {e}"))),
            };
            prop_assert!(line >= 1 && line <= lines, "error at line {line} of a {lines}-line file: {e}");
            let message = e.to_string();
            prop_assert!(message.starts_with(&path.display().to_string()), "error does not name the file: {message}");
            prop_assert!(!message.trim().is_empty());
            Ok(None)
        }
    }
}

/// Values a host key can carry that the reader must accept (given the key files in [`dir`]).
fn valid_value() -> impl Strategy<Value = (&'static str, String)> {
    prop_oneof![
        prop_oneof![Just("\"audit\""), Just("\"ops_1\"")].prop_map(|v| ("user", v.to_owned())),
        (1u16..=65535).prop_map(|p| ("port", p.to_string())),
        prop_oneof![Just("\"k1\""), Just("[\"k1\", \"k2\"]"), Just("[]")].prop_map(|v| ("identity_file", v.to_owned())),
        prop_oneof![Just("[\"control-plane\"]"), Just("[\"etcd\", \"worker\"]"), Just("[]")]
            .prop_map(|v| ("roles", v.to_owned())),
        prop_oneof![Just("\"bastion\""), Just("\"ops@10.0.0.1:2022\""), Just("\"[::1]:22\""), Just("\"\"")]
            .prop_map(|v| ("jump", v.to_owned())),
        prop_oneof![Just("\"5s\""), Just("\"1h30m\""), Just("\"500ms\"")]
            .prop_map(|v| ("connect_timeout", v.to_owned())),
        prop_oneof![Just("\"30s\""), Just("\"2m\"")].prop_map(|v| ("command_timeout", v.to_owned())),
    ]
}

/// Values the reader must refuse, or that only some tables accept.
fn invalid_value() -> impl Strategy<Value = (&'static str, String)> {
    prop_oneof![
        prop_oneof![Just("\"\""), Just("\"ro ot\""), Just("\"-x\""), Just("7")].prop_map(|v| ("user", v.to_owned())),
        prop_oneof![Just("0"), Just("65536"), Just("-1"), Just("\"22\""), Just("2.5")]
            .prop_map(|v| ("port", v.to_owned())),
        prop_oneof![Just("\"missing\""), Just("[1]")].prop_map(|v| ("identity_file", v.to_owned())),
        prop_oneof![Just("[\"master\"]"), Just("\"worker\"")].prop_map(|v| ("roles", v.to_owned())),
        "(\"[a-z0-9@:\\[\\].-]{0,20}\")".prop_map(|v| ("jump", v)),
        prop_oneof![Just("\"0s\""), Just("\"soon\""), Just("5"), Just("\"-1s\""), Just("\"\"")]
            .prop_map(|v| ("command_timeout", v.to_owned())),
        "\"[a-zA-Z0-9:.\\[\\]%-]{0,16}\"".prop_map(|v| ("address", v)),
        "\"[A-Za-z0-9._ /-]{0,10}\"".prop_map(|v| ("name", v)),
        prop_oneof![Just("\"prod\""), Just("\"nope\""), Just("\"\"")].prop_map(|v| ("cluster", v.to_owned())),
        Just(("colour", "\"blue\"".to_owned())),
    ]
}

/// Mostly valid values, so both the accepted and the refused paths are exercised.
fn value() -> impl Strategy<Value = (&'static str, String)> {
    prop_oneof![12 => valid_value(), 1 => invalid_value()]
}

/// A TOML table; a key given twice keeps its first value (a repeated key is a TOML error the noise tests
/// already reach).
fn table(header: &'static str, keys: Vec<(&'static str, String)>) -> String {
    let mut s = format!("{header}\n");
    let mut seen = HashSet::new();
    for (k, v) in keys.into_iter().filter(|(k, _)| seen.insert(*k)) {
        s.push_str(&format!("{k} = {v}\n"));
    }
    s
}

/// Whole inventories: defaults, clusters with nested hosts, top-level hosts; keys may repeat, be misplaced or
/// carry wrong types, so both the accepted and the refused paths get exercised.
fn inventory_text() -> impl Strategy<Value = String> {
    let defaults = (
        proptest::collection::vec(value(), 0..4),
        prop_oneof![
            Just(None),
            Just(Some("concurrency = 0")),
            Just(Some("concurrency = 512")),
            Just(Some("keep_scans = -3")),
            Just(Some("host_key_policy = \"yes\"")),
            Just(Some("schedule = \"*/5 * * * *\"")),
            Just(Some("known_hosts = [\"k1\"]"))
        ],
    );
    let host = || {
        (
            "[a-z][a-z0-9-]{0,6}",
            "([a-z][a-z0-9-]{0,8}|10\\.[0-9]{1,2}\\.0\\.[1-9]|::1)",
            proptest::collection::vec(value(), 0..4),
        )
            .prop_map(|(name, address, mut keys)| {
                keys.insert(0, ("address", format!("{address:?}")));
                keys.insert(0, ("name", format!("{name:?}")));
                keys
            })
    };
    let cluster = ("[a-z]{1,5}", proptest::collection::vec(value(), 0..3), proptest::collection::vec(host(), 0..4));
    (defaults, proptest::collection::vec(cluster, 0..3), proptest::collection::vec(host(), 0..5)).prop_map(
        |((dkeys, setting), clusters, hosts)| {
            let mut text = table("[defaults]", dkeys);
            if let Some(s) = setting {
                text.push_str(s);
                text.push('\n');
            }
            for (name, ckeys, chosts) in clusters {
                let mut keys = vec![("name", format!("{name:?}"))];
                keys.extend(ckeys);
                text.push_str(&table("[[clusters]]", keys));
                for h in chosts {
                    text.push_str(&table("[[clusters.hosts]]", h));
                }
            }
            for h in hosts {
                text.push_str(&table("[[hosts]]", h));
            }
            text
        },
    )
}

/// One edit to a text: delete, duplicate or replace a byte range, or insert something TOML finds hard.
fn mutate(text: &str, at: usize, len: usize, what: u8, insert: &str) -> String {
    let bytes = text.as_bytes();
    let at = at % (bytes.len() + 1);
    let end = (at + len).min(bytes.len());
    let mut out = bytes[..at].to_vec();
    match what % 4 {
        0 => {}
        1 => out.extend_from_slice(&bytes[at..end]),
        2 => out.extend_from_slice(insert.as_bytes()),
        _ => {
            out.extend_from_slice(&bytes[at..end]);
            out.extend_from_slice(insert.as_bytes());
        }
    }
    // Deletions and replacements skip the edited range; duplications and insertions keep it.
    out.extend_from_slice(if what.is_multiple_of(2) { &bytes[end..] } else { &bytes[at..] });
    String::from_utf8_lossy(&out).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_text(text in "(?s).{0,400}") {
        check(&text)?;
    }

    #[test]
    fn never_panics_on_toml_shaped_noise(
        lines in proptest::collection::vec(
            "(\\[{1,2}[a-z.]{0,16}\\]{1,2}|[a-z_]{1,14} = (\"[^\"\\n]{0,12}\"|-?[0-9]{1,6}|\\[[^\\n]{0,16}\\]|true|\\{[^\\n]{0,12}\\})|#.{0,10}|)",
            0..30,
        )
    ) {
        check(&lines.join("\n"))?;
    }

    #[test]
    fn mutations_of_the_example_are_read_or_refused_with_a_line(
        edits in proptest::collection::vec(
            (any::<usize>(), 0usize..40, any::<u8>(), prop_oneof![
                Just("\n"), Just("\""), Just("["), Just("]]"), Just("="), Just("\u{0}"), Just("\u{feff}"),
                Just("é"), Just("[[hosts]]\n"), Just("port = 99999\n"), Just("'''"), Just("\\u"),
            ]),
            1..4,
        )
    ) {
        let mut text = EXAMPLE.to_owned();
        for (at, len, what, insert) in edits {
            text = mutate(&text, at, len, what, insert);
        }
        check(&text)?;
    }

    #[test]
    fn generated_inventories_are_consistent(text in inventory_text()) {
        check(&text)?;
    }

    #[test]
    fn jump_specs_parse_or_explain(spec in "(?s).{0,40}") {
        match Jump::parse(&spec) {
            Ok(j) => {
                prop_assert!(j.port > 0 && !j.address.is_empty());
                // What it prints parses back to itself, so a jump host can be shown and re-read.
                prop_assert_eq!(Jump::parse(&j.to_string()), Ok(j));
            }
            Err(message) => prop_assert!(message.contains("is not a jump host"), "{}", message),
        }
    }
}

/// A generated inventory that is valid is accepted with what it says: the properties above are not vacuous.
#[test]
fn a_generated_style_inventory_is_accepted() {
    let text = "[defaults]\nidentity_file = \"k1\"\nconcurrency = 512\n[[clusters]]\nname = \"prod\"\nport = 2222\n\
                [[clusters.hosts]]\nname = \"a\"\naddress = \"10.0.0.1\"\n[[hosts]]\nname = \"b\"\naddress = \"::1\"\n\
                jump = \"ops@bastion:2022\"\n";
    let path = dir().join("inventory.toml");
    let inv = inventory::parse(&path, text).unwrap();
    assert_eq!(inv.hosts.len(), 2);
    assert_eq!(inv.hosts[0].port, 2222);
    assert_eq!(inv.hosts[1].jump.iter().map(ToString::to_string).collect::<Vec<_>>(), ["ops@bastion:2022"]);
    assert_eq!(inv.settings.concurrency, 512);
}

/// The generator reaches both outcomes, so `generated_inventories_are_consistent` checks accepted inventories
/// and refused ones, not only one kind.
#[test]
fn the_generator_produces_both_valid_and_invalid_inventories() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = inventory_text();
    let (mut accepted, mut refused, mut with_hosts) = (0, 0, 0);
    for _ in 0..500 {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        match check(&text).unwrap() {
            Some(inv) => {
                accepted += 1;
                with_hosts += usize::from(!inv.hosts.is_empty());
            }
            None => refused += 1,
        }
    }
    assert!(accepted >= 50 && refused >= 50, "accepted {accepted}, refused {refused} of 500");
    assert!(with_hosts >= 10, "only {with_hosts} accepted inventories had hosts");
}
