//! Reads on the workers: a task's region of a dataset, from the file system the workers
//! share.
//!
//! Each read opens the file, reads and closes it: no handle is kept between tasks, so a
//! worker never holds a file open (and locked) after a computation, nor reads through a stale
//! handle of a file rewritten since (opening costs about 0.1 ms). The chunk cache is off:
//! every read touches each file chunk once, so a cache would only add a copy.
//!
//! [`tiles::choose`] decides how (pure, unit-tested): a step-1 region of whole chunks goes to
//! the library as one hyperslab, straight into the result; a strided or partial-chunk region
//! is read chunk by chunk, each chunk's stored bytes fetched once with a direct chunk read
//! and cut in memory ([`convert`]); compressed chunks are fetched the same way and decoded
//! by [`codecs`](super::codecs) here, OUTSIDE the HDF5 library, whose every call holds one
//! process-wide lock: so a worker's threads decompress in parallel. Filters we do not decode
//! (szip, nbit, scaleoffset, plugins) and never-written chunks (their fill value) are read
//! through the library.

mod convert;
mod pieces;
pub mod tiles;

use hdf5::datatype::ByteOrder;
use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use ndarray::{ArrayD, IxDyn, Slice};

use super::block::{Dim, Read, Reader};
use super::codecs::Pipeline;
use super::data::{DType, Data};
use super::hdf5io::{hyperslab, open_ro};
use convert::{FileType, Kind, Output};
pub use pieces::{read_pieces, MAX_FILE_CHUNKS_PER_READ};
use tiles::{Filters, Strategy};

/// Reads on the worker.
pub struct FileReader;

impl Reader for FileReader {
    fn read(&self, r: &Read) -> Result<Data, String> {
        read(r).map_err(|e| format!("reading {}:{}: {e}", r.file, r.dataset))
    }
}

fn read(r: &Read) -> Result<Data, String> {
    let f = open_ro(&r.file)?;
    let ds = f.dataset(&r.dataset).map_err(|e| e.to_string())?;
    let shape = ds.shape();
    let chunks = ds.chunk();
    // (The planner's dtype is the file type's, as describe() mapped it; were it not, the
    // library would convert.)
    let ftype = file_type(&ds).filter(|t| t.dtype() == r.dtype);
    let filters = filter_list(&ds)?;
    let elem = ftype.map_or(r.dtype.size(), FileType::size);
    let pipeline = ftype.and_then(|_| Pipeline::new(&filters, elem));
    // Data of a type we do not convert, or with a filter we do not decode: the library's.
    let class = match &pipeline {
        Some(p) if p.is_empty() => Filters::None,
        Some(_) => Filters::Ours,
        None => Filters::Library,
    };
    match tiles::choose(&r.dims, &shape, chunks.as_deref(), elem, class) {
        Strategy::Whole => whole(&ds, r, chunks.as_deref()),
        Strategy::Tiles { direct, tile } => {
            let out_shape: Vec<usize> = r.dims.iter().map(|d| d.len as usize).collect();
            let mut out = Output::new(&out_shape, r.dtype, ftype.filter(|_| direct));
            let chunk_bytes = tile.iter().product::<u64>() as usize * elem;
            let empty = Pipeline::new(&[], elem).expect("the empty pipeline");
            let pipeline = pipeline.as_ref().unwrap_or(&empty);
            for part in tiles::tile_parts(&r.dims, &tile) {
                let raw = if direct {
                    read_raw_chunk(&ds, &part.origin)?
                } else {
                    None
                };
                match raw {
                    Some((bytes, mask)) => {
                        // The lock is released: decoding runs in parallel with other reads.
                        let decoded = pipeline.decode(bytes, mask, chunk_bytes)?;
                        out.scatter(&decoded, &tile, &part.sel, &part.offset);
                    }
                    None => {
                        // A box of the tile through the library (a chunk never written
                        // reads as its fill value), strided here.
                        let bx: Vec<Dim> = part
                            .origin
                            .iter()
                            .zip(&part.sel)
                            .map(|(&o, s)| Dim::range(o + s.start, (s.len - 1) * s.step + 1))
                            .collect();
                        let data = library_read(&ds, &bx, r.dtype)?;
                        let steps: Vec<u64> = part.sel.iter().map(|s| s.step).collect();
                        out.place(&data, &steps, &part.offset);
                    }
                }
            }
            Ok(out.finish())
        }
    }
}

/// The file's element type, when we convert it ourselves.
fn file_type(ds: &hdf5::Dataset) -> Option<FileType> {
    let t = ds.dtype().ok()?;
    let kind = match t.to_descriptor().ok()? {
        TypeDescriptor::Float(FloatSize::U2) => Kind::F16,
        TypeDescriptor::Float(FloatSize::U4) => Kind::F32,
        TypeDescriptor::Float(FloatSize::U8) => Kind::F64,
        TypeDescriptor::Integer(IntSize::U1) => Kind::I8,
        TypeDescriptor::Integer(IntSize::U2) => Kind::I16,
        TypeDescriptor::Integer(IntSize::U4) => Kind::I32,
        TypeDescriptor::Integer(IntSize::U8) => Kind::I64,
        TypeDescriptor::Unsigned(IntSize::U1) => Kind::U8,
        TypeDescriptor::Unsigned(IntSize::U2) => Kind::U16,
        TypeDescriptor::Unsigned(IntSize::U4) => Kind::U32,
        TypeDescriptor::Boolean => Kind::Bool,
        _ => return None,
    };
    let big_endian = match t.byte_order() {
        ByteOrder::BigEndian => true,
        ByteOrder::LittleEndian => false,
        // One-byte types have no order; VAX or mixed orders are the library's to convert.
        _ if t.size() == 1 => false,
        _ => return None,
    };
    let ft = FileType { kind, big_endian };
    (ft.size() == t.size()).then_some(ft)
}

/// The dataset's filter pipeline as (id, client data), in the order applied on writing.
/// Read with the raw calls: the crate's `filters()` gives an empty list when it cannot
/// parse one filter's parameters, which would make compressed bytes look like data.
fn filter_list(ds: &hdf5::Dataset) -> Result<Vec<(i32, Vec<u32>)>, String> {
    use hdf5_sys::h5p::{H5Pget_filter2, H5Pget_nfilters};
    let dcpl = ds.dcpl().map_err(|e| e.to_string())?;
    let id = dcpl.id();
    hdf5::sync::sync(|| {
        // SAFETY: `id` is a live property list (held by `dcpl`); every pointer passed
        // points to a local of the size given.
        let n = unsafe { H5Pget_nfilters(id) };
        if n < 0 {
            return Err("reading the dataset's filters failed".to_string());
        }
        let mut out = Vec::with_capacity(n as usize);
        for i in 0..n as u32 {
            let mut flags = 0u32;
            let mut cd = [0u32; 32];
            let mut nelmts: usize = cd.len();
            let mut name = [0 as std::ffi::c_char; 64];
            let mut config = 0u32;
            let fid = unsafe {
                H5Pget_filter2(
                    id,
                    i,
                    &mut flags,
                    &mut nelmts,
                    cd.as_mut_ptr(),
                    name.len(),
                    name.as_mut_ptr(),
                    &mut config,
                )
            };
            if fid < 0 {
                return Err(format!("reading the dataset's filter {i} failed"));
            }
            out.push((fid, cd[..nelmts.min(cd.len())].to_vec()));
        }
        Ok(out)
    })
}

/// The stored bytes of the chunk starting at `origin` and its filter mask, read under the
/// library's lock; None for a chunk never written.
fn read_raw_chunk(ds: &hdf5::Dataset, origin: &[u64]) -> Result<Option<(Vec<u8>, u32)>, String> {
    use hdf5_sys::h5::HADDR_UNDEF;
    use hdf5_sys::h5d::{H5Dget_chunk_info_by_coord, H5Dread_chunk};
    use hdf5_sys::h5p::H5P_DEFAULT;
    let id = ds.id();
    let at = |o: &[u64]| format!("{o:?}");
    hdf5::sync::sync(|| {
        let (mut mask, mut addr, mut size) = (0u32, 0u64, 0u64);
        // SAFETY: `id` is a live dataset (held by `ds`), `origin` has one entry per axis
        // (tile_parts makes it from the read's dims), the out-pointers are locals.
        let rc = unsafe {
            H5Dget_chunk_info_by_coord(id, origin.as_ptr(), &mut mask, &mut addr, &mut size)
        };
        if rc < 0 {
            return Err(format!("finding the chunk at {}", at(origin)));
        }
        if addr == HADDR_UNDEF || size == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; size as usize];
        let mut filters = 0u32;
        // SAFETY: `buf` holds the chunk's stored size, which H5Dread_chunk writes.
        let rc = unsafe {
            H5Dread_chunk(
                id,
                H5P_DEFAULT,
                origin.as_ptr(),
                &mut filters,
                buf.as_mut_ptr().cast(),
            )
        };
        if rc < 0 {
            return Err(format!("reading the chunk at {}", at(origin)));
        }
        Ok(Some((buf, filters)))
    })
}

/// One step-1 hyperslab through the library, converted by it to `dtype`.
fn library_read(ds: &hdf5::Dataset, dims: &[Dim], dtype: DType) -> Result<Data, String> {
    let reader = ds.as_reader();
    macro_rules! read {
        ($t:ty) => {
            if dims.is_empty() {
                reader
                    .read_dyn::<$t>()
                    .map_err(|e| e.to_string())?
                    .into_shape_with_order(IxDyn(&[]))
                    .map_err(|e| e.to_string())?
            } else {
                reader
                    .read_slice::<$t, _, IxDyn>(hyperslab(dims))
                    .map_err(|e| e.to_string())?
            }
        };
    }
    Ok(match dtype {
        DType::F64 => Data::F64(read!(f64)),
        DType::F32 => Data::F32(read!(f32)),
        DType::I64 => Data::I64(read!(i64)),
        DType::I32 => Data::I32(read!(i32)),
        DType::Bool => Data::Bool(read!(bool).mapv(u8::from)),
    })
}

/// The region in one library read, or in pieces touching at most
/// [`MAX_FILE_CHUNKS_PER_READ`] file chunks each.
fn whole(ds: &hdf5::Dataset, r: &Read, chunks: Option<&[usize]>) -> Result<Data, String> {
    let pieces = match chunks {
        Some(fc) if !r.dims.is_empty() => read_pieces(&r.dims, fc, MAX_FILE_CHUNKS_PER_READ),
        _ => return library_read(ds, &r.dims, r.dtype),
    };
    if pieces.len() == 1 {
        return library_read(ds, &r.dims, r.dtype);
    }
    let shape: Vec<usize> = r.dims.iter().map(|d| d.len as usize).collect();
    let mut out = Output::new(&shape, r.dtype, None);
    for (offset, dims) in &pieces {
        let part = library_read(ds, dims, r.dtype)?;
        out.place(&part, &vec![1; dims.len()], offset);
    }
    Ok(out.finish())
}

/// `part` taken every `steps` along each axis, into `out` at `offset`.
fn place_into<T: Clone>(out: &mut ArrayD<T>, part: &ArrayD<T>, steps: &[u64], offset: &[usize]) {
    let src = part.slice_each_axis(|a| Slice::new(0, None, steps[a.axis.index()].max(1) as isize));
    out.slice_each_axis_mut(|a| {
        let i = a.axis.index();
        Slice::from(offset[i]..offset[i] + src.shape()[i])
    })
    .assign(&src);
}
