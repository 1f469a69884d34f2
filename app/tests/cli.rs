//! The `faultline` binary as an operator uses it: admin commands print exactly what they
//! promise, bad configuration stops it with one clear line, and the same server runs on
//! PostgreSQL.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

fn data_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("faultline-cli-{}", uuid::Uuid::new_v4().simple()))
}

fn faultline(env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("FAULTLINE_CONFIG", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("faultline starts");
    if let Some(input) = stdin
        && let Some(mut s) = child.stdin.take()
    {
        s.write_all(input.as_bytes()).expect("stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("faultline ends")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["web", "--help"],
        vec!["worker", "--help"],
        vec!["migrate", "--help"],
        vec!["user", "create", "--help"],
        vec!["org", "create", "--help"],
        vec!["project", "create", "--help"],
        vec!["token", "create", "--help"],
        vec!["token", "list", "--help"],
        vec!["token", "revoke", "--help"],
        vec!["send-test-event", "--help"],
    ] {
        let out = faultline(&[], &args, None);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("Usage"), "{args:?}");
    }
}

#[test]
fn admin_commands_print_exactly_what_they_promise() {
    let dir = data_dir();
    let d = dir.to_str().expect("utf-8 path");
    let env = [
        ("FAULTLINE_DATA_DIR", d),
        ("FAULTLINE_URL", "https://errors.example.com"),
    ];
    let out = faultline(
        &env,
        &[
            "user",
            "create",
            "--email",
            "Ada@Example.com",
            "--superuser",
            "--password-stdin",
        ],
        Some("correct horse battery\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).is_empty());
    let out = faultline(
        &env,
        &[
            "org",
            "create",
            "acme",
            "--name",
            "Acme Inc",
            "--owner",
            "ada@example.com",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = faultline(
        &env,
        &[
            "project",
            "create",
            "--org",
            "acme",
            "web",
            "--platform",
            "python",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dsn = text(&out.stdout);
    let dsn = dsn.strip_suffix('\n').expect("one line");
    let parsed = faultline_core::protocol::dsn::Dsn::parse(dsn).expect("a valid DSN");
    assert_eq!(parsed.host(), "errors.example.com");
    assert_eq!(parsed.public_key().as_str().len(), 32);
    assert!(dsn.starts_with("https://") && dsn.ends_with("/1"), "{dsn}");

    let out = faultline(&env, &["token", "create", "--org", "acme"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout);
    let token = token.trim_end();
    assert!(
        token.starts_with("sntryu_") && token.len() == 7 + 64,
        "{token}"
    );

    // Mistakes are explained, not panicked over.
    for (args, stdin, expect) in [
        (vec!["org", "create", "acme"], None, "already exists"),
        (vec!["org", "create", "Bad Slug"], None, "not a valid slug"),
        (
            vec!["project", "create", "--org", "nope", "web"],
            None,
            "no organization",
        ),
        (
            vec!["project", "create", "--org", "acme", "web"],
            None,
            "already has a project",
        ),
        (
            vec![
                "user",
                "create",
                "--email",
                "x@example.com",
                "--password-stdin",
            ],
            Some("short\n"),
            "at least 8",
        ),
        (
            vec!["org", "create", "other", "--owner", "ghost@example.com"],
            None,
            "no user",
        ),
    ] {
        let out = faultline(&env, &args, stdin);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = text(&out.stderr);
        // The messages are sentences (the pages show the same ones): case aside.
        assert!(
            err.to_lowercase().contains(&expect.to_lowercase()),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn bad_configuration_stops_with_one_clear_line() {
    let dir = data_dir();
    let d = dir.to_str().expect("utf-8 path");
    let blocker = std::env::temp_dir().join(format!(
        "faultline-blocker-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&blocker, "a file, not a directory").expect("blocker");
    let unwritable = blocker.join("data");
    let busy = TcpListener::bind("127.0.0.1:0").expect("a port");
    let busy_addr = busy.local_addr().expect("addr").to_string();
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (vec![("DATABASE_URL", "not a url".into())], "DATABASE_URL"),
        (
            vec![("DATABASE_URL", "mysql://localhost/x".into())],
            "DATABASE_URL",
        ),
        (
            vec![("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none".into())],
            "cannot open database",
        ),
        (
            vec![("FAULTLINE_URL", "::nonsense::".into())],
            "FAULTLINE_URL",
        ),
        (vec![("FAULTLINE_BIND", "nowhere".into())], "FAULTLINE_BIND"),
        (
            vec![("FAULTLINE_DATA_DIR", unwritable.display().to_string())],
            "not writable",
        ),
        (vec![("FAULTLINE_BIND", busy_addr.clone())], "cannot listen"),
        (vec![("REDIS_URL", "redis://127.0.0.1:1".into())], "Redis"),
    ];
    for (vars, expect) in cases {
        let mut env: Vec<(&str, &str)> = vec![("FAULTLINE_DATA_DIR", d)];
        for (k, v) in &vars {
            env.retain(|(key, _)| key != k);
            env.push((k, v.as_str()));
        }
        let out = faultline(&env, &["serve"], None);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{vars:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{vars:?}: {err}");
        assert!(lines[0].contains(expect), "{vars:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{vars:?}: {err}"
        );
    }
    drop(busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_server_runs_on_postgresql() {
    // A fresh database on the test server.
    let admin_url = faultline_core::db::testing::postgres_admin_url();
    let admin = faultline_core::db::connect_url(&admin_url)
        .await
        .expect("PostgreSQL is reachable");
    let name = format!("faultline_t_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let mut url = url::Url::parse(&admin_url).expect("url");
    url.set_path(&name);
    let database_url = url.to_string();

    let dir = data_dir();
    let d = dir.display().to_string();
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let bind = format!("127.0.0.1:{port}");
    let env = [
        ("FAULTLINE_DATA_DIR", d.as_str()),
        ("DATABASE_URL", database_url.as_str()),
        ("FAULTLINE_BIND", bind.as_str()),
    ];
    assert!(
        faultline(&env, &["org", "create", "acme"], None)
            .status
            .success()
    );
    let out = faultline(&env, &["project", "create", "--org", "acme", "web"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dsn = text(&out.stdout).trim().to_string();

    let mut server = Command::new(BIN);
    server
        .arg("serve")
        .env_remove("REDIS_URL")
        .env("FAULTLINE_CONFIG", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        server.env(k, v);
    }
    let mut server = server.spawn().expect("server starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("http://{bind}/readyz")).call().is_err() {
        assert!(
            Instant::now() < deadline,
            "server on PostgreSQL did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = faultline(&[], &["send-test-event", "--dsn", &dsn], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let event_id = text(&out.stdout).trim().to_string();

    let db = faultline_core::db::connect_url(&database_url)
        .await
        .expect("connect");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) FROM events WHERE event_id = '{event_id}'"),
            ))
            .await
            .expect("query")
            .expect("row");
        if row.try_get_by_index::<i64>(0).expect("count") == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "event not stored in PostgreSQL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("server test on postgres: event {event_id} stored");
    let _ = server.kill();
    let _ = server.wait();
}
