//! Helpers shared by the end-to-end tests: run the built binary or `openssl`, and a
//! temporary directory.

#![allow(dead_code)]

use std::process::Command;

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
