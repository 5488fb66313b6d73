//! The callback URL we give the factory. The factory echoes only the order body and signs
//! nothing, so the URL itself names the order and carries an unguessable token:
//! `{base}/factory/callbacks/{sku}/{order_id}?token={hex HMAC-SHA256(secret, sku, order_id)}`.
//! The worker signs (it builds the order); the gateway verifies (it receives the callback).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// The path prefix of callback URLs on the gateway's HTTP listener.
pub const CALLBACK_PATH: &str = "/factory/callbacks";

/// A callback secret too short to be unguessable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The current secret.
    #[error(
        "the callback secret must be at least {MIN_SECRET_LEN} bytes long (e.g. `openssl rand -hex 32`)"
    )]
    TooShort,
    /// The secret before the last rotation.
    #[error("the previous callback secret must be at least {MIN_SECRET_LEN} bytes long")]
    PreviousTooShort,
}

/// Signs and verifies callback URLs with the shared `RESTOCK_CALLBACK_SECRET`.
#[derive(Clone)]
pub struct CallbackSigner {
    key: Vec<u8>,
    /// The secret before the last rotation, still accepted by [`CallbackSigner::verify`] so
    /// orders placed before it keep their callbacks (`RESTOCK_CALLBACK_SECRET_PREVIOUS`).
    previous: Option<Vec<u8>>,
}

impl std::fmt::Debug for CallbackSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallbackSigner { key: <redacted> }")
    }
}

impl CallbackSigner {
    /// A signer for `secret` (at least [`MIN_SECRET_LEN`] bytes).
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort);
        }
        Ok(Self {
            key: secret.as_bytes().to_vec(),
            previous: None,
        })
    }

    /// Also accepts tokens signed with `previous`, the secret before a rotation; new tokens
    /// are signed with the current one only.
    pub fn with_previous(mut self, previous: &str) -> Result<Self, SecretError> {
        if previous.len() < MIN_SECRET_LEN {
            return Err(SecretError::PreviousTooShort);
        }
        self.previous = Some(previous.as_bytes().to_vec());
        Ok(self)
    }

    fn mac(&self, sku: &str, order_id: &str) -> Hmac<Sha256> {
        Self::mac_with(&self.key, sku, order_id)
    }

    fn mac_with(key: &[u8], sku: &str, order_id: &str) -> Hmac<Sha256> {
        // A key of any length is valid for HMAC, so this cannot fail.
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(b"restock-callback-v1\n");
        mac.update(sku.as_bytes());
        mac.update(b"\n");
        mac.update(order_id.as_bytes());
        mac
    }

    /// The token for one order.
    pub fn token(&self, sku: &str, order_id: &str) -> String {
        hex::encode(self.mac(sku, order_id).finalize().into_bytes())
    }

    /// Whether `token` is the one for this order under the current secret or, during a
    /// rotation, the previous one (constant-time comparisons).
    pub fn verify(&self, sku: &str, order_id: &str, token: &str) -> bool {
        let Ok(bytes) = hex::decode(token) else {
            return false;
        };
        let current = self.mac(sku, order_id).verify_slice(&bytes).is_ok();
        let previous = self.previous.as_deref().is_some_and(|key| {
            Self::mac_with(key, sku, order_id)
                .verify_slice(&bytes)
                .is_ok()
        });
        current | previous
    }

    /// The full callback URL for one order under `base_url` (e.g. `http://127.0.0.1:8080`).
    pub fn url(&self, base_url: &str, sku: &str, order_id: &str) -> String {
        format!(
            "{}{CALLBACK_PATH}/{sku}/{order_id}?token={}",
            base_url.trim_end_matches('/'),
            self.token(sku, order_id)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> CallbackSigner {
        CallbackSigner::new("0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn a_token_verifies_only_its_own_order() {
        let s = signer();
        let token = s.token("CP-502101", "replenish-CP-502101-1a2b3c4d");
        assert!(s.verify("CP-502101", "replenish-CP-502101-1a2b3c4d", &token));
        assert!(!s.verify("CP-502102", "replenish-CP-502101-1a2b3c4d", &token));
        assert!(!s.verify("CP-502101", "replenish-CP-502101-ffffffff", &token));
        assert!(!s.verify("CP-502101", "replenish-CP-502101-1a2b3c4d", "00"));
        assert!(!s.verify("CP-502101", "replenish-CP-502101-1a2b3c4d", "not hex"));
        let other = CallbackSigner::new("another secret, also 16+ bytes").unwrap();
        assert!(!other.verify("CP-502101", "replenish-CP-502101-1a2b3c4d", &token));
    }

    #[test]
    fn url_names_the_order() {
        let url = signer().url("http://127.0.0.1:8080/", "CP-502101", "o-1");
        assert!(url.starts_with("http://127.0.0.1:8080/factory/callbacks/CP-502101/o-1?token="));
    }

    #[test]
    fn short_secrets_and_debug_output() {
        assert!(CallbackSigner::new("short").is_err());
        assert!(!format!("{:?}", signer()).contains("0123"));
    }

    #[test]
    fn a_rotated_secret_still_accepts_the_previous_one_when_told() {
        let old = CallbackSigner::new("old-secret-0123456789abcdef").unwrap();
        let token = old.token("CP-1", "order-1");
        let rotated = CallbackSigner::new("new-secret-0123456789abcdef").unwrap();
        assert!(!rotated.verify("CP-1", "order-1", &token));
        let rotating = rotated
            .with_previous("old-secret-0123456789abcdef")
            .unwrap();
        assert!(rotating.verify("CP-1", "order-1", &token));
        assert!(!rotating.verify("CP-1", "order-2", &token));
        // New tokens use the new secret only.
        let fresh = rotating.token("CP-1", "order-1");
        assert_ne!(fresh, token);
        assert!(!old.verify("CP-1", "order-1", &fresh));
        assert!(
            CallbackSigner::new("new-secret-0123456789abcdef")
                .unwrap()
                .with_previous("short")
                .is_err()
        );
    }
}
