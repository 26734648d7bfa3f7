//! TIME: `[unix seconds, microseconds]` of the node's clock.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(_cx: &mut Ctx<'_, B>, _args: &[Bytes]) -> Job {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let now = now.unwrap_or_default();
    let seconds = Frame::text(&now.as_secs().to_string());
    let micros = Frame::text(&now.subsec_micros().to_string());
    Job::Now(Frame::Array(vec![seconds, micros]))
}
