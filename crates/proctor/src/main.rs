//! `proctor`: judge ML code written by agents — run it safely, fast, and grade it by what it does.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The sandbox helper must stay single-threaded: dispatch before clap, logging or tokio.
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some(proctor_sandbox::HELPER_SUBCOMMAND) {
        proctor_sandbox::helper_main(&args.next().unwrap_or_default());
    }
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PROCTOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let json = cli.json();
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            if json {
                println!("{}", serde_json::json!({ "error": format!("{err:#}") }));
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(2)
        }
    }
}
