//! Starts the real application in-process on a free port with its own data directory.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use faultline_app::startup::{Application, Roles};
use faultline_core::config::Config;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

pub struct TestApp {
    pub url: String,
    pub dsn: String,
    pub project_id: i64,
    pub public_key: String,
    pub db: DatabaseConnection,
    pub data_dir: PathBuf,
}

pub async fn spawn_app(extra: &[(&str, &str)]) -> TestApp {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let data_dir = std::env::temp_dir().join(format!(
        "faultline-app-test-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("FAULTLINE_BIND".into(), "127.0.0.1:0".into());
    env.insert("FAULTLINE_DATA_DIR".into(), data_dir.display().to_string());
    env.insert("FAULTLINE_MIN_FREE_DISK_MB".into(), "0".into());
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let config = Config::from_map(env).expect("test config");
    let app = Application::build(
        config.clone(),
        Roles {
            web: true,
            worker: true,
        },
    )
    .await
    .expect("app builds");
    let port = app.port().expect("bound");
    let db = faultline_core::db::connect_url(&config.database_url)
        .await
        .expect("second connection");
    faultline_app::accounts::orgs::create(&db, "acme", None, None)
        .await
        .expect("org");
    let (project_id, public_key) =
        faultline_app::accounts::projects::create(&db, "acme", "web", Some("python"))
            .await
            .expect("project");
    tokio::spawn(async move {
        let _ = app.run_until_stopped().await;
    });
    let url = format!("http://127.0.0.1:{port}");
    let dsn = format!("http://{public_key}@127.0.0.1:{port}/{project_id}");
    // Wait until it answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = format!("{url}/healthz");
    loop {
        let ok = tokio::task::spawn_blocking({
            let h = health.clone();
            move || ureq::get(&h).call().is_ok()
        })
        .await
        .unwrap_or(false);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    TestApp {
        url,
        dsn,
        project_id,
        public_key,
        db,
        data_dir,
    }
}

impl TestApp {
    /// Waits until the worker stored the event; returns its normalized payload.
    pub async fn wait_for_event(&self, event_id: &str) -> serde_json::Value {
        let id = event_id.replace('-', "");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let row = self
                .db
                .query_one_raw(Statement::from_sql_and_values(
                    self.db.get_database_backend(),
                    "SELECT payload FROM events WHERE event_id = ?",
                    [id.clone().into()],
                ))
                .await
                .expect("query");
            if let Some(row) = row {
                let payload: Vec<u8> = row.try_get_by_index(0).expect("payload");
                let json = zstd::decode_all(&payload[..]).expect("zstd");
                return serde_json::from_slice(&json).expect("json");
            }
            assert!(
                Instant::now() < deadline,
                "event {id} was not stored in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await
            .expect("query")
            .expect("row");
        row.try_get_by_index(0).expect("integer")
    }

    pub fn envelope_url(&self) -> String {
        format!("{}/api/{}/envelope/", self.url, self.project_id)
    }

    pub fn auth_header(&self) -> String {
        format!(
            "Sentry sentry_key={}, sentry_version=7, sentry_client=test/1.0",
            self.public_key
        )
    }
}

/// Sends a raw request; returns status, headers of interest and the body.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: HashMap<String, String>,
}

pub async fn post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    request("POST", url, headers, body).await
}

pub async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let url = url.to_string();
    let method = method.to_string();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut resp = if method == "OPTIONS" {
            let mut req = agent.options(&url);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            req.call()
        } else {
            let mut req = agent.post(&url);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            req.send(&body[..])
        }
        .expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        Answer {
            status,
            body,
            headers,
        }
    })
    .await
    .expect("request task")
}
