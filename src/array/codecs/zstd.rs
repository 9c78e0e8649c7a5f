//! The zstd filter (id 32015, the HDF Group's registered plugin): one zstd frame per chunk.

pub fn decompress(data: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let out = ::zstd::bulk::decompress(data, size)
        .map_err(|e| format!("a zstd chunk does not decompress ({e})"))?;
    if out.len() != size {
        return Err(format!(
            "a zstd chunk decompresses to {} bytes, its chunk has {size}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decompress_to_their_chunk_exactly() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 97) as u8).collect();
        let z = ::zstd::bulk::compress(&data, 3).unwrap();
        assert_eq!(decompress(&z, data.len()).unwrap(), data);
        assert!(decompress(&z, data.len() - 1).is_err());
        assert!(decompress(&z, data.len() + 1)
            .unwrap_err()
            .contains("decompresses to"));
        assert!(decompress(&z[..z.len() / 2], data.len()).is_err());
    }
}
