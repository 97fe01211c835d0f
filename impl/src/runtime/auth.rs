//! The cluster key and the MAC every datagram carries (spec/protocol.md,
//! "Threat model"). One 256-bit key per cluster, shared by the replicas and
//! the trusted clients; the tag is keyed BLAKE3 over the whole datagram
//! before it, header included, and is compared in constant time.

use std::fmt;

/// Bytes in a key.
pub const KEY_LEN: usize = blake3::KEY_LEN;

/// Bytes in a tag: the whole BLAKE3 output.
pub const TAG_LEN: usize = blake3::OUT_LEN;

/// The cluster key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; KEY_LEN]);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key from its bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Key {
        Key(bytes)
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<Key, getrandom::Error> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes)?;
        Ok(Key(bytes))
    }

    /// The key as lower-case hex, as a key file holds it.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The tag of `bytes`.
    pub fn tag(&self, bytes: &[u8]) -> [u8; TAG_LEN] {
        *blake3::keyed_hash(&self.0, bytes).as_bytes()
    }

    /// Whether `tag` is the tag of `bytes`, compared in constant time
    /// (`blake3::Hash`'s equality), so a forger learns nothing from how long
    /// a refusal takes.
    pub fn verify(&self, bytes: &[u8], tag: &[u8]) -> bool {
        blake3::keyed_hash(&self.0, bytes) == *tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_verifies_only_with_its_key_and_its_bytes() {
        let key = Key::from_bytes([7; KEY_LEN]);
        let other = Key::from_bytes([8; KEY_LEN]);
        let tag = key.tag(b"prepare");
        assert!(key.verify(b"prepare", &tag));
        assert!(!other.verify(b"prepare", &tag));
        assert!(!key.verify(b"prepare!", &tag));
        assert!(!key.verify(b"prepare", &tag[..TAG_LEN - 1]));
        let mut flipped = tag;
        flipped[3] ^= 1;
        assert!(!key.verify(b"prepare", &flipped));
    }

    #[test]
    fn generated_keys_differ_and_never_print() {
        let (a, b) = (Key::generate().unwrap(), Key::generate().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.to_hex().len(), 2 * KEY_LEN);
        assert!(!format!("{a:?}").contains(&a.to_hex()[..8]));
    }
}
