//! Stack traces: function-name cleanup, per-frame components, in-app decisions and the
//! `system`/`app` stack trace variants.
//!
//! A frame contributes its module (or, without one, its lower-cased file basename), its
//! cleaned function name and, for platforms whose source lines are trustworthy, its
//! normalized context line. Line numbers never contribute, so an unrelated edit above the
//! crash does not open a new issue. The built-in stack trace rules (see `enhancers`) then
//! mark frames in-app or not and switch some off.

use std::borrow::Cow;
use std::sync::LazyLock;

use faultline_core::protocol::event::{Frame, Stacktrace};
use regex::Regex;

use super::component::{Component, Text};
use super::enhancers::{
    DEFAULT_ENHANCEMENTS, ExceptionData, FAMILY_JAVASCRIPT, FAMILY_NATIVE, MatchFrame, PathValue,
    RuleHit, family_of,
};

/// Platforms whose context lines are used for grouping.
const CONTEXT_LINE_PLATFORMS: &[&str] = &["javascript", "node", "python", "php", "ruby"];

/// Context lines longer than this (in characters) are minified code or data, not code.
const MAX_CONTEXT_LINE: usize = 120;

/// The two variants a stack trace produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StackVariant {
    /// Every frame can contribute.
    System,
    /// Only in-app frames contribute.
    App,
}

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("built-in regex {pattern}: {e}"))
}

static RUBY_ERB_SUFFIX: LazyLock<Regex> = LazyLock::new(|| regex(r"__\d{4,}_\d{4,}$"));

/// Java code generators append hashes or counters to class names; these rewrite the
/// generated part to `<auto>` so every build groups together.
static JAVA_CODEGEN: LazyLock<[Regex; 7]> = LazyLock::new(|| {
    [
        regex(r"(sun\.reflect\.Generated(?:Serialization)?ConstructorAccessor)\d+"),
        regex(r"(\$\$[\w_]+?CGLIB\$\$)[a-fA-F0-9]+(?:_[0-9]+)?"),
        regex(r"(\$\$_javassist)(?:_seam)?(?:_[0-9]+)?"),
        regex(r"(\$fn__)\d+"),
        regex(r"(\$\$?EnhancerBy[\w_]+?\$?\$)[a-fA-F0-9]+(?:_[0-9]+)?"),
        regex(r"(\$\$?FastClassBy[\w_]+?\$?\$)[a-fA-F0-9]+(?:_[0-9]+)?"),
        regex(r"(\$\$?HibernateProxy\$?\$)\w+(?:_[0-9]+)?"),
    ]
});

fn codegen_sub<'a>(re: &Regex, s: Cow<'a, str>) -> Cow<'a, str> {
    if !re.is_match(&s) {
        return s;
    }
    Cow::Owned(re.replace_all(&s, "${1}<auto>").into_owned())
}

/// Whether a path is a URL (web frames: the file name is not a stable identity).
/// `file:` counts only when `allow_file` is false.
pub(crate) fn has_url_origin(path: Option<&str>, allow_file: bool) -> bool {
    let Some(p) = path else { return false };
    if ["http:", "https:", "applewebdata:", "blob:"]
        .iter()
        .any(|s| p.starts_with(s))
    {
        return true;
    }
    p.starts_with("file:") && !allow_file
}

// ---------------------------------------------------------------------------------------
// Function names
// ---------------------------------------------------------------------------------------

/// Cleans a function name the way the frame would be stored: C# signatures are cut at
/// the argument list, native (C/C++/Rust/Swift/ObjC) names lose arguments, templates,
/// return types and hashes. Other platforms keep the name.
pub(crate) fn trim_function_name<'a>(function: &'a str, platform: Option<&str>) -> Cow<'a, str> {
    if platform == Some("csharp") {
        return Cow::Borrowed(function.split(" (").next().unwrap_or(function));
    }
    if family_of(platform) == FAMILY_NATIVE {
        return trim_native_function_name(function, platform);
    }
    Cow::Borrowed(function)
}

static CPP_TRAILER: LazyLock<Regex> = LazyLock::new(|| regex(r"(?:\bconst\b|&)$"));
static RUST_HASH: LazyLock<Regex> = LazyLock::new(|| regex(r"::h[a-z0-9]{16}$"));
static GNU_VERSION: LazyLock<Regex> = LazyLock::new(|| regex(r"@@?GLIBC_[0-9.]+$"));
static WINDECL: LazyLock<Regex> = LazyLock::new(|| regex(r"^@?(.*?)@[0-9]+$"));
static RUST_BLANKET: LazyLock<Regex> = LazyLock::new(|| regex(r"^[A-Z] as "));
static LAMBDA: LazyLock<Regex> =
    LazyLock::new(|| regex(r"\{lambda\(.*?\)#\d+\}|\blambda_[a-f0-9]{32}\b|\$_\d+\b"));
static LAMBDA_AT_START: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^(?:\{lambda\(.*?\)#\d+\}|\blambda_[a-f0-9]{32}\b|\$_\d+\b)"));
static ANON_NAMESPACE: LazyLock<Regex> = LazyLock::new(|| regex(r"\?A0x[a-f0-9]{8}::"));

// Stand-ins for characters that would upset bracket balancing, swapped back at the end.
const OP_LT: char = '⟨';
const OP_CALL: char = '◯';
const ARROW: char = '⟿';
const ANON_NS: &str = "〔anonymousnamespace〕";

/// Removes balanced `start..end` sections; `replace` decides what stands in for each
/// one (given its contents and start offset). Like Sentry's helper, an unbalanced
/// closing character swallows the rest.
fn replace_enclosed(
    s: &str,
    start: char,
    end: char,
    replace: &mut dyn FnMut(&str, usize) -> String,
) -> String {
    if !s.contains(start) {
        return s.to_string();
    }
    let mut depth: i32 = 0;
    let mut out = String::with_capacity(s.len());
    let mut pair_start = 0;
    for (idx, c) in s.char_indices() {
        if c == start {
            if depth == 0 {
                pair_start = idx;
            }
            depth += 1;
        } else if c == end {
            depth -= 1;
            if depth == 0 {
                out.push_str(&replace(&s[pair_start + start.len_utf8()..idx], pair_start));
            }
        } else if depth == 0 {
            out.push(c);
        }
    }
    out
}

/// Splits a signature into whitespace-separated tokens, keeping bracketed groups whole.
fn split_func_tokens(s: &str) -> Vec<String> {
    let breaks = |c: char| c.is_whitespace() || matches!(c, '(' | '{' | '<' | '[');
    if !s.is_empty() && !s.contains(breaks) {
        return vec![s.to_string()];
    }
    let closing = |c: char| match c {
        '(' => Some(')'),
        '{' => Some('}'),
        '[' => Some(']'),
        '<' => Some('>'),
        _ => None,
    };
    let mut rv = Vec::new();
    let mut buf = String::new();
    let mut stack: Vec<char> = Vec::new();
    let mut end = 0;
    for (idx, c) in s.char_indices() {
        let next = idx + c.len_utf8();
        if let Some(close) = closing(c) {
            stack.push(close);
        } else if stack.last() == Some(&c) {
            stack.pop();
            if stack.is_empty() {
                buf.push_str(&s[end..next]);
                end = next;
            }
        } else if stack.is_empty() {
            if c.is_whitespace() {
                if !buf.is_empty() {
                    rv.push(std::mem::take(&mut buf));
                }
            } else {
                buf.push_str(&s[end..next]);
            }
            end = next;
        }
    }
    if !buf.is_empty() {
        rv.push(buf);
    }
    rv
}

/// Python-style indexing (negative counts from the end) into the tokens.
fn token_at(tokens: &[String], idx: isize) -> Option<&String> {
    let len = tokens.len() as isize;
    let i = if idx < 0 { len + idx } else { idx };
    if (0..len).contains(&i) {
        tokens.get(i as usize)
    } else {
        None
    }
}

fn trim_native_function_name<'a>(function: &'a str, platform: Option<&str>) -> Cow<'a, str> {
    if function == "<redacted>" || function == "<unknown>" {
        return Cow::Borrowed(function);
    }
    // Plain symbol names (the vast majority) have nothing to trim.
    let plain = !function.contains(|c: char| {
        c.is_whitespace() || matches!(c, '(' | '<' | '[' | '{' | '@' | '&' | '$' | '?' | '`')
    }) && !function.contains("::h")
        && !function.ends_with("const");
    if plain {
        return Cow::Borrowed(function);
    }
    let stripped = function.trim();
    // Objective-C selectors are already clean.
    if stripped.starts_with('[') || stripped.starts_with("+[") || stripped.starts_with("-[") {
        return Cow::Borrowed(stripped);
    }
    // Drop `[clone .cold]`-style annotations of split functions.
    let mut f = replace_enclosed(stripped, '[', ']', &mut |v, _| {
        if v.starts_with("clone .") {
            String::new()
        } else {
            format!("[{v}]")
        }
    });
    f.truncate(f.trim_end().len());
    // Chop trailing `const` and `&` qualifiers.
    while let Some(m) = CPP_TRAILER.find(&f) {
        f.truncate(m.start());
        f.truncate(f.trim_end().len());
    }
    let mut f = f
        .replace("operator<<", "operator⟨⟨")
        .replace("operator<", "operator⟨")
        .replace("operator()", "operator◯")
        .replace("operator->", "operator⟿")
        .replace(" -> ", " ⟿ ")
        .replace("`anonymous namespace'", ANON_NS);
    // Compilers name lambdas differently; make them all `lambda`.
    if f.contains("lambda") || f.contains("$_") {
        f = LAMBDA.replace_all(&f, "lambda").into_owned();
    }
    if f.contains("?A0x") {
        f = ANON_NAMESPACE
            .replace_all(&f, format!("{ANON_NS}::").as_str())
            .into_owned();
    }
    // Remove argument lists.
    f = replace_enclosed(&f, '(', ')', &mut |v, _| {
        let v = v.trim();
        if v == "anonymous namespace" || v == "operator" {
            format!("({v})")
        } else {
            String::new()
        }
    });
    // Collapse template arguments to `<T>`; a leading `<Foo as Bar>` (Rust) keeps the type.
    fn generics(v: &str, start: usize) -> String {
        if v == "lambda" || LAMBDA_AT_START.is_match(v) {
            return format!("<{v}>");
        }
        if start > 0 {
            return "<T>".to_string();
        }
        let v = RUST_BLANKET.replace(v, "");
        let v = replace_enclosed(&v, '<', '>', &mut generics);
        v.split(" as ").next().unwrap_or("").to_string()
    }
    f = replace_enclosed(&f, '<', '>', &mut generics);
    let is_thunk = f.contains("thunk for ");
    let mut tokens = split_func_tokens(&f);
    if tokens.len() > 1 && tokens.last().is_some_and(|t| t == "<T>") {
        tokens.pop();
        if let Some(last) = tokens.last_mut() {
            last.push_str(" <T>");
        }
    }
    let func_token: Option<String> = if f.contains("initialization expression of") {
        let of = tokens.iter().rposition(|t| t == "of");
        of.and_then(|i| {
            let mut tok = tokens.get(i + 1)?.clone();
            if tok == "static" {
                tok = tokens.get(i + 2)?.clone();
            }
            let tok = tok.strip_prefix(':').map(str::to_string).unwrap_or(tok);
            Some(format!("initializer expression of {tok}"))
        })
    } else if tokens.is_empty() {
        None
    } else {
        let arrow = ARROW.to_string();
        match tokens.iter().rposition(|t| *t == arrow) {
            Some(i) => {
                let i = i as isize;
                match token_at(&tokens, i - 1) {
                    Some(t) if t == "throws" => token_at(&tokens, i - 2).cloned(),
                    Some(t) => Some(t.clone()),
                    None => tokens.last().cloned(),
                }
            }
            None => tokens.last().cloned(),
        }
    };
    let mut out = match func_token {
        Some(mut tok) => {
            if tok.starts_with('@') && matches!(platform, Some("cocoa" | "swift")) {
                // A Swift attribute where the name should be: an anonymous function.
                tok = format!("{}closure", if is_thunk { "thunk for " } else { "" });
            } else if tok != "closure" && tokens.iter().any(|t| t == "closure") {
                tok = format!("closure in {tok}");
            }
            tok.replace(OP_LT, "<")
                .replace(OP_CALL, "()")
                .replace(ARROW, "->")
                .replace(ANON_NS, "`anonymous namespace'")
        }
        None => function.to_string(),
    };
    if out.contains("::h") {
        out = RUST_HASH.replace(&out, "").into_owned();
    }
    if out.contains("@GLIBC_") {
        out = GNU_VERSION.replace(&out, "").into_owned();
    }
    if out.contains('@') {
        out = WINDECL.replace(&out, "$1").into_owned();
    }
    if out == function {
        Cow::Borrowed(function)
    } else {
        Cow::Owned(out)
    }
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

/// What grouping needs of one frame, computed once per stack trace.
pub(crate) struct PreparedFrame<'a> {
    frame: &'a Frame,
    /// `frame.platform` or the event's.
    platform: Option<&'a str>,
    family: u8,
    /// The function as stored after cleanup (what rules, titles and recursion see).
    function: Option<Text<'a>>,
}

/// A stack trace after the built-in rules ran over it.
pub(crate) struct PreparedStack<'a> {
    pub frames: Vec<PreparedFrame<'a>>,
    /// What the rules see of each frame, with their decisions (`in_app`, category).
    matchers: Vec<MatchFrame<'a>>,
    /// Group/app rule matches, applied to each variant's components.
    hits: Vec<RuleHit>,
}

impl PreparedStack<'_> {
    /// Whether frame `i` is in-app once the rules ran.
    pub(crate) fn in_app(&self, i: usize) -> bool {
        self.matchers.get(i).is_some_and(MatchFrame::is_in_app)
    }
}

/// Options that depend on the whole event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StackContext<'a> {
    /// The platform frames without their own belong to.
    pub platform: Option<&'a str>,
}

impl<'a> StackContext<'a> {
    pub(crate) fn frame_platform(&self, frame: &'a Frame) -> Option<&'a str> {
        frame.platform.as_deref().or(self.platform)
    }
}

/// Prepares the frames of a stack trace and runs the built-in rules over them.
pub(crate) fn prepare<'a>(
    stacktrace: &'a Stacktrace,
    ctx: StackContext<'a>,
    exc: &ExceptionData<'_>,
) -> PreparedStack<'a> {
    let mut frames = Vec::with_capacity(stacktrace.frames.len());
    let mut matchers = Vec::with_capacity(stacktrace.frames.len());
    for frame in &stacktrace.frames {
        let platform = ctx.frame_platform(frame);
        let family = family_of(platform);
        let function: Option<Text<'a>> = match (&frame.function, &frame.raw_function) {
            (Some(f), Some(_)) => Some(Text::Borrowed(f.as_str())),
            (Some(f), None) => Some(trim_function_name(f, platform).into()),
            (None, _) => None,
        };
        matchers.push(MatchFrame {
            family,
            function: function.clone().unwrap_or(Text::Borrowed("<unknown>")),
            module: frame.module.as_deref(),
            package: frame.package.as_deref().map(PathValue::new),
            path: frame
                .abs_path
                .as_deref()
                .or(frame.filename.as_deref())
                .map(PathValue::new),
            in_app: frame.in_app,
            orig_in_app: None,
            category: 0,
        });
        frames.push(PreparedFrame {
            frame,
            platform,
            family,
            function,
        });
    }
    let hits = DEFAULT_ENHANCEMENTS.apply(&mut matchers, exc);
    PreparedStack {
        frames,
        matchers,
        hits,
    }
}

/// The frames of a stack trace with `in_app` as the built-in rules decide it.
pub(crate) fn in_app_frames<'a>(
    stacktrace: &'a Stacktrace,
    ctx: StackContext<'a>,
    exc: &ExceptionData<'_>,
) -> Vec<(&'a Frame, bool)> {
    let mut matchers: Vec<MatchFrame<'a>> = stacktrace
        .frames
        .iter()
        .map(|frame| {
            let platform = ctx.frame_platform(frame);
            let function: Text<'a> = match (&frame.function, &frame.raw_function) {
                (Some(f), Some(_)) => Text::Borrowed(f.as_str()),
                (Some(f), None) => trim_function_name(f, platform).into(),
                (None, _) => Text::Borrowed("<unknown>"),
            };
            MatchFrame {
                family: family_of(platform),
                function,
                module: frame.module.as_deref(),
                package: frame.package.as_deref().map(PathValue::new),
                path: frame
                    .abs_path
                    .as_deref()
                    .or(frame.filename.as_deref())
                    .map(PathValue::new),
                in_app: frame.in_app,
                orig_in_app: None,
                category: 0,
            }
        })
        .collect();
    DEFAULT_ENHANCEMENTS.apply_in_app(&mut matchers, exc);
    stacktrace
        .frames
        .iter()
        .zip(matchers.iter().map(MatchFrame::is_in_app))
        .collect()
}

/// Consecutive frames equal in these fields are one recursive call.
fn is_recursion(a: &PreparedFrame<'_>, b: &PreparedFrame<'_>) -> bool {
    let (x, y) = (a.frame, b.frame);
    x.abs_path == y.abs_path
        && x.package == y.package
        && x.module == y.module
        && x.filename == y.filename
        && a.function == b.function
        && x.lineno == y.lineno
        && x.colno == y.colno
}

fn basename(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

fn lowercase(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_uppercase) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn filename_component<'a>(pf: &PreparedFrame<'a>) -> Component<'a> {
    let Some(filename) = pf.frame.filename.as_deref() else {
        return Component::empty("filename");
    };
    let mut c = Component::text("filename", lowercase(basename(filename)));
    if has_url_origin(pf.frame.abs_path.as_deref(), true) {
        c.exclude("ignored because frame points to a URL");
    } else if c.first_str() == Some("<anonymous>") {
        c.exclude("anonymous filename discarded");
    } else if c.first_str() == Some("[native code]") {
        c.exclude("native code indicated by filename");
    } else if pf.platform == Some("java") {
        let name = c.first_str().unwrap_or_default();
        if let Cow::Owned(cleaned) = JAVA_CODEGEN[2].replace_all(name, "${1}<auto>") {
            c.rewrite(cleaned, "cleaned javassist parts");
        }
    }
    c
}

fn module_component<'a>(pf: &PreparedFrame<'a>) -> Component<'a> {
    let Some(module) = pf.frame.module.as_deref() else {
        return Component::empty("module");
    };
    let mut c = Component::text("module", module);
    match pf.platform {
        // A "module" that is just the file path says nothing the path does not.
        Some("javascript")
            if module.contains('/')
                && pf
                    .frame
                    .abs_path
                    .as_deref()
                    .is_some_and(|p| p.ends_with(module)) =>
        {
            c.exclude("ignored bad javascript module");
        }
        Some("java") => {
            if module.contains("$$Lambda$") {
                c.exclude("ignored java lambda");
            }
            for marker in [
                "sun.reflect.GeneratedMethodAccessor",
                "jdk.internal.reflect.GeneratedMethodAccessor",
            ] {
                if module.starts_with(marker) {
                    c.rewrite(marker, "removed reflection marker");
                    return c;
                }
            }
            let mut cleaned = Cow::Borrowed(module);
            for re in JAVA_CODEGEN.iter() {
                cleaned = codegen_sub(re, cleaned);
            }
            if cleaned != module {
                c.rewrite(cleaned, "removed codegen marker");
            }
        }
        _ => {}
    }
    c
}

fn context_line_component<'a>(pf: &PreparedFrame<'a>) -> Component<'a> {
    let Some(raw) = pf.frame.context_line.as_deref() else {
        return Component::empty("context-line");
    };
    let collapsed: Text<'a> = {
        let mut words = raw.split_whitespace();
        let (mut count, mut len) = (0usize, 0usize);
        for w in words.by_ref() {
            count += 1;
            len += w.len();
        }
        if len + count.saturating_sub(1) == raw.len() {
            Text::Borrowed(raw)
        } else {
            Text::from(raw.split_whitespace().collect::<Vec<_>>().join(" "))
        }
    };
    if collapsed.is_empty() {
        return Component::empty("context-line");
    }
    let mut c = Component::text("context-line", collapsed);
    if raw.chars().count() > MAX_CONTEXT_LINE {
        c.exclude("discarded because line too long");
    } else if pf.family == FAMILY_JAVASCRIPT
        && pf.frame.function.is_none()
        && has_url_origin(pf.frame.abs_path.as_deref(), false)
    {
        c.exclude("discarded because from URL origin and no function");
    }
    c
}

fn function_component<'a>(pf: &PreparedFrame<'a>, context_line_available: bool) -> Component<'a> {
    let func: Option<Text<'a>> = if pf.platform == Some("csharp") {
        // C# names used to be stored untrimmed; the raw name keeps old groups stable.
        pf.frame
            .raw_function
            .as_deref()
            .or(pf.frame.function.as_deref())
            .map(Text::Borrowed)
    } else {
        pf.function
            .clone()
            .or_else(|| pf.frame.raw_function.as_deref().map(Text::Borrowed))
    };
    let Some(func) = func.filter(|f| !f.is_empty()) else {
        return Component::empty("function");
    };
    let name_text = func.clone();
    let name: &str = &name_text;
    let mut c = Component::text("function", func);
    match pf.platform {
        Some("ruby") => {
            if name.starts_with("block ") {
                c.rewrite("block", "ruby block");
            } else if RUBY_ERB_SUFFIX.is_match(name) {
                let cleaned = RUBY_ERB_SUFFIX.replace(name, "").into_owned();
                c.rewrite(cleaned, "removed generated erb template suffix");
            }
        }
        Some("php") => {
            if name.starts_with("[Anonymous") || name.starts_with("class@anonymous\0") {
                c.exclude("ignored anonymous function");
            }
            if let Some((_, method)) = name
                .strip_prefix("class@anonymous")
                .and_then(|rest| rest.rsplit_once("::"))
            {
                c.rewrite(method.to_string(), "anonymous class method");
            }
        }
        // Java lambdas are numbered per class; the number changes with unrelated edits.
        Some("java") if name.starts_with("lambda$") => c.exclude("ignored lambda function"),
        Some("java") => {}
        _ if pf.family == FAMILY_NATIVE && (name == "<redacted>" || name == "<unknown>") => {
            c.exclude("ignored unknown function");
        }
        _ if pf.family == FAMILY_NATIVE => {}
        _ if pf.family == FAMILY_JAVASCRIPT => {
            // `Object.foo`, `Foo.foo` and `foo` are the same function across browsers.
            if let Some((_, last)) = name.rsplit_once('.') {
                c.rewrite(last.to_string(), "trimmed javascript function");
            }
            let sourcemap_used = pf
                .frame
                .data
                .as_ref()
                .and_then(|d| d.get("sourcemap"))
                .is_some_and(|v| !v.is_null());
            if sourcemap_used && context_line_available {
                // Minifier-produced names are unreliable once the context line is known.
                c.exclude("ignored because sourcemap used and context line available");
            }
        }
        _ => {}
    }
    c
}

/// The component of one frame, before in-app and rule decisions.
fn frame_component<'a>(pf: &PreparedFrame<'a>, recursion: bool) -> Component<'a> {
    let mut filename = filename_component(pf);
    let module = module_component(pf);
    if module.contributes && filename.contributes {
        filename.exclude("module takes precedence");
    }
    let context_line = pf
        .platform
        .filter(|p| CONTEXT_LINE_PLATFORMS.contains(p))
        .map(|_| context_line_component(pf));
    let context_line_available = context_line.as_ref().is_some_and(|c| c.contributes);
    let function = function_component(pf, context_line_available);
    let mut children = vec![module, filename, function];
    children.extend(context_line);
    // As in Sentry, the frame's own flag is decided now; later changes to its function
    // component below do not revisit it.
    let mut frame = Component::of("frame", children);

    if pf.family == FAMILY_JAVASCRIPT {
        let f = pf
            .frame
            .raw_function
            .as_deref()
            .or(pf.frame.function.as_deref());
        let last = f.map(|f| f.rsplit('.').next().unwrap_or(f));
        if let Some(func) = frame.children_mut().iter_mut().find(|c| c.id == "function") {
            match last {
                None | Some("") => func.contributes = false,
                Some(l)
                    if matches!(
                        l,
                        "?" | "<anonymous function>" | "<anonymous>" | "Anonymous function"
                    ) || l.ends_with("/<") =>
                {
                    func.exclude("ignored unknown function name");
                }
                Some(_) => {}
            }
        }
        let abs = pf.frame.abs_path.as_deref();
        if last == Some("eval")
            || matches!(
                abs,
                Some("[native code]" | "native code" | "eval code" | "<anonymous>")
            )
        {
            frame.exclude("ignored low quality javascript frame");
        }
    }
    if recursion {
        frame.exclude("ignored due to recursion");
    }
    frame
}

/// The frame components of a stack trace, before in-app and rule decisions (shared by
/// both variants).
pub(crate) fn frame_components<'a>(stack: &PreparedStack<'a>) -> Vec<Component<'a>> {
    let frames = &stack.frames;
    let mut components: Vec<Component<'a>> = frames
        .iter()
        .enumerate()
        .map(|(i, pf)| frame_component(pf, i > 0 && is_recursion(pf, &frames[i - 1])))
        .collect();
    // A lone frame without a function from a web page says nothing.
    if let [only] = frames.as_slice() {
        let is_url = only
            .frame
            .abs_path
            .as_deref()
            .is_some_and(|p| p.starts_with("blob:") || is_url(p));
        if components[0].contributes
            && only.family == FAMILY_JAVASCRIPT
            && only.frame.function.is_none()
            && is_url
        {
            components[0].exclude("ignored single non-URL JavaScript frame");
        }
    }
    components
}

/// Builds the stack trace component of one variant from the shared frame components.
pub(crate) fn stacktrace_component<'a>(
    stack: &PreparedStack<'a>,
    mut components: Vec<Component<'a>>,
    variant: StackVariant,
) -> Component<'a> {
    let mut found_in_app = false;
    if variant == StackVariant::App {
        for (i, c) in components.iter_mut().enumerate() {
            if stack.in_app(i) {
                found_in_app = true;
            } else {
                c.exclude("non app frame");
            }
        }
    }
    DEFAULT_ENHANCEMENTS.update_components(&stack.hits, &mut components, &stack.matchers);
    let mut stack_c = Component::of("stacktrace", components);
    if !stack_c.contributes {
        let what = if stack.frames.is_empty() {
            "ignored because it contains no frames"
        } else if variant == StackVariant::App && !found_in_app {
            "ignored because it contains no in-app frames"
        } else {
            "ignored because it contains no contributing frames"
        };
        stack_c.hint = Some(what.into());
    }
    stack_c
}

fn is_url(path: &str) -> bool {
    ["file:", "http:", "https:", "applewebdata:"]
        .iter()
        .any(|s| path.starts_with(s))
}

/// The crashing frame for titles and fingerprint variables: the innermost in-app frame
/// passing `filter`, else the innermost frame passing it.
pub(crate) fn crash_frame(frames: &[Frame], filter: impl Fn(&Frame) -> bool) -> Option<&Frame> {
    let mut fallback = None;
    for f in frames.iter().rev().filter(|f| filter(f)) {
        if f.in_app == Some(true) {
            return Some(f);
        }
        fallback = fallback.or(Some(f));
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(f: &str) -> String {
        trim_function_name(f, Some("native")).into_owned()
    }

    #[test]
    fn native_function_cleanup() {
        assert_eq!(
            native("std::vector<int, std::allocator<int>>::push_back(int const&)"),
            "std::vector<T>::push_back"
        );
        assert_eq!(
            native("boost::function0<T>::operator()"),
            "boost::function0<T>::operator()"
        );
        assert_eq!(native("unsigned int foo::bar(char*) const"), "foo::bar");
        assert_eq!(
            native("core::ptr::drop_in_place::h0123456789abcdef"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(native("-[UIApplication _run]"), "-[UIApplication _run]");
        assert_eq!(native("memcpy@GLIBC_2.14"), "memcpy");
        assert_eq!(native("_purecall@4"), "_purecall");
        assert_eq!(native("<Foo as core::fmt::Debug>::fmt"), "Foo::fmt");
        assert_eq!(native("foo() [clone .cold.1]"), "foo");
        assert_eq!(
            native("crashpad::`anonymous namespace'::HandleAbortSignal(int)"),
            "crashpad::`anonymous namespace'::HandleAbortSignal"
        );
        assert_eq!(
            trim_function_name("@objc ViewController.captureError(Any)", Some("cocoa")),
            "ViewController.captureError"
        );
    }

    #[test]
    fn other_platforms_keep_or_cut_names() {
        assert_eq!(
            trim_function_name("Get (System.Int32 id)", Some("csharp")),
            "Get"
        );
        assert_eq!(
            trim_function_name("Object.foo", Some("javascript")),
            "Object.foo"
        );
        assert_eq!(trim_function_name("foo(int)", Some("python")), "foo(int)");
    }

    #[test]
    fn url_origins() {
        assert!(has_url_origin(Some("https://a/b.js"), true));
        assert!(has_url_origin(Some("blob:http://a/x"), true));
        assert!(!has_url_origin(Some("file:///a.html"), true));
        assert!(has_url_origin(Some("file:///a.html"), false));
        assert!(!has_url_origin(Some("/srv/app.py"), false));
    }

    fn frame(v: serde_json::Value) -> Frame {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The component of a single frame (leaked: tests only).
    fn component_of(f: Frame, platform: &'static str) -> Component<'static> {
        let st: &'static Stacktrace = Box::leak(Box::new(Stacktrace {
            frames: vec![f],
            ..Default::default()
        }));
        let ctx = StackContext {
            platform: Some(platform),
        };
        let prepared = prepare(st, ctx, &ExceptionData::default());
        frame_component(&prepared.frames[0], false)
    }

    fn leaves(c: &Component<'_>) -> Vec<String> {
        let mut out = String::new();
        c.render(&mut out, 0, true);
        out.lines()
            .filter(|l| l.trim_start().starts_with('"'))
            .map(|l| l.trim().trim_matches('"').to_string())
            .collect()
    }

    #[test]
    fn java_codegen_and_lambdas() {
        let c = component_of(
            frame(
                serde_json::json!({"module": "com.example.Foo$$EnhancerByGuice$$ae46b1bf", "function": "run"}),
            ),
            "java",
        );
        assert_eq!(
            leaves(&c),
            ["com.example.Foo$$EnhancerByGuice$$<auto>", "run"]
        );
        let c = component_of(
            frame(serde_json::json!({"module": "foo.Bar", "function": "lambda$work$1"})),
            "java",
        );
        assert_eq!(leaves(&c), ["foo.Bar"]);
    }

    #[test]
    fn ruby_and_javascript_function_cleanup() {
        let c = component_of(
            frame(
                serde_json::json!({"filename": "a.html.erb", "function": "_a_html_erb__3327151541118998292_70361296749460"}),
            ),
            "ruby",
        );
        assert_eq!(leaves(&c), ["a.html.erb", "_a_html_erb"]);
        let c = component_of(
            frame(
                serde_json::json!({"filename": "/static/App.JS", "abs_path": "/static/App.JS", "function": "Object.render"}),
            ),
            "javascript",
        );
        assert_eq!(leaves(&c), ["app.js", "render"]);
    }

    #[test]
    fn context_lines_collapse_whitespace() {
        let c = component_of(
            frame(
                serde_json::json!({"filename": "a.py", "function": "f", "context_line": "    x  =  1"}),
            ),
            "python",
        );
        assert_eq!(leaves(&c), ["a.py", "f", "x = 1"]);
    }
}
