//! Peer-to-peer transfers: every worker serves its results to peers and clients, and fetches
//! the inputs it lacks from the workers that hold them. The scheduler only says who holds
//! what; it never relays data.
//!
//! A request names keys; each answer is a control header followed by the result as one raw
//! data frame, written straight from the store's bytes without copying or re-encoding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;

use super::store::{Located, SpilledFile, Store};
use crate::ids::{TaskId, WorkerId};
use crate::protocol::frame::encode_header;
use crate::protocol::messages::{PeerRequest, PeerResponse};
use crate::protocol::{
    self, FrameReader, FrameWriter, Kind, ProtocolError, Role, Secret, HANDSHAKE_TIMEOUT,
};

pub type Reader = FrameReader<OwnedReadHalf>;
pub type Writer = FrameWriter<OwnedWriteHalf>;

/// Serves results from `store` to any authenticated peer or client, until the listener fails.
pub async fn serve(listener: TcpListener, secret: Secret, store: Arc<Mutex<Store>>) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let secret = secret.clone();
        let store = store.clone();
        tokio::spawn(async move {
            match protocol::accept(stream, &secret, HANDSHAKE_TIMEOUT).await {
                Ok((_, reader, writer)) => {
                    if let Err(e) = serve_connection(reader, writer, store).await {
                        tracing::debug!("peer connection from {from} ended: {e}");
                    }
                }
                Err(e) => tracing::warn!("refused a connection from {from}: {e}"),
            }
        });
    }
}

async fn serve_connection(
    mut reader: Reader,
    mut writer: Writer,
    store: Arc<Mutex<Store>>,
) -> Result<(), ProtocolError> {
    while let Some(frame) = reader.read_frame().await? {
        if frame.kind != Kind::Control {
            return Err(ProtocolError::Unexpected(
                "a data frame where a request was expected".into(),
            ));
        }
        let PeerRequest::Get(keys) = frame.decode()?;
        for key in keys {
            // The lock is held only to find the result (and open its file).
            let located = store.lock().expect("store").locate(key);
            match located {
                Ok(Some(Located::Memory(data))) => {
                    writer
                        .write_control(&PeerResponse::Data {
                            task: key,
                            nbytes: data.len() as u64,
                        })
                        .await?;
                    writer.write_data(&data).await?;
                }
                Ok(Some(Located::Disk(file))) => send_spilled(&mut writer, key, file).await?,
                Ok(None) => {
                    writer
                        .write_control(&PeerResponse::Missing { task: key })
                        .await?
                }
                Err(e) => {
                    tracing::error!("cannot open the spilled result {key}: {e}");
                    writer
                        .write_control(&PeerResponse::Missing { task: key })
                        .await?
                }
            }
        }
        writer.flush().await?;
    }
    Ok(())
}

/// How much of a spilled result is read from disk at a time when serving it.
const PIECE: usize = 1 << 20;

/// Streams a spilled result from its file to a peer, a piece at a time, each read on a
/// blocking thread: the store lock was released once the file was opened, and serving the
/// result costs one piece of memory, not the whole result. The header announces the size the
/// store wrote; a file that turns out shorter ends the connection (an error), and the peer
/// tries the next holder.
async fn send_spilled(
    writer: &mut Writer,
    key: TaskId,
    mut file: SpilledFile,
) -> Result<(), ProtocolError> {
    let nbytes = file.len();
    writer
        .write_control(&PeerResponse::Data { task: key, nbytes })
        .await?;
    // The same bytes write_data puts on the wire: a data header, then the body.
    writer
        .write_raw(&encode_header(Kind::Data, nbytes as usize)?)
        .await?;
    let mut buf = Vec::with_capacity(PIECE.min(nbytes as usize));
    let mut sent = 0u64;
    while sent < nbytes {
        let want = PIECE.min((nbytes - sent) as usize);
        let (f, b, read) = tokio::task::spawn_blocking(move || {
            let read = file.read_piece(&mut buf, want);
            (file, buf, read)
        })
        .await
        .map_err(|e| ProtocolError::Unexpected(format!("reading back {key}: {e}")))?;
        (file, buf) = (f, b);
        let n = read.map_err(|e| {
            tracing::error!("cannot read back the spilled result {key}: {e}");
            ProtocolError::Io(e)
        })?;
        if n == 0 {
            tracing::error!("the spill file of {key} ends after {sent} of {nbytes} bytes");
            return Err(ProtocolError::Unexpected(format!(
                "the spill file of {key} is short"
            )));
        }
        writer.write_raw(&buf[..n]).await?;
        sent += n as u64;
    }
    Ok(())
}

/// Reads the answers to a `Get` of `keys` from an open connection.
pub async fn read_answers(
    reader: &mut Reader,
    keys: &[TaskId],
) -> Result<Vec<(TaskId, Option<Bytes>)>, ProtocolError> {
    let mut out = Vec::with_capacity(keys.len());
    for _ in keys {
        let frame = reader.read_frame().await?.ok_or(ProtocolError::Closed)?;
        match frame.decode::<PeerResponse>()? {
            PeerResponse::Data { task, nbytes } => {
                let data = reader.read_frame().await?.ok_or(ProtocolError::Closed)?;
                if data.kind != Kind::Data || data.body.len() as u64 != nbytes {
                    return Err(ProtocolError::Unexpected(format!(
                        "expected {nbytes} bytes of {task}"
                    )));
                }
                out.push((task, Some(data.body)));
            }
            PeerResponse::Missing { task } => out.push((task, None)),
        }
    }
    Ok(out)
}

/// One open, authenticated connection to a peer; requests on it take turns.
type Connection = Arc<tokio::sync::Mutex<(Reader, Writer)>>;

/// How long one request to a peer may take. Generous: it covers gigabyte chunks on a busy
/// network; its purpose is to end waits on a peer that will never answer.
const REQUEST_DEADLINE: Duration = Duration::from_secs(120);

/// Open connections to peers, one per address, reused across fetches.
#[derive(Clone)]
pub struct PeerPool {
    secret: Secret,
    conns: Arc<Mutex<HashMap<String, Connection>>>,
}

impl PeerPool {
    pub fn new(secret: Secret) -> Self {
        PeerPool {
            secret,
            conns: Arc::default(),
        }
    }

    async fn connection(
        &self,
        addr: &str,
    ) -> Result<Arc<tokio::sync::Mutex<(Reader, Writer)>>, ProtocolError> {
        if let Some(c) = self.conns.lock().expect("pool").get(addr) {
            return Ok(c.clone());
        }
        let (r, w) =
            protocol::connect_with_timeout(addr, &self.secret, Role::Peer, Duration::from_secs(10))
                .await?;
        let c = Arc::new(tokio::sync::Mutex::new((r, w)));
        self.conns
            .lock()
            .expect("pool")
            .insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Fetches `keys` from the peer at `addr`. A broken connection is dropped from the pool.
    pub async fn get(
        &self,
        addr: &str,
        keys: &[TaskId],
    ) -> Result<Vec<(TaskId, Option<Bytes>)>, ProtocolError> {
        let conn = self.connection(addr).await?;
        let mut guard = conn.lock().await;
        let (reader, writer) = &mut *guard;
        let request = async {
            writer
                .write_control(&PeerRequest::Get(keys.to_vec()))
                .await?;
            writer.flush().await?;
            read_answers(reader, keys).await
        };
        // A holder that froze (or whose node died without closing the socket) must not hold
        // the task forever: past the deadline the next holder is tried.
        let result = match tokio::time::timeout(REQUEST_DEADLINE, request).await {
            Ok(r) => r,
            Err(_) => Err(ProtocolError::Timeout),
        };
        if result.is_err() {
            self.conns.lock().expect("pool").remove(addr);
        }
        result
    }

    pub fn forget(&self, addr: &str) {
        self.conns.lock().expect("pool").remove(addr);
    }
}

/// One input to fetch: its key and who holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Wanted {
    pub task: TaskId,
    pub holders: Vec<WorkerId>,
}

/// Fetches every wanted key, trying its holders in turn. Returns what arrived and, for what
/// could not be fetched anywhere, the holders that failed.
pub async fn fetch(
    pool: &PeerPool,
    directory: &HashMap<WorkerId, String>,
    wanted: Vec<Wanted>,
) -> (Vec<(TaskId, Bytes)>, Vec<(TaskId, Vec<WorkerId>)>) {
    let mut got = Vec::new();
    let mut missing = Vec::new();
    let mut remaining: Vec<(Wanted, usize)> = wanted.into_iter().map(|w| (w, 0)).collect();
    while !remaining.is_empty() {
        // Group by the holder each key tries next, so one request carries many keys.
        let mut by_holder: HashMap<WorkerId, Vec<(Wanted, usize)>> = HashMap::new();
        for (w, attempt) in remaining.drain(..) {
            match w.holders.get(attempt) {
                Some(h) => by_holder.entry(*h).or_default().push((w, attempt)),
                None => missing.push((w.task, w.holders.clone())),
            }
        }
        for (holder, items) in by_holder {
            let keys: Vec<TaskId> = items.iter().map(|(w, _)| w.task).collect();
            let answers = match directory.get(&holder) {
                Some(addr) => pool.get(addr, &keys).await.unwrap_or_default(),
                None => Vec::new(),
            };
            let mut arrived: HashMap<TaskId, Bytes> = answers
                .into_iter()
                .filter_map(|(k, d)| d.map(|d| (k, d)))
                .collect();
            for (w, attempt) in items {
                match arrived.remove(&w.task) {
                    Some(data) => got.push((w.task, data)),
                    None => remaining.push((w, attempt + 1)),
                }
            }
        }
    }
    (got, missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A store holding `spilled` on disk (key 1) and `in_memory` in memory (key 2), served on
    /// a local port.
    async fn serving(dir: &std::path::Path, spilled: Vec<u8>) -> (String, Secret) {
        let mut s = Store::new(dir.join("spill"));
        let _ = s.put(TaskId(1), Bytes::from(spilled));
        let batch = s.start_spill(0).unwrap();
        assert!(s.finish_spill(batch.write()).failed.is_empty());
        let _ = s.put(TaskId(2), Bytes::from_static(b"in memory"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let secret = Secret::generate().unwrap();
        tokio::spawn(serve(listener, secret.clone(), Arc::new(Mutex::new(s))));
        (addr, secret)
    }

    fn the_spill_file(dir: &std::path::Path) -> std::path::PathBuf {
        let mut files = std::fs::read_dir(dir.join("spill")).unwrap();
        let file = files.next().unwrap().unwrap().path();
        assert!(files.next().is_none());
        file
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spilled_result_larger_than_a_piece_is_streamed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(PIECE * 5 / 2) as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        let (addr, secret) = serving(dir.path(), data.clone()).await;
        let got = PeerPool::new(secret)
            .get(&addr, &[TaskId(2), TaskId(1), TaskId(3)])
            .await
            .unwrap();
        assert_eq!(got[0].1.as_deref(), Some(&b"in memory"[..]));
        assert_eq!(got[1].1.as_deref(), Some(&data[..]));
        assert_eq!(got[2], (TaskId(3), None));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_spill_file_breaks_the_connection_rather_than_passing_for_the_result() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, secret) = serving(dir.path(), vec![7u8; 1000]).await;
        std::fs::write(the_spill_file(dir.path()), [7u8; 10]).unwrap();
        let pool = PeerPool::new(secret);
        assert!(pool.get(&addr, &[TaskId(1)]).await.is_err());
        // The server goes on serving: a new connection gets what is intact.
        let got = pool.get(&addr, &[TaskId(2)]).await.unwrap();
        assert_eq!(got[0].1.as_deref(), Some(&b"in memory"[..]));
    }

    /// A spilled result whose read blocks (its file is a FIFO, like a read from a stalled
    /// disk) must not hold the store lock: the worker's event loop and other peers go on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_unspill_holds_neither_the_store_lock_nor_other_peers() {
        let dir = tempfile::tempdir().unwrap();
        let spill_dir = dir.path().join("spill");
        let store = Arc::new(Mutex::new(Store::new(spill_dir.clone())));
        {
            let mut s = store.lock().unwrap();
            let _ = s.put(TaskId(1), Bytes::from(vec![5u8; 1000]));
            let batch = s.start_spill(0).unwrap();
            assert_eq!(s.finish_spill(batch.write()).spilled, 1000);
            let _ = s.put(TaskId(2), Bytes::from_static(b"in memory"));
        }
        let file = the_spill_file(dir.path());
        std::fs::remove_file(&file).unwrap();
        nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Holding a write end lets the server open it without blocking; reads then wait for
        // what this test writes.
        let mut fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&file)
            .unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let secret = Secret::generate().unwrap();
        tokio::spawn(serve(listener, secret.clone(), store.clone()));
        let slow = {
            let pool = PeerPool::new(secret.clone());
            let addr = addr.clone();
            tokio::spawn(async move { pool.get(&addr, &[TaskId(1)]).await })
        };
        // Time for the request to reach the read (an assertion on the old code, which read
        // under the lock, fails whenever it has).
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            store.try_lock().is_ok(),
            "the store lock is held while a spilled result is read"
        );
        let fast = tokio::time::timeout(
            Duration::from_secs(10),
            PeerPool::new(secret).get(&addr, &[TaskId(2)]),
        )
        .await
        .expect("another peer is served while a spilled result is read")
        .unwrap();
        assert_eq!(fast[0].1.as_deref(), Some(&b"in memory"[..]));
        assert!(!slow.is_finished());

        fifo.write_all(&[5u8; 1000]).unwrap();
        drop(fifo);
        let slow = slow.await.unwrap().unwrap();
        assert_eq!(slow[0].1.as_deref(), Some(&[5u8; 1000][..]));
    }
}
