//! The cluster's shared secret: 32 random bytes every scheduler, worker and client of one
//! cluster holds, stored as 64 hex characters in a file readable only by its owner (or passed
//! in [`SECRET_ENV`]).
//!
//! The secret is only ever used as an HMAC key during the handshake; it never crosses the wire
//! and is never printed: `Debug` and `Display` show `Secret(<redacted>)`, and error messages
//! describe a bad secret without quoting it.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Environment variable holding the secret as hex, for when no secret file is given.
pub const SECRET_ENV: &str = "RDASK_SECRET";

/// Length of the secret in bytes: 256 bits, the output size of SHA-256, which is all the
/// strength an HMAC-SHA256 key can use.
pub const SECRET_LEN: usize = 32;

/// A 256-bit shared secret. Deliberately not `PartialEq`: comparing secrets is the handshake's
/// job, in constant time.
#[derive(Clone)]
pub struct Secret([u8; SECRET_LEN]);

impl Secret {
    /// A fresh secret from the operating system's random source.
    pub fn generate() -> Result<Secret> {
        let mut bytes = [0u8; SECRET_LEN];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::runtime(format!("cannot generate a secret: {e}")))?;
        Ok(Secret(bytes))
    }

    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Secret {
        Secret(bytes)
    }

    /// The key material, for the handshake's HMAC.
    pub(crate) fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(SECRET_LEN * 2);
        for b in self.0 {
            s.push(DIGITS[usize::from(b >> 4)] as char);
            s.push(DIGITS[usize::from(b & 0xf)] as char);
        }
        s
    }

    /// Parses 64 hex characters (either case; surrounding whitespace ignored). The error never
    /// quotes the input, which may be a nearly-right secret.
    pub fn from_hex(hex: &str) -> Result<Secret> {
        let hex = hex.trim().as_bytes();
        if hex.len() != SECRET_LEN * 2 {
            return Err(Error::invalid(format!(
                "a secret is {} hexadecimal characters, got {} characters",
                SECRET_LEN * 2,
                hex.len()
            )));
        }
        let mut bytes = [0u8; SECRET_LEN];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(hi), Some(lo)) => bytes[i] = hi << 4 | lo,
                _ => {
                    return Err(Error::invalid(format!(
                        "a secret is hexadecimal, but character {} or {} is not a hex digit",
                        2 * i + 1,
                        2 * i + 2
                    )))
                }
            }
        }
        Ok(Secret(bytes))
    }

    /// Reads a secret file (hex, whitespace trimmed). Errors name the file. The file must be
    /// a small regular file that only its owner can read: whoever reads the secret can run
    /// commands on every worker of the cluster, so a group- or world-readable one is refused
    /// rather than trusted.
    pub fn load(path: &Path) -> Result<Secret> {
        let meta = std::fs::metadata(path).map_err(Error::io(format!(
            "reading the secret file {}",
            path.display()
        )))?;
        if meta.is_file() {
            check_private_mode(path, meta.permissions().mode())?;
        }
        // Refuses anything but a small regular file.
        let text = crate::config::read_small_file(path, "secret file", MAX_SECRET_FILE_BYTES)?;
        Secret::from_hex(&text).map_err(|e| {
            Error::invalid(format!(
                "the secret file {} is not valid: {e}",
                path.display()
            ))
        })
    }

    /// Writes the secret to `path` with mode 0600, atomically: a temporary file created 0600 in
    /// the same directory (so the secret is never readable by others, not even briefly), then
    /// renamed over `path` (so a reader never sees a half-written file).
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let context = || format!("writing the secret file {}", path.display());
        let mut tmp = tempfile::Builder::new()
            .prefix(".rdask-secret.")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(Error::io(context()))?;
        // `permissions` is applied at creation, subject to the umask, which can only remove
        // bits: 0600 stays 0600 or less. Set it again explicitly in case the umask is odd.
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(Error::io(context()))?;
        writeln!(tmp, "{}", self.to_hex()).map_err(Error::io(context()))?;
        tmp.as_file().sync_all().map_err(Error::io(context()))?;
        tmp.persist(path).map_err(|e| Error::Io {
            context: context(),
            source: e.error,
        })?;
        Ok(())
    }

    /// The secret from `file` if given, else from [`SECRET_ENV`], else an error saying how to
    /// provide one.
    pub fn from_env_or_file(file: Option<&Path>) -> Result<Secret> {
        match file {
            Some(path) => Secret::load(path),
            None => Secret::from_env_value(std::env::var(SECRET_ENV)),
        }
    }

    /// The environment half of [`Secret::from_env_or_file`], taking the variable's value so it
    /// can be tested without mutating the process environment.
    fn from_env_value(value: std::result::Result<String, std::env::VarError>) -> Result<Secret> {
        match value {
            Ok(hex) => Secret::from_hex(&hex)
                .map_err(|e| Error::invalid(format!("{SECRET_ENV} is not a valid secret: {e}"))),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::invalid(format!(
                "{SECRET_ENV} is not a valid secret: it is not valid UTF-8"
            ))),
            Err(std::env::VarError::NotPresent) => Err(Error::invalid(format!(
                "no shared secret: give a secret file (64 hex characters, mode 0600) or set \
                 {SECRET_ENV} to 64 hex characters; every scheduler, worker and client of a \
                 cluster must use the same secret"
            ))),
        }
    }
}

/// A secret file holds 64 hex characters and maybe some whitespace.
const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// Refuses a secret file that anyone but its owner may read or write.
fn check_private_mode(path: &Path, mode: u32) -> Result<()> {
    if mode & 0o077 == 0 {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "the secret file {} is readable or writable by others (mode {:03o}): whoever reads it \
         can run commands on every worker of the cluster. Restrict it with `chmod 600 {0}` \
         (and make a new secret if others may have read it)",
        path.display(),
        mode & 0o777
    )))
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What a worker or client needs to join: written by `scheduler --scheduler-file`.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct SchedulerFile {
    pub address: String,
    pub secret: String,
}

impl SchedulerFile {
    /// Reads one (`{"address": .., "secret": ..}`): the address and the secret to join with.
    /// A missing file, one that is not JSON of that shape, or a bad secret is bad input.
    pub fn load(path: &std::path::Path) -> Result<(String, Secret)> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(format!(
                "cannot read scheduler file {}: {e}",
                path.display()
            ))
        })?;
        let file: SchedulerFile = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!(
                "{} is not a scheduler file ({{\"address\": ..., \"secret\": ...}}): {e}",
                path.display()
            ))
        })?;
        let secret = Secret::from_hex(&file.secret)
            .map_err(|e| Error::invalid(format!("scheduler file {}: {e}", path.display())))?;
        Ok((file.address, secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let s = Secret::generate().unwrap();
        let hex = s.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(Secret::from_hex(&hex).unwrap().as_bytes(), s.as_bytes());
        assert_eq!(
            Secret::from_hex(&format!("  {}\n", hex.to_uppercase()))
                .unwrap()
                .as_bytes(),
            s.as_bytes()
        );
        let known = Secret::from_bytes([0xab; 32]);
        assert_eq!(known.to_hex(), "ab".repeat(32));
    }

    #[test]
    fn two_generated_secrets_differ() {
        let a = Secret::generate().unwrap();
        let b = Secret::generate().unwrap();
        assert_ne!(a.as_bytes(), b.as_bytes());
    }

    #[test]
    fn bad_hex_is_refused_without_quoting_it() {
        let err = Secret::from_hex("abcd").unwrap_err().to_string();
        assert!(err.contains("64") && err.contains('4'), "{err}");
        let almost = format!("{}zz", "0".repeat(62));
        let err = Secret::from_hex(&almost).unwrap_err().to_string();
        assert!(!err.contains("zz") && !err.contains("0000"), "{err}");
    }

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::from_bytes([0x5a; 32]);
        for shown in [format!("{s:?}"), format!("{s}"), format!("{:?}", Some(&s))] {
            assert!(shown.contains("Secret(<redacted>)"), "{shown}");
            assert!(!shown.contains("5a5a"), "{shown}");
        }
    }

    #[test]
    fn save_is_0600_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let s = Secret::generate().unwrap();
        s.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Secret::load(&path).unwrap().as_bytes(), s.as_bytes());

        // Overwriting keeps 0600 and leaves no temporary files behind.
        let t = Secret::generate().unwrap();
        t.save(&path).unwrap();
        assert_eq!(Secret::load(&path).unwrap().as_bytes(), t.as_bytes());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn load_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-secret");
        let err = Secret::load(&missing).unwrap_err().to_string();
        assert!(err.contains("no-such-secret"), "{err}");

        let bad = dir.path().join("bad-secret");
        std::fs::write(&bad, "not hex\n").unwrap();
        let err = Secret::load(&bad).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("bad-secret"), "{err}");
    }

    #[test]
    fn a_secret_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        Secret::generate().unwrap().save(&path).unwrap();
        for mode in [0o640, 0o604, 0o644, 0o660, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = Secret::load(&path).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            let msg = err.to_string();
            assert!(
                msg.contains("secret")
                    && msg.contains("chmod 600")
                    && msg.contains(&format!("{mode:03o}")),
                "{msg}"
            );
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(Secret::load(&path).is_ok(), "{mode:o}");
        }
        // Not a regular file, or too big: refused without reading on.
        let err = Secret::load(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn secret_from_the_environment() {
        // `from_env_value` is fed directly: setting variables in a multi-threaded test
        // process is racy.
        let s = Secret::generate().unwrap();
        let got = Secret::from_env_value(Ok(s.to_hex())).unwrap();
        assert_eq!(got.as_bytes(), s.as_bytes());
        let err = Secret::from_env_value(Ok("nope".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(SECRET_ENV) && !err.contains("nope"), "{err}");
        let err = Secret::from_env_value(Err(std::env::VarError::NotPresent))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(SECRET_ENV) && err.contains("secret file"),
            "{err}"
        );
    }

    #[test]
    fn from_env_or_file_prefers_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let s = Secret::generate().unwrap();
        s.save(&path).unwrap();
        let loaded = Secret::from_env_or_file(Some(&path)).unwrap();
        assert_eq!(loaded.as_bytes(), s.as_bytes());
    }
}
