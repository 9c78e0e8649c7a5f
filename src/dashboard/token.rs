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

/// Whether a request to `/metrics` may read it: with the dashboard's token, or with the
/// separate metrics token when one was set (`up --metrics-token`); never without a token.
pub fn metrics_allowed(given: Option<&str>, dashboard: &str, metrics: Option<&str>) -> bool {
    given.is_some_and(|g| {
        !g.is_empty() && (matches(g, dashboard) || metrics.is_some_and(|m| matches(g, m)))
    })
}

/// Checks a metrics token given on the command line: it travels in a URL or an
/// `Authorization: Bearer` header, so only URL-safe characters, and long enough not to be
/// guessed.
pub fn parse_metrics_token(s: &str) -> Result<String, String> {
    const MIN: usize = 16;
    if s.len() < MIN {
        return Err(format!(
            "a metrics token needs at least {MIN} characters (it is all that guards /metrics); \
             e.g. --metrics-token $(openssl rand -hex 16)"
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~".contains(*c)))
    {
        return Err(format!(
            "a metrics token may hold only letters, digits and - . _ ~ (it goes into URLs and \
             headers), not {c:?}; e.g. --metrics-token $(openssl rand -hex 16)"
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_take_either_token_and_never_none() {
        let d = "dashboardtoken";
        assert!(metrics_allowed(Some(d), d, None));
        assert!(metrics_allowed(Some(d), d, Some("scrapertoken")));
        assert!(metrics_allowed(
            Some("scrapertoken"),
            d,
            Some("scrapertoken")
        ));
        assert!(!metrics_allowed(Some("scrapertoken"), d, None));
        assert!(!metrics_allowed(Some("other"), d, Some("scrapertoken")));
        assert!(!metrics_allowed(None, d, Some("scrapertoken")));
        assert!(!metrics_allowed(Some(""), d, Some("")));
    }

    #[test]
    fn metrics_tokens_are_long_and_url_safe() {
        assert!(parse_metrics_token("0123456789abcdef").is_ok());
        assert!(parse_metrics_token("short")
            .unwrap_err()
            .contains("16 characters"));
        assert!(parse_metrics_token("0123456789abcdef&x=1")
            .unwrap_err()
            .contains("'&'"));
        assert!(parse_metrics_token("0123456789 abcdef").is_err());
    }

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
