//! Memory for large received results, backed by transparent huge pages where the kernel
//! offers them (`madvise` mode, common on HPC nodes).
//!
//! A result received from a peer lands in fresh memory, and first-touching fresh memory costs
//! a page fault per 4 KiB page inside every recv — for a 512 MiB chunk, 131,072 faults, which
//! cost more than the copy itself. Mapping the body 2 MiB-aligned with MADV_HUGEPAGE makes it
//! 256 faults. Where huge pages are off, this is an ordinary anonymous mapping.

use std::io;

use bytes::Bytes;

const HUGE: usize = 2 << 20;

/// An anonymous mapping of `len` bytes, zero-filled by the kernel, unmapped on drop.
pub struct HugeBuf {
    map: *mut u8,
    map_len: usize,
    /// Start of the 2 MiB-aligned region inside the mapping.
    offset: usize,
    len: usize,
}

// SAFETY: the mapping is owned exclusively by this value and never aliased mutably once
// shared (Bytes only hands out shared slices).
unsafe impl Send for HugeBuf {}
unsafe impl Sync for HugeBuf {}

impl HugeBuf {
    pub fn new(len: usize) -> io::Result<HugeBuf> {
        let map_len = len
            .checked_add(HUGE)
            .ok_or_else(|| io::Error::other("size overflows"))?;
        // SAFETY: a fresh private anonymous mapping; we check the result.
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
        let map = map.cast::<u8>();
        let offset = (HUGE - (map as usize % HUGE)) % HUGE;
        // SAFETY: the advised range lies inside the mapping. The advice is a hint; failure
        // (huge pages disabled) only means ordinary pages.
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

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: offset + len <= map_len; the memory is initialised (zero) by the kernel.
        unsafe { std::slice::from_raw_parts_mut(self.map.add(self.offset), self.len) }
    }

    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for HugeBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: as in as_mut_slice.
        unsafe { std::slice::from_raw_parts(self.map.add(self.offset), self.len) }
    }
}

impl Drop for HugeBuf {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping we created.
        unsafe {
            libc::munmap(self.map.cast(), self.map_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_is_written_and_frees_on_drop() {
        let mut b = HugeBuf::new(5 << 20).unwrap();
        assert!(b.as_mut_slice().iter().all(|x| *x == 0));
        b.as_mut_slice()[(5 << 20) - 1] = 9;
        let bytes = b.into_bytes();
        assert_eq!(bytes.len(), 5 << 20);
        assert_eq!(bytes[(5 << 20) - 1], 9);
        let part = bytes.slice(1..3);
        drop(bytes);
        assert_eq!(&part[..], &[0, 0]);
    }
}
