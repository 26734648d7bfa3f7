//! COPY source destination [DB destination-db] [REPLACE]: both keys in one slot
//! (`-CROSSSLOT`); only database 0 exists, and another answers as Redis Cluster does.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{int_arg, is, syntax_error, tri};
use crate::kv::{KvCommand, KvError};
use crate::resp::frame::Frame;

/// Redis's default `databases`: the indexes Redis Cluster's COPY takes for a database
/// (answering that it copies to none but 0), past which it answers that none is there.
const DATABASES: i64 = 16;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    // The keys first, as Redis Cluster routes them before the command reads a word.
    let slot = tri!(cx.one_slot(&args[1..3]));
    let (mut replace, mut db) = (false, 0);
    let mut at = 3;
    while at < args.len() {
        if is(&args[at], "replace") {
            replace = true;
        } else if is(&args[at], "db") && at + 1 < args.len() {
            db = tri!(int_arg(&args[at + 1]));
            if i32::try_from(db).is_err() {
                return Job::Now(Frame::error(
                    "ERR value is out of range, value must between -2147483648 and 2147483647",
                ));
            }
            if !(0..DATABASES).contains(&db) {
                return Job::Now(Frame::error("ERR DB index is out of range"));
            }
            at += 1;
        } else {
            return Job::Now(syntax_error());
        }
        at += 1;
    }
    if db != 0 {
        return Job::Now(Frame::error(
            "ERR Copying to another database is not allowed in cluster mode",
        ));
    }
    let (source, dest) = (args[1].clone(), args[2].clone());
    if source == dest {
        return Job::Now(Frame::from(KvError::SameObject));
    }
    cx.write(slot, KvCommand::Copy { source, dest, replace })
}
