//! JavaScript source maps: minified frames back to original file, line, column, function
//! and source lines (PROTOCOL.md §7). Runs in the pipeline after `normalize` and before
//! grouping, and again when an event is viewed ([`resymbolicate`]) for frames whose map
//! was uploaded after the event arrived.
//!
//! For each JavaScript frame the minified file is found by debug id (`debug_meta.images`
//! of type `sourcemap` whose `code_file` is the frame's file), else by the event's release
//! and dist and the frame's URL candidates (`urls::candidates`); its map is the file with the
//! same debug id, else the one its `Sourcemap` header or `sourceMappingURL` comment names
//! (relative to the file's URL, or inline as a `data:` URL). Lookups for a whole batch of
//! events are a handful of queries (`lookup`); parsed files are kept in bounded LRUs keyed
//! by content hash (`cache`), so a hot map is parsed once per process. Frames that cannot
//! be mapped keep their values and carry `data.symbolicator_status` (a [`Status`] code)
//! and `data.symbolicator_message`; broken or missing maps are also listed in the event's
//! `errors` (`js_no_source`, `js_invalid_source`, `js_too_large`,
//! `js_invalid_sourcemap_location`). Mapped stack traces keep the SDK's frames in
//! `raw_stacktrace`.

mod apply;
pub mod cache;
pub mod files;
pub mod lookup;
pub mod storage;
pub mod urls;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};

use faultline_core::protocol::event::Event;
use sea_orm::{ConnectionTrait, DbErr};

pub use apply::FrameReport;
use files::{MapError, MinifiedFile, ParsedMap};
use lookup::Artifact;

/// What became of a JavaScript frame; stored as `frame.data.symbolicator_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Mapped to its original source.
    Symbolicated,
    /// The file has no debug id and the event has no release: nothing to look a map up by.
    NoDebugId,
    /// The file has a debug id, but no uploaded file carries it (and the event has no release).
    DebugIdNotFound,
    /// The event's release (and dist) has no uploaded file for the frame's URL.
    NoReleaseArtifact,
    /// The minified file was found, but its source map was not (unnamed or not uploaded).
    MissingSourcemap,
    /// The source map is not JSON, is cut off, or its mappings are invalid.
    MalformedSourcemap,
    /// The source map is bigger than Faultline reads.
    SourcemapTooLarge,
    /// The frame's line or column is outside the minified file or its map.
    InvalidLocation,
    /// The database could not be asked (the event page will try again).
    LookupFailed,
    /// An uploaded file's bytes could not be read from the artifact store (missing object,
    /// damaged content, store unreachable).
    StorageError,
    /// Mapping failed unexpectedly; the frame was left as sent.
    InternalError,
}

impl Status {
    /// The stored code.
    pub fn code(self) -> &'static str {
        match self {
            Status::Symbolicated => "symbolicated",
            Status::NoDebugId => "no_debug_id",
            Status::DebugIdNotFound => "debug_id_not_found",
            Status::NoReleaseArtifact => "no_release_artifact",
            Status::MissingSourcemap => "missing_sourcemap",
            Status::MalformedSourcemap => "malformed_sourcemap",
            Status::SourcemapTooLarge => "sourcemap_too_large",
            Status::InvalidLocation => "invalid_location",
            Status::LookupFailed => "lookup_failed",
            Status::StorageError => "storage_error",
            Status::InternalError => "internal_error",
        }
    }
}

/// What the lookup found for one frame file.
pub(crate) enum FileOutcome {
    Found(Found),
    Unmapped(Status, String),
}

/// A frame file with its map (or the reason the map is unusable).
pub(crate) struct Found {
    pub map: Result<Arc<ParsedMap>, MapError>,
    pub minified: Option<Arc<MinifiedFile>>,
    /// The uploaded name of the minified file.
    pub minified_url: String,
    /// The map's URL (or its `data:` URL).
    pub map_url: String,
    /// `debug-id` or `release`.
    pub resolved_with: &'static str,
    /// Names the map, minified file and uploaded sources by content, for the position memo.
    pub content_key: String,
    /// Uploaded `source` files for the map's sources without `sourcesContent`.
    pub uploaded: files::UploadedSources,
}

/// Looked-up positions, by content and position: hot errors repeat the same frames, and
/// naming the enclosing function walks the minified line from its start (a long one-line
/// bundle makes that the costliest part of a frame). Cleared whole when its estimated bytes
/// pass [`MAX_POSITION_BYTES`]: an entry holds up to 11 context lines, so a count (it was
/// 200,000 entries) let it reach hundreds of MB.
type PositionKey = (String, u64, u64, Option<String>);
type PositionResult = Result<files::Original, files::LocationError>;
#[derive(Default)]
struct Positions {
    memo: HashMap<PositionKey, PositionResult>,
    bytes: usize,
}
const MAX_POSITION_BYTES: usize = 8 * 1024 * 1024;

/// What one memo entry holds, roughly: its strings and the map's own overhead.
fn position_bytes(key: &PositionKey, result: &PositionResult) -> usize {
    let lines = |v: &[String]| v.iter().map(|l| l.len() + 24).sum::<usize>();
    let value = match result {
        Ok(o) => {
            o.source.len()
                + o.name.as_ref().map_or(0, String::len)
                + o.function.as_ref().map_or(0, String::len)
                + o.context_line.as_ref().map_or(0, String::len)
                + lines(&o.pre_context)
                + lines(&o.post_context)
        }
        Err(_) => 0,
    };
    128 + key.0.len() + key.3.as_ref().map_or(0, String::len) + value
}

/// [`files::lookup`] through the position memo.
pub(crate) fn lookup_position(
    found: &Found,
    map: &ParsedMap,
    lineno: u64,
    colno: u64,
    function: Option<&str>,
) -> Result<files::Original, files::LocationError> {
    let key = (
        found.content_key.clone(),
        lineno,
        colno,
        function.map(str::to_owned),
    );
    let memo = &caches().positions;
    if let Some(hit) = memo
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .memo
        .get(&key)
    {
        return hit.clone();
    }
    let result = files::lookup(
        map,
        found.minified.as_deref(),
        lineno,
        colno,
        function,
        &found.uploaded,
    );
    let mut memo = memo.lock().unwrap_or_else(|p| p.into_inner());
    let cost = position_bytes(&key, &result);
    if memo.bytes + cost > MAX_POSITION_BYTES {
        *memo = Positions::default();
    }
    memo.bytes += cost;
    memo.memo.insert(key, result.clone());
    result
}

impl Found {
    fn map_url_for_display(&self) -> &str {
        if self.map_url.starts_with("data:") {
            "(inline data: URL)"
        } else {
            &self.map_url
        }
    }
}

/// Parsed minified files (and uploaded sources) kept per process, estimated bytes.
const MINIFIED_CACHE_BYTES: usize = 8 * 1024 * 1024;
/// Parsed source maps kept per process, estimated bytes.
const MAPS_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The parsed-file caches of this process (shared by the pipeline and event pages).
struct Caches {
    minified: cache::Lru<MinifiedFile>,
    maps: cache::Lru<MapResult>,
    /// project id -> organization id; projects never change organization.
    orgs: std::sync::Mutex<HashMap<i64, i64>>,
    positions: std::sync::Mutex<Positions>,
}

fn caches() -> &'static Caches {
    static CACHES: OnceLock<Caches> = OnceLock::new();
    // Bounded by an estimate of the parsed files' memory. Small enough that `faultline
    // serve` stays within its ~150 MB under load (issue 25): a project's hot maps fit, and
    // one map larger than the bound is still kept, alone (`Lru::insert`).
    CACHES.get_or_init(|| Caches {
        minified: cache::Lru::new(MINIFIED_CACHE_BYTES),
        maps: cache::Lru::new(MAPS_CACHE_BYTES),
        orgs: std::sync::Mutex::new(HashMap::new()),
        positions: std::sync::Mutex::new(Positions::default()),
    })
}

/// How many source maps this process has parsed (a hot map counts once).
pub fn maps_parsed() -> u64 {
    caches().maps.parses()
}

/// `code_file` -> debug id, from the event's `sourcemap` debug images.
pub(crate) fn debug_ids(event: &Event) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for image in event.debug_meta.iter().flat_map(|m| m.images.iter()) {
        if image.ty.as_deref() != Some("sourcemap") {
            continue;
        }
        if let (Some(file), Some(id)) = (&image.code_file, &image.debug_id) {
            let id = id.trim().to_ascii_lowercase();
            if let Ok(uuid) = uuid::Uuid::parse_str(&id) {
                out.insert(file.clone(), uuid.hyphenated().to_string());
            }
        }
    }
    out
}

/// Whether the event has any frame source maps could apply to. Events without one skip
/// symbolication entirely (no lookups, no copies).
pub fn wants(event: &Event) -> bool {
    let platform = event.platform.as_deref();
    let frames = event
        .exception
        .iter()
        .flat_map(|e| e.values.iter())
        .filter_map(|e| e.stacktrace.as_ref())
        .chain(
            event
                .threads
                .iter()
                .flat_map(|t| t.values.iter())
                .filter_map(|t| t.stacktrace.as_ref()),
        )
        .chain(event.stacktrace.iter())
        .flat_map(|st| st.frames.iter());
    frames.into_iter().any(|f| apply::is_js_frame(platform, f))
}

/// What one event needs looked up: its organization, release, dist and frame files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Request {
    org: i64,
    abs_path: String,
    debug_id: Option<String>,
    release: Option<String>,
    dist: Option<String>,
}

fn requests(org: i64, event: &mut Event) -> Vec<Request> {
    let ids = debug_ids(event);
    let release = event.release.clone().filter(|r| !r.is_empty());
    let dist = event.dist.clone().filter(|d| !d.is_empty());
    let platform = event.platform.clone();
    let mut out = BTreeSet::new();
    apply::for_each_stacktrace(event, |_, st, _| {
        for frame in &st.frames {
            if !apply::is_js_frame(platform.as_deref(), frame) {
                continue;
            }
            if let Some(path) = apply::frame_path(frame) {
                out.insert(Request {
                    org,
                    abs_path: path.to_owned(),
                    debug_id: ids.get(path).cloned(),
                    release: release.clone(),
                    dist: dist.clone(),
                });
            }
        }
    });
    out.into_iter().collect()
}

/// Symbolicates a batch of events of the given projects in place (the pipeline's step).
/// Lookups are batched; a database error leaves frames unmapped with `lookup_failed`.
pub async fn symbolicate_batch(db: &impl ConnectionTrait, events: &mut [(i64, Event)]) {
    let orgs = match organizations(db, events.iter().map(|(p, _)| *p)).await {
        Ok(orgs) => orgs,
        Err(e) => {
            tracing::warn!(error = %e, "source map lookup failed");
            HashMap::new()
        }
    };
    let mut all = Vec::new();
    let mut per_event = Vec::with_capacity(events.len());
    for (project, event) in events.iter_mut() {
        let reqs = orgs
            .get(project)
            .map(|org| requests(*org, event))
            .unwrap_or_default();
        all.extend(reqs.iter().cloned());
        per_event.push(reqs);
    }
    let outcomes = resolve_logged(db, all).await;
    let (mut hits, mut misses) = (0u64, 0u64);
    for ((_, event), reqs) in events.iter_mut().zip(per_event) {
        for report in apply_outcomes(event, &reqs, &outcomes) {
            if report.status == Status::Symbolicated {
                hits += 1;
            } else {
                misses += 1;
            }
        }
    }
    // Frames of events as they are stored (not re-symbolication when an event is viewed).
    faultline_core::metrics::symbolication_frames(hits, misses);
}

/// Symbolicates one event of organization `org_id` (in place) and reports every
/// JavaScript frame's status. For the event page and the event API: call it on a stored
/// event whose frames had no map when it was stored (any frame whose
/// `data.symbolicator_status` is not `symbolicated`); it starts again from the SDK's frames
/// (`raw_stacktrace`), so calling it twice is harmless. The stored event is not changed.
pub async fn resymbolicate(
    db: &impl ConnectionTrait,
    org_id: i64,
    event: &mut Event,
) -> Vec<FrameReport> {
    apply::unapply(event);
    let reqs = requests(org_id, event);
    if reqs.is_empty() {
        return Vec::new();
    }
    let outcomes = resolve_logged(db, reqs.clone()).await;
    apply_outcomes(event, &reqs, &outcomes)
}

/// [`resymbolicate`] on a stored event's JSON; returns the new JSON and the reports.
/// Bytes that are not a JSON object come back unchanged with no reports.
pub async fn resymbolicate_json(
    db: &impl ConnectionTrait,
    org_id: i64,
    event_json: &[u8],
) -> (Vec<u8>, Vec<FrameReport>) {
    let Some(mut event) = serde_json::from_slice(event_json)
        .ok()
        .and_then(Event::from_value)
    else {
        return (event_json.to_vec(), Vec::new());
    };
    let reports = resymbolicate(db, org_id, &mut event).await;
    match serde_json::to_vec(&event) {
        Ok(json) => (json, reports),
        Err(_) => (event_json.to_vec(), Vec::new()),
    }
}

/// Whether a stored event has JavaScript frames that were not mapped (so re-symbolicating
/// when it is viewed may help).
pub fn has_unmapped_frames(event: &Event) -> bool {
    let platform = event.platform.as_deref();
    let mut any = false;
    let mut event = event.clone();
    apply::for_each_stacktrace(&mut event, |_, st, _| {
        any |= st.frames.iter().any(|f| {
            apply::is_js_frame(platform, f)
                && f.data
                    .as_ref()
                    .and_then(|d| d.get("symbolicator_status"))
                    .and_then(|s| s.as_str())
                    != Some("symbolicated")
        });
    });
    any
}

fn apply_outcomes(
    event: &mut Event,
    reqs: &[Request],
    outcomes: &HashMap<Request, Arc<FileOutcome>>,
) -> Vec<FrameReport> {
    let Some(first) = reqs.first() else {
        return Vec::new();
    };
    let (org, release, dist) = (first.org, first.release.clone(), first.dist.clone());
    let find = |abs_path: &str, debug_id: Option<&str>| {
        outcomes
            .get(&Request {
                org,
                abs_path: abs_path.to_owned(),
                debug_id: debug_id.map(str::to_owned),
                release: release.clone(),
                dist: dist.clone(),
            })
            .cloned()
    };
    // A source map library or a pathological input must never take the event down: on a
    // panic the event is stored as the SDK sent it, with the reason on its frames.
    let before = event.clone();
    match std::panic::catch_unwind(AssertUnwindSafe(|| apply::apply(event, &find))) {
        Ok(reports) => reports,
        Err(_) => {
            tracing::error!("symbolicating an event panicked; it is stored unsymbolicated");
            *event = before;
            let failed = |_: &str, _: Option<&str>| {
                Some(Arc::new(FileOutcome::Unmapped(
                    Status::InternalError,
                    "mapping this frame failed unexpectedly".into(),
                )))
            };
            std::panic::catch_unwind(AssertUnwindSafe(|| apply::apply(event, &failed)))
                .unwrap_or_default()
        }
    }
}

async fn organizations(
    db: &impl ConnectionTrait,
    projects: impl Iterator<Item = i64>,
) -> Result<HashMap<i64, i64>, DbErr> {
    let wanted: BTreeSet<i64> = projects.collect();
    let mut known = caches()
        .orgs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let missing: Vec<i64> = wanted
        .iter()
        .filter(|p| !known.contains_key(p))
        .copied()
        .collect();
    if !missing.is_empty() {
        let found = lookup::project_organizations(db, &missing).await?;
        caches()
            .orgs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(found.iter().map(|(k, v)| (*k, *v)));
        known.extend(found);
    }
    known.retain(|p, _| wanted.contains(p));
    Ok(known)
}

async fn resolve_logged(
    db: &impl ConnectionTrait,
    reqs: Vec<Request>,
) -> HashMap<Request, Arc<FileOutcome>> {
    if reqs.is_empty() {
        return HashMap::new();
    }
    let started = std::time::Instant::now();
    match resolve(db, &reqs).await {
        Ok(out) => {
            tracing::debug!(
                files = reqs.len(),
                ms = started.elapsed().as_millis() as u64,
                "source maps looked up"
            );
            out
        }
        Err(e) => {
            tracing::warn!(error = %e, "source map lookup failed; frames stay minified");
            let failed = Arc::new(FileOutcome::Unmapped(
                Status::LookupFailed,
                format!("looking up source maps failed: {e}"),
            ));
            reqs.into_iter().map(|r| (r, failed.clone())).collect()
        }
    }
}

/// How a request's minified file was found, before its map is known.
enum Step {
    /// Debug id: the map is the `source_map` with the same id.
    DebugIdMap {
        minified: Option<Artifact>,
        map: Artifact,
    },
    /// The map is what the minified file names (header or comment).
    ByReference {
        minified: Artifact,
        resolved_with: &'static str,
    },
    Unmapped(Status, String),
}

/// Finds the minified file and map of every request; a few queries for all of them.
async fn resolve(
    db: &impl ConnectionTrait,
    reqs: &[Request],
) -> Result<HashMap<Request, Arc<FileOutcome>>, DbErr> {
    // Round 1: files by debug id, and by release with the frames' URL candidates (plus
    // `<candidate>.map`, the usual name of the map, to save a round trip).
    let mut debug: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let mut release: BTreeMap<i64, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for r in reqs {
        if let Some(id) = &r.debug_id {
            debug.entry(r.org).or_default().insert(id.clone());
        }
        if let Some(version) = &r.release {
            let (versions, names) = release.entry(r.org).or_default();
            versions.insert(version.clone());
            for c in urls::candidates(&r.abs_path) {
                names.insert(format!("{c}.map"));
                names.insert(c);
            }
        }
    }
    let mut debug_rows: HashMap<i64, Vec<Artifact>> = HashMap::new();
    for (org, ids) in &debug {
        let ids: Vec<String> = ids.iter().cloned().collect();
        debug_rows.insert(*org, lookup::by_debug_ids(db, *org, &ids).await?);
    }
    let mut release_rows: HashMap<i64, Vec<Artifact>> = HashMap::new();
    for (org, (versions, names)) in &release {
        let versions: Vec<String> = versions.iter().cloned().collect();
        let names: Vec<String> = names.iter().cloned().collect();
        release_rows.insert(
            *org,
            lookup::by_release_and_name(db, *org, &versions, &names).await?,
        );
    }

    let steps: Vec<Step> = reqs
        .iter()
        .map(|r| first_step(r, &debug_rows, &release_rows))
        .collect();

    // The minified files' bytes (for the sourceMappingURL comment, positions and names).
    let minified_rows: Vec<&Artifact> = steps
        .iter()
        .filter_map(|s| match s {
            Step::DebugIdMap { minified, .. } => minified.as_ref(),
            Step::ByReference { minified, .. } => Some(minified),
            Step::Unmapped(..) => None,
        })
        .collect();
    let (minified, unreadable) = load_minified(db, &minified_rows).await?;

    // Where each map is: an artifact (maybe not fetched yet), or an inline data URL.
    enum MapAt {
        Artifact(Option<Artifact>, String),
        /// The data URL and the sha1 of the minified file that holds it.
        Inline(String, String),
    }
    let mut map_at: Vec<Option<MapAt>> = Vec::with_capacity(steps.len());
    let mut round2: BTreeMap<i64, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for (r, step) in reqs.iter().zip(&steps) {
        map_at.push(match step {
            Step::DebugIdMap { map, .. } => {
                Some(MapAt::Artifact(Some(map.clone()), map.name.clone()))
            }
            Step::ByReference { minified: file, .. } => {
                let reference = file
                    .sourcemap_header()
                    .map(str::to_owned)
                    .or_else(|| minified.get(&file.sha1).and_then(|m| m.map_ref.clone()));
                match reference {
                    None => None,
                    Some(reference) if reference.starts_with("data:") => {
                        Some(MapAt::Inline(reference, file.sha1.clone()))
                    }
                    Some(reference) => {
                        let url = urls::join(&file.name, &reference);
                        let found =
                            find_named(release_rows.get(&r.org).into_iter().flatten(), &url, file);
                        if found.is_none()
                            && let Some(version) = &file.release
                        {
                            let (versions, names) = round2.entry(r.org).or_default();
                            versions.insert(version.clone());
                            names.extend(urls::candidates(&url));
                        }
                        Some(MapAt::Artifact(found, url))
                    }
                }
            }
            Step::Unmapped(..) => None,
        });
    }
    // Round 2: maps whose names only the minified files told.
    let mut more: HashMap<i64, Vec<Artifact>> = HashMap::new();
    for (org, (versions, names)) in &round2 {
        let versions: Vec<String> = versions.iter().cloned().collect();
        let names: Vec<String> = names.iter().cloned().collect();
        more.insert(
            *org,
            lookup::by_release_and_name(db, *org, &versions, &names).await?,
        );
    }
    for ((r, step), at) in reqs.iter().zip(&steps).zip(map_at.iter_mut()) {
        if let (
            Step::ByReference { minified: file, .. },
            Some(MapAt::Artifact(found @ None, url)),
        ) = (step, at)
        {
            *found = find_named(more.get(&r.org).into_iter().flatten(), url, file);
        }
    }

    // The maps' bytes, parsed once each (cached by content hash).
    let map_rows: Vec<&Artifact> = map_at
        .iter()
        .filter_map(|a| match a {
            Some(MapAt::Artifact(Some(a), _)) => Some(a),
            _ => None,
        })
        .collect();
    let maps = load_maps(db, &map_rows).await?;

    let mut out = Vec::with_capacity(reqs.len());
    // The release (and dist) uploaded sources are looked up in, per outcome.
    let mut source_release: Vec<Option<(String, Option<String>)>> = Vec::new();
    for ((r, step), at) in reqs.iter().zip(steps).zip(map_at) {
        let release_of = |file: Option<&Artifact>| match file {
            Some(f) if f.release.is_some() => f.release.clone().map(|v| (v, f.dist.clone())),
            _ => r.release.clone().map(|v| (v, r.dist.clone())),
        };
        let mut release_here = None;
        let outcome = match (step, at) {
            (Step::Unmapped(status, message), _) => FileOutcome::Unmapped(status, message),
            (Step::ByReference { minified: file, .. }, None)
                if unreadable.contains_key(&file.sha1) =>
            {
                FileOutcome::Unmapped(
                    Status::StorageError,
                    format!(
                        "the uploaded file {} could not be read: {}",
                        file.name, unreadable[&file.sha1]
                    ),
                )
            }
            (Step::ByReference { minified: file, .. }, None) => FileOutcome::Unmapped(
                Status::MissingSourcemap,
                format!(
                    "{} names no source map (no Sourcemap header, no sourceMappingURL comment)",
                    file.name
                ),
            ),
            (Step::ByReference { minified: file, .. }, Some(MapAt::Artifact(None, url))) => {
                FileOutcome::Unmapped(
                    Status::MissingSourcemap,
                    format!(
                        "{} names the source map {url}, which was not uploaded{}",
                        file.name,
                        file.release
                            .as_deref()
                            .map(|v| format!(" for release {v}"))
                            .unwrap_or_default()
                    ),
                )
            }
            (Step::DebugIdMap { map, .. }, None) => FileOutcome::Unmapped(
                Status::MissingSourcemap,
                format!("the source map {} could not be read", map.name),
            ),
            (step, Some(at)) => {
                let (file, minified_url, resolved_with) = match &step {
                    Step::DebugIdMap { minified, map } => (
                        minified.as_ref(),
                        minified
                            .as_ref()
                            .map(|m| m.name.clone())
                            .unwrap_or_else(|| map.name.clone()),
                        "debug-id",
                    ),
                    Step::ByReference {
                        minified,
                        resolved_with,
                    } => (Some(minified), minified.name.clone(), *resolved_with),
                    Step::Unmapped(..) => continue,
                };
                release_here = release_of(file);
                let minified_file = file.and_then(|f| minified.get(&f.sha1).cloned());
                let minified_sha1 = file.map(|f| f.sha1.as_str()).unwrap_or("-");
                let (map, map_url, content_key) = match at {
                    MapAt::Inline(url, sha1) => {
                        (inline_map(&url, &sha1), url, format!("{sha1}:inline"))
                    }
                    MapAt::Artifact(Some(a), url) => (
                        maps.get(&a.sha1).cloned().unwrap_or_else(|| {
                            Err(MapError::Unreadable(format!(
                                "{} has no stored content",
                                a.name
                            )))
                        }),
                        url,
                        format!("{}:{minified_sha1}", a.sha1),
                    ),
                    MapAt::Artifact(None, url) => (
                        Err(MapError::Invalid("it was not uploaded".into())),
                        url,
                        String::new(),
                    ),
                };
                FileOutcome::Found(Found {
                    map,
                    minified: minified_file,
                    minified_url,
                    map_url,
                    resolved_with,
                    content_key,
                    uploaded: HashMap::new(),
                })
            }
        };
        out.push((r.clone(), outcome));
        source_release.push(release_here);
    }
    attach_uploaded_sources(db, &mut out, &source_release).await?;
    Ok(out.into_iter().map(|(r, o)| (r, Arc::new(o))).collect())
}

/// Most sources of one map whose uploaded files are looked up.
const MAX_UPLOADED_SOURCES: u32 = 512;

/// Context lines for maps without `sourcesContent`: the original sources uploaded as files
/// of kind `source` in the same release (and dist), named by the URL the frame's file
/// gets (the source joined to the map's URL, `~/` forms included). One query per
/// organization for the whole batch.
async fn attach_uploaded_sources(
    db: &impl ConnectionTrait,
    outcomes: &mut [(Request, FileOutcome)],
    releases: &[Option<(String, Option<String>)>],
) -> Result<(), DbErr> {
    /// A map's source without content: outcome, source index, candidate URLs, release, dist.
    type Wanted = (usize, u32, Vec<String>, String, Option<String>);
    let mut wanted: Vec<Wanted> = Vec::new();
    let mut query: BTreeMap<i64, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for (i, ((r, outcome), release)) in outcomes.iter().zip(releases).enumerate() {
        let (FileOutcome::Found(found), Some((version, dist))) = (outcome, release) else {
            continue;
        };
        let Ok(map) = &found.map else { continue };
        let base = if found.map_url.starts_with("data:") {
            &found.minified_url
        } else {
            &found.map_url
        };
        let sources = map.map.get_source_count().min(MAX_UPLOADED_SOURCES);
        for src in 0..sources {
            if map.map.get_source_contents(src).is_some() {
                continue;
            }
            let Some(source) = map.map.get_source(src) else {
                continue;
            };
            let candidates = urls::candidates(&urls::join(base, source));
            let (versions, names) = query.entry(r.org).or_default();
            versions.insert(version.clone());
            names.extend(candidates.iter().cloned());
            wanted.push((i, src, candidates, version.clone(), dist.clone()));
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let mut rows: HashMap<i64, Vec<Artifact>> = HashMap::new();
    for (org, (versions, names)) in &query {
        let versions: Vec<String> = versions.iter().cloned().collect();
        let names: Vec<String> = names.iter().cloned().collect();
        let found = lookup::by_release_and_name(db, *org, &versions, &names).await?;
        rows.insert(
            *org,
            found.into_iter().filter(|a| a.kind == "source").collect(),
        );
    }
    let mut chosen: Vec<(usize, u32, Artifact)> = Vec::new();
    for (i, src, candidates, version, dist) in wanted {
        let org = outcomes[i].0.org;
        let hit = candidates.iter().find_map(|c| {
            rows.get(&org)?.iter().find(|a| {
                &a.name == c
                    && a.release.as_deref() == Some(&version)
                    && a.has_dist(dist.as_deref())
            })
        });
        if let Some(a) = hit {
            chosen.push((i, src, a.clone()));
        }
    }
    let artifacts: Vec<&Artifact> = chosen.iter().map(|(_, _, a)| a).collect();
    // Source texts share the minified files' cache (same shape: text with a line index).
    let (texts, _unreadable) = load_minified(db, &artifacts).await?;
    for (i, src, a) in &chosen {
        if let (FileOutcome::Found(found), Some(text)) = (&mut outcomes[*i].1, texts.get(&a.sha1)) {
            found.uploaded.insert(*src, text.clone());
            found.content_key.push(':');
            found.content_key.push_str(&a.sha1);
        }
    }
    Ok(())
}

/// The minified file for a request, by debug id first, then by release and URL.
fn first_step(
    r: &Request,
    debug_rows: &HashMap<i64, Vec<Artifact>>,
    release_rows: &HashMap<i64, Vec<Artifact>>,
) -> Step {
    let mut debug_note = String::new();
    if let Some(id) = &r.debug_id {
        let rows: Vec<&Artifact> = debug_rows
            .get(&r.org)
            .into_iter()
            .flatten()
            .filter(|a| a.debug_id.as_deref() == Some(id))
            .collect();
        let map = rows.iter().find(|a| a.kind == "source_map");
        let minified = rows.iter().find(|a| a.kind == "minified_source");
        match (map, minified) {
            (Some(map), minified) => {
                return Step::DebugIdMap {
                    minified: minified.map(|m| (*m).clone()),
                    map: (*map).clone(),
                };
            }
            (None, Some(minified)) => {
                return Step::ByReference {
                    minified: (*minified).clone(),
                    resolved_with: "debug-id",
                };
            }
            (None, None) => debug_note = format!("no uploaded file has debug id {id}"),
        }
    }
    let Some(version) = &r.release else {
        return if r.debug_id.is_some() {
            Step::Unmapped(Status::DebugIdNotFound, debug_note)
        } else {
            Step::Unmapped(
                Status::NoDebugId,
                "the file has no debug id and the event names no release".into(),
            )
        };
    };
    let rows = release_rows.get(&r.org);
    let candidates = urls::candidates(&r.abs_path);
    for c in &candidates {
        let hit = rows.into_iter().flatten().find(|a| {
            &a.name == c
                && a.release.as_deref() == Some(version)
                && a.has_dist(r.dist.as_deref())
                && a.kind != "source_map"
        });
        if let Some(a) = hit {
            return Step::ByReference {
                minified: a.clone(),
                resolved_with: "release",
            };
        }
    }
    let dist = r
        .dist
        .as_deref()
        .map(|d| format!(" (dist {d})"))
        .unwrap_or_default();
    let mut message = format!(
        "release {version}{dist} has no uploaded file named {}",
        candidates.join(" or ")
    );
    if !debug_note.is_empty() {
        message = format!("{debug_note}, and {message}");
    }
    Step::Unmapped(Status::NoReleaseArtifact, message)
}

/// The map named `url` (or a candidate form of it) in the minified file's release and dist.
fn find_named<'a>(
    rows: impl Iterator<Item = &'a Artifact> + Clone,
    url: &str,
    minified: &Artifact,
) -> Option<Artifact> {
    for c in urls::candidates(url) {
        if let Some(a) = rows.clone().find(|a| {
            a.name == c && a.release == minified.release && a.has_dist(minified.dist.as_deref())
        }) {
            return Some(a.clone());
        }
    }
    None
}

/// The minified files' parsed text, and why those that could not be read were not.
async fn load_minified(
    db: &impl ConnectionTrait,
    rows: &[&Artifact],
) -> Result<(HashMap<String, Arc<MinifiedFile>>, HashMap<String, String>), DbErr> {
    let c = &caches().minified;
    let mut out = HashMap::new();
    let mut missing = BTreeSet::new();
    for a in rows {
        match c.get(&a.sha1) {
            Some(f) => {
                out.insert(a.sha1.clone(), f);
            }
            None => {
                missing.insert(a.sha1.clone());
            }
        }
    }
    let missing: Vec<String> = missing.into_iter().collect();
    let mut unreadable = HashMap::new();
    for (sha1, bytes) in read_blobs(db, &missing).await? {
        let bytes = match bytes {
            Ok(bytes) => bytes,
            // Not cached: a store that is down now may answer when the event is viewed.
            Err(e) => {
                unreadable.insert(sha1, e.to_string());
                continue;
            }
        };
        if bytes.len() > files::MAX_FILE_BYTES {
            continue;
        }
        let file = Arc::new(MinifiedFile::parse(&bytes));
        c.insert(sha1.clone(), file.clone(), file.cost());
        out.insert(sha1, file);
    }
    Ok((out, unreadable))
}

/// The bytes of these blobs: from their rows, or from the artifact store for rows without
/// bytes (fetched concurrently). Blobs without a row are left out.
pub(crate) async fn read_blobs(
    db: &impl ConnectionTrait,
    sha1s: &[String],
) -> Result<Vec<(String, Result<Vec<u8>, storage::StoreError>)>, DbErr> {
    let rows = lookup::blobs(db, sha1s).await?;
    let store = storage::current();
    let mut out = Vec::with_capacity(rows.len());
    let mut fetch = Vec::new();
    for (sha1, row) in rows {
        if row.holds_bytes() {
            out.push((sha1, Ok(row.data)));
        } else {
            fetch.push(sha1);
        }
    }
    let fetched = futures_util::future::join_all(fetch.into_iter().map(|sha1| {
        let store = store.clone();
        async move {
            let bytes = store.get(&sha1).await;
            if let Err(e) = &bytes {
                tracing::warn!(sha1 = %sha1, error = %e, "an uploaded file could not be read");
            }
            (sha1, bytes)
        }
    }))
    .await;
    out.extend(fetched);
    Ok(out)
}

type MapResult = Result<Arc<ParsedMap>, MapError>;

async fn load_maps(
    db: &impl ConnectionTrait,
    rows: &[&Artifact],
) -> Result<HashMap<String, MapResult>, DbErr> {
    let c = &caches().maps;
    let mut out: HashMap<String, MapResult> = HashMap::new();
    let mut missing = BTreeSet::new();
    for a in rows {
        match c.get(&a.sha1) {
            Some(parsed) => {
                out.insert(a.sha1.clone(), (*parsed).clone());
            }
            None => {
                missing.insert(a.sha1.clone());
            }
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let missing: Vec<String> = missing.into_iter().collect();
    let mut blobs = Vec::new();
    for (sha1, bytes) in read_blobs(db, &missing).await? {
        match bytes {
            Ok(bytes) => blobs.push((sha1, bytes)),
            // Not cached: a store that is down now may answer when the event is viewed.
            Err(e) => {
                out.insert(sha1, Err(MapError::Unreadable(e.to_string())));
            }
        }
    }
    // Parsing a big map takes milliseconds: keep it off the async threads.
    let parsed = tokio::task::spawn_blocking(move || {
        blobs
            .into_iter()
            .map(|(sha1, bytes)| (sha1, parse_guarded(|| files::parse_map(&bytes))))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| DbErr::Custom(format!("parsing source maps failed: {e}")))?;
    for (sha1, parsed) in parsed {
        let cost = parsed.as_ref().map(|p| p.cost()).unwrap_or(256);
        c.insert(sha1.clone(), Arc::new(parsed.clone()), cost);
        out.insert(sha1, parsed);
    }
    Ok(out)
}

/// An inline `data:` map of the minified file `sha1`, parsed once.
fn inline_map(url: &str, sha1: &str) -> MapResult {
    let c = &caches().maps;
    let key = format!("{sha1}:inline");
    if let Some(parsed) = c.get(&key) {
        return (*parsed).clone();
    }
    let parsed = parse_guarded(|| files::parse_data_url(url));
    let cost = parsed.as_ref().map(|p| p.cost()).unwrap_or(256);
    c.insert(key, Arc::new(parsed.clone()), cost);
    parsed
}

/// Parses a map; a panic in the parser is a malformed map, not a dead worker.
fn parse_guarded(parse: impl FnOnce() -> Result<ParsedMap, MapError>) -> MapResult {
    match std::panic::catch_unwind(AssertUnwindSafe(parse)) {
        Ok(Ok(map)) => Ok(Arc::new(map)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(MapError::Invalid("parsing it failed".into())),
    }
}
