//! Request body decoding for ingest (PROTOCOL.md §2.3): `Content-Encoding` as SDKs send it,
//! with the size limit applied to the *decompressed* output.
//!
//! Decompression is streamed through a small buffer and stops as soon as the output would pass
//! the limit, so a decompression bomb (a few KiB that expand to gigabytes) costs at most `limit`
//! bytes of output plus the decoder's window (32 KiB for gzip/deflate, at most 16 MiB for
//! brotli, for zstd at most `max(8 MiB, limit)`), and the time to produce them — never the size
//! it claims or expands to.

use std::fmt;
use std::io::{self, Read};

use bytes::Bytes;
use thiserror::Error;

/// A `Content-Encoding` we can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentEncoding {
    /// No compression: absent header, `identity`, `""` (sentry-ruby 5.x) or `UTF-8`
    /// (sentry-java android 2.0.0), as Relay tolerates them.
    Identity,
    /// `gzip` or `x-gzip` (sentry-python without brotli, Node above 32 KiB).
    Gzip,
    /// `deflate`: zlib-wrapped per RFC 1950, or raw deflate as some clients send it.
    Deflate,
    /// `br` (sentry-python's default when the brotli module is installed).
    Brotli,
    /// `zstd`.
    Zstd,
}

impl ContentEncoding {
    /// Reads a `Content-Encoding` header value (case-insensitive, surrounding whitespace
    /// ignored). Lists of encodings (`gzip, br`) are refused: no SDK sends them.
    pub fn parse(header: Option<&str>) -> Result<Self, BodyError> {
        let Some(value) = header.map(str::trim) else {
            return Ok(ContentEncoding::Identity);
        };
        if value.contains(',') {
            return Err(BodyError::MultipleEncodings(value.to_owned()));
        }
        let encoding = match value.to_ascii_lowercase().as_str() {
            "" | "identity" | "utf-8" => ContentEncoding::Identity,
            "gzip" | "x-gzip" => ContentEncoding::Gzip,
            "deflate" => ContentEncoding::Deflate,
            "br" => ContentEncoding::Brotli,
            "zstd" => ContentEncoding::Zstd,
            _ => return Err(BodyError::UnsupportedEncoding(value.to_owned())),
        };
        Ok(encoding)
    }

    /// The canonical header token.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentEncoding::Identity => "identity",
            ContentEncoding::Gzip => "gzip",
            ContentEncoding::Deflate => "deflate",
            ContentEncoding::Brotli => "br",
            ContentEncoding::Zstd => "zstd",
        }
    }
}

impl fmt::Display for ContentEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request body could not be decoded. [`BodyError::status`] is the HTTP status to answer
/// with; the message is the `detail`.
#[derive(Debug, Error)]
pub enum BodyError {
    /// A `Content-Encoding` we do not support.
    #[error(
        "unsupported content encoding `{0}` (supported: gzip, x-gzip, deflate, br, zstd, identity)"
    )]
    UnsupportedEncoding(String),
    /// More than one encoding in the header.
    #[error("multiple content encodings are not supported: `{0}`")]
    MultipleEncodings(String),
    /// The body is not valid data in the declared encoding (corrupt, truncated, wrong format).
    #[error("could not decode {encoding} request body: {source}")]
    Corrupt {
        /// The encoding the header declared.
        encoding: ContentEncoding,
        /// What the decoder reported.
        source: io::Error,
    },
    /// The (decompressed) body is larger than allowed.
    #[error("request body is larger than {limit} bytes (after decompression)")]
    TooLarge {
        /// The limit that was exceeded.
        limit: usize,
    },
}

impl BodyError {
    /// HTTP status: 415 for an encoding we do not support, 400 for corrupt data, 413 for a body
    /// over the limit.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::UnsupportedEncoding(_) | BodyError::MultipleEncodings(_) => 415,
            BodyError::Corrupt { .. } => 400,
            BodyError::TooLarge { .. } => 413,
        }
    }
}

/// Decodes a request body according to its `Content-Encoding` header and returns at most
/// `limit` bytes, or [`BodyError::TooLarge`] if the decoded body would be longer. An empty body
/// decodes to an empty body whatever the encoding claims.
pub fn decode_body(
    content_encoding: Option<&str>,
    body: &[u8],
    limit: usize,
) -> Result<Bytes, BodyError> {
    let encoding = ContentEncoding::parse(content_encoding)?;
    if encoding == ContentEncoding::Identity {
        check_limit(body.len(), limit)?;
        return Ok(Bytes::copy_from_slice(body));
    }
    decode_compressed(encoding, body, limit).map(Bytes::from)
}

/// Like [`decode_body`], but an uncompressed body is passed through without copying.
pub fn decode_body_bytes(
    content_encoding: Option<&str>,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let encoding = ContentEncoding::parse(content_encoding)?;
    if encoding == ContentEncoding::Identity {
        check_limit(body.len(), limit)?;
        return Ok(body);
    }
    decode_compressed(encoding, &body, limit).map(Bytes::from)
}

/// Like [`decode_body`], for an encoding already parsed.
pub fn decode_encoded(
    encoding: ContentEncoding,
    body: &[u8],
    limit: usize,
) -> Result<Bytes, BodyError> {
    decode_compressed(encoding, body, limit).map(Bytes::from)
}

fn check_limit(len: usize, limit: usize) -> Result<(), BodyError> {
    if len > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(())
}

fn decode_compressed(
    encoding: ContentEncoding,
    body: &[u8],
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let finish = |result: Result<Vec<u8>, ReadError>| match result {
        Ok(out) => Ok(out),
        Err(ReadError::TooLarge) => Err(BodyError::TooLarge { limit }),
        Err(ReadError::Io(source)) => Err(BodyError::Corrupt { encoding, source }),
    };
    match encoding {
        ContentEncoding::Identity => {
            check_limit(body.len(), limit)?;
            Ok(body.to_vec())
        }
        // Concatenated gzip members are one valid body (RFC 1952), as `gzip -d` reads them.
        ContentEncoding::Gzip => finish(read_limited(
            flate2::bufread::MultiGzDecoder::new(body),
            limit,
        )),
        ContentEncoding::Deflate => finish(decode_deflate(body, limit)),
        ContentEncoding::Brotli => finish(read_limited(
            brotli::Decompressor::new(body, BROTLI_BUFFER),
            limit,
        )),
        ContentEncoding::Zstd => {
            let corrupt = |source| BodyError::Corrupt { encoding, source };
            let mut decoder = zstd::stream::read::Decoder::with_buffer(body).map_err(corrupt)?;
            // zstd allocates the window a frame header asks for, up to 128 MiB by default. A
            // valid body never needs a window larger than its own size, so cap it by the limit
            // (allowing the 8 MiB that streaming compressors use even for small inputs).
            decoder
                .window_log_max(zstd_window_log_max(limit))
                .map_err(corrupt)?;
            finish(read_limited(decoder, limit))
        }
    }
}

/// Decodes only as much of the body as it takes to see its first line: the output up to and
/// including the first `\n`, or the first `max` bytes when no newline comes before that, or
/// the whole (shorter) body. An envelope's header is its first line, and ingest reads the
/// envelope header's `dsn` this way before it knows whether the sender may make it decompress
/// the rest; so a bomb with a bogus `dsn` costs at most `max` bytes of output.
pub fn decode_first_line(
    encoding: ContentEncoding,
    body: &[u8],
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    let corrupt = |source| BodyError::Corrupt { encoding, source };
    match encoding {
        ContentEncoding::Identity => {
            let end = body
                .iter()
                .take(max)
                .position(|b| *b == b'\n')
                .map_or(body.len().min(max), |at| at + 1);
            Ok(body[..end].to_vec())
        }
        _ if body.is_empty() => Ok(Vec::new()),
        ContentEncoding::Gzip => {
            read_first_line(flate2::bufread::MultiGzDecoder::new(body), max).map_err(corrupt)
        }
        ContentEncoding::Deflate => {
            let raw = || read_first_line(flate2::bufread::DeflateDecoder::new(body), max);
            if !looks_like_zlib(body) {
                return raw().map_err(corrupt);
            }
            match read_first_line(flate2::bufread::ZlibDecoder::new(body), max) {
                Ok(line) => Ok(line),
                Err(zlib_err) => raw().map_err(|_| corrupt(zlib_err)),
            }
        }
        ContentEncoding::Brotli => {
            read_first_line(brotli::Decompressor::new(body, BROTLI_BUFFER), max).map_err(corrupt)
        }
        ContentEncoding::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(body).map_err(corrupt)?;
            decoder
                .window_log_max(zstd_window_log_max(max))
                .map_err(corrupt)?;
            read_first_line(decoder, max).map_err(corrupt)
        }
    }
}

/// Reads in small steps until the output holds a newline or `max` bytes (cut to those).
fn read_first_line<R: Read>(mut reader: R, max: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut step = [0u8; 1024];
    while out.len() < max {
        let n = match reader.read(&mut step) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        let piece = &step[..n];
        if let Some(at) = piece.iter().position(|b| *b == b'\n') {
            out.extend_from_slice(&piece[..=at]);
            break;
        }
        out.extend_from_slice(piece);
    }
    out.truncate(max);
    Ok(out)
}

/// `deflate` should be zlib (RFC 1950) but some clients send raw deflate (RFC 1951); Bugsink
/// reads the latter. Use zlib when the first two bytes are a valid zlib header, and fall back
/// to raw deflate when they are not or when zlib decoding fails.
fn decode_deflate(body: &[u8], limit: usize) -> Result<Vec<u8>, ReadError> {
    if !looks_like_zlib(body) {
        return read_limited(flate2::bufread::DeflateDecoder::new(body), limit);
    }
    match read_limited(flate2::bufread::ZlibDecoder::new(body), limit) {
        Err(ReadError::Io(zlib_err)) => {
            match read_limited(flate2::bufread::DeflateDecoder::new(body), limit) {
                // Both failed: report the zlib error, as the body announced itself as zlib.
                Err(ReadError::Io(_)) => Err(ReadError::Io(zlib_err)),
                other => other,
            }
        }
        other => other,
    }
}

/// RFC 1950 header check: compression method 8 with a window of at most 32 KiB, no preset
/// dictionary, and the check bits making the first 16 bits a multiple of 31.
fn looks_like_zlib(body: &[u8]) -> bool {
    match body {
        [cmf, flg, ..] => {
            cmf & 0x0f == 8
                && cmf >> 4 <= 7
                && flg & 0x20 == 0
                && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0
        }
        _ => false,
    }
}

const BROTLI_BUFFER: usize = 4096;

/// Chunk size of the decompression loop; the output grows by at most this much past what
/// was already accepted before the limit is checked.
const CHUNK: usize = 16 * 1024;

fn zstd_window_log_max(limit: usize) -> u32 {
    // ceil(log2(limit)), clamped to [23 (8 MiB), 27 (zstd's own default maximum)].
    let needed = usize::BITS - limit.saturating_sub(1).leading_zeros();
    needed.clamp(23, 27)
}

/// Outcome of [`read_limited`] other than success; mapped to [`BodyError`] by the caller,
/// which knows the encoding and the limit.
enum ReadError {
    TooLarge,
    Io(io::Error),
}

/// Reads a decoder to the end, refusing to hold more than `limit` bytes of output. Memory is
/// bounded by `limit` plus one chunk, however much the decoder could still produce.
fn read_limited<R: Read>(reader: R, limit: usize) -> Result<Vec<u8>, ReadError> {
    // One chunk buffer per thread: zeroing a fresh one for every request body showed up in
    // ingest's profile. (The decoders read the body slice directly: `bufread`, no copy.)
    thread_local! {
        static CHUNK_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; CHUNK]);
    }
    CHUNK_BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut chunk) => read_limited_with(reader, limit, &mut chunk),
        // Re-entered on this thread (cannot happen today): a buffer of its own.
        Err(_) => read_limited_with(reader, limit, &mut vec![0u8; CHUNK]),
    })
}

fn read_limited_with<R: Read>(
    mut reader: R,
    limit: usize,
    chunk: &mut [u8],
) -> Result<Vec<u8>, ReadError> {
    let mut out: Vec<u8> = Vec::new();
    loop {
        let n = match reader.read(chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(ReadError::Io(err)),
        };
        if n > limit - out.len() {
            return Err(ReadError::TooLarge);
        }
        // Grow geometrically but never past `limit`, so the buffer stays within the limit
        // even when the output ends up exactly that large.
        if out.capacity() - out.len() < n {
            let target = (out.capacity() * 2)
                .max(out.len() + n)
                .max(CHUNK)
                .min(limit);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, Instant};

    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};

    use tracking_alloc::peak_allocated_during;

    /// An envelope as sentry-python posts it, so round trips exercise realistic data.
    fn sample_body() -> Vec<u8> {
        let event = r#"{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","level":"error","platform":"python","exception":{"values":[{"type":"ZeroDivisionError","value":"division by zero","stacktrace":{"frames":[{"filename":"app.py","function":"handler","lineno":12}]}}]}}"#;
        let mut body = format!(
            "{{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"sent_at\":\"2026-01-02T03:04:05.678Z\"}}\n{{\"type\":\"event\",\"length\":{}}}\n{event}\n",
            event.len()
        )
        .into_bytes();
        // Some incompressible bytes too, so the output spans several decoder chunks.
        let mut x: u32 = 12345;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            body.push(x as u8);
        }
        body
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = brotli::CompressorWriter::new(&mut out, 4096, 4, 22);
            enc.write_all(data).unwrap();
        }
        out
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::encode_all(data, 3).unwrap()
    }

    type Encoder = fn(&[u8]) -> Vec<u8>;

    /// Every encoding SDKs may use, with the header value and an encoder.
    fn encoders() -> Vec<(&'static str, Encoder)> {
        vec![
            ("gzip", gzip),
            ("x-gzip", gzip),
            ("deflate", zlib),
            ("deflate", raw_deflate),
            ("br", brotli),
            ("zstd", zstd),
        ]
    }

    fn decode_ok(encoding: &str, body: &[u8], limit: usize) -> Bytes {
        match decode_body(Some(encoding), body, limit) {
            Ok(out) => out,
            Err(err) => panic!("{encoding}: {err}"),
        }
    }

    #[test]
    fn identity_spellings_pass_the_body_through() {
        let body = sample_body();
        for header in [
            None,
            Some(""),
            Some("  "),
            Some("identity"),
            Some("Identity"),
            Some("UTF-8"),
            Some("utf-8"),
        ] {
            let out = decode_body(header, &body, body.len()).unwrap();
            assert_eq!(out.as_ref(), body.as_slice(), "{header:?}");
        }
    }

    #[test]
    fn identity_passthrough_does_not_copy_bytes() {
        let body = Bytes::from(sample_body());
        let out = decode_body_bytes(None, body.clone(), usize::MAX).unwrap();
        assert_eq!(out.as_ptr(), body.as_ptr());
        let compressed = Bytes::from(gzip(&body));
        let out = decode_body_bytes(Some("gzip"), compressed, usize::MAX).unwrap();
        assert_eq!(out, body);
    }

    #[test]
    fn identity_limit() {
        let body = sample_body();
        assert!(decode_body(None, &body, body.len()).is_ok());
        let err = decode_body(None, &body, body.len() - 1).unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { .. }));
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn every_encoding_round_trips() {
        let body = sample_body();
        for (header, encode) in encoders() {
            let compressed = encode(&body);
            assert_eq!(
                decode_ok(header, &compressed, body.len()).as_ref(),
                body.as_slice()
            );
            // Header values are case-insensitive and may carry whitespace.
            let shouted = format!(" {} ", header.to_ascii_uppercase());
            assert_eq!(
                decode_ok(&shouted, &compressed, body.len()).as_ref(),
                body.as_slice()
            );
        }
    }

    #[test]
    fn limit_applies_to_decompressed_size() {
        let body = sample_body();
        for (header, encode) in encoders() {
            let compressed = encode(&body);
            // Exactly at the limit is fine, one byte less is not.
            assert_eq!(decode_ok(header, &compressed, body.len()).len(), body.len());
            let err = decode_body(Some(header), &compressed, body.len() - 1).unwrap_err();
            assert!(
                matches!(err, BodyError::TooLarge { limit } if limit == body.len() - 1),
                "{header}: {err}"
            );
            assert_eq!(err.status(), 413);
            assert!(matches!(
                decode_body(Some(header), &compressed, 0),
                Err(BodyError::TooLarge { limit: 0 })
            ));
        }
    }

    #[test]
    fn empty_bodies_decode_to_empty() {
        for header in ["gzip", "deflate", "br", "zstd", "identity"] {
            assert!(decode_ok(header, b"", 0).is_empty(), "{header}");
        }
    }

    #[test]
    fn compressed_empty_payloads_decode_to_empty() {
        for (header, encode) in encoders() {
            assert!(decode_ok(header, &encode(b""), 0).is_empty(), "{header}");
        }
    }

    #[test]
    fn garbage_is_400() {
        let garbage: &[u8] = b"this is not compressed at all, just text \x00\x01\x02\xff";
        for header in ["gzip", "x-gzip", "deflate", "br", "zstd"] {
            let err = decode_body(Some(header), garbage, 1 << 20).unwrap_err();
            assert!(
                matches!(err, BodyError::Corrupt { .. }),
                "{header}: {err:?}"
            );
            assert_eq!(err.status(), 400);
            assert!(err.to_string().starts_with("could not decode "), "{err}");
        }
    }

    #[test]
    fn wrong_encoding_is_400() {
        let body = sample_body();
        let gz = gzip(&body);
        for header in ["deflate", "br", "zstd"] {
            let err = decode_body(Some(header), &gz, 1 << 20).unwrap_err();
            assert_eq!(err.status(), 400, "{header}: {err}");
        }
        let err = decode_body(Some("gzip"), &zstd(&body), 1 << 20).unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
    }

    #[test]
    fn truncated_streams_are_400() {
        let body = sample_body();
        for (header, encode) in encoders() {
            let compressed = encode(&body);
            for cut in [compressed.len() / 2, compressed.len() - 1] {
                let err = decode_body(Some(header), &compressed[..cut], 1 << 20).unwrap_err();
                assert!(
                    matches!(err, BodyError::Corrupt { .. }),
                    "{header} cut at {cut}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn corrupted_gzip_checksum_is_400() {
        let mut gz = gzip(&sample_body());
        let crc_at = gz.len() - 8;
        gz[crc_at] ^= 0xff;
        let err = decode_body(Some("gzip"), &gz, 1 << 20).unwrap_err();
        assert!(matches!(err, BodyError::Corrupt { .. }), "{err:?}");
    }

    #[test]
    fn concatenated_gzip_members_are_one_body() {
        let mut gz = gzip(b"hello ");
        gz.extend(gzip(b"world"));
        assert_eq!(decode_ok("gzip", &gz, 100).as_ref(), b"hello world");
    }

    #[test]
    fn unknown_and_multiple_encodings_are_415() {
        for header in ["compress", "bzip2", "xz", "lz4", "gzip2", "br;q=1"] {
            let err = decode_body(Some(header), b"x", 10).unwrap_err();
            assert!(matches!(err, BodyError::UnsupportedEncoding(_)), "{header}");
            assert_eq!(err.status(), 415);
            assert!(err.to_string().contains(header), "{err}");
        }
        for header in ["gzip, br", "identity,gzip", "gzip,"] {
            let err = decode_body(Some(header), b"x", 10).unwrap_err();
            assert!(matches!(err, BodyError::MultipleEncodings(_)), "{header}");
            assert_eq!(err.status(), 415);
        }
    }

    #[test]
    fn content_encoding_parsing() {
        use ContentEncoding::*;
        let cases = [
            (None, Identity),
            (Some("GZIP"), Gzip),
            (Some("X-Gzip"), Gzip),
            (Some("Deflate"), Deflate),
            (Some("BR"), Brotli),
            (Some("Zstd"), Zstd),
            (Some("\tgzip\r"), Gzip),
        ];
        for (header, expected) in cases {
            assert_eq!(
                ContentEncoding::parse(header).unwrap(),
                expected,
                "{header:?}"
            );
        }
        assert_eq!(Brotli.to_string(), "br");
    }

    #[test]
    fn zlib_header_detection() {
        assert!(looks_like_zlib(&zlib(b"abc")));
        // zlib at every level: the FLEVEL bits change, the check must still hold.
        for level in 0..=9 {
            let mut enc = ZlibEncoder::new(Vec::new(), Compression::new(level));
            enc.write_all(b"abc").unwrap();
            assert!(looks_like_zlib(&enc.finish().unwrap()), "level {level}");
        }
        assert!(!looks_like_zlib(&raw_deflate(b"abc")));
        assert!(!looks_like_zlib(b"x"));
        assert!(!looks_like_zlib(b""));
    }

    #[test]
    fn zstd_window_is_capped_by_the_limit() {
        assert_eq!(zstd_window_log_max(0), 23);
        assert_eq!(zstd_window_log_max(1 << 20), 23);
        assert_eq!(zstd_window_log_max((1 << 24) + 1), 25);
        assert_eq!(zstd_window_log_max(200 << 20), 27);
        assert_eq!(zstd_window_log_max(usize::MAX), 27);

        // A frame that asks for a 256 MiB window (streaming, no declared size) is refused
        // before zstd allocates it.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.window_log(28).unwrap();
        enc.long_distance_matching(true).unwrap();
        enc.write_all(b"small").unwrap();
        let frame = enc.finish().unwrap();
        let err = decode_body(Some("zstd"), &frame, 1 << 20).unwrap_err();
        assert!(matches!(err, BodyError::Corrupt { .. }), "{err:?}");
    }

    /// 1 GiB of zeros, gzip-compressed to about 1 MiB by streaming 1 MiB chunks through the
    /// encoder (the bomb never exists uncompressed).
    fn gzip_bomb() -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            enc.write_all(&zeros).unwrap();
        }
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_bomb_fails_fast_with_bounded_memory() {
        let bomb = gzip_bomb();
        assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
        let limit = 1 << 20;

        let started = Instant::now();
        let (result, peak) = peak_allocated_during(|| decode_body(Some("gzip"), &bomb, limit));
        let elapsed = started.elapsed();

        assert!(
            matches!(result, Err(BodyError::TooLarge { limit: 1048576 })),
            "{result:?}"
        );
        // Output buffer (<= limit) + one chunk + the inflater's state (~40 KiB); far from 1 GiB.
        assert!(peak < limit + (1 << 20), "peak allocation {peak} bytes");
        // Only ~1 MiB had to be inflated before giving up.
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    }

    #[test]
    fn bombs_in_every_encoding_stop_at_the_limit() {
        // 64 MiB of zeros each: enough to show the limit (256 KiB) stops decoding early.
        let zeros = vec![0u8; 64 << 20];
        let limit = 256 << 10;
        let bombs: Vec<(&str, Vec<u8>)> = vec![
            ("deflate", zlib(&zeros)),
            ("deflate", raw_deflate(&zeros)),
            ("br", {
                let mut out = Vec::new();
                {
                    let mut enc = brotli::CompressorWriter::new(&mut out, 1 << 16, 1, 22);
                    enc.write_all(&zeros).unwrap();
                }
                out
            }),
            ("zstd", zstd::encode_all(&zeros[..], 1).unwrap()),
        ];
        drop(zeros);
        for (header, bomb) in bombs {
            let (result, peak) = peak_allocated_during(|| decode_body(Some(header), &bomb, limit));
            assert!(
                matches!(result, Err(BodyError::TooLarge { .. })),
                "{header}: {result:?}"
            );
            // Bounded by the limit plus the format's window: 32 KiB for deflate, the 4 MiB
            // ring buffer brotli allocates for this lgwin-22 stream (16 MiB at most for any
            // brotli stream), and nothing visible for zstd, whose buffers live in C (its window
            // is capped separately, see `zstd_window_is_capped_by_the_limit`).
            assert!(
                peak < limit + (8 << 20),
                "{header}: peak allocation {peak} bytes"
            );
        }
    }

    #[test]
    fn first_line_is_decoded_alone_and_bombs_stop_at_max() {
        let body = sample_body();
        let first_line_len = body.iter().position(|b| *b == b'\n').expect("newline") + 1;
        for (name, encode) in encoders() {
            let encoding = ContentEncoding::parse(Some(name)).expect("known");
            let line = decode_first_line(encoding, &encode(&body), 1 << 16).expect(name);
            assert_eq!(line, &body[..first_line_len], "{name}");
        }
        // Zeros without a newline: only `max` bytes come out, however much the body expands to.
        let bomb = gzip_bomb();
        let (line, peak) = peak_allocated_during(|| {
            decode_first_line(ContentEncoding::Gzip, &bomb, 4096).expect("gzip")
        });
        assert_eq!(line.len(), 4096);
        assert!(peak < 1 << 20, "peak {peak}");
        assert!(matches!(
            decode_first_line(ContentEncoding::Gzip, b"not gzip at all", 4096),
            Err(BodyError::Corrupt { .. })
        ));
        assert_eq!(
            decode_first_line(ContentEncoding::Identity, b"{}\nrest", 100).expect("identity"),
            b"{}\n"
        );
        assert_eq!(
            decode_first_line(ContentEncoding::Identity, b"{}", 1).expect("identity"),
            b"{"
        );
    }

    #[test]
    fn output_buffer_never_exceeds_the_limit() {
        // Decoding a body of exactly `limit` bytes must not reserve more than `limit`.
        let body = sample_body();
        let limit = body.len();
        let compressed = gzip(&body);
        let (out, _) = peak_allocated_during(|| decode_body(Some("gzip"), &compressed, limit));
        assert_eq!(out.unwrap().len(), limit);
        let out = read_limited(&body[..], limit).ok().unwrap();
        assert!(out.capacity() <= limit, "{} > {limit}", out.capacity());
    }
}

/// A global allocator for this crate's unit tests that records, per thread, the peak of bytes
/// allocated, so the bomb tests can show that decoding stays within its memory bound.
#[cfg(test)]
mod tracking_alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static CURRENT: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    struct Tracking;

    #[global_allocator]
    static GLOBAL: Tracking = Tracking;

    fn record(delta: isize) {
        // `try_with`: never panic inside the allocator, e.g. during thread teardown.
        let _ = CURRENT.try_with(|current| {
            let now = current.get() + delta;
            current.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    unsafe impl GlobalAlloc for Tracking {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded unchanged to the system allocator.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                record(layout.size() as isize);
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded unchanged to the system allocator.
            let ptr = unsafe { System.alloc_zeroed(layout) };
            if !ptr.is_null() {
                record(layout.size() as isize);
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded unchanged to the system allocator.
            unsafe { System.dealloc(ptr, layout) };
            record(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded unchanged to the system allocator.
            let new = unsafe { System.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                record(new_size as isize - layout.size() as isize);
            }
            new
        }
    }

    /// Runs `f` and returns its result and the peak number of bytes this thread held in
    /// allocations made during it (allocations made by C code, such as zstd's, are not seen).
    pub fn peak_allocated_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let base = CURRENT.with(Cell::get);
        PEAK.with(|peak| peak.set(base));
        let result = f();
        let peak = PEAK.with(Cell::get);
        (result, usize::try_from(peak - base).unwrap_or(0))
    }
}
