//! Leader completeness (§5.4, Figure 3): if a log entry is committed in a given term, that
//! entry will be present in the logs of the leaders for all higher-numbered terms.
//! Checked when a node is first seen leading a term: it must hold every recorded entry
//! committed in an earlier term (entries below its first index are in its snapshot, whose
//! last term is compared instead).

use shardkv::raft::{LogIndex, MemStorage, RawNode};

use super::{entry_digest, violation, At, GroupRecord};

pub fn check(record: &GroupRecord, at: At, raw: &RawNode<MemStorage>) {
    let term = raw.term();
    let first = raw.first_index();
    let last = raw.last_index();
    let snap = first.prev();
    if let (Some(c), Some(t)) = (record.committed.get(&snap), raw.log_term(snap)) {
        if snap > LogIndex(0) && c.observed_term < term && c.term != t {
            violation(
                at,
                "leader completeness §5.4",
                format!("leader of term {term} has term {t} at its snapshot index {snap}"),
            );
        }
    }
    let earlier = record.committed.range(first..).filter(|(_, c)| c.observed_term < term);
    let needed: Vec<_> = earlier.map(|(&i, &c)| (i, c)).collect();
    let Some(&(max_needed, _)) = needed.last() else { return };
    if max_needed > last {
        violation(
            at,
            "leader completeness §5.4",
            format!("leader of term {term} ends at {last}; entry {max_needed} was committed"),
        );
    }
    let entries = raw.log_entries(first, max_needed.next()).expect("leader log readable");
    for (index, c) in needed {
        let e = &entries[(index.get() - first.get()) as usize];
        if e.term != c.term || entry_digest(e) != c.digest {
            violation(
                at,
                "leader completeness §5.4",
                format!(
                    "leader of term {term} lacks entry {index} (term {}) committed in term {}",
                    c.term, c.observed_term
                ),
            );
        }
    }
}
