//! One handler per verb of the scenario language. Each returns the text it prints, or an
//! error for a malformed command (which fails the test, naming the file and line). Errors
//! from the Raft core are not failures: they print as `error: ...` and are expected output.
//!
//! Verbs (ids are node ids; `[...]` is optional):
//! - `add-nodes N [voters=(..)] [learners=(..)] [pre-vote=B] [check-quorum=B]
//!   [read-mode=safe|lease] [election=T] [election-max=T] [heartbeat=T] [max-msg-bytes=N]
//!   [inflight=N]`: adds N nodes with the next ids; without `voters=` a node starts with an
//!   empty configuration (it joins through a membership change).
//! - `campaign ID`, `tick ID [COUNT]`, `tick-heartbeat ID..`, `tick-election ID..`
//!   (enough ticks for any election time-out to expire).
//! - `propose ID DATA`, `propose-n ID COUNT` (data `p1`..`pCOUNT`),
//!   `propose-conf-change ID v4 l5 r2` (add voter 4, add learner 5, remove 2),
//!   `transfer-leader ID TO`, `read-index ID CTX`.
//! - `process-ready ID..`, `deliver-msgs [drop=B] [dup=B] [reverse=B] [keep=B] [type=KIND]
//!   ID..`, `stabilize [ID..]`.
//! - `isolate ID`, `partition (1)(2,3)`, `heal`, `crash ID`, `restart ID`,
//!   `compact ID INDEX`.
//! - `raft-state`, `raft-log ID`, `status ID`.

use std::fmt::Write as _;

use bytes::Bytes;
use shardkv::raft::*;
use std::result::Result;

use super::cluster::Cluster;
use super::render;
use super::script::{parse_u64, Command};

type Outcome = Result<String, String>;

/// Runs one command against the cluster.
pub fn run(c: &mut Cluster, cmd: &Command) -> Outcome {
    match cmd.verb.as_str() {
        "add-nodes" => add_nodes(c, cmd),
        "campaign" => each_node(c, cmd, |n| Ok(n.campaign())),
        "tick" => tick(c, cmd),
        "tick-heartbeat" => tick_by(c, cmd, |cfg| cfg.heartbeat_interval_ticks),
        "tick-election" => tick_by(c, cmd, |cfg| cfg.election_timeout_ticks_max - 1),
        "propose" => propose(c, cmd),
        "propose-n" => propose_n(c, cmd),
        "propose-conf-change" => propose_conf_change(c, cmd),
        "transfer-leader" => transfer_leader(c, cmd),
        "read-index" => read_index(c, cmd),
        "process-ready" => process_ready(c, cmd),
        "deliver-msgs" => deliver_msgs(c, cmd),
        "stabilize" => stabilize(c, cmd),
        "isolate" => isolate(c, cmd),
        "partition" => partition(c, cmd),
        "heal" => {
            c.cut.clear();
            Ok(String::new())
        }
        "crash" => crash(c, cmd),
        "restart" => restart(c, cmd),
        "compact" => compact(c, cmd),
        "raft-state" => Ok(raft_state(c)),
        "raft-log" => raft_log(c, cmd),
        "status" => status(c, cmd),
        v => Err(format!("unknown verb {v:?}")),
    }
}

fn node_ids(c: &Cluster, cmd: &Command) -> Result<Vec<u64>, String> {
    let ids = cmd.numbers()?;
    if ids.is_empty() {
        return Ok(c.ids());
    }
    Ok(ids)
}

fn one_id(cmd: &Command) -> Result<u64, String> {
    match cmd.numbers()?.as_slice() {
        [id] => Ok(*id),
        _ => Err(format!("{}: expected one node id", cmd.verb)),
    }
}

/// The node id and the remaining plain words.
fn id_and_rest(cmd: &Command) -> Result<(u64, Vec<&str>), String> {
    let words = cmd.words();
    let (first, rest) = words.split_first().ok_or(format!("{}: expected a node id", cmd.verb))?;
    Ok((parse_u64(first)?, rest.to_vec()))
}

fn raft_result(r: shardkv::raft::Result<()>) -> String {
    match r {
        Ok(()) => String::new(),
        Err(e) => format!("error: {e}\n"),
    }
}

fn each_node(
    c: &mut Cluster,
    cmd: &Command,
    f: impl Fn(&mut RawNode<MemStorage>) -> shardkv::raft::Result<()>,
) -> Outcome {
    let mut out = String::new();
    for id in cmd.numbers()? {
        out += &raft_result(f(c.node(id)?));
    }
    Ok(out)
}

fn add_nodes(c: &mut Cluster, cmd: &Command) -> Outcome {
    cmd.check_keys(&[
        "voters", "learners", "pre-vote", "check-quorum", "read-mode", "election",
        "election-max", "heartbeat", "max-msg-bytes", "inflight",
    ])?;
    let count = one_id(cmd)?;
    let voters = cmd.list_value("voters")?;
    let learners = cmd.list_value("learners")?;
    let conf = ConfState {
        voters: voters.into_iter().map(NodeId).collect(),
        learners: learners.into_iter().map(NodeId).collect(),
        voters_outgoing: Default::default(),
    };
    for _ in 0..count {
        let id = c.replicas.len() as u64 + 1;
        let mut cfg = Config::new(NodeId(id), GroupId(1));
        cfg.rng_seed = id;
        cfg.pre_vote = cmd.bool_value("pre-vote", false)?;
        cfg.check_quorum = cmd.bool_value("check-quorum", false)?;
        cfg.read_mode = match cmd.value("read-mode").unwrap_or("safe") {
            "safe" => ReadMode::Safe,
            "lease" => ReadMode::LeaseBased,
            m => return Err(format!("read-mode={m}: expected safe or lease")),
        };
        cfg.election_timeout_ticks_min = cmd.u64_value("election", 10)?;
        let max_default = cfg.election_timeout_ticks_min + 1;
        cfg.election_timeout_ticks_max = cmd.u64_value("election-max", max_default)?;
        cfg.heartbeat_interval_ticks = cmd.u64_value("heartbeat", 5)?;
        cfg.max_entries_bytes_per_msg = cmd.u64_value("max-msg-bytes", 1 << 20)?;
        cfg.max_inflight_msgs = cmd.u64_value("inflight", 256)? as usize;
        c.add(cfg, MemStorage::new_with_conf_state(conf.clone()))?;
    }
    Ok(String::new())
}

fn tick(c: &mut Cluster, cmd: &Command) -> Outcome {
    let words = cmd.numbers()?;
    let (id, count) = match words.as_slice() {
        [id] => (*id, 1),
        [id, count] => (*id, *count),
        _ => return Err("tick: expected ID [COUNT]".into()),
    };
    let node = c.node(id)?;
    for _ in 0..count {
        node.tick();
    }
    Ok(String::new())
}

fn tick_by(c: &mut Cluster, cmd: &Command, ticks: impl Fn(&Config) -> u64) -> Outcome {
    for id in cmd.numbers()? {
        let n = ticks(&c.replica(id)?.cfg);
        let node = c.node(id)?;
        for _ in 0..n {
            node.tick();
        }
    }
    Ok(String::new())
}

fn propose(c: &mut Cluster, cmd: &Command) -> Outcome {
    let (id, rest) = id_and_rest(cmd)?;
    let [data] = rest.as_slice() else { return Err("propose: expected ID DATA".into()) };
    let data = Bytes::copy_from_slice(data.as_bytes());
    Ok(raft_result(c.node(id)?.propose(data)))
}

fn propose_n(c: &mut Cluster, cmd: &Command) -> Outcome {
    let [id, count] = cmd.numbers()?[..] else { return Err("propose-n: expected ID COUNT".into()) };
    let mut out = String::new();
    for i in 1..=count {
        out += &raft_result(c.node(id)?.propose(Bytes::from(format!("p{i}"))));
    }
    Ok(out)
}

fn propose_conf_change(c: &mut Cluster, cmd: &Command) -> Outcome {
    let (id, rest) = id_and_rest(cmd)?;
    let mut steps = Vec::new();
    for w in rest {
        let (kind, n) = w.split_at(1);
        let n = NodeId(parse_u64(n)?);
        steps.push(match kind {
            "v" => ConfChangeStep::AddVoter(n),
            "l" => ConfChangeStep::AddLearner(n),
            "r" => ConfChangeStep::RemoveNode(n),
            _ => return Err(format!("conf change step {w:?}: expected vN, lN or rN")),
        });
    }
    Ok(raft_result(c.node(id)?.propose_conf_change(&steps)))
}

fn transfer_leader(c: &mut Cluster, cmd: &Command) -> Outcome {
    let [id, to] = cmd.numbers()?[..] else { return Err("transfer-leader: expected ID TO".into()) };
    Ok(raft_result(c.node(id)?.transfer_leader(NodeId(to))))
}

fn read_index(c: &mut Cluster, cmd: &Command) -> Outcome {
    let (id, rest) = id_and_rest(cmd)?;
    let [ctx] = rest.as_slice() else { return Err("read-index: expected ID CTX".into()) };
    let ctx = Bytes::copy_from_slice(ctx.as_bytes());
    Ok(raft_result(c.node(id)?.read_index(ctx)))
}

fn process_ready(c: &mut Cluster, cmd: &Command) -> Outcome {
    let mut out = String::new();
    for id in node_ids(c, cmd)? {
        if !c.process_ready(id, &mut out)? {
            writeln!(out, "> {id}: no Ready").unwrap();
        }
    }
    Ok(out)
}

fn deliver_msgs(c: &mut Cluster, cmd: &Command) -> Outcome {
    cmd.check_keys(&["drop", "dup", "reverse", "keep", "type"])?;
    let (drop, dup) = (cmd.bool_value("drop", false)?, cmd.bool_value("dup", false)?);
    let (reverse, keep) = (cmd.bool_value("reverse", false)?, cmd.bool_value("keep", false)?);
    let kind = cmd.value("type");
    let mut out = String::new();
    for id in node_ids(c, cmd)? {
        let inbox = std::mem::take(&mut c.replica(id)?.inbox);
        let (mut take, rest): (Vec<_>, Vec<_>) =
            inbox.into_iter().partition(|m| kind.is_none_or(|k| m.body.kind() == k));
        c.replica(id)?.inbox.extend(rest);
        if reverse {
            take.reverse();
        }
        for m in take {
            if keep {
                c.replica(id)?.inbox.push_back(m.clone());
            }
            if drop {
                writeln!(out, "  dropped: {}", render::message(&m)).unwrap();
                continue;
            }
            let copies = if dup { 2 } else { 1 };
            for _ in 0..copies {
                writeln!(out, "  deliver: {}", render::message(&m)).unwrap();
                c.deliver(m.clone(), &mut out)?;
            }
        }
    }
    Ok(out)
}

fn stabilize(c: &mut Cluster, cmd: &Command) -> Outcome {
    let ids = node_ids(c, cmd)?;
    let mut out = String::new();
    c.stabilize(&ids, &mut out)?;
    Ok(out)
}

fn isolate(c: &mut Cluster, cmd: &Command) -> Outcome {
    let id = one_id(cmd)?;
    for other in c.ids() {
        if other != id {
            c.cut.insert((id.min(other), id.max(other)));
        }
    }
    Ok(String::new())
}

fn partition(c: &mut Cluster, cmd: &Command) -> Outcome {
    let groups: Vec<Vec<u64>> = cmd
        .groups()
        .iter()
        .map(|g| g.iter().map(|w| parse_u64(w)).collect())
        .collect::<Result<_, _>>()?;
    c.cut.clear();
    for (i, a) in groups.iter().enumerate() {
        for b in &groups[i + 1..] {
            for &x in a {
                for &y in b {
                    c.cut.insert((x.min(y), x.max(y)));
                }
            }
        }
    }
    Ok(String::new())
}

fn crash(c: &mut Cluster, cmd: &Command) -> Outcome {
    let id = one_id(cmd)?;
    let r = c.replica(id)?;
    let node = r.node.take().ok_or(format!("node {id} is already crashed"))?;
    r.disk = Some(node.into_store());
    r.inbox.clear();
    Ok(String::new())
}

fn restart(c: &mut Cluster, cmd: &Command) -> Outcome {
    let id = one_id(cmd)?;
    let r = c.replica(id)?;
    let disk = r.disk.take().ok_or(format!("node {id} is not crashed"))?;
    // The state machine was in memory: it is rebuilt from the snapshot and the log.
    let cfg = Config { applied: LogIndex(0), ..r.cfg.clone() };
    r.node = Some(RawNode::new(cfg, disk).map_err(|e| e.to_string())?);
    Ok(String::new())
}

fn compact(c: &mut Cluster, cmd: &Command) -> Outcome {
    let [id, index] = cmd.numbers()?[..] else { return Err("compact: expected ID INDEX".into()) };
    let node = c.node(id)?;
    if LogIndex(index) > node.applied_index() {
        return Err(format!("compact: {index} is not applied on node {id}"));
    }
    let conf = node.conf_state().clone();
    let data = Bytes::from(format!("state@{index}"));
    let r = node.store_mut().compact_to_snapshot(LogIndex(index), conf, data);
    Ok(raft_result(r))
}

fn raft_state(c: &mut Cluster) -> String {
    let mut out = String::new();
    for r in &c.replicas {
        let id = r.cfg.id;
        let Some(n) = &r.node else {
            writeln!(out, "{id}: down").unwrap();
            continue;
        };
        let s = n.status();
        let hs = s.hard_state;
        writeln!(
            out,
            "{id}: {} term={} vote={} leader={} commit={} applied={} last={}",
            render::role(s.soft_state.role),
            hs.term,
            hs.voted_for,
            s.soft_state.leader_id,
            hs.commit_index,
            s.applied,
            s.last_index
        )
        .unwrap();
    }
    out
}

fn raft_log(c: &mut Cluster, cmd: &Command) -> Outcome {
    let id = one_id(cmd)?;
    let r = c.replica(id)?;
    let (first, entries) = match (&r.node, &r.disk) {
        (Some(n), _) => {
            let es = n.log_entries(n.first_index(), n.last_index().next());
            (n.first_index(), es.map_err(|e| e.to_string())?)
        }
        (None, Some(d)) => (d.first_index().unwrap(), d.all_entries().to_vec()),
        (None, None) => return Err(format!("node {id} has no storage")),
    };
    let mut out = String::new();
    if first > LogIndex(1) {
        writeln!(out, "compacted up to {}", first.prev()).unwrap();
    }
    for e in &entries {
        writeln!(out, "{}", render::entry(e)).unwrap();
    }
    if out.is_empty() {
        out = "empty log\n".into();
    }
    Ok(out)
}

fn status(c: &mut Cluster, cmd: &Command) -> Outcome {
    let id = one_id(cmd)?;
    let s = c.node(id)?.status();
    if s.followers.is_empty() {
        return Ok(format!("{id} is not the leader\n"));
    }
    let mut out = String::new();
    for (fid, f) in s.followers {
        let active = if f.recent_active { "active" } else { "inactive" };
        let st = render::progress_state(f.state);
        writeln!(out, "{fid}: {st} match={} next={} {active}", f.matched, f.next_index).unwrap();
    }
    Ok(out)
}
