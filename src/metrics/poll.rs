//! The status poll: every `POLL_INTERVAL_MS` it asks each local replica for its
//! `ShardStatus` (one short actor message, answered from memory) and sets the per-group
//! gauges. Never waits on a replica longer than `STATUS_TIMEOUT_MS`: a busy replica keeps
//! its previous values until the next round.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use tokio::task::JoinHandle;

use super::NodeMetrics;
use crate::raft::types::GroupId;
use crate::raft::Role;
use crate::shard::actor::{GetStatus, ShardActor, ShardStatus};

/// How often the per-group gauges are refreshed.
pub const POLL_INTERVAL_MS: u64 = 1_000;
/// How long one replica may take to answer a status request.
pub const STATUS_TIMEOUT_MS: u64 = 500;

/// Where the poll finds the node's replicas.
pub trait Replicas: Send + Sync + 'static {
    fn replicas(&self) -> Vec<(GroupId, Addr<ShardActor>)>;
}

/// The numeric value of a role in `shardkv_raft_role`.
pub fn role_value(role: Role) -> i64 {
    match role {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Sets every per-group gauge from one replica's status.
pub fn record(metrics: &NodeMetrics, s: &ShardStatus) {
    let g = metrics.gauges();
    let group = s.group.get().to_string();
    let l = &[group.as_str()];
    let leader = s.leader.map_or(0, |n| n.get());
    g.term.with_label_values(l).set(clamp(s.term.0));
    g.role.with_label_values(l).set(role_value(s.role));
    g.is_leader
        .with_label_values(l)
        .set(i64::from(s.role == Role::Leader));
    g.leader_node.with_label_values(l).set(clamp(leader));
    g.last_index.with_label_values(l).set(clamp(s.last_index.0));
    g.commit_index
        .with_label_values(l)
        .set(clamp(s.commit_index.0));
    g.applied_index
        .with_label_values(l)
        .set(clamp(s.applied_index.0));
    let lag = s.last_index.0.saturating_sub(s.commit_index.0);
    g.commit_lag.with_label_values(l).set(clamp(lag));
    g.slot_first.with_label_values(l).set(i64::from(s.slots.0));
    g.slot_last.with_label_values(l).set(i64::from(s.slots.1));
    g.replicas
        .with_label_values(l)
        .set(clamp(s.conf_state.all_nodes().len() as u64));
    for (follower, matched) in &s.followers {
        let f = follower.get().to_string();
        let lag = s.last_index.0.saturating_sub(matched.0);
        g.follower_match_lag
            .with_label_values(&[group.as_str(), f.as_str()])
            .set(clamp(lag));
    }
    if s.role != Role::Leader {
        // A former leader's view of its followers is stale: drop it.
        for node in s.conf_state.all_nodes() {
            let f = node.get().to_string();
            let _ = g
                .follower_match_lag
                .remove_label_values(&[group.as_str(), f.as_str()]);
        }
    }
}

/// One round: every replica's status, each bounded by `STATUS_TIMEOUT_MS`.
pub async fn poll_once(metrics: &NodeMetrics, replicas: &dyn Replicas) {
    let timeout = Duration::from_millis(STATUS_TIMEOUT_MS);
    for (group, addr) in replicas.replicas() {
        match tokio::time::timeout(timeout, addr.send(GetStatus)).await {
            Ok(Ok(status)) => record(metrics, &status),
            Ok(Err(_)) => tracing::debug!(group = group.get(), "replica stopped; not polled"),
            Err(_) => tracing::debug!(group = group.get(), "replica status timed out"),
        }
    }
}

/// Starts the poll on the current runtime; abort the handle to stop it.
pub fn spawn(metrics: NodeMetrics, replicas: Arc<dyn Replicas>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(POLL_INTERVAL_MS));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            poll_once(&metrics, replicas.as_ref()).await;
        }
    })
}
