//! The bit and sequence operations on string values, with Redis 7's semantics: GETBIT,
//! SETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD and LCS. Pure functions over byte strings;
//! `read` and `apply` look the keys up and store the results. Bit 0 is the most
//! significant bit of byte 0, as in Redis.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::number::parse_i64;
use super::reply::{KvError, Reply};

/// Whether BITCOUNT's and BITPOS's range counts bytes or bits (`BYTE`, the default, or
/// `BIT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitUnit {
    Byte,
    Bit,
}

impl BitUnit {
    /// `BYTE` or `BIT`, in any case; `BYTE` when none is given; else a syntax error.
    fn of(word: Option<&Bytes>) -> Result<BitUnit, KvError> {
        match word {
            None => Ok(BitUnit::Byte),
            Some(word) if word.eq_ignore_ascii_case(b"byte") => Ok(BitUnit::Byte),
            Some(word) if word.eq_ignore_ascii_case(b"bit") => Ok(BitUnit::Bit),
            Some(_) => Err(KvError::Syntax),
        }
    }
}

/// A range of BITCOUNT or BITPOS: `start end [BYTE|BIT]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BitRange {
    start: i64,
    end: i64,
    unit: BitUnit,
}

/// BITOP's operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BitOpKind {
    And,
    Or,
    Xor,
    Not,
}

impl BitOpKind {
    pub fn parse(word: &[u8]) -> Option<BitOpKind> {
        [("and", BitOpKind::And), ("or", BitOpKind::Or), ("xor", BitOpKind::Xor)]
            .into_iter()
            .chain([("not", BitOpKind::Not)])
            .find(|(name, _)| word.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, op)| op)
    }
}

/// What LCS answers: the sequence itself, its length (`LEN`), or the matching ranges
/// (`IDX`, with `MINMATCHLEN` and `WITHMATCHLEN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LcsAnswer {
    Sequence,
    Len,
    Ranges { min_match_len: u64, with_match_len: bool },
}

/// What BITFIELD does when a SET or INCRBY leaves a field's range (`OVERFLOW`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overflow {
    Wrap,
    Sat,
    Fail,
}

impl Overflow {
    pub fn parse(word: &[u8]) -> Option<Overflow> {
        [("wrap", Overflow::Wrap), ("sat", Overflow::Sat), ("fail", Overflow::Fail)]
            .into_iter()
            .find(|(name, _)| word.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, overflow)| overflow)
    }
}

/// One BITFIELD operation's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldAction {
    Get,
    Set(i64),
    IncrBy(i64),
}

/// One BITFIELD operation on the field of `bits` bits (1 to 64 signed, 1 to 63 unsigned)
/// at bit `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldOp {
    pub action: FieldAction,
    pub signed: bool,
    pub bits: u32,
    pub offset: u64,
    pub overflow: Overflow,
}

impl FieldOp {
    /// The last bit a SET or INCRBY writes; `None` for a GET.
    pub fn last_written_bit(&self) -> Option<u64> {
        match self.action {
            FieldAction::Get => None,
            _ => Some(self.offset + u64::from(self.bits) - 1),
        }
    }
}

/// The field's bits as an unsigned number (zeros past the end of `value`).
fn get_unsigned(value: &[u8], offset: u64, bits: u32) -> u64 {
    (0..u64::from(bits)).fold(0, |acc, j| acc << 1 | u64::from(get_bit(value, offset + j)))
}

/// The field's bits as a two's complement number.
fn get_signed(value: &[u8], offset: u64, bits: u32) -> i64 {
    let raw = get_unsigned(value, offset, bits);
    if bits < 64 && raw & (1 << (bits - 1)) != 0 {
        (raw | (u64::MAX << bits)) as i64
    } else {
        raw as i64
    }
}

/// Writes the low `bits` bits of `field` at `offset`; `value` must reach the field's end.
fn set_field(value: &mut [u8], offset: u64, bits: u32, field: u64) {
    for j in 0..u64::from(bits) {
        set_bit(value, offset + j, (field >> (u64::from(bits) - 1 - j)) & 1 == 1);
    }
}

/// Whether `value + incr` leaves an unsigned field of `bits` bits, and the value WRAP or
/// SAT puts instead (`None` for FAIL), as Redis computes them.
fn unsigned_overflow(value: u64, incr: i64, bits: u32, overflow: Overflow) -> Option<Option<u64>> {
    let max = (1u64 << bits) - 1;
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = (value as i64).wrapping_neg();
    let wrapped = value.wrapping_add(incr as u64) & !(u64::MAX << bits);
    let limit = |sat| match overflow {
        Overflow::Wrap => Some(wrapped),
        Overflow::Sat => Some(sat),
        Overflow::Fail => None,
    };
    if value > max || (incr > 0 && incr > max_incr) {
        Some(limit(max))
    } else if incr < 0 && incr < min_incr {
        Some(limit(0))
    } else {
        None
    }
}

/// Whether `value + incr` leaves a signed field of `bits` bits, and the value WRAP or SAT
/// puts instead (`None` for FAIL), as Redis computes them: its room above `value` wraps
/// when `value` is more than 2^63 below the field's top, so a SET of so negative a value
/// saturates at the top (Redis 7.0 does so too).
fn signed_overflow(value: i64, incr: i64, bits: u32, overflow: Overflow) -> Option<Option<i64>> {
    let max = if bits == 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let mut wrapped = (value as u64).wrapping_add(incr as u64);
    if bits < 64 {
        let mask = u64::MAX << bits;
        wrapped = if wrapped & (1 << (bits - 1)) != 0 { wrapped | mask } else { wrapped & !mask };
    }
    let limit = |sat| match overflow {
        Overflow::Wrap => Some(wrapped as i64),
        Overflow::Sat => Some(sat),
        Overflow::Fail => None,
    };
    if value > max || (bits != 64 && incr > max_incr) || (value >= 0 && incr > 0 && incr > max_incr)
    {
        Some(limit(max))
    } else if value < min
        || (bits != 64 && incr < min_incr)
        || (value < 0 && incr < 0 && incr < min_incr)
    {
        Some(limit(min))
    } else {
        None
    }
}

/// A BITFIELD GET.
pub fn field_get(value: &[u8], op: &FieldOp) -> Reply {
    match op.signed {
        true => Reply::Int(get_signed(value, op.offset, op.bits)),
        false => Reply::Int(get_unsigned(value, op.offset, op.bits) as i64),
    }
}

/// BITFIELD's operations in order over `value`, which reaches every field they write:
/// each answers its value (GET), the old one (SET), the new one (INCRBY), or nil when it
/// would overflow under `OVERFLOW FAIL`, writing nothing.
pub fn bitfield(value: &mut [u8], ops: &[FieldOp]) -> Reply {
    let replies = ops.iter().map(|op| {
        let (reply, field) = match (op.action, op.signed) {
            (FieldAction::Get, _) => return field_get(value, op),
            (FieldAction::Set(new), true) => {
                let old = get_signed(value, op.offset, op.bits);
                match signed_overflow(new, 0, op.bits, op.overflow) {
                    Some(None) => return Reply::Nil,
                    Some(Some(limit)) => (old, limit as u64),
                    None => (old, new as u64),
                }
            }
            (FieldAction::IncrBy(incr), true) => {
                let old = get_signed(value, op.offset, op.bits);
                let new = match signed_overflow(old, incr, op.bits, op.overflow) {
                    Some(None) => return Reply::Nil,
                    Some(Some(limit)) => limit,
                    None => old + incr,
                };
                (new, new as u64)
            }
            (FieldAction::Set(new), false) => {
                let old = get_unsigned(value, op.offset, op.bits);
                match unsigned_overflow(new as u64, 0, op.bits, op.overflow) {
                    Some(None) => return Reply::Nil,
                    Some(Some(limit)) => (old as i64, limit),
                    None => (old as i64, new as u64),
                }
            }
            (FieldAction::IncrBy(incr), false) => {
                let old = get_unsigned(value, op.offset, op.bits);
                let new = match unsigned_overflow(old, incr, op.bits, op.overflow) {
                    Some(None) => return Reply::Nil,
                    Some(Some(limit)) => limit,
                    None => old.wrapping_add(incr as u64),
                };
                (new as i64, new)
            }
        };
        set_field(value, op.offset, op.bits, field);
        Reply::Int(reply)
    });
    Reply::Array(replies.collect())
}

/// The bit at `offset` (0 past the end).
pub fn get_bit(value: &[u8], offset: u64) -> bool {
    let Ok(byte) = usize::try_from(offset >> 3) else {
        return false;
    };
    value.get(byte).is_some_and(|b| b & (0x80 >> (offset & 7)) != 0)
}

/// Sets the bit at `offset` of `value`, which must already reach it; answers the old bit.
pub fn set_bit(value: &mut [u8], offset: u64, bit: bool) -> bool {
    let byte = &mut value[(offset >> 3) as usize];
    let mask = 0x80u8 >> (offset & 7);
    let old = *byte & mask != 0;
    if bit {
        *byte |= mask;
    } else {
        *byte &= !mask;
    }
    old
}

/// Counts the bits of a whole byte slice that are set.
fn popcount(bytes: &[u8]) -> u64 {
    bytes.iter().map(|b| u64::from(b.count_ones())).sum()
}

/// Redis's conversion of a `start..=end` range over `len` units: negative positions count
/// from the end, both are clamped into the value, and `None` means the range is empty.
fn clamp_range(start: i64, end: i64, len: i64) -> Option<(u64, u64)> {
    let from_end = |at: i64| if at < 0 { len.saturating_add(at).max(0) } else { at };
    let (start, mut end) = (from_end(start), from_end(end));
    if end >= len {
        end = len - 1;
    }
    (start <= end && len > 0).then_some((start as u64, end as u64))
}

/// The first and last bit a range covers, or `None` when it covers none.
fn bit_bounds(value: &[u8], range: BitRange) -> Option<(u64, u64)> {
    let bytes = value.len() as i64;
    match range.unit {
        BitUnit::Byte => clamp_range(range.start, range.end, bytes)
            .map(|(first, last)| (first * 8, last * 8 + 7)),
        BitUnit::Bit => clamp_range(range.start, range.end, bytes.saturating_mul(8)),
    }
}

/// BITCOUNT after the key was found: `args` are the command's words after the key (none,
/// or `start end [BYTE|BIT]`). Two negative positions with the start after the end count
/// nothing, before they are clamped (and before the unit is read).
pub fn count(value: &[u8], args: &[Bytes]) -> Result<Reply, KvError> {
    let range = match args {
        [] => return Ok(Reply::Int(popcount(value) as i64)),
        [start, end, unit @ ..] if unit.len() <= 1 => {
            let (start, end) = (int(start)?, int(end)?);
            // Redis 7.0 answers this before it reads the unit.
            if start < 0 && end < 0 && start > end {
                return Ok(Reply::Int(0));
            }
            BitRange { start, end, unit: BitUnit::of(unit.first())? }
        }
        _ => return Err(KvError::Syntax),
    };
    let counted =
        bit_bounds(value, range).map_or(0, |(first, last)| count_bits(value, first, last));
    Ok(Reply::Int(counted as i64))
}

fn int(word: &Bytes) -> Result<i64, KvError> {
    parse_i64(word).ok_or(KvError::NotInteger)
}

/// The set bits from bit `first` to bit `last`, both within `value`.
fn count_bits(value: &[u8], first: u64, last: u64) -> u64 {
    let (first_byte, last_byte) = ((first >> 3) as usize, (last >> 3) as usize);
    let mut total = popcount(&value[first_byte..=last_byte]);
    // Take away the bits of the edge bytes outside the range.
    let before = (first & 7) as u32;
    if before > 0 {
        total -= u64::from((value[first_byte] >> (8 - before)).count_ones());
    }
    let after = (7 - (last & 7)) as u32;
    if after > 0 {
        total -= u64::from((value[last_byte] & ((1u8 << after) - 1)).count_ones());
    }
    total
}

/// BITPOS after the key was found: `args` are the command's words after the bit (`start
/// [end [BYTE|BIT]]`), read here as Redis reads them only once the key exists. Without an
/// end, a value whose range holds no clear bit answers the first bit past it.
pub fn position(value: &[u8], bit: bool, args: &[Bytes]) -> Result<Reply, KvError> {
    let (range, end_given) = match args {
        [] => (BitRange { start: 0, end: -1, unit: BitUnit::Byte }, false),
        [start, rest @ ..] if rest.len() <= 2 => {
            let start = int(start)?;
            let unit = BitUnit::of(rest.get(1))?;
            match rest.first() {
                Some(end) => (BitRange { start, end: int(end)?, unit }, true),
                None => (BitRange { start, end: i64::MAX, unit }, false),
            }
        }
        _ => return Err(KvError::Syntax),
    };
    let Some((first, last)) = bit_bounds(value, range) else {
        return Ok(Reply::Int(-1));
    };
    let found = find_bit(value, bit, first, last);
    Ok(Reply::Int(match found {
        Some(at) => at as i64,
        None if bit || end_given => -1,
        None => last as i64 + 1,
    }))
}

/// The first bit from `first` to `last` (within `value`) that is `bit`; whole bytes that
/// cannot hold it are skipped.
fn find_bit(value: &[u8], bit: bool, first: u64, last: u64) -> Option<u64> {
    let skip = if bit { 0x00 } else { 0xff };
    let mut at = first;
    while at <= last {
        if at & 7 == 0 && at + 7 <= last && value[(at >> 3) as usize] == skip {
            at += 8;
            continue;
        }
        if get_bit(value, at) == bit {
            return Some(at);
        }
        at += 1;
    }
    None
}

/// BITOP over `sources` (a missing key reads as empty): as long as the longest, shorter
/// ones read as zeros; NOT takes one source.
pub fn combine(op: BitOpKind, sources: &[&[u8]]) -> Vec<u8> {
    let len = sources.iter().map(|s| s.len()).max().unwrap_or(0);
    let byte = |source: &[u8], at: usize| source.get(at).copied().unwrap_or(0);
    (0..len)
        .map(|at| {
            let mut bytes = sources.iter().map(|s| byte(s, at));
            let first = bytes.next().unwrap_or(0);
            match op {
                BitOpKind::Not => !first,
                BitOpKind::And => bytes.fold(first, |acc, b| acc & b),
                BitOpKind::Or => bytes.fold(first, |acc, b| acc | b),
                BitOpKind::Xor => bytes.fold(first, |acc, b| acc ^ b),
            }
        })
        .collect()
}

/// The bytes of LCS's table: a cell per pair of prefixes, `u32` each as in Redis, whose
/// table may not pass `proto-max-bulk-len` bytes; `None` past `u64`.
pub fn lcs_table_bytes(a: &[u8], b: &[u8]) -> Option<u64> {
    let cells = (a.len() as u64 + 1).checked_mul(b.len() as u64 + 1)?;
    cells.checked_mul(std::mem::size_of::<u32>() as u64)
}

/// LCS of `a` and `b` (the caller checked `lcs_table_bytes`): the longest common
/// subsequence, its length, or its matching ranges from the end of the strings to their
/// start, each `[[a_start, a_end], [b_start, b_end]]` (with the length after them on
/// `with_match_len`) and those shorter than `min_match_len` left out, followed by the
/// length: the answer of `IDX`, a map of `matches` and `len`, as a flat array.
pub fn lcs(a: &[u8], b: &[u8], answer: LcsAnswer) -> Reply {
    let width = b.len() + 1;
    let mut table = vec![0u32; (a.len() + 1) * width];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let len = table[a.len() * width + b.len()];
    if answer == LcsAnswer::Len {
        return Reply::Int(i64::from(len));
    }
    let (min_match_len, with_match_len) = match answer {
        LcsAnswer::Ranges { min_match_len, with_match_len } => (min_match_len, with_match_len),
        _ => (0, false),
    };
    // Walk back from the end; a run of matches that step back together is one range.
    let mut sequence = vec![0u8; len as usize];
    let mut left = len as usize;
    let mut ranges = Vec::new();
    let mut run: Option<[usize; 4]> = None; // a_start, a_end, b_start, b_end
    let (mut i, mut j) = (a.len(), b.len());
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            left -= 1;
            sequence[left] = a[i - 1];
            run = Some(match run {
                None => [i - 1, i - 1, j - 1, j - 1],
                Some([a0, a1, b0, b1]) if a0 == i && b0 == j => [a0 - 1, a1, b0 - 1, b1],
                Some(current) => {
                    emit = true;
                    current
                }
            });
            if run.is_some_and(|[a0, _, b0, _]| a0 == 0 || b0 == 0) {
                emit = true;
            }
            i -= 1;
            j -= 1;
        } else {
            if table[(i - 1) * width + j] > table[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = run.is_some();
        }
        if emit {
            if let Some([a0, a1, b0, b1]) = run.take() {
                let match_len = (a1 - a0 + 1) as u64;
                if match_len >= min_match_len {
                    let pair = |x: usize, y: usize| {
                        Reply::Array(vec![Reply::Int(x as i64), Reply::Int(y as i64)])
                    };
                    let mut range = vec![pair(a0, a1), pair(b0, b1)];
                    if with_match_len {
                        range.push(Reply::Int(match_len as i64));
                    }
                    ranges.push(Reply::Array(range));
                }
            }
        }
    }
    match answer {
        LcsAnswer::Ranges { .. } => Reply::Array(vec![
            Reply::Bulk(Bytes::from_static(b"matches")),
            Reply::Array(ranges),
            Reply::Bulk(Bytes::from_static(b"len")),
            Reply::Int(i64::from(len)),
        ]),
        _ => Reply::Bulk(sequence.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(text: &str) -> Vec<Bytes> {
        text.split_whitespace().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
    }

    fn naive_bits(value: &[u8]) -> Vec<bool> {
        value.iter().flat_map(|b| (0..8).map(move |i| b & (0x80 >> i) != 0)).collect()
    }

    #[test]
    fn the_examples_of_redis_documentation() {
        let count = |value: &[u8], args: &str| count(value, &words(args)).unwrap();
        assert_eq!(count(b"foobar", ""), Reply::Int(26));
        assert_eq!(count(b"foobar", "0 0"), Reply::Int(4));
        assert_eq!(count(b"foobar", "1 1"), Reply::Int(6));
        assert_eq!(count(b"foobar", "1 1 BYTE"), Reply::Int(6));
        assert_eq!(count(b"foobar", "5 30 BIT"), Reply::Int(17));
        assert_eq!(count(b"foobar", "-3 -5"), Reply::Int(0));
        assert_eq!(super::count(b"foobar", &words("1 2 WORD")), Err(KvError::Syntax));
        assert_eq!(super::count(b"foobar", &words("1")), Err(KvError::Syntax));
        assert_eq!(super::count(b"foobar", &words("x 1")), Err(KvError::NotInteger));
        let position = |value: &[u8], bit, args: &str| position(value, bit, &words(args));
        assert_eq!(position(b"\xff\xf0\x00", false, ""), Ok(Reply::Int(12)));
        assert_eq!(position(b"\x00\xff\xf0", true, "0"), Ok(Reply::Int(8)));
        assert_eq!(position(b"\x00\xff\xf0", true, "2"), Ok(Reply::Int(16)));
        assert_eq!(position(b"\x00\xff\xf0", true, "2 -1 BYTE"), Ok(Reply::Int(16)));
        assert_eq!(position(b"\x00\xff\xf0", true, "7 15 BIT"), Ok(Reply::Int(8)));
        assert_eq!(position(b"\x00\x00\x00", true, ""), Ok(Reply::Int(-1)));
        // No end: the first clear bit past an all-ones value; with an end, none.
        assert_eq!(position(b"\xff\xff", false, ""), Ok(Reply::Int(16)));
        assert_eq!(position(b"\xff\xff", false, "0 -1"), Ok(Reply::Int(-1)));
        assert_eq!(position(b"", false, ""), Ok(Reply::Int(-1)));
        let lcs = |answer| lcs(b"ohmytext", b"mynewtext", answer);
        assert_eq!(lcs(LcsAnswer::Sequence), Reply::Bulk(Bytes::from_static(b"mytext")));
        assert_eq!(lcs(LcsAnswer::Len), Reply::Int(6));
        let pair = |x, y| Reply::Array(vec![Reply::Int(x), Reply::Int(y)]);
        let ranges = lcs(LcsAnswer::Ranges { min_match_len: 4, with_match_len: true });
        let Reply::Array(items) = ranges else { panic!("{ranges:?}") };
        let range = Reply::Array(vec![pair(4, 7), pair(5, 8), Reply::Int(4)]);
        assert_eq!(items[1], Reply::Array(vec![range]));
        assert_eq!(items[3], Reply::Int(6));
    }

    proptest! {
        /// The byte-at-a-time paths (edge masks, skipped bytes) agree with a bit-by-bit
        /// count and search.
        #[test]
        fn counts_and_searches_agree_with_bit_by_bit(
            value in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(0xff), any::<u8>()], 1..40),
            a in 0u64..320,
            b in 0u64..320,
            bit in any::<bool>(),
        ) {
            let bits = naive_bits(&value);
            let last_bit = bits.len() as u64 - 1;
            let (first, last) = (a.min(b).min(last_bit), a.max(b).min(last_bit));
            let range = first as usize..=last as usize;
            let want = bits[range.clone()].iter().filter(|set| **set).count() as u64;
            prop_assert_eq!(count_bits(&value, first, last), want);
            let found = bits[range].iter().position(|b| *b == bit).map(|i| i as u64 + first);
            prop_assert_eq!(find_bit(&value, bit, first, last), found);
        }

        /// BITFIELD's SET and INCRBY against arithmetic in 128 bits: the number a write
        /// means (an unsigned SET's value taken as the `u64` of its bits, as Redis takes
        /// it) wraps modulo 2^bits, saturates at the field's bounds, or fails outside them.
        #[test]
        fn bitfield_writes_agree_with_wide_arithmetic(
            start in any::<i64>(),
            number in prop_oneof![any::<i64>(), -300i64..300],
            signed in any::<bool>(),
            bits in 1u32..=64,
            offset in 0u64..20,
            set in any::<bool>(),
            overflow in 0usize..3,
        ) {
            let bits = if signed { bits } else { bits.min(63) };
            let overflow = [Overflow::Wrap, Overflow::Sat, Overflow::Fail][overflow];
            let field = |action| FieldOp { action, signed, bits, offset, overflow };
            let mut value = vec![0u8; 12];
            bitfield(&mut value, &[field(FieldAction::Set(start))]);
            let Reply::Int(old) = field_get(&value, &field(FieldAction::Get)) else { panic!() };
            let (min, max): (i128, i128) = match signed {
                true => (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1),
                false => (0, (1i128 << bits) - 1),
            };
            prop_assert!((min..=max).contains(&i128::from(old)));
            let (action, wanted) = match set {
                true if signed => (FieldAction::Set(number), i128::from(number)),
                true => (FieldAction::Set(number), i128::from(number as u64)),
                false => (FieldAction::IncrBy(number), i128::from(old) + i128::from(number)),
            };
            let modulus = 1i128 << bits;
            let wrapped = (wanted - min).rem_euclid(modulus) + min;
            // Redis's check wraps for a signed SET more than 2^63 below the field's top,
            // which then saturates at the top; shardkv answers as Redis does.
            let quirk = set && signed && bits < 64 && max - wanted >= 1i128 << 63;
            let stored = match overflow {
                _ if (min..=max).contains(&wanted) => Some(wanted),
                Overflow::Wrap => Some(wrapped),
                Overflow::Sat if quirk => Some(max),
                Overflow::Sat => Some(wanted.clamp(min, max)),
                Overflow::Fail => None,
            };
            let reply = bitfield(&mut value, &[field(action)]);
            let Reply::Int(now) = field_get(&value, &field(FieldAction::Get)) else { panic!() };
            let answer = |n: i128| Reply::Array(vec![Reply::Int(n as i64)]);
            match stored {
                None => {
                    prop_assert_eq!(reply, Reply::Array(vec![Reply::Nil]));
                    prop_assert_eq!(now, old);
                }
                Some(stored) => {
                    prop_assert_eq!(i128::from(now), stored);
                    prop_assert_eq!(reply, answer(if set { i128::from(old) } else { stored }));
                }
            }
            // The bits around the field are untouched.
            let outside = |v: &[u8]| {
                let end = offset + u64::from(bits);
                let bits = (0..96).filter(|&b| b < offset || b >= end).map(|b| get_bit(v, b));
                bits.collect::<Vec<_>>()
            };
            prop_assert!(outside(&value).iter().all(|b| !b));
        }

        /// BITOP, byte by byte and bit by bit.
        #[test]
        fn combine_works_bit_by_bit(
            sources in proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..6), 1..4),
            op in 0usize..4,
        ) {
            let op = [BitOpKind::And, BitOpKind::Or, BitOpKind::Xor, BitOpKind::Not][op];
            let sources = if op == BitOpKind::Not { sources[..1].to_vec() } else { sources };
            let refs: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
            let result = combine(op, &refs);
            let len = sources.iter().map(Vec::len).max().unwrap_or(0);
            prop_assert_eq!(result.len(), len);
            for at in 0..len as u64 * 8 {
                let bits: Vec<bool> = sources.iter().map(|s| get_bit(s, at)).collect();
                let want = match op {
                    BitOpKind::And => bits.iter().all(|b| *b),
                    BitOpKind::Or => bits.iter().any(|b| *b),
                    BitOpKind::Xor => bits.iter().filter(|b| **b).count() % 2 == 1,
                    BitOpKind::Not => !bits[0],
                };
                prop_assert_eq!(get_bit(&result, at), want, "bit {}", at);
            }
        }

        /// LCS's sequence is a subsequence of both strings, as long as LEN says, and its
        /// ranges (no minimum) are equal substrings, from the end backwards, that add up
        /// to it.
        #[test]
        fn lcs_answers_agree_with_each_other(
            a in proptest::collection::vec(0u8..3, 0..12),
            b in proptest::collection::vec(0u8..3, 0..12),
        ) {
            let Reply::Int(len) = lcs(&a, &b, LcsAnswer::Len) else { panic!() };
            let Reply::Bulk(sequence) = lcs(&a, &b, LcsAnswer::Sequence) else { panic!() };
            prop_assert_eq!(sequence.len() as i64, len);
            let subsequence = |of: &[u8]| {
                let mut rest = of.iter();
                sequence.iter().all(|c| rest.any(|x| x == c))
            };
            prop_assert!(subsequence(&a) && subsequence(&b));
            let answer = LcsAnswer::Ranges { min_match_len: 0, with_match_len: true };
            let Reply::Array(items) = lcs(&a, &b, answer) else { panic!() };
            let Reply::Array(ranges) = &items[1] else { panic!() };
            let int = |r: &Reply| match r { Reply::Int(n) => *n as usize, _ => panic!() };
            let (mut total, mut before) = (0, (usize::MAX, usize::MAX));
            for range in ranges {
                let Reply::Array(parts) = range else { panic!() };
                let (Reply::Array(x), Reply::Array(y)) = (&parts[0], &parts[1]) else { panic!() };
                let (a0, a1, b0, b1) = (int(&x[0]), int(&x[1]), int(&y[0]), int(&y[1]));
                prop_assert_eq!(&a[a0..=a1], &b[b0..=b1]);
                prop_assert_eq!(int(&parts[2]), a1 - a0 + 1);
                prop_assert!(a1 < before.0 && b1 < before.1);
                before = (a0, b0);
                total += a1 - a0 + 1;
            }
            prop_assert_eq!(total as i64, len);
        }
    }
}
