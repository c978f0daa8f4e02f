//! The report in a real browser: headless Debian Chromium loads the overview from `file://`, renders the
//! heading and the compliance figure, reports no script error and no Content-Security-Policy violation, and
//! draws a phone-sized screenshot; the host page and the overview's fix-first list as the browser parsed them.
//! Accessibility: axe-core (npm, `tests/axe/`) run in the same Chromium through playwright-core on the pages in
//! [`AXE_PAGES`], at 1280 and 390 px, with the report's own CSP still in force: no serious or critical
//! violation; its JSON and full-page screenshots of each page at both widths left in `target/tmp/browser/` for
//! review (overwritten by each run). A page made inaccessible on purpose shows the check can fail.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use support::{fleetaudit, text};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The report pages axe checks, as (name, path under `report/scan-1/`): the name is the stem of the page's
/// screenshots (`NAME-1280.png`, `NAME-390.png`) and labels its results. Another page is one more line here.
const AXE_PAGES: &[(&str, &str)] = &[
    ("overview", "index.html"),
    ("rule", "rules/apiserver-kubelet-certificate-authority.html"),
    ("host", "hosts/prod-cp-2.html"),
    ("cluster", "clusters/prod.html"),
    ("matrix", "matrix.html"),
    ("hosts", "hosts.html"),
    ("scans", "../index.html"),
];

/// Where the browser tests leave what a reviewer looks at: cargo's scratch directory for tests.
fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `fleetaudit demo` run into `dir/demo` (each test its own: another checkout sharing the target directory
/// may run these tests at the same time); returns that directory.
fn demo(dir: &Path) -> PathBuf {
    let demo = dir.join("demo");
    let out = fleetaudit(&["demo", "--dir", demo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    demo
}

fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    assert!(Path::new(CHROMIUM).exists(), "install chromium: apt-get install -y chromium");
    let out = Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        .args(["--disable-component-update", "--no-first-run", "--disable-sync", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium");
    let stderr = text(&out.stderr);
    for line in stderr.lines() {
        assert!(!line.contains("Uncaught"), "script error: {line}");
        assert!(!line.contains("Content Security Policy"), "CSP violation: {line}");
    }
    assert!(out.status.success(), "chromium failed: {stderr}");
    out
}

#[test]
fn the_overview_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    let overview = demo.join("report/scan-1/index.html");
    let url = format!("file://{}", overview.display());
    let profile = dir.path().join("chromium-profile");

    let dom = text(&chromium(&profile, &["--dump-dom", &url]).stdout);
    assert!(dom.contains("Fleet overview: scan 1"), "{dom}");
    let compliance = dom.find("id=\"compliance\"").map(|i| &dom[i..(i + 80).min(dom.len())]);
    assert!(compliance.is_some_and(|c| c.contains("Compliance ") && c.contains('%')), "{compliance:?}");

    let png = dir.path().join("overview.png");
    let shot = format!("--screenshot={}", png.display());
    chromium(&profile, &[&shot, "--window-size=390,844", &url]);
    let bytes = std::fs::read(&png).expect("a screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    assert!(bytes.len() > 5_000, "the screenshot is nearly empty: {} bytes", bytes.len());

    // A rule page and a host page load cleanly too.
    for page in ["rules/apiserver-kubelet-certificate-authority.html", "hosts/prod-cp-2.html"] {
        let url = format!("file://{}", demo.join("report/scan-1").join(page).display());
        let dom = text(&chromium(&profile, &["--dump-dom", &url]).stdout);
        assert!(dom.contains("prod-cp-2"), "{page}");
    }
    // The host page's "Files read" table, as the browser parsed it: rows of ls -l permissions and owners.
    let url = format!("file://{}", demo.join("report/scan-1/hosts/prod-cp-2.html").display());
    let dom = text(&chromium(&profile, &["--dump-dom", &url]).stdout);
    let files = dom.find("<table class=\"files\">").map(|i| &dom[i..i + dom[i..].find("</table>").unwrap()]);
    let files = files.unwrap_or_else(|| panic!("no files table in\n{dom}"));
    assert!(files.contains("<td><code>-rw-------</code></td><td>root:root</td>"), "{files}");
    // As the browser parsed it: what needs attention first, failures as blocks; passes after, collapsed (closed).
    let at = |needle: &str| dom.find(needle).unwrap_or_else(|| panic!("no {needle} in the host page's DOM"));
    assert!(at("id=\"verdicts\"") < at("<article class=\"verdict v-fail\" id="));
    assert!(at("<article class=\"verdict v-fail\" id=") < at("<details id=\"passed\">"));
    assert!(!dom.contains("<details id=\"passed\" open"), "passes start collapsed");
    // The overview's fix-first list, as parsed: an ordered list whose items link to rule pages.
    let dom = text(&chromium(&profile, &["--dump-dom", &url_of(&overview)]).stdout);
    let fix = dom.find("<ol class=\"fix\">").map(|i| &dom[i..i + dom[i..].find("</ol>").unwrap()]);
    let fix = fix.unwrap_or_else(|| panic!("no fix-first list in\n{dom}"));
    assert!(fix.matches("<li>").count() >= 3 && fix.contains("<a href=\"rules/"), "{fix}");
    // The matrix, as parsed: a body per cluster, a header cell per host, and prod-cp-2's failing reference rule
    // as a red cell linking to that verdict on its page, where the anchor is.
    let dom = text(&chromium(&profile, &["--dump-dom", &url_of(&demo.join("report/scan-1/matrix.html"))]).stdout);
    assert!(dom.matches("<tbody>").count() >= 3, "a body per cluster");
    assert!(dom.matches("<th scope=\"row\">").count() >= 9, "a row per host");
    let cell = "<td class=\"f\"><a href=\"hosts/prod-cp-2.html#r-apiserver-kubelet-certificate-authority\" title=\"fail\">✗</a></td>";
    assert!(dom.contains(cell), "no {cell} in the matrix's DOM");
    let host = text(&chromium(&profile, &["--dump-dom", &url]).stdout);
    assert!(host.contains("id=\"r-apiserver-kubelet-certificate-authority\""), "the verdict's anchor");
}

/// The cluster page and the overview's cluster sections, as the browser parsed them: prod's seed rule names the
/// two kubelets that serve kubeadm's self-signed certificate, the kubelet table puts them first, and the week-old
/// certificate of prod-worker-1 leads the overview's expiry list and is marked on prod's calendar.
#[test]
fn the_cluster_page_shows_which_kubelets_break_and_what_expires() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    let profile = dir.path().join("chromium-profile");
    let dom =
        text(&chromium(&profile, &["--dump-dom", &url_of(&demo.join("report/scan-1/clusters/prod.html"))]).stdout);
    let section = |id: &str| {
        let at = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in\n{dom}"));
        let end = dom[at..].find("<h2").map_or(dom.len(), |e| at + e);
        &dom[at..end]
    };
    let verdicts = section("verdicts");
    let seed = verdicts.find("id=\"r-cluster-kubelet-serving-certificates\"").expect("the seed rule's verdict");
    assert!(verdicts[..seed].rfind("<article class=\"verdict v-fail\"").is_some(), "{verdicts}");
    assert!(verdicts.contains("2 of 3 kubelets would fail"), "{verdicts}");
    let apis = section("api-servers");
    assert!(
        apis.contains("prod-cp-1") && apis.contains("/etc/kubernetes/pki/ca.crt") && apis.contains("CN=kubernetes")
    );
    assert!(apis.contains("prod-cp-2") && apis.contains("not set"), "{apis}");
    let kubelets = section("kubelets");
    let rows: Vec<&str> = kubelets.split("<tr>").skip(2).collect();
    assert_eq!(rows.len(), 3, "{kubelets}");
    for (row, (host, status)) in
        rows.iter().zip([("prod-cp-2", "fail"), ("prod-worker-1", "fail"), ("prod-cp-1", "pass")])
    {
        assert!(row.contains(&format!(">{host}</a>")) && row.contains(&format!("class=\"s-{status}\"")), "{row}");
    }
    assert!(rows[0].contains("(by the kubelet's own CA)") && !rows[2].contains("(by the"), "{kubelets}");
    let calendar = section("calendar");
    // The month the week-old certificate expires in is marked; its row says so, and later months are not marked.
    let months = &calendar[..calendar.find("</table>").unwrap()];
    assert_eq!(months.matches("<td class=\"s-fail\">").count(), 1, "{months}");
    let soon = calendar.split("<tr>").find(|r| r.contains("prod-worker-1:/var/lib/kubelet/pki/kubelet.crt"));
    assert!(soon.is_some_and(|r| r.contains("class=\"s-fail\"") && r.contains("expires soon")), "{calendar}");
    assert!(calendar.contains("prod-worker-1:/var/lib/kubelet/pki/kubelet.crt"), "{calendar}");

    let dom = text(&chromium(&profile, &["--dump-dom", &url_of(&demo.join("report/scan-1/index.html"))]).stdout);
    let at = dom.find("id=\"cluster-rules\"").expect("the overview's cluster rules");
    let table = &dom[at..at + dom[at..].find("</table>").unwrap()];
    assert!(
        table.contains("<a href=\"clusters/prod.html\">prod</a>")
            && table.contains("<a href=\"clusters/kops.html\">kops</a>")
    );
    assert!(table.find("clusters/prod.html").unwrap() < table.find("clusters/kops.html").unwrap(), "failing first");
    let at = dom.find("id=\"expiring\"").expect("the overview's expiry list");
    let list = &dom[at..at + dom[at..].find("</table>").unwrap()];
    let first = list.split("<tr>").nth(2).expect("a certificate");
    assert!(
        first.contains("expires soon") && first.contains("prod-worker-1:/var/lib/kubelet/pki/kubelet.crt"),
        "{first}"
    );
}

fn url_of(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Runs `tests/axe/run.mjs` on `pages` (name, file), writing screenshots into `out`; its JSON, parsed: one
/// entry per page and width. A missing Node.js or `tests/axe/node_modules` fails with what to install.
fn axe(out: &Path, pages: &[(&str, PathBuf)]) -> Vec<Value> {
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/axe");
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "the accessibility check needs Node.js and npm: `apt-get install -y nodejs npm`, then \
         `npm ci --prefix tests/axe` (.ci/run does both)"
    );
    for module in ["axe-core", "playwright-core"] {
        assert!(
            harness.join("node_modules").join(module).join("package.json").exists(),
            "tests/axe/node_modules/{module} is missing: run `npm ci --prefix tests/axe` (.ci/run does)"
        );
    }
    let mut cmd = Command::new("node");
    cmd.arg(harness.join("run.mjs")).arg("--out").arg(out);
    for (name, path) in pages {
        cmd.arg(format!("{name}={}", path.display()));
    }
    let run = cmd.output().expect("run node");
    assert!(run.status.success(), "tests/axe/run.mjs failed:\n{}", text(&run.stderr));
    let results: Vec<Value> = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("tests/axe/run.mjs printed no JSON ({e}):\n{}", text(&run.stdout)));
    assert_eq!(results.len(), pages.len() * 2, "one result per page and width");
    results
}

/// The violations of one result whose impact is serious or critical, one readable paragraph each.
fn serious(result: &Value) -> Vec<String> {
    let violations = result["violations"].as_array().expect("violations");
    violations.iter().filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical"))).map(describe).collect()
}

fn describe(v: &Value) -> String {
    let mut s = format!(
        "{} ({}): {} <{}>",
        v["id"].as_str().unwrap_or("?"),
        v["impact"].as_str().unwrap_or("?"),
        v["help"].as_str().unwrap_or(""),
        v["helpUrl"].as_str().unwrap_or("")
    );
    for node in v["nodes"].as_array().into_iter().flatten() {
        let summary = node["summary"].as_str().unwrap_or("").replace('\n', "\n        ");
        s += &format!("\n    {}\n        {summary}", node["target"]);
    }
    s
}

fn label(result: &Value) -> String {
    format!("{} at {} px", result["page"].as_str().unwrap_or("?"), result["width"])
}

#[test]
fn the_report_has_no_serious_accessibility_violations() {
    let dir = tempfile::tempdir().unwrap();
    let scan = demo(dir.path()).join("report/scan-1");
    let pages: Vec<(&str, PathBuf)> = AXE_PAGES.iter().map(|(name, page)| (*name, scan.join(page))).collect();
    let out = output_dir();
    let results = axe(&out, &pages);
    let json = out.join("axe.json");
    std::fs::write(&json, serde_json::to_string_pretty(&results).unwrap()).unwrap();

    let mut failures = Vec::new();
    for result in &results {
        let page = label(result);
        // axe went in through the DevTools protocol: the report's own policy still holds for its content.
        let csp = &result["csp"];
        assert!(csp["meta"].as_str().is_some_and(|m| m.starts_with("default-src 'none';")), "{page}: {csp}");
        assert_eq!(csp["inlineScriptRan"], false, "{page}: the CSP let an inline script run");
        let on_load = result["consoleOnLoad"].as_array().unwrap();
        assert!(
            !on_load.iter().any(|l| l.as_str().unwrap().contains("Content Security Policy")),
            "{page}: {on_load:?}"
        );
        assert_eq!(result["pageErrors"], Value::Array(vec![]), "{page}");
        assert_eq!(result["externalRequests"], Value::Array(vec![]), "{page}: the report loaded something");
        // Reflow: wide tables scroll inside their own box; the page itself never scrolls sideways.
        assert_eq!(result["horizontalOverflow"], false, "{page}: the page is wider than the window");
        let png = Path::new(result["screenshot"].as_str().unwrap());
        assert!(
            std::fs::read(png).is_ok_and(|b| b.starts_with(b"\x89PNG") && b.len() > 5_000),
            "{page}: no screenshot at {}",
            png.display()
        );
        for v in result["violations"].as_array().unwrap() {
            if !matches!(v["impact"].as_str(), Some("serious" | "critical")) {
                println!("{page}: {}", describe(v));
            }
        }
        failures.extend(serious(result).into_iter().map(|v| format!("{page}: {v}")));
    }
    assert!(
        failures.is_empty(),
        "axe-core found {} serious or critical violation(s) (all results: {}):\n\n{}",
        failures.len(),
        json.display(),
        failures.join("\n\n")
    );
}

/// The check can fail: a page with an image without alternative text and faint grey text on white.
#[test]
fn axe_reports_an_inaccessible_page() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("inaccessible.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Inaccessible</title></head>\n\
         <body><main><h1>Inaccessible</h1><p style=\"color: #c8c8c8; background: #fff\">Faint text</p>\n\
         <img src=\"data:image/gif;base64,R0lGODlhAQABAIAAAP///wAAACwAAAAAAQABAAACAkQBADs=\" width=\"40\" \
         height=\"40\"></main></body></html>\n",
    )
    .unwrap();
    let results = axe(dir.path(), &[("inaccessible", page)]);
    for result in &results {
        let found = serious(result);
        let ids = |id: &str| found.iter().any(|v| v.starts_with(&format!("{id} (")));
        assert!(ids("image-alt") && ids("color-contrast"), "{}: axe missed them: {found:#?}", label(result));
    }
}
