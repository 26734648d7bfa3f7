//! DUMP's and RESTORE's payload, as Redis 7.0 writes and reads it: the value as an RDB
//! string object (its type byte, then a length and the bytes, a small integer in 1, 2 or 4
//! bytes, or an LZF-compressed string), then the RDB version (2 bytes) and the CRC-64 of
//! everything before it (8 bytes, Redis's CRC-64/Jones), both little-endian. shardkv holds
//! strings alone: a payload of another type is refused. Pure: no I/O, no clock.

use bytes::Bytes;

use super::number::parse_i64;

/// The RDB version Redis 7.0 writes; a payload of a later version is refused, as Redis
/// refuses one.
pub const RDB_VERSION: u16 = 10;
const TYPE_STRING: u8 = 0;
/// The object types Redis 7.0 knows besides strings (0): a payload of one of them is well
/// formed, but not a string; any other type is bad data.
fn is_known_type(kind: u8) -> bool {
    matches!(kind, 1..=7 | 9..=19)
}
const ENCODED: u8 = 0xc0;
const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;
/// Values up to this long that read as a 32-bit integer are stored as one (Redis's rule).
const INTEGER_CHARS_MAX: usize = 11;
/// Longer values are compressed when that saves at least `LZF_SAVING_MIN` bytes.
const LZF_FROM_LEN: usize = 21;
const LZF_SAVING_MIN: usize = 4;
const FOOTER_BYTES: usize = 10;
const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);

/// Why a payload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// Too short, a later RDB version, or a checksum that does not match.
    VersionOrChecksum,
    /// Not a well-formed string object.
    BadFormat,
    /// A well-formed object of a type other than string.
    NotString,
    /// A compressed string longer than the bound given.
    TooLarge,
}

impl RestoreError {
    /// The error text of RESTORE's answer (Redis's words for the first two).
    pub fn text(self) -> &'static str {
        match self {
            RestoreError::VersionOrChecksum => "ERR DUMP payload version or checksum are wrong",
            RestoreError::BadFormat => "ERR Bad data format",
            RestoreError::NotString => {
                "ERR DUMP payload holds a value of a type other than string; shardkv stores \
                 strings"
            }
            RestoreError::TooLarge => {
                "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
            }
        }
    }
}

/// DUMP of a string value.
pub fn dump(value: &[u8]) -> Bytes {
    let mut out = vec![TYPE_STRING];
    write_string(&mut out, value);
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = CRC64.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Bytes::from(out)
}

/// The string value of a payload, checked as Redis checks it: the footer's version and
/// checksum first, then the object. A compressed value may not decompress to more than
/// `value_bytes_max` (an uncompressed one is as long as the payload holds).
pub fn restore(payload: &[u8], value_bytes_max: u64) -> Result<Bytes, RestoreError> {
    let Some(body_len) = payload.len().checked_sub(FOOTER_BYTES) else {
        return Err(RestoreError::VersionOrChecksum);
    };
    let footer = &payload[body_len..];
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    let crc = u64::from_le_bytes(footer[2..].try_into().expect("8 bytes"));
    if version > RDB_VERSION || CRC64.checksum(&payload[..body_len + 2]) != crc {
        return Err(RestoreError::VersionOrChecksum);
    }
    let mut reader = Reader { bytes: &payload[..body_len], value_bytes_max };
    match reader.byte()? {
        TYPE_STRING => reader.string(),
        other if is_known_type(other) => Err(RestoreError::NotString),
        _ => Err(RestoreError::BadFormat),
    }
}

fn write_len(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=0x3f => out.push(len as u8),
        0x40..=0x3fff => out.extend_from_slice(&[0x40 | (len >> 8) as u8, len as u8]),
        _ => match u32::try_from(len) {
            Ok(len) => {
                out.push(0x80);
                out.extend_from_slice(&len.to_be_bytes());
            }
            Err(_) => {
                out.push(0x81);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        },
    }
}

/// Redis's `rdbSaveRawString`: a short integer as one, a long value compressed if that
/// pays, else the length and the bytes.
fn write_string(out: &mut Vec<u8>, value: &[u8]) {
    if value.len() <= INTEGER_CHARS_MAX {
        if let Some(n) = parse_i64(value) {
            if let Ok(n) = i8::try_from(n) {
                out.extend_from_slice(&[ENCODED | ENC_INT8, n as u8]);
                return;
            } else if let Ok(n) = i16::try_from(n) {
                out.push(ENCODED | ENC_INT16);
                out.extend_from_slice(&n.to_le_bytes());
                return;
            } else if let Ok(n) = i32::try_from(n) {
                out.push(ENCODED | ENC_INT32);
                out.extend_from_slice(&n.to_le_bytes());
                return;
            }
        }
    }
    if value.len() >= LZF_FROM_LEN {
        if let Ok(compressed) = lzf::compress(value) {
            if compressed.len() <= value.len() - LZF_SAVING_MIN {
                out.push(ENCODED | ENC_LZF);
                write_len(out, compressed.len());
                write_len(out, value.len());
                out.extend_from_slice(&compressed);
                return;
            }
        }
    }
    write_len(out, value.len());
    out.extend_from_slice(value);
}

/// Reads an object's bytes front to back; running out is `BadFormat`.
struct Reader<'a> {
    bytes: &'a [u8],
    value_bytes_max: u64,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RestoreError> {
        if n > self.bytes.len() {
            return Err(RestoreError::BadFormat);
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, RestoreError> {
        Ok(self.take(1)?[0])
    }

    /// A length, or the encoding of a special string (`Err(Ok(encoding))`).
    fn len_or_encoding(&mut self) -> Result<Result<usize, u8>, RestoreError> {
        let first = self.byte()?;
        let len = match first >> 6 {
            0 => u64::from(first & 0x3f),
            1 => u64::from(first & 0x3f) << 8 | u64::from(self.byte()?),
            2 if first == 0x80 => u64::from(u32::from_be_bytes(self.array()?)),
            2 if first == 0x81 => u64::from_be_bytes(self.array()?),
            2 => return Err(RestoreError::BadFormat),
            _ => return Ok(Err(first & 0x3f)),
        };
        usize::try_from(len).map(Ok).map_err(|_| RestoreError::BadFormat)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RestoreError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn len(&mut self) -> Result<usize, RestoreError> {
        self.len_or_encoding()?.map_err(|_| RestoreError::BadFormat)
    }

    fn string(&mut self) -> Result<Bytes, RestoreError> {
        let number = match self.len_or_encoding()? {
            Ok(len) => return Ok(Bytes::copy_from_slice(self.take(len)?)),
            Err(ENC_INT8) => i64::from(self.byte()? as i8),
            Err(ENC_INT16) => i64::from(i16::from_le_bytes(self.array()?)),
            Err(ENC_INT32) => i64::from(i32::from_le_bytes(self.array()?)),
            Err(ENC_LZF) => {
                let (compressed_len, len) = (self.len()?, self.len()?);
                let compressed = self.take(compressed_len)?;
                // The length is the payload's word: bound it before making room for it.
                if len as u64 > self.value_bytes_max {
                    return Err(RestoreError::TooLarge);
                }
                let value =
                    lzf::decompress(compressed, len).map_err(|_| RestoreError::BadFormat)?;
                if value.len() != len {
                    return Err(RestoreError::BadFormat);
                }
                return Ok(Bytes::from(value));
            }
            Err(_) => return Err(RestoreError::BadFormat),
        };
        Ok(Bytes::from(number.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn restore_all(payload: &[u8]) -> Result<Bytes, RestoreError> {
        restore(payload, u64::MAX)
    }

    fn unhex(text: &str) -> Vec<u8> {
        let byte = |i: usize| u8::from_str_radix(&text[i..i + 2], 16).unwrap();
        (0..text.len()).step_by(2).map(byte).collect()
    }

    /// Payloads redis-server 7.0.15 gave for DUMP, and the values they hold, and whether
    /// shardkv's DUMP writes the same bytes. It does but where LZF differs: Redis's liblzf
    /// keeps a margin of room as it compresses, and extends a match to the input's end
    /// where the lzf crate stops short of it. Either payload restores on either server.
    const REDIS_PAYLOADS: &[(&[u8], &str, bool)] = &[
        (b"hello", "000568656c6c6f0a006372df766534200a", true),
        (b"123", "00c07b0a0048e253e1007a67b9", true),
        (b"-5", "00c0fb0a0049c4c6f4d7263f68", true),
        (b"300", "00c12c010a00954261f265825c10", true),
        (b"70000", "00c2701101000a0001a408fe953095a5", true),
        (b"4294967296", "000a343239343936373239360a00a5a389c81a8c4656", true),
        (
            b"12345678901234567890123",
            "00c312170a3132333435363738393031e001090132330a00ed7fadfafe6b061f",
            true,
        ),
        (b"xxxxxxxxxxxxxxxxxxxxx", "00c30615017878e00a000a00941a83676017192f", false),
        (
            b"\0\0\0\0\0\0\0\0\0\0hello world",
            "00150000000000000000000068656c6c6f20776f726c640a001072eaef49027905",
            false,
        ),
        (b"ababababababababababab", "00c3071602616261e00a010a00aad6b7c8d520677e", false),
    ];

    #[test]
    fn redis_payloads_restore_and_dump_alike() {
        for (value, hex, same) in REDIS_PAYLOADS {
            let payload = unhex(hex);
            assert_eq!(restore_all(&payload).as_deref(), Ok(*value), "{hex}");
            let ours = dump(value);
            assert_eq!(restore_all(&ours).as_deref(), Ok(*value), "{hex}");
            assert_eq!(ours.as_ref() == &payload[..], *same, "{hex}");
        }
        let long = [b'a'; 94];
        let redis = unhex("00c309405e016161e051000161610a00f0621c6b6a904cdb");
        assert_eq!(restore_all(&redis).as_deref(), Ok(&long[..]));
    }

    #[test]
    fn damaged_payloads_are_refused_as_redis_refuses_them() {
        let good = dump(b"hello");
        let mut flipped = good.to_vec();
        flipped[2] ^= 1;
        assert_eq!(restore_all(&flipped), Err(RestoreError::VersionOrChecksum));
        assert_eq!(restore_all(&good[..9]), Err(RestoreError::VersionOrChecksum));
        let mut later = good.to_vec();
        later[good.len() - 10] = 11;
        let body = later.len() - 8;
        let crc = CRC64.checksum(&later[..body]).to_le_bytes();
        later[body..].copy_from_slice(&crc);
        assert_eq!(restore_all(&later), Err(RestoreError::VersionOrChecksum));
        let sealed = |body: &[u8]| {
            let mut out = body.to_vec();
            out.extend_from_slice(&RDB_VERSION.to_le_bytes());
            let crc = CRC64.checksum(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            out
        };
        assert_eq!(restore_all(&sealed(&[0, 9, b'x'])), Err(RestoreError::BadFormat));
        assert_eq!(restore_all(&sealed(&[2, 1, 1, b'x'])), Err(RestoreError::NotString));
        assert_eq!(restore_all(&sealed(&[8, 1, b'x'])), Err(RestoreError::BadFormat));
        assert_eq!(restore_all(&sealed(&[20, 1, b'x'])), Err(RestoreError::BadFormat));
        assert_eq!(restore_all(&sealed(&[200, 1, b'x'])), Err(RestoreError::BadFormat));
        assert_eq!(restore_all(&sealed(&[0, 0xc3, 2, 9, 1, b'x'])), Err(RestoreError::BadFormat));
        assert_eq!(restore_all(&sealed(&[0, 0xc5])), Err(RestoreError::BadFormat));
        let claims_a_lot = sealed(&[0, 0xc3, 2, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 1, b'x']);
        assert_eq!(restore(&claims_a_lot, 1 << 20), Err(RestoreError::TooLarge));
    }

    proptest! {
        #[test]
        fn every_value_restores_from_its_dump(
            value in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..100),
                proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b')], 0..20000),
                any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            ],
        ) {
            let restored = restore_all(&dump(&value));
            prop_assert_eq!(restored.as_deref(), Ok(&value[..]));
        }

        /// Garbage after a good footer is refused, never a panic.
        #[test]
        fn any_sealed_body_is_read_or_refused(
            body in proptest::collection::vec(any::<u8>(), 0..40),
            compressed in any::<bool>(),
        ) {
            let mut out = if compressed { vec![0, 0xc3] } else { vec![0] };
            out.extend_from_slice(&body);
            out.extend_from_slice(&RDB_VERSION.to_le_bytes());
            let crc = CRC64.checksum(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            let _ = restore(&out, 1 << 16);
        }
    }
}
