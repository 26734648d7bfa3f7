//! Replica moves as sequences of `SHARDKV` commands. A new replica starts empty on its node,
//! joins as a learner, catches up (the leader's snapshot, then the log) and only then
//! votes; an old replica first hands off the leadership if it holds it, then leaves, and
//! its node deletes it. A move makes the new replica a voter and removes the old one in
//! one joint change, so the group never has fewer voters than it started with.
//!
//! Every step is idempotent: a move interrupted anywhere (the admin killed, a node
//! restarted, a leader lost) is finished by running the same command again.
//!
//! Must never: promote a replica that has not caught up, or remove the group's last voter.

use std::time::{Duration, Instant};

use crate::admin::{Admin, AdminError, MembersInfo, POLL_INTERVAL_MS};

/// How often, at most, a step reports its progress while it waits.
pub const PROGRESS_INTERVAL_MS: u64 = 500;

/// Where a move reports what it does, one line at a time.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// Adds a replica of `group` on `node`: learner, caught up, voter.
pub fn add_replica(
    admin: &mut Admin,
    group: u64,
    node: u64,
    deadline: Instant,
    progress: Progress<'_>,
) -> Result<(), AdminError> {
    let members = poll_members(admin, group, deadline)?;
    if members.member(node).is_some_and(|m| m.kind == "voter") {
        progress(&format!("node {node} already votes in group {group}"));
        return Ok(());
    }
    join_as_learner(admin, &members, group, node, deadline, progress)?;
    retry(deadline, || admin.change("PROMOTE", group, &[node]))?;
    wait_members(admin, group, deadline, "the promotion", |m| {
        !m.joint && m.member(node).is_some_and(|m| m.kind == "voter")
    })?;
    progress(&format!("node {node} votes in group {group}"));
    Ok(())
}

/// Removes `node`'s replica of `group`; its node then deletes it.
pub fn remove_replica(
    admin: &mut Admin,
    group: u64,
    node: u64,
    deadline: Instant,
    progress: Progress<'_>,
) -> Result<(), AdminError> {
    let members = poll_members(admin, group, deadline)?;
    if members.member(node).is_some() {
        if members.voters() == [node] {
            return Err(AdminError::Refused(format!(
                "node {node} is the last voter of group {group}; add another replica first"
            )));
        }
        if members.leader == node {
            hand_off(admin, &members, group, node, deadline, progress)?;
        }
        retry(deadline, || admin.change("REMOVE-NODE", group, &[node]))?;
        wait_members(admin, group, deadline, "the removal", |m| {
            !m.joint && m.member(node).is_none()
        })?;
        progress(&format!("node {node} left group {group}"));
    }
    drop_on(admin, group, node, progress);
    Ok(())
}

/// Moves `group`'s replica from `from` to `to`: `to` joins as a learner and catches up,
/// then one joint change makes it a voter and removes `from`.
pub fn move_replica(
    admin: &mut Admin,
    group: u64,
    from: u64,
    to: u64,
    deadline: Instant,
    progress: Progress<'_>,
) -> Result<(), AdminError> {
    if from == to {
        return Err(AdminError::Refused("a move needs two different nodes".into()));
    }
    let members = poll_members(admin, group, deadline)?;
    let done = |m: &MembersInfo| {
        !m.joint && m.member(from).is_none() && m.member(to).is_some_and(|m| m.kind == "voter")
    };
    if !done(&members) {
        if members.member(from).is_none() {
            return Err(AdminError::Refused(format!(
                "node {from} has no replica of group {group}"
            )));
        }
        if members.member(to).is_some_and(|m| m.kind != "learner") {
            return Err(AdminError::Refused(format!(
                "node {to} already votes in group {group}; remove node {from} instead"
            )));
        }
        join_as_learner(admin, &members, group, to, deadline, progress)?;
        let members = poll_members(admin, group, deadline)?;
        if members.leader == from {
            hand_off(admin, &members, group, from, deadline, progress)?;
        }
        retry(deadline, || admin.change("REPLACE", group, &[from, to]))?;
        wait_members(admin, group, deadline, "the joint change", done)?;
        progress(&format!("node {to} votes in group {group}; node {from} left it"));
    }
    drop_on(admin, group, from, progress);
    Ok(())
}

/// Starts an empty replica on `node` and adds it as a learner (unless it is one), then
/// waits until it has everything that was committed when it joined.
fn join_as_learner(
    admin: &mut Admin,
    members: &MembersInfo,
    group: u64,
    node: u64,
    deadline: Instant,
    progress: Progress<'_>,
) -> Result<(), AdminError> {
    admin.connect_node(node)?.open_replica(group)?;
    if members.member(node).is_none() {
        retry(deadline, || admin.change("ADD-LEARNER", group, &[node]))?;
        progress(&format!("node {node} joined group {group} as a learner"));
    }
    let target = poll_members(admin, group, deadline)?.commit_index;
    let mut reported = Instant::now();
    loop {
        let members = poll_members(admin, group, deadline)?;
        let matched = members.member(node).map_or(0, |m| m.matched);
        if matched >= target {
            progress(&format!("node {node} caught up (log at {matched} of {target})"));
            return Ok(());
        }
        if reported.elapsed() >= Duration::from_millis(PROGRESS_INTERVAL_MS) {
            progress(&format!("node {node} catching up: log at {matched} of {target}"));
            reported = Instant::now();
        }
        if Instant::now() >= deadline {
            return Err(AdminError::Timeout(format!(
                "node {node} did not catch up with group {group} in time (log at {matched} \
                 of {target}); run the command again to go on"
            )));
        }
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
    }
}

/// Moves the leadership of `group` away from `from`, to the voter furthest along.
fn hand_off(
    admin: &mut Admin,
    members: &MembersInfo,
    group: u64,
    from: u64,
    deadline: Instant,
    progress: Progress<'_>,
) -> Result<(), AdminError> {
    let candidates = members.replicas.iter().filter(|m| m.kind == "voter" && m.node != from);
    let Some(to) = candidates.max_by_key(|m| (m.matched, std::cmp::Reverse(m.node))) else {
        return Err(AdminError::Refused(format!(
            "group {group} has no other voter to lead it"
        )));
    };
    let to = to.node;
    let started = Instant::now();
    retry(deadline, || admin.transfer_leader(group, to))?;
    let leader = admin.wait_leader(group, deadline, |l| l != from)?;
    progress(&format!(
        "group {group}: leadership moved from node {from} to node {leader} in {} ms",
        started.elapsed().as_millis()
    ));
    Ok(())
}

/// Asks `node` to delete its replica; a node that cannot be reached is reported, not an
/// error (its replica is left idle; `shardkv admin drop-replica` deletes it later).
fn drop_on(admin: &mut Admin, group: u64, node: u64, progress: Progress<'_>) {
    let dropped = admin.connect_node(node).and_then(|mut a| a.drop_replica(group));
    match dropped {
        Ok(()) => progress(&format!("node {node} deleted its replica of group {group}")),
        Err(e) => progress(&format!(
            "node {node} did not delete its replica of group {group} ({e}); run \
             `shardkv admin drop-replica {group} {node}` once it is reachable"
        )),
    }
}

/// The group's membership, asked again while the group has no leader (an election).
fn poll_members(admin: &mut Admin, group: u64, deadline: Instant) -> Result<MembersInfo, AdminError> {
    retry(deadline, || admin.members(group))
}

/// Waits until the group's membership satisfies `done`.
fn wait_members(
    admin: &mut Admin,
    group: u64,
    deadline: Instant,
    what: &str,
    done: impl Fn(&MembersInfo) -> bool,
) -> Result<MembersInfo, AdminError> {
    loop {
        let members = poll_members(admin, group, deadline)?;
        if done(&members) {
            return Ok(members);
        }
        if Instant::now() >= deadline {
            return Err(AdminError::Timeout(format!(
                "group {group}: {what} did not complete in time; run the command again to go on"
            )));
        }
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
    }
}

/// Runs `op` until it succeeds or the deadline passes, retrying what a leader change or a
/// pending membership change makes fail for a moment (`TRYAGAIN`, `BUSY`, outcome unknown).
fn retry<T>(deadline: Instant, mut op: impl FnMut() -> Result<T, AdminError>) -> Result<T, AdminError> {
    loop {
        match op() {
            Ok(value) => return Ok(value),
            Err(AdminError::Refused(reason)) if transient(&reason) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Refusals that go away by themselves.
fn transient(reason: &str) -> bool {
    ["TRYAGAIN", "BUSY", "CLUSTERDOWN", "outcome unknown", "no such leader", "cannot reach"]
        .iter()
        .any(|word| reason.contains(word))
}
