//! The liveness phase's goal (after everything healed): every group has a leader whose
//! whole log is committed, every member (voter or learner of the leader's configuration)
//! applied exactly that log and holds the same state, and every client op in flight
//! (including one probe write per group) completed.

use super::world::World;

impl World {
    /// `Ok` once the world has converged; otherwise what is still missing.
    pub fn converged(&self) -> Result<(), String> {
        for g in 0..self.shape.groups {
            let Some(l) = self.leader_of(g) else {
                return Err(format!("group {} has no leader", g + 1));
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
            return Err(format!("client ops in flight:{}", self.workload.describe_inflight()));
        }
        Ok(())
    }
}
