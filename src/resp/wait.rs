//! WAIT: how many replicas hold every write the connection sent, waiting until as many as
//! asked do or the time-out passes. Owns the polling of the groups' leaders; the command's
//! arguments are read in `cmd::wait`, and the connection runs it (`connection.rs`), after
//! its earlier writes answered, and stops it if the client goes.
//!
//! A write is acknowledged once a majority holds it, so WAIT asks more than Redis's: of the
//! replicas beyond each leader, how many hold the log up to the index the leader had
//! committed when first asked (`ShardOp::Members`, answered after a ReadIndex round, so
//! that index covers every write acknowledged before). The answer is the fewest over the
//! groups the connection wrote to; with no write, the fewest replicas beyond a leader of
//! any group, as Redis counts every replica for a client that wrote nothing.

use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use super::backend::Backend;
use super::frame::Frame;
use crate::kv::Reply;
use crate::raft::types::GroupId;
use crate::shard::api::ShardOp;

/// Time between two rounds of asking the leaders while WAIT waits.
pub const WAIT_POLL_MS: u64 = 10;

/// A prepared WAIT.
#[derive(Debug)]
pub struct Wait {
    /// The groups the connection wrote to, each once.
    pub groups: Vec<GroupId>,
    /// Replicas asked for (Redis's `numreplicas`; zero or less answers at once).
    pub replicas: i64,
    /// Milliseconds to wait at most; 0 waits until the replicas are there.
    pub timeout_ms: u64,
}

/// Answers WAIT: the fewest replicas beyond the leader holding the connection's writes,
/// over its groups, once that reaches `wait.replicas` or the time-out passed.
pub async fn run<B: Backend>(backend: B, wait: Wait) -> Frame {
    let deadline = (wait.timeout_ms > 0)
        .then(|| Instant::now().checked_add(Duration::from_millis(wait.timeout_ms)))
        .flatten();
    // The commit index each group's leader gave first: the log the replicas must hold.
    let mut targets: Vec<Option<u64>> = vec![None; wait.groups.len()];
    loop {
        let asks = wait.groups.iter().map(|group| backend.execute(*group, ShardOp::Members));
        let answers = join_all(asks).await;
        let mut fewest = match wait.groups.is_empty() {
            true => {
                let view = backend.cluster_view();
                let beyond = view.groups.iter().map(|g| g.replicas.len().saturating_sub(1));
                beyond.min().unwrap_or(0) as i64
            }
            false => i64::MAX,
        };
        for (answer, target) in answers.iter().zip(targets.iter_mut()) {
            let count = match answer.as_ref().ok().and_then(progress) {
                Some((commit, matched)) => {
                    let target = *target.get_or_insert(commit);
                    matched.iter().filter(|&&m| m >= target).count() as i64
                }
                // No leader now, or one that cannot answer: no replica is known to hold it.
                None => 0,
            };
            fewest = fewest.min(count);
        }
        let late = deadline.is_some_and(|deadline| Instant::now() >= deadline);
        if fewest >= wait.replicas || late {
            return Frame::Int(fewest);
        }
        let pause = Duration::from_millis(WAIT_POLL_MS);
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline.min(Instant::now() + pause)).await,
            None => tokio::time::sleep(pause).await,
        }
    }
}

/// From a `Members` answer: the leader's commit index and the match index of each replica
/// beyond the leader.
fn progress(reply: &Reply) -> Option<(u64, Vec<u64>)> {
    let Reply::Array(fields) = reply else { return None };
    let (Some(Reply::Int(leader)), Some(Reply::Int(commit)), Some(Reply::Array(rows))) =
        (fields.first(), fields.get(1), fields.get(3))
    else {
        return None;
    };
    let mut matched = Vec::with_capacity(rows.len());
    for row in rows {
        let Reply::Array(cols) = row else { return None };
        let (Some(Reply::Int(node)), Some(Reply::Int(index))) = (cols.first(), cols.get(2)) else {
            return None;
        };
        if node != leader {
            matched.push(u64::try_from(*index).ok()?);
        }
    }
    Some((u64::try_from(*commit).ok()?, matched))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::NodeId;
    use crate::shard::api::{MemberKind, Members};

    /// `Members::to_reply` read back: the leader's commit index and its followers' matches,
    /// the leader left out; a reply of another shape is refused.
    #[test]
    fn progress_reads_the_members_answer() {
        let members = Members {
            leader: NodeId(2),
            commit_index: 40,
            joint: false,
            replicas: vec![
                (NodeId(1), MemberKind::Voter, 38),
                (NodeId(2), MemberKind::Voter, 41),
                (NodeId(3), MemberKind::Learner, 40),
            ],
        };
        assert_eq!(progress(&members.to_reply()), Some((40, vec![38, 40])));
        assert_eq!(progress(&Reply::Ok), None);
        assert_eq!(progress(&Reply::Array(vec![Reply::Int(1), Reply::Int(-1)])), None);
    }
}
