//! What an alert email says: subject, plain text and HTML (askama templates in
//! `templates/email/`, HTML auto-escaped: event data is hostile input).

use askama::Template;
use chrono::{TimeZone, Utc};
use faultline_core::protocol::event::{Event, Frame};

/// An email ready to be put into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Longest subject we write (characters); mail clients show far less anyway.
const MAX_SUBJECT: usize = 200;
/// Frames shown in an alert.
pub const MAX_FRAMES: usize = 5;

/// A subject line that cannot carry a header: every control character (CR, LF, TAB, NUL,
/// ...) becomes a space, runs of white space collapse, and it is cut to a sane length.
pub fn sanitize_subject(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len().min(MAX_SUBJECT * 4));
    let mut space = false;
    for c in subject.chars() {
        let c = if c.is_control() || c.is_whitespace() || is_line_separator(c) {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if !space && !out.is_empty() {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    let trimmed = out.trim_end();
    if trimmed.chars().count() > MAX_SUBJECT {
        let mut cut: String = trimmed.chars().take(MAX_SUBJECT - 1).collect();
        cut.push('…');
        cut
    } else {
        trimmed.to_string()
    }
}

/// Unicode line and paragraph separators, which some clients render as new lines.
fn is_line_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{0085}')
}

/// A time as people read it in an email.
pub fn format_time(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

/// One stack frame as shown in an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameLine {
    pub function: String,
    /// `file:line:column`.
    pub location: String,
    pub context_line: Option<String>,
}

impl FrameLine {
    fn of(f: &Frame) -> FrameLine {
        let file = f
            .filename
            .as_deref()
            .or(f.abs_path.as_deref())
            .or(f.module.as_deref())
            .unwrap_or("?");
        let mut location = file.to_string();
        if let Some(l) = f.lineno {
            location.push_str(&format!(":{l}"));
            if let Some(c) = f.colno {
                location.push_str(&format!(":{c}"));
            }
        }
        FrameLine {
            function: f
                .function
                .clone()
                .or_else(|| f.raw_function.clone())
                .unwrap_or_else(|| "?".into()),
            location,
            context_line: f
                .context_line
                .as_deref()
                .map(|l| l.trim().chars().take(200).collect()),
        }
    }
}

/// The top frames of the main exception (or the crashed thread), crashing frame first:
/// the in-app ones, or all of them when none is marked in-app.
pub fn top_frames(event: &Event, max: usize) -> Vec<FrameLine> {
    let stack = event
        .main_exception()
        .and_then(|e| e.stacktrace.as_ref())
        .or_else(|| {
            event.threads.as_ref().and_then(|t| {
                t.values
                    .iter()
                    .find(|t| t.crashed == Some(true))
                    .or_else(|| t.values.first())
                    .and_then(|t| t.stacktrace.as_ref())
            })
        })
        .or(event.stacktrace.as_ref());
    let Some(stack) = stack else {
        return Vec::new();
    };
    let in_app: Vec<&Frame> = stack
        .frames
        .iter()
        .rev()
        .filter(|f| f.in_app == Some(true))
        .collect();
    let frames: Vec<&Frame> = if in_app.is_empty() {
        stack.frames.iter().rev().collect()
    } else {
        in_app
    };
    frames.into_iter().take(max).map(FrameLine::of).collect()
}

/// Everything an alert email shows.
#[derive(Debug, Clone)]
pub struct AlertView {
    /// "New issue", "Regression", ...
    pub kind_label: String,
    pub is_new: bool,
    pub project: String,
    pub short_id: String,
    pub title: String,
    pub culprit: Option<String>,
    pub level: String,
    pub first_seen: String,
    pub last_seen: String,
    pub times_seen: i64,
    pub environment: Option<String>,
    pub release: Option<String>,
    pub message: Option<String>,
    pub frames: Vec<FrameLine>,
    pub issue_url: String,
    pub trace_url: Option<String>,
    pub unsubscribe_url: String,
}

/// One suppressed alert listed in a digest.
#[derive(Debug, Clone)]
pub struct DigestLine {
    pub kind_label: String,
    pub title: String,
    pub when: String,
    pub issue_url: String,
}

/// What a digest shows.
#[derive(Debug, Clone)]
pub struct DigestView {
    pub project: String,
    pub cap: i64,
    pub lines: Vec<DigestLine>,
    pub project_url: String,
    pub unsubscribe_url: String,
}

#[derive(Template)]
#[template(path = "email/alert.html")]
struct AlertHtml<'a> {
    a: &'a AlertView,
}

#[derive(Template)]
#[template(path = "email/alert.txt")]
struct AlertText<'a> {
    a: &'a AlertView,
}

#[derive(Template)]
#[template(path = "email/digest.html")]
struct DigestHtml<'a> {
    d: &'a DigestView,
}

#[derive(Template)]
#[template(path = "email/digest.txt")]
struct DigestText<'a> {
    d: &'a DigestView,
}

#[derive(Template)]
#[template(path = "email/test.html")]
struct TestHtml<'a> {
    url: &'a str,
}

#[derive(Template)]
#[template(path = "email/test.txt")]
struct TestText<'a> {
    url: &'a str,
}

/// Renders an alert.
pub fn render_alert(a: &AlertView) -> Result<Rendered, askama::Error> {
    let subject = if a.is_new {
        format!("[{}] {}", a.project, a.title)
    } else {
        format!("[{}] {}: {}", a.project, a.kind_label, a.title)
    };
    Ok(Rendered {
        subject: sanitize_subject(&subject),
        text: AlertText { a }.render()?,
        html: AlertHtml { a }.render()?,
    })
}

/// Renders a digest of alerts the hourly cap held back.
pub fn render_digest(d: &DigestView) -> Result<Rendered, askama::Error> {
    let subject = format!(
        "[{}] {} more alert{} held back by the hourly limit",
        d.project,
        d.lines.len(),
        if d.lines.len() == 1 { "" } else { "s" }
    );
    Ok(Rendered {
        subject: sanitize_subject(&subject),
        text: DigestText { d }.render()?,
        html: DigestHtml { d }.render()?,
    })
}

/// Renders the test email.
pub fn render_test(url: &str) -> Result<Rendered, askama::Error> {
    Ok(Rendered {
        subject: "Faultline test email".into(),
        text: TestText { url }.render()?,
        html: TestHtml { url }.render()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> AlertView {
        AlertView {
            kind_label: "New issue".into(),
            is_new: true,
            project: "web".into(),
            short_id: "WEB-1".into(),
            title: "ValueError: <script>alert(1)</script>".into(),
            culprit: Some("app.views in \"checkout\" & co".into()),
            level: "error".into(),
            first_seen: format_time(0),
            last_seen: format_time(1000),
            times_seen: 3,
            environment: Some("production".into()),
            release: Some("shop@1.0".into()),
            message: None,
            frames: vec![FrameLine {
                function: "<lambda>".into(),
                location: "app.py:10".into(),
                context_line: Some("x = '<b>'".into()),
            }],
            issue_url: "http://h/organizations/acme/issues/1/".into(),
            trace_url: Some("http://jaeger/trace/abc".into()),
            unsubscribe_url: "http://h/unsubscribe/t.s".into(),
        }
    }

    #[test]
    fn subjects_cannot_carry_headers() {
        assert_eq!(
            sanitize_subject("[web] boom\r\nBcc: victim@example.com\r\n\r\nbody"),
            "[web] boom Bcc: victim@example.com body"
        );
        assert_eq!(sanitize_subject("a\u{0}b\tc\u{2028}d\u{85}e"), "a b c d e");
        assert_eq!(sanitize_subject("\n\n  x  \n"), "x");
        let long = sanitize_subject(&"é".repeat(1000));
        assert_eq!(long.chars().count(), MAX_SUBJECT);
        assert!(!long.contains('\n'));
    }

    #[test]
    fn html_escapes_event_data_and_text_keeps_it() {
        let r = render_alert(&view()).expect("renders");
        assert_eq!(r.subject, "[web] ValueError: <script>alert(1)</script>");
        assert!(!r.html.contains("<script>alert(1)"), "{}", r.html);
        assert!(r.html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
        assert!(r.html.contains("&#34;checkout&#34; &#38; co"), "{}", r.html);
        assert!(r.html.contains("&#60;lambda&#62;"));
        assert!(
            r.html
                .contains("href=\"http://h/organizations/acme/issues/1/\"")
        );
        assert!(r.html.contains("href=\"http://jaeger/trace/abc\""));
        assert!(r.html.contains("http://h/unsubscribe/t.s"));
        // The plain-text part is not HTML: nothing is entity-encoded there.
        assert!(r.text.contains("ValueError: <script>alert(1)</script>"));
        assert!(r.text.contains("<lambda>  app.py:10"));
        assert!(r.text.contains("Trace: http://jaeger/trace/abc"));
        assert!(r.text.contains("Environment: production"));
    }

    #[test]
    fn regressions_say_so_in_the_subject() {
        let v = AlertView {
            is_new: false,
            kind_label: "Regression".into(),
            title: "boom".into(),
            ..view()
        };
        assert_eq!(
            render_alert(&v).expect("renders").subject,
            "[web] Regression: boom"
        );
    }

    #[test]
    fn digests_list_what_was_held_back() {
        let d = DigestView {
            project: "web".into(),
            cap: 60,
            lines: vec![DigestLine {
                kind_label: "New issue".into(),
                title: "<img src=x onerror=alert(1)>".into(),
                when: format_time(0),
                issue_url: "http://h/organizations/acme/issues/9/".into(),
            }],
            project_url: "http://h/".into(),
            unsubscribe_url: "http://h/unsubscribe/x".into(),
        };
        let r = render_digest(&d).expect("renders");
        assert_eq!(
            r.subject,
            "[web] 1 more alert held back by the hourly limit"
        );
        assert!(r.html.contains("&#60;img src=x onerror=alert(1)&#62;"));
        assert!(!r.html.contains("<img src=x"));
        assert!(r.text.contains("http://h/organizations/acme/issues/9/"));
    }
}
