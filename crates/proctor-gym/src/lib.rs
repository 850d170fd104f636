/*!
The debug gym: an RL environment of broken PyTorch training scripts.

An agent acts on an [`episode::Episode`] with WhipStudio's tools (run a snippet,
inspect a tensor, probe training, read variables, diff, submit a fix) and earns a
continuous 0–1 reward from [`grade::grade`], which judges the fix by what it does —
optimizer steps vs backward calls, learning rates, NaNs, retained graphs, the model's
accuracy on held-out data — never by what it prints. [`server`] serves it on the
OpenEnv protocol.

```no_run
# async fn demo(backend: proctor_engine::LocalBackend) -> Result<(), proctor_gym::GymError> {
let task = proctor_gym::task::find("task1")?;
let report = proctor_gym::grade::grade(&backend, &task, task.file("fixed.py").unwrap()).await?;
assert!(report.score >= 0.85);
# Ok(()) }
```
*/
#![deny(missing_docs)]

pub mod admission;
pub mod episode;
pub mod grade;
pub mod heldout;
pub mod mcp;
pub mod score;
pub mod server;
pub mod stream;
pub mod task;
pub mod ui;

/// Errors of the gym; each says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum GymError {
    /// A task folder is malformed.
    #[error("bad task: {0}")]
    BadTask(String),
    /// No such task.
    #[error("unknown task {id:?}; known tasks: {known}")]
    UnknownTask {
        /// What was asked for.
        id: String,
        /// What exists.
        known: String,
    },
    /// The action is malformed (unknown type or field, oversize, missing field).
    #[error("invalid action: {0}")]
    BadAction(String),
    /// The episode is over or gone.
    #[error("episode error: {0}")]
    Episode(String),
    /// No credential, where one is required.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// No room for another episode or connection: what is full.
    #[error("capacity reached: {0}; close one or retry later")]
    Capacity(String),
    /// Grading is at capacity: as many gradings run and wait as the server takes.
    #[error("grading capacity reached: {running} gradings run at once and {queued} wait, the most this server takes; retry in {retry_after_s} s")]
    Busy {
        /// Gradings that run at once.
        running: usize,
        /// Gradings that may wait.
        queued: usize,
        /// Seconds until room is likely.
        retry_after_s: u64,
    },
    /// The engine failed.
    #[error("engine error: {0}")]
    Engine(String),
    /// A filesystem step failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

impl GymError {
    pub(crate) fn io(context: &'static str) -> impl Fn(std::io::Error) -> GymError {
        move |source| GymError::Io { context, source }
    }
}
