//! The access log: one JSON line per tunnelled connection (on each side), per ingress
//! request and per egress decision. [`entry`] is the line; [`config`] the section;
//! this module owns where lines go.
//!
//! The data path never waits on the disk: a line goes into a bounded queue that one
//! writer thread drains (a line that finds the queue full is dropped and counted in
//! `isthmus_gateway_access_log_dropped_total`). The writer flushes whenever the queue
//! is empty, so a line is on disk within moments of the connection's end. `reopen`
//! (the CLI calls it on SIGHUP) closes and reopens the file, for log rotation.

pub mod config;
pub mod entry;

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use prometheus_client::metrics::counter::Counter;

use config::{AccessLogSettings, AccessLogSink};
use entry::Entry;

/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 16 * 1024;

enum Message {
    Line(String),
    Reopen,
    Flush(SyncSender<()>),
}

/// Why the access log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("access_log.path {path}: {source}")]
pub struct AccessLogError {
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

/// A handle on a gateway's access log; cheap to clone. The default writes nothing.
#[derive(Clone, Default)]
pub struct AccessLog {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    queue: SyncSender<Message>,
    /// Admitted traffic is logged when its request id hashes below this.
    threshold: u64,
    dropped: Counter,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("on", &self.inner.is_some())
            .finish()
    }
}

impl AccessLog {
    /// Opens the log `settings` name (a file relative to `base`) and starts its writer;
    /// `dropped` counts lines the full queue refused.
    pub fn open(
        settings: &AccessLogSettings,
        base: &Path,
        dropped: Counter,
    ) -> Result<Self, AccessLogError> {
        let output = match &settings.sink {
            AccessLogSink::Stdout => Output::Stdout,
            AccessLogSink::File(path) => {
                let path = base.join(path);
                let file = append(&path).map_err(|source| AccessLogError {
                    path: path.clone(),
                    source,
                })?;
                Output::File {
                    path,
                    file: BufWriter::new(file),
                }
            }
        };
        let (queue, lines) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(&lines, output))
            .map_err(|source| AccessLogError {
                path: PathBuf::from("<writer thread>"),
                source,
            })?;
        Ok(Self {
            inner: Some(Arc::new(Inner {
                queue,
                threshold: threshold(settings.sample),
                dropped,
            })),
        })
    }

    /// Whether a line about the connection with `request_id` is written: always for a
    /// fault, for admitted traffic when the id falls in the sample. Both sides of a
    /// tunnel hash the same id, so with the same ratio they keep the same connections.
    pub fn wants(&self, request_id: u64, clean: bool) -> bool {
        match &self.inner {
            None => false,
            Some(inner) => {
                !clean || inner.threshold == u64::MAX || mix(request_id) < inner.threshold
            }
        }
    }

    /// Writes `entry` (keyed by `request_id` for sampling) unless it is sampled away.
    pub fn record(&self, request_id: u64, entry: &Entry) {
        let Some(inner) = &self.inner else { return };
        if !self.wants(request_id, entry.is_clean()) {
            return;
        }
        match inner.queue.try_send(Message::Line(entry.to_line())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                inner.dropped.inc();
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Closes and reopens the file (after a log rotation moved it away).
    pub fn reopen(&self) {
        if let Some(inner) = &self.inner {
            let _ = inner.queue.send(Message::Reopen);
        }
    }

    /// Waits until every line recorded so far is written out.
    pub fn flush(&self) {
        if let Some(inner) = &self.inner {
            let (done, wait) = sync_channel(1);
            if inner.queue.send(Message::Flush(done)).is_ok() {
                let _ = wait.recv();
            }
        }
    }
}

/// A line being filled in while its connection or request is decided and carried.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) entry: Entry,
    began: std::time::Instant,
    /// The key its sample is drawn by (the tunnel's request id).
    pub(crate) request_id: u64,
}

impl Pending {
    /// A line of `direction` beginning now.
    pub(crate) fn new(direction: entry::Direction) -> Self {
        Self {
            entry: Entry::new(direction, std::time::SystemTime::now()),
            began: std::time::Instant::now(),
            request_id: 0,
        }
    }

    /// A line of `direction` about the accepted connection `tcp`.
    pub(crate) fn of_tcp(direction: entry::Direction, tcp: &tokio::net::TcpStream) -> Self {
        let mut line = Self::new(direction);
        line.entry.downstream_remote_address = tcp.peer_addr().ok().map(|a| a.to_string());
        line.entry.downstream_local_address = tcp.local_addr().ok().map(|a| a.to_string());
        line
    }

    /// Sets the request id (the tunnel's, the same on both gateways).
    pub(crate) fn request(&mut self, id: u64) {
        self.request_id = id;
        self.entry.request_id = Some(entry::request_id(id));
    }

    /// Sets `trace_id` and `span_id` from this gateway's span of the connection.
    pub(crate) fn traced(&mut self, span: &crate::telemetry::Span) {
        (self.entry.trace_id, self.entry.span_id) = span.ids();
    }

    /// Ends the line (its duration; how `summary`'s splice ended) and writes it.
    pub(crate) fn write(mut self, log: &AccessLog, summary: Option<&crate::splice::Summary>) {
        self.entry.ended(self.began, summary);
        log.record(self.request_id, &self.entry);
    }
}

enum Output {
    Stdout,
    File {
        path: PathBuf,
        file: BufWriter<File>,
    },
}

impl Output {
    fn write(&mut self, line: &str) -> io::Result<()> {
        match self {
            Self::Stdout => io::stdout().lock().write_all(line.as_bytes()),
            Self::File { file, .. } => file.write_all(line.as_bytes()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout => io::stdout().lock().flush(),
            Self::File { file, .. } => file.flush(),
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        if let Self::File { path, file } = self {
            file.flush()?;
            *file = BufWriter::new(append(path)?);
        }
        Ok(())
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread: until every handle is gone, writes lines and flushes whenever
/// nothing more is waiting. A write error is reported once per run of errors, not per
/// line.
fn write_lines(lines: &Receiver<Message>, mut output: Output) {
    let mut failing = false;
    let mut report = |result: io::Result<()>, what: &str| match result {
        Ok(()) => failing = false,
        Err(e) if !failing => {
            failing = true;
            tracing::error!(error = %e, "access log: {what} failed; lines are lost until it works again");
        }
        Err(_) => {}
    };
    while let Ok(message) = lines.recv() {
        let mut next = Some(message);
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => report(output.write(&line), "write"),
                Message::Reopen => report(output.reopen(), "reopen"),
                Message::Flush(done) => {
                    report(output.flush(), "flush");
                    let _ = done.send(());
                }
            }
            next = lines.try_recv().ok();
        }
        report(output.flush(), "flush");
    }
}

fn threshold(sample: f64) -> u64 {
    if sample >= 1.0 {
        u64::MAX
    } else if sample <= 0.0 {
        0
    } else {
        // In range: the product is below 2^64.
        (sample * 18_446_744_073_709_551_616.0) as u64
    }
}

/// splitmix64's finalizer: request ids are sequential, their samples must not be.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use entry::{Direction, ResponseFlag};

    fn file_log(dir: &Path, sample: f64) -> AccessLog {
        let settings = AccessLogSettings {
            sink: AccessLogSink::File("access.log".into()),
            sample,
        };
        AccessLog::open(&settings, dir, Counter::default()).expect("opens")
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    #[test]
    fn lines_survive_a_rotation_and_go_to_the_reopened_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = file_log(dir.path(), 1.0);
        let path = dir.path().join("access.log");
        log.record(1, &Entry::new(Direction::Outbound, SystemTime::now()));
        log.flush();
        std::fs::rename(&path, dir.path().join("access.log.1")).expect("rotate");
        // Until the reopen, lines still go to the moved file: none is lost.
        log.record(2, &Entry::new(Direction::Outbound, SystemTime::now()));
        log.reopen();
        log.record(3, &Entry::new(Direction::Inbound, SystemTime::now()));
        log.flush();
        assert_eq!(lines(&dir.path().join("access.log.1")).len(), 2);
        let now = lines(&path);
        assert_eq!(now.len(), 1);
        assert_eq!(now[0]["direction"], "inbound");
    }

    #[test]
    fn sampling_keeps_a_share_by_request_id_and_every_fault() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = file_log(dir.path(), 0.25);
        let kept = (0..4000u64).filter(|id| log.wants(*id, true)).count();
        assert!((800..1200).contains(&kept), "kept {kept} of 4000 at 0.25");
        // The same id is decided the same way every time (both sides of a tunnel agree).
        assert!((0..4000u64).all(|id| log.wants(id, true) == log.wants(id, true)));
        assert!((0..100u64).all(|id| log.wants(id, false)));
        let none = file_log(dir.path(), 0.0);
        assert!(!(0..1000u64).any(|id| none.wants(id, true)));
        let mut denied = Entry::new(Direction::Inbound, SystemTime::now());
        denied.response_flags.push(ResponseFlag::PolicyDenied);
        none.record(7, &denied);
        none.record(8, &Entry::new(Direction::Inbound, SystemTime::now()));
        none.flush();
        let written = lines(&dir.path().join("access.log"));
        assert_eq!(written.len(), 1);
        assert_eq!(written[0]["response_flags"], "PD");
        assert!(!AccessLog::default().wants(1, false));
    }

    #[test]
    fn an_unwritable_path_is_refused_at_open_naming_it() {
        let settings = AccessLogSettings {
            sink: AccessLogSink::File("no/such/dir/access.log".into()),
            sample: 1.0,
        };
        let err = AccessLog::open(&settings, Path::new("/nonexistent"), Counter::default())
            .expect_err("refused");
        assert!(
            err.to_string()
                .contains("access_log.path /nonexistent/no/such/dir/access.log"),
            "{err}"
        );
    }
}
