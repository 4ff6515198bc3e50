//! The browser tests' harness: Debian's chromium driven by playwright-core from
//! `tests/browser` (`npm ci` there), run as `node <script>` with an environment; without
//! them a test prints "skipped", unless `OTPD_REQUIRE_BROWSER=1` (CI) makes it a failure.

use std::path::PathBuf;
use std::process::Command;

/// Whether the browser test can run here; `Err` says what is missing.
fn browser_ready(dir: &std::path::Path, chromium: &str) -> Result<(), String> {
    if !std::path::Path::new(chromium).exists() {
        return Err(format!("{chromium} not found (apt-get install chromium)"));
    }
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err(format!(
            "no playwright-core in {} (npm ci there)",
            dir.display()
        ));
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("node not found".into()),
    }
}

/// Whether the browser tests can run here; says why not (a failure with
/// `OTPD_REQUIRE_BROWSER=1`, else "skipped").
pub fn browser_can_run(what: &str) -> bool {
    match browser_ready(&browser_dir(), &chromium()) {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var("OTPD_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "OTPD_REQUIRE_BROWSER=1 but the browser test cannot run: {why}"
            );
            eprintln!("skipped: {what} browser test: {why}");
            false
        }
    }
}

/// `tests/browser`.
pub fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The chromium binary (`CHROMIUM`, default Debian's).
pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Runs one of `tests/browser`'s scripts with `env`; fails with its output unless it
/// passed.
pub async fn run_browser_script(script: &'static str, env: &[(&'static str, String)]) {
    let env = env.to_vec();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .current_dir(browser_dir())
            .envs(env)
            .env("CHROMIUM", chromium())
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser test {script} failed:\n{stdout}\n{stderr}"
    );
}
