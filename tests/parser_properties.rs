//! Property tests: the `ps` parser, the flag splitter, the engine and the known_hosts reader never panic on
//! anything a host (or a hand-edited file) can send, and what they do accept, they read back exactly. Failures found are kept in proptest-regressions/.

use fleetaudit::ps::{self, flags::Arity, flags::FlagStyle, flags::Flags, flags::Known};
use fleetaudit::rules::settings::{self, FlagDecl, FlagType};
use fleetaudit::rules::{Engine, RuleSet};
use fleetaudit::ssh::known_hosts::{KnownHosts, Verdict, line_for};
use proptest::prelude::*;

/// The embedded pack, loaded once rather than per case.
fn engine() -> &'static Engine {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(RuleSet::embedded().unwrap()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(table) = ps::parse(&bytes) {
            prop_assert!(!table.processes.is_empty());
            for p in &table.processes {
                prop_assert!(!p.cmd.chars().any(char::is_control));
                prop_assert!(!p.cmd.is_empty());
            }
        }
    }

    #[test]
    fn parser_never_panics_after_a_valid_header(
        header in prop_oneof![Just("UID PID PPID C STIME TTY TIME CMD\n"), Just("PID USER TIME COMMAND\n")],
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend(body);
        let _ = ps::parse(&bytes);
    }

    #[test]
    fn engine_never_panics_on_odd_command_lines(
        cmds in proptest::collection::vec("(kube-apiserver|/usr/bin/kubelet|etcd|hyperkube apiserver|k3s server)( [-=a-z0-9,.:/\\x00-\\x1f\u{80}-\u{10ffff}]{0,12}){0,8}", 1..6)
    ) {
        let engine = engine();
        let mut text = String::from("UID PID PPID C STIME TTY TIME CMD\n");
        for (i, c) in cmds.iter().enumerate() {
            text.push_str(&format!("root {} 1 0 10:00 ? 00:00:00 {c}\n", i + 2));
        }
        if let Ok(table) = ps::parse(text.as_bytes()) {
            let findings = engine.judge(&table, &[]);
            prop_assert_eq!(findings.len(), engine.rules.rules.len());
        }
    }

    #[test]
    fn valid_rows_read_back_exactly(
        rows in proptest::collection::vec(
            ("[a-z_][a-z0-9_+-]{0,20}", 1u32..4_000_000, 0u32..4_000_000, "[!-~]{1,30}( [!-~]{1,30}){0,6}"),
            1..40,
        )
    ) {
        let mut text = String::from("UID          PID    PPID  C STIME TTY          TIME CMD\n");
        for (user, pid, ppid, cmd) in &rows {
            text.push_str(&format!("{user:<8} {pid:>7} {ppid:>7}  0 Nov28 ?        00:00:00 {cmd}\n"));
        }
        let table = ps::parse(text.as_bytes()).unwrap();
        prop_assert_eq!(table.processes.len(), rows.len());
        for (p, (user, pid, ppid, cmd)) in table.processes.iter().zip(&rows) {
            prop_assert_eq!(&p.user, user);
            prop_assert_eq!(p.pid, *pid);
            prop_assert_eq!(p.ppid, Some(*ppid));
            prop_assert_eq!(&p.cmd, cmd);
        }
    }

    #[test]
    fn flag_splitter_never_panics(tokens in proptest::collection::vec("\\PC{0,12}", 0..20), go in any::<bool>()) {
        let args: Vec<&str> = tokens.iter().map(String::as_str).collect();
        let style = if go { FlagStyle::Go } else { FlagStyle::Pflag };
        let known = Known::of([("b", Arity::Bool), ("v", Arity::Value), ("c", Arity::Value)]);
        let flags = Flags::parse(&args, style, &known);
        for f in &flags.flags {
            prop_assert!(f.token < args.len());
            prop_assert!(f.value_token.is_none_or(|t| t == f.token + 1));
            // A known boolean never takes the next token; a known value flag always does when there is one.
            if f.name == "b" {
                prop_assert!(f.value_token.is_none());
            }
            if f.name == "c" && f.value.is_none() {
                prop_assert_eq!(f.token, args.len() - 1);
            }
        }
    }

    #[test]
    fn the_last_occurrence_wins(values in proptest::collection::vec("[a-zA-Z0-9,./]{1,10}", 1..8), spaced in any::<bool>()) {
        let mut args = Vec::new();
        for v in &values {
            if spaced {
                args.push("--x".to_string());
                args.push(v.clone());
            } else {
                args.push(format!("--x={v}"));
            }
            args.push("--y=1".to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let flags = Flags::parse(&args, FlagStyle::Pflag, &Known::of([("x", Arity::Value)]));
        prop_assert_eq!(flags.get("x").unwrap().value, Some(values.last().unwrap().as_str()));
    }

    #[test]
    fn a_list_flag_is_every_occurrence_in_order(
        values in proptest::collection::vec(proptest::collection::vec("[A-Za-z0-9]{1,8}", 0..4), 1..6),
        underscores in any::<bool>(),
    ) {
        // pflag StringSlice: each occurrence's comma-separated elements, appended in order; the default is gone.
        let name = if underscores { "--enable_admission_plugins" } else { "--enable-admission-plugins" };
        let mut args = vec!["--other=1".to_string()];
        for v in &values {
            args.push(format!("{name}={}", v.join(",")));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let flags = Flags::parse(&args, FlagStyle::Pflag, &Known::default());
        let decl = FlagDecl { ty: FlagType::List, default: Some("Default".into()), config: None, gates: Default::default(), or_with_config: false, config_default: None };
        let resolved = settings::resolve(&flags, "enable-admission-plugins", &decl, None);
        let expected: Vec<String> = values.concat();
        prop_assert_eq!(resolved.value, Some(settings::Value::List(expected)));
    }

    #[test]
    fn mutated_real_captures_parse_or_fail_cleanly(
        which in 0..fleetaudit::sim::PROFILES.len(),
        edits in proptest::collection::vec((any::<usize>(), 0usize..64, any::<u8>(), any::<u8>()), 1..6),
    ) {
        // Structured fuzzing: arbitrary bytes rarely get past the header; edits of real captures reach deep
        // into row and command-line parsing.
        let mut bytes = fleetaudit::sim::PROFILES[which].capture.as_bytes().to_vec();
        for (at, len, op, byte) in edits {
            let at = at % (bytes.len() + 1);
            let end = (at + len).min(bytes.len());
            match op % 4 {
                0 => { bytes.drain(at..end); }
                1 => bytes.insert(at, byte),
                2 => if at < bytes.len() { bytes[at] = byte },
                _ => { let copy = bytes[at..end].to_vec(); bytes.splice(at..at, copy); }
            }
        }
        if let Ok(table) = ps::parse(&bytes) {
            prop_assert!(!table.processes.is_empty());
            for p in &table.processes {
                prop_assert!(!p.cmd.is_empty() && !p.cmd.chars().any(char::is_control));
            }
            let engine = engine();
            prop_assert_eq!(engine.judge(&table, &[]).len(), engine.rules.rules.len());
        }
    }

    #[test]
    fn known_hosts_reader_never_panics(
        lines in proptest::collection::vec(prop_oneof![
            "\\PC{0,60}",
            "(@revoked |@cert-authority |)(\\[[a-z0-9.]{1,9}\\]:[0-9]{1,6}|[a-z0-9.*?!,]{1,20}|\\|1\\|[A-Za-z0-9+/=]{0,30}\\|[A-Za-z0-9+/=]{0,30}) ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]{0,43}=?",
        ], 0..20),
        host in "[a-z0-9.]{1,12}",
        port in 1u16..,
    ) {
        let mut known = KnownHosts::default();
        known.add(std::path::Path::new("known_hosts"), &lines.join("\n"));
        let key = fleetaudit::sim::generate_key("fuzz").unwrap();
        // A key nobody listed is never `Known`.
        prop_assert!(!matches!(known.check(&host, port, key.public_key()), Verdict::Known));
        // Once its line is appended, it is trusted (unless a line revokes it, which a random key cannot match).
        known.add(std::path::Path::new("mine"), &line_for(&host, port, key.public_key()));
        prop_assert_eq!(known.check(&host, port, key.public_key()), Verdict::Known);
    }
}
