//! Envelope parser: any input must either fail cleanly or parse into an envelope that
//! serializes and parses back to the same items.

#![no_main]

use bytes::Bytes;
use faultline_core::protocol::envelope::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(first) = Envelope::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let serialized = first.to_bytes();
    let second = match Envelope::parse(serialized.clone()) {
        Ok(envelope) => envelope,
        Err(err) => panic!(
            "serialized envelope does not parse: {err}\n{:?}",
            String::from_utf8_lossy(&serialized)
        ),
    };

    assert_eq!(first.headers.event_id, second.headers.event_id);
    assert_eq!(first.headers.dsn, second.headers.dsn);
    assert_eq!(first.headers.sent_at, second.headers.sent_at);
    assert_eq!(first.items.len(), second.items.len());
    for (a, b) in first.items.iter().zip(&second.items) {
        assert_eq!(a.headers.ty, b.headers.ty);
        assert_eq!(a.payload, b.payload);
        assert_eq!(a.headers.content_type, b.headers.content_type);
        assert_eq!(a.headers.filename, b.headers.filename);
        assert_eq!(a.headers.attachment_type, b.headers.attachment_type);
        assert_eq!(b.headers.length, Some(b.payload.len() as u64));
        if let Some(length) = a.headers.length {
            assert_eq!(length, a.payload.len() as u64);
        }
    }
});
