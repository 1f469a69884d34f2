//! Comments' Markdown as HTML that is safe to put into a page: the only HTML a template
//! takes unescaped (`|safe`), so it is made here and nowhere else.
//!
//! Two layers, each enough on its own for the usual attacks:
//! 1. pulldown-cmark renders the Markdown, with every piece of raw HTML in the text turned
//!    into plain text first (`<script>` shows as `<script>`), and images turned into links
//!    (no request to another host when the page is opened, no `onerror`).
//! 2. ammonia cleans the result with an allow-list: only formatting tags, `href` only with
//!    `http`, `https` or `mailto` (so no `javascript:` or `data:` links, in any spelling the
//!    browser would accept), no event handler or style attribute; links get
//!    `rel="noopener noreferrer nofollow"`.
//!
//! The pages' Content-Security-Policy (no inline script) is a third layer.

use std::collections::HashSet;
use std::sync::LazyLock;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// The sanitizer, built once.
static CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let tags: HashSet<&'static str> = [
        "p",
        "br",
        "hr",
        "em",
        "strong",
        "del",
        "code",
        "pre",
        "blockquote",
        "ul",
        "ol",
        "li",
        "a",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
    ]
    .into_iter()
    .collect();
    let mut b = ammonia::Builder::empty();
    b.tags(tags)
        .add_tag_attributes("a", ["href", "title"])
        .add_tag_attributes("ol", ["start"])
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .link_rel(Some("noopener noreferrer nofollow"))
        .strip_comments(true);
    b
});

/// A comment's Markdown as sanitized HTML.
pub fn render(text: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(text, options).map(|event| match event {
        // Raw HTML is shown, not interpreted.
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }),
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        other => other,
    });
    let mut html = String::with_capacity(text.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    CLEANER.clean(&html).to_string()
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn formatting_survives() {
        let html = render("**bold** _it_ `code` [link](https://example.com/a?b=1)\n\n- one\n- two");
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(html.contains("<em>it</em>"), "{html}");
        assert!(html.contains("<code>code</code>"), "{html}");
        assert!(
            html.contains(
                r#"<a href="https://example.com/a?b=1" rel="noopener noreferrer nofollow">link</a>"#
            ),
            "{html}"
        );
        assert!(html.contains("<li>one</li>"), "{html}");
    }

    #[test]
    fn hostile_input_is_inert() {
        let corpus = [
            "[x](javascript:alert(1))",
            "[x](JaVaScRiPt:alert(1))",
            "[x](java\tscript:alert(1))",
            "[x](data:text/html,<script>alert(1)</script>)",
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "![x](x\" onerror=\"alert(1))",
            "![x](javascript:alert(1))",
            "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
            "<a href=\"&#106;avascript:alert(1)\">x</a>",
            "[x](&#106;avascript:alert(1))",
            "<svg onload=alert(1)>",
            "<iframe src=\"https://evil.example\"></iframe>",
            "<style>body{display:none}</style>",
            "[x](vbscript:msgbox(1))",
            "<div style=\"background:url(javascript:alert(1))\">x</div>",
        ];
        for text in corpus {
            let html = render(text);
            // Whatever the text says, only formatting tags and clean links are left: the
            // rest is escaped text.
            let mut rest = html.as_str();
            while let Some(start) = rest.find('<') {
                let end = rest[start..]
                    .find('>')
                    .map_or(rest.len(), |e| start + e + 1);
                let tag = rest[start..end].to_lowercase();
                rest = &rest[end..];
                let name: String = tag
                    .trim_start_matches(['<', '/'])
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .collect();
                assert!(
                    ["p", "a", "code", "em", "strong"].contains(&name.as_str()),
                    "{text:?} rendered {html:?}"
                );
                for bad in ["on", "style", "src", "javascript", "data:", "vbscript"] {
                    let attrs = tag
                        .trim_start_matches(['<', '/'])
                        .trim_start_matches(name.as_str());
                    let attrs = attrs.replace("rel=\"noopener noreferrer nofollow\"", "");
                    assert!(!attrs.contains(bad), "{text:?} rendered {html:?}");
                }
            }
        }
        // Raw HTML shows as text.
        assert!(render("<script>alert(1)</script>").contains("&lt;script&gt;"));
    }
}
