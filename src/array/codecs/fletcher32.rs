//! The fletcher32 filter: a checksum of the (already filtered) chunk appended as 4 bytes.
//! The checksum is HDF5's own variant (16-bit words read big-endian, an odd last byte as the
//! high byte of a word); it is stored little-endian, and files from HDF5 before 1.6.3 stored
//! it byte-swapped, which HDF5 still accepts and so do we.

pub fn checksum(data: &[u8]) -> u32 {
    let (mut sum1, mut sum2) = (0u32, 0u32);
    let mut words = data.chunks_exact(2);
    // 360 words keep the sums from overflowing before they are folded.
    loop {
        let mut n = 0;
        for w in words.by_ref().take(360) {
            sum1 += (u32::from(w[0]) << 8) | u32::from(w[1]);
            sum2 += sum1;
            n += 1;
        }
        if n == 0 {
            break;
        }
        sum1 = (sum1 & 0xffff) + (sum1 >> 16);
        sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    }
    if let [last] = words.remainder() {
        sum1 += u32::from(*last) << 8;
        sum2 += sum1;
        sum1 = (sum1 & 0xffff) + (sum1 >> 16);
        sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    }
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    (sum2 << 16) | sum1
}

/// Checks the trailing checksum and returns the data without it.
pub fn check_and_strip(mut data: Vec<u8>) -> Result<Vec<u8>, String> {
    if data.len() < 4 {
        return Err("a fletcher32 chunk is shorter than its checksum".into());
    }
    let at = data.len() - 4;
    let stored = u32::from_le_bytes(data[at..].try_into().unwrap());
    data.truncate(at);
    let sum = checksum(&data);
    if stored != sum && stored != sum.swap_bytes() {
        return Err(
            "a chunk fails its fletcher32 checksum: the file is corrupt (h5py and h5dump \
             refuse it too)"
                .into(),
        );
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_words_big_endian_and_an_odd_byte_high() {
        // Words 0x0102, 0x0304: sum1 = 0x0406, sum2 = 0x0102 + 0x0406.
        assert_eq!(checksum(&[1, 2, 3, 4]), (0x0508 << 16) | 0x0406);
        assert_eq!(checksum(&[1, 2, 3]), ((0x0102 + 0x0402) << 16) | 0x0402);
        let data: Vec<u8> = (0..10_001u32).map(|i| (i * 31) as u8).collect();
        let mut stored = data.clone();
        stored.extend(checksum(&data).to_le_bytes());
        assert_eq!(check_and_strip(stored.clone()).unwrap(), data);
        let n = stored.len();
        stored[n - 9] ^= 1;
        assert!(check_and_strip(stored).unwrap_err().contains("checksum"));
    }
}
