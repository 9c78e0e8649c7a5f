//! The dashboard's token: an HMAC of a fixed label under the cluster's secret. Whoever holds
//! the secret (the cluster's owner) can derive it; the token reveals nothing of the secret,
//! and a token leaked from a URL opens the dashboard only (it authenticates no worker or
//! client: the handshake proves the secret itself).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::protocol::Secret;

const LABEL: &[u8] = b"rdask-jobqueue dashboard token v1";

/// 32 hex characters (128 bits) of HMAC-SHA256(secret, label).
pub fn derive(secret: &Secret) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(LABEL);
    let tag = mac.finalize().into_bytes();
    tag[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `given` is `expected`, in time independent of where they differ.
pub fn matches(given: &str, expected: &str) -> bool {
    let (g, e) = (given.as_bytes(), expected.as_bytes());
    g.len() == e.len() && g.iter().zip(e).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_depends_on_the_secret_and_is_not_the_secret() {
        let a = Secret::from_bytes([1; 32]);
        let b = Secret::from_bytes([2; 32]);
        let ta = derive(&a);
        assert_eq!(ta.len(), 32);
        assert_eq!(ta, derive(&a), "stable");
        assert_ne!(ta, derive(&b));
        assert!(!a.to_hex().contains(&ta));
    }

    #[test]
    fn only_the_exact_token_matches() {
        assert!(matches("abc", "abc"));
        assert!(!matches("abd", "abc"));
        assert!(!matches("ab", "abc"));
        assert!(!matches("", "abc"));
    }
}
