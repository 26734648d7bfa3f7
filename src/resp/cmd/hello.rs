//! HELLO [protover [AUTH username password] [SETNAME name]]: switches RESP2/RESP3,
//! optionally authenticates and names the connection, and answers the server map.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{auth, client::valid_name, is};
use crate::kv::number::parse_i64;
use crate::resp::frame::{Frame, Proto};

const NOAUTH_HELLO: &str = "NOAUTH HELLO must be called with the client already \
     authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to \
     authenticate the client and select the RESP protocol version at the same time";

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let mut proto = cx.client.proto;
    if let Some(version) = args.get(1) {
        proto = match parse_i64(version) {
            Some(2) => Proto::Resp2,
            Some(3) => Proto::Resp3,
            Some(_) => return Job::Now(Frame::error("NOPROTO unsupported protocol version")),
            None => {
                let text = "ERR Protocol version is not an integer or out of range";
                return Job::Now(Frame::error(text));
            }
        };
    }
    let mut name = None;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - i - 1;
        if is(&args[i], "auth") && more >= 2 {
            if let Err(frame) = auth::check(cx, &args[i + 1], &args[i + 2]) {
                return Job::Now(frame);
            }
            i += 3;
        } else if is(&args[i], "setname") && more >= 1 {
            if !valid_name(&args[i + 1]) {
                return Job::Now(super::client::bad_name());
            }
            name = Some(args[i + 1].clone());
            i += 2;
        } else {
            let option = String::from_utf8_lossy(&args[i]).into_owned();
            return Job::Now(Frame::error(format!(
                "ERR Syntax error in HELLO option '{option}'"
            )));
        }
    }
    if !cx.client.authenticated {
        return Job::Now(Frame::error(NOAUTH_HELLO));
    }
    if let Some(name) = name {
        cx.client.name = (!name.is_empty()).then_some(name);
    }
    cx.client.proto = proto;
    cx.client
        .entry
        .show(cx.client.name.as_ref(), "hello", proto);
    Job::Now(server_map(cx, proto))
}

fn server_map<B: Backend>(cx: &Ctx<'_, B>, proto: Proto) -> Frame {
    let mode = if cx.client.redirects {
        "cluster"
    } else {
        "standalone"
    };
    Frame::Map(vec![
        (Frame::text("server"), Frame::text("redis")),
        (
            Frame::text("version"),
            Frame::text(super::info::REDIS_VERSION),
        ),
        (Frame::text("proto"), Frame::Int(proto.number())),
        (Frame::text("id"), Frame::Int(cx.client.id as i64)),
        (Frame::text("mode"), Frame::text(mode)),
        (Frame::text("role"), Frame::text("master")),
        (Frame::text("modules"), Frame::Array(Vec::new())),
    ])
}
