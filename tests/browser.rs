//! The report in a real browser: headless Debian Chromium loads the overview from `file://`, renders the
//! heading and the compliance figure, reports no script error and no Content-Security-Policy violation, and
//! draws a phone-sized screenshot; the host page and the overview's fix-first list as the browser parsed them;
//! screenshots of both at 1280 and 390 px left in `target/tmp/browser/` for review.

mod support;

use std::path::Path;
use std::process::Command;

use support::{fleetaudit, text};

const CHROMIUM: &str = "/usr/bin/chromium";

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
    let demo = dir.path().join("demo");
    let out = fleetaudit(&["demo", "--dir", demo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
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

    // Screenshots for review, kept where cargo keeps test output: laptop and phone widths.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, page) in [("overview", "index.html"), ("host", "hosts/prod-cp-2.html")] {
        for width in [1280, 390] {
            let png = shots.join(format!("{name}-{width}.png"));
            let shot = format!("--screenshot={}", png.display());
            let size = format!("--window-size={width},1600");
            chromium(&profile, &[&shot, &size, &url_of(&demo.join("report/scan-1").join(page))]);
            assert!(
                std::fs::read(&png).is_ok_and(|b| b.starts_with(b"\x89PNG") && b.len() > 5_000),
                "{}",
                png.display()
            );
        }
    }
}

fn url_of(path: &Path) -> String {
    format!("file://{}", path.display())
}
