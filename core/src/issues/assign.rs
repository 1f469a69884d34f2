//! Who an issue is assigned to: a member of its organization, or nobody.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Value};

use super::Error;
use super::activity::{self, Actor, NewActivity, kind};
use crate::sql::{begin_write, execute, placeholders, query_all, query_one};

/// A member of an organization that issues can be assigned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: i64,
    pub email: String,
}

/// Every member of `organization_id`, by email (what the pages offer to assign to).
pub async fn members(
    db: &impl ConnectionTrait,
    organization_id: i64,
) -> Result<Vec<Member>, DbErr> {
    query_all(
        db,
        "SELECT u.id, u.email FROM members m JOIN users u ON u.id = m.user_id \
         WHERE m.organization_id = ? ORDER BY u.email",
        vec![organization_id.into()],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Member {
            user_id: r.try_get("", "id")?,
            email: r.try_get("", "email")?,
        })
    })
    .collect()
}

/// Who an assignment names, as Sentry's `assignedTo` spells it: nobody (`""`), a user id
/// (`42`, `user:42`), an email or a username (a Faultline user's username is their email).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    Nobody,
    UserId(i64),
    Email(String),
}

impl Assignee {
    /// Parses `assignedTo`; teams (`team:1`) do not exist here.
    pub fn parse(text: &str) -> Result<Assignee, Error> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Assignee::Nobody);
        }
        let id_text = text.strip_prefix("user:").unwrap_or(text);
        if let Ok(id) = id_text.parse::<i64>() {
            return Ok(Assignee::UserId(id));
        }
        if text.starts_with("team:") {
            return Err(Error::Invalid(format!(
                "cannot assign to `{text}`: there are no teams; assign to a member (user id, user:<id> or email)"
            )));
        }
        if text.len() > 320 || text.chars().any(char::is_control) {
            return Err(Error::Invalid(
                "`assignedTo` must be a user id, user:<id>, an email or \"\"".into(),
            ));
        }
        Ok(Assignee::Email(text.to_lowercase()))
    }
}

/// The member `who` names in `organization_id` (`None` for nobody); anyone else is
/// refused with a message saying so.
pub async fn find_member(
    db: &impl ConnectionTrait,
    organization_id: i64,
    who: &Assignee,
) -> Result<Option<Member>, Error> {
    let (cond, value, shown): (&str, Value, String) = match who {
        Assignee::Nobody => return Ok(None),
        Assignee::UserId(id) => ("u.id = ?", (*id).into(), format!("user {id}")),
        Assignee::Email(email) => ("LOWER(u.email) = ?", email.clone().into(), email.clone()),
    };
    let row = query_one(
        db,
        &format!(
            "SELECT u.id, u.email FROM members m JOIN users u ON u.id = m.user_id \
             WHERE m.organization_id = ? AND {cond}"
        ),
        vec![organization_id.into(), value],
    )
    .await?
    .ok_or_else(|| {
        Error::Invalid(format!(
            "cannot assign to {shown}: not a member of this organization"
        ))
    })?;
    Ok(Some(Member {
        user_id: row.try_get("", "id")?,
        email: row.try_get("", "email")?,
    }))
}

/// Assigns the issues `ids` of `organization_id` to `member` (or nobody); each issue whose
/// assignee changes gets a timeline entry by `actor`, in the same transaction. Returns how
/// many issues it matched.
pub async fn assign(
    db: &DatabaseConnection,
    organization_id: i64,
    ids: &[i64],
    member: Option<&Member>,
    actor: &Actor,
) -> Result<u64, DbErr> {
    let now = crate::entity::now_ms();
    let txn = begin_write(db).await?;
    let mut changed = 0;
    let mut entries = Vec::new();
    let new_id = member.map(|m| m.user_id);
    for chunk in ids.chunks(500) {
        let in_org = format!(
            "id IN ({}) AND project_id IN (SELECT id FROM projects WHERE organization_id = ?)",
            placeholders(chunk.len())
        );
        let mut scope: Vec<Value> = chunk.iter().map(|id| Value::from(*id)).collect();
        scope.push(organization_id.into());
        for row in query_all(
            &txn,
            &format!("SELECT id, project_id, assignee_id FROM issues WHERE {in_org}"),
            scope.clone(),
        )
        .await?
        {
            if row.try_get::<Option<i64>>("", "assignee_id")? == new_id {
                continue;
            }
            entries.push(NewActivity {
                issue_id: row.try_get("", "id")?,
                project_id: row.try_get("", "project_id")?,
                kind: match member {
                    Some(_) => kind::ASSIGNED,
                    None => kind::UNASSIGNED,
                },
                data: match member {
                    Some(m) => serde_json::json!({
                        "assignee": m.user_id.to_string(),
                        "assigneeEmail": m.email,
                        "assigneeType": "user",
                    }),
                    None => serde_json::json!({}),
                },
            });
        }
        let mut values: Vec<Value> = vec![new_id.into()];
        values.extend(scope);
        changed += execute(
            &txn,
            &format!("UPDATE issues SET assignee_id = ? WHERE {in_org}"),
            values,
        )
        .await?;
    }
    activity::record(&txn, actor, &entries, now).await?;
    txn.commit().await?;
    Ok(changed)
}
