//! The real binary: what a user types, what they see, and the exit code a script gets.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn fleetaudit(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetaudit"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.map(<[u8]>::to_vec);
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        if let Some(bytes) = input {
            let _ = pipe.write_all(&bytes);
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

const REFERENCE_ID: &str = "apiserver-kubelet-certificate-authority";

fn capture(name: &str) -> String {
    format!("{}/src/captures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A snapshot made by hand, as the README shows (`ps -ef > ps-ef.txt; tar cf node.tar ps-ef.txt DIR...`), of a
/// node whose process table is `table` and whose Kubernetes directories exist but hold nothing: every file
/// check finds nothing to check, so what decides is the command line. Kept in `dir`.
fn bare_node_snapshot(dir: &std::path::Path, table: &[u8]) -> String {
    node_snapshot(dir, table, &[])
}

/// The same, with these files (path without the leading `/`, contents) on the node.
fn node_snapshot(dir: &std::path::Path, table: &[u8], files: &[(&str, &str)]) -> String {
    let root = dir.join("root");
    let _ = std::fs::remove_dir_all(&root);
    for d in ["etc/kubernetes", "etc/cni", "var/lib/cni", "var/lib/kubelet"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (path, body) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    std::fs::write(root.join("ps-ef.txt"), table).unwrap();
    let tar = dir.join("node.tar");
    let out = Command::new("tar")
        .arg("cf")
        .arg(&tar)
        .arg("-C")
        .arg(&root)
        .args(["ps-ef.txt", "etc", "var"])
        .output()
        .expect("GNU tar is needed: apt-get install tar");
    assert!(out.status.success(), "{}", text(&out.stderr));
    tar.display().to_string()
}

#[test]
fn eval_text_groups_failures_first_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let busybox = bare_node_snapshot(dir.path(), &std::fs::read(capture("busybox.txt")).unwrap());
    let out = fleetaudit(&["eval", &busybox], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let api = stdout.find("kube-apiserver\n").expect("apiserver group");
    let fail = stdout[api..].find("FAIL   apiserver-profiling").expect("profiling fails");
    let first_pass = stdout[api..].find("PASS ").unwrap();
    assert!(fail < first_pass, "failures before passes:\n{stdout}");
    assert!(stdout.contains("--profiling=true; required: --profiling eq false"));
    assert!(stdout.contains("kubelet: 22 rules not applicable"), "{stdout}");
    assert!(
        stdout.ends_with(
            "6 pass, 24 fail, 0 error, 62 not applicable\nCIS Automated checks alone: 5 pass, 17 fail, 0 error, 43 not applicable\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("  high      auto    Ensure that the --token-auth-file"), "assessment column: {stdout}");
    assert!(!stdout.contains('\x1b'), "no colour when NO_COLOR is set or stdout is not a terminal");
    // The secret in the etcd URL is never printed.
    assert!(!stdout.contains("s3cret"));
}

#[test]
fn eval_json_from_stdin_has_one_object_per_finding() {
    let input = std::fs::read(capture("kubeadm-hardened.txt")).unwrap();
    let out = fleetaudit(&["eval", "-", "--format", "json", "--role", "control-plane", "--role", "etcd"], Some(&input));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let findings = doc["findings"].as_array().unwrap();
    let rules = fleetaudit(&["rules", "--format", "json"], None);
    let rules: serde_json::Value = serde_json::from_slice(&rules.stdout).unwrap();
    assert_eq!(findings.len(), rules["rules"].as_array().unwrap().len());
    let reference = findings.iter().find(|f| f["rule_id"] == "apiserver-kubelet-certificate-authority").unwrap();
    assert_eq!(reference["status"], "pass");
    assert_eq!(reference["cis"], "1.2.5");
    assert_eq!(reference["component"], "apiserver");
    assert_eq!(reference["flags"], serde_json::json!(["--kubelet-certificate-authority"]));
    assert_eq!(reference["evidence"][0]["flags"][0]["value"], "/etc/kubernetes/pki/ca.crt");
    assert_eq!(reference["evidence"][0]["pid"], 1302);
    assert_eq!(doc["ps_format"], "procps");
    // The hardened kubeadm node still leaves kubelet settings to its config file: exit 2, "could not judge".
    let summary = &doc["summary"];
    let code = out.status.code().unwrap();
    if summary["error"].as_u64().unwrap() > 0 {
        assert_eq!(code, 2);
    } else if summary["fail"].as_u64().unwrap() > 0 {
        assert_eq!(code, 1);
    } else {
        assert_eq!(code, 0);
    }
}

#[test]
fn exit_0_when_everything_passes_or_does_not_apply() {
    let table = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init\n";
    let out = fleetaudit(&["eval", "-"], Some(table.as_bytes()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("0 pass, 0 fail, 0 error, 92 not applicable"), "{}", text(&out.stdout));
}

#[test]
fn exit_2_when_a_rule_cannot_be_judged() {
    for capture_name in ["k3s.txt", "kubeadm-default.txt"] {
        let out = fleetaudit(&["eval", &capture(capture_name)], None);
        assert_eq!(out.status.code(), Some(2), "{capture_name}: errors outrank failures");
        assert!(text(&out.stdout).contains("ERROR"));
    }
}

#[test]
fn unreadable_captures_exit_3_naming_the_line() {
    let out = fleetaudit(&["eval", "-"], Some(b"sh: 1: ps: not found\n"));
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("line 1") && err.contains("not a ps header"), "{err}");

    let out = fleetaudit(
        &["eval", "-"],
        Some(b"UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 init\nroot zz 0 0\n"),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("line 3"), "{}", text(&out.stderr));

    let out = fleetaudit(&["eval", "/nonexistent/ps.txt"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("/nonexistent/ps.txt"));
}

#[test]
fn usage_errors_exit_3_and_help_exits_0() {
    assert_eq!(fleetaudit(&["eval"], None).status.code(), Some(3));
    assert_eq!(fleetaudit(&["frobnicate"], None).status.code(), Some(3));
    assert_eq!(fleetaudit(&["eval", "x", "--role", "queen"], None).status.code(), Some(3));
    let help = fleetaudit(&["eval", "--help"], None);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("Examples:"));
}

#[test]
fn rules_lists_and_shows() {
    let out = fleetaudit(&["rules"], None);
    assert_eq!(out.status.code(), Some(0));
    let list = text(&out.stdout);
    assert!(list.contains("apiserver-kubelet-certificate-authority") && list.contains("etcd-client-cert-auth"));
    assert!(list.contains("--kubelet-certificate-authority set"));

    let out = fleetaudit(&["rules", "show", "apiserver-kubelet-certificate-authority"], None);
    assert_eq!(out.status.code(), Some(0));
    let show = text(&out.stdout);
    for part in ["CIS 1.2.5", "Rationale:", "man-in-the-middle", "Remediation:", "Component:   kube-apiserver"] {
        assert!(show.contains(part), "missing {part:?} in\n{show}");
    }
    // By CIS id too, in the current numbering.
    let by_cis = fleetaudit(&["rules", "show", "1.2.5", "--benchmark", "cis-1.12"], None);
    assert_eq!(text(&by_cis.stdout), show);
    // Without a version, a number finds the rule it numbers now first, then what it numbered before: 1.2.6 is the
    // AlwaysAllow check in CIS 1.12 and was the kubelet CA check in v1.5.1, v1.6.0 and the V1.23 benchmark.
    let old = text(&fleetaudit(&["rules", "show", "1.2.6"], None).stdout);
    let (now, before) = (old.find("apiserver-authz-not-always-allow").unwrap(), old.find(REFERENCE_ID).unwrap());
    assert!(now < before, "{old}");
    assert!(old.contains("CIS 1.2.6 was this rule in CIS Kubernetes Benchmark v1.5.1 (cis-1.5)"), "{old}");
    assert!(old.contains("V1.23 Benchmark"), "{old}");
    for (benchmark, id) in
        [("cis-1.23", REFERENCE_ID), ("cis-1.6", REFERENCE_ID), ("cis-1.24", "apiserver-authz-not-always-allow")]
    {
        let json = fleetaudit(&["rules", "show", "cis-1.2.6", "--benchmark", benchmark, "--format", "json"], None);
        let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(doc["id"], id, "{benchmark}");
    }
    let both: serde_json::Value =
        serde_json::from_slice(&fleetaudit(&["rules", "show", "1.2.6", "--format", "json"], None).stdout).unwrap();
    assert_eq!(both.as_array().unwrap().len(), 2, "two rules, an array");
    assert_eq!(both[1]["matched"], "previous");
    // A check that did not exist in that version is not found; an unknown version is bad input.
    assert_eq!(fleetaudit(&["rules", "show", "4.2.14", "--benchmark", "cis-1.10"], None).status.code(), Some(3));
    let bad = fleetaudit(&["rules", "show", "1.2.6", "--benchmark", "cis-9"], None);
    assert_eq!(bad.status.code(), Some(3));
    assert!(text(&bad.stderr).contains("cis-1.23"), "{}", text(&bad.stderr));

    let out = fleetaudit(&["rules", "show", "no-such-rule"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("fleetaudit rules"));
}

#[test]
fn extra_packs_load_and_broken_ones_name_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("fleetaudit-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("site.toml");
    std::fs::write(
        &good,
        "[pack]\nid = \"site\"\ntitle = \"Site rules\"\nversion = \"3\"\n\n[[rule]]\nid = \"site-audit-webhook\"\n\
         cis = \"site-7\"\ntitle = \"Audit webhook configured\"\ncomponent = \"apiserver\"\nseverity = \"medium\"\n\
         rationale = \"Audit events must leave the node.\"\nremediation = \"Set --audit-webhook-config-file.\"\n\
         test = { flag = \"--audit-webhook-config-file\", op = \"set\" }\n\
         [flags.apiserver]\n\"--audit-webhook-config-file\" = { type = \"string\" }\n",
    )
    .unwrap();
    let out = fleetaudit(
        &["eval", "--rules", good.to_str().unwrap(), "--format", "json", &capture("kubeadm-default.txt")],
        None,
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let site = doc["findings"].as_array().unwrap().iter().find(|f| f["rule_id"] == "site-audit-webhook").unwrap();
    assert_eq!(site["status"], "fail");
    assert!(doc["rules_version"].as_str().unwrap().ends_with("+site@3"));

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[pack]\nid = \"bad\"\ntitle = \"t\"\nversion = \"1\"\n\n[[rule]]\nid = \"b-1\"\ncis = \"1\"\ntitle = \"t\"\ncomponent = \"apiserver\"\nseverity = \"urgent\"\n").unwrap();
    let out = fleetaudit(&["rules", "--rules", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{}:11:", bad.display())) && err.contains("urgent"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_closed_pipe_is_not_an_error() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetaudit"))
        .args(["rules", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn fail_on_changes_only_the_verdict_codes_of_eval() {
    let dir = tempfile::tempdir().unwrap();
    let busybox = bare_node_snapshot(dir.path(), &std::fs::read(capture("busybox.txt")).unwrap());
    for (policy, expected) in [("fail", 1), ("error", 0), ("never", 0)] {
        let out = fleetaudit(&["eval", &busybox, "--fail-on", policy], None);
        assert_eq!(out.status.code(), Some(expected), "busybox fails rules: {policy}");
    }
    let default = capture("kubeadm-default.txt");
    for (policy, expected) in [("fail", 2), ("error", 2), ("never", 0)] {
        let out = fleetaudit(&["eval", &default, "--fail-on", policy], None);
        assert_eq!(out.status.code(), Some(expected), "kubeadm default has unjudgeable rules: {policy}");
    }
    let out = fleetaudit(&["eval", "-", "--fail-on", "never"], Some(b"not a table\n"));
    assert_eq!(out.status.code(), Some(3), "bad input stays 3");
    assert_eq!(fleetaudit(&["eval", &busybox, "--fail-on", "sometimes"], None).status.code(), Some(3));
}

#[test]
fn bad_shard_specs_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.toml");
    std::fs::write(&inv, "[[hosts]]\nname = \"a\"\naddress = \"127.0.0.1\"\n").unwrap();
    for spec in ["0/3", "4/3", "x", "1/0", "3", "1/2/3", "-1/3", ""] {
        let out = fleetaudit(&["scan", "-i", inv.to_str().unwrap(), &format!("--shard={spec}")], None);
        assert_eq!(out.status.code(), Some(3), "{spec:?}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        let why = ["write K/N with", "between 1 and N", "N must be at least 1"].iter().any(|w| err.contains(w));
        assert!(err.contains("--shard") && why, "{spec:?}: {err}");
    }
    assert!(!dir.path().join("fleetaudit.db").exists(), "nothing was scanned");
}

/// The example command lines of a help text (`  fleetaudit ARGS`), without what follows a pipe or redirect,
/// with shell quotes removed.
fn examples(help: &str) -> Vec<Vec<String>> {
    help.lines()
        .filter_map(|l| l.trim_start().strip_prefix("fleetaudit "))
        .map(|l| {
            let command = l.split(['|', '>']).next().unwrap_or_default();
            let mut words = Vec::new();
            let (mut word, mut quote) = (String::new(), None);
            for c in command.chars() {
                match (c, quote) {
                    ('\'' | '"', None) => quote = Some(c),
                    (q, Some(open)) if q == open => quote = None,
                    (' ', None) if !word.is_empty() => words.push(std::mem::take(&mut word)),
                    (' ', None) => {}
                    (c, _) => word.push(c),
                }
            }
            if !word.is_empty() {
                words.push(word);
            }
            words
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// The subcommands `fleetaudit [PATH...] --help` lists under "Commands:" (without `help`).
fn subcommands(path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let help = text(&fleetaudit(&args, None).stdout);
    let Some(start) = help.find("Commands:\n") else { return Vec::new() };
    help[start + 10..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_shows_an_example() {
    let top = subcommands(&[]);
    for c in ["scan", "daemon", "check", "demo", "report", "history", "eval", "rules", "completions"] {
        assert!(top.iter().any(|t| t == c), "{c} missing from {top:?}");
    }
    let mut stack: Vec<Vec<String>> = vec![Vec::new()];
    let mut seen = 0;
    while let Some(path) = stack.pop() {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let mut args = p.clone();
        args.push("--help");
        let out = fleetaudit(&args, None);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            text(&out.stdout).contains("Example"),
            "`fleetaudit {}` has no example:\n{}",
            p.join(" "),
            text(&out.stdout)
        );
        seen += 1;
        for example in examples(&text(&out.stdout)) {
            // Every example parses as typed: clap reads every argument before it acts on --help.
            let mut args: Vec<&str> = example.iter().map(String::as_str).collect();
            args.push("--help");
            let parsed = fleetaudit(&args, None);
            assert_eq!(
                parsed.status.code(),
                Some(0),
                "example `fleetaudit {}`: {}",
                example.join(" "),
                text(&parsed.stderr)
            );
            // And those that need nothing but the binary run as typed.
            if example[0] == "rules" {
                let args: Vec<&str> = example.iter().map(String::as_str).collect();
                let ran = fleetaudit(&args, None);
                assert_eq!(
                    ran.status.code(),
                    Some(0),
                    "example `fleetaudit {}`: {}",
                    example.join(" "),
                    text(&ran.stderr)
                );
            }
        }
        for sub in subcommands(&p) {
            let mut next = path.clone();
            next.push(sub);
            stack.push(next);
        }
    }
    assert!(seen > top.len(), "nested commands (rules show) were visited too");
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = fleetaudit(&["completions", shell], None);
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.len() > 500 && script.contains("scan") && script.contains("fail-on"), "{shell}:\n{script}");
    }
    assert_eq!(fleetaudit(&["completions", "tcsh"], None).status.code(), Some(3));
}

/// `fleetaudit ARGS` on a terminal, with NO_COLOR set to `no_color` (or unset).
fn on_a_terminal(args: &str, no_color: Option<&str>) -> String {
    let cmd = format!("{} {args}", env!("CARGO_BIN_EXE_fleetaudit"));
    support::on_a_terminal(&cmd, &[("NO_COLOR", no_color)]).1
}

#[test]
fn colour_on_a_terminal_unless_no_color_and_as_color_says() {
    const RED_FAIL: &str = "\x1b[31;1mFAIL";
    let busybox = capture("busybox.txt");
    let eval = format!("eval {busybox}");
    assert!(on_a_terminal(&eval, None).contains(RED_FAIL), "a terminal gets colour");
    let plain = on_a_terminal(&eval, Some("1"));
    assert!(plain.contains("FAIL") && !plain.contains('\x1b'), "NO_COLOR=1: {plain:?}");
    assert!(!on_a_terminal(&eval, Some("no")).contains('\x1b'), "any non-empty NO_COLOR disables colour");
    assert!(on_a_terminal(&eval, Some("")).contains(RED_FAIL), "an empty NO_COLOR does not (no-color.org)");
    assert!(!on_a_terminal(&format!("{eval} --color never"), None).contains('\x1b'));
    // Piped: no colour, unless asked for; an explicit --color always beats NO_COLOR.
    let piped = fleetaudit(&["eval", &busybox], None);
    assert!(!text(&piped.stdout).contains('\x1b'));
    let forced = fleetaudit(&["eval", &busybox, "--color", "always"], None);
    assert!(text(&forced.stdout).contains(RED_FAIL), "--color always with NO_COLOR set (the helper sets it)");
}

#[test]
fn automated_only_leaves_manual_checks_out_of_the_exit_code() {
    // The hardened API server, with anonymous access on: CIS 1.2.1 fails, and CIS assesses it Manual.
    let hardened = std::fs::read_to_string(capture("kubeadm-hardened.txt")).unwrap();
    let apiserver = hardened.lines().find(|l| l.contains(" kube-apiserver --")).unwrap();
    let table = format!(
        "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init\n{}\n",
        apiserver.replace("--anonymous-auth=false", "--anonymous-auth=true")
    );
    let dir = tempfile::tempdir().unwrap();
    // The encryption config the hardened API server names: Secrets written with aescbc.
    let encryption = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: c2VjcmV0IGlzIHNlY3VyZQ==\n      - identity: {}\n";
    let snapshot = |table: &str| {
        node_snapshot(dir.path(), table.as_bytes(), &[("etc/kubernetes/enc/encryption.yaml", encryption)])
    };
    let all = fleetaudit(&["eval", &snapshot(&table), "--format", "json"], None);
    let doc: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(all.status.code(), Some(1), "a failed rule: {}", doc["summary"]);
    assert_eq!((doc["summary"]["fail"].as_u64(), doc["summary"]["automated"]["fail"].as_u64()), (Some(1), Some(0)));
    let anonymous = doc["findings"].as_array().unwrap().iter().find(|f| f["rule_id"] == "apiserver-anonymous-auth");
    assert_eq!(anonymous.unwrap()["assessment"], "manual");
    let automated = fleetaudit(&["eval", &snapshot(&table), "--automated-only"], None);
    assert_eq!(automated.status.code(), Some(0), "{}", text(&automated.stdout));
    assert!(text(&automated.stdout).contains("FAIL   apiserver-anonymous-auth"), "still judged and shown");
    // An Automated failure still fails.
    let token = table.replace("--anonymous-auth=true", "--anonymous-auth=true --token-auth-file=/etc/t.csv");
    assert_eq!(fleetaudit(&["eval", &snapshot(&token), "--automated-only"], None).status.code(), Some(1));
}

#[test]
fn the_readme_pack_example_loads_and_judges() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("### Writing a pack").unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let pack = &section[start..start + section[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(&path, pack).unwrap();
    let out = fleetaudit(
        &["eval", "--rules", path.to_str().unwrap(), "--format", "json", &capture("kubeadm-default.txt")],
        None,
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out.stderr)));
    let site = doc["findings"].as_array().unwrap().iter().find(|f| f["rule_id"] == "site-audit-webhook").unwrap();
    assert_eq!(site["status"], "fail", "kubeadm sends no audit webhook: {site}");
    // Without the flag declarations, the pack is refused with the place and the fix.
    let undeclared = pack.replace("[flags.apiserver]", "[flags.scheduler]");
    std::fs::write(&path, undeclared).unwrap();
    let out = fleetaudit(&["rules", "--rules", path.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("site.toml:") && err.contains("is not declared for component apiserver"), "{err}");
}
