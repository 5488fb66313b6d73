//! Email to people (the ad manager): through SMTP when `RESTOCK_SMTP_URL` is set, else
//! written to the log — never lost silently, and never an error for the workflow.

use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How notifications leave the system.
#[derive(Clone)]
pub enum Mailer {
    /// Through an SMTP server.
    Smtp {
        /// The transport (pooled connections; boxed: it is large).
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        /// The sender.
        from: Mailbox,
    },
    /// No SMTP configured: notifications go to the log.
    Log,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The SMTP URL may hold a password: never print it.
        f.write_str(match self {
            Mailer::Smtp { .. } => "Mailer::Smtp",
            Mailer::Log => "Mailer::Log",
        })
    }
}

/// How a message was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The SMTP server accepted it.
    Sent,
    /// Written to the log (no SMTP configured).
    Logged,
}

impl Delivered {
    /// The notification's status once delivered this way.
    pub fn status(self) -> restock_inventory::entity::notification::NotificationStatus {
        use restock_inventory::entity::notification::NotificationStatus;
        match self {
            Delivered::Sent => NotificationStatus::Sent,
            Delivered::Logged => NotificationStatus::Logged,
        }
    }
}

/// One email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// The sender when none is configured (`RESTOCK_MAIL_FROM`).
pub const DEFAULT_FROM: &str = "restock <restock@localhost>";

impl Mailer {
    /// A mailer for `smtp_url` (`smtp://host:port`, `smtps://user:pass@host`, ...), or the
    /// log when it is `None`. `from` is the sender, e.g. `restock <restock@example.com>`.
    pub fn new(smtp_url: Option<&str>, from: &str) -> anyhow::Result<Self> {
        let Some(url) = smtp_url.filter(|u| !u.is_empty()) else {
            return Ok(Mailer::Log);
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("RESTOCK_SMTP_URL is not a usable SMTP URL: {e}"))?
            .build();
        let transport = Box::new(transport);
        let from = from
            .parse()
            .map_err(|e| anyhow::anyhow!("RESTOCK_MAIL_FROM {from:?} is not an address: {e}"))?;
        Ok(Mailer::Smtp { transport, from })
    }

    /// Delivers one email. An SMTP failure is an error (the activity retries it).
    pub async fn deliver(&self, email: &Email) -> anyhow::Result<Delivered> {
        match self {
            Mailer::Log => {
                tracing::info!(
                    to = %email.to,
                    subject = %email.subject,
                    body = %email.body,
                    "notification (no RESTOCK_SMTP_URL: logged, not mailed)"
                );
                Ok(Delivered::Logged)
            }
            Mailer::Smtp { transport, from } => {
                let to: Mailbox = email.to.parse().map_err(|e| {
                    anyhow::anyhow!("recipient {:?} is not an address: {e}", email.to)
                })?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(email.subject.clone())
                    .header(ContentType::TEXT_PLAIN)
                    .body(email.body.clone())?;
                transport
                    .send(message)
                    .await
                    .map_err(|e| anyhow::anyhow!("SMTP delivery failed: {e}"))?;
                Ok(Delivered::Sent)
            }
        }
    }
}
