//! Headless Chromium (Debian's `chromium`, installed by `scripts/test.sh`) loading tether's
//! admin pages the way an operator's browser would.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::Tether;

fn chromium() -> PathBuf {
    let path = std::env::var_os("TETHER_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(path.exists(), "{} not found: scripts/test.sh installs Debian's chromium", path.display());
    path
}

/// Chromium with the flags a sandboxed, offline test machine needs, and a fresh profile.
fn headless(profile: &Path) -> Command {
    let mut command = Command::new(chromium());
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]);
    command.arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// Loads `/status`: every pod appears with its state and session share (a bar and a
/// percentage), readable without JavaScript; a screenshot is kept under `target/`.
pub async fn status_page_renders(t: &Tether, live_pods: &[&str]) {
    let url = format!("http://{}/status", t.admin);
    let profile = tempfile::tempdir().unwrap();
    let mut dump = headless(profile.path());
    dump.args(["--disable-javascript", "--dump-dom", &url]);
    let out = tokio::task::spawn_blocking(move || dump.output()).await.unwrap().expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<h2>default/shop:80</h2>"),
        "the backend is shown:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for pod in live_pods {
        let row = dom
            .split("<tr ")
            .find(|row| row.contains(&format!("data-pod=\"default/{pod}:")))
            .unwrap_or_else(|| panic!("{pod} has no row:\n{dom}"));
        assert!(row.contains("class=\"endpoint ready\""), "{row}");
        assert!(row.contains("class=\"fill sessions\" style=\"width:"), "a session bar: {row}");
        assert!(row.contains('%'), "a session share: {row}");
    }
    assert!(dom.contains("class=\"endpoint gone\""), "the stopped pod is listed as gone");

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut shot = headless(profile.path());
    shot.args(["--window-size=1280,900", &format!("--screenshot={}", screenshot.display()), &url]);
    let out = tokio::task::spawn_blocking(move || shot.output()).await.unwrap().expect("chromium runs");
    let png = std::fs::read(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "a real screenshot: {} bytes", png.len());
}
