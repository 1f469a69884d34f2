//! Body decoding: every encoding over arbitrary bytes must fail cleanly or return at most
//! `LIMIT` bytes — never panic, never exceed the limit.

#![no_main]

use faultline_core::body::{BodyError, decode_body};
use libfuzzer_sys::fuzz_target;

/// Small, so that inputs which decompress beyond it (bombs) are common.
const LIMIT: usize = 4096;

const ENCODINGS: [&str; 8] = [
    "identity", "", "UTF-8", "gzip", "x-gzip", "deflate", "br", "zstd",
];

fuzz_target!(|data: &[u8]| {
    for encoding in ENCODINGS {
        match decode_body(Some(encoding), data, LIMIT) {
            Ok(out) => {
                assert!(out.len() <= LIMIT, "{encoding}: {} bytes", out.len());
                if matches!(encoding, "identity" | "" | "UTF-8") {
                    assert_eq!(out.as_ref(), data);
                }
            }
            Err(BodyError::TooLarge { limit }) => {
                assert_eq!(limit, LIMIT);
                if matches!(encoding, "identity" | "" | "UTF-8") {
                    assert!(data.len() > LIMIT);
                }
            }
            Err(err @ BodyError::Corrupt { .. }) => assert_eq!(err.status(), 400),
            Err(err) => panic!("{encoding}: unexpected error {err}"),
        }
    }
});
