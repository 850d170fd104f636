//! Progress reporting while installing: an indicatif spinner when stderr is
//! a terminal, plain one-line messages otherwise, nothing when quiet.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Number of visible install steps: resolving uv, creating venv, installing
/// packages, verifying.
pub(crate) const STEPS: usize = 4;

enum Mode {
    Quiet,
    Plain,
    Bar(ProgressBar),
}

pub(crate) struct Progress {
    mode: Mode,
    /// The message of the current step, to prefix streamed tool lines with.
    current: Mutex<String>,
}

impl Progress {
    /// A reporter that draws a spinner if stderr is a terminal, prints plain
    /// lines if not, and does nothing at all if `quiet`.
    pub(crate) fn new(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner:.cyan} proctor runtime {prefix:.bold} [{elapsed}] {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            Mode::Bar(bar)
        } else {
            Mode::Plain
        };
        Progress {
            mode,
            current: Mutex::new(String::new()),
        }
    }

    /// A reporter that shows nothing.
    #[cfg(test)]
    pub(crate) fn quiet() -> Self {
        Self::new(true)
    }

    fn set_current(&self, msg: &str) {
        if let Ok(mut cur) = self.current.lock() {
            msg.clone_into(&mut cur);
        }
    }

    /// Start step `index` (1-based) of [`STEPS`].
    pub(crate) fn step(&self, index: usize, msg: &str) {
        tracing::info!(step = index, "proctor runtime: {msg}");
        self.set_current(msg);
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain => eprintln!("proctor runtime [{index}/{STEPS}] {msg}"),
            Mode::Bar(bar) => {
                bar.set_prefix(format!("[{index}/{STEPS}]"));
                bar.set_message(msg.to_owned());
            }
        }
    }

    /// A note outside the numbered steps (e.g. waiting for a lock).
    pub(crate) fn note(&self, msg: &str) {
        tracing::info!("proctor runtime: {msg}");
        self.set_current(msg);
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain => eprintln!("proctor runtime: {msg}"),
            Mode::Bar(bar) => bar.set_message(msg.to_owned()),
        }
    }

    /// A line a tool printed on stderr while the current step runs.
    pub(crate) fn line(&self, line: &str) {
        tracing::debug!(target: "proctor_runtime::tool", "{line}");
        if let Mode::Bar(bar) = &self.mode {
            let cur = self.current.lock().map(|c| c.clone()).unwrap_or_default();
            bar.set_message(format!("{cur}: {}", line.trim()));
        }
    }

    /// The install finished; `msg` says so.
    pub(crate) fn finish(&self, msg: &str) {
        tracing::info!("proctor runtime: {msg}");
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain => eprintln!("proctor runtime: {msg}"),
            Mode::Bar(bar) => {
                bar.finish_and_clear();
                eprintln!("proctor runtime: {msg}");
            }
        }
    }

    /// Remove the display without a message (nothing was installed, or the
    /// caller reports an error itself).
    pub(crate) fn clear(&self) {
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}
