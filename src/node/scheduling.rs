//! The scheduling policy of the node's threads (`[scheduling]`).
//!
//! A write crosses threads several times: the client's connection and the group replicas
//! run on the node's thread, the fsync on its writer's thread, and each follower's node does
//! the same before the leader hears back. When a thread is woken while its CPU runs another,
//! Linux by default lets the woken one preempt the running one (wakeup preemption). Where
//! nodes share their cores with each other and with their clients, many hand-overs then cost
//! two context switches instead of none, and a context switch is dear, the more so in a
//! virtual machine. Under `SCHED_BATCH` a woken thread does not preempt: it runs on an idle
//! CPU at once, else when the running thread blocks or its time slice ends. A thread's share
//! of the CPU does not change. What it adds to a hand-over on a busy CPU is usually about a
//! slice (a few milliseconds), more while several threads wait for that CPU. It does not add
//! up in the Raft clock: a replica's late tick timer fires the ticks it missed at once, so
//! its tick count lags real time by the latest delay only, far below the election time-out
//! and the lease's allowance for drift (`[reads] lease_drift_ticks`, 150 ms by default).
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
    /// The thread runs under `SCHED_BATCH` (set here, or it already did), and so will the
    /// threads it starts.
    Batch,
    /// The thread runs under another policy than the default one, which an operator chose
    /// (`chrt`, systemd's `CPUSchedulingPolicy=`): kept. Its name.
    Kept(&'static str),
    /// Turned off (`batch = false`) or not Linux: the policy the node was started with.
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
    // SAFETY: reads the calling thread's (pid 0) policy; no memory is passed.
    let raw = unsafe { libc::sched_getscheduler(0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The reset-on-fork flag (set by systemd's `CPUSchedulingResetOnFork=`, say) is kept:
    // an unprivileged thread may not clear it.
    let reset_on_fork = raw & libc::SCHED_RESET_ON_FORK;
    match raw & !libc::SCHED_RESET_ON_FORK {
        libc::SCHED_BATCH => return Ok(Applied::Batch),
        libc::SCHED_OTHER => {}
        libc::SCHED_IDLE => return Ok(Applied::Kept("SCHED_IDLE")),
        libc::SCHED_FIFO => return Ok(Applied::Kept("SCHED_FIFO")),
        libc::SCHED_RR => return Ok(Applied::Kept("SCHED_RR")),
        _ => return Ok(Applied::Kept("a policy other than the default")),
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sets the calling thread's (pid 0) policy; `param` is a valid `sched_param`
    // that outlives the call, which only reads it.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH | reset_on_fork, &param) } != 0 {
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

    fn set_policy(policy: i32) {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sets the calling thread's policy; `param` outlives the call.
        let set = unsafe { libc::sched_setscheduler(0, policy, &param) };
        assert_eq!(set, 0, "policy {policy}: {}", std::io::Error::last_os_error());
    }

    /// Runs `f` on a thread of its own, first set to the default policy (a test runner under
    /// SCHED_IDLE, which an unprivileged thread may not leave, fails these tests), so that
    /// no policy set leaks into other tests.
    fn on_a_new_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let f = move || {
            set_policy(libc::SCHED_OTHER);
            f()
        };
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

    /// On a new thread under `start`: what `apply` does with `batch`, and the policy after.
    fn applied_from(start: i32, batch: bool) -> (Applied, i32) {
        on_a_new_thread(move || {
            set_policy(start);
            (apply(&SchedulingConfig { batch }).expect("apply"), policy())
        })
    }

    #[test]
    fn a_thread_under_batch_already_reports_it() {
        assert_eq!(applied_from(libc::SCHED_BATCH, true), (Applied::Batch, libc::SCHED_BATCH));
    }

    #[test]
    fn turned_off_it_leaves_the_default_policy() {
        let default = libc::SCHED_OTHER;
        assert_eq!(applied_from(default, false), (Applied::Unchanged, default));
    }

    #[test]
    fn a_policy_an_operator_chose_is_kept() {
        // Any thread may choose SCHED_IDLE.
        let idle = libc::SCHED_IDLE;
        assert_eq!(applied_from(idle, true), (Applied::Kept("SCHED_IDLE"), idle));
    }

    #[test]
    fn the_flag_that_resets_forked_children_is_kept() {
        let flag = libc::SCHED_RESET_ON_FORK;
        let after = (Applied::Batch, libc::SCHED_BATCH | flag);
        assert_eq!(applied_from(libc::SCHED_OTHER | flag, true), after);
    }
}
