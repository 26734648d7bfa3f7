//! The value record stored under (slot, key): a format version, a value type, an optional
//! absolute expiry deadline and the value bytes. Owns the byte layout and nothing else; it
//! never decides whether a record is visible (that needs a `now_ms`, see `read`).
//!
//! Layout (version 1):
//! `[version = 1][type][flags][expire_at_ms: u64 big-endian, only if flags & 1][value…]`

use bytes::{BufMut, Bytes, BytesMut};

/// The record layout written by this release.
pub const RECORD_FORMAT_VERSION: u8 = 1;
const FLAG_EXPIRES: u8 = 1;
const HEADER_BYTES: usize = 3;
const DEADLINE_BYTES: usize = 8;

/// What kind of value a key holds. Only strings have commands yet; the other tags are
/// reserved so that later types need no format change and string commands answer
/// WRONGTYPE on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    String = 0,
    List = 1,
    Hash = 2,
    Set = 3,
    ZSet = 4,
}

impl ValueType {
    fn from_tag(tag: u8) -> Option<ValueType> {
        Some(match tag {
            0 => ValueType::String,
            1 => ValueType::List,
            2 => ValueType::Hash,
            3 => ValueType::Set,
            4 => ValueType::ZSet,
            _ => return None,
        })
    }

    /// The name `TYPE` answers.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::List => "list",
            ValueType::Hash => "hash",
            ValueType::Set => "set",
            ValueType::ZSet => "zset",
        }
    }
}

/// A record that cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record of {len_bytes} bytes is shorter than its header")]
    Truncated { len_bytes: usize },
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    #[error("unknown value type {0}")]
    UnknownType(u8),
    #[error("unknown record flags {0:#04x}")]
    UnknownFlags(u8),
}

/// One decoded value record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub value_type: ValueType,
    /// Absolute deadline in unix milliseconds; the key is gone once `now_ms >= deadline`.
    pub expire_at_ms: Option<u64>,
    pub value: Bytes,
}

impl Record {
    /// A string value.
    pub fn string(value: Bytes, expire_at_ms: Option<u64>) -> Record {
        Record { value_type: ValueType::String, expire_at_ms, value }
    }

    /// Whether the deadline has passed at `now_ms` (a deadline equal to now has passed).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        matches!(self.expire_at_ms, Some(deadline_ms) if deadline_ms <= now_ms)
    }

    /// The bytes stored in the KV table.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_BYTES + DEADLINE_BYTES + self.value.len());
        out.put_u8(RECORD_FORMAT_VERSION);
        out.put_u8(self.value_type as u8);
        match self.expire_at_ms {
            Some(deadline_ms) => {
                out.put_u8(FLAG_EXPIRES);
                out.put_u64(deadline_ms);
            }
            None => out.put_u8(0),
        }
        out.put_slice(&self.value);
        out.freeze()
    }

    /// The deadline of stored bytes, read from the header alone (no value is copied): for
    /// walks over many records that need no more of them. Bytes that do not hold a
    /// well-formed deadline have none.
    pub fn deadline_of(bytes: &[u8]) -> Option<u64> {
        match bytes.get(..HEADER_BYTES + DEADLINE_BYTES)? {
            [RECORD_FORMAT_VERSION, _, FLAG_EXPIRES, deadline @ ..] => {
                Some(u64::from_be_bytes(deadline.try_into().ok()?))
            }
            _ => None,
        }
    }

    /// Decode stored bytes; the value shares `bytes`' buffer.
    pub fn decode(bytes: &Bytes) -> Result<Record, RecordError> {
        let truncated = RecordError::Truncated { len_bytes: bytes.len() };
        let [version, tag, flags] = match bytes.get(..HEADER_BYTES) {
            Some(&[version, tag, flags]) => [version, tag, flags],
            _ => return Err(truncated),
        };
        if version != RECORD_FORMAT_VERSION {
            return Err(RecordError::UnknownVersion(version));
        }
        let value_type = ValueType::from_tag(tag).ok_or(RecordError::UnknownType(tag))?;
        let (expire_at_ms, value_start) = match flags {
            0 => (None, HEADER_BYTES),
            FLAG_EXPIRES => {
                let end = HEADER_BYTES + DEADLINE_BYTES;
                let raw = bytes.get(HEADER_BYTES..end).ok_or(truncated)?;
                let mut deadline = [0u8; DEADLINE_BYTES];
                deadline.copy_from_slice(raw);
                (Some(u64::from_be_bytes(deadline)), end)
            }
            other => return Err(RecordError::UnknownFlags(other)),
        };
        Ok(Record { value_type, expire_at_ms, value: bytes.slice(value_start..) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_and_without_deadline() {
        for deadline in [None, Some(0), Some(1_700_000_000_000), Some(u64::MAX)] {
            let record = Record::string(Bytes::from_static(b"hello"), deadline);
            assert_eq!(Record::decode(&record.encode()), Ok(record));
        }
        let empty = Record::string(Bytes::new(), None);
        assert_eq!(empty.encode().len(), 3);
        for deadline in [None, Some(0), Some(1_700_000_000_000), Some(u64::MAX)] {
            for value in [&b""[..], b"hello"] {
                let record = Record::string(Bytes::copy_from_slice(value), deadline);
                assert_eq!(Record::deadline_of(&record.encode()), deadline);
            }
        }
        let no_value = Record::string(Bytes::new(), Some(7)).encode();
        assert_eq!(Record::deadline_of(&no_value[..10]), None, "a truncated deadline");
        assert_eq!(Record::deadline_of(b""), None);
        assert_eq!(Record::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let cases: [(&[u8], RecordError); 5] = [
            (b"", RecordError::Truncated { len_bytes: 0 }),
            (b"\x01\x00", RecordError::Truncated { len_bytes: 2 }),
            (b"\x02\x00\x00", RecordError::UnknownVersion(2)),
            (b"\x01\x09\x00", RecordError::UnknownType(9)),
            (b"\x01\x00\x04", RecordError::UnknownFlags(4)),
        ];
        for (raw, error) in cases {
            assert_eq!(Record::decode(&Bytes::copy_from_slice(raw)), Err(error));
        }
        let short_deadline = Bytes::from_static(b"\x01\x00\x01\x00\x00");
        assert_eq!(Record::decode(&short_deadline), Err(RecordError::Truncated { len_bytes: 5 }));
    }

    #[test]
    fn deadline_equal_to_now_has_passed() {
        let record = Record::string(Bytes::new(), Some(100));
        assert!(!record.is_expired(99));
        assert!(record.is_expired(100));
        assert!(!Record::string(Bytes::new(), None).is_expired(u64::MAX));
    }
}
