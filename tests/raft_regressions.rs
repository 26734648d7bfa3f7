//! Regression tests for bugs the simulation found in the Raft core, one per bug, each
//! driving `RawNode` by hand to the state that exposed it.

use bytes::Bytes;
use shardkv::raft::*;

fn single_voter() -> RawNode<MemStorage> {
    let conf = ConfState::with_voters([NodeId(1)]);
    let mut cfg = Config::new(NodeId(1), GroupId(1));
    cfg.rng_seed = 1;
    RawNode::new(cfg, MemStorage::new_with_conf_state(conf)).expect("valid config")
}

/// Simulation seed 1592590337 (before the fix): a leader with a read waiting for its
/// no-op reported `has_ready()` forever while every `ready()` was empty, so a runtime
/// looping on `has_ready()` spun.
#[test]
fn waiting_reads_report_no_work_before_the_noop_commits() {
    let mut node = single_voter();
    node.campaign();
    assert_eq!(node.role(), Role::Leader);
    node.read_index(Bytes::from_static(b"r1")).expect("leader accepts reads");
    assert!(node.has_ready(), "the no-op must be persisted");
    let rd = node.ready();
    assert_eq!(rd.entries.len(), 1, "the no-op");
    assert!(rd.read_states.is_empty(), "the read waits for the no-op to commit");
    // The runtime is persisting the no-op; until it reports back there is nothing to do.
    assert!(!node.has_ready(), "no work while the no-op is being persisted");
    let store = node.store_mut();
    store.append(&rd.entries).expect("append");
    if let Some(hs) = rd.hard_state {
        store.set_hard_state(hs);
    }
    node.advance(&rd);
    let mut reads = Vec::new();
    while node.has_ready() {
        let rd = node.ready();
        if let Some(hs) = rd.hard_state {
            node.store_mut().set_hard_state(hs);
        }
        reads.extend(rd.read_states.iter().cloned());
        node.advance(&rd);
    }
    assert_eq!(reads.len(), 1, "the read is answered once the no-op committed");
}
