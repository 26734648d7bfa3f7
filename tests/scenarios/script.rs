//! The scenario file format, in the style of etcd raft's `testdata`: a file is a sequence of
//! cases; a case is one command line, a `----` line, and the expected output up to the next
//! blank line (outputs never contain blank lines; an empty output is written `ok`). Lines
//! starting with `#` and blank lines between cases are kept verbatim on rewrite.
//!
//! A command line is a verb and arguments separated by spaces. An argument is a plain word
//! (`1`, `v4`), a `key=value` pair, or a list in parentheses: `voters=(1,2,3)`,
//! `(1)(2,3)` (a partition: several lists in one word).

use std::fmt::Write as _;

/// One case of a scenario file.
#[derive(Clone, Debug)]
pub struct Case {
    /// Comment and blank lines before the command, verbatim.
    pub preamble: Vec<String>,
    /// 1-based line number of the command.
    pub line: usize,
    pub command: String,
    pub expected: String,
}

/// A parsed file: its cases and the lines after the last one.
#[derive(Clone, Debug)]
pub struct Script {
    pub cases: Vec<Case>,
    pub trailer: Vec<String>,
}

/// Parses a file; errors name the line.
pub fn parse_script(text: &str) -> Result<Script, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut cases = Vec::new();
    let mut preamble = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.trim().is_empty() || l.starts_with('#') {
            preamble.push(l.to_string());
            i += 1;
            continue;
        }
        let line = i + 1;
        if lines.get(i + 1).copied() != Some("----") {
            return Err(format!("line {line}: command {l:?} is not followed by a '----' line"));
        }
        i += 2;
        let mut expected = String::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            writeln!(expected, "{}", lines[i]).unwrap();
            i += 1;
        }
        let preamble = std::mem::take(&mut preamble);
        cases.push(Case { preamble, line, command: l.to_string(), expected });
    }
    Ok(Script { cases, trailer: preamble })
}

/// Renders a script back, with `outputs[i]` as the output of case `i`.
pub fn render_script(script: &Script, outputs: &[String]) -> String {
    let mut out = String::new();
    for (case, output) in script.cases.iter().zip(outputs) {
        for p in &case.preamble {
            writeln!(out, "{p}").unwrap();
        }
        writeln!(out, "{}\n----", case.command).unwrap();
        out.push_str(output);
        out.push('\n');
    }
    for t in &script.trailer {
        writeln!(out, "{t}").unwrap();
    }
    // Exactly one blank line separates cases; the file ends with a single newline.
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// One argument of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    Word(String),
    Pair(String, String),
    Groups(Vec<Vec<String>>),
}

/// A parsed command line.
#[derive(Clone, Debug)]
pub struct Command {
    pub verb: String,
    pub args: Vec<Arg>,
}

impl Command {
    pub fn parse(line: &str) -> Result<Command, String> {
        let mut words = line.split_whitespace();
        let verb = words.next().ok_or("empty command")?.to_string();
        let args = words.map(parse_arg).collect::<Result<_, _>>()?;
        Ok(Command { verb, args })
    }

    /// Plain words, in order.
    pub fn words(&self) -> Vec<&str> {
        self.args
            .iter()
            .filter_map(|a| match a {
                Arg::Word(w) => Some(w.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Plain words parsed as numbers (node ids, counts).
    pub fn numbers(&self) -> Result<Vec<u64>, String> {
        self.words().iter().map(|w| parse_u64(w)).collect()
    }

    /// The value of `key=value`, if given.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.args.iter().find_map(|a| match a {
            Arg::Pair(k, v) if k == key => Some(v.as_str()),
            _ => None,
        })
    }

    pub fn bool_value(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.value(key) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(format!("{key}={v}: expected true or false")),
        }
    }

    pub fn u64_value(&self, key: &str, default: u64) -> Result<u64, String> {
        self.value(key).map(parse_u64).unwrap_or(Ok(default))
    }

    /// `key=(1,2,3)` as numbers; empty if absent.
    pub fn list_value(&self, key: &str) -> Result<Vec<u64>, String> {
        match self.value(key) {
            None => Ok(Vec::new()),
            Some(v) => parse_groups(v)?.concat().iter().map(|w| parse_u64(w)).collect(),
        }
    }

    /// The parenthesised groups given as a plain argument: `(1)(2,3)`.
    pub fn groups(&self) -> Vec<Vec<String>> {
        self.args
            .iter()
            .filter_map(|a| match a {
                Arg::Groups(g) => Some(g.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Fails on any `key=value` not in `known`, so a typo cannot pass silently.
    pub fn check_keys(&self, known: &[&str]) -> Result<(), String> {
        for a in &self.args {
            if let Arg::Pair(k, _) = a {
                if !known.contains(&k.as_str()) {
                    return Err(format!("{}: unknown argument {k}=", self.verb));
                }
            }
        }
        Ok(())
    }
}

pub fn parse_u64(w: &str) -> Result<u64, String> {
    w.parse().map_err(|_| format!("{w:?} is not a number"))
}

fn parse_arg(word: &str) -> Result<Arg, String> {
    if word.starts_with('(') {
        return Ok(Arg::Groups(parse_groups(word)?));
    }
    match word.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok(Arg::Pair(k.to_string(), v.to_string())),
        _ => Ok(Arg::Word(word.to_string())),
    }
}

/// `(1,2)(3)` → `[["1","2"],["3"]]`; a bare word is one group of one.
fn parse_groups(word: &str) -> Result<Vec<Vec<String>>, String> {
    if !word.starts_with('(') {
        return Ok(vec![vec![word.to_string()]]);
    }
    let mut groups = Vec::new();
    let mut rest = word;
    while !rest.is_empty() {
        let body = rest.strip_prefix('(').ok_or(format!("bad list {word:?}"))?;
        let end = body.find(')').ok_or(format!("unclosed list {word:?}"))?;
        let items = body[..end].split(',').filter(|s| !s.is_empty());
        groups.push(items.map(str::to_string).collect());
        rest = &body[end + 1..];
    }
    Ok(groups)
}
