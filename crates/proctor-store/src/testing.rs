//! Test support: a Postgres database for the tests of the store and of the front doors.
//!
//! `PROCTOR_TEST_POSTGRES_URL` names a server (`.ci/run` installs Postgres, starts it and
//! exports the variable). Without it, a machine that has Postgres installed
//! (`/usr/lib/postgresql/*/bin/initdb`) gets a throwaway cluster started for the test and
//! stopped after it; a machine without either fails the test with a message saying so,
//! rather than passing silently. Every [`TestPostgres`] is a fresh schema, so tests run in
//! parallel on one server without seeing each other's rows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

/// The variable that names the test server.
pub const ENV: &str = "PROCTOR_TEST_POSTGRES_URL";

/// A fresh schema on a Postgres server (and the server itself when the test started it).
pub struct TestPostgres {
    /// Connection URL whose `search_path` is the fresh schema.
    pub url: String,
    cluster: Option<Cluster>,
}

struct Cluster {
    dir: PathBuf,
    as_postgres: bool,
}

fn run(as_postgres: bool, program: &Path, args: &[&str]) -> std::io::Result<std::process::Output> {
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).output()
}

fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(bin) = pg_bin() {
            let data = self.dir.join("data");
            let _ = run(
                self.as_postgres,
                &bin.join("pg_ctl"),
                &[
                    "stop",
                    "-m",
                    "immediate",
                    "-w",
                    "-D",
                    &data.to_string_lossy(),
                ],
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_cluster(bin: &Path) -> (String, Cluster) {
    static N: AtomicU32 = AtomicU32::new(0);
    let as_postgres = nix_is_root();
    let dir = std::env::temp_dir().join(format!(
        "proctor-test-pg-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cluster = Cluster {
        dir: dir.clone(),
        as_postgres,
    };
    if as_postgres {
        // initdb refuses to run as root: the cluster belongs to the postgres user.
        let ok = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot chown {dir:?} to the postgres user");
    }
    let data = dir.join("data");
    let out = run(
        as_postgres,
        &bin.join("initdb"),
        &[
            "-D",
            &data.to_string_lossy(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
    )
    .expect("runs initdb");
    assert!(out.status.success(), "initdb failed: {out:?}");
    let port = free_port();
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
        dir.display()
    );
    let out = run(
        as_postgres,
        &bin.join("pg_ctl"),
        &[
            "start",
            "-w",
            "-D",
            &data.to_string_lossy(),
            "-l",
            &dir.join("log").to_string_lossy(),
            "-o",
            &opts,
        ],
    )
    .expect("runs pg_ctl");
    assert!(
        out.status.success(),
        "pg_ctl start failed: {out:?}\n{}",
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
    (
        format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        cluster,
    )
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl TestPostgres {
    /// A fresh schema on the test server; panics (failing the test) when there is none.
    pub async fn new() -> TestPostgres {
        let (base, cluster) = match std::env::var(ENV) {
            Ok(url) if !url.is_empty() => (url, None),
            _ => match pg_bin() {
                Some(bin) => {
                    let (url, c) = start_cluster(&bin);
                    (url, Some(c))
                }
                None => panic!(
                    "{ENV} is not set and Postgres is not installed: the Postgres tests need a \
                     server. `.ci/run` installs and starts one and exports {ENV}; or set it to \
                     postgres://USER:PASSWORD@127.0.0.1:5432/DB yourself"
                ),
            },
        };
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let schema = format!(
            "proctor_test_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", crate::redact_url(&base)));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("creates the test schema");
        let _ = conn.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        TestPostgres {
            url: format!("{base}{sep}options[search_path]={schema}"),
            cluster,
        }
    }

    /// Whether the server was started for this test (no `PROCTOR_TEST_POSTGRES_URL`).
    pub fn started_here(&self) -> bool {
        self.cluster.is_some()
    }
}
