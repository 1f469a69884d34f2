//! Alert rules per project: which state changes (triggers) of which events (filters) go
//! to whom (recipients).

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};

use crate::sql::stmt;
use crate::store::NotificationKind;

/// A row of `alert_rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRule {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub enabled: bool,
    pub on_new_issue: bool,
    pub on_regression: bool,
    pub on_unignored: bool,
    /// Cron monitor failures (`worker::monitors`).
    pub on_monitor_failure: bool,
    /// Environments the event must be in (comma-separated); `None` = any.
    pub environment: Option<String>,
    /// The event's level must be at least this; `None` = any.
    pub min_level: Option<String>,
    /// Releases the event must be from (comma-separated); `None` = any.
    pub release: Option<String>,
    /// Mail the organization's members (except those who unsubscribed).
    pub notify_members: bool,
    /// More addresses, separated by commas, spaces or new lines.
    pub extra_recipients: String,
}

/// What rule filters look at: the state change and the event that caused it.
#[derive(Debug, Clone, Copy)]
pub struct TriggerFacts<'a> {
    pub kind: NotificationKind,
    pub level: &'a str,
    pub environment: Option<&'a str>,
    pub release: Option<&'a str>,
}

/// Levels in order of severity; unknown names rank as `error` (the default level).
pub fn level_rank(level: &str) -> u8 {
    match level.to_ascii_lowercase().as_str() {
        "debug" => 0,
        "info" | "log" => 1,
        "warning" | "warn" => 2,
        "fatal" | "critical" => 4,
        _ => 3,
    }
}

/// The level names a rule may filter on, least severe first.
pub const LEVELS: [&str; 5] = ["debug", "info", "warning", "error", "fatal"];

/// Entries of a comma-separated filter, trimmed, empty ones dropped.
fn list(filter: &str) -> impl Iterator<Item = &str> {
    filter.split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl AlertRule {
    /// Whether this rule fires for a trigger.
    pub fn matches(&self, t: &TriggerFacts<'_>) -> bool {
        if !self.enabled {
            return false;
        }
        let wanted = match t.kind {
            NotificationKind::NewIssue => self.on_new_issue,
            NotificationKind::Regression => self.on_regression,
            NotificationKind::Unignored => self.on_unignored,
            NotificationKind::MonitorFailure => self.on_monitor_failure,
        };
        if !wanted {
            return false;
        }
        if let Some(envs) = self
            .environment
            .as_deref()
            .filter(|e| list(e).next().is_some())
            && !t.environment.is_some_and(|e| list(envs).any(|x| x == e))
        {
            return false;
        }
        if let Some(min) = self.min_level.as_deref().filter(|m| !m.trim().is_empty())
            && level_rank(t.level) < level_rank(min)
        {
            return false;
        }
        if let Some(releases) = self.release.as_deref().filter(|r| list(r).next().is_some())
            && !t.release.is_some_and(|r| list(releases).any(|x| x == r))
        {
            return false;
        }
        true
    }

    /// The extra addresses that are valid email addresses, lower-cased.
    pub fn extra_addresses(&self) -> Vec<String> {
        split_addresses(&self.extra_recipients)
            .into_iter()
            .filter(|a| lettre::Address::from_str(a).is_ok())
            .collect()
    }

    fn from_row(row: &QueryResult) -> Result<AlertRule, DbErr> {
        Ok(AlertRule {
            id: row.try_get("", "id")?,
            project_id: row.try_get("", "project_id")?,
            name: row.try_get("", "name")?,
            enabled: row.try_get("", "enabled")?,
            on_new_issue: row.try_get("", "on_new_issue")?,
            on_regression: row.try_get("", "on_regression")?,
            on_unignored: row.try_get("", "on_unignored")?,
            on_monitor_failure: row.try_get("", "on_monitor_failure")?,
            environment: row.try_get("", "environment")?,
            min_level: row.try_get("", "min_level")?,
            release: row.try_get("", "release")?,
            notify_members: row.try_get("", "notify_members")?,
            extra_recipients: row.try_get("", "extra_recipients")?,
        })
    }
}

/// Splits a list of addresses typed by a person (commas, semicolons, spaces, new lines).
pub fn split_addresses(text: &str) -> Vec<String> {
    text.split([',', ';', ' ', '\n', '\r', '\t'])
        .map(|a| a.trim().to_lowercase())
        .filter(|a| !a.is_empty())
        .collect()
}

/// Checks an extra-recipients list; the error names the first bad address.
pub fn check_addresses(text: &str) -> Result<Vec<String>, String> {
    let addrs = split_addresses(text);
    if addrs.len() > 50 {
        return Err("at most 50 extra addresses".into());
    }
    for a in &addrs {
        if lettre::Address::from_str(a).is_err() {
            return Err(format!("{a:?} is not an email address"));
        }
    }
    Ok(addrs)
}

const COLUMNS: &str = "id, project_id, name, enabled, on_new_issue, on_regression, on_unignored, \
                       on_monitor_failure, environment, min_level, release, notify_members, extra_recipients";

/// The project's rules, oldest first.
pub async fn load(conn: &impl ConnectionTrait, project_id: i64) -> Result<Vec<AlertRule>, DbErr> {
    let backend = conn.get_database_backend();
    let sql = format!("SELECT {COLUMNS} FROM alert_rules WHERE project_id = ? ORDER BY id");
    conn.query_all_raw(stmt(backend, &sql, vec![project_id.into()]))
        .await?
        .iter()
        .map(AlertRule::from_row)
        .collect()
}

/// One rule of a project, if it exists.
pub async fn find(
    conn: &impl ConnectionTrait,
    project_id: i64,
    rule_id: i64,
) -> Result<Option<AlertRule>, DbErr> {
    let backend = conn.get_database_backend();
    let sql = format!("SELECT {COLUMNS} FROM alert_rules WHERE project_id = ? AND id = ?");
    match conn
        .query_one_raw(stmt(backend, &sql, vec![project_id.into(), rule_id.into()]))
        .await?
    {
        Some(row) => Ok(Some(AlertRule::from_row(&row)?)),
        None => Ok(None),
    }
}

/// The rule every new project gets: new issues and regressions, every environment, to
/// the members. Call it in the transaction that creates the project.
pub async fn create_default(conn: &impl ConnectionTrait, project_id: i64) -> Result<i64, DbErr> {
    let rule = AlertRule {
        id: 0,
        project_id,
        name: "New issues and regressions".into(),
        enabled: true,
        on_new_issue: true,
        on_regression: true,
        on_unignored: false,
        on_monitor_failure: true,
        environment: None,
        min_level: None,
        release: None,
        notify_members: true,
        extra_recipients: String::new(),
    };
    save(conn, &rule).await
}

/// Inserts (`id` 0) or updates a rule; returns its id.
pub async fn save(conn: &impl ConnectionTrait, rule: &AlertRule) -> Result<i64, DbErr> {
    let backend = conn.get_database_backend();
    let values: Vec<Value> = vec![
        rule.name.clone().into(),
        rule.enabled.into(),
        rule.on_new_issue.into(),
        rule.on_regression.into(),
        rule.on_unignored.into(),
        rule.on_monitor_failure.into(),
        rule.environment.clone().into(),
        rule.min_level.clone().into(),
        rule.release.clone().into(),
        rule.notify_members.into(),
        rule.extra_recipients.clone().into(),
    ];
    if rule.id == 0 {
        let mut v = vec![rule.project_id.into()];
        v.extend(values);
        v.push(super::now_ms().into());
        let row = conn
            .query_one_raw(stmt(
                backend,
                "INSERT INTO alert_rules (project_id, name, enabled, on_new_issue, on_regression, \
                 on_unignored, on_monitor_failure, environment, min_level, release, notify_members, \
                 extra_recipients, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                v,
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("rule insert returned no id".into()))?;
        row.try_get("", "id")
    } else {
        let mut v = values;
        v.extend([rule.id.into(), rule.project_id.into()]);
        conn.execute_raw(stmt(
            backend,
            "UPDATE alert_rules SET name = ?, enabled = ?, on_new_issue = ?, on_regression = ?, \
             on_unignored = ?, on_monitor_failure = ?, environment = ?, min_level = ?, release = ?, notify_members = ?, \
             extra_recipients = ? WHERE id = ? AND project_id = ?",
            v,
        ))
        .await?;
        Ok(rule.id)
    }
}

/// Deletes a rule of a project; false when there was none.
pub async fn delete(
    conn: &impl ConnectionTrait,
    project_id: i64,
    rule_id: i64,
) -> Result<bool, DbErr> {
    let backend = conn.get_database_backend();
    let r = conn
        .execute_raw(stmt(
            backend,
            "DELETE FROM alert_rules WHERE id = ? AND project_id = ?",
            vec![rule_id.into(), project_id.into()],
        ))
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Who gets an alert that these rules matched: the organization's members (for rules
/// that notify members) and the rules' extra addresses, minus everyone who unsubscribed
/// from the project. Maps each address to the first rule that named it.
pub async fn recipients(
    conn: &impl ConnectionTrait,
    project_id: i64,
    matched: &[&AlertRule],
) -> Result<BTreeMap<String, i64>, DbErr> {
    let backend = conn.get_database_backend();
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    if let Some(rule) = matched.iter().find(|r| r.notify_members) {
        let rows = conn
            .query_all_raw(stmt(
                backend,
                "SELECT u.email FROM members m JOIN users u ON u.id = m.user_id \
                 JOIN projects p ON p.organization_id = m.organization_id \
                 WHERE p.id = ? ORDER BY u.email",
                vec![project_id.into()],
            ))
            .await?;
        for row in rows {
            let email: String = row.try_get("", "email")?;
            out.entry(email.trim().to_lowercase()).or_insert(rule.id);
        }
    }
    for rule in matched {
        for a in rule.extra_addresses() {
            out.entry(a).or_insert(rule.id);
        }
    }
    let unsubscribed: BTreeSet<String> = conn
        .query_all_raw(stmt(
            backend,
            "SELECT email FROM alert_unsubscribes WHERE project_id = ?",
            vec![project_id.into()],
        ))
        .await?
        .iter()
        .filter_map(|r| r.try_get::<String>("", "email").ok())
        .collect();
    out.retain(|email, _| !unsubscribed.contains(email));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> AlertRule {
        AlertRule {
            id: 1,
            project_id: 1,
            name: "r".into(),
            enabled: true,
            on_new_issue: true,
            on_regression: true,
            on_unignored: false,
            on_monitor_failure: true,
            environment: None,
            min_level: None,
            release: None,
            notify_members: true,
            extra_recipients: String::new(),
        }
    }

    fn facts(
        kind: NotificationKind,
        level: &'static str,
        env: Option<&'static str>,
    ) -> TriggerFacts<'static> {
        TriggerFacts {
            kind,
            level,
            environment: env,
            release: None,
        }
    }

    #[test]
    fn triggers_select_state_changes() {
        let r = rule();
        assert!(r.matches(&facts(NotificationKind::NewIssue, "error", None)));
        assert!(r.matches(&facts(NotificationKind::Regression, "error", None)));
        assert!(!r.matches(&facts(NotificationKind::Unignored, "error", None)));
        let off = AlertRule {
            enabled: false,
            ..rule()
        };
        assert!(!off.matches(&facts(NotificationKind::NewIssue, "error", None)));
        // Monitor failures are a trigger of their own.
        assert!(r.matches(&facts(
            NotificationKind::MonitorFailure,
            "error",
            Some("prod")
        )));
        let no_monitors = AlertRule {
            on_monitor_failure: false,
            ..rule()
        };
        assert!(!no_monitors.matches(&facts(NotificationKind::MonitorFailure, "error", None)));
        assert_eq!(
            NotificationKind::from_name(NotificationKind::MonitorFailure.as_str()),
            Some(NotificationKind::MonitorFailure)
        );
    }

    #[test]
    fn environment_filter_is_a_list_and_excludes_unnamed_environments() {
        let r = AlertRule {
            environment: Some("production, prod-eu".into()),
            ..rule()
        };
        assert!(r.matches(&facts(
            NotificationKind::NewIssue,
            "error",
            Some("production")
        )));
        assert!(r.matches(&facts(NotificationKind::NewIssue, "error", Some("prod-eu"))));
        assert!(!r.matches(&facts(NotificationKind::NewIssue, "error", Some("staging"))));
        assert!(!r.matches(&facts(NotificationKind::NewIssue, "error", None)));
        // An empty filter means every environment.
        let any = AlertRule {
            environment: Some(" ".into()),
            ..rule()
        };
        assert!(any.matches(&facts(NotificationKind::NewIssue, "error", Some("staging"))));
    }

    #[test]
    fn level_filter_is_at_or_above() {
        let r = AlertRule {
            min_level: Some("warning".into()),
            ..rule()
        };
        assert!(!r.matches(&facts(NotificationKind::NewIssue, "info", None)));
        assert!(r.matches(&facts(NotificationKind::NewIssue, "warning", None)));
        assert!(r.matches(&facts(NotificationKind::NewIssue, "fatal", None)));
        assert!(r.matches(&facts(NotificationKind::NewIssue, "ERROR", None)));
    }

    #[test]
    fn release_filter_matches_exactly() {
        let r = AlertRule {
            release: Some("shop@2.0".into()),
            ..rule()
        };
        let mut f = facts(NotificationKind::NewIssue, "error", None);
        assert!(!r.matches(&f));
        f.release = Some("shop@2.0");
        assert!(r.matches(&f));
        f.release = Some("shop@2.0.1");
        assert!(!r.matches(&f));
    }

    #[test]
    fn extra_addresses_are_split_and_checked() {
        let r = AlertRule {
            extra_recipients: "Ops@Example.com, dev@example.com\nnot-an-address;x@y.z".into(),
            ..rule()
        };
        assert_eq!(
            r.extra_addresses(),
            vec!["ops@example.com", "dev@example.com", "x@y.z"]
        );
        assert!(check_addresses("a@b.c d@e.f").is_ok());
        let err = check_addresses("a@b.c, oops").unwrap_err();
        assert!(err.contains("oops"), "{err}");
        assert!(check_addresses("evil@x.y\r\nBcc: z@q.r").is_err());
    }
}
