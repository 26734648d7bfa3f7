//! PING [message]: `PONG`, or the message as a bulk string.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::wrong_args;
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(_cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    match args {
        [_] => Job::Now(Frame::Simple("PONG".into())),
        [_, message] => Job::Now(Frame::Bulk(message.clone())),
        _ => Job::Now(wrong_args("ping")),
    }
}
