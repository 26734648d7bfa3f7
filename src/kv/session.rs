//! Client sessions: exactly-once apply of retried requests (Raft dissertation §6.3). A
//! session remembers the last applied seq of a client and its reply. Sessions are bounded
//! per group; the least recently used one (by the leader clock of its last request, then
//! by client id, so every replica picks the same) is evicted to admit a new client.
//! Owns the session record and the eviction rule; never executes commands.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::apply::KvRead;
use super::command::Request;
use super::overlay::Overlay;
use super::reply::Reply;

/// Client sessions kept per group before the least recently used one is evicted.
pub const SESSIONS_PER_GROUP_MAX: usize = 4096;
/// Layout of the session record: this byte, then the rmp-serde encoding of `Session`.
pub const SESSION_FORMAT_VERSION: u8 = 1;
/// Bytes reserved for a session record before encoding it: room, with no reallocation,
/// for a record whose reply is short (a status, an integer, a small bulk string).
const SESSION_RECORD_BYTES_HINT: usize = 64;

/// What the group remembers about one client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Seq of the client's last applied request.
    pub last_seq: u64,
    /// Leader clock of that request: the eviction order.
    pub touched_ms: u64,
    /// Its reply, answered again if the same request is retried.
    pub reply: Reply,
}

/// A session record that cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("empty session record")]
    Empty,
    #[error("unknown session format version {0}")]
    UnknownVersion(u8),
    #[error("session record does not decode: {0}")]
    Decode(String),
}

impl Session {
    /// The record: the format byte, then the body encoded right after it, in one buffer
    /// and with no copy (every write of every replica encodes its client's session). The
    /// buffer keeps its spare room, less than the record's own length past the hint.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(SESSION_RECORD_BYTES_HINT);
        out.push(SESSION_FORMAT_VERSION);
        rmp_serde::encode::write(&mut out, self).expect("a Session always serializes");
        Bytes::from(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Session, SessionError> {
        match bytes.split_first() {
            None => Err(SessionError::Empty),
            Some((&SESSION_FORMAT_VERSION, body)) => {
                rmp_serde::from_slice(body).map_err(|e| SessionError::Decode(e.to_string()))
            }
            Some((&version, _)) => Err(SessionError::UnknownVersion(version)),
        }
    }
}

/// The client's session as this batch sees it. A record that does not decode counts as
/// no session: the client starts afresh instead of being stuck forever.
pub(crate) fn find<V: KvRead>(view: &V, overlay: &Overlay, client_id: u64) -> Option<Session> {
    let raw = overlay.over(view).session(client_id)?;
    Session::decode(&raw).ok()
}

/// Record `reply` as the client's last, evicting the least recently used sessions first
/// when a new client would exceed the bound.
pub(crate) fn remember<V: KvRead>(
    view: &V,
    overlay: &mut Overlay,
    req: &Request,
    is_new: bool,
    reply: &Reply,
) {
    if is_new {
        evict_for_new(view, overlay);
    }
    let session = Session { last_seq: req.seq, touched_ms: req.now_ms, reply: reply.clone() };
    overlay.put_session(req.client_id, session.encode());
}

fn evict_for_new<V: KvRead>(view: &V, overlay: &mut Overlay) {
    let all = overlay.over(view).sessions();
    let Some(excess) = (all.len() + 1).checked_sub(overlay.sessions_max()) else {
        return;
    };
    if excess == 0 {
        return;
    }
    // Undecodable records sort first (touched at 0): they are the first to go.
    let mut order: Vec<(u64, u64)> = all
        .iter()
        .map(|(client_id, raw)| {
            let touched_ms = Session::decode(raw).map_or(0, |s| s.touched_ms);
            (touched_ms, *client_id)
        })
        .collect();
    order.sort_unstable();
    for (_, client_id) in order.into_iter().take(excess) {
        overlay.delete_session(client_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_the_format_byte_then_the_body_and_decodes_back() {
        let reply = Reply::Bulk(Bytes::from(vec![7u8; 300]));
        for reply in [Reply::Ok, Reply::Int(-3), reply] {
            let session = Session { last_seq: 41, touched_ms: 1_700_000_000_000, reply };
            let record = session.encode();
            let body = rmp_serde::to_vec(&session).expect("encode");
            assert_eq!(record[0], SESSION_FORMAT_VERSION);
            assert_eq!(&record[1..], &body[..]);
            assert_eq!(Session::decode(&record), Ok(session));
        }
        // The format on disk, spelled out: an array of three (0x93), 41, the clock as a
        // u64 (0xcf), then the reply's variant by name.
        let ok = Session { last_seq: 41, touched_ms: 1_700_000_000_000, reply: Reply::Ok };
        let head = [1, 0x93, 0x29, 0xcf, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00];
        assert_eq!(&ok.encode()[..], &[&head[..], &[0xa2, b'O', b'k']].concat()[..]);
        let int = Session { reply: Reply::Int(-3), ..ok };
        let tail = [0x81, 0xa3, b'I', b'n', b't', 0xfd];
        assert_eq!(&int.encode()[..], &[&head[..], &tail[..]].concat()[..]);
        assert_eq!(Session::decode(&[]), Err(SessionError::Empty));
        assert_eq!(Session::decode(&[9, 0]), Err(SessionError::UnknownVersion(9)));
    }
}
