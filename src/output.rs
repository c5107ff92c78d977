//! The only place that prints: results on stdout, progress and warnings on stderr.
//!
//! `--output json` prints exactly one JSON document on stdout per command, errors included.
//! Progress goes to stderr (silenced by `-q`): bars on a terminal (colour only there, and not
//! with `--output json`), plain lines at most every few seconds elsewhere, so a Jenkins console
//! stays readable. Logs and messages are printed around the bars, never into them.
//!
//! No write here fails or panics: a closed stdout (`release show 1 | head -1`) or stderr (a
//! dropped ssh session) loses the text, never the step that was printing it. A result that
//! cannot be printed is a quiet exit, as in ripgrep.

use std::fmt;
use std::io::{self, IsTerminal, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{
    HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle,
};

use crate::cli::OutputFormat;
use crate::error::ExitStatus;
use crate::redact;

/// What a command produced: a line (or a few) for people and a document for scripts.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Text for `--output text`.
    pub(crate) text: String,
    /// Document for `--output json`.
    pub(crate) json: serde_json::Value,
}

impl Outcome {
    /// `text` for people and `doc`, a `Serialize` struct (the documented keys and types of
    /// docs/output.md), for scripts. Plain structs of strings, numbers and lists always
    /// serialize, hence no error.
    pub(crate) fn new(text: String, doc: &impl serde::Serialize) -> Self {
        Self {
            text,
            json: serde_json::to_value(doc).unwrap_or_default(),
        }
    }
}

/// Prints results, progress and warnings.
#[derive(Debug)]
pub(crate) struct Printer {
    format: OutputFormat,
    quiet: bool,
    terminal: bool,
}

/// Off a terminal, progress lines come at most this often.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A command line clap refused, or the help or version it answered: clap's own text (help on
/// stdout, errors on stderr), plus one JSON error document on stdout for a usage error when
/// `json`. Returns the exit status: 0 for help, 2 (usage) otherwise.
pub(crate) fn command_line_error(err: &clap::Error, json: bool) -> ExitStatus {
    let _ = err.print();
    if !err.use_stderr() {
        return ExitStatus::Success;
    }
    if json {
        let message = match err.kind() {
            clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                "no command given: `release --help` lists them".to_owned()
            }
            _ => err
                .render()
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned(),
        };
        let doc = ErrorDoc::new(Some(&message), &[], ExitStatus::Usage as u8);
        to_stdout(format_args!("{}\n", doc.to_json()));
    }
    ExitStatus::Usage
}

/// The document of a command that failed (docs/output.md, "Errors").
#[derive(serde::Serialize)]
struct ErrorDoc<'a> {
    error: ErrorBody<'a>,
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    /// The error, `null` only if there is no message at all.
    message: Option<&'a String>,
    /// What led to it, outermost first.
    causes: &'a [String],
    exit_code: u8,
}

impl<'a> ErrorDoc<'a> {
    fn new(message: Option<&'a String>, causes: &'a [String], exit_code: u8) -> Self {
        Self {
            error: ErrorBody {
                message,
                causes,
                exit_code,
            },
        }
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One error line on stderr, now, from anywhere (a second signal ending the process): no
/// printer needed, and a closed stderr is ignored.
pub(crate) fn error_now(message: &str) {
    use std::io::Write as _;
    let _ = writeln!(io::stderr(), "error: {message}");
}

impl Printer {
    /// A printer for the chosen format.
    pub(crate) fn new(format: OutputFormat, quiet: bool) -> Self {
        Self {
            format,
            quiet,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// A step starts or ends: always shown unless `-q`.
    pub(crate) fn status(&self, message: &str) {
        let message = redact::urls(message);
        if !self.quiet {
            around_bars(|| to_stderr(format_args!("{message}\n")));
        }
    }

    /// A warning: always shown, even with `-q`.
    pub(crate) fn warn(&self, message: &str) {
        let message = redact::urls(message);
        around_bars(|| to_stderr(format_args!("warning: {message}\n")));
    }

    /// The command's result.
    pub(crate) fn outcome(&self, outcome: &Outcome) {
        let outcome = &redacted(outcome);
        match self.format {
            OutputFormat::Text => {
                if !outcome.text.is_empty() {
                    to_stdout(format_args!("{}\n", outcome.text.trim_end()));
                }
            }
            OutputFormat::Json => to_stdout(format_args!("{}\n", outcome.json)),
        }
    }

    /// One error line on stderr, whatever the format (the result went to stdout already).
    pub(crate) fn error_line(&self, message: &str) {
        let message = redact::urls(message);
        to_stderr(format_args!("error: {message}\n"));
    }

    /// The command's error: `error: …` and `Caused by:` lines, or a JSON document.
    pub(crate) fn error(&self, messages: &[String], exit_code: u8) {
        let messages: Vec<String> = messages.iter().map(|m| redact::urls(m).into()).collect();
        match self.format {
            OutputFormat::Text => {
                let mut lines = messages.iter();
                if let Some(first) = lines.next() {
                    to_stderr(format_args!("error: {first}\n"));
                }
                for cause in lines {
                    to_stderr(format_args!("  Caused by: {cause}\n"));
                }
            }
            OutputFormat::Json => {
                let causes = messages.get(1..).unwrap_or_default();
                let doc = ErrorDoc::new(messages.first(), causes, exit_code);
                to_stdout(format_args!("{}\n", doc.to_json()));
                if let Some(first) = messages.first() {
                    to_stderr(format_args!("error: {first}\n"));
                }
            }
        }
    }
}

/// The outcome with every URL's credentials masked (the only place that prints is the one
/// place that cannot forget to).
fn redacted(outcome: &Outcome) -> Outcome {
    let mut json = outcome.json.clone();
    redact::json(&mut json);
    Outcome {
        text: redact::urls(&outcome.text).into_owned(),
        json,
    }
}

/// Progress bars share one draw target, so that messages and logs can be printed around them.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Runs `print` with every progress bar hidden meanwhile (they are redrawn after it).
fn around_bars<R>(print: impl FnOnce() -> R) -> R {
    bars().suspend(print)
}

/// The writer of `tracing` logs: stderr, with any progress bar hidden while a line is written,
/// so that logs never land inside a bar.
pub(crate) fn log_writer() -> redact::Writer<LogWriter> {
    redact::Writer(LogWriter)
}

/// See [`log_writer`].
#[derive(Debug)]
pub(crate) struct LogWriter;

// Failures are swallowed: tracing-subscriber reports a failed write with `eprintln!`, which
// panics when stderr is a broken pipe.
impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = around_bars(|| io::stderr().write_all(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// Copies a hook's output to stderr (around any bar). An error means stderr is gone; the
/// caller stops forwarding and keeps only its log.
pub(crate) fn forward_to_stderr(bytes: &[u8]) -> io::Result<()> {
    around_bars(|| {
        let mut err = io::stderr().lock();
        err.write_all(bytes)?;
        err.flush()
    })
}

/// Writes to stderr; a closed or broken stderr loses the text and nothing else.
fn to_stderr(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// Writes a result to stdout; a reader that went away (`| head`) makes it a quiet no-op.
fn to_stdout(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let _ = out.write_fmt(args).and_then(|()| out.flush());
}

impl Printer {
    /// Progress of a transfer of `total` bytes (if known) named `label`: a bar on a terminal,
    /// a plain line every few seconds elsewhere (a Jenkins console), nothing with `-q`.
    pub(crate) fn bytes_progress(&self, label: &str, total: Option<u64>) -> BytesProgress {
        let inner = if self.quiet {
            Progress::Off
        } else if self.terminal {
            Progress::Bar(self.bar(label, total))
        } else {
            Progress::Plain(PlainProgress::new(label, total, Instant::now()))
        };
        BytesProgress(Arc::new(inner))
    }

    fn bar(&self, label: &str, total: Option<u64>) -> ProgressBar {
        // Colour only for people: a terminal (checked by the caller) and text output.
        let colour = if self.format == OutputFormat::Text {
            ".cyan/blue"
        } else {
            ""
        };
        let (bar, template) = match total {
            Some(total) => (
                ProgressBar::new(total),
                format!(
                    "{{msg}} [{{bar:30{colour}}}] {{bytes}}/{{total_bytes}} \
                     ({{bytes_per_sec}}, {{eta}})"
                ),
            ),
            None => (
                ProgressBar::no_length(),
                "{spinner} {msg} {bytes} ({bytes_per_sec})".to_owned(),
            ),
        };
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let bar = bar
            .with_style(style)
            .with_message(label.to_owned())
            .with_finish(ProgressFinish::AndClear);
        bars().add(bar)
    }
}

/// A running byte count (see [`Printer::bytes_progress`]); clones count into the same total,
/// from any thread.
#[derive(Debug, Clone)]
pub(crate) struct BytesProgress(Arc<Progress>);

#[derive(Debug)]
enum Progress {
    Off,
    Bar(ProgressBar),
    Plain(PlainProgress),
}

impl BytesProgress {
    /// `n` more bytes went through.
    pub(crate) fn inc(&self, n: u64) {
        match &*self.0 {
            Progress::Off => {}
            Progress::Bar(bar) => bar.inc(n),
            Progress::Plain(plain) => {
                if let Some(line) = plain.add(n, Instant::now()) {
                    to_stderr(format_args!("{line}\n"));
                }
            }
        }
    }

    /// The transfer ended: the bar is removed (the command's result says the rest).
    pub(crate) fn finish(&self) {
        if let Progress::Bar(bar) = &*self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Progress off a terminal: a line at most every [`PLAIN_PROGRESS_EVERY`], the first one only
/// once that much time has passed (a short transfer prints none).
#[derive(Debug)]
struct PlainProgress {
    label: String,
    total: Option<u64>,
    started: Instant,
    done: AtomicU64,
    next_line: Mutex<Duration>,
}

impl PlainProgress {
    fn new(label: &str, total: Option<u64>, started: Instant) -> Self {
        Self {
            label: label.to_owned(),
            total,
            started,
            done: AtomicU64::new(0),
            next_line: Mutex::new(PLAIN_PROGRESS_EVERY),
        }
    }

    /// Counts `n` bytes; returns the line to print if one is due at `now`.
    fn add(&self, n: u64, now: Instant) -> Option<String> {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let elapsed = now.saturating_duration_since(self.started);
        let mut next = self.next_line.lock().unwrap_or_else(|e| e.into_inner());
        if elapsed < *next {
            return None;
        }
        *next = elapsed + PLAIN_PROGRESS_EVERY;
        let rate = human_bytes((done as f64 / elapsed.as_secs_f64().max(0.001)) as u64);
        Some(match self.total {
            Some(total) if total > 0 => format!(
                "{}: {} of {} ({}%, {rate}/s)",
                self.label,
                human_bytes(done),
                human_bytes(total),
                done.saturating_mul(100) / total
            ),
            _ => format!("{}: {} ({rate}/s)", self.label, human_bytes(done)),
        })
    }
}

/// A size for people, as the progress bars print it (`12.30 MiB`, `512 B`).
pub(crate) fn human_bytes(bytes: u64) -> String {
    HumanBytes(bytes).to_string()
}

/// The first 12 characters of a commit id: enough to be unique in any real repository.
pub(crate) fn short_commit(commit: &str) -> &str {
    commit
        .char_indices()
        .nth(12)
        .map_or(commit, |(end, _)| &commit[..end])
}

/// Seconds since `started`, to the millisecond, for JSON documents.
pub(crate) fn seconds_since(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// Left-aligned columns two spaces apart, each as wide as its widest cell; trailing spaces
/// trimmed.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["A".to_owned(), "BB".to_owned(), "".to_owned()],
            vec!["ccc".to_owned(), "d".to_owned(), "x".to_owned()],
        ];
        assert_eq!(table(&rows), "A    BB\nccc  d   x\n");
    }

    #[test]
    fn sizes_read_like_the_progress_bars() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.00 MiB");
    }

    #[test]
    fn short_commits_keep_twelve_characters() {
        assert_eq!(short_commit("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_commit("abc"), "abc");
    }

    #[test]
    fn plain_progress_prints_every_few_seconds_only() {
        let start = Instant::now();
        let plain = PlainProgress::new("downloading web-3.tar.gz", Some(4 << 20), start);
        assert_eq!(plain.add(1 << 20, start + Duration::from_secs(1)), None);
        let line = plain
            .add(1 << 20, start + PLAIN_PROGRESS_EVERY)
            .expect("a line once the interval passed");
        assert!(
            line.starts_with("downloading web-3.tar.gz: 2.00 MiB of 4.00 MiB (50%"),
            "{line}"
        );
        assert_eq!(plain.add(1, start + PLAIN_PROGRESS_EVERY * 3 / 2), None);
        assert!(plain.add(1, start + PLAIN_PROGRESS_EVERY * 2).is_some());
    }

    #[test]
    fn plain_progress_without_a_total_counts_bytes() {
        let start = Instant::now();
        let plain = PlainProgress::new("uploading", None, start);
        let line = plain.add(3 << 20, start + PLAIN_PROGRESS_EVERY).unwrap();
        assert!(line.starts_with("uploading: 3.00 MiB ("), "{line}");
        assert!(!line.contains('\u{1b}'), "no escape codes off a terminal");
    }

    #[test]
    fn quiet_means_no_progress() {
        let printer = Printer::new(OutputFormat::Text, true);
        let progress = printer.bytes_progress("uploading", Some(10));
        progress.inc(10);
        assert!(matches!(*progress.0, Progress::Off));
    }
}
