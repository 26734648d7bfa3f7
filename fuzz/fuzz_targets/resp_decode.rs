//! Fuzzes the RESP request decoder: any bytes, under both authentication bounds, must
//! decode to requests or a protocol error, never panic, never allocate past the bounds.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shardkv::resp::decode::{decode, DecodeLimits, Progress};

fuzz_target!(|data: &[u8]| {
    for authenticated in [true, false] {
        let limits = DecodeLimits {
            bulk_bytes_max: 1 << 20,
            multibulk_len_max: 1024,
            request_bytes_max: 4 << 20,
            authenticated,
        };
        let mut buf = BytesMut::from(data);
        let mut progress = Progress::default();
        while let Ok(Some(_)) = decode(&mut buf, &limits, &mut progress) {}
    }
});
