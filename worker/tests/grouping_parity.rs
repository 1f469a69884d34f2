//! Grouping parity with Sentry: every fixture of `shared/fixtures/sentry-grouping` (Sentry's
//! own grouping snapshots for config `newstyle:2023-01-11`) is normalized, grouped, and
//! its primary hash compared with the one Sentry computed. Prints `grouping parity: N of
//! M`, then one line per differing fixture (expected vs ours, and the first difference in
//! the component tree), and requires at least 90 %.

mod common;

use std::path::PathBuf;

use chrono::Utc;
use faultline_worker::grouping::{self, FingerprintingRules, GroupingOptions};
use faultline_worker::normalize::{NormalizeContext, normalize};
use serde_json::{Map, Value};

/// Where the fixtures are: `$FAULTLINE_SHARED/fixtures/...`, else next to the repository.
/// The corpus travels with the repository (`tests/fixtures/sentry-grouping`, a copy of
/// `shared/fixtures/sentry-grouping`; its README says where each file came from), so a
/// fresh clone runs it; `FAULTLINE_SHARED` points at another copy of `shared/`.
fn fixtures_dir() -> PathBuf {
    match std::env::var_os("FAULTLINE_SHARED") {
        Some(shared) => PathBuf::from(shared).join("fixtures/sentry-grouping"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sentry-grouping"),
    }
}

/// The precedence rule of the fixtures' README: the primary hash is the first non-null
/// of these variants (a checksum only when it is a 32-hex hash).
fn expected_primary(expected: &Map<String, Value>) -> Option<(String, String)> {
    let get = |k: &str| {
        expected
            .get(k)
            .and_then(Value::as_str)
            .map(|h| (k.to_string(), h.to_string()))
    };
    let is_hash = |h: &str| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit());
    get("custom-fingerprint")
        .or_else(|| get("built-in-fingerprint"))
        .or_else(|| get("checksum").filter(|(_, h)| is_hash(h)))
        .or_else(|| get("hashed-checksum"))
        .or_else(|| get("app"))
        .or_else(|| get("system"))
        .or_else(|| get("default"))
        .or_else(|| get("fallback"))
}

/// The first line where our tree differs from Sentry's, hints ignored first (hints
/// differ between snapshot dates without changing hashes).
fn first_difference(expected: &str, ours: &str) -> String {
    let strip = |l: &str| match l.find(" (") {
        Some(i) if l.ends_with(')') => l[..i].to_string(),
        _ => l.to_string(),
    };
    let (e, o): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), ours.lines().collect());
    for pass in [true, false] {
        for i in 0..e.len().max(o.len()) {
            let (a, b) = (
                e.get(i).copied().unwrap_or("<end>"),
                o.get(i).copied().unwrap_or("<end>"),
            );
            let differs = if pass { strip(a) != strip(b) } else { a != b };
            if differs {
                return format!(
                    "tree line {}: expected `{}`, ours `{}`",
                    i + 1,
                    a.trim(),
                    b.trim()
                );
            }
        }
    }
    "trees identical".to_string()
}

#[test]
fn grouping_parity_with_sentry() {
    let dir = fixtures_dir();
    let paths = common::json_files(&dir);
    let mut passed = 0;
    let mut report = Vec::new();
    for path in &paths {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let fixture: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected_map = fixture["expected"].as_object().cloned().unwrap_or_default();
        let Some((exp_variant, exp_hash)) = expected_primary(&expected_map) else {
            report.push(format!("{name}: fixture has no expected hash"));
            continue;
        };
        let input = fixture["input"].clone();
        let rules = input.get("_fingerprinting_rules").map(|r| {
            FingerprintingRules::from_json(r).unwrap_or_else(|e| panic!("{name}: rules: {e}"))
        });
        // The fixture input goes through the same normalization as an ingested event.
        let raw = serde_json::to_vec(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        let event = match normalize(&raw, &NormalizeContext::received_at(Utc::now())) {
            Ok(e) => e,
            Err(e) => {
                report.push(format!("{name}: input does not normalize: {e}"));
                continue;
            }
        };
        let options = GroupingOptions {
            fingerprint_rules: rules.as_ref(),
        };
        let grouping = grouping::calculate_with(&event, &options);
        if grouping.primary_hash == exp_hash {
            passed += 1;
            continue;
        }
        let ours_variant = grouping
            .variants
            .iter()
            .find(|v| v.hash.as_deref() == Some(grouping.primary_hash.as_str()))
            .map_or("?", |v| v.name.as_str());
        let explained = grouping::explain(&event, &options);
        let ours_tree = explained
            .iter()
            .find(|v| v.name == exp_variant)
            .map(|v| v.contributing.as_str())
            .unwrap_or("");
        let expected_tree = fixture["contributing"][&exp_variant].as_str().unwrap_or("");
        report.push(format!(
            "{name}: expected {exp_variant} {exp_hash}, ours {ours_variant} {}; {}",
            grouping.primary_hash,
            first_difference(expected_tree, ours_tree)
        ));
    }
    let total = paths.len();
    println!("grouping parity: {passed} of {total}");
    for line in &report {
        println!("{line}");
    }
    assert!(total > 0, "no fixtures found in {}", dir.display());
    assert!(
        passed * 10 >= total * 9,
        "grouping parity {passed} of {total} is below 90 %"
    );
}

/// The pipeline's fast path agrees with the full calculation on every fixture.
#[test]
fn hashes_only_path_matches_calculate() {
    let dir = fixtures_dir();
    let mut checked = 0;
    for entry in
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("fixtures at {}: {e}", dir.display()))
    {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let name = path.display().to_string();
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        // Project fingerprint rules only apply through calculate_with.
        if fixture["input"].get("_fingerprinting_rules").is_some() {
            continue;
        }
        let raw = serde_json::to_vec(&fixture["input"]).expect("json");
        let Ok(event) = normalize(&raw, &NormalizeContext::received_at(Utc::now())) else {
            continue;
        };
        checked += 1;
        assert_eq!(
            faultline_worker::grouping::hashes(&event),
            faultline_worker::grouping::calculate(&event).hashes,
            "{name}"
        );
    }
    assert!(checked > 50, "only {checked} fixtures checked");
}
