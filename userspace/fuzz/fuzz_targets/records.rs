//! Record decoders on arbitrary bytes; whatever decodes must encode back to the same bytes.
//! Errors are fine; panics are bugs.
#![no_main]

use lcfs_format::records::{
    inline_data, DirentRecord, ExtentRecord, InodeRecord, LayerNameRecord, LayerRecord, LinkRecord,
    XattrRecord, EXTENT_RECORD_SIZE, INODE_RECORD_SIZE,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = InodeRecord::decode(data) {
        let mut buf = [0u8; INODE_RECORD_SIZE];
        r.encode(&mut buf).unwrap();
        assert_eq!(&buf[..], data);
    }
    if let Ok(d) = DirentRecord::decode(data) {
        let mut buf = vec![0u8; d.size()];
        d.encode(&mut buf).unwrap();
        assert_eq!(&buf[..], data);
    }
    if let Ok(e) = ExtentRecord::decode(data, 1 << 40) {
        let mut buf = [0u8; EXTENT_RECORD_SIZE];
        e.encode(&mut buf).unwrap();
        assert_eq!(&buf[..], data);
    }
    if let Ok(l) = LayerRecord::decode(data, 7, 1 << 40) {
        let mut buf = vec![0u8; l.size()];
        l.encode(&mut buf).unwrap();
        assert_eq!(&buf[..], data);
    }
    if let Ok(l) = LinkRecord::decode(data) {
        let mut buf = vec![0u8; l.size()];
        l.encode(&mut buf).unwrap();
        assert_eq!(&buf[..], data);
    }
    if let Ok(x) = XattrRecord::decode(data, 1 << 40) {
        let mut buf = vec![0u8; x.size()];
        x.encode(&mut buf).unwrap();
        assert_eq!(&buf[..], data);
    }
    if let Ok(n) = LayerNameRecord::decode(data) {
        let mut buf = vec![0u8; n.size()];
        n.encode(&mut buf).unwrap();
        assert_eq!(&buf[..], data);
    }
    let _ = inline_data(data);
});
