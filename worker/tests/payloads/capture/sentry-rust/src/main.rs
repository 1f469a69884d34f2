//! Captures the events the `sentry` Rust crate fixtures were taken from: a custom transport
//! writes each envelope to `out/NNN.envelope` instead of sending it.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct FileTransport(AtomicUsize);

impl sentry::Transport for FileTransport {
    fn send_envelope(&self, envelope: sentry::Envelope) {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        let mut bytes = Vec::new();
        envelope.to_writer(&mut bytes).expect("serialize envelope");
        std::fs::create_dir_all("out").expect("out dir");
        std::fs::write(format!("out/{n:03}.envelope"), bytes).expect("write envelope");
    }
}

#[derive(Debug)]
struct StockLevel {
    sku: String,
    on_hand: Option<u32>,
}

fn reserve(level: &StockLevel, wanted: u32) -> u32 {
    let on_hand = level.on_hand.unwrap();
    on_hand.saturating_sub(wanted)
}

fn parse_quantity(raw: &str) -> Result<u32, std::num::ParseIntError> {
    raw.trim().parse::<u32>()
}

fn main() {
    let transport = Arc::new(FileTransport(AtomicUsize::new(0)));
    let _guard = sentry::init(sentry::ClientOptions {
        dsn: "https://abc123def456@errors.example.com/42".parse().ok(),
        release: Some("inventory-sync@0.3.1".into()),
        environment: Some("production".into()),
        transport: Some(Arc::new(move |_: &sentry::ClientOptions| {
            transport.clone() as Arc<dyn sentry::Transport>
        })),
        ..Default::default()
    });
    sentry::configure_scope(|scope| {
        scope.set_tag("warehouse", "ams-2");
        scope.set_user(Some(sentry::User {
            id: Some("svc-inventory".into()),
            ..Default::default()
        }));
    });
    sentry::add_breadcrumb(sentry::Breadcrumb {
        category: Some("sync".into()),
        message: Some("fetched 120 stock levels".into()),
        ..Default::default()
    });

    if let Err(err) = parse_quantity("12 units") {
        sentry::capture_error(&err);
    }

    let level = StockLevel { sku: "SKU-1042".into(), on_hand: None };
    let _ = std::panic::catch_unwind(|| reserve(&level, 3));
    println!("{}", level.sku);
}
