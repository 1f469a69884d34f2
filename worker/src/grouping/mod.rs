//! Grouping: which issue an event belongs to.
//!
//! [`calculate`] computes Sentry-compatible grouping hashes (grouping config
//! `newstyle:2023-01-11`, PROTOCOL.md §5): the event's grouping information is turned
//! into a tree of components per *variant* (`app`: in-app frames only, `system`: all
//! frames, `default`: messages and security reports), every variant is hashed, and the
//! hashes are ordered by precedence. A custom fingerprint, a fingerprint rule or a legacy
//! checksum takes precedence over the computed variants.
//!
//! Strategies, strongest first: exception chain (including exception groups) > threads >
//! top-level stack trace > security reports > message. The first strategy with any
//! contributing component wins and switches off the others; when nothing contributes the
//! `fallback` hash (md5 of nothing) groups the event.
//!
//! Modules: `component` (the tree and its hash), `stacktrace` (frames, function cleanup,
//! in-app), `enhancers` (the built-in stack trace rules), `message` (parameterization),
//! `fingerprint` (custom fingerprints, variables and rules), `security` (CSP & co.) and
//! `title` (issue title and culprit).

mod component;
mod enhancers;
mod fingerprint;
mod message;
mod security;
mod stacktrace;
mod title;

use std::collections::HashMap;
use std::fmt::Write;

use faultline_core::protocol::event::{Event, Exception, Mechanism, Stacktrace};
use md5::{Digest, Md5};
use serde_json::Value as Json;

use component::{Component, Leaf, hash_strings};
use enhancers::ExceptionData;
use stacktrace::{StackContext, StackVariant};

pub use fingerprint::FingerprintingRules;
pub use title::title_and_culprit;

/// The result of grouping an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    /// The hash the event is grouped by (the first of `hashes`).
    pub primary_hash: String,
    /// Every variant hash, strongest first, without duplicates; all of them are stored
    /// as the hashes so that events matching any of them join the issue. Only
    /// 32-hex hashes appear here: a legacy checksum that is not one is grouped by its md5
    /// (the `hashed-checksum` variant).
    pub hashes: Vec<String>,
    /// Every variant that was computed, including those that did not produce a hash.
    pub variants: Vec<Variant>,
}

/// One way of grouping the event.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// `custom-fingerprint`, `built-in-fingerprint`, `checksum`, `hashed-checksum`, `app`,
    /// `system`, `default` or `fallback`.
    pub name: String,
    /// The variant's hash; `None` when it does not contribute. (A `checksum` variant
    /// carries the client's checksum as sent, hash-shaped or not.)
    pub hash: Option<String>,
    /// What the hash is made of: the contributing part of the component tree (one node a
    /// line, `*` marking contribution, hints in parentheses) or the fingerprint values.
    pub contributing: String,
}

/// Project-level grouping settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupingOptions<'r> {
    /// The project's fingerprint rules, tried before the built-in ones.
    pub fingerprint_rules: Option<&'r FingerprintingRules>,
}

/// Groups an event with the default settings.
pub fn calculate(event: &Event) -> Grouping {
    calculate_with(event, &GroupingOptions::default())
}

/// Groups an event with project settings.
pub fn calculate_with(event: &Event, options: &GroupingOptions<'_>) -> Grouping {
    let variants = compute(event, options);
    let mut hashes: Vec<String> = Vec::with_capacity(variants.len());
    let mut out = Vec::with_capacity(variants.len());
    for v in &variants {
        let hash = v.hash();
        if let Some(h) = hash.as_deref().filter(|h| is_hash(h))
            && !hashes.iter().any(|x| x == h)
        {
            hashes.push(h.to_string());
        }
        out.push(Variant {
            name: v.name.to_string(),
            hash,
            contributing: v.describe(),
        });
    }
    if hashes.is_empty() {
        hashes.push(hash_strings([]));
    }
    Grouping {
        primary_hash: hashes[0].clone(),
        hashes,
        variants: out,
    }
}

/// Only the hashes (primary first), without describing the variants: what the pipeline
/// stores for every event, so it skips rendering text nobody reads.
pub fn hashes(event: &Event) -> Vec<String> {
    let variants = compute(event, &GroupingOptions::default());
    let mut hashes: Vec<String> = Vec::with_capacity(variants.len());
    for v in &variants {
        if let Some(h) = v.hash().filter(|h| is_hash(h))
            && !hashes.contains(&h)
        {
            hashes.push(h);
        }
    }
    if hashes.is_empty() {
        hashes.push(hash_strings([]));
    }
    hashes
}

/// Every variant with its full component tree (contributing or not), rendered like
/// Sentry's grouping snapshots: for debugging grouping decisions and for parity tests.
pub fn explain(event: &Event, options: &GroupingOptions<'_>) -> Vec<Variant> {
    compute(event, options)
        .iter()
        .map(|v| Variant {
            name: v.name.to_string(),
            hash: v.hash(),
            contributing: v.snapshot(),
        })
        .collect()
}

/// A 32-character lower-case hex string: what issue hashes look like.
fn is_hash(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ---------------------------------------------------------------------------------------
// Variants
// ---------------------------------------------------------------------------------------

enum Kind<'a> {
    /// A component tree (`app`, `system`, `default`).
    Tree(Component<'a>),
    /// A tree refined by the extra values of a hybrid fingerprint.
    Salted(Component<'a>, Vec<String>),
    /// A custom or built-in fingerprint, with the rule that set it.
    Fingerprint(Vec<String>, Option<String>),
    /// A legacy checksum sent by the client, used as is.
    Checksum(String),
    /// The md5 of a legacy checksum that is not a hash itself.
    HashedChecksum { hash: String, raw: String },
    /// Nothing to group on.
    Fallback,
}

struct Computed<'a> {
    name: &'static str,
    kind: Kind<'a>,
}

impl Computed<'_> {
    fn hash(&self) -> Option<String> {
        match &self.kind {
            Kind::Tree(c) => c.hash(),
            Kind::Salted(c, values) => {
                if !c.contributes {
                    return None;
                }
                let mut hasher = Md5::new();
                for v in values {
                    if fingerprint::is_default(v) {
                        c.feed(&mut hasher);
                    } else {
                        hasher.update(v.as_bytes());
                    }
                }
                Some(hex::encode(hasher.finalize()))
            }
            Kind::Fingerprint(values, _) => Some(hash_strings(values.iter().map(String::as_str))),
            Kind::Checksum(c) => Some(c.clone()),
            Kind::HashedChecksum { hash, .. } => Some(hash.clone()),
            Kind::Fallback => Some(hash_strings([])),
        }
    }

    /// What the hash is made of, for people: the contributing part of the tree (just the
    /// root and why, when nothing contributes), or the fingerprint values.
    fn describe(&self) -> String {
        let mut out = String::new();
        let tree = |out: &mut String, c: &Component<'_>| {
            if c.contributes {
                c.render(out, 0, true);
            } else {
                c.clone_shallow().render(out, 0, false);
            }
        };
        match &self.kind {
            Kind::Tree(c) => tree(&mut out, c),
            Kind::Salted(c, v) => {
                tree(&mut out, c);
                let _ = writeln!(out, "fingerprint: {}", json_list(v));
            }
            Kind::Fingerprint(v, rule) => {
                let _ = writeln!(out, "fingerprint: {}", json_list(v));
                if let Some(rule) = rule {
                    let _ = writeln!(out, "matched rule: {rule}");
                }
            }
            Kind::Checksum(c) => {
                let _ = writeln!(out, "checksum: {c}");
            }
            Kind::HashedChecksum { raw, .. } => {
                let _ = writeln!(out, "checksum (hashed): {raw}");
            }
            Kind::Fallback => out.push_str("nothing to group by\n"),
        }
        out
    }

    /// The variant in the layout of Sentry's grouping snapshots (full tree).
    fn snapshot(&self) -> String {
        let mut out = String::new();
        let values = |out: &mut String, values: &[String]| {
            let _ = writeln!(out, "  values: {}", json_list(values));
        };
        match &self.kind {
            Kind::Tree(c) => {
                out.push_str("  component:\n");
                c.render(&mut out, 2, false);
            }
            Kind::Salted(c, v) => {
                out.push_str("  component:\n");
                c.render(&mut out, 2, false);
                values(&mut out, v);
            }
            Kind::Fingerprint(v, rule) => {
                if let Some(rule) = rule {
                    let _ = writeln!(out, "  info: matched rule {rule}");
                }
                values(&mut out, v)
            }
            Kind::Checksum(c) => {
                let _ = writeln!(out, "  checksum: {c:?}");
            }
            Kind::HashedChecksum { hash, raw } => {
                let _ = writeln!(out, "  checksum: {hash:?}\n  raw_checksum: {raw:?}");
            }
            Kind::Fallback => {}
        }
        out
    }
}

fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_default()
}

/// Variant precedence: the first variant with a hash is the primary one.
const ORDER: &[&str] = &[
    "custom-fingerprint",
    "built-in-fingerprint",
    "checksum",
    "hashed-checksum",
    "app",
    "system",
    "default",
    "fallback",
];

fn compute<'a>(event: &'a Event, options: &GroupingOptions<'_>) -> Vec<Computed<'a>> {
    let mut variants =
        checksum_variants(event).unwrap_or_else(|| fingerprinted_variants(event, options));
    variants.sort_by_key(|v| {
        ORDER
            .iter()
            .position(|n| *n == v.name)
            .unwrap_or(ORDER.len())
    });
    variants
}

/// A legacy `checksum` overrides all grouping.
fn checksum_variants<'a>(event: &Event) -> Option<Vec<Computed<'a>>> {
    let checksum = event
        .other
        .get("checksum")?
        .as_str()
        .filter(|c| !c.is_empty())?;
    if is_hash(checksum) {
        return Some(vec![Computed {
            name: "checksum",
            kind: Kind::Checksum(checksum.to_string()),
        }]);
    }
    let mut out = vec![Computed {
        name: "hashed-checksum",
        kind: Kind::HashedChecksum {
            hash: hash_strings([checksum]),
            raw: checksum.to_string(),
        },
    }];
    // Short legacy checksums used to be stored as they are.
    if checksum.chars().count() <= 32 {
        out.push(Computed {
            name: "checksum",
            kind: Kind::Checksum(checksum.to_string()),
        });
    }
    Some(out)
}

fn fingerprinted_variants<'a>(
    event: &'a Event,
    options: &GroupingOptions<'_>,
) -> Vec<Computed<'a>> {
    let server = fingerprint::server_fingerprint(event, options.fingerprint_rules);
    let fingerprint: Vec<String> = match &server {
        Some(m) => m.fingerprint.to_vec(),
        None => event
            .fingerprint
            .clone()
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| vec![fingerprint::DEFAULT_VARIABLE.to_string()]),
    };
    let defaults = fingerprint
        .iter()
        .filter(|f| fingerprint::is_default(f))
        .count();
    let roots = component_variants(event);
    let mut out: Vec<Computed<'a>> = Vec::with_capacity(roots.len() + 2);
    if defaults == 0 {
        // A fully custom fingerprint: the computed variants are shown but unused.
        for (name, mut root) in roots {
            root.exclude("custom fingerprint takes precedence");
            out.push(Computed {
                name,
                kind: Kind::Tree(root),
            });
        }
        let name = if server.as_ref().is_some_and(|m| m.builtin) {
            "built-in-fingerprint"
        } else {
            "custom-fingerprint"
        };
        let rule = server.as_ref().map(|m| m.text.to_string());
        out.push(Computed {
            name,
            kind: Kind::Fingerprint(fingerprint::resolve(&fingerprint, event), rule),
        });
    } else if defaults == 1 && fingerprint.len() == 1 {
        out.extend(roots.into_iter().map(|(name, root)| Computed {
            name,
            kind: Kind::Tree(root),
        }));
    } else {
        let values = fingerprint::resolve(&fingerprint, event);
        out.extend(roots.into_iter().map(|(name, root)| Computed {
            name,
            kind: Kind::Salted(root, values.clone()),
        }));
    }
    let any = out.iter().any(|v| match &v.kind {
        Kind::Tree(c) | Kind::Salted(c, _) => c.contributes,
        _ => true,
    });
    if !any {
        out.push(Computed {
            name: "fallback",
            kind: Kind::Fallback,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// One variant a strategy produced. `mandatory` marks the `system` variant of stack
/// traces: an `app` variant identical to it, or without it, does not count.
struct Produced<'a> {
    variant: &'static str,
    mandatory: bool,
    component: Component<'a>,
}

struct Strategy<'a> {
    /// The interface name used in hints (`exception`, `threads`, ...).
    name: &'static str,
    produced: Vec<Produced<'a>>,
}

/// Runs the strategies and combines their components into one root per variant.
fn component_variants(event: &Event) -> Vec<(&'static str, Component<'_>)> {
    fn stack_strategy<'a>(name: &'static str, produced: Vec<Produced<'a>>) -> Strategy<'a> {
        Strategy {
            name,
            produced: stack_postprocess(produced),
        }
    }
    let ctx = stack_context(event);
    let mut strategies: Vec<Strategy<'_>> = Vec::with_capacity(4);
    if let Some(p) = chained_exception(event, ctx) {
        strategies.push(stack_strategy("exception", p));
    }
    if let Some(p) = threads(event, ctx) {
        strategies.push(stack_strategy("threads", p));
    }
    if let Some(st) = event.stacktrace.as_ref().filter(|s| !s.frames.is_empty()) {
        strategies.push(stack_strategy(
            "stacktrace",
            stacktrace_variants(st, ctx, &ExceptionData::default()),
        ));
    }
    let default = |component| {
        vec![Produced {
            variant: "default",
            mandatory: false,
            component,
        }]
    };
    if let Some(r) = security::report(event, "csp", "sentry.interfaces.Csp") {
        strategies.push(Strategy {
            name: "csp",
            produced: default(security::csp(r)),
        });
    }
    if let Some(r) = security::report(event, "hpkp", "sentry.interfaces.Hpkp") {
        strategies.push(Strategy {
            name: "hpkp",
            produced: default(security::host_report("hpkp", r)),
        });
    }
    if let Some(r) = security::report(event, "expectstaple", "sentry.interfaces.ExpectStaple") {
        strategies.push(Strategy {
            name: "expectstaple",
            produced: default(security::host_report("expect-staple", r)),
        });
    }
    if let Some(r) = security::report(event, "expectct", "sentry.interfaces.ExpectCT") {
        strategies.push(Strategy {
            name: "expectct",
            produced: default(security::host_report("expect-ct", r)),
        });
    }
    if let Some(log) = &event.logentry {
        let raw = log
            .message
            .as_deref()
            .filter(|m| !m.is_empty())
            .or(log.formatted.as_deref())
            .unwrap_or("");
        let normalized = message::normalize_message(raw);
        let changed = normalized != raw;
        let mut c = Component::text("message", normalized);
        if changed {
            c.hint = Some("stripped event-specific values".into());
        }
        strategies.push(Strategy {
            name: "message",
            produced: default(c),
        });
    }
    combine(strategies)
}

/// The first strategy with a contributing component wins; the contributing components of
/// later strategies are switched off with a hint saying what took precedence.
fn combine(strategies: Vec<Strategy<'_>>) -> Vec<(&'static str, Component<'_>)> {
    let mut per_variant: Vec<(&'static str, Vec<Component<'_>>)> = Vec::new();
    let mut winner: Option<&'static str> = None;
    let mut precedence: Option<String> = None;
    for strategy in strategies {
        let contributing: Vec<&str> = {
            let mut v: Vec<&str> = strategy
                .produced
                .iter()
                .filter(|p| p.component.contributes)
                .map(|p| p.variant)
                .collect();
            v.sort_unstable();
            v
        };
        for Produced {
            variant,
            mut component,
            ..
        } in strategy.produced
        {
            match winner {
                None if component.contributes => {
                    winner = Some(strategy.name);
                    let subject = if variant == "default" {
                        strategy.name.to_string()
                    } else {
                        format!("{} of {}", strategy.name, contributing.join("/"))
                    };
                    let verb = if strategy.name.ends_with('s') {
                        "take"
                    } else {
                        "takes"
                    };
                    precedence = Some(format!("{subject} {verb} precedence"));
                }
                Some(w) if component.contributes && w != strategy.name => {
                    component.exclude(precedence.clone().unwrap_or_default());
                }
                _ => {}
            }
            match per_variant.iter_mut().find(|(v, _)| *v == variant) {
                Some((_, list)) => list.push(component),
                None => per_variant.push((variant, vec![component])),
            }
        }
    }
    per_variant
        .into_iter()
        .map(|(variant, components)| {
            let mut root = Component::of(variant, components);
            if !root.contributes
                && let Some(h) = &precedence
            {
                root.hint = Some(h.clone().into());
            }
            (variant, root)
        })
        .collect()
}

/// Post-processing of stack-based strategies: an optional (`app`) variant that merely
/// repeats the mandatory (`system`) one, or exists without it, does not count; and when
/// some variant groups by a stack trace, variants that would not are switched off.
fn stack_postprocess(mut produced: Vec<Produced<'_>>) -> Vec<Produced<'_>> {
    let has_mandatory = produced.iter().any(|p| p.mandatory);
    let mandatory: Vec<usize> = (0..produced.len())
        .filter(|&i| produced[i].mandatory && produced[i].component.contributes)
        .collect();
    for i in 0..produced.len() {
        if produced[i].mandatory || !produced[i].component.contributes {
            continue;
        }
        if has_mandatory && mandatory.is_empty() {
            produced[i]
                .component
                .exclude("ignored because other mandatory variant is not used");
        } else if let Some(&m) = mandatory
            .iter()
            .find(|&&m| produced[m].component.same_hash(&produced[i].component))
        {
            let hint = format!(
                "ignored because hash matches {} variant",
                produced[m].variant
            );
            produced[i].component.exclude(hint);
        }
    }
    if produced.len() > 1 {
        let with_stack: Vec<&'static str> = produced
            .iter()
            .filter(|p| p.component.has_contributing_stacktrace())
            .map(|p| p.variant)
            .collect();
        if !with_stack.is_empty() {
            let suffix = match with_stack.as_slice() {
                [one] => format!("the {one} variant does"),
                _ => "others do".to_string(),
            };
            for p in produced
                .iter_mut()
                .filter(|p| !p.component.has_contributing_stacktrace())
            {
                p.component
                    .exclude(format!("ignored because this variant does not have a contributing stacktrace, but {suffix}"));
            }
        }
    }
    produced
}

/// How frames without a platform of their own are treated. Events without a (known)
/// platform whose exception carries Apple or POSIX crash metadata come from native crash
/// reporters, so their frames are treated as native (Sentry's own corpus relies on it).
pub(crate) fn stack_context(event: &Event) -> StackContext<'_> {
    let platform = event.platform.as_deref().filter(|p| !p.is_empty());
    let unknown = matches!(platform, None | Some("other"));
    let looks_native = unknown
        && event.exceptions().iter().any(|e| {
            e.mechanism
                .as_ref()
                .and_then(|m| m.meta.as_ref())
                .is_some_and(|meta| {
                    ["ns_error", "mach_exception", "signal", "errno"]
                        .iter()
                        .any(|k| meta.get(k).is_some_and(|v| !v.is_null()))
                })
        });
    StackContext {
        platform: if looks_native {
            Some("native")
        } else {
            platform
        },
    }
}

/// What `error.*` rule matchers see of an exception.
pub(crate) fn exception_data(e: &Exception) -> ExceptionData<'_> {
    ExceptionData {
        ty: e.ty.as_deref(),
        value: e.value.as_deref(),
        mechanism: e.mechanism.as_ref().and_then(|m| m.ty.as_deref()),
    }
}

fn stacktrace_variants<'a>(
    st: &'a Stacktrace,
    ctx: StackContext<'a>,
    exc: &ExceptionData<'_>,
) -> Vec<Produced<'a>> {
    let stack = stacktrace::prepare(st, ctx, exc);
    let frames = stacktrace::frame_components(&stack);
    let app = stacktrace::stacktrace_component(&stack, frames.clone(), StackVariant::App);
    let system = stacktrace::stacktrace_component(&stack, frames, StackVariant::System);
    vec![
        Produced {
            variant: "system",
            mandatory: true,
            component: system,
        },
        Produced {
            variant: "app",
            mandatory: false,
            component: app,
        },
    ]
}

fn ns_error_component(mechanism: Option<&Mechanism>) -> Option<Component<'static>> {
    let ns = mechanism?.meta.as_ref()?.get("ns_error")?;
    let leaf = |v: Option<&Json>| match v {
        None | Some(Json::Null) => Leaf::Null,
        Some(Json::String(s)) => Leaf::Str(s.clone().into()),
        Some(Json::Number(n)) => n
            .as_i64()
            .map_or_else(|| Leaf::Str(n.to_string().into()), Leaf::Int),
        Some(other) => Leaf::Str(other.to_string().into()),
    };
    Some(Component::leaves(
        "ns-error",
        vec![leaf(ns.get("domain")), leaf(ns.get("code"))],
    ))
}

/// The components of one exception: its stack trace, type, `ns_error` and value.
fn single_exception<'a>(exc: &'a Exception, ctx: StackContext<'a>) -> Vec<Produced<'a>> {
    let synthetic = exc.mechanism.as_ref().and_then(|m| m.synthetic) == Some(true);
    let mut ty = match exc.ty.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => Component::text("type", t),
        None => Component::empty("type"),
    };
    if synthetic {
        // Synthetic types are OS error codes; the same crash has different ones per OS.
        ty.exclude("ignored because exception is synthetic");
    }
    let ns_error = ns_error_component(exc.mechanism.as_ref());
    let data = exception_data(exc);
    let stacks = match exc.stacktrace.as_ref().filter(|s| !s.frames.is_empty()) {
        Some(st) => stacktrace_variants(st, ctx, &data),
        None => vec![Produced {
            variant: "app",
            mandatory: false,
            component: Component::empty("stacktrace"),
        }],
    };
    let value = exc
        .value
        .as_deref()
        .map(|raw| (raw, message::normalize_message(raw)));
    stacks
        .into_iter()
        .map(
            |Produced {
                 variant,
                 mandatory,
                 component: stack,
             }| {
                let mut value_c = match &value {
                    Some((raw, normalized)) if !normalized.is_empty() => {
                        let mut c = Component::text("value", normalized.clone());
                        if normalized != raw {
                            c.hint = Some("stripped event-specific values".into());
                        }
                        c
                    }
                    _ => Component::empty("value"),
                };
                if stack.contributes && value_c.contributes {
                    value_c.exclude("ignored because stacktrace takes precedence");
                }
                if ns_error.as_ref().is_some_and(|c| c.contributes) && value_c.contributes {
                    value_c.exclude("ignored because ns-error info takes precedence");
                }
                let mut children = vec![stack, ty.clone()];
                children.extend(ns_error.clone());
                children.push(value_c);
                Produced {
                    variant,
                    mandatory,
                    component: Component::of("exception", children),
                }
            },
        )
        .collect()
}

fn chained_exception<'a>(event: &'a Event, ctx: StackContext<'a>) -> Option<Vec<Produced<'a>>> {
    let all = event.exceptions();
    if all.is_empty() {
        return None;
    }
    let mut per_exception: Vec<Option<Vec<Produced<'a>>>> =
        all.iter().map(|e| Some(single_exception(e, ctx))).collect();
    let selected = exception_group_selection(all, |i| {
        let mut hasher = Md5::new();
        for p in per_exception[i].iter().flatten() {
            hasher.update(p.variant.as_bytes());
            p.component.structure_key(&mut hasher);
        }
        hasher.finalize().into()
    })
    .map(|s| s.exceptions)
    .unwrap_or_else(|| (0..all.len()).collect());
    if let [only] = selected.as_slice() {
        return per_exception[*only].take();
    }
    let mut by_variant: Vec<(&'static str, bool, Vec<Component<'a>>)> = Vec::new();
    for i in selected {
        for p in per_exception
            .get_mut(i)
            .and_then(Option::take)
            .into_iter()
            .flatten()
        {
            match by_variant.iter_mut().find(|(v, _, _)| *v == p.variant) {
                Some((_, _, list)) => list.push(p.component),
                None => by_variant.push((p.variant, p.mandatory, vec![p.component])),
            }
        }
    }
    Some(
        by_variant
            .into_iter()
            .map(|(variant, mandatory, list)| Produced {
                variant,
                mandatory,
                component: Component::of("chained-exception", list),
            })
            .collect(),
    )
}

/// The outcome of exception-group handling.
pub(crate) struct GroupSelection {
    /// Indices of the exceptions to group by, in order.
    pub exceptions: Vec<usize>,
    /// The exception that stands for the event (its title), when there is one.
    pub main: Option<usize>,
}

/// Exception groups (Python `ExceptionGroup`, .NET `AggregateException`, JS
/// `AggregateError`) group by their distinct leaf exceptions: a group of identical errors
/// is that one error (with its first chain of causes), otherwise the distinct errors plus
/// the root group. `key` tells exceptions apart. `None` keeps all exceptions (no tree,
/// or a malformed one).
pub(crate) fn exception_group_selection(
    exceptions: &[Exception],
    key: impl Fn(usize) -> [u8; 16],
) -> Option<GroupSelection> {
    if exceptions.len() < 2 {
        return None;
    }
    #[derive(Default)]
    struct Node {
        exception: Option<usize>,
        children: Vec<usize>,
    }
    let mut tree: HashMap<u64, Node> = HashMap::new();
    for (i, e) in exceptions.iter().enumerate().rev() {
        let m = e.mechanism.as_ref()?;
        let id = m.exception_id?;
        tree.entry(id).or_default().exception = Some(i);
        if let Some(parent) = m.parent_id {
            tree.entry(parent).or_default().children.push(i);
        }
    }
    let root = tree.get(&0)?.exception?;
    let children_of = |i: usize| -> &[usize] {
        exceptions[i]
            .mechanism
            .as_ref()
            .and_then(|m| m.exception_id)
            .and_then(|id| tree.get(&id))
            .map_or(&[], |n| n.children.as_slice())
    };
    // Leaves reached through nested groups; a cycle makes the tree unusable.
    let mut top_level = Vec::new();
    let mut stack = vec![(root, 0usize)];
    // Duplicate ids can make a node reachable many times; a malformed tree is no tree.
    let mut budget = 4 * exceptions.len() + 16;
    while let Some((i, depth)) = stack.pop() {
        budget = budget.checked_sub(1)?;
        if depth > exceptions.len() {
            return None;
        }
        if exceptions[i]
            .mechanism
            .as_ref()
            .and_then(|m| m.is_exception_group)
            == Some(true)
        {
            stack.extend(children_of(i).iter().rev().map(|&c| (c, depth + 1)));
        } else {
            top_level.push(i);
        }
    }
    // Stable sort by type, descending, then keep the first of each run of equal ones.
    top_level.sort_by(|&a, &b| {
        let t = |i: usize| exceptions[i].ty.as_deref().unwrap_or("None");
        t(b).cmp(t(a))
    });
    let mut distinct: Vec<usize> = Vec::new();
    let mut last_key = None;
    for i in top_level {
        let k = key(i);
        if last_key != Some(k) {
            distinct.push(i);
            last_key = Some(k);
        }
    }
    if let [main] = distinct.as_slice() {
        let main = *main;
        let mut path = vec![main];
        let mut cur = main;
        while let Some(&first) = children_of(cur).first() {
            if path.contains(&first) {
                break;
            }
            path.push(first);
            cur = first;
        }
        return Some(GroupSelection {
            exceptions: path,
            main: Some(main),
        });
    }
    distinct.push(root);
    Some(GroupSelection {
        exceptions: distinct,
        main: None,
    })
}

/// The exception that stands for the event: the single distinct error of an exception
/// group, else the last (outermost) one.
pub(crate) fn main_exception_index(exceptions: &[Exception]) -> Option<usize> {
    if exceptions.is_empty() {
        return None;
    }
    let key = |i: usize| -> [u8; 16] {
        let e = &exceptions[i];
        let mut hasher = Md5::new();
        hasher.update(e.ty.as_deref().unwrap_or("").as_bytes());
        hasher.update([0]);
        hasher.update(message::normalize_message(e.value.as_deref().unwrap_or("")).as_bytes());
        hasher.finalize().into()
    };
    exception_group_selection(exceptions, key)
        .and_then(|s| s.main)
        .or(Some(exceptions.len() - 1))
}

fn threads<'a>(event: &'a Event, ctx: StackContext<'a>) -> Option<Vec<Produced<'a>>> {
    let all = &event.threads.as_ref()?.values;
    let pick = |f: &dyn Fn(&faultline_core::protocol::event::Thread) -> bool| {
        let mut it = all.iter().filter(|t| f(t));
        match (it.next(), it.next()) {
            (Some(t), None) => Some(t),
            _ => None,
        }
    };
    let thread = pick(&|t| t.crashed == Some(true))
        .or_else(|| pick(&|t| t.current == Some(true)))
        .or_else(|| pick(&|_| true));
    let Some(thread) = thread else {
        let c = Component::empty("threads").with_hint(format!(
            "ignored because does not contain exactly one crashing, one current or just one thread, instead contains {} threads",
            all.len()
        ));
        return Some(vec![Produced {
            variant: "app",
            mandatory: false,
            component: c,
        }]);
    };
    let Some(st) = thread.stacktrace.as_ref().filter(|s| !s.frames.is_empty()) else {
        let c = Component::empty("threads").with_hint("thread has no stacktrace");
        return Some(vec![Produced {
            variant: "app",
            mandatory: false,
            component: c,
        }]);
    };
    Some(
        stacktrace_variants(st, ctx, &ExceptionData::default())
            .into_iter()
            .map(|p| Produced {
                component: Component::of("threads", vec![p.component]),
                ..p
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(v: serde_json::Value) -> Event {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn message_events_group_by_parameterized_message() {
        let a = calculate(&event(
            serde_json::json!({"logentry": {"formatted": "user 42 not found"}}),
        ));
        let b = calculate(&event(
            serde_json::json!({"logentry": {"formatted": "user 7 not found"}}),
        ));
        assert_eq!(a.primary_hash, b.primary_hash);
        assert_eq!(a.primary_hash, hash_strings(["user <int> not found"]));
        assert_eq!(a.variants[0].name, "default");
    }

    #[test]
    fn nothing_to_group_on_falls_back() {
        let g = calculate(&Event::default());
        assert_eq!(g.primary_hash, "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(g.hashes.len(), 1);
    }

    #[test]
    fn app_variant_uses_in_app_frames_only() {
        let e = event(serde_json::json!({
            "platform": "python",
            "exception": {"values": [{"type": "KeyError", "value": "'x'", "stacktrace": {"frames": [
                {"function": "handler", "module": "app.views", "in_app": true},
                {"function": "get", "module": "django.utils", "in_app": false}
            ]}}]}
        }));
        let g = calculate(&e);
        assert_eq!(
            g.primary_hash,
            hash_strings(["app.views", "handler", "KeyError"])
        );
        assert_eq!(
            g.hashes[1],
            hash_strings(["app.views", "handler", "django.utils", "get", "KeyError"])
        );
        assert!(g.variants[0].contributing.contains("\"handler\""));
    }

    #[test]
    fn custom_and_hybrid_fingerprints() {
        let custom = calculate(&event(serde_json::json!({
            "fingerprint": ["payments", "{{ type }}"],
            "exception": {"values": [{"type": "Timeout"}]}
        })));
        assert_eq!(custom.primary_hash, hash_strings(["payments", "Timeout"]));
        assert_eq!(custom.variants[0].name, "custom-fingerprint");
        let hybrid = calculate(&event(serde_json::json!({
            "fingerprint": ["{{ default }}", "eu"],
            "exception": {"values": [{"type": "Timeout"}]}
        })));
        assert_eq!(hybrid.primary_hash, hash_strings(["Timeout", "eu"]));
    }

    #[test]
    fn legacy_checksums() {
        let hex = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            calculate(&event(serde_json::json!({"checksum": hex}))).primary_hash,
            hex
        );
        let g = calculate(&event(serde_json::json!({"checksum": "abc"})));
        assert_eq!(g.primary_hash, hash_strings(["abc"]));
        assert_eq!(g.hashes.len(), 1);
    }

    #[test]
    fn exception_group_of_identical_errors_is_that_error() {
        let e = event(serde_json::json!({"exception": {"values": [
            {"type": "MyError", "value": "Test 2", "mechanism": {"type": "chained", "exception_id": 2, "parent_id": 0}},
            {"type": "MyError", "value": "Test 1", "mechanism": {"type": "chained", "exception_id": 1, "parent_id": 0}},
            {"type": "AggregateException", "value": "many", "mechanism": {"type": "x", "is_exception_group": true, "exception_id": 0}}
        ]}}));
        assert_eq!(
            calculate(&e).primary_hash,
            hash_strings(["MyError", "Test <int>"])
        );
        assert_eq!(title_and_culprit(&e).0, "MyError: Test 1");
    }
}
