//! What a running evaluation is doing, for progress displays (`proctor challenge submit`
//! prints it while training runs): its phase and, while the participant's code trains,
//! the last line that code printed. Inference output never reaches it: on the official
//! split it could hold the test inputs.

use std::sync::{Arc, Mutex};

use proctor_core::{OutputTap, Stream};
use serde::{Deserialize, Serialize};

/// Longest line shown, in characters.
const MAX_LINE_CHARS: usize = 200;
/// Longest unfinished line kept per stream (its tail), in bytes.
const MAX_PARTIAL_BYTES: usize = 4096;

/// A running evaluation's progress, shared between the evaluation and its watchers.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    phase: &'static str,
    last_line: Option<String>,
    /// The unfinished line of stdout and of stderr.
    partial: [Vec<u8>; 2],
}

/// A snapshot of [`Progress`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressView {
    /// `preparing`, `training`, `counting`, `inference` or `scoring`.
    pub phase: String,
    /// The last complete line the participant's training printed (stdout or stderr,
    /// `\r` ends a line too), control characters removed; none outside training.
    pub last_line: Option<String>,
}

impl Progress {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enters `phase`, forgetting the previous phase's output.
    pub fn enter(&self, phase: &'static str) {
        let mut s = self.state();
        *s = State {
            phase,
            ..State::default()
        };
    }

    /// A tap for the current phase's run: every complete line it prints becomes the last
    /// line, until the next phase starts.
    pub fn tap(&self) -> OutputTap {
        let progress = self.clone();
        OutputTap::new(move |stream, chunk| progress.feed(stream, chunk))
    }

    fn feed(&self, stream: Stream, chunk: &[u8]) {
        let mut s = self.state();
        let partial = &mut s.partial[stream as usize];
        partial.extend_from_slice(chunk);
        let mut last = None;
        if let Some(end) = partial.iter().rposition(|&b| b == b'\n' || b == b'\r') {
            last = partial[..end]
                .split(|&b| b == b'\n' || b == b'\r')
                .rev()
                .map(printable)
                .find(|line| !line.is_empty());
            partial.drain(..=end);
        }
        if partial.len() > MAX_PARTIAL_BYTES {
            let excess = partial.len() - MAX_PARTIAL_BYTES;
            partial.drain(..excess);
        }
        if last.is_some() {
            s.last_line = last;
        }
    }

    /// What it is doing now.
    pub fn view(&self) -> ProgressView {
        let s = self.state();
        ProgressView {
            phase: s.phase.to_string(),
            last_line: s.last_line.clone(),
        }
    }
}

/// A line as it can be shown on someone's terminal: no control characters (escape
/// sequences included), trimmed, at most [`MAX_LINE_CHARS`].
fn printable(line: &[u8]) -> String {
    let mut text = String::new();
    let decoded = String::from_utf8_lossy(line);
    let mut chars = decoded.chars();
    while let Some(c) = chars.next() {
        match c {
            // A CSI escape sequence (colours, cursor moves): ESC [ parameters final-byte.
            '\x1b' => {
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            c if c.is_control() => {}
            c => text.push(c),
        }
    }
    let text = text.trim();
    match text.char_indices().nth(MAX_LINE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_complete_line_of_either_stream_is_shown() {
        let p = Progress::default();
        p.enter("training");
        let tap = p.tap();
        tap.feed(Stream::Stdout, b"epoch 1 loss 0.9\nepoch 2 lo");
        assert_eq!(p.view().last_line.as_deref(), Some("epoch 1 loss 0.9"));
        // The unfinished line is completed by its own stream, not by the other one.
        tap.feed(Stream::Stderr, b"warning: slow\n");
        assert_eq!(p.view().last_line.as_deref(), Some("warning: slow"));
        tap.feed(Stream::Stdout, b"ss 0.5\n\n   \n");
        assert_eq!(p.view().last_line.as_deref(), Some("epoch 2 loss 0.5"));
        // A progress bar redraws its line with \r; escape sequences are dropped.
        tap.feed(
            Stream::Stderr,
            b" 40%|####  |\r \x1b[31m50%|#####\x1b[0m |\r",
        );
        assert_eq!(p.view().last_line.as_deref(), Some("50%|##### |"));
        assert_eq!(p.view().phase, "training");
        // A new phase starts with nothing shown.
        p.enter("inference");
        assert_eq!(
            p.view(),
            ProgressView {
                phase: "inference".into(),
                last_line: None
            }
        );
    }

    #[test]
    fn lines_and_unfinished_lines_are_bounded() {
        let p = Progress::default();
        let tap = p.tap();
        tap.feed(Stream::Stdout, &vec![b'x'; 1 << 20]);
        assert!(p.state().partial[0].len() <= MAX_PARTIAL_BYTES);
        tap.feed(Stream::Stdout, b"\n");
        let line = p.view().last_line.unwrap();
        assert_eq!(line.chars().count(), MAX_LINE_CHARS + 1, "{line}");
        assert!(line.ends_with('…'));
    }
}
