//! The artifact bundle file format sentry-cli uploads: an optional `SYSB` + u32 version
//! header, then a ZIP archive with `manifest.json` naming every file (its URL, type and
//! headers such as `debug-id` and `sourcemap`). Pure: bytes in, files out, with limits so
//! that a hostile archive (zip bomb, thousands of entries) is refused, not unpacked.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use serde::Deserialize;

/// What a file in a bundle is, as the manifest's `type` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// `minified_source`: the JavaScript that runs (every JS file sentry-cli uploads).
    MinifiedSource,
    /// `source_map`
    SourceMap,
    /// `source`: an original source file.
    Source,
    /// `indexed_ram_bundle` (React Native)
    IndexedRamBundle,
}

impl ArtifactKind {
    /// The value stored in `artifacts.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::MinifiedSource => "minified_source",
            ArtifactKind::SourceMap => "source_map",
            ArtifactKind::Source => "source",
            ArtifactKind::IndexedRamBundle => "indexed_ram_bundle",
        }
    }

    /// The manifest's `type`; unknown or missing types are guessed from the name.
    pub fn from_manifest(ty: Option<&str>, url: &str) -> ArtifactKind {
        match ty {
            Some("minified_source") => ArtifactKind::MinifiedSource,
            Some("source_map") => ArtifactKind::SourceMap,
            Some("source") => ArtifactKind::Source,
            Some("indexed_ram_bundle") => ArtifactKind::IndexedRamBundle,
            _ => Self::guess(url, &[]),
        }
    }

    /// For files uploaded one by one: a `.map` name or JSON with `mappings` is a source map.
    pub fn guess(name: &str, content: &[u8]) -> ArtifactKind {
        let path = name.split(['?', '#']).next().unwrap_or(name);
        if path.ends_with(".map") {
            return ArtifactKind::SourceMap;
        }
        let head = &content[..content.len().min(64 * 1024)];
        let text = String::from_utf8_lossy(head);
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') && text.contains("\"mappings\"") {
            ArtifactKind::SourceMap
        } else {
            ArtifactKind::MinifiedSource
        }
    }
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleFile {
    /// The URL the file is known by, e.g. `~/static/app.min.js`.
    pub url: String,
    pub kind: ArtifactKind,
    /// Lowercase, hyphenated debug id from the `debug-id` header, if valid.
    pub debug_id: Option<String>,
    /// The manifest's headers, keys lower-cased.
    pub headers: BTreeMap<String, String>,
    pub content: Vec<u8>,
}

/// A parsed bundle.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bundle {
    pub files: Vec<BundleFile>,
    pub release: Option<String>,
    pub dist: Option<String>,
}

/// Bounds on what a bundle may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_files: usize,
    pub max_file_size: u64,
    pub max_total_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_files: 20_000,
            max_file_size: 64 * 1024 * 1024,
            max_total_size: 512 * 1024 * 1024,
        }
    }
}

/// Why a bundle was refused; the text is shown to the sentry-cli user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    #[error("the bundle is not a valid zip archive: {0}")]
    NotZip(String),
    #[error("the bundle has no manifest.json")]
    NoManifest,
    #[error("the bundle's manifest.json is not valid: {0}")]
    BadManifest(String),
    #[error("the bundle's manifest names `{0}`, which is not in the archive")]
    MissingFile(String),
    #[error("the bundle's file `{0}` could not be read: {1}")]
    BadEntry(String, String),
    #[error("the bundle has more than {0} files")]
    TooManyFiles(usize),
    #[error("the bundle's file `{0}` is larger than {1} bytes uncompressed")]
    FileTooLarge(String, u64),
    #[error("the bundle unpacks to more than {0} bytes")]
    TooLarge(u64),
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    files: BTreeMap<String, ManifestFile>,
    #[serde(default)]
    release: Option<String>,
    #[serde(default)]
    dist: Option<String>,
}

#[derive(Deserialize)]
struct ManifestFile {
    #[serde(default)]
    url: Option<String>,
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, serde_json::Value>,
}

/// The 8-byte header symbolic writes before the archive.
const SYSB_MAGIC: &[u8; 4] = b"SYSB";

/// Parses a bundle: every file the manifest names, with its content.
pub fn parse(bytes: &[u8], limits: Limits) -> Result<Bundle, BundleError> {
    let mut archive = open_archive(bytes)?;
    if archive.len() > limits.max_files + 1 {
        return Err(BundleError::TooManyFiles(limits.max_files));
    }
    let mut total: u64 = 0;
    let manifest_bytes = read_entry(
        &mut archive,
        "manifest.json",
        limits.max_file_size,
        &mut total,
    )?
    .ok_or(BundleError::NoManifest)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| BundleError::BadManifest(e.to_string()))?;
    let mut bundle = Bundle {
        files: Vec::with_capacity(manifest.files.len()),
        release: manifest.release.filter(|r| !r.is_empty()),
        dist: manifest.dist.filter(|d| !d.is_empty()),
    };
    for (path, info) in manifest.files {
        let content = read_entry(&mut archive, &path, limits.max_file_size, &mut total)?
            .ok_or_else(|| BundleError::MissingFile(path.clone()))?;
        if total > limits.max_total_size {
            return Err(BundleError::TooLarge(limits.max_total_size));
        }
        let url = info.url.unwrap_or_else(|| path.clone());
        let headers: BTreeMap<String, String> = info
            .headers
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k.to_ascii_lowercase(), v)
            })
            .collect();
        let debug_id = headers
            .get("debug-id")
            .or_else(|| headers.get("debug_id"))
            .and_then(|d| normalize_debug_id(d));
        bundle.files.push(BundleFile {
            kind: ArtifactKind::from_manifest(info.ty.as_deref(), &url),
            url,
            debug_id,
            headers,
            content,
        });
    }
    Ok(bundle)
}

fn open_archive(bytes: &[u8]) -> Result<zip::ZipArchive<Cursor<&[u8]>>, BundleError> {
    // symbolic opens the whole buffer, header included; some writers' offsets count from
    // the archive's own start instead, so try the bytes after the header as well.
    let first = zip::ZipArchive::new(Cursor::new(bytes));
    match first {
        Ok(a) => Ok(a),
        Err(e) if bytes.len() >= 8 && &bytes[..4] == SYSB_MAGIC => {
            zip::ZipArchive::new(Cursor::new(&bytes[8..]))
                .map_err(|_| BundleError::NotZip(e.to_string()))
        }
        Err(e) => Err(BundleError::NotZip(e.to_string())),
    }
}

/// Reads one entry by name, refusing more than `max` bytes; `None` if absent.
fn read_entry(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    max: u64,
    total: &mut u64,
) -> Result<Option<Vec<u8>>, BundleError> {
    let entry = match archive.by_name(name) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(BundleError::BadEntry(name.to_string(), e.to_string())),
    };
    let mut out = Vec::with_capacity(entry.size().min(max) as usize);
    entry
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| BundleError::BadEntry(name.to_string(), e.to_string()))?;
    if out.len() as u64 > max {
        return Err(BundleError::FileTooLarge(name.to_string(), max));
    }
    *total += out.len() as u64;
    Ok(Some(out))
}

/// A debug id as stored: lowercase hyphenated UUID. Accepts any form `uuid` parses
/// (hyphenated, simple, braced, upper case); anything else is no debug id.
pub fn normalize_debug_id(s: &str) -> Option<String> {
    let s = s.trim();
    // Breakpad-style ids carry an appendix after the 32 hex digits; source maps do not.
    uuid::Uuid::parse_str(s)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .expect("start");
            w.write_all(data).expect("write");
        }
        w.finish().expect("finish").into_inner()
    }

    fn manifest() -> Vec<u8> {
        serde_json::json!({
            "files": {
                "files/_/_/app.min.js": {"url": "~/app.min.js", "type": "minified_source",
                    "headers": {"debug-id": "C0FFEE00-1111-4222-8333-444455556666", "Sourcemap": "app.min.js.map"}},
                "files/_/_/app.min.js.map": {"url": "~/app.min.js.map", "type": "source_map",
                    "headers": {"debug-id": "c0ffee00111142228333444455556666"}}
            },
            "release": "1.0", "dist": ""
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn sysb_and_plain_zip_both_parse() {
        let m = manifest();
        let zip = zip_of(&[
            ("manifest.json", &m),
            ("files/_/_/app.min.js", b"a()"),
            ("files/_/_/app.min.js.map", b"{}"),
        ]);
        let mut sysb = b"SYSB\x02\x00\x00\x00".to_vec();
        sysb.extend_from_slice(&zip);
        for bytes in [zip.clone(), sysb] {
            let b = parse(&bytes, Limits::default()).expect("parses");
            assert_eq!(b.release.as_deref(), Some("1.0"));
            assert_eq!(b.dist, None);
            assert_eq!(b.files.len(), 2);
            let js = &b.files[0];
            assert_eq!(js.url, "~/app.min.js");
            assert_eq!(js.kind, ArtifactKind::MinifiedSource);
            assert_eq!(
                js.debug_id.as_deref(),
                Some("c0ffee00-1111-4222-8333-444455556666")
            );
            assert_eq!(js.headers["sourcemap"], "app.min.js.map");
            assert_eq!(js.content, b"a()");
            assert_eq!(b.files[1].kind, ArtifactKind::SourceMap);
            assert_eq!(b.files[1].debug_id, js.debug_id);
        }
    }

    #[test]
    fn broken_bundles_are_refused_with_the_reason() {
        assert!(matches!(
            parse(b"not a zip at all", Limits::default()),
            Err(BundleError::NotZip(_))
        ));
        assert!(matches!(
            parse(b"SYSB\x02\x00\x00\x00garbage", Limits::default()),
            Err(BundleError::NotZip(_))
        ));
        let no_manifest = zip_of(&[("a.js", b"x")]);
        assert_eq!(
            parse(&no_manifest, Limits::default()),
            Err(BundleError::NoManifest)
        );
        let bad_manifest = zip_of(&[("manifest.json", b"{nope")]);
        assert!(matches!(
            parse(&bad_manifest, Limits::default()),
            Err(BundleError::BadManifest(_))
        ));
        let m = manifest();
        let missing = zip_of(&[("manifest.json", &m), ("files/_/_/app.min.js", b"a()")]);
        assert_eq!(
            parse(&missing, Limits::default()),
            Err(BundleError::MissingFile("files/_/_/app.min.js.map".into()))
        );
    }

    #[test]
    fn zip_bombs_stop_at_the_limit() {
        let big = vec![b'a'; 1 << 20];
        let m = serde_json::json!({"files": {"big.js": {"url": "~/big.js"}}})
            .to_string()
            .into_bytes();
        let zip = zip_of(&[("manifest.json", &m), ("big.js", &big)]);
        let limits = Limits {
            max_file_size: 1000,
            ..Limits::default()
        };
        assert_eq!(
            parse(&zip, limits),
            Err(BundleError::FileTooLarge("big.js".into(), 1000))
        );
    }

    #[test]
    fn kinds_from_names_and_content() {
        assert_eq!(
            ArtifactKind::guess("~/a.js.map", b""),
            ArtifactKind::SourceMap
        );
        assert_eq!(
            ArtifactKind::guess("~/a", br#"{"version":3,"mappings":""}"#),
            ArtifactKind::SourceMap
        );
        assert_eq!(
            ArtifactKind::guess("~/a.js", b"x()"),
            ArtifactKind::MinifiedSource
        );
        assert_eq!(normalize_debug_id("nope"), None);
    }
}
