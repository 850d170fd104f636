//! The platform: submissions persisted before anything runs, a worker pool that
//! evaluates them, and recovery of evaluations interrupted by a crash.

use std::path::PathBuf;
use std::sync::Arc;

use proctor_engine::Backend;
use proctor_store::{Finished, NewSubmission, Store, Submission};
use serde::Serialize;
use tokio::sync::Notify;

use crate::data::Split;
use crate::definition::Catalog;
use crate::evaluate::{self, EvalOptions, Evaluation, Outcome};
use crate::intake;
use crate::Error;

/// Where the platform keeps its state.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// `$PROCTOR_HOME`: data, secret, submissions, evaluations.
    pub home: PathBuf,
    /// The SQLite database (default `$PROCTOR_HOME/challenge/proctor.db`).
    pub database: PathBuf,
    /// A database URL (`postgres://USER:PASSWORD@HOST/DB` or `sqlite://PATH`); when set,
    /// it is used instead of `database`.
    pub database_url: Option<String>,
    /// Evaluations started per submission before an interrupted one is failed.
    pub max_attempts: i64,
    /// Evaluation knobs (tests shorten the time limit).
    pub eval: EvalOptions,
    /// The challenges.
    pub catalog: Catalog,
}

impl PlatformConfig {
    /// Defaults under `home`, with the built-in challenges.
    pub fn new(home: PathBuf) -> PlatformConfig {
        PlatformConfig {
            database: home.join("challenge").join("proctor.db"),
            database_url: None,
            home,
            max_attempts: 2,
            eval: EvalOptions::default(),
            catalog: Catalog::builtin(),
        }
    }
}

/// A submission as shown to users (the CLI's JSON contract, plus details).
#[derive(Debug, Clone, Serialize)]
pub struct SubmissionView {
    /// Id.
    pub submission_id: String,
    /// Challenge id.
    pub challenge: String,
    /// `queued`, `running`, `scored`, `over_budget`, `rejected`, `error`, `timeout`, `oom`.
    pub status: String,
    /// Rank metric.
    pub score: Option<f64>,
    /// Test accuracy.
    pub accuracy: Option<f64>,
    /// Counted parameters.
    pub params: Option<i64>,
    /// Trainable parameters (the original rule).
    pub params_trainable: Option<i64>,
    /// The challenge's limit.
    pub param_limit: u64,
    /// The challenge's scoring baseline.
    pub baseline_accuracy: f64,
    /// Nearest-true-prototype accuracy on the same test data.
    pub oracle_accuracy: Option<f64>,
    /// What went wrong.
    pub error: Option<String>,
    /// Official data.
    pub official: bool,
    /// Who submitted.
    pub participant: String,
    /// Why `params` and `params_trainable` differ.
    pub params_note: Option<String>,
    /// Seconds in `solve()`.
    pub solve_s: Option<f64>,
    /// Evaluation time outside `solve()`.
    pub overhead_s: Option<f64>,
    /// Output of the runs.
    pub logs: String,
}

/// The challenge platform over one backend and one store.
#[derive(Clone)]
pub struct Platform<B: Backend + Clone + 'static> {
    inner: Arc<Inner<B>>,
}

struct Inner<B> {
    backend: B,
    store: Store,
    config: PlatformConfig,
    notify: Notify,
}

impl<B: Backend + Clone + 'static> Platform<B> {
    /// Opens the store (migrating it) and recovers submissions that a dead process left
    /// running: they are queued again, or failed after `max_attempts`.
    pub async fn open(backend: B, config: PlatformConfig) -> Result<Platform<B>, Error> {
        let store = match &config.database_url {
            Some(url) => Store::open_url(url).await?,
            None => Store::open(&config.database).await?,
        };
        let recovered = store.recover(config.max_attempts).await?;
        if !recovered.requeued.is_empty() || !recovered.failed.is_empty() {
            tracing::warn!(
                "recovered interrupted submissions: requeued {:?}, failed {:?}",
                recovered.requeued,
                recovered.failed
            );
        }
        Ok(Platform {
            inner: Arc::new(Inner {
                backend,
                store,
                config,
                notify: Notify::new(),
            }),
        })
    }

    /// The challenges.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.config.catalog
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Validates an upload and persists it: `queued` (and workers are woken) or
    /// `rejected` with the reason. Nothing runs before the row exists.
    pub async fn submit(
        &self,
        challenge_id: &str,
        file_name: &str,
        bytes: &[u8],
        participant: &str,
        split: Split,
    ) -> Result<Submission, Error> {
        let challenge = self.catalog().get(challenge_id)?;
        let id = uuid::Uuid::new_v4().to_string();
        let participant = participant.trim();
        let participant = if participant.is_empty() {
            "anonymous"
        } else {
            participant
        };
        let mut row = NewSubmission {
            id: id.clone(),
            challenge: challenge.id.clone(),
            official: split == Split::Official,
            participant: participant.chars().take(100).collect(),
            name: None,
            description: None,
            file_name: file_name.chars().take(200).collect(),
            status: Outcome::Queued.as_str().into(),
            error: None,
            project_dir: None,
        };
        match intake::intake(challenge, file_name, bytes) {
            Ok(project) => {
                let dir = self
                    .inner
                    .config
                    .home
                    .join("challenge")
                    .join("submissions")
                    .join(&id);
                row.name = project.manifest.name.clone();
                row.description = project.manifest.description.clone();
                match project.write_to(&dir) {
                    Ok(()) => row.project_dir = Some(dir.display().to_string()),
                    // Recorded, and worded without the server's paths.
                    Err(e) => {
                        row.status = Outcome::Rejected.as_str().into();
                        row.error =
                            Some(format!("the project could not be written ({})", e.kind()));
                    }
                }
            }
            Err(rejection) => {
                row.status = Outcome::Rejected.as_str().into();
                row.error = Some(rejection.to_string());
            }
        }
        self.inner.store.insert(&row).await?;
        if row.status == Outcome::Queued.as_str() {
            self.inner.notify.notify_waiters();
            self.inner.notify.notify_one();
        }
        self.get(&id).await
    }

    /// One submission.
    pub async fn get(&self, id: &str) -> Result<Submission, Error> {
        self.inner
            .store
            .get(id)
            .await?
            .ok_or_else(|| Error::UnknownSubmission(id.to_string()))
    }

    /// A submission as shown to users.
    pub fn view(&self, s: &Submission) -> SubmissionView {
        let challenge = self.catalog().get(&s.challenge).ok();
        let result: Option<Evaluation> = s
            .result
            .clone()
            .and_then(|v| serde_json::from_value(v).ok());
        SubmissionView {
            submission_id: s.id.clone(),
            challenge: s.challenge.clone(),
            status: s.status.clone(),
            score: s.score,
            accuracy: s.accuracy,
            params: s.params,
            params_trainable: s.params_trainable,
            param_limit: challenge.map_or(0, |c| c.param_limit),
            baseline_accuracy: challenge.map_or(0.0, |c| c.baseline_accuracy),
            oracle_accuracy: result.as_ref().and_then(|r| r.oracle_accuracy),
            error: s.error.clone(),
            official: s.official,
            participant: s.participant.clone(),
            params_note: result
                .as_ref()
                .and_then(|r| r.count.as_ref().map(|c| c.note.clone())),
            solve_s: result.as_ref().and_then(|r| r.solve_s),
            overhead_s: result.as_ref().and_then(|r| r.overhead_s),
            logs: s.logs.clone(),
        }
    }

    /// Evaluates one queued submission in this task (the CLI's path) and returns it.
    pub async fn evaluate_now(&self, id: &str) -> Result<Submission, Error> {
        if let Some(claimed) = self.inner.store.claim(id).await? {
            self.run(claimed).await?;
        }
        self.get(id).await
    }

    /// Starts `workers` tasks that evaluate queued submissions, oldest first.
    pub fn start_workers(&self, workers: usize) {
        for _ in 0..workers.max(1) {
            let platform = self.clone();
            tokio::spawn(async move {
                loop {
                    let notified = platform.inner.notify.notified();
                    match platform.inner.store.claim_next().await {
                        Ok(Some(s)) => {
                            if let Err(e) = platform.run(s).await {
                                tracing::error!("evaluation failed: {e}");
                            }
                        }
                        Ok(None) => {
                            // Woken by a submission, or polling for other processes' rows.
                            let _ =
                                tokio::time::timeout(std::time::Duration::from_secs(2), notified)
                                    .await;
                        }
                        Err(e) => {
                            tracing::error!("queue: {e}");
                            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                        }
                    }
                }
            });
        }
    }

    /// Waits until a submission is final.
    pub async fn wait(&self, id: &str) -> Result<Submission, Error> {
        loop {
            let s = self.get(id).await?;
            if Outcome::parse(&s.status).is_some_and(Outcome::is_final) {
                return Ok(s);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    async fn run(&self, s: Submission) -> Result<(), Error> {
        let cfg = &self.inner.config;
        let finished = match (cfg.catalog.get(&s.challenge), &s.project_dir) {
            (Ok(challenge), Some(project)) => {
                let work = evaluate::work_dir(&cfg.home, &s.id);
                proctor_engine::remove_tree_blocking(work.clone()).await;
                let split = if s.official {
                    Split::Official
                } else {
                    Split::Public
                };
                let ev = evaluate::evaluate(
                    &self.inner.backend,
                    &cfg.home,
                    challenge,
                    std::path::Path::new(project),
                    split,
                    &work,
                    &cfg.eval,
                )
                .await;
                proctor_engine::remove_tree_blocking(work.clone()).await;
                Finished {
                    status: ev.status.as_str().into(),
                    score: ev.score,
                    accuracy: ev.accuracy,
                    params: ev.params.map(|p| p as i64),
                    params_trainable: ev.params_trainable.map(|p| p as i64),
                    error: ev.error.clone(),
                    logs: ev.logs.clone(),
                    result: serde_json::to_value(&ev).ok(),
                }
            }
            (Err(e), _) => Finished {
                status: Outcome::Error.as_str().into(),
                error: Some(e.to_string()),
                ..Finished::default()
            },
            (_, None) => Finished {
                status: Outcome::Error.as_str().into(),
                error: Some("the submission's files are missing".into()),
                ..Finished::default()
            },
        };
        self.inner.store.finish(&s.id, &finished).await?;
        Ok(())
    }
}
