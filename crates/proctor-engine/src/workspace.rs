//! A run's directory: `inputs/` (read-only in the sandbox) and `work/` (its scratch, cwd).

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use proctor_core::{Command, Job, JobError};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The directories of one run, removed when dropped.
pub(crate) struct Workspace {
    /// What to remove at the end: one directory, or two when inputs live apart.
    roots: Vec<PathBuf>,
    pub inputs: PathBuf,
    pub work: PathBuf,
}

/// How the interpreter is told what to run, relative to the workspace.
pub(crate) enum Target {
    Script(PathBuf),
    Module(String),
}

impl Workspace {
    /// Creates `<parent>/<unique>/{inputs,work}` and stages the job's inputs.
    pub fn create(parent: &Path, job: &Job) -> Result<(Workspace, Target), JobError> {
        Workspace::create_apart(parent, parent, job)
    }

    /// Like [`Workspace::create`], with the inputs in `<inputs_parent>/<unique>` when that
    /// differs from `parent`: the warm pool shows its runs' inputs read-only and their
    /// scratch read-write, so the two must live in different trees.
    pub fn create_apart(
        parent: &Path,
        inputs_parent: &Path,
        job: &Job,
    ) -> Result<(Workspace, Target), JobError> {
        let name = format!(
            "{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let root = parent.join(&name);
        let (inputs, roots) = if inputs_parent == parent {
            (root.join("inputs"), vec![root.clone()])
        } else {
            let inputs = inputs_parent.join(&name);
            (inputs.clone(), vec![root.clone(), inputs])
        };
        let ws = Workspace {
            inputs,
            work: root.join("work"),
            roots,
        };
        let io = |what: &str, e: std::io::Error| JobError::Engine(format!("{what}: {e}"));
        fs::create_dir_all(&ws.inputs).map_err(|e| io("cannot create the run directory", e))?;
        fs::create_dir_all(ws.work.join(".tmp"))
            .map_err(|e| io("cannot create the scratch directory", e))?;
        if ws.roots.len() > 1 {
            // Runs find their inputs at `../inputs` wherever they live.
            std::os::unix::fs::symlink(&ws.inputs, root.join("inputs"))
                .map_err(|e| io("cannot link the inputs", e))?;
        }
        for input in &job.inputs {
            if !input.host.exists() {
                return Err(JobError::MissingInput {
                    path: input.host.clone(),
                });
            }
            if input.name.contains('/') || input.name.starts_with('.') || input.name.is_empty() {
                return Err(JobError::Engine(format!(
                    "input name {:?} must be a plain file name",
                    input.name
                )));
            }
            stage(&input.host, &ws.inputs.join(&input.name))
                .map_err(|e| io(&format!("cannot stage input {}", input.host.display()), e))?;
        }
        let target = match &job.command {
            Command::Script { path, .. } => {
                // A script given by host path is staged as an input unless it already is one.
                if path.is_absolute() && path.exists() && !path.starts_with(&ws.inputs) {
                    let name = path
                        .file_name()
                        .map(PathBuf::from)
                        .unwrap_or_else(|| "main.py".into());
                    let staged = ws.inputs.join(&name);
                    if !staged.exists() {
                        stage(path, &staged).map_err(|e| io("cannot stage the script", e))?;
                    }
                    Target::Script(staged)
                } else if path.is_absolute() {
                    return Err(JobError::MissingInput { path: path.clone() });
                } else {
                    Target::Script(ws.work.join(path))
                }
            }
            Command::Module { module, .. } => Target::Module(module.clone()),
            Command::Code { code } => {
                let path = ws.inputs.join("__main__.py");
                fs::write(&path, code).map_err(|e| io("cannot write the code", e))?;
                Target::Script(path)
            }
        };
        Ok((ws, target))
    }
}

/// Copies what the run wrote to `dest` (see `Job::collect`), within bounds: from the
/// scratch tmpfs's root when the run had one, else from its host scratch directory `work`
/// (`--no-sandbox`). `max_bytes` is the run's disk quota. Blocking.
pub(crate) fn collect(
    work: &Path,
    dest: Option<&Path>,
    scratch: Option<&OwnedFd>,
    max_bytes: u64,
) -> Result<(), JobError> {
    let Some(dest) = dest else { return Ok(()) };
    let err =
        |what: &str, e: std::io::Error| JobError::Engine(format!("{what} {}: {e}", dest.display()));
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(|e| err("cannot create the parent of", e))?;
    }
    let host;
    let from = match scratch {
        Some(fd) => fd,
        None => {
            host = OwnedFd::from(fs::File::open(work).map_err(|e| err("cannot collect into", e))?);
            &host
        }
    };
    let copied = crate::scratch::copy_out(from, dest, max_bytes).map_err(|e| {
        err(
            "cannot copy the run's scratch (the destination must not exist yet) to",
            e,
        )
    })?;
    if copied.skipped > 0 {
        tracing::info!(
                "collected {} entries ({} bytes) into {}; {} left behind (links, special files, too deep or over the bounds)",
                copied.entries,
                copied.bytes,
                dest.display(),
                copied.skipped
            );
    }
    Ok(())
}

impl Workspace {
    /// Removes the run's directories on a blocking thread and waits for it.
    pub async fn dispose(mut self) {
        for root in std::mem::take(&mut self.roots) {
            crate::tree::remove_tree_blocking(root).await;
        }
    }

    /// Removes the run's directories now, on this (blocking) thread.
    pub fn remove_now(mut self) {
        for root in std::mem::take(&mut self.roots) {
            if let Err(e) = crate::tree::remove_tree(&root) {
                tracing::warn!("cannot remove {}: {e}", root.display());
            }
        }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        for root in std::mem::take(&mut self.roots) {
            crate::tree::remove_tree_detached(root);
        }
    }
}

/// Hard-links (or copies, across filesystems) a file or a directory tree. A file others
/// may not read is copied and the copy made readable: in root mode the run has its own
/// unprivileged id, and what proctor gives it as an input it must be able to read.
fn stage(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() {
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            stage(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.file_type().is_symlink() {
        stage(&fs::canonicalize(from)?, to)
    } else if meta.permissions().mode() & 0o004 == 0 {
        fs::copy(from, to)?;
        fs::set_permissions(to, fs::Permissions::from_mode(0o644))
    } else {
        fs::hard_link(from, to).or_else(|_| fs::copy(from, to).map(|_| ()))
    }
}

impl Target {
    /// Interpreter arguments for a cold run.
    pub fn argv(&self, args: &[String]) -> Vec<String> {
        let mut argv = vec!["-u".to_string(), "-s".to_string()];
        match self {
            Target::Script(p) => argv.push(p.display().to_string()),
            Target::Module(m) => {
                argv.push("-m".into());
                argv.push(m.clone());
            }
        }
        argv.extend(args.iter().cloned());
        argv
    }
}

/// The arguments after the target.
pub(crate) fn job_args(job: &Job) -> &[String] {
    match &job.command {
        Command::Script { args, .. } | Command::Module { args, .. } => args,
        Command::Code { .. } => &[],
    }
}
