//! The wire protocol: the only place where bytes on a socket are shaped.
//!
//! Everything the scheduler, workers and clients say to each other travels as **frames**
//! ([`frame`]): a 5-byte header — the body length as a 4-byte little-endian integer, then one
//! kind byte — followed by the body. There are two kinds:
//!
//! * [`Kind::Control`]: a postcard-encoded message (small, structured: "run task X", "task X
//!   finished"). Limited to [`MAX_CONTROL_FRAME`] so a corrupt length cannot make us allocate
//!   gigabytes for what should be a few hundred bytes.
//! * [`Kind::Data`]: raw bulk bytes such as an array chunk. They are never re-encoded: the
//!   body is the payload, read with a single allocation and handed out as [`bytes::Bytes`], so a
//!   512 MiB chunk is not copied twice. Limited to [`MAX_DATA_FRAME`] (what the 4-byte length
//!   can express).
//!
//! A length prefix (rather than a delimiter) lets the reader allocate the body once, up front,
//! and lets the header be validated *before* any allocation: [`decode_header`] is a pure
//! function that rejects unknown kinds and oversized lengths, and is fuzzed.
//!
//! Before any frame is exchanged, every connection runs the **handshake** ([`handshake`]): the
//! client sends 8 magic bytes (a port scanner or a stray HTTP client is rejected at the first
//! read), then both sides prove to each other that they hold the cluster's shared [`Secret`]
//! with an HMAC-SHA256 challenge-response over fresh random nonces. The secret never crosses
//! the wire, proofs are compared in constant time, and the whole exchange is bounded by a
//! timeout so a silent connection cannot pin a server task. Authentication is mutual because
//! a worker that connects to an impostor scheduler would hand it data and run its tasks.
//!
//! The protocol does not encrypt: it is meant for a cluster's private network. The shared
//! secret keeps other users of a shared HPC machine from submitting work to (or stealing
//! results from) someone else's scheduler.
//!
//! The convenience functions [`connect`] and [`accept`] put it together for TCP.

pub mod frame;
pub mod handshake;
pub mod hugebuf;
pub mod messages;
pub mod secret;

use std::io;
use std::time::Duration;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub use frame::{
    decode_control, decode_header, encode_control, encode_header, Frame, FrameReader, FrameWriter,
    Kind, Limits, HEADER_LEN, MAX_CONTROL_FRAME, MAX_DATA_FRAME,
};
pub use handshake::{
    client_handshake, server_handshake, Role, HANDSHAKE_TIMEOUT, MAGIC, PROTOCOL_VERSION,
};
pub use secret::{SchedulerFile, Secret, SECRET_ENV};

/// Everything that can go wrong on the wire. Errors name what the peer did wrong so a log
/// line is enough to tell a wrong secret from a version skew from a port scanner.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("network error: {0}")]
    Io(#[from] io::Error),
    /// Kept apart from `Io` so the message names the address ("connection refused" alone does
    /// not say which scheduler was down).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized { size: usize, limit: usize },
    #[error("unknown frame kind {0} (the peer is not speaking the rdask protocol, or a newer version of it)")]
    UnknownKind(u8),
    #[error("cannot decode message: {0}")]
    Decode(String),
    #[error("the peer did not start with the rdask magic bytes (not an rdask client?)")]
    BadMagic,
    #[error("protocol version mismatch: we speak version {ours}, the peer speaks version {theirs}; run the same rdask version on all nodes")]
    VersionMismatch { ours: u32, theirs: u32 },
    #[error("authentication failed: the peer does not hold the cluster's shared secret")]
    AuthenticationFailed,
    #[error("the server could not prove it holds the shared secret (wrong secret, or not the scheduler you meant to reach)")]
    ServerNotAuthenticated,
    /// The peer refused us and said why (version mismatch, authentication failed).
    #[error("rejected by the peer: {0}")]
    Rejected(String),
    #[error("unexpected message: {0}")]
    Unexpected(String),
    #[error("the peer did not complete the handshake in time")]
    Timeout,
    #[error("the peer closed the connection")]
    Closed,
}

impl From<postcard::Error> for ProtocolError {
    fn from(e: postcard::Error) -> Self {
        ProtocolError::Decode(e.to_string())
    }
}

/// The runtime reports protocol failures as runtime errors (exit code 1); the message already
/// says what happened.
impl From<ProtocolError> for crate::Error {
    fn from(e: ProtocolError) -> Self {
        crate::Error::Runtime(e.to_string())
    }
}

/// Strips an optional `tcp://` scheme: addresses are written `tcp://host:port` (as Dask does)
/// or just `host:port`. Any other scheme is refused rather than misread as a host name.
pub fn socket_address(addr: &str) -> Result<&str, ProtocolError> {
    let addr = addr.trim();
    let rest = addr.strip_prefix("tcp://").unwrap_or(addr);
    if rest.contains("://") || rest.is_empty() {
        return Err(ProtocolError::Connect {
            addr: addr.to_string(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "expected an address like tcp://host:port or host:port",
            ),
        });
    }
    Ok(rest)
}

/// Connects to `addr` (`tcp://host:port` or `host:port`) and authenticates as `role`.
/// Both the TCP connect and the handshake are bounded by [`HANDSHAKE_TIMEOUT`].
pub async fn connect(
    addr: &str,
    secret: &Secret,
    role: Role,
) -> Result<(FrameReader<OwnedReadHalf>, FrameWriter<OwnedWriteHalf>), ProtocolError> {
    connect_with_timeout(addr, secret, role, HANDSHAKE_TIMEOUT).await
}

/// [`connect`] with an explicit timeout for the TCP connect and, separately, the handshake.
pub async fn connect_with_timeout(
    addr: &str,
    secret: &Secret,
    role: Role,
    timeout: Duration,
) -> Result<(FrameReader<OwnedReadHalf>, FrameWriter<OwnedWriteHalf>), ProtocolError> {
    let target = socket_address(addr)?;
    let connect_error = |source| ProtocolError::Connect {
        addr: addr.to_string(),
        source,
    };
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
        Ok(stream) => stream.map_err(connect_error)?,
        Err(_) => {
            return Err(connect_error(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {} s", timeout.as_secs_f64()),
            )))
        }
    };
    // Control messages are small and latency-bound; FrameWriter already batches them, so
    // Nagle's algorithm would only add delay.
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read);
    let mut writer = FrameWriter::new(write);
    client_handshake(&mut reader, &mut writer, secret, role, timeout).await?;
    Ok((reader, writer))
}

/// Runs the server side of the handshake on an accepted connection and returns who connected.
/// Call it in a task per connection: a failure concerns only this peer, never the listener.
pub async fn accept(
    stream: TcpStream,
    secret: &Secret,
    timeout: Duration,
) -> Result<
    (
        Role,
        FrameReader<OwnedReadHalf>,
        FrameWriter<OwnedWriteHalf>,
    ),
    ProtocolError,
> {
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut reader = FrameReader::new(read);
    let mut writer = FrameWriter::new(write);
    let role = server_handshake(&mut reader, &mut writer, secret, timeout).await?;
    Ok((role, reader, writer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use tokio::net::TcpListener;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Ping(u64),
        Pong(u64),
    }

    #[test]
    fn addresses_with_and_without_scheme() {
        assert_eq!(socket_address("tcp://node1:8786").unwrap(), "node1:8786");
        assert_eq!(socket_address("node1:8786").unwrap(), "node1:8786");
        assert_eq!(
            socket_address(" tcp://127.0.0.1:1 ").unwrap(),
            "127.0.0.1:1"
        );
        assert!(socket_address("tls://node1:8786").is_err());
        assert!(socket_address("tcp://").is_err());
    }

    #[tokio::test]
    async fn connect_and_accept_over_tcp() {
        let secret = Secret::generate().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("tcp://{}", listener.local_addr().unwrap());
        let server_secret = secret.clone();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (role, mut reader, mut writer) = accept(stream, &server_secret, HANDSHAKE_TIMEOUT)
                .await
                .unwrap();
            let Msg::Ping(n) = reader.read_control::<Msg>().await.unwrap() else {
                panic!("expected ping");
            };
            writer.write_control(&Msg::Pong(n + 1)).await.unwrap();
            writer.flush().await.unwrap();
            role
        });
        let (mut reader, mut writer) = connect(&addr, &secret, Role::Worker).await.unwrap();
        writer.write_control(&Msg::Ping(41)).await.unwrap();
        writer.flush().await.unwrap();
        assert_eq!(reader.read_control::<Msg>().await.unwrap(), Msg::Pong(42));
        assert_eq!(server.await.unwrap(), Role::Worker);
    }

    #[tokio::test]
    async fn connect_refused_names_the_address() {
        // Bind then drop to get a port that is (almost certainly) closed.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let err = connect(&addr, &Secret::generate().unwrap(), Role::Client)
            .await
            .unwrap_err();
        assert!(matches!(err, ProtocolError::Connect { .. }), "{err}");
        assert!(err.to_string().contains(&addr), "{err}");
    }
}
