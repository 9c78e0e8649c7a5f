//! The connection handshake: version check and mutual authentication.
//!
//! ```text
//! client                                              server
//!   MAGIC (8 raw bytes)                        ->       wrong magic: drop (port scanner, HTTP)
//!   Hello { version, role, client_nonce }      ->       other version: Rejected { reason }
//!                                              <-     Challenge { server_nonce, server_proof }
//!   check server_proof (impostor: stop here)
//!   Proof { client_proof }                     ->       check client_proof
//!                                              <-     Welcome | Rejected { "authentication failed" }
//! ```
//!
//! `server_proof = HMAC-SHA256(secret, "rdask-server" || transcript)` and
//! `client_proof = HMAC-SHA256(secret, "rdask-client" || transcript)`, where
//! `transcript = version (u32 LE) || role (1 byte) || client_nonce || server_nonce`.
//!
//! Why this shape:
//! * Each side picks a fresh random nonce, so a recorded proof is useless on another
//!   connection (no replay), and each side's proof covers the nonce the *other* side chose.
//! * The labels differ per direction, so a server's proof can never be reflected back as a
//!   client's proof (or the reverse).
//! * The transcript includes the version and role, so a man in the middle cannot rewrite who
//!   is connecting without invalidating both proofs.
//! * The client checks the server *before* proving itself: a worker that reached an impostor
//!   scheduler stops without handing it anything.
//! * Proofs are compared with `Mac::verify_slice`, in constant time; the secret never crosses
//!   the wire.
//! * While unauthenticated, the reader's frame limit is lowered to [`HANDSHAKE_FRAME_LIMIT`] so
//!   an anonymous peer cannot make the server allocate big buffers, and the whole exchange runs
//!   under a timeout so a silent peer cannot pin a task.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{FrameReader, FrameWriter, Kind, Limits};
use super::secret::Secret;
use super::ProtocolError;

/// Version of the messages exchanged after the handshake. Both sides must agree exactly.
/// Version 2: the client's welcome carries the scheduler's per-submission task limit.
/// Version 4: task arrays (submit, cancel, started, outcomes; programs ended; worker
/// resources; queued program demand in the status).
pub const PROTOCOL_VERSION: u32 = 5;

/// First bytes on every connection. The last byte is the generation of the framing itself
/// (frame header and handshake); it would change only if those changed, whereas ordinary
/// message changes bump [`PROTOCOL_VERSION`] and get a readable version-mismatch error.
pub const MAGIC: [u8; 8] = *b"RDASK\0\0\x01";

/// A sensible default for the handshake timeout.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest frame accepted before the peer is authenticated. Handshake messages are well under
/// 100 bytes; the margin is for a `Rejected` reason.
pub const HANDSHAKE_FRAME_LIMIT: usize = 4096;

const NONCE_LEN: usize = 32;
type Nonce = [u8; NONCE_LEN];
type Tag = [u8; 32];
type HmacSha256 = Hmac<Sha256>;

const SERVER_LABEL: &[u8] = b"rdask-server";
const CLIENT_LABEL: &[u8] = b"rdask-client";
const AUTH_FAILED: &str = "authentication failed";
const SERVER_NOT_AUTHENTICATED: &str =
    "the server failed to prove it holds the shared secret; not sending a proof";

/// Who is connecting, so the server can treat workers, clients and peer schedulers apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Worker,
    Client,
    Peer,
}

impl Role {
    /// The role's byte in the authenticated transcript. Fixed here rather than derived from the
    /// serde encoding so the proofs do not depend on the serializer.
    fn transcript_byte(self) -> u8 {
        match self {
            Role::Worker => 0,
            Role::Client => 1,
            Role::Peer => 2,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Worker => "worker",
            Role::Client => "client",
            Role::Peer => "peer",
        })
    }
}

/// The handshake's messages, sent as control frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Message {
    // `Hello` must stay variant 0 with `version` as its first field in every protocol version:
    // that is what lets any server read any client's version and answer with a clear
    // version-mismatch instead of a decode error.
    Hello {
        version: u32,
        role: Role,
        client_nonce: Nonce,
    },
    Challenge {
        server_nonce: Nonce,
        server_proof: Tag,
    },
    Proof {
        client_proof: Tag,
    },
    Welcome,
    Rejected {
        reason: String,
    },
}

impl Message {
    fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Challenge { .. } => "Challenge",
            Message::Proof { .. } => "Proof",
            Message::Welcome => "Welcome",
            Message::Rejected { .. } => "Rejected",
        }
    }
}

/// The stable prefix of a `Hello` from any protocol version (see [`Message`]).
#[derive(Deserialize)]
enum HelloVersion {
    Hello { version: u32 },
}

/// Runs the client side: proves we hold `secret` and checks that the server does too.
/// On error the connection is in an unknown state and must be dropped.
pub async fn client_handshake<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    secret: &Secret,
    role: Role,
    timeout: Duration,
) -> Result<(), ProtocolError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let saved = lower_limits(reader);
    let steps = client_steps(reader, writer, secret, role, PROTOCOL_VERSION);
    let result = within(timeout, steps).await;
    reader.set_limits(saved);
    result
}

/// Runs the server side: checks the client's magic, version and proof, proves we hold
/// `secret`, and returns the client's role. A failure concerns this connection only; drop it.
pub async fn server_handshake<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    secret: &Secret,
    timeout: Duration,
) -> Result<Role, ProtocolError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let saved = lower_limits(reader);
    let result = within(timeout, server_steps(reader, writer, secret)).await;
    reader.set_limits(saved);
    result
}

/// Until the peer is authenticated, accept only handshake-sized control frames: an anonymous
/// peer must not be able to make us allocate. Returns the limits to restore afterwards.
fn lower_limits<R: AsyncRead + Unpin>(reader: &mut FrameReader<R>) -> Limits {
    let saved = reader.limits();
    reader.set_limits(Limits {
        control: HANDSHAKE_FRAME_LIMIT,
        data: 0,
    });
    saved
}

async fn within<T>(
    timeout: Duration,
    steps: impl std::future::Future<Output = Result<T, ProtocolError>>,
) -> Result<T, ProtocolError> {
    tokio::time::timeout(timeout, steps)
        .await
        .unwrap_or(Err(ProtocolError::Timeout))
}

async fn client_steps<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    secret: &Secret,
    role: Role,
    version: u32,
) -> Result<(), ProtocolError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let client_nonce = nonce()?;
    writer.write_raw(&MAGIC).await?;
    writer
        .write_control(&Message::Hello {
            version,
            role,
            client_nonce,
        })
        .await?;
    writer.flush().await?;

    let server_nonce = match read_message(reader).await? {
        Message::Challenge {
            server_nonce,
            server_proof,
        } => {
            let transcript = Transcript {
                version,
                role,
                client_nonce,
                server_nonce,
            };
            if !transcript.verify(secret, SERVER_LABEL, &server_proof) {
                // Tell the server why we hang up (best effort), but send no proof.
                let _ = send(
                    writer,
                    &Message::Rejected {
                        reason: SERVER_NOT_AUTHENTICATED.into(),
                    },
                )
                .await;
                return Err(ProtocolError::ServerNotAuthenticated);
            }
            server_nonce
        }
        Message::Rejected { reason } => return Err(ProtocolError::Rejected(reason)),
        other => return Err(unexpected("Challenge", &other)),
    };

    let transcript = Transcript {
        version,
        role,
        client_nonce,
        server_nonce,
    };
    let client_proof = transcript.proof(secret, CLIENT_LABEL);
    send(writer, &Message::Proof { client_proof }).await?;

    match read_message(reader).await? {
        Message::Welcome => Ok(()),
        Message::Rejected { reason } if reason == AUTH_FAILED => {
            Err(ProtocolError::AuthenticationFailed)
        }
        Message::Rejected { reason } => Err(ProtocolError::Rejected(reason)),
        other => Err(unexpected("Welcome", &other)),
    }
}

async fn server_steps<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    secret: &Secret,
) -> Result<Role, ProtocolError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut magic = [0u8; MAGIC.len()];
    reader.read_raw(&mut magic).await?;
    if magic != MAGIC {
        // Not one of ours: say nothing, the caller drops the connection.
        return Err(ProtocolError::BadMagic);
    }

    let (role, client_nonce) = match read_hello(reader).await? {
        Ok((role, client_nonce)) => (role, client_nonce),
        Err(theirs) => {
            let reason = format!(
                "protocol version mismatch: the server speaks version {PROTOCOL_VERSION}, \
                 the client speaks version {theirs}; run the same rdask version on all nodes"
            );
            // Best effort: the mismatch is the error to report even if the peer is gone.
            let _ = send(writer, &Message::Rejected { reason }).await;
            return Err(ProtocolError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs,
            });
        }
    };

    let server_nonce = nonce()?;
    let transcript = Transcript {
        version: PROTOCOL_VERSION,
        role,
        client_nonce,
        server_nonce,
    };
    let server_proof = transcript.proof(secret, SERVER_LABEL);
    send(
        writer,
        &Message::Challenge {
            server_nonce,
            server_proof,
        },
    )
    .await?;

    match read_message(reader).await? {
        Message::Proof { client_proof } => {
            if transcript.verify(secret, CLIENT_LABEL, &client_proof) {
                send(writer, &Message::Welcome).await?;
                Ok(role)
            } else {
                let _ = send(
                    writer,
                    &Message::Rejected {
                        reason: AUTH_FAILED.into(),
                    },
                )
                .await;
                Err(ProtocolError::AuthenticationFailed)
            }
        }
        // The client refused our proof: it does not hold our secret either.
        Message::Rejected { .. } => Err(ProtocolError::AuthenticationFailed),
        other => Err(unexpected("Proof", &other)),
    }
}

/// Reads the client's `Hello`. `Ok(Err(version))` is a readable hello of another version.
async fn read_hello<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
) -> Result<Result<(Role, Nonce), u32>, ProtocolError> {
    let frame = reader.read_frame().await?.ok_or(ProtocolError::Closed)?;
    if frame.kind != Kind::Control {
        return Err(ProtocolError::Unexpected(
            "a data frame where Hello was expected".into(),
        ));
    }
    // Read the version first: a hello from another version may not decode as ours.
    let version = match postcard::take_from_bytes::<HelloVersion>(&frame.body) {
        Ok((HelloVersion::Hello { version }, _)) => version,
        Err(_) => {
            return Err(match frame.decode::<Message>() {
                Ok(other) => unexpected("Hello", &other),
                Err(e) => e,
            })
        }
    };
    if version != PROTOCOL_VERSION {
        return Ok(Err(version));
    }
    match frame.decode::<Message>()? {
        Message::Hello {
            role, client_nonce, ..
        } => Ok(Ok((role, client_nonce))),
        other => Err(unexpected("Hello", &other)),
    }
}

async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
) -> Result<Message, ProtocolError> {
    reader.read_control().await
}

async fn send<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    msg: &Message,
) -> Result<(), ProtocolError> {
    writer.write_control(msg).await?;
    writer.flush().await
}

fn unexpected(expected: &str, got: &Message) -> ProtocolError {
    ProtocolError::Unexpected(format!(
        "expected {expected} during the handshake, got {}",
        got.name()
    ))
}

fn nonce() -> Result<Nonce, ProtocolError> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).map_err(|e| {
        ProtocolError::Io(std::io::Error::other(format!(
            "cannot get random bytes for a nonce: {e}"
        )))
    })?;
    Ok(n)
}

/// What both proofs authenticate.
struct Transcript {
    version: u32,
    role: Role,
    client_nonce: Nonce,
    server_nonce: Nonce,
}

impl Transcript {
    fn mac(&self, secret: &Secret, label: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac =
            HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
        // Every field has a fixed length, so the concatenation is unambiguous.
        mac.update(label);
        mac.update(&self.version.to_le_bytes());
        mac.update(&[self.role.transcript_byte()]);
        mac.update(&self.client_nonce);
        mac.update(&self.server_nonce);
        mac
    }

    fn proof(&self, secret: &Secret, label: &[u8]) -> Tag {
        self.mac(secret, label).finalize().into_bytes().into()
    }

    /// Constant-time comparison (`verify_slice`), so timing reveals nothing about the tag.
    fn verify(&self, secret: &Secret, label: &[u8], claimed: &[u8]) -> bool {
        self.mac(secret, label).verify_slice(claimed).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::accept;
    use proptest::prelude::*;
    use tokio::io::{duplex, DuplexStream, ReadHalf, WriteHalf};
    use tokio::net::{TcpListener, TcpStream};

    type Reader = FrameReader<ReadHalf<DuplexStream>>;
    type Writer = FrameWriter<WriteHalf<DuplexStream>>;

    fn ends() -> ((Reader, Writer), (Reader, Writer)) {
        let (a, b) = duplex(1 << 16);
        let (ar, aw) = tokio::io::split(a);
        let (br, bw) = tokio::io::split(b);
        (
            (FrameReader::new(ar), FrameWriter::new(aw)),
            (FrameReader::new(br), FrameWriter::new(bw)),
        )
    }

    fn secret() -> Secret {
        Secret::generate().unwrap()
    }

    /// Runs a server handshake on one end in a task and returns its result with the client's.
    async fn run(
        server_secret: Secret,
        client: impl FnOnce(
            Reader,
            Writer,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), ProtocolError>>>,
        >,
    ) -> (Result<Role, ProtocolError>, Result<(), ProtocolError>) {
        let ((cr, cw), (mut sr, mut sw)) = ends();
        let server = tokio::spawn(async move {
            server_handshake(&mut sr, &mut sw, &server_secret, HANDSHAKE_TIMEOUT).await
        });
        let client_result = client(cr, cw).await;
        (server.await.unwrap(), client_result)
    }

    fn honest_client(
        secret: Secret,
        role: Role,
        version: u32,
    ) -> impl FnOnce(
        Reader,
        Writer,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), ProtocolError>>>,
    > {
        move |mut r, mut w| {
            Box::pin(async move {
                let before = r.limits();
                let result = if version == PROTOCOL_VERSION {
                    client_handshake(&mut r, &mut w, &secret, role, HANDSHAKE_TIMEOUT).await
                } else {
                    client_steps(&mut r, &mut w, &secret, role, version).await
                };
                // The frame limits are back to normal after the handshake.
                assert_eq!(r.limits(), before);
                result
            })
        }
    }

    #[tokio::test]
    async fn right_secret_welcomes_every_role() {
        for role in [Role::Worker, Role::Client, Role::Peer] {
            let s = secret();
            let (server, client) = run(s.clone(), honest_client(s, role, PROTOCOL_VERSION)).await;
            client.unwrap();
            assert_eq!(server.unwrap(), role);
        }
    }

    #[tokio::test]
    async fn connection_is_usable_after_the_handshake() {
        let s = secret();
        let ((mut cr, mut cw), (mut sr, mut sw)) = ends();
        let server_secret = s.clone();
        let server = tokio::spawn(async move {
            let role = server_handshake(&mut sr, &mut sw, &server_secret, HANDSHAKE_TIMEOUT)
                .await
                .unwrap();
            // Limits are restored: a data frame bigger than the handshake limit is fine now.
            let frame = sr.read_frame().await.unwrap().unwrap();
            (role, frame.body.len())
        });
        client_handshake(&mut cr, &mut cw, &s, Role::Client, HANDSHAKE_TIMEOUT)
            .await
            .unwrap();
        cw.write_data(&vec![7u8; 100_000]).await.unwrap();
        cw.flush().await.unwrap();
        assert_eq!(server.await.unwrap(), (Role::Client, 100_000));
    }

    #[tokio::test]
    async fn wrong_secret_fails_on_both_sides() {
        let (server, client) = run(
            secret(),
            honest_client(secret(), Role::Worker, PROTOCOL_VERSION),
        )
        .await;
        // The client checks the server first, so it is the one that notices.
        assert!(
            matches!(client, Err(ProtocolError::ServerNotAuthenticated)),
            "{client:?}"
        );
        assert!(
            matches!(server, Err(ProtocolError::AuthenticationFailed)),
            "{server:?}"
        );
    }

    #[tokio::test]
    async fn client_does_not_prove_itself_to_an_impostor() {
        let ((mut cr, mut cw), (mut sr, mut sw)) = ends();
        let impostor = tokio::spawn(async move {
            let mut magic = [0u8; 8];
            sr.read_raw(&mut magic).await.unwrap();
            assert_eq!(magic, MAGIC);
            let hello: Message = sr.read_control().await.unwrap();
            assert!(matches!(hello, Message::Hello { .. }));
            // A plausible but forged challenge: the impostor does not know the secret.
            send(
                &mut sw,
                &Message::Challenge {
                    server_nonce: [1; 32],
                    server_proof: [2; 32],
                },
            )
            .await
            .unwrap();
            // Whatever the client sends next must not be a proof.
            let mut seen = Vec::new();
            while let Ok(Some(frame)) = sr.read_frame().await {
                seen.push(frame.decode::<Message>().unwrap());
            }
            seen
        });
        let err = client_handshake(&mut cr, &mut cw, &secret(), Role::Worker, HANDSHAKE_TIMEOUT)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProtocolError::ServerNotAuthenticated),
            "{err:?}"
        );
        drop((cr, cw));
        let seen = impostor.await.unwrap();
        assert!(
            seen.iter().all(|m| !matches!(m, Message::Proof { .. })),
            "{seen:?}"
        );
        assert!(
            matches!(seen.as_slice(), [Message::Rejected { .. }]),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn forged_client_proof_is_rejected() {
        // A client that does not know the secret: it skips checking the server and guesses.
        let forger = |mut r: Reader,
                      mut w: Writer|
         -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), ProtocolError>>>,
        > {
            Box::pin(async move {
                w.write_raw(&MAGIC).await?;
                send(
                    &mut w,
                    &Message::Hello {
                        version: PROTOCOL_VERSION,
                        role: Role::Client,
                        client_nonce: [9; 32],
                    },
                )
                .await?;
                let Message::Challenge { server_proof, .. } = read_message(&mut r).await? else {
                    panic!("expected a challenge");
                };
                // Reflecting the server's own proof back must not work (distinct labels).
                send(
                    &mut w,
                    &Message::Proof {
                        client_proof: server_proof,
                    },
                )
                .await?;
                match read_message(&mut r).await? {
                    Message::Rejected { reason } => Err(ProtocolError::Rejected(reason)),
                    other => Err(unexpected("Rejected", &other)),
                }
            })
        };
        let (server, client) = run(secret(), forger).await;
        assert!(
            matches!(server, Err(ProtocolError::AuthenticationFailed)),
            "{server:?}"
        );
        match client {
            Err(ProtocolError::Rejected(reason)) => assert_eq!(reason, AUTH_FAILED),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn version_mismatch_is_rejected_with_both_versions() {
        let s = secret();
        let (server, client) = run(s.clone(), honest_client(s, Role::Worker, 99)).await;
        match server {
            Err(ProtocolError::VersionMismatch { ours, theirs }) => {
                assert_eq!((ours, theirs), (PROTOCOL_VERSION, 99));
            }
            other => panic!("{other:?}"),
        }
        match client {
            Err(ProtocolError::Rejected(reason)) => {
                assert!(
                    reason.contains(&format!("version {PROTOCOL_VERSION}"))
                        && reason.contains("version 99"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_future_hello_with_other_fields_still_gets_a_version_error() {
        #[derive(Serialize)]
        enum FutureMessage {
            Hello {
                version: u32,
                features: Vec<String>,
                token: String,
            },
        }
        let client = |mut r: Reader,
                      mut w: Writer|
         -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), ProtocolError>>>,
        > {
            Box::pin(async move {
                w.write_raw(&MAGIC).await?;
                w.write_control(&FutureMessage::Hello {
                    version: PROTOCOL_VERSION + 1,
                    features: vec!["zstd".into()],
                    token: "x".into(),
                })
                .await?;
                w.flush().await?;
                match read_message(&mut r).await? {
                    Message::Rejected { reason } => Err(ProtocolError::Rejected(reason)),
                    other => Err(unexpected("Rejected", &other)),
                }
            })
        };
        let (server, client) = run(secret(), client).await;
        assert!(
            matches!(
                server,
                Err(ProtocolError::VersionMismatch { ours, theirs })
                    if ours == PROTOCOL_VERSION && theirs == PROTOCOL_VERSION + 1
            ),
            "{server:?}"
        );
        assert!(
            matches!(client, Err(ProtocolError::Rejected(_))),
            "{client:?}"
        );
    }

    /// The handshake's bytes, fixed like every other message's (see protocol::messages'
    /// golden test): the magic, then each message as a whole control frame.
    #[test]
    fn handshake_messages_encode_to_their_golden_bytes() {
        let hex = |m: &Message| -> String {
            crate::protocol::encode_control(m)
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        assert_eq!(MAGIC, *b"RDASK\0\0\x01");
        let hello = Message::Hello {
            version: 2,
            role: Role::Client,
            client_nonce: [0xaa; 32],
        };
        assert_eq!(hex(&hello), format!("2300000000000201{}", "aa".repeat(32)));
        let challenge = Message::Challenge {
            server_nonce: [0xbb; 32],
            server_proof: [0xcc; 32],
        };
        assert_eq!(
            hex(&challenge),
            format!("410000000001{}{}", "bb".repeat(32), "cc".repeat(32))
        );
        let proof = Message::Proof {
            client_proof: [0xdd; 32],
        };
        assert_eq!(hex(&proof), format!("210000000002{}", "dd".repeat(32)));
        assert_eq!(hex(&Message::Welcome), "010000000003");
        let rejected = Message::Rejected {
            reason: "no".into(),
        };
        assert_eq!(hex(&rejected), "040000000004026e6f");
        // Any version's Hello starts with its version, readable without knowing the rest.
        let body = &crate::protocol::encode_control(&hello).unwrap()[crate::protocol::HEADER_LEN..];
        let (HelloVersion::Hello { version }, _) =
            postcard::take_from_bytes::<HelloVersion>(body).unwrap();
        assert_eq!(version, 2);
    }

    /// Feeds `bytes` to a server handshake and returns its result.
    async fn server_on(bytes: &[u8], timeout: Duration) -> Result<Role, ProtocolError> {
        let mut reader = FrameReader::new(bytes);
        let mut writer = FrameWriter::new(tokio::io::sink());
        server_handshake(&mut reader, &mut writer, &secret(), timeout).await
    }

    #[tokio::test]
    async fn wrong_magic_is_refused() {
        let http = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        assert!(matches!(
            server_on(http, HANDSHAKE_TIMEOUT).await,
            Err(ProtocolError::BadMagic)
        ));
        assert!(matches!(
            server_on(b"RDASK\0\0\x02rest", HANDSHAKE_TIMEOUT).await,
            Err(ProtocolError::BadMagic)
        ));
        assert!(matches!(
            server_on(b"", HANDSHAKE_TIMEOUT).await,
            Err(ProtocolError::Closed)
        ));
    }

    #[tokio::test]
    async fn garbage_after_the_magic_is_an_error() {
        let cases: [&[u8]; 5] = [
            // Unknown kind.
            &[2, 0, 0, 0, 9, 1, 2],
            // A control frame far over the handshake limit: refused before allocating.
            &[0, 0, 0, 1, 0],
            // A data frame where Hello belongs.
            &[0, 0, 0, 0, 1],
            // A control frame that is not a message.
            &[3, 0, 0, 0, 0, 0xff, 0xff, 0xff],
            // A well-formed message, but not Hello.
            &[1, 0, 0, 0, 0, 3],
        ];
        for case in cases {
            let mut input = MAGIC.to_vec();
            input.extend_from_slice(case);
            let result = server_on(&input, HANDSHAKE_TIMEOUT).await;
            assert!(result.is_err(), "{case:?} -> {result:?}");
        }
        let mut input = MAGIC.to_vec();
        input.extend_from_slice(&[0, 0, 0, 1, 0]);
        assert!(matches!(
            server_on(&input, HANDSHAKE_TIMEOUT).await,
            Err(ProtocolError::Oversized {
                size: 16_777_216,
                limit: HANDSHAKE_FRAME_LIMIT
            })
        ));
        let mut input = MAGIC.to_vec();
        input.extend_from_slice(&[1, 0, 0, 0, 0, 3]);
        assert!(matches!(
            server_on(&input, HANDSHAKE_TIMEOUT).await,
            Err(ProtocolError::Unexpected(_))
        ));
    }

    #[tokio::test]
    async fn silent_peers_time_out() {
        let timeout = Duration::from_millis(100);
        // A client that connects and says nothing (or only half the magic).
        let ((_cr, mut cw), (mut sr, mut sw)) = ends();
        cw.write_raw(b"RDA").await.unwrap();
        cw.flush().await.unwrap();
        let result = server_handshake(&mut sr, &mut sw, &secret(), timeout).await;
        assert!(matches!(result, Err(ProtocolError::Timeout)), "{result:?}");
        assert_eq!(sr.limits(), Limits::default());

        // A server that accepts and says nothing.
        let ((mut cr, mut cw), _server_end) = ends();
        let result = client_handshake(&mut cr, &mut cw, &secret(), Role::Worker, timeout).await;
        assert!(matches!(result, Err(ProtocolError::Timeout)), "{result:?}");
    }

    #[tokio::test]
    async fn listener_keeps_serving_after_failed_handshakes() {
        let s = secret();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let server_secret = s.clone();
        let server = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let secret = server_secret.clone();
                let tx = tx.clone();
                // One task per connection: a bad peer only fails its own task.
                tokio::spawn(async move {
                    let result = accept(stream, &secret, Duration::from_secs(5)).await;
                    let _ = tx.send(result.map(|(role, _, _)| role));
                });
            }
        });

        // A port scanner / HTTP client.
        {
            use tokio::io::AsyncWriteExt;
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            assert!(matches!(
                rx.recv().await.unwrap(),
                Err(ProtocolError::BadMagic)
            ));
        }
        // A client with the wrong secret.
        let err = crate::protocol::connect(&addr.to_string(), &secret(), Role::Worker)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProtocolError::ServerNotAuthenticated),
            "{err:?}"
        );
        assert!(matches!(
            rx.recv().await.unwrap(),
            Err(ProtocolError::AuthenticationFailed)
        ));
        // A good client still gets in.
        crate::protocol::connect(&format!("tcp://{addr}"), &s, Role::Peer)
            .await
            .unwrap();
        assert_eq!(rx.recv().await.unwrap().unwrap(), Role::Peer);
        server.abort();
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Inputs that get past the first checks often: raw bytes, or the magic followed by
    /// arbitrary frames (small plausible headers) and bytes.
    fn handshake_input() -> impl Strategy<Value = Vec<u8>> {
        let raw = proptest::collection::vec(any::<u8>(), 0..256);
        let framed = (
            proptest::collection::vec(
                (
                    0u32..80,
                    0u8..3,
                    proptest::collection::vec(any::<u8>(), 0..80),
                ),
                0..4,
            ),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(frames, tail)| {
                let mut input = MAGIC.to_vec();
                for (size, kind, body) in frames {
                    input.extend_from_slice(&size.to_le_bytes());
                    input.push(kind);
                    input.extend_from_slice(&body);
                }
                input.extend_from_slice(&tail);
                input
            });
        prop_oneof![raw, framed]
    }

    proptest! {
        #[test]
        fn server_handshake_survives_arbitrary_input(input in handshake_input()) {
            let result = runtime().block_on(server_on(&input, Duration::from_secs(5)));
            // Nobody can pass without the secret; a finite input ends, so no timeout either.
            prop_assert!(result.is_err());
            prop_assert!(!matches!(result, Err(ProtocolError::Timeout)));
        }

        #[test]
        fn client_handshake_survives_arbitrary_answers(
            answer in proptest::collection::vec(any::<u8>(), 0..256),
            frames in proptest::collection::vec((0u32..80, 0u8..3), 0..3),
        ) {
            let mut input = Vec::new();
            for (size, kind) in frames {
                input.extend_from_slice(&size.to_le_bytes());
                input.push(kind);
            }
            input.extend_from_slice(&answer);
            let result = runtime().block_on(async {
                let mut reader = FrameReader::new(&input[..]);
                let mut writer = FrameWriter::new(tokio::io::sink());
                client_handshake(&mut reader, &mut writer, &secret(), Role::Client, Duration::from_secs(5)).await
            });
            prop_assert!(result.is_err());
            prop_assert!(!matches!(result, Err(ProtocolError::Timeout)));
        }
    }
}
