//! `isthmus bench soak <scenario>`: a mesh in this process under steady load for
//! minutes while one long condition holds (a federation outage, one-minute leaves, a
//! root rotation, ten thousand connections). Prints a row per sample, the checks and a
//! verdict; exits non-zero when any exchange failed or any check did not hold. Not a
//! ratio, and not a test: the long runs of issue 18 (docs/reliability.md).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use isthmus_testkit::soak::traffic::TrafficOptions;
use isthmus_testkit::soak::{Options, Report, Sample, Scenario, run};

/// Which soak.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SoakScenario {
    /// Every federation node down for the duration.
    Outage,
    /// One-minute leaves for the duration.
    Leaves,
    /// A staged root rotation A → A+B → B, then the duration on B.
    Rotation,
    /// 10,000 held connections and 1,000 new ones a second.
    Connections,
}

/// Options of `isthmus bench soak`.
#[derive(Debug, Args)]
pub(crate) struct SoakArgs {
    /// The scenario.
    #[arg(value_enum)]
    scenario: SoakScenario,
    /// Minutes the condition lasts (default: the scenario's, 10 / 30 / 1 / 10).
    #[arg(long)]
    minutes: Option<f64>,
    /// Held connections (default: 100, or 10,000 for `connections`).
    #[arg(long)]
    held: Option<usize>,
    /// New connections per second (default: 20, 50 for `rotation`, 1,000 for
    /// `connections`).
    #[arg(long)]
    new_per_second: Option<u32>,
    /// Seconds between a held connection's exchanges (default: 1, or 10 for
    /// `connections`).
    #[arg(long)]
    ping_seconds: Option<f64>,
    /// Gateways' leaf lifetime in seconds (default: 60 for `leaves`, else 3600).
    #[arg(long)]
    leaf_seconds: Option<u64>,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample_seconds: u64,
    /// East imports into 127.N.0.0/16 and west into the next /16 (two soaks at once
    /// need different ones; a range in use is waited for).
    #[arg(long, default_value_t = 214, value_parser = clap::value_parser!(u8).range(2..=253))]
    import_octet: u8,
}

fn seconds(value: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow::anyhow!("{what} must be a positive number, not {value}"))
}

fn row(s: &Sample) -> String {
    let leaves = match s.leaves_ok {
        Some(true) => "ok",
        Some(false) => "REFUSED",
        None => "-",
    };
    format!(
        "| {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |",
        s.at.as_secs_f64(),
        s.phase,
        s.held_open,
        s.pings_ok,
        s.new_ok,
        s.failed,
        s.rss_kib / 1024,
        s.fds,
        s.catalog_age_s,
        if s.federation_connected { "yes" } else { "no" },
        s.renewals,
        if s.dns_ok { "ok" } else { "NO ANSWER" },
        leaves
    )
}

fn summary(r: &Report) {
    println!();
    println!(
        "{}: {} held connections (opened in {:.1} s), {} exchanges on them, {} new connections, {} failed, {:.0} s",
        r.scenario.name(),
        r.held,
        r.ramp.as_secs_f64(),
        r.pings_ok,
        r.new_ok,
        r.failed,
        r.elapsed.as_secs_f64()
    );
    for c in &r.checks {
        let mark = if c.passed { "ok" } else { "FAILED" };
        println!("- [{mark}] {}: {}", c.what, c.detail);
    }
    for f in r.failures.iter().take(20) {
        println!(
            "- failure at {:.1} s ({}): {}",
            f.at.as_secs_f64(),
            f.kind,
            f.why
        );
    }
    if r.failures.len() > 20 {
        println!("- … {} more failures kept", r.failures.len() - 20);
    }
    println!("verdict: {}", if r.passed() { "passed" } else { "FAILED" });
}

pub(crate) fn soak(args: &SoakArgs) -> anyhow::Result<ExitCode> {
    let scenario = match args.scenario {
        SoakScenario::Outage => Scenario::Outage,
        SoakScenario::Leaves => Scenario::Leaves,
        SoakScenario::Rotation => Scenario::Rotation,
        SoakScenario::Connections => Scenario::Connections,
    };
    let dir = tempfile::Builder::new()
        .prefix(&format!("isthmus-soak-{}-", scenario.name()))
        .tempdir()?;
    let mut options = Options::new(scenario, dir.path().to_owned());
    if let Some(m) = args.minutes {
        options.duration = seconds(m * 60.0, "--minutes")?;
    }
    let defaults = options.traffic.clone();
    options.traffic = TrafficOptions {
        held: args.held.unwrap_or(defaults.held),
        ping_every: match args.ping_seconds {
            Some(s) => seconds(s, "--ping-seconds")?,
            None => defaults.ping_every,
        },
        new_per_second: args.new_per_second.unwrap_or(defaults.new_per_second),
    };
    if let Some(s) = args.leaf_seconds {
        anyhow::ensure!(
            s >= 10,
            "--leaf-seconds must be at least 10 (the gateways' minimum)"
        );
        options.leaf_lifetime = Duration::from_secs(s);
    }
    options.sample_every = seconds(args.sample_seconds as f64, "--sample-seconds")?;
    options.import_octet = args.import_octet;
    eprintln!(
        "soak {}: {} held connections, {} new/s, {:.0} s, leaves of {} s, in {}",
        scenario.name(),
        options.traffic.held,
        options.traffic.new_per_second,
        options.duration.as_secs_f64(),
        options.leaf_lifetime.as_secs(),
        dir.path().display()
    );
    println!(
        "| s | phase | held open | held exchanges | new ok | failed | RSS MiB | fds | catalog age s | federation | renewals | DNS | leaves |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(run(&options, |s| println!("{}", row(s))))?;
    summary(&report);
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
