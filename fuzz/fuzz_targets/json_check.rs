//! Ingest's JSON check against serde_json, the parser the worker reads payloads with: they
//! must agree on every input, or ingest answers 200 for events the worker then refuses
//! (lost) or 400 for events it could have stored.

#![no_main]

use faultline_core::protocol::json_check;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let checked = json_check::check(data);
    let parsed = serde_json::from_slice::<serde_json::Value>(data);
    assert_eq!(
        checked.is_ok(),
        parsed.is_ok(),
        "check: {checked:?}, serde_json: {parsed:?}"
    );
    if let (Ok(checked), Ok(value)) = (checked, parsed) {
        assert_eq!(checked.is_object, value.is_object());
        assert_eq!(
            checked.event_id.as_deref(),
            value.get("event_id").and_then(|id| id.as_str())
        );
    }
});
