//! `lcfs-corrupt`: the corruption suite's tool (`tests/guest/corrupt.sh`).
//!
//! `lcfs-corrupt generate --out DIR` (on the host) writes:
//! - `base.img`: the populated base image, cut after its last block that is not zero (the
//!   rest of the filesystem is zeros; `blocks` in the header of `mutants.txt` gives its size);
//! - `blocks.bin`: the replacement blocks of every mutant, 4 KiB each, in order;
//! - `mutants.txt`: `#` comment lines, then one line per mutant:
//!   `ID FSCK INDEX:BLOCKNR[,INDEX:BLOCKNR...] DESCRIPTION...`, where block `INDEX` of
//!   `blocks.bin` replaces block `BLOCKNR` of the base image, and `FSCK` is what `fsck.lcfs`
//!   finds on the mutant (`clean`, `damaged` or `unreadable`).
//!
//! `--image ID=PATH` also writes mutant `ID` as a whole image (to reproduce one by hand).
//!
//! `lcfs-corrupt exercise MOUNTPOINT [--write LAYER] [--frozen LAYER]` (in the guest) walks a
//! mounted filesystem and makes changes (see [`lcfs_corrupt::exercise`]); it prints one line,
//! `clean ...` or `errors STEP:ERRNO,... ...`, and exits 0 either way.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use lcfs_corrupt::{base_image, exercise, fsck_verdict, mutants, BLOCK, DEFAULT_BLOCKS};

/// Corrupted LCFS images: generate them, exercise them.
#[derive(Debug, Parser)]
#[command(name = "lcfs-corrupt", version, about, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a populated LCFS image and deterministic mutants of its metadata blocks.
    Generate {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,

        /// Number of mutants.
        #[arg(long, default_value_t = 300)]
        count: u32,

        /// Seed of the mutations.
        #[arg(long, default_value_t = 1)]
        seed: u64,

        /// Image size in 4 KiB blocks.
        #[arg(long, default_value_t = DEFAULT_BLOCKS)]
        blocks: u64,

        /// Also write mutant ID as a whole image at PATH (ID=PATH, repeatable).
        #[arg(long)]
        image: Vec<String>,
    },
    /// Walk a mounted filesystem (and change it); print what failed.
    Exercise {
        /// Mount point.
        root: PathBuf,

        /// Read-write layer to change.
        #[arg(long)]
        write: Option<String>,

        /// Frozen layer, where creating a file must fail.
        #[arg(long)]
        frozen: Option<String>,
    },
}

fn generate(out: &PathBuf, count: u32, seed: u64, blocks: u64, images: &[String]) -> Result<()> {
    let base = base_image(blocks)?;
    if fsck_verdict(&base) != "clean" {
        bail!("the base image is not clean");
    }
    let all = mutants(&base, seed, count)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut patch_blocks = Vec::new();
    let mut list = format!(
        "# lcfs-corrupt seed {seed} count {count} blocks {blocks}\n\
         # ID FSCK INDEX:BLOCKNR,... DESCRIPTION\n"
    );
    let mut verdicts: BTreeMap<&str, u32> = BTreeMap::new();
    for m in &all {
        let verdict = fsck_verdict(&m.apply(&base));
        *verdicts.entry(verdict).or_default() += 1;
        let patches: Vec<String> = m
            .patches
            .iter()
            .map(|p| {
                patch_blocks.extend_from_slice(&p.data);
                format!("{}:{}", patch_blocks.len() / BLOCK - 1, p.blocknr)
            })
            .collect();
        writeln!(
            list,
            "{} {} {} {}",
            m.id,
            verdict,
            patches.join(","),
            m.desc
        )?;
    }
    let write = |name: &str, data: &[u8]| {
        let path = out.join(name);
        std::fs::write(&path, data).with_context(|| format!("cannot write {}", path.display()))
    };
    let used = base
        .chunks(BLOCK)
        .rposition(|b| b.iter().any(|&x| x != 0))
        .map_or(0, |last| (last + 1) * BLOCK);
    write("base.img", &base[..used])?;
    write("blocks.bin", &patch_blocks)?;
    write("mutants.txt", list.as_bytes())?;
    for spec in images {
        let Some((id, path)) = spec.split_once('=') else {
            bail!("--image wants ID=PATH, not '{spec}'");
        };
        let id: usize = id.parse().context("mutant number")?;
        let Some(m) = all.get(id) else {
            bail!("no mutant {id} (count {count})");
        };
        std::fs::write(path, m.apply(&base)).with_context(|| format!("cannot write {path}"))?;
    }
    let summary: Vec<String> = verdicts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    eprintln!(
        "lcfs-corrupt: {} mutants of a {blocks}-block image in {} (fsck: {})",
        all.len(),
        out.display(),
        summary.join(", ")
    );
    Ok(())
}

fn main() -> Result<()> {
    match Args::parse().command {
        Command::Generate {
            out,
            count,
            seed,
            blocks,
            image,
        } => generate(&out, count, seed, blocks, &image),
        Command::Exercise {
            root,
            write,
            frozen,
        } => {
            let o = exercise::exercise(&root, write.as_deref(), frozen.as_deref());
            println!("{}", o.summary());
            Ok(())
        }
    }
}
