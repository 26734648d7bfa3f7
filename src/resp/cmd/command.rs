//! COMMAND, COMMAND COUNT, COMMAND INFO [name ...], COMMAND DOCS [name ...], COMMAND
//! LIST: the command table as Redis 7 shapes it.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{lower, spec_of, unknown_subcommand, Spec, SPECS};
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(_cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let Some(sub) = args.get(1).map(|a| lower(a)) else {
        return Job::Now(Frame::Array(SPECS.iter().map(info).collect()));
    };
    let named = |args: &[Bytes]| -> Vec<Option<&'static Spec>> {
        args.iter().map(|name| spec_of(&lower(name))).collect()
    };
    Job::Now(match sub.as_str() {
        "count" => Frame::Int(SPECS.len() as i64),
        "list" => Frame::Array(SPECS.iter().map(|s| Frame::text(s.name)).collect()),
        "info" if args.len() == 2 => Frame::Array(SPECS.iter().map(info).collect()),
        "info" => Frame::Array(
            named(&args[2..])
                .into_iter()
                .map(|s| s.map_or(Frame::Null, info))
                .collect(),
        ),
        "docs" => {
            let specs: Vec<&Spec> = match args.len() {
                2 => SPECS.iter().collect(),
                _ => named(&args[2..]).into_iter().flatten().collect(),
            };
            Frame::Map(
                specs
                    .into_iter()
                    .map(|s| (Frame::text(s.name), docs(s)))
                    .collect(),
            )
        }
        _ => unknown_subcommand(&args[1], "command"),
    })
}

/// COMMAND INFO's ten-element entry.
fn info(spec: &Spec) -> Frame {
    Frame::Array(vec![
        Frame::text(spec.name),
        Frame::Int(spec.arity),
        Frame::Set(
            spec.flags
                .iter()
                .map(|f| Frame::Simple((*f).into()))
                .collect(),
        ),
        Frame::Int(spec.first_key),
        Frame::Int(spec.last_key),
        Frame::Int(spec.step),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        Frame::Array(Vec::new()),
        Frame::Array(Vec::new()),
    ])
}

fn docs(spec: &Spec) -> Frame {
    Frame::Map(vec![
        (Frame::text("summary"), Frame::text(spec.summary)),
        (Frame::text("since"), Frame::text("1.0.0")),
        (Frame::text("group"), Frame::text(spec.group)),
    ])
}
