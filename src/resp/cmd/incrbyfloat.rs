//! INCRBYFLOAT key increment: the new value as a bulk string (also under RESP3, as
//! Redis 7 answers it).

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use crate::kv::number::parse_f64;
use crate::kv::{key_slot, KvCommand, KvError};
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let Some(delta) = parse_f64(&args[2]) else {
        return Job::Now(Frame::from(KvError::NotFloat));
    };
    let key = args[1].clone();
    cx.write(key_slot(&key), KvCommand::IncrByFloat { key, delta })
}
