//! The documentation's examples, run (issue 23, item 11), so a stale example fails CI.
//!
//! The pages are `README.md` and `docs/*.md`; the conventions are in
//! `docs/contributing.md` ("Tested examples"):
//!
//! - every ` ```toml ` block passes `otpd config check` (the files it names under
//!   `/etc/otpd/` are test stand-ins: the Vonage test key, generated voice prompts);
//! - every ` ```sh `/` ```bash ` block carries a marker on the line before its fence:
//!   `<!-- test: run -->` blocks run with bash against an otpd started the way the README's
//!   container quick start starts it (built-in defaults, the `console` provider), each
//!   `curl` answer checked against the `# → STATUS {…}` comment that follows it;
//!   `<!-- test: skip (reason) -->` blocks are not run; an unmarked block is a failure;
//! - `<!-- test: output -->` plain blocks must appear in that server's output;
//! - relative links (and their `#anchors`) between the pages lead somewhere;
//! - the README's test command is the one `.ci/run` runs, and its container commands
//!   match `deploy/Dockerfile`.
//!
//! A marker may name substitutions, `SOURCE=LITERAL`: the test replaces `LITERAL` in the
//! block with `code` (the code the `console` provider printed last), `key_id` (the id of
//! `$KEY`) or `id` (the `"id"` of the last JSON answer of a run block).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{OtpdProcess, TestDir, extract_code};
use serde_json::Value;

/// How long a block of shell commands may run.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the test waits for a line of the server's output (a console message).
const OUTPUT_TIMEOUT: Duration = Duration::from_secs(10);
/// The address the examples call; replaced by the test server's.
const EXAMPLE_ADDRESS: &str = "localhost:8080";
/// Where examples put their files; the TOML check provides stand-ins there.
const EXAMPLE_FILES: &str = "/etc/otpd/";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The pages, `README.md` first, then `docs/*.md` by name, as (path from the repository
/// root, text).
fn pages() -> Vec<(String, String)> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    names.sort();
    names.insert(0, "README.md".to_owned());
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(repo().join(&n)).unwrap();
            (n, text)
        })
        .collect()
}

/// Where a marker's substitution takes its value from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Source {
    /// The code the `console` provider printed last.
    Code,
    /// The id of `$KEY`.
    KeyId,
    /// The `"id"` of the last JSON answer.
    Id,
}

/// What the comment before a fence asks for.
#[derive(Clone, Debug, PartialEq)]
enum Marker {
    Run(Vec<(Source, String)>),
    Output(Vec<(Source, String)>),
    Skip,
}

/// One fenced block of a page.
#[derive(Debug)]
struct Block {
    /// `page:line` of the opening fence.
    place: String,
    lang: String,
    body: String,
    marker: Option<Marker>,
}

/// Parses `<!-- test: … -->` (the text inside the comment).
fn parse_marker(inner: &str) -> Result<Marker, String> {
    if let Some(rest) = inner.strip_prefix("skip") {
        let reason = rest.trim();
        if reason.len() > 2 && reason.starts_with('(') && reason.ends_with(')') {
            return Ok(Marker::Skip);
        }
        return Err(format!(
            "`test: skip` needs a reason in parentheses: {inner:?}"
        ));
    }
    let (kind, rest) = inner.split_once(' ').unwrap_or((inner, ""));
    let mut subs = Vec::new();
    for arg in rest.split_whitespace() {
        let (source, literal) = arg
            .split_once('=')
            .ok_or_else(|| format!("expected SOURCE=LITERAL, got {arg:?}"))?;
        let source = match source {
            "code" => Source::Code,
            "key_id" => Source::KeyId,
            "id" => Source::Id,
            other => return Err(format!("unknown substitution source {other:?}")),
        };
        subs.push((source, literal.to_owned()));
    }
    match kind {
        "run" => Ok(Marker::Run(subs)),
        "output" => Ok(Marker::Output(subs)),
        other => Err(format!("unknown marker `test: {other}`")),
    }
}

/// The fenced blocks of a page, each with the marker on the line before its fence. A
/// malformed marker, or one not followed by a fence, is an error.
fn blocks(page: &str, text: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(inner) = line
            .strip_prefix("<!-- test:")
            .and_then(|r| r.strip_suffix("-->"))
        {
            parse_marker(inner.trim()).map_err(|e| format!("{page}:{}: {e}", i + 1))?;
            if !lines
                .get(i + 1)
                .is_some_and(|l| l.trim().starts_with("```"))
            {
                return Err(format!("{page}:{}: a marker must precede a fence", i + 1));
            }
        }
        if let Some(lang) = line.strip_prefix("```") {
            let start = i;
            let mut body = Vec::new();
            i += 1;
            while i < lines.len() && lines[i].trim() != "```" {
                body.push(lines[i]);
                i += 1;
            }
            let marker = start
                .checked_sub(1)
                .and_then(|p| {
                    lines[p]
                        .trim()
                        .strip_prefix("<!-- test:")
                        .and_then(|r| r.strip_suffix("-->"))
                })
                .map(|inner| parse_marker(inner.trim()).unwrap());
            out.push(Block {
                place: format!("{page}:{}", start + 1),
                lang: lang.trim().to_owned(),
                body: body.join("\n") + "\n",
                marker,
            });
        }
        i += 1;
    }
    Ok(out)
}

fn all_blocks() -> Vec<Block> {
    pages()
        .iter()
        .flat_map(|(page, text)| blocks(page, text).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn is_shell(lang: &str) -> bool {
    matches!(lang, "sh" | "bash" | "shell" | "console")
}

// ---------------------------------------------------------------------------------------
// TOML

/// A PCM WAV file of 0.1 s of silence (8 kHz, 16-bit mono): a stand-in voice prompt.
fn silent_wav() -> Vec<u8> {
    let data = vec![0u8; 1600];
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes()); // bytes per second
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    wav
}

/// The files the examples name under `/etc/otpd/`, as stand-ins in `root`.
fn example_files(root: &Path) {
    let etc = root.join("etc/otpd");
    std::fs::create_dir_all(etc.join("voice")).unwrap();
    std::fs::copy(
        repo().join("crates/otpd-delivery/tests/fixtures/vonage_test_key.pem"),
        etc.join("vonage.key"),
    )
    .unwrap();
    for clip in ["intro", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"] {
        std::fs::write(etc.join(format!("voice/{clip}.wav")), silent_wav()).unwrap();
    }
}

#[test]
fn every_toml_example_passes_config_check() {
    let dir = tempfile::tempdir().unwrap();
    example_files(dir.path());
    let files = format!("{}/etc/otpd/", dir.path().display());
    let mut checked = 0;
    let mut failures = Vec::new();
    for block in all_blocks() {
        if block.lang != "toml" || block.marker == Some(Marker::Skip) {
            continue;
        }
        let path = dir.path().join(format!("example{checked}.toml"));
        std::fs::write(&path, block.body.replace(EXAMPLE_FILES, &files)).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_otpd"));
        cmd.arg("--config")
            .arg(&path)
            .args(["config", "check"])
            .current_dir(dir.path());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OTPD_") {
                cmd.env_remove(name);
            }
        }
        let out = cmd.output().expect("run otpd config check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains("configuration OK") {
            failures.push(format!(
                "{}: otpd config check refused it:\n{stdout}{}",
                block.place,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(checked >= 5, "only {checked} TOML examples found");
}

// ---------------------------------------------------------------------------------------
// Markers

#[test]
fn every_shell_example_is_marked() {
    let unmarked: Vec<String> = all_blocks()
        .into_iter()
        .filter(|b| is_shell(&b.lang) && b.marker.is_none())
        .map(|b| b.place)
        .collect();
    assert!(
        unmarked.is_empty(),
        "shell examples without `<!-- test: run -->` or `<!-- test: skip (reason) -->` on \
         the line before their fence (docs/contributing.md):\n{}",
        unmarked.join("\n")
    );
}

#[test]
fn markers_parse() {
    assert_eq!(parse_marker("run").unwrap(), Marker::Run(vec![]));
    assert_eq!(
        parse_marker("run code=481516 id=tf_…").unwrap(),
        Marker::Run(vec![
            (Source::Code, "481516".into()),
            (Source::Id, "tf_…".into())
        ])
    );
    assert_eq!(parse_marker("skip (needs Docker)").unwrap(), Marker::Skip);
    assert!(parse_marker("skip").is_err());
    assert!(parse_marker("runn").is_err());
    assert!(parse_marker("run token=x").is_err());
    let page = "x\n<!-- test: run -->\nnot a fence\n";
    assert!(blocks("p.md", page).is_err());
    let page = "<!-- test: skip (why) -->\n```sh\nfalse\n```\n```sh\ntrue\n```\n";
    let b = blocks("p.md", page).unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].marker, Some(Marker::Skip));
    assert_eq!(b[1].marker, None);
    assert_eq!(b[1].place, "p.md:5");
}

// ---------------------------------------------------------------------------------------
// Expected answers: `# → 201 {"id":"ver_…","status":"pending", …}`

/// A value an answer must hold somewhere.
#[derive(Debug, PartialEq)]
enum Expect {
    /// A string; `…` stands for any text.
    Str(String),
    /// A number, `true`, `false` or `null`, as written.
    Lit(String),
}

/// What a `# →` comment says of an answer.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    status: Option<u16>,
    fields: Vec<(String, Expect)>,
}

/// Reads a JSON-like string literal starting at `chars[*i] == '"'`.
fn read_string(chars: &[char], i: &mut usize) -> String {
    let mut s = String::new();
    *i += 1;
    while *i < chars.len() && chars[*i] != '"' {
        if chars[*i] == '\\' && *i + 1 < chars.len() {
            *i += 1;
        }
        s.push(chars[*i]);
        *i += 1;
    }
    *i += 1;
    s
}

/// Parses the text after `→`: an optional status, then `"field":value` pairs at any depth
/// (values `…` and objects or arrays are not pairs themselves; their fields are).
fn parse_expected(text: &str) -> Expected {
    let text = text.trim_start();
    let mut expected = Expected::default();
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    if digits.len() == 3 {
        expected.status = digits.parse().ok();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '"' {
            i += 1;
            continue;
        }
        let s = read_string(&chars, &mut i);
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        if chars.get(i) != Some(&':') {
            continue;
        }
        i += 1;
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        match chars.get(i) {
            Some('"') => {
                let v = read_string(&chars, &mut i);
                expected.fields.push((s, Expect::Str(v)));
            }
            Some('{' | '[') | None => {}
            Some(_) => {
                let token: String = chars[i..]
                    .iter()
                    .take_while(|c| !matches!(c, ',' | '}' | ']' | ' '))
                    .collect();
                i += token.chars().count();
                if !token.contains('…') && !token.is_empty() {
                    expected.fields.push((s, Expect::Lit(token)));
                }
            }
        }
    }
    expected
}

/// Whether `text` matches `pattern`, in which `…` stands for any text.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether some object in `value` has `field` with the expected value.
fn holds(value: &Value, field: &str, expect: &Expect) -> bool {
    match value {
        Value::Object(map) => {
            map.get(field).is_some_and(|v| match (expect, v) {
                (Expect::Str(p), Value::String(s)) => glob(p, s),
                (Expect::Lit(l), v) => serde_json::from_str::<Value>(l).is_ok_and(|l| l == *v),
                _ => false,
            }) || map.values().any(|v| holds(v, field, expect))
        }
        Value::Array(items) => items.iter().any(|v| holds(v, field, expect)),
        _ => false,
    }
}

#[test]
fn expected_answers_parse_and_match() {
    let e = parse_expected(
        r#" 201 {"id":"ver_…","status":"pending","n":16,"ok":true,"deliveries":[{"provider":"console",…}], "more":…, …}"#,
    );
    assert_eq!(e.status, Some(201));
    assert_eq!(
        e.fields,
        vec![
            ("id".into(), Expect::Str("ver_…".into())),
            ("status".into(), Expect::Str("pending".into())),
            ("n".into(), Expect::Lit("16".into())),
            ("ok".into(), Expect::Lit("true".into())),
            ("provider".into(), Expect::Str("console".into())),
        ]
    );
    assert!(parse_expected(r#"{"a":"b"}"#).status.is_none());
    assert!(glob("pow_….…", "pow_01ab.9f3c"));
    assert!(glob("<svg …>", "<svg a=\"b\"></svg>"));
    assert!(!glob("ver_…", "key_1"));
    assert!(!glob("a…b…c", "acb"));
    let answer: Value = serde_json::json!({"id": "ver_1", "n": 16, "d": [{"provider": "console"}]});
    for (field, expect) in parse_expected(r#"{"id":"ver_…","n":16,"provider":"console"}"#).fields
    {
        assert!(holds(&answer, &field, &expect), "{field}");
    }
    assert!(!holds(&answer, "n", &Expect::Lit("160".into())));
    assert!(!holds(&answer, "id", &Expect::Str("tf_…".into())));
}

/// The `curl` commands of a block, each with what its `# →` comment expects.
fn curl_commands(body: &str) -> Vec<(String, Expected)> {
    let lines: Vec<&str> = body.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let mut command = lines[i].trim().to_owned();
        while command.ends_with('\\') && i + 1 < lines.len() {
            command.pop();
            i += 1;
            command.push_str(lines[i].trim());
            command.push(' ');
        }
        i += 1;
        if !command.starts_with("curl ") {
            continue;
        }
        let mut expected = Expected::default();
        if let Some(text) = lines.get(i).and_then(|l| l.trim().strip_prefix("# →")) {
            let mut text = text.to_owned();
            i += 1;
            // Continuation lines: `#` and at least two spaces.
            while let Some(more) = lines.get(i).and_then(|l| l.trim().strip_prefix("#  ")) {
                text.push_str(more);
                i += 1;
            }
            expected = parse_expected(&text);
        }
        out.push((command, expected));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Shell examples against a running otpd

/// Defines `curl` for a block: the real curl, its answer kept in `$OTPD_DOCS_LOG/N.body`
/// and its status in `N.status` (and printed, so redirections still work).
const PRELUDE: &str = r#"set -eu
curl() {
  __otpd_n=$(( ${__otpd_n:-0} + 1 ))
  local body="$OTPD_DOCS_LOG/$__otpd_n.body" status
  status=$(command curl --no-progress-meter -o "$body" -w '%{http_code}' "$@") || {
    echo "curl failed: $*" >&2; return 1; }
  printf '%s' "$status" > "$OTPD_DOCS_LOG/$__otpd_n.status"
  if [ -f "$body" ]; then cat "$body"; fi
}
"#;

/// The container the README starts: `-e NAME=VALUE` of its `docker run` line.
fn container_env(readme: &str) -> Vec<(String, String)> {
    let line = readme
        .lines()
        .find(|l| l.trim_start().starts_with("docker run "))
        .expect("the README's container quick start has a `docker run` line");
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "-e")
        .map(|w| {
            let (k, v) = w[1].split_once('=').expect("-e NAME=VALUE");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The run state shared by the blocks of every page.
struct Session {
    otpd: OtpdProcess,
    admin: String,
    key: String,
    key_id: String,
    last_id: Option<String>,
    work: tempfile::TempDir,
    blocks_run: usize,
}

impl Session {
    /// The newest console message's code, waiting for one.
    async fn console_code(&self) -> String {
        let deadline = Instant::now() + OUTPUT_TIMEOUT;
        loop {
            let code = self
                .otpd
                .output()
                .iter()
                .rev()
                .find(|l| l.contains("[otpd console]"))
                .and_then(|l| extract_code(l));
            if let Some(code) = code {
                return code;
            }
            assert!(
                Instant::now() < deadline,
                "no console message within {OUTPUT_TIMEOUT:?}; output:\n{}",
                self.otpd.output().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn substitute(&self, place: &str, text: &str, subs: &[(Source, String)]) -> String {
        let mut text = text.to_owned();
        for (source, literal) in subs {
            assert!(
                text.contains(literal.as_str()),
                "{place}: no {literal:?} to replace"
            );
            let value = match source {
                Source::Code => self.console_code().await,
                Source::KeyId => self.key_id.clone(),
                Source::Id => self
                    .last_id
                    .clone()
                    .unwrap_or_else(|| panic!("{place}: no earlier answer had an id")),
            };
            text = text.replace(literal.as_str(), &value);
        }
        text
    }

    /// Runs one `test: run` block and checks every `curl` answer.
    async fn run(&mut self, block: &Block, subs: &[(Source, String)]) {
        let place = &block.place;
        let address = self
            .otpd
            .base_url()
            .trim_start_matches("http://")
            .to_owned();
        let body = self
            .substitute(place, &block.body, subs)
            .await
            .replace(EXAMPLE_ADDRESS, &address);
        self.blocks_run += 1;
        let log = self.work.path().join(format!("log{}", self.blocks_run));
        std::fs::create_dir_all(&log).unwrap();
        let script = log.join("block.sh");
        std::fs::write(&script, format!("{PRELUDE}{body}")).unwrap();
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_otpd")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = tokio::process::Command::new("bash");
        command
            .arg(&script)
            .current_dir(self.work.path())
            .env("PATH", path)
            .env("ADMIN", &self.admin)
            .env("KEY", &self.key)
            .env("OTPD_DOCS_LOG", &log)
            .env("NO_PROXY", "*");
        let out = tokio::time::timeout(BLOCK_TIMEOUT, command.output())
            .await
            .unwrap_or_else(|_| panic!("{place}: still running after {BLOCK_TIMEOUT:?}"))
            .expect("run bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{place}: the example failed ({}):\n{body}\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        let commands = curl_commands(&body);
        let ran = (1..)
            .take_while(|n| log.join(format!("{n}.status")).exists())
            .count();
        assert_eq!(
            ran,
            commands.len(),
            "{place}: {} curl commands written, {ran} ran",
            commands.len()
        );
        for (n, (command, expected)) in commands.iter().enumerate() {
            let status: u16 = std::fs::read_to_string(log.join(format!("{}.status", n + 1)))
                .unwrap()
                .parse()
                .unwrap();
            let answer = std::fs::read(log.join(format!("{}.body", n + 1))).unwrap_or_default();
            let answer_text = String::from_utf8_lossy(&answer);
            let ok_status = match expected.status {
                Some(s) => status == s,
                None => (200..300).contains(&status),
            };
            assert!(
                ok_status,
                "{place}: `{command}` answered {status} (expected {}):\n{answer_text}",
                expected.status.map_or("2xx".to_owned(), |s| s.to_string())
            );
            let json: Option<Value> = serde_json::from_slice(&answer).ok();
            if let Some(id) = json.as_ref().and_then(|j| j["id"].as_str()) {
                self.last_id = Some(id.to_owned());
            }
            for (field, expect) in &expected.fields {
                assert!(
                    json.as_ref().is_some_and(|j| holds(j, field, expect)),
                    "{place}: `{command}`: the answer has no \"{field}\" {expect:?}:\n{answer_text}"
                );
            }
        }
    }

    /// Checks that each line of a `test: output` block was printed by the server.
    async fn output(&self, block: &Block, subs: &[(Source, String)]) {
        let body = self.substitute(&block.place, &block.body, subs).await;
        for expected in body.lines().filter(|l| !l.trim().is_empty()) {
            let deadline = Instant::now() + OUTPUT_TIMEOUT;
            loop {
                let printed = self.otpd.output().iter().any(|l| {
                    let line = l
                        .strip_prefix("stdout| ")
                        .or_else(|| l.strip_prefix("stderr| "))
                        .unwrap_or(l);
                    glob(expected, line)
                });
                if printed {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: otpd never printed\n{expected}\noutput:\n{}",
                    block.place,
                    self.otpd.output().join("\n")
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn runnable_shell_examples_work_against_the_binary() {
    let pages = pages();
    let env = container_env(&pages[0].1);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dir = TestDir::new();
    let otpd = OtpdProcess::start_without_config_file(&dir, &env).await;
    let reply = otpd.create_key_reply("docs", "verify", false).await;
    let mut session = Session {
        admin: otpd.master_key().to_owned(),
        key: reply.str("key").to_owned(),
        key_id: reply.id(),
        otpd,
        last_id: None,
        work: tempfile::tempdir().unwrap(),
        blocks_run: 0,
    };
    for (page, text) in &pages {
        for block in blocks(page, text).unwrap() {
            match &block.marker {
                Some(Marker::Run(subs)) if is_shell(&block.lang) => {
                    session.run(&block, subs).await;
                }
                Some(Marker::Output(subs)) => session.output(&block, subs).await,
                Some(Marker::Run(_)) => panic!("{}: only shell blocks run", block.place),
                _ => {}
            }
        }
    }
    assert!(
        session.blocks_run >= 5,
        "only {} runnable blocks",
        session.blocks_run
    );
}

// ---------------------------------------------------------------------------------------
// Links and the README's commands

/// GitHub's anchor of a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (outside code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut fence = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
        } else if !fence && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of a page's markdown links (outside code blocks).
fn links(text: &str) -> Vec<String> {
    let mut fence = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let tail = &rest[at + 2..];
            let end = tail.find(')').unwrap_or(tail.len());
            out.push(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    out
}

#[test]
fn links_between_the_pages_lead_somewhere() {
    let mut broken = Vec::new();
    for (page, text) in pages() {
        let base = repo().join(&page);
        let base = base.parent().unwrap();
        for target in links(&text) {
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                repo().join(&page)
            } else {
                base.join(file)
            };
            if !path.exists() {
                broken.push(format!("{page}: {target}: no such file"));
                continue;
            }
            if !anchor.is_empty() {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if !anchors(&text).iter().any(|a| a == anchor) {
                    broken.push(format!("{page}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert_eq!(
        slug(" Audit trail, retention and the dashboard"),
        "audit-trail-retention-and-the-dashboard"
    );
    assert_eq!(
        slug(" The generic `http` provider"),
        "the-generic-http-provider"
    );
}

#[test]
fn the_readme_commands_are_the_ones_ci_and_the_dockerfile_use() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let command = |prefix: &str| -> String {
        let line = readme
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("the README has no `{prefix}…` line"));
        line.split('#').next().unwrap().trim().to_owned()
    };
    // The test command, on the README's first screen, is what CI runs.
    let test = command("cargo test ");
    assert_eq!(test, "cargo test --workspace --locked");
    assert!(
        ci.lines().any(|l| l.trim_start().starts_with(&test)),
        ".ci/run does not run `{test}`"
    );
    // The container quick start builds as the Dockerfile says, runs what it built, and
    // keeps its data where the image keeps it.
    let build = command("docker build ");
    assert!(
        dockerfile.contains(&build),
        "deploy/Dockerfile does not say `{build}`"
    );
    let tag = build
        .split_whitespace()
        .skip_while(|w| *w != "-t")
        .nth(1)
        .unwrap();
    let run = command("docker run ");
    assert_eq!(
        run.split_whitespace().last(),
        Some(tag),
        "`{run}` runs another image"
    );
    let volume = run
        .split_whitespace()
        .skip_while(|w| *w != "-v")
        .nth(1)
        .unwrap();
    let (_, target) = volume.split_once(':').unwrap();
    assert!(
        dockerfile.contains(&format!("WORKDIR {target}")),
        "the volume {target} is not the image's WORKDIR"
    );
    assert!(dockerfile.contains(r#"CMD ["serve"]"#));
}
