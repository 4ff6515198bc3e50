//! Shared harness for otpd's end-to-end tests.
//!
//! Every test runs the real `otpd` binary as a child process against its own temporary
//! directory (config file, SQLite database, current directory), and talks to it over HTTP
//! exactly as an integrator would, following the public contract in `API.md`.
//!
//! The pieces:
//!
//! - [`TestDir`]: a temporary directory plus a random master key. It outlives the server
//!   processes started in it, so a test can kill a server and start another one on the same
//!   database with the same key.
//! - [`Sink`]: a small axum server inside the test process that plays the SMS gateway for
//!   otpd's generic `http` provider. It records every POST it receives together with the
//!   status it answered, and can be switched to answer 500 for a while.
//! - [`Config`]: the TOML configuration the harness writes (one `http` provider pointing at
//!   the sink, plus a tunable `[delivery]` section).
//! - [`OtpdProcess`]: a running `otpd serve`; it collects all of the child's output, parses
//!   the base URL from the ready line, and offers HTTP helpers returning a [`Reply`].
//!
//! Delivery is asynchronous (an outbox worker), so tests always poll the sink with
//! [`Sink::wait_for`] and friends, never assume a message has already arrived.
//!
//! One file per concern: `util` (codes, hex, byte search), `dir` ([`TestDir`]), `config`
//! ([`Config`]), `sink` ([`Sink`]), `reply` ([`Reply`]), `process` ([`OtpdProcess`]),
//! `convenience` (`start_with_sink`), `peers` (Python peers), `stores` (PostgreSQL and
//! Redis for the many-node tests), `browser` (chromium and playwright-core).

// Each test file compiles this module separately and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod browser;
mod config;
mod convenience;
mod dir;
mod peers;
mod process;
mod reply;
mod sink;
pub mod stores;
mod util;

pub use config::*;
pub use convenience::*;
pub use dir::*;
pub use peers::*;
pub use process::*;
pub use reply::*;
pub use sink::*;
pub use util::*;

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
pub use reqwest::Method;
use serde_json::{Value, json};

/// How long a server may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Default time to wait for a message to reach the sink.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of every HTTP request the harness makes to otpd.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval at which the harness polls (sink records, process output, process exit).
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The marker otpd prints on stdout once it accepts connections.
pub const READY_MARKER: &str = "otpd listening on ";
