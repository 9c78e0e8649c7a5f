//! The ledger on disk: an append-only log of changes, compacted now and then, plus the
//! in-memory index that finds a record by sequence number or job id.
//!
//! Why a log: the ledger is written before and after every submission and on every state
//! change, so rewriting it whole each time costs O(jobs) per change (a long adaptive cluster
//! records thousands of jobs). Appending one JSON line per change costs O(changed records),
//! with an fsync per append so an acknowledged change survives a crash.
//!
//! # Format (version 2)
//! - Line 1, the *snapshot*: the whole ledger as one JSON object (`version`, `cluster`,
//!   `next_seq`, `closed`, `closed_at`, `jobs`). It is only ever written by
//!   [`crate::files::write_atomic`], so it is never torn.
//! - Every further line, a *change*: `{"head": {...}}` when `next_seq`/`closed`/`closed_at`
//!   changed, and `{"jobs": [...]}` with the whole new version of every record that changed or
//!   is new. Replaying replaces records by sequence number, so a line is self-sufficient.
//! - A line counts once its newline is on disk. A last line without one is a crash mid-append
//!   (or a reader racing the writer): it is dropped, and the next change rewrites the file
//!   whole rather than append after it. Any *complete* line that does not parse is real
//!   corruption and refused with the line number: the ledger is the only record of the jobs,
//!   so guessing past a damaged line could hide a live job.
//! - When the log grows past [`COMPACT_RATIO`] lines per live record, it is rewritten as a
//!   single snapshot, atomically.
//!
//! Version 1 (before the log) was the same object pretty-printed as the whole file; it is
//! still read, and rewritten in version 2 by the first change.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::record::JobRecord;
use crate::error::{Error, Result};

/// The format version written in the file's first line; files from a newer version are
/// refused. Version 1 (one pretty JSON object, rewritten whole) is still read.
pub const LEDGER_VERSION: u32 = 2;

/// The log is compacted once it holds more than this many lines per live record (the
/// snapshot's head counts as one record), so it stays within a constant factor of the ledger.
pub const COMPACT_RATIO: usize = 4;

/// Small ledgers are not compacted below this many records' worth of lines: rewriting a
/// three-job ledger every few changes would be the whole-file rewrite again.
pub const COMPACT_MIN_RECORDS: usize = 4;

/// The ledger's contents: the snapshot line (and the whole file in version 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Data {
    pub version: u32,
    pub cluster: String,
    pub next_seq: u64,
    pub closed: bool,
    pub closed_at: Option<f64>,
    pub jobs: Vec<JobRecord>,
}

impl Data {
    pub fn empty(cluster: &str) -> Data {
        Data {
            version: LEDGER_VERSION,
            cluster: cluster.to_string(),
            next_seq: 0,
            closed: false,
            closed_at: None,
            jobs: Vec::new(),
        }
    }

    fn head(&self) -> Head {
        Head {
            next_seq: self.next_seq,
            closed: self.closed,
            closed_at: self.closed_at,
        }
    }
}

/// The ledger-wide fields, logged together when any of them changes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    next_seq: u64,
    closed: bool,
    closed_at: Option<f64>,
}

/// One appended line.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head: Option<Head>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    jobs: Vec<JobRecord>,
}

/// Where each record sits in `Data::jobs`. Records are only ever appended or replaced in
/// place, never removed or moved, so positions are stable.
#[derive(Clone, Debug, Default)]
pub(super) struct Index {
    by_seq: HashMap<u64, usize>,
    /// The *latest* record with each job id (ids can come back once their job finished).
    by_id: HashMap<String, usize>,
}

impl Index {
    pub fn build(jobs: &[JobRecord]) -> Index {
        let mut index = Index::default();
        for i in 0..jobs.len() {
            index.note(jobs, i);
        }
        index
    }

    /// Takes in the record at `pos` (new, or changed in place).
    pub fn note(&mut self, jobs: &[JobRecord], pos: usize) {
        let job = &jobs[pos];
        self.by_seq.insert(job.seq, pos);
        if let Some(id) = &job.job_id {
            let latest = self.by_id.entry(id.clone()).or_insert(pos);
            *latest = (*latest).max(pos);
        }
    }

    pub fn seq(&self, seq: u64) -> Option<usize> {
        self.by_seq.get(&seq).copied()
    }

    pub fn id(&self, job_id: &str) -> Option<usize> {
        self.by_id.get(job_id).copied()
    }
}

/// The positions of the records that differ between `old` and `new` (the ones a change must
/// log): changed in place or new at the end.
pub(super) fn changed_positions(old: &[JobRecord], new: &[JobRecord]) -> Vec<usize> {
    (0..new.len())
        .filter(|&i| old.get(i) != Some(&new[i]))
        .collect()
}

/// True when a log of `lines` lines holding `records` live records (jobs plus the head) should
/// be rewritten as one snapshot.
pub fn should_compact(lines: usize, records: usize) -> bool {
    lines > COMPACT_RATIO * records.max(COMPACT_MIN_RECORDS)
}

/// The file side of a ledger: where it is and whether it can be appended to.
#[derive(Clone, Debug)]
pub(super) struct Store {
    path: PathBuf,
    /// Complete lines in the file (the snapshot and the changes after it).
    lines: usize,
    /// The next change must rewrite the file whole: it does not exist yet, is in version 1,
    /// ends in a torn line, or an append failed part way.
    rewrite: bool,
}

/// A ledger read back: its contents, and how its file stands.
pub(super) struct Loaded {
    pub data: Data,
    pub index: Index,
    pub store: Store,
}

impl Store {
    /// Reads the ledger of `cluster` at `path`; a missing file is an empty ledger.
    pub fn load(path: &Path, cluster: &str) -> Result<Loaded> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let data = Data::empty(cluster);
                return Ok(Loaded {
                    index: Index::default(),
                    store: Store {
                        path: path.to_path_buf(),
                        lines: 0,
                        rewrite: true,
                    },
                    data,
                });
            }
            Err(e) => {
                return Err(Error::io(format!(
                    "reading the job ledger {}",
                    path.display()
                ))(e))
            }
        };
        parse(path, cluster, &text)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `next` (which differs from the previous contents `prev` in the records at
    /// `changed`) durable: one appended line, or a whole rewrite when the file cannot be
    /// appended to or the log has grown past [`should_compact`].
    pub fn save(&mut self, prev: &Data, next: &Data, changed: &[usize]) -> Result<()> {
        if self.rewrite || should_compact(self.lines + 1, next.jobs.len() + 1) {
            return self.compact(next);
        }
        let change = Change {
            head: (prev.head() != next.head()).then(|| next.head()),
            jobs: changed.iter().map(|&i| next.jobs[i].clone()).collect(),
        };
        let mut line = serde_json::to_vec(&change).map_err(|e| {
            Error::runtime(format!(
                "writing the job ledger {}: {e}",
                self.path.display()
            ))
        })?;
        line.push(b'\n');
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(&line)?;
                f.sync_data()
            });
        match appended {
            Ok(()) => {
                self.lines += 1;
                Ok(())
            }
            Err(e) => {
                // Part of the line may be on disk: never append after it.
                self.rewrite = true;
                Err(Error::io(format!(
                    "appending to the job ledger {}",
                    self.path.display()
                ))(e))
            }
        }
    }

    /// Rewrites the file as the single snapshot `data`, atomically.
    fn compact(&mut self, data: &Data) -> Result<()> {
        let snapshot = Data {
            version: LEDGER_VERSION,
            ..data.clone()
        };
        let mut json = serde_json::to_vec(&snapshot).map_err(|e| {
            Error::runtime(format!(
                "writing the job ledger {}: {e}",
                self.path.display()
            ))
        })?;
        json.push(b'\n');
        crate::files::write_atomic(&self.path, &json, 0o600)?;
        self.lines = 1;
        self.rewrite = false;
        Ok(())
    }
}

fn corrupt(path: &Path, cluster: &str, why: &str) -> Error {
    Error::runtime(format!(
        "the job ledger {} of cluster `{cluster}` is corrupt ({why}); it is the only record of \
         the batch jobs this cluster submitted. Look for jobs named `rdask-{cluster}-*` in the \
         batch queue and cancel them by hand before moving the file away",
        path.display(),
    ))
}

fn newer(path: &Path, version: u64) -> Error {
    Error::runtime(format!(
        "the job ledger {} has format version {version}, newer than this rdask-jobqueue \
         understands ({LEDGER_VERSION}); use the newer rdask-jobqueue that wrote it",
        path.display()
    ))
}

/// Reads either format. The log is recognised by a first line that is a complete JSON object
/// of version 2 or more; anything else is read as a version 1 whole file.
pub(super) fn parse(path: &Path, cluster: &str, text: &str) -> Result<Loaded> {
    let store = |lines, rewrite| Store {
        path: path.to_path_buf(),
        lines,
        rewrite,
    };
    if let Some((first, rest)) = text.split_once('\n') {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(first) {
            let version = value.get("version").and_then(serde_json::Value::as_u64);
            if let Some(v) = version.filter(|&v| v >= 2) {
                if v > u64::from(LEDGER_VERSION) {
                    return Err(newer(path, v));
                }
                let mut data: Data = serde_json::from_value(value)
                    .map_err(|e| corrupt(path, cluster, &format!("line 1: {e}")))?;
                check_cluster(path, cluster, &data)?;
                let mut index = Index::build(&data.jobs);
                // Everything after the last newline is a torn append.
                let (complete, torn) = match rest.rfind('\n') {
                    Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
                    None => (None, rest),
                };
                let mut lines = 1;
                if let Some(complete) = complete {
                    for line in complete.split('\n') {
                        lines += 1;
                        let change: Change = serde_json::from_str(line)
                            .map_err(|e| corrupt(path, cluster, &format!("line {lines}: {e}")))?;
                        apply(&mut data, &mut index, change);
                    }
                }
                check_records(path, cluster, &data)?;
                return Ok(Loaded {
                    data,
                    index,
                    store: store(lines, !torn.is_empty()),
                });
            }
        }
    }
    // Version 1: the whole file is one object.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| corrupt(path, cluster, &e.to_string()))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v > u64::from(LEDGER_VERSION) => return Err(newer(path, v)),
        Some(_) => {}
        None => return Err(corrupt(path, cluster, "no format version")),
    }
    let data: Data =
        serde_json::from_value(value).map_err(|e| corrupt(path, cluster, &e.to_string()))?;
    check_cluster(path, cluster, &data)?;
    check_records(path, cluster, &data)?;
    Ok(Loaded {
        index: Index::build(&data.jobs),
        data,
        // Rewritten in the log format by the first change.
        store: store(0, true),
    })
}

fn apply(data: &mut Data, index: &mut Index, change: Change) {
    if let Some(head) = change.head {
        data.next_seq = head.next_seq;
        data.closed = head.closed;
        data.closed_at = head.closed_at;
    }
    for job in change.jobs {
        let pos = match index.seq(job.seq) {
            Some(pos) => {
                data.jobs[pos] = job;
                pos
            }
            None => {
                data.jobs.push(job);
                data.jobs.len() - 1
            }
        };
        index.note(&data.jobs, pos);
    }
}

fn check_cluster(path: &Path, cluster: &str, data: &Data) -> Result<()> {
    if data.cluster != cluster {
        return Err(Error::runtime(format!(
            "the job ledger {} belongs to cluster `{}`, not `{cluster}`",
            path.display(),
            data.cluster
        )));
    }
    Ok(())
}

fn check_records(path: &Path, cluster: &str, data: &Data) -> Result<()> {
    let mut seen_seq = std::collections::BTreeSet::new();
    for job in &data.jobs {
        if !seen_seq.insert(job.seq) || job.seq >= data.next_seq {
            return Err(corrupt(
                path,
                cluster,
                &format!("job sequence number {} is invalid", job.seq),
            ));
        }
    }
    Ok(())
}
