//! The peer wire format: every frame is a `u32` big-endian body length followed by an
//! rmp-serde body encoding one `Frame`. Owns the frame shapes, the coalesced heartbeat
//! entries, encoding and the bounded, panic-free decoder. It must never trust a length or a
//! body that came from a socket: every length is checked against a bound before anything
//! is allocated, and a body that does not decode is an error, never a panic.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::raft::types::{GroupId, LogIndex, Message, MessageBody, NodeId, Term};
use crate::transport::api::{ForwardReply, ForwardRequest, GroupMessage, TermAnswer, TermProbe};
use crate::transport::api::Publication;
use crate::transport::api::Urgency;

/// The version of this wire format; a peer speaking another one is refused at the handshake
/// (frames are rmp-serde arrays: a field added to a struct breaks older decoders).
/// 2: `ForwardRequest::endorsed_term`.
/// 3: `KvCommand::Batch` and `ReadCommand::Batch` (an older replica could not apply a
/// batch in the log, so it must not join).
/// 4: `ShardError::Transferring` (in forward replies: an older node cannot decode it).
/// 5: incarnations in `Hello` and `Challenge`, and `Refused`.
/// 6: `Batch::term_probes` and `Batch::term_answers` (node-level read rounds).
/// 7: `frame_bytes_max` in `Hello` and `Challenge` (peers with different bounds refuse
/// each other).
/// 8: `ReadCommand::Keyspace` (INFO's keyspace counts deadlines; an older node cannot
/// decode it).
/// 9: `KvCommand::Transaction` and `KvCommand::Read` (MULTI/EXEC: an older replica could not
/// apply a transaction in the log).
/// 10: `KvCommand::Watched` and `ReadCommand::Digests` (WATCH).
/// 11: `KvCommand::SetBit`, `BitOp`, `BitField`, `Copy` and `Restore`;
/// `ReadCommand::GetBit`, `BitCount`, `BitPos`, `BitField` and `Lcs`; `KvError::SameObject`,
/// `BusyKey` and `LcsTooLarge` (in forwarded replies and in snapshots' session records);
/// `Restore` and `Lcs` are not batchable, which decides what apply accepts in a batch.
/// 12: `apply::TRANSACTION_WORK_BYTES_MAX` (an older replica would apply a transaction this
/// one refuses), `KvError::TransactionWorkTooLarge` and `ReadCommand::MemoryUsage`.
/// 13: `Batch::publications` (Pub/Sub messages relayed to the other nodes).
pub const PROTOCOL_VERSION: u32 = 13;

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Largest frame accepted before the handshake completes: the handshake frames are tiny,
/// and an unauthenticated stranger must not make the node allocate `frame_bytes_max`.
pub const HANDSHAKE_FRAME_BYTES_MAX: u32 = 1024;

/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 32;

/// Why a frame could not be read, decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {frame_bytes} bytes exceeds the bound of {frame_bytes_max} bytes")]
    TooLarge {
        frame_bytes: u64,
        frame_bytes_max: u64,
    },
    #[error("frame body does not decode: {0}")]
    Decode(String),
    #[error("frame does not encode: {0}")]
    Encode(String),
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A coalesced `Heartbeat` of one group; `from`/`to` are the frame's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatEntry {
    pub group: GroupId,
    pub term: Term,
    pub commit_index: LogIndex,
    pub read_round: u64,
}

/// A coalesced `HeartbeatResponse` of one group; `from`/`to` are the frame's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponseEntry {
    pub group: GroupId,
    pub term: Term,
    pub read_round: u64,
}

/// Everything queued for one peer between two flushes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub messages: Vec<GroupMessage>,
    pub heartbeats: Vec<HeartbeatEntry>,
    pub heartbeat_responses: Vec<HeartbeatResponseEntry>,
    pub forwards: Vec<ForwardRequest>,
    pub forward_replies: Vec<ForwardReply>,
    pub term_probes: Vec<TermProbe>,
    pub term_answers: Vec<TermAnswer>,
    pub publications: Vec<Publication>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.heartbeats.is_empty()
            && self.heartbeat_responses.is_empty()
            && self.forwards.is_empty()
            && self.forward_replies.is_empty()
            && self.term_probes.is_empty()
            && self.term_answers.is_empty()
            && self.publications.is_empty()
    }

    /// Coalesced heartbeat entries (requests and responses) carried.
    pub fn heartbeat_entries(&self) -> usize {
        self.heartbeats.len() + self.heartbeat_responses.len()
    }

    /// Items of any kind carried.
    pub fn len(&self) -> usize {
        self.messages.len()
            + self.heartbeat_entries()
            + self.forwards.len()
            + self.forward_replies.len()
            + self.term_probes.len()
            + self.term_answers.len()
            + self.publications.len()
    }

    /// Cuts the batch in two halves (by item, kind by kind); used when one frame would
    /// exceed `frame_bytes_max`. Both halves are non-empty when `len() >= 2`.
    pub fn split(mut self) -> (Batch, Batch) {
        fn half<T>(v: &mut Vec<T>) -> Vec<T> {
            v.split_off(v.len() / 2)
        }
        let total = self.len();
        // A new kind of item goes here, and in `moves` below.
        let mut upper = Batch {
            messages: half(&mut self.messages),
            heartbeats: half(&mut self.heartbeats),
            heartbeat_responses: half(&mut self.heartbeat_responses),
            forwards: half(&mut self.forwards),
            forward_replies: half(&mut self.forward_replies),
            term_probes: half(&mut self.term_probes),
            term_answers: half(&mut self.term_answers),
            publications: half(&mut self.publications),
        };
        if self.is_empty() && total >= 2 {
            // Every kind held at most one item, now all in `upper`: move the first one back.
            let moves: [fn(&mut Batch, &mut Batch); 8] = [
                |a, b| std::mem::swap(&mut a.messages, &mut b.messages),
                |a, b| std::mem::swap(&mut a.forwards, &mut b.forwards),
                |a, b| std::mem::swap(&mut a.heartbeats, &mut b.heartbeats),
                |a, b| std::mem::swap(&mut a.heartbeat_responses, &mut b.heartbeat_responses),
                |a, b| std::mem::swap(&mut a.forward_replies, &mut b.forward_replies),
                |a, b| std::mem::swap(&mut a.term_probes, &mut b.term_probes),
                |a, b| std::mem::swap(&mut a.term_answers, &mut b.term_answers),
                |a, b| std::mem::swap(&mut a.publications, &mut b.publications),
            ];
            for swap in moves {
                if !self.is_empty() {
                    break;
                }
                swap(&mut self, &mut upper);
            }
        }
        (self, upper)
    }

    /// Expands the batch back into Raft messages from `from` to `to`: ordinary messages
    /// first (`Urgency::Now`), then the coalesced entries (`Urgency::Coalesce`).
    pub fn raft_messages(&mut self, from: NodeId, to: NodeId) -> Vec<(GroupMessage, Urgency)> {
        let mut out = Vec::with_capacity(
            self.messages.len() + self.heartbeats.len() + self.heartbeat_responses.len(),
        );
        out.extend(self.messages.drain(..).map(|m| (m, Urgency::Now)));
        let coalesced = |group, term, body| {
            let msg = Message { from, to, term, body };
            (GroupMessage { group, msg }, Urgency::Coalesce)
        };
        out.extend(self.heartbeats.drain(..).map(|e| {
            let body =
                MessageBody::Heartbeat { commit_index: e.commit_index, read_round: e.read_round };
            coalesced(e.group, e.term, body)
        }));
        out.extend(self.heartbeat_responses.drain(..).map(|e| {
            let body = MessageBody::HeartbeatResponse { read_round: e.read_round };
            coalesced(e.group, e.term, body)
        }));
        out
    }
}

/// One frame. All but the last are the handshake (see `handshake`); the last is traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// Dialer → acceptor: who I am, which wire version I speak, and a nonce the acceptor
    /// must answer to prove it knows the secret too.
    Hello {
        version: u32,
        node: NodeId,
        nonce: Vec<u8>,
        /// The dialer's database incarnation (`transport::identity`). Absent from an
        /// older node's `Hello`, which is then refused for its version, not as garbage.
        #[serde(default)]
        incarnation: u64,
        /// The dialer's `frame_bytes_max`, which the acceptor's must equal (`handshake`).
        #[serde(default)]
        frame_bytes_max: u32,
    },
    /// Acceptor → dialer: who I am, my nonce for the dialer to answer, my proof, my
    /// database incarnation and my `frame_bytes_max`.
    Challenge {
        version: u32,
        node: NodeId,
        nonce: Vec<u8>,
        proof: Vec<u8>,
        #[serde(default)]
        incarnation: u64,
        #[serde(default)]
        frame_bytes_max: u32,
    },
    /// Dialer → acceptor: the dialer's proof.
    Proof { proof: Vec<u8> },
    /// Acceptor → dialer: the proof was right; batches may flow.
    Welcome,
    /// Acceptor → dialer, instead of `Welcome`: the dialer proved the secret but is refused
    /// (it presents another incarnation than the acceptor recorded, the record is full,
    /// or it could not be written, or its frame bound differs); the reason is logged on
    /// both sides.
    Refused { reason: String },
    /// Dialer → acceptor, after `Welcome`.
    Batch(Batch),
}

/// Encodes `frame` with its length prefix; refuses a body longer than `frame_bytes_max`.
pub fn encode_frame(frame: &Frame, frame_bytes_max: u32) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; LENGTH_PREFIX_BYTES];
    rmp_serde::encode::write(&mut out, frame).map_err(|e| WireError::Encode(e.to_string()))?;
    let body_bytes = out.len() - LENGTH_PREFIX_BYTES;
    if body_bytes > frame_bytes_max as usize {
        return Err(WireError::TooLarge {
            frame_bytes: body_bytes as u64,
            frame_bytes_max: u64::from(frame_bytes_max),
        });
    }
    let prefix = (body_bytes as u32).to_be_bytes();
    out[..LENGTH_PREFIX_BYTES].copy_from_slice(&prefix);
    Ok(out)
}

/// Decodes one frame body (without its length prefix). Never panics on any input.
pub fn decode_frame(body: &[u8]) -> Result<Frame, WireError> {
    rmp_serde::from_slice(body).map_err(|e| WireError::Decode(e.to_string()))
}

/// Decodes a whole buffer of prefixed frames (a test and fuzzing aid): the frames read,
/// and the error that stopped it, if the buffer did not end on a frame boundary.
pub fn decode_stream(mut bytes: &[u8], frame_bytes_max: u32) -> (Vec<Frame>, Option<WireError>) {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < LENGTH_PREFIX_BYTES {
            return (frames, Some(WireError::Closed));
        }
        let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
        prefix.copy_from_slice(&bytes[..LENGTH_PREFIX_BYTES]);
        let len = u32::from_be_bytes(prefix);
        if len > frame_bytes_max {
            let e = WireError::TooLarge {
                frame_bytes: u64::from(len),
                frame_bytes_max: u64::from(frame_bytes_max),
            };
            return (frames, Some(e));
        }
        let rest = &bytes[LENGTH_PREFIX_BYTES..];
        if rest.len() < len as usize {
            return (frames, Some(WireError::Closed));
        }
        match decode_frame(&rest[..len as usize]) {
            Ok(f) => frames.push(f),
            Err(e) => return (frames, Some(e)),
        }
        bytes = &rest[len as usize..];
    }
    (frames, None)
}

/// Reads one frame; `Ok(None)` on a clean end of stream at a frame boundary. The length is
/// checked against `frame_bytes_max` before the body is allocated. Returns the frame and
/// its size on the wire.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    frame_bytes_max: u32,
) -> Result<Option<(Frame, usize)>, WireError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    let first = reader.read(&mut prefix).await?;
    if first == 0 {
        return Ok(None);
    }
    if first < LENGTH_PREFIX_BYTES {
        read_exact_or_closed(reader, &mut prefix[first..]).await?;
    }
    let len = u32::from_be_bytes(prefix);
    if len > frame_bytes_max {
        return Err(WireError::TooLarge {
            frame_bytes: u64::from(len),
            frame_bytes_max: u64::from(frame_bytes_max),
        });
    }
    let mut body = vec![0u8; len as usize];
    read_exact_or_closed(reader, &mut body).await?;
    let frame = decode_frame(&body)?;
    Ok(Some((frame, LENGTH_PREFIX_BYTES + body.len())))
}

async fn read_exact_or_closed<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<(), WireError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(WireError::Closed),
        Err(e) => Err(WireError::Io(e)),
    }
}

/// Writes one already encoded frame.
pub async fn write_encoded<W: AsyncWrite + Unpin>(
    writer: &mut W,
    encoded: &[u8],
) -> Result<(), WireError> {
    writer.write_all(encoded).await?;
    Ok(())
}

/// Encodes and writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &Frame,
    frame_bytes_max: u32,
) -> Result<usize, WireError> {
    let encoded = encode_frame(frame, frame_bytes_max)?;
    write_encoded(writer, &encoded).await?;
    Ok(encoded.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn heartbeat_batch(groups: u64) -> Batch {
        Batch {
            heartbeats: (1..=groups)
                .map(|g| HeartbeatEntry {
                    group: GroupId(g),
                    term: Term(2),
                    commit_index: LogIndex(g),
                    read_round: 0,
                })
                .collect(),
            heartbeat_responses: vec![HeartbeatResponseEntry {
                group: GroupId(9),
                term: Term(3),
                read_round: 4,
            }],
            ..Batch::default()
        }
    }

    #[test]
    fn a_batch_round_trips_through_the_wire() {
        let frame = Frame::Batch(heartbeat_batch(64));
        let encoded = encode_frame(&frame, 1 << 20).unwrap();
        let (frames, error) = decode_stream(&encoded, 1 << 20);
        assert!(error.is_none());
        assert_eq!(frames, vec![frame]);
    }

    #[test]
    fn coalesced_entries_expand_into_ordinary_messages_from_the_frame_endpoints() {
        let mut batch = heartbeat_batch(2);
        let out = batch.raft_messages(NodeId(1), NodeId(2));
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|(m, u)| *u == Urgency::Coalesce
            && m.msg.from == NodeId(1)
            && m.msg.to == NodeId(2)));
        let body = MessageBody::Heartbeat {
            commit_index: LogIndex(2),
            read_round: 0,
        };
        assert_eq!(out[1].0.msg.body, body);
        assert_eq!(
            out[2].0.msg.body,
            MessageBody::HeartbeatResponse { read_round: 4 }
        );
        assert_eq!((out[2].0.group, out[2].0.msg.term), (GroupId(9), Term(3)));
    }

    #[test]
    fn splitting_a_batch_keeps_every_item_and_makes_progress() {
        for groups in 0..6 {
            let batch = heartbeat_batch(groups);
            let len = batch.len();
            let (a, b) = batch.clone().split();
            assert_eq!(a.len() + b.len(), len);
            if len >= 2 {
                assert!(!a.is_empty() && !b.is_empty(), "{groups} groups");
            }
        }
    }

    /// One item of each of two kinds: each half gets one, whichever the kinds.
    #[test]
    fn splitting_two_items_of_different_kinds_puts_one_in_each_half() {
        use crate::transport::api::{TermAnswer, TermProbe};
        let one_of = |kind: usize| {
            let mut b = Batch::default();
            match kind {
                0 => {
                    let mut messages = heartbeat_batch(1).raft_messages(NodeId(1), NodeId(2));
                    messages.truncate(1);
                    b.messages = messages.into_iter().map(|(m, _)| m).collect();
                }
                1 => b.forwards = vec![ForwardRequest {
                    request_id: 1,
                    group: GroupId(1),
                    op: crate::shard::api::ShardOp::Members,
                    endorsed_term: None,
                }],
                2 => b.heartbeats = heartbeat_batch(1).heartbeats,
                3 => b.heartbeat_responses = heartbeat_batch(1).heartbeat_responses,
                4 => b.forward_replies =
                    vec![ForwardReply { request_id: 1, result: Ok(crate::kv::Reply::Ok) }],
                5 => b.term_probes = vec![TermProbe { probe_id: 1, groups: vec![GroupId(1)] }],
                6 => b.term_answers = vec![TermAnswer { probe_id: 1, terms: vec![] }],
                _ => b.publications = vec![crate::transport::api::Publication {
                    shard: false,
                    channel: "c".into(),
                    message: "m".into(),
                }],
            };
            b
        };
        for x in 0..8 {
            for y in 0..8 {
                let (mut batch, other) = (one_of(x), one_of(y));
                assert_eq!((batch.len(), other.len()), (1, 1));
                if x == y {
                    continue;
                }
                let b = other;
                batch.messages.extend(b.messages);
                batch.forwards.extend(b.forwards);
                batch.heartbeats.extend(b.heartbeats);
                batch.heartbeat_responses.extend(b.heartbeat_responses);
                batch.forward_replies.extend(b.forward_replies);
                batch.term_probes.extend(b.term_probes);
                batch.term_answers.extend(b.term_answers);
                batch.publications.extend(b.publications);
                let (lower, upper) = batch.split();
                assert_eq!((lower.len(), upper.len()), (1, 1), "kinds {x} and {y}");
            }
        }
    }

    #[test]
    fn a_length_beyond_the_bound_is_refused_before_reading_the_body() {
        let (frames, error) = decode_stream(&[0xff, 0xff, 0xff, 0xff], 1024);
        assert!(frames.is_empty());
        assert!(matches!(
            error,
            Some(WireError::TooLarge {
                frame_bytes: 4294967295,
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(&bytes);
            let _ = decode_stream(&bytes, 1 << 16);
        }

        #[test]
        fn arbitrary_bodies_behind_a_valid_prefix_never_panic(body in vec(any::<u8>(), 0..512)) {
            let mut framed = (body.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&body);
            let (frames, error) = decode_stream(&framed, 1 << 16);
            prop_assert!(frames.len() + usize::from(error.is_some()) == 1);
        }

        #[test]
        fn corrupting_a_valid_frame_never_panics(at in 0usize..4096, byte in any::<u8>()) {
            let mut encoded = encode_frame(&Frame::Batch(heartbeat_batch(8)), 1 << 16).unwrap();
            let at = at % encoded.len();
            encoded[at] = byte;
            let _ = decode_stream(&encoded, 1 << 16);
            let _ = decode_stream(&encoded[..at], 1 << 16);
        }

        #[test]
        fn the_async_reader_never_panics(bytes in vec(any::<u8>(), 0..256)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mut reader = &bytes[..];
                for _ in 0..bytes.len() + 1 {
                    match read_frame(&mut reader, 1 << 16).await {
                        Ok(Some(_)) => continue,
                        Ok(None) | Err(_) => break,
                    }
                }
            });
        }
    }
}
