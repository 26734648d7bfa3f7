//! Unit tests of the front end: every decoder error path with Redis's exact text, golden
//! bytes of replies under RESP2 and RESP3, and arbitrary bytes never panicking the decoder.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::decode::{check, decode, split_args, Checked, DecodeLimits, ProtocolError};
use super::frame::{Frame, Proto};
use crate::kv::{KvError, Reply};

const LIMITS: DecodeLimits = DecodeLimits {
    bulk_bytes_max: 1024,
    multibulk_len_max: 100,
    authenticated: true,
};

fn decode_all(input: &[u8], limits: &DecodeLimits) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    while let Some(args) = decode(&mut buf, limits)? {
        out.push(args);
    }
    Ok(out)
}

fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

fn error_of(input: &[u8], limits: &DecodeLimits) -> String {
    match decode_all(input, limits) {
        Err(error) => error.reply_text(),
        Ok(frames) => panic!("expected a protocol error, decoded {frames:?}"),
    }
}

#[test]
fn multibulk_and_inline_requests_decode() {
    let got = decode_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n", &LIMITS).unwrap();
    assert_eq!(got, vec![args(&["GET", "k"]), args(&["PING"])]);
    let got = decode_all(b"set k \"a b\\x41\\n\" 'it\\'s'\r\n", &LIMITS).unwrap();
    assert_eq!(got, vec![args(&["set", "k", "a bA\n", "it's"])]);
}

#[test]
fn empty_requests_are_skipped_as_redis_does() {
    let got = decode_all(b"\r\n*0\r\n*-10\r\n", &LIMITS).unwrap();
    assert!(got.iter().all(Vec::is_empty));
    assert_eq!(got.len(), 3);
}

#[test]
fn truncated_frames_wait_for_more_bytes() {
    let whole = b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n";
    for cut in 0..whole.len() {
        assert_eq!(
            check(&whole[..cut], &LIMITS),
            Ok(Checked::Incomplete),
            "cut at {cut}"
        );
    }
    assert_eq!(check(whole, &LIMITS), Ok(Checked::Complete(whole.len())));
}

#[test]
fn every_protocol_error_has_redis_text() {
    let e = |input: &[u8]| error_of(input, &LIMITS);
    assert_eq!(
        e(b"*101\r\n"),
        "ERR Protocol error: invalid multibulk length"
    );
    assert_eq!(e(b"*x\r\n"), "ERR Protocol error: invalid multibulk length");
    assert_eq!(
        e(b"*3000000000\r\n"),
        "ERR Protocol error: invalid multibulk length"
    );
    assert_eq!(
        e(b"*1\r\n$1025\r\n"),
        "ERR Protocol error: invalid bulk length"
    );
    assert_eq!(
        e(b"*1\r\n$-1\r\n"),
        "ERR Protocol error: invalid bulk length"
    );
    assert_eq!(
        e(b"*1\r\n$01\r\n"),
        "ERR Protocol error: invalid bulk length"
    );
    assert_eq!(
        e(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n"),
        "ERR Protocol error: expected '$', got 'f'"
    );
    let long = [b"*".as_slice(), &vec![b'1'; 70_000]].concat();
    assert_eq!(e(&long), "ERR Protocol error: too big mbulk count string");
    let long = [b"*1\r\n$".as_slice(), &vec![b'1'; 70_000]].concat();
    assert_eq!(e(&long), "ERR Protocol error: too big bulk count string");
    assert_eq!(
        e(&vec![b'a'; 70_000]),
        "ERR Protocol error: too big inline request"
    );
    assert_eq!(
        e(b"set \"k\r\n"),
        "ERR Protocol error: unbalanced quotes in request"
    );
    assert_eq!(
        e(b"set \"k\"x\r\n"),
        "ERR Protocol error: unbalanced quotes in request"
    );
    let guest = DecodeLimits {
        authenticated: false,
        ..LIMITS
    };
    assert_eq!(
        error_of(b"*11\r\n", &guest),
        "ERR Protocol error: unauthenticated multibulk length"
    );
    let big = DecodeLimits {
        bulk_bytes_max: 1 << 20,
        ..guest
    };
    assert_eq!(
        error_of(b"*1\r\n$20000\r\n", &big),
        "ERR Protocol error: unauthenticated bulk length"
    );
}

#[test]
fn inline_quotes_follow_sdssplitargs() {
    assert_eq!(split_args(b"  a   b  "), Some(args(&["a", "b"])));
    assert_eq!(
        split_args(b"\"\\t\\r\\a\\b\""),
        Some(vec![Bytes::from_static(b"\t\r\x07\x08")])
    );
    assert_eq!(split_args(b"'a"), None);
    assert_eq!(split_args(b"'a'b"), None);
    assert_eq!(split_args(b""), Some(vec![]));
}

fn golden(frame: Frame, resp2: &str, resp3: &str) {
    assert_eq!(
        String::from_utf8(frame.to_bytes(Proto::Resp2)).unwrap(),
        resp2,
        "{frame:?}"
    );
    assert_eq!(
        String::from_utf8(frame.to_bytes(Proto::Resp3)).unwrap(),
        resp3,
        "{frame:?}"
    );
}

#[test]
fn replies_encode_as_redis_under_resp2_and_resp3() {
    golden(Frame::ok(), "+OK\r\n", "+OK\r\n");
    golden(Frame::Null, "$-1\r\n", "_\r\n");
    golden(Frame::Int(-3), ":-3\r\n", ":-3\r\n");
    golden(Frame::text("hi"), "$2\r\nhi\r\n", "$2\r\nhi\r\n");
    golden(Frame::Double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n");
    golden(Frame::Double(f64::INFINITY), "$3\r\ninf\r\n", ",inf\r\n");
    golden(Frame::Bool(true), ":1\r\n", "#t\r\n");
    golden(Frame::error("ERR a\r\nb"), "-ERR a  b\r\n", "-ERR a  b\r\n");
    golden(
        Frame::Map(vec![(Frame::text("proto"), Frame::Int(3))]),
        "*2\r\n$5\r\nproto\r\n:3\r\n",
        "%1\r\n$5\r\nproto\r\n:3\r\n",
    );
    golden(
        Frame::Set(vec![Frame::Int(1)]),
        "*1\r\n:1\r\n",
        "~1\r\n:1\r\n",
    );
    golden(
        Frame::Verbatim("a:1\r\n".into()),
        "$5\r\na:1\r\n\r\n",
        "=9\r\ntxt:a:1\r\n\r\n",
    );
    golden(
        Frame::Array(vec![Frame::Null, Frame::text("v")]),
        "*2\r\n$-1\r\n$1\r\nv\r\n",
        "*2\r\n_\r\n$1\r\nv\r\n",
    );
}

#[test]
fn kv_replies_keep_their_meaning() {
    assert_eq!(
        Frame::from(Reply::Status("string".into())),
        Frame::Simple("string".into())
    );
    assert_eq!(Frame::from(Reply::Nil), Frame::Null);
    let wrongtype = Frame::from(Reply::Error(KvError::WrongType));
    assert_eq!(
        wrongtype.to_bytes(Proto::Resp2),
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
    // INCRBYFLOAT answers a bulk string under RESP3 as well, as Redis 7 does.
    let float = Frame::from(Reply::Bulk(Bytes::from_static(b"10.5")));
    assert_eq!(float.to_bytes(Proto::Resp3), b"$4\r\n10.5\r\n");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_all(&input, &LIMITS);
        let _ = decode_all(&input, &DecodeLimits { authenticated: false, ..LIMITS });
    }

    #[test]
    fn encoded_requests_decode_back(words in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8)) {
        let mut wire = format!("*{}\r\n", words.len()).into_bytes();
        for w in &words {
            wire.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
            wire.extend_from_slice(w);
            wire.extend_from_slice(b"\r\n");
        }
        let got = decode_all(&wire, &LIMITS).unwrap();
        let want: Vec<Bytes> = words.into_iter().map(Bytes::from).collect();
        prop_assert_eq!(got, vec![want]);
    }
}
