//! End-to-end tests of the command line a script or an operator uses against a running
//! server (issue 23): `otpd send` and `otpd check` print one line (or the whole reply with
//! `--json`) and `check` exits with a status per outcome; an unreachable server is named
//! with where its URL came from; `keys list` has a header; `serve` names the way to mint a
//! new admin key.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::time::{Duration, Instant};

use common::{DELIVERY_TIMEOUT, OtpdProcess, TestDir, free_port, start_with_sink, wrong_code};
use serde_json::{Value, json};

/// What one `otpd` run gave.
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs `otpd ARGS` in `dir` against `otpd` (its URL and admin key unless `args` set them).
async fn cli(
    dir: &TestDir,
    otpd: Option<&OtpdProcess>,
    args: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_otpd"));
    command
        .args(args)
        .current_dir(dir.path())
        .env_remove("OTPD_URL")
        .env_remove("OTPD_API_KEY")
        .env_remove("OTPD_CONFIG")
        .env("OTPD_DATABASE_URL", dir.database_url())
        .envs(env.iter().copied());
    if let Some(otpd) = otpd {
        command
            .env("OTPD_URL", otpd.base_url())
            .env("OTPD_API_KEY", otpd.master_key());
    }
    let out = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("otpd finished within 30 s")
        .expect("run the otpd binary");
    Run {
        status: out.status.code().expect("an exit status"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\nstdout: {}\nstderr: {}",
            self.status, self.stdout, self.stderr
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_check_print_one_line_and_check_exits_by_outcome() {
    let (dir, sink, otpd) = start_with_sink().await;
    let to = "+14155550142";

    let sent = cli(
        &dir,
        Some(&otpd),
        &["send", "--to", to, "--channel", "sms"],
        &[],
    )
    .await;
    assert_eq!(sent.status, 0, "{sent:?}");
    assert_eq!(sent.stdout.lines().count(), 1, "{sent:?}");
    assert!(
        sent.stdout.starts_with("sent: ver_") && sent.stdout.contains(&format!(" to {to} by sms")),
        "{sent:?}"
    );
    let id = sent.stdout["sent: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    sink.wait_for_to(to, 1, DELIVERY_TIMEOUT).await;
    let code = sink.code_for(to).await;

    let wrong = cli(
        &dir,
        Some(&otpd),
        &["check", "--to", to, "--code", &wrong_code(&code)],
        &[],
    )
    .await;
    assert_eq!(wrong.status, 3, "a wrong code exits 3: {wrong:?}");
    assert_eq!(
        wrong.stdout,
        format!("wrong code: 4 attempts left ({id})\n"),
        "{wrong:?}"
    );
    assert_eq!(wrong.stderr, "", "{wrong:?}");

    let json = cli(
        &dir,
        Some(&otpd),
        &["check", "--to", to, "--code", &wrong_code(&code), "--json"],
        &[],
    )
    .await;
    assert_eq!(json.status, 3, "{json:?}");
    let body: Value = serde_json::from_str(&json.stdout).expect("--json prints the reply");
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(body["remaining_attempts"], 3, "{body}");

    let right = cli(
        &dir,
        Some(&otpd),
        &["check", "--to", to, "--code", &code],
        &[],
    )
    .await;
    assert_eq!(right.status, 0, "{right:?}");
    assert_eq!(
        right.stdout,
        format!("approved: {id} ({to})\n"),
        "{right:?}"
    );

    let again = cli(
        &dir,
        Some(&otpd),
        &["check", "--to", to, "--code", &code],
        &[],
    )
    .await;
    assert_eq!(again.status, 5, "nothing pending exits 5: {again:?}");
    assert!(again.stdout.starts_with("not found: "), "{again:?}");

    // Five wrong codes: four leave attempts, the fifth exhausts them.
    let to = "+14155550143";
    let sent = otpd.send_ok(&json!({"to": to})).await;
    let code = sink.code_for(to).await;
    for left in (1..=4).rev() {
        let wrong = cli(
            &dir,
            Some(&otpd),
            &["check", "--id", &sent.id(), "--code", &wrong_code(&code)],
            &[],
        )
        .await;
        assert_eq!(wrong.status, 3, "{wrong:?}");
        assert!(
            wrong
                .stdout
                .starts_with(&format!("wrong code: {left} attempt")),
            "{wrong:?}"
        );
    }
    let last = cli(
        &dir,
        Some(&otpd),
        &["check", "--id", &sent.id(), "--code", &wrong_code(&code)],
        &[],
    )
    .await;
    assert_eq!(last.status, 6, "no attempts left exits 6: {last:?}");
    assert!(last.stdout.starts_with("no attempts left: "), "{last:?}");

    // An expired code: checked by id once the verification reads expired.
    let to = "+14155550144";
    let sent = otpd.send_ok(&json!({"to": to, "ttl_seconds": 1})).await;
    let code = sink.code_for(to).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while otpd.verification(&sent.id()).await.str("status") != "expired" {
        assert!(Instant::now() < deadline, "the verification never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expired = cli(
        &dir,
        Some(&otpd),
        &["check", "--id", &sent.id(), "--code", &code],
        &[],
    )
    .await;
    assert_eq!(expired.status, 4, "an expired code exits 4: {expired:?}");
    assert!(expired.stdout.starts_with("expired: "), "{expired:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_named_with_where_its_url_came_from() {
    let dir = TestDir::new();
    let url = format!("http://127.0.0.1:{}", free_port());
    let key = "k".repeat(40);
    let env = [("OTPD_URL", url.as_str()), ("OTPD_API_KEY", key.as_str())];
    let out = cli(
        &dir,
        None,
        &["check", "--to", "+14155550145", "--code", "123456"],
        &env,
    )
    .await;
    assert_eq!(out.status, 7, "unreachable exits 7: {out:?}");
    assert!(
        out.stderr.contains(&format!(
            "cannot reach otpd at {url} (from --url or OTPD_URL)"
        )),
        "{out:?}"
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [
        ("OTPD_LISTEN", listen.as_str()),
        ("OTPD_API_KEY", key.as_str()),
    ];
    let out = cli(&dir, None, &["send", "--to", "+14155550145"], &env).await;
    assert_eq!(out.status, 7, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "cannot reach otpd at http://{listen} (the configuration's listen address; pass \
             --url or set OTPD_URL for another)"
        )),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_list_has_a_header_and_serve_names_the_way_back_in() {
    let (dir, _sink, otpd) = start_with_sink().await;
    assert!(
        otpd.output_contains("Lost the admin key? Mint another on this host, with the same configuration: otpd keys create --role admin --name NAME"),
        "{:#?}",
        otpd.output()
    );
    let created = cli(
        &dir,
        None,
        &["keys", "create", "--name", "recovery", "--role", "admin"],
        &[],
    )
    .await;
    assert_eq!(created.status, 0, "{created:?}");
    let list = cli(&dir, None, &["keys", "list"], &[]).await;
    assert_eq!(list.status, 0, "{list:?}");
    let mut lines = list.stdout.lines();
    let header = lines.next().unwrap();
    for column in [
        "ID",
        "ROLE",
        "MODE",
        "ENDS WITH",
        "CREATED",
        "STATE",
        "NAME",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = lines
        .find(|l| l.ends_with("recovery"))
        .expect("the new key is listed");
    assert!(
        row.starts_with("key_") && row.contains("admin") && row.contains("active"),
        "{row}"
    );
    // The new admin key works against the running server.
    let key = created
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .unwrap()
        .trim()
        .to_owned();
    otpd.get_as(&key, "/v1/services")
        .await
        .assert_status(200, "new admin key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_texts_speak_to_users() {
    let dir = TestDir::new();
    let mut all = String::new();
    for args in [
        &["--help"][..],
        &["check", "--help"],
        &["send", "--help"],
        &["keys", "--help"],
        &["keys", "create", "--help"],
        &["config", "check", "--help"],
    ] {
        let out = cli(&dir, None, args, &[]).await;
        assert_eq!(out.status, 0, "{args:?}: {out:?}");
        all.push_str(&out.stdout);
    }
    for want in [
        "Exit status: 0 approved, 3 wrong code (attempts remain), 4 expired, 5 nothing pending",
        "--json",
        "also the way back in when the admin key is lost",
        "`--role admin` mints a new admin key",
        "--skip-files",
        "OTPD_DELIVERY__MAX_ATTEMPTS",
    ] {
        assert!(all.contains(want), "help lacks {want:?}:\n{all}");
    }
    // No note meant for developers, no bare one-word descriptions.
    for line in all.lines() {
        let line = line.trim();
        assert!(
            !["TODO", "issue ", "internal", "Action."]
                .iter()
                .any(|w| line.contains(w)),
            "{line}"
        );
    }
}
