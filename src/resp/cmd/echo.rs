//! ECHO message.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(_cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    Job::Now(Frame::Bulk(args[1].clone()))
}
