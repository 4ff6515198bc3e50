//! Python peers (packages pinned in tests/requirements-test.txt) (part of the end-to-end harness; see the module docs of `common`).

use super::*;

/// The Python named by `OTPD_PY` if it can import every one of `modules`; otherwise
/// prints "skipped: …" and returns `None` — or fails when `OTPD_REQUIRE_PEERS=1` (as in
/// `.ci/run`).
pub fn python_with(modules: &[&str]) -> Option<String> {
    let required = std::env::var("OTPD_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    let skip = |why: String| {
        assert!(!required, "OTPD_REQUIRE_PEERS=1 but {why}");
        println!("skipped: {why}; set OTPD_PY to a python with tests/requirements-test.txt");
        None
    };
    let Ok(py) = std::env::var("OTPD_PY") else {
        return skip("OTPD_PY is not set".into());
    };
    for module in modules {
        let ok = Command::new(&py)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return skip(format!("OTPD_PY has no {module}"));
        }
    }
    Some(py)
}

/// The path of a script in `tests/peers/`.
pub fn peer_script(name: &str) -> String {
    format!("{}/tests/peers/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A Python peer process: started with a script and arguments, ready once it prints
/// `READY`, then read one JSON line at a time. Killed when dropped.
pub struct PythonPeer {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    _child: tokio::process::Child,
}

impl PythonPeer {
    /// Starts `py script args…` and waits for its `READY` line.
    pub async fn start(py: &str, script: &str, args: &[&str]) -> PythonPeer {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(py)
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the python peer");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(READY_TIMEOUT, lines.next_line())
            .await
            .expect("the peer is ready in time")
            .expect("read the peer's output")
            .expect("a line from the peer");
        assert_eq!(ready, "READY", "{script}");
        PythonPeer {
            lines,
            _child: child,
        }
    }

    /// The next JSON line, or `None` if none comes within `timeout`.
    pub async fn next_json(&mut self, timeout: Duration) -> Option<Value> {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .ok()?
            .expect("read the peer's output")?;
        Some(serde_json::from_str(&line).expect("a JSON line from the peer"))
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `GET /v1/verifications/{id}` until `pred` holds (15 s at most); returns the body.
pub async fn wait_verification(
    otpd: &OtpdProcess,
    id: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = otpd.verification(id).await;
        if pred(&v.body) {
            return v.body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            v.body
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
