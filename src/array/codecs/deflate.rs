//! The deflate filter: a zlib stream (RFC 1950) per chunk, inflated by libdeflate.

use libdeflater::{DecompressionError, Decompressor};

/// Inflates `data` into exactly `size` bytes.
pub fn inflate(data: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; size];
    // A decompressor holds ~30 KiB of tables; one per call is cheap next to a chunk.
    let n = Decompressor::new()
        .zlib_decompress(data, &mut out)
        .map_err(|e| match e {
            DecompressionError::BadData => "a deflate chunk is corrupt".to_string(),
            DecompressionError::InsufficientSpace => {
                format!("a deflate chunk inflates to more than the {size} bytes of its chunk")
            }
        })?;
    if n != size {
        return Err(format!(
            "a deflate chunk inflates to {n} bytes, its chunk has {size}"
        ));
    }
    Ok(out)
}

#[cfg(test)]
pub fn deflate_for_tests(data: &[u8]) -> Vec<u8> {
    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::new(4).unwrap());
    let mut out = vec![0; c.zlib_compress_bound(data.len())];
    let n = c.zlib_compress(data, &mut out).unwrap();
    out.truncate(n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_wrong_sizes_and_corruption() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let z = deflate_for_tests(&data);
        assert_eq!(inflate(&z, data.len()).unwrap(), data);
        assert!(inflate(&z, data.len() - 1).is_err());
        assert!(inflate(&z, data.len() + 1)
            .unwrap_err()
            .contains("inflates to"));
        let mut bad = z.clone();
        bad[5] ^= 0xff;
        assert!(inflate(&bad, data.len()).is_err());
    }
}
