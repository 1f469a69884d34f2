//! Parsing uploaded files once: minified sources and source maps, with limits, never
//! panicking on what a user uploaded. A parse error is a value (cached like a success), so
//! a broken map is not re-parsed for every event that points at it.

use std::collections::HashMap;
use std::sync::Arc;

use sourcemap::{DecodedMap, SourceMap, SourceView};

/// Uploaded original sources (artifacts of kind `source`) for a map's sources that have no
/// `sourcesContent`, by the map's source index.
pub type UploadedSources = HashMap<u32, Arc<MinifiedFile>>;

/// Largest minified file or source map read; bigger ones are reported, not parsed.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

/// A minified JavaScript file as uploaded.
pub struct MinifiedFile {
    /// The text, with a line index built on demand.
    pub view: SourceView,
    /// The `sourceMappingURL` its last comment names, if any.
    pub map_ref: Option<String>,
}

impl MinifiedFile {
    /// Reads uploaded bytes (invalid UTF-8 replaced; minified code is ASCII in practice).
    pub fn parse(bytes: &[u8]) -> MinifiedFile {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let map_ref = super::urls::source_mapping_url(&text);
        MinifiedFile {
            view: SourceView::from_string(text),
            map_ref,
        }
    }

    /// The estimated memory a cached copy holds.
    pub fn cost(&self) -> usize {
        self.view.source().len() * 5 / 4 + 64
    }
}

/// Why a source map could not be used.
#[derive(Debug, Clone, PartialEq)]
pub enum MapError {
    /// Bigger than [`MAX_FILE_BYTES`].
    TooLarge(usize),
    /// Not JSON at all (or cut off).
    NotJson(String),
    /// JSON, but not a usable source map (bad mappings, unresolved index sections, ...).
    Invalid(String),
    /// Its bytes could not be read from the artifact store (never cached: it may be back).
    Unreadable(String),
}

impl MapError {
    /// A sentence for the event page.
    pub fn message(&self) -> String {
        match self {
            MapError::TooLarge(n) => format!(
                "the source map is {n} bytes, more than the {} bytes Faultline reads",
                MAX_FILE_BYTES
            ),
            MapError::NotJson(e) => format!("the source map is not valid JSON: {e}"),
            MapError::Invalid(e) => format!("the source map is not usable: {e}"),
            MapError::Unreadable(e) => format!("the source map could not be read: {e}"),
        }
    }
}

/// A source map ready for lookups (index maps are flattened into one regular map).
pub struct ParsedMap {
    pub map: SourceMap,
    cost: usize,
}

impl ParsedMap {
    /// The estimated memory a cached copy holds.
    pub fn cost(&self) -> usize {
        self.cost
    }
}

/// Parses a source map (regular, index map with embedded sections, or Hermes).
pub fn parse_map(bytes: &[u8]) -> Result<ParsedMap, MapError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(MapError::TooLarge(bytes.len()));
    }
    let decoded = sourcemap::decode_slice(bytes).map_err(classify)?;
    from_decoded(decoded, bytes.len())
}

/// Parses an inline `data:application/json;base64,...` source map.
pub fn parse_data_url(url: &str) -> Result<ParsedMap, MapError> {
    if url.len() > MAX_FILE_BYTES * 4 / 3 + 64 {
        return Err(MapError::TooLarge(url.len() * 3 / 4));
    }
    let decoded = sourcemap::decode_data_url(url).map_err(|e| match e {
        sourcemap::Error::InvalidDataUrl => {
            MapError::Invalid("the inline data: URL is not base64 JSON".into())
        }
        e => classify(e),
    })?;
    from_decoded(decoded, url.len())
}

fn classify(e: sourcemap::Error) -> MapError {
    match e {
        sourcemap::Error::BadJson(e) => MapError::NotJson(e.to_string()),
        sourcemap::Error::Utf8(e) => MapError::NotJson(e.to_string()),
        sourcemap::Error::Io(e) => MapError::NotJson(e.to_string()),
        e => MapError::Invalid(e.to_string()),
    }
}

fn from_decoded(decoded: DecodedMap, size: usize) -> Result<ParsedMap, MapError> {
    let map = match decoded {
        DecodedMap::Regular(map) => map,
        DecodedMap::Index(index) => index.flatten().map_err(|e| match e {
            sourcemap::Error::CannotFlatten(_) => MapError::Invalid(
                "an index map section refers to a map by URL instead of embedding it".into(),
            ),
            e => classify(e),
        })?,
        DecodedMap::Hermes(hermes) => (*hermes).clone(),
    };
    if map.get_token_count() == 0 {
        return Err(MapError::Invalid("it has no mappings".into()));
    }
    let cost = size * 2 + map.get_token_count() as usize * 32;
    Ok(ParsedMap { map, cost })
}

/// Where a minified position leads in the original sources.
#[derive(Debug, Clone, PartialEq)]
pub struct Original {
    /// The source as the map names it (after `sourceRoot`).
    pub source: String,
    /// 1-based.
    pub lineno: u64,
    /// 1-based.
    pub colno: u64,
    /// The identifier at this position in the original code (the callee at a call site).
    pub name: Option<String>,
    /// The name of the enclosing original function, when the minified code tells it.
    pub function: Option<String>,
    pub pre_context: Vec<String>,
    pub context_line: Option<String>,
    pub post_context: Vec<String>,
}

/// Why a position could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationError {
    /// The line (or column) is beyond the minified file or has no mapping.
    OutOfRange,
    /// The mapping there names no original source.
    NoSource,
}

const CONTEXT_LINES: u32 = 5;
/// Original lines longer than this are cut around the column (minified vendor code).
const MAX_LINE_CHARS: usize = 200;

/// Maps a 1-based minified (line, column) through `map`. `minified` (when uploaded) is used
/// to check the position and to find the enclosing function's original name;
/// `minified_function` is the function name the runtime reported; `uploaded` gives context
/// lines for sources the map carries no content for.
pub fn lookup(
    map: &ParsedMap,
    minified: Option<&MinifiedFile>,
    lineno: u64,
    colno: u64,
    minified_function: Option<&str>,
    uploaded: &UploadedSources,
) -> Result<Original, LocationError> {
    let line0 = u32::try_from(lineno.saturating_sub(1)).map_err(|_| LocationError::OutOfRange)?;
    let col0 = u32::try_from(colno.saturating_sub(1)).map_err(|_| LocationError::OutOfRange)?;
    if let Some(file) = minified {
        match file.view.get_line(line0) {
            // Bytes are never fewer than UTF-16 units (what columns count); counting units would
            // scan a whole one-line bundle for every frame.
            Some(line) if (col0 as usize) <= line.len() => {}
            _ => return Err(LocationError::OutOfRange),
        }
    }
    let token = map
        .map
        .lookup_token(line0, col0)
        .ok_or(LocationError::OutOfRange)?;
    // The nearest mapping before the position must be on the same line: a position past
    // the last mapped line would otherwise take that line's last mapping.
    if token.get_dst_line() != line0 {
        return Err(LocationError::OutOfRange);
    }
    let source = token.get_source().ok_or(LocationError::NoSource)?;
    let src_line = token.get_src_line();
    let src_col = token.get_src_col();
    if src_line == u32::MAX {
        return Err(LocationError::NoSource);
    }
    let function = match (minified, minified_function) {
        (Some(file), Some(runtime_name)) if !last_segment(runtime_name).is_empty() => file
            .view
            .get_original_function_name(token, last_segment(runtime_name))
            .map(str::to_owned)
            .or_else(|| scope_name(&map.map, file, line0, col0, runtime_name)),
        _ => None,
    };
    let mut original = Original {
        source: source.to_owned(),
        lineno: u64::from(src_line) + 1,
        colno: u64::from(src_col).saturating_add(1),
        name: token
            .get_name()
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        function,
        pre_context: Vec::new(),
        context_line: None,
        post_context: Vec::new(),
    };
    let view = map
        .map
        .get_source_view(token.get_src_id())
        .or_else(|| uploaded.get(&token.get_src_id()).map(|source| &source.view));
    if let Some(view) = view {
        let col = src_col as usize;
        original.context_line = view.get_line(src_line).map(|l| trim_line(l, col));
        if original.context_line.is_some() {
            let first = src_line.saturating_sub(CONTEXT_LINES);
            original.pre_context = (first..src_line)
                .filter_map(|l| view.get_line(l).map(|s| trim_line(s, 0)))
                .collect();
            original.post_context = (src_line.saturating_add(1)
                ..src_line.saturating_add(1 + CONTEXT_LINES))
                .map_while(|l| view.get_line(l).map(|s| trim_line(s, 0)))
                .collect();
        }
    }
    Ok(original)
}

/// How many mappings before the position are searched for the function's binding.
const SCOPE_SEARCH_TOKENS: usize = 1024;

/// The original name of a function that has no `function NAME` of its own, the way the
/// runtime named it: an arrow or anonymous function bound to a variable
/// (`const handler = () => {}`, minified `var r=t=>{`) or assigned to a property
/// (`registry.handleOrder = function () {}`, minified `o.handleOrder=function(t){`, which
/// V8 reports as `o.handleOrder`), or an object literal's property (`{ onClick: () => {} }`).
/// Walks back over the mappings before the position to the binding of the runtime's name
/// followed by a function, and names each part by the map (`o` -> `registry`).
///
/// Why not symbolic's SourceMapCache, which parses the minified file into scopes: it
/// compiles a whole JavaScript parser (swc) into the binary for what this covers in the
/// shapes bundlers emit; its results would differ for class methods and nested scopes
/// that reuse a minified name.
fn scope_name(
    map: &SourceMap,
    file: &MinifiedFile,
    line0: u32,
    col0: u32,
    runtime_name: &str,
) -> Option<String> {
    let name = runtime_name
        .strip_prefix("new ")
        .or_else(|| runtime_name.strip_prefix("async "))
        .unwrap_or(runtime_name)
        .trim();
    let target = name.rsplit('.').next()?;
    if target.is_empty() || !target.bytes().all(is_ident_byte) {
        return None;
    }
    let mut idx = token_index_at(map, line0, col0)?;
    for _ in 0..SCOPE_SEARCH_TOKENS {
        let token = map.get_token(idx as usize)?;
        let line = file.view.get_line(token.get_dst_line())?;
        let start = token.get_dst_col() as usize;
        if let Some(ident) = ident_at(line, start)
            && ident == target
            && binds_function(&line[start + ident.len()..])
        {
            let own = token.get_name().filter(|n| !n.is_empty()).unwrap_or(ident);
            let mut parts = vec![own.to_owned()];
            // `a.b.name=`: name the receivers too, each by its own mapping.
            let mut end = start;
            while end > 0 && line.as_bytes()[end - 1] == b'.' {
                let seg_end = end - 1;
                let seg_start = line[..seg_end]
                    .bytes()
                    .rposition(|b| !is_ident_byte(b))
                    .map_or(0, |p| p + 1);
                if seg_start == seg_end {
                    break;
                }
                let minified_seg = &line[seg_start..seg_end];
                let original = map
                    .lookup_token(token.get_dst_line(), seg_start as u32)
                    .filter(|t| {
                        t.get_dst_line() == token.get_dst_line()
                            && t.get_dst_col() as usize == seg_start
                    })
                    .and_then(|t| t.get_name().filter(|n| !n.is_empty()))
                    .unwrap_or(minified_seg);
                parts.push(original.to_owned());
                end = seg_start;
            }
            parts.reverse();
            return Some(parts.join("."));
        }
        idx = idx.checked_sub(1)?;
    }
    None
}

/// Index of the last mapping at or before (line, column).
fn token_index_at(map: &SourceMap, line0: u32, col0: u32) -> Option<u32> {
    let count = map.get_token_count();
    let (mut lo, mut hi) = (0u32, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let t = map.get_token(mid as usize)?;
        if (t.get_dst_line(), t.get_dst_col()) <= (line0, col0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo.checked_sub(1)
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// The identifier starting at byte `start` of `line` (minified code is ASCII in practice;
/// anything else is not an identifier here).
fn ident_at(line: &str, start: usize) -> Option<&str> {
    let rest = line.get(start..)?;
    let len = rest.bytes().take_while(|b| is_ident_byte(*b)).count();
    let ident = &rest[..len];
    (len > 0 && !ident.as_bytes()[0].is_ascii_digit()).then_some(ident)
}

/// Whether the text after a name binds a function to it: `=` or `:` (not `==`, `=>`),
/// then `function`, `async`, `(` or `param=>`.
fn binds_function(after: &str) -> bool {
    let after = after.trim_start();
    let value = if let Some(v) = after.strip_prefix('=') {
        if v.starts_with('=') || v.starts_with('>') {
            return false;
        }
        v
    } else if let Some(v) = after.strip_prefix(':') {
        v
    } else {
        return false;
    };
    let value = value.trim_start();
    if value.starts_with("function") || value.starts_with("async") || value.starts_with('(') {
        return true;
    }
    let param = value.bytes().take_while(|b| is_ident_byte(*b)).count();
    param > 0 && value[param..].trim_start().starts_with("=>")
}

/// `Object.foo` -> `foo`, `new Foo` -> `Foo`, `async bar` -> `bar`.
fn last_segment(name: &str) -> &str {
    let name = name
        .strip_prefix("new ")
        .or_else(|| name.strip_prefix("async "))
        .unwrap_or(name);
    name.rsplit('.').next().unwrap_or(name).trim()
}

/// A context line as shown: whole when short, else a window around `col` (in chars).
pub fn trim_line(line: &str, col: usize) -> String {
    let line = line.trim_end_matches('\r');
    let len = line.chars().count();
    if len <= MAX_LINE_CHARS {
        return line.to_owned();
    }
    let start = col
        .saturating_sub(MAX_LINE_CHARS / 2)
        .min(len - MAX_LINE_CHARS);
    let mut out: String = line.chars().skip(start).take(MAX_LINE_CHARS).collect();
    if start > 0 {
        out.insert(0, '…');
    }
    if start + MAX_LINE_CHARS < len {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_around_the_column() {
        let line = "x".repeat(1000);
        let cut = trim_line(&line, 500);
        assert_eq!(cut.chars().count(), MAX_LINE_CHARS + 2);
        assert!(cut.starts_with('…') && cut.ends_with('…'));
        assert_eq!(trim_line("short", 3), "short");
        assert!(trim_line(&line, 0).starts_with("xxx"));
    }

    #[test]
    fn huge_and_broken_maps_are_errors_not_panics() {
        let huge = vec![b' '; MAX_FILE_BYTES + 1];
        assert_eq!(
            parse_map(&huge).err(),
            Some(MapError::TooLarge(MAX_FILE_BYTES + 1))
        );
        assert!(matches!(
            parse_map(b"{\"version\":3,"),
            Err(MapError::NotJson(_))
        ));
        assert!(matches!(parse_map(b"[1, 2]"), Err(MapError::NotJson(_))));
        assert!(matches!(
            parse_data_url("data:application/json;base64,%%%"),
            Err(MapError::Invalid(_))
        ));
        assert!(matches!(
            parse_data_url("data:text/plain,hello"),
            Err(MapError::Invalid(_))
        ));
        // A valid map, then positions far outside it.
        let map = parse_map(
            br#"{"version":3,"sources":["a.js"],"sourcesContent":["let a = 1;\nthrow a;\n"],"names":[],"mappings":"AAAA;AACA"}"#,
        )
        .expect("a map");
        assert_eq!(
            lookup(&map, None, 2, 1, None, &HashMap::new()).map(|o| o.lineno),
            Ok(2)
        );
        assert_eq!(
            lookup(&map, None, 2, 1, None, &HashMap::new()).map(|o| o.context_line),
            Ok(Some("throw a;".into()))
        );
        assert_eq!(
            lookup(&map, None, 3, 1, None, &HashMap::new()),
            Err(LocationError::OutOfRange)
        );
        assert_eq!(
            lookup(&map, None, u64::MAX, u64::MAX, Some("x"), &HashMap::new()),
            Err(LocationError::OutOfRange)
        );
        let minified = MinifiedFile::parse(b"a();\nb();\n//# sourceMappingURL=a.js.map");
        assert_eq!(minified.map_ref.as_deref(), Some("a.js.map"));
        assert_eq!(
            lookup(&map, Some(&minified), 2, 50, None, &HashMap::new()),
            Err(LocationError::OutOfRange)
        );
    }

    #[test]
    fn bindings_of_functions_are_recognised() {
        for yes in [
            "=function(t){",
            "=t=>{",
            "= async()=>1",
            ":(e)=>e",
            ": function(){",
            "=(a,b)=>a",
        ] {
            assert!(binds_function(yes), "{yes}");
        }
        for no in ["==t", "=>t", "=1", "=t+1", ":t,", "(t){", ""] {
            assert!(!binds_function(no), "{no}");
        }
        assert_eq!(ident_at("var r=t=>{", 4), Some("r"));
        assert_eq!(ident_at("x=1", 2), None);
        assert_eq!(ident_at("é", 1), None);
    }

    #[test]
    fn function_names_lose_their_receiver() {
        assert_eq!(last_segment("Object.foo"), "foo");
        assert_eq!(last_segment("e.checkout"), "checkout");
        assert_eq!(last_segment("new Cart"), "Cart");
        assert_eq!(last_segment("u"), "u");
    }
}
