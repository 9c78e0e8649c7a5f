//! Printing a computed array: text like NumPy's `print`, or JSON.

use serde_json::{json, Value};

use super::data::{with_data, DType, Data};

/// Arrays with more elements than this print summarised (first and last 3 per axis), as NumPy
/// does past its default threshold of 1000.
const SUMMARY_THRESHOLD: usize = 1000;
const EDGE: usize = 3;

/// One element as NumPy's repr writes it: floats always with a point or an exponent.
fn element(x: f64, is_float: bool) -> String {
    if !is_float {
        return format!("{}", x as i64);
    }
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // 1.5e-07 as NumPy writes it (Rust writes 1.5e-7).
        let s = format!("{x:e}");
        let (m, e) = s.split_once('e').expect("exponent");
        let exp: i32 = e.parse().expect("exponent digits");
        return format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let s = format!("{x}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.")
    }
}

/// An element inside an array: as [`element`], but with at most 8 decimals (NumPy's default
/// print precision), trailing zeros dropped.
fn array_element(x: f64, is_float: bool) -> String {
    let full = element(x, is_float);
    if !is_float || full.contains('e') || !x.is_finite() {
        return full;
    }
    let short = format!("{x:.8}");
    let trimmed = short.trim_end_matches('0');
    if trimmed.len() < full.len() {
        trimmed.to_string()
    } else {
        full
    }
}

/// A bool as NumPy prints it: `True`/`False`; inside an array always 5 wide (` True`), as
/// NumPy's bool formatter pads `True` even when no `False` is shown.
fn bool_element(x: f64) -> &'static str {
    if x != 0.0 {
        "True"
    } else {
        "False"
    }
}

/// How [`text`] lays elements out: their common width, how one is written, which indices
/// of an axis of a given length are shown (`None`: the `...` of a summary).
type Layout<'a> = (
    usize,
    &'a dyn Fn(f64) -> String,
    &'a dyn Fn(usize) -> Vec<Option<usize>>,
);

/// The array as NumPy prints it (`print(a)`), right-aligned to a common width.
pub fn text(d: &Data) -> String {
    let is_float = d.dtype().is_float();
    let is_bool = d.dtype() == DType::Bool;
    let values = d.to_f64();
    if values.ndim() == 0 {
        if is_bool {
            return bool_element(values[[]]).to_string();
        }
        let s = element(values[[]], is_float);
        return s.strip_suffix('.').map(|m| format!("{m}.0")).unwrap_or(s);
    }
    let show = |x: f64| -> String {
        if is_bool {
            bool_element(x).to_string()
        } else {
            array_element(x, is_float)
        }
    };
    let summarise = values.len() > SUMMARY_THRESHOLD;
    let shape = values.shape().to_vec();
    let flat: Vec<f64> = values.iter().copied().collect();
    let shown = |len: usize| -> Vec<Option<usize>> {
        if summarise && len > 2 * EDGE {
            (0..EDGE)
                .map(Some)
                .chain(std::iter::once(None))
                .chain((len - EDGE..len).map(Some))
                .collect()
        } else {
            (0..len).map(Some).collect()
        }
    };
    let strides: Vec<usize> = (0..shape.len())
        .map(|k| shape[k + 1..].iter().product())
        .collect();
    let width = if is_bool {
        5
    } else {
        flat.iter().map(|&x| show(x).len()).max().unwrap_or(1)
    };
    fn go(
        axis: usize,
        base: usize,
        shape: &[usize],
        strides: &[usize],
        flat: &[f64],
        ctx: &Layout,
        out: &mut String,
    ) {
        let (width, show, shown) = ctx;
        out.push('[');
        let items = shown(shape[axis]);
        let last_axis = axis + 1 == shape.len();
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                if last_axis {
                    out.push(' ');
                } else {
                    out.push_str(&"\n".repeat(shape.len() - axis - 1));
                    out.push_str(&" ".repeat(axis + 1));
                }
            }
            match item {
                None => out.push_str("..."),
                Some(i) if last_axis => {
                    let s = show(flat[base + i * strides[axis]]);
                    out.push_str(&format!("{s:>width$}", width = *width));
                }
                Some(i) => go(
                    axis + 1,
                    base + i * strides[axis],
                    shape,
                    strides,
                    flat,
                    ctx,
                    out,
                ),
            }
        }
        out.push(']');
    }
    let mut out = String::new();
    go(
        0,
        0,
        &shape,
        &strides,
        &flat,
        &(width, &show, &shown),
        &mut out,
    );
    out
}

/// A float element in JSON. JSON has no infinities or NaN (serde_json writes `null` for all
/// three, losing which it was), so they become the strings `"inf"`, `"-inf"` and `"nan"`, as
/// NumPy prints them; finite values stay numbers.
fn json_float<F: Into<f64> + Copy>(x: F) -> Value {
    let x: f64 = x.into();
    if x.is_nan() {
        json!("nan")
    } else if x.is_infinite() {
        json!(if x > 0.0 { "inf" } else { "-inf" })
    } else {
        json!(x)
    }
}

/// `{"shape": [...], "dtype": "float64", "data": nested lists or a number}` (bools as
/// `true`/`false`); see
/// [`json_float`] for infinities and NaN.
pub fn json(d: &Data) -> Value {
    fn nest(shape: &[usize], values: &mut dyn Iterator<Item = Value>) -> Value {
        match shape.split_first() {
            None => values.next().unwrap_or(Value::Null),
            Some((&n, rest)) => Value::Array((0..n).map(|_| nest(rest, values)).collect()),
        }
    }
    let shape = d.shape().to_vec();
    let values: Vec<Value> = match d {
        Data::F64(a) => a.iter().map(|&x| json_float(x)).collect(),
        Data::F32(a) => a.iter().map(|&x| json_float(x)).collect(),
        // JSON's own booleans, as `json.dumps(a.tolist())` writes a NumPy bool array.
        Data::Bool(a) => a.iter().map(|&x| json!(x != 0)).collect(),
        _ => with_data!(d, a => a.iter().map(|x| json!(x)).collect()),
    };
    let mut values = values.into_iter();
    json!({
        "shape": shape,
        "dtype": d.dtype().name(),
        "data": nest(&shape, &mut values),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn prints_like_numpy() {
        let a = Data::F64(
            ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, 2.5, -3.0, 0.0, 1e-7, 10.0]).unwrap(),
        );
        assert_eq!(text(&a), "[[   1.   2.5   -3.]\n [   0. 1e-07   10.]]");
        assert_eq!(text(&Data::F64(ArrayD::from_elem(IxDyn(&[]), 3.0))), "3.0");
        let third = Data::F64(ArrayD::from_elem(IxDyn(&[2]), 1.0 / 3.0));
        assert_eq!(text(&third), "[0.33333333 0.33333333]");
        let i = Data::I64(ArrayD::from_shape_vec(IxDyn(&[3]), vec![1, 20, 3]).unwrap());
        assert_eq!(text(&i), "[ 1 20  3]");
        let big = Data::I64(ArrayD::from_shape_fn(IxDyn(&[2000]), |i| i[0] as i64));
        assert_eq!(text(&big), "[   0    1    2 ... 1997 1998 1999]");
        assert_eq!(
            json(&i),
            json!({"shape": [3], "dtype": "int64", "data": [1, 20, 3]})
        );
    }

    /// NumPy: `print(np.array(True))` is `True`; `print(np.array([[True, False], [True,
    /// True]]))` is `[[ True False]\n [ True  True]]` (always 5 wide).
    #[test]
    fn bools_print_as_numpy_prints_them() {
        let b = |shape: &[usize], v: Vec<bool>| {
            let v = v.into_iter().map(u8::from).collect();
            Data::Bool(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
        };
        assert_eq!(text(&b(&[], vec![true])), "True");
        assert_eq!(text(&b(&[], vec![false])), "False");
        let m = b(&[2, 2], vec![true, false, true, true]);
        assert_eq!(text(&m), "[[ True False]\n [ True  True]]");
        assert_eq!(text(&b(&[2], vec![true, true])), "[ True  True]");
        let long = b(&[2000], vec![false; 2000]);
        assert_eq!(text(&long), "[False False False ... False False False]");
        assert_eq!(json(&m)["data"], json!([[true, false], [true, true]]));
    }

    #[test]
    fn json_tells_infinities_and_nan_apart() {
        let v = vec![f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1.5];
        let a = Data::F64(ArrayD::from_shape_vec(IxDyn(&[4]), v.clone()).unwrap());
        let want = json!(["inf", "-inf", "nan", 1.5]);
        assert_eq!(json(&a)["data"], want);
        let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        let a32 = Data::F32(ArrayD::from_shape_vec(IxDyn(&[4]), v32).unwrap());
        assert_eq!(json(&a32)["data"], want);
        let nan = Data::F64(ArrayD::from_elem(IxDyn(&[]), f64::NAN));
        assert_eq!(json(&nan)["data"], json!("nan"));
    }
}
