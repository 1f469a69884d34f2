//! Release-health load: envelopes of `session` updates (each session an `init` update and
//! an `exited`/errored/crashed one, as SDKs send them) over keep-alive connections to a
//! running `faultline serve`; reports updates accepted per second at ingest and updates
//! counted per second end to end (from the first request until the worker's
//! `faultline_sessions_counted_total` reaches what was sent). Loopback only.
//!
//! ```sh
//! session-load --dsn http://KEY@127.0.0.1:8000/1 --url http://127.0.0.1:8000 --duration 10
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// DSN of the project to send to (must point at a loopback address).
    #[arg(long)]
    dsn: String,
    /// The server's base URL, for `/metrics`.
    #[arg(long)]
    url: String,
    /// Seconds to send (at most 120).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Sending threads, one keep-alive connection each.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Sessions per envelope (two updates each; at most 50, Relay's 100 items).
    #[arg(long, default_value_t = 50)]
    sessions: usize,
    /// Distinct users the sessions are spread over.
    #[arg(long, default_value_t = 1000)]
    users: usize,
}

fn counted(agent: &ureq::Agent, url: &str) -> anyhow::Result<u64> {
    let mut resp = agent.get(format!("{url}/metrics")).call()?;
    let text = resp.body_mut().read_to_string()?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("faultline_sessions_counted_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64)
}

fn envelope(sessions: usize, users: usize, seed: u64) -> Vec<u8> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut out = b"{}\n".to_vec();
    for i in 0..sessions {
        let sid = uuid::Uuid::new_v4().simple().to_string();
        let n = seed as usize * sessions + i;
        let did = format!("user-{}", n % users);
        let release = format!("shop@1.{}.0", n % 3);
        let end = match n % 20 {
            0 => r#""status":"crashed","errors":1"#,
            1 | 2 => r#""status":"exited","errors":1"#,
            _ => r#""status":"exited","errors":0"#,
        };
        for (init, status) in [(true, r#""status":"ok","errors":0"#), (false, end)] {
            let item = format!(
                r#"{{"sid":"{sid}","did":"{did}","init":{init},"started":"{now}","timestamp":"{now}",{status},"attrs":{{"release":"{release}","environment":"production"}}}}"#
            );
            out.extend_from_slice(
                format!("{{\"type\":\"session\",\"length\":{}}}\n", item.len()).as_bytes(),
            );
            out.extend_from_slice(item.as_bytes());
            out.push(b'\n');
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.duration > 120 {
        bail!("at most 120 seconds");
    }
    let rest = args
        .dsn
        .strip_prefix("http://")
        .context("only http:// DSNs")?;
    let (key, rest) = rest.split_once('@').context("DSN has no key")?;
    let (host, project) = rest.rsplit_once('/').context("DSN has no project id")?;
    if !host.starts_with("127.") && !host.starts_with("localhost") {
        bail!("loopback only");
    }
    let target = format!("http://{host}/api/{project}/envelope/");
    let auth = format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=session-load/1");
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let before = counted(&agent, &args.url)?;
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop = start + Duration::from_secs(args.duration);
    let sessions = args.sessions.clamp(1, 50);
    let threads: Vec<_> = (0..args.connections)
        .map(|t| {
            let (agent, target, auth) = (agent.clone(), target.clone(), auth.clone());
            let (sent, refused, users) = (sent.clone(), refused.clone(), args.users);
            std::thread::spawn(move || {
                let mut seed = t as u64 * 1_000_000;
                while Instant::now() < stop {
                    seed += 1;
                    let body = envelope(sessions, users, seed);
                    match agent
                        .post(&target)
                        .header("X-Sentry-Auth", &auth)
                        .header("Content-Type", "application/x-sentry-envelope")
                        .send(&body[..])
                    {
                        Ok(r) if r.status() == 200 => {
                            sent.fetch_add(2 * sessions as u64, Ordering::Relaxed);
                        }
                        _ => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let send_secs = start.elapsed().as_secs_f64();
    let sent = sent.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = counted(&agent, &args.url)?.saturating_sub(before);
        if done >= sent {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done} of {sent} updates counted after 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let total_secs = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} session updates in {send_secs:.1} s ({:.0}/s accepted at ingest), {} envelopes refused; \
         all counted after {total_secs:.1} s: {:.0} updates/s end to end",
        sent as f64 / send_secs,
        refused.load(Ordering::Relaxed),
        sent as f64 / total_secs
    );
    Ok(())
}
