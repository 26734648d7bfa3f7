//! WAIT: how many replicas hold every write the connection sent, waiting until as many as
//! asked do or the time-out passes. Owns the polling of the groups' leaders; the command's
//! arguments are read in `cmd::wait`, and the connection runs it (`connection.rs`), after
//! its earlier commands answered, and stops it if the client goes.
//!
//! A write is acknowledged once a majority holds it, so WAIT asks more than Redis's: of the
//! replicas beyond each leader, how many hold the log up to the index the leader had
//! committed when first asked (`ShardOp::Members`, answered after a ReadIndex round, so
//! that index covers every write acknowledged before). The groups are those owning the
//! slots the connection wrote to, as the node routes them when WAIT runs (a write that
//! followed a split went to the group that owns its slot now). The answer is the fewest
//! over those groups, each group's count the most seen in any round (a committed entry a
//! replica holds stays there: a leader change or a refused round does not take it away,
//! though a replica removed from the group since still counts); with no write, the fewest
//! replicas beyond a leader of any group, as the node's routing table lists them (Redis
//! counts every connected replica for a client that wrote nothing). A write names one slot
//! of each group it reached (a multi-key write, the slot of its first key there): after a
//! split, the group that took a slot it did not name is not asked.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use super::backend::Backend;
use super::frame::Frame;
use crate::raft::types::GroupId;
use crate::shard::api::{Members, ShardOp};

/// Time between the first two rounds of asking the leaders while WAIT waits; each round
/// after waits twice as long, up to `WAIT_POLL_MS_MAX`.
pub const WAIT_POLL_MS_MIN: u64 = 5;

/// Longest time between two rounds of a waiting WAIT: each round is one ReadIndex round
/// per group, so this bounds what a WAIT that waits long costs the groups.
pub const WAIT_POLL_MS_MAX: u64 = 100;

/// A prepared WAIT.
#[derive(Debug)]
pub struct Wait {
    /// The slots the connection wrote to.
    pub slots: Vec<u16>,
    /// Replicas asked for (Redis's `numreplicas`; zero or less answers after one round).
    pub replicas: i64,
    /// Milliseconds to wait at most; 0 waits until the replicas are there.
    pub timeout_ms: u64,
}

/// One group's progress as WAIT saw it.
#[derive(Clone, Copy, Default)]
struct Seen {
    /// The commit index its leader gave first: the log its replicas must hold.
    target: Option<u64>,
    /// The most replicas beyond the leader seen holding `target`.
    count: i64,
}

/// Answers WAIT: the fewest replicas beyond the leader holding the connection's writes,
/// over its groups, once that reaches `wait.replicas` or the time-out passed.
pub async fn run<B: Backend>(backend: B, wait: Wait) -> Frame {
    let deadline = (wait.timeout_ms > 0)
        .then(|| Instant::now().checked_add(Duration::from_millis(wait.timeout_ms)))
        .flatten();
    let groups: BTreeSet<GroupId> =
        wait.slots.iter().map(|&slot| backend.group_of_slot(slot)).collect();
    let groups: Vec<GroupId> = groups.into_iter().collect();
    let mut seen = vec![Seen::default(); groups.len()];
    let mut pause = Duration::from_millis(WAIT_POLL_MS_MIN);
    loop {
        if groups.is_empty() {
            // No write: the replicas as the routing table lists them, which a membership
            // change or a newer table may change while it waits.
            let view = backend.cluster_view();
            let beyond = view.groups.iter().map(|g| g.replicas.len().saturating_sub(1));
            seen = vec![Seen { target: None, count: beyond.min().unwrap_or(0) as i64 }];
        }
        let asks = groups.iter().map(|group| backend.execute(*group, ShardOp::Members));
        let round = join_all(asks);
        // A round that outlasts the time-out (a leader being elected) leaves the counts
        // as the rounds before left them.
        let answers = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, round).await.ok(),
            None => Some(round.await),
        };
        for (answer, seen) in answers.iter().flatten().zip(seen.iter_mut()) {
            let Some(members) = answer.as_ref().ok().and_then(Members::from_reply) else {
                continue;
            };
            let target = *seen.target.get_or_insert(members.commit_index);
            let holding = members.replicas.iter().filter(|(node, _, matched)| {
                *node != members.leader && *matched >= target
            });
            seen.count = seen.count.max(holding.count() as i64);
        }
        let fewest = seen.iter().map(|s| s.count).min().unwrap_or(0);
        let late = deadline.is_some_and(|deadline| Instant::now() >= deadline);
        if fewest >= wait.replicas || late {
            return Frame::Int(fewest);
        }
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline.min(Instant::now() + pause)).await,
            None => tokio::time::sleep(pause).await,
        }
        pause = (pause * 2).min(Duration::from_millis(WAIT_POLL_MS_MAX));
    }
}
