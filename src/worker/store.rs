//! A worker's results: in memory with byte accounting, spilled to disk least-recently-used
//! first when memory runs high. Results are raw bytes, so spilling is one write and reading
//! back one read, with no re-encoding.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::PathBuf;

use bytes::Bytes;

use crate::ids::TaskId;

enum Entry {
    Memory { data: Bytes, tick: u64 },
    Disk { path: PathBuf, nbytes: u64 },
}

pub struct Store {
    entries: HashMap<TaskId, Entry>,
    /// In-memory entries by last use, oldest first.
    lru: BTreeMap<u64, TaskId>,
    tick: u64,
    in_memory: u64,
    on_disk: u64,
    spill_dir: PathBuf,
}

impl Store {
    pub fn new(spill_dir: PathBuf) -> Self {
        Store {
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            in_memory: 0,
            on_disk: 0,
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

    /// Bytes of results held in memory.
    pub fn in_memory(&self) -> u64 {
        self.in_memory
    }

    pub fn on_disk(&self) -> u64 {
        self.on_disk
    }

    pub fn put(&mut self, id: TaskId, data: Bytes) {
        self.remove(id);
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
    }

    /// The result, read back from disk if it was spilled (it then stays on disk: reading a
    /// spilled input must not push memory back over the limit).
    pub fn get(&mut self, id: TaskId) -> io::Result<Option<Bytes>> {
        self.tick += 1;
        let tick = self.tick;
        match self.entries.get_mut(&id) {
            None => Ok(None),
            Some(Entry::Memory { data, tick: t }) => {
                self.lru.remove(t);
                *t = tick;
                self.lru.insert(tick, id);
                Ok(Some(data.clone()))
            }
            Some(Entry::Disk { path, .. }) => Ok(Some(Bytes::from(std::fs::read(path)?))),
        }
    }

    pub fn size_of(&self, id: TaskId) -> Option<u64> {
        self.entries.get(&id).map(|e| match e {
            Entry::Memory { data, .. } => data.len() as u64,
            Entry::Disk { nbytes, .. } => *nbytes,
        })
    }

    pub fn remove(&mut self, id: TaskId) {
        match self.entries.remove(&id) {
            Some(Entry::Memory { data, tick }) => {
                self.lru.remove(&tick);
                self.in_memory -= data.len() as u64;
            }
            Some(Entry::Disk { path, nbytes }) => {
                self.on_disk -= nbytes;
                let _ = std::fs::remove_file(path);
            }
            None => {}
        }
    }

    /// Spills least recently used results until at most `target` bytes stay in memory.
    /// Returns the bytes spilled.
    pub fn spill_to(&mut self, target: u64) -> io::Result<u64> {
        let mut spilled = 0;
        while self.in_memory > target {
            let Some((&tick, &id)) = self.lru.iter().next() else {
                break;
            };
            self.lru.remove(&tick);
            let Some(Entry::Memory { data, .. }) = self.entries.remove(&id) else {
                continue;
            };
            std::fs::create_dir_all(&self.spill_dir)?;
            let path = self.spill_dir.join(format!("{}.bin", id.0));
            if let Err(e) = std::fs::write(&path, &data) {
                // Keep it in memory rather than lose it.
                self.entries.insert(id, Entry::Memory { data, tick });
                self.lru.insert(tick, id);
                return Err(e);
            }
            let nbytes = data.len() as u64;
            self.in_memory -= nbytes;
            self.on_disk += nbytes;
            spilled += nbytes;
            self.entries.insert(id, Entry::Disk { path, nbytes });
        }
        Ok(spilled)
    }

    /// Deletes every spill file (the worker is leaving).
    pub fn clear(&mut self) {
        let ids: Vec<TaskId> = self.entries.keys().copied().collect();
        for id in ids {
            self.remove(id);
        }
        let _ = std::fs::remove_dir(&self.spill_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spills_least_recently_used_first_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::new(dir.path().join("spill"));
        for i in 0..4u64 {
            s.put(TaskId(i), Bytes::from(vec![i as u8; 100]));
        }
        s.get(TaskId(0)).unwrap(); // 0 is now the most recently used
        assert_eq!(s.spill_to(200).unwrap(), 200);
        assert_eq!((s.in_memory(), s.on_disk()), (200, 200));
        assert!(dir.path().join("spill/1.bin").exists() && dir.path().join("spill/2.bin").exists());
        assert_eq!(&s.get(TaskId(1)).unwrap().unwrap()[..], &[1u8; 100][..]);
        s.remove(TaskId(1));
        assert!(!dir.path().join("spill/1.bin").exists());
        assert_eq!(s.size_of(TaskId(2)), Some(100));
        s.clear();
        assert!(s.is_empty() && s.on_disk() == 0 && s.in_memory() == 0);
    }
}
