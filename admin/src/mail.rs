//! Outgoing mail: one [`Mailer`] with two transports. `log` (the default in `dev`) sends
//! nothing: it prints the message, links included, to the log, so a first user needs no SMTP
//! server. `smtp` sends through a relay with lettre (STARTTLS, implicit TLS, or plain for a
//! local relay). Every message, whatever the transport, is kept in the `mail_outbox` table
//! with its outcome; admins list it (`GET /outbox`).

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sqlx::PgPool;

use crate::secret::Secret;

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// One plain-text message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// How the connection to the SMTP relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on the same host or in tests.
    None,
}

/// Where and how to send with SMTP.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// The transport a [`Mailer`] uses.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Print to the log and keep in the outbox; send nothing.
    Log,
    Smtp(SmtpSettings),
}

/// Mail could not be handed to the relay (it is in the outbox as `failed`).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the address {0:?} is not a valid e-mail address")]
    Address(String),
    #[error("the mail relay refused or failed: {0}")]
    Smtp(String),
    #[error("the outbox could not be written: {0}")]
    Outbox(#[from] sqlx::Error),
}

/// Sends mail and records it in the outbox. Cheap to clone.
#[derive(Clone)]
pub struct Mailer(Arc<Inner>);

struct Inner {
    db: PgPool,
    from: String,
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
}

impl Mailer {
    /// A mailer sending as `from` (`Name <address>` or a bare address) through `transport`.
    pub fn new(db: PgPool, from: &str, transport: &Transport) -> Result<Self, MailError> {
        from.parse::<lettre::message::Mailbox>().map_err(|_| MailError::Address(from.to_owned()))?;
        let smtp = match transport {
            Transport::Log => None,
            Transport::Smtp(s) => Some(smtp_transport(s)?),
        };
        Ok(Self(Arc::new(Inner { db, from: from.to_owned(), smtp })))
    }

    /// Whether mail is only logged (so pages can say "see the log" rather than "check your inbox").
    pub fn logs_only(&self) -> bool {
        self.0.smtp.is_none()
    }

    /// Sends `mail` (or logs it) and records the outcome in the outbox.
    pub async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let Some(smtp) = &self.0.smtp else {
            let links: Vec<&str> = mail.body.split_whitespace().filter(|w| w.starts_with("http")).collect();
            let links = links.join(" ");
            tracing::info!(to = %mail.to, subject = %mail.subject, %links, body = %mail.body, "mail (log transport, not sent)");
            return self.record(&mail, "log", "logged", None).await;
        };
        let outcome = match self.message(&mail) {
            Ok(message) => smtp.send(message).await.map(drop).map_err(|e| MailError::Smtp(e.to_string())),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => self.record(&mail, "smtp", "sent", None).await,
            Err(err) => {
                tracing::warn!(to = %mail.to, subject = %mail.subject, error = %err, "mail not sent");
                self.record(&mail, "smtp", "failed", Some(&err.to_string())).await?;
                Err(err)
            }
        }
    }

    fn message(&self, mail: &Mail) -> Result<Message, MailError> {
        let to = mail.to.parse().map_err(|_| MailError::Address(mail.to.clone()))?;
        let from = self.0.from.parse().map_err(|_| MailError::Address(self.0.from.clone()))?;
        Message::builder()
            .from(from)
            .to(to)
            .subject(&mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| MailError::Smtp(e.to_string()))
    }

    async fn record(&self, mail: &Mail, transport: &str, status: &str, error: Option<&str>) -> Result<(), MailError> {
        sqlx::query(
            "INSERT INTO mail_outbox (recipient, subject, body, transport, status, error) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&mail.to)
        .bind(&mail.subject)
        .bind(&mail.body)
        .bind(transport)
        .bind(status)
        .bind(error)
        .execute(&self.0.db)
        .await?;
        Ok(())
    }
}

fn smtp_transport(s: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let smtp_err = |e: lettre::transport::smtp::Error| MailError::Smtp(e.to_string());
    let builder = match s.security {
        SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host).map_err(smtp_err)?,
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host).map_err(smtp_err)?,
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
    };
    let builder = builder.port(s.port).timeout(Some(SMTP_TIMEOUT));
    let builder = match (&s.username, &s.password) {
        (Some(user), Some(pass)) => builder.credentials(Credentials::new(user.clone(), pass.expose().to_owned())),
        _ => builder,
    };
    Ok(builder.build())
}
