//! HDF5 at both ends of an array computation: input datasets described (and opened for the
//! workers' reads),
//! results written through one temporary file that is renamed (or copied) into place only
//! when every chunk is written.
//!
//! Datasets are described here (shape, dtype, chunks, filters we can decode) when an
//! expression names them; workers read them through [`super::h5read`]. Every file is opened
//! with the chunk cache off (0 bytes): every read touches each HDF5 chunk it needs once, so
//! a cache would only add a copy (HDF5 2.x's default 8 MiB cache halved read speed in our
//! measurements).
//!
//! Writes: HDF5's serial library allows one writer per file at a time. Store tasks write their
//! chunk themselves (no chunk travels to a writer) into a temporary file next to the output,
//! one at a time: an exclusive `flock` on a lock file beside it serialises the workers (on
//! every node, through the shared filesystem) and a process-wide mutex the threads of one
//! worker. The driver creates that file before the graph runs and, once every store task has
//! finished, renames it to the output's name — or, when the output file already exists, copies
//! the finished dataset into it (`H5Ocopy`: a second write of the data, the price of never
//! leaving a half-written dataset in a file that holds others). A failed or cancelled run
//! removes the temporary file: the output is untouched.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use hdf5::{Hyperslab, SliceOrIndex};

use super::block::Dim;
use super::codecs;
use super::data::{with_data, DType, Data};

/// What the planner needs to know of an input dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetInfo {
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// The dataset's own chunk shape (None when stored contiguously).
    pub chunks: Option<Vec<usize>>,
}

fn h5err(what: &str) -> impl Fn(hdf5::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

pub(super) fn open_ro(file: &str) -> Result<hdf5::File, String> {
    if !Path::new(file).exists() {
        return Err(format!("{file}: no such file"));
    }
    hdf5::File::with_options()
        .with_fapl(|p| p.chunk_cache(0, 0, 1.0))
        .open(file)
        .map_err(h5err(file))
}

/// Maps an HDF5 element type to the dtype we compute in (integers narrower than 32 bits
/// widen as NumPy would when mixed; unsigned 32-bit needs int64; float16 is read as float32,
/// HDF5 converting each value exactly).
fn dtype_of(desc: &TypeDescriptor) -> Option<DType> {
    Some(match desc {
        TypeDescriptor::Float(FloatSize::U8) => DType::F64,
        TypeDescriptor::Float(FloatSize::U4 | FloatSize::U2) => DType::F32,
        TypeDescriptor::Integer(IntSize::U8) => DType::I64,
        TypeDescriptor::Integer(_) => DType::I32,
        TypeDescriptor::Unsigned(IntSize::U1 | IntSize::U2) => DType::I32,
        TypeDescriptor::Unsigned(IntSize::U4) => DType::I64,
        // h5py's bool: an enum of int8 with FALSE = 0 and TRUE = 1.
        TypeDescriptor::Boolean => DType::Bool,
        _ => return None,
    })
}

/// Shape, dtype and chunking of `file:dataset`, with errors a user can act on.
pub fn describe(file: &str, dataset: &str) -> Result<DatasetInfo, String> {
    let f = open_ro(file)?;
    let ds = f.dataset(dataset).map_err(|_| {
        let names = f.member_names().unwrap_or_default().join(", ");
        format!("{file}: no dataset '{dataset}' (top-level members: {names})")
    })?;
    let desc = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(h5err(file))?;
    let dtype = dtype_of(&desc).ok_or_else(|| {
        format!(
            "{file}:{dataset} holds {} elements, which arrays here cannot compute with; \
             supported: float64, float32 (and float16, read as float32), int64, int32 (and \
             narrower integers, read as int32)",
            type_name(&desc)
        )
    })?;
    check_filters(&ds.filters()).map_err(|e| format!("{file}:{dataset}: {e}"))?;
    Ok(DatasetInfo {
        shape: ds.shape(),
        dtype,
        chunks: ds.chunk(),
    })
}

/// A type's name as NumPy users know it: h5py stores complex numbers as a compound of two
/// floats named `r` and `i`, which would otherwise print as "compound (2 fields)".
fn type_name(desc: &TypeDescriptor) -> String {
    if let TypeDescriptor::Compound(c) = desc {
        if let Some(bits) = h5py_complex_bits(c) {
            return format!("complex{bits} (complex numbers)");
        }
    }
    desc.to_string()
}

/// The width in bits of h5py's complex numbers (a compound of two floats named `r` and `i`),
/// or None for any other compound: the one test `info` and the input checks share.
pub(crate) fn h5py_complex_bits(c: &hdf5::types::CompoundType) -> Option<usize> {
    let names: Vec<&str> = c.fields.iter().map(|f| f.name.as_str()).collect();
    let floats = c
        .fields
        .iter()
        .all(|f| matches!(f.ty, TypeDescriptor::Float(_)));
    (names == ["r", "i"] && floats).then_some(8 * c.size)
}

/// Well-known registered HDF5 filter ids (the HDF Group's list), for naming a filter this
/// build cannot decode.
fn filter_name(id: i32) -> String {
    let name = match id {
        1 => "deflate (gzip)",
        2 => "shuffle",
        3 => "fletcher32",
        4 => "szip",
        5 => "nbit",
        6 => "scaleoffset",
        307 => "bzip2",
        32000 => "lzf",
        32001 => "blosc",
        32004 => "lz4",
        32008 => "bitshuffle",
        32013 => "zfp",
        32015 => "zstd",
        32017 => "sz",
        32026 => "blosc2",
        _ => return format!("filter {id}"),
    };
    format!("the {name} filter (id {id})")
}

/// Refuses, before anything runs, a dataset compressed with a filter this build cannot
/// decode. The HDF5 library decodes deflate, shuffle, fletcher32, szip, nbit, scaleoffset,
/// lzf (registered by the crate) and whatever plugins HDF5_PLUGIN_PATH holds; we decode
/// deflate, shuffle, fletcher32, lzf and zstd ourselves (array/codecs). A pipeline is read
/// by us only when we decode all of its filters, else by the library: so a filter the
/// library lacks is fine only when all the others are ours too.
fn check_filters(filters: &[hdf5::filters::Filter]) -> Result<(), String> {
    let all_ours = filters.iter().all(|f| codecs::decodes(f.id()));
    for f in filters {
        if !f.decode_enabled() && !all_ours {
            return Err(format!(
                "compressed with {}, which this build cannot decode; rewrite it uncompressed or \
                 with gzip, lzf or zstd (e.g. h5repack -f GZIP=4), or install the filter's HDF5 \
                 plugin and point HDF5_PLUGIN_PATH at it",
                filter_name(f.id())
            ));
        }
    }
    Ok(())
}

pub(super) fn hyperslab(dims: &[Dim]) -> Hyperslab {
    Hyperslab::from(
        dims.iter()
            .map(|d| SliceOrIndex::SliceCount {
                start: d.start as usize,
                step: d.step.max(1) as usize,
                count: d.len as usize,
                block: 1,
            })
            .collect::<Vec<_>>(),
    )
}

/// A `FILE:/dataset` pair as users write it on the command line. The dataset path is
/// normalised (`x`, `/x/`, `//x` are all `/x`); the root group alone is not a dataset.
pub fn parse_target(s: &str) -> Result<(String, String), String> {
    let (file, dataset) = s
        .rsplit_once(':')
        .filter(|(f, d)| !f.is_empty() && !d.is_empty())
        .ok_or_else(|| format!("'{s}' is not FILE.h5:/path/to/dataset (e.g. data.h5:/x)"))?;
    let parts: Vec<&str> = dataset.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err(format!(
            "'{s}' names the file's root group, not a dataset; add a dataset name \
             (e.g. {file}:/result)"
        ));
    }
    Ok((file.to_string(), format!("/{}", parts.join("/"))))
}

/// Refuses an output that cannot be written without damage, before anything runs: a file
/// that is not HDF5, a path through a dataset (`/x/y` where `/x` is a dataset), a group where
/// the dataset should go (`--overwrite` replaces datasets only: a group may hold much more
/// than this run writes), or an existing dataset without `overwrite`. `dataset` is a
/// normalised path as [`parse_target`] returns it.
pub fn check_output(file: &str, dataset: &str, overwrite: bool) -> Result<(), String> {
    let target = Path::new(file);
    if !target.exists() {
        return match target.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => Err(format!(
                "{}: no such directory for the output",
                dir.display()
            )),
            _ => Ok(()),
        };
    }
    let f = hdf5::File::open(file).map_err(|e| {
        format!("{file} exists and is not an HDF5 file we can open ({e}); choose another output")
    })?;
    let mut path = String::new();
    let parts: Vec<&str> = dataset.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        path.push('/');
        path.push_str(part);
        if !f.link_exists(&path) {
            return Ok(()); // this and everything below it will be created
        }
        let kind = f.loc_type_by_name(&path).map_err(h5err(file))?;
        let last = i + 1 == parts.len();
        match (kind, last) {
            (hdf5::LocationType::Group, false) => {}
            (_, false) => {
                return Err(format!(
                    "{file}:{path} is not a group, so {dataset} cannot be created under it; \
                     choose another output path"
                ))
            }
            (hdf5::LocationType::Dataset, true) if overwrite => {}
            (hdf5::LocationType::Dataset, true) => {
                return Err(format!(
                    "{file}:{dataset} already exists; pass --overwrite to replace it"
                ))
            }
            (_, true) => {
                return Err(format!(
                    "{file}:{dataset} is a group, not a dataset; --overwrite replaces only a \
                     dataset (never a group and what it holds): choose a dataset path such as \
                     {dataset}/result"
                ))
            }
        }
    }
    Ok(())
}

/// Serialises store tasks of all the worker's threads (flock alone is per process on NFS).
static WRITING: Mutex<()> = Mutex::new(());

/// Writes one chunk at `offset` of `file:dataset`, holding the output's write lock.
pub fn write_chunk(file: &str, dataset: &str, offset: &[usize], data: &Data) -> Result<(), String> {
    let _threads = WRITING.lock().unwrap_or_else(|p| p.into_inner());
    let lock_path = lock_file_of(Path::new(file));
    // The driver creates the lock file with the temporary file and removes both when the run
    // ends; a store task still running then (a cancelled or failed run) must not create it
    // again and leave it behind, so it is never created here.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock_path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "the output's temporary file {file} is gone: the run was cancelled or failed"
            ),
            _ => format!("opening the write lock {}: {e}", lock_path.display()),
        })?;
    flock(&lock)?;
    let result = (|| {
        let f = hdf5::File::open_rw(file).map_err(h5err(file))?;
        let ds = f.dataset(dataset).map_err(h5err(file))?;
        let dims: Vec<Dim> = offset
            .iter()
            .zip(data.shape())
            .map(|(&o, &n)| Dim::range(o as u64, n as u64))
            .collect();
        let writer = ds.as_writer();
        // Bools are written as h5py writes them (an enum of int8), which HDF5 will not
        // convert from bytes: hand it Rust bools.
        if let Data::Bool(a) = data {
            let a = a.mapv(|b| b != 0);
            if dims.is_empty() {
                writer.write(&a).map_err(h5err(file))?;
            } else {
                writer
                    .write_slice(&a, hyperslab(&dims))
                    .map_err(h5err(file))?;
            }
        } else {
            with_data!(data, a => {
                let a = a.as_standard_layout();
                if dims.is_empty() {
                    writer.write(&a).map_err(h5err(file))?;
                } else {
                    writer.write_slice(&a, hyperslab(&dims)).map_err(h5err(file))?;
                }
            });
        }
        drop(ds);
        f.close().map_err(h5err(file))
    })();
    let _ = lock.unlock();
    result
}

/// Waits for the exclusive lock (flock(2) on Linux, as other processes take it); a signal
/// interrupting the wait is not a failure.
fn flock(f: &std::fs::File) -> Result<(), String> {
    loop {
        match f.lock() {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("locking the output for writing: {e}")),
        }
    }
}

fn lock_file_of(tmp: &Path) -> PathBuf {
    let mut name = tmp.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// An output being written: a temporary file next to the target, removed unless committed.
#[derive(Debug)]
pub struct PendingOutput {
    pub file: PathBuf,
    pub dataset: String,
    /// The temporary file the store tasks write.
    pub tmp: PathBuf,
    committed: bool,
}

impl PendingOutput {
    /// Checks the target and creates the temporary file with an empty dataset of the
    /// result's shape, dtype and chunking. Refuses an existing dataset without `overwrite`.
    pub fn create(
        file: &str,
        dataset: &str,
        shape: &[usize],
        dtype: DType,
        chunks: &[usize],
        overwrite: bool,
    ) -> Result<PendingOutput, String> {
        let target = PathBuf::from(file);
        check_output(file, dataset, overwrite)?;
        let mut tmp_name = target.as_os_str().to_owned();
        tmp_name.push(format!(".rdask-tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        let out = PendingOutput {
            file: target,
            dataset: dataset.to_string(),
            tmp,
            committed: false,
        };
        let f = hdf5::File::create(&out.tmp).map_err(h5err(&out.tmp.display().to_string()))?;
        let lock = lock_file_of(&out.tmp);
        std::fs::File::create(&lock)
            .map_err(|e| format!("creating the write lock {}: {e}", lock.display()))?;
        let group = parent_groups(&f, dataset)?;
        let name = dataset.rsplit('/').next().unwrap_or(dataset);
        macro_rules! make {
            ($t:ty) => {{
                let mut b = group.new_dataset::<$t>().shape(shape.to_vec());
                if !shape.is_empty() && shape.iter().all(|&s| s > 0) {
                    b = b.chunk(chunks.to_vec());
                }
                b.create(name).map_err(h5err(file))?;
            }};
        }
        match dtype {
            DType::F64 => make!(f64),
            DType::F32 => make!(f32),
            DType::I64 => make!(i64),
            DType::I32 => make!(i32),
            DType::Bool => make!(bool),
        }
        f.close().map_err(h5err(file))?;
        Ok(out)
    }

    pub fn tmp_str(&self) -> String {
        self.tmp.display().to_string()
    }

    /// Puts the finished dataset in place.
    pub fn commit(mut self) -> Result<(), String> {
        let file = self.file.display().to_string();
        if !self.file.exists() {
            std::fs::rename(&self.tmp, &self.file)
                .map_err(|e| format!("renaming {} to {file}: {e}", self.tmp.display()))?;
        } else {
            // The file may have changed since the run began: still never replace a group.
            check_output(&file, &self.dataset, true)?;
            copy_dataset(&self.tmp, &self.file, &self.dataset)?;
            let _ = std::fs::remove_file(&self.tmp);
        }
        let _ = std::fs::remove_file(lock_file_of(&self.tmp));
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
            let _ = std::fs::remove_file(lock_file_of(&self.tmp));
        }
    }
}

/// Opens (creating as needed) the groups above `dataset`.
fn parent_groups(f: &hdf5::File, dataset: &str) -> Result<hdf5::Group, String> {
    let mut group: hdf5::Group = (**f).clone();
    let parts: Vec<&str> = dataset.split('/').filter(|p| !p.is_empty()).collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        group = match group.group(part) {
            Ok(g) => g,
            Err(_) => group.create_group(part).map_err(h5err(dataset))?,
        };
    }
    Ok(group)
}

/// Copies `dataset` from `from` into the existing file `to`, replacing a dataset there.
fn copy_dataset(from: &Path, to: &Path, dataset: &str) -> Result<(), String> {
    let what = to.display().to_string();
    let src = hdf5::File::open(from).map_err(h5err(&what))?;
    let dst = hdf5::File::open_rw(to).map_err(h5err(&what))?;
    let parent = parent_groups(&dst, dataset)?;
    if dst.link_exists(dataset) {
        dst.unlink(dataset).map_err(h5err(&what))?;
    }
    let name = dataset.rsplit('/').next().unwrap_or(dataset);
    src.dataset(dataset)
        .and_then(|ds| ds.copy_to(&parent, name))
        .map_err(h5err(&format!("copying {dataset} into {what}")))?;
    drop(parent);
    dst.close().map_err(h5err(&what))
}

#[cfg(test)]
mod write_side_tests {
    use super::*;

    #[test]
    fn targets_are_normalised_and_the_root_group_is_not_a_dataset() {
        let t = |s: &str| parse_target(s);
        assert_eq!(t("f.h5:x").unwrap(), ("f.h5".into(), "/x".into()));
        assert_eq!(t("f.h5://a//b/").unwrap(), ("f.h5".into(), "/a/b".into()));
        assert_eq!(t("c:/dir/f.h5:/x").unwrap().0, "c:/dir/f.h5");
        for bad in ["f.h5:/", "f.h5://", "f.h5", ":/x", "f.h5:"] {
            assert!(t(bad).is_err(), "{bad}");
        }
        assert!(t("f.h5:/").unwrap_err().contains("root group"));
    }

    #[test]
    fn outputs_never_replace_a_group_or_go_through_a_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.h5");
        let f = hdf5::File::create(&file).unwrap();
        f.create_group("g").unwrap();
        f.new_dataset::<f64>().shape([2]).create("g/a").unwrap();
        f.new_dataset::<f64>().shape([2]).create("x").unwrap();
        f.close().unwrap();
        let file = file.display().to_string();
        let check = |d: &str, overwrite| check_output(&file, d, overwrite);
        assert!(check("/g", true).unwrap_err().contains("is a group"));
        assert!(check("/g", false).unwrap_err().contains("is a group"));
        assert!(check("/x/y", true).unwrap_err().contains("is not a group"));
        assert!(check("/x", false).unwrap_err().contains("--overwrite"));
        check("/x", true).unwrap();
        check("/g/b", false).unwrap();
        check("/g/new/deeper", false).unwrap();
        check("/new", false).unwrap();
        let missing = dir.path().join("no/such/dir/f.h5").display().to_string();
        assert!(check_output(&missing, "/x", false)
            .unwrap_err()
            .contains("no such directory"));
    }

    #[test]
    fn a_store_task_never_recreates_the_lock_of_a_removed_output() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("o.h5").display().to_string();
        let pending = PendingOutput::create(&file, "/y", &[4], DType::F64, &[2], false).unwrap();
        let tmp = pending.tmp_str();
        let chunk = Data::F64(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[2]), 1.0));
        write_chunk(&tmp, "/y", &[0], &chunk).unwrap();
        drop(pending); // the run was cancelled
        let err = write_chunk(&tmp, "/y", &[2], &chunk).unwrap_err();
        assert!(err.contains("is gone"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
