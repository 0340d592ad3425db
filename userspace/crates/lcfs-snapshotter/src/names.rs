//! Layer names of snapshots.
//!
//! A snapshot's layer is named after its key by a reversible encoding, so that `ls` of the mount
//! root tells which layer holds which snapshot. The metadata database records each snapshot's
//! layer id and name and is the source of truth; the names only have to be unique and legal.
//!
//! * [`encode`]: the key with `%` written `%25`, `/` written `%2F`, NUL written `%00` and a leading
//!   `.` written `%2E` (uppercase hex, as RFC 3986 percent-encoding). Everything else is kept, so
//!   the name is valid UTF-8, holds no `/` or NUL and is never `.` or `..`. Keys containerd sends
//!   look like `default/12/sha256:...`, which becomes `default%2F12%2Fsha256:...`.
//! * [`hash_name`]: when the encoding would exceed the 255 bytes a layer name may hold, `%H`
//!   followed by the 64 hex digits of the key's SHA-256. `%H` is not an escape the encoding
//!   writes, so a hashed name never equals an encoded one.
//! * [`trash_name`]: `%T<layer id>`, the name an unreferenced layer that could not be removed
//!   yet is moved to, so that its name is free for a new snapshot.
//! * [`META_LAYER`]: the metadata layer. Its name starts with `.`, which no encoding produces.
//!
//! Layers whose names start with `.` are never the daemon's: it leaves them alone.

use sha2::{Digest, Sha256};

/// Longest layer name, in bytes (`LCFS_LAYER_NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// The layer holding the metadata database; never a snapshot.
pub const META_LAYER: &str = ".containerd-meta";

/// The layer name of snapshot `key`: [`encode`], or [`hash_name`] when that is too long.
pub fn layer_name(key: &str) -> String {
    let encoded = encode(key);
    if encoded.len() <= NAME_MAX {
        encoded
    } else {
        hash_name(key)
    }
}

/// The reversible encoding of `key` (see the module documentation); may exceed [`NAME_MAX`].
pub fn encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, c) in key.char_indices() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '\0' => out.push_str("%00"),
            '.' if i == 0 => out.push_str("%2E"),
            c => out.push(c),
        }
    }
    out
}

/// The key a name made by [`encode`] stands for; `None` for any other name (hashed, trash,
/// names with other escapes or a leading `.`).
pub fn decode(name: &str) -> Option<String> {
    if name.starts_with('.') {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let escape = rest.get(pos..pos + 3)?;
        match escape {
            "%25" => out.push('%'),
            "%2F" => out.push('/'),
            "%00" => out.push('\0'),
            "%2E" if out.is_empty() => out.push('.'),
            _ => return None,
        }
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    // Only the canonical form decodes: a name that encodes back differently came from elsewhere.
    (encode(&out) == name).then_some(out)
}

/// `%H` and the SHA-256 of `key` in hex: the name of a snapshot whose encoded key is too long.
pub fn hash_name(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::from("%H");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Where an unreferenced layer `id` that is still busy is moved out of the way.
pub fn trash_name(id: u64) -> String {
    format!("%T{id}")
}

/// Whether the daemon may own a layer of this name: every name not starting with `.`.
pub fn is_ours(name: &str) -> bool {
    !name.starts_with('.')
}

/// Whether `name` is a legal LCFS layer name (1..=255 bytes, no `/` or NUL, not `.` or `..`).
pub fn is_legal(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && !name.contains(['/', '\0'])
        && name != "."
        && name != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_keys_round_trip() {
        let keys = [
            "default/12/sha256:0a1b2c",
            "k8s.io/7/extract-123456789-abcd sha256:ffff",
            "plain",
            "%",
            "%25",
            "100%/done",
            ".",
            "..",
            ".hidden/.x",
            "a\0b",
            "/",
            "//",
            "ünïcødé/キー",
            "%2F",
        ];
        for key in keys {
            let name = encode(key);
            assert!(is_legal(&name), "{key:?} -> {name:?}");
            assert!(is_ours(&name), "{key:?} -> {name:?}");
            assert_eq!(decode(&name).as_deref(), Some(key), "{name:?}");
            assert_eq!(layer_name(key), name);
        }
        assert_eq!(encode("default/1/sha256:ab"), "default%2F1%2Fsha256:ab");
        assert_eq!(encode(".x.y"), "%2Ex.y");
        assert_eq!(encode("a%b"), "a%25b");
    }

    #[test]
    fn encoding_is_injective_on_tricky_pairs() {
        let pairs = [
            ("a/b", "a%2Fb"),
            ("%2F", "/"),
            (".a", "%2Ea"),
            ("a\0", "a%00"),
        ];
        for (x, y) in pairs {
            assert_ne!(encode(x), encode(y), "{x:?} vs {y:?}");
        }
    }

    #[test]
    fn non_canonical_names_do_not_decode() {
        for name in [
            ".containerd-meta",
            "%H00",
            "%T5",
            "a%2",
            "a%2f",
            "a%41",
            "x%2E",
            "%",
        ] {
            assert_eq!(decode(name), None, "{name:?}");
        }
        assert_eq!(decode(META_LAYER), None);
        assert!(!is_ours(META_LAYER));
    }

    #[test]
    fn long_keys_fall_back_to_a_hash() {
        let fits = "k".repeat(NAME_MAX);
        assert_eq!(layer_name(&fits), fits);
        let long = "k".repeat(NAME_MAX + 1);
        let name = layer_name(&long);
        assert_eq!(name.len(), 66);
        assert!(name.starts_with("%H"));
        assert!(is_legal(&name));
        assert_eq!(decode(&name), None);
        // Slashes expand three-fold: 100 of them do not fit either.
        let slashes = "/".repeat(100);
        assert!(layer_name(&slashes).starts_with("%H"));
        assert_ne!(layer_name(&long), layer_name(&format!("{long}x")));
        assert_eq!(layer_name(&long), hash_name(&long));
        assert_eq!(trash_name(7), "%T7");
    }
}
