//! Custom fingerprints: the event's `fingerprint`, `{{ variables }}` in it, and
//! fingerprint rules (a project's own and the built-in ones for well-known noise).
//!
//! PROTOCOL.md §5.2. A fingerprint without `{{ default }}` replaces the default grouping;
//! one with it refines it ("hybrid"). Server rules win over the client's fingerprint.

use std::borrow::Cow;
use std::sync::LazyLock;

use faultline_core::protocol::event::{Event, Frame};
use serde_json::Value;

use super::enhancers::{FAMILY_JAVASCRIPT, FAMILY_NATIVE, Glob, PathValue, family_of};
use super::stacktrace::{crash_frame, trim_function_name};

/// The `{{ default }}` entry, spelled the canonical way.
pub(crate) const DEFAULT_VARIABLE: &str = "{{ default }}";

/// The variable name of a whole-entry `{{ name }}`, if the entry is one.
pub(crate) fn variable_name(entry: &str) -> Option<&str> {
    let inner = entry.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    (!inner.is_empty() && !inner.contains(char::is_whitespace)).then_some(inner)
}

/// Whether the entry is `{{ default }}` (spacing free).
pub(crate) fn is_default(entry: &str) -> bool {
    variable_name(entry) == Some("default")
}

/// The frame fingerprint variables read: the innermost in-app frame of the main
/// exception (or of the top-level / single thread stack trace).
fn crash_frame_of(event: &Event) -> Option<&Frame> {
    let frames = event
        .main_exception()
        .and_then(|e| e.stacktrace.as_ref())
        .map(|s| s.frames.as_slice())
        .filter(|f| !f.is_empty())
        .or_else(|| {
            event
                .stacktrace
                .as_ref()
                .map(|s| s.frames.as_slice())
                .filter(|f| !f.is_empty())
        })
        .or_else(|| {
            let threads = &event.threads.as_ref()?.values;
            match threads.as_slice() {
                [only] => only.stacktrace.as_ref().map(|s| s.frames.as_slice()),
                _ => None,
            }
        })?;
    crash_frame(frames, |_| true)
}

/// Resolves one fingerprint variable; `None` for names we do not know (kept literally,
/// as the 2023 grouping config does).
fn resolve_variable(name: &str, event: &Event) -> Option<String> {
    let main = event.main_exception();
    let frame = || crash_frame_of(event);
    let or =
        |v: Option<&str>, missing: &str| v.filter(|s| !s.is_empty()).unwrap_or(missing).to_string();
    Some(match name {
        "transaction" => or(event.transaction.as_deref(), "<no-transaction>"),
        "message" => {
            let log = event.logentry.as_ref();
            let msg = log
                .and_then(|l| l.formatted.as_deref().filter(|s| !s.is_empty()))
                .or_else(|| {
                    log.and_then(|l| l.message.as_deref())
                        .filter(|s| !s.is_empty())
                })
                .or_else(|| main.and_then(|e| e.value.as_deref()));
            or(msg, "<no-message>")
        }
        "type" | "error.type" => or(main.and_then(|e| e.ty.as_deref()), "<no-type>"),
        "value" | "error.value" => or(main.and_then(|e| e.value.as_deref()), "<no-value>"),
        "function" | "stack.function" => {
            or(frame().and_then(|f| f.function.as_deref()), "<no-function>")
        }
        "path" | "stack.abs_path" => {
            let f = frame();
            or(
                f.and_then(|f| f.abs_path.as_deref().or(f.filename.as_deref())),
                "<no-abs-path>",
            )
        }
        "stack.filename" => {
            let f = frame();
            or(
                f.and_then(|f| f.filename.as_deref().or(f.abs_path.as_deref())),
                "<no-filename>",
            )
        }
        "module" | "stack.module" => or(frame().and_then(|f| f.module.as_deref()), "<no-module>"),
        "package" | "stack.package" => {
            let pkg = frame()
                .and_then(|f| f.package.as_deref())
                .map(|p| p.rsplit(['/', '\\']).next().unwrap_or(p));
            or(pkg, "<no-package>")
        }
        "level" => or(event.level.map(|l| l.as_str()), "<no-level>"),
        "logger" => or(event.logger.as_deref(), "<no-logger>"),
        _ => {
            let tag = name.strip_prefix("tags.")?;
            match event.tag(tag) {
                Some(v) => v.to_string(),
                None => format!("<no-value-for-tag-{tag}>"),
            }
        }
    })
}

/// Resolves the variables of a fingerprint; `{{ default }}` stays (in canonical form).
pub(crate) fn resolve(fingerprint: &[String], event: &Event) -> Vec<String> {
    fingerprint
        .iter()
        .map(|entry| match variable_name(entry) {
            Some("default") => DEFAULT_VARIABLE.to_string(),
            Some(name) => resolve_variable(name, event).unwrap_or_else(|| entry.clone()),
            None => entry.clone(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Fingerprint rules
// ---------------------------------------------------------------------------------------

/// What a fingerprint matcher looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Key {
    Type,
    Value,
    Message,
    Logger,
    Level,
    Module,
    Path,
    Package,
    Function,
    Family,
    App,
    Sdk,
    Release,
    Tag,
}

#[derive(Debug)]
enum Test {
    Glob(Glob),
    /// `Glob` applied to lower-cased values.
    GlobCi(Glob),
    Flags(Vec<String>),
    Bool(Option<bool>),
}

#[derive(Debug)]
struct Matcher {
    key: Key,
    /// The tag name for `tags.NAME`.
    tag: Option<String>,
    negated: bool,
    test: Test,
}

/// One fingerprint rule: matchers and the fingerprint they assign.
#[derive(Debug)]
pub(crate) struct FingerprintRule {
    matchers: Vec<Matcher>,
    fingerprint: Vec<String>,
    title: Option<String>,
    builtin: bool,
    text: String,
}

/// An ordered set of fingerprint rules; the first rule whose matchers all match wins.
#[derive(Debug, Default)]
pub struct FingerprintingRules {
    rules: Vec<FingerprintRule>,
}

/// A rule that matched an event.
#[derive(Debug, Clone)]
pub(crate) struct RuleMatch<'r> {
    pub fingerprint: &'r [String],
    pub builtin: bool,
    pub text: &'r str,
}

fn parse_matcher(key: &str, pattern: &str) -> Result<Matcher, String> {
    let (negated, key) = match key.strip_prefix('!') {
        Some(k) => (true, k),
        None => (false, key),
    };
    let (key, tag) = match key {
        "type" | "error.type" => (Key::Type, None),
        "value" | "error.value" => (Key::Value, None),
        "message" => (Key::Message, None),
        "logger" => (Key::Logger, None),
        "level" => (Key::Level, None),
        "module" | "stack.module" => (Key::Module, None),
        "path" | "stack.abs_path" => (Key::Path, None),
        "package" | "stack.package" => (Key::Package, None),
        "function" | "stack.function" => (Key::Function, None),
        "family" => (Key::Family, None),
        "app" => (Key::App, None),
        "sdk" => (Key::Sdk, None),
        "release" => (Key::Release, None),
        k => match k.strip_prefix("tags.") {
            Some(t) => (Key::Tag, Some(t.to_string())),
            None => return Err(format!("unknown matcher {k}")),
        },
    };
    let test = match key {
        Key::Path | Key::Package | Key::Release => Test::Glob(Glob::compile(pattern, true)?),
        Key::Message | Key::Level | Key::Value => Test::GlobCi(Glob::compile_ci(pattern)?),
        Key::Family | Key::Sdk => Test::Flags(pattern.split(',').map(str::to_string).collect()),
        Key::App => Test::Bool(match pattern.to_ascii_lowercase().as_str() {
            "1" | "yes" | "true" => Some(true),
            "0" | "no" | "false" => Some(false),
            _ => None,
        }),
        _ => Test::Glob(Glob::compile(pattern, false)?),
    };
    Ok(Matcher {
        key,
        tag,
        negated,
        test,
    })
}

/// The values of one place in the event a group of matchers is tested against.
#[derive(Default)]
struct Values<'e> {
    ty: Option<&'e str>,
    value: Option<String>,
    message: Option<String>,
    logger: Option<&'e str>,
    level: Option<&'e str>,
    module: Option<&'e str>,
    abs_path: Option<&'e str>,
    filename: Option<&'e str>,
    package: Option<&'e str>,
    function: Option<Cow<'e, str>>,
    app: Option<bool>,
    family: Option<&'static str>,
    sdk: Option<&'e str>,
    release: Option<&'e str>,
}

impl Matcher {
    fn glob(&self, value: Option<&str>) -> bool {
        let Some(v) = value else { return false };
        match &self.test {
            Test::Glob(g) => g.matches(v),
            Test::GlobCi(g) => g.matches(&v.to_lowercase()),
            _ => false,
        }
    }

    fn path(&self, value: Option<&str>) -> bool {
        let (Some(v), Test::Glob(g)) = (value, &self.test) else {
            return false;
        };
        PathValue::new(v).matches(g)
    }

    fn positive(&self, v: &Values<'_>, tags: &[(String, String)]) -> bool {
        match self.key {
            Key::Type => self.glob(v.ty),
            Key::Value => self.glob(v.value.as_deref()),
            Key::Message => self.glob(v.message.as_deref()) || self.glob(v.value.as_deref()),
            Key::Logger => self.glob(v.logger),
            Key::Level => self.glob(v.level),
            Key::Module => self.glob(v.module),
            Key::Function => self.glob(v.function.as_deref()),
            Key::Path => {
                self.path(v.abs_path) || (v.filename != v.abs_path && self.path(v.filename))
            }
            Key::Package => self.path(v.package),
            Key::Release => self.path(v.release),
            Key::Family | Key::Sdk => {
                let value = if self.key == Key::Family {
                    v.family
                } else {
                    v.sdk
                };
                match (&self.test, value) {
                    (Test::Flags(flags), Some(val)) => flags.iter().any(|f| f == "all" || f == val),
                    _ => false,
                }
            }
            Key::App => match (&self.test, v.app) {
                (Test::Bool(expected), Some(app)) => *expected == Some(app),
                _ => false,
            },
            Key::Tag => {
                let name = self.tag.as_deref().unwrap_or_default();
                tags.iter()
                    .find(|(k, _)| k == name)
                    .is_some_and(|(_, val)| self.glob(Some(val.trim())))
            }
        }
    }

    fn matches(&self, v: &Values<'_>, tags: &[(String, String)]) -> bool {
        self.positive(v, tags) != self.negated
    }

    /// Which list of event values this matcher is tested against.
    fn scope(&self) -> Scope {
        match self.key {
            Key::Message => Scope::TopLevel,
            Key::Logger | Key::Level => Scope::LogInfo,
            Key::Type | Key::Value => Scope::Exceptions,
            Key::Tag => Scope::Tags,
            Key::Sdk => Scope::Sdk,
            Key::Family => Scope::Family,
            Key::Release => Scope::Release,
            _ => Scope::Frames,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scope {
    TopLevel,
    LogInfo,
    Exceptions,
    Frames,
    Tags,
    Sdk,
    Family,
    Release,
}

fn family_name(event: &Event) -> &'static str {
    match family_of(event.platform.as_deref()) {
        FAMILY_NATIVE => "native",
        FAMILY_JAVASCRIPT => "javascript",
        _ => "other",
    }
}

fn scope_values<'e>(event: &'e Event, scope: Scope) -> Vec<Values<'e>> {
    let message = || {
        event
            .logentry
            .as_ref()
            .and_then(|l| l.formatted.as_deref())
            .filter(|m| !m.is_empty())
            .map(|m| Values {
                message: Some(m.trim().to_string()),
                ..Default::default()
            })
    };
    let exceptions = || {
        event.exceptions().iter().map(|e| Values {
            ty: e.ty.as_deref(),
            value: e.value.as_deref().map(|v| v.trim().to_string()),
            ..Default::default()
        })
    };
    match scope {
        Scope::TopLevel => message().into_iter().chain(exceptions()).collect(),
        Scope::Exceptions => exceptions().collect(),
        Scope::LogInfo => {
            let v = Values {
                logger: event.logger.as_deref().filter(|l| !l.is_empty()),
                level: event.level.map(|l| l.as_str()),
                ..Default::default()
            };
            if v.logger.is_some() || v.level.is_some() {
                vec![v]
            } else {
                Vec::new()
            }
        }
        Scope::Frames => {
            let stacks = event
                .exceptions()
                .iter()
                .filter_map(|e| e.stacktrace.as_ref())
                .chain(event.stacktrace.as_ref())
                .chain(
                    event
                        .threads
                        .iter()
                        .flat_map(|t| t.values.iter())
                        .filter_map(|t| t.stacktrace.as_ref()),
                );
            stacks
                .flat_map(|s| s.frames.iter())
                .map(|f| {
                    let platform = f.platform.as_deref().or(event.platform.as_deref());
                    let function = match (&f.function, &f.raw_function) {
                        (Some(func), Some(_)) => Some(Cow::Borrowed(func.as_str())),
                        (Some(func), None) => Some(trim_function_name(func, platform)),
                        (None, _) => None,
                    };
                    Values {
                        function: Some(function.unwrap_or(Cow::Borrowed("<unknown>"))),
                        abs_path: f.abs_path.as_deref().or(f.filename.as_deref()),
                        filename: f.filename.as_deref(),
                        module: f.module.as_deref(),
                        package: f.package.as_deref(),
                        app: f.in_app,
                        ..Default::default()
                    }
                })
                .collect()
        }
        Scope::Tags => vec![Values::default()],
        Scope::Sdk => vec![Values {
            sdk: Some(
                event
                    .sdk
                    .as_ref()
                    .and_then(|s| s.name.as_deref())
                    .unwrap_or("other"),
            ),
            ..Default::default()
        }],
        Scope::Family => vec![Values {
            family: Some(family_name(event)),
            ..Default::default()
        }],
        Scope::Release => vec![Values {
            release: event.release.as_deref().map(str::trim),
            ..Default::default()
        }],
    }
}

impl FingerprintRule {
    fn matches(&self, event: &Event) -> bool {
        // Cheapest first: most rules fail on family or SDK without looking further.
        let scopes = [
            Scope::Family,
            Scope::Sdk,
            Scope::Release,
            Scope::LogInfo,
            Scope::Tags,
            Scope::Exceptions,
            Scope::TopLevel,
            Scope::Frames,
        ];
        scopes.into_iter().all(|scope| {
            let matchers: Vec<&Matcher> = self
                .matchers
                .iter()
                .filter(|m| m.scope() == scope)
                .collect();
            matchers.is_empty()
                || scope_values(event, scope)
                    .iter()
                    .any(|v| matchers.iter().all(|m| m.matches(v, &event.tags)))
        })
    }

    fn from_parts(
        matchers: Vec<(String, String)>,
        fingerprint: Vec<String>,
        title: Option<String>,
        builtin: bool,
    ) -> Result<Self, String> {
        let text = format!(
            "{} -> {}",
            matchers
                .iter()
                .map(|(k, v)| format!("{k}:\"{v}\""))
                .collect::<Vec<_>>()
                .join(" "),
            fingerprint.join(", ")
        );
        let matchers = matchers
            .iter()
            .map(|(k, v)| parse_matcher(k, v))
            .collect::<Result<Vec<_>, _>>()?;
        if matchers.is_empty() {
            return Err("rule without matchers".into());
        }
        let fingerprint = fingerprint
            .into_iter()
            .map(|f| {
                if is_default(&f) {
                    DEFAULT_VARIABLE.to_string()
                } else {
                    f
                }
            })
            .collect();
        Ok(FingerprintRule {
            matchers,
            fingerprint,
            title,
            builtin,
            text,
        })
    }
}

impl FingerprintingRules {
    /// Rules in Sentry's JSON form: `[{"matchers": [["type", "Foo*"]], "fingerprint":
    /// ["a", "{{ default }}"], "attributes": {"title": "..."}}]` (or `{"rules": [...]}`).
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let list = value
            .get("rules")
            .unwrap_or(value)
            .as_array()
            .ok_or("expected a list of rules")?;
        let mut rules = Vec::with_capacity(list.len());
        for rule in list {
            let matchers = rule
                .get("matchers")
                .and_then(Value::as_array)
                .ok_or("rule without matchers")?
                .iter()
                .map(|m| match m.as_array().map(Vec::as_slice) {
                    Some([Value::String(k), Value::String(v)]) => Ok((k.clone(), v.clone())),
                    _ => Err("matcher must be [key, pattern]".to_string()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let fingerprint = rule
                .get("fingerprint")
                .and_then(Value::as_array)
                .ok_or("rule without fingerprint")?
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or("fingerprint entries must be strings")
                })
                .collect::<Result<Vec<_>, _>>()?;
            let title = rule
                .pointer("/attributes/title")
                .and_then(Value::as_str)
                .map(str::to_string);
            let builtin = rule
                .get("is_builtin")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            rules.push(FingerprintRule::from_parts(
                matchers,
                fingerprint,
                title,
                builtin,
            )?);
        }
        Ok(FingerprintingRules { rules })
    }

    /// Rules in the text form projects write: `matcher:"pattern" ... -> value, value
    /// title="..."`, one per line, `#` for comments.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_with(text, false)
    }

    fn parse_with(text: &str, builtin: bool) -> Result<Self, String> {
        let mut rules = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |e: String| format!("line {}: {e}", n + 1);
            let (lhs, rhs) = line
                .split_once("->")
                .ok_or_else(|| err("missing ->".into()))?;
            let matchers = split_args(lhs, false)
                .into_iter()
                .map(|tok| {
                    let (k, v) = tok
                        .split_once(':')
                        .ok_or_else(|| format!("bad matcher {tok}"))?;
                    Ok((k.trim_matches('"').to_string(), unquote(v)))
                })
                .collect::<Result<Vec<_>, String>>()
                .map_err(err)?;
            let mut fingerprint = Vec::new();
            let mut title = None;
            for tok in split_args(rhs, true) {
                match tok.split_once('=') {
                    Some(("title", v)) if v.starts_with('"') => title = Some(unquote(v)),
                    _ => fingerprint.push(unquote(&tok)),
                }
            }
            rules.push(
                FingerprintRule::from_parts(matchers, fingerprint, title, builtin).map_err(err)?,
            );
        }
        Ok(FingerprintingRules { rules })
    }

    /// The first rule matching the event.
    pub(crate) fn find<'r>(&'r self, event: &Event) -> Option<RuleMatch<'r>> {
        self.rules
            .iter()
            .find(|r| r.matches(event))
            .map(|r| RuleMatch {
                fingerprint: &r.fingerprint,
                builtin: r.builtin,
                text: &r.text,
            })
    }

    /// The custom title of the first matching rule, `{{ variables }}` expanded.
    pub fn title_for(&self, event: &Event) -> Option<String> {
        let template = self
            .rules
            .iter()
            .find(|r| r.matches(event))?
            .title
            .as_deref()?;
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            let Some(len) = rest[start..].find("}}") else {
                break;
            };
            let var = &rest[start..start + len + 2];
            out.push_str(&rest[..start]);
            match variable_name(var).and_then(|name| resolve_variable(name, event)) {
                Some(v) => out.push_str(&v),
                None => out.push_str(var),
            }
            rest = &rest[start + len + 2..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Splits on whitespace (and commas, when `commas`), keeping `"quoted strings"` and
/// `{{ var }}` whole.
fn split_args(s: &str, commas: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut braces = 0;
    let mut prev = '\0';
    for c in s.chars() {
        match c {
            '"' if prev != '\\' => {
                quoted = !quoted;
                cur.push(c);
            }
            '{' if !quoted => {
                braces += 1;
                cur.push(c);
            }
            '}' if !quoted => {
                braces -= 1;
                cur.push(c);
            }
            c if (c.is_whitespace() || (commas && c == ',')) && !quoted && braces <= 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
        prev = c;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn unquote(s: &str) -> String {
    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => s.to_string(),
    }
}

/// Built-in rules for errors that are noise by nature: webpack chunk load failures and
/// React hydration errors group by kind (and route), not by stack.
static BUILTIN_RULES: LazyLock<FingerprintingRules> = LazyLock::new(|| {
    FingerprintingRules::parse_with(include_str!("builtin_fingerprints.txt"), true)
        .unwrap_or_else(|e| panic!("built-in fingerprint rules: {e}"))
});

/// The server-side fingerprint for the event: the project's rules first, then the
/// built-in ones.
pub(crate) fn server_fingerprint<'r>(
    event: &Event,
    project: Option<&'r FingerprintingRules>,
) -> Option<RuleMatch<'r>> {
    project
        .and_then(|p| p.find(event))
        .or_else(|| BUILTIN_RULES.find(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(v: serde_json::Value) -> Event {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn variable_syntax() {
        assert_eq!(variable_name("{{ default }}"), Some("default"));
        assert_eq!(variable_name("{{default}}"), Some("default"));
        assert_eq!(variable_name("{{  tags.foo }}"), Some("tags.foo"));
        assert_eq!(variable_name("x {{ default }}"), None);
        assert_eq!(variable_name("{{ a b }}"), None);
    }

    #[test]
    fn resolves_variables() {
        let e = event(serde_json::json!({
            "transaction": "/checkout",
            "level": "warning",
            "tags": [["region", "eu"]],
            "exception": {"values": [{"type": "ValueError", "value": "bad", "stacktrace": {"frames": [
                {"function": "outer", "module": "app.a", "in_app": true, "package": "/usr/lib/libapp.so"},
                {"function": "inner", "module": "lib.b", "in_app": false, "abs_path": "/x/b.py", "filename": "b.py"}
            ]}}]}
        }));
        let fp: Vec<String> = [
            "{{ transaction }}",
            "{{ type }}",
            "{{ error.value }}",
            "{{ function }}",
            "{{ module }}",
            "{{ package }}",
            "{{ stack.filename }}",
            "{{ level }}",
            "{{ tags.region }}",
            "{{ tags.nope }}",
            "{{ logger }}",
            "{{ message }}",
            "{{ unknown }}",
            "{{default}}",
            "literal",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            resolve(&fp, &e),
            [
                "/checkout",
                "ValueError",
                "bad",
                "outer",
                "app.a",
                "libapp.so",
                "<no-filename>",
                "warning",
                "eu",
                "<no-value-for-tag-nope>",
                "<no-logger>",
                "bad",
                "{{ unknown }}",
                "{{ default }}",
                "literal",
            ]
        );
    }

    #[test]
    fn builtin_chunk_load_rule() {
        let e = event(serde_json::json!({
            "platform": "javascript",
            "exception": {"values": [{"type": "ChunkLoadError", "value": "Loading chunk 3 failed."}]}
        }));
        let m = server_fingerprint(&e, None).map(|m| (m.fingerprint.to_vec(), m.builtin));
        assert_eq!(m, Some((vec!["chunkloaderror".to_string()], true)));
        let e = event(serde_json::json!({
            "platform": "python",
            "exception": {"values": [{"type": "ChunkLoadError"}]}
        }));
        assert!(server_fingerprint(&e, None).is_none());
    }

    #[test]
    fn project_rules_in_both_forms() {
        let json = FingerprintingRules::from_json(&serde_json::json!([
            {"matchers": [["type", "SoftTimeLimitExceeded"]], "fingerprint": ["{{ default }}", "soft"]}
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        let text = FingerprintingRules::parse("error.type:\"SoftTimeLimit*\" logger:celery -> soft, {{ transaction }} title=\"Timeout\"")
            .unwrap_or_else(|e| panic!("{e}"));
        let e = event(serde_json::json!({
            "logger": "celery",
            "exception": {"values": [{"type": "SoftTimeLimitExceeded"}]}
        }));
        assert_eq!(
            json.find(&e).map(|m| m.fingerprint.to_vec()),
            Some(vec!["{{ default }}".into(), "soft".into()])
        );
        let m = text.find(&e);
        assert_eq!(
            m.as_ref().map(|m| m.fingerprint.to_vec()),
            Some(vec!["soft".into(), "{{ transaction }}".into()])
        );
        assert_eq!(text.title_for(&e).as_deref(), Some("Timeout"));
    }
}
