//! CLIENT ID | SETNAME | GETNAME | INFO | LIST [TYPE|ID] | KILL | SETINFO | REDIRECTS ON|OFF.
//! REDIRECTS is shardkv's own: it switches this connection to cluster-aware replies
//! (`-MOVED`, `-CROSSSLOT`) or back.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{clip, int_arg, is, lower, syntax_error, tri, unknown_subcommand, wrong_args};
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
        "list" => tri!(list(cx, &args[2..])),
        "redirects" if is(&args[2], "on") || is(&args[2], "off") => {
            client.redirects = is(&args[2], "on");
            Frame::ok()
        }
        "redirects" => syntax_error(),
        _ => tri!(kill(cx, &args[2..])),
    })
}

/// CLIENT LIST [TYPE type | ID id [id ...]]. Every connection here is of type `normal`.
fn list<B: Backend>(cx: &Ctx<'_, B>, args: &[Bytes]) -> Result<Frame, Frame> {
    let clients = cx.shared.clients.all();
    let chosen: Vec<_> = match args {
        [] => clients.iter().collect(),
        [name, kind] if is(name, "type") => {
            let kind = client_type(kind)?;
            clients.iter().filter(|c| kind == Some(c.is_pubsub())).collect()
        }
        [name, ids @ ..] if is(name, "id") && !ids.is_empty() => {
            let mut chosen = Vec::new();
            for id in ids {
                let id = int_arg(id).map_err(|_| Frame::error("ERR Invalid client ID"))?;
                chosen.extend(clients.iter().filter(|c| c.id as i64 == id));
            }
            chosen
        }
        _ => return Err(syntax_error()),
    };
    Ok(Frame::Verbatim(chosen.iter().map(|c| format!("{}\n", c.line())).collect()))
}

/// Which connections Redis client type `name` names: `Some(false)` those not subscribed to
/// anything (`normal`), `Some(true)` the subscribed ones (`pubsub`), `None` none (shardkv
/// has no replication clients); an unknown type is an error, as in Redis.
fn client_type(name: &[u8]) -> Result<Option<bool>, Frame> {
    match lower(name).as_str() {
        "normal" => Ok(Some(false)),
        "pubsub" => Ok(Some(true)),
        "master" | "slave" | "replica" => Ok(None),
        _ => Err(Frame::error(format!("ERR Unknown client type '{}'", clip(name)))),
    }
}

/// CLIENT KILL addr (old form) or CLIENT KILL [ID id] [TYPE type] [ADDR addr] [LADDR addr]
/// [USER user] [SKIPME yes|no].
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
    let (mut id, mut addr, mut laddr, mut skip_me) = (None, None, None, true);
    let mut kind: Option<Option<bool>> = None;
    for pair in args.chunks(2) {
        let [name, value] = pair else {
            return Err(syntax_error());
        };
        match () {
            _ if is(name, "id") => {
                let bad = || Frame::error("ERR client-id should be greater than 0");
                id = Some(int_arg(value).ok().filter(|id| *id > 0).ok_or_else(bad)?);
            }
            _ if is(name, "type") => kind = Some(client_type(value)?),
            _ if is(name, "user") && is(value, "default") => {}
            _ if is(name, "user") => {
                return Err(Frame::error(format!("ERR No such user '{}'", clip(value))))
            }
            _ if is(name, "addr") => addr = Some(String::from_utf8_lossy(value).into_owned()),
            _ if is(name, "laddr") => laddr = Some(String::from_utf8_lossy(value).into_owned()),
            _ if is(name, "skipme") && (is(value, "yes") || is(value, "no")) => {
                skip_me = is(value, "yes")
            }
            _ => return Err(syntax_error()),
        }
    }
    let mut killed = 0;
    for c in clients {
        let chosen = kind.is_none_or(|kind| kind == Some(c.is_pubsub()))
            && id.is_none_or(|id| c.id as i64 == id)
            && addr.as_ref().is_none_or(|a| *a == c.addr.to_string())
            && laddr.as_ref().is_none_or(|a| c.laddr.is_some_and(|l| *a == l.to_string()))
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
