//! Fuzzes the RESP request decoder: any bytes, under both authentication bounds, must
//! decode to requests or a protocol error, never panic, never allocate past the bounds.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shardkv::resp::decode::{decode, DecodeLimits, Progress};

/// The requests, and the first error, of `data` arriving as two reads cut at `cut`.
fn decode_in_two(
    data: &[u8],
    cut: usize,
    limits: &DecodeLimits,
) -> (Vec<Vec<bytes::Bytes>>, Option<String>) {
    let (mut buf, mut progress, mut out) = (BytesMut::new(), Progress::default(), Vec::new());
    for piece in [&data[..cut], &data[cut..]] {
        buf.extend_from_slice(piece);
        loop {
            match decode(&mut buf, limits, &mut progress) {
                Ok(Some(args)) => out.push(args),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    for authenticated in [true, false] {
        let limits = DecodeLimits {
            bulk_bytes_max: 1 << 20,
            multibulk_len_max: 1024,
            request_bytes_max: 4 << 20,
            authenticated,
        };
        let whole = decode_in_two(data, data.len(), &limits);
        // Cut where the first two bytes say: the decoder resuming must find the same.
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let at = u16::from_le_bytes([byte(0), byte(1)]);
        let cut = usize::from(at) % (data.len() + 1);
        assert_eq!(decode_in_two(data, cut, &limits), whole);
    }
});
