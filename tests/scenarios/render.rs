//! How scenario output prints the Raft nouns: compact, one message per line, stable across
//! runs. Entries print as `term/index payload`; a log position (prev, last) as `term/index`.

use std::collections::BTreeSet;

use shardkv::raft::*;

/// Messages with more entries than this print their first two, `...`, and the last.
const ENTRIES_PRINTED_MAX: usize = 4;

pub fn payload(p: &EntryPayload) -> String {
    match p {
        EntryPayload::Noop => "Noop".to_string(),
        EntryPayload::Normal(d) => match std::str::from_utf8(d) {
            Ok(s) if s.len() <= 16 => format!("{s:?}"),
            _ => format!("<{} bytes>", d.len()),
        },
        EntryPayload::ConfChange(cs) => format!("Conf({})", conf(cs)),
    }
}

pub fn entry(e: &Entry) -> String {
    format!("{}/{} {}", e.term, e.index, payload(&e.payload))
}

fn ids(set: &BTreeSet<NodeId>) -> String {
    let v: Vec<String> = set.iter().map(|id| id.to_string()).collect();
    format!("({})", v.join(","))
}

pub fn conf(cs: &ConfState) -> String {
    let mut s = format!("voters={}", ids(&cs.voters));
    if !cs.learners.is_empty() {
        s += &format!(" learners={}", ids(&cs.learners));
    }
    if cs.is_joint() {
        s += &format!(" outgoing={}", ids(&cs.voters_outgoing));
    }
    s
}

fn entries(es: &[Entry]) -> String {
    if es.len() <= ENTRIES_PRINTED_MAX {
        let v: Vec<String> = es.iter().map(entry).collect();
        return format!("[{}]", v.join(", "));
    }
    let last = es.last().map(entry).unwrap_or_default();
    format!("[{}, {}, ..., {}] ({} entries)", entry(&es[0]), entry(&es[1]), last, es.len())
}

fn verdict(reject: bool) -> &'static str {
    if reject {
        "rejected"
    } else {
        "granted"
    }
}

pub fn message(m: &Message) -> String {
    let head = format!("{}->{} {} term={}", m.from, m.to, m.body.kind(), m.term);
    let tail = match &m.body {
        MessageBody::PreVote { last_log_index, last_log_term } => {
            format!("last={last_log_term}/{last_log_index}")
        }
        MessageBody::Vote { last_log_index, last_log_term, transfer } => {
            let t = if *transfer { " transfer" } else { "" };
            format!("last={last_log_term}/{last_log_index}{t}")
        }
        MessageBody::PreVoteResponse { reject } | MessageBody::VoteResponse { reject } => {
            verdict(*reject).to_string()
        }
        MessageBody::Append { prev_log_index, prev_log_term, entries: es, commit_index } => {
            format!(
                "prev={prev_log_term}/{prev_log_index} commit={commit_index} entries={}",
                entries(es)
            )
        }
        MessageBody::AppendResponse { reject: false, index, .. } => format!("index={index}"),
        MessageBody::AppendResponse { reject: true, index, hint_index, hint_term } => {
            format!("reject index={index} hint={hint_term}/{hint_index}")
        }
        MessageBody::Heartbeat { commit_index, read_round } => {
            format!("commit={commit_index} round={read_round}")
        }
        MessageBody::HeartbeatResponse { read_round } => format!("round={read_round}"),
        MessageBody::Snapshot { snapshot } => {
            let md = &snapshot.metadata;
            format!("snap={}/{} {}", md.term, md.index, conf(&md.conf_state))
        }
        MessageBody::TimeoutNow => String::new(),
        MessageBody::ReadIndex { context } => format!("ctx={}", text(context)),
        MessageBody::ReadIndexResponse { context, index, reject } => {
            let r = if *reject { " rejected" } else { "" };
            format!("ctx={} index={index}{r}", text(context))
        }
    };
    if tail.is_empty() {
        head
    } else {
        format!("{head} {tail}")
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn role(r: Role) -> &'static str {
    match r {
        Role::Follower => "Follower",
        Role::PreCandidate => "PreCandidate",
        Role::Candidate => "Candidate",
        Role::Leader => "Leader",
    }
}

pub fn progress_state(s: ProgressState) -> &'static str {
    match s {
        ProgressState::Probe => "Probe",
        ProgressState::Replicate => "Replicate",
        ProgressState::Snapshot => "Snapshot",
    }
}
