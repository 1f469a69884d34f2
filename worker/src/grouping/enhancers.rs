//! Stack trace rules: the data-driven part of frame handling.
//!
//! The built-in rule table (`enhancements.txt`) decides which frames are in-app, sorts
//! native frames into categories and tells grouping which frames to ignore. It is parsed
//! once into [`Enhancements`]; applying it is two passes over a stack trace (see
//! [`Enhancements::apply_modifications`] and [`Enhancements::update_components`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, LazyLock};

use regex::{Regex, RegexSet};

use super::component::{Component, Hint, Text};

/// Frame families rules can be restricted to, as bits.
pub(crate) const FAMILY_OTHER: u8 = 0b001;
pub(crate) const FAMILY_NATIVE: u8 = 0b010;
pub(crate) const FAMILY_JAVASCRIPT: u8 = 0b100;
const FAMILY_ALL: u8 = 0b111;

/// The family a platform behaves like (Sentry's `get_behavior_family_for_platform`).
pub(crate) fn family_of(platform: Option<&str>) -> u8 {
    match platform {
        Some("objc" | "cocoa" | "swift" | "native" | "c") => FAMILY_NATIVE,
        Some("javascript" | "node") => FAMILY_JAVASCRIPT,
        _ => FAMILY_OTHER,
    }
}

/// A path-like value (`package`, `abs_path`): lower-cased, `\` turned into `/`, and kept
/// with a leading `/` so that patterns written for absolute paths also match relative
/// ones, as Sentry's matchers do.
#[derive(Debug, Clone)]
pub(crate) struct PathValue {
    slashed: String,
    added_slash: bool,
}

impl PathValue {
    pub(crate) fn new(raw: &str) -> Self {
        let mut slashed = String::with_capacity(raw.len() + 1);
        let added_slash = !(raw.starts_with('/') || raw.starts_with('\\'));
        if added_slash {
            slashed.push('/');
        }
        if raw.is_ascii() {
            slashed.push_str(raw);
            // ASCII paths (nearly all) skip the per-character Unicode lower-casing.
            slashed.make_ascii_lowercase();
            if raw.contains('\\') {
                slashed = slashed.replace('\\', "/");
            }
        } else {
            for c in raw.chars() {
                if c == '\\' {
                    slashed.push('/');
                } else {
                    slashed.extend(c.to_lowercase());
                }
            }
        }
        PathValue {
            slashed,
            added_slash,
        }
    }

    pub(crate) fn value(&self) -> &str {
        if self.added_slash {
            &self.slashed[1..]
        } else {
            &self.slashed
        }
    }

    pub(crate) fn matches(&self, glob: &Glob) -> bool {
        glob.matches(self.value()) || (self.added_slash && glob.matches(&self.slashed))
    }
}

/// What the rules see of a frame. `in_app` and `category` are what the rules change.
#[derive(Debug, Clone)]
pub(crate) struct MatchFrame<'a> {
    pub family: u8,
    /// The cleaned function name, `<unknown>` when there is none.
    pub function: Text<'a>,
    pub module: Option<&'a str>,
    pub package: Option<PathValue>,
    pub path: Option<PathValue>,
    pub in_app: Option<bool>,
    /// The `in_app` value before a rule or the defaulting changed it.
    pub orig_in_app: Option<Option<bool>>,
    /// The category the rules gave the frame (an id of the rule table, 0 for none).
    pub category: u8,
}

impl MatchFrame<'_> {
    fn set_in_app(&mut self, value: bool) {
        if self.in_app == Some(value) {
            return;
        }
        if self.orig_in_app.is_none() {
            self.orig_in_app = Some(self.in_app);
        }
        self.in_app = Some(value);
    }

    /// After the rules ran, frames nobody decided on are not in-app.
    pub(crate) fn default_in_app(&mut self) {
        if self.in_app.is_none() {
            self.set_in_app(false);
        }
    }

    pub(crate) fn is_in_app(&self) -> bool {
        self.in_app.unwrap_or(false)
    }
}

/// The exception a stack trace belongs to, for `error.*` matchers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ExceptionData<'a> {
    pub ty: Option<&'a str>,
    pub value: Option<&'a str>,
    pub mechanism: Option<&'a str>,
}

/// A compiled glob. Most patterns are plain strings, prefixes or substrings; only the
/// rest become regexes.
#[derive(Debug)]
pub(crate) enum Glob {
    Exact(Box<str>),
    Prefix(Box<str>),
    /// A prefix followed by anything but `/` (a path glob ending in `*`).
    PrefixSegment(Box<str>),
    Suffix(Box<str>),
    Contains(Box<str>),
    Regex(Regex),
}

impl Glob {
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            Glob::Exact(s) => value == &**s,
            Glob::Prefix(s) => value.starts_with(&**s),
            Glob::PrefixSegment(s) => value
                .strip_prefix(&**s)
                .is_some_and(|rest| !rest.contains('/')),
            Glob::Suffix(s) => value.ends_with(&**s),
            Glob::Contains(s) => value.contains(&**s),
            Glob::Regex(r) => r.is_match(value),
        }
    }

    /// Compiles a glob. Path globs are case-insensitive (the values are lower-cased),
    /// `*` and `?` stop at `/` and `**` crosses directories; elsewhere `*` matches
    /// anything. `\x` escapes `x` and `[...]`/`[!...]` are character classes.
    pub(crate) fn compile(pattern: &str, path: bool) -> Result<Glob, String> {
        let p = normalize_pattern(pattern, path);
        match classify(&p, path) {
            Some(simple) => Ok(simple),
            None => Ok(Glob::Regex(
                Regex::new(&glob_to_regex(&p, path)).map_err(|e| e.to_string())?,
            )),
        }
    }

    /// A case-insensitive non-path glob; match it against lower-cased values.
    pub(crate) fn compile_ci(pattern: &str) -> Result<Glob, String> {
        Glob::compile(&pattern.to_lowercase(), false)
    }
}

/// Path patterns are matched on lower-cased, `/`-separated values.
fn normalize_pattern(pattern: &str, path: bool) -> Cow<'_, str> {
    if path {
        Cow::Owned(pattern.replace('\\', "/").to_lowercase())
    } else {
        Cow::Borrowed(pattern)
    }
}

#[derive(Debug, PartialEq)]
enum GlobToken {
    Literal(String),
    /// `*`
    Star,
    /// `**`
    DoubleStar,
    /// `?` or a character class: needs a regex.
    Other,
}

fn glob_tokens(p: &str, path: bool) -> Vec<GlobToken> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = p.chars().peekable();
    let flush = |lit: &mut String, out: &mut Vec<GlobToken>| {
        if !lit.is_empty() {
            out.push(GlobToken::Literal(std::mem::take(lit)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                flush(&mut lit, &mut out);
                if chars.peek() == Some(&'*') {
                    chars.next();
                    out.push(GlobToken::DoubleStar);
                } else {
                    out.push(GlobToken::Star);
                }
            }
            '?' | '[' => {
                flush(&mut lit, &mut out);
                out.push(GlobToken::Other);
            }
            '\\' if !path => match chars.next() {
                Some(e) => lit.push(e),
                None => lit.push('\\'),
            },
            c => lit.push(c),
        }
    }
    flush(&mut lit, &mut out);
    out
}

/// Recognises globs that are a plain string, prefix, suffix or substring test. Path
/// values are also tried with a leading `/` (see [`PathValue`]), which is what makes
/// `**/x/**` the same as "contains `/x/`".
fn classify(p: &str, path: bool) -> Option<Glob> {
    use GlobToken::*;
    let tokens = glob_tokens(p, path);
    let wild = |t: &GlobToken| matches!(t, DoubleStar) || (!path && matches!(t, Star));
    let s = |l: &String| -> Box<str> { l.as_str().into() };
    match tokens.as_slice() {
        [] => Some(Glob::Exact("".into())),
        [Literal(l)] => Some(Glob::Exact(s(l))),
        [w] if wild(w) => Some(Glob::Prefix("".into())),
        [Literal(l), w] if wild(w) => Some(Glob::Prefix(s(l))),
        [Literal(l), Star] if path => Some(Glob::PrefixSegment(s(l))),
        [w, Literal(l)] if wild(w) => Some(Glob::Suffix(s(l))),
        [w1, Literal(l), w2] if wild(w1) && wild(w2) => Some(Glob::Contains(s(l))),
        _ => None,
    }
}

fn glob_to_regex(p: &str, path: bool) -> String {
    let chars: Vec<char> = p.chars().collect();
    let mut re = String::from("(?s)^");
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                let at_start = i == 0 || chars[i - 1] == '/';
                if path && at_start && chars.get(i + 2) == Some(&'/') {
                    re.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    re.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => re.push_str(if path { "[^/]*" } else { ".*" }),
            '?' => re.push_str(if path { "[^/]" } else { "." }),
            '\\' if !path && i + 1 < chars.len() => {
                i += 1;
                push_escaped(&mut re, chars[i]);
            }
            '[' => {
                if let Some(len) = chars[i + 1..].iter().skip(1).position(|&c| c == ']') {
                    // The class body is at least one character, so `[]]` is a class of `]`.
                    let body = &chars[i + 1..i + 2 + len];
                    re.push('[');
                    let mut body = body.iter().peekable();
                    if body.peek() == Some(&&'!') {
                        re.push('^');
                        body.next();
                    }
                    for &b in body {
                        if b == '-' {
                            re.push('-');
                        } else {
                            push_escaped(&mut re, b);
                        }
                    }
                    re.push(']');
                    i += len + 3;
                    continue;
                }
                push_escaped(&mut re, c);
            }
            c => push_escaped(&mut re, c),
        }
        i += 1;
    }
    re.push('$');
    re
}

fn push_escaped(re: &mut String, c: char) {
    let mut buf = [0u8; 4];
    re.push_str(&regex::escape(c.encode_utf8(&mut buf)));
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Offset {
    Current,
    /// The frame before (the caller of) the current one.
    Caller,
    /// The frame after (called by) the current one.
    Callee,
}

/// Frame fields matched by globs; each has one `RegexSet` over all patterns of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Function = 0,
    Module = 1,
    Package = 2,
    Path = 3,
}

const FIELDS: [Field; 4] = [Field::Function, Field::Module, Field::Package, Field::Path];

#[derive(Debug)]
enum FrameTest {
    /// The field matched pattern `id` of its set.
    Field(Field, u32),
    /// The frame's category is this one.
    CategoryIs(u8),
    /// The frame's category name matches a wildcard pattern.
    CategoryGlob(Glob),
    Family(u8),
    App(bool),
}

#[derive(Debug)]
struct FrameMatcher {
    negated: bool,
    offset: Offset,
    test: FrameTest,
}

#[derive(Debug, Clone, Copy)]
enum ExceptionField {
    Type,
    Value,
    Mechanism,
}

#[derive(Debug)]
struct ExceptionMatcher {
    negated: bool,
    field: ExceptionField,
    glob: Glob,
}

impl ExceptionMatcher {
    fn matches(&self, exc: &ExceptionData<'_>) -> bool {
        let value = match self.field {
            ExceptionField::Type => exc.ty,
            ExceptionField::Value => exc.value,
            ExceptionField::Mechanism => exc.mechanism,
        };
        self.glob.matches(value.unwrap_or("<unknown>")) != self.negated
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Range {
    /// Only the matching frame.
    Current,
    /// The frames after it (what it called, towards the crash): `^`.
    Up,
    /// The frames before it (its callers): `v`.
    Down,
}

#[derive(Debug)]
enum Action {
    App {
        value: bool,
        range: Range,
    },
    Group {
        value: bool,
        range: Range,
    },
    Category(u8),
    /// Stack-level variables (`invert-stacktrace`, `min-frames`, `max-frames`) only matter
    /// for hierarchical grouping, which this config does not use.
    StackVariable,
}

fn range_slice(range: Range, idx: usize, len: usize) -> std::ops::Range<usize> {
    match range {
        Range::Current => idx..idx + 1,
        Range::Up => (idx + 1).min(len)..len,
        Range::Down => 0..idx,
    }
}

/// The cheapest way to find the frames a rule can match.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Anchor {
    /// The frame's field must match this pattern: only stacks where some frame did are
    /// looked at.
    Field(Field, u32),
    /// The frame must have this category.
    Category(u8),
    /// Every frame has to be tried.
    None,
}

#[derive(Debug)]
struct Rule {
    frame_matchers: Vec<FrameMatcher>,
    exception_matchers: Vec<ExceptionMatcher>,
    actions: Vec<Action>,
    /// Families the current frame must belong to (all when the rule names none).
    families: u8,
    anchor: Anchor,
    /// The rule as shown in hints.
    text: Arc<str>,
}

/// The static field matches of every frame of one stack trace.
struct StaticMatches {
    /// `(field, pattern id)` pairs, frame after frame.
    ids: Vec<(u8, u32)>,
    /// Where each frame's pairs start in `ids` (plus the end).
    starts: Vec<u32>,
}

impl StaticMatches {
    fn has(&self, frame: usize, field: Field, id: u32) -> bool {
        let (Some(&a), Some(&b)) = (self.starts.get(frame), self.starts.get(frame + 1)) else {
            return false;
        };
        self.ids[a as usize..b as usize].contains(&(field as u8, id))
    }
}

/// The patterns of one field that rules for one frame family use, indexed so that a
/// value is only compared with patterns that can match it.
#[derive(Debug)]
struct FieldIndex {
    /// Exact patterns.
    exact: HashMap<Box<str>, Vec<u32>, BuildHasherDefault<Fnv>>,
    /// Prefix patterns by their first byte (an empty prefix matches everything); the
    /// flag marks path prefixes that must not be followed by another `/`.
    prefix: Vec<Vec<(Box<str>, u32, bool)>>,
    any: Vec<u32>,
    suffix: Vec<(Box<str>, u32)>,
    contains: Vec<(Box<str>, u32)>,
    /// Any of the `contains` literals: one fast search rules most values out.
    contains_any: Option<Regex>,
    /// The rest, as one set, searched only when a literal every one of them needs is
    /// present.
    complex: RegexSet,
    complex_ids: Vec<u32>,
    complex_any: Option<Regex>,
}

impl FieldIndex {
    fn build(patterns: &[(String, bool)], wanted: &[bool]) -> FieldIndex {
        let mut index = FieldIndex {
            exact: HashMap::default(),
            prefix: vec![Vec::new(); 256],
            any: Vec::new(),
            suffix: Vec::new(),
            contains: Vec::new(),
            contains_any: None,
            complex: RegexSet::empty(),
            complex_ids: Vec::new(),
            complex_any: None,
        };
        let mut complex = Vec::new();
        let mut complex_literals = Vec::new();
        for (i, (pattern, path)) in patterns.iter().enumerate() {
            if !wanted[i] {
                continue;
            }
            let id = i as u32;
            let p = normalize_pattern(pattern, *path);
            match classify(&p, *path) {
                Some(Glob::Exact(e)) => index.exact.entry(e).or_default().push(id),
                Some(Glob::Prefix(pre)) => match pre.as_bytes().first() {
                    Some(&b) => index.prefix[usize::from(b)].push((pre, id, false)),
                    None => index.any.push(id),
                },
                Some(Glob::PrefixSegment(pre)) => match pre.as_bytes().first() {
                    Some(&b) => index.prefix[usize::from(b)].push((pre, id, true)),
                    None => {
                        complex.push(glob_to_regex(&p, *path));
                        complex_literals.push(None);
                        index.complex_ids.push(id);
                    }
                },
                Some(Glob::Suffix(suf)) => index.suffix.push((suf, id)),
                Some(Glob::Contains(c)) => index.contains.push((c, id)),
                _ => {
                    let re = glob_to_regex(&p, *path);
                    // A pattern that does not compile never matches (like a broken rule in Sentry).
                    if Regex::new(&re).is_ok() {
                        complex.push(re);
                        complex_literals.push(longest_literal(&p, *path));
                        index.complex_ids.push(id);
                    }
                }
            }
        }
        if !index.contains.is_empty() {
            let alternation: Vec<String> = index
                .contains
                .iter()
                .map(|(c, _)| regex::escape(c))
                .collect();
            index.contains_any = Regex::new(&alternation.join("|")).ok();
        }
        if !complex.is_empty() {
            index.complex = RegexSet::new(&complex).unwrap_or_else(|_| RegexSet::empty());
            // Only when every complex pattern needs some literal can that literal gate the set.
            let literals: Option<Vec<String>> = complex_literals.into_iter().collect();
            index.complex_any = literals.and_then(|l| {
                Regex::new(
                    &l.iter()
                        .map(|x| regex::escape(x))
                        .collect::<Vec<_>>()
                        .join("|"),
                )
                .ok()
            });
        }
        index
    }

    /// Calls `hit` with the id of every pattern matching `value`.
    fn each_match(&self, value: &str, hit: &mut impl FnMut(u32)) {
        if let Some(ids) = self.exact.get(value) {
            ids.iter().for_each(|id| hit(*id));
        }
        if let Some(&b) = value.as_bytes().first() {
            for (pre, id, segment) in &self.prefix[usize::from(b)] {
                if let Some(rest) = value.strip_prefix(&**pre)
                    && (!segment || !rest.contains('/'))
                {
                    hit(*id);
                }
            }
        }
        self.any.iter().for_each(|id| hit(*id));
        for (suf, id) in &self.suffix {
            if value.ends_with(&**suf) {
                hit(*id);
            }
        }
        if self
            .contains_any
            .as_ref()
            .is_none_or(|re| re.is_match(value))
        {
            for (c, id) in &self.contains {
                if value.contains(&**c) {
                    hit(*id);
                }
            }
        }
        if !self.complex_ids.is_empty()
            && self
                .complex_any
                .as_ref()
                .is_none_or(|re| re.is_match(value))
        {
            let m = self.complex.matches(value);
            if m.matched_any() {
                m.iter().for_each(|i| hit(self.complex_ids[i]));
            }
        }
    }
}

/// The longest literal run a glob requires, if it has one of a useful length.
fn longest_literal(p: &str, path: bool) -> Option<String> {
    glob_tokens(p, path)
        .into_iter()
        .filter_map(|t| match t {
            GlobToken::Literal(l) => Some(l),
            _ => None,
        })
        .max_by_key(String::len)
        .filter(|l| l.len() >= 3)
}

/// FNV-1a: pattern lookups hash short names on every frame; SipHash's DoS resistance
/// buys nothing for a fixed rule table.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Index of a family bit in per-family tables.
fn family_index(family: u8) -> usize {
    match family {
        FAMILY_NATIVE => 1,
        FAMILY_JAVASCRIPT => 2,
        _ => 0,
    }
}

/// A parsed rule set with the indexes that make applying it cheap.
#[derive(Debug)]
pub(crate) struct Enhancements {
    rules: Vec<Rule>,
    /// Per frame family and field: the patterns rules for that family use.
    sets: [[FieldIndex; 4]; 3],
    /// The same, restricted to the patterns of in-app rules.
    app_sets: [[FieldIndex; 4]; 3],
    /// Per field and pattern: the rules anchored on it.
    anchored: [Vec<Vec<u16>>; 4],
    /// Category names; a frame's category is an index into it, plus one.
    categories: Vec<Box<str>>,
    /// Rules that set `in_app` or a category, in order.
    modifiers: Vec<u16>,
    /// Rules with a group or app action, in order.
    updaters: Vec<u16>,
    /// Rules with an app action, in order, when none of them looks at categories (then
    /// `in_app` can be decided without categorizing frames).
    app_only: Option<Vec<u16>>,
}

/// The built-in rules, parsed once.
pub(crate) static DEFAULT_ENHANCEMENTS: LazyLock<Enhancements> = LazyLock::new(|| {
    Enhancements::parse(include_str!("enhancements.txt"))
        .unwrap_or_else(|e| panic!("built-in enhancements: {e}"))
});

/// A rule matching a frame, found once per stack trace and applied per variant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RuleHit {
    rule: u16,
    frame: u16,
}

impl Enhancements {
    /// Parses a rule table; `#` starts a comment.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut builder = Builder::default();
        let mut rules = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let raw = parse_rule(line).map_err(|e| format!("line {}: {e}: {line}", n + 1))?;
            rules.push(
                builder
                    .build(raw)
                    .map_err(|e| format!("line {}: {e}: {line}", n + 1))?,
            );
        }
        if rules.len() > usize::from(u16::MAX) {
            return Err("too many rules".into());
        }
        let mut anchored: [Vec<Vec<u16>>; 4] =
            FIELDS.map(|f| vec![Vec::new(); builder.patterns[f as usize].len()]);
        for (i, rule) in rules.iter().enumerate() {
            if let Anchor::Field(f, id) = rule.anchor {
                anchored[f as usize][id as usize].push(i as u16);
            }
        }
        let is_app_rule = |r: &Rule| r.actions.iter().any(|a| matches!(a, Action::App { .. }));
        // A pattern goes into a family's index when a rule that can apply to that family
        // uses it; the second set of indexes holds only what in-app rules use.
        let build = |only_app: bool| {
            [FAMILY_OTHER, FAMILY_NATIVE, FAMILY_JAVASCRIPT].map(|family| {
                FIELDS.map(|f| {
                    let patterns = &builder.patterns[f as usize];
                    let mut wanted = vec![false; patterns.len()];
                    for rule in rules.iter().filter(|r| !only_app || is_app_rule(r)) {
                        for m in &rule.frame_matchers {
                            // A neighbour frame may be of another family than the rule's.
                            let relevant =
                                rule.families & family != 0 || m.offset != Offset::Current;
                            if let FrameTest::Field(mf, id) = m.test
                                && mf == f
                                && relevant
                            {
                                wanted[id as usize] = true;
                            }
                        }
                    }
                    FieldIndex::build(patterns, &wanted)
                })
            })
        };
        let sets = build(false);
        let app_sets = build(true);
        let pick = |pred: fn(&Action) -> bool| -> Vec<u16> {
            (0..rules.len())
                .filter(|&i| rules[i].actions.iter().any(pred))
                .map(|i| i as u16)
                .collect()
        };
        let modifiers = pick(|a| matches!(a, Action::App { .. } | Action::Category(_)));
        let updaters = pick(|a| matches!(a, Action::App { .. } | Action::Group { .. }));
        let app_rules = pick(|a| matches!(a, Action::App { .. }));
        let uses_categories = app_rules.iter().any(|&i| {
            rules[usize::from(i)].frame_matchers.iter().any(|m| {
                matches!(
                    m.test,
                    FrameTest::CategoryIs(_) | FrameTest::CategoryGlob(_)
                )
            })
        });
        Ok(Enhancements {
            rules,
            sets,
            app_sets,
            anchored,
            categories: builder.categories,
            modifiers,
            updaters,
            app_only: (!uses_categories).then_some(app_rules),
        })
    }

    /// The name of a frame's category.
    #[cfg(test)]
    fn category_name(&self, id: u8) -> Option<&str> {
        id.checked_sub(1)
            .and_then(|i| self.categories.get(usize::from(i)))
            .map(|s| &**s)
    }

    fn static_matches(&self, frames: &[MatchFrame<'_>], app_only: bool) -> StaticMatches {
        let all_sets = if app_only { &self.app_sets } else { &self.sets };
        let mut ids: Vec<(u8, u32)> = Vec::new();
        let mut starts = Vec::with_capacity(frames.len() + 1);
        for (i, f) in frames.iter().enumerate() {
            let start = ids.len();
            starts.push(start as u32);
            let sets = &all_sets[family_index(f.family)];
            // Neighbouring frames often share a package or file: reuse their matches.
            let prev = i
                .checked_sub(1)
                .map(|p| (&frames[p], starts[p] as usize))
                .filter(|(p, _)| p.family == f.family);
            let mut add = |field: Field, value: &str, same_as_prev: bool| {
                if let (true, Some((_, prev_start))) = (same_as_prev, prev) {
                    for k in prev_start..start {
                        if ids[k].0 == field as u8 {
                            ids.push(ids[k]);
                        }
                    }
                    return;
                }
                sets[field as usize].each_match(value, &mut |id| {
                    let pair = (field as u8, id);
                    if !ids[start..].contains(&pair) {
                        ids.push(pair);
                    }
                });
            };
            add(
                Field::Function,
                &f.function,
                prev.is_some_and(|(p, _)| *p.function == *f.function),
            );
            if let Some(m) = f.module {
                add(
                    Field::Module,
                    m,
                    prev.is_some_and(|(p, _)| p.module == Some(m)),
                );
            }
            let same = |a: &Option<PathValue>, b: &Option<PathValue>| match (a, b) {
                (Some(a), Some(b)) => a.slashed == b.slashed,
                _ => false,
            };
            for (field, value, prev_value) in [
                (Field::Package, &f.package, prev.map(|(p, _)| &p.package)),
                (Field::Path, &f.path, prev.map(|(p, _)| &p.path)),
            ] {
                if let Some(v) = value {
                    let reuse = prev_value.is_some_and(|pv| same(pv, value));
                    add(field, v.value(), reuse);
                    if v.added_slash && !reuse {
                        add(field, &v.slashed, false);
                    }
                }
            }
        }
        starts.push(ids.len() as u32);
        StaticMatches { ids, starts }
    }

    fn test(
        &self,
        t: &FrameTest,
        frame: &MatchFrame<'_>,
        idx: usize,
        statics: &StaticMatches,
    ) -> bool {
        match t {
            FrameTest::Field(field, id) => statics.has(idx, *field, *id),
            FrameTest::CategoryIs(c) => frame.category == *c,
            FrameTest::CategoryGlob(g) => frame
                .category
                .checked_sub(1)
                .and_then(|i| self.categories.get(usize::from(i)))
                .is_some_and(|name| g.matches(name)),
            FrameTest::Family(f) => f & frame.family != 0,
            FrameTest::App(expected) => frame.is_in_app() == *expected,
        }
    }

    fn matches_frame(
        &self,
        rule: &Rule,
        frames: &[MatchFrame<'_>],
        idx: usize,
        statics: &StaticMatches,
    ) -> bool {
        if frames[idx].family & rule.families == 0 {
            return false;
        }
        rule.frame_matchers.iter().all(|m| {
            let target = match m.offset {
                Offset::Current => Some(idx),
                Offset::Caller => idx.checked_sub(1),
                Offset::Callee => Some(idx + 1).filter(|&i| i < frames.len()),
            };
            match target {
                Some(i) => self.test(&m.test, &frames[i], i, statics) != m.negated,
                None => false,
            }
        })
    }

    /// Calls `hit` for every frame `rule` matches (in frame order).
    fn for_matches(
        &self,
        rule: &Rule,
        frames: &[MatchFrame<'_>],
        statics: &StaticMatches,
        mut hit: impl FnMut(usize),
    ) {
        for idx in 0..frames.len() {
            let plausible = match rule.anchor {
                Anchor::Field(f, id) => statics.has(idx, f, id),
                Anchor::Category(c) => frames[idx].category == c,
                Anchor::None => true,
            };
            if plausible && self.matches_frame(rule, frames, idx, statics) {
                hit(idx);
            }
        }
    }

    /// Runs the rules over a stack trace: first every rule that sets `in_app` or a
    /// category, in order (each rule sees all frames before any of its changes apply);
    /// frames left undecided are then not in-app. Returns the group/app rule matches on
    /// the final frames, for [`Self::update_components`].
    pub(crate) fn apply(
        &self,
        frames: &mut [MatchFrame<'_>],
        exc: &ExceptionData<'_>,
    ) -> Vec<RuleHit> {
        self.run(frames, exc, false)
    }

    /// Only decides `in_app` (what titles and culprits need): cheaper than [`Self::apply`]
    /// when no in-app rule depends on categories, the same otherwise.
    pub(crate) fn apply_in_app(&self, frames: &mut [MatchFrame<'_>], exc: &ExceptionData<'_>) {
        self.run(frames, exc, true);
    }

    fn run(
        &self,
        frames: &mut [MatchFrame<'_>],
        exc: &ExceptionData<'_>,
        in_app_only: bool,
    ) -> Vec<RuleHit> {
        if frames.len() > usize::from(u16::MAX) {
            return Vec::new();
        }
        let (modifiers, fast) = match (&self.app_only, in_app_only) {
            (Some(app_rules), true) => (app_rules, true),
            _ => (&self.modifiers, false),
        };
        let statics = self.static_matches(frames, fast);
        let present = frames.iter().fold(0u8, |acc, f| acc | f.family);
        // Rules anchored on a field pattern no frame matched cannot apply at all.
        let mut possible = vec![false; self.rules.len()];
        for &(field, id) in &statics.ids {
            for &r in &self.anchored[usize::from(field)][id as usize] {
                possible[usize::from(r)] = true;
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if !matches!(rule.anchor, Anchor::Field(..)) {
                possible[i] = true;
            }
        }
        let usable = |rule: &Rule, i: u16| {
            possible[usize::from(i)]
                && rule.families & present != 0
                && rule.exception_matchers.iter().all(|m| m.matches(exc))
        };
        let mut hits = Vec::new();
        for &ri in modifiers {
            let rule = &self.rules[usize::from(ri)];
            if !usable(rule, ri) {
                continue;
            }
            hits.clear();
            self.for_matches(rule, frames, &statics, |i| hits.push(i));
            for &idx in &hits {
                for action in &rule.actions {
                    match *action {
                        Action::App { value, range } => {
                            let len = frames.len();
                            for f in &mut frames[range_slice(range, idx, len)] {
                                f.set_in_app(value);
                            }
                        }
                        Action::Category(c) if !fast => frames[idx].category = c,
                        _ => {}
                    }
                }
            }
        }
        for f in frames.iter_mut() {
            f.default_in_app();
        }
        if in_app_only {
            return Vec::new();
        }
        let mut out = Vec::new();
        for &ri in &self.updaters {
            let rule = &self.rules[usize::from(ri)];
            if usable(rule, ri) {
                self.for_matches(rule, frames, &statics, |i| {
                    out.push(RuleHit {
                        rule: ri,
                        frame: i as u16,
                    })
                });
            }
        }
        out
    }

    /// Applies the group/app rule matches to one variant's frame components: `+group` /
    /// `-group` decide whether frames contribute, app actions only explain themselves.
    pub(crate) fn update_components(
        &self,
        hits: &[RuleHit],
        components: &mut [Component<'_>],
        frames: &[MatchFrame<'_>],
    ) {
        let len = frames.len().min(components.len());
        for hit in hits {
            let rule = &self.rules[usize::from(hit.rule)];
            let idx = usize::from(hit.frame);
            for action in &rule.actions {
                match *action {
                    Action::Group { value, range } => {
                        for comp in &mut components[range_slice(range, idx, len)] {
                            if comp.contributes != value {
                                comp.contributes = value;
                                let verb = if value { "un-ignored" } else { "ignored" };
                                comp.hint = Some(Hint::Rule(verb, rule.text.clone()));
                            }
                        }
                    }
                    Action::App { value, range } => {
                        let r = range_slice(range, idx, len);
                        for (comp, frame) in components[r.clone()].iter_mut().zip(&frames[r]) {
                            let changed = match frame.orig_in_app {
                                Some(orig) => orig != frame.in_app,
                                None => value == comp.contributes,
                            };
                            if changed {
                                let what = if frame.is_in_app() {
                                    "marked in-app"
                                } else {
                                    "marked out of app"
                                };
                                comp.hint = Some(Hint::Rule(what, rule.text.clone()));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Collects the field patterns and category names while rules are built.
#[derive(Default)]
struct Builder {
    /// Per field: `(pattern, path-like)`.
    patterns: [Vec<(String, bool)>; 4],
    categories: Vec<Box<str>>,
}

impl Builder {
    fn pattern_id(&mut self, field: Field, pattern: &str) -> u32 {
        let path = matches!(field, Field::Package | Field::Path);
        let list = &mut self.patterns[field as usize];
        match list.iter().position(|(p, _)| p == pattern) {
            Some(i) => i as u32,
            None => {
                list.push((pattern.to_string(), path));
                (list.len() - 1) as u32
            }
        }
    }

    fn category_id(&mut self, name: &str) -> Result<u8, String> {
        if let Some(i) = self.categories.iter().position(|c| &**c == name) {
            return Ok(i as u8 + 1);
        }
        if self.categories.len() >= usize::from(u8::MAX) {
            return Err("too many categories".into());
        }
        self.categories.push(name.into());
        Ok(self.categories.len() as u8)
    }

    fn build(&mut self, raw: RawRule) -> Result<Rule, String> {
        let mut frame_matchers = Vec::new();
        let mut exception_matchers = Vec::new();
        for m in raw.matchers {
            let test = match m.kind {
                RawKind::Field(field, pattern) => {
                    FrameTest::Field(field, self.pattern_id(field, &pattern))
                }
                RawKind::Category(pattern) => {
                    if pattern.contains(['*', '?', '[', '\\']) {
                        FrameTest::CategoryGlob(Glob::compile(&pattern, false)?)
                    } else {
                        FrameTest::CategoryIs(self.category_id(&pattern)?)
                    }
                }
                RawKind::Family(f) => FrameTest::Family(f),
                RawKind::App(a) => FrameTest::App(a),
                RawKind::Exception(field, pattern) => {
                    exception_matchers.push(ExceptionMatcher {
                        negated: m.negated,
                        field,
                        glob: Glob::compile(&pattern, false)?,
                    });
                    continue;
                }
            };
            frame_matchers.push(FrameMatcher {
                negated: m.negated,
                offset: m.offset,
                test,
            });
        }
        let mut actions = Vec::new();
        for a in raw.actions {
            actions.push(match a {
                RawAction::App { value, range } => Action::App { value, range },
                RawAction::Group { value, range } => Action::Group { value, range },
                RawAction::Category(name) => Action::Category(self.category_id(&name)?),
                RawAction::StackVariable => Action::StackVariable,
            });
        }
        let current = || {
            frame_matchers
                .iter()
                .filter(|m| m.offset == Offset::Current && !m.negated)
        };
        let families = current()
            .filter_map(|m| match m.test {
                FrameTest::Family(f) => Some(f),
                _ => None,
            })
            .fold(FAMILY_ALL, |acc, f| acc & f);
        let anchor = current()
            .find_map(|m| match m.test {
                FrameTest::Field(f, id) => Some(Anchor::Field(f, id)),
                _ => None,
            })
            .or_else(|| {
                current().find_map(|m| match m.test {
                    FrameTest::CategoryIs(c) => Some(Anchor::Category(c)),
                    _ => None,
                })
            })
            .unwrap_or(Anchor::None);
        Ok(Rule {
            frame_matchers,
            exception_matchers,
            actions,
            families,
            anchor,
            text: raw.text.into(),
        })
    }
}

/// A rule as written, before patterns are compiled and indexed.
struct RawRule {
    matchers: Vec<RawMatcher>,
    actions: Vec<RawAction>,
    text: String,
}

struct RawMatcher {
    negated: bool,
    offset: Offset,
    kind: RawKind,
}

enum RawKind {
    Field(Field, String),
    Category(String),
    Family(u8),
    App(bool),
    Exception(ExceptionField, String),
}

enum RawAction {
    App { value: bool, range: Range },
    Group { value: bool, range: Range },
    Category(String),
    StackVariable,
}

/// Splits a rule line into tokens: `[`, `]`, `|`, `key:value` (value possibly quoted) and
/// actions. Quoted values keep spaces; `\\` in them stands for one backslash.
fn tokenize(line: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let mut tokens = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if rest.starts_with('#') {
            break;
        }
        if let Some(r) = rest.strip_prefix(['[', ']', '|']) {
            tokens.push(Cow::Borrowed(&rest[..1]));
            rest = r.trim_start();
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | '|'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        if let Some(colon) = word.find(':') {
            let after = &rest[colon + 1..];
            if let Some(q) = after.strip_prefix('"') {
                let close = q.find('"').ok_or("unterminated quote")?;
                let value = q[..close].replace("\\\\", "\\");
                tokens.push(Cow::Owned(format!("{}{value}", &rest[..=colon])));
                rest = q[close + 1..].trim_start();
                continue;
            }
        }
        tokens.push(Cow::Borrowed(word));
        rest = rest[end..].trim_start();
    }
    Ok(tokens)
}

fn parse_matcher(token: &str, offset: Offset) -> Result<RawMatcher, String> {
    let (negated, token) = match token.strip_prefix('!') {
        Some(t) => (true, t),
        None => (false, token),
    };
    let (key, value) = token.split_once(':').ok_or("expected key:value")?;
    let value_s = value.to_string();
    let kind = match key {
        "function" | "stack.function" => RawKind::Field(Field::Function, value_s),
        "module" | "stack.module" => RawKind::Field(Field::Module, value_s),
        "package" | "stack.package" => RawKind::Field(Field::Package, value_s),
        "path" | "stack.abs_path" => RawKind::Field(Field::Path, value_s),
        "category" => RawKind::Category(value_s),
        "family" => RawKind::Family(value.split(',').fold(0u8, |acc, f| {
            acc | match f {
                "native" => FAMILY_NATIVE,
                "javascript" => FAMILY_JAVASCRIPT,
                "other" => FAMILY_OTHER,
                "all" => FAMILY_ALL,
                _ => 0,
            }
        })),
        "app" => RawKind::App(match value {
            "1" | "yes" | "true" => true,
            "0" | "no" | "false" => false,
            _ => return Err(format!("bad app value {value}")),
        }),
        "type" | "error.type" => RawKind::Exception(ExceptionField::Type, value_s),
        "value" | "error.value" => RawKind::Exception(ExceptionField::Value, value_s),
        "mechanism" | "error.mechanism" => RawKind::Exception(ExceptionField::Mechanism, value_s),
        _ => return Err(format!("unknown matcher {key}")),
    };
    Ok(RawMatcher {
        negated,
        offset,
        kind,
    })
}

fn parse_action(token: &str) -> Result<RawAction, String> {
    if let Some((var, value)) = token.split_once('=') {
        return match var {
            "category" => Ok(RawAction::Category(value.to_string())),
            "invert-stacktrace" | "min-frames" | "max-frames" => Ok(RawAction::StackVariable),
            _ => Err(format!("unknown variable {var}")),
        };
    }
    let (range, rest) = match token.as_bytes().first() {
        Some(b'^') => (Range::Up, &token[1..]),
        Some(b'v') => (Range::Down, &token[1..]),
        _ => (Range::Current, token),
    };
    let (value, flag) = match rest.as_bytes().first() {
        Some(b'+') => (true, &rest[1..]),
        Some(b'-') => (false, &rest[1..]),
        _ => return Err(format!("unknown action {token}")),
    };
    match flag {
        "app" => Ok(RawAction::App { value, range }),
        "group" => Ok(RawAction::Group { value, range }),
        _ => Err(format!("unknown action {token}")),
    }
}

/// Whether a token is a matcher (as opposed to an action).
fn is_matcher_token(t: &str) -> bool {
    let t = t.strip_prefix('!').unwrap_or(t);
    t.split_once(':')
        .is_some_and(|(k, _)| !k.is_empty() && !k.contains('='))
}

fn parse_rule(line: &str) -> Result<RawRule, String> {
    let tokens = tokenize(line)?;
    let mut matchers = Vec::new();
    let mut actions = Vec::new();
    let mut text = String::new();
    let mut push = |m: RawMatcher, shown: String, text: &mut String| {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&shown);
        matchers.push(m);
    };
    let mut i = 0;
    while i < tokens.len() {
        let t = &*tokens[i];
        let at = |k: usize| tokens.get(k).map(|t| &**t);
        match t {
            "[" => {
                // `[ m ] |` tests the caller.
                let m = at(i + 1).ok_or("dangling [")?;
                if at(i + 2) != Some("]") || at(i + 3) != Some("|") {
                    return Err("expected [ matcher ] |".into());
                }
                push(
                    parse_matcher(m, Offset::Caller)?,
                    format!("[ {} ] |", display_matcher(m)),
                    &mut text,
                );
                i += 4;
            }
            "|" => {
                // `| [ m ]` tests the callee.
                let m = at(i + 2).ok_or("dangling |")?;
                if at(i + 1) != Some("[") || at(i + 3) != Some("]") {
                    return Err("expected | [ matcher ]".into());
                }
                push(
                    parse_matcher(m, Offset::Callee)?,
                    format!("| [ {} ]", display_matcher(m)),
                    &mut text,
                );
                i += 4;
            }
            t if actions.is_empty() && is_matcher_token(t) => {
                push(
                    parse_matcher(t, Offset::Current)?,
                    display_matcher(t),
                    &mut text,
                );
                i += 1;
            }
            t => {
                actions.push(parse_action(t)?);
                let _ = write!(text, " {t}");
                i += 1;
            }
        }
    }
    if actions.is_empty() {
        return Err("rule without actions".into());
    }
    Ok(RawRule {
        matchers,
        actions,
        text,
    })
}

/// How a matcher is named in hints: long keys shortened like Sentry does.
fn display_matcher(token: &str) -> String {
    let (neg, t) = match token.strip_prefix('!') {
        Some(t) => ("!", t),
        None => ("", token),
    };
    let Some((key, value)) = t.split_once(':') else {
        return token.to_string();
    };
    let key = match key {
        "stack.function" => "function",
        "stack.module" => "module",
        "stack.package" => "package",
        "stack.abs_path" => "path",
        "error.type" => "type",
        "error.value" => "value",
        "error.mechanism" => "mechanism",
        k => k,
    };
    if value.contains(char::is_whitespace) {
        format!("{neg}{key}:\"{value}\"")
    } else {
        format!("{neg}{key}:{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame<'a>(family: u8, function: &'a str, package: Option<&str>) -> MatchFrame<'a> {
        MatchFrame {
            family,
            function: Text::Borrowed(function),
            module: None,
            package: package.map(PathValue::new),
            path: None,
            in_app: None,
            orig_in_app: None,
            category: 0,
        }
    }

    fn rules(text: &str) -> Enhancements {
        Enhancements::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn builtin_rules_parse() {
        assert!(DEFAULT_ENHANCEMENTS.rules.len() > 250);
        // Nearly every rule can be found through an index; scanning is the exception.
        let scanned = DEFAULT_ENHANCEMENTS
            .rules
            .iter()
            .filter(|r| r.anchor == Anchor::None)
            .count();
        assert!(scanned < 10, "{scanned} rules without an anchor");
    }

    #[test]
    fn globs() {
        let g = |p: &str, path: bool| Glob::compile(p, path).unwrap_or_else(|e| panic!("{e}"));
        assert!(g("std::*", false).matches("std::vector<T>::push"));
        assert!(g("*_block_invoke*", false).matches("__44-[Foo bar]_block_invoke_2"));
        assert!(g("?[[]KSCrash*", false).matches("-[KSCrashReport x]"));
        assert!(g("-\\[NSISEngine*", false).matches("-[NSISEngine foo]"));
        assert!(g("*::\\{dtor\\}", false).matches("Foo::Bar::{dtor}"));
        assert!(g("**/node_modules/**", true).matches("/app/node_modules/x/y.js"));
        assert!(g("/usr/lib/**", true).matches("/usr/lib/system/libdyld.dylib"));
        assert!(!g("/lib/*", true).matches("/lib/a/b"));
        // Path globs are matched through `PathValue`, which also tries a leading `/`.
        let p = |glob: &str, value: &str| PathValue::new(value).matches(&g(glob, true));
        assert!(p("**/libart.so", "/system/lib64/libart.so"));
        assert!(p("**/libart.so", "libart.so"));
        assert!(p("**/node_modules/**", "node_modules/react/index.js"));
        assert!(!p("**/node_modules/**", "/app/my_node_modules/x.js"));
        assert!(p(
            "**.app/Contents/**",
            "/Applications/My.app/Contents/MacOS/My"
        ));
        assert!(p("/usr/lib/**", "usr/lib/x.so"));
        assert!(g("c:/windows/**", true).matches("c:/windows/system32/ntdll.dll"));
    }

    #[test]
    fn path_values_match_with_and_without_leading_slash() {
        let r = rules("family:native package:/usr/lib/** -app");
        let mut frames = vec![frame(FAMILY_NATIVE, "f", Some("usr/lib/libc.so"))];
        r.apply(&mut frames, &ExceptionData::default());
        assert_eq!(frames[0].in_app, Some(false));
        assert_eq!(frames[0].orig_in_app, Some(None));
    }

    #[test]
    fn neighbour_rules_and_ranges() {
        let r = rules(
            "family:native function:abort category=throw\n\
             [ category:throw ] | function:raise category=internals\n\
             category:throw ^-group\n\
             category:internals -group",
        );
        let mut frames = vec![
            frame(FAMILY_NATIVE, "main", None),
            frame(FAMILY_NATIVE, "abort", None),
            frame(FAMILY_NATIVE, "raise", None),
            frame(FAMILY_NATIVE, "handler", None),
        ];
        let hits = r.apply(&mut frames, &ExceptionData::default());
        assert_eq!(r.category_name(frames[2].category), Some("internals"));
        let mut comps: Vec<Component<'_>> = frames
            .iter()
            .map(|f| Component::text("function", f.function.clone()))
            .collect();
        r.update_components(&hits, &mut comps, &frames);
        let contributing: Vec<bool> = comps.iter().map(|c| c.contributes).collect();
        assert_eq!(contributing, [true, true, false, false]);
        assert_eq!(
            comps[3].hint.as_ref().map(ToString::to_string).as_deref(),
            Some("ignored by stack trace rule (category:throw ^-group)")
        );
    }

    #[test]
    fn family_restricts_rules() {
        let r = rules("family:native function:std::* -app");
        let mut frames = vec![frame(FAMILY_OTHER, "std::foo", None)];
        frames[0].in_app = Some(true);
        r.apply(&mut frames, &ExceptionData::default());
        assert_eq!(frames[0].in_app, Some(true));
    }

    #[test]
    fn exception_matchers_gate_rules() {
        let r = rules("error.type:Boom* function:f -app");
        let mut frames = vec![frame(FAMILY_OTHER, "f", None)];
        frames[0].in_app = Some(true);
        r.apply(
            &mut frames,
            &ExceptionData {
                ty: Some("Other"),
                ..Default::default()
            },
        );
        assert_eq!(frames[0].in_app, Some(true));
        r.apply(
            &mut frames,
            &ExceptionData {
                ty: Some("BoomError"),
                ..Default::default()
            },
        );
        assert_eq!(frames[0].in_app, Some(false));
    }
}
