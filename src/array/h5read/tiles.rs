//! How a strided region of a dataset becomes reads (pure, no IO): one library read of the
//! whole region, or reads tile by tile — a tile being one of the file's chunks, or a box of
//! them, or a band of rows of a contiguous dataset — each cut (and strided) in memory.
//!
//! Why: HDF5 serves a strided or partial-chunk selection with the chunk cache off as one
//! small `pread` per selected run (one per element for `x[::2, ::2]`: 4 M reads of 8 bytes,
//! 20x slower than reading the file once), and decompresses inside its process-wide lock. A
//! chunk read whole, once, and cut here costs one large read, and a compressed one can be
//! decoded outside the lock on the worker's own threads.

use super::super::block::Dim;

/// What the reader knows of the dataset's storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filters {
    /// Stored as is.
    None,
    /// Compressed with filters we decode ourselves (see `codecs`).
    Ours,
    /// Filters only the HDF5 library decodes (szip, nbit, scaleoffset, plugins).
    Library,
}

/// How one read is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// One hyperslab through the library (in pieces touching at most a bounded number of
    /// file chunks): a step-1 region of whole chunks or of a contiguous dataset, which HDF5
    /// reads straight into the result.
    Whole,
    /// Tile by tile: `direct` = each file chunk's stored bytes read raw and decoded here
    /// (tiles are then the file's chunks), otherwise each tile's bounding box of the
    /// selection read through the library (step 1) and strided here.
    Tiles { direct: bool, tile: Vec<u64> },
}

/// Library tile reads aim at boxes of at least this many bytes: a 1-element chunk each is
/// one library call each (200,000 of them for a 1.6 MB dataset).
pub const MIN_LIBRARY_TILE: u64 = 1 << 20;
/// Rows of a contiguous dataset read at once for a strided selection.
pub const CONTIGUOUS_BAND: u64 = 4 << 20;
/// Unfiltered chunks smaller than this are read through the library in boxes of them rather
/// than one direct read each (a call costs microseconds; a small chunk's copy less).
pub const MIN_DIRECT_CHUNK: u64 = 256 << 10;

/// The read strategy for the region `dims` of a dataset of `shape` (chunked as `chunks`,
/// or contiguous) with elements of `elem` bytes.
pub fn choose(
    dims: &[Dim],
    shape: &[usize],
    chunks: Option<&[usize]>,
    elem: usize,
    filters: Filters,
) -> Strategy {
    let unit = dims.iter().all(|d| d.step <= 1);
    if dims.is_empty() || dims.iter().any(|d| d.len == 0) {
        return Strategy::Whole;
    }
    let Some(chunks) = chunks else {
        if unit {
            return Strategy::Whole;
        }
        // Bands of whole rows: one contiguous range of the file each.
        let row: u64 = shape[1..].iter().map(|&n| n as u64).product::<u64>() * elem as u64;
        let mut tile: Vec<u64> = shape.iter().map(|&n| n as u64).collect();
        tile[0] = (CONTIGUOUS_BAND / row.max(1)).max(1);
        return Strategy::Tiles {
            direct: false,
            tile,
        };
    };
    let chunk: Vec<u64> = chunks.iter().map(|&c| c.max(1) as u64).collect();
    let chunk_bytes = chunk.iter().product::<u64>() * elem as u64;
    let aligned = dims.iter().zip(&chunk).zip(shape).all(|((d, &c), &n)| {
        let end = d.start + d.len;
        d.start % c == 0 && (end % c == 0 || end == n as u64)
    });
    match filters {
        Filters::Ours => Strategy::Tiles {
            direct: true,
            tile: chunk,
        },
        Filters::None if unit && aligned => Strategy::Whole,
        Filters::None if chunk_bytes >= MIN_DIRECT_CHUNK => Strategy::Tiles {
            direct: true,
            tile: chunk,
        },
        Filters::None => Strategy::Tiles {
            direct: false,
            tile: grown(&chunk, shape, elem),
        },
        Filters::Library if unit => Strategy::Whole,
        Filters::Library => Strategy::Tiles {
            direct: false,
            tile: chunk,
        },
    }
}

/// `chunk` grown by whole chunks, innermost axis first (whole rows are contiguous), until a
/// tile holds [`MIN_LIBRARY_TILE`] bytes or the dataset.
fn grown(chunk: &[u64], shape: &[usize], elem: usize) -> Vec<u64> {
    let mut tile = chunk.to_vec();
    for ax in (0..tile.len()).rev() {
        let bytes = tile.iter().product::<u64>() * elem as u64;
        if bytes >= MIN_LIBRARY_TILE {
            break;
        }
        let per = bytes / tile[ax];
        let want = MIN_LIBRARY_TILE.div_ceil(per.max(1));
        let full = (shape[ax] as u64).div_ceil(chunk[ax]) * chunk[ax];
        tile[ax] = want
            .div_ceil(chunk[ax])
            .saturating_mul(chunk[ax])
            .min(full)
            .max(chunk[ax]);
    }
    tile
}

/// One tile's share of a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TilePart {
    /// The tile's first element, in dataset coordinates.
    pub origin: Vec<u64>,
    /// The selected elements, in the tile's coordinates.
    pub sel: Vec<Dim>,
    /// Where they land in the read's result.
    pub offset: Vec<usize>,
}

/// Along one axis: (tile origin, selection inside it, output offset) for each tile of
/// length `t` the strided range `d` touches, in order.
fn axis_parts(d: Dim, t: u64) -> Vec<(u64, Dim, usize)> {
    let step = d.step.max(1);
    let mut out = Vec::new();
    let mut done = 0u64;
    while done < d.len {
        let at = d.start + step * done;
        let origin = at / t * t;
        let fit = ((origin + t - 1 - at) / step + 1).min(d.len - done);
        out.push((
            origin,
            Dim {
                start: at - origin,
                len: fit,
                step,
            },
            done as usize,
        ));
        done += fit;
    }
    out
}

/// Every tile of shape `tile` the region `dims` touches, row-major, with its share.
pub fn tile_parts(dims: &[Dim], tile: &[u64]) -> Vec<TilePart> {
    let mut out = vec![TilePart {
        origin: vec![],
        sel: vec![],
        offset: vec![],
    }];
    for (d, &t) in dims.iter().zip(tile) {
        let axis = axis_parts(*d, t.max(1));
        let mut next = Vec::with_capacity(out.len() * axis.len());
        for p in &out {
            for (origin, sel, offset) in &axis {
                let mut q = p.clone();
                q.origin.push(*origin);
                q.sel.push(*sel);
                q.offset.push(*offset);
                next.push(q);
            }
        }
        out = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};

    fn dim(start: u64, len: u64, step: u64) -> Dim {
        Dim { start, len, step }
    }

    #[test]
    fn strategies() {
        let shape = [16384, 16384];
        let chunks = Some(&[1024usize, 1024][..]);
        let full = [Dim::range(0, 1024), Dim::range(1024, 1024)];
        assert_eq!(
            choose(&full, &shape, chunks, 8, Filters::None),
            Strategy::Whole
        );
        let direct = Strategy::Tiles {
            direct: true,
            tile: vec![1024, 1024],
        };
        // x[::2, ::2] and rechunk((4096, 256)) read whole chunks once.
        let strided = [dim(0, 512, 2), dim(2048, 512, 2)];
        assert_eq!(choose(&strided, &shape, chunks, 8, Filters::None), direct);
        let cut = [Dim::range(0, 4096), Dim::range(256, 256)];
        assert_eq!(choose(&cut, &shape, chunks, 8, Filters::None), direct);
        // Compressed data is always read raw and decoded here, aligned or not.
        assert_eq!(choose(&full, &shape, chunks, 8, Filters::Ours), direct);
        // What only the library decodes: whole when it can, chunk by chunk when strided.
        assert_eq!(
            choose(&full, &shape, chunks, 8, Filters::Library),
            Strategy::Whole
        );
        assert_eq!(
            choose(&strided, &shape, chunks, 8, Filters::Library),
            Strategy::Tiles {
                direct: false,
                tile: vec![1024, 1024]
            }
        );
        // A region ending at the dataset's ragged edge is still aligned.
        let edge = [Dim::range(30, 7), Dim::range(0, 23)];
        assert_eq!(
            choose(&edge, &[37, 23], Some(&[10, 7]), 8, Filters::None),
            Strategy::Whole
        );
        // Tiny unfiltered chunks are read through the library in boxes of >= 1 MiB.
        let tiny = choose(
            &[dim(0, 100_000, 2)],
            &[200_000],
            Some(&[1]),
            8,
            Filters::None,
        );
        assert_eq!(
            tiny,
            Strategy::Tiles {
                direct: false,
                tile: vec![131072]
            }
        );
        // Contiguous: bands of rows when strided.
        assert_eq!(
            choose(&strided, &shape, None, 8, Filters::None),
            Strategy::Tiles {
                direct: false,
                tile: vec![32, 16384]
            }
        );
        assert_eq!(
            choose(&full, &shape, None, 8, Filters::None),
            Strategy::Whole
        );
    }

    #[test]
    fn grown_tiles_stop_at_the_dataset() {
        assert_eq!(grown(&[1, 1], &[300, 50], 8), vec![300, 50]);
        assert_eq!(grown(&[2, 3], &[10_000, 7], 8), vec![10_000, 9]);
    }

    proptest! {
        /// Every selected element lands once, at its place, inside its tile.
        #[test]
        fn tiles_cover_the_selection_exactly(
            axes in proptest::collection::vec((0u64..40, 0u64..30, 1u64..9, 1u64..12), 1..4)
        ) {
            let dims: Vec<Dim> = axes.iter().map(|&(s, l, st, _)| dim(s, l, st)).collect();
            let tile: Vec<u64> = axes.iter().map(|a| a.3).collect();
            let mut seen = std::collections::HashMap::new();
            for p in tile_parts(&dims, &tile) {
                for ax in 0..dims.len() {
                    let (s, t) = (p.sel[ax], tile[ax]);
                    prop_assert_eq!(p.origin[ax] % t, 0);
                    prop_assert!(s.len > 0 && s.last().unwrap() < t);
                    prop_assert_eq!(s.step, dims[ax].step);
                }
                // Enumerate the part's elements: output index -> dataset coordinate.
                let n: u64 = p.sel.iter().map(|s| s.len).product();
                for mut k in 0..n {
                    let mut out = vec![0u64; dims.len()];
                    let mut coord = vec![0u64; dims.len()];
                    for a in (0..dims.len()).rev() {
                        let i = k % p.sel[a].len;
                        k /= p.sel[a].len;
                        out[a] = p.offset[a] as u64 + i;
                        coord[a] = p.origin[a] + p.sel[a].start + i * p.sel[a].step;
                    }
                    prop_assert!(seen.insert(out, coord).is_none());
                }
            }
            let total: u64 = dims.iter().map(|d| d.len).product();
            prop_assert_eq!(seen.len() as u64, total);
            for (out, coord) in &seen {
                for a in 0..dims.len() {
                    prop_assert_eq!(coord[a], dims[a].start + out[a] * dims[a].step);
                }
            }
        }
    }
}
