//! Leader placement at a cluster's first start. A layout lists each group's replicas; the
//! node listed first is where the group's leader belongs (`Layout::even` and
//! `shards/local-3x8.toml` rotate the lists, so each node comes first for its share of the
//! groups). Elections alone put leaders wherever timers first fire: on a fresh three-node
//! cluster one node often leads most groups and another none, and every write to those
//! groups costs the loaded node and a forwarding hop.
//!
//! So a node that bootstraps a layout group it is listed first for asks the group's
//! leader, through the node client, to hand it over (`ShardOp::TransferLeader`), until it
//! leads, another node leads in a term after the one a transfer was granted in (`look`: it
//! never takes back what an operator or the workload follower moved), or
//! `timeouts.leader_placement_ms` has passed since it started. Only at the first
//! start: a restarted node's groups have a history, and `shardkv admin rebalance` is the
//! operator's tool to spread leaders again after failures.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::kv::Reply;
use crate::node::client::NodeClient;
use crate::raft::types::{GroupId, NodeId, Term};
use crate::router::table::GroupRoute;
use crate::shard::api::ShardOp;

/// The longest placement window, whatever `timeouts.leader_placement_ms` asks.
const LEADER_PLACEMENT_MAX: Duration = Duration::from_secs(24 * 3600);

/// How often a placement task looks whether its transfer took, while it waits.
const PLACEMENT_POLL: Duration = Duration::from_millis(10);

/// Takes the leadership of `groups` for `me`, each on its own task, for at most `within`.
/// `retry`: how long to wait for a transfer to show before asking again, looking every
/// `PLACEMENT_POLL` meanwhile (a transfer ends within an election time-out, or is given up
/// by the leader).
pub(crate) async fn take_leaderships(
    client: NodeClient,
    me: NodeId,
    groups: Vec<GroupId>,
    within: Duration,
    retry: Duration,
) {
    let deadline = Instant::now() + within.min(LEADER_PLACEMENT_MAX);
    let mut tasks = JoinSet::new();
    for group in groups {
        tasks.spawn(take_leadership(client.clone(), me, group, deadline, retry));
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(error) = done {
            warn!(%error, "a leader placement task failed");
        }
    }
}

async fn take_leadership(
    client: NodeClient,
    me: NodeId,
    group: GroupId,
    deadline: Instant,
    retry: Duration,
) {
    // The term of the leader that last granted this task a transfer.
    let mut granted: Option<Term> = None;
    loop {
        match client.table().with_group(group, |route| look(route, me, granted)) {
            Some(Look::Waiting) => {}
            Some(Look::Leading) => {
                info!(group = group.get(), "leading the group, as the layout places it");
                return;
            }
            Some(Look::MovedOn(leader)) => {
                info!(
                    group = group.get(),
                    leader = leader.get(),
                    "another node leads in a term after the transfer this node was granted \
                     (an operator's move, the workload follower, or an election); leader \
                     placement ends rather than take the group back"
                );
                return;
            }
            // Moved off this node meanwhile (a replica move): the layout is history.
            None | Some(Look::NotAReplica) => {
                info!(group = group.get(), "no longer a replica here; leader placement ends");
                return;
            }
        }
        if Instant::now() >= deadline {
            warn!(
                group = group.get(),
                leader = ?client.table().leader(group).map(NodeId::get),
                "the layout places the group's leader here, but it did not move within \
                 timeouts.leader_placement_ms; `shardkv admin rebalance` spreads leaders"
            );
            return;
        }
        let ask = tokio::time::timeout_at(
            deadline,
            client.execute(group, ShardOp::TransferLeader { to: me }),
        );
        match ask.await {
            // The leader answers the term it started the transfer in.
            Ok(Ok(Reply::Int(term))) => {
                let term = Term(u64::try_from(term).unwrap_or(0));
                granted = granted.max(Some(term));
            }
            Ok(Ok(other)) => debug!(group = group.get(), ?other, "leader transfer answered"),
            Ok(Err(error)) => debug!(group = group.get(), %error, "leader transfer refused"),
            Err(_) => continue,
        }
        // Until the transfer shows here, `retry` or the deadline, looking every
        // `PLACEMENT_POLL`; then ask again.
        let now = Instant::now();
        let until = now + retry.min(deadline.saturating_duration_since(now));
        while Instant::now() < until {
            let look = client.table().with_group(group, |route| look(route, me, granted));
            if look != Some(Look::Waiting) {
                break;
            }
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(PLACEMENT_POLL.min(left)).await;
        }
    }
}

/// Where a placement task stands, by the route its table has of the group.
#[derive(Debug, PartialEq, Eq)]
enum Look {
    Leading,
    NotAReplica,
    /// Someone else leads, in a term after the one a transfer was granted in (see `look`).
    MovedOn(NodeId),
    /// Not yet.
    Waiting,
}

/// A transfer to `me` granted by the leader of term T (`granted`, the leader's own answer)
/// makes `me` campaign in term T + 1, and any leader after it leads a term past T. So once
/// another node leads in a term past T, the leadership moved on after the grant: an
/// operator's transfer or replica move, the workload follower, or an election the transfer
/// lost. Whether `me` led between the two or not, taking the group back would undo
/// someone else's choice (tests/moves.rs once lost a replica move to a placement task that
/// had led for 14 ms without seeing it, and then asked again). The table's term may lag
/// the leader's (a stale route only waits longer), and a leader hint of an answer can pair
/// an old leader with a newer term this replica campaigned in: then placement ends early,
/// which errs towards leaving leaders where they are, never towards taking one back.
fn look(route: &GroupRoute, me: NodeId, granted: Option<Term>) -> Look {
    if route.leader == Some(me) {
        return Look::Leading;
    }
    if !route.replicas.contains(&me) {
        return Look::NotAReplica;
    }
    match (route.leader, granted) {
        (Some(leader), Some(granted)) if route.term > granted => Look::MovedOn(leader),
        _ => Look::Waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(leader: Option<u64>, term: u64) -> GroupRoute {
        GroupRoute {
            group: GroupId(1),
            slots: (0, 100),
            replicas: vec![NodeId(1), NodeId(2), NodeId(3)],
            leader: leader.map(NodeId),
            term: Term(term),
        }
    }

    #[test]
    fn placement_ends_once_another_node_leads_after_the_transfer_it_was_granted() {
        let me = NodeId(1);
        let granted = Some(Term(3));
        // Before any grant, whoever leads, at whatever term: ask.
        assert_eq!(look(&route(Some(2), 9), me, None), Look::Waiting);
        assert_eq!(look(&route(None, 0), me, None), Look::Waiting);
        // Granted in term 3: the old leader still leads (the transfer may yet take, or was
        // given up), or the table has not yet heard of term 3's leader: wait, ask again.
        assert_eq!(look(&route(Some(2), 3), me, granted), Look::Waiting);
        assert_eq!(look(&route(Some(3), 1), me, granted), Look::Waiting);
        assert_eq!(look(&route(None, 4), me, granted), Look::Waiting);
        // The transfer took: done.
        assert_eq!(look(&route(Some(1), 4), me, granted), Look::Leading);
        // This node led in term 4 unseen, and an operator moved the group on in term 5;
        // or the transfer's election in term 4 was lost to node 3.
        assert_eq!(look(&route(Some(2), 5), me, granted), Look::MovedOn(NodeId(2)));
        assert_eq!(look(&route(Some(3), 4), me, granted), Look::MovedOn(NodeId(3)));
        // Moved off this node.
        let mut gone = route(Some(2), 3);
        gone.replicas.retain(|&n| n != me);
        assert_eq!(look(&gone, me, granted), Look::NotAReplica);
    }
}
