//! Whole images with damage: a small valid filesystem (several layers, shared subtrees, extents,
//! a map with pins committed away) gets up to 16 byte changes anywhere, optionally with node and
//! map checksums fixed up so the damage reaches the structural checks. Then fsck runs, the
//! volume is opened, and layer operations run on it. Errors are expected; panics, hangs and
//! runaway recursion are bugs.
#![no_main]

use std::sync::OnceLock;

use lcfs_format::node::{self, Key};
use lcfs_format::records::{kind, put_inline_data, ExtentRecord, Timespec};
use lcfs_format::refmap;
use lcfs_format::superblock::Superblock;
use lcfs_format::volume::Volume;
use lcfs_image::fsck;
use lcfs_image::store::MemDevice;
use libfuzzer_sys::fuzz_target;

const NOW: Timespec = Timespec {
    sec: 1_700_000_000,
    nsec: 0,
};

fn base() -> &'static MemDevice {
    static BASE: OnceLock<MemDevice> = OnceLock::new();
    BASE.get_or_init(|| {
        let total = 1500;
        let sb = Superblock::new(total, [1; 16], 1_700_000_000);
        let mut vol = Volume::format(MemDevice::new(total), sb, Some(b"base"), NOW).unwrap();
        for i in 0..600u64 {
            let mut v = vec![0u8; 22];
            put_inline_data(&mut v, &[i as u8; 20]).unwrap();
            vol.insert(1, &Key::new(i + 2, kind::INLINE, 0), &v)
                .unwrap();
            if i % 50 == 0 {
                let (b, n) = vol.alloc_data(2).unwrap();
                let mut e = [0u8; 16];
                ExtentRecord {
                    disk_block: b,
                    len: n,
                    flags: 0,
                }
                .encode(&mut e)
                .unwrap();
                vol.insert(1, &Key::new(i + 2, kind::EXTENT, 0), &e)
                    .unwrap();
            }
        }
        vol.freeze_layer(1).unwrap();
        let c = vol.create_layer(b"child", Some(1), NOW).unwrap();
        vol.remove(c, &Key::new(52, kind::EXTENT, 0)).unwrap();
        vol.commit(NOW).unwrap();
        vol.into_store()
    })
}

fuzz_target!(|data: &[u8]| {
    let mut input = data.iter().copied();
    let mut byte = move || input.next().unwrap_or(0);
    let mut dev = base().clone();
    let blocks: Vec<u64> = dev.blocks.keys().copied().collect();
    let reseal = byte() & 1 == 1;
    for _ in 0..usize::from(byte() % 17) {
        let (b, hi, lo, x) = (byte(), byte(), byte(), byte());
        let blk = blocks[usize::from(b) % blocks.len()];
        let off = (usize::from(hi) << 8 | usize::from(lo)) % 4096;
        if let Some(block) = dev.blocks.get_mut(&blk) {
            block[off] ^= x;
            if reseal {
                if &block[..4] == b"LCFR" {
                    let _ = refmap::seal(block);
                } else if &block[..4] == b"LCFN" {
                    let _ = node::seal(block);
                }
            }
        }
    }
    let _ = fsck::check(dev.clone(), &mut |_, _, _| {});
    let Ok((mut vol, _)) = Volume::open(dev) else {
        return;
    };
    for _ in 0..16 {
        let (op, a, b) = (byte(), byte(), byte());
        let layer = u64::from(a % 4);
        let key = Key::new(u64::from(b) + 2, kind::INLINE, 0);
        let _ = match op % 8 {
            0 => vol.lookup(layer, &key, |v| v.len()).map(|_| ()),
            1 => vol.insert(layer, &key, &[0, 0]),
            2 => vol
                .remove(layer, &Key::new(u64::from(b) + 2, kind::EXTENT, 0))
                .map(|_| ()),
            3 => vol.create_layer(&[b'x', a], Some(layer), NOW).map(|_| ()),
            4 => vol.remove_layer(layer),
            5 => vol.freeze_layer(layer),
            6 => vol.diff(layer, Key::MIN, &mut |_| Ok(true)).map(|_| ()),
            _ => vol.commit(NOW),
        };
        if vol.is_aborted() {
            break;
        }
    }
});
