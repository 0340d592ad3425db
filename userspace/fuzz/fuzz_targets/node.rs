//! Node validation and item access on arbitrary blocks. Errors are fine; panics are bugs.
#![no_main]

use lcfs_format::node::{self, Expect, Key, NODE_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut block = vec![0u8; NODE_SIZE];
    let n = data.len().min(NODE_SIZE);
    block[..n].copy_from_slice(&data[..n]);
    // Half of the inputs get a valid checksum, so the structural checks are reached.
    if data.first().is_some_and(|b| b & 1 == 1) {
        let _ = node::seal(&mut block);
    }
    let hdr = match node::header(&block) {
        Ok(h) => h,
        Err(_) => return,
    };
    let expect = Expect {
        blocknr: hdr.blocknr,
        fsid: hdr.fsid,
        tree: hdr.tree,
        level: None,
        total_blocks: u64::MAX,
    };
    let valid = node::check(&block, &expect).is_ok();
    // Accessors must not panic on any block, valid or not.
    let key = Key::new(u64::from(data.len() as u32), 1, 7);
    let _ = node::search(&block, &key);
    let _ = node::child_index(&block, &key);
    let len = node::len(&block).unwrap_or(0).min(300);
    for i in 0..len {
        let _ = node::leaf_key(&block, i);
        let _ = node::leaf_value(&block, i);
        let _ = node::internal_key(&block, i);
        let _ = node::internal_child(&block, i);
    }
    if valid && hdr.is_leaf() {
        // Mutations of a valid leaf keep it valid.
        let found = node::search(&block, &key).unwrap();
        if let (Err(pos), true) = (found, node::leaf_fits(&block, 10).unwrap()) {
            node::leaf_insert(&mut block, pos, &key, b"0123456789").unwrap();
        } else if len > 0 {
            node::leaf_remove(&mut block, 0).unwrap();
        }
        node::seal(&mut block).unwrap();
        node::check(&block, &expect).unwrap();
    }
});
