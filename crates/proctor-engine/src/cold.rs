//! Cold runs: a fresh sandboxed interpreter per job.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use proctor_core::{Job, JobError, RunResult};
use proctor_sandbox::{ExitReport, Reports, Spec};

use crate::scratch::{DiskWatch, Filled};
use crate::supervise::{classify, supervise, Killer};
use crate::workspace::{job_args, Workspace};
use crate::Inner;

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
        scratch_bytes: Some(disk_bytes(&job.limits)),
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
    let disk = Arc::new(DiskWatch::default());
    let watch = disk.clone();
    let reports = tokio::task::spawn_blocking(move || {
        proctor_sandbox::read_reports(status_fd, |scratch, shm| {
            watch.watch(Filled::Scratch, scratch);
            watch.watch(Filled::Shm, shm);
        })
    });
    let scratch = std::sync::Mutex::new(None);
    let setup_error = std::sync::Mutex::new(None);
    let exit = async {
        let _ = child.wait().await;
        match reports.await {
            Ok(Ok(Reports { exit, scratch: fd })) => {
                *crate::pool::lock(&scratch) = fd;
                exit
            }
            Ok(Err(e)) => {
                *crate::pool::lock(&setup_error) = Some(e);
                None
            }
            Err(_) => None,
        }
    };
    let killer = Killer::new(Some(cgroup.clone()), None);
    let observed = supervise(stdout, stderr, exit, &job, killer, started, &disk).await;
    if let Some(err) = setup_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(JobError::Sandbox(err));
    }
    let scratch = scratch.into_inner().unwrap_or_else(|e| e.into_inner());
    let result = classify(observed, Some(&cgroup), &job.limits, disk.sample());
    // The copy first: the scratch's pages are charged to the run's cgroup until it closes.
    collect(&ws, &job, scratch).await?;
    let cg = cgroup.clone();
    let _ = tokio::task::spawn_blocking(move || cg.remove()).await;
    ws.dispose().await;
    Ok(result)
}

/// The run's disk quota in bytes (at least one MiB: a tmpfs of size 0 would be unbounded).
pub(crate) fn disk_bytes(limits: &proctor_core::Limits) -> u64 {
    limits.disk_mb.max(1).saturating_mul(1 << 20)
}

/// Copies the run's scratch to `job.collect`, if asked, off the async runtime; then the
/// scratch (its tmpfs) is released.
pub(crate) async fn collect(
    ws: &crate::workspace::Workspace,
    job: &Job,
    scratch: Option<std::os::fd::OwnedFd>,
) -> Result<(), JobError> {
    if job.collect.is_none() {
        return Ok(());
    }
    let max = disk_bytes(&job.limits);
    let dest = job.collect.clone();
    let work = ws.work.clone();
    tokio::task::spawn_blocking(move || {
        crate::workspace::collect(&work, dest.as_deref(), scratch.as_ref(), max)
    })
    .await
    .map_err(|e| JobError::Engine(format!("collecting the run's files failed: {e}")))?
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
    let killer = Killer::new(None, pgid);
    let unwatched = DiskWatch::default();
    let observed = supervise(stdout, stderr, exit, job, killer, started, &unwatched).await;
    collect(ws, job, None).await?;
    Ok(classify(observed, None, &job.limits, None))
}
