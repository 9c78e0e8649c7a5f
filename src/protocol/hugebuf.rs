//! Memory for large received results, backed by transparent huge pages where the kernel
//! offers them (`madvise` mode, common on HPC nodes), and recycled through a bounded pool.
//!
//! A result received from a peer lands in fresh memory, and first-touching fresh memory costs
//! a page fault per 4 KiB page inside every recv — for a 512 MiB chunk, 131,072 faults, which
//! cost more than the copy itself. Mapping the body 2 MiB-aligned with MADV_HUGEPAGE makes it
//! 256 faults. Where huge pages are off, this is an ordinary anonymous mapping.
//!
//! Even 256 huge-page faults are slow on some machines (this VM zeroes fresh memory at about
//! 0.4 GB/s, slower than loopback TCP), and a worker receives chunks of the same few sizes
//! over and over. So a dropped buffer goes back to a process-wide pool instead of being
//! unmapped, and the next receive of a similar size reuses its already-resident pages. The
//! pool is bounded ([`set_pool_limit`]; the worker sets it from its memory limit) and is the
//! first thing given back under memory pressure ([`trim_pool`]), before any result is spilled.

use std::io;
use std::sync::Mutex;

use bytes::Bytes;

const HUGE: usize = 2 << 20;

/// Mappings kept for reuse: (address, mapping length), and their total length.
struct Pool {
    free: Vec<(usize, usize)>,
    bytes: usize,
    limit: usize,
}

/// Until a worker says otherwise, a process keeps up to 1 GiB of received buffers.
static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: Vec::new(),
    bytes: 0,
    limit: 1 << 30,
});

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    // The pool holds plain numbers; a panic elsewhere cannot leave it inconsistent.
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bounds the bytes of freed buffers kept for reuse (0 disables the pool) and trims to it.
pub fn set_pool_limit(bytes: usize) {
    let unmap = {
        let mut p = pool();
        p.limit = bytes;
        p.take_above(bytes)
    };
    unmap_all(unmap);
}

/// Gives every pooled buffer back to the kernel; returns the bytes released.
pub fn trim_pool() -> usize {
    let unmap = pool().take_above(0);
    let released = unmap.iter().map(|(_, len)| len).sum();
    unmap_all(unmap);
    released
}

/// Bytes currently held in the pool.
pub fn pooled_bytes() -> usize {
    pool().bytes
}

impl Pool {
    /// Removes mappings (oldest first) until at most `keep` bytes remain; the caller unmaps
    /// them outside the lock.
    fn take_above(&mut self, keep: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        while self.bytes > keep {
            let (map, len) = self.free.remove(0);
            self.bytes -= len;
            out.push((map, len));
        }
        out
    }

    /// The smallest pooled mapping that fits `need` bytes without wasting more than half.
    fn take_fitting(&mut self, need: usize) -> Option<(usize, usize)> {
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, (_, len))| *len >= need && *len <= need.saturating_mul(2))
            .min_by_key(|(_, (_, len))| *len)
            .map(|(i, _)| i)?;
        let taken = self.free.remove(best);
        self.bytes -= taken.1;
        Some(taken)
    }
}

fn unmap_all(maps: Vec<(usize, usize)>) {
    for (map, len) in maps {
        // SAFETY: each entry is a whole mapping (start and length as mmap returned them) that
        // HugeBuf::map made and the pool owns alone: the HugeBuf that used it was dropped, so
        // no slice into it is alive, and munmap of it cannot pull memory from under anyone.
        unsafe {
            libc::munmap(map as *mut libc::c_void, len);
        }
    }
}

/// `len` bytes inside an anonymous mapping, fresh or reused from the pool; its contents are
/// unspecified (zero when fresh, an earlier result's bytes when reused): the receiver
/// overwrites all of it.
pub struct HugeBuf {
    map: *mut u8,
    map_len: usize,
    /// Start of the 2 MiB-aligned region inside the mapping.
    offset: usize,
    len: usize,
}

// SAFETY: the raw pointer is the only thing that keeps HugeBuf from being Send on its own.
// The mapping it points to is owned exclusively by this value (no other HugeBuf or pool entry
// names it while it lives), and anonymous memory is not tied to the thread that mapped it, so
// moving the owner to another thread is sound.
unsafe impl Send for HugeBuf {}
// SAFETY: through `&HugeBuf` only `as_ref` is reachable, which hands out shared `&[u8]`;
// writing needs `&mut self` (`as_mut_slice`), so shared references on several threads only
// ever read. Once inside `Bytes` nothing gets `&mut` again.
unsafe impl Sync for HugeBuf {}

impl HugeBuf {
    pub fn new(len: usize) -> io::Result<HugeBuf> {
        let need = len
            .checked_add(HUGE)
            .ok_or_else(|| io::Error::other("size overflows"))?;
        let reused = pool().take_fitting(need);
        let (map, map_len) = match reused {
            Some((map, map_len)) => (map as *mut u8, map_len),
            None => (Self::map(need)?, need),
        };
        let offset = (HUGE - (map as usize % HUGE)) % HUGE;
        // SAFETY: offset < HUGE and the mapping is len + HUGE bytes long, so the advised range
        // [map + offset, map + offset + len) lies inside it; madvise(MADV_HUGEPAGE) changes no
        // contents, only how the kernel backs the pages. It is a hint: failure (huge pages
        // disabled) only means ordinary pages, so the result is ignored. No safe form exists:
        // std has none, and nix's mman wrappers are no safer (unsafe fns as well).
        unsafe {
            libc::madvise(map.add(offset).cast(), len, libc::MADV_HUGEPAGE);
        }
        Ok(HugeBuf {
            map,
            map_len,
            offset,
            len,
        })
    }

    fn map(map_len: usize) -> io::Result<*mut u8> {
        // SAFETY: a null hint, no file (fd -1, offset 0) and MAP_PRIVATE | MAP_ANONYMOUS ask
        // the kernel for fresh zeroed memory at an address of its choosing, so no existing
        // memory can be replaced; MAP_FAILED is checked below before the pointer is used.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(map.cast::<u8>())
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: offset + len <= map_len (new() sized the mapping len + HUGE), so the slice
        // lies inside the mapping this value owns alone; the bytes are initialised (zeroed by
        // the kernel, or written by an earlier use); `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.map.add(self.offset), self.len) }
    }

    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for HugeBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the same in-bounds, initialised range as as_mut_slice; a shared borrow of
        // self rules out a live `&mut` to it for as long as the slice lives.
        unsafe { std::slice::from_raw_parts(self.map.add(self.offset), self.len) }
    }
}

impl Drop for HugeBuf {
    fn drop(&mut self) {
        let entry = (self.map as usize, self.map_len);
        let overflow = {
            let mut p = pool();
            if p.bytes + self.map_len <= p.limit {
                p.bytes += self.map_len;
                p.free.push(entry);
                None
            } else {
                Some(entry)
            }
        };
        unmap_all(overflow.into_iter().collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_is_written_and_is_reused_after_drop() {
        // An unusual size, so that no other test running in parallel takes this buffer.
        let len = 101 << 20;
        let mut b = HugeBuf::new(len).unwrap();
        let first = b.as_mut_slice().as_ptr() as usize;
        b.as_mut_slice()[len - 1] = 9;
        let bytes = b.into_bytes();
        assert_eq!(bytes.len(), len);
        assert_eq!(bytes[len - 1], 9);
        let part = bytes.slice(len - 2..len);
        drop(bytes);
        assert_eq!(&part[..], &[0, 9]);
        drop(part);
        assert!(pooled_bytes() >= len);
        // A slightly smaller receive reuses the resident pages (same 2 MiB-aligned start).
        let mut again = HugeBuf::new(len - 4096).unwrap();
        assert_eq!(again.as_mut_slice().as_ptr() as usize, first);
        drop(again);
        assert!(trim_pool() >= len);
    }
}
