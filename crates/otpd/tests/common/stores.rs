//! PostgreSQL and Redis for the many-node tests, as real servers:
//!
//! - [`SharedPostgres`]: a fresh database on the machine's PostgreSQL
//!   (`OTPD_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`), dropped
//!   when the test ends;
//! - [`SharedRedis`]: one logical database of the machine's Redis
//!   (`OTPD_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`), emptied first; each test
//!   names its own database number so tests running at once never meet;
//! - [`PrivatePostgres`] and [`PrivateRedis`]: servers of the test's own, on free ports, that
//!   it may stop and start again (the shared ones are never stopped).
//!
//! They are driven with the servers' own command-line tools (`psql`, `redis-cli`,
//! `initdb`, `pg_ctl`, `redis-server`). When a server or its tools are missing the test is
//! skipped with a message saying so — unless `OTPD_REQUIRE_STORES=1` (set by `.ci/run`),
//! which turns that into a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TestDir, free_port, random_hex};

/// Set to `1` to make a missing server a failure instead of a skip.
pub const REQUIRE_ENV: &str = "OTPD_REQUIRE_STORES";

/// Whether missing servers fail the test.
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// Says why a test cannot run: a failure when stores are required, else a skip message.
pub fn unavailable<T>(why: &str) -> Option<T> {
    assert!(
        !required(),
        "{why} ({REQUIRE_ENV}=1 makes PostgreSQL and Redis required)"
    );
    eprintln!("skipped: {why}");
    None
}

/// Runs a command; its stdout when it exits 0.
fn run(command: &mut Command) -> Option<String> {
    let out = command.stdin(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs SQL with `psql` against `url`.
pub fn psql(url: &str, sql: &str) -> Option<String> {
    run(Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .env("PGCONNECT_TIMEOUT", "3"))
}

/// A fresh database on the machine's PostgreSQL, dropped on drop.
pub struct SharedPostgres {
    admin_url: String,
    name: String,
    /// Its URL, for `OTPD_DATABASE_URL`.
    pub url: String,
}

impl SharedPostgres {
    /// Creates the database; `None` (a skip) when PostgreSQL cannot be reached.
    pub fn create() -> Option<Self> {
        let admin_url = std::env::var("OTPD_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        if psql(&admin_url, "SELECT 1").is_none() {
            return unavailable(&format!(
                "PostgreSQL is not reachable at {admin_url} with psql (set OTPD_TEST_POSTGRES_URL)"
            ));
        }
        let name = format!("otpd_e2e_{}", random_hex(6));
        psql(&admin_url, &format!("CREATE DATABASE {name}")).expect("CREATE DATABASE");
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .expect("a database URL with a path");
        let url = format!("{base}/{name}");
        Some(SharedPostgres {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for SharedPostgres {
    fn drop(&mut self) {
        psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// One logical database of the machine's Redis, emptied before use.
pub struct SharedRedis {
    /// Its URL, for `OTPD_REDIS_URL`.
    pub url: String,
}

impl SharedRedis {
    /// Database `db` (each test its own number, 1–15), flushed; `None` (a skip) when Redis
    /// cannot be reached.
    pub fn database(db: u8) -> Option<Self> {
        let base = std::env::var("OTPD_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let base = base.trim_end_matches('/').to_string();
        let url = format!("{base}/{db}");
        if run(Command::new("redis-cli").args(["-u", &url, "FLUSHDB"])).as_deref() != Some("OK") {
            return unavailable(&format!(
                "Redis is not reachable at {base} with redis-cli (set OTPD_TEST_REDIS_URL)"
            ));
        }
        Some(SharedRedis { url })
    }
}

/// How long a private server may take to start answering.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `ready` until it holds or the start timeout passes.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + SERVER_START_TIMEOUT;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Redis server of the test's own, with an append-only file that keeps every
/// acknowledged write (`appendfsync always`), so a restart loses nothing.
pub struct PrivateRedis {
    port: u16,
    dir: TestDir,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts it; `None` (a skip) without `redis-server`.
    pub fn start() -> Option<Self> {
        if run(Command::new("redis-server").arg("--version")).is_none() {
            return unavailable("redis-server is not installed");
        }
        let mut redis = PrivateRedis {
            port: free_port(),
            dir: TestDir::new(),
            child: None,
        };
        redis.resume();
        Some(redis)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Whether it answers.
    pub fn answers(&self) -> bool {
        run(Command::new("redis-cli").args(["-p", &self.port.to_string(), "PING"])).as_deref()
            == Some("PONG")
    }

    /// Starts it again (on the same port, with the same data).
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        wait_until("redis-server", || self.answers());
    }

    /// Stops it (SIGKILL: as abrupt as a crash or a cut network).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL cluster of the test's own (initdb into a temporary directory).
pub struct PrivatePostgres {
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    _dir: TestDir,
    running: bool,
}

/// The newest PostgreSQL server binaries installed (Debian keeps them off the PATH).
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

/// A command run as the `postgres` user when the test runs as root (PostgreSQL refuses
/// root).
fn as_postgres(program: &Path) -> Command {
    if run(Command::new("id").arg("-u")).as_deref() == Some("0") {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl PrivatePostgres {
    /// Creates and starts it; `None` (a skip) without PostgreSQL's server binaries.
    pub fn start() -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            return unavailable(
                "PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed",
            );
        };
        let dir = TestDir::new();
        let data = dir.path().join("pgdata");
        std::fs::create_dir(&data).expect("create the data directory");
        if run(Command::new("id").arg("-u")).as_deref() == Some("0") {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()))
            .expect("chown the data directory to postgres");
        }
        run(as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data))
        .expect("initdb");
        let mut pg = PrivatePostgres {
            port: free_port(),
            bin,
            data,
            _dir: dir,
            running: false,
        };
        pg.resume();
        Some(pg)
    }

    /// Its URL (the `postgres` database).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts it again, on the same port with the same data.
    pub fn resume(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        run(as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &options, "-l"])
            .arg(self.data.join("server.log"))
            .args(["-w", "start"]))
        .expect("pg_ctl start");
        self.running = true;
        let url = self.url();
        wait_until("postgres", || psql(&url, "SELECT 1").is_some());
    }

    /// Stops it at once (`-m immediate`: no checkpoint, connections cut, like a crash).
    pub fn stop(&mut self) {
        if self.running {
            run(as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"]));
            self.running = false;
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
    }
}
