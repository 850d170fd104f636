//! The platform: submissions persisted before anything runs, a worker pool that
//! evaluates them, and recovery of evaluations interrupted by a crash.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use proctor_accounts::{Account, Accounts};
use proctor_engine::Backend;
use proctor_store::{Finished, Moderation, NewSubmission, Store, Submission};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, OwnedMutexGuard};

use crate::data::Split;
use crate::definition::Catalog;
use crate::evaluate::{self, EvalOptions, Evaluation, Outcome};
use crate::intake;
use crate::progress::{Progress, ProgressView};
use crate::quota;
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
    /// Mark session cookies `Secure` (the server is behind a TLS proxy).
    pub secure_cookies: bool,
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
            secure_cookies: false,
        }
    }
}

/// A submission as shown to users (the CLI's JSON contract, plus details).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Who submitted: the account's name (`local` for a private local run).
    pub participant: String,
    /// Hidden by an admin (only its owner and admins see it).
    #[serde(default)]
    pub hidden: bool,
    /// Disqualified by an admin (shown, not ranked).
    #[serde(default)]
    pub disqualified: bool,
    /// Why `params` and `params_trainable` differ.
    pub params_note: Option<String>,
    /// Seconds in `solve()`.
    pub solve_s: Option<f64>,
    /// Evaluation time outside `solve()`.
    pub overhead_s: Option<f64>,
    /// Wall time of the whole evaluation.
    pub total_s: Option<f64>,
    /// Output of the runs.
    #[serde(default)]
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
    accounts: Accounts,
    config: PlatformConfig,
    notify: Notify,
    /// One lock per account: its uploads are counted and inserted one at a time, so two
    /// at once cannot both take the last slot of a quota.
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Progress of the evaluations running in this process, by submission id.
    running: Mutex<HashMap<String, Progress>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Handlers on the platform's router take a [`proctor_accounts::Caller`].
impl<B: Backend + Clone + 'static> axum::extract::FromRef<Platform<B>> for Accounts {
    fn from_ref(p: &Platform<B>) -> Accounts {
        p.inner.accounts.clone()
    }
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
                accounts: Accounts::new(store.clone()).with_secure_cookies(config.secure_cookies),
                store,
                config,
                notify: Notify::new(),
                turns: Mutex::default(),
                running: Mutex::default(),
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

    /// The accounts of the platform's store (who may submit and moderate).
    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    async fn turn(&self, account: &Account) -> OwnedMutexGuard<()> {
        let lock = {
            let mut turns = self.inner.turns.lock().unwrap_or_else(|e| e.into_inner());
            turns.entry(account.id.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Validates an upload and persists it: `queued` (and workers are woken) or
    /// `rejected` with the reason. Nothing runs before the row exists. An account's
    /// upload must fit the challenge's quotas ([`Error::Quota`] otherwise, and nothing
    /// is stored), an admin's too unless the challenge exempts admins; without an account (`proctor challenge submit` on this machine) the
    /// row is private: on no leaderboard, in no public list.
    pub async fn submit(
        &self,
        challenge_id: &str,
        file_name: &str,
        bytes: &[u8],
        by: Option<&Account>,
        split: Split,
    ) -> Result<Submission, Error> {
        let challenge = self.catalog().get(challenge_id)?;
        let _turn = match by {
            Some(account) if !(account.is_admin() && challenge.limits.admins_exempt) => {
                let turn = self.turn(account).await;
                let now = now_ms();
                let recent = self
                    .inner
                    .store
                    .recent(&account.id, now - quota::DAY_MS)
                    .await?;
                let official = split == Split::Official;
                quota::check(&challenge.limits, &challenge.id, official, &recent, now)?;
                Some(turn)
            }
            // An exempt admin, or a local run without an account.
            _ => None,
        };
        let id = uuid::Uuid::new_v4().to_string();
        let mut row = NewSubmission {
            id: id.clone(),
            challenge: challenge.id.clone(),
            official: split == Split::Official,
            participant: by.map_or("local", |a| a.name.as_str()).to_string(),
            account_id: by.map(|a| a.id.clone()),
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

    /// What the evaluation of submission `id` is doing, while it runs in this process.
    pub fn progress(&self, id: &str) -> Option<ProgressView> {
        let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
        running.get(id).map(Progress::view)
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
            hidden: s.hidden,
            disqualified: s.disqualified,
            params_note: result
                .as_ref()
                .and_then(|r| r.count.as_ref().map(|c| c.note.clone())),
            solve_s: result.as_ref().and_then(|r| r.solve_s),
            overhead_s: result.as_ref().and_then(|r| r.overhead_s),
            total_s: result.as_ref().map(|r| r.total_s),
            logs: s.logs.clone(),
        }
    }

    /// Applies an admin's decision to a submission (the caller checks the role).
    pub async fn moderate(&self, id: &str, decision: Moderation) -> Result<Submission, Error> {
        if !self.inner.store.moderate(id, decision).await? {
            return Err(Error::UnknownSubmission(id.to_string()));
        }
        self.get(id).await
    }

    /// Evaluates a finished submission again (e.g. after a fix of the evaluation), with
    /// its old result cleared (the caller checks the role).
    pub async fn rescore(&self, id: &str) -> Result<Submission, Error> {
        let s = self.get(id).await?;
        if !self.inner.store.requeue(id).await? {
            return Err(Error::Conflict(format!(
                "submission {id} cannot be evaluated again: it is {}{}",
                s.status,
                if s.project_dir.is_none() {
                    " and has no files"
                } else {
                    ""
                }
            )));
        }
        self.inner.notify.notify_one();
        self.get(id).await
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

    /// Registers (or, with `None`, forgets) the progress of a running evaluation.
    fn running(&self, id: &str, progress: Option<&Progress>) {
        let mut running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
        match progress {
            Some(p) => running.insert(id.to_string(), p.clone()),
            None => running.remove(id),
        };
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
                let options = EvalOptions {
                    progress: Progress::default(),
                    ..cfg.eval.clone()
                };
                self.running(&s.id, Some(&options.progress));
                let ev = evaluate::evaluate(
                    &self.inner.backend,
                    &cfg.home,
                    challenge,
                    std::path::Path::new(project),
                    split,
                    &work,
                    &options,
                )
                .await;
                self.running(&s.id, None);
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
