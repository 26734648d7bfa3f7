//! SELECT index: only database 0 exists (as in Redis Cluster).

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{int_arg, tri};
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(_cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    match tri!(int_arg(&args[1])) {
        0 => Job::Now(Frame::ok()),
        _ => Job::Now(Frame::error("ERR DB index is out of range")),
    }
}
