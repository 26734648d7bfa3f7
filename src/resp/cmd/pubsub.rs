//! SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, SSUBSCRIBE, SUNSUBSCRIBE, PUBLISH,
//! SPUBLISH and PUBSUB: Redis's Pub/Sub over the whole cluster (`resp::pubsub`).
//!
//! A message published on any node reaches the subscribers of every node, as in Redis
//! Cluster, and PUBLISH answers how many clients of this node received it (Redis Cluster's
//! answer too). Shard channels are a name space of their own, routed by their slot: a
//! cluster-aware connection is moved to the slot's master, as in Redis Cluster; any node
//! delivers them to its own shard subscribers. PUBSUB answers for this node's subscribers,
//! as a Redis Cluster node does.
//!
//! Confirmations answer each name in turn (`Frame::Several`), as pushes under RESP3.
//! Narrower than Redis: Pub/Sub commands cannot be queued in a transaction (they would
//! run when queued, not at EXEC); a connection subscribes to at most
//! `pubsub::SUBSCRIPTIONS_PER_CLIENT_MAX` names; a message larger than
//! `limits.write_bytes_max` is refused, since it crosses to the other nodes in one frame.

use bytes::Bytes;

use super::{clip, lower, tri, wrong_args, Ctx};
use crate::resp::backend::Backend;
use crate::resp::exec::Job;
use crate::resp::frame::Frame;
use crate::resp::pubsub::{Kind, Publication, Subscriptions, SUBSCRIPTIONS_PER_CLIENT_MAX};

/// The refusal of a Pub/Sub command inside MULTI (`multi::SHARDKV_REFUSALS` names it, so
/// the transaction is discarded).
pub const IN_MULTI: &str = "ERR Pub/Sub commands cannot be queued in a transaction";

/// How PUBLISH's refusal of a message past `limits.write_bytes_max` begins (a refusal
/// before it runs: `multi::SHARDKV_REFUSALS`).
pub const TOO_LARGE: &str = "ERR message of ";

/// The commands a RESP2 connection takes while it is subscribed.
pub fn allowed_when_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe"
            | "unsubscribe"
            | "psubscribe"
            | "punsubscribe"
            | "ssubscribe"
            | "sunsubscribe"
            | "ping"
            | "quit"
            | "reset"
    )
}

/// Redis's refusal of any other command then; `args`: the command's, which name the
/// subcommand of a container (`pubsub|numpat`).
pub fn not_allowed_when_subscribed(name: &str, args: &[Bytes]) -> Frame {
    let name = match args.get(1) {
        Some(sub) if super::help::is_container(name) => format!("{name}|{}", lower(sub)),
        _ => name.to_string(),
    };
    Frame::error(format!(
        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
         RESET are allowed in this context"
    ))
}

/// PING on a subscribed RESP2 connection: `pong` and the message, as an array.
pub fn ping_when_subscribed(args: &[Bytes]) -> Frame {
    let message = args.get(1).cloned().unwrap_or_default();
    Frame::Array(vec![Frame::text("pong"), Frame::Bulk(message)])
}

fn kind_of(name: &str) -> Kind {
    match name {
        "psubscribe" | "punsubscribe" => Kind::Pattern,
        "ssubscribe" | "sunsubscribe" => Kind::Shard,
        _ => Kind::Channel,
    }
}

/// The count a confirmation carries: shard channels count apart, as in Redis 7.
fn count(subscriptions: &Subscriptions, kind: Kind) -> usize {
    match kind {
        Kind::Shard => subscriptions.len(Kind::Shard),
        _ => subscriptions.len(Kind::Channel) + subscriptions.len(Kind::Pattern),
    }
}

fn confirmation(kind: Kind, subscribe: bool, name: Option<&Bytes>, count: usize) -> Frame {
    Frame::Push(vec![
        Frame::text(kind.confirmation(subscribe)),
        name.map_or(Frame::Null, |name| Frame::Bulk(name.clone())),
        Frame::Int(count as i64),
    ])
}

/// What a (un)subscribe names, once it may run: not in MULTI, and shard channels of one
/// slot (`-CROSSSLOT` else, as Redis Cluster answers on any connection).
fn checked_kind<B: Backend>(cx: &Ctx<'_, B>, name: &str, args: &[Bytes]) -> Result<Kind, Frame> {
    if cx.client.multi.is_some() {
        return Err(Frame::error(IN_MULTI));
    }
    let kind = kind_of(name);
    if kind == Kind::Shard {
        cx.one_slot(&args[1..])?;
    }
    Ok(kind)
}

/// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE channel [channel ...].
pub fn prepare_subscribe<B: Backend>(cx: &mut Ctx<'_, B>, name: &str, args: &[Bytes]) -> Job {
    let kind = tri!(checked_kind(cx, name, args));
    let hub = cx.backend.hub().clone();
    let mailbox = cx.client.mailbox(cx.shared.options.limits.client_output_bytes_max);
    let id = cx.client.id;
    let subscriptions = cx
        .client
        .subscriptions
        .get_or_insert_with(|| Box::new(Subscriptions::new(hub, id, mailbox)));
    let mut frames = Vec::with_capacity(args.len() - 1);
    for channel in &args[1..] {
        if !subscriptions.add(kind, channel) {
            frames.push(Frame::error(format!(
                "ERR a connection subscribes to at most {SUBSCRIPTIONS_PER_CLIENT_MAX} \
                 channels, patterns and shard channels"
            )));
            break;
        }
        frames.push(confirmation(kind, true, Some(channel), count(subscriptions, kind)));
    }
    show(cx);
    Job::Now(Frame::Several(frames))
}

/// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE [channel ...]: the names given, or every one of
/// the kind (in sorted order); none subscribed answers one confirmation with a nil name.
pub fn prepare_unsubscribe<B: Backend>(cx: &mut Ctx<'_, B>, name: &str, args: &[Bytes]) -> Job {
    let kind = tri!(checked_kind(cx, name, args));
    let mut subscriptions = cx.client.subscriptions.as_mut();
    let names = match (&args[1..], &subscriptions) {
        ([], Some(subscriptions)) => subscriptions.names(kind),
        (given, _) => given.to_vec(),
    };
    let mut count = |channel: Option<&Bytes>| match subscriptions.as_deref_mut() {
        Some(subscriptions) => {
            if let Some(channel) = channel {
                subscriptions.remove(kind, channel);
            }
            count(subscriptions, kind)
        }
        None => 0,
    };
    if names.is_empty() {
        return Job::Now(confirmation(kind, false, None, count(None)));
    }
    let mut frames = Vec::with_capacity(names.len());
    for channel in &names {
        frames.push(confirmation(kind, false, Some(channel), count(Some(channel))));
    }
    show(cx);
    Job::Now(Frame::Several(frames))
}

/// Records the connection's subscription counts for CLIENT LIST.
fn show<B: Backend>(cx: &mut Ctx<'_, B>) {
    let counts = cx.client.subscriptions.as_ref().map_or([0; 3], |s| Kind::ALL.map(|k| s.len(k)));
    cx.client.entry.show_subscriptions(counts);
}

/// PUBLISH and SPUBLISH channel message: delivered here and relayed to every other node;
/// answers how many clients here received it.
pub fn prepare_publish<B: Backend>(cx: &mut Ctx<'_, B>, name: &str, args: &[Bytes]) -> Job {
    if cx.client.multi.is_some() {
        return Job::Now(Frame::error(IN_MULTI));
    }
    let bytes = super::argument_bytes(args);
    let bytes_max = cx.shared.options.limits.write_bytes_max;
    if bytes > bytes_max {
        return Job::Now(Frame::error(format!(
            "{TOO_LARGE}{bytes} bytes (with its channel) exceeds the largest a node \
             relays to the others, {bytes_max} bytes (limits.write_bytes_max); it was not \
             published"
        )));
    }
    // Copied: a subscriber that reads slowly must not hold the publisher's read buffer.
    let channel = Bytes::copy_from_slice(&args[1]);
    let message = Bytes::copy_from_slice(&args[2]);
    let publication = Publication { shard: name == "spublish", channel, message };
    cx.backend.publish_to_peers(&publication);
    let received = cx.backend.hub().deliver(publication);
    Job::Now(Frame::Int(received as i64))
}

/// PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT | SHARDCHANNELS [pattern] |
/// SHARDNUMSUB [shardchannel ...], for this node's subscribers.
pub fn prepare_pubsub<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let hub = cx.backend.hub();
    let sub = lower(&args[1]);
    let rest = &args[2..];
    let names = |kind, rest: &[Bytes]| {
        let pattern = rest.first().map(|p| &p[..]);
        Frame::Array(hub.names(kind, pattern).into_iter().map(Frame::Bulk).collect())
    };
    let numbers = |kind, rest: &[Bytes]| {
        let pairs = rest.iter().flat_map(|channel| {
            [Frame::Bulk(channel.clone()), Frame::Int(hub.subscribers(kind, channel) as i64)]
        });
        Frame::Array(pairs.collect())
    };
    let frame = match (sub.as_str(), rest.len()) {
        ("channels", 0 | 1) => names(Kind::Channel, rest),
        ("shardchannels", 0 | 1) => names(Kind::Shard, rest),
        ("numsub", _) => numbers(Kind::Channel, rest),
        ("shardnumsub", _) => numbers(Kind::Shard, rest),
        ("numpat", 0) => Frame::Int(hub.count(Kind::Pattern) as i64),
        ("numpat", _) => wrong_args("pubsub|numpat"),
        ("channels" | "shardchannels", _) => Frame::error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
            clip(&args[1])
        )),
        _ => super::unknown_subcommand(&args[1], "pubsub"),
    };
    Job::Now(frame)
}
