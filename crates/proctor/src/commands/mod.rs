//! One file per subcommand; each returns the process exit code.

mod bench;
mod challenge;
mod doctor;
mod exec;
mod gym;
mod review;
mod runtime;
mod serve;
mod user;

use std::process::ExitCode;

use anyhow::Result;
use proctor_engine::{EngineConfig, LocalBackend};

use crate::cli::{Cli, Command, GymCommand, RuntimeCommand};

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Exec(args) => exec::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Runtime {
            command: RuntimeCommand::Ensure(args),
        } => runtime::ensure(args),
        Command::Serve(args) => serve::run(args),
        Command::Gym {
            command: GymCommand::Tasks(args),
        } => gym::tasks(args),
        Command::Gym {
            command: GymCommand::Grade(args),
        } => gym::grade(args),
        Command::Gym {
            command: GymCommand::Serve(args),
        } => gym::serve(args),
        Command::Mcp(args) => gym::mcp_stdio(args),
        Command::Review(args) => review::run(*args),
        Command::Challenge { command } => challenge::run(command),
        Command::User { command } => user::run(command),
    }
}

/// A multi-threaded tokio runtime for commands that run jobs.
fn tokio() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Provisions the runtime (implicitly, with progress) and starts the local backend.
async fn backend(no_sandbox: bool) -> Result<LocalBackend> {
    let config = tokio::task::spawn_blocking(move || EngineConfig::detect(no_sandbox)).await??;
    Ok(LocalBackend::start(config).await?)
}

/// Prints `value` as the one JSON object on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
