//! `shardkv admin rebalance`: plans replica moves and leader transfers that spread replicas
//! and leaderships evenly over the cluster's nodes (an empty node gets its share), prints
//! the plan, and with it not a dry run, carries it out one step at a time.
//!
//! The plan is a pure function of the cluster's shape, so it is tested without a cluster.
//! Replicas first: while the most loaded node has two more replicas than the least loaded
//! one, a group on the first and not on the second moves (one that the first does not lead
//! when there is a choice, so fewer leaderships move). Then leaderships: while a node
//! leads two more groups than another node that holds a replica of one of them, that
//! group's leadership moves there.
//!
//! Must never: plan a move onto a node that already holds the group, or more than
//! `REBALANCE_STEPS_MAX` steps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::admin::moves::{move_replica, Progress};
use crate::admin::{Admin, AdminError, GroupInfo};

/// Steps one plan may hold, at most.
pub const REBALANCE_STEPS_MAX: usize = 1024;

/// One group as the planner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupShape {
    pub id: u64,
    pub replicas: Vec<u64>,
    pub leader: Option<u64>,
}

impl From<&GroupInfo> for GroupShape {
    fn from(g: &GroupInfo) -> GroupShape {
        GroupShape { id: g.id, replicas: g.replicas.clone(), leader: g.leader }
    }
}

/// One step of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Move { group: u64, from: u64, to: u64 },
    TransferLeader { group: u64, to: u64 },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Move { group, from, to } => {
                write!(f, "move group {group}'s replica from node {from} to node {to}")
            }
            Step::TransferLeader { group, to } => {
                write!(f, "transfer group {group}'s leadership to node {to}")
            }
        }
    }
}

/// The steps that even out replicas, then leaderships, over `nodes`.
pub fn plan(nodes: &[u64], groups: &[GroupShape]) -> Vec<Step> {
    let mut groups: Vec<GroupShape> = groups.to_vec();
    let mut steps = Vec::new();
    while steps.len() < REBALANCE_STEPS_MAX {
        let Some(step) = next_move(nodes, &groups) else { break };
        if let Step::Move { group, from, to } = step {
            let g = groups.iter_mut().find(|g| g.id == group).expect("planned group exists");
            g.replicas.retain(|&n| n != from);
            g.replicas.push(to);
            if g.leader == Some(from) {
                // The move hands the leadership to another voter; which one is decided then.
                g.leader = None;
            }
        }
        steps.push(step);
    }
    while steps.len() < REBALANCE_STEPS_MAX {
        let Some(step) = next_transfer(nodes, &groups) else { break };
        if let Step::TransferLeader { group, to } = step {
            let g = groups.iter_mut().find(|g| g.id == group).expect("planned group exists");
            g.leader = Some(to);
        }
        steps.push(step);
    }
    steps
}

fn counts(nodes: &[u64], groups: &[GroupShape], of: impl Fn(&GroupShape) -> Vec<u64>) -> BTreeMap<u64, usize> {
    let mut counts: BTreeMap<u64, usize> = nodes.iter().map(|&n| (n, 0)).collect();
    for g in groups {
        for n in of(g) {
            if let Some(c) = counts.get_mut(&n) {
                *c += 1;
            }
        }
    }
    counts
}

/// Nodes from most to least loaded (ties: lower id first among the loaded).
fn by_load(counts: &BTreeMap<u64, usize>) -> Vec<(u64, usize)> {
    let mut all: Vec<(u64, usize)> = counts.iter().map(|(&n, &c)| (n, c)).collect();
    all.sort_by_key(|&(n, c)| (std::cmp::Reverse(c), n));
    all
}

fn next_move(nodes: &[u64], groups: &[GroupShape]) -> Option<Step> {
    let load = by_load(&counts(nodes, groups, |g| g.replicas.clone()));
    for &(from, most) in &load {
        for &(to, least) in load.iter().rev() {
            if most < least + 2 {
                break;
            }
            let movable = groups
                .iter()
                .filter(|g| g.replicas.contains(&from) && !g.replicas.contains(&to));
            let pick = movable.min_by_key(|g| (g.leader == Some(from), g.id));
            if let Some(g) = pick {
                return Some(Step::Move { group: g.id, from, to });
            }
        }
    }
    None
}

fn next_transfer(nodes: &[u64], groups: &[GroupShape]) -> Option<Step> {
    // A group whose leader is unknown (or was moved away) counts for its first replica in
    // the plan until a transfer names one.
    let leader = |g: &GroupShape| g.leader.or_else(|| g.replicas.first().copied());
    let load = by_load(&counts(nodes, groups, |g| leader(g).into_iter().collect()));
    for &(from, most) in &load {
        for &(to, least) in load.iter().rev() {
            if most < least + 2 {
                break;
            }
            let led = groups.iter().filter(|g| leader(g) == Some(from) && g.replicas.contains(&to));
            if let Some(g) = led.min_by_key(|g| g.id) {
                return Some(Step::TransferLeader { group: g.id, to });
            }
        }
    }
    None
}

/// Carries out `steps` in order, reporting each step and its progress; stops at the first
/// step that fails (the plan is made again from the cluster as it then is by running the
/// command again).
pub fn execute(
    admin: &mut Admin,
    steps: &[Step],
    step_wait: Duration,
    progress: Progress<'_>,
) -> Result<(), AdminError> {
    let total = steps.len();
    for (i, step) in steps.iter().enumerate() {
        let started = Instant::now();
        let deadline = started + step_wait;
        progress(&format!("[{}/{total}] {step}", i + 1));
        match *step {
            Step::Move { group, from, to } => {
                let mut indented = |line: &str| progress(&format!("        {line}"));
                move_replica(admin, group, from, to, deadline, &mut indented)?;
            }
            Step::TransferLeader { group, to } => {
                if admin.group(group)?.leader != Some(to) {
                    admin.transfer_leader(group, to)?;
                    admin.wait_leader(group, deadline, |l| l == to)?;
                }
            }
        }
        progress(&format!("        done in {} ms", started.elapsed().as_millis()));
    }
    Ok(())
}

/// Rounds of plan-then-execute `run` makes at most: a round's moves can change leaders
/// the plan did not foresee (a moved leader hands off to whichever voter takes it).
pub const REBALANCE_ROUNDS_MAX: usize = 3;

/// Every data group as its leader reports it (`MEMBERS`: the leader and the replicas are
/// the group's own, not a node's cache of them).
pub fn live_shapes(admin: &mut Admin) -> Result<Vec<GroupShape>, AdminError> {
    let groups = admin.groups()?;
    let mut shapes = Vec::with_capacity(groups.len());
    for g in groups {
        let members = admin.members(g.id)?;
        let replicas = members.replicas.iter().map(|m| m.node).collect();
        shapes.push(GroupShape { id: g.id, replicas, leader: Some(members.leader) });
    }
    Ok(shapes)
}

/// Plans from the groups' live state and executes, again until a plan is empty (at most
/// `REBALANCE_ROUNDS_MAX` rounds); `on_plan` sees each round's plan before it runs.
/// Returns the steps taken.
pub fn run(
    admin: &mut Admin,
    nodes: &[u64],
    step_wait: Duration,
    on_plan: &mut dyn FnMut(&[Step]),
    progress: Progress<'_>,
) -> Result<usize, AdminError> {
    let mut taken = 0;
    for _ in 0..REBALANCE_ROUNDS_MAX {
        let steps = plan(nodes, &live_shapes(admin)?);
        if steps.is_empty() {
            break;
        }
        on_plan(&steps);
        execute(admin, &steps, step_wait, &mut *progress)?;
        taken += steps.len();
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(groups: &[(u64, &[u64], u64)]) -> Vec<GroupShape> {
        groups
            .iter()
            .map(|&(id, replicas, leader)| GroupShape {
                id,
                replicas: replicas.to_vec(),
                leader: Some(leader),
            })
            .collect()
    }

    /// Applies a plan to a shape, checking every step is legal as it goes.
    fn run(groups: &mut [GroupShape], steps: &[Step]) {
        for step in steps {
            match *step {
                Step::Move { group, from, to } => {
                    let g = groups.iter_mut().find(|g| g.id == group).expect("group");
                    assert!(g.replicas.contains(&from), "{step}: source holds no replica");
                    assert!(!g.replicas.contains(&to), "{step}: target already holds one");
                    g.replicas.retain(|&n| n != from);
                    g.replicas.push(to);
                    if g.leader == Some(from) {
                        g.leader = g.replicas.first().copied();
                    }
                }
                Step::TransferLeader { group, to } => {
                    let g = groups.iter_mut().find(|g| g.id == group).expect("group");
                    assert!(g.replicas.contains(&to), "{step}: target holds no replica");
                    g.leader = Some(to);
                }
            }
        }
    }

    fn spread(nodes: &[u64], groups: &[GroupShape], of: impl Fn(&GroupShape) -> Vec<u64>) -> usize {
        let c = counts(nodes, groups, of);
        c.values().max().unwrap_or(&0) - c.values().min().unwrap_or(&0)
    }

    #[test]
    fn a_new_empty_node_gets_its_share_of_replicas_and_leaders() {
        let nodes = [1, 2, 3, 4];
        let all: &[u64] = &[1, 2, 3];
        let mut groups = shape(&(1..=8).map(|g| (g, all, 1 + g % 3)).collect::<Vec<_>>());
        let steps = plan(&nodes, &groups);
        run(&mut groups, &steps);
        assert!(spread(&nodes, &groups, |g| g.replicas.clone()) <= 1, "{groups:?}");
        let leaders = |g: &GroupShape| g.leader.into_iter().collect();
        assert!(spread(&nodes, &groups, leaders) <= 1, "{groups:?}");
        let on_4 = groups.iter().filter(|g| g.replicas.contains(&4)).count();
        assert_eq!(on_4, 6, "24 replicas over 4 nodes");
        assert!(groups.iter().all(|g| g.replicas.len() == 3));
    }

    #[test]
    fn a_balanced_cluster_needs_no_step() {
        let nodes = [1, 2, 3];
        let all: &[u64] = &[1, 2, 3];
        let groups = shape(&[(1, all, 1), (2, all, 2), (3, all, 3)]);
        assert_eq!(plan(&nodes, &groups), Vec::new());
    }

    #[test]
    fn leaders_piled_on_one_node_are_spread() {
        let nodes = [1, 2, 3];
        let all: &[u64] = &[1, 2, 3];
        let mut groups = shape(&(1..=6).map(|g| (g, all, 1)).collect::<Vec<_>>());
        let steps = plan(&nodes, &groups);
        assert!(steps.iter().all(|s| matches!(s, Step::TransferLeader { .. })));
        assert_eq!(steps.len(), 4);
        run(&mut groups, &steps);
        let leaders = |g: &GroupShape| g.leader.into_iter().collect();
        assert_eq!(spread(&nodes, &groups, leaders), 0);
    }

    #[test]
    fn moves_prefer_groups_the_source_does_not_lead() {
        let nodes = [1, 2, 3, 4];
        let groups = shape(&[(1, &[1, 2, 3], 1), (2, &[1, 2, 3], 2), (3, &[1, 2, 3], 3)]);
        let steps = plan(&nodes, &groups);
        assert_eq!(steps.first(), Some(&Step::Move { group: 2, from: 1, to: 4 }));
    }
}
