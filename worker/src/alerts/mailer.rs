//! SMTP with lettre: one pooled transport per process, built from `FAULTLINE_SMTP_URL`.

use std::time::Duration;

use faultline_core::config::Config;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tracing::Instrument;

/// Why an email was not handed over to the SMTP server.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub message: String,
    /// The server refused for good (5xx): trying again will not help.
    pub permanent: bool,
}

/// The configured outgoing mail, or the knowledge that there is none.
#[derive(Clone)]
pub struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    pub from: Mailbox,
    timeout: Duration,
}

impl Mailer {
    /// Builds the transport; `FAULTLINE_SMTP_URL` unset gives a mailer that sends nothing.
    pub fn from_config(config: &Config) -> anyhow::Result<Mailer> {
        let from: Mailbox = config.email_from.parse().map_err(|e| {
            anyhow::anyhow!(
                "FAULTLINE_EMAIL_FROM is not valid: {:?}: {e}",
                config.email_from
            )
        })?;
        let timeout = Duration::from_millis(config.alerts.smtp_timeout_ms.max(1000) as u64);
        let transport = match &config.smtp_url {
            Some(url) => {
                let transport: AsyncSmtpTransport<Tokio1Executor> =
                    AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                        .map_err(|e| anyhow::anyhow!("FAULTLINE_SMTP_URL is not valid: {e}"))?
                        .timeout(Some(timeout))
                        .build();
                Some(transport)
            }
            None => None,
        };
        Ok(Mailer {
            transport,
            from,
            timeout,
        })
    }

    /// A mailer that has no SMTP server (alerts are recorded, not sent).
    pub fn unconfigured(from: Mailbox) -> Mailer {
        Mailer {
            transport: None,
            from,
            timeout: Duration::from_secs(10),
        }
    }

    /// Whether an SMTP server is configured.
    pub fn is_configured(&self) -> bool {
        self.transport.is_some()
    }

    /// Hands one message to the SMTP server.
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        let Some(transport) = &self.transport else {
            return Err(SendError {
                message: "SMTP not configured".into(),
                permanent: true,
            });
        };
        let span = tracing::info_span!(
            target: faultline_core::telemetry::SPAN_TARGET,
            "smtp.send",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
        );
        let result = self
            .send_with(transport, message)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(()) => faultline_core::metrics::email_sent(),
            Err(_) => {
                faultline_core::metrics::email_failed();
                span.record("otel.status_code", "ERROR");
            }
        }
        result
    }

    async fn send_with(
        &self,
        transport: &AsyncSmtpTransport<Tokio1Executor>,
        message: Message,
    ) -> Result<(), SendError> {
        // lettre's timeout covers each read and write; this one covers the conversation.
        match tokio::time::timeout(self.timeout * 3, transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(SendError {
                message: first_line(&e.to_string()),
                permanent: e.is_permanent(),
            }),
            Err(_) => Err(SendError {
                message: format!(
                    "the SMTP server did not answer within {:?}",
                    self.timeout * 3
                ),
                permanent: false,
            }),
        }
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    line.chars().take(500).collect()
}
