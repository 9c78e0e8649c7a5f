//! The shuffle filter: byte `b` of every element stored together, plane after plane, which
//! makes floating-point data compress better. Bytes past the last whole element are left
//! where they are (as HDF5 leaves them).

/// Undoes the shuffle of elements of `n` bytes.
pub fn unshuffle(data: &[u8], n: usize) -> Vec<u8> {
    let count = data.len() / n.max(1);
    if n <= 1 || count <= 1 {
        return data.to_vec();
    }
    let mut out = vec![0u8; data.len()];
    match n {
        2 => unshuffle_n::<2>(data, count, &mut out),
        4 => unshuffle_n::<4>(data, count, &mut out),
        8 => unshuffle_n::<8>(data, count, &mut out),
        _ => {
            for b in 0..n {
                let plane = &data[b * count..(b + 1) * count];
                for (e, &byte) in plane.iter().enumerate() {
                    out[e * n + b] = byte;
                }
            }
        }
    }
    let tail = count * n;
    out[tail..].copy_from_slice(&data[tail..]);
    out
}

/// The common element sizes: each output element assembled from its N planes at once.
fn unshuffle_n<const N: usize>(data: &[u8], count: usize, out: &mut [u8]) {
    let planes: [&[u8]; N] = std::array::from_fn(|b| &data[b * count..(b + 1) * count]);
    for (e, o) in out[..count * N].chunks_exact_mut(N).enumerate() {
        for (b, plane) in planes.iter().enumerate() {
            o[b] = plane[e];
        }
    }
}

#[cfg(test)]
pub fn shuffle(data: &[u8], n: usize) -> Vec<u8> {
    let count = data.len() / n;
    let mut out = data.to_vec();
    for e in 0..count {
        for b in 0..n {
            out[b * count + e] = data[e * n + b];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn planes_come_back_to_elements() {
        // Two 4-byte elements: planes [a0 b0][a1 b1][a2 b2][a3 b3].
        let stored = [0, 4, 1, 5, 2, 6, 3, 7];
        assert_eq!(unshuffle(&stored, 4), (0..8).collect::<Vec<u8>>());
    }

    proptest! {
        #[test]
        fn unshuffle_inverts_shuffle(data in proptest::collection::vec(any::<u8>(), 0..5000), n in 1usize..17) {
            prop_assert_eq!(unshuffle(&shuffle(&data, n), n), data);
        }
    }
}
