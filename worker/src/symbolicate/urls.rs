//! File URLs as frames, uploads and `sourceMappingURL` comments spell them.
//!
//! Uploaded files are named by URL (`https://example.com/static/app.js`) or with `~` in place
//! of scheme and host (`~/static/app.js`, what sentry-cli writes by default); a frame names
//! its file by the full URL the browser loaded, a path (Node), or an `app:///` URL.

use url::Url;

/// The pseudo host that stands for `~` while joining relative URLs.
const TILDE_BASE: &str = "http://faultline-tilde.invalid";

/// The names an uploaded file may have for a frame's `abs_path`, best first (PROTOCOL §7.1):
/// the URL without its fragment, that without its query, then the `~/path` forms.
pub fn candidates(abs_path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(4);
    let mut push = |s: &str| {
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    let no_fragment = abs_path.split('#').next().unwrap_or(abs_path);
    let no_query = no_fragment.split('?').next().unwrap_or(no_fragment);
    push(no_fragment);
    push(no_query);
    // The path after scheme and host (`https://h/a.js` -> `/a.js`, `app:///a.js` -> `/a.js`);
    // a plain absolute path (Node) is its own path.
    let path_with_query = if let Some(rest) = no_fragment.split_once("://").map(|(_, r)| r) {
        rest.find('/').map(|i| &rest[i..])
    } else if no_fragment.starts_with('/') {
        Some(no_fragment)
    } else {
        no_fragment.strip_prefix('~')
    };
    if let Some(path) = path_with_query {
        push(&format!("~{path}"));
        let path = path.split('?').next().unwrap_or(path);
        push(&format!("~{path}"));
    }
    out
}

/// Resolves `reference` (a `sourceMappingURL` or a source path of a map) against the URL
/// of the file that contains it; `~/` works as a root. What cannot be joined is returned
/// as it is.
pub fn join(base: &str, reference: &str) -> String {
    if reference.starts_with("data:") || is_absolute_url(reference) || reference.starts_with('~') {
        return reference.to_owned();
    }
    if let Some(rest) = base.strip_prefix('~') {
        let Ok(b) = Url::parse(&format!("{TILDE_BASE}{rest}")) else {
            return reference.to_owned();
        };
        return match b.join(reference) {
            Ok(u) if u.as_str().starts_with(TILDE_BASE) => {
                format!("~{}", &u.as_str()[TILDE_BASE.len()..])
            }
            _ => reference.to_owned(),
        };
    }
    if base.starts_with('/') {
        // A file path (Node): join as a file URL and turn it back into a path.
        let Ok(b) = Url::parse(&format!("file://{base}")) else {
            return reference.to_owned();
        };
        return match b.join(reference) {
            Ok(u) if u.scheme() == "file" => percent_decode(u.path()),
            _ => reference.to_owned(),
        };
    }
    match Url::parse(base).and_then(|b| b.join(reference)) {
        Ok(u) => u.to_string(),
        Err(_) => reference.to_owned(),
    }
}

/// Whether `s` starts with a URL scheme (`https:`, `webpack:`, `app:`, `file:`).
pub fn is_absolute_url(s: &str) -> bool {
    match s.find(':') {
        Some(i) if i > 1 => s[..i]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'),
        _ => false,
    }
}

/// The name a person reads for an original source: the path of its URL, without `~/`.
pub fn display_filename(source: &str, abs_path: &str) -> String {
    if let Some(rest) = source.strip_prefix("webpack:") {
        return webpack_filename(rest);
    }
    if let Some(rest) = abs_path.strip_prefix("~/") {
        return rest.to_owned();
    }
    if let Some((scheme, rest)) = abs_path.split_once("://")
        && matches!(scheme, "http" | "https" | "app" | "file")
    {
        return match rest.find('/') {
            Some(i) => rest[i..].to_owned(),
            None => abs_path.to_owned(),
        };
    }
    abs_path.to_owned()
}

/// `webpack:///./src/a.js` -> `./src/a.js`, `webpack://app/./src/a.js` -> `./src/a.js`,
/// `webpack:///~/lodash/x.js` -> `~/lodash/x.js`, `webpack:///src/a.js` -> `src/a.js`.
fn webpack_filename(rest: &str) -> String {
    let path = rest.trim_start_matches('/');
    if let Some(i) = path.find("/~/") {
        return path[i + 1..].to_owned();
    }
    if let Some(i) = path.find("/./") {
        return path[i + 1..].to_owned();
    }
    if rest.starts_with("///") {
        return path.to_owned();
    }
    // `webpack://pkg/x.js`: the first segment names the package.
    match path.split_once('/') {
        Some((_, p)) if rest.starts_with("//") => p.to_owned(),
        _ => path.to_owned(),
    }
}

fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last `//# sourceMappingURL=` (or legacy `//@`) reference of a minified file, with
/// query and fragment kept only for `data:` URLs.
pub fn source_mapping_url(source: &str) -> Option<String> {
    // Only the end of a big bundle can hold the comment that counts; scan lines from the
    // back and stop at the first code line that is not a comment.
    for line in source.lines().rev().take(64) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let rest = line
            .strip_prefix("//# sourceMappingURL=")
            .or_else(|| line.strip_prefix("//@ sourceMappingURL="));
        if let Some(url) = rest {
            let url = url.trim();
            if url.is_empty() {
                return None;
            }
            if url.starts_with("data:") {
                return Some(url.to_owned());
            }
            let url = url.split('#').next().unwrap_or(url);
            let url = url.split('?').next().unwrap_or(url);
            return Some(url.to_owned());
        }
        if !line.starts_with("//") && !line.starts_with("/*") {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_urls_follow_sentry_order() {
        assert_eq!(
            candidates("https://ex.com/a/b.js?x=1#y"),
            [
                "https://ex.com/a/b.js?x=1",
                "https://ex.com/a/b.js",
                "~/a/b.js?x=1",
                "~/a/b.js"
            ]
        );
        assert_eq!(candidates("app:///x.js"), ["app:///x.js", "~/x.js"]);
        assert_eq!(
            candidates("/srv/app/dist/app.js"),
            ["/srv/app/dist/app.js", "~/srv/app/dist/app.js"]
        );
        assert_eq!(candidates("~/a.js"), ["~/a.js"]);
        assert!(candidates("").is_empty());
    }

    #[test]
    fn references_resolve_against_the_file_url() {
        assert_eq!(
            join("~/static/js/main.js", "main.js.map"),
            "~/static/js/main.js.map"
        );
        assert_eq!(
            join("~/static/js/main.js.map", "../../src/a.js"),
            "~/src/a.js"
        );
        assert_eq!(
            join("https://ex.com/js/app.js", "app.js.map"),
            "https://ex.com/js/app.js.map"
        );
        assert_eq!(
            join("/srv/app/dist/app.js.map", "../src/a b.js"),
            "/srv/app/src/a b.js"
        );
        assert_eq!(
            join("~/a.js", "https://cdn.ex.com/a.js.map"),
            "https://cdn.ex.com/a.js.map"
        );
        assert_eq!(join("~/a.js", "webpack:///./x.js"), "webpack:///./x.js");
    }

    #[test]
    fn source_mapping_url_is_the_last_comment() {
        assert_eq!(
            source_mapping_url("a();\n//# sourceMappingURL=app.js.map?v=2\n").as_deref(),
            Some("app.js.map")
        );
        assert_eq!(
            source_mapping_url("a();\n//@ sourceMappingURL=old.map").as_deref(),
            Some("old.map")
        );
        assert_eq!(source_mapping_url("a();\n"), None);
        assert_eq!(
            source_mapping_url("//# sourceMappingURL=x.map\ncode();\n"),
            None
        );
    }

    #[test]
    fn display_names() {
        assert_eq!(display_filename("../src/a.js", "~/src/a.js"), "src/a.js");
        assert_eq!(
            display_filename("webpack://app/./src/a.js", "webpack://app/./src/a.js"),
            "./src/a.js"
        );
        assert_eq!(
            display_filename("x", "https://ex.com/static/a.js"),
            "/static/a.js"
        );
        assert_eq!(
            display_filename("../src/a.js", "/srv/src/a.js"),
            "/srv/src/a.js"
        );
    }
}
