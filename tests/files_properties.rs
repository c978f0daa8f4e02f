//! Property tests for what `files` reads from a host: YAML/JSON configs, snapshot tars and /etc/passwd and
//! /etc/group never panic whatever the bytes, and their errors point inside what was read. Failures found are
//! kept in proptest-regressions/.

use fleetaudit::files::accounts::Accounts;
use fleetaudit::files::tar::{self, TarLimits};
use fleetaudit::files::yaml::{self, Data, Limits, Node};
use fleetaudit::files::{Content, Entry, FileSet, Kind, Meta, Problem};
use proptest::prelude::*;

/// A small valid snapshot to mutate.
fn snapshot() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let mut files = FileSet::default();
        let meta = Meta { kind: Kind::File, mode: 0o600, uid: 0, gid: 0, size: 5 };
        files.insert(
            "/var/lib/kubelet/config.yaml".into(),
            Entry::Found { meta, content: Some(Content::plain(b"a: 1\n".to_vec())), names: None },
        );
        let dir = Meta { kind: Kind::Dir, mode: 0o755, uid: 0, gid: 0, size: 4096 };
        files.insert(
            "/etc/kubernetes/pki".into(),
            Entry::Found { meta: dir, content: None, names: Some(vec!["ca.crt".into()]) },
        );
        files.insert("/var/lib/etcd".into(), Entry::Problem(Problem::Denied));
        let mut accounts = Accounts::default();
        accounts.add_user(0, "root");
        let mut out = Vec::new();
        tar::write(&mut out, b"UID PID PPID C STIME TTY TIME CMD\n", &files, &accounts).unwrap();
        out
    })
}

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

    #[test]
    fn tar_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = tar::read(bytes.as_slice(), &TarLimits::DEFAULT);
        let mut gz = vec![0x1f, 0x8b];
        gz.extend(&bytes);
        let _ = tar::read(gz.as_slice(), &TarLimits::DEFAULT);
    }

    #[test]
    fn a_damaged_snapshot_is_read_or_refused_never_a_panic(
        flips in proptest::collection::vec((0usize..8192, any::<u8>()), 1..8),
        cut in proptest::option::of(0usize..8192),
    ) {
        let mut bytes = snapshot().to_vec();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        if let Ok(s) = tar::read(bytes.as_slice(), &TarLimits::DEFAULT) {
            // Whatever was accepted holds only normalised absolute paths.
            for (path, _) in s.files.iter() {
                prop_assert!(path.starts_with('/') && !path.contains("//") && !path.split('/').any(|p| p == ".." || p == "."), "{path}");
            }
        }
    }

    #[test]
    fn accounts_never_panic_and_first_lines_win(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        users in proptest::collection::vec(("[a-z_][a-z0-9_-]{0,12}", 0u32..100), 0..30),
    ) {
        let _ = Accounts::parse(Some(&bytes), Some(&bytes));
        let passwd: String = users.iter().map(|(n, id)| format!("{n}:x:{id}:{id}::/home/{n}:/bin/sh\n")).collect();
        let a = Accounts::parse(Some(passwd.as_bytes()), None).unwrap();
        let mut first_name = std::collections::HashMap::new();
        let mut first_id = std::collections::HashMap::new();
        for (n, id) in &users {
            first_name.entry(*id).or_insert(n.as_str());
            first_id.entry(n.as_str()).or_insert(*id);
        }
        for (id, n) in first_name {
            prop_assert_eq!(a.name_of_uid(id), Some(n));
        }
        for (n, id) in first_id {
            prop_assert_eq!(a.uid_of(n), Some(id));
        }
    }
}

/// A YAML or JSON document with secrets in it: every way of writing a value under a secret key (plain,
/// quoted, a block scalar, a flow collection, a block sequence, an alias), nested in maps and lists, beside
/// keys that are not secret. Returns the text and the canaries it planted.
fn secret_document() -> impl Strategy<Value = (String, Vec<String>)> {
    let key = prop::sample::select(vec!["secret", "token", "agent-token", "password", "etcdS3SecretKey", "tokens"]);
    let style = 0u8..9;
    let plain_key = prop::sample::select(vec!["name", "kind", "secretbox", "tokenFile", "address", "keys"]);
    let item = (key, style, plain_key, "[a-z0-9]{0,6}", 0usize..4, any::<bool>());
    prop::collection::vec(item, 1..8).prop_map(|items| {
        let mut text = String::from("apiVersion: v1\n");
        let mut canaries = Vec::new();
        for (n, (key, style, plain, word, depth, in_list)) in items.into_iter().enumerate() {
            let canary = format!("CANARY{n}X{word}");
            let indent = "  ".repeat(depth);
            text.push_str(&format!("{indent}{plain}{n}: {word}v\n"));
            let (lead, child) =
                if in_list { (format!("{indent}- "), format!("{indent}  ")) } else { (indent.clone(), indent.clone()) };
            let value = match style {
                0 => format!("{lead}{key}: {canary}\n"),
                1 => format!("{lead}{key}: \"{canary}\"\n"),
                2 => format!("{lead}{key}: '{canary}'\n"),
                3 => format!("{lead}{key}: |\n{child}  {canary}\n"),
                4 => format!("{lead}{key}: [{canary}, x]\n"),
                5 => format!("{lead}{key}:\n{child}- {canary}\n"),
                6 => format!("{lead}{{\"{key}\": \"{canary}\", \"a\": 1}}\n"),
                7 => format!("{lead}{key}: {canary} # note\n"),
                _ => format!("{indent}base{n}: &a{n} {canary}\n{lead}{key}: *a{n}\n"),
            };
            text.push_str(&value);
            canaries.push(canary);
        }
        (text, canaries)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// No canary survives admission, whatever its style or nesting; what is not secret is kept; and a
    /// document that parsed still parses, with as many lines.
    #[test]
    fn no_secret_survives_admission((text, canaries) in secret_document()) {
        let keep = |_: &str| false;
        let admitted = fleetaudit::files::redact::admit("/etc/rancher/k3s/config.yaml", text.clone().into_bytes(), &keep);
        let kept = String::from_utf8(admitted.bytes).unwrap();
        for c in &canaries {
            prop_assert!(!kept.contains(c.as_str()), "{c} kept:\n{text}\n->\n{kept}");
        }
        prop_assert!(admitted.redacted);
        prop_assert_eq!(kept.lines().count(), text.lines().count());
        prop_assert!(kept.contains("apiVersion: v1"));
        if yaml::parse("t", &text, &Limits::CONFIG).is_ok() {
            prop_assert!(yaml::parse("t", &kept, &Limits::CONFIG).is_ok(), "parsed before, not after:\n{kept}");
        }
    }

    /// Bytes that hold no secret key come out as they went in, hash included.
    #[test]
    fn documents_without_secrets_are_kept_as_they_are(text in "[a-z: \n\\[\\]{},\"'#-]{0,200}") {
        prop_assume!(!["secret", "token", "password", "passwd", "credential", "apikey", "pass", "://"].iter().any(|w| text.contains(w)));
        let keep = |_: &str| false;
        let admitted = fleetaudit::files::redact::admit("/c.yaml", text.clone().into_bytes(), &keep);
        prop_assert_eq!(admitted.bytes, text.into_bytes());
        prop_assert!(!admitted.redacted);
    }
}
