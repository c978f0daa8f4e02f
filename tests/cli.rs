//! The real binary: what a user types, what they see, and the exit code a script gets.

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

fn capture(name: &str) -> String {
    format!("{}/src/captures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn eval_text_groups_failures_first_and_exits_1() {
    let out = fleetaudit(&["eval", &capture("busybox.txt")], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let api = stdout.find("kube-apiserver\n").expect("apiserver group");
    let fail = stdout[api..].find("FAIL   apiserver-profiling").expect("profiling fails");
    let first_pass = stdout[api..].find("PASS ").unwrap();
    assert!(fail < first_pass, "failures before passes:\n{stdout}");
    assert!(stdout.contains("--profiling=true; required: --profiling eq false"));
    assert!(stdout.contains("kubelet: 13 rules not applicable"), "{stdout}");
    assert!(stdout.ends_with("8 pass, 26 fail, 0 error, 22 not applicable\n"), "{stdout}");
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
    assert!(text(&out.stdout).contains("0 pass, 0 fail, 0 error, 56 not applicable"), "{}", text(&out.stdout));
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
    // By CIS id too.
    let by_cis = fleetaudit(&["rules", "show", "1.2.5"], None);
    assert_eq!(text(&by_cis.stdout), show);

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
         test = { flag = \"--audit-webhook-config-file\", op = \"set\" }\n",
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
