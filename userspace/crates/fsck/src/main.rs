//! `fsck.lcfs`: checks an LCFS filesystem with e2fsck-style exit codes.
//!
//! Every invariant of the format is checked (see [`lcfs_image::fsck`]); `-y` and `-p` repair
//! what [`lcfs_image::repair`] covers (`-p` only the safe kinds), or leave the device as it was.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use lcfs_format::records::Timespec;
use lcfs_image::fsck::{self, Phase, Report};
use lcfs_image::output::{count, is_broken_pipe};
use lcfs_image::repair::{self, Mode, Outcome, Refusal};
use lcfs_image::{outln, Access, Device};

mod cli;
use cli::Args;

/// Exit codes, as e2fsck defines them.
mod exit {
    pub(crate) const CLEAN: u8 = 0;
    pub(crate) const CORRECTED: u8 = 1;
    pub(crate) const UNCORRECTED: u8 = 4;
    pub(crate) const OPERATIONAL: u8 = 8;
    pub(crate) const USAGE: u8 = 16;
}

/// Where progress goes.
enum Sink {
    /// A completion bar redrawn with carriage returns: only ever on a terminal.
    Bar(Box<dyn Write>),
    /// e2fsck's machine-readable lines for fsck's -C: "PASS DONE TOTAL DEVICE".
    Lines(std::fs::File, String),
}

/// Progress, at most a few times a second.
struct Progress {
    out: Option<Sink>,
    last: Instant,
    phase: Option<Phase>,
    /// The total of the last report, to close its pass at 100%.
    total: u64,
}

impl Progress {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let bar = |w: Box<dyn Write>| Some(Sink::Bar(w));
        let out = match args.progress_fd {
            Some(0) if std::io::stdout().is_terminal() && !args.json => {
                bar(Box::new(std::io::stdout()))
            }
            Some(0) => None,
            // The descriptor the caller opened for us, reached without unsafe code.
            Some(fd) => Some(Sink::Lines(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(format!("/proc/self/fd/{fd}"))
                    .with_context(|| format!("-C {fd}: file descriptor not open for writing"))?,
                args.device.display().to_string(),
            )),
            None if std::io::stderr().is_terminal() && !args.json => {
                bar(Box::new(std::io::stderr()))
            }
            None => None,
        };
        Ok(Self {
            out,
            last: Instant::now() - Duration::from_secs(1),
            phase: None,
            total: 0,
        })
    }

    fn number(phase: Phase) -> u32 {
        match phase {
            Phase::Map => 1,
            Phase::Trees => 2,
            Phase::Counts => 3,
        }
    }

    fn name(phase: Phase) -> &'static str {
        match phase {
            Phase::Map => "Pass 1: reference-count map",
            Phase::Trees => "Pass 2: layers and trees",
            Phase::Counts => "Pass 3: reference counts",
        }
    }

    fn report(&mut self, phase: Phase, done: u64, total: u64) {
        let previous = self.phase.replace(phase);
        let previous_total = std::mem::replace(&mut self.total, total);
        let out = match self.out.as_mut() {
            None => return,
            Some(Sink::Lines(f, dev)) => {
                if let Some(p) = previous.filter(|&p| p != phase) {
                    let t = previous_total;
                    let _ = writeln!(f, "{} {t} {t} {dev}", Self::number(p));
                } else if previous.is_some()
                    && self.last.elapsed() < Duration::from_millis(200)
                    && done + 1 < total
                {
                    return;
                }
                self.last = Instant::now();
                let _ = writeln!(f, "{} {done} {total} {dev}", Self::number(phase));
                return;
            }
            Some(Sink::Bar(out)) => out,
        };
        if let Some(p) = previous.filter(|&p| p != phase) {
            let _ = writeln!(out, "\r{}: 100%", Self::name(p));
        } else if self.last.elapsed() < Duration::from_millis(200) && done + 1 < total {
            return;
        }
        self.last = Instant::now();
        let name = Self::name(phase);
        let pct = done.saturating_mul(100).checked_div(total).unwrap_or(100);
        let _ = write!(out, "\r{name}: {pct:3}%");
        let _ = out.flush();
    }

    fn finish(&mut self) {
        let t = self.total;
        match (self.out.as_mut(), self.phase) {
            (Some(Sink::Bar(out)), Some(p)) => {
                let _ = writeln!(out, "\r{}: 100%", Self::name(p));
            }
            (Some(Sink::Lines(f, dev)), Some(p)) => {
                let _ = writeln!(f, "{} {t} {t} {dev}", Self::number(p));
            }
            _ => {}
        }
    }
}

/// The report as `--json` prints it.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    report: &'a Report,
    /// What the repair did, in the words of the text output.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    repaired: &'a [String],
}

fn now() -> Timespec {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timespec {
        sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        nsec: t.subsec_nanos(),
    }
}

fn run(args: &Args) -> Result<u8, anyhow::Error> {
    let name = args.device.display().to_string();
    // Opened before the check and held to the end: for a block device the O_EXCL open keeps a
    // mount away from what is checked and then repaired.
    let writer = if args.yes || args.preen {
        Some(Device::open(&args.device, Access::ReadWrite).context("cannot open for repair")?)
    } else {
        None
    };
    let dev = Device::open(&args.device, Access::ReadOnly)?;
    let mut progress = Progress::new(args)?;
    let result = fsck::check(dev, &mut |p, d, t| progress.report(p, d, t));
    progress.finish();
    let mut report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fsck.lcfs: {name}: {e}");
            return Ok(exit::OPERATIONAL);
        }
    };
    let mut outcome = None;
    if let Some(mut writer) = writer.filter(|_| !report.is_clean()) {
        let mode = if args.yes { Mode::Yes } else { Mode::Preen };
        match repair::repair(&mut writer, &report, mode, now()) {
            Ok(o) => outcome = Some(o),
            Err(e) => {
                eprintln!("fsck.lcfs: {name}: repair failed: {e}");
                return Ok(exit::OPERATIONAL);
            }
        }
    }
    let (repaired, after): (Vec<String>, Option<Report>) = match &mut outcome {
        Some(Outcome::Repaired { actions, after }) => {
            (std::mem::take(actions), Some(std::mem::take(&mut **after)))
        }
        _ => (Vec::new(), None),
    };
    let fixed = after.is_some();
    if let Some(a) = &after {
        report.stats = a.stats.clone();
    }
    // The exit code says what the check found, even when the reader of the output went away.
    let print = || -> anyhow::Result<()> {
        if args.json {
            let out = JsonReport {
                report: &report,
                repaired: &repaired,
            };
            outln!("{}", serde_json::to_string_pretty(&out)?)?;
            return Ok(());
        }
        for w in &report.warnings {
            outln!("{name}: warning: {w}")?;
        }
        for e in &report.errors {
            outln!("{name}: {e}")?;
        }
        if report.more_errors > 0 {
            outln!(
                "{name}: ... and {} more",
                count(report.more_errors, "error")
            )?;
        }
        for r in &repaired {
            outln!("{name}: {r}")?;
        }
        let s = &report.stats;
        let used = s.total_blocks.saturating_sub(s.free_blocks);
        let total = report.errors.len() as u64 + report.more_errors;
        if report.is_clean() || fixed {
            let fixed = if report.is_clean() {
                String::new()
            } else {
                format!("{} found and corrected; ", count(total, "error"))
            };
            outln!(
                "{name}: {fixed}clean, {}, {used}/{} blocks (generation {})",
                count(s.layers, "layer"),
                s.total_blocks,
                s.generation
            )?;
        } else {
            outln!(
                "{name}: {} found; the filesystem was not modified",
                count(total, "error")
            )?;
            match (&outcome, &report.fallback) {
                (Some(Outcome::Refused(_)), Some(f)) => outln!(
                    "{name}: superblock copy {} left as it is: the state it falls back to is \
                     damaged too, and the damaged copy may be the better way back (by hand)",
                    f.damaged_copy
                )?,
                (None, Some(f)) if report.only_fallback() => outln!(
                    "{name}: fsck.lcfs -y makes generation {} current for good, overwriting the \
                     damaged copy, as the next read-write mount's first commit would",
                    f.generation
                )?,
                (None, _) if report.repairable() => outln!(
                    "{name}: fsck.lcfs -y repairs it{}",
                    if report.fixes.iter().all(|f| f.is_safe()) {
                        " (so does -p)"
                    } else {
                        ""
                    }
                )?,
                _ => {}
            }
            match &outcome {
                Some(Outcome::Refused(Refusal::NeedsYes(fixes))) => {
                    for f in fixes {
                        outln!("{name}: needs -y: {f}")?;
                    }
                    outln!(
                        "{name}: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY.\n\t(i.e., without \
                         -a or -p options)"
                    )?;
                }
                Some(Outcome::Refused(Refusal::Unrepairable(why))) => {
                    outln!("{name}: not repaired: {why}")?;
                }
                _ => {}
            }
        }
        if args.verbose {
            outln!(
                "{:>12} layers\n{:>12} tree nodes\n{:>12} map nodes\n{:>12} items\n{:>12} data blocks\n{:>12} free blocks",
                s.layers, s.tree_nodes, s.map_nodes, s.items, s.data_blocks, s.free_blocks
            )?;
            if s.reclaim_queued > 0 {
                outln!(
                    "{:>12} reclaim queue entries (space of removed layers not yet free)",
                    s.reclaim_queued
                )?;
            }
        }
        Ok(())
    };
    if let Err(e) = print() {
        if !is_broken_pipe(e.as_ref()) {
            return Err(e);
        }
    }
    Ok(if fixed {
        exit::CORRECTED
    } else if report.is_clean() {
        exit::CLEAN
    } else {
        exit::UNCORRECTED
    })
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::CLEAN
            });
        }
    };
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("fsck.lcfs: {e:#}");
            ExitCode::from(exit::OPERATIONAL)
        }
    }
}
