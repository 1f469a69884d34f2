//! The grouping component tree: what a variant's hash is made of, and why.
//!
//! A component has an id (`exception`, `frame`, `function`, ...), leaf values, child
//! components, a `contributes` flag and an optional hint explaining a decision. A variant's
//! hash is the md5 of every leaf value of every contributing component, concatenated in
//! tree order, exactly like Sentry's `hash_from_values`; the same tree rendered as text is
//! the explanation users see next to an issue.

use std::borrow::Cow;
use std::fmt::{self, Write};
use std::sync::Arc;

use md5::{Digest, Md5};

/// A string of the tree: borrowed from the event, or computed once and shared (frame
/// components are built once and cloned for the second variant).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Text<'a> {
    Borrowed(&'a str),
    Shared(Arc<str>),
}

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Shared(s) => s,
        }
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Text::Borrowed(s)
    }
}

impl From<String> for Text<'_> {
    fn from(s: String) -> Self {
        Text::Shared(s.into())
    }
}

impl<'a> From<Cow<'a, str>> for Text<'a> {
    fn from(s: Cow<'a, str>) -> Self {
        match s {
            Cow::Borrowed(b) => Text::Borrowed(b),
            Cow::Owned(o) => Text::Shared(o.into()),
        }
    }
}

/// A leaf value of a component.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Leaf<'a> {
    Str(Text<'a>),
    Int(i64),
    /// A missing value that still takes part (Sentry hashes it as `None`, e.g. an
    /// `ns_error` without a domain).
    Null,
}

impl Leaf<'_> {
    fn feed(&self, hasher: &mut Md5) {
        match self {
            Leaf::Str(s) => hasher.update(s.as_bytes()),
            Leaf::Int(i) => hasher.update(i.to_string().as_bytes()),
            Leaf::Null => hasher.update(b"None"),
        }
    }

    fn render(&self, out: &mut String) {
        match self {
            Leaf::Str(s) => write_quoted(out, s),
            Leaf::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Leaf::Null => out.push_str("null"),
        }
    }
}

/// Why a component does (not) contribute. Rule hints are assembled only when shown:
/// most are never looked at, and native stacks have one on nearly every frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Hint {
    Static(&'static str),
    Owned(String),
    /// `{what} by stack trace rule ({rule})`.
    Rule(&'static str, Arc<str>),
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hint::Static(s) => f.write_str(s),
            Hint::Owned(s) => f.write_str(s),
            Hint::Rule(what, rule) => write!(f, "{what} by stack trace rule ({rule})"),
        }
    }
}

impl From<&'static str> for Hint {
    fn from(s: &'static str) -> Self {
        Hint::Static(s)
    }
}

impl From<String> for Hint {
    fn from(s: String) -> Self {
        Hint::Owned(s)
    }
}

/// What a component holds: nothing, leaf values, or child components.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body<'a> {
    Empty,
    Leaf(Leaf<'a>),
    Leaves(Vec<Leaf<'a>>),
    Children(Vec<Component<'a>>),
}

/// A node of the grouping tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Component<'a> {
    pub id: &'static str,
    pub contributes: bool,
    pub hint: Option<Hint>,
    pub body: Body<'a>,
}

impl<'a> Component<'a> {
    /// A component without values (never contributes).
    pub(crate) fn empty(id: &'static str) -> Self {
        Component {
            id,
            contributes: false,
            hint: None,
            body: Body::Empty,
        }
    }

    /// A component holding one string; it contributes.
    pub(crate) fn text(id: &'static str, value: impl Into<Text<'a>>) -> Self {
        Component {
            id,
            contributes: true,
            hint: None,
            body: Body::Leaf(Leaf::Str(value.into())),
        }
    }

    /// A component holding several leaves; it contributes when there are any.
    pub(crate) fn leaves(id: &'static str, leaves: Vec<Leaf<'a>>) -> Self {
        Component {
            id,
            contributes: !leaves.is_empty(),
            hint: None,
            body: Body::Leaves(leaves),
        }
    }

    /// A component over child components; it contributes when any child does.
    pub(crate) fn of(id: &'static str, children: Vec<Component<'a>>) -> Self {
        let contributes = children.iter().any(|c| c.contributes);
        Component {
            id,
            contributes,
            hint: None,
            body: Body::Children(children),
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<Hint>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The component without its values (id, flag and hint only).
    pub(crate) fn clone_shallow(&self) -> Component<'a> {
        Component {
            id: self.id,
            contributes: self.contributes,
            hint: self.hint.clone(),
            body: Body::Empty,
        }
    }

    /// Marks the component as not contributing, explaining why.
    pub(crate) fn exclude(&mut self, hint: impl Into<Hint>) {
        self.contributes = false;
        self.hint = Some(hint.into());
    }

    /// Replaces the leaf value (keeps `contributes`), explaining the rewrite.
    pub(crate) fn rewrite(&mut self, value: impl Into<Text<'a>>, hint: &'static str) {
        self.body = Body::Leaf(Leaf::Str(value.into()));
        self.hint = Some(Hint::Static(hint));
    }

    /// The first leaf string, if any.
    pub(crate) fn first_str(&self) -> Option<&str> {
        let leaf = match &self.body {
            Body::Leaf(l) => Some(l),
            Body::Leaves(ls) => ls.first(),
            _ => None,
        };
        match leaf {
            Some(Leaf::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn is_empty(&self) -> bool {
        match &self.body {
            Body::Empty => true,
            Body::Leaf(_) => false,
            Body::Leaves(v) => v.is_empty(),
            Body::Children(v) => v.is_empty(),
        }
    }

    pub(crate) fn children(&self) -> &[Component<'a>] {
        match &self.body {
            Body::Children(c) => c,
            _ => &[],
        }
    }

    pub(crate) fn children_mut(&mut self) -> &mut [Component<'a>] {
        match &mut self.body {
            Body::Children(c) => c,
            _ => &mut [],
        }
    }

    /// Whether a contributing `stacktrace` component is reachable through contributing
    /// components only.
    pub(crate) fn has_contributing_stacktrace(&self) -> bool {
        self.children()
            .iter()
            .filter(|c| c.contributes)
            .any(|c| c.id == "stacktrace" || c.has_contributing_stacktrace())
    }

    /// Feeds every contributing leaf, in tree order, into `hasher`.
    pub(crate) fn feed(&self, hasher: &mut Md5) {
        if !self.contributes {
            return;
        }
        match &self.body {
            Body::Empty => {}
            Body::Leaf(l) => l.feed(hasher),
            Body::Leaves(ls) => ls.iter().for_each(|l| l.feed(hasher)),
            Body::Children(cs) => cs.iter().for_each(|c| c.feed(hasher)),
        }
    }

    /// Calls `f` with every contributing leaf, in tree order.
    fn each_leaf<'s>(&'s self, f: &mut impl FnMut(&'s Leaf<'a>)) {
        if !self.contributes {
            return;
        }
        match &self.body {
            Body::Empty => {}
            Body::Leaf(l) => f(l),
            Body::Leaves(ls) => ls.iter().for_each(&mut *f),
            Body::Children(cs) => cs.iter().for_each(|c| c.each_leaf(f)),
        }
    }

    /// Whether both components hash the same, without hashing: same contributing leaves
    /// in the same order.
    pub(crate) fn same_hash(&self, other: &Component<'_>) -> bool {
        if self.contributes != other.contributes {
            return false;
        }
        let mut a: Vec<&Leaf<'_>> = Vec::new();
        self.each_leaf(&mut |l| a.push(l));
        let mut i = 0;
        let mut equal = true;
        other.each_leaf(&mut |l| {
            equal &= a.get(i).is_some_and(|x| leaf_eq(x, l));
            i += 1;
        });
        equal && i == a.len()
    }

    /// The md5 of the contributing leaves, or `None` when the component does not
    /// contribute.
    pub(crate) fn hash(&self) -> Option<String> {
        if !self.contributes {
            return None;
        }
        let mut hasher = Md5::new();
        self.feed(&mut hasher);
        Some(hex::encode(hasher.finalize()))
    }

    /// Renders the tree like Sentry's grouping snapshots: `id*` marks a contributing
    /// component, hints follow in parentheses, leaves are quoted. With `only_contributing`
    /// the non-contributing branches are left out.
    pub(crate) fn render(&self, out: &mut String, depth: usize, only_contributing: bool) {
        if only_contributing && !self.contributes {
            return;
        }
        // Like Sentry's snapshots: a component with neither values nor a hint says nothing.
        if self.is_empty() && self.hint.is_none() {
            return;
        }
        indent(out, depth);
        out.push_str(self.id);
        if self.contributes {
            out.push('*');
        }
        if let Some(h) = &self.hint {
            let _ = write!(out, " ({h})");
        }
        out.push('\n');
        let leaf = |out: &mut String, l: &Leaf<'_>| {
            indent(out, depth + 1);
            l.render(out);
            out.push('\n');
        };
        match &self.body {
            Body::Empty => {}
            Body::Leaf(l) => leaf(out, l),
            Body::Leaves(ls) => ls.iter().for_each(|l| leaf(out, l)),
            Body::Children(cs) => cs
                .iter()
                .for_each(|c| c.render(out, depth + 1, only_contributing)),
        }
    }

    /// A structural fingerprint of the whole tree (contributing or not, hints included),
    /// used to tell apart otherwise identical exceptions of an exception group.
    pub(crate) fn structure_key(&self, hasher: &mut Md5) {
        hasher.update(self.id.as_bytes());
        hasher.update([u8::from(self.contributes)]);
        match &self.hint {
            Some(Hint::Static(h)) => hasher.update(h.as_bytes()),
            Some(Hint::Owned(h)) => hasher.update(h.as_bytes()),
            Some(Hint::Rule(what, rule)) => {
                hasher.update(what.as_bytes());
                hasher.update(rule.as_bytes());
            }
            None => {}
        }
        let mut leaf = |l: &Leaf<'_>| {
            hasher.update([0xfe]);
            l.feed(hasher);
            hasher.update([0xff]);
        };
        match &self.body {
            Body::Empty => {}
            Body::Leaf(l) => leaf(l),
            Body::Leaves(ls) => ls.iter().for_each(leaf),
            Body::Children(cs) => {
                for c in cs {
                    hasher.update([0xfd]);
                    c.structure_key(hasher);
                    hasher.update([0xff]);
                }
            }
        }
    }
}

/// Leaves are equal for hashing when they feed the same bytes.
fn leaf_eq(a: &Leaf<'_>, b: &Leaf<'_>) -> bool {
    match (a, b) {
        (Leaf::Str(x), Leaf::Str(y)) => **x == **y,
        (Leaf::Int(x), Leaf::Int(y)) => x == y,
        (Leaf::Null, Leaf::Null) => true,
        (Leaf::Str(x), Leaf::Int(i)) | (Leaf::Int(i), Leaf::Str(x)) => **x == *i.to_string(),
        (Leaf::Str(x), Leaf::Null) | (Leaf::Null, Leaf::Str(x)) => &**x == "None",
        _ => false,
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// JSON-style quoting with non-ASCII escaped, which is how Sentry's snapshots print
/// values (so our explanations can be compared with them line by line).
fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    let plain = |c: char| (' '..='~').contains(&c) && c != '"' && c != '\\';
    if s.chars().all(plain) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// md5 of the given strings concatenated, hex-encoded (Sentry's `hash_from_values`).
pub(crate) fn hash_strings<'s>(values: impl IntoIterator<Item = &'s str>) -> String {
    let mut hasher = Md5::new();
    for v in values {
        hasher.update(v.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_uses_contributing_leaves_in_order() {
        let mut frame = Component::of(
            "frame",
            vec![
                Component::text("module", "foo.bar"),
                Component::text("function", "main"),
            ],
        );
        assert_eq!(frame.hash(), Some(hash_strings(["foo.bar", "main"])));
        frame.exclude("ignored");
        assert_eq!(frame.hash(), None);
    }

    #[test]
    fn empty_component_does_not_contribute() {
        assert!(!Component::empty("stacktrace").contributes);
        assert!(!Component::of("stacktrace", vec![Component::empty("frame")]).contributes);
    }

    #[test]
    fn renders_like_sentry_snapshots() {
        let mut filename = Component::text("filename", "bar.tsx");
        filename.exclude("module takes precedence");
        let frame = Component::of(
            "frame",
            vec![Component::text("module", "foo.bar"), filename],
        );
        let mut out = String::new();
        frame.render(&mut out, 0, false);
        assert_eq!(
            out,
            "frame*\n  module*\n    \"foo.bar\"\n  filename (module takes precedence)\n    \"bar.tsx\"\n"
        );
        let mut out = String::new();
        frame.render(&mut out, 0, true);
        assert_eq!(out, "frame*\n  module*\n    \"foo.bar\"\n");
    }
}
