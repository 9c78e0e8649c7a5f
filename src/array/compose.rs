//! Operations composed from the others, adding no task kind of their own: `tensordot` (a
//! transpose, a reshape to a matrix on each side, the blocked matrix product, a reshape
//! back) and integer-list indexing `x[[1, 5, 7]]` (slices of the runs in the list,
//! concatenated). What they cost is what their parts cost, and their parts' limits apply.

use super::block::Dim;
use super::lazy::{python_tuple, Array, ArrayResult, Select};

/// NumPy's `tensordot(a, b, axes=(a_axes, b_axes))`: sums over `a_axes` of `a` against
/// `b_axes` of `b` (pairwise); the result's axes are `a`'s others, then `b`'s others, each
/// in their order. Refusals as NumPy's (`shape-mismatch for sum`, `duplicate axes are not
/// allowed in tensordot`, `tuple index out of range`), before anything runs.
pub fn tensordot(a: &Array, b: &Array, a_axes: &[i64], b_axes: &[i64]) -> ArrayResult<Array> {
    if a_axes.len() != b_axes.len() {
        return Err("shape-mismatch for sum".into());
    }
    let sa = axes_of(a_axes, a.ndim())?;
    let sb = axes_of(b_axes, b.ndim())?;
    if sa
        .iter()
        .zip(&sb)
        .any(|(&i, &j)| a.shape()[i] != b.shape()[j])
    {
        return Err(format!(
            "shape-mismatch for sum: axes {sa:?} of {} against axes {sb:?} of {}",
            python_tuple(a.shape()),
            python_tuple(b.shape())
        ));
    }
    let free_a: Vec<usize> = (0..a.ndim()).filter(|k| !sa.contains(k)).collect();
    let free_b: Vec<usize> = (0..b.ndim()).filter(|k| !sb.contains(k)).collect();
    let len = |x: &Array, axes: &[usize]| axes.iter().map(|&k| x.shape()[k]).product::<usize>();
    let inner = len(a, &sa);
    // a as (free, summed) and b as (summed, free): then one matrix product.
    let perm_a: Vec<usize> = free_a.iter().chain(&sa).copied().collect();
    let perm_b: Vec<usize> = sb.iter().chain(&free_b).copied().collect();
    let as_i64 = |n: usize| i64::try_from(n).map_err(|_| format!("size {n} is too large"));
    let left = a
        .transpose(Some(&perm_a))?
        .reshape(&[as_i64(len(a, &free_a))?, as_i64(inner)?])?;
    let right = b
        .transpose(Some(&perm_b))?
        .reshape(&[as_i64(inner)?, as_i64(len(b, &free_b))?])?;
    let shape: Vec<i64> = free_a
        .iter()
        .map(|&k| a.shape()[k])
        .chain(free_b.iter().map(|&k| b.shape()[k]))
        .map(as_i64)
        .collect::<ArrayResult<_>>()?;
    left.dot(&right)?.reshape(&shape)
}

/// `axes=N`: the last N axes of `a` against the first N of `b`, as NumPy reads an int.
pub fn tensordot_n(a: &Array, b: &Array, n: i64) -> ArrayResult<Array> {
    // NumPy takes a negative N without complaint and sums over surprising axes; a typo
    // is likelier than intent, so it is refused here.
    let n = usize::try_from(n).map_err(|_| {
        format!("tensordot's axes={n} must not be negative (give the axes as a pair of lists)")
    })?;
    if n > a.ndim() || n > b.ndim() {
        return Err("shape-mismatch for sum".into());
    }
    let a_axes: Vec<i64> = (a.ndim() - n..a.ndim()).map(|k| k as i64).collect();
    let b_axes: Vec<i64> = (0..n).map(|k| k as i64).collect();
    tensordot(a, b, &a_axes, &b_axes)
}

/// Axes for tensordot: negative ones from the end, each once.
fn axes_of(list: &[i64], nd: usize) -> ArrayResult<Vec<usize>> {
    let mut out = Vec::with_capacity(list.len());
    for &a in list {
        let k = if a < 0 { a + nd as i64 } else { a };
        let k = usize::try_from(k).ok().filter(|&k| k < nd).ok_or_else(|| {
            format!("tuple index out of range: axis {a} of an array of {nd} dimensions")
        })?;
        if out.contains(&k) {
            return Err("duplicate axes are not allowed in tensordot".into());
        }
        out.push(k);
    }
    Ok(out)
}

/// `x[..., [i, j, k], ...]`: the elements at the listed positions along `axis`, in the
/// list's order (repeats allowed), negative positions counting from the end. Runs of
/// positions with a constant positive step become one strided slice each, so `x[[0, 1, 2,
/// 7, 9]]` reads two regions, not five.
pub fn take(x: &Array, positions: &[i64], axis: usize) -> ArrayResult<Array> {
    let len = x.shape()[axis] as i64;
    let at: Vec<u64> = positions
        .iter()
        .map(|&i| {
            let k = if i < 0 { i + len } else { i };
            if (0..len).contains(&k) {
                Ok(k as u64)
            } else {
                Err(format!(
                    "index {i} is out of bounds for axis {axis} with size {len}"
                ))
            }
        })
        .collect::<ArrayResult<_>>()?;
    let slice = |d: Dim| {
        let mut select: Vec<Select> = (0..axis)
            .map(|k| Select::Range(Dim::full(x.shape()[k] as u64)))
            .collect();
        select.push(Select::Range(d));
        x.slice(&select)
    };
    let parts = runs(&at)
        .into_iter()
        .map(slice)
        .collect::<ArrayResult<Vec<_>>>()?;
    if parts.is_empty() {
        return slice(Dim::range(0, 0));
    }
    Array::concatenate(&parts, axis as i64)
}

/// The positions as strided ranges: maximal runs with one positive step.
fn runs(at: &[u64]) -> Vec<Dim> {
    let mut out: Vec<Dim> = Vec::new();
    for &p in at {
        if let Some(d) = out.last_mut() {
            let next = d.start + d.step * d.len;
            if d.len == 1 && p > d.start {
                d.step = p - d.start;
                d.len = 2;
                continue;
            }
            if d.len > 1 && p == next {
                d.len += 1;
                continue;
            }
        }
        out.push(Dim::range(p, 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_constant_positive_steps() {
        let r = |s: u64, l: u64, st: u64| Dim {
            start: s,
            len: l,
            step: st,
        };
        assert_eq!(runs(&[0, 1, 2, 7, 9]), vec![r(0, 3, 1), r(7, 2, 2)]);
        assert_eq!(runs(&[5, 5, 3]), vec![r(5, 1, 1), r(5, 1, 1), r(3, 1, 1)]);
        assert_eq!(runs(&[4, 2, 0]), vec![r(4, 1, 1), r(2, 1, 1), r(0, 1, 1)]);
        assert_eq!(runs(&[0, 3, 6, 9, 10]), vec![r(0, 4, 3), r(10, 1, 1)]);
        assert_eq!(runs(&[]), vec![]);
    }

    #[test]
    fn shapes_and_refusals() {
        let a = Array::ones(&[2, 3, 4], Some(&[1, 2, 3])).unwrap();
        let b = Array::ones(&[4, 3, 5], Some(&[3, 2, 2])).unwrap();
        let t = tensordot(&a, &b, &[1, 2], &[1, 0]).unwrap();
        assert_eq!(t.shape(), &[2, 5]);
        assert_eq!(tensordot_n(&a, &b, 1).unwrap().shape(), &[2, 3, 3, 5]);
        assert_eq!(tensordot_n(&a, &b, 0).unwrap().shape(), &[2, 3, 4, 4, 3, 5]);
        for (e, want) in [
            (tensordot_n(&a, &b, 2), "shape-mismatch for sum"),
            (tensordot(&a, &b, &[1], &[0]), "shape-mismatch for sum"),
            (tensordot(&a, &b, &[1, 2], &[1]), "shape-mismatch for sum"),
            (tensordot(&a, &b, &[3], &[0]), "tuple index out of range"),
            (
                tensordot(&a, &b, &[0, 0], &[1, 1]),
                "duplicate axes are not allowed",
            ),
            (tensordot_n(&a, &b, -1), "must not be negative"),
        ] {
            assert!(e.unwrap_err().contains(want), "{want}");
        }
        assert_eq!(take(&a, &[2, 0, 0, 1], 2).unwrap().shape(), &[2, 3, 4]);
        assert_eq!(take(&a, &[], 1).unwrap().shape(), &[2, 0, 4]);
        assert!(take(&a, &[-4], 1).unwrap_err().contains("out of bounds"));
    }
}
