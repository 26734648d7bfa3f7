//! COMMAND, COMMAND COUNT, COMMAND INFO [name ...], COMMAND DOCS [name ...], COMMAND
//! LIST [FILTERBY ...]: the command table as Redis 7 shapes it.

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
        "count" if args.len() != 2 => super::wrong_args("command|count"),
        "count" => Frame::Int(SPECS.len() as i64),
        "list" => match list(&args[2..]) {
            Ok(names) => Frame::Array(names.into_iter().map(Frame::text).collect()),
            Err(e) => e,
        },
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

/// COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]: the names of
/// the commands that pass the filter (there are no modules). Redis also lists subcommands
/// (`client|kill`); the table here has none.
fn list(args: &[Bytes]) -> Result<Vec<&'static str>, Frame> {
    let names = SPECS.iter();
    match args {
        [] => Ok(names.map(|s| s.name).collect()),
        [filterby, kind, value] if lower(filterby) == "filterby" => match lower(kind).as_str() {
            "module" => Ok(Vec::new()),
            "aclcat" => {
                let cat = format!("@{}", lower(value));
                let in_cat = |s: &&Spec| s.acl_categories.contains(&cat.as_str());
                Ok(names.filter(in_cat).map(|s| s.name).collect())
            }
            // Case-insensitive, as Redis matches it (names here are lower case).
            "pattern" => {
                let pattern = lower(value);
                Ok(names
                    .filter(|s| crate::kv::glob::glob_match(pattern.as_bytes(), s.name.as_bytes()))
                    .map(|s| s.name)
                    .collect())
            }
            _ => Err(super::syntax_error()),
        },
        _ => Err(super::syntax_error()),
    }
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
        Frame::Set(
            spec.acl_categories
                .iter()
                .map(|c| Frame::Simple((*c).into()))
                .collect(),
        ),
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
