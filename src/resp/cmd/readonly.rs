//! READONLY / READWRITE: for cluster clients that read from replicas. On a READONLY
//! cluster-aware connection, a node with a replica of a key's group serves reads of that
//! key instead of answering `-MOVED` to the leader (`Ctx::moved`), as a Redis Cluster
//! replica does; the read stays linearizable (ReadIndex through the leader). Writes move
//! to the leader either way.

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
