//! Reply frames and their RESP2/RESP3 encoding. Owns the wire form of every answer: maps
//! flatten to arrays, doubles and verbatim strings become bulk strings, and null becomes
//! `$-1` under RESP2. Never decides what a command answers.

use bytes::{BufMut, Bytes, BytesMut};

use crate::kv::number::format_f64;
use crate::kv::{KvError, Reply};

/// The protocol a connection speaks (HELLO switches it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Resp2,
    Resp3,
}

impl Proto {
    pub fn number(self) -> i64 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }
}

/// One reply, before encoding.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    Simple(String),
    /// The error text without the leading `-` (`ERR syntax error`).
    Error(String),
    Int(i64),
    Bulk(Bytes),
    Null,
    /// A null array: `*-1` under RESP2 (EXEC of a transaction a WATCH aborted), `_` under
    /// RESP3.
    NullArray,
    Double(f64),
    Bool(bool),
    Array(Vec<Frame>),
    Map(Vec<(Frame, Frame)>),
    Set(Vec<Frame>),
    /// Plain text (`=…txt:` under RESP3, a bulk string under RESP2).
    Verbatim(String),
    /// Out-of-band data (Pub/Sub's messages and confirmations): `>` under RESP3, an array
    /// under RESP2.
    Push(Vec<Frame>),
    /// Several replies in a row, for one command that answers more than one (SUBSCRIBE
    /// confirms each channel): each encoded in turn. Never nested in another frame.
    Several(Vec<Frame>),
}

impl Frame {
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    pub fn error(text: impl Into<String>) -> Frame {
        Frame::Error(text.into())
    }

    pub fn bulk(bytes: impl Into<Bytes>) -> Frame {
        Frame::Bulk(bytes.into())
    }

    pub fn text(text: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }

    /// Appends the encoding of this frame under `proto` to `out`.
    pub fn encode(&self, proto: Proto, out: &mut BytesMut) {
        match self {
            Frame::Simple(text) => line(out, b'+', text.as_bytes()),
            Frame::Error(text) => line(out, b'-', sanitize(text).as_bytes()),
            Frame::Int(value) => line(out, b':', value.to_string().as_bytes()),
            Frame::Bulk(bytes) => bulk(out, b'$', bytes),
            Frame::Null if proto == Proto::Resp3 => out.put_slice(b"_\r\n"),
            Frame::Null => out.put_slice(b"$-1\r\n"),
            Frame::NullArray if proto == Proto::Resp3 => out.put_slice(b"_\r\n"),
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
            Frame::Double(value) if proto == Proto::Resp3 => {
                line(out, b',', double_text(*value).as_bytes())
            }
            Frame::Double(value) => bulk(out, b'$', double_text(*value).as_bytes()),
            Frame::Bool(value) if proto == Proto::Resp3 => {
                out.put_slice(if *value { b"#t\r\n" } else { b"#f\r\n" })
            }
            Frame::Bool(value) => line(out, b':', if *value { b"1" } else { b"0" }),
            Frame::Array(items) => items_of(out, b'*', items, proto),
            Frame::Set(items) => items_of(
                out,
                if proto == Proto::Resp3 { b'~' } else { b'*' },
                items,
                proto,
            ),
            Frame::Map(pairs) => map(out, pairs, proto),
            Frame::Verbatim(text) if proto == Proto::Resp3 => {
                let mut body = Vec::with_capacity(text.len() + 4);
                body.extend_from_slice(b"txt:");
                body.extend_from_slice(text.as_bytes());
                bulk(out, b'=', &body);
            }
            Frame::Verbatim(text) => bulk(out, b'$', text.as_bytes()),
            Frame::Push(items) => items_of(
                out,
                if proto == Proto::Resp3 { b'>' } else { b'*' },
                items,
                proto,
            ),
            Frame::Several(frames) => frames.iter().for_each(|frame| frame.encode(proto, out)),
        }
    }

    /// The encoding of this frame as a byte vector (for tests and one-off replies).
    pub fn to_bytes(&self, proto: Proto) -> Vec<u8> {
        let mut out = BytesMut::new();
        self.encode(proto, &mut out);
        out.to_vec()
    }
}

impl From<Reply> for Frame {
    fn from(reply: Reply) -> Frame {
        match reply {
            Reply::Ok => Frame::ok(),
            Reply::Status(text) => Frame::Simple(text),
            Reply::Nil => Frame::Null,
            Reply::Int(value) => Frame::Int(value),
            Reply::Bulk(bytes) => Frame::Bulk(bytes),
            Reply::Array(items) => Frame::Array(items.into_iter().map(Frame::from).collect()),
            Reply::Error(error) => Frame::from(error),
        }
    }
}

impl From<KvError> for Frame {
    fn from(error: KvError) -> Frame {
        Frame::Error(error.to_string())
    }
}

/// Redis's `%.17g` text of a double, with `inf`, `-inf` and `nan` spelled as RESP3 does.
fn double_text(value: f64) -> String {
    if value.is_nan() {
        "nan".into()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format_f64(value)
    }
}

/// An error line may not hold CR or LF: Redis replaces them with spaces.
fn sanitize(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\r', '\n']) {
        text.replace(['\r', '\n'], " ").into()
    } else {
        text.into()
    }
}

fn line(out: &mut BytesMut, kind: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.put_u8(kind);
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, kind: u8, body: &[u8]) {
    line(out, kind, body.len().to_string().as_bytes());
    out.put_slice(body);
    out.put_slice(b"\r\n");
}

fn items_of(out: &mut BytesMut, kind: u8, items: &[Frame], proto: Proto) {
    line(out, kind, items.len().to_string().as_bytes());
    for item in items {
        item.encode(proto, out);
    }
}

fn map(out: &mut BytesMut, pairs: &[(Frame, Frame)], proto: Proto) {
    match proto {
        Proto::Resp3 => line(out, b'%', pairs.len().to_string().as_bytes()),
        Proto::Resp2 => line(out, b'*', (pairs.len() * 2).to_string().as_bytes()),
    }
    for (key, value) in pairs {
        key.encode(proto, out);
        value.encode(proto, out);
    }
}
