//! WAIT numreplicas timeout: the replicas holding the connection's writes (`resp::wait`),
//! with Redis's errors for its two numbers.

use bytes::Bytes;

use super::{int_arg, tri, Ctx};
use crate::kv::number::parse_i64;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;
use crate::resp::frame::Frame;
use crate::resp::wait::Wait;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let replicas = tri!(int_arg(&args[1]));
    let Some(timeout_ms) = parse_i64(&args[2]) else {
        return Job::Now(Frame::error("ERR timeout is not an integer or out of range"));
    };
    let Ok(timeout_ms) = u64::try_from(timeout_ms) else {
        return Job::Now(Frame::error("ERR timeout is negative"));
    };
    let slots = cx.client.written.slots();
    Job::Wait(Wait { slots, replicas, timeout_ms })
}
