//! Realistic test traffic for Faultline's benchmarks: 5–10 KB Python-style error events
//! with stack traces, context lines, breadcrumbs, tags and contexts, spread over a chosen
//! number of distinct issues.

use serde_json::{Value, json};

/// Placeholder of the same length as a 32-hex event id, replaced in place per request.
pub const ID_PLACEHOLDER: &str = "ffffffffffffffffffffffffffffffff";

const TIERS: [&str; 3] = ["free", "pro", "enterprise"];

/// A realistic error event of issue number `issue` (same issue number = same grouping).
pub fn realistic_event(issue: usize, event_id: &str, variant: usize) -> Value {
    let frames: Vec<Value> = (0..12)
        .map(|i| {
            let in_app = i >= 7;
            let module = if in_app { format!("shop.views.checkout{}", issue) } else { format!("django.core.handlers.h{i}") };
            json!({
                "filename": format!("{}/{}.py", if in_app { "shop/views" } else { "django/core/handlers" }, module.replace('.', "_")),
                "abs_path": format!("/srv/app/{}.py", module.replace('.', "/")),
                "module": module,
                "function": format!("handle_step_{i}_{}", if in_app { issue } else { 0 }),
                "lineno": 40 + i + (variant % 3),
                "context_line": format!("    result = process_order(order_id, step={i}, issue={issue})"),
                "pre_context": ["    order = Order.objects.get(pk=order_id)", "    if not order.is_paid:"],
                "post_context": ["    return result"],
                "in_app": in_app,
                "vars": {"order_id": format!("'{}'", 1000 + variant), "step": i.to_string(), "self": "<CheckoutView object at 0x7f3a2c1e5d90>"},
            })
        })
        .collect();
    let breadcrumbs: Vec<Value> = (0..10usize)
        .map(|i| {
            json!({
                "timestamp": 1_763_800_000.0 + i as f64,
                "type": if i.is_multiple_of(3) { "http" } else { "default" },
                "category": if i.is_multiple_of(3) { "httplib" } else { "query" },
                "message": format!("SELECT * FROM orders WHERE id = {} AND status = 'open'", 1000 + i),
                "level": "info",
                "data": {"duration_ms": i * 3},
            })
        })
        .collect();
    json!({
        "event_id": event_id,
        "timestamp": chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
        "platform": "python",
        "level": "error",
        "logger": "shop.checkout",
        "server_name": format!("web-{}", variant % 8),
        "release": format!("shop@1.{}.0", variant % 5),
        "environment": if variant.is_multiple_of(4) { "staging" } else { "production" },
        "transaction": format!("/checkout/{issue}/"),
        "exception": {"values": [{
            "type": format!("CheckoutError{issue}"),
            "value": format!("order {} could not be charged: card declined (attempt {})", 1000 + variant, variant % 7),
            "module": "shop.errors",
            "mechanism": {"type": "django", "handled": false},
            "stacktrace": {"frames": frames},
        }]},
        "breadcrumbs": {"values": breadcrumbs},
        "tags": {"customer_tier": TIERS[variant % 3], "region": "eu-west-1"},
        "user": {"id": format!("{}", variant % 500), "email": format!("user{}@example.com", variant % 500), "ip_address": "10.1.2.3"},
        "request": {
            "url": format!("https://shop.example.com/checkout/{issue}/"),
            "method": "POST",
            "headers": {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", "Accept": "text/html", "Host": "shop.example.com"},
            "env": {"REMOTE_ADDR": "10.1.2.3", "SERVER_NAME": "shop"},
        },
        "contexts": {
            "runtime": {"name": "CPython", "version": "3.12.1"},
            "os": {"name": "Linux", "version": "6.1"},
            "trace": {"trace_id": format!("{:032x}", variant as u128 * 7919 + 1), "span_id": "b0e6f15b45c36b12"},
        },
        "sdk": {"name": "sentry.python.django", "version": "2.75.0"},
        "modules": {"django": "5.1", "sentry-sdk": "2.75.0", "requests": "2.32.3"},
        "extra": {"cart_items": variant % 9, "coupon": null},
    })
}

/// An envelope around one event, as the Python SDK writes it (lengths, trailing newline).
pub fn envelope(event: &Value) -> Vec<u8> {
    let id = event["event_id"].as_str().unwrap_or(ID_PLACEHOLDER);
    let payload = event.to_string();
    format!(
        "{{\"event_id\":\"{id}\",\"sent_at\":\"{}\",\"sdk\":{{\"name\":\"sentry.python\",\"version\":\"2.75.0\"}}}}\n{{\"type\":\"event\",\"length\":{}}}\n{payload}\n",
        chrono::Utc::now().to_rfc3339(),
        payload.len()
    )
    .into_bytes()
}

/// A fresh random event id.
pub fn new_event_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
