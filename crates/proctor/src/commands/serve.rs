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
        let mut config = proctor_challenge::PlatformConfig::new(backend.config().home.clone());
        if let Some(db) = &args.database {
            config.database = db.clone();
        }
        // A database URL (Postgres, or an SQLite URL) takes precedence over the path.
        if let Some(url) = &args.database_url {
            config.database_url = Some(url.clone());
        }
        config.secure_cookies = args.behind_tls;
        let platform = proctor_challenge::Platform::open(backend.clone(), config).await?;
        platform.start_workers(args.workers);
        let access = proctor_gym::episode::Access {
            accounts: Some(platform.accounts().clone()),
            require_token: args.require_token,
        };
        let state = proctor_server::AppState::new(backend).with_access(access);
        let app = proctor_server::router(state).merge(proctor_challenge::web::router(platform));
        eprintln!("proctor serving on http://{addr}");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        proctor_server::serve_with_limits(listener, app, shutdown, args.proxies.limits()).await?;
        Ok(ExitCode::SUCCESS)
    })
}
