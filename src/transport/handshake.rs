//! The peer handshake: both ends prove they hold the cluster's shared secret by
//! challenge-response, so the secret never crosses the wire, and both learn the other's
//! node id and wire version. Owns the proofs and the two sides' exchanges; it must never
//! send the secret, compare proofs in variable time, or trust a frame before checking it.
//!
//! Dialer → `Hello{version, node, nonce_d}`; acceptor → `Challenge{version, node, nonce_a,
//! proof_a}`; dialer → `Proof{proof_d}`; acceptor → `Welcome`. A proof is
//! `HMAC-SHA256(secret, role || nonce || dialer id || acceptor id)`; the role tags keep one
//! side's answers from being replayed as the other's.

use std::collections::BTreeSet;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::raft::types::NodeId;
use crate::transport::wire::{
    read_frame, write_frame, Frame, WireError, HANDSHAKE_FRAME_BYTES_MAX, NONCE_BYTES,
    PROTOCOL_VERSION,
};

const DIALER_ROLE: &[u8] = b"shardkv peer dialer v1";
const ACCEPTOR_ROLE: &[u8] = b"shardkv peer acceptor v1";

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
    #[error("{0}")]
    Wire(#[from] WireError),
}

fn frame_kind(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "Hello",
        Frame::Challenge { .. } => "Challenge",
        Frame::Proof { .. } => "Proof",
        Frame::Welcome => "Welcome",
        Frame::Batch(_) => "Batch",
    }
}

fn new_nonce() -> Result<Vec<u8>, HandshakeError> {
    let mut nonce = vec![0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|e| HandshakeError::Random(e.to_string()))?;
    Ok(nonce)
}

fn new_mac(
    secret: &[u8],
    role: &[u8],
    nonce: &[u8],
    dialer: NodeId,
    acceptor: NodeId,
) -> Hmac<Sha256> {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC-SHA256 accepts keys of any length"));
    mac.update(role);
    mac.update(nonce);
    mac.update(&dialer.get().to_be_bytes());
    mac.update(&acceptor.get().to_be_bytes());
    mac
}

/// The proof of one side: `HMAC-SHA256(secret, role || nonce || dialer || acceptor)`.
pub fn proof(
    secret: &[u8],
    dialer_side: bool,
    nonce: &[u8],
    dialer: NodeId,
    acceptor: NodeId,
) -> Vec<u8> {
    let role = if dialer_side {
        DIALER_ROLE
    } else {
        ACCEPTOR_ROLE
    };
    new_mac(secret, role, nonce, dialer, acceptor)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// Checks a proof in constant time.
fn verify(
    secret: &[u8],
    dialer_side: bool,
    nonce: &[u8],
    ids: (NodeId, NodeId),
    tag: &[u8],
) -> Result<(), HandshakeError> {
    let role = if dialer_side {
        DIALER_ROLE
    } else {
        ACCEPTOR_ROLE
    };
    new_mac(secret, role, nonce, ids.0, ids.1)
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

/// The dialer's side: proves the secret to `expected` and checks its proof in turn.
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: NodeId,
    expected: NodeId,
    secret: &[u8],
) -> Result<(), HandshakeError> {
    let nonce_d = new_nonce()?;
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        node: me,
        nonce: nonce_d.clone(),
    };
    write_frame(stream, &hello, HANDSHAKE_FRAME_BYTES_MAX).await?;
    let (version, node, nonce_a, proof_a) = match read_handshake_frame(stream).await? {
        Frame::Challenge {
            version,
            node,
            nonce,
            proof,
        } => (version, node, nonce, proof),
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
    // Answer before checking the acceptor's proof, so that an acceptor holding the right
    // secret learns (and logs) that this dialer holds a wrong one.
    let answer = Frame::Proof {
        proof: proof(secret, true, &nonce_a, me, node),
    };
    write_frame(stream, &answer, HANDSHAKE_FRAME_BYTES_MAX).await?;
    verify(secret, false, &nonce_d, (me, node), &proof_a)?;
    match read_handshake_frame(stream).await? {
        Frame::Welcome => Ok(()),
        other => Err(HandshakeError::UnexpectedFrame(frame_kind(&other))),
    }
}

/// The acceptor's side: learns who dials, refuses strangers, versions and wrong secrets.
/// Returns the dialer's node id; `claimed` learns the id the dialer claims as soon as it
/// is read, so a refusal can be counted against it.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: NodeId,
    peers: &BTreeSet<NodeId>,
    secret: &[u8],
    claimed: &mut Option<NodeId>,
) -> Result<NodeId, HandshakeError> {
    let (version, node, nonce_d) = match read_handshake_frame(stream).await? {
        Frame::Hello {
            version,
            node,
            nonce,
        } => (version, node, nonce),
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
    let nonce_a = new_nonce()?;
    let challenge = Frame::Challenge {
        version: PROTOCOL_VERSION,
        node: me,
        nonce: nonce_a.clone(),
        proof: proof(secret, false, &nonce_d, node, me),
    };
    write_frame(stream, &challenge, HANDSHAKE_FRAME_BYTES_MAX).await?;
    let proof_d = match read_handshake_frame(stream).await? {
        Frame::Proof { proof } => proof,
        other => return Err(HandshakeError::UnexpectedFrame(frame_kind(&other))),
    };
    verify(secret, true, &nonce_a, (node, me), &proof_d)?;
    write_frame(stream, &Frame::Welcome, HANDSHAKE_FRAME_BYTES_MAX).await?;
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"the cluster's shared secret";

    async fn run(
        dialer: NodeId,
        dialer_secret: &'static [u8],
        expected: NodeId,
    ) -> (
        Result<(), HandshakeError>,
        Result<NodeId, HandshakeError>,
        Option<NodeId>,
    ) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let peers: BTreeSet<NodeId> = [NodeId(2), NodeId(3)].into_iter().collect();
        let dial = async move {
            let r = dial(&mut a, dialer, expected, dialer_secret).await;
            drop(a);
            r
        };
        let accept = async move {
            let mut claimed = None;
            let r = accept(&mut b, NodeId(1), &peers, SECRET, &mut claimed).await;
            drop(b);
            (r, claimed)
        };
        let (d, (a, claimed)) = tokio::join!(dial, accept);
        (d, a, claimed)
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
        };
        write_frame(&mut a, &hello, HANDSHAKE_FRAME_BYTES_MAX)
            .await
            .unwrap();
        let peers: BTreeSet<NodeId> = [NodeId(2)].into_iter().collect();
        let r = accept(&mut b, NodeId(1), &peers, SECRET, &mut None).await;
        assert!(
            matches!(r, Err(HandshakeError::Version { got: 99 })),
            "{r:?}"
        );
    }

    #[test]
    fn proofs_differ_by_role_and_never_contain_the_secret() {
        let nonce = [7u8; NONCE_BYTES];
        let d = proof(SECRET, true, &nonce, NodeId(1), NodeId(2));
        let a = proof(SECRET, false, &nonce, NodeId(1), NodeId(2));
        assert_ne!(d, a);
        assert_eq!(d.len(), 32);
        assert!(!d
            .windows(SECRET.len().min(32))
            .any(|w| w == &SECRET[..w.len()]));
    }
}
