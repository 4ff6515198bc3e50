//! Test directory (part of the end-to-end harness; see the module docs of `common`).

use super::*;

/// A temporary directory holding one otpd installation (config, database) and the master
/// key its servers run with. Create it first and keep it alive for the whole test: servers
/// started with [`OtpdProcess::start`] borrow it only while starting.
pub struct TestDir {
    dir: tempfile::TempDir,
    master_key: String,
}

impl TestDir {
    /// Creates a fresh directory and a random master key `otpd_live_<32 hex>`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("otpd-e2e-")
            .tempdir()
            .expect("create a temporary directory");
        Self {
            dir,
            master_key: format!("otpd_live_{}", random_hex(16)),
        }
    }

    /// The directory itself (also the servers' current directory).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the harness writes `otpd.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.path().join("otpd.toml")
    }

    /// The SQLite database file.
    pub fn db_path(&self) -> PathBuf {
        self.path().join("otpd.db")
    }

    /// The `OTPD_DATABASE_URL` the servers get.
    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self.db_path().display())
    }

    /// The admin key passed as `OTPD_MASTER_KEY`.
    pub fn master_key(&self) -> &str {
        &self.master_key
    }

    /// The raw bytes of every SQLite file of the database that exists: `otpd.db` and its
    /// `-wal`, `-shm` and `-journal` companions.
    pub fn database_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        ["", "-wal", "-shm", "-journal"]
            .iter()
            .map(|suffix| self.path().join(format!("otpd.db{suffix}")))
            .filter(|path| path.exists())
            .map(|path| {
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                (path, bytes)
            })
            .collect()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}
