//! Election safety (§5.2, Figure 3): at most one leader can be elected in a given term.
//! Checked over the whole run: a (group, term) pair, once seen with a leader, must never
//! be seen with another, even after that leader crashed or stepped down.

use shardkv::raft::Term;

use super::{violation, At, GroupRecord};

/// Records `at.node` as leader of `term`; returns true if this is the first time the term
/// is seen with a leader (so leader completeness should be checked now).
pub fn check(record: &mut GroupRecord, at: At, term: Term) -> bool {
    match record.leaders.get(&term) {
        Some(&leader) if leader == at.node => false,
        Some(&leader) => violation(
            at,
            "election safety §5.2",
            format!("two leaders in term {term}: {leader} and {}", at.node),
        ),
        None => {
            record.leaders.insert(term, at.node);
            true
        }
    }
}
