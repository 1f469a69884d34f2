//! The account operations (`faultline_app::accounts`) that pages, Web API and CLI share:
//! their domain rules hold whoever calls them, also under concurrency, on both engines.

use faultline_app::accounts::{AccountError, members, orgs, projects, tokens, users};
use faultline_core::db::testing;
use sea_orm::{ConnectionTrait, DatabaseConnection};

async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    let stmt = faultline_core::sql::stmt(db.get_database_backend(), sql, vec![]);
    let row = db.query_one_raw(stmt).await.expect("query").expect("row");
    row.try_get_by_index::<i64>(0).expect("number")
}

async fn member_id(db: &DatabaseConnection, email: &str) -> i64 {
    scalar(
        db,
        &format!(
            "SELECT m.id FROM members m JOIN users u ON u.id = m.user_id WHERE u.email = '{email}'"
        ),
    )
    .await
}

/// An organization `acme` owned by two owners, with an admin and a member.
async fn acme(db: &DatabaseConnection) -> i64 {
    for email in [
        "ann@example.com",
        "bob@example.com",
        "ada@example.com",
        "max@example.com",
    ] {
        users::create(db, email, "correct horse battery", false)
            .await
            .expect("user");
    }
    let org = orgs::create(db, "acme", Some("Acme"), Some("ann@example.com"))
        .await
        .expect("org");
    for (email, role) in [
        ("bob@example.com", "owner"),
        ("ada@example.com", "admin"),
        ("max@example.com", "member"),
    ] {
        let user = users::find_by_email(db, email)
            .await
            .expect("lookup")
            .expect("user");
        members::add(db, org, user.id, role).await.expect("member");
    }
    org
}

#[tokio::test]
async fn an_organization_always_keeps_an_owner_even_when_two_owners_step_down_at_once() {
    for (engine, db) in testing::both().await.expect("databases") {
        let org = acme(&db).await;
        let ann = member_id(&db, "ann@example.com").await;
        let bob = member_id(&db, "bob@example.com").await;
        // Each owner demotes the other, at the same moment.
        let (a, b) = tokio::join!(
            members::change_role(&db, org, "owner", bob, "member"),
            members::change_role(&db, org, "owner", ann, "member"),
        );
        assert!(
            a.is_ok() != b.is_ok(),
            "{engine}: exactly one demotion succeeds: {a:?} {b:?}"
        );
        assert_eq!(
            members::owner_count(&db, org).await.expect("count"),
            1,
            "{engine}"
        );
        // The last owner can neither be removed nor demoted.
        let last = if a.is_ok() { ann } else { bob };
        assert!(matches!(
            members::remove(&db, org, "owner", last).await,
            Err(AccountError::Forbidden(_))
        ));
        assert!(matches!(
            members::change_role(&db, org, "owner", last, "admin").await,
            Err(AccountError::Forbidden(_))
        ));
        assert_eq!(
            members::owner_count(&db, org).await.expect("count"),
            1,
            "{engine}"
        );
    }
}

#[tokio::test]
async fn only_owners_touch_owners_and_roles_are_checked() {
    for (engine, db) in testing::both().await.expect("databases") {
        let org = acme(&db).await;
        let ann = member_id(&db, "ann@example.com").await;
        let max = member_id(&db, "max@example.com").await;
        for (role, target, to) in [("admin", max, "owner"), ("admin", ann, "member")] {
            assert!(
                matches!(
                    members::change_role(&db, org, role, target, to).await,
                    Err(AccountError::Forbidden(_))
                ),
                "{engine}: an {role} sets {to}"
            );
        }
        assert!(matches!(
            members::remove(&db, org, "admin", ann).await,
            Err(AccountError::Forbidden(_))
        ));
        assert!(matches!(
            members::change_role(&db, org, "owner", max, "superhero").await,
            Err(AccountError::Invalid(_))
        ));
        // A member of another organization is not found here.
        let other = orgs::create(&db, "other", None, Some("max@example.com"))
            .await
            .expect("other org");
        assert!(matches!(
            members::remove(&db, other, "owner", ann).await,
            Err(AccountError::NotFound(_))
        ));
        members::change_role(&db, org, "admin", max, "admin")
            .await
            .expect("an admin promotes a member to admin");
        members::remove(&db, org, "admin", max)
            .await
            .expect("an admin removes an admin");
        assert!(matches!(
            members::create_invite(&db, org, (1, "admin"), "owner", "x@example.com").await,
            Err(AccountError::Forbidden(_))
        ));
    }
}

#[tokio::test]
async fn an_invitation_link_works_exactly_once() {
    for (engine, db) in testing::both().await.expect("databases") {
        let org = acme(&db).await;
        let token = members::create_invite(&db, org, (1, "owner"), "admin", "new@example.com")
            .await
            .expect("invite");
        let invite = members::find_invite(&db, &token).await.expect("open");
        assert_eq!(invite.role, "admin");
        let one = users::create(&db, "one@example.com", "correct horse battery", false)
            .await
            .expect("user");
        let two = users::create(&db, "two@example.com", "correct horse battery", false)
            .await
            .expect("user");
        let (a, b) = tokio::join!(
            members::accept_invite(&db, &invite, one),
            members::accept_invite(&db, &invite, two),
        );
        a.expect("accept");
        b.expect("accept");
        let joined = scalar(
            &db,
            &format!(
                "SELECT COUNT(*) FROM members WHERE organization_id = {org} AND user_id IN ({one}, {two})"
            ),
        )
        .await;
        assert_eq!(joined, 1, "{engine}: one of two acceptances joins");
        assert!(matches!(
            members::find_invite(&db, &token).await,
            Err(AccountError::NotFound(_))
        ));
        assert!(matches!(
            members::find_invite(&db, &"x".repeat(500)).await,
            Err(AccountError::NotFound(_))
        ));
    }
}

#[tokio::test]
async fn names_are_unique_and_checked() {
    for (engine, db) in testing::both().await.expect("databases") {
        acme(&db).await;
        assert!(matches!(
            users::create(&db, " ANN@example.com ", "correct horse battery", false).await,
            Err(AccountError::Conflict(_))
        ));
        for (email, password) in [
            ("not-an-email", "correct horse battery"),
            ("z@example.com", "short"),
        ] {
            assert!(
                matches!(
                    users::create(&db, email, password, false).await,
                    Err(AccountError::Invalid(_))
                ),
                "{engine}: {email} {password}"
            );
        }
        assert!(matches!(
            orgs::create(&db, "acme", None, None).await,
            Err(AccountError::Conflict(_))
        ));
        assert!(matches!(
            orgs::create(&db, "Bad Slug", None, None).await,
            Err(AccountError::Invalid(_))
        ));
        assert!(matches!(
            orgs::create(&db, "new", None, Some("nobody@example.com")).await,
            Err(AccountError::NotFound(_))
        ));
        projects::create(&db, "acme", "web", Some("python"))
            .await
            .expect("project");
        assert!(matches!(
            projects::create(&db, "acme", "web", None).await,
            Err(AccountError::Conflict(_))
        ));
        assert!(matches!(
            projects::create(&db, "nope", "web", None).await,
            Err(AccountError::NotFound(_))
        ));
        let rules = scalar(&db, "SELECT COUNT(*) FROM alert_rules").await;
        assert_eq!(
            rules, 1,
            "{engine}: a new project gets its default alert rule"
        );
    }
}

#[tokio::test]
async fn tokens_never_exceed_their_makers_role() {
    for (engine, db) in testing::both().await.expect("databases") {
        let org = acme(&db).await;
        let max = users::find_by_email(&db, "max@example.com")
            .await
            .expect("lookup")
            .expect("user");
        assert!(
            matches!(
                tokens::create_for_member(&db, org, (max.id, "member"), &["event:admin"], "x")
                    .await,
                Err(AccountError::Forbidden(_))
            ),
            "{engine}"
        );
        let token = tokens::create_for_member(&db, org, (max.id, "member"), &["event:read"], "ok")
            .await
            .expect("token");
        assert!(token.starts_with("sntryu_") && token.len() == 71);
        assert!(matches!(
            tokens::create_for_org(&db, "acme", &["project:nonsense".to_string()], "ci").await,
            Err(AccountError::Invalid(_))
        ));
        let listed = tokens::list(&db, "acme").await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].owner.as_deref(), Some("max@example.com"));
        // A member revokes only their own tokens.
        let ann = users::find_by_email(&db, "ann@example.com")
            .await
            .expect("lookup")
            .expect("user");
        assert!(matches!(
            tokens::revoke(&db, org, listed[0].id, Some(ann.id)).await,
            Err(AccountError::NotFound(_))
        ));
        tokens::revoke(&db, org, listed[0].id, Some(max.id))
            .await
            .expect("own token revoked");
        assert!(tokens::list(&db, "acme").await.expect("list").is_empty());
    }
}
