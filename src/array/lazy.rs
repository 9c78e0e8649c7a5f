//! [`Array`]: a lazy, chunked n-d array, like dask.array. Building an expression only records
//! it (shape, dtype and chunking are known at once, so errors come before anything runs);
//! [`super::plan`] turns it into tasks when it is computed or stored.

use std::sync::Arc;

use super::block::{BinOp, CmpOp, Dim, Generator, ReduceOp, Reduction, UnaryOp};
use super::data::{broadcast_shapes, DType, Scalar};
use super::hdf5io;

/// Chunks of about this many bytes when neither the user nor the file says otherwise: large
/// enough that per-task overhead vanishes, small enough that a few fit in a worker's memory.
pub const AUTO_CHUNK_BYTES: usize = 8 << 20;

/// At most this many chunks in one array: each is a task, and the whole graph goes to the
/// scheduler in one message (at 5 million chunks it exceeded the 256 MiB message limit and
/// the scheduler closed the connection). Checked before any chunk grid is allocated.
pub const MAX_CHUNKS: usize = 1_000_000;

/// At most this many bytes in one chunk: a worker holds a few chunks at once.
pub const MAX_CHUNK_BYTES: usize = 512 << 20;

/// Refuses, before anything is allocated, an array the cluster cannot hold or schedule:
/// a shape whose size overflows, more than [`MAX_CHUNKS`] chunks, or chunks over
/// [`MAX_CHUNK_BYTES`]. `axes` has, per axis, the number of chunks and the longest one.
pub fn check_layout(shape: &[usize], axes: &[(usize, usize)], dtype: DType) -> ArrayResult<()> {
    let bytes = shape
        .iter()
        .try_fold(dtype.size(), |acc, &s| acc.checked_mul(s))
        .filter(|&b| b <= isize::MAX as usize);
    if bytes.is_none() {
        return Err(format!(
            "shape {shape:?} is too large: its {dtype} elements do not fit in a 64-bit size"
        ));
    }
    let longest: Vec<usize> = axes.iter().map(|&(_, c)| c).collect();
    let count = axes
        .iter()
        .try_fold(1usize, |acc, &(n, _)| acc.checked_mul(n));
    if count.is_none_or(|n| n > MAX_CHUNKS) {
        let count = count.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
        return Err(format!(
            "shape {shape:?} in chunks of {longest:?} makes {count} chunks; at most {MAX_CHUNKS} \
             chunks per array (one task each, and the scheduler takes the graph in one \
             message): use larger chunks (chunks=... or --chunks)"
        ));
    }
    let chunk_bytes = longest
        .iter()
        .try_fold(dtype.size(), |acc, &c| acc.checked_mul(c));
    if chunk_bytes.is_none_or(|b| b > MAX_CHUNK_BYTES) {
        let size = chunk_bytes.map_or_else(
            || "more than 2^64 bytes".to_string(),
            |b| format!("{} MiB", b >> 20),
        );
        return Err(format!(
            "chunks of {longest:?} {dtype} are {size} each; at most {} MiB per chunk (a \
             worker holds a few at once): use smaller chunks (chunks=... or --chunks)",
            MAX_CHUNK_BYTES >> 20
        ));
    }
    Ok(())
}

/// [`check_layout`] of a regular chunking, from lengths alone.
fn check_regular(shape: &[usize], chunk: &[usize], dtype: DType) -> ArrayResult<()> {
    let axes: Vec<(usize, usize)> = shape
        .iter()
        .zip(chunk)
        .map(|(&s, &c)| (s.div_ceil(c.max(1)).max(1), c))
        .collect();
    check_layout(shape, &axes, dtype)
}

/// [`check_layout`] of a chunk grid that exists.
fn check_grid(shape: &[usize], chunks: &[Vec<usize>], dtype: DType) -> ArrayResult<()> {
    let axes: Vec<(usize, usize)> = chunks
        .iter()
        .map(|c| (c.len(), c.iter().copied().max().unwrap_or(0)))
        .collect();
    check_layout(shape, &axes, dtype)
}

/// An operand of `where` (or of another function taking numbers too).
#[derive(Clone, Debug)]
pub enum Operand {
    Array(Array),
    Number(Scalar),
}

/// How one input axis is selected by a slice.
#[derive(Clone, Debug, PartialEq)]
pub enum Select {
    Range(Dim),
    /// A single index: the axis disappears.
    Index(u64),
}

#[derive(Debug)]
pub(crate) enum Op {
    Read {
        file: String,
        dataset: String,
    },
    Generate(Generator),
    Scalar(Scalar),
    Cast(Array),
    Unary(UnaryOp, Array),
    Binary(BinOp, Array, Array),
    /// Operands cast to one type; the result is bool.
    Compare(CmpOp, Array, Array),
    /// Condition (bool), then the two choices (cast to one type).
    Where(Array, Array, Array),
    Transpose(Array, Vec<usize>),
    /// Length-1 axes added or removed: per output axis, the input axis it is (None: a new
    /// axis of length 1); input axes no output axis names have length 1.
    Regroup(Array, Vec<Option<usize>>),
    /// The axes listed reversed (negative slice steps).
    Flip(Array, Vec<usize>),
    /// The operands one after another along an axis (each output chunk inside one operand).
    Concat(Vec<Array>, usize),
    /// Median (None) or percentile along an axis: each chunk needs the axis whole.
    Quantile(Array, Option<f64>, usize),
    /// The same values in C order in another shape, chunked along the first axis only, in
    /// blocks that are whole slabs of the input's first axis too.
    Reshape(Array),
    Slice(Array, Vec<Select>),
    /// Same values, other chunks.
    Rechunk(Array),
    Reduce(Array, Reduction),
    /// cumsum (`Add`) or cumprod (`Mul`) along an axis: per-chunk scans plus carried totals.
    Scan(Array, BinOp, usize),
    Dot(Array, Array),
}

impl Op {
    /// The arrays this operation reads (in order).
    pub(crate) fn operands(&self) -> Vec<&Array> {
        match self {
            Op::Read { .. } | Op::Generate(_) | Op::Scalar(_) => vec![],
            Op::Cast(x)
            | Op::Unary(_, x)
            | Op::Transpose(x, _)
            | Op::Regroup(x, _)
            | Op::Flip(x, _)
            | Op::Quantile(x, _, _)
            | Op::Reshape(x)
            | Op::Slice(x, _)
            | Op::Rechunk(x)
            | Op::Reduce(x, _)
            | Op::Scan(x, _, _) => vec![x],
            Op::Binary(_, x, y) | Op::Compare(_, x, y) | Op::Dot(x, y) => vec![x, y],
            Op::Where(c, x, y) => vec![c, x, y],
            Op::Concat(xs, _) => xs.iter().collect(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Node {
    pub op: Op,
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// Chunk lengths along each axis.
    pub chunks: Vec<Vec<usize>>,
}

/// A lazy chunked array; cheap to clone (shared expression nodes).
#[derive(Clone, Debug)]
pub struct Array {
    pub(crate) node: Arc<Node>,
}

/// Why an expression cannot be built (the message names the operands and the fix).
pub type ArrayResult<T> = std::result::Result<T, String>;

/// Splits `len` into chunks of `chunk` (the last one ragged).
pub fn regular_chunks(len: usize, chunk: usize) -> Vec<usize> {
    let chunk = chunk.max(1);
    if len == 0 {
        return vec![0];
    }
    let mut out = vec![chunk; len / chunk];
    if !len.is_multiple_of(chunk) {
        out.push(len % chunk);
    }
    out
}

/// Chunk shape of about [`AUTO_CHUNK_BYTES`]: grow from `base` (the file's chunks, or one
/// element) by whole multiples, last axis first, so chunks stay aligned with the file's.
pub fn auto_chunk_shape(shape: &[usize], base: Option<&[usize]>, itemsize: usize) -> Vec<usize> {
    let mut c: Vec<usize> = match base {
        Some(b) => b
            .iter()
            .zip(shape)
            .map(|(&b, &s)| b.clamp(1, s.max(1)))
            .collect(),
        None => vec![1; shape.len()],
    };
    let bytes = |c: &[usize]| c.iter().product::<usize>() * itemsize;
    if base.is_some() && bytes(&c) >= AUTO_CHUNK_BYTES / 4 {
        return c;
    }
    // Widen the last axes to full length first (contiguous reads), then grow the leading one.
    for ax in (0..shape.len()).rev() {
        let room = AUTO_CHUNK_BYTES / bytes(&c).max(1);
        if room <= 1 {
            break;
        }
        let unit = c[ax];
        let want = c[ax].saturating_mul(room).min(shape[ax].max(1));
        c[ax] = (want / unit).max(1) * unit;
    }
    c
}

impl Array {
    /// The largest chunk (shape and dtype) of any array in this expression: the inputs' and
    /// generators' chunks as well as the result's. What a worker must at least hold for one
    /// task, so what a memory error names.
    pub fn largest_chunk(&self) -> (Vec<usize>, DType) {
        let n = &self.node;
        let own: Vec<usize> = n
            .chunks
            .iter()
            .map(|c| c.iter().copied().max().unwrap_or(0))
            .collect();
        let mut best = (own, n.dtype);
        let size = |(s, d): &(Vec<usize>, DType)| s.iter().product::<usize>() * d.size();
        for x in n.op.operands() {
            let c = x.largest_chunk();
            if size(&c) > size(&best) {
                best = c;
            }
        }
        best
    }

    fn new(op: Op, shape: Vec<usize>, dtype: DType, chunks: Vec<Vec<usize>>) -> Array {
        Array {
            node: Arc::new(Node {
                op,
                shape,
                dtype,
                chunks,
            }),
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.node.shape
    }

    pub fn ndim(&self) -> usize {
        self.node.shape.len()
    }

    pub fn dtype(&self) -> DType {
        self.node.dtype
    }

    pub fn chunks(&self) -> &[Vec<usize>] {
        &self.node.chunks
    }

    /// Bytes of the whole array.
    pub fn nbytes(&self) -> usize {
        self.shape().iter().product::<usize>() * self.dtype().size()
    }

    /// Number of chunks.
    pub fn nchunks(&self) -> usize {
        self.chunks().iter().map(Vec::len).product()
    }

    /// An HDF5 dataset, chunked as given, else as the file is (grown to a sensible size).
    pub fn from_hdf5(file: &str, dataset: &str, chunks: Option<&[usize]>) -> ArrayResult<Array> {
        let info = hdf5io::describe(file, dataset)?;
        let chunk_shape = match chunks {
            Some(c) => check_chunks(c, &info.shape)?,
            None => auto_chunk_shape(&info.shape, info.chunks.as_deref(), info.dtype.size()),
        };
        check_regular(&info.shape, &chunk_shape, info.dtype)?;
        let grid = grid_of(&info.shape, &chunk_shape);
        Ok(Array::new(
            Op::Read {
                file: file.to_string(),
                dataset: dataset.to_string(),
            },
            info.shape,
            info.dtype,
            grid,
        ))
    }

    fn generated(
        g: Generator,
        shape: &[usize],
        dtype: DType,
        chunks: Option<&[usize]>,
    ) -> ArrayResult<Array> {
        let chunk_shape = match chunks {
            Some(c) => check_chunks(c, shape)?,
            None => auto_chunk_shape(shape, None, dtype.size()),
        };
        check_regular(shape, &chunk_shape, dtype)?;
        Ok(Array::new(
            Op::Generate(g),
            shape.to_vec(),
            dtype,
            grid_of(shape, &chunk_shape),
        ))
    }

    pub fn full(
        shape: &[usize],
        value: Scalar,
        dtype: DType,
        chunks: Option<&[usize]>,
    ) -> ArrayResult<Array> {
        Array::generated(Generator::Fill(value), shape, dtype, chunks)
    }

    pub fn ones(shape: &[usize], chunks: Option<&[usize]>) -> ArrayResult<Array> {
        Array::full(shape, Scalar::Float(1.0), DType::F64, chunks)
    }

    pub fn zeros(shape: &[usize], chunks: Option<&[usize]>) -> ArrayResult<Array> {
        Array::full(shape, Scalar::Float(0.0), DType::F64, chunks)
    }

    /// `start, start + step, ...` below `stop`, as NumPy's arange (int64 when all are ints).
    pub fn arange(
        start: Scalar,
        stop: Scalar,
        step: Scalar,
        chunks: Option<&[usize]>,
    ) -> ArrayResult<Array> {
        let (a, b, s) = (start.as_f64(), stop.as_f64(), step.as_f64());
        if s == 0.0 || !s.is_finite() {
            return Err("arange: step must be a non-zero number".into());
        }
        let n = ((b - a) / s).ceil().max(0.0) as usize;
        let dtype = match (start, stop, step) {
            (Scalar::Int(_), Scalar::Int(_), Scalar::Int(_)) => DType::I64,
            _ => DType::F64,
        };
        Array::generated(Generator::Arange { start: a, step: s }, &[n], dtype, chunks)
    }

    /// Uniform values in [0, 1), the same for a given seed whatever the chunks or cluster.
    pub fn random(shape: &[usize], seed: u64, chunks: Option<&[usize]>) -> ArrayResult<Array> {
        let full = shape.iter().map(|&s| s as u64).collect();
        Array::generated(Generator::Random { seed, full }, shape, DType::F64, chunks)
    }

    /// A Python number, typed when it meets an array.
    fn scalar(value: Scalar, dtype: DType) -> Array {
        Array::new(Op::Scalar(value), vec![], dtype, vec![])
    }

    pub fn astype(&self, dtype: DType) -> Array {
        if dtype == self.dtype() {
            return self.clone();
        }
        let n = &self.node;
        Array::new(
            Op::Cast(self.clone()),
            n.shape.clone(),
            dtype,
            n.chunks.clone(),
        )
    }

    /// An elementwise function, typed as NumPy 2 types it: float functions give float64
    /// (float32 stays float32); floor, ceil, round, sign and abs keep the type; isnan and
    /// isfinite give bool. What NumPy refuses (or would compute in float16 or int8, which
    /// arrays here do not have) is refused, before anything runs.
    pub fn unary(&self, op: UnaryOp) -> ArrayResult<Array> {
        let dtype = self.dtype();
        let is_bool = dtype == DType::Bool;
        let input = match op {
            UnaryOp::Neg if is_bool => {
                return Err(
                    "The numpy boolean negative, the `-` operator, is not supported, \
                            use the `~` operator or the logical_not function instead"
                        .into(),
                )
            }
            UnaryOp::Sign if is_bool => {
                return Err(
                    "ufunc 'sign' did not contain a loop with signature matching \
                            types <class 'numpy.dtypes.BoolDType'> -> None (NumPy has no sign \
                            of bools; cast first, e.g. x.astype('i8'))"
                        .into(),
                )
            }
            UnaryOp::Invert if dtype.is_float() => {
                return Err(format!(
                    "ufunc 'invert' not supported for the input types ({dtype}): `~` takes \
                     integers and bools"
                ))
            }
            UnaryOp::Round(d) if !dtype.is_float() && (is_bool || d < 0) => {
                return Err(format!(
                    "round of a {dtype} array{} is not supported here (NumPy computes it in \
                     {}); cast first, e.g. x.astype('f8')",
                    if is_bool { "" } else { " to negative decimals" },
                    if is_bool {
                        "float16"
                    } else {
                        "a wider integer"
                    },
                ))
            }
            UnaryOp::Neg
            | UnaryOp::Abs
            | UnaryOp::Sign
            | UnaryOp::Invert
            | UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Round(_)
            | UnaryOp::IsNan
            | UnaryOp::IsFinite => self.clone(),
            _ if is_bool => {
                return Err(format!(
                    "{op:?} of a bool array gives float16 in NumPy, which arrays here do not \
                     have; cast first, e.g. x.astype('f8')"
                )
                .to_lowercase())
            }
            _ => self.astype(dtype.float_of()),
        };
        let out = match op {
            UnaryOp::IsNan | UnaryOp::IsFinite => DType::Bool,
            _ => input.dtype(),
        };
        let n = &input.node;
        let (shape, chunks) = (n.shape.clone(), n.chunks.clone());
        Ok(Array::new(Op::Unary(op, input), shape, out, chunks))
    }

    /// The type `op` computes in for operands promoted to `dtype`, or NumPy's refusal.
    /// Bools add as `|` and multiply as `&` (True + True is True in NumPy).
    fn binary_dtype(op: BinOp, dtype: DType) -> ArrayResult<(BinOp, DType)> {
        let bitwise = matches!(op, BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor);
        if bitwise && dtype.is_float() {
            let name = match op {
                BinOp::BitAnd => "bitwise_and",
                BinOp::BitOr => "bitwise_or",
                _ => "bitwise_xor",
            };
            return Err(format!(
                "ufunc '{name}' not supported for the input types ({dtype}): & | ^ take \
                 integers and bools"
            ));
        }
        Ok(match (op, dtype) {
            (BinOp::Div, d) if !d.is_float() => (op, DType::F64),
            (BinOp::Add, DType::Bool) => (BinOp::BitOr, DType::Bool),
            (BinOp::Mul, DType::Bool) => (BinOp::BitAnd, DType::Bool),
            (BinOp::Sub, DType::Bool) => {
                return Err(
                    "numpy boolean subtract, the `-` operator, is not supported, use \
                            the bitwise_xor, the `^` operator, or the logical_xor function \
                            instead"
                        .into(),
                )
            }
            (BinOp::Pow | BinOp::FloorDiv | BinOp::Mod, DType::Bool) => {
                return Err(
                    "this operation on two bool arrays gives int8 in NumPy, which \
                            arrays here do not have; cast first, e.g. x.astype('i8')"
                        .into(),
                )
            }
            _ => (op, dtype),
        })
    }

    /// `self op other` with NumPy broadcasting and type promotion.
    pub fn binary(&self, op: BinOp, other: &Array) -> ArrayResult<Array> {
        let shape = broadcast_all(&[self, other])?;
        let (op, dtype) = Array::binary_dtype(op, DType::promote(self.dtype(), other.dtype()))?;
        let chunks = broadcast_chunks(&shape, &[self, other]);
        // Broadcasting (n, 1) against (1, m) multiplies the operands' chunk counts.
        check_grid(&shape, &chunks, dtype)?;
        Ok(Array::new(
            Op::Binary(op, self.astype(dtype), other.astype(dtype)),
            shape,
            dtype,
            chunks,
        ))
    }

    /// `self op number` (or `number op self` with `reversed`), typed as NumPy types
    /// Python scalars.
    /// Fails where NumPy 2 fails before computing: an int that does not fit the array's type
    /// (NEP 50), an integer array to a negative integer power.
    pub fn with_scalar(&self, op: BinOp, value: Scalar, reversed: bool) -> ArrayResult<Array> {
        // `/` of an int array computes in float64 whatever the Python number (NumPy 2 takes
        // `int32 / 2**31` too); other operations take the number into the array's type.
        let dtype = if op == BinOp::Div && !self.dtype().is_float() {
            DType::F64
        } else {
            DType::with_scalar(self.dtype(), &value)?
        };
        let (op, dtype) = Array::binary_dtype(op, dtype)?;
        if op == BinOp::Pow && !reversed && !dtype.is_float() && value.as_f64() < 0.0 {
            return Err("Integers to negative integer powers are not allowed \
                        (write the base as a float, e.g. x.astype('f8') ** -1)"
                .into());
        }
        let a = self.astype(dtype);
        let s = Array::scalar(value, dtype);
        let (l, r) = if reversed { (s, a) } else { (a, s) };
        let n = &self.node;
        Ok(Array::new(
            Op::Binary(op, l, r),
            n.shape.clone(),
            dtype,
            n.chunks.clone(),
        ))
    }

    /// `self op other` compared elementwise (broadcast), a bool array.
    pub fn compare(&self, op: CmpOp, other: &Array) -> ArrayResult<Array> {
        let shape = broadcast_all(&[self, other])?;
        let dtype = DType::promote(self.dtype(), other.dtype());
        let chunks = broadcast_chunks(&shape, &[self, other]);
        check_grid(&shape, &chunks, DType::Bool)?;
        Ok(Array::new(
            Op::Compare(op, self.astype(dtype), other.astype(dtype)),
            shape,
            DType::Bool,
            chunks,
        ))
    }

    /// `self op number` (`number op self` with `reversed`). Compared in the type NumPy 2
    /// uses, except that an int beyond an int32 array's range is compared in int64 rather
    /// than refused: NumPy 2 compares such Python ints exactly too.
    pub fn compare_scalar(&self, op: CmpOp, value: Scalar, reversed: bool) -> ArrayResult<Array> {
        let dtype = DType::with_scalar(self.dtype(), &value).unwrap_or(DType::I64);
        let a = self.astype(dtype);
        let s = Array::scalar(value, dtype);
        let (l, r) = if reversed { (s, a) } else { (a, s) };
        let n = &self.node;
        Ok(Array::new(
            Op::Compare(op, l, r),
            n.shape.clone(),
            DType::Bool,
            n.chunks.clone(),
        ))
    }

    /// `where(cond, a, b)`: `a` where `cond` (as bool) holds, else `b`; a number for `a` or
    /// `b` is typed as NumPy 2 types Python numbers (NEP 50).
    pub fn where_(cond: &Array, a: Operand, b: Operand) -> ArrayResult<Array> {
        let dtype = match (&a, &b) {
            (Operand::Array(x), Operand::Array(y)) => DType::promote(x.dtype(), y.dtype()),
            (Operand::Array(x), Operand::Number(s)) | (Operand::Number(s), Operand::Array(x)) => {
                DType::with_scalar(x.dtype(), s)?
            }
            (Operand::Number(Scalar::Int(_)), Operand::Number(Scalar::Int(_))) => DType::I64,
            (Operand::Number(_), Operand::Number(_)) => DType::F64,
        };
        let typed = |o: Operand| match o {
            Operand::Array(x) => x.astype(dtype),
            Operand::Number(s) => Array::scalar(s, dtype),
        };
        let (a, b) = (typed(a), typed(b));
        let shape = broadcast_all(&[cond, &a, &b])?;
        let chunks = broadcast_chunks(&shape, &[cond, &a, &b]);
        check_grid(&shape, &chunks, dtype)?;
        Ok(Array::new(
            Op::Where(cond.astype(DType::Bool), a, b),
            shape,
            dtype,
            chunks,
        ))
    }

    /// Axes reversed (`.T`) or permuted.
    pub fn transpose(&self, perm: Option<&[usize]>) -> ArrayResult<Array> {
        let perm: Vec<usize> = match perm {
            Some(p) => p.to_vec(),
            None => (0..self.ndim()).rev().collect(),
        };
        let mut seen = perm.clone();
        seen.sort_unstable();
        if seen != (0..self.ndim()).collect::<Vec<_>>() {
            return Err(format!(
                "axes {perm:?} are not a permutation of the {} axes",
                self.ndim()
            ));
        }
        let n = &self.node;
        Ok(Array::new(
            Op::Transpose(self.clone(), perm.clone()),
            perm.iter().map(|&p| n.shape[p]).collect(),
            n.dtype,
            perm.iter().map(|&p| n.chunks[p].clone()).collect(),
        ))
    }

    /// Length-1 axes added (`None` in `map`) or dropped (input axes `map` leaves out, which
    /// must have length 1): `x[None]`, `expand_dims`, `squeeze`.
    pub fn regroup(&self, map: &[Option<usize>]) -> ArrayResult<Array> {
        let n = &self.node;
        for ax in 0..self.ndim() {
            if !map.contains(&Some(ax)) && n.shape[ax] != 1 {
                return Err(format!(
                    "cannot select an axis to squeeze out which has size not equal to one \
                     (axis {ax} has size {})",
                    n.shape[ax]
                ));
            }
        }
        let shape = map.iter().map(|m| m.map_or(1, |a| n.shape[a])).collect();
        let chunks = map
            .iter()
            .map(|m| m.map_or(vec![1], |a| n.chunks[a].clone()))
            .collect();
        Ok(Array::new(
            Op::Regroup(self.clone(), map.to_vec()),
            shape,
            n.dtype,
            chunks,
        ))
    }

    /// NumPy's `squeeze`: the given length-1 axes (all of them without `axis`) removed.
    pub fn squeeze(&self, axis: Option<&[i64]>) -> ArrayResult<Array> {
        let axes = match axis {
            None => (0..self.ndim()).filter(|&a| self.shape()[a] == 1).collect(),
            Some(list) => normalize_axes(list, self.ndim())?,
        };
        let map: Vec<Option<usize>> = (0..self.ndim())
            .filter(|a| !axes.contains(a))
            .map(Some)
            .collect();
        self.regroup(&map)
    }

    /// NumPy's `expand_dims`: new length-1 axes at the given positions of the result.
    pub fn expand_dims(&self, axis: &[i64]) -> ArrayResult<Array> {
        let out_nd = self.ndim() + axis.len();
        let new = normalize_axes(axis, out_nd)?;
        let mut input = 0..self.ndim();
        let map: Vec<Option<usize>> = (0..out_nd)
            .map(|k| if new.contains(&k) { None } else { input.next() })
            .collect();
        self.regroup(&map)
    }

    /// The listed axes reversed (what a negative slice step adds to a positive one).
    pub fn flip(&self, axes: &[usize]) -> Array {
        if axes.is_empty() {
            return self.clone();
        }
        let n = &self.node;
        let mut chunks = n.chunks.clone();
        for &a in axes {
            chunks[a].reverse();
        }
        Array::new(
            Op::Flip(self.clone(), axes.to_vec()),
            n.shape.clone(),
            n.dtype,
            chunks,
        )
    }

    /// NumPy's `reshape` (C order; one -1 inferred). Length-1 axes only added or removed
    /// keep the chunks; otherwise the result is chunked along its first axis in blocks that
    /// are whole slabs of the input's first axis too (a flat range both sides agree on: the
    /// least common multiple of the two slab sizes), each block read as one region. Refused
    /// when that unit is larger than a chunk may be.
    pub fn reshape(&self, shape: &[i64]) -> ArrayResult<Array> {
        let size: usize = self.shape().iter().product();
        let unknown = shape.iter().filter(|&&d| d == -1).count();
        if unknown > 1 {
            return Err("can only specify one unknown dimension".into());
        }
        if let Some(&bad) = shape.iter().find(|&&d| d < -1) {
            return Err(format!("negative dimensions not allowed (got {bad})"));
        }
        let known: usize = shape
            .iter()
            .filter(|&&d| d >= 0)
            .map(|&d| d as usize)
            .product();
        let mut out: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        if unknown == 1 {
            if known == 0 || !size.is_multiple_of(known) {
                return Err(format!(
                    "cannot reshape array of size {size} into shape {}",
                    python_tuple(shape)
                ));
            }
            let k = shape.iter().position(|&d| d == -1).expect("one -1");
            out[k] = size / known;
        } else if known != size {
            return Err(format!(
                "cannot reshape array of size {size} into shape {}",
                python_tuple(shape)
            ));
        }
        // Only length-1 axes differ: no data moves.
        let a: Vec<usize> = self.shape().iter().copied().filter(|&n| n != 1).collect();
        let b: Vec<usize> = out.iter().copied().filter(|&n| n != 1).collect();
        if a == b && size > 0 {
            let mut input = (0..self.ndim()).filter(|&k| self.shape()[k] != 1);
            let map: Vec<Option<usize>> = out
                .iter()
                .map(|&n| if n == 1 { None } else { input.next() })
                .collect();
            return self.regroup(&map);
        }
        let slab_in: usize = self.shape().iter().skip(1).product();
        let slab_out: usize = out.iter().skip(1).product();
        let chunks = if out.is_empty() || size == 0 || self.ndim() == 0 {
            out.iter().map(|&n| vec![n]).collect()
        } else {
            let unit = lcm(slab_in.max(1), slab_out.max(1));
            let unit_rows = unit / slab_out.max(1);
            // Blocks of about the input's chunk size, in whole units.
            let chunk_elems: usize = self
                .chunks()
                .iter()
                .map(|c| c.iter().copied().max().unwrap_or(1))
                .product();
            let rows = (chunk_elems / slab_out.max(1) / unit_rows).max(1) * unit_rows;
            if rows
                .saturating_mul(slab_out)
                .saturating_mul(self.dtype().size())
                > MAX_CHUNK_BYTES
            {
                return Err(format!(
                    "reshape of {} into {} needs chunks of at least {unit} elements (whole \
                     slabs of both shapes), over the {} MiB chunk limit; reshape in steps, \
                     or keep the trailing axes",
                    python_tuple(self.shape()),
                    python_tuple(&out),
                    MAX_CHUNK_BYTES >> 20
                ));
            }
            let mut c = vec![regular_chunks(out[0], rows)];
            c.extend(out.iter().skip(1).map(|&n| vec![n]));
            c
        };
        check_grid(&out, &chunks, self.dtype())?;
        Ok(Array::new(
            Op::Reshape(self.clone()),
            out,
            self.dtype(),
            chunks,
        ))
    }

    /// NumPy's `median` (`q` None) or `percentile(x, q)` along `axis` ('linear' method):
    /// float64 (float32 kept), NaN where a lane holds NaN. Each task holds its chunk's lanes
    /// whole along the axis; without an axis the flattened array is one lane.
    pub fn quantile(&self, q: Option<f64>, axis: Option<i64>) -> ArrayResult<Array> {
        if let Some(q) = q {
            if !(0.0..=100.0).contains(&q) {
                return Err("Percentiles must be in the range [0, 100]".into());
            }
        }
        let Some(axis) = axis else {
            let flat = if self.ndim() == 1 {
                self.clone()
            } else {
                self.reshape(&[-1])?
            };
            return flat.quantile(q, Some(0));
        };
        let ax = normalize_axes(&[axis], self.ndim().max(1))?[0];
        if self.ndim() == 0 {
            return Err("median/percentile of a 0-d array is not supported here".into());
        }
        let len = self.shape()[ax];
        if len == 0 && q.is_some() {
            return Err(format!(
                "index -1 is out of bounds for axis {ax} with size 0 (percentile of no values)"
            ));
        }
        let dtype = self.dtype().float_of();
        let x = self.astype(dtype);
        let mut need: Vec<usize> = x
            .chunks()
            .iter()
            .map(|c| c.iter().copied().max().unwrap_or(1))
            .collect();
        need[ax] = len.max(1);
        check_regular(x.shape(), &need, dtype)?;
        let n = &x.node;
        let mut shape = n.shape.clone();
        let mut chunks = n.chunks.clone();
        shape.remove(ax);
        chunks.remove(ax);
        Ok(Array::new(Op::Quantile(x, q, ax), shape, dtype, chunks))
    }

    /// NumPy's `concatenate` along `axis`; the types promoted together.
    pub fn concatenate(arrays: &[Array], axis: i64) -> ArrayResult<Array> {
        let first = arrays
            .first()
            .ok_or("need at least one array to concatenate")?;
        let nd = first.ndim();
        if nd == 0 {
            return Err("zero-dimensional arrays cannot be concatenated".into());
        }
        let ax = normalize_axes(&[axis], nd)?[0];
        let mut dtype = first.dtype();
        for (i, a) in arrays.iter().enumerate() {
            if a.ndim() != nd {
                return Err(format!(
                    "all the input arrays must have same number of dimensions, but the array \
                     at index 0 has {nd} dimension(s) and the array at index {i} has {} \
                     dimension(s)",
                    a.ndim()
                ));
            }
            for k in (0..nd).filter(|&k| k != ax) {
                if a.shape()[k] != first.shape()[k] {
                    return Err(format!(
                        "all the input array dimensions except for the concatenation axis \
                         must match exactly, but along dimension {k}, the array at index 0 \
                         has size {} and the array at index {i} has size {}",
                        first.shape()[k],
                        a.shape()[k]
                    ));
                }
            }
            dtype = DType::promote(dtype, a.dtype());
        }
        let mut shape = first.shape().to_vec();
        shape[ax] = arrays.iter().map(|a| a.shape()[ax]).sum();
        let mut chunks = first.chunks().to_vec();
        chunks[ax] = arrays
            .iter()
            .flat_map(|a| a.chunks()[ax].iter().copied().filter(|&c| c > 0))
            .collect();
        if chunks[ax].is_empty() {
            chunks[ax] = vec![0];
        }
        check_grid(&shape, &chunks, dtype)?;
        let parts = arrays.iter().map(|a| a.astype(dtype)).collect();
        Ok(Array::new(Op::Concat(parts, ax), shape, dtype, chunks))
    }

    /// NumPy's `stack`: the arrays (of one shape) along a new axis.
    pub fn stack(arrays: &[Array], axis: i64) -> ArrayResult<Array> {
        let first = arrays.first().ok_or("need at least one array to stack")?;
        if arrays.iter().any(|a| a.shape() != first.shape()) {
            return Err("all input arrays must have the same shape".into());
        }
        let expanded = arrays
            .iter()
            .map(|a| a.expand_dims(&[axis]))
            .collect::<ArrayResult<Vec<_>>>()?;
        Array::concatenate(&expanded, axis)
    }

    /// Basic slicing: one selection per leading axis (missing trailing axes are taken whole).
    pub fn slice(&self, select: &[Select]) -> ArrayResult<Array> {
        if select.len() > self.ndim() {
            return Err(format!(
                "too many indices: {} for an array of {} dimensions",
                select.len(),
                self.ndim()
            ));
        }
        let n = &self.node;
        let mut full = select.to_vec();
        for ax in select.len()..self.ndim() {
            full.push(Select::Range(Dim::full(n.shape[ax] as u64)));
        }
        let mut shape = Vec::new();
        let mut chunks = Vec::new();
        for (ax, s) in full.iter().enumerate() {
            match s {
                Select::Index(i) if *i >= n.shape[ax] as u64 => {
                    return Err(format!(
                        "index {i} is out of bounds for axis {ax} with size {}",
                        n.shape[ax]
                    ))
                }
                Select::Index(_) => {}
                Select::Range(d) => {
                    if d.last().is_some_and(|l| l >= n.shape[ax] as u64) {
                        return Err(format!("slice outside axis {ax} of size {}", n.shape[ax]));
                    }
                    shape.push(d.len as usize);
                    chunks.push(sliced_chunks(&n.chunks[ax], *d));
                }
            }
        }
        Ok(Array::new(
            Op::Slice(self.clone(), full),
            shape,
            n.dtype,
            chunks,
        ))
    }

    /// The same values in chunks of `chunk_shape` (the last chunk on each axis ragged).
    pub fn rechunk(&self, chunk_shape: &[usize]) -> ArrayResult<Array> {
        let c = check_chunks(chunk_shape, self.shape())?;
        check_regular(self.shape(), &c, self.dtype())?;
        let n = &self.node;
        Ok(Array::new(
            Op::Rechunk(self.clone()),
            n.shape.clone(),
            n.dtype,
            grid_of(&n.shape, &c),
        ))
    }

    /// A reduction over `axis` (None: every axis), as NumPy's `sum`, `mean`, ...
    pub fn reduce(
        &self,
        op: ReduceOp,
        axis: Option<&[i64]>,
        keepdims: bool,
        ddof: f64,
    ) -> ArrayResult<Array> {
        let nd = self.ndim() as i64;
        let mut axes: Vec<usize> = match axis {
            None => (0..self.ndim()).collect(),
            Some(list) => list
                .iter()
                .map(|&a| {
                    let k = if a < 0 { a + nd } else { a };
                    if k < 0 || k >= nd {
                        Err(format!(
                            "axis {a} is out of bounds for an array of dimension {nd}"
                        ))
                    } else {
                        Ok(k as usize)
                    }
                })
                .collect::<ArrayResult<_>>()?,
        };
        axes.sort_unstable();
        if axes.windows(2).any(|w| w[0] == w[1]) {
            // NumPy refuses x.sum(axis=(0, 0)) rather than reduce the axis once.
            return Err(format!(
                "duplicate value in 'axis': {:?}",
                axis.unwrap_or(&[])
            ));
        }
        if matches!(op, ReduceOp::ArgMin | ReduceOp::ArgMax) {
            // NumPy takes one axis or None (the flattened array) here.
            if axis.is_some_and(|a| a.len() != 1) {
                return Err(format!(
                    "{}: axis must be one integer or None, not {:?}",
                    op.name(),
                    axis.unwrap_or(&[])
                ));
            }
            if self.shape().iter().product::<usize>() == 0 {
                return Err(format!("attempt to get {} of an empty sequence", op.name()));
            }
        }
        if let Some(name) = op.without_identity() {
            if axes.iter().any(|&a| self.shape()[a] == 0) {
                return Err(format!(
                    "zero-size array to reduction operation {name} which has no identity"
                ));
            }
        }
        let n = &self.node;
        let mut shape = Vec::new();
        let mut chunks = Vec::new();
        for ax in 0..self.ndim() {
            if !axes.contains(&ax) {
                shape.push(n.shape[ax]);
                chunks.push(n.chunks[ax].clone());
            } else if keepdims {
                shape.push(1);
                chunks.push(vec![1]);
            }
        }
        let dtype = op.result_dtype(n.dtype);
        let reduction = Reduction {
            op,
            axes,
            ddof,
            out_dtype: dtype,
            out_shape: vec![],
            input_shape: n.shape.clone(),
            origin: vec![],
        };
        Ok(Array::new(
            Op::Reduce(self.clone(), reduction),
            shape,
            dtype,
            chunks,
        ))
    }

    /// NumPy's `nansum`, `nanmean`, `nanvar`, `nanstd` (`op` is the plain reduction): NaNs are
    /// left out, built from plain operations (`where(isnan(x), 0, x)` and a count of the
    /// values that are not NaN), so each partial stays exact. As NumPy: a slice of only NaNs
    /// sums to 0 and has a nan mean; a variance with no degrees of freedom left is nan (not
    /// the inf of `var`). Integer and bool arrays have no NaN: the plain reduction.
    pub fn nan_reduce(
        &self,
        op: ReduceOp,
        axis: Option<&[i64]>,
        keepdims: bool,
        ddof: f64,
    ) -> ArrayResult<Array> {
        if !self.dtype().is_float() {
            return self.reduce(op, axis, keepdims, ddof);
        }
        let dtype = self.dtype();
        let nan = self.unary(UnaryOp::IsNan)?;
        let zeroed = Array::where_(
            &nan,
            Operand::Number(Scalar::Int(0)),
            Operand::Array(self.clone()),
        )?;
        let count = |keep: bool| -> ArrayResult<Array> {
            nan.unary(UnaryOp::Invert)?
                .reduce(ReduceOp::Sum, axis, keep, 0.0)
        };
        let mean = |keep: bool| -> ArrayResult<Array> {
            zeroed
                .reduce(ReduceOp::Sum, axis, keep, 0.0)?
                .binary(BinOp::Div, &count(keep)?.astype(dtype))
        };
        match op {
            ReduceOp::Sum => zeroed.reduce(ReduceOp::Sum, axis, keepdims, 0.0),
            ReduceOp::Mean => mean(keepdims),
            ReduceOp::Var | ReduceOp::Std => {
                let dev = self.binary(BinOp::Sub, &mean(true)?)?;
                let dev =
                    Array::where_(&nan, Operand::Number(Scalar::Int(0)), Operand::Array(dev))?;
                let squares = dev.binary(BinOp::Mul, &dev)?;
                let ss = squares.reduce(ReduceOp::Sum, axis, keepdims, 0.0)?;
                let dof = count(keepdims)?.astype(DType::F64).with_scalar(
                    BinOp::Sub,
                    Scalar::Float(ddof),
                    false,
                )?;
                let var = ss.binary(BinOp::Div, &dof.astype(dtype))?;
                let var = Array::where_(
                    &dof.compare_scalar(CmpOp::Le, Scalar::Int(0), false)?,
                    Operand::Number(Scalar::Float(f64::NAN)),
                    Operand::Array(var),
                )?;
                if op == ReduceOp::Std {
                    var.unary(UnaryOp::Sqrt)
                } else {
                    Ok(var)
                }
            }
            other => Err(format!("nan{} is not a reduction here", other.name())),
        }
    }

    /// `cumsum` (`op` Add) or `cumprod` (Mul) along `axis`, typed as NumPy (ints and bools
    /// in int64). Without an axis NumPy scans the flattened array: the same for 1-d arrays,
    /// refused for others (flattening is a reshape, which is not available here).
    pub fn scan(&self, op: BinOp, axis: Option<i64>) -> ArrayResult<Array> {
        let name = if op == BinOp::Add {
            "cumsum"
        } else {
            "cumprod"
        };
        let nd = self.ndim() as i64;
        let axis = match axis {
            None if nd <= 1 => 0,
            None => {
                return Err(format!(
                    "{name} without an axis scans the flattened array, which is not \
                     supported for {nd}-d arrays here; give an axis, e.g. {name}(x, axis=0)"
                ))
            }
            Some(a) => a,
        };
        let k = if axis < 0 { axis + nd.max(1) } else { axis };
        if k < 0 || k >= nd.max(1) {
            return Err(format!(
                "axis {axis} is out of bounds for array of dimension {nd}"
            ));
        }
        let dtype = self.dtype().sum_of();
        let x = if nd == 0 {
            return Err(format!("{name} of a 0-d array is not supported here"));
        } else {
            self.astype(dtype)
        };
        let n = &x.node;
        let (shape, chunks) = (n.shape.clone(), n.chunks.clone());
        Ok(Array::new(
            Op::Scan(x, op, k as usize),
            shape,
            dtype,
            chunks,
        ))
    }

    /// `dot`/`@` of 1-d and 2-d operands, as NumPy: a vector on the left is a row, on the
    /// right a column, and that axis is dropped from the result (vector . vector is 0-d).
    /// Through the blocked matrix product, so the same chunking and limits apply.
    pub fn dot(&self, other: &Array) -> ArrayResult<Array> {
        let (l, r) = (self.ndim(), other.ndim());
        if !(1..=2).contains(&l) || !(1..=2).contains(&r) {
            return Err(format!(
                "dot/@ needs 1-d or 2-d operands here, got shapes {} and {}",
                python_tuple(self.shape()),
                python_tuple(other.shape())
            ));
        }
        let inner_l = self.shape()[l - 1];
        let inner_r = other.shape()[0];
        if inner_l != inner_r {
            return Err(format!(
                "shapes {} and {} not aligned: {} (dim {}) != {} (dim 0)",
                python_tuple(self.shape()),
                python_tuple(other.shape()),
                inner_l,
                l - 1,
                inner_r
            ));
        }
        let a = if l == 1 {
            self.expand_dims(&[0])?
        } else {
            self.clone()
        };
        let b = if r == 1 {
            other.expand_dims(&[1])?
        } else {
            other.clone()
        };
        let product = a.dot2(&b)?;
        let mut drop = Vec::new();
        if l == 1 {
            drop.push(0);
        }
        if r == 1 {
            drop.push(1);
        }
        if drop.is_empty() {
            Ok(product)
        } else {
            product.squeeze(Some(&drop))
        }
    }

    /// Matrix product of two 2-d arrays, blocked; partial products are summed as a tree.
    fn dot2(&self, other: &Array) -> ArrayResult<Array> {
        if self.shape()[1] != other.shape()[0] {
            return Err(format!(
                "shapes {} and {} not aligned: {} (dim 1) != {} (dim 0)",
                python_tuple(self.shape()),
                python_tuple(other.shape()),
                self.shape()[1],
                other.shape()[0]
            ));
        }
        let dtype = DType::promote(self.dtype(), other.dtype());
        if dtype == DType::Bool {
            return Err(
                "dot/@ of two bool arrays is not supported here; cast first, e.g. \
                        x.astype('i8')"
                    .into(),
            );
        }
        // One task per block product: (row blocks) x (inner blocks) x (column blocks).
        let (rows, inner, cols) = (&self.chunks()[0], &self.chunks()[1], &other.chunks()[1]);
        let longest = |c: &[usize]| c.iter().copied().max().unwrap_or(0);
        check_layout(
            &[self.shape()[0], self.shape()[1], other.shape()[1]],
            &[
                (rows.len(), longest(rows)),
                (inner.len(), 1),
                (cols.len(), longest(cols)),
            ],
            dtype,
        )?;
        Ok(Array::new(
            Op::Dot(self.astype(dtype), other.astype(dtype)),
            vec![self.shape()[0], other.shape()[1]],
            dtype,
            vec![self.chunks()[0].clone(), other.chunks()[1].clone()],
        ))
    }
}

/// Axes as NumPy takes them (negative from the end), checked in range and distinct.
fn normalize_axes(list: &[i64], nd: usize) -> ArrayResult<Vec<usize>> {
    let mut out = Vec::with_capacity(list.len());
    for &a in list {
        let k = if a < 0 { a + nd as i64 } else { a };
        if k < 0 || k >= nd as i64 {
            return Err(format!(
                "axis {a} is out of bounds for array of dimension {nd}"
            ));
        }
        if out.contains(&(k as usize)) {
            return Err("repeated axis".into());
        }
        out.push(k as usize);
    }
    Ok(out)
}

fn check_chunks(c: &[usize], shape: &[usize]) -> ArrayResult<Vec<usize>> {
    if c.len() != shape.len() {
        return Err(format!(
            "chunks {c:?} have {} entries for an array of {} dimensions {shape:?}",
            c.len(),
            shape.len()
        ));
    }
    if c.contains(&0) {
        return Err(format!(
            "chunks {c:?}: every chunk length must be at least 1"
        ));
    }
    Ok(c.iter()
        .zip(shape)
        .map(|(&c, &s)| c.min(s.max(1)))
        .collect())
}

fn grid_of(shape: &[usize], chunk: &[usize]) -> Vec<Vec<usize>> {
    shape
        .iter()
        .zip(chunk)
        .map(|(&s, &c)| regular_chunks(s, c))
        .collect()
}

/// NumPy's broadcast of the operands' shapes, or its error.
fn broadcast_all(operands: &[&Array]) -> ArrayResult<Vec<usize>> {
    let mut shape = Some(vec![]);
    for x in operands {
        shape = shape.and_then(|s| broadcast_shapes(&s, x.shape()));
    }
    shape.ok_or_else(|| {
        // NumPy's wording, shapes as Python tuples: "(10,) (24,) ()".
        let shapes: Vec<String> = operands.iter().map(|x| python_tuple(x.shape())).collect();
        format!(
            "operands could not be broadcast together with shapes {}",
            shapes.join(" ")
        )
    })
}

fn lcm(a: usize, b: usize) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    a / gcd(a, b) * b
}

/// A shape as Python prints it: `()`, `(3,)`, `(3, 4)` (also as written, -1 included).
pub fn python_tuple<T: std::fmt::Display>(shape: &[T]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The chunks of a broadcast result: per axis, those of an operand that spans it.
fn broadcast_chunks(shape: &[usize], operands: &[&Array]) -> Vec<Vec<usize>> {
    let n = shape.len();
    (0..n)
        .map(|ax| {
            for &x in operands {
                let pad = n - x.ndim();
                if ax >= pad && x.shape()[ax - pad] == shape[ax] {
                    return x.chunks()[ax - pad].clone();
                }
            }
            regular_chunks(shape[ax], shape[ax])
        })
        .collect()
}

/// Chunks of a strided selection: the selected elements grouped by the input chunk they
/// fall in, small groups merged up to the input's largest chunk. Counted per input chunk,
/// not per element: a slice of a 10^12-element array is planned in a blink.
fn sliced_chunks(input: &[usize], d: Dim) -> Vec<usize> {
    if d.len == 0 {
        return vec![0];
    }
    let max = *input.iter().max().unwrap_or(&1);
    let merge = d.step as usize > max / 2;
    // The index of the first selected element at or after position `at`.
    let first_at = |at: u64| at.saturating_sub(d.start).div_ceil(d.step).min(d.len);
    let mut out: Vec<usize> = Vec::new();
    let mut lo = 0u64;
    for &c in input {
        let hi = lo + c as u64;
        let n = (first_at(hi) - first_at(lo)) as usize;
        lo = hi;
        if n == 0 {
            continue;
        }
        match out.last_mut() {
            Some(last) if merge && *last < max => *last += n,
            _ => out.push(n),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_chunks_grow_from_the_files_chunks() {
        assert_eq!(
            auto_chunk_shape(&[16384, 16384], Some(&[1024, 1024]), 8),
            vec![1024, 1024]
        );
        // Tiny file chunks grow by whole multiples, last axis first.
        let c = auto_chunk_shape(&[10000, 1000], Some(&[10, 10]), 8);
        assert_eq!(c[1], 1000);
        assert_eq!(c[0] % 10, 0);
        assert!(c[0] * c[1] * 8 <= AUTO_CHUNK_BYTES);
        assert_eq!(auto_chunk_shape(&[100], None, 8), vec![100]);
    }

    #[test]
    fn shapes_and_types_follow_numpy() {
        let x = Array::ones(&[4, 6], Some(&[3, 4])).unwrap();
        assert_eq!(x.chunks(), &[vec![3, 1], vec![4, 2]]);
        let t = x.transpose(None).unwrap();
        assert_eq!(t.shape(), &[6, 4]);
        let m = x.reduce(ReduceOp::Mean, Some(&[0]), false, 0.0).unwrap();
        assert_eq!(m.shape(), &[6]);
        let centred = x.binary(BinOp::Sub, &m).unwrap();
        assert_eq!(centred.shape(), &[4, 6]);
        assert!(x.binary(BinOp::Add, &t).unwrap_err().contains("broadcast"));
        let i = Array::arange(Scalar::Int(0), Scalar::Int(10), Scalar::Int(1), None).unwrap();
        assert_eq!(i.dtype(), DType::I64);
        assert_eq!(
            i.with_scalar(BinOp::Div, Scalar::Int(2), false)
                .unwrap()
                .dtype(),
            DType::F64
        );
        assert_eq!(
            i.reduce(ReduceOp::Sum, None, false, 0.0).unwrap().dtype(),
            DType::I64
        );
        assert!(x
            .reduce(ReduceOp::Sum, Some(&[2]), false, 0.0)
            .unwrap_err()
            .contains("out of bounds"));
        let s = x
            .slice(&[
                Select::Index(1),
                Select::Range(Dim {
                    start: 0,
                    len: 3,
                    step: 2,
                }),
            ])
            .unwrap();
        assert_eq!(s.shape(), &[3]);
        assert!(x
            .slice(&[Select::Index(4)])
            .unwrap_err()
            .contains("out of bounds"));
        assert!(x.dot(&x).unwrap_err().contains("not aligned"));
        assert_eq!(x.dot(&t).unwrap().shape(), &[4, 4]);
    }

    #[test]
    fn layouts_over_the_limits_are_refused_before_allocating() {
        // Allowed: big arrays in auto chunks of about 8 MiB.
        let big = Array::ones(&[1_000_000, 10_000], None).unwrap();
        assert!(big.nchunks() <= MAX_CHUNKS);
        // The element count overflows; far too many chunks; one chunk too large.
        let e = Array::ones(&[1 << 40, 1 << 40], None).unwrap_err();
        assert!(e.contains("too large"), "{e}");
        let e = Array::ones(&[MAX_CHUNKS + 1], Some(&[1])).unwrap_err();
        assert!(
            e.contains(&format!("makes {} chunks", MAX_CHUNKS + 1)),
            "{e}"
        );
        assert!(Array::ones(&[MAX_CHUNKS], Some(&[1])).is_ok());
        let e = Array::ones(&[1 << 15, 1 << 15], Some(&[1 << 15, 1 << 15])).unwrap_err();
        assert!(e.contains("MiB per chunk"), "{e}");
        // Derived arrays: rechunk, broadcast, and dot's block products.
        let x = Array::ones(&[10_000, 10_000], Some(&[1000, 1000])).unwrap();
        assert!(x.rechunk(&[1, 1]).unwrap_err().contains("chunks"));
        let col = Array::ones(&[2000, 1], Some(&[1, 1])).unwrap();
        let row = Array::ones(&[1, 2000], Some(&[1, 1])).unwrap();
        assert!(col
            .binary(BinOp::Add, &row)
            .unwrap_err()
            .contains("4000000 chunks"));
        let fine = Array::ones(&[1000, 1000], Some(&[5, 5])).unwrap();
        assert!(fine.dot(&fine).unwrap_err().contains("chunks"));
        assert!(x.dot(&x).is_ok());
    }

    #[test]
    fn duplicate_axes_and_negative_int_powers_are_refused() {
        let x = Array::ones(&[3, 4], None).unwrap();
        for axes in [[0, 0], [1, -1]] {
            let e = x
                .reduce(ReduceOp::Sum, Some(&axes), false, 0.0)
                .unwrap_err();
            assert!(e.contains("duplicate value in 'axis'"), "{e}");
        }
        let i = x.astype(DType::I32);
        let e = i
            .with_scalar(BinOp::Pow, Scalar::Int(-1), false)
            .unwrap_err();
        assert!(e.contains("negative integer powers"), "{e}");
        // A float exponent, a float base, or the int as the base are fine.
        assert!(i
            .with_scalar(BinOp::Pow, Scalar::Float(-1.0), false)
            .is_ok());
        assert!(x.with_scalar(BinOp::Pow, Scalar::Int(-1), false).is_ok());
        assert!(i.with_scalar(BinOp::Pow, Scalar::Int(-1), true).is_ok());
    }

    /// The per-element grouping [`sliced_chunks`] replaced, as the reference.
    fn sliced_chunks_by_element(input: &[usize], d: Dim) -> Vec<usize> {
        if d.len == 0 {
            return vec![0];
        }
        let mut bounds = Vec::new();
        let mut end = 0u64;
        for &c in input {
            end += c as u64;
            bounds.push(end);
        }
        let max = *input.iter().max().unwrap_or(&1);
        let mut out: Vec<usize> = Vec::new();
        let mut current = None;
        for i in 0..d.len {
            let chunk = bounds.partition_point(|&b| b <= d.start + d.step * i);
            if current == Some(chunk) {
                *out.last_mut().unwrap() += 1;
            } else {
                current = Some(chunk);
                match out.last_mut() {
                    Some(last) if *last < max && d.step as usize > max / 2 => *last += 1,
                    _ => out.push(1),
                }
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn strided_slice_chunks_match_the_per_element_grouping(
            chunks in proptest::collection::vec(1usize..9, 1..12),
            start in 0u64..40,
            step in 1u64..12,
            len in 0u64..40,
        ) {
            let total: u64 = chunks.iter().map(|&c| c as u64).sum();
            let len = if start >= total { 0 } else { len.min((total - 1 - start) / step + 1) };
            let d = Dim { start: start.min(total - 1), len, step };
            proptest::prop_assert_eq!(sliced_chunks(&chunks, d), sliced_chunks_by_element(&chunks, d));
        }
    }

    #[test]
    fn reshapes_whose_common_unit_exceeds_a_chunk_are_refused() {
        // 10007 and 99991 are prime: a block that is whole slabs of both shapes is the whole
        // 8 GB array.
        let x = Array::ones(&[99991, 10007], None).unwrap();
        let e = x.reshape(&[10007, 99991]).unwrap_err();
        assert!(e.contains("over the 512 MiB chunk limit"), "{e}");
        // Merging the trailing axes needs only whole rows.
        let flat = x.reshape(&[-1]).unwrap();
        assert_eq!(flat.shape(), &[99991 * 10007]);
        assert!(flat.chunks()[0][0].is_multiple_of(10007));
        let e = x.reshape(&[3, -1]).unwrap_err();
        assert!(
            e.contains("cannot reshape array of size 1000609937 into shape (3, -1)"),
            "{e}"
        );
    }

    #[test]
    fn huge_slices_are_planned_without_visiting_each_element() {
        let x = Array::ones(&[1_000_000_000_000], None).unwrap();
        let s = x
            .slice(&[Select::Range(Dim {
                start: 1,
                len: 500_000_000_000,
                step: 2,
            })])
            .unwrap();
        assert_eq!(s.shape(), &[500_000_000_000]);
        assert_eq!(s.chunks()[0].iter().sum::<usize>(), 500_000_000_000);
    }

    #[test]
    fn strided_slices_group_by_input_chunk() {
        assert_eq!(sliced_chunks(&[4, 4, 2], Dim::full(10)), vec![4, 4, 2]);
        assert_eq!(
            sliced_chunks(
                &[4, 4, 2],
                Dim {
                    start: 1,
                    len: 5,
                    step: 2
                }
            ),
            vec![2, 2, 1]
        );
        assert_eq!(regular_chunks(10, 4), vec![4, 4, 2]);
    }
}
