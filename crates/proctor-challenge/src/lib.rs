/*!
The challenge platform: parameter-budget ML challenges (ImageNet-Pareto 200k–5m, ported
from the Frontier-CS benchmark), ranked by what a submission really does.

- [`definition`]: `tasks/challenge/<id>/challenge.toml` and the statement ([`Catalog`]).
- [`data`]: the original generator, run as a trusted step; public data pinned by SHA-256,
  official data from a server secret.
- [`intake`]: zip projects (or a bare `solution.py`) validated with clear rejections.
- [`evaluate`]: split trust — train in a sandbox, count the exported artifact on the
  trusted side ([`artifact`]), infer in a fresh sandbox that never sees labels, score.
- [`platform`]: submissions persisted in the store, a worker pool, crash recovery,
  admins' moderation; [`quota`]: how often an account may submit.
- [`web`]: the JSON API and the server-rendered pages, with the [`pareto`] plot.

```no_run
# async fn demo(backend: proctor_engine::LocalBackend) -> Result<(), proctor_challenge::Error> {
use proctor_challenge::{Platform, PlatformConfig, Split};
let platform = Platform::open(backend, PlatformConfig::new(proctor_runtime::proctor_home())).await?;
let bytes = std::fs::read("solution.py").unwrap();
let sub = platform
    .submit("imagenet-pareto-500k", "solution.py", &bytes, None, Split::Public)
    .await?;
let done = platform.evaluate_now(&sub.id).await?;
println!("{} {:?}", done.status, done.score);
# Ok(()) }
```
*/
#![deny(missing_docs)]

pub mod artifact;
pub mod data;
pub mod definition;
pub mod evaluate;
pub mod intake;
pub mod pareto;
mod participants;
pub mod platform;
pub mod progress;
pub mod quota;
pub mod web;

use std::path::Path;

pub use data::Split;
pub use definition::{Catalog, Challenge};
pub use evaluate::{Evaluation, Outcome};
pub use platform::{Platform, PlatformConfig, SubmissionView};

/// Errors of the challenge platform (not the outcome of a submission, which is data).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A challenge definition is invalid.
    #[error("invalid challenge definition {path}: {message}")]
    Definition {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// No such challenge.
    #[error("unknown challenge {id:?}: known challenges are {known}")]
    UnknownChallenge {
        /// What was asked.
        id: String,
        /// What exists.
        known: String,
    },
    /// No such submission.
    #[error("unknown submission {0:?}")]
    UnknownSubmission(String),
    /// Data generation failed.
    #[error("{0}")]
    Data(String),
    /// A file operation failed.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] proctor_store::StoreError),
    /// Over a submission quota.
    #[error(transparent)]
    Quota(#[from] quota::Exceeded),
    /// The request conflicts with the submission's state.
    #[error("{0}")]
    Conflict(String),
}

impl Error {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}
