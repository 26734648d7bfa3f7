//! Active expiry on a group's leader. Once per `ShardConfig::expiry_step` the leader walks
//! one page of its group's records (`kv::expiry::expired_page`, at most
//! `EXPIRY_ROWS_PER_STEP`) off the replica's thread, over redb's latest committed state, and
//! proposes one log entry of `DeleteExpired` for the expired keys it found (at most
//! `EXPIRY_KEYS_PER_ENTRY`). The next step starts where the page ended; after the group's
//! last slot the walk starts over. A page that held all it may is followed at once
//! (`EXPIRY_BACKLOG_PAUSE`); a whole pass that found fewer than `EXPIRY_BUSY_PASS_PERCENT`
//! of its records expired rests `EXPIRY_QUIET_PASS_REST_STEPS` steps.
//!
//! The page is read without the applied but undurable records (`undurable`): those it
//! misses are found by a later pass, and a record it reads that has since been written
//! again is kept by the entry's own check at apply. The entry carries the leader's clock at
//! the walk; every replica applies it alike. The walk moves on only once a page's entry
//! applied (or it found none); a replica that leads again resumes where its walk stopped.
//!
//! Must never: have more than one step (a walk, or its entry) in flight, walk on a follower
//! or the metadata group, or walk slots the group no longer owns.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::kv::expiry::{delete_request, deleted, expired_page, ExpiredPage, PageBounds};
use crate::kv::meta::META_GROUP;
use crate::shard::actor::ShardActor;
use crate::shard::api::ShardResult;
use crate::shard::limits::{
    EXPIRY_BACKLOG_PAUSE, EXPIRY_BUSY_PASS_PERCENT, EXPIRY_KEYS_PER_ENTRY,
    EXPIRY_KEY_BYTES_PER_ENTRY, EXPIRY_QUIET_PASS_REST_STEPS, EXPIRY_ROWS_PER_STEP,
};
use crate::storage::group_snapshot::latest_kv_view;

/// What one step may look at and delete.
const BOUNDS: PageBounds = PageBounds {
    rows_max: EXPIRY_ROWS_PER_STEP,
    keys_max: EXPIRY_KEYS_PER_ENTRY,
    key_bytes_max: EXPIRY_KEY_BYTES_PER_ENTRY,
};

/// A leader's walk over its group's records.
#[derive(Default)]
pub(crate) struct Expiry {
    /// The next page starts after this record; `None`: at the group's first slot.
    cursor: Option<(u16, Bytes)>,
    /// A step's walk or its entry is in flight.
    busy: bool,
    /// No step starts before this.
    next_at: Option<Instant>,
    /// Records the pass under way walked, and the expired ones it found.
    pass_rows: u64,
    pass_expired: u64,
}

impl Expiry {
    /// Ends the step in flight; the next starts `wait` from now.
    fn rest(&mut self, wait: Duration) {
        self.busy = false;
        self.next_at = Some(Instant::now() + wait);
    }

    /// Ends a step whose `page` is done with (its entry applied, or it found nothing): the
    /// walk moves past it, and the next step starts soon after a `full` page, a whole
    /// `step` later otherwise, or a rest later after a quiet pass.
    fn walked(&mut self, page: &ExpiredPage, full: bool, step: Duration) {
        self.pass_rows += page.rows as u64;
        self.pass_expired += page.keys.len() as u64;
        // A pass over no record (an empty group) is quiet too.
        let quiet = self.pass_rows == 0
            || self.pass_expired.saturating_mul(100)
                < self.pass_rows.saturating_mul(EXPIRY_BUSY_PASS_PERCENT);
        let wait = if full {
            EXPIRY_BACKLOG_PAUSE
        } else if page.resume.is_none() && quiet {
            step.saturating_mul(EXPIRY_QUIET_PASS_REST_STEPS)
        } else {
            step
        };
        if page.resume.is_none() {
            (self.pass_rows, self.pass_expired) = (0, 0);
        }
        self.cursor = page.resume.clone();
        self.rest(wait);
    }
}

/// The unix clock in ms: the time of an expiry entry, as a client's write carries its
/// node's.
fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl ShardActor {
    /// Starts a step of the active expiry if one is due and this replica leads the group.
    pub(crate) fn expire_when_due(&mut self, ctx: &mut Context<ShardActor>) {
        let Some(step) = self.cfg.expiry_step else {
            return;
        };
        let due = self.expiry.next_at.is_none_or(|at| Instant::now() >= at);
        if !due
            || self.expiry.busy
            || self.cfg.group == META_GROUP
            || !self.initialized
            || self.retiring
            || self.removed
            || self.refusal().is_some()
            || self.raw.lead_transferee().is_some()
            || self.installing_snapshot()
        {
            return;
        }
        let group = self.cfg.group;
        let slots = self.range.range.first..=self.range.range.last;
        // A split since the last step may have taken the cursor's slot. The cursor stays
        // until the page's entry applied.
        let after = self.expiry.cursor.clone().filter(|(slot, _)| slots.contains(slot));
        let view = match latest_kv_view(&self.deps.db, group) {
            Ok(view) => view,
            Err(e) => {
                warn!(group = %group, error = %e, "active expiry: no view of the records");
                self.expiry.rest(step);
                return;
            }
        };
        let now_ms = unix_ms();
        self.expiry.busy = true;
        let walked = tokio::task::spawn_blocking(move || {
            let after = after.as_ref().map(|(slot, key)| (*slot, &key[..]));
            let page = expired_page(&view, slots, after, now_ms, &BOUNDS);
            view.check().map(|()| page).map_err(|e| e.to_string())
        });
        ctx.spawn(fut::wrap_future(walked).map(move |walked, act: &mut ShardActor, ctx| {
            let page = walked.map_err(|e| e.to_string()).and_then(|page| page);
            act.expire_page(page, now_ms, step, ctx);
        }));
    }

    /// Proposes the deletion of the expired keys `page` found, and sets when the next
    /// step starts.
    fn expire_page(
        &mut self,
        page: Result<ExpiredPage, String>,
        now_ms: u64,
        step: Duration,
        ctx: &mut Context<ShardActor>,
    ) {
        let group = self.cfg.group;
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                warn!(group = %group, error = %e, "active expiry: walking the records failed");
                self.expiry.rest(step);
                return;
            }
        };
        let full = page.is_full(&BOUNDS);
        if page.keys.is_empty() {
            self.expiry.walked(&page, full, step);
            return;
        }
        let (tx, rx) = oneshot::channel::<ShardResult>();
        self.propose_write(delete_request(&page.keys, now_ms), tx);
        self.drive_soon(ctx);
        let expired = self.cfg.metrics.expired_keys.clone();
        ctx.spawn(fut::wrap_future(rx).map(move |answer, act: &mut ShardActor, _ctx| {
            match answer {
                Ok(Ok(reply)) => {
                    expired.inc_by(deleted(&reply));
                    act.expiry.walked(&page, full, step);
                }
                // Not leader any more, or too busy: the walk stays where it was, for this
                // leader's next step or the replica's next leadership.
                Ok(Err(e)) => {
                    debug!(group = %group, error = %e, "active expiry: not applied");
                    act.expiry.rest(step);
                }
                Err(_) => act.expiry.rest(step),
            }
        }));
    }
}
