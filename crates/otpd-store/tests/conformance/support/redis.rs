//! Redis for a test: a reachability check of the server named by `OTPD_TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`), a random key prefix per test, and a teardown that
//! deletes the keys under it. Speaks just enough RESP over TCP to need no client crate.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The server the tests use, unless `OTPD_TEST_REDIS_URL` says.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// How long to wait for the server before calling it unreachable.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Deletes every key matching `ARGV[1]`, returning how many (SCAN-free: test data is small).
const DELETE_MATCHING: &str = "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do n = n + redis.call('DEL', k) end return n";

/// The Redis server a test uses, with the key prefix that is the test's own.
#[derive(Clone, Debug)]
pub struct TestRedis {
    /// The server URL (hand it to the Redis store).
    pub url: String,
    /// The test's own key prefix (`otpd_t_<random>:`).
    pub prefix: String,
}

/// The server URL: `OTPD_TEST_REDIS_URL` or [`DEFAULT_URL`].
fn url() -> String {
    std::env::var("OTPD_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.into())
}

/// Checks that Redis answers `PING` and picks a fresh key prefix. The error says why the
/// server could not be used (without the URL, which may hold a password).
pub async fn fresh_prefix() -> Result<TestRedis, String> {
    let url = url();
    let reply = command(&url, &["PING"]).await?;
    if reply != "+PONG" {
        return Err(format!("PING answered {reply:?}"));
    }
    Ok(TestRedis {
        url,
        prefix: format!("otpd_t_{}:", super::unique()),
    })
}

impl TestRedis {
    /// Deletes the keys under the test's prefix (hash-tagged keys included: the prefix
    /// may be followed by anything).
    pub async fn delete_keys(self) {
        let pattern = format!("*{}*", self.prefix);
        if let Err(e) = self
            .command(&["EVAL", DELETE_MATCHING, "0", &pattern])
            .await
        {
            eprintln!("could not delete the test's Redis keys: {e}");
        }
    }

    /// Sends one command to the test's server; the first line of the reply.
    pub async fn command(&self, args: &[&str]) -> Result<String, String> {
        command(&self.url, args).await
    }
}

/// Sends one command (after `AUTH`/`SELECT` as the URL says) and returns the first line
/// of the reply.
async fn command(url: &str, args: &[&str]) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("bad test URL: {e}"))?;
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_string();
    let port = parsed.port().unwrap_or(6379);
    let io = async {
        let stream = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        let mut stream = BufReader::new(stream);
        let encode = |args: Vec<String>| {
            let mut out = format!("*{}\r\n", args.len());
            for a in &args {
                out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
            out
        };
        let mut script = String::new();
        let mut replies = 0;
        if let Some(password) = parsed.password() {
            let user = parsed.username();
            script.push_str(&encode(if user.is_empty() {
                vec!["AUTH".into(), password.into()]
            } else {
                vec!["AUTH".into(), user.into(), password.into()]
            }));
            replies += 1;
        }
        let db = parsed.path().trim_start_matches('/');
        if !db.is_empty() {
            script.push_str(&encode(vec!["SELECT".into(), db.into()]));
            replies += 1;
        }
        script.push_str(&encode(args.iter().map(|a| a.to_string()).collect()));
        stream
            .get_mut()
            .write_all(script.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        for _ in 0..=replies {
            line.clear();
            stream
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?;
            if line.starts_with('-') {
                return Err(format!("Redis refused: {}", line.trim_end()));
            }
        }
        Ok(line.trim_end().to_string())
    };
    tokio::time::timeout(TIMEOUT, io)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {TIMEOUT:?}")))
}
