//! The scheduling policy of the node's threads (`[scheduling]`).
//!
//! A write crosses threads several times: the client's connection and the group replicas
//! run on the node's thread, the fsync on its writer's thread, and each follower's node does
//! the same before the leader hears back. When a thread is woken while its CPU runs another,
//! Linux by default lets the woken one preempt the running one (wakeup preemption). Where
//! nodes share their cores with each other and with their clients, many hand-overs then cost
//! two context switches instead of none, and a context switch is dear, the more so in a
//! virtual machine. Under `SCHED_BATCH` a woken thread does not preempt: it runs on an idle
//! CPU at once, else when the running thread blocks or its time slice ends. What that adds
//! to a hand-over on a busy CPU is bounded by the scheduler's slice, a few milliseconds, far
//! below the Raft time-outs; a thread's share of the CPU does not change.
//!
//! Threads inherit the policy of the thread that starts them, so `apply` runs on the main
//! thread before the node starts any other.
//!
//! Owns: that one call. Must never: override a policy other than the default one (an
//! operator who started the node under `chrt` keeps what they chose), or stop the node from
//! starting because the call failed.

use crate::node::config::SchedulingConfig;

/// What `apply` did to the calling thread's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The thread runs under `SCHED_BATCH` now, and so will the threads it starts.
    Batch,
    /// Left as it was: turned off, a policy other than the default one, or not Linux.
    Unchanged,
}

/// Sets the calling thread's scheduling policy as `config` says.
pub fn apply(config: &SchedulingConfig) -> std::io::Result<Applied> {
    if !config.batch {
        return Ok(Applied::Unchanged);
    }
    batch()
}

#[cfg(target_os = "linux")]
fn batch() -> std::io::Result<Applied> {
    // SAFETY: both calls only read or set the calling thread's (pid 0) scheduling
    // attributes; `param` outlives the call.
    let current = unsafe { libc::sched_getscheduler(0) };
    if current < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if current != libc::SCHED_OTHER {
        return Ok(Applied::Unchanged);
    }
    let param = libc::sched_param { sched_priority: 0 };
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Applied::Batch)
}

#[cfg(not(target_os = "linux"))]
fn batch() -> std::io::Result<Applied> {
    Ok(Applied::Unchanged)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn policy() -> i32 {
        // SAFETY: reads the calling thread's policy.
        unsafe { libc::sched_getscheduler(0) }
    }

    /// Runs `f` on a thread of its own, so that no policy set leaks into other tests.
    fn on_a_new_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f).join().expect("test thread")
    }

    #[test]
    fn batch_applies_to_the_thread_and_the_threads_it_starts() {
        let (applied, mine, child) = on_a_new_thread(|| {
            let applied = apply(&SchedulingConfig { batch: true }).expect("apply");
            let child = std::thread::spawn(policy).join().expect("child");
            (applied, policy(), child)
        });
        assert_eq!(applied, Applied::Batch);
        assert_eq!(mine, libc::SCHED_BATCH);
        assert_eq!(child, libc::SCHED_BATCH, "a thread started afterwards inherits it");
    }

    #[test]
    fn turned_off_it_leaves_the_default_policy() {
        let (applied, mine) = on_a_new_thread(|| {
            (apply(&SchedulingConfig { batch: false }).expect("apply"), policy())
        });
        assert_eq!(applied, Applied::Unchanged);
        assert_eq!(mine, libc::SCHED_OTHER);
    }

    #[test]
    fn a_policy_an_operator_chose_is_kept() {
        let (applied, mine) = on_a_new_thread(|| {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: sets the calling thread's policy; any thread may choose SCHED_IDLE.
            let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
            assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
            (apply(&SchedulingConfig { batch: true }).expect("apply"), policy())
        });
        assert_eq!(applied, Applied::Unchanged);
        assert_eq!(mine, libc::SCHED_IDLE);
    }
}
