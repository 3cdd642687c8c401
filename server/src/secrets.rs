//! Secrets at rest (tenants' LLM API keys; OAuth tokens later): AES-256-GCM under a key ring.
//!
//! `SECRETS_KEYS` is a comma-separated list of `id:base64-of-32-bytes`; the first key encrypts,
//! the others only decrypt. Rotation: put a new key first (`server secrets new-key` makes one),
//! restart every instance, run `server secrets rotate`, then drop the old key. Without
//! `SECRETS_KEYS` the ring lives in `DATA_DIR/secrets.key` (same format, one key per line
//! allowed), created with a random key on first start, so the single binary needs no setup.
//!
//! A stored secret is the text `v1:<key id>:<base64 of nonce ‖ ciphertext>`. The associated data
//! names the record it belongs to ([`aad`]: purpose and tenant), so a ciphertext copied into
//! another tenant's row, or into another kind of column, does not decrypt.
//!
//! Key material (the key file's text, decoded keys, the ciphers' key schedules) and decrypted
//! secrets live in buffers that are wiped when dropped (`zeroize`); copies handed to a client
//! (async-openai keeps the key as a `SecretString`) are wiped by their owners.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::config::Config;

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The key ring's file under `DATA_DIR` when `SECRETS_KEYS` is not set.
pub const KEY_FILE: &str = "secrets.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{0}")]
    Keys(String),
    #[error(
        "the secret was encrypted with key '{0}', which is not in the key ring (SECRETS_KEYS): \
         put that key back (after the current one), or enter the secret again"
    )]
    UnknownKey(String),
    #[error("not an encrypted secret (expected v1:<key id>:<data>)")]
    Malformed,
    #[error("the secret does not decrypt: it was altered, or belongs to another record")]
    Decrypt,
    #[error("the secret is too large to encrypt")]
    Encrypt,
    #[error("key file {path}: {error}")]
    KeyFile { path: String, error: String },
}

/// The associated data binding a secret to its record: what it is and whose it is.
pub fn aad(purpose: &str, tenant_id: Uuid) -> Vec<u8> {
    format!("{purpose}:{tenant_id}").into_bytes()
}

struct Key {
    id: String,
    cipher: Aes256Gcm,
    /// Subkeys for other purposes are derived from it ([`KeyRing::derive`]).
    material: Zeroizing<Vec<u8>>,
}

/// The platform's secret keys; the first encrypts. Never prints a key, only the ids.
#[derive(Clone)]
pub struct KeyRing {
    keys: Arc<Vec<Key>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing").field("ids", &ids).finish()
    }
}

fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A new key as a ring entry: `id:base64-of-32-random-bytes`.
pub fn new_key(id: &str) -> Result<Zeroizing<String>, SecretsError> {
    if !valid_id(id) {
        return Err(SecretsError::Keys(format!(
            "key id '{id}' must be 1–32 letters, digits, - or _"
        )));
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    Ok(Zeroizing::new(format!(
        "{id}:{}",
        STANDARD.encode(bytes.as_ref())
    )))
}

/// A fresh key id: `k` and the UTC date and time.
pub fn new_key_id() -> String {
    format!("k{}", chrono::Utc::now().format("%Y%m%d%H%M%S"))
}

impl KeyRing {
    /// Parses `id:base64,id:base64,…` (newlines separate too; `#` lines are comments). Errors
    /// never quote key material.
    pub fn parse(text: &str) -> Result<KeyRing, SecretsError> {
        let mut keys: Vec<Key> = Vec::new();
        let entries = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty());
        for (n, entry) in entries.enumerate() {
            let bad = |why: String| SecretsError::Keys(format!("key {}: {why}", n + 1));
            let (id, encoded) = entry
                .split_once(':')
                .ok_or_else(|| bad("expected id:base64-of-32-bytes".into()))?;
            let id = id.trim();
            if !valid_id(id) {
                return Err(bad("the id must be 1–32 letters, digits, - or _".into()));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(bad(format!("the id '{id}' appears twice")));
            }
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| bad(format!("'{id}' is not base64")))?,
            );
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| {
                bad(format!(
                    "'{id}' must be 32 bytes (base64 of 32 random bytes), not {}",
                    bytes.len()
                ))
            })?;
            keys.push(Key {
                id: id.to_string(),
                cipher,
                material: bytes,
            });
        }
        if keys.is_empty() {
            return Err(SecretsError::Keys("no key given (id:base64)".into()));
        }
        Ok(KeyRing {
            keys: Arc::new(keys),
        })
    }

    /// `SECRETS_KEYS`, or else the ring in `DATA_DIR/secrets.key` (made on first start).
    pub fn load(config: &Config) -> Result<KeyRing, SecretsError> {
        if let Some(ring) = &config.secrets_keys {
            return Ok(ring.clone());
        }
        let path = config.data_dir.join(KEY_FILE);
        let ring = Self::from_file(&path)?;
        tracing::warn!(
            file = %path.display(),
            "SECRETS_KEYS is not set: stored secrets are encrypted with the key in this file; \
             production should set SECRETS_KEYS (and keep the key out of the data's backups)"
        );
        Ok(ring)
    }

    /// Reads the key file, creating it (mode 0600) with a random key when it does not exist.
    pub fn from_file(path: &Path) -> Result<KeyRing, SecretsError> {
        let file_error = |e: &dyn fmt::Display| SecretsError::KeyFile {
            path: path.display().to_string(),
            error: e.to_string(),
        };
        match std::fs::read_to_string(path).map(Zeroizing::new) {
            Ok(text) => return Self::parse(&text).map_err(|e| file_error(&e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(&e)),
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| file_error(&e))?;
        }
        let text = Zeroizing::new(format!(
            "# The platform's secret keys (see SECRETS_KEYS): id:base64 of 32 bytes; the first \
             encrypts.\n{}\n",
            new_key(&new_key_id())?.as_str()
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(text.as_bytes())
                    .and_then(|_| file.sync_all())
                    .map_err(|e| file_error(&e))?;
                tracing::info!(file = %path.display(), "created a secret key");
                Self::parse(&text)
            }
            // Another process (a worker starting at the same time) made it first.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text =
                    Zeroizing::new(std::fs::read_to_string(path).map_err(|e| file_error(&e))?);
                Self::parse(&text).map_err(|e| file_error(&e))
            }
            Err(e) => Err(file_error(&e)),
        }
    }

    fn current(&self) -> &Key {
        // `parse` refuses an empty ring.
        &self.keys[0]
    }

    /// The id of the key that encrypts.
    pub fn current_id(&self) -> &str {
        &self.current().id
    }

    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Encrypts with the current key; `aad` must be given again to decrypt.
    pub fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Result<String, SecretsError> {
        let key = self.current();
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SecretsError::Encrypt)?;
        let mut data = Vec::with_capacity(NONCE_LEN + sealed.len());
        data.extend_from_slice(&nonce);
        data.extend_from_slice(&sealed);
        Ok(format!("{VERSION}:{}:{}", key.id, STANDARD.encode(data)))
    }

    /// The plaintext, wiped from memory when dropped.
    pub fn decrypt(&self, aad: &[u8], text: &str) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        let (id, encoded) = split(text)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SecretsError::UnknownKey(id.to_string()))?;
        let data = STANDARD
            .decode(encoded)
            .map_err(|_| SecretsError::Malformed)?;
        if data.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretsError::Malformed);
        }
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        key.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map(Zeroizing::new)
            .map_err(|_| SecretsError::Decrypt)
    }

    /// A text secret (UTF-8).
    pub fn encrypt_str(&self, aad: &[u8], plaintext: &str) -> Result<String, SecretsError> {
        self.encrypt(aad, plaintext.as_bytes())
    }

    pub fn decrypt_str(&self, aad: &[u8], text: &str) -> Result<Zeroizing<String>, SecretsError> {
        let bytes = self.decrypt(aad, text)?;
        std::str::from_utf8(&bytes)
            .map(|s| Zeroizing::new(s.to_owned()))
            .map_err(|_| SecretsError::Decrypt)
    }

    /// The last four characters of a sealed API key, for people to recognise it; none for
    /// keys shorter than eight (the hint would give too much away) or one that does not open
    /// (logged with `what`).
    pub fn hint(&self, aad: &[u8], sealed: &str, what: &str) -> Option<String> {
        match self.decrypt_str(aad, sealed) {
            Ok(key) => {
                let n = key.chars().count();
                (n >= 8).then(|| key.chars().skip(n - 4).collect())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored {what}");
                None
            }
        }
    }

    /// A 32-byte subkey for `purpose` (HMAC-SHA256 of the purpose under key `id`, the current
    /// key when `None`) and the id it came from; `None` for an id not in the ring. Signing
    /// keys made this way rotate with the ring: new signatures use the current key, old ones
    /// verify while their key stays in the ring.
    pub fn derive(&self, id: Option<&str>, purpose: &str) -> Option<(String, Zeroizing<Vec<u8>>)> {
        use hmac::{Hmac, Mac};
        let key = match id {
            None => self.current(),
            Some(id) => self.keys.iter().find(|k| k.id == id)?,
        };
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key.material).ok()?;
        mac.update(purpose.as_bytes());
        Some((
            key.id.clone(),
            Zeroizing::new(mac.finalize().into_bytes().to_vec()),
        ))
    }

    /// The secret encrypted with the current key, or `None` when it already is.
    pub fn reencrypt(&self, aad: &[u8], text: &str) -> Result<Option<String>, SecretsError> {
        if split(text)?.0 == self.current_id() {
            return Ok(None);
        }
        let plaintext = self.decrypt(aad, text)?;
        self.encrypt(aad, &plaintext).map(Some)
    }
}

/// `v1:<id>:<data>` → (id, data).
fn split(text: &str) -> Result<(&str, &str), SecretsError> {
    let mut parts = text.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(VERSION), Some(id), Some(data)) if !id.is_empty() => Ok((id, data)),
        _ => Err(SecretsError::Malformed),
    }
}

/// What `server secrets rotate` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Rows re-encrypted with the current key.
    pub rewritten: u64,
    /// Rows already on the current key.
    pub current: u64,
    /// Rows that could not be decrypted (with the reason), left as they were.
    pub failed: Vec<String>,
}

impl Rotation {
    pub fn add(&mut self, other: Rotation) {
        self.rewritten += other.rewritten;
        self.current += other.current;
        self.failed.extend(other.failed);
    }
}

/// Re-encrypts every stored secret with the current key. Each table holding secrets is
/// listed here.
/// A new random secret (`prefix` + 43 letters and digits, ~256 bits) and its sealed form
/// for the row, bound to `purpose` and `tenant`.
pub fn generate(
    keys: &KeyRing,
    prefix: &str,
    purpose: &str,
    tenant: Uuid,
) -> Result<(String, String), app::error::AppError> {
    use rand::distributions::{Alphanumeric, DistString};
    let secret = format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::rngs::OsRng, 43)
    );
    let sealed = keys
        .encrypt_str(&aad(purpose, tenant), &secret)
        .map_err(|e| {
            tracing::error!(error = %e, purpose, "a new secret could not be sealed");
            app::error::AppError::Internal("the secret could not be stored".into())
        })?;
    Ok((secret, sealed))
}

pub async fn rotate_all(
    db: &sea_orm::DatabaseConnection,
    keys: &KeyRing,
) -> Result<Rotation, sea_orm::DbErr> {
    let mut rotation = Rotation::default();
    rotation.add(crate::llm::settings::rotate(db, keys).await?);
    rotation.add(crate::widget::service::rotate(db, keys).await?);
    rotation.add(crate::integrations::webhooks::rotate(db, keys).await?);
    rotation.add(crate::integrations::email_providers::rotate(db, keys).await?);
    rotation.add(crate::integrations::chatwoot::rotate(db, keys).await?);
    rotation.add(crate::integrations::google::rotate(db, keys).await?);
    rotation.add(crate::workflows::service::rotate(db, keys).await?);
    rotation.add(crate::workflows::secrets::rotate(db, keys).await?);
    Ok(rotation)
}

/// Re-encrypts the sealed column of `E` not yet under the current key: `columns` are the
/// row's key, its tenant (bound into the ciphertext with `purpose`) and the sealed text. A row
/// changed meanwhile is left as it is and reported (the compare-and-set never overwrites a
/// newer secret).
pub async fn rotate_column<E: sea_orm::EntityTrait>(
    db: &sea_orm::DatabaseConnection,
    keys: &KeyRing,
    what: &str,
    purpose: &str,
    columns: (E::Column, E::Column, E::Column),
) -> Result<Rotation, sea_orm::DbErr> {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, QueryFilter, QuerySelect};
    let (key, tenant, sealed) = columns;
    let rows: Vec<(Uuid, Uuid, String)> = E::find()
        .select_only()
        .column(key)
        .column(tenant)
        .column(sealed)
        .filter(sealed.is_not_null())
        .into_tuple()
        .all(db)
        .await?;
    let mut rotation = Rotation::default();
    for (id, tenant_id, text) in rows {
        match keys.reencrypt(&aad(purpose, tenant_id), &text) {
            Ok(None) => rotation.current += 1,
            Ok(Some(again)) => {
                let updated = E::update_many()
                    .col_expr(sealed, Expr::value(again))
                    .filter(key.eq(id))
                    .filter(sealed.eq(text.as_str()))
                    .exec(db)
                    .await?;
                if updated.rows_affected > 0 {
                    rotation.rewritten += 1;
                } else {
                    rotation.failed.push(format!(
                        "{what} {id}: changed during the rotation; run it again"
                    ));
                }
            }
            Err(e) => rotation.failed.push(format!("{what} {id}: {e}")),
        }
    }
    Ok(rotation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ids: &[&str]) -> (KeyRing, Vec<String>) {
        let entries: Vec<String> = ids
            .iter()
            .map(|id| new_key(id).unwrap().as_str().to_owned())
            .collect();
        (KeyRing::parse(&entries.join(",")).unwrap(), entries)
    }

    #[test]
    fn round_trip_with_the_current_key() {
        let (keys, _) = ring(&["k2", "k1"]);
        let tenant = Uuid::now_v7();
        let aad = aad("llm_api_key", tenant);
        let sealed = keys.encrypt_str(&aad, "sk-secret-value").unwrap();
        assert!(sealed.starts_with("v1:k2:"), "{sealed}");
        assert!(!sealed.contains("sk-secret"));
        assert_eq!(
            keys.decrypt_str(&aad, &sealed).unwrap().as_str(),
            "sk-secret-value"
        );
        // A fresh nonce each time.
        assert_ne!(keys.encrypt_str(&aad, "sk-secret-value").unwrap(), sealed);
    }

    #[test]
    fn another_tenant_or_purpose_does_not_decrypt() {
        let (keys, _) = ring(&["k1"]);
        let tenant = Uuid::now_v7();
        let sealed = keys
            .encrypt_str(&aad("llm_api_key", tenant), "sk-secret")
            .unwrap();
        let other_tenant = aad("llm_api_key", Uuid::now_v7());
        assert!(matches!(
            keys.decrypt(&other_tenant, &sealed),
            Err(SecretsError::Decrypt)
        ));
        let other_purpose = aad("google_token", tenant);
        assert!(matches!(
            keys.decrypt(&other_purpose, &sealed),
            Err(SecretsError::Decrypt)
        ));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(keys
            .decrypt(&aad("llm_api_key", tenant), &tampered)
            .is_err());
        assert!(matches!(
            keys.decrypt(b"x", "sk-plain"),
            Err(SecretsError::Malformed)
        ));
    }

    #[test]
    fn an_unknown_key_id_is_named() {
        let (old, _) = ring(&["old"]);
        let (new, _) = ring(&["new"]);
        let sealed = old.encrypt(b"t", b"secret").unwrap();
        let err = new.decrypt(b"t", &sealed).unwrap_err();
        assert!(matches!(&err, SecretsError::UnknownKey(id) if id == "old"));
        assert!(err.to_string().contains("'old'"), "{err}");
    }

    #[test]
    fn rotation_keeps_old_secrets_readable_and_moves_them_to_the_new_key() {
        let (old, entries) = ring(&["k1"]);
        let sealed = old.encrypt(b"t", b"secret").unwrap();
        let new_entry = new_key("k2").unwrap();
        let rotated = KeyRing::parse(&format!("{},{}", new_entry.as_str(), entries[0])).unwrap();
        assert_eq!(rotated.current_id(), "k2");
        assert_eq!(
            rotated.decrypt(b"t", &sealed).unwrap().as_slice(),
            b"secret"
        );
        let again = rotated.reencrypt(b"t", &sealed).unwrap().unwrap();
        assert!(again.starts_with("v1:k2:"), "{again}");
        assert_eq!(rotated.reencrypt(b"t", &again).unwrap(), None);
        // With the old key dropped, the re-encrypted secret still reads.
        let only_new = KeyRing::parse(&new_entry).unwrap();
        assert_eq!(
            only_new.decrypt(b"t", &again).unwrap().as_slice(),
            b"secret"
        );
        assert!(only_new.decrypt(b"t", &sealed).is_err());
    }

    #[test]
    fn bad_rings_are_refused_without_quoting_keys() {
        let good = new_key("k1").unwrap().as_str().to_owned();
        for bad in [
            "",
            "k1",
            "k1:not base64!",
            "k1:AAAA",
            "bad id:AAAA",
            &format!("{good},{good}"),
        ] {
            let err = KeyRing::parse(bad).unwrap_err();
            let secret = good.split_once(':').unwrap().1;
            assert!(!err.to_string().contains(secret), "{err}");
        }
        let ring = KeyRing::parse(&format!("# comment\n{good}\n")).unwrap();
        assert_eq!(ring.ids(), ["k1"]);
        assert!(!format!("{ring:?}").contains(good.split_once(':').unwrap().1));
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        let dir = std::env::temp_dir().join(format!("secrets-{}", Uuid::now_v7().simple()));
        let path = dir.join(KEY_FILE);
        let first = KeyRing::from_file(&path).unwrap();
        let sealed = first.encrypt(b"t", b"secret").unwrap();
        let second = KeyRing::from_file(&path).unwrap();
        assert_eq!(second.decrypt(b"t", &sealed).unwrap().as_slice(), b"secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
