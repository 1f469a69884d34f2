//! Ingest load generator: realistic envelopes (gzip and uncompressed, distinct event ids)
//! over keep-alive connections to a running Faultline; reports accepted events/s,
//! latency percentiles and the server's peak RSS. Loopback only, bounded in time.
//!
//! ```sh
//! ingest-load --dsn http://KEY@127.0.0.1:8000/1 --duration 10 --connections 32 [--rate 5000] [--pid PID]
//! ```

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use faultline_bench::{envelope, realistic_event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// The pipeline allocates many small strings per event; mimalloc is markedly faster at
// that than the system allocator (measured: see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
struct Args {
    /// DSN of the project to send to (must point at a loopback address).
    #[arg(long)]
    dsn: String,
    /// Seconds to run (at most 120).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Offered events per second in total; 0 = as fast as the server answers.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Percentage of requests sent gzip-compressed.
    #[arg(long, default_value_t = 50)]
    gzip_percent: u64,
    /// Distinct issues the events are spread over.
    #[arg(long, default_value_t = 1000)]
    issues: usize,
    /// PID of the server, to report its peak RSS and the CPU it used per accepted event.
    #[arg(long)]
    pid: Option<u32>,
    /// Threads of the generator's runtime (one is the least CPU per request).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

struct Target {
    addr: String,
    path: String,
    host: String,
    key: String,
}

fn parse_dsn(dsn: &str) -> anyhow::Result<Target> {
    let rest = dsn
        .strip_prefix("http://")
        .context("only http:// DSNs on loopback")?;
    let (key, rest) = rest.split_once('@').context("DSN has no key")?;
    let (host, project) = rest.rsplit_once('/').context("DSN has no project id")?;
    let ip = host.split(':').next().unwrap_or_default();
    if !(ip.starts_with("127.") || ip == "localhost" || ip == "[::1]") {
        bail!("the load generator only targets loopback addresses, not {host}");
    }
    Ok(Target {
        addr: host.replace("localhost", "127.0.0.1"),
        path: format!("/api/{project}/envelope/"),
        host: host.to_string(),
        key: key.to_string(),
    })
}

/// Pre-built requests (head and body in one buffer, written with one syscall, as an HTTP
/// client with a buffered writer does): uncompressed ones get a fresh id written in place
/// per request; gzip ones are built in advance (one distinct id each) so the generator does
/// not spend the CPU the server needs.
struct Bodies {
    /// Request bytes and the offsets of the event id placeholder in them.
    plain: Vec<(Vec<u8>, Vec<usize>)>,
    gzip: Vec<Vec<u8>>,
    /// Average uncompressed envelope size.
    avg_envelope: usize,
}

fn request(target: &Target, body: &[u8], encoding: &str) -> Vec<u8> {
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nX-Sentry-Auth: Sentry sentry_key={}, sentry_version=7, sentry_client=faultline-bench/1\r\n\
         Content-Type: application/x-sentry-envelope\r\n{}Content-Length: {}\r\n\r\n",
        target.path,
        target.host,
        target.key,
        encoding,
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

fn build_bodies(target: &Target, issues: usize, gzip_count: usize) -> Bodies {
    let placeholder = faultline_bench::ID_PLACEHOLDER;
    let mut total = 0;
    // One template per issue (at least 64), so uncompressed events, each with a fresh id,
    // spread over every issue as the gzip ones do.
    let plain: Vec<(Vec<u8>, Vec<usize>)> = (0..issues.max(64))
        .map(|v| {
            let body = envelope(&realistic_event(v % issues.max(1), placeholder, v));
            total += body.len();
            let req = request(target, &body, "");
            let positions = find_all(&req, placeholder.as_bytes());
            (req, positions)
        })
        .collect();
    let gzip = (0..gzip_count)
        .map(|v| {
            let body = envelope(&realistic_event(
                v % issues.max(1),
                &faultline_bench::new_event_id(),
                v,
            ));
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = enc.write_all(&body);
            request(
                target,
                &enc.finish().unwrap_or_default(),
                "Content-Encoding: gzip\r\n",
            )
        })
        .collect();
    Bodies {
        avg_envelope: total / plain.len().max(1),
        plain,
        gzip,
    }
}

/// A 32-hex event id from the connection's random state (no syscall per id).
fn write_event_id(state: &mut u64, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for chunk in out.chunks_mut(16) {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // splitmix64 output of the LCG state: well spread bits for the id.
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^= z >> 31;
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = HEX[((z >> (i * 4)) & 0xf) as usize];
        }
    }
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
}

async fn connection(
    target: Arc<Target>,
    bodies: Arc<Bodies>,
    counters: Arc<Counters>,
    deadline: Instant,
    interval: Option<Duration>,
    gzip_percent: u64,
    seed: u64,
) -> Vec<u32> {
    let mut latencies = Vec::new();
    let mut stream: Option<TcpStream> = None;
    let mut buf = vec![0u8; 16 * 1024];
    let mut n: u64 = seed;
    let mut id_state: u64 = seed ^ 0x9e3779b97f4a7c15 ^ std::process::id() as u64;
    let mut scratch = Vec::new();
    let mut next = Instant::now()
        + interval
            .map(|i| i.mul_f64((seed % 97) as f64 / 97.0))
            .unwrap_or_default();
    while Instant::now() < deadline {
        if let Some(iv) = interval {
            let now = Instant::now();
            if next > now {
                tokio::time::sleep(next - now).await;
            }
            next += iv;
        }
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let use_gzip = (n >> 33) % 100 < gzip_percent && !bodies.gzip.is_empty();
        let request: &[u8] = if use_gzip {
            &bodies.gzip[((n >> 20) as usize) % bodies.gzip.len()]
        } else {
            let (template, positions) = &bodies.plain[((n >> 20) as usize) % bodies.plain.len()];
            scratch.clear();
            scratch.extend_from_slice(template);
            let mut id = [0u8; 32];
            write_event_id(&mut id_state, &mut id);
            for p in positions {
                scratch[*p..*p + 32].copy_from_slice(&id);
            }
            &scratch
        };
        let started = Instant::now();
        counters.sent.fetch_add(1, Ordering::Relaxed);
        let result = async {
            if stream.is_none() {
                let s = TcpStream::connect(&target.addr).await?;
                s.set_nodelay(true)?;
                stream = Some(s);
            }
            let s = stream
                .as_mut()
                .ok_or_else(|| std::io::Error::other("no stream"))?;
            s.write_all(request).await?;
            read_response(s, &mut buf).await
        }
        .await;
        match result {
            Ok(200) => {
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Ok(_) => {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                stream = None;
            }
        }
    }
    latencies
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns the status.
async fn read_response(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<u16> {
    let mut filled = 0;
    loop {
        let n = s.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed"));
        }
        filled += n;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(std::io::Error::other)?;
            let status: u16 = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other("bad status"))?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let mut have = filled - (end + 4);
            while have < len {
                let n = s.read(&mut buf[..]).await?;
                if n == 0 {
                    return Err(std::io::Error::other("closed"));
                }
                have += n;
            }
            return Ok(status);
        }
        if filled == buf.len() {
            return Err(std::io::Error::other("response head too large"));
        }
    }
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let target = Arc::new(parse_dsn(&args.dsn)?);
    let duration = Duration::from_secs(args.duration.clamp(1, 120));
    let gzip_count = if args.gzip_percent > 0 { 20_000 } else { 0 };
    eprintln!(
        "building {gzip_count} gzip bodies and {} templates ...",
        args.issues.max(64)
    );
    let bodies = Arc::new(build_bodies(&target, args.issues, gzip_count));
    let avg = bodies.avg_envelope;
    let counters = Arc::new(Counters::default());
    let interval = (args.rate > 0)
        .then(|| Duration::from_secs_f64(args.connections as f64 / args.rate as f64));
    let server_cpu_before = args
        .pid
        .and_then(|p| faultline_bench::cpu_seconds(&p.to_string()));
    let own_cpu_before = faultline_bench::cpu_seconds("self");
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..args.connections)
        .map(|i| {
            tokio::spawn(connection(
                target.clone(),
                bodies.clone(),
                counters.clone(),
                deadline,
                interval,
                args.gzip_percent,
                i as u64 * 7919 + 1,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = args
        .pid
        .and_then(|p| faultline_bench::cpu_seconds(&p.to_string()))
        .zip(server_cpu_before)
        .map(|(after, before)| after - before);
    let own_cpu = faultline_bench::cpu_seconds("self")
        .zip(own_cpu_before)
        .map(|(after, before)| after - before);
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i] as f64 / 1000.0
    };
    let accepted = counters.accepted.load(Ordering::Relaxed);
    println!(
        "offered rate:      {}",
        if args.rate > 0 {
            format!("{}/s", args.rate)
        } else {
            "unbounded".into()
        }
    );
    println!("connections:       {}", args.connections);
    println!(
        "avg event size:    {:.1} KB (uncompressed envelope)",
        avg as f64 / 1024.0
    );
    println!("duration:          {elapsed:.1} s");
    println!(
        "sent:              {}",
        counters.sent.load(Ordering::Relaxed)
    );
    println!("accepted (200):    {accepted}");
    println!(
        "rejected (non-200):{}",
        counters.rejected.load(Ordering::Relaxed)
    );
    println!(
        "transport errors:  {}",
        counters.errors.load(Ordering::Relaxed)
    );
    println!("accepted events/s: {:.0}", accepted as f64 / elapsed);
    println!("latency p50:       {:.2} ms", pct(0.50));
    println!("latency p99:       {:.2} ms", pct(0.99));
    println!("latency max:       {:.2} ms", pct(1.0));
    let per_event = |cpu: f64| cpu * 1e6 / accepted.max(1) as f64;
    if let Some(cpu) = own_cpu {
        println!(
            "generator CPU:     {cpu:.2} s ({:.0} us per accepted event)",
            per_event(cpu)
        );
    }
    if let Some(cpu) = server_cpu {
        println!(
            "server CPU:        {cpu:.2} s ({:.0} us per accepted event)",
            per_event(cpu)
        );
    }
    if let Some(pid) = args.pid {
        match peak_rss_kib(pid) {
            Some(kib) => println!("server peak RSS:   {:.1} MiB", kib as f64 / 1024.0),
            None => println!("server peak RSS:   unknown (no /proc/{pid}/status)"),
        }
    }
    Ok(())
}
