//! Helpers shared by the end-to-end tests: run the built binary or `openssl`, and a
//! temporary directory.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a test waits for a process to say something.
pub(crate) const BOUND: Duration = Duration::from_secs(30);

/// What a command did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) success: bool,
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stdout_bytes: Vec<u8>,
    pub(crate) stderr: String,
}

impl Run {
    /// Panics unless the command succeeded.
    #[track_caller]
    pub(crate) fn ok(self) -> Self {
        assert!(self.success, "command failed: {self:?}");
        self
    }

    /// stdout and stderr together.
    pub(crate) fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn run(program: &str, args: &[&str]) -> Run {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Run {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stdout_bytes: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs the `isthmus` binary built for these tests.
pub(crate) fn isthmus(args: &[&str]) -> Run {
    run(env!("CARGO_BIN_EXE_isthmus"), args)
}

/// Runs the system's `openssl`.
pub(crate) fn openssl(args: &[&str]) -> Run {
    run("openssl", args)
}

/// A temporary directory removed at the end of the test.
pub(crate) struct Dir(tempfile::TempDir);

impl Dir {
    pub(crate) fn new() -> Self {
        Self(tempfile::tempdir().expect("creating a temporary directory"))
    }

    /// Runs `isthmus` with `line` split on white space; a word `@rel` stands for
    /// `self.path("rel")`.
    pub(crate) fn isthmus(&self, line: &str) -> Run {
        isthmus(
            &self
                .words(line)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
    }

    /// Runs `openssl` the same way.
    pub(crate) fn openssl(&self, line: &str) -> Run {
        openssl(
            &self
                .words(line)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
    }

    fn words(&self, line: &str) -> Vec<String> {
        line.split_whitespace()
            .map(|w| match w.strip_prefix('@') {
                Some(rel) => self.path(rel),
                None => w.to_owned(),
            })
            .collect()
    }

    /// `rel` inside the directory, as a string for command arguments.
    pub(crate) fn path(&self, rel: &str) -> String {
        self.0.path().join(rel).to_string_lossy().into_owned()
    }
}

/// A child process killed when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    pub(crate) fn spawn(program: &str, args: &[&str]) -> Self {
        Self::spawn_with_stderr(program, args, Stdio::inherit())
    }

    /// [`Self::spawn`] with stderr going to `stderr` (a file, say).
    pub(crate) fn spawn_with_stderr(program: &str, args: &[&str], stderr: Stdio) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stdout lines until one contains `marker` (bounded).
    pub(crate) fn wait_for(&mut self, marker: &str) {
        let deadline = Instant::now() + BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(marker);
                    self.seen.push(line);
                    if done {
                        return;
                    }
                }
                Err(_) => panic!("no {marker:?} line; saw {:?}", self.seen),
            }
        }
    }

    /// The stdout lines read so far.
    pub(crate) fn seen_lines(&self) -> &[String] {
        &self.seen
    }

    /// The address on the line starting with `prefix`, after the marker was seen.
    pub(crate) fn addr(&self, prefix: &str) -> SocketAddr {
        let line = self
            .seen
            .iter()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {:?}", self.seen));
        line.rsplit(' ')
            .next()
            .and_then(|w| {
                w.trim_start_matches("http://")
                    .trim_end_matches("/metrics")
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    /// Sends the signal `name` (`HUP`, `TERM`, …).
    pub(crate) fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        Command::new("sh")
            .args(["-c", &format!("kill -{name} {pid}")])
            .status()
            .expect("kill");
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        // The shell's builtin kill: no dependency on a procps package.
        Command::new("sh")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status()
            .expect("kill");
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "process ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until `check` gives a value; panics with `what` if it never does.
pub(crate) fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The JSON lines of the file at `path` (none while it does not exist).
pub(crate) fn json_lines(path: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A loopback address with a port that was free a moment ago.
pub(crate) fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
