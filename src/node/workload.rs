//! Leaders follow the workload. A plain client talks to one node, which forwards every
//! request for a group led elsewhere to that group's leader and relays the answer: each
//! such request costs both nodes a forward, an answer and their frames, on top of the work
//! itself. When most of a group's requests come in through one other node (an application
//! configured with one address, a client pool in one zone), the group's leader belongs
//! there: the same idea as CockroachDB's follow-the-workload leases, which move a range's
//! lease toward the locality its requests come from.
//!
//! So every node counts, per group it leads, the requests it served by the node they came
//! in through: its own clients, or the node that forwarded them (`Workload::served`). Every
//! `timeouts.follow_workload_ms` it looks at each group it led for the whole window and
//! asks its own replica (`ShardOp::TransferLeader`) to hand the leadership to the node,
//! among those holding a replica of the group, that brought the most, if that node brought
//! at least `FOLLOW_REQUESTS_PER_SEC_MIN` requests a second and more than `FOLLOW_RATIO`
//! times what came in here (`choose`, `decide`). A request is one operation on
//! the group, as the request path sends it: a client's pipeline may bring many commands
//! in one, which cost one forward. The margin keeps a leader from moving back and
//! forth between two nodes whose clients ask alike: once it moved, the node it left would
//! need more than `FOLLOW_RATIO` times the new leader's own traffic to take it back.
//!
//! Reads a node serves as a follower (`[reads] follower`) are not counted: they cost the
//! leader one read index per batch, not a forward per request. The metadata group is left
//! where it is: its traffic is the nodes' own map syncs.
//!
//! Each transfer a replica accepted is logged on the node that hands the leadership over
//! and counted in `shardkv_raft_workload_leader_moves_total`.
//!
//! Must never: move a leader to a node that holds no replica of the group, or more than
//! once per group per window.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info};

use crate::kv::meta::META_GROUP;
use crate::node::client::NodeClient;
use crate::raft::types::{GroupId, NodeId};
use crate::router::table::GroupRoute;
use crate::shard::api::ShardOp;

/// A node must bring at least this many requests of a group a second, over a window, to
/// draw its leader: below it, forwards cost little and a window's counts are noise.
pub const FOLLOW_REQUESTS_PER_SEC_MIN: u64 = 100;
/// ... and more than this many times the requests that came in at the leader's node.
pub const FOLLOW_RATIO: u64 = 2;
/// The shortest window, whatever `timeouts.follow_workload_ms` asks (a shorter one would
/// judge on too few requests and move leaders on noise).
pub const FOLLOW_WINDOW_MIN: Duration = Duration::from_millis(100);

/// Requests served by the groups this node leads, by the node they came in through, since
/// the last `take`. At most one entry per group hosted here, each with one count per node.
/// The lock is held for a map update only; a node's request path runs on one thread.
pub struct Workload {
    counts: Mutex<BTreeMap<GroupId, BTreeMap<NodeId, u64>>>,
    /// Counting; not when `timeouts.follow_workload_ms = 0`.
    on: bool,
}

impl Workload {
    /// Counts requests when `on`; an idle counter otherwise.
    pub fn new(on: bool) -> Workload {
        Workload { counts: Mutex::default(), on }
    }

    /// This node's replica of `group`, as its leader, served a request that came in
    /// through `origin` (this node for its own clients).
    pub fn served(&self, group: GroupId, origin: NodeId) {
        if !self.on {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(group).or_default().entry(origin).or_default() += 1;
    }

    /// The counts since the last call, which start again from nothing.
    pub fn take(&self) -> BTreeMap<GroupId, BTreeMap<NodeId, u64>> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The fewest requests a node must bring in `window` (`FOLLOW_REQUESTS_PER_SEC_MIN`).
pub fn requests_min(window: Duration) -> u64 {
    let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    (FOLLOW_REQUESTS_PER_SEC_MIN.saturating_mul(millis) / 1_000).max(1)
}

/// Where the leader on `me` should go, given a window's requests of its group by the node
/// they came in through: the node that brought the most (the lowest id among equals), if
/// it brought at least `min` and more than `FOLLOW_RATIO` times `me`'s.
pub fn choose(origins: &BTreeMap<NodeId, u64>, me: NodeId, min: u64) -> Option<NodeId> {
    let here = origins.get(&me).copied().unwrap_or(0);
    let mut best: Option<(NodeId, u64)> = None;
    for (&node, &count) in origins {
        if node != me && best.is_none_or(|(_, most)| count > most) {
            best = Some((node, count));
        }
    }
    let (node, count) = best?;
    (count >= min && count > here.saturating_mul(FOLLOW_RATIO)).then_some(node)
}

/// The groups whose leader the routing table places on `me`.
fn led_by(routes: &[GroupRoute], me: NodeId) -> BTreeSet<GroupId> {
    routes.iter().filter(|r| r.leader == Some(me)).map(|r| r.group).collect()
}

/// The leader moves of one window: `counts` are its requests by group and origin, `led`
/// the groups led here at its start and at its end (a leader that arrived meanwhile, by
/// an election, a placement or an operator's transfer, keeps the group a window at least),
/// `routes` where each group's replicas are, `min` the fewest requests a node must bring
/// (`requests_min` of the window's real length). Origins holding no replica of the group
/// are left out before choosing, so a busy node without one cannot hide one that has one.
/// A learner is not told from a voter here (the routing table lists both): Raft refuses
/// to hand leadership to a learner, and the group stays until the learner is promoted or
/// the traffic changes. The metadata group stays.
pub fn decide(
    counts: &BTreeMap<GroupId, BTreeMap<NodeId, u64>>,
    led: (&BTreeSet<GroupId>, &BTreeSet<GroupId>),
    routes: &[GroupRoute],
    me: NodeId,
    min: u64,
) -> Vec<(GroupId, NodeId)> {
    let mut moves = Vec::new();
    for (&group, origins) in counts {
        if group == META_GROUP || !led.0.contains(&group) || !led.1.contains(&group) {
            continue;
        }
        let Some(route) = routes.iter().find(|r| r.group == group) else { continue };
        let holding: BTreeMap<NodeId, u64> = origins
            .iter()
            .filter(|(node, _)| route.replicas.contains(node))
            .map(|(&node, &count)| (node, count))
            .collect();
        if let Some(to) = choose(&holding, me, min) {
            moves.push((group, to));
        }
    }
    moves
}

/// Every `window`, hands the leadership of each group led here for the whole window to
/// the node its requests came in through, where `decide` says so. Runs until dropped.
pub(crate) async fn follow_workload(
    client: NodeClient,
    workload: Arc<Workload>,
    window: Duration,
    moves: prometheus::IntCounter,
) {
    let me = client.table().me();
    let window = window.max(FOLLOW_WINDOW_MIN);
    let mut every = tokio::time::interval(window);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    every.tick().await;
    let mut led_before = led_by(&client.table().groups(), me);
    workload.take();
    let mut since = Instant::now();
    loop {
        every.tick().await;
        let counts = workload.take();
        // The window's real length: the transfers below may have stretched it.
        let min = requests_min(since.elapsed());
        since = Instant::now();
        let routes = client.table().groups();
        let led = led_by(&routes, me);
        for (group, to) in decide(&counts, (&led_before, &led), &routes, me, min) {
            let origins = &counts[&group];
            let (there, here) = (origins.get(&to), origins.get(&me));
            // This node's own replica only: were its leadership gone meanwhile, the
            // request path would follow the hint and move a leader that just arrived.
            match client.execute_here(group, ShardOp::TransferLeader { to }).await {
                Ok(_) => {
                    moves.inc();
                    info!(
                        group = group.get(),
                        to = to.get(),
                        requests_there = there.copied().unwrap_or(0),
                        requests_here = here.copied().unwrap_or(0),
                        "moving the group's leadership to the node its requests come in through"
                    )
                }
                // A transfer under way, a replica that is not a caught-up voter: the next
                // window decides again.
                Err(error) => {
                    debug!(group = group.get(), to = to.get(), %error, "leader transfer refused")
                }
            }
        }
        led_before = led;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(counts: &[(u64, u64)]) -> BTreeMap<NodeId, u64> {
        counts.iter().map(|&(node, n)| (NodeId(node), n)).collect()
    }

    const MIN: u64 = 500;

    #[test]
    fn the_leader_moves_where_most_requests_come_in() {
        let me = NodeId(2);
        let none_here = origins(&[(1, MIN)]);
        assert_eq!(choose(&none_here, me, MIN), Some(NodeId(1)));
        let mostly_there = origins(&[(1, 2_001), (2, 1_000), (3, 1_500)]);
        assert_eq!(choose(&mostly_there, me, MIN), Some(NodeId(1)));
        // Two nodes that bring alike: the lower id, and never `me`.
        let tied = origins(&[(3, 900), (1, 900)]);
        assert_eq!(choose(&tied, me, MIN), Some(NodeId(1)));
    }

    #[test]
    fn the_leader_stays_below_the_margin_or_the_minimum() {
        let me = NodeId(2);
        assert_eq!(choose(&origins(&[]), me, MIN), None);
        assert_eq!(choose(&origins(&[(2, 10_000)]), me, MIN), None);
        // Too few requests to judge on.
        assert_eq!(choose(&origins(&[(1, MIN - 1)]), me, MIN), None);
        // Exactly the ratio is not more than it.
        assert_eq!(choose(&origins(&[(1, 2_000), (2, 1_000)]), me, MIN), None);
        // Once moved, the old node's traffic cannot take it back at once.
        let moved = origins(&[(1, 2_001), (2, 1_000)]);
        assert_eq!(choose(&moved, NodeId(1), MIN), None);
    }

    #[test]
    fn the_minimum_is_a_rate_over_the_window() {
        assert_eq!(
            requests_min(Duration::from_secs(5)),
            5 * FOLLOW_REQUESTS_PER_SEC_MIN
        );
        assert_eq!(
            requests_min(Duration::from_millis(500)),
            FOLLOW_REQUESTS_PER_SEC_MIN / 2
        );
        assert_eq!(requests_min(Duration::ZERO), 1);
    }

    fn route(group: u64, replicas: &[u64], leader: u64) -> GroupRoute {
        GroupRoute {
            group: GroupId(group),
            slots: (0, 0),
            replicas: replicas.iter().map(|&n| NodeId(n)).collect(),
            leader: Some(NodeId(leader)),
            term: crate::raft::types::Term(1),
        }
    }

    #[test]
    fn a_window_moves_only_groups_led_all_window_to_nodes_holding_a_replica() {
        let me = NodeId(1);
        let routes = [
            route(0, &[1, 2, 3], 1),
            route(1, &[1, 2, 3], 1),
            route(2, &[1, 2, 3], 1),
            route(3, &[1, 3, 4], 1),
        ];
        let busy = origins(&[(2, MIN)]);
        let counts: BTreeMap<GroupId, BTreeMap<NodeId, u64>> = [
            (GroupId(0), busy.clone()),
            (GroupId(1), busy.clone()),
            (GroupId(2), busy.clone()),
            // Node 2 brings the most but holds no replica of group 3: node 4 draws it.
            (GroupId(3), origins(&[(2, 5 * MIN), (4, MIN)])),
        ]
        .into();
        let all: BTreeSet<GroupId> = (0..4).map(GroupId).collect();
        // Group 2 came here during the window.
        let before: BTreeSet<GroupId> = [0, 1, 3].map(GroupId).into();
        let moves = decide(&counts, (&before, &all), &routes, me, MIN);
        assert_eq!(moves, vec![(GroupId(1), NodeId(2)), (GroupId(3), NodeId(4))]);
        // Group 1 left during the window: it is not this node's to move.
        let after: BTreeSet<GroupId> = [0, 3].map(GroupId).into();
        let moves = decide(&counts, (&before, &after), &routes, me, MIN);
        assert_eq!(moves, vec![(GroupId(3), NodeId(4))]);
    }

    #[test]
    fn counts_start_again_after_take_and_nothing_is_counted_when_off() {
        let on = Workload::new(true);
        on.served(GroupId(3), NodeId(1));
        on.served(GroupId(3), NodeId(1));
        on.served(GroupId(3), NodeId(2));
        let taken = on.take();
        assert_eq!(taken[&GroupId(3)], origins(&[(1, 2), (2, 1)]));
        assert!(on.take().is_empty());
        let off = Workload::new(false);
        off.served(GroupId(3), NodeId(1));
        assert!(off.take().is_empty());
    }
}
