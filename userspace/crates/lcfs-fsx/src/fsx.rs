//! The exerciser: the files and their models, the operations, the checks, the operation log
//! and the failure report.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{self, Advice, AtFlags, FallocateFlags, Mode, OFlags, StatxFlags};
use rustix::io::{self, Errno};
use rustix::mm::MsyncFlags;

use crate::model::{us, Model};
use crate::rng::Rng;
use crate::sys::{self, AlignedBuf, Mapping};
use crate::{Cli, OpKind};

/// `STATX_DIO_READ_ALIGN` (Linux 6.14): `stx_dio_read_offset_align` is valid.
const STATX_DIO_READ_ALIGN: u32 = 0x0002_0000;
/// The alignment assumed when `statx` reports none.
const FALLBACK_ALIGN: u64 = 4096;
/// The granularity of the "unaligned" direct I/O operations: 512-byte sectors.
const SECTOR: u64 = 512;
/// Bytes of a difference the hexdump shows.
const DUMP_BYTES: usize = 64;

/// One exercised file.
struct File {
    /// `A` (FILE) or `B` (FILE.2) in the log.
    label: &'static str,
    path: PathBuf,
    /// The buffered descriptor (`None` only while the final check closes everything).
    fd: Option<OwnedFd>,
    /// The `O_DIRECT` descriptor, when direct operations run.
    dfd: Option<OwnedFd>,
    model: Model,
}

/// Direct I/O alignment, from `statx`.
struct Dio {
    /// `stx_dio_offset_align`: offsets and lengths of writes (and of reads, without
    /// `STATX_DIO_READ_ALIGN`).
    write_align: u64,
    /// `stx_dio_read_offset_align`, or `write_align`.
    read_align: u64,
    /// `stx_dio_mem_align`: buffer addresses.
    mem_align: u64,
    /// Whether `statx` reported `STATX_DIOALIGN` (otherwise 4096 is assumed).
    reported: bool,
    /// Whether `statx` reported `STATX_DIO_READ_ALIGN`.
    read_reported: bool,
}

/// What happened to one kind of operation.
#[derive(Default, Clone, Copy)]
struct Counts {
    /// Operations run (skipped ones not counted).
    done: u64,
    /// Direct operations not aligned to 4096 bytes (or to the reported alignment) that worked.
    unaligned_ok: u64,
    /// Such operations refused with `EINVAL`, which the reported alignment allows.
    unaligned_einval: u64,
    /// `fallocate` answering `EOPNOTSUPP`, or `FICLONERANGE` refusing.
    refused: u64,
}

/// A range of a file an operation read or changed.
struct Span {
    file: usize,
    start: u64,
    end: u64,
    write: bool,
}

/// One line of the operation log.
struct Entry {
    num: u64,
    text: String,
    spans: Vec<Span>,
}

/// The exerciser's state.
struct Fsx {
    seed: u64,
    ops: u64,
    max_len: u64,
    max_op: u64,
    quiet: bool,
    verbose: bool,
    require_clone: bool,
    log_cap: usize,
    inject: Option<u64>,
    rng: Rng,
    mix: Vec<OpKind>,
    total_weight: u64,
    files: Vec<File>,
    direct: bool,
    dio: Dio,
    clone_align: u64,
    page: u64,
    opnum: u64,
    log: VecDeque<Entry>,
    cur: Option<Entry>,
    counts: [Counts; OpKind::ALL.len()],
    skipped: u64,
    rerun: String,
}

/// The byte operation `op` writes at file offset `off`: the operation number's low byte plus
/// the offset modulo 251, so a misplaced or stale write shows whose and where it was.
fn pattern_byte(op: u64, off: u64) -> u8 {
    op.to_le_bytes()[0].wrapping_add((off % 251).to_le_bytes()[0])
}

/// Fills `buf` with operation `op`'s bytes for file offset `off` onwards.
fn fill_pattern(buf: &mut [u8], op: u64, off: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(op, off + i as u64);
    }
}

fn align_down(x: u64, a: u64) -> u64 {
    x / a * a
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// Bytes a read of `len` at `off` returns from a file of `size` bytes.
fn want_len(size: u64, off: u64, len: u64) -> u64 {
    size.saturating_sub(off).min(len)
}

/// Retries a call interrupted by a signal.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

/// Reads at `off` into `buf` until `want` bytes came or the file ended; the count read (more
/// than `want` when the file is larger than expected).
fn pread_full(fd: BorrowedFd<'_>, off: u64, buf: &mut [u8], want: u64) -> io::Result<usize> {
    let mut got = 0;
    while (got as u64) < want && got < buf.len() {
        let n = retry(|| io::pread(fd, &mut buf[got..], off + got as u64))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Writes all of `data` at `off`: the bytes written, and the error that stopped it.
fn pwrite_full(fd: BorrowedFd<'_>, off: u64, data: &[u8]) -> (usize, io::Result<()>) {
    let mut done = 0;
    while done < data.len() {
        match retry(|| io::pwrite(fd, &data[done..], off + done as u64)) {
            Ok(0) => return (done, Err(Errno::IO)),
            Ok(n) => done += n,
            Err(e) => return (done, Err(e)),
        }
    }
    (done, Ok(()))
}

/// A seed from the clock and the process id.
fn clock_seed() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut r = Rng::new(
        d.as_secs() ^ u64::from(d.subsec_nanos()).rotate_left(32) ^ u64::from(std::process::id()),
    );
    r.next_u64()
}

/// The direct I/O alignment `statx` reports for `fd`.
fn query_dio(fd: BorrowedFd<'_>) -> Dio {
    let mask = StatxFlags::DIOALIGN | StatxFlags::from_bits_retain(STATX_DIO_READ_ALIGN);
    let mut dio = Dio {
        write_align: FALLBACK_ALIGN,
        read_align: FALLBACK_ALIGN,
        mem_align: FALLBACK_ALIGN,
        reported: false,
        read_reported: false,
    };
    if let Ok(st) = fs::statx(fd, "", AtFlags::EMPTY_PATH, mask) {
        if st.stx_mask & StatxFlags::DIOALIGN.bits() != 0 && st.stx_dio_offset_align != 0 {
            dio.reported = true;
            dio.write_align = u64::from(st.stx_dio_offset_align);
            dio.mem_align = u64::from(st.stx_dio_mem_align.max(1)).next_power_of_two();
        }
        dio.read_align = dio.write_align;
        if st.stx_mask & STATX_DIO_READ_ALIGN != 0 && st.stx_dio_read_offset_align != 0 {
            dio.read_reported = true;
            dio.read_align = u64::from(st.stx_dio_read_offset_align);
        }
    }
    dio
}

fn open_file(path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    retry(|| fs::open(path, flags | OFlags::CLOEXEC, Mode::from_raw_mode(0o644)))
}

/// Runs the exerciser; `Err` for a set-up that cannot start (a failed check exits 1 itself).
pub(crate) fn run(cli: Cli) -> Result<(), String> {
    let seed = cli.seed.unwrap_or_else(clock_seed);
    let mix: Vec<OpKind> = match &cli.ops_mix {
        Some(list) => OpKind::ALL
            .into_iter()
            .filter(|k| list.contains(k))
            .collect(),
        None => OpKind::ALL
            .into_iter()
            .filter(|&k| k != OpKind::Clone)
            .collect(),
    };
    if mix.is_empty() {
        return Err("--ops-mix selects no operation".into());
    }
    let direct = mix.contains(&OpKind::Dread) || mix.contains(&OpKind::Dwrite);
    let mut paths = vec![cli.file.clone()];
    if cli.second_file {
        let mut p = cli.file.clone().into_os_string();
        p.push(".2");
        paths.push(p.into());
    }
    let mut files = Vec::new();
    for (path, label) in paths.into_iter().zip(["A", "B"]) {
        let fd = open_file(&path, OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let dfd = if direct {
            Some(open_file(&path, OFlags::RDWR | OFlags::DIRECT).map_err(|e| {
                format!("cannot open {} with O_DIRECT: {e} (leave dread and dwrite out of --ops-mix)", path.display())
            })?)
        } else {
            None
        };
        files.push(File {
            label,
            path,
            fd: Some(fd),
            dfd,
            model: Model::default(),
        });
    }
    let fd0 = files[0].fd.as_ref().expect("open").as_fd();
    let dio = query_dio(fd0);
    let blksize = fs::fstat(fd0)
        .map_err(|e| format!("fstat: {e}"))?
        .st_blksize;
    let clone_align = u64::try_from(blksize).unwrap_or(FALLBACK_ALIGN).max(SECTOR);
    let mut rerun: Vec<String> = std::env::args().collect();
    if cli.seed.is_none() {
        rerun.push(format!("-S {seed}"));
    }
    let mut fsx = Fsx {
        seed,
        ops: cli.ops,
        max_len: cli.max_len,
        max_op: cli.max_op.min(cli.max_len),
        quiet: cli.quiet,
        verbose: cli.verbose,
        require_clone: cli.require_clone,
        log_cap: cli.log,
        inject: cli.inject_corruption,
        rng: Rng::new(seed),
        total_weight: mix.iter().map(|k| k.weight()).sum(),
        mix,
        files,
        direct,
        dio,
        clone_align,
        page: rustix::param::page_size() as u64,
        opnum: 0,
        log: VecDeque::new(),
        cur: None,
        counts: [Counts::default(); OpKind::ALL.len()],
        skipped: 0,
        rerun: rerun.join(" "),
    };
    fsx.banner();
    for n in 1..=fsx.ops {
        fsx.opnum = n;
        if fsx.inject == Some(n) {
            fsx.inject_corruption();
        }
        fsx.step();
        fsx.check_sizes();
    }
    fsx.final_check();
    fsx.summary();
    Ok(())
}

impl Fsx {
    fn banner(&self) {
        if self.quiet {
            println!("lcfs-fsx: seed {}", self.seed);
            return;
        }
        let names: Vec<String> = self
            .files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect();
        println!(
            "lcfs-fsx: seed {}: {} operations on {}, files up to 0x{:x} bytes, operations up to 0x{:x}",
            self.seed,
            self.ops,
            names.join(" and "),
            self.max_len,
            self.max_op
        );
        let d = &self.dio;
        println!(
            "lcfs-fsx: direct I/O alignment: offsets 0x{:x}, reads 0x{:x}{}, memory 0x{:x} ({}); clone blocks 0x{:x}",
            d.write_align,
            d.read_align,
            if d.read_reported { "" } else { " (no STATX_DIO_READ_ALIGN)" },
            d.mem_align,
            if d.reported { "statx STATX_DIOALIGN" } else { "not reported by statx, 4096 assumed" },
            self.clone_align
        );
        let mix: Vec<&str> = self.mix.iter().map(|k| k.name()).collect();
        println!("lcfs-fsx: operations: {}", mix.join(","));
    }

    fn fd(&self, f: usize) -> BorrowedFd<'_> {
        self.files[f].fd.as_ref().expect("file open").as_fd()
    }

    fn dfd(&self, f: usize) -> BorrowedFd<'_> {
        self.files[f]
            .dfd
            .as_ref()
            .expect("O_DIRECT descriptor open")
            .as_fd()
    }

    fn size(&self, f: usize) -> u64 {
        self.files[f].model.size()
    }

    // --- the log ------------------------------------------------------------------------------

    /// Starts the log entry of the current operation.
    fn begin(&mut self, kind: &str, text: String, spans: Vec<Span>) {
        self.cur = Some(Entry {
            num: self.opnum,
            text: format!("{:>7} {kind:<10} {text}", self.opnum),
            spans,
        });
    }

    /// Adds an outcome to the current operation's entry.
    fn note(&mut self, s: &str) {
        if let Some(e) = &mut self.cur {
            e.text.push_str(": ");
            e.text.push_str(s);
        }
    }

    /// Ends the current operation: into the log, and on stdout with `-v`.
    fn finish(&mut self) {
        if let Some(e) = self.cur.take() {
            if self.verbose {
                println!("{}", e.text);
            }
            if self.log_cap > 0 {
                if self.log.len() == self.log_cap {
                    self.log.pop_front();
                }
                self.log.push_back(e);
            }
        }
    }

    /// An operation that cannot run with the file as it is (logged, not counted).
    fn skip(&mut self, kind: OpKind, why: &str) {
        self.begin(kind.name(), format!("skipped ({why})"), Vec::new());
        self.skipped += 1;
        self.finish();
    }

    fn span(f: usize, off: u64, len: u64, write: bool) -> Vec<Span> {
        vec![Span {
            file: f,
            start: off,
            end: off + len,
            write,
        }]
    }

    fn range_text(&self, f: usize, off: u64, len: u64) -> String {
        format!("{} 0x{off:x} +0x{len:x}", self.files[f].label)
    }

    fn count(&mut self, kind: OpKind) -> &mut Counts {
        &mut self.counts[kind as usize]
    }

    // --- failure ------------------------------------------------------------------------------

    /// Reports a failed check with the operation log and the seed, and exits 1.
    fn fail(&self, msg: &str, detail: &str) -> ! {
        let _ = std::io::stdout().flush();
        let mut out = String::new();
        let phase = if self.opnum > self.ops {
            "the final check".to_string()
        } else {
            format!("operation {}", self.opnum)
        };
        let _ = writeln!(
            out,
            "lcfs-fsx: FAILED at {phase} of {} (seed {}): {msg}",
            self.ops, self.seed
        );
        out.push_str(detail);
        let _ = writeln!(
            out,
            "lcfs-fsx: the last {} operations, oldest first:",
            self.log.len() + usize::from(self.cur.is_some())
        );
        for e in &self.log {
            let _ = writeln!(out, "{}", e.text);
        }
        if let Some(e) = &self.cur {
            let _ = writeln!(out, "{}   <-- failed here", e.text);
        }
        let _ = writeln!(out, "lcfs-fsx: seed {}; rerun: {}", self.seed, self.rerun);
        eprint!("{out}");
        std::process::exit(1);
    }

    /// Checks `actual`, read from file `f` at `off`, against the model: `want` bytes, equal to
    /// the model's.
    fn check_read(&self, f: usize, off: u64, actual: &[u8], want: u64, how: &str) {
        let len = actual.len() as u64;
        if len == want && want == 0 {
            return;
        }
        if len != want {
            self.fail(
                &format!(
                    "{how} at {} 0x{off:x} returned 0x{len:x} bytes, the model (size 0x{:x}) gives 0x{want:x}",
                    self.files[f].label,
                    self.size(f)
                ),
                "",
            );
        }
        let expected = self.files[f].model.bytes(off, actual.len());
        if expected != actual {
            self.report_mismatch(f, off, expected, actual, how);
        }
    }

    fn report_mismatch(&self, f: usize, off: u64, expected: &[u8], actual: &[u8], how: &str) -> ! {
        let diffs: Vec<usize> = (0..actual.len())
            .filter(|&i| expected[i] != actual[i])
            .collect();
        let (first, last) = (diffs[0], diffs[diffs.len() - 1]);
        let file = &self.files[f];
        let msg = format!(
            "data mismatch: {how} of {} (0x{off:x} +0x{:x}): {} bytes differ, first at 0x{:x}, last at 0x{:x}",
            file.label,
            actual.len(),
            diffs.len(),
            off + first as u64,
            off + last as u64
        );
        let mut d = String::new();
        let _ = writeln!(
            d,
            "  file {} = {}, size 0x{:x} in the model",
            file.label,
            file.path.display(),
            file.model.size()
        );
        let end = (first + DUMP_BYTES).min(actual.len());
        for row in (first..end).step_by(16) {
            let row_end = (row + 16).min(end);
            let hex = |b: &[u8]| {
                b.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let marks: String = (row..row_end)
                .map(|i| {
                    if expected[i] != actual[i] {
                        "^^ "
                    } else {
                        "   "
                    }
                })
                .collect();
            let _ = writeln!(
                d,
                "  0x{:08x} expected {}",
                off + row as u64,
                hex(&expected[row..row_end])
            );
            let _ = writeln!(d, "             actual   {}", hex(&actual[row..row_end]));
            let _ = writeln!(d, "                      {}", marks.trim_end());
        }
        let at = off + first as u64;
        let whose = |b: u8| b.wrapping_sub((at % 251).to_le_bytes()[0]);
        let _ = writeln!(
            d,
            "  at 0x{at:x}: expected 0x{:02x} is the pattern of an operation numbered {} mod 256, actual 0x{:02x} of one numbered {} mod 256",
            expected[first],
            whose(expected[first]),
            actual[first],
            whose(actual[first])
        );
        if actual[first..=last].iter().all(|&b| b == 0) {
            let _ = writeln!(
                d,
                "  the differing bytes read as zeros (a hole, or lost data)"
            );
        }
        let touching: Vec<String> = self
            .log
            .iter()
            .filter(|e| {
                e.spans
                    .iter()
                    .any(|s| s.write && s.file == f && s.start <= at && at < s.end)
            })
            .map(|e| format!("#{}", e.num))
            .collect();
        let _ = writeln!(
            d,
            "  logged operations that changed 0x{at:x}: {}",
            if touching.is_empty() {
                "none".to_string()
            } else {
                touching.join(", ")
            }
        );
        self.fail(&msg, &d);
    }

    /// After every operation: `fstat`'s size of every file is the model's.
    fn check_sizes(&self) {
        for f in 0..self.files.len() {
            match fs::fstat(self.fd(f)) {
                Ok(st) if u64::try_from(st.st_size).ok() == Some(self.size(f)) => {}
                Ok(st) => self.fail(
                    &format!(
                        "size mismatch: fstat of {} says 0x{:x}, the model 0x{:x}",
                        self.files[f].label,
                        st.st_size,
                        self.size(f)
                    ),
                    "",
                ),
                Err(e) => self.fail(&format!("fstat of {}: {e}", self.files[f].label), ""),
            }
        }
    }

    // --- operations ---------------------------------------------------------------------------

    fn pick_kind(&mut self) -> OpKind {
        let mut x = self.rng.below(self.total_weight);
        for &k in &self.mix {
            if x < k.weight() {
                return k;
            }
            x -= k.weight();
        }
        unreachable!("weights add up to total_weight")
    }

    /// The file a single-file operation works on: FILE.2 one time in four, when there is one.
    fn pick_file(&mut self) -> usize {
        if self.files.len() > 1 && self.rng.chance(1, 4) {
            1
        } else {
            0
        }
    }

    fn step(&mut self) {
        let kind = self.pick_kind();
        match kind {
            OpKind::Copy => self.op_copy(),
            OpKind::Clone => self.op_clone(),
            _ => {
                let f = self.pick_file();
                match kind {
                    OpKind::Read => self.op_read(f),
                    OpKind::Write => self.op_write(f),
                    OpKind::Dread => self.op_dread(f),
                    OpKind::Dwrite => self.op_dwrite(f),
                    OpKind::Mapread => self.op_mapread(f),
                    OpKind::Mapwrite => self.op_mapwrite(f),
                    OpKind::Truncate => self.op_truncate(f),
                    OpKind::Punch | OpKind::Zero | OpKind::Alloc => self.op_fallocate(kind, f),
                    OpKind::Fsync | OpKind::Fdatasync => self.op_sync(kind, f),
                    OpKind::Invalidate => self.op_invalidate(f),
                    OpKind::Copy | OpKind::Clone => unreachable!(),
                }
            }
        }
        self.finish();
    }

    /// A read offset: inside the file, or (one time in sixteen, or when it is empty) past its end.
    fn read_offset(&mut self, size: u64) -> u64 {
        if size == 0 || self.rng.chance(1, 16) {
            size + self.rng.below(self.max_op)
        } else {
            self.rng.below(size)
        }
    }

    /// A write range below `--max-len`.
    fn write_range(&mut self) -> (u64, u64) {
        let off = self.rng.below(self.max_len);
        let len = self.rng.range(1, self.max_op).min(self.max_len - off);
        (off, len)
    }

    fn op_read(&mut self, f: usize) {
        let size = self.size(f);
        let off = self.read_offset(size);
        let len = self.rng.range(1, self.max_op);
        self.begin(
            "read",
            self.range_text(f, off, len),
            Self::span(f, off, len, false),
        );
        let mut buf = vec![0u8; us(len)];
        let want = want_len(size, off, len);
        match pread_full(self.fd(f), off, &mut buf, want) {
            Ok(got) => self.check_read(f, off, &buf[..got], want, "buffered read"),
            Err(e) => self.fail(&format!("pread: {e}"), ""),
        }
        self.count(OpKind::Read).done += 1;
    }

    fn op_write(&mut self, f: usize) {
        let (off, len) = self.write_range();
        self.begin(
            "write",
            self.range_text(f, off, len),
            Self::span(f, off, len, true),
        );
        let mut data = vec![0u8; us(len)];
        fill_pattern(&mut data, self.opnum, off);
        let (done, r) = pwrite_full(self.fd(f), off, &data);
        self.files[f].model.write(off, &data[..done]);
        if let Err(e) = r {
            self.fail(&format!("pwrite: {e} after 0x{done:x} bytes"), "");
        }
        self.count(OpKind::Write).done += 1;
    }

    /// Where a direct I/O buffer starts past an aligned address: half the time exactly the
    /// memory alignment `statx` promises is enough (not page-aligned), else page-aligned.
    fn mem_skew(&mut self) -> u64 {
        let m = self.dio.mem_align;
        if m < self.page && self.rng.chance(1, 2) {
            m * self.rng.range(1, self.page / m - 1)
        } else {
            0
        }
    }

    fn buf_align(&self) -> usize {
        us(self.page.max(self.dio.mem_align))
    }

    /// A direct I/O range: aligned to `unit`, or (one time in eight) only to 512 bytes and not
    /// to 4096. Returns the range and whether it is of the second kind.
    fn dio_range(&mut self, off_limit: u64) -> (u64, u64, bool) {
        let unaligned = self.rng.chance(1, 8);
        let unit = if unaligned {
            SECTOR
        } else {
            self.dio.write_align
        };
        let mut off = align_down(self.rng.below(off_limit), unit);
        let len = align_up(self.rng.range(1, self.max_op), unit);
        if unaligned && off.is_multiple_of(FALLBACK_ALIGN) && len.is_multiple_of(FALLBACK_ALIGN) {
            off += SECTOR;
        }
        (off, len, unaligned)
    }

    fn op_dread(&mut self, f: usize) {
        let size = self.size(f);
        let limit = if size == 0 || self.rng.chance(1, 16) {
            size + self.max_op
        } else {
            size
        };
        let (off, len, chosen) = self.dio_range(limit);
        let skew = self.mem_skew();
        let strict =
            off.is_multiple_of(self.dio.read_align) && len.is_multiple_of(self.dio.read_align);
        let unaligned = is_unaligned(chosen, off, len);
        let text = format!(
            "{}{}{}",
            self.range_text(f, off, len),
            if unaligned { " unaligned" } else { "" },
            skew_text(skew)
        );
        self.begin("dread", text, Self::span(f, off, len, false));
        let want = want_len(size, off, len);
        let mut buf = AlignedBuf::new(us(len), self.buf_align(), us(skew));
        let r = pread_full(self.dfd(f), off, buf.as_mut_slice(), want);
        self.count(OpKind::Dread).done += 1;
        match r {
            Err(Errno::INVAL) if !strict => {
                self.count(OpKind::Dread).unaligned_einval += 1;
                self.note("EINVAL (allowed: not aligned as statx asks)");
            }
            Err(e) => self.fail(&format!("O_DIRECT pread: {e}{}", strict_text(strict)), ""),
            Ok(got) => {
                self.check_read(f, off, &buf.as_slice()[..got], want, "O_DIRECT read");
                if unaligned {
                    self.count(OpKind::Dread).unaligned_ok += 1;
                }
            }
        }
    }

    fn op_dwrite(&mut self, f: usize) {
        let (off, mut len, unaligned_kind) = self.dio_range(self.max_len);
        let unit = if unaligned_kind {
            SECTOR
        } else {
            self.dio.write_align
        };
        let skew = self.mem_skew();
        if off + len > self.max_len {
            len = align_down(self.max_len.saturating_sub(off), unit);
        }
        if len == 0 {
            self.skip(OpKind::Dwrite, "no aligned room below --max-len");
            return;
        }
        let strict =
            off.is_multiple_of(self.dio.write_align) && len.is_multiple_of(self.dio.write_align);
        let unaligned = is_unaligned(unaligned_kind, off, len);
        let text = format!(
            "{}{}{}",
            self.range_text(f, off, len),
            if unaligned { " unaligned" } else { "" },
            skew_text(skew)
        );
        self.begin("dwrite", text, Self::span(f, off, len, true));
        let mut buf = AlignedBuf::new(us(len), self.buf_align(), us(skew));
        fill_pattern(buf.as_mut_slice(), self.opnum, off);
        let (done, r) = pwrite_full(self.dfd(f), off, buf.as_slice());
        self.files[f].model.write(off, &buf.as_slice()[..done]);
        self.count(OpKind::Dwrite).done += 1;
        match r {
            Err(Errno::INVAL) if !strict && done == 0 => {
                self.count(OpKind::Dwrite).unaligned_einval += 1;
                self.note("EINVAL (allowed: not aligned as statx asks)");
            }
            Err(e) => self.fail(
                &format!(
                    "O_DIRECT pwrite: {e} after 0x{done:x} bytes{}",
                    strict_text(strict)
                ),
                "",
            ),
            Ok(()) if unaligned => self.count(OpKind::Dwrite).unaligned_ok += 1,
            Ok(()) => {}
        }
    }

    fn op_mapread(&mut self, f: usize) {
        let size = self.size(f);
        if size == 0 {
            self.skip(OpKind::Mapread, "empty file");
            return;
        }
        let off = self.rng.below(size);
        let len = self.rng.range(1, self.max_op).min(size - off);
        self.begin(
            "mapread",
            self.range_text(f, off, len),
            Self::span(f, off, len, false),
        );
        let start = align_down(off, self.page);
        let mut buf = vec![0u8; us(len)];
        match Mapping::new(self.fd(f), start, us(off + len - start), false) {
            Ok(map) => map.read(us(off - start), &mut buf),
            Err(e) => self.fail(&format!("mmap: {e}"), ""),
        }
        self.check_read(f, off, &buf, len, "mmap read");
        self.count(OpKind::Mapread).done += 1;
    }

    fn op_mapwrite(&mut self, f: usize) {
        let (off, len) = self.write_range();
        self.begin(
            "mapwrite",
            self.range_text(f, off, len),
            Self::span(f, off, len, true),
        );
        if off + len > self.size(f) {
            if let Err(e) = fs::ftruncate(self.fd(f), off + len) {
                self.fail(
                    &format!(
                        "ftruncate to 0x{:x} before the mapped write: {e}",
                        off + len
                    ),
                    "",
                );
            }
            self.files[f].model.resize(off + len);
            self.note(&format!("grown to 0x{:x} first", off + len));
        }
        let mut data = vec![0u8; us(len)];
        fill_pattern(&mut data, self.opnum, off);
        let start = align_down(off, self.page);
        let r = Mapping::new(self.fd(f), start, us(off + len - start), true).and_then(|mut map| {
            map.write(us(off - start), &data);
            map.sync(MsyncFlags::SYNC)
        });
        self.files[f].model.write(off, &data);
        if let Err(e) = r {
            self.fail(&format!("mmap write or msync: {e}"), "");
        }
        self.count(OpKind::Mapwrite).done += 1;
    }

    fn op_truncate(&mut self, f: usize) {
        let mut size = self.rng.below(self.max_len + 1);
        if self.rng.chance(1, 4) {
            size = align_down(size, FALLBACK_ALIGN);
        }
        let old = self.size(f);
        let spans = if size < old {
            Self::span(f, size, old - size, true)
        } else {
            Vec::new()
        };
        self.begin(
            "truncate",
            format!("{} 0x{old:x} -> 0x{size:x}", self.files[f].label),
            spans,
        );
        if let Err(e) = fs::ftruncate(self.fd(f), size) {
            self.fail(&format!("ftruncate: {e}"), "");
        }
        self.files[f].model.resize(size);
        self.count(OpKind::Truncate).done += 1;
    }

    fn op_fallocate(&mut self, kind: OpKind, f: usize) {
        let size = self.size(f);
        let off = if size > 0 && !self.rng.chance(1, 8) {
            self.rng.below(size)
        } else {
            self.rng.below(self.max_len)
        };
        let len = self.rng.range(1, self.max_op).min(self.max_len - off);
        let keep = kind == OpKind::Punch || self.rng.chance(1, 2);
        let mut flags = if keep {
            FallocateFlags::KEEP_SIZE
        } else {
            FallocateFlags::empty()
        };
        match kind {
            OpKind::Punch => flags |= FallocateFlags::PUNCH_HOLE,
            OpKind::Zero => flags |= FallocateFlags::ZERO_RANGE,
            _ => {}
        }
        let text = format!(
            "{}{}",
            self.range_text(f, off, len),
            if keep { " keep-size" } else { "" }
        );
        self.begin(
            kind.name(),
            text,
            Self::span(f, off, len, kind != OpKind::Alloc),
        );
        let r = retry(|| fs::fallocate(self.fd(f), flags, off, len));
        self.count(kind).done += 1;
        match r {
            Ok(()) => {
                let model = &mut self.files[f].model;
                if kind != OpKind::Alloc {
                    model.zero(off, off + len);
                }
                if !keep {
                    model.grow(off + len);
                }
            }
            Err(Errno::OPNOTSUPP) => {
                self.count(kind).refused += 1;
                self.note("EOPNOTSUPP");
            }
            Err(e) => self.fail(&format!("fallocate({flags:?}): {e}"), ""),
        }
    }

    fn op_sync(&mut self, kind: OpKind, f: usize) {
        let direct = self.direct && self.rng.chance(1, 2);
        self.begin(
            kind.name(),
            format!(
                "{}{}",
                self.files[f].label,
                if direct { " (O_DIRECT descriptor)" } else { "" }
            ),
            Vec::new(),
        );
        let fd = if direct { self.dfd(f) } else { self.fd(f) };
        let r = if kind == OpKind::Fsync {
            fs::fsync(fd)
        } else {
            fs::fdatasync(fd)
        };
        if let Err(e) = r {
            self.fail(&format!("{}: {e}", kind.name()), "");
        }
        self.count(kind).done += 1;
    }

    fn op_invalidate(&mut self, f: usize) {
        let size = self.size(f);
        let flush = self.rng.chance(1, 2);
        self.begin(
            "invalidate",
            format!(
                "{}{}",
                self.files[f].label,
                if flush { " after fdatasync" } else { "" }
            ),
            Vec::new(),
        );
        if flush {
            if let Err(e) = fs::fdatasync(self.fd(f)) {
                self.fail(&format!("fdatasync: {e}"), "");
            }
        }
        if size > 0 {
            if let Err(e) = Mapping::new(self.fd(f), 0, us(size), false)
                .and_then(|m| m.sync(MsyncFlags::INVALIDATE))
            {
                self.fail(&format!("mmap or msync(MS_INVALIDATE): {e}"), "");
            }
        }
        if let Err(e) = fs::fadvise(self.fd(f), 0, None, Advice::DontNeed) {
            self.fail(&format!("posix_fadvise(DONTNEED): {e}"), "");
        }
        self.count(OpKind::Invalidate).done += 1;
    }

    /// Source and destination files of a copy or clone: either file to either, with FILE.2.
    fn pick_pair(&mut self) -> (usize, usize) {
        if self.files.len() > 1 {
            (us(self.rng.below(2)), us(self.rng.below(2)))
        } else {
            (0, 0)
        }
    }

    fn copy_text(&self, src: usize, soff: u64, len: u64, dst: usize, doff: u64) -> String {
        format!(
            "{} 0x{soff:x} +0x{len:x} -> {} 0x{doff:x}",
            self.files[src].label, self.files[dst].label
        )
    }

    fn copy_spans(src: usize, soff: u64, len: u64, dst: usize, doff: u64) -> Vec<Span> {
        vec![
            Span {
                file: src,
                start: soff,
                end: soff + len,
                write: false,
            },
            Span {
                file: dst,
                start: doff,
                end: doff + len,
                write: true,
            },
        ]
    }

    /// The model's side of a copy or clone of `len` bytes.
    fn model_copy(&mut self, src: usize, soff: u64, len: usize, dst: usize, doff: u64) {
        let data = self.files[src].model.bytes(soff, len).to_vec();
        self.files[dst].model.write(doff, &data);
    }

    fn op_copy(&mut self) {
        let (src, dst) = self.pick_pair();
        let ssize = self.size(src);
        let soff = self.rng.below(ssize);
        let (doff, len) = self.write_range();
        let len = len.min(ssize - soff);
        if ssize == 0 {
            self.skip(OpKind::Copy, "empty source");
            return;
        }
        if src == dst && soff < doff + len && doff < soff + len {
            self.skip(OpKind::Copy, "overlapping ranges of one file");
            return;
        }
        self.begin(
            "copy",
            self.copy_text(src, soff, len, dst, doff),
            Self::copy_spans(src, soff, len, dst, doff),
        );
        let mut done = 0u64;
        while done < len {
            let (mut si, mut di) = (soff + done, doff + done);
            match fs::copy_file_range(
                self.fd(src),
                Some(&mut si),
                self.fd(dst),
                Some(&mut di),
                us(len - done),
            ) {
                Ok(0) => {
                    self.model_copy(src, soff, us(done), dst, doff);
                    self.fail(
                        &format!("copy_file_range returned 0 after 0x{done:x} of 0x{len:x} bytes"),
                        "",
                    );
                }
                Ok(n) => done += n as u64,
                Err(Errno::INTR) => {}
                Err(e) => {
                    self.model_copy(src, soff, us(done), dst, doff);
                    self.fail(&format!("copy_file_range: {e} after 0x{done:x} bytes"), "");
                }
            }
        }
        self.model_copy(src, soff, us(len), dst, doff);
        self.count(OpKind::Copy).done += 1;
    }

    fn op_clone(&mut self) {
        let bs = self.clone_align;
        let (src, dst) = self.pick_pair();
        let ssize = self.size(src);
        let soff = align_down(self.rng.below(ssize), bs);
        let mut len = align_up(self.rng.range(1, self.max_op), bs);
        let mut doff = align_down(self.rng.below(self.max_len), bs);
        if ssize == 0 {
            self.skip(OpKind::Clone, "empty source");
            return;
        }
        if soff + len >= ssize {
            // Up to the source's end of file: the one unaligned length FICLONERANGE takes.
            len = ssize - soff;
        }
        if doff + len > self.max_len {
            doff = align_down(self.max_len - len, bs);
        }
        if !len.is_multiple_of(bs) && doff + len < self.size(dst) {
            // The source's last block would land inside the destination: whole blocks only.
            len = align_down(len, bs);
        }
        let blocks = align_up(len, bs);
        if len == 0 {
            self.skip(OpKind::Clone, "no whole block to clone");
            return;
        }
        if src == dst && soff < doff + blocks && doff < soff + blocks {
            self.skip(OpKind::Clone, "overlapping ranges of one file");
            return;
        }
        self.begin(
            "clone",
            self.copy_text(src, soff, len, dst, doff),
            Self::copy_spans(src, soff, len, dst, doff),
        );
        let r = sys::clone_range(self.fd(dst), self.fd(src), soff, len, doff);
        self.count(OpKind::Clone).done += 1;
        match r {
            Ok(()) => self.model_copy(src, soff, us(len), dst, doff),
            Err(e @ (Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL)) if !self.require_clone => {
                self.count(OpKind::Clone).refused += 1;
                self.note(&format!("refused: {e}"));
            }
            Err(e) => self.fail(&format!("FICLONERANGE: {e}"), ""),
        }
    }

    // --- corruption injection, final check, summary -------------------------------------------

    /// `--inject-corruption`: overwrites up to 8 spread pieces of 64 bytes of FILE with their
    /// complement through a descriptor of its own, leaving the model as it was (an empty file
    /// gets 64 bytes, which its size shows). Draws nothing from the operation generator.
    fn inject_corruption(&mut self) {
        let size = self.size(0);
        self.begin(
            "INJECT",
            format!("corruption of A behind the model's back (size 0x{size:x})"),
            Vec::new(),
        );
        let fd = match open_file(&self.files[0].path, OFlags::WRONLY) {
            Ok(fd) => fd,
            Err(e) => self.fail(&format!("open for --inject-corruption: {e}"), ""),
        };
        let pieces: Vec<(u64, Vec<u8>)> = if size == 0 {
            vec![(0, vec![0x5a; DUMP_BYTES])]
        } else {
            (0..8u64)
                .map(|i| {
                    let off = size * i / 8;
                    let len = (DUMP_BYTES as u64).min(size - off);
                    (
                        off,
                        self.files[0]
                            .model
                            .bytes(off, us(len))
                            .iter()
                            .map(|b| !b)
                            .collect(),
                    )
                })
                .collect()
        };
        for (off, garbage) in &pieces {
            if let (_, Err(e)) = pwrite_full(fd.as_fd(), *off, garbage) {
                self.fail(&format!("pwrite for --inject-corruption: {e}"), "");
            }
        }
        self.finish();
    }

    /// Closes every descriptor, reopens each file and reads all of it, buffered and (when
    /// direct operations ran) with `O_DIRECT`.
    fn final_check(&mut self) {
        self.opnum = self.ops + 1;
        for file in &mut self.files {
            file.dfd = None;
            file.fd = None;
        }
        for f in 0..self.files.len() {
            let size = self.size(f);
            self.begin(
                "final",
                format!("{}: reopen, read 0x{size:x} bytes", self.files[f].label),
                Vec::new(),
            );
            let fd = match open_file(&self.files[f].path, OFlags::RDONLY) {
                Ok(fd) => fd,
                Err(e) => self.fail(&format!("reopen {}: {e}", self.files[f].path.display()), ""),
            };
            match fs::fstat(&fd) {
                Ok(st) if u64::try_from(st.st_size).ok() == Some(size) => {}
                Ok(st) => self.fail(
                    &format!(
                        "size mismatch after reopening: fstat says 0x{:x}, the model 0x{size:x}",
                        st.st_size
                    ),
                    "",
                ),
                Err(e) => self.fail(&format!("fstat: {e}"), ""),
            }
            let chunk = 1u64 << 20;
            let mut buf = vec![0u8; us(chunk)];
            let mut off = 0;
            loop {
                let want = want_len(size, off, chunk);
                match pread_full(fd.as_fd(), off, &mut buf, want.max(1)) {
                    Ok(got) if got == 0 && want == 0 => break,
                    Ok(got) => self.check_read(f, off, &buf[..got], want, "final buffered read"),
                    Err(e) => self.fail(&format!("pread: {e}"), ""),
                }
                off += want;
            }
            self.files[f].fd = Some(fd);
            if self.direct {
                self.note("buffered ok");
                let dfd = match open_file(&self.files[f].path, OFlags::RDONLY | OFlags::DIRECT) {
                    Ok(fd) => fd,
                    Err(e) => self.fail(&format!("reopen with O_DIRECT: {e}"), ""),
                };
                let chunk = align_up(chunk, self.dio.write_align);
                let mut buf = AlignedBuf::new(us(chunk), self.buf_align(), 0);
                let mut off = 0;
                while off < size {
                    let want = want_len(size, off, chunk);
                    match pread_full(dfd.as_fd(), off, buf.as_mut_slice(), want) {
                        Ok(got) => self.check_read(
                            f,
                            off,
                            &buf.as_slice()[..got],
                            want,
                            "final O_DIRECT read",
                        ),
                        Err(e) => self.fail(&format!("O_DIRECT pread: {e}"), ""),
                    }
                    off += want;
                }
                self.note("O_DIRECT ok");
            }
            self.finish();
        }
    }

    fn summary(&self) {
        let mut parts = Vec::new();
        for &k in &self.mix {
            let c = self.counts[k as usize];
            let extra = match k {
                OpKind::Dread | OpKind::Dwrite => {
                    format!(
                        " (unaligned: {} ok, {} EINVAL)",
                        c.unaligned_ok, c.unaligned_einval
                    )
                }
                OpKind::Punch | OpKind::Zero | OpKind::Alloc => {
                    format!(" (unsupported {})", c.refused)
                }
                OpKind::Clone => format!(" (refused {})", c.refused),
                _ => String::new(),
            };
            parts.push(format!("{} {}{extra}", k.name(), c.done));
        }
        println!(
            "lcfs-fsx: {} operations OK (seed {}): {}; skipped {}",
            self.ops,
            self.seed,
            parts.join(", "),
            self.skipped
        );
    }
}

/// Whether a direct range drawn as the 512-byte kind (`chosen`) still is one (not aligned to
/// 4096 bytes): counted apart in the summary, whether the filesystem reports 512-byte alignment
/// (then it must take them) or more (then it may refuse them with `EINVAL`).
fn is_unaligned(chosen: bool, off: u64, len: u64) -> bool {
    chosen && (!off.is_multiple_of(FALLBACK_ALIGN) || !len.is_multiple_of(FALLBACK_ALIGN))
}

fn skew_text(skew: u64) -> String {
    if skew == 0 {
        String::new()
    } else {
        format!(" mem+0x{skew:x}")
    }
}

fn strict_text(strict: bool) -> &'static str {
    if strict {
        " (the range is aligned as statx asks)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_names_the_operation_and_the_offset() {
        let mut b = [0u8; 4];
        fill_pattern(&mut b, 0x1_03, 250);
        assert_eq!(b, [0x03 + 250, 0x03, 0x04, 0x05]);
        assert_eq!(pattern_byte(7, 251 * 3 + 1), 8);
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_down(8191, 4096), 4096);
        assert_eq!(align_up(4097, 4096), 8192);
        assert_eq!(align_up(0, 512), 0);
        assert_eq!(want_len(100, 90, 50), 10);
        assert_eq!(want_len(100, 120, 50), 0);
    }
}
