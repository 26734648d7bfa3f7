//! Request decoding: RESP multibulk arrays (`*N` of `$len` bulk strings; RESP3 clients
//! send requests in the same form) and inline commands, in two phases as mini-redis does
//! it: `check` finds whether a whole request is buffered and how long it is, then `parse`
//! builds the arguments from exactly those bytes. `check` keeps its place in a request it
//! found incomplete (`Progress`), so a request that arrives in many reads is scanned once,
//! not once per read. Every length is bounded before anything is allocated, and every
//! protocol error carries Redis's text byte for byte (but `RequestTooBig`, which Redis does
//! not answer: it closes the connection). Never executes anything and never panics on any
//! input.

use bytes::{Buf, Bytes, BytesMut};

/// Longest inline request, and longest `*N` / `$N` header line (Redis's
/// `PROTO_INLINE_MAX_SIZE`, 64 KiB).
pub const INLINE_BYTES_MAX: usize = 64 * 1024;
/// Most elements of a multibulk request before the client has authenticated.
pub const UNAUTHENTICATED_MULTIBULK_LEN_MAX: u64 = 10;
/// Largest bulk string before the client has authenticated.
pub const UNAUTHENTICATED_BULK_BYTES_MAX: u64 = 16 * 1024;

/// The bounds a request must respect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest bulk string (Redis's proto-max-bulk-len).
    pub bulk_bytes_max: u64,
    /// Most elements of one multibulk request.
    pub multibulk_len_max: u64,
    /// Most bytes of one multibulk request, headers included (Redis's
    /// client-query-buffer-limit).
    pub request_bytes_max: u64,
    /// Whether the client has authenticated (tighter bounds before it has).
    pub authenticated: bool,
}

/// A malformed request. `Display` is the exact text Redis answers (after `-ERR `); the
/// connection is closed after the reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooBig,
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooBig,
    /// The byte found where a bulk string's `$` should be.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// A request whose lengths add up past `request_bytes_max` (Redis closes the
    /// connection without a reply).
    #[error("Protocol error: too big request (over client-query-buffer-limit, {0} bytes)")]
    RequestTooBig(u64),
}

impl ProtocolError {
    /// The error line as the client receives it (without `-` and CRLF).
    pub fn reply_text(&self) -> String {
        format!("ERR {self}")
    }
}

/// What `check` found at the start of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// More bytes are needed.
    Incomplete,
    /// A whole request of this many bytes (possibly an empty one, which is skipped).
    Complete(usize),
}

/// How far `check` got into the request at the start of a buffer it found incomplete: the
/// next call on the same buffer, with more bytes after, resumes there. Starts (and is
/// reset to) `Progress::default()` for each request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes at the start of the buffer already checked: the `*N` line and whole bulk
    /// strings of a multibulk request, or bytes holding no newline of an inline one.
    checked: usize,
    /// Bulk strings of a multibulk request still to check; `None` before its `*N` line.
    args_left: Option<u64>,
}

/// Takes the next request out of `buf`: `Ok(None)` when it is not complete yet; an empty
/// argument list for an empty request (`*0`, `*-1`, a blank line), which the caller skips.
/// `progress` must come from the previous call on the same buffer, or be fresh.
pub fn decode(
    buf: &mut BytesMut,
    limits: &DecodeLimits,
    progress: &mut Progress,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    match check(buf, limits, progress)? {
        Checked::Incomplete => Ok(None),
        Checked::Complete(len) => {
            let frame = buf.split_to(len).freeze();
            Ok(Some(parse(&frame)?))
        }
    }
}

/// Phase one: whether `buf` starts with a whole request, and its length in bytes.
/// `progress` (see `decode`) is kept on `Incomplete` and reset otherwise.
pub fn check(
    buf: &[u8],
    limits: &DecodeLimits,
    progress: &mut Progress,
) -> Result<Checked, ProtocolError> {
    let checked = match buf.first() {
        None => Ok(Checked::Incomplete),
        Some(b'*') => check_multibulk(buf, limits, progress),
        Some(_) => check_inline(buf, progress),
    };
    if checked != Ok(Checked::Incomplete) {
        *progress = Progress::default();
    }
    checked
}

/// Phase two: the arguments of a request `check` found complete (`frame` is exactly it).
pub fn parse(frame: &Bytes) -> Result<Vec<Bytes>, ProtocolError> {
    if frame.first() == Some(&b'*') {
        return Ok(parse_multibulk(frame));
    }
    let end = frame
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(frame.len());
    let line = &frame[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    split_args(line).ok_or(ProtocolError::UnbalancedQuotes)
}

fn check_inline(buf: &[u8], progress: &mut Progress) -> Result<Checked, ProtocolError> {
    let from = progress.checked.min(buf.len());
    match buf[from..].iter().position(|&b| b == b'\n').map(|n| from + n) {
        Some(newline) if newline <= INLINE_BYTES_MAX => Ok(Checked::Complete(newline + 1)),
        Some(_) => Err(ProtocolError::InlineTooBig),
        None if buf.len() > INLINE_BYTES_MAX => Err(ProtocolError::InlineTooBig),
        None => {
            progress.checked = buf.len();
            Ok(Checked::Incomplete)
        }
    }
}

/// The header line at `pos` (`*N` or `$N`): its number text and the position after CRLF.
/// `None` when incomplete; `Err(too_big)` when no CR comes within the inline bound.
fn header(
    buf: &[u8],
    pos: usize,
    too_big: ProtocolError,
) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = &buf[pos..];
    let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
        return if rest.len() > INLINE_BYTES_MAX {
            Err(too_big)
        } else {
            Ok(None)
        };
    };
    if cr > INLINE_BYTES_MAX {
        return Err(too_big);
    }
    if cr + 1 >= rest.len() {
        return Ok(None);
    }
    // A line that starts with its CR has no text (and no `$`, which the caller checks).
    Ok(Some((rest.get(1..cr).unwrap_or_default(), pos + cr + 2)))
}

fn check_multibulk(
    buf: &[u8],
    limits: &DecodeLimits,
    progress: &mut Progress,
) -> Result<Checked, ProtocolError> {
    let (mut pos, mut args_left) = match progress.args_left {
        Some(args_left) => (progress.checked, args_left),
        None => {
            let Some((count, pos)) = header(buf, 0, ProtocolError::MultibulkCountTooBig)? else {
                return Ok(Checked::Incomplete);
            };
            let count = string_to_i64(count).ok_or(ProtocolError::InvalidMultibulkLength)?;
            if count > i64::from(i32::MAX) || count > limits.multibulk_len_max as i64 {
                return Err(ProtocolError::InvalidMultibulkLength);
            }
            if !limits.authenticated && count > UNAUTHENTICATED_MULTIBULK_LEN_MAX as i64 {
                return Err(ProtocolError::UnauthenticatedMultibulkLength);
            }
            (pos, count.max(0) as u64)
        }
    };
    while args_left > 0 {
        *progress = Progress { checked: pos, args_left: Some(args_left) };
        if pos >= buf.len() {
            return Ok(Checked::Incomplete);
        }
        let Some((len, body)) = header(buf, pos, ProtocolError::BulkCountTooBig)? else {
            return Ok(Checked::Incomplete);
        };
        if buf[pos] != b'$' {
            return Err(ProtocolError::ExpectedDollar(buf[pos]));
        }
        let len = string_to_i64(len).ok_or(ProtocolError::InvalidBulkLength)?;
        if len < 0 || len as u64 > limits.bulk_bytes_max {
            return Err(ProtocolError::InvalidBulkLength);
        }
        if !limits.authenticated && len as u64 > UNAUTHENTICATED_BULK_BYTES_MAX {
            return Err(ProtocolError::UnauthenticatedBulkLength);
        }
        // As Redis does, the two bytes after the payload are skipped, not checked.
        let end = body
            .checked_add(len as usize + 2)
            .ok_or(ProtocolError::InvalidBulkLength)?;
        if end as u64 > limits.request_bytes_max {
            return Err(ProtocolError::RequestTooBig(limits.request_bytes_max));
        }
        if end > buf.len() {
            return Ok(Checked::Incomplete);
        }
        pos = end;
        args_left -= 1;
    }
    Ok(Checked::Complete(pos))
}

/// Builds the arguments of a checked multibulk frame; slices share the frame's memory.
fn parse_multibulk(frame: &Bytes) -> Vec<Bytes> {
    let mut rest = frame.clone();
    let count = take_header(&mut rest);
    let mut args = Vec::with_capacity(count.clamp(0, 1024) as usize);
    for _ in 0..count.max(0) {
        let len = take_header(&mut rest).max(0) as usize;
        let len = len.min(rest.len());
        args.push(rest.split_to(len));
        rest.advance(rest.len().min(2));
    }
    args
}

/// Reads a `*N`/`$N` header line of a checked frame and moves past it.
fn take_header(rest: &mut Bytes) -> i64 {
    let cr = rest.iter().position(|&b| b == b'\r').unwrap_or(rest.len());
    let value = string_to_i64(rest.get(1..cr).unwrap_or_default()).unwrap_or(0);
    rest.advance((cr + 2).min(rest.len()));
    value
}

/// Redis's `string2ll`: optional `-`, no `+`, no leading zeros, no spaces, fits an i64.
pub fn string_to_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || negative) {
        return None;
    }
    let magnitude: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Redis's `sdssplitargs`: words separated by spaces; "double quotes" with `\n`, `\xHH`
/// and the other C escapes; 'single quotes' with `\'`. `None` for unbalanced quotes or a
/// closing quote not followed by a space.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut pos = 0;
    loop {
        while pos < line.len() && line[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos >= line.len() {
            return Some(args);
        }
        let (arg, next) = split_word(line, pos)?;
        args.push(Bytes::from(arg));
        pos = next;
    }
}

fn split_word(line: &[u8], mut pos: usize) -> Option<(Vec<u8>, usize)> {
    let mut word = Vec::new();
    let (mut in_double, mut in_single) = (false, false);
    loop {
        let c = line.get(pos).copied();
        if in_double {
            let c = c?;
            if c == b'\\' && pos + 3 < line.len() && line[pos + 1] == b'x' {
                if let Some(byte) = hex_pair(line[pos + 2], line[pos + 3]) {
                    word.push(byte);
                    pos += 4;
                    continue;
                }
            }
            if c == b'\\' && pos + 1 < line.len() {
                word.push(unescape(line[pos + 1]));
                pos += 2;
                continue;
            }
            if c == b'"' {
                if line.get(pos + 1).is_some_and(|n| !n.is_ascii_whitespace()) {
                    return None;
                }
                in_double = false;
            } else {
                word.push(c);
            }
        } else if in_single {
            let c = c?;
            if c == b'\\' && line.get(pos + 1) == Some(&b'\'') {
                word.push(b'\'');
                pos += 2;
                continue;
            }
            if c == b'\'' {
                if line.get(pos + 1).is_some_and(|n| !n.is_ascii_whitespace()) {
                    return None;
                }
                in_single = false;
            } else {
                word.push(c);
            }
        } else {
            match c {
                None => return Some((word, pos)),
                Some(c) if c.is_ascii_whitespace() => return Some((word, pos)),
                Some(b'"') => in_double = true,
                Some(b'\'') => in_single = true,
                Some(c) => word.push(c),
            }
        }
        pos += 1;
    }
}

fn hex_pair(high: u8, low: u8) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    Some((digit(high)? * 16 + digit(low)?) as u8)
}

fn unescape(c: u8) -> u8 {
    match c {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 8,
        b'a' => 7,
        other => other,
    }
}
