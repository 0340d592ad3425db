//! Standard output of the tools.
//!
//! `println!` panics when standard output is a pipe whose reader has gone (`lcfs debug dump IMG |
//! head -1`): Rust ignores `SIGPIPE`, so the write fails with `EPIPE`. The tools print with
//! [`outln!`](crate::outln) instead, which returns the error, and end quietly when it is
//! [`is_broken_pipe`], as coreutils do.

use std::io;

/// Writes one line to standard output, like `println!`, returning the write's result.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        ::std::writeln!(::std::io::stdout().lock(), $($arg)*)
    }};
}

/// Whether `e`, or an error it was caused by, is an `EPIPE` from a closed output pipe.
pub fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Maps a closed output pipe to success: for output that only informs (mkfs's summary), whose
/// reader going away must not stop the work.
pub fn ignore_broken_pipe(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Runs `cmd` with standard output a pipe whose reader is gone before the first write, and
/// returns what it left: for the tools' tests of the closed-pipe case.
pub fn run_with_closed_stdout(cmd: &mut std::process::Command) -> io::Result<std::process::Output> {
    use std::process::Stdio;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    drop(child.stdout.take());
    child.wait_with_output()
}

/// `N THING` with the plural `s` when N is not 1: "1 layer", "3 layers", "0 errors".
pub fn count(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

#[cfg(test)]
mod count_tests {
    #[test]
    fn plurals() {
        assert_eq!(super::count(0, "error"), "0 errors");
        assert_eq!(super::count(1, "layer"), "1 layer");
        assert_eq!(super::count(2, "layer"), "2 layers");
    }
}
