//! Leader placement at a cluster's first start. A layout lists each group's replicas; the
//! node listed first is where the group's leader belongs (`Layout::even` and
//! `shards/local-3x8.toml` rotate the lists, so each node comes first for its share of the
//! groups). Elections alone put leaders wherever timers first fire: on a fresh three-node
//! cluster one node often leads most groups and another none, and every write to those
//! groups costs the loaded node and a forwarding hop.
//!
//! So a node that bootstraps a layout group it is listed first for asks the group's
//! leader, through the node client, to hand it over (`ShardOp::TransferLeader`), until it
//! leads or `timeouts.leader_placement_ms` has passed since it started. Only at the first
//! start: a restarted node's groups have a history, and `shardkv admin rebalance` is the
//! operator's tool to spread leaders again after failures.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::node::client::NodeClient;
use crate::raft::types::{GroupId, NodeId};
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
    loop {
        if client.table().leader(group) == Some(me) {
            info!(group = group.get(), "leading the group, as the layout places it");
            return;
        }
        // Moved off this node meanwhile (a replica move): the layout is history.
        let route = client.table().group(group);
        if !route.is_some_and(|route| route.replicas.contains(&me)) {
            info!(group = group.get(), "no longer a replica here; leader placement ends");
            return;
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
        let asked = tokio::time::timeout_at(
            deadline,
            client.execute(group, ShardOp::TransferLeader { to: me }),
        );
        match asked.await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => debug!(group = group.get(), %error, "leader transfer refused"),
            Err(_) => continue,
        }
        // Until the transfer shows here, `retry` or the deadline: a task that slept `retry`
        // whole, having led meanwhile without seeing it, then took the group back from
        // whoever an operator had moved it to (tests/moves.rs once lost a replica move to
        // it that way). This narrows that race to about one look; it does not close it.
        let now = Instant::now();
        let until = now + retry.min(deadline.saturating_duration_since(now));
        while Instant::now() < until && client.table().leader(group) != Some(me) {
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(PLACEMENT_POLL.min(left)).await;
        }
    }
}
