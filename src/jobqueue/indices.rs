//! Array index lists as batch systems print them: SLURM's compressed pending elements
//! (`123_[5-63]`, `123_[0-1,3%4]`) and Grid Engine's task ranges (`9-12:1`, `1,2`).
//!
//! Why a file of its own: a status command shows many pending elements of an array on one
//! line; each system's parser expands them here into the single indices the ledger knows,
//! with one rule for ranges, steps and throttles.

/// The most indices one list may expand to: no real array is larger (SLURM's MaxArraySize
/// tops out at 4,000,001), and a damaged line must not allocate without bound.
const MAX_INDICES: u64 = 4_000_001;

/// Expands an index list: comma-separated items, each `N`, `A-B` or `A-B:STEP`, optionally
/// followed by a `%LIMIT` throttle (ignored: it says how many run at once, not which exist).
/// None when any part is not of that form.
pub fn expand(list: &str) -> Option<Vec<u64>> {
    let list = match list.split_once('%') {
        Some((l, limit)) if limit.bytes().all(|b| b.is_ascii_digit()) && !limit.is_empty() => l,
        Some(_) => return None,
        None => list,
    };
    let mut out = Vec::new();
    for item in list.split(',') {
        let (range, step) = match item.split_once(':') {
            Some((r, s)) => (r, number(s)?),
            None => (item, 1),
        };
        let (a, b) = match range.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let n = number(range)?;
                (n, n)
            }
        };
        if step == 0 || b < a || (out.len() as u64).saturating_add((b - a) / step) >= MAX_INDICES {
            return None;
        }
        out.extend((a..=b).step_by(usize::try_from(step).ok()?));
    }
    Some(out)
}

fn number(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// SLURM's spelling of array elements in squeue's `%i`: `123_4`, or pending elements
/// compressed as `123_[4-6,9%2]`. The element ids, or None when `id` names no elements (a
/// plain job `123`, or something unreadable).
pub fn slurm_elements(id: &str) -> Option<Vec<String>> {
    let (job, rest) = id.split_once('_')?;
    number(job)?;
    let list = match rest.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None => {
            number(rest)?;
            rest
        }
    };
    Some(
        expand(list)?
            .into_iter()
            .map(|i| format!("{job}_{i}"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lists_ranges_steps_and_throttles_expand() {
        assert_eq!(expand("4"), Some(vec![4]));
        assert_eq!(expand("0-1,3"), Some(vec![0, 1, 3]));
        assert_eq!(expand("9-12:1"), Some(vec![9, 10, 11, 12]));
        assert_eq!(expand("1-7:3"), Some(vec![1, 4, 7]));
        assert_eq!(expand("1,2"), Some(vec![1, 2]));
        assert_eq!(expand("5-63%4").map(|v| v.len()), Some(59));
        for bad in [
            "",
            "x",
            "1-",
            "-1",
            "3-1",
            "1-4:0",
            "1%",
            "1%x",
            "1,,2",
            "0-99999999",
        ] {
            assert_eq!(expand(bad), None, "{bad}");
        }
    }

    /// As squeue printed them here (SLURM 22.05, tests/env): started elements one per line,
    /// pending ones compressed.
    #[test]
    fn slurm_spells_elements_singly_or_compressed() {
        assert_eq!(slurm_elements("825_0"), Some(vec!["825_0".to_string()]));
        assert_eq!(
            slurm_elements("826_[0-1,3]"),
            Some(vec!["826_0".into(), "826_1".into(), "826_3".into()])
        );
        assert_eq!(
            slurm_elements("826_[4-5%2]"),
            Some(vec!["826_4".into(), "826_5".into()])
        );
        for none in [
            "826",
            "826_",
            "826_[",
            "826_[1-2",
            "x_1",
            "826_1.batch",
            "826+1",
        ] {
            assert_eq!(slurm_elements(none), None, "{none}");
        }
    }

    proptest! {
        /// Any set of indices, written as SLURM compresses it, expands back to itself.
        #[test]
        fn compressed_sets_expand_to_themselves(set in prop::collection::btree_set(0u64..200, 1..40)) {
            let v: Vec<u64> = set.into_iter().collect();
            let mut items = Vec::new();
            let mut i = 0;
            while i < v.len() {
                let mut j = i;
                while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
                    j += 1;
                }
                items.push(if i == j { v[i].to_string() } else { format!("{}-{}", v[i], v[j]) });
                i = j + 1;
            }
            let id = format!("77_[{}]", items.join(","));
            let want: Vec<String> = v.iter().map(|k| format!("77_{k}")).collect();
            prop_assert_eq!(slurm_elements(&id), Some(want));
        }
    }
}
