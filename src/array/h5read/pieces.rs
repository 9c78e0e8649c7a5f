//! Library reads of large regions in pieces: HDF5 builds a selection for every file chunk a
//! read touches, so a read over very many chunks is split at chunk boundaries.

use super::super::block::Dim;

/// At most this many HDF5 chunks in one read call. HDF5 builds a selection for every chunk a
/// read touches (kilobytes each, whatever the chunk's size): one read over 200,000
/// one-element chunks made a worker peak at 794 MB for 1.6 MB of data. Larger reads are done
/// piece by piece into the chunk's memory.
pub const MAX_FILE_CHUNKS_PER_READ: usize = 1024;

/// How many file chunks of length `c` the selection `d` touches along its axis.
fn chunks_touched(d: &Dim, c: usize) -> usize {
    let Some(last) = d.last() else {
        return 0;
    };
    let c = c.max(1) as u64;
    let span = (last / c - d.start / c + 1) as usize;
    span.min(d.len as usize)
}

/// Splits the read of `dims` from a dataset chunked as `file_chunks` into pieces that each
/// touch at most `max` file chunks: (offset of the piece in the result, its selection), in
/// order. The outermost axis that spans several file chunks is cut at file-chunk boundaries;
/// when even one file chunk's worth of it is too much, each piece is cut again further in.
pub fn read_pieces(dims: &[Dim], file_chunks: &[usize], max: usize) -> Vec<(Vec<usize>, Vec<Dim>)> {
    let mut out = Vec::new();
    split_read(dims, file_chunks, max.max(1), vec![0; dims.len()], &mut out);
    out
}

fn split_read(
    dims: &[Dim],
    file_chunks: &[usize],
    max: usize,
    offset: Vec<usize>,
    out: &mut Vec<(Vec<usize>, Vec<Dim>)>,
) {
    let touched: Vec<usize> = dims
        .iter()
        .zip(file_chunks)
        .map(|(d, &c)| chunks_touched(d, c))
        .collect();
    let total = touched
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .unwrap_or(usize::MAX);
    let Some(ax) = touched.iter().position(|&n| n > 1).filter(|_| total > max) else {
        out.push((offset, dims.to_vec()));
        return;
    };
    let others = total / touched[ax];
    // File chunks of this axis per piece.
    let k = (max / others.max(1)).max(1) as u64;
    let (d, c) = (dims[ax], file_chunks[ax].max(1) as u64);
    let mut i = 0;
    while i < d.len {
        let at = d.start + i * d.step;
        let boundary = (at / c + k) * c;
        let end = (boundary - d.start).div_ceil(d.step).min(d.len);
        let mut piece = dims.to_vec();
        piece[ax] = Dim {
            start: at,
            len: end - i,
            step: d.step,
        };
        let mut at_offset = offset.clone();
        at_offset[ax] += i as usize;
        split_read(&piece, file_chunks, max, at_offset, out);
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    /// Every element of `dims` lands once, at its place, and no piece touches more than
    /// `max` file chunks.
    fn check(dims: &[Dim], fc: &[usize], max: usize) -> usize {
        let pieces = read_pieces(dims, fc, max);
        let shape: Vec<usize> = dims.iter().map(|d| d.len as usize).collect();
        let mut seen = ndarray::ArrayD::<u32>::zeros(IxDyn(&shape));
        for (offset, piece) in &pieces {
            let touched: usize = piece
                .iter()
                .zip(fc)
                .map(|(d, &c)| chunks_touched(d, c))
                .product();
            assert!(touched <= max, "{piece:?} touches {touched} chunks");
            for (ax, (d, whole)) in piece.iter().zip(dims).enumerate() {
                // The piece's coordinates are the whole read's, from its offset on.
                assert_eq!(d.step, whole.step);
                assert_eq!(d.start, whole.start + whole.step * offset[ax] as u64);
            }
            seen.slice_each_axis_mut(|a| {
                let at = offset[a.axis.index()];
                ndarray::Slice::from(at..at + piece[a.axis.index()].len as usize)
            })
            .mapv_inplace(|n| n + 1);
        }
        assert!(seen.iter().all(|&n| n == 1), "{dims:?} in {fc:?}");
        pieces.len()
    }

    #[test]
    fn reads_over_many_file_chunks_are_split() {
        // 200,000 one-element chunks: pieces of 1024.
        assert_eq!(check(&[Dim::full(200_000)], &[1], 1024), 196);
        // A read within the bound stays one read.
        assert_eq!(
            check(&[Dim::full(1000), Dim::full(1000)], &[100, 100], 1024),
            1
        );
        // 2-d with tiny chunks: rows cut first, then columns when one row is too many.
        check(&[Dim::full(50), Dim::full(3000)], &[1, 1], 1024);
        check(&[Dim::range(3, 97), Dim::range(5, 61)], &[2, 3], 16);
        // Strided selections, steps smaller and larger than the file chunks.
        check(
            &[Dim {
                start: 7,
                len: 400,
                step: 3,
            }],
            &[2],
            10,
        );
        check(
            &[
                Dim {
                    start: 1,
                    len: 300,
                    step: 5,
                },
                Dim::full(9),
            ],
            &[4, 2],
            7,
        );
        assert_eq!(read_pieces(&[Dim::full(0)], &[1], 4).len(), 1);
    }
}
