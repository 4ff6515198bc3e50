//! The command line: `serve` (default), `keys`, `migrate`, `config check`, and `send` /
//! `check` for a quick try against a running server.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit status of `otpd check` when the code was wrong (attempts remain).
pub const EXIT_WRONG_CODE: u8 = 3;
/// Exit status of `otpd check` when the verification expired.
pub const EXIT_EXPIRED: u8 = 4;
/// Exit status of `otpd check` when nothing is pending for that number or id.
pub const EXIT_NOT_FOUND: u8 = 5;
/// Exit status of `otpd check` when the last attempt was used (a new code is needed).
pub const EXIT_NO_ATTEMPTS_LEFT: u8 = 6;
/// Exit status of `send` and `check` when the server cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 7;

/// otpd: self-hosted OTP verification.
#[derive(Parser, Debug)]
#[command(
    name = "otpd",
    version,
    about = "otpd: send one-time codes by SMS, voice, WhatsApp, email or USSD and check them.",
    after_help = "Start with `otpd serve` (the default), then open the dashboard it prints. \
                  Every setting can come from the file (--config) or from an OTPD_* variable."
)]
pub struct Cli {
    /// TOML configuration file; any key can also be set by OTPD_<KEY> or
    /// OTPD_<SECTION>__<KEY> (e.g. OTPD_DELIVERY__MAX_ATTEMPTS).
    #[arg(long, global = true, env = "OTPD_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Create, list and revoke API keys, working on the database directly (no server
    /// needed); also the way back in when the admin key is lost.
    Keys {
        /// What to do with keys.
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Prepare the database (create or upgrade its tables) and exit.
    Migrate,
    /// Check the configuration before you start the server.
    Config {
        /// What to check.
        #[command(subcommand)]
        action: ConfigCommand,
    },
    /// Send a code through a running server.
    #[command(
        after_help = "Prints one line (the verification id, where and how the code \
                            went); --json prints the server's whole reply."
    )]
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
    /// Check a code through a running server; the exit status says how it went.
    #[command(
        after_help = "Exit status: 0 approved, 3 wrong code (attempts remain), \
                            4 expired, 5 nothing pending for that number, 6 no attempts \
                            left, 7 server unreachable, 1 any other error."
    )]
    Check {
        /// Phone number or email address the code was sent to.
        #[arg(long, required_unless_present = "id", conflicts_with = "id")]
        to: Option<String>,
        /// Or the verification's id (`ver_…`), as `send` printed it.
        #[arg(long)]
        id: Option<String>,
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
    /// Server base URL (default: public_url, else http://<listen> from the configuration).
    #[arg(long, env = "OTPD_URL")]
    pub url: Option<String>,
    /// API key (default: the configured master key).
    #[arg(long, env = "OTPD_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Print the server's whole JSON reply instead of one line.
    #[arg(long)]
    pub json: bool,
}

/// `keys` actions.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key and print it once (`--role admin` mints a new admin key, e.g. when
    /// the first one was lost).
    Create {
        /// A label to recognise the key by (shown by `keys list` and the dashboard).
        #[arg(long)]
        name: String,
        /// What the key may do.
        #[arg(long, value_enum, default_value_t = RoleArg::Verify)]
        role: RoleArg,
        /// A test key: its messages are recorded for you to read, never delivered.
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
    /// Load the configuration and report every mistake in it (with file, line and column,
    /// or the variable); exits non-zero when there is one.
    Check {
        /// Take the OTPD_* variables from this environment file (KEY=VALUE lines, as a
        /// systemd EnvironmentFile= or a compose env_file: gives them) instead of the
        /// process environment; repeatable, later files win.
        #[arg(long = "env-file", value_name = "FILE")]
        env_files: Vec<PathBuf>,
        /// Do not look for the files the configuration names (master_key_file,
        /// tls.cert_file, …): for a configuration meant for another machine or container.
        #[arg(long)]
        skip_files: bool,
    },
}

/// Key roles on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum RoleArg {
    /// Everything: services, keys, events and the dashboard, as well as sending and checking.
    Admin,
    /// Send codes and check them (what an application needs).
    Verify,
}
