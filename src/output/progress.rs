//! The progress bar of `fleetaudit scan` on a terminal: hosts done / total, how many were audited and how many
//! not, and the time left. Drawn on stderr by indicatif from the scheduler's [`ProgressEvent`]s.
//!
//! Owns: drawing, and keeping log lines from tearing the bar ([`LogWriter`]). Must not touch: the scan (it only
//! listens; the scheduler never waits for it). Whether to draw at all is the command line's decision.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use tokio::sync::mpsc;

use crate::scan::ProgressEvent;

/// The bar being drawn, if any, so that log lines can be printed above it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A progress bar fed by a scan's events, on its own thread.
pub struct Progress {
    tx: mpsc::UnboundedSender<ProgressEvent>,
    thread: JoinHandle<()>,
}

impl Progress {
    /// Starts listening; the bar appears when the scan says how many hosts it has.
    pub fn start() -> Progress {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let thread = std::thread::spawn(move || {
            // Hosts not audited; audited = position - this. Read by the template at each draw, so a frame
            // never shows a count that disagrees with the position.
            let not_audited = Arc::new(AtomicU64::new(0));
            while let Some(event) = rx.blocking_recv() {
                match event {
                    ProgressEvent::Started { hosts, .. } => {
                        let bar = ProgressBar::with_draw_target(Some(hosts as u64), ProgressDrawTarget::stderr());
                        let (not, not_for_ok) = (not_audited.clone(), not_audited.clone());
                        bar.set_style(
                            // The bar takes what the line has left, so nothing wraps on a narrow terminal.
                            ProgressStyle::with_template(
                                "{spinner} {pos}/{len} hosts ({ok} audited, {not} not audited), ETA {eta} [{wide_bar}]",
                            )
                            .expect("a valid template")
                            .with_key("ok", move |s: &ProgressState, w: &mut dyn fmt::Write| {
                                let _ = write!(w, "{}", s.pos().saturating_sub(not_for_ok.load(Ordering::Relaxed)));
                            })
                            .with_key("not", move |_: &ProgressState, w: &mut dyn fmt::Write| {
                                let _ = write!(w, "{}", not.load(Ordering::Relaxed));
                            })
                            .progress_chars("=> "),
                        );
                        bar.enable_steady_tick(Duration::from_millis(200));
                        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
                    }
                    ProgressEvent::HostDone { audited, .. } => {
                        if !audited {
                            not_audited.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(bar) = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                            bar.inc(1);
                        }
                    }
                }
            }
            if let Some(bar) = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).take() {
                bar.finish_and_clear();
            }
        });
        Progress { tx, thread }
    }

    /// The sender to put in [`crate::scan::ScanOptions::progress`].
    pub fn sender(&self) -> mpsc::UnboundedSender<ProgressEvent> {
        self.tx.clone()
    }

    /// Waits until every sender is gone (the scan is over), then clears the bar.
    pub fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// stderr for log lines: while a bar is drawn, each line is printed above it instead of through it.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tracing's formatter hands over one whole event per call.
        let bar = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}
