//! The command line: `serve` (default), `keys`, `migrate`, `config check`, and `send` /
//! `check` for a quick try against a running server.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// otpd: self-hosted OTP verification.
#[derive(Parser, Debug)]
#[command(name = "otpd", version, about)]
pub struct Cli {
    /// TOML configuration file (every key can be overridden by OTPD_<SECTION>__<KEY>).
    #[arg(long, global = true, env = "OTPD_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve,
    /// Manage API keys directly in the database.
    Keys {
        /// Action.
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Configuration tools.
    Config {
        /// Action.
        #[command(subcommand)]
        action: ConfigCommand,
    },
    /// Send a code through a running server.
    Send {
        /// Phone number or email address.
        #[arg(long)]
        to: String,
        /// Channel (sms, voice, whatsapp, email, ussd).
        #[arg(long)]
        channel: Option<String>,
        /// Service name.
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check a code through a running server.
    Check {
        /// Phone number or email address.
        #[arg(long)]
        to: String,
        /// The code received.
        #[arg(long)]
        code: String,
        /// Service name.
        #[arg(long)]
        service: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// How `send` and `check` reach the server.
#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    /// Server base URL (default: http://<listen> from the configuration).
    #[arg(long, env = "OTPD_URL")]
    pub url: Option<String>,
    /// API key (default: OTPD_API_KEY, then the configured master key).
    #[arg(long, env = "OTPD_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

/// `keys` actions.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key and print it once.
    Create {
        /// Label.
        #[arg(long)]
        name: String,
        /// Role.
        #[arg(long, value_enum, default_value_t = RoleArg::Verify)]
        role: RoleArg,
        /// A test key (messages are recorded, never delivered).
        #[arg(long)]
        test: bool,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// Key id (`key_…`).
        id: String,
    },
}

/// `config` actions.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the configuration; exits non-zero with the reason when it is wrong.
    Check {
        /// Take the OTPD_* variables from this environment file (KEY=VALUE lines, as a
        /// systemd EnvironmentFile= or a compose env_file: gives them) instead of the
        /// process environment; repeatable, later files win.
        #[arg(long = "env-file", value_name = "FILE")]
        env_files: Vec<PathBuf>,
    },
}

/// Key roles on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum RoleArg {
    /// Everything.
    Admin,
    /// Send and check.
    Verify,
}
