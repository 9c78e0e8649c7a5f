//! `rdask-jobqueue info FILE.h5` (netCDF-4 `.nc` files too: they are HDF5 files): every
//! group and dataset as a tree, each dataset with its shape, element type, chunks, filters
//! (names and levels) and its size in memory against its size on disk.
//!
//! [`inspect`] reads the file into a plain [`Entry`] tree; [`text`] and [`json`] only format
//! that tree, so the layout is tested without files.

use std::path::Path;

use hdf5::filters::{Filter, SZip, ScaleOffset};
use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use serde::Serialize;

use crate::units::ByteSize;

/// One group or dataset of the file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    /// The last part of its path (`""` for the root group).
    pub name: String,
    /// Its full path, `/` for the root.
    pub path: String,
    #[serde(flatten)]
    pub kind: EntryKind,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EntryKind {
    Group {
        members: Vec<Entry>,
    },
    Dataset {
        shape: Vec<usize>,
        /// NumPy's name for the file's element type (`float64`, `uint16`, `complex128`...).
        dtype: String,
        /// The file's chunk shape; None when stored contiguously.
        chunks: Option<Vec<usize>>,
        /// The filter pipeline, in the order HDF5 applies it when writing.
        filters: Vec<FilterEntry>,
        /// Elements times element size: what the values take in memory.
        memory_bytes: u64,
        /// What HDF5 has allocated for it in the file (0 for a dataset never written).
        stored_bytes: u64,
    },
}

/// A filter as a person names it, and its settings (`gzip`, `level=4`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FilterEntry {
    pub name: String,
    /// Its settings (`level=4`); empty when it has none.
    pub settings: String,
}

impl FilterEntry {
    fn new(name: &str, settings: impl Into<String>) -> FilterEntry {
        FilterEntry {
            name: name.into(),
            settings: settings.into(),
        }
    }
}

impl std::fmt::Display for FilterEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.settings.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}({})", self.name, self.settings)
        }
    }
}

/// The registered ids of the HDF5 filter plugins people meet (from The HDF Group's list),
/// for naming them even where the plugin is not installed.
const PLUGIN_FILTERS: &[(i32, &str)] = &[
    (307, "bzip2"),
    (32000, "lzf"),
    (32001, "blosc"),
    (32004, "lz4"),
    (32008, "bitshuffle"),
    (32013, "zfp"),
    (32015, "zstd"),
    (32026, "blosc2"),
];

/// A filter of the pipeline as [`FilterEntry`]: built-in ones with their parameters, the
/// common plugins by name with their level where their parameters say it.
pub fn describe_filter(f: &Filter) -> FilterEntry {
    match f {
        Filter::Deflate(level) => FilterEntry::new("gzip", format!("level={level}")),
        Filter::Shuffle => FilterEntry::new("shuffle", ""),
        Filter::Fletcher32 => FilterEntry::new("fletcher32", ""),
        Filter::SZip(coding, pixels) => {
            let coding = match coding {
                SZip::Entropy => "entropy",
                SZip::NearestNeighbor => "nearest-neighbour",
            };
            FilterEntry::new("szip", format!("{coding}, {pixels} pixels per block"))
        }
        Filter::NBit => FilterEntry::new("nbit", ""),
        Filter::ScaleOffset(ScaleOffset::Integer(bits)) => {
            FilterEntry::new("scaleoffset", format!("integer, minbits={bits}"))
        }
        Filter::ScaleOffset(ScaleOffset::FloatDScale(d)) => {
            FilterEntry::new("scaleoffset", format!("float, decimals={d}"))
        }
        Filter::LZF => FilterEntry::new("lzf", ""),
        Filter::User(id, cdata) => describe_plugin(*id, cdata),
    }
}

/// A plugin filter by its id and client data. Levels: zstd keeps it first; blosc (and
/// blosc2) after four slots HDF5 fills in (version, versions, type size, chunk size), then
/// the shuffle mode and the compressor.
fn describe_plugin(id: i32, cdata: &[u32]) -> FilterEntry {
    let Some(&(_, name)) = PLUGIN_FILTERS.iter().find(|(i, _)| *i == id) else {
        return FilterEntry::new(&format!("filter {id}"), format!("unknown; cdata={cdata:?}"));
    };
    let settings = match (name, cdata) {
        ("zstd", [level, ..]) => format!("level={level}"),
        ("blosc" | "blosc2", [_, _, _, _, level, shuffle, compressor, ..]) => {
            let compressor = ["blosclz", "lz4", "lz4hc", "snappy", "zlib", "zstd"]
                .get(*compressor as usize)
                .copied()
                .unwrap_or("unknown compressor");
            let shuffle = ["no shuffle", "shuffle", "bitshuffle"]
                .get(*shuffle as usize)
                .copied()
                .unwrap_or("unknown shuffle");
            format!("{compressor}, level={level}, {shuffle}")
        }
        ("blosc" | "blosc2", [_, _, _, _, level]) => format!("level={level}"),
        ("bzip2", [level, ..]) => format!("level={level}"),
        _ => String::new(),
    };
    FilterEntry::new(name, settings)
}

/// NumPy's name for an HDF5 element type; h5py's complex numbers (a compound of two floats
/// `r` and `i`) are `complex64`/`complex128`.
pub fn numpy_name(t: &TypeDescriptor) -> String {
    let bits = |s: IntSize| s as usize * 8;
    match t {
        TypeDescriptor::Integer(s) => format!("int{}", bits(*s)),
        TypeDescriptor::Unsigned(s) => format!("uint{}", bits(*s)),
        TypeDescriptor::Float(FloatSize::U2) => "float16".into(),
        TypeDescriptor::Float(FloatSize::U4) => "float32".into(),
        TypeDescriptor::Float(FloatSize::U8) => "float64".into(),
        TypeDescriptor::Boolean => "bool".into(),
        TypeDescriptor::Enum(e) => format!("enum of {}", e.size as usize * 8),
        TypeDescriptor::Compound(c) => match super::hdf5io::h5py_complex_bits(c) {
            Some(bits) => format!("complex{bits}"),
            None => {
                let names: Vec<&str> = c.fields.iter().map(|f| f.name.as_str()).collect();
                format!("compound {{{}}}", names.join(", "))
            }
        },
        TypeDescriptor::FixedArray(inner, n) => format!("{n} x {}", numpy_name(inner)),
        TypeDescriptor::FixedAscii(n) => format!("bytes{n}"),
        TypeDescriptor::FixedUnicode(n) => format!("utf-8 string of {n} bytes"),
        TypeDescriptor::VarLenArray(inner) => format!("variable-length {}", numpy_name(inner)),
        TypeDescriptor::VarLenAscii => "variable-length bytes".into(),
        TypeDescriptor::VarLenUnicode => "variable-length string".into(),
        TypeDescriptor::Reference(_) => "reference".into(),
    }
}

/// Refuses what is not an HDF5 file, with what it is when we can tell (a netCDF-3 file).
fn check_signature(file: &str) -> Result<(), String> {
    use std::io::Read;
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?;
    let n = f.read(&mut head).map_err(|e| format!("{file}: {e}"))?;
    if n >= 4 && &head[..3] == b"CDF" && matches!(head[3], 1 | 2 | 5) {
        return Err(format!(
            "{file} is a netCDF-3 (classic) file, not HDF5: only netCDF-4 files are HDF5 \
             files; convert it with `nccopy -k nc4 {file} out.nc`"
        ));
    }
    // HDF5's signature may also sit at 512, 1024, ... bytes (a user block): the library
    // decides; this only catches the classic netCDF case above with a better message.
    Ok(())
}

/// Reads the tree of `file`.
pub fn inspect(file: &str) -> Result<Entry, String> {
    if !Path::new(file).is_file() {
        return Err(format!("{file}: no such file"));
    }
    check_signature(file)?;
    let h5 = hdf5::File::open(file)
        .map_err(|e| format!("{file} is not an HDF5 (or netCDF-4) file, or cannot be read: {e}"))?;
    group_entry(&h5, "", "/")
}

fn group_entry(g: &hdf5::Group, name: &str, path: &str) -> Result<Entry, String> {
    let err = |e: hdf5::Error| format!("{path}: {e}");
    let mut members = Vec::new();
    for member in g.member_names().map_err(err)? {
        let child = if path == "/" {
            format!("/{member}")
        } else {
            format!("{path}/{member}")
        };
        // Soft links to nowhere and committed datatypes are neither: skipped.
        if let Ok(sub) = g.group(&member) {
            members.push(group_entry(&sub, &member, &child)?);
        } else if let Ok(ds) = g.dataset(&member) {
            members.push(dataset_entry(&ds, &member, &child)?);
        }
    }
    Ok(Entry {
        name: name.into(),
        path: path.into(),
        kind: EntryKind::Group { members },
    })
}

fn dataset_entry(ds: &hdf5::Dataset, name: &str, path: &str) -> Result<Entry, String> {
    let dt = ds.dtype().map_err(|e| format!("{path}: {e}"))?;
    let dtype = match dt.to_descriptor() {
        Ok(d) => numpy_name(&d),
        Err(_) => format!("an HDF5 type of {} bytes not described here", dt.size()),
    };
    let shape = ds.shape();
    let elements: u64 = shape.iter().map(|&n| n as u64).product();
    Ok(Entry {
        name: name.into(),
        path: path.into(),
        kind: EntryKind::Dataset {
            shape,
            dtype,
            chunks: ds.chunk(),
            filters: ds.filters().iter().map(describe_filter).collect(),
            memory_bytes: elements * dt.size() as u64,
            stored_bytes: ds.storage_size(),
        },
    })
}

/// Totals over the datasets under `e`: (datasets, groups below it, memory, stored).
fn totals(e: &Entry) -> (usize, usize, u64, u64) {
    match &e.kind {
        EntryKind::Dataset {
            memory_bytes,
            stored_bytes,
            ..
        } => (1, 0, *memory_bytes, *stored_bytes),
        EntryKind::Group { members } => members.iter().fold((0, 0, 0, 0), |acc, m| {
            let t = totals(m);
            let group = usize::from(matches!(m.kind, EntryKind::Group { .. }));
            (acc.0 + t.0, acc.1 + t.1 + group, acc.2 + t.2, acc.3 + t.3)
        }),
    }
}

/// Size in memory against size on disk: `8.0 MiB -> 1.2 MiB stored (6.7x smaller)`.
fn sizes(memory: u64, stored: u64) -> String {
    let (m, s) = (ByteSize(memory).human(), ByteSize(stored).human());
    if stored == 0 {
        return format!("{m}, nothing stored yet");
    }
    let ratio = memory as f64 / stored as f64;
    format!("{m} in memory, {s} on disk ({ratio:.2}x)")
}

fn tuple(v: &[usize]) -> String {
    super::lazy::python_tuple(v)
}

/// The tree as text: a header line with the totals, then one line per group and dataset.
pub fn text(file: &str, root: &Entry) -> String {
    let (datasets, groups, memory, stored) = totals(root);
    let mut out = format!(
        "{file}: {datasets} dataset{}, {groups} group{} below /; {}\n/\n",
        if datasets == 1 { "" } else { "s" },
        if groups == 1 { "" } else { "s" },
        sizes(memory, stored)
    );
    if let EntryKind::Group { members } = &root.kind {
        tree_lines(members, "", &mut out);
    }
    out
}

fn tree_lines(members: &[Entry], prefix: &str, out: &mut String) {
    for (k, m) in members.iter().enumerate() {
        let last = k + 1 == members.len();
        let (branch, more) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        match &m.kind {
            EntryKind::Group { members } => {
                out.push_str(&format!("{prefix}{branch}{}/\n", m.name));
                tree_lines(members, &format!("{prefix}{more}"), out);
            }
            EntryKind::Dataset {
                shape,
                dtype,
                chunks,
                filters,
                memory_bytes,
                stored_bytes,
            } => {
                let chunks = match chunks {
                    Some(c) => format!("chunks {}", tuple(c)),
                    None => "contiguous".into(),
                };
                let filters = if filters.is_empty() {
                    "no filters".to_string()
                } else {
                    let names: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
                    names.join(" + ")
                };
                out.push_str(&format!(
                    "{prefix}{branch}{}  {dtype} {}  {chunks}  {filters}  {}\n",
                    m.name,
                    tuple(shape),
                    sizes(*memory_bytes, *stored_bytes)
                ));
            }
        }
    }
}

/// The tree as JSON: `{"file", "datasets", "groups", "memory_bytes", "stored_bytes",
/// "root": {"name", "path", "kind": "group", "members": [...]}}`, datasets with `shape`,
/// `dtype`, `chunks` (null when contiguous), `filters` ([{"name", "settings"}]),
/// `memory_bytes`, `stored_bytes`.
pub fn json(file: &str, root: &Entry) -> serde_json::Value {
    let (datasets, groups, memory, stored) = totals(root);
    serde_json::json!({
        "file": file,
        "datasets": datasets,
        "groups": groups,
        "memory_bytes": memory,
        "stored_bytes": stored,
        "root": root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(name: &str, path: &str, filters: Vec<FilterEntry>) -> Entry {
        Entry {
            name: name.into(),
            path: path.into(),
            kind: EntryKind::Dataset {
                shape: vec![1000, 10],
                dtype: "float64".into(),
                chunks: Some(vec![100, 10]),
                filters,
                memory_bytes: 80_000,
                stored_bytes: 20_000,
            },
        }
    }

    #[test]
    fn the_tree_shows_every_group_and_dataset() {
        let gz = vec![
            FilterEntry::new("shuffle", ""),
            FilterEntry::new("gzip", "level=4"),
        ];
        let inner = Entry {
            name: "g".into(),
            path: "/g".into(),
            kind: EntryKind::Group {
                members: vec![dataset("y", "/g/y", vec![]), {
                    let mut e = dataset("z", "/g/z", vec![]);
                    if let EntryKind::Dataset { chunks, .. } = &mut e.kind {
                        *chunks = None;
                    }
                    e
                }],
            },
        };
        let root = Entry {
            name: String::new(),
            path: "/".into(),
            kind: EntryKind::Group {
                members: vec![dataset("x", "/x", gz), inner],
            },
        };
        let want = "\
f.h5: 3 datasets, 1 group below /; 234.4 KiB in memory, 58.6 KiB on disk (4.00x)
/
├── x  float64 (1000, 10)  chunks (100, 10)  shuffle + gzip(level=4)  78.1 KiB in memory, 19.5 KiB on disk (4.00x)
└── g/
    ├── y  float64 (1000, 10)  chunks (100, 10)  no filters  78.1 KiB in memory, 19.5 KiB on disk (4.00x)
    └── z  float64 (1000, 10)  contiguous  no filters  78.1 KiB in memory, 19.5 KiB on disk (4.00x)
";
        assert_eq!(text("f.h5", &root), want);
        let j = json("f.h5", &root);
        assert_eq!(j["datasets"], 3);
        assert_eq!(j["root"]["members"][0]["filters"][1]["settings"], "level=4");
        assert_eq!(j["root"]["members"][1]["kind"], "group");
        assert_eq!(
            j["root"]["members"][1]["members"][1]["chunks"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn filters_and_types_are_named() {
        let name = |f: Filter| describe_filter(&f).to_string();
        assert_eq!(name(Filter::Deflate(9)), "gzip(level=9)");
        assert_eq!(name(Filter::LZF), "lzf");
        assert_eq!(
            name(Filter::SZip(SZip::NearestNeighbor, 8)),
            "szip(nearest-neighbour, 8 pixels per block)"
        );
        assert_eq!(
            name(Filter::ScaleOffset(ScaleOffset::FloatDScale(3))),
            "scaleoffset(float, decimals=3)"
        );
        // hdf5plugin's Zstd(clevel=7) and Blosc(cname='zstd', clevel=5, shuffle=SHUFFLE).
        assert_eq!(name(Filter::User(32015, vec![7])), "zstd(level=7)");
        assert_eq!(
            name(Filter::User(32001, vec![2, 2, 8, 80000, 5, 1, 5])),
            "blosc(zstd, level=5, shuffle)"
        );
        assert_eq!(
            name(Filter::User(40000, vec![1])),
            "filter 40000(unknown; cdata=[1])"
        );
        assert_eq!(numpy_name(&TypeDescriptor::Unsigned(IntSize::U2)), "uint16");
        assert_eq!(numpy_name(&TypeDescriptor::Float(FloatSize::U2)), "float16");
    }

    #[test]
    fn sizes_say_how_much_smaller() {
        assert_eq!(sizes(0, 0), "0 B, nothing stored yet");
        assert_eq!(
            sizes(8 << 20, 2 << 20),
            "8.0 MiB in memory, 2.0 MiB on disk (4.00x)"
        );
    }
}
