//! QUIT: `+OK`, then the connection closes.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(_cx: &mut Ctx<'_, B>, _args: &[Bytes]) -> Job {
    Job::Close(Frame::ok())
}
