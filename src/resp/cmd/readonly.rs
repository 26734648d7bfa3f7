//! READONLY / READWRITE: accepted for cluster clients. Reads are linearizable on any
//! node (ReadIndex through the leader), so READONLY changes nothing but CLIENT LIST.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::is;
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    cx.client.readonly = is(&args[0], "readonly");
    Job::Now(Frame::ok())
}
