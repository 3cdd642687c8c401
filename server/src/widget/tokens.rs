//! A visitor's credentials. The access token is a short-lived HS256 JWT whose audience is one
//! widget and whose subject is one visitor; its signing key is derived from the platform's key
//! ring (`widget.token`), so it rotates with the ring and a token names its key in `kid`. The
//! refresh token is random (`wrt_` + 256 bits), stored as a SHA-256 digest, works once, and
//! belongs to a family: presenting a used one revokes the whole family (someone copied it).

use std::time::Duration;

use hmac::{Hmac, Mac};
use jsonwebtoken::{decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header};
use rand::distributions::{Alphanumeric, DistString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::api_key;
use crate::secrets::KeyRing;

const ISSUER: &str = "agent-platform";
const PURPOSE: &str = "widget.token";
const REFRESH_TAG: &str = "wrt_";

/// What a visitor's access token says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// `widget:<widget id>`.
    pub aud: String,
    /// The visitor's id.
    pub sub: Uuid,
    pub tid: Uuid,
    pub wid: Uuid,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Clone)]
pub struct Signer {
    keys: KeyRing,
    pub ttl: Duration,
}

fn audience(widget: Uuid) -> String {
    format!("widget:{widget}")
}

impl Signer {
    pub fn new(keys: KeyRing, ttl: Duration) -> Signer {
        Signer { keys, ttl }
    }

    /// A token for `visitor` on `widget`, valid for `ttl`.
    pub fn issue(&self, tenant: Uuid, widget: Uuid, visitor: Uuid) -> Option<String> {
        let (kid, key) = self.keys.derive(None, PURPOSE)?;
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: ISSUER.into(),
            aud: audience(widget),
            sub: visitor,
            tid: tenant,
            wid: widget,
            iat: now,
            exp: now + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid);
        encode(&header, &claims, &EncodingKey::from_secret(&key)).ok()
    }

    /// The claims of a token this platform signed that has not expired; `None` otherwise.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        if token.len() > 2048 {
            return None;
        }
        let header = decode_header(token).ok()?;
        if header.alg != Algorithm::HS256 {
            return None;
        }
        let (_, key) = self.keys.derive(Some(header.kid.as_deref()?), PURPOSE)?;
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // The audience names the widget the token itself carries; checked below.
        validation.validate_aud = false;
        let claims = decode::<Claims>(token, &DecodingKey::from_secret(&key), &validation)
            .ok()?
            .claims;
        (claims.aud == audience(claims.wid)).then_some(claims)
    }
}

/// A fresh refresh token and its stored digest.
pub fn new_refresh_token() -> (String, String) {
    let token = format!(
        "{REFRESH_TAG}{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 43)
    );
    let digest = api_key::digest(&token);
    (token, digest)
}

/// The digest a presented refresh token is looked up by; `None` when it cannot be one.
pub fn refresh_digest(token: &str) -> Option<String> {
    (token.starts_with(REFRESH_TAG) && token.len() == REFRESH_TAG.len() + 43)
        .then(|| api_key::digest(token))
}

/// A new identity-verification secret: 32 random bytes, hex.
pub fn new_identity_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    api_key::hex(&bytes)
}

/// What a tenant's backend computes for a visitor: the hex HMAC-SHA256 of the visitor's id
/// with the widget's secret.
pub fn identity_hash(secret: &str, id: &str) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(id.as_bytes());
    api_key::hex(&mac.finalize().into_bytes())
}

/// Whether `hash` is [`identity_hash`] of `id` under `secret` (compared in constant time).
pub fn identity_matches(secret: &str, id: &str, hash: &str) -> bool {
    let expected = identity_hash(secret, id);
    api_key::constant_time_eq(expected.as_bytes(), hash.trim().to_lowercase().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(text: &str) -> KeyRing {
        KeyRing::parse(text).unwrap()
    }

    const K1: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    const K2: &str = "k2:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

    #[test]
    fn tokens_verify_until_they_expire_and_survive_a_key_rotation() {
        let (tenant, widget, visitor) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let old = Signer::new(ring(K1), Duration::from_secs(60));
        let token = old.issue(tenant, widget, visitor).unwrap();
        let claims = old.verify(&token).unwrap();
        assert_eq!(
            (claims.sub, claims.wid, claims.tid),
            (visitor, widget, tenant)
        );

        // A new current key: old tokens verify while the old key stays in the ring.
        let rotated = Signer::new(ring(&format!("{K2},{K1}")), Duration::from_secs(60));
        assert!(rotated.verify(&token).is_some());
        let fresh = rotated.issue(tenant, widget, visitor).unwrap();
        assert!(
            old.verify(&fresh).is_none(),
            "k2 is unknown to the old ring"
        );
        // Dropped from the ring: no longer valid.
        assert!(Signer::new(ring(K2), Duration::from_secs(60))
            .verify(&token)
            .is_none());

        let expired = Signer::new(ring(K1), Duration::ZERO)
            .issue(tenant, widget, visitor)
            .unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(old.verify(&expired).is_none());
    }

    #[test]
    fn forged_and_altered_tokens_are_refused() {
        let signer = Signer::new(ring(K1), Duration::from_secs(60));
        let token = signer
            .issue(Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4())
            .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        // Another visitor's id in the payload, the signature kept.
        let payload: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
                .unwrap(),
        )
        .unwrap();
        let mut altered = payload.clone();
        altered["sub"] = serde_json::json!(Uuid::new_v4());
        let altered = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            altered.to_string(),
        );
        assert!(signer
            .verify(&format!("{}.{altered}.{}", parts[0], parts[2]))
            .is_none());
        // `alg: none`.
        let none = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"alg":"none","typ":"JWT","kid":"k1"}"#,
        );
        assert!(signer.verify(&format!("{none}.{}.", parts[1])).is_none());
        // Signed with another ring's key of the same id.
        let other = Signer::new(
            ring(K2.replace("k2", "k1").as_str()),
            Duration::from_secs(60),
        );
        let foreign = other
            .issue(Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4())
            .unwrap();
        assert!(signer.verify(&foreign).is_none());
        assert!(signer.verify("not a token").is_none());
    }

    #[test]
    fn identity_hashes_are_chatwoot_compatible() {
        // `echo -n user-42 | openssl dgst -sha256 -hmac secret`, as a tenant's backend signs.
        let hash = "e286b7b944100ab478fe553b39122922de0000aee1d04087dc3e96eefc3a8d47";
        assert!(identity_matches("secret", "user-42", hash));
        assert!(identity_matches("secret", "user-42", &hash.to_uppercase()));
        assert!(!identity_matches("secret", "user-43", hash));
        assert!(!identity_matches("other", "user-42", hash));
        assert!(!identity_matches("secret", "user-42", ""));
    }

    #[test]
    fn refresh_tokens_have_one_shape() {
        let (token, digest) = new_refresh_token();
        assert_eq!(refresh_digest(&token), Some(digest));
        assert_eq!(refresh_digest("wrt_short"), None);
        assert_eq!(refresh_digest(&token.replace("wrt_", "inv_")), None);
    }
}
