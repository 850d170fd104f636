//! Command-line definitions (clap only; the work is in `commands/`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Run untrusted ML code safely and fast, and judge it by what it really does.
#[derive(Debug, Parser)]
#[command(name = "proctor", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Whether the command was asked for JSON output.
    pub fn json(&self) -> bool {
        match &self.command {
            Command::Exec(a) => a.json,
            Command::Bench(a) => a.json,
            Command::Doctor(a) => a.json,
            Command::Runtime {
                command: RuntimeCommand::Ensure(a),
            } => a.json,
            Command::Serve(_) | Command::Mcp(_) => false,
            Command::Review(a) => match &a.command {
                Some(ReviewCommand::List(l)) => l.json,
                Some(ReviewCommand::Show(s)) => s.json,
                None => a.json,
            },
            Command::Challenge {
                command: ChallengeCommand::List(a),
            } => a.json,
            Command::Challenge {
                command: ChallengeCommand::Submit(a),
            } => a.json,
            Command::Gym {
                command: GymCommand::Tasks(a),
            } => a.json,
            Command::Gym {
                command: GymCommand::Grade(a),
            } => a.json,
            Command::Gym {
                command: GymCommand::Serve(_),
            } => false,
            Command::User {
                command: UserCommand::List { json, .. },
            } => *json,
            Command::User { .. } => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Python file in the sandbox (warm by default).
    Exec(ExecArgs),
    /// Measure cold vs warm runs, sessions, sandbox overhead and parallelism on this machine.
    Bench(BenchArgs),
    /// Report the kernel features, cgroups and runtime proctor found.
    Doctor(JsonArg),
    /// Manage the managed Python runtime.
    Runtime {
        #[command(subcommand)]
        command: RuntimeCommand,
    },
    /// Run the platform's HTTP server.
    Serve(ServeArgs),
    /// The debug gym: tasks, grading, the OpenEnv server.
    Gym {
        #[command(subcommand)]
        command: GymCommand,
    },
    /// The gym's MCP server over stdio (JSON-RPC 2.0, one message per line).
    Mcp(SandboxArg),
    /// Review derived experiment code: static analysis and sandboxed smoke runs of every variation.
    Review(Box<ReviewArgs>),
    /// Parameter-budget ML challenges: list them, submit a solution.
    Challenge {
        #[command(subcommand)]
        command: ChallengeCommand,
    },
    /// Accounts (operators): users, roles, passwords, API tokens.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Add {
        name: String,
        /// Make the user an admin (hides, disqualifies, rescores; sees every review).
        #[arg(long)]
        admin: bool,
        /// Read a web password from the first line of stdin (without it: tokens only).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Create an API token for a user and print it (the only time it is shown).
    Token {
        name: String,
        /// A label to recognise and revoke it by.
        #[arg(long, default_value = "default")]
        label: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// List users and their tokens (names and last use, never the secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Revoke a user's tokens labelled --label, or every token and session.
    Revoke {
        name: String,
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Set a user's web password, read from the first line of stdin.
    Password {
        name: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

/// The platform's database (accounts live with the submissions).
#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    /// The database file (default: $PROCTOR_HOME/challenge/proctor.db).
    #[arg(long)]
    pub database: Option<PathBuf>,
    /// A database URL instead of the file: postgres://USER:PASSWORD@HOST/DB (or sqlite://PATH).
    #[arg(long, env = "PROCTOR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ChallengeCommand {
    /// List the hosted challenges.
    List(ChallengeListArgs),
    /// Submit a zip project (or a bare solution.py) and evaluate it now.
    #[command(
        after_help = "Exit codes: 0 scored, 3 over_budget (more parameters than the limit), \
4 error (your solve() or model raised, or its output was malformed), 5 timeout, 6 oom (memory \
limit), 7 rejected (invalid upload or an artifact that cannot be counted), 2 proctor itself \
failed (bad arguments, no runtime)."
    )]
    Submit(ChallengeSubmitArgs),
}

#[derive(Debug, clap::Args)]
pub struct ChallengeListArgs {
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ChallengeSubmitArgs {
    /// Challenge id (see `proctor challenge list`).
    pub challenge: String,
    /// A .zip project with agentics.solution.json, or a bare solution.py.
    pub file: PathBuf,
    /// Evaluate on the official (secret) data instead of the public data.
    #[arg(long)]
    pub official: bool,
    /// Upload to a proctor server (e.g. http://host:8080) instead of evaluating on this
    /// machine: the submission is ranked on its leaderboard under the token's account.
    /// Without it the run is local and private (on no leaderboard).
    #[arg(long, env = "PROCTOR_SERVER")]
    pub server: Option<String>,
    /// The account's API token for --server (`proctor user token NAME` on the server).
    #[arg(long, env = "PROCTOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The local submissions database (default: $PROCTOR_HOME/challenge/proctor.db).
    #[arg(long)]
    pub database: Option<PathBuf>,
    /// A database URL instead of the file: postgres://USER:PASSWORD@HOST/DB (or sqlite://PATH).
    #[arg(long, env = "PROCTOR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sandbox: SandboxArg,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReviewArgs {
    #[command(subcommand)]
    pub command: Option<ReviewCommand>,
    /// The case as JSON (`new_method`, `experiment`, `base_code`, `experiment_code`).
    #[arg(long, conflicts_with_all = ["base", "derived", "zip"])]
    pub input: Option<PathBuf>,
    /// The case as a zip archive of `base/`, `derived/`, `variations.txt` (and optionally
    /// `method.md`), as `POST /api/review` takes it.
    #[arg(long, conflicts_with_all = ["base", "derived"])]
    pub zip: Option<PathBuf>,
    /// The base template's directory (src/, config/, pyproject.toml).
    #[arg(long, requires = "derived")]
    pub base: Option<PathBuf>,
    /// The derived experiment code's directory.
    #[arg(long, requires = "base")]
    pub derived: Option<PathBuf>,
    /// The run variations, comma-separated (with --base/--derived).
    #[arg(long)]
    pub variations: Option<String>,
    /// A file holding the method's text (with --base/--derived).
    #[arg(long)]
    pub method: Option<PathBuf>,
    /// Only the static pass: do not smoke-run the code (local reviews).
    #[arg(long, conflicts_with = "server")]
    pub static_only: bool,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Where the review is kept: a proctor server (reviewed there under the token's
    /// account), or this machine's database.
    #[command(flatten)]
    pub store: ReviewStoreArgs,
    #[command(flatten)]
    pub sandbox: SandboxArg,
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// List stored reviews, newest first: a server's (yours; an admin's: everyone's) with
    /// --server, else this machine's.
    List(ReviewListArgs),
    /// Show a stored review: verdict, issues, findings and smoke runs.
    Show(ReviewShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReviewListArgs {
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: ReviewStoreArgs,
}

#[derive(Debug, clap::Args)]
pub struct ReviewShowArgs {
    /// The review's id (from `proctor review list`, or printed by the review).
    pub id: String,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: ReviewStoreArgs,
}

/// Where reviews are kept.
#[derive(Debug, clap::Args)]
pub struct ReviewStoreArgs {
    /// A proctor server (e.g. http://host:8080): reviews are run and kept there, under the
    /// token's account. Without it, on this machine (kept in the local database).
    #[arg(long, env = "PROCTOR_SERVER")]
    pub server: Option<String>,
    /// The account's API token for --server (`proctor user token NAME` on the server).
    #[arg(long, env = "PROCTOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub db: DatabaseArgs,
}

#[derive(Debug, Subcommand)]
pub enum GymCommand {
    /// List the debug tasks.
    Tasks(JsonArg),
    /// Grade a fix of a task by what it does.
    Grade(GymGradeArgs),
    /// Serve the gym alone on the OpenEnv protocol, at the root.
    Serve(GymServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct GymGradeArgs {
    /// Task slug or WhipStudio id (task1…task6).
    #[arg(long)]
    pub task: String,
    /// The fixed script.
    #[arg(long)]
    pub file: PathBuf,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct GymServeArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Most episodes at once.
    #[arg(long, default_value_t = 32)]
    pub max_episodes: usize,
    /// Turn limit of an episode.
    #[arg(long, default_value_t = 10)]
    pub max_turns: u32,
    /// Serve only holders of an account's token (`proctor user token`): a private gym.
    #[arg(long)]
    pub require_token: bool,
    /// Seconds a WebSocket without an episode may send nothing before it is closed (pings
    /// do not count; one with an episode lives as long as its episode, 600 s idle).
    #[arg(long, default_value_t = 60)]
    pub ws_idle_timeout: u64,
    /// Gradings (`/grader`, `submit_fix`) running at once [default: the host's cores].
    #[arg(long)]
    pub max_gradings: Option<usize>,
    /// MiB the memory limits of the open episodes' sessions (2048 each) and the running
    /// gradings (a task1 grading: 10240) may add up to [default: the host's memory minus
    /// an eighth, at least 2 GiB].
    #[arg(long)]
    pub memory_budget_mb: Option<u64>,
    /// Gradings waiting for their turn; more get 503 with Retry-After [default: 4 per core, at least 8].
    #[arg(long)]
    pub grading_queue: Option<usize>,
    #[command(flatten)]
    pub proxies: ProxyArgs,
    /// Where the accounts are (the platform's database).
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub sandbox: SandboxArg,
}

/// Which reverse proxies may name the client.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// A reverse proxy (address or network, repeatable) whose `X-Forwarded-For` names the
    /// client, for login throttling and the per-client connection cap. Without it the
    /// header is ignored: any client can send one.
    #[arg(long = "trusted-proxy", value_name = "IP[/PREFIX]", value_parser = proctor_server::limits::parse_trusted_proxy)]
    pub trusted_proxies: Vec<proctor_server::limits::IpNet>,
}

impl ProxyArgs {
    /// The server's connection limits with these proxies trusted.
    pub fn limits(&self) -> proctor_server::ServerLimits {
        proctor_server::ServerLimits {
            trusted_proxies: self.trusted_proxies.clone(),
            ..proctor_server::ServerLimits::default()
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// Install the pinned runtime if it is missing (a no-op when present).
    Ensure(EnsureArgs),
}

#[derive(Debug, clap::Args)]
pub struct EnsureArgs {
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also install the research stack reviews use (datasets, timm, transformers,
    /// hydra-core, omegaconf; about 250 MB), so projects declaring it install from cache.
    #[arg(long)]
    pub research: bool,
}

#[derive(Debug, clap::Args)]
pub struct JsonArg {
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SandboxArg {
    /// UNSAFE: run without any confinement (for developing proctor only, never for untrusted code).
    #[arg(long)]
    pub no_sandbox: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The Python file to run.
    pub file: PathBuf,
    /// Arguments passed to the script.
    #[arg(last = true)]
    pub args: Vec<String>,
    /// Wall-clock limit in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub timeout_s: f64,
    /// Memory limit in MiB.
    #[arg(long, default_value_t = 4096)]
    pub memory_mb: u64,
    /// Maximum processes and threads.
    #[arg(long, default_value_t = 256)]
    pub max_pids: u64,
    /// Bytes kept of stdout and of stderr each.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_output_bytes: u64,
    /// Disk quota of the run's scratch directory in MiB (a tmpfs counted in its memory
    /// limit); a write past it fails with ENOSPC and the status is `disk_limit`.
    #[arg(long, default_value_t = proctor_core::Limits::default().disk_mb,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub disk_mb: u64,
    /// Run in a fresh interpreter instead of a fork of the warm zygote.
    #[arg(long)]
    pub cold: bool,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sandbox: SandboxArg,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Repetitions of each timed step (more is steadier, slower).
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Challenge submissions evaluated at once.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Serve the gym only to holders of an account's token (`proctor user token`).
    #[arg(long)]
    pub require_token: bool,
    /// The server is reached through a TLS proxy: session cookies are marked `Secure`.
    #[arg(long, env = "PROCTOR_BEHIND_TLS")]
    pub behind_tls: bool,
    #[command(flatten)]
    pub proxies: ProxyArgs,
    /// The challenge submissions database (default: $PROCTOR_HOME/challenge/proctor.db).
    #[arg(long)]
    pub database: Option<PathBuf>,
    /// A database URL instead of the file: postgres://USER:PASSWORD@HOST/DB (or sqlite://PATH).
    #[arg(long, env = "PROCTOR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub sandbox: SandboxArg,
}
