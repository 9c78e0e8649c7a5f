//! [`Array`]: a lazy, chunked n-d array, like dask.array. Building an expression only records
//! it (shape, dtype and chunking are known at once, so errors come before anything runs);
//! [`super::plan`] turns it into tasks when it is computed or stored.

use std::sync::Arc;

use super::block::{BinOp, Dim, Generator, ReduceOp, Reduction, UnaryOp};
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
    Transpose(Array, Vec<usize>),
    Slice(Array, Vec<Select>),
    /// Same values, other chunks.
    Rechunk(Array),
    Reduce(Array, Reduction),
    Dot(Array, Array),
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
        let operands: Vec<&Array> = match &n.op {
            Op::Read { .. } | Op::Generate(_) | Op::Scalar(_) => vec![],
            Op::Cast(x)
            | Op::Unary(_, x)
            | Op::Transpose(x, _)
            | Op::Slice(x, _)
            | Op::Rechunk(x)
            | Op::Reduce(x, _) => vec![x],
            Op::Binary(_, x, y) | Op::Dot(x, y) => vec![x, y],
        };
        for x in operands {
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

    pub fn unary(&self, op: UnaryOp) -> Array {
        let input = match op {
            UnaryOp::Neg | UnaryOp::Abs => self.clone(),
            _ => self.astype(self.dtype().float_of()),
        };
        let n = &input.node;
        let (shape, dtype, chunks) = (n.shape.clone(), n.dtype, n.chunks.clone());
        Array::new(Op::Unary(op, input), shape, dtype, chunks)
    }

    /// `self op other` with NumPy broadcasting and type promotion.
    pub fn binary(&self, op: BinOp, other: &Array) -> ArrayResult<Array> {
        let shape = broadcast_shapes(self.shape(), other.shape()).ok_or_else(|| {
            format!(
                "operands could not be broadcast together with shapes {:?} and {:?}",
                self.shape(),
                other.shape()
            )
        })?;
        let mut dtype = DType::promote(self.dtype(), other.dtype());
        if op == BinOp::Div && !dtype.is_float() {
            dtype = DType::F64;
        }
        let chunks = broadcast_chunks(&shape, self, other);
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
        if matches!(op, ReduceOp::Min | ReduceOp::Max) && axes.iter().any(|&a| self.shape()[a] == 0)
        {
            return Err(format!(
                "zero-size array to reduction operation {} which has no identity",
                if op == ReduceOp::Min {
                    "minimum"
                } else {
                    "maximum"
                }
            ));
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
        };
        Ok(Array::new(
            Op::Reduce(self.clone(), reduction),
            shape,
            dtype,
            chunks,
        ))
    }

    /// Matrix product of two 2-d arrays, blocked; partial products are summed as a tree.
    pub fn dot(&self, other: &Array) -> ArrayResult<Array> {
        if self.ndim() != 2 || other.ndim() != 2 {
            return Err(format!(
                "dot/@ needs two 2-d arrays here, got shapes {:?} and {:?}",
                self.shape(),
                other.shape()
            ));
        }
        if self.shape()[1] != other.shape()[0] {
            return Err(format!(
                "shapes {:?} and {:?} not aligned: {} (dim 1) != {} (dim 0)",
                self.shape(),
                other.shape(),
                self.shape()[1],
                other.shape()[0]
            ));
        }
        let dtype = DType::promote(self.dtype(), other.dtype());
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

/// The chunks of a broadcast result: per axis, those of an operand that spans it.
fn broadcast_chunks(shape: &[usize], a: &Array, b: &Array) -> Vec<Vec<usize>> {
    let n = shape.len();
    (0..n)
        .map(|ax| {
            for x in [a, b] {
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
