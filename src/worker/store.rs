//! A worker's results: in memory with byte accounting, spilled to disk least-recently-used
//! first when memory runs high. Results are raw bytes, so spilling is one write and reading
//! back one read, with no re-encoding.
//!
//! The store sits behind one mutex shared by the worker's event loop and every task serving
//! peers, so it never touches file contents itself: a read or write of a large result under
//! the lock would stall the worker and everyone fetching from it. Under the lock the store
//! only decides and records; the disk work happens outside it:
//!
//! - Reading back: [`Store::locate`] returns the bytes of an in-memory result, or an open
//!   file of a spilled one ([`SpilledFile`]), which the caller reads after unlocking (an open
//!   file survives a concurrent remove on Linux, so a release meanwhile cannot break it).
//! - Spilling: [`Store::start_spill`] picks the victims and marks them `Spilling` (still
//!   readable from memory, still counted there); [`SpillBatch::write`] writes their files
//!   without the lock; [`Store::finish_spill`] commits under the lock: an entry that is still
//!   the same one moves to disk, one removed or replaced meanwhile has its file deleted, one
//!   whose write failed goes back to memory.
//! - Deleting files: removing a result returns the files to delete ([`Discard`]), for the
//!   caller to delete after unlocking.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::ids::TaskId;

enum Entry {
    Memory {
        data: Bytes,
        tick: u64,
    },
    /// Its file is being written outside the lock. Until that is committed the bytes stay
    /// here: readable, and counted as in memory (they are).
    Spilling {
        data: Bytes,
        /// Last use, kept up to date so a failed write puts it back in its LRU place.
        tick: u64,
        /// Which spill this is, so a commit recognises its own entry and not a later one put
        /// under the same key.
        ticket: u64,
    },
    Disk {
        path: PathBuf,
        nbytes: u64,
    },
}

pub struct Store {
    entries: HashMap<TaskId, Entry>,
    /// `Memory` entries by last use, oldest first (`Spilling` ones are already on their way).
    lru: BTreeMap<u64, TaskId>,
    tick: u64,
    /// Bytes of `Memory` and `Spilling` entries.
    in_memory: u64,
    /// Bytes of `Spilling` entries (a part of `in_memory`).
    spilling: u64,
    /// Bytes of `Disk` entries.
    on_disk: u64,
    /// Numbers spills; also in the file name, so two spills of one key never share a file.
    next_ticket: u64,
    /// Batches started and not yet committed: their files may still appear on disk.
    batches_in_flight: usize,
    spill_dir: PathBuf,
}

/// Where a result is: its bytes, or its spilled file, opened.
pub enum Located {
    Memory(Bytes),
    Disk(SpilledFile),
}

impl Located {
    /// The bytes; reads the file of a spilled result, so never call it under the store lock.
    pub fn into_bytes(self) -> io::Result<Bytes> {
        match self {
            Located::Memory(data) => Ok(data),
            Located::Disk(file) => file.read(),
        }
    }
}

/// A spilled result's file, opened under the store lock, to be read without it.
pub struct SpilledFile {
    file: File,
    nbytes: u64,
}

impl SpilledFile {
    /// The result's size.
    pub fn len(&self) -> u64 {
        self.nbytes
    }

    pub fn is_empty(&self) -> bool {
        self.nbytes == 0
    }

    /// Reads the next piece of at most `max` bytes into `buf` (replacing its contents), for
    /// streaming a result without holding all of it; 0 at the end. Blocking.
    pub fn read_piece(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        buf.clear();
        (&mut self.file).take(max as u64).read_to_end(buf)
    }

    /// The whole result (blocking).
    pub fn read(mut self) -> io::Result<Bytes> {
        let mut data = Vec::with_capacity(self.nbytes as usize);
        (&mut self.file)
            .take(self.nbytes + 1)
            .read_to_end(&mut data)?;
        // The store wrote this many bytes: anything else means the scratch space was
        // tampered with or is failing, and a short result must not pass for the real one.
        if data.len() as u64 != self.nbytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the spill file holds {} bytes, {} were written",
                    data.len(),
                    self.nbytes
                ),
            ));
        }
        Ok(Bytes::from(data))
    }
}

/// Spill files no entry refers to any more. Delete them after releasing the store lock.
#[must_use = "the files must be deleted (outside the store lock)"]
#[derive(Debug, Default)]
pub struct Discard {
    files: Vec<PathBuf>,
    /// The spill directory, removed after the files (when the store was cleared).
    dir: Option<PathBuf>,
}

impl Discard {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dir.is_none()
    }

    pub fn extend(&mut self, other: Discard) {
        self.files.extend(other.files);
        self.dir = self.dir.take().or(other.dir);
    }

    /// Deletes the files (blocking; a file already gone is not an error).
    pub fn delete(self) {
        for f in self.files {
            if let Err(e) = std::fs::remove_file(&f) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!("cannot delete the spill file {}: {e}", f.display());
                }
            }
        }
        if let Some(dir) = self.dir {
            // Not recursive: a spill still being written there finds its entry gone when it
            // commits and deletes its own file.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Results chosen to spill, with their bytes, to be written outside the store lock.
pub struct SpillBatch {
    dir: PathBuf,
    items: Vec<SpillItem>,
}

struct SpillItem {
    id: TaskId,
    ticket: u64,
    path: PathBuf,
    data: Bytes,
}

/// The outcome of writing a [`SpillBatch`], for [`Store::finish_spill`].
pub struct Written {
    items: Vec<(TaskId, u64, PathBuf, io::Result<()>)>,
}

impl SpillBatch {
    pub fn bytes(&self) -> u64 {
        self.items.iter().map(|i| i.data.len() as u64).sum()
    }

    /// Writes every file (blocking: run it off the event loop and outside the store lock).
    pub fn write(self) -> Written {
        self.write_with(|path, data| std::fs::write(path, data))
    }

    fn write_with(self, mut write: impl FnMut(&Path, &[u8]) -> io::Result<()>) -> Written {
        let dir = std::fs::create_dir_all(&self.dir);
        let items = self
            .items
            .into_iter()
            .map(|item| {
                let result = match &dir {
                    Ok(()) => write(&item.path, &item.data),
                    Err(e) => Err(io::Error::new(
                        e.kind(),
                        format!("creating {}: {e}", self.dir.display()),
                    )),
                };
                (item.id, item.ticket, item.path, result)
            })
            .collect();
        Written { items }
    }
}

/// What committing a spill did.
#[derive(Debug, Default)]
pub struct SpillReport {
    /// Bytes that moved to disk.
    pub spilled: u64,
    /// Results whose write failed; they are back in memory.
    pub failed: Vec<(TaskId, io::Error)>,
    /// Files of results removed or replaced while they were written, and of failed writes.
    pub discard: Discard,
}

impl Store {
    pub fn new(spill_dir: PathBuf) -> Self {
        Store {
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            in_memory: 0,
            spilling: 0,
            on_disk: 0,
            next_ticket: 0,
            batches_in_flight: 0,
            spill_dir,
        }
    }

    pub fn contains(&self, id: TaskId) -> bool {
        self.entries.contains_key(&id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of results held in memory, including those being written to disk.
    pub fn in_memory(&self) -> u64 {
        self.in_memory
    }

    /// Bytes of results being written to disk (still in memory until that is done).
    pub fn spilling(&self) -> u64 {
        self.spilling
    }

    pub fn on_disk(&self) -> u64 {
        self.on_disk
    }

    /// Spill batches started and not committed yet. Until this is 0 a file may still appear
    /// in the spill directory (and is deleted at the commit if its result is gone).
    pub fn spills_in_flight(&self) -> usize {
        self.batches_in_flight
    }

    /// Stores `data` as `id`'s result, replacing any earlier one.
    pub fn put(&mut self, id: TaskId, data: Bytes) -> Discard {
        let discard = self.remove(id);
        self.tick += 1;
        self.in_memory += data.len() as u64;
        self.lru.insert(self.tick, id);
        self.entries.insert(
            id,
            Entry::Memory {
                data,
                tick: self.tick,
            },
        );
        discard
    }

    /// Where the result is: its bytes if in memory, else its file, opened here and to be read
    /// by the caller outside the lock ([`Located::into_bytes`]). A spilled result stays on
    /// disk: reading a spilled input must not push memory back over the limit.
    pub fn locate(&mut self, id: TaskId) -> io::Result<Option<Located>> {
        self.tick += 1;
        let now = self.tick;
        match self.entries.get_mut(&id) {
            None => Ok(None),
            Some(Entry::Memory { data, tick }) => {
                self.lru.remove(tick);
                *tick = now;
                self.lru.insert(now, id);
                Ok(Some(Located::Memory(data.clone())))
            }
            Some(Entry::Spilling { data, tick, .. }) => {
                *tick = now;
                Ok(Some(Located::Memory(data.clone())))
            }
            Some(Entry::Disk { path, nbytes }) => Ok(Some(Located::Disk(SpilledFile {
                file: File::open(path)?,
                nbytes: *nbytes,
            }))),
        }
    }

    pub fn size_of(&self, id: TaskId) -> Option<u64> {
        self.entries.get(&id).map(|e| match e {
            Entry::Memory { data, .. } | Entry::Spilling { data, .. } => data.len() as u64,
            Entry::Disk { nbytes, .. } => *nbytes,
        })
    }

    /// Forgets `id`'s result. Returns its file, if it had one, to delete outside the lock; a
    /// file still being written is deleted when its spill commits.
    pub fn remove(&mut self, id: TaskId) -> Discard {
        let mut discard = Discard::default();
        match self.entries.remove(&id) {
            Some(Entry::Memory { data, tick }) => {
                self.lru.remove(&tick);
                self.in_memory -= data.len() as u64;
            }
            Some(Entry::Spilling { data, .. }) => {
                self.in_memory -= data.len() as u64;
                self.spilling -= data.len() as u64;
            }
            Some(Entry::Disk { path, nbytes }) => {
                self.on_disk -= nbytes;
                discard.files.push(path);
            }
            None => {}
        }
        discard
    }

    /// Chooses least recently used results to spill until at most `target` bytes would stay
    /// in memory, counting those already being spilled as gone, and marks them `Spilling`.
    /// None when nothing needs to go.
    pub fn start_spill(&mut self, target: u64) -> Option<SpillBatch> {
        let mut items = Vec::new();
        while self.in_memory - self.spilling > target {
            let Some((tick, id)) = self.lru.pop_first() else {
                break;
            };
            let Some(Entry::Memory { data, .. }) = self.entries.remove(&id) else {
                unreachable!("the LRU list holds only in-memory results");
            };
            self.next_ticket += 1;
            let ticket = self.next_ticket;
            self.spilling += data.len() as u64;
            items.push(SpillItem {
                id,
                ticket,
                path: self.spill_dir.join(format!("{}-{ticket}.bin", id.0)),
                data: data.clone(),
            });
            self.entries
                .insert(id, Entry::Spilling { data, tick, ticket });
        }
        if !items.is_empty() {
            self.batches_in_flight += 1;
        }
        (!items.is_empty()).then(|| SpillBatch {
            dir: self.spill_dir.clone(),
            items,
        })
    }

    /// Commits a written batch (see the module comment).
    pub fn finish_spill(&mut self, written: Written) -> SpillReport {
        let mut report = SpillReport::default();
        self.batches_in_flight -= 1;
        for (id, ticket, path, result) in written.items {
            let (data, tick) = match self.entries.remove(&id) {
                Some(Entry::Spilling {
                    data,
                    tick,
                    ticket: t,
                }) if t == ticket => (data, tick),
                other => {
                    // Removed or replaced while it was written: nothing refers to the file.
                    if let Some(entry) = other {
                        self.entries.insert(id, entry);
                    }
                    report.discard.files.push(path);
                    continue;
                }
            };
            let nbytes = data.len() as u64;
            self.spilling -= nbytes;
            match result {
                Ok(()) => {
                    self.in_memory -= nbytes;
                    self.on_disk += nbytes;
                    report.spilled += nbytes;
                    self.entries.insert(id, Entry::Disk { path, nbytes });
                }
                Err(e) => {
                    // Keep it in memory rather than lose it; a partial file may be left.
                    report.discard.files.push(path);
                    report.failed.push((id, e));
                    self.lru.insert(tick, id);
                    self.entries.insert(id, Entry::Memory { data, tick });
                }
            }
        }
        report
    }

    /// Forgets every result (the worker is leaving, or its scheduler forgot it). Returns the
    /// spill files and directory to delete.
    pub fn clear(&mut self) -> Discard {
        let mut discard = Discard::default();
        let ids: Vec<TaskId> = self.entries.keys().copied().collect();
        for id in ids {
            discard.extend(self.remove(id));
        }
        discard.dir = Some(self.spill_dir.clone());
        discard
    }

    /// Checks the byte accounting against the entries.
    #[cfg(test)]
    fn check_accounting(&self) {
        let (mut mem, mut spilling, mut disk) = (0, 0, 0);
        for (id, e) in &self.entries {
            match e {
                Entry::Memory { data, tick } => {
                    mem += data.len() as u64;
                    assert_eq!(self.lru.get(tick), Some(id), "{id} missing from the LRU");
                }
                Entry::Spilling { data, .. } => {
                    mem += data.len() as u64;
                    spilling += data.len() as u64;
                }
                Entry::Disk { nbytes, .. } => disk += nbytes,
            }
        }
        let in_lru = self
            .entries
            .values()
            .filter(|e| matches!(e, Entry::Memory { .. }))
            .count();
        assert_eq!(self.lru.len(), in_lru, "stale LRU entries");
        assert_eq!(
            (self.in_memory, self.spilling, self.on_disk),
            (mem, spilling, disk)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn get(s: &mut Store, id: u64) -> Option<Vec<u8>> {
        s.locate(TaskId(id))
            .unwrap()
            .map(|l| l.into_bytes().unwrap().to_vec())
    }

    fn spill(s: &mut Store, target: u64) -> u64 {
        let Some(batch) = s.start_spill(target) else {
            return 0;
        };
        let report = s.finish_spill(batch.write());
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        report.discard.delete();
        report.spilled
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn spills_least_recently_used_first_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let spill_dir = dir.path().join("spill");
        let mut s = Store::new(spill_dir.clone());
        for i in 0..4u64 {
            let _ = s.put(TaskId(i), Bytes::from(vec![i as u8; 100]));
        }
        get(&mut s, 0); // 0 is now the most recently used
        assert_eq!(spill(&mut s, 200), 200);
        assert_eq!((s.in_memory(), s.on_disk()), (200, 200));
        assert_eq!(files_in(&spill_dir), ["1-1.bin", "2-2.bin"]);
        assert_eq!(get(&mut s, 1).unwrap(), [1u8; 100]);
        s.remove(TaskId(1)).delete();
        assert_eq!(files_in(&spill_dir), ["2-2.bin"]);
        assert_eq!(s.size_of(TaskId(2)), Some(100));
        s.clear().delete();
        assert!(s.is_empty() && s.on_disk() == 0 && s.in_memory() == 0);
        assert!(!spill_dir.exists());
    }

    #[test]
    fn a_spilling_result_stays_readable_and_counted_in_memory_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::new(dir.path().join("spill"));
        let _ = s.put(TaskId(1), Bytes::from(vec![1u8; 100]));
        let _ = s.put(TaskId(2), Bytes::from(vec![2u8; 50]));
        let batch = s.start_spill(60).unwrap();
        assert_eq!(batch.bytes(), 100);
        assert_eq!((s.in_memory(), s.spilling(), s.on_disk()), (150, 100, 0));
        // Already on its way: a second decision does not pick it (or anything) again.
        assert!(s.start_spill(60).is_none());
        assert_eq!(get(&mut s, 1).unwrap(), [1u8; 100]);
        assert_eq!(s.size_of(TaskId(1)), Some(100));
        let report = s.finish_spill(batch.write());
        assert!(report.discard.is_empty() && report.failed.is_empty());
        assert_eq!(report.spilled, 100);
        assert_eq!((s.in_memory(), s.spilling(), s.on_disk()), (50, 0, 100));
        assert_eq!(get(&mut s, 1).unwrap(), [1u8; 100]);
        s.check_accounting();
    }

    #[test]
    fn a_result_removed_or_replaced_while_spilling_has_its_file_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let spill_dir = dir.path().join("spill");
        let mut s = Store::new(spill_dir.clone());
        let _ = s.put(TaskId(1), Bytes::from(vec![1u8; 100]));
        let _ = s.put(TaskId(2), Bytes::from(vec![2u8; 100]));
        let batch = s.start_spill(0).unwrap();
        assert!(s.remove(TaskId(1)).is_empty(), "no file to delete yet");
        assert!(s.put(TaskId(2), Bytes::from(vec![7u8; 30])).is_empty());
        assert_eq!((s.in_memory(), s.spilling()), (30, 0));
        let written = batch.write();
        assert_eq!(files_in(&spill_dir).len(), 2);
        let report = s.finish_spill(written);
        assert_eq!(report.spilled, 0);
        report.discard.delete();
        assert!(files_in(&spill_dir).is_empty());
        assert_eq!((s.in_memory(), s.spilling(), s.on_disk()), (30, 0, 0));
        assert_eq!(get(&mut s, 1), None);
        assert_eq!(get(&mut s, 2).unwrap(), [7u8; 30]);
        s.check_accounting();
    }

    #[test]
    fn a_clear_while_spilling_leaves_nothing_once_the_spill_commits() {
        let dir = tempfile::tempdir().unwrap();
        let spill_dir = dir.path().join("spill");
        let mut s = Store::new(spill_dir.clone());
        let _ = s.put(TaskId(1), Bytes::from(vec![1u8; 10]));
        let _ = s.put(TaskId(2), Bytes::from(vec![2u8; 10]));
        assert_eq!(spill(&mut s, 10), 10);
        let batch = s.start_spill(0).unwrap();
        assert_eq!(s.spills_in_flight(), 1);
        let written = batch.write();
        // Cleared while the write is still to be committed: its file is not deleted yet,
        // so neither is the directory.
        s.clear().delete();
        assert_eq!(files_in(&spill_dir), ["2-2.bin"]);
        s.finish_spill(written).discard.delete();
        assert_eq!(s.spills_in_flight(), 0);
        assert!(files_in(&spill_dir).is_empty());
        s.clear().delete();
        assert!(!spill_dir.exists());
    }

    #[test]
    fn a_key_replaced_and_spilled_again_keeps_its_new_file() {
        // The first spill's commit must delete its own file, not the second one's.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::new(dir.path().join("spill"));
        let _ = s.put(TaskId(1), Bytes::from(vec![1u8; 10]));
        let first = s.start_spill(0).unwrap();
        let _ = s.put(TaskId(1), Bytes::from(vec![2u8; 20]));
        let second = s.start_spill(0).unwrap();
        let (first, second) = (first.write(), second.write());
        s.finish_spill(second).discard.delete();
        s.finish_spill(first).discard.delete();
        assert_eq!((s.in_memory(), s.on_disk()), (0, 20));
        assert_eq!(get(&mut s, 1).unwrap(), [2u8; 20]);
        s.check_accounting();
    }

    #[test]
    fn a_failed_write_puts_the_result_back_in_memory_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the spill directory should be: creating it fails.
        let spill_dir = dir.path().join("spill");
        std::fs::write(&spill_dir, b"in the way").unwrap();
        let mut s = Store::new(spill_dir.clone());
        let _ = s.put(TaskId(1), Bytes::from(vec![1u8; 100]));
        let _ = s.put(TaskId(2), Bytes::from(vec![2u8; 100]));
        let batch = s.start_spill(100).unwrap();
        let report = s.finish_spill(batch.write());
        assert_eq!(report.spilled, 0);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].0, TaskId(1));
        report.discard.delete();
        assert_eq!((s.in_memory(), s.spilling(), s.on_disk()), (200, 0, 0));
        s.check_accounting();
        // Still the least recently used: the next spill tries it first again.
        std::fs::remove_file(&spill_dir).unwrap();
        assert_eq!(spill(&mut s, 100), 100);
        assert_eq!(files_in(&spill_dir), ["1-2.bin"]);
    }

    #[test]
    fn a_partial_file_of_a_failed_write_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let spill_dir = dir.path().join("spill");
        let mut s = Store::new(spill_dir.clone());
        let _ = s.put(TaskId(1), Bytes::from(vec![1u8; 100]));
        let written = s.start_spill(0).unwrap().write_with(|path, data| {
            std::fs::write(path, &data[..10])?;
            Err(io::Error::other("disk full"))
        });
        let report = s.finish_spill(written);
        report.discard.delete();
        assert!(files_in(&spill_dir).is_empty());
        assert_eq!(get(&mut s, 1).unwrap(), [1u8; 100]);
    }

    #[test]
    fn a_spilled_file_read_after_its_release_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::new(dir.path().join("spill"));
        let _ = s.put(TaskId(1), Bytes::from(vec![9u8; 4096]));
        spill(&mut s, 0);
        let Some(Located::Disk(file)) = s.locate(TaskId(1)).unwrap() else {
            panic!("expected a spilled result");
        };
        s.remove(TaskId(1)).delete();
        assert_eq!(&file.read().unwrap()[..], &[9u8; 4096][..]);
    }

    #[test]
    fn a_truncated_spill_file_is_an_error_not_a_short_result() {
        let dir = tempfile::tempdir().unwrap();
        let spill_dir = dir.path().join("spill");
        let mut s = Store::new(spill_dir.clone());
        let _ = s.put(TaskId(1), Bytes::from(vec![9u8; 100]));
        spill(&mut s, 0);
        std::fs::write(spill_dir.join("1-1.bin"), b"short").unwrap();
        let located = s.locate(TaskId(1)).unwrap().unwrap();
        let err = located.into_bytes().unwrap_err();
        assert!(err.to_string().contains("holds 5 bytes, 100 were written"));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Put(u64, u8, usize),
        Get(u64),
        Remove(u64),
        StartSpill(u64),
        /// Writes and commits the pending batch at this index (modulo), failing the writes
        /// of the keys whose bit is set.
        Finish(usize, u8),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..6, any::<u8>(), 0usize..64).prop_map(|(k, b, n)| Op::Put(k, b, n)),
            3 => (0u64..6).prop_map(Op::Get),
            2 => (0u64..6).prop_map(Op::Remove),
            3 => (0u64..200).prop_map(Op::StartSpill),
            3 => (0usize..4, any::<u8>()).prop_map(|(i, f)| Op::Finish(i, f)),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Whatever the order of puts, reads, removals, spills started and committed (some
        /// writes failing), every read returns the bytes last put, the accounting matches the
        /// entries, and in the end exactly the spilled results have files.
        #[test]
        fn every_read_returns_the_last_put_and_accounting_stays_exact(
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let spill_dir = dir.path().join("spill");
            let mut s = Store::new(spill_dir.clone());
            let mut model: HashMap<u64, Vec<u8>> = HashMap::new();
            let mut batches: Vec<SpillBatch> = Vec::new();
            let finish = |s: &mut Store, batch: SpillBatch, fail: u8| {
                let written = batch.write_with(|path, data| {
                    let key: u64 = path.file_name().unwrap().to_str().unwrap()
                        .split('-').next().unwrap().parse().unwrap();
                    if fail & (1 << key) != 0 {
                        std::fs::write(path, &data[..data.len() / 2])?;
                        return Err(io::Error::other("injected"));
                    }
                    std::fs::write(path, data)
                });
                s.finish_spill(written).discard.delete();
            };
            for op in ops {
                match op {
                    Op::Put(k, b, n) => {
                        s.put(TaskId(k), Bytes::from(vec![b; n])).delete();
                        model.insert(k, vec![b; n]);
                    }
                    Op::Get(k) => prop_assert_eq!(get(&mut s, k), model.get(&k).cloned()),
                    Op::Remove(k) => {
                        s.remove(TaskId(k)).delete();
                        model.remove(&k);
                    }
                    Op::StartSpill(target) => {
                        let before = s.in_memory() - s.spilling();
                        match s.start_spill(target) {
                            Some(b) => {
                                prop_assert!(before > target);
                                batches.push(b);
                            }
                            None => prop_assert!(before <= target || s.lru.is_empty()),
                        }
                        prop_assert!(s.in_memory() - s.spilling() <= target || s.lru.is_empty());
                    }
                    Op::Finish(i, fail) => {
                        if !batches.is_empty() {
                            let b = batches.remove(i % batches.len());
                            finish(&mut s, b, fail);
                        }
                    }
                    Op::Clear => {
                        s.clear().delete();
                        model.clear();
                    }
                }
                s.check_accounting();
                let total: u64 = model.values().map(|v| v.len() as u64).sum();
                prop_assert_eq!(s.in_memory() + s.on_disk(), total);
                prop_assert_eq!(s.len(), model.len());
            }
            for b in std::mem::take(&mut batches) {
                finish(&mut s, b, 0);
            }
            s.check_accounting();
            prop_assert_eq!(s.spilling(), 0);
            prop_assert_eq!(s.spills_in_flight(), 0);
            for (k, v) in &model {
                let read = get(&mut s, *k);
                prop_assert_eq!(read.as_ref(), Some(v));
            }
            // Exactly the results on disk have files, and they hold on_disk bytes.
            let on_disk: Vec<String> = {
                let mut v: Vec<String> = s.entries.values().filter_map(|e| match e {
                    Entry::Disk { path, .. } => Some(path.file_name().unwrap().to_string_lossy().into_owned()),
                    _ => None,
                }).collect();
                v.sort();
                v
            };
            prop_assert_eq!(files_in(&spill_dir), on_disk);
            let bytes: u64 = std::fs::read_dir(&spill_dir).into_iter().flatten().flatten()
                .map(|e| e.metadata().unwrap().len()).sum();
            prop_assert_eq!(bytes, s.on_disk());
            s.clear().delete();
            prop_assert!(!spill_dir.exists());
        }
    }
}
