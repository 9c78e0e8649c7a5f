//! Length-delimited frames: the unit everything on the wire is cut into.
//!
//! A frame is a 5-byte header — body length (`u32`, little-endian) then a kind byte — and the
//! body. The header is validated by the pure [`decode_header`] before anything is allocated,
//! so a corrupt or hostile length costs an error, not memory.
//!
//! Reading goes through a `BufReader` so that many small frames cost few syscalls; a large body
//! is read with exactly one allocation of exactly its length, and `BufReader` hands reads larger
//! than its buffer straight to the socket, so bulk data is not double-buffered. Writing goes
//! through a 64 KiB `BufWriter`: small control messages batch into few syscalls until
//! [`FrameWriter::flush`], while a large data body is larger than the buffer and passes through.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter, ErrorKind,
};

use super::ProtocolError;

/// Header size: 4 bytes of little-endian body length, then 1 kind byte.
pub const HEADER_LEN: usize = 5;
/// Largest control (postcard) body accepted by default. Control messages are metadata; a
/// length beyond this is corruption or an attack, and is refused before allocating.
pub const MAX_CONTROL_FRAME: usize = 256 << 20;
/// Largest data body: what the 4-byte length can express (4 GiB - 1). Bigger chunks must be
/// split by the sender.
pub const MAX_DATA_FRAME: usize = u32::MAX as usize;

/// Buffer size of both the reader and the writer: large enough to batch hundreds of control
/// messages per syscall, small enough that bulk data bypasses it.
const BUFFER_SIZE: usize = 64 << 10;

/// When a control message needed a scratch buffer bigger than this, the buffer is dropped
/// afterwards instead of being kept for the connection's lifetime.
const SCRATCH_KEEP: usize = 1 << 20;

/// What a frame's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A postcard-encoded message.
    Control = 0,
    /// Raw bulk bytes (an array chunk), never re-encoded.
    Data = 1,
}

impl Kind {
    pub fn from_byte(b: u8) -> Result<Kind, ProtocolError> {
        match b {
            0 => Ok(Kind::Control),
            1 => Ok(Kind::Data),
            other => Err(ProtocolError::UnknownKind(other)),
        }
    }

    fn limit(self, limits: &Limits) -> usize {
        match self {
            Kind::Control => limits.control,
            Kind::Data => limits.data,
        }
    }
}

/// The largest body a reader accepts, per kind. Tests and the handshake (which must not let an
/// unauthenticated peer make us allocate) use smaller limits than the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub control: usize,
    pub data: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            control: MAX_CONTROL_FRAME,
            data: MAX_DATA_FRAME,
        }
    }
}

impl Limits {
    /// The same limit for both kinds.
    pub const fn uniform(limit: usize) -> Self {
        Limits {
            control: limit,
            data: limit,
        }
    }
}

/// Decodes and validates a header: unknown kinds and bodies over the limit are errors. Pure, so
/// it can be fuzzed and so the check happens before any allocation.
pub fn decode_header(
    header: &[u8; HEADER_LEN],
    limits: &Limits,
) -> Result<(Kind, usize), ProtocolError> {
    let size = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let kind = Kind::from_byte(header[4])?;
    let limit = kind.limit(limits);
    if size > limit {
        return Err(ProtocolError::Oversized { size, limit });
    }
    Ok((kind, size))
}

/// Encodes a header; a body too large for the 4-byte length is an error.
pub fn encode_header(kind: Kind, size: usize) -> Result<[u8; HEADER_LEN], ProtocolError> {
    let len = u32::try_from(size).map_err(|_| ProtocolError::Oversized {
        size,
        limit: MAX_DATA_FRAME,
    })?;
    let l = len.to_le_bytes();
    Ok([l[0], l[1], l[2], l[3], kind as u8])
}

/// Decodes a control body. Trailing bytes are an error: they mean the two sides disagree on
/// the message type, which is better caught here than as a silently wrong value.
pub fn decode_control<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ProtocolError> {
    let (msg, rest) = postcard::take_from_bytes(body)?;
    if !rest.is_empty() {
        return Err(ProtocolError::Decode(format!(
            "{} unexpected trailing bytes after the message",
            rest.len()
        )));
    }
    Ok(msg)
}

/// Serializes `msg` as a whole control frame (header included) appended to `buf`, which must be
/// empty. Shared by [`encode_control`] and [`FrameWriter::write_control`].
fn encode_control_into<T: Serialize + ?Sized>(
    msg: &T,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, ProtocolError> {
    debug_assert!(buf.is_empty());
    // Reserve the header, serialize after it, then patch the length in: one buffer, no copy.
    buf.extend_from_slice(&[0; HEADER_LEN]);
    let mut buf = postcard::to_extend(msg, buf)
        .map_err(|e| ProtocolError::Decode(format!("cannot encode message: {e}")))?;
    let size = buf.len() - HEADER_LEN;
    if size > MAX_CONTROL_FRAME {
        // The receiver would refuse it; fail here, where the cause is visible.
        return Err(ProtocolError::Oversized {
            size,
            limit: MAX_CONTROL_FRAME,
        });
    }
    buf[..HEADER_LEN].copy_from_slice(&encode_header(Kind::Control, size)?);
    Ok(buf)
}

/// Encodes `msg` as a complete control frame, header included, for callers that encode once
/// and send the same bytes to many peers with [`FrameWriter::write_encoded`].
pub fn encode_control<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, ProtocolError> {
    encode_control_into(msg, Vec::new())
}

/// One frame as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub body: Bytes,
}

impl Frame {
    /// Decodes a control frame's body; a data frame here is an [`ProtocolError::Unexpected`].
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ProtocolError> {
        match self.kind {
            Kind::Control => decode_control(&self.body),
            Kind::Data => Err(ProtocolError::Unexpected(format!(
                "a data frame of {} bytes where a control message was expected",
                self.body.len()
            ))),
        }
    }
}

/// Reads frames from a byte stream.
pub struct FrameReader<R> {
    inner: BufReader<R>,
    limits: Limits,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader with the default limits ([`MAX_CONTROL_FRAME`], [`MAX_DATA_FRAME`]).
    pub fn new(inner: R) -> Self {
        Self::with_limits(inner, Limits::default())
    }

    pub fn with_limits(inner: R, limits: Limits) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(BUFFER_SIZE, inner),
            limits,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn get_ref(&self) -> &R {
        self.inner.get_ref()
    }

    /// Reads the next frame. `Ok(None)` is a clean end of stream (the peer closed between
    /// frames); an end of stream inside a frame is an error.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        let mut header = [0u8; HEADER_LEN];
        let mut filled = 0;
        while filled < HEADER_LEN {
            let n = self.inner.read(&mut header[filled..]).await?;
            if n == 0 {
                if filled == 0 {
                    return Ok(None);
                }
                return Err(truncated(filled, HEADER_LEN, "header"));
            }
            filled += n;
        }
        let (kind, size) = decode_header(&header, &self.limits)?;
        let body = self.read_body(size).await?;
        Ok(Some(Frame { kind, body }))
    }

    /// Reads the next frame, which must be a control message, and decodes it. End of stream
    /// is [`ProtocolError::Closed`].
    pub async fn read_control<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, ProtocolError> {
        match self.read_frame().await? {
            Some(frame) => frame.decode(),
            None => Err(ProtocolError::Closed),
        }
    }

    /// Skips a body of `size` bytes without keeping it: after [`FrameReader::read_frame`]
    /// refused a frame as oversized (its header is read, its body is next), the connection
    /// can go on and the peer be told why, instead of being dropped.
    pub async fn skip_body(&mut self, size: usize) -> Result<(), ProtocolError> {
        let copied = tokio::io::copy(
            &mut (&mut self.inner).take(size as u64),
            &mut tokio::io::sink(),
        )
        .await?;
        if copied < size as u64 {
            return Err(truncated(copied as usize, size, "body"));
        }
        Ok(())
    }

    /// Reads exactly `buf.len()` raw bytes outside any frame (the handshake's magic).
    pub(crate) async fn read_raw(&mut self, buf: &mut [u8]) -> Result<(), ProtocolError> {
        match self.inner.read_exact(buf).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(ProtocolError::Closed),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a body of `size` bytes into one allocation of exactly `size` bytes. The memory is
    /// filled straight from the stream (no zeroing pass, no intermediate buffer), and an
    /// allocation failure is an error rather than an abort.
    async fn read_body(&mut self, size: usize) -> Result<Bytes, ProtocolError> {
        if size >= LARGE_BODY {
            return self.read_large_body(size).await;
        }
        let mut body = Vec::new();
        body.try_reserve_exact(size).map_err(|e| {
            ProtocolError::Io(std::io::Error::new(
                ErrorKind::OutOfMemory,
                format!("cannot allocate a frame body of {size} bytes: {e}"),
            ))
        })?;
        while body.len() < size {
            let remaining = (size - body.len()) as u64;
            // `take` keeps the read inside this frame; `read_buf` writes into the Vec's spare
            // capacity, which is exactly what is left, so the Vec never grows.
            let n = (&mut self.inner)
                .take(remaining)
                .read_buf(&mut body)
                .await?;
            if n == 0 {
                return Err(truncated(body.len(), size, "body"));
            }
        }
        Ok(Bytes::from(body))
    }

    /// A large body (an array chunk) goes into huge-page-backed memory, see
    /// [`super::hugebuf`]; reads go straight from the socket into it.
    async fn read_large_body(&mut self, size: usize) -> Result<Bytes, ProtocolError> {
        let mut buf = super::hugebuf::HugeBuf::new(size).map_err(|e| {
            ProtocolError::Io(std::io::Error::new(
                ErrorKind::OutOfMemory,
                format!("cannot allocate a frame body of {size} bytes: {e}"),
            ))
        })?;
        let slice = buf.as_mut_slice();
        let mut filled = 0;
        while filled < size {
            let n = self.inner.read(&mut slice[filled..]).await?;
            if n == 0 {
                return Err(truncated(filled, size, "body"));
            }
            filled += n;
        }
        Ok(buf.into_bytes())
    }
}

/// Bodies from this size on are received into huge-page-backed memory.
const LARGE_BODY: usize = 4 << 20;

impl<R> std::fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn truncated(got: usize, expected: usize, part: &str) -> ProtocolError {
    ProtocolError::Io(std::io::Error::new(
        ErrorKind::UnexpectedEof,
        format!("connection closed inside a frame {part} ({got} of {expected} bytes)"),
    ))
}

/// Writes frames to a byte stream. Writes are buffered: call [`FrameWriter::flush`] when a
/// batch of messages should leave.
pub struct FrameWriter<W> {
    inner: BufWriter<W>,
    /// Reused across control messages so encoding does not allocate per message.
    scratch: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        FrameWriter {
            inner: BufWriter::with_capacity(BUFFER_SIZE, inner),
            scratch: Vec::new(),
        }
    }

    pub fn get_ref(&self) -> &W {
        self.inner.get_ref()
    }

    /// Queues a control message (postcard-encoded).
    pub async fn write_control<T: Serialize + ?Sized>(
        &mut self,
        msg: &T,
    ) -> Result<(), ProtocolError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let frame = encode_control_into(msg, scratch)?;
        self.inner.write_all(&frame).await?;
        if frame.capacity() <= SCRATCH_KEEP {
            self.scratch = frame;
        }
        Ok(())
    }

    /// Queues a data frame. The header goes into the buffer; the body is written from `data`
    /// directly (a body larger than the buffer bypasses it), never copied into a temporary.
    pub async fn write_data(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        let header = encode_header(Kind::Data, data.len())?;
        self.inner.write_all(&header).await?;
        self.inner.write_all(data).await?;
        Ok(())
    }

    /// Queues a frame produced by [`encode_control`]. The header is checked against the length
    /// so a wrong slice cannot desynchronize the stream.
    pub async fn write_encoded(&mut self, frame: &[u8]) -> Result<(), ProtocolError> {
        let header: &[u8; HEADER_LEN] = frame
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| {
                ProtocolError::Unexpected("encoded frame shorter than a header".into())
            })?;
        let (_, size) = decode_header(header, &Limits::default())?;
        if size != frame.len() - HEADER_LEN {
            return Err(ProtocolError::Unexpected(format!(
                "encoded frame announces {size} body bytes but has {}",
                frame.len() - HEADER_LEN
            )));
        }
        self.inner.write_all(frame).await?;
        Ok(())
    }

    /// Writes raw bytes outside any frame (the handshake's magic).
    pub(crate) async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        self.inner.write_all(bytes).await?;
        Ok(())
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), ProtocolError> {
        self.inner.flush().await?;
        Ok(())
    }

    /// Flushes, then closes the write side so the peer reads a clean end of stream.
    pub async fn shutdown(&mut self) -> Result<(), ProtocolError> {
        self.inner.shutdown().await?;
        Ok(())
    }
}

impl<W> std::fmt::Debug for FrameWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Hello { name: String, n: u64 },
        Chunk { key: (u32, u32), nbytes: u64 },
        Bye,
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Counts write calls and remembers the largest, to observe batching and pass-through.
    #[derive(Default)]
    struct CountingWriter {
        bytes: Vec<u8>,
        writes: usize,
        largest_write: usize,
    }

    impl AsyncWrite for CountingWriter {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes += 1;
            self.largest_write = self.largest_write.max(buf.len());
            self.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn header(size: u32, kind: u8) -> Vec<u8> {
        let mut h = size.to_le_bytes().to_vec();
        h.push(kind);
        h
    }

    #[tokio::test]
    async fn control_and_data_round_trip() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut writer = FrameWriter::new(a);
        let mut reader = FrameReader::new(b);
        let hello = Msg::Hello {
            name: "worker-1".into(),
            n: 7,
        };
        writer.write_control(&hello).await.unwrap();
        writer.write_data(b"raw bytes").await.unwrap();
        writer.write_data(b"").await.unwrap();
        writer.write_control(&Msg::Bye).await.unwrap();
        writer.shutdown().await.unwrap();

        assert_eq!(reader.read_control::<Msg>().await.unwrap(), hello);
        let data = reader.read_frame().await.unwrap().unwrap();
        assert_eq!(data.kind, Kind::Data);
        assert_eq!(&data.body[..], b"raw bytes");
        let empty = reader.read_frame().await.unwrap().unwrap();
        assert_eq!((empty.kind, empty.body.len()), (Kind::Data, 0));
        assert_eq!(reader.read_control::<Msg>().await.unwrap(), Msg::Bye);
        assert!(reader.read_frame().await.unwrap().is_none());
        assert!(matches!(
            reader.read_control::<Msg>().await,
            Err(ProtocolError::Closed)
        ));
    }

    #[tokio::test]
    async fn large_data_frame_round_trip_and_passes_through() {
        const SIZE: usize = 64 << 20;
        let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        let (a, b) = tokio::io::duplex(1 << 20);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            let mut writer = FrameWriter::new(a);
            writer.write_data(&sent).await.unwrap();
            writer.write_control(&Msg::Bye).await.unwrap();
            writer.flush().await.unwrap();
        });
        let mut reader = FrameReader::new(b);
        let frame = reader.read_frame().await.unwrap().unwrap();
        assert_eq!(frame.kind, Kind::Data);
        assert_eq!(frame.body.len(), SIZE);
        assert!(frame.body == data[..]);
        assert_eq!(reader.read_control::<Msg>().await.unwrap(), Msg::Bye);
        writer.await.unwrap();

        // On the write side the body is handed to the stream in one piece, not through the
        // 64 KiB buffer.
        let mut counting = FrameWriter::new(CountingWriter::default());
        counting.write_data(&data[..1 << 20]).await.unwrap();
        counting.flush().await.unwrap();
        assert_eq!(counting.get_ref().largest_write, 1 << 20);
        assert_eq!(counting.get_ref().bytes.len(), HEADER_LEN + (1 << 20));
    }

    #[tokio::test]
    async fn many_small_control_frames_are_batched() {
        let mut writer = FrameWriter::new(CountingWriter::default());
        for i in 0..10_000u32 {
            writer
                .write_control(&Msg::Chunk {
                    key: (i, i + 1),
                    nbytes: u64::from(i) * 8,
                })
                .await
                .unwrap();
        }
        writer.flush().await.unwrap();
        let sink = writer.get_ref();
        // Roughly 15 bytes a frame: ~150 KB in 64 KiB writes, not 10 000 syscalls.
        assert!(
            sink.writes <= sink.bytes.len() / BUFFER_SIZE + 2,
            "{} writes",
            sink.writes
        );

        let mut reader = FrameReader::new(&sink.bytes[..]);
        for i in 0..10_000u32 {
            let msg: Msg = reader.read_control().await.unwrap();
            assert_eq!(
                msg,
                Msg::Chunk {
                    key: (i, i + 1),
                    nbytes: u64::from(i) * 8
                }
            );
        }
        assert!(reader.read_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn encode_once_send_many() {
        let frame = encode_control(&Msg::Bye).unwrap();
        let mut writer = FrameWriter::new(CountingWriter::default());
        writer.write_encoded(&frame).await.unwrap();
        writer.write_encoded(&frame).await.unwrap();
        assert!(writer
            .write_encoded(&frame[..frame.len() - 1])
            .await
            .is_err());
        assert!(writer.write_encoded(&frame[..3]).await.is_err());
        writer.flush().await.unwrap();
        let mut reader = FrameReader::new(&writer.get_ref().bytes[..]);
        assert_eq!(reader.read_control::<Msg>().await.unwrap(), Msg::Bye);
        assert_eq!(reader.read_control::<Msg>().await.unwrap(), Msg::Bye);
        assert!(reader.read_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_header_is_refused_before_allocating() {
        // 1 GiB announced, only the header sent: if the reader tried to allocate and fill the
        // body it would hit EOF, not Oversized.
        let bytes = header(1 << 30, 0);
        let mut reader = FrameReader::new(&bytes[..]);
        match reader.read_frame().await {
            Err(ProtocolError::Oversized { size, limit }) => {
                assert_eq!((size, limit), (1 << 30, MAX_CONTROL_FRAME));
            }
            other => panic!("expected Oversized, got {other:?}"),
        }
        let bytes = header(1025, 1);
        let mut reader = FrameReader::with_limits(&bytes[..], Limits::uniform(1024));
        assert!(matches!(
            reader.read_frame().await,
            Err(ProtocolError::Oversized {
                size: 1025,
                limit: 1024
            })
        ));
    }

    #[tokio::test]
    async fn unknown_kind_is_an_error() {
        let bytes = header(0, 7);
        let mut reader = FrameReader::new(&bytes[..]);
        assert!(matches!(
            reader.read_frame().await,
            Err(ProtocolError::UnknownKind(7))
        ));
    }

    #[tokio::test]
    async fn eof_inside_a_frame_is_an_error() {
        // Inside the header.
        let mut reader = FrameReader::new(&[3u8, 0][..]);
        let err = reader.read_frame().await.unwrap_err();
        assert!(matches!(&err, ProtocolError::Io(e) if e.kind() == ErrorKind::UnexpectedEof));
        // Inside the body.
        let mut bytes = header(10, 1);
        bytes.extend_from_slice(b"abc");
        let mut reader = FrameReader::new(&bytes[..]);
        let err = reader.read_frame().await.unwrap_err();
        assert!(matches!(&err, ProtocolError::Io(e) if e.kind() == ErrorKind::UnexpectedEof));
        assert!(err.to_string().contains("3 of 10"), "{err}");
    }

    #[tokio::test]
    async fn clean_eof_is_none() {
        let mut reader = FrameReader::new(&[][..]);
        assert!(reader.read_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn wrong_kind_or_type_is_an_error_not_a_panic() {
        let mut writer = FrameWriter::new(CountingWriter::default());
        writer.write_data(b"xyz").await.unwrap();
        writer.write_control(&(1u8, 2u8, 3u8)).await.unwrap();
        writer.flush().await.unwrap();
        let mut reader = FrameReader::new(&writer.get_ref().bytes[..]);
        assert!(matches!(
            reader.read_control::<Msg>().await,
            Err(ProtocolError::Unexpected(_))
        ));
        // A u8 followed by two stray bytes: the types disagree, and trailing bytes say so.
        assert!(matches!(
            reader.read_control::<u8>().await,
            Err(ProtocolError::Decode(_))
        ));
    }

    #[test]
    fn header_round_trip() {
        for (kind, size) in [
            (Kind::Control, 0),
            (Kind::Data, 12345),
            (Kind::Data, MAX_DATA_FRAME),
        ] {
            let h = encode_header(kind, size).unwrap();
            assert_eq!(decode_header(&h, &Limits::default()).unwrap(), (kind, size));
        }
        assert!(matches!(
            encode_header(Kind::Data, MAX_DATA_FRAME + 1),
            Err(ProtocolError::Oversized { .. })
        ));
    }

    proptest! {
        #[test]
        fn decode_header_never_panics(header in any::<[u8; HEADER_LEN]>(), limit in 0usize..4096) {
            let limits = Limits { control: limit, data: limit * 2 };
            match decode_header(&header, &limits) {
                Ok((kind, size)) => {
                    prop_assert!(header[4] <= 1);
                    prop_assert_eq!(kind as u8, header[4]);
                    prop_assert!(size <= kind.limit(&limits));
                }
                Err(ProtocolError::UnknownKind(k)) => prop_assert!(k > 1),
                Err(ProtocolError::Oversized { size, limit }) => prop_assert!(size > limit),
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }

        #[test]
        fn reader_survives_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            small_headers in proptest::collection::vec((0u32..64, 0u8..3), 0..4),
        ) {
            // Mix plausible headers in front so the fuzzer gets past the header often.
            let mut input = Vec::new();
            for (size, kind) in small_headers {
                input.extend_from_slice(&header(size, kind));
            }
            input.extend_from_slice(&bytes);
            let rt = runtime();
            rt.block_on(async {
                let mut reader = FrameReader::with_limits(&input[..], Limits::uniform(256));
                // Every frame consumes at least a header, so this terminates.
                for _ in 0..=input.len() {
                    match reader.read_frame().await {
                        Ok(Some(frame)) => {
                            let _ = frame.decode::<Msg>();
                        }
                        Ok(None) | Err(_) => return,
                    }
                }
                panic!("reader did not reach the end of its input");
            });
        }
    }
}
