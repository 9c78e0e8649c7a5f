//! What one array task computes: a small expression over its inputs, evaluated on a worker.
//!
//! The planner ([`super::plan`]) fuses every elementwise step, transpose, slice and read that
//! feeds one output chunk into a single [`Block`], so a chain like `((x + x.T) - m) * 2` is one
//! task per chunk that reads its pieces of `x` straight from the file, never a task per step
//! with intermediate chunks held in memory. All type decisions are made by the planner: a
//! `Binary` always meets operands of one dtype (the planner inserts `Cast`s), so evaluation
//! here is mechanical.

use ndarray::{ArrayD, Axis, IxDyn, Slice, Zip};
use serde::{Deserialize, Serialize};

use super::data::{broadcast_shapes, map_data, sum_axes, with_data, DType, Data, Scalar};

/// A strided range along one axis: `len` elements from `start`, `step` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dim {
    pub start: u64,
    pub len: u64,
    pub step: u64,
}

impl Dim {
    pub fn full(len: u64) -> Dim {
        Dim {
            start: 0,
            len,
            step: 1,
        }
    }

    pub fn range(start: u64, len: u64) -> Dim {
        Dim {
            start,
            len,
            step: 1,
        }
    }

    /// This range taken inside `outer` (whose elements are the coordinates this one indexes).
    pub fn within(self, outer: Dim) -> Dim {
        Dim {
            start: outer.start + outer.step * self.start,
            len: self.len,
            step: outer.step * self.step,
        }
    }

    /// The last coordinate covered (inclusive); None for an empty range.
    pub fn last(self) -> Option<u64> {
        (self.len > 0).then(|| self.start + (self.len - 1) * self.step)
    }
}

pub fn dims_shape(dims: &[Dim]) -> Vec<usize> {
    dims.iter().map(|d| d.len as usize).collect()
}

/// Element generators: each value depends only on its global position, so a generated array
/// is the same whatever its chunking and whichever worker computes a chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Generator {
    Fill(Scalar),
    /// 1-d: `start + i * step`.
    Arange {
        start: f64,
        step: f64,
    },
    /// Uniform in [0, 1): a hash of the seed and the element's flat index in `full`.
    Random {
        seed: u64,
        full: Vec<u64>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnaryOp {
    Neg,
    Abs,
    Sqrt,
    Exp,
    Log,
    Sin,
    Cos,
    Tanh,
    Arcsin,
    Arccos,
    Arctan,
    Log10,
    Log1p,
    Expm1,
    /// -1, 0 or 1 (NaN stays NaN); keeps the type.
    Sign,
    /// Keep the type; the identity on integers.
    Floor,
    Ceil,
    /// To this many decimals, halves to even (NumPy's `round`); integers only with >= 0.
    Round(i32),
    /// `~`: bitwise not of integers, logical not of bools.
    Invert,
    /// These two give bools.
    IsNan,
    IsFinite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    /// `//` and `%`, with Python's (and NumPy's) floor semantics: the remainder takes the
    /// divisor's sign; an integer division by zero gives 0, as NumPy gives.
    FloorDiv,
    Mod,
    /// `& | ^` on integers and bools (the planner refuses floats, as NumPy does).
    BitAnd,
    BitOr,
    BitXor,
    /// NumPy's `minimum`/`maximum`: a NaN on either side wins.
    Minimum,
    Maximum,
}

/// The comparison operators; their result is bool whatever the operands' type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// Python's result for ordered values; every comparison with a NaN is false but `!=`.
    pub fn holds<T: PartialOrd>(self, x: &T, y: &T) -> bool {
        match self {
            CmpOp::Eq => x == y,
            CmpOp::Ne => x != y,
            CmpOp::Lt => x < y,
            CmpOp::Le => x <= y,
            CmpOp::Gt => x > y,
            CmpOp::Ge => x >= y,
        }
    }
}

/// An HDF5 hyperslab to read on the worker that runs the task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Read {
    pub file: String,
    pub dataset: String,
    pub dims: Vec<Dim>,
    pub dtype: DType,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Block {
    /// The task's `index`-th input, a chunk computed by another task.
    Input(u32),
    Read(Read),
    Generate {
        generator: Generator,
        dtype: DType,
        dims: Vec<Dim>,
    },
    Scalar(Scalar, DType),
    Cast(Box<Block>, DType),
    Unary(UnaryOp, Box<Block>),
    Binary(BinOp, Box<Block>, Box<Block>),
    /// Operands of one dtype (the planner casts), a bool result.
    Compare(CmpOp, Box<Block>, Box<Block>),
    /// `where(c, a, b)`: `c` bool, `a` and `b` of one dtype, all three broadcast.
    Where(Box<Block>, Box<Block>, Box<Block>),
    /// The running `op` (Add: cumsum, Mul: cumprod) along an axis of one chunk.
    Scan(BinOp, usize, Box<Block>),
    /// The median (None) or a percentile (0 to 100) along an axis the chunk holds whole; the
    /// axis is dropped; the result in `DType` (float64, or float32 for float32 input).
    Quantile(Option<f64>, usize, DType, Box<Block>),
    Transpose(Box<Block>, Vec<usize>),
    Slice(Box<Block>, Vec<Dim>),
    Reshape(Box<Block>, Vec<usize>),
    /// The listed axes reversed.
    Flip(Box<Block>, Vec<usize>),
    Matmul(Box<Block>, Box<Block>),
    /// An output of `shape` put together from parts placed at their offsets.
    Assemble {
        shape: Vec<usize>,
        dtype: DType,
        parts: Vec<(Vec<usize>, Block)>,
    },
}

/// Where reads go: the worker passes its HDF5 reader, tests can pass their own.
pub trait Reader {
    fn read(&self, read: &Read) -> Result<Data, String>;
}

impl Block {
    pub fn evaluate(&self, inputs: &[Data], reader: &dyn Reader) -> Result<Data, String> {
        Ok(match self {
            Block::Input(i) => inputs
                .get(*i as usize)
                .cloned()
                .ok_or_else(|| format!("block refers to input {i} of {}", inputs.len()))?,
            Block::Read(r) => {
                let data = reader.read(r)?;
                if data.dtype() != r.dtype {
                    data.cast(r.dtype)
                } else {
                    data
                }
            }
            Block::Generate {
                generator,
                dtype,
                dims,
            } => generate(generator, *dtype, dims)?,
            Block::Scalar(s, d) => Data::scalar(*s, *d),
            Block::Cast(b, d) => b.evaluate(inputs, reader)?.cast(*d),
            Block::Unary(op, b) => unary(*op, b.evaluate(inputs, reader)?)?,
            // `x * x`, `(x - m) * (x - m)`: the operand is read and computed once.
            Block::Binary(op, a, b) if a == b => self_binary(*op, a.evaluate(inputs, reader)?)?,
            Block::Binary(op, a, b) => binary(
                *op,
                a.evaluate(inputs, reader)?,
                b.evaluate(inputs, reader)?,
            )?,
            Block::Compare(op, a, b) => compare(
                *op,
                a.evaluate(inputs, reader)?,
                b.evaluate(inputs, reader)?,
            )?,
            Block::Where(c, a, b) => select(
                c.evaluate(inputs, reader)?,
                a.evaluate(inputs, reader)?,
                b.evaluate(inputs, reader)?,
            )?,
            Block::Scan(op, axis, b) => scan(*op, *axis, b.evaluate(inputs, reader)?)?,
            Block::Quantile(q, axis, dtype, b) => {
                let d = b.evaluate(inputs, reader)?;
                if *axis >= d.shape().len() {
                    return Err(format!(
                        "quantile along axis {axis} of a chunk of shape {:?}",
                        d.shape()
                    ));
                }
                let x = d.into_f64();
                let out = x.map_axis(Axis(*axis), |lane| {
                    let mut v: Vec<f64> = lane.iter().copied().collect();
                    quantile(&mut v, *q)
                });
                Data::F64(out).cast(*dtype)
            }
            Block::Transpose(b, perm) => {
                let d = b.evaluate(inputs, reader)?;
                if perm.len() != d.shape().len() {
                    return Err(format!(
                        "transpose of {} axes applied to a chunk of shape {:?}",
                        perm.len(),
                        d.shape()
                    ));
                }
                d.permuted(perm)
            }
            Block::Slice(b, dims) => slice(b.evaluate(inputs, reader)?, dims)?,
            Block::Reshape(b, shape) => b.evaluate(inputs, reader)?.into_shape(shape)?,
            Block::Flip(b, axes) => {
                let d = b.evaluate(inputs, reader)?;
                if axes.iter().any(|&a| a >= d.shape().len()) {
                    return Err(format!(
                        "flip of axes {axes:?} of a chunk of shape {:?}",
                        d.shape()
                    ));
                }
                map_data!(d, a => {
                    let mut a = a;
                    for &ax in axes {
                        a.invert_axis(Axis(ax));
                    }
                    a
                })
            }
            Block::Matmul(a, b) => {
                matmul(a.evaluate(inputs, reader)?, b.evaluate(inputs, reader)?)?
            }
            Block::Assemble {
                shape,
                dtype,
                parts,
            } => {
                let mut out = Data::full(shape, Scalar::Int(0), *dtype);
                for (offset, part) in parts {
                    let p = part.evaluate(inputs, reader)?.cast(*dtype);
                    place(&mut out, offset, p)?;
                }
                out
            }
        })
    }
}

fn place(out: &mut Data, offset: &[usize], part: Data) -> Result<(), String> {
    let shape = part.shape().to_vec();
    if offset.len() != shape.len() || out.shape().len() != shape.len() {
        return Err("assemble: part and output ranks differ".into());
    }
    macro_rules! put {
        ($o:expr, $p:expr) => {{
            let mut view = $o.view_mut();
            for (ax, (&at, &len)) in offset.iter().zip(&shape).enumerate() {
                view.slice_axis_inplace(Axis(ax), Slice::from(at..at + len));
            }
            view.assign(&$p);
        }};
    }
    match (out, part) {
        (Data::F64(o), Data::F64(p)) => put!(o, p),
        (Data::F32(o), Data::F32(p)) => put!(o, p),
        (Data::I64(o), Data::I64(p)) => put!(o, p),
        (Data::I32(o), Data::I32(p)) => put!(o, p),
        (Data::Bool(o), Data::Bool(p)) => put!(o, p),
        _ => return Err("assemble: part of another dtype".into()),
    }
    Ok(())
}

fn slice(d: Data, dims: &[Dim]) -> Result<Data, String> {
    if dims.len() != d.shape().len() {
        return Err(format!(
            "slice of {} axes applied to a chunk of shape {:?}",
            dims.len(),
            d.shape()
        ));
    }
    for (dim, &n) in dims.iter().zip(d.shape()) {
        if dim.last().is_some_and(|l| l >= n as u64) {
            return Err(format!("slice {dim:?} outside an axis of length {n}"));
        }
    }
    Ok(map_data!(d, a => {
        let mut a = a;
        a.slice_each_axis_inplace(|ax| {
            let dim = dims[ax.axis.index()];
            let end = if dim.len == 0 { dim.start } else { dim.last().unwrap_or(0) + 1 };
            Slice::new(dim.start as isize, Some(end as isize), dim.step.max(1) as isize)
        });
        a
    }))
}

/// The element operations each dtype supports.
pub trait Elem: ndarray::LinalgScalar + PartialOrd + Send + Sync + std::fmt::Debug {
    const IS_FLOAT: bool;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    /// `self ** e`; integer exponents are checked non-negative before (see [`check_pow`]).
    fn pow(self, e: Self) -> Self;
    fn neg(self) -> Self;
    fn abs(self) -> Self;
    fn is_nan(self) -> bool;
    fn is_finite(self) -> bool;
    fn sign(self) -> Self;
    /// Python's `//` and `%` (see [`BinOp::FloorDiv`]).
    fn floor_div(self, d: Self) -> Self;
    fn floor_mod(self, d: Self) -> Self;
    /// `& | ^ ~`; never called on floats ([`broadcast_op`] and the planner refuse them).
    fn bit_and(self, o: Self) -> Self;
    fn bit_or(self, o: Self) -> Self;
    fn bit_xor(self, o: Self) -> Self;
    fn invert(self) -> Self;
    /// `self * o`, wrapping on integer overflow as NumPy does.
    fn mul_wrap(self, o: Self) -> Self;
    /// NumPy's `minimum`/`maximum`: a NaN on either side is the result.
    fn minimum(self, o: Self) -> Self {
        if self.is_nan() || o >= self {
            self
        } else {
            o
        }
    }
    fn maximum(self, o: Self) -> Self {
        if self.is_nan() || o <= self {
            self
        } else {
            o
        }
    }
}

/// NumPy's `divmod` of floats (npy_divmod in npymath): the quotient floored, the remainder
/// with the divisor's sign, and the quotient corrected when `(a - mod) / b` lands just off
/// an integer. By zero: `a / b` and NaN.
macro_rules! float_divmod {
    ($t:ty, $a:expr, $b:expr) => {{
        let (a, b): ($t, $t) = ($a, $b);
        let mut m = a % b;
        if b == 0.0 {
            (a / b, m)
        } else {
            let mut div = (a - m) / b;
            if m != 0.0 {
                if (b < 0.0) != (m < 0.0) {
                    m += b;
                    div -= 1.0;
                }
            } else {
                m = (0.0 as $t).copysign(b);
            }
            let q = if div != 0.0 {
                let f = div.floor();
                if div - f > 0.5 {
                    f + 1.0
                } else {
                    f
                }
            } else {
                (0.0 as $t).copysign(a / b)
            };
            (q, m)
        }
    }};
}

macro_rules! float_elem {
    ($t:ty) => {
        impl Elem for $t {
            const IS_FLOAT: bool = true;
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn pow(self, e: Self) -> Self {
                self.powf(e)
            }
            fn neg(self) -> Self {
                -self
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            fn sign(self) -> Self {
                if self > 0.0 {
                    1.0
                } else if self < 0.0 {
                    -1.0
                } else {
                    self // 0, -0 or NaN
                }
            }
            fn floor_div(self, d: Self) -> Self {
                float_divmod!($t, self, d).0
            }
            fn floor_mod(self, d: Self) -> Self {
                float_divmod!($t, self, d).1
            }
            fn bit_and(self, _: Self) -> Self {
                <$t>::NAN
            }
            fn bit_or(self, _: Self) -> Self {
                <$t>::NAN
            }
            fn bit_xor(self, _: Self) -> Self {
                <$t>::NAN
            }
            fn invert(self) -> Self {
                <$t>::NAN
            }
            fn mul_wrap(self, o: Self) -> Self {
                self * o
            }
        }
    };
}

macro_rules! int_elem {
    ($t:ty) => {
        impl Elem for $t {
            const IS_FLOAT: bool = false;
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn pow(self, e: Self) -> Self {
                self.wrapping_pow((e as i64).clamp(0, u32::MAX as i64) as u32)
            }
            fn neg(self) -> Self {
                self.wrapping_neg()
            }
            fn abs(self) -> Self {
                self.wrapping_abs()
            }
            fn is_nan(self) -> bool {
                false
            }
            fn is_finite(self) -> bool {
                true
            }
            fn sign(self) -> Self {
                self.signum()
            }
            fn floor_div(self, d: Self) -> Self {
                if d == 0 {
                    return 0;
                }
                // wrapping: MIN // -1 is MIN, as NumPy gives (with a warning).
                let q = self.wrapping_div(d);
                if self.wrapping_rem(d) != 0 && ((self < 0) != (d < 0)) {
                    q.wrapping_sub(1)
                } else {
                    q
                }
            }
            fn floor_mod(self, d: Self) -> Self {
                if d == 0 {
                    return 0;
                }
                let r = self.wrapping_rem(d);
                if r != 0 && ((r < 0) != (d < 0)) {
                    r + d
                } else {
                    r
                }
            }
            fn bit_and(self, o: Self) -> Self {
                self & o
            }
            fn bit_or(self, o: Self) -> Self {
                self | o
            }
            fn bit_xor(self, o: Self) -> Self {
                self ^ o
            }
            fn invert(self) -> Self {
                !self
            }
            fn mul_wrap(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
        }
    };
}

/// Bools (0 or 1 in a byte): the planner sends them only operations that keep them 0 or 1
/// (`& | ^ ~`, minimum, maximum, comparisons, casts).
impl Elem for u8 {
    const IS_FLOAT: bool = false;
    fn from_f64(x: f64) -> Self {
        u8::from(x != 0.0)
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn pow(self, e: Self) -> Self {
        self | (1 - e) // x ** 0 is 1, x ** 1 is x
    }
    fn neg(self) -> Self {
        self
    }
    fn abs(self) -> Self {
        self
    }
    fn is_nan(self) -> bool {
        false
    }
    fn is_finite(self) -> bool {
        true
    }
    fn sign(self) -> Self {
        self
    }
    fn floor_div(self, d: Self) -> Self {
        if d == 0 {
            0
        } else {
            self
        }
    }
    fn floor_mod(self, _: Self) -> Self {
        0
    }
    fn bit_and(self, o: Self) -> Self {
        self & o
    }
    fn bit_or(self, o: Self) -> Self {
        self | o
    }
    fn bit_xor(self, o: Self) -> Self {
        self ^ o
    }
    fn invert(self) -> Self {
        self ^ 1
    }
    fn mul_wrap(self, o: Self) -> Self {
        self & o
    }
}

float_elem!(f64);
float_elem!(f32);
int_elem!(i64);
int_elem!(i32);

fn unary(op: UnaryOp, d: Data) -> Result<Data, String> {
    // float32 is computed through f64 and rounded back: within NumPy's float32 functions'
    // accuracy, and exact for floor, ceil and sign.
    // Generic, not `&dyn Fn`: one loop per function with the function inlined (no
    // indirect call per element), which LLVM vectorises where the function allows.
    fn float_op<F: Fn(f64) -> f64>(f: F, d: Data) -> Data {
        match d {
            Data::F32(mut a) => {
                a.mapv_inplace(|x| f(x as f64) as f32);
                Data::F32(a)
            }
            other => {
                let Data::F64(mut a) = other.cast(DType::F64) else {
                    unreachable!("cast to f64")
                };
                a.mapv_inplace(f);
                Data::F64(a)
            }
        }
    }
    let integral = !d.dtype().is_float();
    Ok(match op {
        UnaryOp::Neg => map_data!(d, a => { let mut a = a; a.mapv_inplace(Elem::neg); a }),
        UnaryOp::Abs => map_data!(d, a => { let mut a = a; a.mapv_inplace(Elem::abs); a }),
        UnaryOp::Sign => map_data!(d, a => { let mut a = a; a.mapv_inplace(Elem::sign); a }),
        UnaryOp::Invert => {
            if !integral {
                return Err("ufunc 'invert' not supported for float arrays".into());
            }
            map_data!(d, a => { let mut a = a; a.mapv_inplace(Elem::invert); a })
        }
        UnaryOp::IsNan => Data::Bool(with_data!(d, a => a.mapv(|x| u8::from(Elem::is_nan(x))))),
        UnaryOp::IsFinite => {
            Data::Bool(with_data!(d, a => a.mapv(|x| u8::from(Elem::is_finite(x)))))
        }
        // Integers are whole already (NumPy 2 keeps their type).
        UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round(0..) if integral => d,
        UnaryOp::Round(decimals) if integral => {
            return Err(format!(
                "round to {decimals} decimals of an integer array is not supported; \
                 cast first, e.g. x.astype('f8')"
            ))
        }
        UnaryOp::Floor => float_op(f64::floor, d),
        UnaryOp::Ceil => float_op(f64::ceil, d),
        UnaryOp::Round(decimals) => match d {
            // In the array's own type, as NumPy: x * 10**d rounded half to even, scaled back.
            Data::F32(mut a) => {
                let p = 10f32.powi(decimals.abs());
                if decimals >= 0 {
                    a.mapv_inplace(|x| (x * p).round_ties_even() / p);
                } else {
                    a.mapv_inplace(|x| (x / p).round_ties_even() * p);
                }
                Data::F32(a)
            }
            d => {
                let p = 10f64.powi(decimals.abs());
                if decimals >= 0 {
                    float_op(|x: f64| (x * p).round_ties_even() / p, d)
                } else {
                    float_op(|x: f64| (x / p).round_ties_even() * p, d)
                }
            }
        },
        UnaryOp::Sqrt => float_op(f64::sqrt, d),
        UnaryOp::Exp => float_op(f64::exp, d),
        UnaryOp::Log => float_op(f64::ln, d),
        UnaryOp::Sin => float_op(f64::sin, d),
        UnaryOp::Cos => float_op(f64::cos, d),
        UnaryOp::Tanh => float_op(f64::tanh, d),
        UnaryOp::Arcsin => float_op(f64::asin, d),
        UnaryOp::Arccos => float_op(f64::acos, d),
        UnaryOp::Arctan => float_op(f64::atan, d),
        UnaryOp::Log10 => float_op(f64::log10, d),
        UnaryOp::Log1p => float_op(f64::ln_1p, d),
        UnaryOp::Expm1 => float_op(f64::exp_m1, d),
    })
}

/// Runs `$body` with `$f` bound to the element function of `$op`: one monomorphised copy
/// of the body per operation, so the inner loops inline and vectorise (a per-element match
/// on the operation cost more than the arithmetic).
macro_rules! with_op {
    ($op:expr, $t:ty, $f:ident => $body:expr) => {
        match $op {
            BinOp::Add => {
                let $f = |x: $t, y: $t| x + y;
                $body
            }
            BinOp::Sub => {
                let $f = |x: $t, y: $t| x - y;
                $body
            }
            BinOp::Mul => {
                let $f = |x: $t, y: $t| Elem::mul_wrap(x, y);
                $body
            }
            BinOp::Div => {
                let $f = |x: $t, y: $t| x / y;
                $body
            }
            BinOp::Pow => {
                let $f = |x: $t, y: $t| Elem::pow(x, y);
                $body
            }
            BinOp::FloorDiv => {
                let $f = |x: $t, y: $t| Elem::floor_div(x, y);
                $body
            }
            BinOp::Mod => {
                let $f = |x: $t, y: $t| Elem::floor_mod(x, y);
                $body
            }
            BinOp::BitAnd => {
                let $f = |x: $t, y: $t| Elem::bit_and(x, y);
                $body
            }
            BinOp::BitOr => {
                let $f = |x: $t, y: $t| Elem::bit_or(x, y);
                $body
            }
            BinOp::BitXor => {
                let $f = |x: $t, y: $t| Elem::bit_xor(x, y);
                $body
            }
            BinOp::Minimum => {
                let $f = |x: $t, y: $t| Elem::minimum(x, y);
                $body
            }
            BinOp::Maximum => {
                let $f = |x: $t, y: $t| Elem::maximum(x, y);
                $body
            }
        }
    };
}

/// NumPy refuses integers to negative integer powers; so do we, before computing.
fn check_pow<T: Elem>(op: BinOp, exponents: &ArrayD<T>) -> Result<(), String> {
    if op == BinOp::Pow && !T::IS_FLOAT && exponents.iter().any(|&e| e < T::zero()) {
        return Err("integers to negative integer powers are not allowed \
                    (write the base as a float, e.g. 2.0)"
            .into());
    }
    Ok(())
}

/// Any chunk in row-major order; a transposed 2-d chunk (as `x.T` gives) through
/// [`tiled_transposed`] (ndarray's element-by-element copy took 5.4 ms per 1024 x 1024 f64
/// chunk, for the cache reasons given there).
fn into_row_major<T: Elem>(a: ArrayD<T>) -> ArrayD<T> {
    let Some(src) = transposed_memory(&a) else {
        return if a.is_standard_layout() {
            a
        } else {
            a.as_standard_layout().into_owned()
        };
    };
    let (rows, cols) = (a.shape()[0], a.shape()[1]);
    let mut out = vec![T::zero(); rows * cols];
    tiled_transposed(&mut out, src, rows, cols, |o, v| *o = v);
    ArrayD::from_shape_vec(IxDyn(&[rows, cols]), out).expect("rows x cols elements")
}

/// Is `a` a transposed row-major 2-d chunk (what `x.T` of a chunk is)? Its memory, if so.
fn transposed_memory<T: Elem>(a: &ArrayD<T>) -> Option<&[T]> {
    if a.ndim() != 2 || a.is_standard_layout() {
        return None;
    }
    // The reversed view is row-major exactly when `a` is a transpose.
    let t = a.t();
    if t.is_standard_layout() {
        a.as_slice_memory_order()
    } else {
        None
    }
}

/// Whether `a op b` is `x op y.T` (Some(false)) or `x.T op y` (Some(true)) for same-shape
/// 2-d chunks, the form [`transposed_op`] computes in one pass.
fn transposed_pair<T: Elem>(a: &ArrayD<T>, b: &ArrayD<T>) -> Option<bool> {
    if a.shape() != b.shape() || a.ndim() != 2 {
        None
    } else if a.is_standard_layout() && transposed_memory(b).is_some() {
        Some(false)
    } else if b.is_standard_layout() && transposed_memory(a).is_some() {
        Some(true)
    } else {
        None
    }
}

/// `x op y.T` (or, `swapped`, `x.T op y`), in place through [`tiled_transposed`]: one pass,
/// no transposed copy.
fn transposed_op<T: Elem>(op: BinOp, a: ArrayD<T>, b: ArrayD<T>, swapped: bool) -> ArrayD<T> {
    let (rows, cols) = (a.shape()[0], a.shape()[1]);
    let (mut out, other) = if swapped { (b, a) } else { (a, b) };
    let src = transposed_memory(&other).expect("checked by transposed_pair");
    let dst = out.as_slice_mut().expect("standard layout");
    with_op!(op, T, f => {
        if swapped {
            tiled_transposed(dst, src, rows, cols, |o, t| *o = f(t, *o));
        } else {
            tiled_transposed(dst, src, rows, cols, |o, t| *o = f(*o, t));
        }
    });
    out
}

/// For every (i, j): `g(&mut dst[i][j], src[j][i])`, `dst` rows x cols and `src` cols x rows,
/// both row-major. Tile by tile (64 x 64, 32 KiB: an L1 cache), the source rows are first
/// copied whole into a buffer, then read across from there: reading the source a column at a
/// time instead touches lines 8 KiB apart that all fall in one cache set and evict each other
/// (2.3 ms per 1024 x 1024 f64 chunk; buffered: 0.9 ms).
fn tiled_transposed<T: Elem>(
    dst: &mut [T],
    src: &[T],
    rows: usize,
    cols: usize,
    g: impl Fn(&mut T, T),
) {
    const TILE: usize = 64;
    let mut buf = [T::zero(); TILE * TILE];
    for ib in (0..rows).step_by(TILE) {
        let ih = TILE.min(rows - ib);
        for jb in (0..cols).step_by(TILE) {
            let jw = TILE.min(cols - jb);
            for jj in 0..jw {
                buf[jj * TILE..][..ih].copy_from_slice(&src[(jb + jj) * rows + ib..][..ih]);
            }
            for ii in 0..ih {
                let row = &mut dst[(ib + ii) * cols + jb..][..jw];
                for (jj, o) in row.iter_mut().enumerate() {
                    g(o, buf[jj * TILE + ii]);
                }
            }
        }
    }
}

/// `a op b` with NumPy broadcasting, reusing an operand's memory when it has the result's
/// shape (fresh memory is the slowest thing a chunk task can ask for).
fn broadcast_op<T: Elem>(op: BinOp, a: ArrayD<T>, b: ArrayD<T>) -> Result<ArrayD<T>, String> {
    if op == BinOp::Div && !T::IS_FLOAT {
        return Err("integer arrays are divided as floats; cast first".into());
    }
    if matches!(op, BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor) && T::IS_FLOAT {
        return Err("bitwise operators (& | ^) are not supported for float arrays".into());
    }
    let shape = broadcast_shapes(a.shape(), b.shape()).ok_or_else(|| {
        format!(
            "operands could not be broadcast together with shapes {:?} {:?}",
            a.shape(),
            b.shape()
        )
    })?;
    check_pow(op, &b)?;
    if let Some(swapped) = transposed_pair(&a, &b) {
        return Ok(transposed_op(op, a, b, swapped));
    }
    let (a, b) = (into_row_major(a), into_row_major(b));
    Ok(with_op!(op, T, f => {
        if a.shape() == shape.as_slice() {
            let mut a = a;
            a.zip_mut_with(&b, |x, &y| *x = f(*x, y));
            a
        } else if b.shape() == shape.as_slice() {
            let mut b = b;
            b.zip_mut_with(&a, |y, &x| *y = f(x, *y));
            b
        } else {
            let av = a.broadcast(IxDyn(&shape)).ok_or("broadcast")?;
            let bv = b.broadcast(IxDyn(&shape)).ok_or("broadcast")?;
            Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y))
        }
    }))
}

/// `op(x, x)` elementwise, in place: what [`broadcast_op`] computes for two equal
/// operands (with its refusals), without a second copy of the chunk.
fn self_op<T: Elem>(op: BinOp, a: ArrayD<T>) -> Result<ArrayD<T>, String> {
    if op == BinOp::Div && !T::IS_FLOAT {
        return Err("integer arrays are divided as floats; cast first".into());
    }
    if matches!(op, BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor) && T::IS_FLOAT {
        return Err("bitwise operators (& | ^) are not supported for float arrays".into());
    }
    check_pow(op, &a)?;
    let mut a = into_row_major(a);
    Ok(with_op!(op, T, f => {
        a.mapv_inplace(|x| f(x, x));
        a
    }))
}

fn self_binary(op: BinOp, d: Data) -> Result<Data, String> {
    Ok(map_data!(d, a => self_op(op, a)?))
}

fn binary(op: BinOp, a: Data, b: Data) -> Result<Data, String> {
    Ok(match (a, b) {
        (Data::F64(a), Data::F64(b)) => Data::F64(broadcast_op(op, a, b)?),
        (Data::F32(a), Data::F32(b)) => Data::F32(broadcast_op(op, a, b)?),
        (Data::I64(a), Data::I64(b)) => Data::I64(broadcast_op(op, a, b)?),
        (Data::I32(a), Data::I32(b)) => Data::I32(broadcast_op(op, a, b)?),
        (Data::Bool(a), Data::Bool(b)) => Data::Bool(broadcast_op(op, a, b)?),
        (a, b) => {
            return Err(format!(
                "binary operation on {} and {} (the planner casts first)",
                a.dtype(),
                b.dtype()
            ))
        }
    })
}

/// NumPy's median (`q` None: the mean of the middle two) or percentile `q` with its default
/// 'linear' method, of `v` (reordered); NaN if any value is NaN, as NumPy.
pub fn quantile(v: &mut [f64], q: Option<f64>) -> f64 {
    if v.is_empty() || v.iter().any(|x| x.is_nan()) {
        return f64::NAN;
    }
    v.sort_unstable_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    match q {
        None if n % 2 == 1 => v[n / 2],
        None => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        Some(q) => {
            let pos = q / 100.0 * (n - 1) as f64;
            let lo = (pos.floor() as usize).min(n - 1);
            let hi = (lo + 1).min(n - 1);
            let t = pos - lo as f64;
            let (a, b) = (v[lo], v[hi]);
            // NumPy's _lerp: from the nearer end, for accuracy.
            if t >= 0.5 {
                b - (b - a) * (1.0 - t)
            } else {
                a + (b - a) * t
            }
        }
    }
}

/// The running sum (`Add`) or product (`Mul`, wrapping on integer overflow as NumPy) of a
/// chunk along `axis`, in place.
fn scan(op: BinOp, axis: usize, d: Data) -> Result<Data, String> {
    if axis >= d.shape().len() {
        return Err(format!(
            "scan along axis {axis} of a chunk of shape {:?}",
            d.shape()
        ));
    }
    let mul = match op {
        BinOp::Add => false,
        BinOp::Mul => true,
        other => return Err(format!("scan of {other:?} (only cumsum and cumprod)")),
    };
    Ok(map_data!(d, a => {
        let mut a = into_row_major(a);
        if mul {
            a.accumulate_axis_inplace(Axis(axis), |&prev, cur| *cur = prev.mul_wrap(*cur));
        } else {
            // `+=` would need AddAssign, which the element trait does not ask for.
            #[allow(clippy::assign_op_pattern)]
            a.accumulate_axis_inplace(Axis(axis), |&prev, cur| *cur = prev + *cur);
        }
        a
    }))
}

/// `a op b` elementwise with broadcasting, as bools.
fn compare(op: CmpOp, a: Data, b: Data) -> Result<Data, String> {
    fn go<T: Elem>(op: CmpOp, a: ArrayD<T>, b: ArrayD<T>) -> Result<ArrayD<u8>, String> {
        let shape = broadcast_shapes(a.shape(), b.shape()).ok_or_else(|| {
            format!(
                "operands could not be broadcast together with shapes {:?} {:?}",
                a.shape(),
                b.shape()
            )
        })?;
        let av = a.broadcast(IxDyn(&shape)).ok_or("broadcast")?;
        let bv = b.broadcast(IxDyn(&shape)).ok_or("broadcast")?;
        Ok(Zip::from(&av)
            .and(&bv)
            .map_collect(|x, y| u8::from(op.holds(x, y))))
    }
    Ok(Data::Bool(match (a, b) {
        (Data::F64(a), Data::F64(b)) => go(op, a, b)?,
        (Data::F32(a), Data::F32(b)) => go(op, a, b)?,
        (Data::I64(a), Data::I64(b)) => go(op, a, b)?,
        (Data::I32(a), Data::I32(b)) => go(op, a, b)?,
        (Data::Bool(a), Data::Bool(b)) => go(op, a, b)?,
        (a, b) => {
            return Err(format!(
                "comparison of {} and {} (the planner casts first)",
                a.dtype(),
                b.dtype()
            ))
        }
    }))
}

/// `where(c, a, b)`: `a` where `c` is true, else `b`, the three broadcast together.
fn select(c: Data, a: Data, b: Data) -> Result<Data, String> {
    let Data::Bool(c) = c else {
        return Err(format!(
            "where: condition of {} (the planner casts to bool)",
            c.dtype()
        ));
    };
    fn go<T: Elem>(c: ArrayD<u8>, a: ArrayD<T>, b: ArrayD<T>) -> Result<ArrayD<T>, String> {
        let shape = broadcast_shapes(a.shape(), b.shape())
            .and_then(|s| broadcast_shapes(c.shape(), &s))
            .ok_or_else(|| {
                format!(
                    "operands could not be broadcast together with shapes {:?} {:?} {:?}",
                    c.shape(),
                    a.shape(),
                    b.shape()
                )
            })?;
        let cv = c.broadcast(IxDyn(&shape)).ok_or("broadcast")?;
        let av = a.broadcast(IxDyn(&shape)).ok_or("broadcast")?;
        let bv = b.broadcast(IxDyn(&shape)).ok_or("broadcast")?;
        Ok(Zip::from(&cv)
            .and(&av)
            .and(&bv)
            .map_collect(|&c, &x, &y| if c != 0 { x } else { y }))
    }
    Ok(match (a, b) {
        (Data::F64(a), Data::F64(b)) => Data::F64(go(c, a, b)?),
        (Data::F32(a), Data::F32(b)) => Data::F32(go(c, a, b)?),
        (Data::I64(a), Data::I64(b)) => Data::I64(go(c, a, b)?),
        (Data::I32(a), Data::I32(b)) => Data::I32(go(c, a, b)?),
        (Data::Bool(a), Data::Bool(b)) => Data::Bool(go(c, a, b)?),
        (a, b) => {
            return Err(format!(
                "where of {} and {} (the planner casts first)",
                a.dtype(),
                b.dtype()
            ))
        }
    })
}

fn matmul(a: Data, b: Data) -> Result<Data, String> {
    fn mm<T: Elem>(a: ArrayD<T>, b: ArrayD<T>) -> Result<ArrayD<T>, String> {
        let a = a
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| "matmul needs 2-d blocks")?;
        let b = b
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| "matmul needs 2-d blocks")?;
        if a.ncols() != b.nrows() {
            return Err(format!(
                "matmul: shapes {:?} and {:?} not aligned",
                a.shape(),
                b.shape()
            ));
        }
        Ok(a.dot(&b).into_dyn())
    }
    Ok(match (a, b) {
        (Data::F64(a), Data::F64(b)) => Data::F64(mm(a, b)?),
        (Data::F32(a), Data::F32(b)) => Data::F32(mm(a, b)?),
        (Data::I64(a), Data::I64(b)) => Data::I64(mm(a, b)?),
        (Data::I32(a), Data::I32(b)) => Data::I32(mm(a, b)?),
        _ => return Err("matmul of two dtypes (the planner casts first)".into()),
    })
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The uniform [0, 1) value of element `index` of a random array with `seed`.
pub fn random_value(seed: u64, index: u64) -> f64 {
    unit(splitmix(splitmix(seed) ^ index))
}

/// The region `dims` of the random array of shape `full`: element by element the values
/// of [`random_value`] at each element's row-major index in the whole array. Written row
/// by row: a row's first index is computed once (an odometer over the outer axes), then
/// the row is a plain loop over `first + k * step` with the seed's hash hoisted out.
fn random_block(seed: u64, full: &[u64], dims: &[Dim]) -> Result<ArrayD<f64>, String> {
    let shape = dims_shape(dims);
    let nd = dims.len();
    let mut strides = vec![1u64; nd];
    for k in (0..nd.saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * full[k + 1];
    }
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(total);
    if total > 0 {
        let key = splitmix(seed);
        let (row_len, row_step) = match dims.last() {
            Some(d) => (d.len as usize, d.step * strides[nd - 1]),
            None => (1, 0),
        };
        let outer = &dims[..nd.saturating_sub(1)];
        let mut at = vec![0u64; outer.len()];
        loop {
            let first: u64 = outer
                .iter()
                .zip(&at)
                .zip(&strides)
                .map(|((d, &i), &s)| (d.start + d.step * i) * s)
                .sum::<u64>()
                + dims.last().map_or(0, |d| d.start * strides[nd - 1]);
            out.extend((0..row_len as u64).map(|k| unit(splitmix(key ^ (first + k * row_step)))));
            // Next row: the odometer over the outer axes.
            let mut k = outer.len();
            loop {
                if k == 0 {
                    return ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string());
                }
                k -= 1;
                at[k] += 1;
                if at[k] < outer[k].len {
                    break;
                }
                at[k] = 0;
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}

/// The top 53 bits of a hash as a uniform value in [0, 1).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn generate(g: &Generator, dtype: DType, dims: &[Dim]) -> Result<Data, String> {
    let shape = dims_shape(dims);
    let data = match g {
        Generator::Fill(s) => return Ok(Data::full(&shape, *s, dtype)),
        Generator::Arange { start, step } => {
            let [d] = dims else {
                return Err("arange is 1-d".into());
            };
            Data::F64(ArrayD::from_shape_fn(IxDyn(&shape), |i| {
                start + step * (d.start + d.step * i[0] as u64) as f64
            }))
        }
        Generator::Random { seed, full } => {
            if full.len() != dims.len() {
                return Err("random: region and shape ranks differ".into());
            }
            Data::F64(random_block(*seed, full, dims)?)
        }
    };
    Ok(data.cast(dtype))
}

/// The reductions, with the state a partial result carries so that partials combine
/// exactly (sums in int64 or f64; means and variances as count, mean and the sum of
/// squared deviations, merged with Chan et al.'s formula).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceOp {
    Sum,
    Min,
    Max,
    Mean,
    Var,
    Std,
    /// Products wrap on integer overflow, as NumPy's do.
    Prod,
    /// Of the values' truth (non-zero, NaN included): True for no values for `all`.
    Any,
    All,
    /// Min and max skipping NaN; NaN only where every value is NaN.
    NanMin,
    NanMax,
    /// The index of the first minimum (maximum) along one axis, or in the flattened array;
    /// a NaN counts as the extreme, as in NumPy.
    ArgMin,
    ArgMax,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Min => "min",
            ReduceOp::Max => "max",
            ReduceOp::Mean => "mean",
            ReduceOp::Var => "var",
            ReduceOp::Std => "std",
            ReduceOp::Prod => "prod",
            ReduceOp::Any => "any",
            ReduceOp::All => "all",
            ReduceOp::NanMin => "nanmin",
            ReduceOp::NanMax => "nanmax",
            ReduceOp::ArgMin => "argmin",
            ReduceOp::ArgMax => "argmax",
        }
    }

    pub fn parse(s: &str) -> Option<ReduceOp> {
        [
            ReduceOp::Sum,
            ReduceOp::Min,
            ReduceOp::Max,
            ReduceOp::Mean,
            ReduceOp::Var,
            ReduceOp::Std,
            ReduceOp::Prod,
            ReduceOp::Any,
            ReduceOp::All,
            ReduceOp::NanMin,
            ReduceOp::NanMax,
            ReduceOp::ArgMin,
            ReduceOp::ArgMax,
        ]
        .into_iter()
        .find(|op| op.name() == s)
    }

    /// NumPy's name of the operation in "zero-size array to reduction operation ... which
    /// has no identity", for the reductions that have none.
    pub fn without_identity(self) -> Option<&'static str> {
        match self {
            ReduceOp::Min => Some("minimum"),
            ReduceOp::Max => Some("maximum"),
            ReduceOp::NanMin => Some("fmin"),
            ReduceOp::NanMax => Some("fmax"),
            _ => None,
        }
    }

    /// NumPy's result dtype for this reduction of `input`.
    pub fn result_dtype(self, input: DType) -> DType {
        match self {
            ReduceOp::Sum | ReduceOp::Prod => input.sum_of(),
            ReduceOp::Min | ReduceOp::Max | ReduceOp::NanMin | ReduceOp::NanMax => input,
            ReduceOp::Mean | ReduceOp::Var | ReduceOp::Std => input.float_of(),
            ReduceOp::Any | ReduceOp::All => DType::Bool,
            ReduceOp::ArgMin | ReduceOp::ArgMax => DType::I64,
        }
    }
}

/// One reduction as the tasks see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reduction {
    pub op: ReduceOp,
    /// The reduced axes of the input, ascending.
    pub axes: Vec<usize>,
    /// Delta degrees of freedom for var and std.
    pub ddof: f64,
    pub out_dtype: DType,
    /// The finished chunk's shape (the reduced axes dropped unless keepdims).
    pub out_shape: Vec<usize>,
    /// For argmin/argmax: the whole input's shape, and where this task's chunk starts in it
    /// (set per chunk by the planner), so partials carry global indices.
    #[serde(default)]
    pub input_shape: Vec<usize>,
    #[serde(default)]
    pub origin: Vec<usize>,
}

/// A partial reduction over some chunks, reduced axes kept as size 1.
#[derive(Clone, Debug, PartialEq)]
pub enum Partial {
    /// Sum (int64 or f64), min or max (the input dtype).
    Values(Data),
    Moments {
        count: f64,
        mean: ArrayD<f64>,
        /// Sum of squared deviations from the mean; absent for a plain mean.
        m2: Option<ArrayD<f64>>,
    },
    /// argmin/argmax: the best value so far and its global index.
    Arg { values: Data, index: ArrayD<i64> },
}

/// Whether `v` at global index `g` beats the best so far, `b` at `bi`: the first NaN wins,
/// then the extreme value, ties to the lower index (NumPy's first occurrence).
fn beats<T: Elem>(v: T, g: i64, b: T, bi: i64, max: bool) -> bool {
    if b.is_nan() {
        return v.is_nan() && g < bi;
    }
    if v.is_nan() {
        return true;
    }
    let better = if max { v > b } else { v < b };
    better || (v == b && g < bi)
}

/// The partial argmin/argmax of one chunk: per output element, the best value and its
/// global index (along the one reduced axis, or flat in C order when every axis is reduced).
fn arg_partial<T: Elem>(a: &ArrayD<T>, r: &Reduction, max: bool) -> (ArrayD<T>, ArrayD<i64>) {
    let out_shape: Vec<usize> = (0..a.ndim())
        .map(|k| if r.axes.contains(&k) { 1 } else { a.shape()[k] })
        .collect();
    let mut best = ArrayD::from_elem(IxDyn(&out_shape), T::zero());
    let mut index = ArrayD::from_elem(IxDyn(&out_shape), -1i64);
    let mut strides = vec![1usize; r.input_shape.len()];
    for k in (0..r.input_shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * r.input_shape[k + 1];
    }
    let origin = |k: usize| r.origin.get(k).copied().unwrap_or(0);
    let mut at = vec![0usize; a.ndim()];
    for (i, &v) in a.indexed_iter() {
        let g = match r.axes.as_slice() {
            [ax] if a.ndim() > 1 => origin(*ax) + i[*ax],
            _ => (0..a.ndim())
                .map(|k| (origin(k) + i[k]) * strides.get(k).copied().unwrap_or(1))
                .sum(),
        } as i64;
        for (k, o) in at.iter_mut().enumerate() {
            *o = if r.axes.contains(&k) { 0 } else { i[k] };
        }
        let (b, bi) = (&mut best[at.as_slice()], &mut index[at.as_slice()]);
        if *bi < 0 || beats(v, g, *b, *bi, max) {
            *b = v;
            *bi = g;
        }
    }
    (best, index)
}

/// Merges two argmin/argmax partials of one output.
fn arg_merge(
    a: Data,
    ai: ArrayD<i64>,
    b: Data,
    bi: ArrayD<i64>,
    max: bool,
) -> Result<Partial, String> {
    fn go<T: Elem>(
        mut a: ArrayD<T>,
        mut ai: ArrayD<i64>,
        b: ArrayD<T>,
        bi: ArrayD<i64>,
        max: bool,
    ) -> Result<(ArrayD<T>, ArrayD<i64>), String> {
        if a.shape() != b.shape() || ai.shape() != bi.shape() {
            return Err("partials of different shapes".into());
        }
        Zip::from(&mut a)
            .and(&mut ai)
            .and(&b)
            .and(&bi)
            .for_each(|x, xi, &y, &yi| {
                if beats(y, yi, *x, *xi, max) {
                    *x = y;
                    *xi = yi;
                }
            });
        Ok((a, ai))
    }
    let (values, index) = match (a, b) {
        (Data::F64(a), Data::F64(b)) => {
            let (v, i) = go(a, ai, b, bi, max)?;
            (Data::F64(v), i)
        }
        (Data::F32(a), Data::F32(b)) => {
            let (v, i) = go(a, ai, b, bi, max)?;
            (Data::F32(v), i)
        }
        (Data::I64(a), Data::I64(b)) => {
            let (v, i) = go(a, ai, b, bi, max)?;
            (Data::I64(v), i)
        }
        (Data::I32(a), Data::I32(b)) => {
            let (v, i) = go(a, ai, b, bi, max)?;
            (Data::I32(v), i)
        }
        (Data::Bool(a), Data::Bool(b)) => {
            let (v, i) = go(a, ai, b, bi, max)?;
            (Data::Bool(v), i)
        }
        _ => return Err("partials of different dtypes".into()),
    };
    Ok(Partial::Arg { values, index })
}

/// Folds `a` over `axes` with `pick` (keepdims), never copying the chunk: a whole
/// contiguous chunk in eight independent lanes; otherwise axis by axis, a whole slab at a
/// time (`acc = pick(acc, slab)` over contiguous rows), or along contiguous lanes for the
/// last axis. `pick` is a type parameter, so it is inlined into the loops (which LLVM
/// vectorises) rather than called through a pointer per element.
fn fold_axes<T: Elem, F: Fn(T, T) -> T + Copy>(
    a: &ArrayD<T>,
    axes: &[usize],
    pick: F,
) -> ArrayD<T> {
    let keep = |a: &ArrayD<T>| {
        let mut shape = a.shape().to_vec();
        for &ax in axes {
            shape[ax] = 1;
        }
        shape
    };
    if a.is_empty() {
        // Only reached when the result is empty too (the caller refuses the rest).
        let mut shape = keep(a);
        if let Some(k) = (0..shape.len()).find(|&k| !axes.contains(&k) && a.shape()[k] == 0) {
            shape[k] = 0;
        }
        return ArrayD::from_elem(IxDyn(&shape), T::zero());
    }
    if axes.len() == a.ndim() {
        if let Some(s) = a.as_slice_memory_order() {
            return ArrayD::from_elem(IxDyn(&keep(a)), fold_slice(s, pick));
        }
    }
    let mut out: Option<ArrayD<T>> = None;
    for &ax in axes {
        let view = match &out {
            Some(o) => o.view(),
            None => a.view(),
        };
        let last_contiguous = ax + 1 == view.ndim() && view.is_standard_layout();
        let folded = if last_contiguous {
            view.map_axis(Axis(ax), |lane| {
                let s = lane.as_slice().expect("a contiguous last axis");
                fold_slice(s, pick)
            })
            .insert_axis(Axis(ax))
        } else {
            let mut slabs = view.axis_iter(Axis(ax));
            let mut acc = slabs.next().expect("a non-empty axis").to_owned();
            for slab in slabs {
                Zip::from(&mut acc)
                    .and(&slab)
                    .for_each(|o, &x| *o = pick(*o, x));
            }
            acc.insert_axis(Axis(ax))
        };
        out = Some(folded);
    }
    out.unwrap_or_else(|| a.clone())
}

/// `pick` over a non-empty slice in eight independent accumulators (no loop-carried
/// dependency on one register, so the loop vectorises), then over the eight.
fn fold_slice<T: Elem, F: Fn(T, T) -> T>(s: &[T], pick: F) -> T {
    let mut acc = [s[0]; 8];
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] = pick(acc[k], c[k]);
        }
    }
    let rest = chunks.remainder().iter().fold(acc[0], |a, &x| pick(a, x));
    acc[1..].iter().fold(rest, |a, &x| pick(a, x))
}

/// Folds `a` over `axes` from `init` (so empty lanes give `init`), keeping the axes.
fn fold_axes_from<T: Elem>(a: &ArrayD<T>, axes: &[usize], init: T, f: fn(T, T) -> T) -> ArrayD<T> {
    let mut out = a.clone();
    for &ax in axes {
        out = out
            .map_axis(Axis(ax), |lane| lane.iter().fold(init, |acc, &x| f(acc, x)))
            .insert_axis(Axis(ax));
    }
    out
}

fn pick_nanmin<T: Elem>(acc: T, x: T) -> T {
    if acc.is_nan() || x < acc {
        x
    } else {
        acc
    }
}

fn pick_nanmax<T: Elem>(acc: T, x: T) -> T {
    if acc.is_nan() || x > acc {
        x
    } else {
        acc
    }
}

fn mul_wrap<T: Elem>(acc: T, x: T) -> T {
    acc.mul_wrap(x)
}

fn pick_min<T: Elem>(acc: T, x: T) -> T {
    if x < acc || x.is_nan() {
        x
    } else {
        acc
    }
}

fn pick_max<T: Elem>(acc: T, x: T) -> T {
    if x > acc || x.is_nan() {
        x
    } else {
        acc
    }
}

/// Sums `a` over `axes` (keepdims), with a fast path for a whole contiguous chunk.
fn sum_keep<T: Elem>(a: &ArrayD<T>, axes: &[usize]) -> ArrayD<T> {
    if axes.len() == a.ndim() {
        let total = match a.as_slice_memory_order() {
            Some(s) => sum_slice(s),
            None => a.sum(),
        };
        return ArrayD::from_elem(IxDyn(&vec![1; a.ndim()]), total);
    }
    sum_axes(a, axes)
}

/// Eight independent accumulators, so the compiler vectorises the loop.
fn sum_slice<T: Elem>(s: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            acc[k] = acc[k] + c[k];
        }
    }
    let mut total = chunks.remainder().iter().fold(T::zero(), |a, &x| a + x);
    for a in acc {
        total = total + a;
    }
    total
}

impl Partial {
    /// The partial reduction of one chunk.
    pub fn of(data: Data, r: &Reduction) -> Result<Partial, String> {
        if r.axes.iter().any(|&a| a >= data.shape().len()) {
            return Err(format!(
                "reduction axes {:?} for a chunk of shape {:?}",
                r.axes,
                data.shape()
            ));
        }
        let count: f64 = r.axes.iter().map(|&a| data.shape()[a] as f64).product();
        Ok(match r.op {
            ReduceOp::Sum => {
                let acc = if data.dtype().is_float() {
                    DType::F64
                } else {
                    DType::I64
                };
                Partial::Values(map_data!(data.cast(acc), a => sum_keep(&a, &r.axes)))
            }
            ReduceOp::ArgMin | ReduceOp::ArgMax => {
                if data.is_empty() {
                    return Err(format!(
                        "attempt to get {} of an empty sequence",
                        r.op.name()
                    ));
                }
                let max = r.op == ReduceOp::ArgMax;
                let index;
                let values = map_data!(data, a => {
                    let (v, i) = arg_partial(&a, r, max);
                    index = i;
                    v
                });
                Partial::Arg { values, index }
            }
            ReduceOp::Prod => {
                let acc = if data.dtype().is_float() {
                    DType::F64
                } else {
                    DType::I64
                };
                Partial::Values(map_data!(data.cast(acc), a => {
                    fold_axes_from(&a, &r.axes, Elem::from_f64(1.0), mul_wrap)
                }))
            }
            ReduceOp::Any | ReduceOp::All => {
                let Data::Bool(a) = data.cast(DType::Bool) else {
                    unreachable!("cast to bool")
                };
                Partial::Values(Data::Bool(if r.op == ReduceOp::Any {
                    fold_axes_from(&a, &r.axes, 0, |x, y| x | y)
                } else {
                    fold_axes_from(&a, &r.axes, 1, |x, y| x & y)
                }))
            }
            ReduceOp::Min | ReduceOp::Max | ReduceOp::NanMin | ReduceOp::NanMax => {
                // Only a value computed from no elements is an error: min over axis 1 of a
                // (0, 3) array is an empty result, as in NumPy.
                let shape = data.shape();
                let outputs: usize = (0..shape.len())
                    .filter(|a| !r.axes.contains(a))
                    .map(|a| shape[a])
                    .product();
                if data.is_empty() && outputs > 0 {
                    return Err(format!(
                        "zero-size array to reduction operation {} which has no identity",
                        r.op.without_identity().unwrap_or(r.op.name())
                    ));
                }
                Partial::Values(map_data!(data, a => match r.op {
                    ReduceOp::Min => fold_axes(&a, &r.axes, pick_min),
                    ReduceOp::Max => fold_axes(&a, &r.axes, pick_max),
                    ReduceOp::NanMin => fold_axes(&a, &r.axes, pick_nanmin),
                    _ => fold_axes(&a, &r.axes, pick_nanmax),
                }))
            }
            ReduceOp::Mean | ReduceOp::Var | ReduceOp::Std => {
                let x = data.into_f64();
                let mut mean = sum_keep(&x, &r.axes);
                mean.mapv_inplace(|s| s / count);
                let m2 = (r.op != ReduceOp::Mean).then(|| {
                    let mut dev = x;
                    dev.zip_mut_with(&mean, |v, &m| *v = (*v - m) * (*v - m));
                    sum_keep(&dev, &r.axes)
                });
                Partial::Moments { count, mean, m2 }
            }
        })
    }

    /// Merges two partials of neighbouring chunks of the same output.
    pub fn merge(self, other: Partial, op: ReduceOp) -> Result<Partial, String> {
        Ok(match (self, other) {
            (Partial::Values(a), Partial::Values(b)) => Partial::Values(match op {
                ReduceOp::Sum => binary(BinOp::Add, a, b)?,
                ReduceOp::Any => binary(BinOp::BitOr, a, b)?,
                ReduceOp::All => binary(BinOp::BitAnd, a, b)?,
                ReduceOp::Prod
                | ReduceOp::Min
                | ReduceOp::Max
                | ReduceOp::NanMin
                | ReduceOp::NanMax => pick_merge(a, b, op)?,
                ReduceOp::Mean
                | ReduceOp::Var
                | ReduceOp::Std
                | ReduceOp::ArgMin
                | ReduceOp::ArgMax => return Err("mismatched partials".into()),
            }),
            (
                Partial::Arg {
                    values: a,
                    index: ai,
                },
                Partial::Arg {
                    values: b,
                    index: bi,
                },
            ) => {
                let max = match op {
                    ReduceOp::ArgMin => false,
                    ReduceOp::ArgMax => true,
                    _ => return Err("mismatched partials".into()),
                };
                arg_merge(a, ai, b, bi, max)?
            }
            (
                Partial::Moments {
                    count: na,
                    mean: ma,
                    m2: m2a,
                },
                Partial::Moments {
                    count: nb,
                    mean: mb,
                    m2: m2b,
                },
            ) => {
                let n = na + nb;
                if ma.shape() != mb.shape() {
                    return Err("partials of different shapes".into());
                }
                let mut mean = ma.clone();
                let m2 = match (m2a, m2b) {
                    (Some(mut m2a), Some(m2b)) => {
                        Zip::from(&mut m2a).and(&ma).and(&mb).and(&m2b).for_each(
                            |m2, &a, &b, &m2b| {
                                let delta = b - a;
                                *m2 += m2b + delta * delta * na * nb / n;
                            },
                        );
                        Some(m2a)
                    }
                    _ => None,
                };
                Zip::from(&mut mean)
                    .and(&mb)
                    .for_each(|m, &b| *m += (b - *m) * nb / n);
                Partial::Moments { count: n, mean, m2 }
            }
            _ => return Err("mismatched partials".into()),
        })
    }

    /// The reduction's value, cast and shaped as NumPy returns it.
    pub fn finish(self, r: &Reduction) -> Result<Data, String> {
        let data = match self {
            Partial::Values(d) => d.cast(r.out_dtype),
            Partial::Arg { index, .. } => Data::I64(index),
            Partial::Moments { count, mean, m2 } => {
                let v = match r.op {
                    ReduceOp::Mean => mean,
                    ReduceOp::Var | ReduceOp::Std => {
                        let mut v = m2.ok_or("variance without its moments")?;
                        // As NumPy: the divisor is clamped at 0, and the division by zero
                        // gives inf (nan where every value is equal), with no error.
                        let dof = (count - r.ddof).max(0.0);
                        v.mapv_inplace(|m| m / dof);
                        if r.op == ReduceOp::Std {
                            v.mapv_inplace(f64::sqrt);
                        }
                        v
                    }
                    _ => return Err("moments for a non-moment reduction".into()),
                };
                Data::F64(v).cast(r.out_dtype)
            }
        };
        data.into_shape(&r.out_shape)
    }

    /// Wire form: a tag byte, then for moments the count and the two arrays, each chunk
    /// length-prefixed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let put = |d: &Data, out: &mut Vec<u8>| {
            let e = d.encode();
            out.extend_from_slice(&(e.len() as u64).to_le_bytes());
            out.extend_from_slice(&e);
        };
        match self {
            Partial::Values(d) => {
                out.push(0);
                put(d, &mut out);
            }
            Partial::Arg { values, index } => {
                out.push(3);
                put(values, &mut out);
                put(&Data::I64(index.clone()), &mut out);
            }
            Partial::Moments { count, mean, m2 } => {
                out.push(if m2.is_some() { 2 } else { 1 });
                out.extend_from_slice(&count.to_le_bytes());
                put(&Data::F64(mean.clone()), &mut out);
                if let Some(m2) = m2 {
                    put(&Data::F64(m2.clone()), &mut out);
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Partial, String> {
        let tag = *bytes.first().ok_or("not a partial reduction")?;
        let mut at = if tag == 0 || tag == 3 { 1 } else { 9 };
        let mut next = || -> Result<Data, String> {
            let len = u64::from_le_bytes(
                bytes
                    .get(at..at + 8)
                    .ok_or("truncated partial")?
                    .try_into()
                    .expect("8 bytes"),
            ) as usize;
            let d = Data::decode(bytes.get(at + 8..at + 8 + len).ok_or("truncated partial")?)?;
            at += 8 + len;
            Ok(d)
        };
        let f64_of = |d: Data| match d {
            Data::F64(a) => Ok(a),
            _ => Err("moments must be f64".to_string()),
        };
        match tag {
            0 => Ok(Partial::Values(next()?)),
            3 => {
                let values = next()?;
                match next()? {
                    Data::I64(index) => Ok(Partial::Arg { values, index }),
                    _ => Err("argmin/argmax indices must be int64".into()),
                }
            }
            1 | 2 => {
                let count = f64::from_le_bytes(
                    bytes
                        .get(1..9)
                        .ok_or("truncated partial")?
                        .try_into()
                        .expect("8 bytes"),
                );
                let mean = f64_of(next()?)?;
                let m2 = if tag == 2 {
                    Some(f64_of(next()?)?)
                } else {
                    None
                };
                Ok(Partial::Moments { count, mean, m2 })
            }
            _ => Err("not a partial reduction".into()),
        }
    }
}

/// The element function folding values for `op` (min, max, their NaN-skipping forms, prod).
fn picker<T: Elem>(op: ReduceOp) -> fn(T, T) -> T {
    match op {
        ReduceOp::Min => pick_min,
        ReduceOp::NanMin => pick_nanmin,
        ReduceOp::NanMax => pick_nanmax,
        ReduceOp::Prod => mul_wrap,
        _ => pick_max,
    }
}

fn pick_merge(a: Data, b: Data, op: ReduceOp) -> Result<Data, String> {
    fn go<T: Elem>(mut a: ArrayD<T>, b: ArrayD<T>, op: ReduceOp) -> Result<ArrayD<T>, String> {
        if a.shape() != b.shape() {
            return Err("partials of different shapes".into());
        }
        let pick = picker(op);
        a.zip_mut_with(&b, |x, &y| *x = pick(*x, y));
        Ok(a)
    }
    Ok(match (a, b) {
        (Data::F64(a), Data::F64(b)) => Data::F64(go(a, b, op)?),
        (Data::F32(a), Data::F32(b)) => Data::F32(go(a, b, op)?),
        (Data::I64(a), Data::I64(b)) => Data::I64(go(a, b, op)?),
        (Data::I32(a), Data::I32(b)) => Data::I32(go(a, b, op)?),
        (Data::Bool(a), Data::Bool(b)) => Data::Bool(go(a, b, op)?),
        _ => return Err("partials of different dtypes".into()),
    })
}

/// A stand-in reader for tests of blocks that read nothing.
pub struct NoReads;

impl Reader for NoReads {
    fn read(&self, r: &Read) -> Result<Data, String> {
        Err(format!("no reader here for {}:{}", r.file, r.dataset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(shape: &[usize], f: impl Fn(usize) -> f64) -> Data {
        let n: usize = shape.iter().product();
        Data::F64(ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(f).collect()).unwrap())
    }

    /// NumPy's `_var` clamps the divisor `n - ddof` at 0 and divides anyway: inf where the
    /// values differ, nan where they are all equal (0 / 0).
    #[test]
    fn variance_with_ddof_at_or_over_n_is_inf_or_nan_as_numpy() {
        // Column 0 differs, column 1 is constant.
        let x = arr(&[3, 2], |i| if i % 2 == 0 { i as f64 } else { 1.0 });
        for ddof in [3.0, 4.0, 10.0] {
            let r = Reduction {
                op: ReduceOp::Var,
                axes: vec![0],
                ddof,
                out_dtype: DType::F64,
                out_shape: vec![2],
                input_shape: vec![],
                origin: vec![],
            };
            let v = Partial::of(x.clone(), &r)
                .unwrap()
                .finish(&r)
                .unwrap()
                .to_f64();
            assert_eq!(v[[0]], f64::INFINITY, "ddof {ddof}");
            assert!(v[[1]].is_nan(), "ddof {ddof}");
        }
    }

    #[test]
    fn min_over_an_empty_axis_is_an_error_only_when_it_has_values_to_give() {
        let empty = Data::F64(ArrayD::zeros(IxDyn(&[0, 3])));
        let red = |axes: Vec<usize>, out_shape: Vec<usize>| Reduction {
            op: ReduceOp::Min,
            axes,
            ddof: 0.0,
            out_dtype: DType::F64,
            out_shape,
            input_shape: vec![],
            origin: vec![],
        };
        let r = red(vec![1], vec![0]);
        let m = Partial::of(empty.clone(), &r).unwrap().finish(&r).unwrap();
        assert_eq!(m.shape(), &[0]);
        let r = red(vec![0], vec![3]);
        let e = Partial::of(empty, &r).unwrap_err();
        assert!(e.contains("zero-size array"), "{e}");
    }

    #[test]
    fn fused_blocks_evaluate_with_broadcasting_and_transpose() {
        // (x + x.T) - row, on a 3x3 chunk.
        let x = arr(&[3, 3], |i| i as f64);
        let row = arr(&[3], |i| 10.0 * i as f64);
        let b = Block::Binary(
            BinOp::Sub,
            Box::new(Block::Binary(
                BinOp::Add,
                Box::new(Block::Input(0)),
                Box::new(Block::Transpose(Box::new(Block::Input(0)), vec![1, 0])),
            )),
            Box::new(Block::Input(1)),
        );
        let out = b.evaluate(&[x, row], &NoReads).unwrap().to_f64();
        // element (1, 2): x[1,2] + x[2,1] - 20 = 5 + 7 - 20
        assert_eq!(out[[1, 2]], -8.0);
        assert_eq!(out.shape(), &[3, 3]);
    }

    #[test]
    fn partials_merge_to_the_whole_arrays_statistics() {
        let x = arr(&[4, 6], |i| ((i * 37) % 11) as f64 - 3.0);
        let whole: Vec<f64> = x.to_f64().iter().copied().collect();
        let mean = whole.iter().sum::<f64>() / 24.0;
        let var = whole.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 23.0;
        let red = Reduction {
            op: ReduceOp::Std,
            axes: vec![0, 1],
            ddof: 1.0,
            out_dtype: DType::F64,
            out_shape: vec![],
            input_shape: vec![],
            origin: vec![],
        };
        // Split into column halves, reduce each, merge.
        let halves = [
            slice(x.clone(), &[Dim::full(4), Dim::range(0, 2)]).unwrap(),
            slice(x.clone(), &[Dim::full(4), Dim::range(2, 4)]).unwrap(),
        ];
        let mut parts = halves.into_iter().map(|h| Partial::of(h, &red).unwrap());
        let first = parts.next().unwrap();
        let merged = parts.fold(first, |a, b| a.merge(b, ReduceOp::Std).unwrap());
        let merged = Partial::decode(&merged.encode()).unwrap();
        let std = merged.finish(&red).unwrap().to_f64();
        assert!((std[[]] - var.sqrt()).abs() < 1e-12);
        // Min along axis 1 with int dtype.
        let xi = x.cast(DType::I32);
        let r = Reduction {
            op: ReduceOp::Min,
            axes: vec![1],
            ddof: 0.0,
            out_dtype: DType::I32,
            out_shape: vec![4],
            input_shape: vec![],
            origin: vec![],
        };
        let m = Partial::of(xi, &r).unwrap().finish(&r).unwrap();
        assert_eq!(m.dtype(), DType::I32);
        assert_eq!(m.to_f64().shape(), &[4]);
    }

    #[test]
    fn generators_depend_only_on_global_position() {
        let g = Generator::Random {
            seed: 7,
            full: vec![4, 5],
        };
        let whole = generate(&g, DType::F64, &[Dim::full(4), Dim::full(5)])
            .unwrap()
            .to_f64();
        let part = generate(&g, DType::F64, &[Dim::range(1, 2), Dim::range(3, 2)])
            .unwrap()
            .to_f64();
        assert_eq!(part[[1, 1]], whole[[2, 4]]);
        assert!(whole.iter().all(|v| (0.0..1.0).contains(v)));
        let a = generate(
            &Generator::Arange {
                start: 1.0,
                step: 2.0,
            },
            DType::I64,
            &[Dim {
                start: 2,
                len: 3,
                step: 2,
            }],
        )
        .unwrap();
        assert_eq!(a.to_f64().as_slice().unwrap(), &[5.0, 9.0, 13.0]);
    }

    #[test]
    fn transposed_operands_are_computed_tile_by_tile() {
        // Sizes that are not multiples of the 64-element tile, both operand orders.
        for (r, c) in [(70, 70), (130, 65), (3, 200)] {
            let x = arr(&[r, c], |i| (i * 7 % 13) as f64);
            let y = arr(&[c, r], |i| (i * 5 % 11) as f64);
            let (Data::F64(xa), Data::F64(ya)) = (x.clone(), y.clone()) else {
                unreachable!()
            };
            let yt = ya.clone().reversed_axes();
            let want = &xa - &yt;
            let got = binary(BinOp::Sub, x.clone(), y.clone().permuted(&[1, 0])).unwrap();
            assert_eq!(got.to_f64(), want);
            let want = &yt - &xa;
            let got = binary(BinOp::Sub, y.permuted(&[1, 0]), x).unwrap();
            assert_eq!(got.to_f64(), want);
            let t = into_row_major(ya.clone().reversed_axes());
            assert!(t.is_standard_layout());
            assert_eq!(t, ya.reversed_axes());
        }
    }

    #[test]
    fn integer_errors_are_reported() {
        let a = Data::I64(ArrayD::from_elem(IxDyn(&[2]), 2));
        let b = Data::I64(ArrayD::from_elem(IxDyn(&[2]), -1));
        assert!(binary(BinOp::Pow, a.clone(), b)
            .unwrap_err()
            .contains("negative integer powers"));
        let c = Data::I64(ArrayD::from_elem(IxDyn(&[3]), 1));
        assert!(binary(BinOp::Add, a, c).unwrap_err().contains("broadcast"));
    }

    proptest::proptest! {
        /// The row-by-row generator gives each element exactly `random_value` at its
        /// row-major index in the whole array, for any strided region of 0 to 3 axes.
        #[test]
        fn random_regions_hold_each_elements_own_value(
            full in proptest::collection::vec(1u64..7, 0..4),
            picks in proptest::collection::vec((0u64..7, 1u64..4, 0u64..7), 3),
            seed in 0u64..1000,
        ) {
            let dims: Vec<Dim> = full
                .iter()
                .zip(&picks)
                .map(|(&n, &(s, step, len))| {
                    let start = s % n;
                    let len = len.min((n - start).div_ceil(step));
                    Dim { start, len, step }
                })
                .collect();
            let got = random_block(seed, &full, &dims).unwrap();
            let shape = dims_shape(&dims);
            let want = ArrayD::from_shape_fn(IxDyn(&shape), |i| {
                let mut index = 0;
                for k in 0..dims.len() {
                    index = index * full[k] + dims[k].start + dims[k].step * i[k] as u64;
                }
                random_value(seed, index)
            });
            proptest::prop_assert_eq!(got, want);
        }

        /// min/max/nanmin/nanmax over any set of axes, of contiguous and transposed chunks
        /// with NaNs, equal a plain lane-by-lane fold.
        #[test]
        fn folds_match_a_plain_fold(
            values in proptest::collection::vec(proptest::sample::select(vec![-1.5, 0.0, 2.0, 7.0, -3.0, f64::NAN]), 24),
            axes in proptest::sample::subsequence(vec![0usize, 1, 2], 0..=3),
            transposed in proptest::bool::ANY,
            op in 0usize..4,
        ) {
            let mut a = ArrayD::from_shape_vec(IxDyn(&[2, 3, 4]), values).unwrap();
            if transposed {
                a = a.permuted_axes(IxDyn(&[2, 0, 1]));
            }
            let pick: fn(f64, f64) -> f64 = [pick_min, pick_max, pick_nanmin, pick_nanmax][op];
            let mut want = a.clone();
            for &ax in &axes {
                want = want
                    .map_axis(Axis(ax), |lane| {
                        let mut it = lane.iter();
                        let first = *it.next().unwrap();
                        it.fold(first, |acc, &x| pick(acc, x))
                    })
                    .insert_axis(Axis(ax));
            }
            let got = fold_axes(&a, &axes, pick);
            proptest::prop_assert_eq!(got.shape(), want.shape());
            for (g, w) in got.iter().zip(want.iter()) {
                proptest::prop_assert!(g == w || (g.is_nan() && w.is_nan()), "{:?} vs {:?}", got, want);
            }
        }

        /// argmin/argmax over chunks (partials with their origins, merged in any grouping,
        /// through the wire form) give the first index of the extreme, NaN first, as a
        /// direct scan does; so do `//` and `%` of ints against Python's definition.
        #[test]
        fn chunked_argmin_argmax_find_the_first_extreme(
            values in proptest::collection::vec(proptest::sample::select(vec![-1.0, 0.0, 2.0, 5.0, f64::NAN]), 1..40),
            cut in 1usize..9,
            max in proptest::bool::ANY,
        ) {
            let op = if max { ReduceOp::ArgMax } else { ReduceOp::ArgMin };
            let r = |origin: usize| Reduction {
                op,
                axes: vec![0],
                ddof: 0.0,
                out_dtype: DType::I64,
                out_shape: vec![],
                input_shape: vec![values.len()],
                origin: vec![origin],
            };
            let partials: Vec<Partial> = values
                .chunks(cut)
                .enumerate()
                .map(|(k, c)| {
                    let d = Data::F64(ArrayD::from_shape_vec(IxDyn(&[c.len()]), c.to_vec()).unwrap());
                    let p = Partial::of(d, &r(k * cut)).unwrap();
                    Partial::decode(&p.encode()).unwrap()
                })
                .collect();
            // Merge right to left, so later chunks are met first.
            let mut it = partials.into_iter().rev();
            let first = it.next().unwrap();
            let merged = it.fold(first, |acc, p| p.merge(acc, op).unwrap());
            let got = merged.finish(&r(0)).unwrap().to_f64().into_raw_vec_and_offset().0[0] as usize;
            let want = match values.iter().position(|v| v.is_nan()) {
                Some(i) => i,
                None => {
                    let best = values.iter().copied().fold(values[0], |a, v| if (v > a) == max && v != a { v } else { a });
                    values.iter().position(|&v| v == best).unwrap()
                }
            };
            proptest::prop_assert_eq!(got, want);
        }

        #[test]
        fn integer_floor_division_and_modulo_are_pythons(a in -50i64..50, b in -7i64..7) {
            let (q, m) = (Elem::floor_div(a, b), Elem::floor_mod(a, b));
            if b == 0 {
                proptest::prop_assert_eq!((q, m), (0, 0));
            } else {
                proptest::prop_assert_eq!(q, (a as f64 / b as f64).floor() as i64);
                proptest::prop_assert_eq!(q * b + m, a);
                proptest::prop_assert!(m == 0 || (m < 0) == (b < 0));
            }
        }
    }
}
