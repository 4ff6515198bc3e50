//! The `otpd` binary: parses the command line, loads configuration, installs logging, and
//! runs the chosen command. All behaviour lives in the library crates.

mod cli;
mod commands;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let status = match e.downcast_ref::<commands::Failure>() {
                Some(f) => f.status,
                None => 1,
            };
            if !e.to_string().is_empty() {
                eprintln!("otpd: {e:#}");
            }
            std::process::ExitCode::from(status)
        }
    }
}
