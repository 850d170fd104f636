//! Episodes: a task, a persistent sandboxed session, WhipStudio's six tools, a turn
//! limit, and the reward of the submitted fix.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proctor_accounts::{secret, Accounts, Caller};
use proctor_core::Limits;
use proctor_engine::{LocalBackend, Session, SessionReply};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::admission::{Admission, GradingLimits, GradingStatus, SessionTicket};
use crate::grade::{self, GradeReport, MAX_CODE_BYTES};
use crate::task::{self, Task};
use crate::GymError;

/// The agent's actions, with exactly WhipStudio's field names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action_type", rename_all = "snake_case")]
pub enum Action {
    /// Run code in the episode's namespace.
    ExecuteSnippet(ExecuteSnippet),
    /// Statistics of a tensor.
    InspectTensor(InspectTensor),
    /// Run the script for a few optimizer steps and watch them.
    RunTrainingProbe(RunTrainingProbe),
    /// Values of expressions (and parameter tables of modules).
    GetVariableState(GetVariableState),
    /// Diff a proposal against the original script.
    InspectDiff(InspectDiff),
    /// Grade a fix; ends the episode.
    SubmitFix(SubmitFix),
}

/// `execute_snippet`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteSnippet {
    /// Python source.
    pub code: String,
}

/// `inspect_tensor`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectTensor {
    /// Expression that evaluates to a tensor.
    pub target_expression: String,
    /// Code run first, in a copy of the namespace.
    #[serde(default)]
    pub setup_code: Option<String>,
}

/// `run_training_probe`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunTrainingProbe {
    /// Optimizer steps to watch (1–10).
    pub steps: i64,
    /// Script to probe; the task's script when absent.
    #[serde(default)]
    pub code: Option<String>,
}

/// `get_variable_state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetVariableState {
    /// Up to 10 expressions.
    pub expressions: Vec<String>,
    /// Code run first, in a copy of the namespace.
    #[serde(default)]
    pub setup_code: Option<String>,
}

/// `inspect_diff`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectDiff {
    /// The proposed script.
    pub proposed_code: String,
}

/// `submit_fix`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitFix {
    /// The fixed script.
    pub fixed_code: String,
    /// The agent's explanation (recorded, not graded).
    #[serde(default)]
    pub explanation: Option<String>,
    /// The agent's attempt counter (recorded).
    #[serde(default)]
    pub attempt_number: Option<i64>,
}

impl Action {
    /// Parses an action, with a message that names the problem.
    pub fn parse(value: &Value) -> Result<Action, GymError> {
        let kind = value
            .get("action_type")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                GymError::BadAction(format!(
                    "missing \"action_type\"; expected one of {}",
                    TOOL_NAMES.join(", ")
                ))
            })?;
        if !TOOL_NAMES.contains(&kind) {
            return Err(GymError::BadAction(format!(
                "unknown action_type {kind:?}; expected one of {}",
                TOOL_NAMES.join(", ")
            )));
        }
        // OpenEnv's Action base class carries a `metadata` dict; it is not a tool field.
        let mut value = value.clone();
        if let Some(o) = value.as_object_mut() {
            o.remove("metadata");
        }
        serde_json::from_value(value).map_err(|e| GymError::BadAction(format!("{kind}: {e}")))
    }

    fn name(&self) -> &'static str {
        match self {
            Action::ExecuteSnippet(_) => "execute_snippet",
            Action::InspectTensor(_) => "inspect_tensor",
            Action::RunTrainingProbe(_) => "run_training_probe",
            Action::GetVariableState(_) => "get_variable_state",
            Action::InspectDiff(_) => "inspect_diff",
            Action::SubmitFix(_) => "submit_fix",
        }
    }

    fn check_sizes(&self) -> Result<(), GymError> {
        let sizes: Vec<usize> = match self {
            Action::ExecuteSnippet(a) => vec![a.code.len()],
            Action::InspectTensor(a) => vec![
                a.target_expression.len(),
                a.setup_code.as_ref().map_or(0, String::len),
            ],
            Action::RunTrainingProbe(a) => vec![a.code.as_ref().map_or(0, String::len)],
            Action::GetVariableState(a) => {
                if a.expressions.is_empty() || a.expressions.len() > 10 {
                    return Err(GymError::BadAction(format!(
                        "get_variable_state takes 1 to 10 expressions, got {}",
                        a.expressions.len()
                    )));
                }
                a.expressions
                    .iter()
                    .map(String::len)
                    .chain([a.setup_code.as_ref().map_or(0, String::len)])
                    .collect()
            }
            Action::InspectDiff(a) => vec![a.proposed_code.len()],
            Action::SubmitFix(a) => vec![a.fixed_code.len()],
        };
        if let Some(big) = sizes.iter().find(|s| **s > MAX_CODE_BYTES) {
            return Err(GymError::BadAction(format!(
                "{}: code of {big} bytes exceeds the limit of {MAX_CODE_BYTES}",
                self.name()
            )));
        }
        if let Action::RunTrainingProbe(p) = self {
            if !(1..=10).contains(&p.steps) {
                return Err(GymError::BadAction(format!(
                    "run_training_probe: steps must be 1–10, got {}",
                    p.steps
                )));
            }
        }
        Ok(())
    }
}

/// Every tool's name, as `action_type`.
pub const TOOL_NAMES: &[&str] = &[
    "execute_snippet",
    "inspect_tensor",
    "run_training_probe",
    "get_variable_state",
    "inspect_diff",
    "submit_fix",
];

/// Per-tool descriptions (for `/tools` and MCP).
pub fn tool_descriptions() -> Vec<Value> {
    vec![
        json!({"name": "execute_snippet", "description": "Run Python code in the episode's persistent namespace; returns stdout, stderr, exit_code, timed_out and the value of the last expression.", "fields": {"code": "string"}}),
        json!({"name": "inspect_tensor", "description": "Shape, dtype, device, grad state, min/max/mean/std, NaN/Inf counts and a preview of a tensor expression.", "fields": {"target_expression": "string", "setup_code": "string?"}}),
        json!({"name": "run_training_probe", "description": "Run the script (or `code`) for 1–10 optimizer steps: per-step losses, gradient norms per parameter, learning rate, optimizer parameter count, NaN/Inf flags, peak memory.", "fields": {"steps": "integer 1-10", "code": "string?"}}),
        json!({"name": "get_variable_state", "description": "repr, type, value and shape of up to 10 expressions; modules also list their parameters (shape, requires_grad, held by an optimizer).", "fields": {"expressions": "string[]", "setup_code": "string?"}}),
        json!({"name": "inspect_diff", "description": "Unified diff of a proposal against the original script, with lines changed, additions, deletions and a syntax check.", "fields": {"proposed_code": "string"}}),
        json!({"name": "submit_fix", "description": "Grade a fixed script by running it under instrumentation and measuring the model on held-out data; returns the reward and ends the episode.", "fields": {"fixed_code": "string", "explanation": "string?", "attempt_number": "integer?"}}),
    ]
}

/// Knobs of episodes.
#[derive(Debug, Clone)]
pub struct EpisodeConfig {
    /// Turns before the episode ends without a fix.
    pub max_turns: u32,
    /// Limit of one tool call.
    pub call_timeout: Duration,
    /// An idle episode frees its processes after this long.
    pub idle_timeout: Duration,
    /// A WebSocket that holds no episode is closed after this long without a message
    /// (one that holds an episode, after `idle_timeout`, when the episode would be freed
    /// anyway). Pings do not count as messages; the time a call runs does not count.
    pub socket_idle_timeout: Duration,
    /// Limits of the episode's session.
    pub session_limits: Limits,
    /// How many gradings (`submit_fix`, `/grader`) the gym runs and queues at once.
    pub grading: GradingLimits,
    /// An HTTP request's body must arrive within this long after its headers.
    pub body_timeout: Duration,
    /// Finished episodes kept for viewing (their history); the oldest are forgotten.
    pub kept_finished: usize,
}

impl Default for EpisodeConfig {
    fn default() -> Self {
        EpisodeConfig {
            max_turns: 10,
            call_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            socket_idle_timeout: Duration::from_secs(60),
            session_limits: Limits {
                memory_mb: 2048,
                max_pids: 64,
                max_output_bytes: 60_000,
                ..Limits::default()
            },
            grading: GradingLimits::for_host(),
            body_timeout: Duration::from_secs(30),
            kept_finished: 200,
        }
    }
}

/// One step of an episode's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// Turn number (1-based).
    pub turn: u32,
    /// The action, as received.
    pub action: Value,
    /// The observation returned.
    pub observation: Value,
    /// Reward after this step.
    pub reward: Option<f64>,
}

/// The result of `reset` or `step`: OpenEnv's `{observation, reward, done}`.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// Tool output plus `action_type`, `turn`, `episode_done`.
    pub observation: Value,
    /// `null` until a fix is submitted.
    pub reward: Option<f64>,
    /// Whether the episode ended.
    pub done: bool,
}

/// A running episode.
pub struct Episode {
    /// Unique id.
    pub id: String,
    /// The task.
    pub task: Task,
    session: Session,
    /// The session's share of the gym's memory, given back when the session closes.
    reserved: Option<SessionTicket>,
    config: EpisodeConfig,
    /// Turns taken.
    pub turn: u32,
    /// Whether it ended.
    pub done: bool,
    /// The reward, once a fix was submitted.
    pub reward: Option<f64>,
    /// Every step.
    pub history: Vec<HistoryEntry>,
    /// The grade of the submitted fix.
    pub grade: Option<GradeReport>,
    last_active: Instant,
}

fn session_value(reply: &SessionReply) -> Result<Value, GymError> {
    match &reply.value {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| GymError::Engine(format!("tool output unreadable: {e}"))),
        None => Err(GymError::Engine(format!(
            "tool failed ({}): {}",
            reply.status,
            reply.error.clone().unwrap_or_else(|| reply.stderr.clone())
        ))),
    }
}

/// A Python string literal (JSON strings are valid Python literals).
fn py(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

impl Episode {
    /// Starts an episode of `task_id` (slug or `task1`…`task6`; a seed picks one when
    /// absent) in a session admitted as `reserved`.
    pub async fn start(
        backend: &LocalBackend,
        task_id: Option<&str>,
        seed: Option<u64>,
        config: EpisodeConfig,
        reserved: SessionTicket,
    ) -> Result<Episode, GymError> {
        let task = match task_id {
            Some(id) => task::find(id)?,
            None => {
                let all = task::all()?;
                let i = seed.unwrap_or(0) as usize % all.len();
                all.into_iter().nth(i).expect("tasks exist")
            }
        };
        let session = backend
            .open_session(config.session_limits, config.idle_timeout)
            .await
            .map_err(|e| GymError::Engine(e.to_string()))?;
        let setup = format!(
            "import torch, torch.nn as nn, torch.nn.functional as F, json, math\nfrom proctor_harness import gym_tools as __proctor_gym\nSCRIPT = {}\n",
            py(task.broken_script())
        );
        let reply = session
            .exec(&setup, config.call_timeout)
            .await
            .map_err(|e| GymError::Engine(e.to_string()))?;
        if reply.error.is_some() {
            return Err(GymError::Engine(format!(
                "episode setup failed: {}",
                reply.stderr
            )));
        }
        Ok(Episode {
            id: uuid::Uuid::new_v4().to_string(),
            task,
            session,
            reserved: Some(reserved),
            config,
            turn: 0,
            done: false,
            reward: None,
            history: Vec::new(),
            grade: None,
            last_active: Instant::now(),
        })
    }

    /// The observation of a fresh episode.
    pub fn initial_observation(&self) -> Value {
        let spec = &self.task.spec;
        json!({
            "action_type": "reset",
            "turn": 0,
            "episode_done": false,
            "episode_id": self.id,
            "task_id": spec.id,
            "task_alias": spec.alias,
            "title": spec.title,
            "difficulty": spec.difficulty,
            "description": spec.description,
            "buggy_code": self.task.broken_script(),
            "available_tools": TOOL_NAMES,
            "max_turns": self.config.max_turns,
            "message": "the buggy script is in `buggy_code` (and in the namespace as SCRIPT); use the tools, then submit_fix",
        })
    }

    /// Seconds since the last action.
    pub fn idle_for(&self) -> Duration {
        self.last_active.elapsed()
    }

    /// Applies one action. Errors leave the episode as it was.
    /// A fix is graded once `grading` admits it; refused at once (`CAPACITY_REACHED`),
    /// the episode stays as it was and the fix can be submitted again. Once in line the
    /// episode's session closes: the fix is all that is left to grade.
    pub async fn step(
        &mut self,
        backend: &LocalBackend,
        grading: &Admission,
        raw: &Value,
    ) -> Result<StepResult, GymError> {
        if self.done {
            return Err(GymError::Episode(format!(
                "episode {} is finished; reset to start a new one",
                self.id
            )));
        }
        let action = Action::parse(raw)?;
        action.check_sizes()?;
        self.last_active = Instant::now();
        let mut observation = self.run_tool(backend, grading, &action).await?;
        self.turn += 1;
        if let Action::SubmitFix(_) = action {
            self.done = true;
        } else if self.turn >= self.config.max_turns {
            self.done = true;
            self.reward = Some(0.0);
            observation["message"] = json!(format!(
                "turn limit of {} reached without a submitted fix",
                self.config.max_turns
            ));
        }
        observation["action_type"] = json!(action.name());
        observation["turn"] = json!(self.turn);
        observation["episode_done"] = json!(self.done);
        self.history.push(HistoryEntry {
            turn: self.turn,
            action: raw.clone(),
            observation: observation.clone(),
            reward: self.reward,
        });
        if self.done {
            self.end_session().await;
        }
        Ok(StepResult {
            observation,
            reward: self.reward,
            done: self.done,
        })
    }

    async fn exec(&self, code: &str) -> Result<SessionReply, GymError> {
        if !self.session.is_alive() {
            return Err(GymError::Episode(
                "the episode's session has ended (idle timeout or crash); reset to start again"
                    .into(),
            ));
        }
        self.session
            .exec(code, self.config.call_timeout)
            .await
            .map_err(|e| GymError::Engine(e.to_string()))
    }

    async fn run_tool(
        &mut self,
        backend: &LocalBackend,
        grading: &Admission,
        action: &Action,
    ) -> Result<Value, GymError> {
        match action {
            Action::ExecuteSnippet(a) => {
                let r = self.exec(&a.code).await?;
                Ok(json!({
                    "stdout": r.stdout,
                    "stderr": r.stderr,
                    "exit_code": if r.status == proctor_core::Status::Ok { 0 } else { 1 },
                    "timed_out": r.timed_out,
                    "value": r.value,
                    "output_truncated": r.output_truncated,
                    "session_alive": r.session_alive,
                }))
            }
            Action::InspectTensor(a) => {
                let code = format!(
                    "__proctor_gym.inspect_tensor({}, {}, globals())",
                    py(&a.target_expression),
                    a.setup_code.as_deref().map_or("None".into(), py)
                );
                session_value(&self.exec(&code).await?)
            }
            Action::GetVariableState(a) => {
                let code = format!(
                    "__proctor_gym.get_variable_state({}, {}, globals())",
                    serde_json::to_string(&a.expressions).expect("json"),
                    a.setup_code.as_deref().map_or("None".into(), py)
                );
                session_value(&self.exec(&code).await?)
            }
            Action::RunTrainingProbe(a) => {
                let source = a.code.as_deref().map_or("SCRIPT".to_string(), py);
                let code = format!(
                    "__proctor_gym.run_training_probe({source}, {}, {{}})",
                    a.steps
                );
                let r = self.exec(&code).await?;
                let mut v = session_value(&r).unwrap_or_else(|e| json!({"error": e.to_string()}));
                v["timed_out"] = json!(r.timed_out);
                Ok(v)
            }
            Action::InspectDiff(a) => {
                let mut v = diff(self.task.broken_script(), &a.proposed_code);
                let check = session_value(
                    &self
                        .exec(&format!(
                            "__proctor_gym.syntax_check({})",
                            py(&a.proposed_code)
                        ))
                        .await?,
                )?;
                v["syntax_ok"] = check["ok"].clone();
                v["syntax_error"] = check["error"].clone();
                Ok(v)
            }
            Action::SubmitFix(a) => {
                let attempt = format!("episode:{}:{}", self.id, self.turn);
                let entry = grading.enter(grade::memory_limit_mb(&self.task))?;
                // In line: the session is not needed to grade, and nothing may wait for
                // memory while holding some.
                self.end_session().await;
                let _admitted = entry.admitted().await;
                let report =
                    grade::grade_attempt(backend, &self.task, &a.fixed_code, &attempt).await?;
                self.reward = Some(report.score);
                let v = json!({
                    "reward": report.score,
                    "band": report.band,
                    "band_rule": report.band_rule,
                    "bugs": report.bugs,
                    "metrics": report.metrics,
                    "reported": report.reported,
                    "status": report.status,
                    "error_log": report.error_log,
                    "feedback": report.feedback,
                    "explanation": a.explanation,
                    "attempt_number": a.attempt_number,
                });
                self.grade = Some(report);
                Ok(v)
            }
        }
    }

    /// OpenEnv's state: id and step count, plus the task and progress.
    pub fn state(&self) -> Value {
        json!({
            "episode_id": self.id,
            "step_count": self.turn,
            "task_id": self.task.spec.id,
            "max_turns": self.config.max_turns,
            "done": self.done,
            "reward": self.reward,
        })
    }

    /// Ends the episode and frees its session.
    pub async fn close(&mut self) {
        self.done = true;
        self.end_session().await;
    }

    async fn end_session(&mut self) {
        self.session.close().await;
        self.reserved = None;
    }
}

/// Unified diff against the original, with counts.
pub fn diff(original: &str, proposed: &str) -> Value {
    let d = similar::TextDiff::from_lines(original, proposed);
    let (mut additions, mut deletions) = (0, 0);
    for change in d.iter_all_changes() {
        match change.tag() {
            similar::ChangeTag::Insert => additions += 1,
            similar::ChangeTag::Delete => deletions += 1,
            similar::ChangeTag::Equal => {}
        }
    }
    let text = d
        .unified_diff()
        .header("original.py", "proposed.py")
        .to_string();
    json!({
        "diff": text,
        "lines_changed": additions.max(deletions),
        "additions": additions,
        "deletions": deletions,
    })
}

/// Who may use a gym.
#[derive(Clone, Default)]
pub struct Access {
    /// The accounts whose tokens and sessions sign in (none: episode tokens only).
    pub accounts: Option<Accounts>,
    /// Every request needs an account's token (`--require-token`): a private gym.
    pub require_token: bool,
}

/// Who owns an episode: whoever holds its episode token, and the account that started it.
struct Owner {
    token_hash: String,
    account: Option<String>,
    /// The digest of the account credential the episode was started with: its episode
    /// token stops opening it once that credential is revoked.
    issued_under: Option<String>,
}

impl Owner {
    fn by_account(&self, caller: &Caller) -> bool {
        matches!((&self.account, &caller.account), (Some(mine), Some(a)) if *mine == a.id)
    }

    fn by_token(&self, caller: &Caller) -> bool {
        caller
            .episode_token()
            .is_some_and(|t| secret::matches(t, &self.token_hash))
    }
}

type Slot = (Arc<Owner>, Arc<tokio::sync::Mutex<Episode>>);

/// Many episodes at once, each behind its own lock and owned by who started it; idle
/// ones are reaped.
pub struct Gym {
    backend: LocalBackend,
    episodes: tokio::sync::Mutex<HashMap<String, Slot>>,
    /// Most episodes alive at once.
    pub max_episodes: usize,
    /// WebSocket connections open at once: each holds at most one episode, so there are
    /// `max_episodes` of them, taken before the upgrade (idle sockets cannot pile up).
    pub sockets: Arc<tokio::sync::Semaphore>,
    /// Knobs of new episodes.
    pub config: EpisodeConfig,
    /// Who may use it.
    pub access: Access,
    /// The gradings running and waiting, under `config.grading`.
    grading: Admission,
}

impl Gym {
    /// The state of the backend's warm pool, which every episode needs.
    pub fn warm_pool(&self) -> proctor_engine::WarmPool {
        self.backend.warm_pool()
    }

    /// A gym on `backend` open to anyone (each episode to its owner only); starts the
    /// idle reaper.
    pub fn new(backend: LocalBackend, max_episodes: usize, config: EpisodeConfig) -> Arc<Gym> {
        Gym::with_access(backend, max_episodes, config, Access::default())
    }

    /// A gym whose callers sign in as `access` says.
    pub fn with_access(
        backend: LocalBackend,
        max_episodes: usize,
        config: EpisodeConfig,
        access: Access,
    ) -> Arc<Gym> {
        let gym = Arc::new(Gym {
            backend,
            episodes: tokio::sync::Mutex::new(HashMap::new()),
            max_episodes,
            sockets: Arc::new(tokio::sync::Semaphore::new(max_episodes)),
            grading: Admission::new(config.grading.clone(), max_episodes),
            config,
            access,
        });
        let weak = Arc::downgrade(&gym);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let Some(gym) = weak.upgrade() else { return };
                gym.reap_idle().await;
            }
        });
        gym
    }

    /// The engine.
    pub fn backend(&self) -> &LocalBackend {
        &self.backend
    }

    /// Grades `code` as a fix of `task` outside any episode (`/grader`), once admitted.
    pub async fn grade(&self, task: &Task, code: &str) -> Result<GradeReport, GymError> {
        grade::check_size(code)?;
        let _admitted = self.grading.admit(grade::memory_limit_mb(task)).await?;
        grade::grade(&self.backend, task, code).await
    }

    /// Gradings running and waiting now.
    pub fn grading(&self) -> GradingStatus {
        self.grading.status()
    }

    async fn reap_idle(&self) {
        let idle = self.config.idle_timeout;
        let mut map = self.episodes.lock().await;
        let mut gone = Vec::new();
        for (id, (_, ep)) in map.iter() {
            if let Ok(e) = ep.try_lock() {
                if !e.done && e.idle_for() > idle {
                    gone.push(id.clone());
                }
            }
        }
        for id in gone {
            if let Some((_, ep)) = map.remove(&id) {
                ep.lock().await.close().await;
            }
        }
    }

    /// Who is asking, from a request's headers; refused when the gym requires a token
    /// and none is presented.
    pub async fn caller(&self, headers: &axum::http::HeaderMap) -> Result<Caller, GymError> {
        let caller = match &self.access.accounts {
            Some(accounts) => accounts
                .caller(headers)
                .await
                .map_err(|e| GymError::Engine(e.to_string()))?,
            None => Caller {
                account: None,
                credential: proctor_accounts::http::credential(headers),
            },
        };
        self.admit(&caller)?;
        Ok(caller)
    }

    /// Whether `caller` may use this gym at all.
    pub fn admit(&self, caller: &Caller) -> Result<(), GymError> {
        if self.access.require_token && caller.account.is_none() && caller.episode_token().is_none()
        {
            return Err(GymError::Unauthorized(
                "this gym requires a token: send Authorization: Bearer <token> (see `proctor user token`)".into(),
            ));
        }
        Ok(())
    }

    /// Whether the account `caller` signed in with is still live (a revoked token ends
    /// long-lived connections too).
    pub async fn still_admitted(&self, caller: &Caller) -> bool {
        let (Some(accounts), Some(_), Some(c)) =
            (&self.access.accounts, &caller.account, &caller.credential)
        else {
            return true;
        };
        matches!(accounts.authenticate(c.secret()).await, Ok(Some(_)))
    }

    /// Starts an episode; `CAPACITY_REACHED` beyond `max_episodes` or when its session
    /// does not fit the gym's memory (see [`Admission::open_session`]).
    /// Returns the episode's id and its episode token (`pce_…`): the credential that,
    /// with the account `caller` signed in as, opens it.
    pub async fn reset(
        &self,
        caller: &Caller,
        task_id: Option<&str>,
        seed: Option<u64>,
    ) -> Result<(String, String, StepResult), GymError> {
        if self.access.require_token && caller.account.is_none() {
            return Err(GymError::Unauthorized(
                "starting an episode on this gym needs an account's token".into(),
            ));
        }
        // Taken before the session starts, so resets at once cannot overshoot.
        let reserved = self
            .grading
            .open_session(self.config.session_limits.memory_mb)?;
        let config = self.config.clone();
        let episode = Episode::start(&self.backend, task_id, seed, config, reserved).await?;
        let id = episode.id.clone();
        let observation = episode.initial_observation();
        let token = secret::generate(secret::Kind::Episode);
        let owner = Owner {
            token_hash: secret::digest(&token),
            account: caller.account.as_ref().map(|a| a.id.clone()),
            issued_under: caller
                .account
                .as_ref()
                .and(caller.credential.as_ref())
                .map(|c| secret::digest(c.secret())),
        };
        self.episodes.lock().await.insert(
            id.clone(),
            (Arc::new(owner), Arc::new(tokio::sync::Mutex::new(episode))),
        );
        // Episodes over HTTP and MCP are never released by a closing socket: without
        // this, every finished one (up to ~1 MB of history) was kept for good.
        self.forget_oldest_finished().await;
        Ok((
            id,
            token,
            StepResult {
                observation,
                reward: None,
                done: false,
            },
        ))
    }

    /// Whether `caller` may open an episode of `owner`: its account, or its episode
    /// token while the account credential it was issued under is live (one lookup).
    async fn permits(&self, owner: &Owner, caller: &Caller) -> bool {
        if owner.by_account(caller) {
            return true;
        }
        if !owner.by_token(caller) {
            return false;
        }
        match (&owner.issued_under, &self.access.accounts) {
            (Some(digest), Some(accounts)) => accounts.digest_live(digest).await.unwrap_or(false),
            _ => true,
        }
    }

    /// An episode `caller` owns. Someone else's episode is answered exactly like one
    /// that does not exist, so ids cannot be probed.
    async fn get(
        &self,
        id: &str,
        caller: &Caller,
    ) -> Result<Arc<tokio::sync::Mutex<Episode>>, GymError> {
        let slot = self.episodes.lock().await.get(id).cloned();
        match slot {
            Some((owner, ep)) if self.permits(&owner, caller).await => Ok(ep),
            _ => Err(GymError::Episode(format!("no episode {id:?} of yours: it ended, was freed after being idle, never existed, or needs its episode token (Authorization: Bearer pce_...); call reset"))),
        }
    }

    /// Applies an action to an episode `caller` owns.
    pub async fn step(
        &self,
        id: &str,
        caller: &Caller,
        action: &Value,
    ) -> Result<StepResult, GymError> {
        let ep = self.get(id, caller).await?;
        let mut ep = ep.lock().await;
        ep.step(&self.backend, &self.grading, action).await
    }

    /// The state of an episode `caller` owns.
    pub async fn state(&self, id: &str, caller: &Caller) -> Result<Value, GymError> {
        Ok(self.get(id, caller).await?.lock().await.state())
    }

    /// State, history and the measured losses of the graded fix of an episode `caller`
    /// owns (for the web UI).
    pub async fn history(
        &self,
        id: &str,
        caller: &Caller,
    ) -> Result<(Value, Vec<HistoryEntry>, Vec<f64>), GymError> {
        let ep = self.get(id, caller).await?;
        let ep = ep.lock().await;
        let losses = ep
            .grade
            .as_ref()
            .map(|g| g.losses.clone())
            .unwrap_or_default();
        Ok((ep.state(), ep.history.clone(), losses))
    }

    /// `(id, task, turns, done, reward)` of the kept episodes `caller` owns (for the web UI).
    pub async fn list(&self, caller: &Caller) -> Vec<(String, String, u32, bool, Option<f64>)> {
        let slots: Vec<Slot> = self.episodes.lock().await.values().cloned().collect();
        let mut out = Vec::new();
        for (owner, ep) in slots {
            if !self.permits(&owner, caller).await {
                continue;
            }
            if let Ok(e) = ep.try_lock() {
                out.push((
                    e.id.clone(),
                    e.task.spec.id.clone(),
                    e.turn,
                    e.done,
                    e.reward,
                ));
            }
        }
        out
    }

    /// A client let go of an episode: a finished one stays viewable, a running one ends.
    pub async fn release(&self, id: &str) {
        let ep = self.episodes.lock().await.get(id).map(|(_, ep)| ep.clone());
        let done = match ep {
            Some(ep) => ep.lock().await.done,
            None => return,
        };
        if done {
            self.forget_oldest_finished().await;
        } else {
            self.close(id).await;
        }
    }

    /// Keeps at most [`EpisodeConfig::kept_finished`] finished episodes.
    async fn forget_oldest_finished(&self) {
        let kept = self.config.kept_finished;
        let mut map = self.episodes.lock().await;
        let mut finished: Vec<(Duration, String)> = map
            .iter()
            .filter_map(|(id, (_, ep))| {
                ep.try_lock()
                    .ok()
                    .filter(|e| e.done)
                    .map(|e| (e.idle_for(), id.clone()))
            })
            .collect();
        if finished.len() > kept {
            finished.sort();
            for (_, id) in finished.into_iter().skip(kept) {
                map.remove(&id);
            }
        }
    }

    /// Ends and forgets an episode.
    pub async fn close(&self, id: &str) {
        let ep = self.episodes.lock().await.remove(id);
        if let Some((_, ep)) = ep {
            ep.lock().await.close().await;
        }
    }

    /// Episodes alive now.
    pub async fn active(&self) -> usize {
        self.episodes.lock().await.len()
    }
}
