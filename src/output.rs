//! The only place that prints: results on stdout, progress and warnings on stderr.
//!
//! `--output json` prints exactly one JSON document on stdout per command, errors included.
//! Progress lines go to stderr (silenced by `-q`); off a terminal they are plain lines, at most
//! one every few seconds, so a Jenkins console stays readable.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cli::OutputFormat;

/// What a command produced: a line (or a few) for people and a document for scripts.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Text for `--output text`.
    pub text: String,
    /// Document for `--output json`.
    pub json: serde_json::Value,
}

/// Prints results, progress and warnings.
#[derive(Debug)]
pub struct Printer {
    format: OutputFormat,
    quiet: bool,
    terminal: bool,
    last_progress: Mutex<Option<Instant>>,
}

/// Off a terminal, progress lines come at most this often.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Printer {
    /// A printer for the chosen format.
    pub fn new(format: OutputFormat, quiet: bool) -> Self {
        Self {
            format,
            quiet,
            terminal: std::io::stderr().is_terminal(),
            last_progress: Mutex::new(None),
        }
    }

    /// The output format.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// A step starts or ends: always shown unless `-q`.
    pub fn status(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// Progress within a long step: on a terminal, rewritten in place; elsewhere, a plain line
    /// at most every few seconds.
    pub fn progress(&self, message: &str) {
        if self.quiet {
            return;
        }
        if self.terminal {
            eprint!("\r\x1b[2K{message}");
            return;
        }
        let mut last = self.last_progress.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= PLAIN_PROGRESS_EVERY) {
            *last = Some(Instant::now());
            eprintln!("{message}");
        }
    }

    /// Ends an in-place progress line on a terminal.
    pub fn progress_done(&self) {
        if self.terminal && !self.quiet {
            eprint!("\r\x1b[2K");
        }
    }

    /// A warning: always shown, even with `-q`.
    pub fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }

    /// The command's result.
    pub fn outcome(&self, outcome: &Outcome) {
        match self.format {
            OutputFormat::Text => {
                if !outcome.text.is_empty() {
                    println!("{}", outcome.text.trim_end());
                }
            }
            OutputFormat::Json => println!("{}", outcome.json),
        }
    }

    /// One error line on stderr, whatever the format (the result went to stdout already).
    pub fn error_line(&self, message: &str) {
        eprintln!("error: {message}");
    }

    /// The command's error: `error: …` and `Caused by:` lines, or a JSON document.
    pub fn error(&self, messages: &[String], exit_code: u8) {
        match self.format {
            OutputFormat::Text => {
                let mut lines = messages.iter();
                if let Some(first) = lines.next() {
                    eprintln!("error: {first}");
                }
                for cause in lines {
                    eprintln!("  Caused by: {cause}");
                }
            }
            OutputFormat::Json => {
                let doc = serde_json::json!({
                    "error": {
                        "message": messages.first(),
                        "causes": messages.get(1..).unwrap_or_default(),
                        "exit_code": exit_code,
                    }
                });
                println!("{doc}");
                if let Some(first) = messages.first() {
                    eprintln!("error: {first}");
                }
            }
        }
    }
}
