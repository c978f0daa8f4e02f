//! The HTML report: rendered after every demo scan from the database alone, it says what the database says,
//! links only relatively, carries no script or external URL, and escapes what hosts send.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fleetaudit::sim::{self, Behavior, NodeSpec};
use fleetaudit::ssh::known_hosts;
use support::{fleetaudit, sqlite, text, write};

/// askama's HTML escaping (numeric character references: `<` is `&#60;`, the same text as `&lt;`).
fn escape(s: &str) -> String {
    s.replace('&', "&#38;").replace('<', "&#60;").replace('>', "&#62;").replace('"', "&#34;").replace('\'', "&#39;")
}

/// `<script>alert(1)</script>` as escaped text, in either spelling of the entities.
fn has_escaped_script(html: &str) -> bool {
    html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") || html.contains(&escape("<script>alert(1)</script>"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pages(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(pages(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// No script, no external resource or link, the CSP everywhere.
fn assert_self_contained(report: &Path) {
    let all = pages(report);
    assert!(all.len() > 20, "{all:?}");
    for page in all {
        let html = read(&page);
        for bad in ["<script", "href=\"http", "src=\"http", "href=\"//", "src=\"//", "url("] {
            assert!(!html.contains(bad), "{} contains {bad}", page.display());
        }
        assert!(
            html.contains(
                "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
            ),
            "{} has no CSP",
            page.display()
        );
    }
}

#[test]
fn the_demo_report_says_what_the_database_says() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let demo_s = demo.to_str().unwrap();
    for _ in 0..2 {
        let out = fleetaudit(&["demo", "--dir", demo_s]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let expected = format!("report: {}", demo.join("report").join("index.html").display());
        assert!(stdout.contains(&expected), "the summary says where the report is:\n{stdout}");
    }
    let db = demo.join("fleetaudit.db");
    let report = demo.join("report");

    // The index lists every scan, newest first, with the database's counts.
    let index = read(&report.join("index.html"));
    let ids: Vec<i64> =
        sqlite(&db, "SELECT id FROM scans ORDER BY id DESC").lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(ids, [2, 1]);
    assert_eq!(index.matches("href=\"scan-").count(), ids.len(), "{index}");
    assert!(index.find("scan-2/index.html").unwrap() < index.find("scan-1/index.html").unwrap());
    for id in &ids {
        let counts = sqlite(
            &db,
            &format!(
                "SELECT sum(pass) || ' ' || sum(fail) || ' ' || sum(error) FROM scan_rule_counts WHERE scan_id = {id}"
            ),
        );
        let c: Vec<&str> = counts.split_whitespace().collect();
        let row = format!("<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>", c[0], c[1], c[2]);
        assert!(index.contains(&row), "scan {id}: {row} not in\n{index}");
    }
    assert!(report.join("scan-1/index.html").exists() && report.join("scan-2/index.html").exists());

    // latest/ redirects to the newest scan, with a plain link too.
    let latest = read(&report.join("latest/index.html"));
    assert!(latest.contains("<meta http-equiv=\"refresh\" content=\"0; url=../scan-2/index.html\">"), "{latest}");
    assert!(latest.contains("<a href=\"../scan-2/index.html\">"), "{latest}");

    let scan = report.join("scan-2");
    let overview = read(&scan.join("index.html"));
    assert!(overview.contains("Fleet overview: scan 2"), "{overview}");
    let pct = sqlite(
        &db,
        "SELECT printf('%.1f', 100.0 * sum(pass) / (sum(pass) + sum(fail) + sum(error))) FROM scan_rule_counts WHERE scan_id = 2",
    );
    assert!(overview.contains(&format!("Compliance {}\u{a0}%", pct.trim())), "{pct}");
    assert!(overview.contains("prod-cp-3") && overview.contains(">unreachable<"), "the unaudited host and why");
    assert!(overview.contains("id=\"changes\"") && overview.contains("Newly failing"));
    assert!(overview.contains("<svg") && overview.contains("<polyline"), "the trend");
    assert!(overview.contains("href=\"rules/apiserver-kubelet-certificate-authority.html\""));
    // Compliance apart: Automated and Manual checks over what was judged, and the share not judged.
    let automated = sqlite(
        &db,
        "SELECT printf('%.1f', 100.0 * sum(pass) / (sum(pass) + sum(fail))), sum(pass), sum(pass) + sum(fail), sum(error)
           FROM rule_compliance WHERE scan_id = 2 AND assessment = 'automated'",
    );
    let [pct, pass, judged, error] = automated.trim().split('|').collect::<Vec<_>>()[..] else { panic!("{automated}") };
    let expected = format!(
        "<dt>Automated checks</dt><dd><strong>{pct}\u{a0}%</strong> <span class=\"muted\">({pass} pass of {judged} judged; {error} more could not be judged)</span>"
    );
    assert!(overview.contains(&expected), "{expected}\n{overview}");
    assert!(overview.contains("<dt>Manual checks</dt>") && overview.contains("<dt>Could not judge</dt>"));
    // "Fix first": failing rules ranked by severity weight × failing hosts, as the database counts them.
    let fix = &overview[overview.find("id=\"fix-first\"").unwrap()..overview.find("id=\"worst-hosts\"").unwrap()];
    let weight = "CASE severity WHEN 'critical' THEN 8 WHEN 'high' THEN 4 WHEN 'medium' THEN 2 ELSE 1 END";
    let top = sqlite(
        &db,
        &format!(
            "SELECT rule_id, fail, {weight} * fail FROM rule_compliance WHERE scan_id = 2 AND fail > 0
              ORDER BY {weight} * fail DESC, fail DESC, rule_id LIMIT 10"
        ),
    );
    let listed: Vec<&str> = fix.split("<li>").skip(1).collect();
    assert_eq!(listed.len(), top.lines().count(), "{fix}");
    for (item, row) in listed.iter().zip(top.lines()) {
        let [rule, fail, score] = row.split('|').collect::<Vec<_>>()[..] else { panic!("{row}") };
        assert!(item.contains(&format!("<code>{rule}</code>")), "rank of {rule}:\n{fix}");
        assert!(item.contains(&format!("fails on {fail} host")) && item.contains(&format!("score {score}<")), "{item}");
        assert!(item.contains("Fix:"), "with its remediation: {item}");
    }
    // The hosts with the most failures, worst first.
    let worst = &overview[overview.find("id=\"worst-hosts\"").unwrap()..overview.find("<h2>Trend").unwrap()];
    let first = sqlite(
        &db,
        "SELECT host, fail FROM host_status WHERE scan_id = 2 AND outcome = 'audited' ORDER BY fail DESC, error DESC, host LIMIT 1",
    );
    let (host, fail) = first.trim().split_once('|').unwrap();
    let first_row = &worst[worst.find("<tbody>").unwrap()..];
    assert!(
        first_row.starts_with(&format!("<tbody>\n<tr><td><a href=\"hosts/{host}.html\">{host}</a></td>")),
        "{worst}"
    );
    assert!(first_row.contains(&format!("<td class=\"n s-fail\">{fail}</td>")), "{worst}");

    // The reference rule: the failing host, why, the remediation from the database.
    let rule = read(&scan.join("rules/apiserver-kubelet-certificate-authority.html"));
    assert!(rule.contains(">prod-cp-2</a>"), "{rule}");
    assert!(rule.contains("href=\"../hosts/prod-cp-2.html\""));
    let remediation =
        sqlite(&db, "SELECT remediation FROM rules WHERE rule_id = 'apiserver-kubelet-certificate-authority'");
    assert!(remediation.trim().len() > 20, "the migration's column is filled: {remediation:?}");
    // The rule texts keep their structure: the remediation's two numbered steps as a list, each flag line as code,
    // and every word of it on the page.
    let texts = &rule[rule.find("<h2>Remediation</h2>").unwrap()..rule.find("id=\"hosts\"").unwrap()];
    assert_eq!(texts.matches("<ol><li>").count(), 1, "{texts}");
    assert_eq!(texts.matches("<li>").count(), 2, "{texts}");
    assert!(
        texts.contains("<pre><code>--kubelet-certificate-authority=&#60;path/to/ca.crt&#62;</code></pre>"),
        "{texts}"
    );
    assert!(texts.contains("<code>serverTLSBootstrap: true</code>"), "backticks as code: {texts}");
    let words = |html: &str| {
        let mut plain = String::new();
        let mut tag = false;
        for c in html.chars() {
            match c {
                '<' => tag = true,
                '>' => tag = false,
                c if !tag => plain.push(c),
                _ => {}
            }
        }
        let plain = plain.replace("&#60;", "<").replace("&#62;", ">").replace("&#39;", "'").replace("&#34;", "\"");
        plain.replace("&#38;", "&").split_whitespace().collect::<String>()
    };
    // The steps' numbers are the list's own (`<ol>`), not text.
    let step = |w: &&str| w.strip_suffix('.').is_some_and(|n| n.parse::<u32>().is_ok());
    let stored = remediation.replace('`', "");
    let stored = stored.split_whitespace().filter(|w| !step(w)).collect::<String>();
    assert!(words(texts).contains(&stored), "remediation missing:\n{}\n{stored}", words(texts));
    assert!(!rule.contains(">prod-cp-1</a>"), "prod-cp-1 passes this rule");

    // A page per host, with its host key.
    for name in sqlite(&db, "SELECT name FROM hosts ORDER BY name").lines() {
        let page = read(&scan.join("hosts").join(format!("{name}.html")));
        assert!(page.contains(&format!("<h1>{name}</h1>")), "{name}");
    }
    let cp1 = read(&scan.join("hosts/prod-cp-1.html"));
    let fp = sqlite(&db, "SELECT host_key_fingerprint FROM host_status WHERE host = 'prod-cp-1'");
    assert!(cp1.contains(fp.trim()), "host key fingerprint");
    // A failure whose flag is set: the flag is marked in the process line, on the rule page and the host page.
    let marked = "<mark>--enable-admission-plugins=NodeRestriction</mark>";
    let rule = read(&scan.join("rules/apiserver-admission-always-pull-images.html"));
    assert!(rule.contains(">prod-cp-2</a>") && rule.contains(marked), "{rule}");
    let cp2 = read(&scan.join("hosts/prod-cp-2.html"));
    assert!(cp2.contains(marked));
    // A host page puts what needs attention first, most severe first, each failure at full width; passes and
    // rules that do not apply come after, collapsed.
    let at = |needle: &str| cp2.find(needle).unwrap_or_else(|| panic!("no {needle} on prod-cp-2's page"));
    let (attention, passed, na) =
        (at("id=\"verdicts\""), at("<details id=\"passed\">"), at("<details id=\"not-applicable\">"));
    let reference = at("<code>apiserver-kubelet-certificate-authority</code>");
    assert!(
        attention < reference && reference < passed && passed < na,
        "the failing reference rule is in Needs attention"
    );
    assert!(at("high severity (") < at("medium severity ("), "high before medium");
    assert!(cp2[attention..passed].contains("<article class=\"verdict v-fail\" id="));
    assert!(!cp2[passed..].contains("<article"), "no failure among the collapsed rows");

    // The fleet matrix: a row per host, a cell per rule with the database's status, linked to that verdict on the
    // host's page (whose anchor exists); a host that could not be audited says why across the row.
    let matrix = read(&scan.join("matrix.html"));
    assert!(overview.contains("href=\"matrix.html\""), "the overview links the matrix");
    let rules_n: usize = sqlite(&db, "SELECT count(*) FROM rule_compliance WHERE scan_id = 2").trim().parse().unwrap();
    for row in
        sqlite(&db, "SELECT host, rule_id, status FROM findings WHERE scan_id = 2 AND host = 'prod-cp-2'").lines()
    {
        let [host, rule_id, status] = row.split('|').collect::<Vec<_>>()[..] else { panic!("{row}") };
        let symbol = match status {
            "pass" => "✓",
            "fail" => "✗",
            "error" => "!",
            _ => "·",
        };
        let anchor = format!("hosts/{host}.html#r-{rule_id}");
        let cell = format!("<a href=\"{anchor}\" title=\"{}\">{symbol}</a>", status.replace('_', " "));
        assert!(matrix.contains(&cell), "{cell}");
        assert!(cp2.contains(&format!("id=\"r-{rule_id}\"")), "the host page has the anchor {anchor}");
    }
    let row = &matrix[matrix.find(">prod-cp-2</a></th>").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert_eq!(row.matches("<td class=").count(), rules_n + 1, "a cell per rule and the count: {row}");
    let unaudited = &matrix[matrix.find(">prod-cp-3</a></th>").unwrap()..];
    assert!(unaudited[..unaudited.find("</tr>").unwrap()].contains("not audited: unreachable: "), "{unaudited}");
    let clusters = sqlite(&db, "SELECT count(DISTINCT cluster) FROM hosts WHERE cluster IS NOT NULL");
    assert_eq!(matrix.matches("scope=\"rowgroup\"").count(), clusters.trim().parse::<usize>().unwrap());

    // Clusters worst first, each with its trend: scan 1's compliance of the cluster, as scan 1's page has it.
    let by_cluster =
        &overview[overview.find("id=\"clusters\"").unwrap()..overview.find("<h2 id=\"cluster-rules\"").unwrap()];
    let scan1 = read(&report.join("scan-1/index.html"));
    let mut last = -1.0;
    for row in by_cluster.split("<tr><td>").skip(1) {
        let cells: Vec<&str> = row.split("</td>").collect();
        let name = cells[0];
        let now: f64 = cells[6].trim_start_matches("<td class=\"n\">").trim_end_matches("\u{a0}%").parse().unwrap();
        assert!(now >= last, "worst first: {by_cluster}");
        last = now;
        let was = &scan1[scan1.find(&format!("<tr><td>{name}</td>")).unwrap()..];
        let was = was.split("</td>").nth(6).unwrap().trim_start_matches("<td class=\"n\">");
        assert!(row.contains(&format!("{was} at scan 1 → ")), "{name}: {was} in {row}");
    }

    assert_self_contained(&report);

    // `report` re-renders one scan from the database; `history` reads the same queries.
    let out2 = dir.path().join("out2");
    let db_s = db.to_str().unwrap();
    let out = fleetaudit(&["report", "--db", db_s, "--out", out2.to_str().unwrap(), "--scan", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out2.join("scan-1/index.html").exists() && !out2.join("scan-2").exists());
    assert!(read(&out2.join("latest/index.html")).contains("scan-2/index.html"), "latest is the newest scan");
    // Pages of a scan no longer in the database (pruned) are deleted; anything else is left alone.
    std::fs::create_dir_all(out2.join("scan-99/rules")).unwrap();
    std::fs::create_dir_all(out2.join("scan-notes")).unwrap();
    let out = fleetaudit(&["report", "--db", db_s, "--out", out2.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("report: "), "{}", text(&out.stdout));
    assert!(out2.join("scan-2/index.html").exists() && out2.join("scan-1/index.html").exists());
    assert!(!out2.join("scan-99").exists() && out2.join("scan-notes").exists());
    let out = fleetaudit(&["report", "--out", out2.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "no database given: {}", text(&out.stderr));
    let out = fleetaudit(&["report", "--db", db_s, "--out", out2.to_str().unwrap(), "--scan", "99"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no scan 99"), "{}", text(&out.stderr));

    let out = fleetaudit(&[
        "history",
        "--db",
        db_s,
        "--host",
        "prod-cp-2",
        "--rule",
        "apiserver-kubelet-certificate-authority",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = doc["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 2, "{doc}");
    assert!(findings.iter().all(|f| f["status"] == "fail" && f["host"] == "prod-cp-2"), "{doc}");
    assert_eq!(doc["latest_scan"], 2);
    assert_eq!(doc["changes"].as_array().unwrap().len(), 0, "the demo fleet does not change");
    let out = fleetaudit(&["history", "-i", demo.join("inventory.toml").to_str().unwrap(), "--host", "prod-cp-3"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("prod-cp-3") && stdout.contains("unreachable") && stdout.contains("changes in scan 2"));
}

/// A host whose process line carries markup, and a second scan where a flag changes: the markup is shown as
/// text, and the change is listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_process_lines_are_escaped_and_changes_listed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let client = sim::generate_key("client").unwrap();
    let key = d.join("id_ed25519");
    write(&key, &sim::private_key_text(&client));
    let base = sim::profile("kubeadm-default").unwrap();
    assert!(base.contains("kube-apiserver "));
    let hostile =
        base.replacen("kube-apiserver ", "kube-apiserver --anonymous-auth=<script>alert(1)</script> --x=\"'&amp; ", 1);
    let spec = |table: &str| NodeSpec {
        name: "evil-cp-1".into(),
        table: Arc::new(table.as_bytes().to_vec()),
        behavior: Behavior::Normal,
        latency: Duration::ZERO,
    };
    let scan_with = async |table: &str| {
        let nodes = sim::start(vec![spec(table)], vec![client.public_key().clone()]).await.unwrap();
        let n = &nodes[0];
        write(&d.join("known_hosts"), &(known_hosts::line_for("127.0.0.1", n.addr.port(), &n.host_key) + "\n"));
        let inv = format!(
            "[defaults]\nuser = \"audit\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\ndatabase = \"{}\"\nreport_dir = \"{}\"\n\
             \n[[hosts]]\nname = \"evil-cp-1\"\naddress = \"127.0.0.1\"\nport = {}\nroles = [\"control-plane\"]\n",
            key.display(),
            d.join("known_hosts").display(),
            d.join("h.db").display(),
            d.join("report").display(),
            n.addr.port()
        );
        write(&d.join("inventory.toml"), &inv);
        let inv_s = d.join("inventory.toml").to_str().unwrap().to_owned();
        let out = tokio::task::spawn_blocking(move || fleetaudit(&["scan", "-i", &inv_s])).await.unwrap();
        assert!(text(&out.stdout).contains("report: "), "{}\n{}", text(&out.stdout), text(&out.stderr));
        drop(nodes);
    };
    scan_with(&hostile).await;
    let host = read(&d.join("report/scan-1/hosts/evil-cp-1.html"));
    assert!(has_escaped_script(&host), "{host}");
    assert!(!host.contains("<script"), "{host}");
    assert!(host.contains(&escape("--x=\"'&amp;")), "quotes and ampersands are escaped too");
    let rule = read(&d.join("report/scan-1/rules/apiserver-anonymous-auth.html"));
    let marked = format!("<mark>{}</mark>", escape("--anonymous-auth=<script>alert(1)</script>"));
    assert!(rule.contains(&marked), "{rule}");
    assert!(!rule.contains("<script"));

    // Second scan: anonymous auth now off, so the rule newly passes; the first scan's pages are kept.
    let fixed = base.replacen("kube-apiserver ", "kube-apiserver --anonymous-auth=false ", 1);
    scan_with(&fixed).await;
    let overview = read(&d.join("report/scan-2/index.html"));
    let passing = &overview[overview.find("Newly passing").unwrap()..overview.find("Newly unreachable").unwrap()];
    assert!(passing.contains("apiserver-anonymous-auth"), "{passing}");
    assert!(d.join("report/scan-1/index.html").exists());
    assert_self_contained(&d.join("report"));
}
