//! The liveness phase's goal (after everything healed): every group has a leader whose
//! whole log is committed and whose configuration is not joint, every member (voter or
//! learner of the leader's configuration) applied exactly that log and holds the same
//! state, and every client op in flight (including one probe write per group) completed.

use super::world::World;

impl World {
    /// `Ok` once the world has converged; otherwise what is still missing.
    pub fn converged(&self) -> Result<(), String> {
        for g in 0..self.shape.groups {
            let Some(l) = self.leader_of(g) else {
                return Err(format!("group {} has no leader:{}", g + 1, self.describe_group(g)));
            };
            let raw = self.replicas[l][g].raw.as_ref().expect("leader is up");
            let commit = raw.commit_index();
            if raw.last_index() != commit {
                return Err(format!(
                    "group {} leader {} commit {commit} < last index {}",
                    g + 1,
                    l + 1,
                    raw.last_index()
                ));
            }
            if raw.conf_state().is_joint() {
                // Dissertation §4.3: the leader leaves a joint configuration by itself.
                return Err(format!("group {} is stuck in joint {:?}", g + 1, raw.conf_state()));
            }
            let digest = self.replicas[l][g].sm.digest();
            for id in raw.conf_state().all_nodes() {
                let rep = &self.replicas[(id.get() - 1) as usize][g];
                if rep.sm.applied_index != commit.get() || rep.sm.digest() != digest {
                    return Err(format!(
                        "group {} member {id} applied {} (leader {} commit {commit})",
                        g + 1,
                        rep.sm.applied_index,
                        l + 1
                    ));
                }
            }
        }
        if !self.workload.all_done() {
            let mut what = format!("client ops in flight:{}", self.workload.describe_inflight());
            for g in 0..self.shape.groups {
                what += &self.describe_group(g);
            }
            return Err(what);
        }
        Ok(())
    }

    /// Each replica's role, term, leader, commit and applied index, and waiting reads.
    pub fn describe_group(&self, g: usize) -> String {
        let mut s = format!("\n  group {}:", g + 1);
        for (n, row) in self.replicas.iter().enumerate() {
            let rep = &row[g];
            match rep.raw.as_ref() {
                None => s += &format!(" [node {} down]", n + 1),
                Some(raw) => {
                    let reads: Vec<u64> = rep.reads.iter().map(|r| r.index.get()).collect();
                    s += &format!(
                        " [node {} {:?} term {} leader {} commit {} applied {} last {}@{:?} \
                         reads {reads:?} voters {:?} outgoing {:?}]",
                        n + 1,
                        raw.role(),
                        raw.term(),
                        raw.leader_id(),
                        raw.commit_index(),
                        rep.sm.applied_index,
                        raw.last_index(),
                        raw.log_term(raw.last_index()),
                        raw.conf_state().voters,
                        raw.conf_state().voters_outgoing
                    );
                }
            }
        }
        s
    }
}
