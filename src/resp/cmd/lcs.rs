//! LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]: both keys in one slot
//! (`-CROSSSLOT`); the table may take `proto-max-bulk-len` bytes, as in Redis.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::{Job, Merge};

use super::{int_arg, is, syntax_error, tri};
use crate::kv::bits::LcsAnswer;
use crate::kv::read::ReadCommand;
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    // The keys first, as Redis Cluster routes them before the command reads a word.
    let slot = tri!(cx.one_slot(&args[1..3]));
    let (mut len, mut idx, mut with_match_len, mut min_match_len) = (false, false, false, 0);
    let mut at = 3;
    while at < args.len() {
        let word = &args[at];
        if is(word, "idx") {
            idx = true;
        } else if is(word, "len") {
            len = true;
        } else if is(word, "withmatchlen") {
            with_match_len = true;
        } else if is(word, "minmatchlen") && at + 1 < args.len() {
            min_match_len = tri!(int_arg(&args[at + 1])).max(0) as u64;
            at += 1;
        } else {
            return Job::Now(syntax_error());
        }
        at += 1;
    }
    if idx && len {
        return Job::Now(Frame::error(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    let answer = match (idx, len) {
        (true, _) => LcsAnswer::Ranges { min_match_len, with_match_len },
        (false, true) => LcsAnswer::Len,
        (false, false) => LcsAnswer::Sequence,
    };
    let keys = args[1..3].to_vec();
    let table_bytes_max = cx.shared.options.limits.bulk_bytes_max;
    let merge = if idx { Merge::Map } else { Merge::One };
    cx.read_merged(slot, ReadCommand::Lcs { keys, answer, table_bytes_max }, merge)
}
