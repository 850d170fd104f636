//! Cold runs: a fresh sandboxed interpreter per job.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use proctor_core::{Job, JobError, RunResult};
use proctor_sandbox::{ExitReport, Spec};

use crate::supervise::{classify, supervise, Killer};
use crate::workspace::{job_args, Workspace};
use crate::Inner;

/// Reads init's report; a setup error means nothing untrusted ran.
fn read_status(fd: OwnedFd) -> Result<Option<ExitReport>, String> {
    let mut text = String::new();
    let _ = std::fs::File::from(fd).read_to_string(&mut text);
    let mut last = None;
    for line in text.lines() {
        if let Ok(report) = serde_json::from_str::<ExitReport>(line) {
            if let Some(err) = report.setup_error {
                return Err(err);
            }
            last = Some(report);
        }
    }
    Ok(last)
}

pub(crate) async fn run(inner: &Inner, job: Job) -> Result<RunResult, JobError> {
    let started = Instant::now();
    let (ws, target) = Workspace::create(&inner.paths.runs, &job)?;
    let env = inner.paths.env(&ws.work, &job.env);
    let argv = target.argv(job_args(&job));
    let Some(sandbox) = &inner.sandbox else {
        return run_unsandboxed(inner, &ws, argv, env, &job, started).await;
    };
    let mut read_only = inner.paths.read_only.clone();
    read_only.push(ws.inputs.clone());
    read_only.extend(job.policy.read_only.iter().cloned());
    let spec = Spec {
        program: inner.paths.python.clone(),
        args: argv,
        env,
        cwd: ws.work.clone(),
        read_only,
        read_write: vec![ws.work.clone()],
        network: job.policy.network,
        cgroup_procs: Vec::new(),
        pass_fd: false,
        run_id: None,
        warm_parent: false,
    };
    let mut prepared = sandbox
        .command(&spec, &job.limits)
        .map_err(|e| JobError::Sandbox(e.to_string()))?;
    prepared
        .command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cgroup = Arc::new(prepared.cgroup);
    // The run's id stays reserved until its files are gone.
    let _run_id = prepared.run_id;
    let mut child = tokio::process::Command::from(prepared.command)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            cgroup.remove();
            JobError::Engine(format!("cannot start the sandbox helper: {e}"))
        })?;
    drop(prepared.status_writer);
    let status_fd = prepared.status;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let status = tokio::task::spawn_blocking(move || read_status(status_fd));
    let exit = async {
        let _ = child.wait().await;
        status.await.unwrap_or(Ok(None))
    };
    let setup_error = std::sync::Mutex::new(None);
    let exit = async {
        match exit.await {
            Ok(report) => report,
            Err(e) => {
                *setup_error.lock().unwrap() = Some(e);
                None
            }
        }
    };
    let killer = Killer::new(Some(cgroup.clone()), None);
    let observed = supervise(stdout, stderr, exit, &job, killer, started).await;
    let result = classify(observed, Some(&cgroup), &job.limits);
    let cg = cgroup.clone();
    let _ = tokio::task::spawn_blocking(move || cg.remove()).await;
    if let Some(err) = setup_error.into_inner().unwrap() {
        return Err(JobError::Sandbox(err));
    }
    ws.collect(job.collect.as_deref())?;
    ws.dispose().await;
    Ok(result)
}

/// `--no-sandbox`: the same interpreter and environment, no confinement; only the
/// timeout and output limit hold. For developing proctor, never for untrusted code.
async fn run_unsandboxed(
    inner: &Inner,
    ws: &Workspace,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    job: &Job,
    started: Instant,
) -> Result<RunResult, JobError> {
    let mut command = std::process::Command::new(&inner.paths.python);
    command
        .args(argv)
        .env_clear()
        .envs(env)
        .current_dir(&ws.work)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            JobError::Engine(format!(
                "cannot start {}: {e}",
                inner.paths.python.display()
            ))
        })?;
    let pgid = child.id().map(|p| p as i32);
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let exit = async {
        child.wait().await.ok().map(|s| ExitReport {
            exit_code: s.code(),
            signal: s.signal(),
            ..ExitReport::default()
        })
    };
    let observed = supervise(stdout, stderr, exit, job, Killer::new(None, pgid), started).await;
    ws.collect(job.collect.as_deref())?;
    Ok(classify(observed, None, &job.limits))
}
