//! An issue's status and the rules that move it: what a person asks for (resolve, resolve
//! in the next release, ignore until a time or a number of events, reopen) and what new
//! events do to it (a regression, an ignored issue waking up). The worker's store and every
//! status change of the pages and the Web API read and write `issues.status` /
//! `issues.status_details` through these types only.

/// Issue statuses as stored in `issues.status`.
pub mod status {
    pub const UNRESOLVED: &str = "unresolved";
    pub const RESOLVED: &str = "resolved";
    pub const RESOLVED_IN_NEXT_RELEASE: &str = "resolved_in_next_release";
    pub const IGNORED: &str = "ignored";
}

/// Conditions kept in `issues.status_details` (JSON).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct StatusDetails {
    /// Ignored until this time (Unix ms).
    pub ignore_until: Option<i64>,
    /// Ignored until this many more events...
    pub ignore_count: Option<i64>,
    /// ...counted from this `times_seen`.
    pub ignore_count_base: Option<i64>,
    /// For "resolved in next release": the release current when it was resolved.
    pub resolved_release: Option<String>,
}

impl StatusDetails {
    /// The stored column's text read back; unreadable or missing text means no conditions.
    pub fn read(stored: Option<&str>) -> StatusDetails {
        stored
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default()
    }
}

/// A status change someone asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    Unresolved,
    /// Resolved: the next event of the issue reopens it (a regression).
    Resolved,
    /// Resolved in the release after the issue's last one: only an event of a newer release
    /// reopens it.
    ResolvedInNextRelease,
    /// Ignored, until a time (Unix ms) or until this many more events, whichever first;
    /// neither means forever.
    Ignored {
        until: Option<i64>,
        count: Option<i64>,
    },
}

/// What an issue's row says when a change is applied: the status, its details and
/// `resolved_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStatus {
    pub status: &'static str,
    pub details: Option<StatusDetails>,
    pub resolved_at: Option<i64>,
}

impl StatusChange {
    /// Whether the stored details depend on the issue (its last release or event count).
    pub fn per_issue(&self) -> bool {
        matches!(
            self,
            StatusChange::ResolvedInNextRelease | StatusChange::Ignored { count: Some(_), .. }
        )
    }

    /// The row's new status for an issue whose last release and event count are given, at
    /// `now`.
    pub fn stored(&self, last_release: Option<String>, times_seen: i64, now: i64) -> StoredStatus {
        match self {
            StatusChange::Unresolved => StoredStatus {
                status: status::UNRESOLVED,
                details: None,
                resolved_at: None,
            },
            StatusChange::Resolved => StoredStatus {
                status: status::RESOLVED,
                details: None,
                resolved_at: Some(now),
            },
            StatusChange::ResolvedInNextRelease => StoredStatus {
                status: status::RESOLVED_IN_NEXT_RELEASE,
                details: Some(StatusDetails {
                    resolved_release: last_release.filter(|r| !r.is_empty()),
                    ..Default::default()
                }),
                resolved_at: Some(now),
            },
            StatusChange::Ignored { until, count } => StoredStatus {
                status: status::IGNORED,
                // Ignored forever keeps no details, so "no conditions" reads the same
                // however it was asked for.
                details: (until.is_some() || count.is_some()).then(|| StatusDetails {
                    ignore_until: *until,
                    ignore_count: *count,
                    ignore_count_base: count.map(|_| times_seen),
                    resolved_release: None,
                }),
                resolved_at: None,
            },
        }
    }
}

/// An issue's state as the worker finds it before adding a batch of events.
#[derive(Debug, Clone)]
pub struct IssueState {
    pub status: String,
    pub details: StatusDetails,
    pub resolved_at: Option<i64>,
    pub times_seen: i64,
}

/// New events of one issue, as far as its state cares.
pub struct NewEvents<'a> {
    /// How many.
    pub count: i64,
    /// The newest one's time (Unix ms).
    pub last_seen: i64,
    /// The releases they name.
    pub releases: &'a [String],
}

/// Why new events reopen an issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reopening {
    /// It was resolved (or resolved in a release older than one of the events).
    Regression,
    /// It was ignored until a time that passed or a count that was reached.
    Unignored,
}

impl IssueState {
    /// Whether `events` reopen the issue. `release_created` gives the creation time of a
    /// release the events name, if the organization has it: a release first seen after the
    /// resolution is "the next release"; an unknown one counts as newer.
    pub fn reopened_by(
        &self,
        events: &NewEvents<'_>,
        release_created: impl Fn(&str) -> Option<i64>,
    ) -> Option<Reopening> {
        match self.status.as_str() {
            status::RESOLVED => Some(Reopening::Regression),
            status::RESOLVED_IN_NEXT_RELEASE => {
                let resolved_release = self.details.resolved_release.as_deref();
                let newer = events.releases.iter().any(|r| {
                    Some(r.as_str()) != resolved_release
                        && match release_created(r) {
                            Some(created) => created > self.resolved_at.unwrap_or(0),
                            None => true,
                        }
                });
                newer.then_some(Reopening::Regression)
            }
            status::IGNORED => {
                let until_passed = self
                    .details
                    .ignore_until
                    .is_some_and(|t| events.last_seen >= t);
                let count_reached = self.details.ignore_count.is_some_and(|n| {
                    self.times_seen + events.count
                        - self.details.ignore_count_base.unwrap_or(self.times_seen)
                        >= n
                });
                (until_passed || count_reached).then_some(Reopening::Unignored)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: &str, details: StatusDetails) -> IssueState {
        IssueState {
            status: status.into(),
            details,
            resolved_at: Some(1_000),
            times_seen: 10,
        }
    }

    #[test]
    fn resolved_issues_regress_on_any_event() {
        let s = state(status::RESOLVED, StatusDetails::default());
        let ev = NewEvents {
            count: 1,
            last_seen: 2_000,
            releases: &[],
        };
        assert_eq!(s.reopened_by(&ev, |_| None), Some(Reopening::Regression));
        let s = state(status::UNRESOLVED, StatusDetails::default());
        assert_eq!(s.reopened_by(&ev, |_| None), None);
    }

    #[test]
    fn resolved_in_next_release_waits_for_a_newer_release() {
        let s = state(
            status::RESOLVED_IN_NEXT_RELEASE,
            StatusDetails {
                resolved_release: Some("1.0".into()),
                ..Default::default()
            },
        );
        let same = ["1.0".to_string()];
        let ev = |r: &'static [String]| NewEvents {
            count: 1,
            last_seen: 2_000,
            releases: r,
        };
        assert_eq!(s.reopened_by(&ev(&[]), |_| None), None);
        assert_eq!(
            s.reopened_by(
                &NewEvents {
                    count: 1,
                    last_seen: 2_000,
                    releases: &same
                },
                |_| Some(500)
            ),
            None
        );
        let older = ["0.9".to_string()];
        let newer_events = NewEvents {
            count: 1,
            last_seen: 2_000,
            releases: &older,
        };
        // A release made before the resolution is not the next one; an unknown one is.
        assert_eq!(s.reopened_by(&newer_events, |_| Some(500)), None);
        assert_eq!(
            s.reopened_by(&newer_events, |_| Some(1_500)),
            Some(Reopening::Regression)
        );
        assert_eq!(
            s.reopened_by(&newer_events, |_| None),
            Some(Reopening::Regression)
        );
    }

    #[test]
    fn ignored_issues_wake_after_their_time_or_count() {
        let s = state(
            status::IGNORED,
            StatusDetails {
                ignore_until: Some(5_000),
                ignore_count: Some(3),
                ignore_count_base: Some(10),
                ..Default::default()
            },
        );
        let ev = |count, last_seen| NewEvents {
            count,
            last_seen,
            releases: &[],
        };
        assert_eq!(s.reopened_by(&ev(2, 4_000), |_| None), None);
        assert_eq!(
            s.reopened_by(&ev(3, 4_000), |_| None),
            Some(Reopening::Unignored)
        );
        assert_eq!(
            s.reopened_by(&ev(1, 5_000), |_| None),
            Some(Reopening::Unignored)
        );
    }

    #[test]
    fn ignoring_forever_stores_no_conditions() {
        let forever = StatusChange::Ignored {
            until: None,
            count: None,
        };
        assert_eq!(forever.stored(None, 4, 0).details, None);
        let counted = StatusChange::Ignored {
            until: None,
            count: Some(5),
        };
        assert_eq!(
            counted.stored(None, 4, 0).details,
            Some(StatusDetails {
                ignore_count: Some(5),
                ignore_count_base: Some(4),
                ..Default::default()
            })
        );
        let next = StatusChange::ResolvedInNextRelease.stored(Some("2.0".into()), 4, 9);
        assert_eq!(next.resolved_at, Some(9));
        assert_eq!(
            next.details.and_then(|d| d.resolved_release).as_deref(),
            Some("2.0")
        );
    }
}
