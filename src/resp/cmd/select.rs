//! SELECT index: only database 0 exists, and any other answers as Redis Cluster does.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{int_arg, tri};
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(_cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    match tri!(int_arg(&args[1])) {
        0 => Job::Now(Frame::ok()),
        _ => Job::Now(Frame::error("ERR SELECT is not allowed in cluster mode")),
    }
}
