//! Lowering an [`Array`] expression to a task graph, and running it.
//!
//! Every lazy node can describe any rectangular (strided) region of itself as a [`Block`]:
//! a read becomes a hyperslab read of exactly that region, an elementwise node the same
//! operation over its operands' matching regions (broadcast axes shrunk to their single
//! element), a transpose or slice a remapped region of its input. So elementwise chains,
//! transposes, slices and rechunks cost no tasks of their own: each output chunk is ONE task
//! that reads what it needs straight from the file. Only reductions and matrix products are
//! materialised — as tasks with a chunk grid — and a region of them becomes `Input`s of those
//! tasks (sliced or assembled when the region straddles chunks).
//!
//! Reductions: one `array.partial` task per input chunk (the chunk's fused block reduced
//! over the reduced axes), then `array.combine` tasks merging at most `fan_in` partials each,
//! level by level, per output chunk; the last one finishes (mean = sum / n, ...). Matrix
//! products: one task per (row block, inner block, column block) computing a block product,
//! summed per output block by a tree of additions with the same fan-in.

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::block::{BinOp, Block, Dim, NoReads, Read, ReduceOp, Reduction};
use super::data::Data;
use super::hdf5io::PendingOutput;
use super::lazy::{Array, Op, Select};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::graph::TaskSpec;
use crate::ids::TaskId;
use crate::protocol::frame::MAX_CONTROL_FRAME;

/// Partials merged by one combine task: bounds the inputs a task holds at once.
pub const DEFAULT_FAN_IN: usize = 8;

pub const KERNEL_BLOCK: &str = "array.block";
pub const KERNEL_PARTIAL: &str = "array.partial";
pub const KERNEL_COMBINE: &str = "array.combine";
pub const KERNEL_STORE: &str = "array.store";

/// Arguments of a store task: write the block's value at `offset` of `file:dataset`.
#[derive(Serialize, Deserialize, Debug)]
pub struct StoreArgs {
    pub file: String,
    pub dataset: String,
    pub offset: Vec<usize>,
    pub block: Block,
}

/// The tasks a materialised node's chunks are, row-major over its chunk grid.
#[derive(Clone)]
struct Grid {
    ids: Vec<TaskId>,
}

/// The inputs of the task being built: each distinct task id gets one input slot.
#[derive(Default)]
struct Deps {
    ids: Vec<TaskId>,
}

impl Deps {
    fn input(&mut self, id: TaskId) -> Block {
        let at = match self.ids.iter().position(|&d| d == id) {
            Some(i) => i,
            None => {
                self.ids.push(id);
                self.ids.len() - 1
            }
        };
        Block::Input(at as u32)
    }
}

/// Builds the task graph of one computation.
pub struct Planner<'k> {
    tasks: Vec<TaskSpec>,
    key: Box<dyn FnMut() -> TaskId + 'k>,
    materialized: HashMap<usize, Grid>,
    pub fan_in: usize,
    /// Bytes the planned tasks read from files (for progress reports).
    read_bytes: u64,
}

/// Every chunk of a grid: its index and region, row-major.
pub fn chunk_regions(chunks: &[Vec<usize>]) -> Vec<(Vec<usize>, Vec<Dim>)> {
    let mut out = vec![(Vec::new(), Vec::new())];
    for axis in chunks {
        let mut next = Vec::with_capacity(out.len() * axis.len());
        for (idx, region) in &out {
            let mut start = 0u64;
            for (k, &len) in axis.iter().enumerate() {
                let mut i: Vec<usize> = idx.clone();
                i.push(k);
                let mut r: Vec<Dim> = region.clone();
                r.push(Dim::range(start, len as u64));
                next.push((i, r));
                start += len as u64;
            }
        }
        out = next;
    }
    out
}

/// The pieces of a strided range `d` over chunks of lengths `chunks`: (chunk, range inside
/// the chunk, offset in the range's output).
fn segments(chunks: &[usize], d: Dim) -> Vec<(usize, Dim, usize)> {
    let mut out = Vec::new();
    let mut starts = Vec::with_capacity(chunks.len());
    let mut acc = 0u64;
    for &c in chunks {
        starts.push(acc);
        acc += c as u64;
    }
    let step = d.step.max(1);
    let mut done = 0u64;
    while done < d.len {
        let at = d.start + step * done;
        let chunk = starts.partition_point(|&s| s <= at) - 1;
        let end = starts[chunk] + chunks[chunk] as u64; // exclusive
        let fit = ((end - 1 - at) / step + 1).min(d.len - done);
        out.push((
            chunk,
            Dim {
                start: at - starts[chunk],
                len: fit,
                step,
            },
            done as usize,
        ));
        done += fit;
    }
    out
}

fn flat_index(idx: &[usize], chunks: &[Vec<usize>]) -> usize {
    idx.iter()
        .zip(chunks)
        .fold(0, |acc, (&i, axis)| acc * axis.len() + i)
}

impl<'k> Planner<'k> {
    pub fn new(key: impl FnMut() -> TaskId + 'k) -> Self {
        Planner {
            tasks: Vec::new(),
            key: Box::new(key),
            materialized: HashMap::new(),
            fan_in: DEFAULT_FAN_IN,
            read_bytes: 0,
        }
    }

    pub fn into_tasks(self) -> Vec<TaskSpec> {
        self.tasks
    }

    fn finish(self, outputs: Vec<TaskId>, finish: Finish) -> Planned {
        Planned {
            read_bytes: self.read_bytes,
            tasks: self.tasks,
            outputs,
            finish,
        }
    }

    fn task(&mut self, kernel: &str, args: Vec<u8>, deps: Vec<TaskId>) -> TaskId {
        let id = (self.key)();
        self.tasks.push(TaskSpec::new(id, kernel, args, deps));
        id
    }

    /// The block computing `region` of `a`, its task inputs recorded in `deps`.
    fn block(&mut self, a: &Array, region: &[Dim], deps: &mut Deps) -> Block {
        let n = &a.node;
        match &n.op {
            Op::Read { file, dataset } => {
                self.read_bytes +=
                    region.iter().map(|d| d.len).product::<u64>() * n.dtype.size() as u64;
                Block::Read(Read {
                    file: file.clone(),
                    dataset: dataset.clone(),
                    dims: region.to_vec(),
                    dtype: n.dtype,
                })
            }
            Op::Generate(g) => Block::Generate {
                generator: g.clone(),
                dtype: n.dtype,
                dims: region.to_vec(),
            },
            Op::Scalar(s) => Block::Scalar(*s, n.dtype),
            Op::Cast(x) => Block::Cast(Box::new(self.block(x, region, deps)), n.dtype),
            Op::Unary(op, x) => Block::Unary(*op, Box::new(self.block(x, region, deps))),
            Op::Binary(op, x, y) => {
                let rx = broadcast_region(region, &n.shape, x.shape());
                let ry = broadcast_region(region, &n.shape, y.shape());
                let bx = self.block(x, &rx, deps);
                let by = self.block(y, &ry, deps);
                Block::Binary(*op, Box::new(bx), Box::new(by))
            }
            Op::Compare(op, x, y) => {
                let rx = broadcast_region(region, &n.shape, x.shape());
                let ry = broadcast_region(region, &n.shape, y.shape());
                let bx = self.block(x, &rx, deps);
                let by = self.block(y, &ry, deps);
                Block::Compare(*op, Box::new(bx), Box::new(by))
            }
            Op::Where(c, x, y) => {
                let mut part = |a: &Array| {
                    let r = broadcast_region(region, &n.shape, a.shape());
                    Box::new(self.block(a, &r, deps))
                };
                let (bc, bx, by) = (part(c), part(x), part(y));
                Block::Where(bc, bx, by)
            }
            Op::Transpose(x, perm) => {
                let mut inner = vec![Dim::full(0); perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inner[p] = region[i];
                }
                Block::Transpose(Box::new(self.block(x, &inner, deps)), perm.clone())
            }
            Op::Slice(x, select) => {
                let mut inner = Vec::with_capacity(select.len());
                let mut out_axis = 0;
                let mut dropped = false;
                for s in select {
                    match s {
                        Select::Range(d) => {
                            inner.push(region[out_axis].within(*d));
                            out_axis += 1;
                        }
                        Select::Index(i) => {
                            inner.push(Dim::range(*i, 1));
                            dropped = true;
                        }
                    }
                }
                let b = self.block(x, &inner, deps);
                if dropped {
                    let shape = region.iter().map(|d| d.len as usize).collect();
                    Block::Reshape(Box::new(b), shape)
                } else {
                    b
                }
            }
            Op::Rechunk(x) => self.block(x, region, deps),
            Op::Quantile(x, q, ax) => {
                let mut inner = region.to_vec();
                inner.insert(*ax, Dim::full(x.shape()[*ax] as u64));
                let b = self.block(x, &inner, deps);
                Block::Quantile(*q, *ax, n.dtype, Box::new(b))
            }
            Op::Regroup(x, map) => {
                let mut inner = vec![Dim::full(1); x.ndim()];
                for (k, m) in map.iter().enumerate() {
                    if let Some(a) = m {
                        inner[*a] = region[k];
                    }
                }
                let b = self.block(x, &inner, deps);
                Block::Reshape(Box::new(b), region.iter().map(|d| d.len as usize).collect())
            }
            Op::Flip(x, axes) => {
                // Output coordinate i along a flipped axis of length n is input n - 1 - i.
                let mut inner = region.to_vec();
                for &a in axes {
                    let d = region[a];
                    let n = n.shape[a] as u64;
                    if let Some(last) = d.last() {
                        inner[a] = Dim {
                            start: n - 1 - last,
                            len: d.len,
                            step: d.step,
                        };
                    }
                }
                Block::Flip(Box::new(self.block(x, &inner, deps)), axes.clone())
            }
            Op::Concat(parts, ax) => {
                // Output chunks never straddle two operands; a planned region (a slice of
                // this array) may, and is assembled from the operands it touches.
                let d = region[*ax];
                let mut pieces = Vec::new();
                let mut at = 0u64;
                for p in parts {
                    let len = p.shape()[*ax] as u64;
                    let first = d.start.max(at);
                    let first = if first > d.start {
                        d.start + (first - d.start).div_ceil(d.step) * d.step
                    } else {
                        first
                    };
                    let end = at + len;
                    if d.len > 0 && first < end && first <= d.last().unwrap_or(0) {
                        let last = d.last().unwrap_or(0).min(end - 1);
                        let count = (last - first) / d.step + 1;
                        let out_off = ((first - d.start) / d.step) as usize;
                        let mut inner = region.to_vec();
                        inner[*ax] = Dim {
                            start: first - at,
                            len: count,
                            step: d.step,
                        };
                        let mut offset = vec![0; region.len()];
                        offset[*ax] = out_off;
                        pieces.push((offset, self.block(p, &inner, deps)));
                    }
                    at = end;
                }
                if pieces.len() == 1 {
                    pieces.remove(0).1
                } else {
                    Block::Assemble {
                        shape: region.iter().map(|d| d.len as usize).collect(),
                        dtype: n.dtype,
                        parts: pieces,
                    }
                }
            }
            Op::Reduce(..) | Op::Dot(..) | Op::Scan(..) | Op::Reshape(..) => {
                let grid = self.materialize(a);
                region_of_grid(&grid, &n.chunks, region, n.dtype, deps)
            }
        }
    }

    /// The tasks of a reduction or product node (planned once per node).
    fn materialize(&mut self, a: &Array) -> Grid {
        let ptr = std::sync::Arc::as_ptr(&a.node) as usize;
        if let Some(g) = self.materialized.get(&ptr) {
            return g.clone();
        }
        let grid = match &a.node.op {
            Op::Reduce(x, r) => self.plan_reduce(a, x, r),
            Op::Dot(x, y) => self.plan_dot(a, x, y),
            Op::Scan(x, op, axis) => self.plan_scan(x, *op, *axis),
            Op::Reshape(x) => self.plan_reshape(a, x),
            _ => self.plan_chunks(a),
        };
        self.materialized.insert(ptr, grid.clone());
        grid
    }

    /// One `array.block` task per chunk of `a`.
    fn plan_chunks(&mut self, a: &Array) -> Grid {
        let ids = chunk_regions(a.chunks())
            .into_iter()
            .map(|(_, region)| {
                let mut deps = Deps::default();
                let b = self.block(a, &region, &mut deps);
                self.task(KERNEL_BLOCK, encode(&b), deps.ids)
            })
            .collect();
        Grid { ids }
    }

    /// A blocked scan along `axis`: each chunk scanned on its own; the carry into chunk k
    /// along the axis is the carry into k - 1 combined with the last slice of k - 1's scan
    /// (a chain, one small task per chunk); each output chunk is its scan combined with its
    /// carry, broadcast along the axis.
    fn plan_scan(&mut self, x: &Array, op: BinOp, axis: usize) -> Grid {
        let regions = chunk_regions(x.chunks());
        let scans: Vec<TaskId> = regions
            .iter()
            .map(|(_, region)| {
                let mut deps = Deps::default();
                let b = Block::Scan(op, axis, Box::new(self.block(x, region, &mut deps)));
                self.task(KERNEL_BLOCK, encode(&b), deps.ids)
            })
            .collect();
        let mut carries: HashMap<Vec<usize>, TaskId> = HashMap::new();
        let mut ids = Vec::with_capacity(regions.len());
        // Row-major order visits chunk k - 1 along the axis before chunk k.
        for (k, (idx, _)) in regions.iter().enumerate() {
            if idx[axis] == 0 {
                ids.push(scans[k]);
                continue;
            }
            let mut before = idx.clone();
            before[axis] -= 1;
            let prev = flat_index(&before, x.chunks());
            let mut last: Vec<Dim> = regions[prev].1.iter().map(|d| Dim::full(d.len)).collect();
            last[axis] = Dim::range(regions[prev].1[axis].len - 1, 1);
            let tail = Block::Slice(Box::new(Block::Input(0)), last);
            let carry = match carries.get(&before) {
                None => self.task(KERNEL_BLOCK, encode(&tail), vec![scans[prev]]),
                Some(&c) => {
                    let b = Block::Binary(op, Box::new(Block::Input(1)), Box::new(tail));
                    self.task(KERNEL_BLOCK, encode(&b), vec![scans[prev], c])
                }
            };
            carries.insert(idx.clone(), carry);
            let out = Block::Binary(op, Box::new(Block::Input(0)), Box::new(Block::Input(1)));
            ids.push(self.task(KERNEL_BLOCK, encode(&out), vec![scans[k], carry]));
        }
        Grid { ids }
    }

    /// Each output chunk (whole but for the first axis) is a flat range of whole slabs of
    /// the input's first axis: one region of the input, reshaped.
    fn plan_reshape(&mut self, out: &Array, x: &Array) -> Grid {
        let slab_out: usize = out.shape().iter().skip(1).product();
        let slab_in: usize = x.shape().iter().skip(1).product();
        let ids = chunk_regions(out.chunks())
            .into_iter()
            .map(|(_, region)| {
                let mut deps = Deps::default();
                let inner: Vec<Dim> = if x.ndim() == 0 || out.ndim() == 0 {
                    x.shape().iter().map(|&n| Dim::full(n as u64)).collect()
                } else {
                    let (j0, rows) = (region[0].start as usize, region[0].len as usize);
                    let (i0, i1) = (
                        j0 * slab_out / slab_in.max(1),
                        (j0 + rows) * slab_out / slab_in.max(1),
                    );
                    std::iter::once(Dim::range(i0 as u64, (i1 - i0) as u64))
                        .chain(x.shape().iter().skip(1).map(|&n| Dim::full(n as u64)))
                        .collect()
                };
                let b = self.block(x, &inner, &mut deps);
                let shape = region.iter().map(|d| d.len as usize).collect();
                let b = Block::Reshape(Box::new(b), shape);
                self.task(KERNEL_BLOCK, encode(&b), deps.ids)
            })
            .collect();
        Grid { ids }
    }

    fn plan_reduce(&mut self, out: &Array, x: &Array, r: &Reduction) -> Grid {
        let keepdims = out.ndim() == x.ndim();
        let out_chunks = out.chunks().to_vec();
        let mut groups: Vec<Vec<TaskId>> =
            vec![Vec::new(); out_chunks.iter().map(Vec::len).product()];
        for (idx, region) in chunk_regions(x.chunks()) {
            let mut deps = Deps::default();
            let b = self.block(x, &region, &mut deps);
            let id = if matches!(r.op, ReduceOp::ArgMin | ReduceOp::ArgMax) {
                // Partials of argmin/argmax carry global indices: each knows its offset.
                let here = Reduction {
                    origin: region.iter().map(|d| d.start as usize).collect(),
                    ..r.clone()
                };
                self.task(KERNEL_PARTIAL, encode(&(&here, &b)), deps.ids)
            } else {
                self.task(KERNEL_PARTIAL, encode(&(r, &b)), deps.ids)
            };
            let out_idx: Vec<usize> = idx
                .iter()
                .enumerate()
                .filter_map(|(ax, &i)| {
                    if !r.axes.contains(&ax) {
                        Some(i)
                    } else if keepdims {
                        Some(0)
                    } else {
                        None
                    }
                })
                .collect();
            groups[flat_index(&out_idx, &out_chunks)].push(id);
        }
        let shapes: Vec<Vec<usize>> = chunk_regions(&out_chunks)
            .into_iter()
            .map(|(_, reg)| reg.iter().map(|d| d.len as usize).collect())
            .collect();
        let ids = groups
            .into_iter()
            .zip(shapes)
            .map(|(mut level, shape)| {
                while level.len() > self.fan_in {
                    let partial = Reduction {
                        out_shape: vec![],
                        ..r.clone()
                    };
                    level = level
                        .chunks(self.fan_in)
                        .map(|g| self.task(KERNEL_COMBINE, encode(&(&partial, false)), g.to_vec()))
                        .collect();
                }
                let last = Reduction {
                    out_shape: shape,
                    ..r.clone()
                };
                self.task(KERNEL_COMBINE, encode(&(&last, true)), level)
            })
            .collect();
        Grid { ids }
    }

    fn plan_dot(&mut self, out: &Array, x: &Array, y: &Array) -> Grid {
        let rows = &out.chunks()[0];
        let cols = &out.chunks()[1];
        let inner = x.chunks()[1].clone();
        let mut ids = Vec::with_capacity(rows.len() * cols.len());
        for (_, rr) in chunk_regions(std::slice::from_ref(rows)) {
            for (_, cr) in chunk_regions(std::slice::from_ref(cols)) {
                let mut level: Vec<TaskId> = chunk_regions(std::slice::from_ref(&inner))
                    .into_iter()
                    .map(|(_, kr)| {
                        let mut deps = Deps::default();
                        let a = self.block(x, &[rr[0], kr[0]], &mut deps);
                        let b = self.block(y, &[kr[0], cr[0]], &mut deps);
                        let m = Block::Matmul(Box::new(a), Box::new(b));
                        self.task(KERNEL_BLOCK, encode(&m), deps.ids)
                    })
                    .collect();
                while level.len() > 1 {
                    level = level
                        .chunks(self.fan_in)
                        .map(|g| {
                            let sum = (1..g.len() as u32).fold(Block::Input(0), |acc, i| {
                                Block::Binary(BinOp::Add, Box::new(acc), Box::new(Block::Input(i)))
                            });
                            self.task(KERNEL_BLOCK, encode(&sum), g.to_vec())
                        })
                        .collect();
                }
                ids.push(level[0]);
            }
        }
        Grid { ids }
    }
}

/// The region of an operand that a broadcast result's region needs: trailing axes aligned,
/// axes the operand has as length 1 taken whole.
fn broadcast_region(region: &[Dim], out_shape: &[usize], shape: &[usize]) -> Vec<Dim> {
    let pad = out_shape.len() - shape.len();
    shape
        .iter()
        .enumerate()
        .map(|(k, &len)| {
            if len == 1 && out_shape[k + pad] != 1 {
                Dim::full(1)
            } else {
                region[k + pad]
            }
        })
        .collect()
}

/// `region` of a materialised grid: the chunk task itself, a slice of it, or an assembly
/// of pieces of several.
fn region_of_grid(
    grid: &Grid,
    chunks: &[Vec<usize>],
    region: &[Dim],
    dtype: super::data::DType,
    deps: &mut Deps,
) -> Block {
    let per_axis: Vec<Vec<(usize, Dim, usize)>> = chunks
        .iter()
        .zip(region)
        .map(|(c, &d)| segments(c, d))
        .collect();
    let mut parts = vec![(Vec::new(), Vec::new(), Vec::new())];
    for axis in &per_axis {
        let mut next = Vec::new();
        for (idx, local, offset) in &parts {
            for (chunk, dim, off) in axis {
                let (mut i, mut l, mut o): (Vec<usize>, Vec<Dim>, Vec<usize>) =
                    (idx.clone(), local.clone(), offset.clone());
                i.push(*chunk);
                l.push(*dim);
                o.push(*off);
                next.push((i, l, o));
            }
        }
        parts = next;
    }
    let piece = |idx: &[usize], local: &[Dim], deps: &mut Deps| {
        let input = deps.input(grid.ids[flat_index(idx, chunks)]);
        let whole = local
            .iter()
            .zip(idx.iter().zip(chunks))
            .all(|(d, (&i, axis))| d.start == 0 && d.step == 1 && d.len as usize == axis[i]);
        if whole {
            input
        } else {
            Block::Slice(Box::new(input), local.to_vec())
        }
    };
    if parts.len() == 1 {
        let (idx, local, _) = &parts[0];
        return piece(idx, local, deps);
    }
    Block::Assemble {
        shape: region.iter().map(|d| d.len as usize).collect(),
        dtype,
        parts: parts
            .iter()
            .map(|(idx, local, off)| (off.clone(), piece(idx, local, deps)))
            .collect(),
    }
}

fn encode<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("array task arguments serialise")
}

/// A planned computation: its tasks, the tasks whose results end it, and what to do with
/// them.
pub struct Planned {
    pub tasks: Vec<TaskSpec>,
    /// Bytes the tasks read from files.
    pub read_bytes: u64,
    pub outputs: Vec<TaskId>,
    finish: Finish,
}

enum Finish {
    /// Gather the outputs and assemble them with this block (inputs = outputs in order).
    Gather(Block),
    /// The outputs are store tasks; commit the file when they are done.
    Store(PendingOutput),
}

impl Planned {
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }
}

/// Plans bringing `a` back to the client.
pub fn plan_compute(a: &Array, key: impl FnMut() -> TaskId) -> Planned {
    let mut p = Planner::new(key);
    let grid = match &a.node.op {
        Op::Reduce(..) | Op::Dot(..) => p.materialize(a),
        _ => p.plan_chunks(a),
    };
    let parts = chunk_regions(a.chunks())
        .into_iter()
        .enumerate()
        .map(|(i, (_, region))| {
            (
                region.iter().map(|d| d.start as usize).collect(),
                Block::Input(i as u32),
            )
        })
        .collect();
    let assemble = Block::Assemble {
        shape: a.shape().to_vec(),
        dtype: a.dtype(),
        parts,
    };
    p.finish(grid.ids, Finish::Gather(assemble))
}

/// Plans storing `a` to `file:dataset` (chunked like `a`), through a temporary file.
pub fn plan_store(
    a: &Array,
    file: &str,
    dataset: &str,
    overwrite: bool,
    key: impl FnMut() -> TaskId,
) -> Result<Planned> {
    let chunk_shape: Vec<usize> = a
        .chunks()
        .iter()
        .map(|c| c.iter().copied().max().unwrap_or(1).max(1))
        .collect();
    let pending =
        PendingOutput::create(file, dataset, a.shape(), a.dtype(), &chunk_shape, overwrite)
            .map_err(Error::invalid)?;
    let mut p = Planner::new(key);
    let tmp = pending.tmp_str();
    let outputs = chunk_regions(a.chunks())
        .into_iter()
        .map(|(_, region)| {
            let mut deps = Deps::default();
            let block = p.block(a, &region, &mut deps);
            let args = StoreArgs {
                file: tmp.clone(),
                dataset: dataset.to_string(),
                offset: region.iter().map(|d| d.start as usize).collect(),
                block,
            };
            p.task(KERNEL_STORE, encode(&args), deps.ids)
        })
        .collect();
    Ok(p.finish(outputs, Finish::Store(pending)))
}

/// The share of the scheduler's message limit a graph may use (the estimate below leaves
/// out the encoding's small per-field overhead).
const GRAPH_BYTES_LIMIT: usize = MAX_CONTROL_FRAME / 4 * 3;

/// Refuses a graph too large to send in one message, before it is sent: the scheduler would
/// close the connection (the array chunk limits catch the usual cases before this; long file
/// names in every read task can still add up).
pub fn check_graph_size(tasks: &[TaskSpec], limit: usize) -> Result<()> {
    let bytes: usize = tasks
        .iter()
        .map(|t| t.args.len() + t.kernel.len() + 10 * t.deps.len() + 16)
        .sum();
    if bytes > limit {
        return Err(Error::invalid(format!(
            "the task graph is {} MiB ({} tasks), over the {} MiB a graph may take to the \
             scheduler: use larger chunks (chunks=... or --chunks)",
            bytes >> 20,
            tasks.len(),
            limit >> 20
        )));
    }
    Ok(())
}

/// Runs a planned computation: the value for a compute, None for a store (committed).
pub async fn run(client: &Client, planned: Planned) -> Result<Option<Data>> {
    let Planned {
        tasks,
        outputs,
        finish,
        ..
    } = planned;
    check_graph_size(&tasks, GRAPH_BYTES_LIMIT)?;
    client.submit(tasks, &outputs)?;
    let result = async {
        match finish {
            Finish::Gather(assemble) => {
                let bytes: Vec<Bytes> = client.gather(&outputs).await?;
                let inputs = bytes
                    .iter()
                    .map(|b| Data::decode(b))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(Error::runtime)?;
                let value = assemble
                    .evaluate(&inputs, &NoReads)
                    .map_err(Error::runtime)?;
                Ok(Some(value))
            }
            Finish::Store(pending) => {
                // On error, `pending` is dropped here and removes the temporary file.
                client.wait(&outputs).await?;
                pending.commit().map_err(Error::runtime)?;
                Ok(None)
            }
        }
    }
    .await;
    client.release(&outputs)?;
    result
}

/// Computes `a` on the cluster behind `client` and returns its value.
pub async fn compute(client: &Client, a: &Array) -> Result<Data> {
    let planned = plan_compute(a, || client.new_key());
    Ok(run(client, planned)
        .await?
        .expect("a compute returns a value"))
}

/// Stores `a` to `file:dataset` through the cluster behind `client`.
pub async fn store(
    client: &Client,
    a: &Array,
    file: &str,
    dataset: &str,
    overwrite: bool,
) -> Result<()> {
    let planned = plan_store(a, file, dataset, overwrite, || client.new_key())?;
    run(client, planned).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphs_over_the_message_limit_are_refused_and_the_chunk_limit_comes_first() {
        use super::super::block::ReduceOp;
        use super::super::lazy::MAX_CHUNKS;
        let mut k = 0;
        let a = Array::ones(&[10_000], Some(&[1])).unwrap();
        let sum = a.reduce(ReduceOp::Sum, None, false, 0.0).unwrap();
        let p = plan_compute(&sum, || {
            k += 1;
            TaskId(k)
        });
        let e = check_graph_size(&p.tasks, 100_000).unwrap_err().to_string();
        assert!(e.contains("use larger chunks"), "{e}");
        check_graph_size(&p.tasks, GRAPH_BYTES_LIMIT).unwrap();
        // The same sum over MAX_CHUNKS chunks (tasks grow linearly) stays under the limit,
        // so the chunk limit refuses first, at build time.
        let per_chunk = p.tasks.iter().map(|t| t.args.len() + 64).sum::<usize>() / 10_000;
        assert!(
            per_chunk * MAX_CHUNKS < GRAPH_BYTES_LIMIT,
            "{per_chunk} bytes a chunk"
        );
    }

    #[test]
    fn segments_cover_strided_ranges() {
        assert_eq!(
            segments(&[4, 4, 2], Dim::range(2, 5)),
            vec![(0, Dim::range(2, 2), 0), (1, Dim::range(0, 3), 2)]
        );
        let s = segments(
            &[4, 4, 2],
            Dim {
                start: 1,
                len: 5,
                step: 2,
            },
        );
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[2],
            (
                2,
                Dim {
                    start: 1,
                    len: 1,
                    step: 2
                },
                4
            )
        );
    }

    #[test]
    fn chunk_regions_are_row_major() {
        let r = chunk_regions(&[vec![2, 1], vec![3]]);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].0, vec![1, 0]);
        assert_eq!(r[1].1, vec![Dim::range(2, 1), Dim::range(0, 3)]);
        assert_eq!(chunk_regions(&[]), vec![(vec![], vec![])]);
    }
}
