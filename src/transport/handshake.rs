//! The peer handshake: both ends prove they hold the cluster's shared secret by
//! challenge-response, so the secret never crosses the wire, and both learn the other's
//! node id, wire version and database incarnation. Owns the proofs and the two sides'
//! exchanges; it must never send the secret, compare proofs in variable time, trust a frame
//! before checking it, or admit a peer whose incarnation changed (`identity`).
//!
//! Dialer → `Hello{version, node, nonce_d, incarnation_d, frame_bytes_max_d}`; acceptor →
//! `Challenge{version, node, nonce_a, proof_a, incarnation_a, frame_bytes_max_a}`; dialer →
//! `Proof{proof_d}`; acceptor → `Welcome`, or `Refused{reason}` for a dialer that proved the
//! secret but is not admitted (a changed incarnation, a record that is full or could not be
//! written, or another frame bound). A
//! proof is `HMAC-SHA256(secret, role || nonce || dialer id || acceptor id || dialer
//! incarnation || acceptor incarnation)`; the role tags keep one side's answers from being
//! replayed as the other's. Each side checks the other's incarnation only once the other
//! proved the secret.
//!
//! Both ends must have the same `frame_bytes_max` (`[limits]`): a node sizes the log
//! entries it proposes and the answers it forwards by its own frame bound
//! (`LimitConfig::entry_bytes_max`, `NodeClient::fit_frame`), and a peer with a smaller one
//! would drop the frames that carry them, for good: an entry no follower takes stops its
//! group. So a node refuses a peer whose bound differs, and both log why.

use std::collections::BTreeSet;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::raft::types::NodeId;
use crate::transport::identity::{Identity, IdentityError};
use crate::transport::wire::{
    read_frame, write_frame, Frame, WireError, HANDSHAKE_FRAME_BYTES_MAX, NONCE_BYTES,
    PROTOCOL_VERSION,
};

const DIALER_ROLE: &[u8] = b"shardkv peer dialer v2";
const ACCEPTOR_ROLE: &[u8] = b"shardkv peer acceptor v2";
/// Bytes of a refusal's reason sent, at most: it must fit a handshake frame.
const REFUSAL_BYTES_MAX: usize = HANDSHAKE_FRAME_BYTES_MAX as usize / 2;

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("wrong cluster secret")]
    WrongSecret,
    #[error("protocol version {got} (this node speaks {PROTOCOL_VERSION})")]
    Version { got: u32 },
    #[error("node {0} is not a peer of this cluster")]
    UnknownNode(NodeId),
    #[error("expected node {expected}, the peer says it is node {got}")]
    UnexpectedNode { expected: NodeId, got: NodeId },
    #[error("unexpected {0} frame during the handshake")]
    UnexpectedFrame(&'static str),
    #[error("nonce of {0} bytes")]
    BadNonce(usize),
    #[error("no handshake within {0:?}")]
    Timeout(std::time::Duration),
    #[error("no random nonce: {0}")]
    Random(String),
    /// This side refuses the peer (its incarnation changed, or the record failed).
    #[error("{0}")]
    Identity(#[from] IdentityError),
    /// The acceptor refused this dialer, for the reason it gives.
    #[error("refused by node {node}: {reason}")]
    RefusedByPeer { node: NodeId, reason: String },
    /// The peer's `frame_bytes_max` is not this node's.
    #[error(
        "node {peer} has limits.frame_bytes_max = {theirs} and node {me} has {ours}: every \
         node of a cluster needs the same, or frames one sends are too large for the other"
    )]
    FrameBound { me: NodeId, peer: NodeId, theirs: u32, ours: u32 },
    #[error("{0}")]
    Wire(#[from] WireError),
}

fn same_frame_bound(
    me: NodeId,
    peer: NodeId,
    theirs: u32,
    ours: u32,
) -> Result<(), HandshakeError> {
    if theirs == ours {
        Ok(())
    } else {
        Err(HandshakeError::FrameBound { me, peer, theirs, ours })
    }
}

fn frame_kind(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "Hello",
        Frame::Challenge { .. } => "Challenge",
        Frame::Proof { .. } => "Proof",
        Frame::Welcome => "Welcome",
        Frame::Refused { .. } => "Refused",
        Frame::Batch(_) => "Batch",
    }
}

fn new_nonce() -> Result<Vec<u8>, HandshakeError> {
    let mut nonce = vec![0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| HandshakeError::Random(e.to_string()))?;
    Ok(nonce)
}

/// The two ends of a connection: node ids and incarnations, dialer first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ends {
    pub dialer: (NodeId, u64),
    pub acceptor: (NodeId, u64),
}

fn new_mac(secret: &[u8], role: &[u8], nonce: &[u8], ends: Ends) -> Hmac<Sha256> {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC-SHA256 accepts keys of any length"));
    mac.update(role);
    mac.update(nonce);
    mac.update(&ends.dialer.0.get().to_be_bytes());
    mac.update(&ends.acceptor.0.get().to_be_bytes());
    mac.update(&ends.dialer.1.to_be_bytes());
    mac.update(&ends.acceptor.1.to_be_bytes());
    mac
}

/// The proof of one side: `HMAC-SHA256(secret, role || nonce || ids || incarnations)`.
pub fn proof(secret: &[u8], dialer_side: bool, nonce: &[u8], ends: Ends) -> Vec<u8> {
    let role = if dialer_side {
        DIALER_ROLE
    } else {
        ACCEPTOR_ROLE
    };
    new_mac(secret, role, nonce, ends)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// Checks a proof in constant time.
fn verify(
    secret: &[u8],
    dialer_side: bool,
    nonce: &[u8],
    ends: Ends,
    tag: &[u8],
) -> Result<(), HandshakeError> {
    let role = if dialer_side {
        DIALER_ROLE
    } else {
        ACCEPTOR_ROLE
    };
    new_mac(secret, role, nonce, ends)
        .verify_slice(tag)
        .map_err(|_| HandshakeError::WrongSecret)
}

async fn read_handshake_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Frame, HandshakeError> {
    match read_frame(reader, HANDSHAKE_FRAME_BYTES_MAX).await? {
        Some((frame, _)) => Ok(frame),
        None => Err(WireError::Closed.into()),
    }
}

/// The dialer's side: proves the secret to `expected` and checks its proof in turn, then
/// its incarnation against `identity` and its frame bound against `frame_bytes_max` (the
/// acceptor checks this side's likewise).
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    identity: &Arc<Identity>,
    me: NodeId,
    expected: NodeId,
    secret: &[u8],
    frame_bytes_max: u32,
) -> Result<(), HandshakeError> {
    let nonce_d = new_nonce()?;
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        node: me,
        nonce: nonce_d.clone(),
        incarnation: identity.mine(),
        frame_bytes_max,
    };
    write_frame(stream, &hello, HANDSHAKE_FRAME_BYTES_MAX).await?;
    let (version, node, nonce_a, proof_a, incarnation_a, frame_bytes_max_a) =
        match read_handshake_frame(stream).await? {
            Frame::Challenge { version, node, nonce, proof, incarnation, frame_bytes_max } => {
                (version, node, nonce, proof, incarnation, frame_bytes_max)
            }
            other => return Err(HandshakeError::UnexpectedFrame(frame_kind(&other))),
        };
    if version != PROTOCOL_VERSION {
        return Err(HandshakeError::Version { got: version });
    }
    if node != expected {
        return Err(HandshakeError::UnexpectedNode {
            expected,
            got: node,
        });
    }
    if nonce_a.len() != NONCE_BYTES {
        return Err(HandshakeError::BadNonce(nonce_a.len()));
    }
    let ends = Ends { dialer: (me, identity.mine()), acceptor: (node, incarnation_a) };
    // Answer before checking the acceptor's proof, so that an acceptor holding the right
    // secret learns (and logs) that this dialer holds a wrong one.
    let answer = Frame::Proof {
        proof: proof(secret, true, &nonce_a, ends),
    };
    write_frame(stream, &answer, HANDSHAKE_FRAME_BYTES_MAX).await?;
    verify(secret, false, &nonce_d, ends, &proof_a)?;
    identity.admit_async(node, incarnation_a).await?;
    same_frame_bound(me, node, frame_bytes_max_a, frame_bytes_max)?;
    match read_handshake_frame(stream).await? {
        Frame::Welcome => Ok(()),
        Frame::Refused { reason } => Err(HandshakeError::RefusedByPeer { node, reason }),
        other => Err(HandshakeError::UnexpectedFrame(frame_kind(&other))),
    }
}

/// The acceptor's side: learns who dials, refuses strangers, versions, wrong secrets,
/// changed incarnations and frame bounds other than `frame_bytes_max` (telling the dialer
/// why). Returns the dialer's node id; `claimed`
/// learns the id the dialer claims as soon as it is read, so a refusal can be counted
/// against it.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    identity: &Arc<Identity>,
    me: NodeId,
    peers: &BTreeSet<NodeId>,
    secret: &[u8],
    frame_bytes_max: u32,
    claimed: &mut Option<NodeId>,
) -> Result<NodeId, HandshakeError> {
    let (version, node, nonce_d, incarnation_d, frame_bytes_max_d) =
        match read_handshake_frame(stream).await? {
            Frame::Hello { version, node, nonce, incarnation, frame_bytes_max } => {
                (version, node, nonce, incarnation, frame_bytes_max)
            }
            other => return Err(HandshakeError::UnexpectedFrame(frame_kind(&other))),
        };
    *claimed = Some(node);
    if version != PROTOCOL_VERSION {
        return Err(HandshakeError::Version { got: version });
    }
    if node == me || !peers.contains(&node) {
        return Err(HandshakeError::UnknownNode(node));
    }
    if nonce_d.len() != NONCE_BYTES {
        return Err(HandshakeError::BadNonce(nonce_d.len()));
    }
    let ends = Ends { dialer: (node, incarnation_d), acceptor: (me, identity.mine()) };
    let nonce_a = new_nonce()?;
    let challenge = Frame::Challenge {
        version: PROTOCOL_VERSION,
        node: me,
        nonce: nonce_a.clone(),
        proof: proof(secret, false, &nonce_d, ends),
        incarnation: identity.mine(),
        frame_bytes_max,
    };
    write_frame(stream, &challenge, HANDSHAKE_FRAME_BYTES_MAX).await?;
    let proof_d = match read_handshake_frame(stream).await? {
        Frame::Proof { proof } => proof,
        other => return Err(HandshakeError::UnexpectedFrame(frame_kind(&other))),
    };
    verify(secret, true, &nonce_a, ends, &proof_d)?;
    let admitted = match identity.admit_async(node, incarnation_d).await {
        Ok(()) => same_frame_bound(me, node, frame_bytes_max_d, frame_bytes_max),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = admitted {
        let mut reason = e.to_string();
        // Within a handshake frame, whatever the record's path.
        while reason.len() > REFUSAL_BYTES_MAX {
            reason.pop();
        }
        let refused = Frame::Refused { reason };
        // The refusal stands whether or not the dialer hears why.
        let _ = write_frame(stream, &refused, HANDSHAKE_FRAME_BYTES_MAX).await;
        return Err(e);
    }
    write_frame(stream, &Frame::Welcome, HANDSHAKE_FRAME_BYTES_MAX).await?;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"the cluster's shared secret";
    const FRAME: u32 = 64 << 20;

    fn ident(me: u64, incarnation: u64) -> Arc<Identity> {
        Arc::new(Identity::in_memory(NodeId(me), incarnation))
    }

    type Outcome = (Result<(), HandshakeError>, Result<NodeId, HandshakeError>, Option<NodeId>);

    /// Node `dialer` dials node 1; `ids` are the dialer's and the acceptor's identities.
    async fn run_with(
        dialer: NodeId,
        dialer_secret: &'static [u8],
        expected: NodeId,
        ids: (&Arc<Identity>, &Arc<Identity>),
    ) -> Outcome {
        run_framed(dialer, dialer_secret, expected, ids, (FRAME, FRAME)).await
    }

    /// `run_with`, the dialer's and the acceptor's frame bounds given.
    async fn run_framed(
        dialer: NodeId,
        dialer_secret: &'static [u8],
        expected: NodeId,
        ids: (&Arc<Identity>, &Arc<Identity>),
        frames: (u32, u32),
    ) -> Outcome {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let peers: BTreeSet<NodeId> = [NodeId(2), NodeId(3)].into_iter().collect();
        let dial = async move {
            let r = dial(&mut a, ids.0, dialer, expected, dialer_secret, frames.0).await;
            drop(a);
            r
        };
        let accept = async move {
            let mut claimed = None;
            let r = accept(&mut b, ids.1, NodeId(1), &peers, SECRET, frames.1, &mut claimed)
                .await;
            drop(b);
            (r, claimed)
        };
        let (d, (a, claimed)) = tokio::join!(dial, accept);
        (d, a, claimed)
    }

    async fn run(dialer: NodeId, dialer_secret: &'static [u8], expected: NodeId) -> Outcome {
        let (d, a) = (ident(2, 20), ident(1, 10));
        run_with(dialer, dialer_secret, expected, (&d, &a)).await
    }

    #[tokio::test]
    async fn peers_with_the_same_secret_agree() {
        let (d, a, _) = run(NodeId(2), SECRET, NodeId(1)).await;
        assert!(d.is_ok(), "{d:?}");
        assert_eq!(a.unwrap(), NodeId(2));
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_on_both_sides() {
        let (d, a, claimed) = run(NodeId(2), b"another secret", NodeId(1)).await;
        assert!(matches!(d, Err(HandshakeError::WrongSecret)), "{d:?}");
        assert!(matches!(a, Err(HandshakeError::WrongSecret)), "{a:?}");
        assert_eq!(claimed, Some(NodeId(2)));
    }

    #[tokio::test]
    async fn a_wrong_secret_records_no_incarnation() {
        let (dialer, acceptor) = (ident(2, 20), ident(1, 10));
        let _ = run_with(NodeId(2), b"another secret", NodeId(1), (&dialer, &acceptor)).await;
        assert_eq!(acceptor.known(NodeId(2)), None);
        assert_eq!(dialer.known(NodeId(1)), None);
    }

    #[tokio::test]
    async fn both_sides_record_each_other_and_refuse_a_changed_incarnation() {
        let (dialer, acceptor) = (ident(2, 20), ident(1, 10));
        let (d, a, _) = run_with(NodeId(2), SECRET, NodeId(1), (&dialer, &acceptor)).await;
        assert!(d.is_ok() && a.is_ok(), "{d:?} {a:?}");
        assert_eq!(acceptor.known(NodeId(2)), Some(20));
        assert_eq!(dialer.known(NodeId(1)), Some(10));

        // Node 2 comes back with a new data directory: node 1 refuses it and says why.
        let wiped = ident(2, 21);
        let (d, a, _) = run_with(NodeId(2), SECRET, NodeId(1), (&wiped, &acceptor)).await;
        assert!(
            matches!(&a, Err(HandshakeError::Identity(IdentityError::Changed {
                node: NodeId(2), by: NodeId(1), known: 20, got: 21 }))),
            "{a:?}"
        );
        match d {
            Err(HandshakeError::RefusedByPeer { node: NodeId(1), reason }) => {
                assert!(reason.contains("node 2 lost its state"), "{reason}")
            }
            other => panic!("the wiped dialer must hear the refusal: {other:?}"),
        }
        assert_eq!(acceptor.known(NodeId(2)), Some(20), "the record is kept");

        // Node 1 dialling the wiped node 2: here node 2 accepts, node 1 (the dialer) refuses.
        let wiped_acceptor = ident(2, 21);
        let node1 = ident(1, 10);
        node1.admit(NodeId(2), 20).unwrap();
        let (mut x, mut y) = tokio::io::duplex(4096);
        let peers: BTreeSet<NodeId> = [NodeId(1)].into_iter().collect();
        let (d, _) = tokio::join!(
            async move {
                let r = dial(&mut x, &node1, NodeId(1), NodeId(2), SECRET, FRAME).await;
                drop(x);
                r
            },
            async move {
                let r =
                    accept(&mut y, &wiped_acceptor, NodeId(2), &peers, SECRET, FRAME, &mut None)
                        .await;
                drop(y);
                r
            }
        );
        assert!(
            matches!(&d, Err(HandshakeError::Identity(IdentityError::Changed { .. }))),
            "{d:?}"
        );
    }

    #[tokio::test]
    async fn peers_with_other_frame_bounds_refuse_each_other_and_say_why() {
        for frames in [(FRAME, FRAME * 2), (FRAME * 2, FRAME)] {
            let (dialer, acceptor) = (ident(2, 20), ident(1, 10));
            let (d, a, _) =
                run_framed(NodeId(2), SECRET, NodeId(1), (&dialer, &acceptor), frames).await;
            // Each side's error names the other as the peer, with both bounds.
            fn bound<T>(e: &Result<T, HandshakeError>) -> Option<(u64, u64, u32, u32)> {
                match e {
                    Err(HandshakeError::FrameBound { me, peer, theirs, ours }) => {
                        Some((me.get(), peer.get(), *theirs, *ours))
                    }
                    _ => None,
                }
            }
            assert_eq!(bound(&a), Some((1, 2, frames.0, frames.1)), "{a:?}");
            assert_eq!(bound(&d), Some((2, 1, frames.1, frames.0)), "{d:?}");
            let (theirs, ours) = frames;
            let (me, peer) = (NodeId(1), NodeId(2));
            let said = HandshakeError::FrameBound { me, peer, theirs, ours };
            let want = format!("node 2 has limits.frame_bytes_max = {theirs} and node 1 has");
            let want = format!("{want} {ours}: every node of a cluster needs the same");
            assert!(said.to_string().starts_with(&want), "{said}");
        }
    }

    #[tokio::test]
    async fn a_dialer_hears_why_the_acceptor_refused_its_frame_bound() {
        // An acceptor that checks the bound, against a dialer that sent its own but does
        // not check the acceptor's (a Challenge it would accept): the Refused reaches it.
        let (mut a, mut b) = tokio::io::duplex(4096);
        let peers: BTreeSet<NodeId> = [NodeId(2)].into_iter().collect();
        let acceptor = ident(1, 10);
        let accepting = async move {
            let r = accept(&mut b, &acceptor, NodeId(1), &peers, SECRET, FRAME * 2, &mut None)
                .await;
            drop(b);
            r
        };
        let dialing = async move {
            let dialer = ident(2, 20);
            let hello = Frame::Hello {
                version: PROTOCOL_VERSION,
                node: NodeId(2),
                nonce: vec![1; NONCE_BYTES],
                incarnation: dialer.mine(),
                frame_bytes_max: FRAME,
            };
            write_frame(&mut a, &hello, HANDSHAKE_FRAME_BYTES_MAX).await.unwrap();
            let Frame::Challenge { nonce, incarnation, .. } =
                read_handshake_frame(&mut a).await.unwrap()
            else {
                panic!("a challenge first")
            };
            let ends = Ends { dialer: (NodeId(2), 20), acceptor: (NodeId(1), incarnation) };
            let answer = Frame::Proof { proof: proof(SECRET, true, &nonce, ends) };
            write_frame(&mut a, &answer, HANDSHAKE_FRAME_BYTES_MAX).await.unwrap();
            read_handshake_frame(&mut a).await
        };
        let (accepted, heard) = tokio::join!(accepting, dialing);
        assert!(matches!(accepted, Err(HandshakeError::FrameBound { .. })), "{accepted:?}");
        match heard {
            Ok(Frame::Refused { reason }) => {
                assert!(reason.contains("limits.frame_bytes_max"), "{reason}")
            }
            other => panic!("the dialer must hear the refusal: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_node_that_is_not_a_peer_is_refused() {
        let (d, a, _) = run(NodeId(9), SECRET, NodeId(1)).await;
        assert!(
            matches!(a, Err(HandshakeError::UnknownNode(NodeId(9)))),
            "{a:?}"
        );
        assert!(d.is_err());
    }

    #[tokio::test]
    async fn the_dialer_refuses_an_acceptor_with_another_node_id() {
        let (d, _, _) = run(NodeId(2), SECRET, NodeId(5)).await;
        assert!(
            matches!(d, Err(HandshakeError::UnexpectedNode { .. })),
            "{d:?}"
        );
    }

    #[tokio::test]
    async fn another_protocol_version_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let hello = Frame::Hello {
            version: 99,
            node: NodeId(2),
            nonce: vec![0; NONCE_BYTES],
            incarnation: 1,
            frame_bytes_max: FRAME,
        };
        write_frame(&mut a, &hello, HANDSHAKE_FRAME_BYTES_MAX)
            .await
            .unwrap();
        let peers: BTreeSet<NodeId> = [NodeId(2)].into_iter().collect();
        let id = ident(1, 10);
        let r = accept(&mut b, &id, NodeId(1), &peers, SECRET, FRAME, &mut None).await;
        assert!(
            matches!(r, Err(HandshakeError::Version { got: 99 })),
            "{r:?}"
        );
    }

    /// A node of wire version 4 sent a `Hello` without an incarnation: it is refused for
    /// its version, which says what to do, not as an undecodable frame.
    #[tokio::test]
    async fn a_hello_of_version_4_is_refused_for_its_version() {
        #[derive(serde::Serialize)]
        enum OldFrame {
            Hello { version: u32, node: NodeId, nonce: Vec<u8> },
        }
        let old = OldFrame::Hello { version: 4, node: NodeId(2), nonce: vec![0; NONCE_BYTES] };
        let body = rmp_serde::to_vec(&old).unwrap();
        let mut bytes = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        bytes.extend(body);
        let (mut a, mut b) = tokio::io::duplex(4096);
        tokio::io::AsyncWriteExt::write_all(&mut a, &bytes).await.unwrap();
        let peers: BTreeSet<NodeId> = [NodeId(2)].into_iter().collect();
        let r = accept(&mut b, &ident(1, 10), NodeId(1), &peers, SECRET, FRAME, &mut None).await;
        assert!(matches!(r, Err(HandshakeError::Version { got: 4 })), "{r:?}");
    }

    #[test]
    fn proofs_differ_by_role_and_incarnation_and_never_contain_the_secret() {
        let nonce = [7u8; NONCE_BYTES];
        let ends = Ends { dialer: (NodeId(1), 5), acceptor: (NodeId(2), 6) };
        let d = proof(SECRET, true, &nonce, ends);
        let a = proof(SECRET, false, &nonce, ends);
        assert_ne!(d, a);
        let moved = Ends { dialer: (NodeId(1), 7), ..ends };
        assert_ne!(d, proof(SECRET, true, &nonce, moved));
        assert_eq!(d.len(), 32);
        assert!(!d
            .windows(SECRET.len().min(32))
            .any(|w| w == &SECRET[..w.len()]));
    }
}
