//! Map node validation on arbitrary blocks. Errors are fine; panics are bugs.
#![no_main]

use lcfs_format::refmap::{self, MapExpect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut block = vec![0u8; 4096];
    let n = data.len().min(4096);
    block[..n].copy_from_slice(&data[..n]);
    if data.first().is_some_and(|b| b & 1 == 1) {
        let _ = refmap::seal(&mut block);
    }
    let level = data.get(32).copied().unwrap_or(0);
    let first =
        u64::from(data.get(40).copied().unwrap_or(0)) * refmap::coverage(level.min(5) + 1).get();
    let expect = MapExpect {
        blocknr: u64::from_le_bytes(block[8..16].try_into().unwrap()),
        fsid: u64::from_le_bytes(block[24..32].try_into().unwrap()),
        level,
        first,
        txn_generation: u64::from(data.get(17).copied().unwrap_or(0)),
        // The running transaction's nodes, or also the one before (a split commit's copies).
        pins_from: u64::from(data.get(17).copied().unwrap_or(0))
            .saturating_sub(u64::from(data.get(18).copied().unwrap_or(0) & 1)),
        total_blocks: u64::from(data.get(2).copied().unwrap_or(0)) << 20,
    };
    if refmap::check(&block, &expect).is_ok() {
        for i in 0..refmap::LEAF_ENTRIES {
            let _ = refmap::leaf_get(&block, i);
        }
        for i in 0..refmap::NODE_ENTRIES {
            let _ = refmap::entry_get(&block, i);
        }
    }
});
