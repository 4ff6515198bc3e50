//! Redis for a test: a reachability check of the server named by `OTPD_TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`), a random key prefix per test, and a teardown that
//! deletes the keys under it. Talks to Redis with the `redis` crate (the URL's password
//! and database number are honoured by its client).

use std::time::Duration;

use redis::aio::MultiplexedConnection;

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
    let reply: String = command(&url, &["PING"]).await?;
    if reply != "PONG" {
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
            .command::<i64>(&["EVAL", DELETE_MATCHING, "0", &pattern])
            .await
        {
            eprintln!("could not delete the test's Redis keys: {e}");
        }
    }

    /// Sends one command to the test's server and converts its reply.
    pub async fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> Result<T, String> {
        command(&self.url, args).await
    }
}

/// A connection to `url` (authenticated and on the URL's database), within [`TIMEOUT`].
async fn connect(url: &str) -> Result<MultiplexedConnection, String> {
    // The client's parse error does not repeat the URL (which may hold a password).
    let client = redis::Client::open(url).map_err(|e| format!("bad test URL: {e}"))?;
    tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
        .map_err(|e| e.to_string())
}

/// Sends one command (`args[0]` with the rest as arguments) and converts its reply; a
/// refusal by Redis is an error.
async fn command<T: redis::FromRedisValue>(url: &str, args: &[&str]) -> Result<T, String> {
    let (name, rest) = args.split_first().ok_or("no command")?;
    let mut conn = connect(url).await?;
    let mut cmd = redis::cmd(name);
    for a in rest {
        cmd.arg(*a);
    }
    tokio::time::timeout(TIMEOUT, cmd.query_async::<T>(&mut conn))
        .await
        .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
        .map_err(|e| format!("Redis refused: {e}"))
}
