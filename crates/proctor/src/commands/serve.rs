//! `proctor serve`: provision the runtime, warm the pool, serve the platform over HTTP.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::ServeArgs;

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    super::tokio()?.block_on(async {
        let backend = super::backend(args.sandbox.no_sandbox).await?;
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| {
                format!("cannot listen on {addr}: is another server using the port? pass --port")
            })?;
        eprintln!("proctor serving on http://{addr}");
        proctor_server::serve(listener, backend, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}
