//! Decoding HDF5 chunks ourselves: the dataset's filter pipeline undone in reverse order on
//! the raw bytes of a chunk read directly from the file, so decompression runs on the
//! worker's own threads instead of inside the HDF5 library (whose calls all take one
//! process-wide lock).
//!
//! A [`Pipeline`] is built from the dataset's filter list (ids and client data, in the order
//! they were applied on writing). Building it fails for a filter we cannot decode ourselves
//! (szip, nbit, scaleoffset, other plugins' filters): the reader then lets the library decode those chunks.
//! Each chunk carries a filter mask: bit `i` set means filter `i` was skipped when that chunk
//! was written (an optional filter that failed), so it is skipped when decoding too.

mod deflate;
mod fletcher32;
mod lzf;
mod shuffle;
mod zstd;

/// HDF5's registered filter ids of the filters decoded here.
pub const DEFLATE: i32 = 1;
pub const SHUFFLE: i32 = 2;
pub const FLETCHER32: i32 = 3;
pub const LZF: i32 = 32000;
pub const ZSTD: i32 = 32015;

/// Whether we decode filter `id` ourselves (then no HDF5 plugin is needed for it).
pub fn decodes(id: i32) -> bool {
    matches!(id, DEFLATE | SHUFFLE | FLETCHER32 | LZF | ZSTD)
}

/// One decodable filter of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Deflate,
    /// Byte shuffle of elements of this many bytes.
    Shuffle(usize),
    Fletcher32,
    Lzf,
    Zstd,
}

/// A dataset's filters in the order they were applied when writing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pipeline {
    codecs: Vec<Codec>,
}

impl Pipeline {
    /// The pipeline of `filters` (id, client data) for elements of `elem_size` bytes; None
    /// when one of them is not decoded here.
    pub fn new(filters: &[(i32, Vec<u32>)], elem_size: usize) -> Option<Pipeline> {
        let codecs = filters
            .iter()
            .map(|(id, cd)| match *id {
                DEFLATE => Some(Codec::Deflate),
                // The element size is the shuffle's first client value (HDF5 sets it to the
                // dataset type's size when the dataset is created).
                SHUFFLE => Some(Codec::Shuffle(
                    cd.first().map_or(elem_size, |&n| n as usize).max(1),
                )),
                FLETCHER32 => Some(Codec::Fletcher32),
                LZF => Some(Codec::Lzf),
                ZSTD => Some(Codec::Zstd),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Pipeline { codecs })
    }

    pub fn is_empty(&self) -> bool {
        self.codecs.is_empty()
    }

    /// Undoes the pipeline on one chunk's stored bytes. `chunk_bytes` is the size of the
    /// unfiltered chunk (its full shape times the element size: edge chunks are stored
    /// whole); `mask` the chunk's filter mask.
    pub fn decode(&self, raw: Vec<u8>, mask: u32, chunk_bytes: usize) -> Result<Vec<u8>, String> {
        let applied = |i: usize| i >= 32 || mask & (1 << i) == 0;
        // The size each filter's input had when writing: the chunk's size, plus four bytes
        // after every applied checksum. A decompressor must give back exactly that.
        let mut sizes = Vec::with_capacity(self.codecs.len());
        let mut size = chunk_bytes;
        for (i, c) in self.codecs.iter().enumerate() {
            sizes.push(size);
            if applied(i) && *c == Codec::Fletcher32 {
                size += 4;
            }
        }
        let mut data = raw;
        for (i, c) in self.codecs.iter().enumerate().rev() {
            if !applied(i) {
                continue;
            }
            data = match c {
                Codec::Deflate => deflate::inflate(&data, sizes[i])?,
                Codec::Lzf => lzf::decompress(&data, sizes[i])?,
                Codec::Zstd => zstd::decompress(&data, sizes[i])?,
                Codec::Shuffle(n) => shuffle::unshuffle(&data, *n),
                Codec::Fletcher32 => fletcher32::check_and_strip(data)?,
            };
        }
        if data.len() != chunk_bytes {
            return Err(format!(
                "a decoded chunk has {} bytes, {chunk_bytes} expected",
                data.len()
            ));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_of_known_filters_only() {
        let p = Pipeline::new(&[(2, vec![8]), (1, vec![4]), (3, vec![])], 8).unwrap();
        assert_eq!(
            p.codecs,
            [Codec::Shuffle(8), Codec::Deflate, Codec::Fletcher32]
        );
        assert!(Pipeline::new(&[(4, vec![])], 8).is_none(), "szip");
        assert!(Pipeline::new(&[(2, vec![]), (32001, vec![])], 8).is_none());
        assert!(Pipeline::new(&[], 4).unwrap().is_empty());
    }

    #[test]
    fn a_skipped_filter_is_not_undone() {
        let data: Vec<u8> = (0..64u8).collect();
        // Shuffle applied, then deflate skipped (mask bit 1): the stored bytes are shuffled.
        let p = Pipeline::new(&[(2, vec![4]), (1, vec![1])], 4).unwrap();
        let stored = shuffle::shuffle(&data, 4);
        assert_eq!(p.decode(stored, 0b10, 64).unwrap(), data);
        // Everything skipped: stored as is.
        assert_eq!(p.decode(data.clone(), 0b11, 64).unwrap(), data);
        // A wrong size is an error, not garbage.
        assert!(p.decode(data[..60].to_vec(), 0b11, 64).is_err());
    }

    #[test]
    fn checksums_before_compression_are_sized_for() {
        // fletcher32 first, then deflate: inflating gives the chunk plus its 4-byte checksum.
        let data: Vec<u8> = (0..100u32).flat_map(|i| (i * 7).to_le_bytes()).collect();
        let mut with_sum = data.clone();
        with_sum.extend(fletcher32::checksum(&data).to_le_bytes());
        let stored = deflate::deflate_for_tests(&with_sum);
        let p = Pipeline::new(&[(3, vec![]), (1, vec![6])], 4).unwrap();
        assert_eq!(p.decode(stored, 0, data.len()).unwrap(), data);
    }
}
