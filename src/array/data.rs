//! The values inside one chunk: a dtype-tagged n-d array, NumPy's promotion rules, and the
//! chunk's wire form.
//!
//! Everything here runs on workers, inside kernels. A chunk travels between workers as a
//! [`Data`] encoded by [`Data::encode`]: a 16-byte header (magic, dtype, ndim), the shape as
//! little-endian u64s, then the elements in C order — raw bytes, so a transfer never
//! re-encodes element by element.

use bytes::Bytes;
use ndarray::{ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

/// The element types an array can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    F64,
    F32,
    I64,
    I32,
    /// NumPy's `bool`. Held as one byte per element, 0 or 1 (see [`Data::Bool`]).
    Bool,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::Bool => "bool",
        }
    }

    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::Bool => 1,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32)
    }

    /// Integers and bool: the types bitwise operators (`& | ^ ~`) take.
    pub fn is_integral(self) -> bool {
        !self.is_float()
    }

    /// All the dtypes, for messages and tests.
    pub const ALL: [DType; 5] = [DType::F64, DType::F32, DType::I64, DType::I32, DType::Bool];

    /// Parses NumPy's names and codes: float64/f8/f64/double, float32/f4/f32, int64/i8/i64,
    /// int32/i4/i32, bool/?/b1.
    pub fn parse(s: &str) -> Option<DType> {
        Some(match s.trim_start_matches(['<', '=']) {
            "float64" | "f8" | "f64" | "double" | "float" => DType::F64,
            "float32" | "f4" | "f32" | "single" => DType::F32,
            "int64" | "i8" | "i64" | "int" => DType::I64,
            "int32" | "i4" | "i32" => DType::I32,
            "bool" | "bool_" | "?" | "b1" => DType::Bool,
            _ => return None,
        })
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(c: u8) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.code() == c)
    }

    /// NumPy's result type of two arrays: the smallest type that holds both
    /// (int32 with float32 gives float64, as NumPy does).
    pub fn promote(a: DType, b: DType) -> DType {
        use DType::*;
        match (a, b) {
            (x, y) if x == y => x,
            // bool is below every number: it takes the other operand's type.
            (Bool, x) | (x, Bool) => x,
            (F64, _) | (_, F64) => F64,
            (F32, I32 | I64) | (I32 | I64, F32) => F64,
            (I64, _) | (_, I64) => I64,
            _ => unreachable!("all pairs covered"),
        }
    }

    /// The type of an array combined with a Python scalar, by NumPy 2's rules (NEP 50: a
    /// Python number is "weak", it never widens the array's type): an int scalar keeps the
    /// array's type; a float scalar keeps a float array's type and turns an int array into
    /// float64. An int that does not fit the array's integer type is refused as NumPy 2
    /// refuses it (OverflowError) rather than wrapped.
    pub fn with_scalar(array: DType, scalar: &Scalar) -> Result<DType, String> {
        match scalar {
            // A bool array meets a number of a higher kind: NumPy's default int or float.
            Scalar::Int(_) if array == DType::Bool => Ok(DType::I64),
            Scalar::Float(_) if array == DType::Bool => Ok(DType::F64),
            Scalar::Int(i) => {
                array.check_fits(*i)?;
                Ok(array)
            }
            Scalar::Float(_) if array.is_float() => Ok(array),
            Scalar::Float(_) => Ok(DType::F64),
        }
    }

    /// Refuses a Python int that an array of this type cannot hold, with NumPy 2's message.
    pub fn check_fits(self, value: i64) -> Result<(), String> {
        if self == DType::I32 && i32::try_from(value).is_err() {
            return Err(format!(
                "Python integer {value} out of bounds for {self} (NumPy 2 refuses it rather \
                 than wrap; cast first, e.g. x.astype('int64'), or write {value}.0 for a float)"
            ));
        }
        Ok(())
    }

    /// The type of a float-valued function (sqrt, exp, mean...) of this type.
    pub fn float_of(self) -> DType {
        if self == DType::F32 {
            DType::F32
        } else {
            DType::F64
        }
    }

    /// The type NumPy's `sum` gives: ints (and bools) widen to int64.
    pub fn sum_of(self) -> DType {
        match self {
            DType::I32 | DType::I64 | DType::Bool => DType::I64,
            f => f,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A Python number in an expression: it takes the type of the array it meets.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Scalar {
    Int(i64),
    Float(f64),
}

impl Scalar {
    pub fn as_f64(self) -> f64 {
        match self {
            Scalar::Int(i) => i as f64,
            Scalar::Float(f) => f,
        }
    }
}

/// One chunk's values.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F64(ArrayD<f64>),
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
    I32(ArrayD<i32>),
    /// NumPy's bool, one byte per element, always 0 or 1: a byte rather than Rust's `bool`
    /// so that the generic kernels (which need arithmetic on their element type) run on it
    /// unchanged; the planner maps `+`/`*` on bools to `|`/`&`, so no 2 ever appears.
    Bool(ArrayD<u8>),
}

/// Runs `$body` with `$a` bound to the inner array, whatever the dtype, and wraps an array
/// result back into the same variant.
macro_rules! map_data {
    ($d:expr, $a:ident => $body:expr) => {
        match $d {
            Data::F64($a) => Data::F64($body),
            Data::F32($a) => Data::F32($body),
            Data::I64($a) => Data::I64($body),
            Data::I32($a) => Data::I32($body),
            Data::Bool($a) => Data::Bool($body),
        }
    };
}

/// Runs `$body` with `$a` bound to the inner array; the body's value is returned as is.
macro_rules! with_data {
    ($d:expr, $a:ident => $body:expr) => {
        match $d {
            Data::F64($a) => $body,
            Data::F32($a) => $body,
            Data::I64($a) => $body,
            Data::I32($a) => $body,
            Data::Bool($a) => $body,
        }
    };
}

pub(crate) use map_data;
pub(crate) use with_data;

const MAGIC: &[u8; 4] = b"RDA1";
const HEADER: usize = 16;

impl Data {
    pub fn dtype(&self) -> DType {
        match self {
            Data::F64(_) => DType::F64,
            Data::F32(_) => DType::F32,
            Data::I64(_) => DType::I64,
            Data::I32(_) => DType::I32,
            Data::Bool(_) => DType::Bool,
        }
    }

    pub fn shape(&self) -> &[usize] {
        with_data!(self, a => a.shape())
    }

    pub fn len(&self) -> usize {
        with_data!(self, a => a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A 0-d array holding a scalar of the given type.
    pub fn scalar(value: Scalar, dtype: DType) -> Data {
        Data::full(&[], value, dtype)
    }

    /// An array of `shape` filled with `value` converted to `dtype`.
    pub fn full(shape: &[usize], value: Scalar, dtype: DType) -> Data {
        let dim = IxDyn(shape);
        match (dtype, value) {
            (DType::F64, v) => Data::F64(ArrayD::from_elem(dim, v.as_f64())),
            (DType::F32, v) => Data::F32(ArrayD::from_elem(dim, v.as_f64() as f32)),
            (DType::I64, Scalar::Int(i)) => Data::I64(ArrayD::from_elem(dim, i)),
            (DType::I64, Scalar::Float(f)) => Data::I64(ArrayD::from_elem(dim, f as i64)),
            (DType::I32, Scalar::Int(i)) => Data::I32(ArrayD::from_elem(dim, i as i32)),
            (DType::I32, Scalar::Float(f)) => Data::I32(ArrayD::from_elem(dim, f as i32)),
            (DType::Bool, v) => Data::Bool(ArrayD::from_elem(dim, u8::from(v.as_f64() != 0.0))),
        }
    }

    /// Converts to another dtype as NumPy's `astype` does (floats to ints truncate).
    // The macro expands each `as` for every source type, one of which is the same type.
    #[allow(clippy::unnecessary_cast)]
    pub fn cast(self, to: DType) -> Data {
        if self.dtype() == to {
            return self;
        }
        match to {
            DType::F64 => Data::F64(with_data!(self, a => a.mapv(|x| x as f64))),
            DType::F32 => Data::F32(with_data!(self, a => a.mapv(|x| x as f32))),
            DType::I64 => Data::I64(with_data!(self, a => a.mapv(|x| x as i64))),
            DType::I32 => Data::I32(with_data!(self, a => a.mapv(|x| x as i32))),
            // Non-zero is True, NaN included (as NumPy).
            DType::Bool => Data::Bool(with_data!(self, a => a.mapv(nonzero))),
        }
    }

    /// The values as f64 (for printing and for tests).
    pub fn to_f64(&self) -> ArrayD<f64> {
        self.clone().into_f64()
    }

    /// The values as f64, without a copy when they already are.
    pub fn into_f64(self) -> ArrayD<f64> {
        match self.cast(DType::F64) {
            Data::F64(a) => a,
            _ => unreachable!("cast to f64"),
        }
    }

    pub fn into_shape(self, shape: &[usize]) -> Result<Data, String> {
        let shape = IxDyn(shape);
        Ok(map_data!(self, a => {
            let a = if a.is_standard_layout() { a } else { a.as_standard_layout().into_owned() };
            a.into_shape_with_order(shape.clone()).map_err(|e| format!("reshape: {e}"))?
        }))
    }

    pub fn permuted(self, perm: &[usize]) -> Data {
        map_data!(self, a => a.permuted_axes(IxDyn(perm)))
    }

    /// The serialised chunk: header, shape, then the elements in C order, little-endian.
    pub fn encode(&self) -> Bytes {
        let shape = self.shape();
        let body = self.len() * self.dtype().size();
        let mut out = Vec::with_capacity(HEADER + 8 * shape.len() + body);
        out.extend_from_slice(MAGIC);
        out.push(self.dtype().code());
        out.push(shape.len() as u8);
        out.resize(HEADER, 0);
        for s in shape {
            out.extend_from_slice(&(*s as u64).to_le_bytes());
        }
        with_data!(self, a => {
            match a.as_slice() {
                Some(s) => out.extend(s.iter().flat_map(|x| x.to_le_bytes())),
                None => out.extend(a.iter().flat_map(|x| x.to_le_bytes())),
            }
        });
        Bytes::from(out)
    }

    /// Reads a chunk written by [`Data::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Data, String> {
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return Err(format!(
                "not an array chunk ({} bytes without the chunk header)",
                bytes.len()
            ));
        }
        let dtype = DType::from_code(bytes[4])
            .ok_or_else(|| format!("unknown dtype code {} in a chunk", bytes[4]))?;
        let ndim = bytes[5] as usize;
        let body_at = HEADER + 8 * ndim;
        let shape: Vec<usize> = bytes
            .get(HEADER..body_at)
            .ok_or("truncated chunk shape")?
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .collect();
        let n: usize = shape.iter().product();
        let body = &bytes[body_at..];
        if body.len() != n * dtype.size() {
            return Err(format!(
                "chunk of shape {shape:?} {dtype} needs {} bytes, has {}",
                n * dtype.size(),
                body.len()
            ));
        }
        fn vec<T, const N: usize>(body: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
            body.chunks_exact(N)
                .map(|b| f(b.try_into().expect("element size")))
                .collect()
        }
        let dim = IxDyn(&shape);
        let wrap = |e: ndarray::ShapeError| e.to_string();
        Ok(match dtype {
            DType::F64 => {
                Data::F64(ArrayD::from_shape_vec(dim, vec(body, f64::from_le_bytes)).map_err(wrap)?)
            }
            DType::F32 => {
                Data::F32(ArrayD::from_shape_vec(dim, vec(body, f32::from_le_bytes)).map_err(wrap)?)
            }
            DType::I64 => {
                Data::I64(ArrayD::from_shape_vec(dim, vec(body, i64::from_le_bytes)).map_err(wrap)?)
            }
            DType::I32 => {
                Data::I32(ArrayD::from_shape_vec(dim, vec(body, i32::from_le_bytes)).map_err(wrap)?)
            }
            DType::Bool => {
                let bytes = vec(body, |[b]: [u8; 1]| b);
                if bytes.iter().any(|&b| b > 1) {
                    return Err("bool chunk holds a byte other than 0 or 1".into());
                }
                Data::Bool(ArrayD::from_shape_vec(dim, bytes).map_err(wrap)?)
            }
        })
    }
}

/// NumPy's truth value of a number: anything but zero (NaN included) is True.
fn nonzero<T: Default + PartialEq>(x: T) -> u8 {
    u8::from(x != T::default())
}

/// NumPy's broadcast of two shapes, or None when they do not broadcast.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let at = |s: &[usize], i: usize| {
        let pad = n - s.len();
        if i < pad {
            1
        } else {
            s[i - pad]
        }
    };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Sums `a` over `axes`, keeping them as size-1 axes.
pub fn sum_axes<T: ndarray::LinalgScalar>(a: &ArrayD<T>, axes: &[usize]) -> ArrayD<T> {
    let Some((&first, rest)) = axes.split_first() else {
        return a.clone();
    };
    let mut out = a.sum_axis(Axis(first)).insert_axis(Axis(first));
    for &ax in rest {
        out = out.sum_axis(Axis(ax)).insert_axis(Axis(ax));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_follows_numpy() {
        use DType::*;
        assert_eq!(DType::promote(I32, F32), F64);
        assert_eq!(DType::promote(I32, I64), I64);
        assert_eq!(DType::promote(F32, F32), F32);
        assert_eq!(DType::promote(F32, F64), F64);
        assert_eq!(DType::with_scalar(I32, &Scalar::Int(2)), Ok(I32));
        assert_eq!(DType::with_scalar(I32, &Scalar::Float(2.0)), Ok(F64));
        assert_eq!(DType::with_scalar(F32, &Scalar::Float(2.0)), Ok(F32));
        assert_eq!(I32.sum_of(), I64);
        assert_eq!(I64.float_of(), F64);
    }

    /// NEP 50 ("Promotion rules for Python scalars", adopted by NumPy 2.0): Python numbers
    /// are weak, so they never change an array's type, and an int that does not fit the
    /// array's type raises OverflowError ("Python integer 2147483648 out of bounds for
    /// int32") instead of the value-based widening of NumPy 1.x or a silent wrap.
    #[test]
    fn python_scalars_follow_nep_50() {
        use DType::*;
        // Python int with float32 stays float32 (NumPy 1.x agreed); float with ints is float64.
        assert_eq!(DType::with_scalar(F32, &Scalar::Int(3)), Ok(F32));
        assert_eq!(DType::with_scalar(F32, &Scalar::Int(i64::MAX)), Ok(F32));
        assert_eq!(DType::with_scalar(I64, &Scalar::Float(0.5)), Ok(F64));
        assert_eq!(DType::with_scalar(I32, &Scalar::Float(1e300)), Ok(F64));
        // The int32 bounds are accepted; one past them is refused, not wrapped or widened.
        assert_eq!(DType::with_scalar(I32, &Scalar::Int(2147483647)), Ok(I32));
        assert_eq!(DType::with_scalar(I32, &Scalar::Int(-2147483648)), Ok(I32));
        for v in [2147483648, -2147483649, i64::MAX] {
            let e = DType::with_scalar(I32, &Scalar::Int(v)).unwrap_err();
            assert!(
                e.contains(&format!("Python integer {v} out of bounds for int32")),
                "{e}"
            );
        }
        assert_eq!(DType::with_scalar(I64, &Scalar::Int(i64::MIN)), Ok(I64));
    }

    #[test]
    fn chunks_round_trip_every_dtype() {
        let a = ArrayD::from_shape_fn(IxDyn(&[3, 2]), |i| (i[0] * 2 + i[1]) as f64 - 1.5);
        for d in DType::ALL {
            let data = Data::F64(a.clone()).cast(d);
            assert_eq!(Data::decode(&data.encode()).unwrap(), data);
        }
        // A transposed (non-contiguous) array encodes in C order of its logical shape.
        let t = Data::F64(a.clone()).permuted(&[1, 0]);
        let back = Data::decode(&t.encode()).unwrap();
        assert_eq!(back.shape(), &[2, 3]);
        assert_eq!(back, t);
        assert!(Data::decode(b"nonsense").is_err());
        let mut short = Data::F64(a).encode().to_vec();
        short.pop();
        assert!(Data::decode(&short).unwrap_err().contains("needs"));
    }

    #[test]
    fn shapes_broadcast_as_numpy() {
        assert_eq!(broadcast_shapes(&[4, 3], &[3]), Some(vec![4, 3]));
        assert_eq!(broadcast_shapes(&[4, 1], &[1, 5]), Some(vec![4, 5]));
        assert_eq!(broadcast_shapes(&[], &[2, 2]), Some(vec![2, 2]));
        assert_eq!(broadcast_shapes(&[4, 3], &[4]), None);
    }
}
