//! Property tests for what `files` reads from a host: YAML/JSON configs, snapshot tars and /etc/passwd and
//! /etc/group never panic whatever the bytes, and their errors point inside what was read. Failures found are
//! kept in proptest-regressions/.

use fleetaudit::files::yaml::{self, Data, Limits, Node};
use proptest::prelude::*;

/// Every node's place is inside the text.
fn places_inside(node: &Node, lines: usize) -> bool {
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if n.line == 0 || n.line > lines || n.column == 0 {
            return false;
        }
        match &n.data {
            Data::Map(m) => stack.extend(m.iter().flat_map(|e| [&e.key, &e.value])),
            Data::Seq(s) => stack.extend(s),
            Data::Scalar(_) => {}
        }
    }
    true
}

fn check_yaml(bytes: &[u8]) -> Result<(), TestCaseError> {
    let lines = bytes.split(|b| *b == b'\n').count().max(1);
    for result in
        [yaml::parse_bytes("h.yaml", bytes, &Limits::CONFIG), yaml::parse_kubernetes("h.yaml", bytes, &Limits::CONFIG)]
    {
        match result {
            Ok(doc) => {
                prop_assert!(places_inside(&doc.root, lines), "a node outside the {lines} lines");
                for d in doc.duplicates() {
                    prop_assert!(d.lines.len() > 1 && d.lines.iter().all(|l| *l <= lines));
                }
                let _ = doc.strict();
            }
            Err(e) => {
                prop_assert!(e.line >= 1 && e.line <= lines + 1, "{e} outside the {lines} lines");
                prop_assert!(e.to_string().starts_with("h.yaml:"), "{e}");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn yaml_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_yaml(&bytes)?;
    }

    #[test]
    fn yaml_never_panics_on_yaml_like_text(text in "(?s)[a-z0-9:\\-\\[\\]{}&*!|>'\"#%@`,?<.~ \t\n]{0,400}") {
        check_yaml(text.as_bytes())?;
        // Every scalar resolves (or refuses) under both schemas without panicking.
        if let Ok(doc) = yaml::parse("h.yaml", &text, &Limits::CONFIG) {
            let mut stack = vec![&doc.root];
            while let Some(n) = stack.pop() {
                match &n.data {
                    Data::Map(m) => stack.extend(m.iter().flat_map(|e| [&e.key, &e.value])),
                    Data::Seq(s) => stack.extend(s),
                    Data::Scalar(s) => {
                        let _ = (s.kubernetes(), s.core());
                    }
                }
            }
        }
    }

    #[test]
    fn scalars_resolve_without_panicking(
        text in "[-+0-9a-zA-Z_.:~<]{0,24}",
        tag in prop_oneof![Just(""), Just("!!str "), Just("!!int "), Just("!!float "), Just("!!bool "), Just("!!null "), Just("!!timestamp "), Just("!!binary "), Just("!x ")],
    ) {
        if let Ok(doc) = yaml::parse("h.yaml", &format!("v: {tag}{text}\n"), &Limits::CONFIG)
            && let Some(s) = doc.root.key("v").and_then(Node::as_scalar)
        {
            let _ = (s.kubernetes(), s.core());
        }
    }

    #[test]
    fn anchors_and_aliases_stay_within_the_limits(
        defs in proptest::collection::vec(("[a-e]", 0usize..6, 1usize..12), 1..12)
    ) {
        // Random anchor/alias graphs: each line defines an anchor as a list of aliases to earlier ones.
        let mut text = String::from("base: &a [x, y]\n");
        for (i, (target, depth, fan)) in defs.iter().enumerate() {
            let inner = vec![format!("*{target}"); *fan].join(", ");
            text.push_str(&format!("k{i}: &{} {}[{inner}]{}\n", ["b", "c", "d", "e"][i % 4], "[".repeat(*depth), "]".repeat(*depth)));
        }
        match yaml::parse("h.yaml", &text, &Limits::CONFIG) {
            Ok(doc) => {
                let mut count = 0usize;
                let mut stack = vec![&doc.root];
                while let Some(n) = stack.pop() {
                    count += 1;
                    match &n.data {
                        Data::Map(m) => stack.extend(m.iter().flat_map(|e| [&e.key, &e.value])),
                        Data::Seq(s) => stack.extend(s),
                        Data::Scalar(_) => {}
                    }
                }
                prop_assert!(count <= Limits::CONFIG.max_nodes);
            }
            Err(e) => prop_assert!(e.line >= 1),
        }
    }
}
