//! RESET: back to a fresh connection's state (RESP2, no name, not authenticated when a
//! password is required, the server's redirect mode, no transaction, no watched key),
//! answered `+RESET`.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use crate::resp::frame::{Frame, Proto};

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, _args: &[Bytes]) -> Job {
    let client = &mut *cx.client;
    client.proto = Proto::Resp2;
    client.name = None;
    client.readonly = false;
    client.redirects = cx.shared.options.cluster_redirects;
    client.authenticated = cx.shared.options.requirepass.is_empty();
    client.multi = None;
    client.watched.clear();
    client.subscriptions = None;
    client.monitor = None;
    client.mailbox = None;
    client.entry.show_monitor(false);
    client.entry.show_subscriptions([0; 3]);
    client.entry.show(None, "reset", Proto::Resp2);
    Job::Now(Frame::Simple("RESET".into()))
}
