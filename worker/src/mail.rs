//! The mail sender: runs `SendMail` jobs from the `mail` queue (ARCHITECTURE.md §4.4, §10).
//!
//! A job is only a nudge naming an outbox row. The sender claims the row
//! (`Store::claim_notification`: a row already sent, failed or in another live worker's
//! hands is left alone, so duplicated and replayed jobs send nothing twice), renders it,
//! and hands it to SMTP (lettre) or, in `agentq dev`, writes an `.eml` file (whole, by a
//! rename, and named after the row: [`write_eml`]). A transient
//! failure puts the row back to `queued` with an exponential backoff, and the scheduler's
//! recovery nudges it again when it is due; a permanent SMTP rejection, a bad address or
//! the last allowed attempt marks it `failed` with the error kept. Each message carries a
//! `Message-ID` derived from the row, so a receiver that sees a rare redelivery (a worker
//! dying between the SMTP server's acceptance and the `sent` commit) can recognise it.

use std::{path::PathBuf, time::Duration};

use agentq_core::{
    StoreError,
    config::MailConfig,
    notifications,
    queue::{JobReport, SendMail},
    store::{OutboxEmail, Store},
};
use chrono::Utc;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use rand::RngExt;
use uuid::Uuid;

/// Where messages go.
enum Transport {
    /// An SMTP server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// `.eml` files in this directory (local development), one per outbox row.
    Files(PathBuf),
}

/// Writes `<id>.eml` in `dir` whole or not at all: the bytes go to a hidden temporary file
/// of this attempt's own (two workers may deliver one row when the first stalled past its
/// lease) that is then renamed, so a program picking files up from the directory never
/// reads one half written (lettre's file transport creates the file, then writes it); a
/// temporary file that could not be finished is removed. Named after the outbox row, a
/// rare redelivery (a worker dying between the write and the `sent` commit) replaces the
/// file instead of adding a second one.
async fn write_eml(dir: &std::path::Path, id: Uuid, bytes: &[u8]) -> std::io::Result<()> {
    let partial = dir.join(format!(".{id}.{}.eml.partial", Uuid::new_v4().simple()));
    let written = match tokio::fs::write(&partial, bytes).await {
        Ok(()) => tokio::fs::rename(&partial, dir.join(format!("{id}.eml"))).await,
        Err(e) => Err(e),
    };
    if written.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    written
}

/// Why the mail settings are unusable; the worker refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    /// `--smtp-url` does not parse.
    #[error("invalid --smtp-url: {0}")]
    SmtpUrl(String),
    /// `--mail-from` is not an address.
    #[error("invalid --mail-from `{from}`: {reason}")]
    From {
        /// The value given.
        from: String,
        /// Why it is not an address.
        reason: String,
    },
    /// `--mail-dir` cannot be created.
    #[error("cannot create --mail-dir {dir}: {source}")]
    Dir {
        /// The directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
}

/// How one delivery attempt ended.
enum Delivery {
    Sent,
    /// Worth another attempt later.
    Transient(String),
    /// Another attempt would fail the same way.
    Permanent(String),
}

/// What to record for one attempt.
enum Outcome {
    Sent,
    Failed(String),
    /// The error, and how long to wait before the next attempt.
    Retry(String, Duration),
}

/// Sends outbox emails; one per worker process, shared by its mail jobs.
pub struct MailSender {
    store: Store,
    transport: Transport,
    from: Mailbox,
    base_url: String,
    max_attempts: i32,
    retry_base: Duration,
    timeout: Duration,
    lease: Duration,
}

/// Longest wait between two attempts of one email.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

impl MailSender {
    /// The sender the settings describe; `None` when neither SMTP nor a mail directory is
    /// configured (the worker then leaves the mail queue to workers that have one).
    pub fn from_config(store: Store, config: &MailConfig) -> Result<Option<Self>, MailConfigError> {
        let transport = match (&config.smtp_url, &config.mail_dir) {
            (Some(url), _) if !url.expose().trim().is_empty() => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose().trim())
                    // The URL may hold a password: say what is wrong, never echo it.
                    .map_err(|e| MailConfigError::SmtpUrl(e.to_string()))?
                    .timeout(Some(Duration::from_secs(config.timeout_secs.max(1))))
                    .build(),
            ),
            (_, Some(dir)) => {
                std::fs::create_dir_all(dir).map_err(|source| MailConfigError::Dir {
                    dir: dir.display().to_string(),
                    source,
                })?;
                Transport::Files(dir.clone())
            }
            _ => return Ok(None),
        };
        let from = config
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| MailConfigError::From {
                from: config.from.clone(),
                reason: e.to_string(),
            })?;
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        Ok(Some(Self {
            store,
            transport,
            from,
            base_url: config.base_url.clone(),
            max_attempts: config.max_attempts.max(1),
            retry_base: Duration::from_secs(config.retry_base_secs.max(1)),
            timeout,
            // Longer than one SMTP conversation may take, so a live sender keeps its row.
            lease: timeout * 2 + Duration::from_secs(5),
        }))
    }

    /// Runs one `SendMail` job. Errors are database failures only (the queue retries the
    /// job); delivery failures are recorded on the row. `report` gets how the attempt
    /// ended (`sent`, `retrying`, `failed`, `skipped`), for the job's log line.
    #[tracing::instrument(name = "send_mail", skip_all, fields(notification.id = %job.notification_id))]
    pub async fn run(&self, job: SendMail, report: &JobReport) -> Result<(), StoreError> {
        let Some(email) = self
            .store
            .claim_notification(job.notification_id, self.lease)
            .await?
        else {
            tracing::debug!("nothing to send: already sent, failed, not due or in flight");
            report.outcome("skipped");
            return Ok(());
        };
        let attempt = email.attempts;
        if attempt > self.max_attempts {
            // Earlier attempts died with their workers before recording an outcome.
            let error = format!(
                "gave up after {} attempts; the last ones were lost with their workers",
                self.max_attempts
            );
            report.outcome(
                self.record(email.id, attempt, Outcome::Failed(error))
                    .await?,
            );
            return Ok(());
        }
        let outcome = match self.deliver(&email).await {
            Delivery::Sent => Outcome::Sent,
            Delivery::Permanent(error) => Outcome::Failed(error),
            Delivery::Transient(error) if attempt >= self.max_attempts => {
                Outcome::Failed(format!("{error} (gave up after {attempt} attempts)"))
            }
            Delivery::Transient(error) => Outcome::Retry(error, backoff(self.retry_base, attempt)),
        };
        report.outcome(self.record(email.id, attempt, outcome).await?);
        Ok(())
    }

    /// Records how attempt `attempt` ended. Once the message is with the SMTP server, a
    /// database hiccup must not turn into a second send: recording `sent` is retried here
    /// for a while before the job gives up (recovery would re-send only after the lease).
    /// Returns what was recorded (`sent`, `failed`, `retrying`), or `lease_lost`.
    async fn record(
        &self,
        id: Uuid,
        attempt: i32,
        outcome: Outcome,
    ) -> Result<&'static str, StoreError> {
        let store = &self.store;
        let (won, label) = match &outcome {
            Outcome::Sent => {
                let mut tries = 0;
                let won = loop {
                    match store.mark_notification_sent(id, attempt).await {
                        Ok(won) => break won,
                        Err(e) if tries < 5 => {
                            tries += 1;
                            tracing::warn!(error = %e, "recording a sent email failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                        }
                        Err(e) => return Err(e),
                    }
                };
                (won, "sent")
            }
            Outcome::Failed(error) => {
                (store.fail_notification(id, attempt, error).await?, "failed")
            }
            Outcome::Retry(error, wait) => {
                let retry_at = Utc::now() + chrono::Duration::from_std(*wait).unwrap_or_default();
                (
                    store
                        .retry_notification(id, attempt, error, retry_at)
                        .await?,
                    "retrying",
                )
            }
        };
        agentq_core::metrics::email_attempt(label);
        match (&outcome, won) {
            (_, false) => tracing::warn!(
                attempt,
                outcome = label,
                "the email's lease expired during this attempt and another worker took it over; outcome not recorded"
            ),
            (Outcome::Sent, true) => tracing::info!(attempt, "email sent"),
            (Outcome::Failed(error), true) => {
                tracing::warn!(attempt, %error, "email failed for good")
            }
            (Outcome::Retry(error, wait), true) => tracing::warn!(
                attempt,
                %error,
                retry_in_ms = wait.as_millis() as u64,
                "email not sent; will retry"
            ),
        }
        Ok(if won { label } else { "lease_lost" })
    }

    /// Renders and hands over one email.
    async fn deliver(&self, email: &OutboxEmail) -> Delivery {
        let rendered = match notifications::render(&email.template, &email.payload, &self.base_url)
        {
            Ok(r) => r,
            Err(e) => return Delivery::Permanent(e.to_string()),
        };
        let to: Mailbox = match email.recipient.parse() {
            Ok(to) => to,
            Err(e) => {
                return Delivery::Permanent(format!(
                    "invalid recipient address `{}`: {e}",
                    email.recipient
                ));
            }
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .message_id(Some(format!("<{}@agentq>", email.id)))
            .multipart(MultiPart::alternative_plain_html(
                rendered.text,
                rendered.html,
            ));
        let message = match message {
            Ok(m) => m,
            Err(e) => return Delivery::Permanent(format!("cannot build the message: {e}")),
        };
        let sent = match &self.transport {
            Transport::Smtp(smtp) => {
                match tokio::time::timeout(self.timeout, smtp.send(message)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) if e.is_permanent() => {
                        return Delivery::Permanent(format!("SMTP server refused: {e}"));
                    }
                    Ok(Err(e)) => Err(format!("SMTP: {e}")),
                    Err(_) => Err(format!("SMTP: no answer within {:?}", self.timeout)),
                }
            }
            Transport::Files(dir) => write_eml(dir, email.id, &message.formatted())
                .await
                .map_err(|e| format!("writing the .eml file: {e}")),
        };
        match sent {
            Ok(()) => Delivery::Sent,
            Err(e) => Delivery::Transient(e),
        }
    }
}

/// `base * 2^(attempt-1)`, at most an hour, with +-20 % jitter so a burst of failures
/// does not retry in lockstep.
fn backoff(base: Duration, attempt: i32) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    let wait = base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(MAX_BACKOFF);
    let jitter = rand::rng().random_range(0.8..1.2);
    wait.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let base = Duration::from_secs(30);
        for (attempt, expected) in [(1, 30.0), (2, 60.0), (3, 120.0), (10, 3600.0)] {
            let got = backoff(base, attempt).as_secs_f64();
            assert!(
                got >= expected * 0.8 && got <= expected * 1.2,
                "attempt {attempt}: {got}"
            );
        }
    }
}
