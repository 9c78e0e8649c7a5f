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

use super::store::Store;
use crate::ids::{TaskId, WorkerId};
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
            let data = store.lock().expect("store").get(key).ok().flatten();
            match data {
                Some(data) => {
                    writer
                        .write_control(&PeerResponse::Data {
                            task: key,
                            nbytes: data.len() as u64,
                        })
                        .await?;
                    writer.write_data(&data).await?;
                }
                None => {
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
#[derive(Clone, Debug)]
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
