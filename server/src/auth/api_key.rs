//! API key format: `apk_` + 12 characters (the stored, shown, looked-up prefix) + `_` + 32
//! characters of secret. Keys are random enough that a SHA-256 digest is a safe way to store
//! them (no slow hash needed, and verification stays cheap on every request).

use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};

pub const PREFIX_TAG: &str = "apk_";

pub struct NewKey {
    pub prefix: String,
    pub secret: String,
    pub hash: String,
}

pub fn generate() -> NewKey {
    let mut rng = rand::thread_rng();
    let prefix = format!("{PREFIX_TAG}{}", Alphanumeric.sample_string(&mut rng, 12));
    let secret = format!("{prefix}_{}", Alphanumeric.sample_string(&mut rng, 32));
    let hash = digest(&secret);
    NewKey {
        prefix,
        secret,
        hash,
    }
}

pub fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The lookup prefix of a presented key, if it has our shape.
pub fn prefix_of(secret: &str) -> Option<&str> {
    let prefix = secret.get(..PREFIX_TAG.len() + 12)?;
    (prefix.starts_with(PREFIX_TAG) && secret.as_bytes().get(prefix.len()) == Some(&b'_'))
        .then_some(prefix)
}

/// Compares digests in constant time.
pub fn matches(secret: &str, stored_hash: &str) -> bool {
    constant_time_eq(digest(secret).as_bytes(), stored_hash.as_bytes())
}

/// Equality whose timing does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips() {
        let key = generate();
        assert_eq!(prefix_of(&key.secret), Some(key.prefix.as_str()));
        assert!(matches(&key.secret, &key.hash));
        assert!(!matches(&format!("{}x", key.secret), &key.hash));
        assert_eq!(prefix_of("apk_short"), None);
        assert_eq!(prefix_of("xyz_123456789012_abc"), None);
    }
}
