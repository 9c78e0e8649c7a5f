//! What a task can do. A task names a kernel; workers look it up in their [`Registry`].
//!
//! Built in: `noop`, `sleep`, `bytes`, `concat`, `sum-u64` (small, exact kernels used by
//! benchmarks and tests), and `command` (run a program; see [`command`]). The array layer
//! registers its own kernels; `python.call` (see [`python`]) is registered by every worker
//! with its interpreter pool; a user's Rust program can register more and run its own
//! worker with [`crate::worker::run_with`].

pub mod command;
pub mod python;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

/// A kernel: arguments and input results in, a result (or an error message) out. Kernels
/// run on the worker's thread pool and must be deterministic: a lost result is recomputed.
pub type Kernel = Arc<dyn Fn(&[u8], &[Bytes]) -> Result<Bytes, String> + Send + Sync>;

#[derive(Clone, Default)]
pub struct Registry {
    kernels: HashMap<String, Kernel>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.kernels.keys().collect();
        names.sort();
        f.debug_struct("Registry").field("kernels", &names).finish()
    }
}

impl Registry {
    /// An empty registry (see [`Registry::builtin`] for the usual one).
    pub fn empty() -> Self {
        Registry::default()
    }

    /// The built-in kernels.
    pub fn builtin() -> Self {
        let mut r = Registry::empty();
        r.register("noop", |_, _| Ok(Bytes::new()));
        r.register("sleep", |args, _| {
            let micros = u64_arg(args, "sleep")?;
            std::thread::sleep(std::time::Duration::from_micros(micros));
            Ok(Bytes::new())
        });
        r.register("bytes", |args, _| {
            // args: u64 length, then one fill byte.
            let len = u64_arg(args, "bytes")? as usize;
            let fill = args.get(8).copied().unwrap_or(0);
            Ok(Bytes::from(vec![fill; len]))
        });
        r.register("concat", |_, inputs| {
            let mut out = Vec::with_capacity(inputs.iter().map(Bytes::len).sum());
            for i in inputs {
                out.extend_from_slice(i);
            }
            Ok(Bytes::from(out))
        });
        r.register("sum-u64", |args, inputs| {
            // The sum of the u64 in `args` (if any) and of every input read as one LE u64;
            // a second u64 in `args` is microseconds of simulated work first.
            if args.len() >= 16 {
                let micros = u64_arg(&args[8..], "sum-u64 delay")?;
                std::thread::sleep(std::time::Duration::from_micros(micros));
            }
            let mut sum = if args.is_empty() {
                0
            } else {
                u64_arg(args, "sum-u64")?
            };
            for i in inputs {
                sum = sum.wrapping_add(u64_arg(i, "sum-u64 input")?);
            }
            Ok(Bytes::copy_from_slice(&sum.to_le_bytes()))
        });
        r.register("command", command::run);
        r
    }

    pub fn register<F>(&mut self, name: &str, kernel: F)
    where
        F: Fn(&[u8], &[Bytes]) -> Result<Bytes, String> + Send + Sync + 'static,
    {
        self.kernels.insert(name.to_string(), Arc::new(kernel));
    }

    pub fn get(&self, name: &str) -> Option<&Kernel> {
        self.kernels.get(name)
    }

    /// Adds every kernel of `other` (its names win).
    pub fn extend(&mut self, other: Registry) {
        self.kernels.extend(other.kernels);
    }
}

/// Reads a little-endian u64 from the first 8 bytes.
pub fn u64_arg(bytes: &[u8], kernel: &str) -> Result<u64, String> {
    let head: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            format!(
                "{kernel}: expected an 8-byte little-endian integer, got {} bytes",
                bytes.len()
            )
        })?;
    Ok(u64::from_le_bytes(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_compute_what_they_say() {
        let r = Registry::builtin();
        let run = |k: &str, a: &[u8], i: &[Bytes]| (r.get(k).unwrap())(a, i);
        assert_eq!(run("noop", &[], &[]).unwrap().len(), 0);
        let mut args = 5u64.to_le_bytes().to_vec();
        args.push(7);
        assert_eq!(&run("bytes", &args, &[]).unwrap()[..], &[7; 5]);
        let two = Bytes::copy_from_slice(&2u64.to_le_bytes());
        let out = run("sum-u64", &40u64.to_le_bytes(), &[two.clone(), two]).unwrap();
        assert_eq!(u64_arg(&out, "t").unwrap(), 44);
        assert!(run("sum-u64", &[1, 2], &[]).unwrap_err().contains("8-byte"));
        let mut slow = 1u64.to_le_bytes().to_vec();
        slow.extend(20_000u64.to_le_bytes());
        let started = std::time::Instant::now();
        assert_eq!(
            u64_arg(&run("sum-u64", &slow, &[]).unwrap(), "t").unwrap(),
            1
        );
        assert!(started.elapsed() >= std::time::Duration::from_millis(20));
        assert!(r.get("nonexistent").is_none());
    }
}
