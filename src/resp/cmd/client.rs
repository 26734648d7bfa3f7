//! CLIENT ID | SETNAME | GETNAME | INFO | LIST | KILL | SETINFO | REDIRECTS ON|OFF.
//! REDIRECTS is shardkv's own: it switches this connection to cluster-aware replies
//! (`-MOVED`, `-CROSSSLOT`) or back.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{int_arg, is, lower, syntax_error, tri, unknown_subcommand, wrong_args};
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let sub = lower(&args[1]);
    let arity_ok = match sub.as_str() {
        "id" | "getname" | "info" => args.len() == 2,
        "setname" | "redirects" => args.len() == 3,
        "setinfo" => args.len() == 4,
        "list" => args.len() >= 2,
        "kill" => args.len() >= 3,
        _ => return Job::Now(unknown_subcommand(&args[1], "client")),
    };
    if !arity_ok {
        return Job::Now(wrong_args(&format!("client|{sub}")));
    }
    let client = &mut *cx.client;
    Job::Now(match sub.as_str() {
        "id" => Frame::Int(client.id as i64),
        "getname" => client.name.clone().map_or(Frame::Null, Frame::Bulk),
        "setname" if !valid_name(&args[2]) => bad_name(),
        "setname" => {
            client.name = Some(args[2].clone()).filter(|n| !n.is_empty());
            client
                .entry
                .show(client.name.as_ref(), "client|setname", client.proto);
            Frame::ok()
        }
        "setinfo" => Frame::ok(),
        "info" => Frame::Verbatim(format!("{}\n", client.entry.line())),
        "list" => {
            let lines: Vec<String> = cx.shared.clients.all().iter().map(|c| c.line()).collect();
            Frame::Verbatim(lines.iter().map(|l| format!("{l}\n")).collect())
        }
        "redirects" if is(&args[2], "on") || is(&args[2], "off") => {
            client.redirects = is(&args[2], "on");
            Frame::ok()
        }
        "redirects" => syntax_error(),
        _ => tri!(kill(cx, &args[2..])),
    })
}

/// CLIENT KILL addr (old form) or CLIENT KILL [ID id] [ADDR addr] [SKIPME yes|no].
fn kill<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Result<Frame, Frame> {
    let clients = cx.shared.clients.all();
    if let [addr] = args {
        let target = clients
            .iter()
            .find(|c| c.addr.to_string().as_bytes() == &addr[..]);
        let target = target.ok_or_else(|| Frame::error("ERR No such client"))?;
        target.kill();
        return Ok(Frame::ok());
    }
    let (mut id, mut addr, mut skip_me) = (None, None, true);
    for pair in args.chunks(2) {
        let [name, value] = pair else {
            return Err(syntax_error());
        };
        match () {
            _ if is(name, "id") => id = Some(int_arg(value)?),
            _ if is(name, "addr") => addr = Some(String::from_utf8_lossy(value).into_owned()),
            _ if is(name, "skipme") && (is(value, "yes") || is(value, "no")) => {
                skip_me = is(value, "yes")
            }
            _ => return Err(syntax_error()),
        }
    }
    let mut killed = 0;
    for c in clients {
        let chosen = id.is_none_or(|id| c.id as i64 == id)
            && addr.as_ref().is_none_or(|a| *a == c.addr.to_string())
            && !(skip_me && c.id == cx.client.id);
        if chosen {
            c.kill();
            killed += 1;
        }
    }
    Ok(Frame::Int(killed))
}

/// Redis refuses names with spaces, newlines or other special characters.
pub fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

pub fn bad_name() -> Frame {
    Frame::error("ERR Client names cannot contain spaces, newlines or special characters.")
}
