//! Alert delivery: findings at or above the configured severity go to standard output (OCSF
//! Detection Findings by default, for SIEM pipelines) and to each webhook, as nhiwatch's JSON or
//! a Slack-compatible `{"text": ...}`.
//!
//! Each webhook has its own bounded queue and task, so a slow or failing one holds up no other.
//! A delivery that fails with a network error, a timeout, 408, 429 or 5xx is retried after a
//! backoff that doubles each time (a `Retry-After` from the webhook is honoured, up to a
//! minute); after the configured attempts, or at once on another 4xx, the alert goes to the
//! dead-letter file with the reason. Nothing is silently dropped: an alert that finds a full
//! queue is dead-lettered too. Webhook URLs may hold secrets (Slack's do) and are never written
//! to a log or the dead-letter file; webhooks are named instead.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nhiwatch_detect::ocsf;
use nhiwatch_model::{Finding, Severity, Timestamp};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::{AlertSettings, StdoutFormat, WebhookFormat, WebhookSpec};
use crate::metrics::{AlertOutcome, Metrics};

/// The longest wait between retries, and the longest `Retry-After` honoured.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The dead-letter file: alerts that could not be delivered, one JSON object per line.
#[derive(Debug)]
pub struct DeadLetter {
    path: Option<PathBuf>,
    file: Mutex<Option<File>>,
}

impl DeadLetter {
    /// A dead-letter file at `path` (opened on first use); without one, undeliverable alerts
    /// are reported on standard error.
    pub fn new(path: Option<PathBuf>) -> Self {
        DeadLetter {
            path,
            file: Mutex::new(None),
        }
    }

    /// Records an alert given up on.
    pub fn write(&self, webhook: &str, finding: &Finding, attempts: u32, error: &str) {
        let line = serde_json::json!({
            "time": Timestamp::now().to_string(),
            "webhook": webhook,
            "attempts": attempts,
            "error": error,
            "finding": finding,
        });
        let Some(path) = &self.path else {
            eprintln!(
                "nhiwatch: alert {} not delivered to {webhook} after {attempts} attempts: {error}",
                finding.id
            );
            return;
        };
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if file.is_none() {
            match OpenOptions::new().create(true).append(true).open(path) {
                Ok(opened) => *file = Some(opened),
                Err(err) => {
                    eprintln!(
                        "nhiwatch: cannot open the dead-letter file {}: {err}; alert {} to {webhook} lost: {error}",
                        path.display(),
                        finding.id
                    );
                    return;
                }
            }
        }
        if let Some(file) = file.as_mut() {
            let mut text = line.to_string();
            text.push('\n');
            if let Err(err) = file
                .write_all(text.as_bytes())
                .and_then(|()| file.sync_data())
            {
                eprintln!(
                    "nhiwatch: cannot write the dead-letter file {}: {err}",
                    path.display()
                );
            }
        }
    }
}

/// The engine's handle: offers each finding, keeps those that are alerts.
#[derive(Clone, Debug)]
pub struct AlertSender {
    min_severity: Severity,
    queue: Option<mpsc::Sender<Arc<Finding>>>,
    dead: Arc<DeadLetter>,
}

impl AlertSender {
    /// Queues the finding for delivery when it is an alert. Never waits: when the queue is
    /// full, the alert is dead-lettered.
    pub fn offer(&self, finding: &Arc<Finding>) {
        if finding.severity < self.min_severity {
            return;
        }
        if let Some(queue) = &self.queue {
            if let Err(mpsc::error::TrySendError::Full(finding)) =
                queue.try_send(Arc::clone(finding))
            {
                self.dead
                    .write("*", &finding, 0, "the alert queue was full");
            }
        }
    }
}

/// The running dispatcher and webhook tasks.
pub struct Alerts {
    tasks: JoinSet<()>,
    give_up: watch::Sender<bool>,
}

impl Alerts {
    /// Starts delivery on the current tokio runtime.
    pub fn start(
        settings: &AlertSettings,
        dead_letter: Option<PathBuf>,
        metrics: Arc<Metrics>,
    ) -> Result<(AlertSender, Alerts), String> {
        let dead = Arc::new(DeadLetter::new(dead_letter));
        let (give_up, giving_up) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let client = if settings.webhooks.is_empty() {
            None
        } else {
            Some(http_client(settings.timeout)?)
        };
        let mut hooks = Vec::new();
        for spec in &settings.webhooks {
            let (sender, receiver) = mpsc::channel(settings.queue);
            let webhook = Webhook {
                spec: spec.clone(),
                client: client.clone().ok_or("no HTTP client")?,
                attempts: settings.attempts.max(1),
                backoff: settings.backoff,
                dead: Arc::clone(&dead),
                metrics: Arc::clone(&metrics),
                giving_up: giving_up.clone(),
            };
            tasks.spawn(webhook.run(receiver));
            hooks.push((spec.name.clone(), sender));
        }
        let wanted = settings.stdout != StdoutFormat::None || !hooks.is_empty();
        let queue = if wanted {
            let (sender, receiver) = mpsc::channel(settings.queue);
            tasks.spawn(dispatch(
                receiver,
                settings.stdout,
                hooks,
                Arc::clone(&dead),
            ));
            Some(sender)
        } else {
            None
        };
        Ok((
            AlertSender {
                min_severity: settings.min_severity,
                queue,
                dead,
            },
            Alerts { tasks, give_up },
        ))
    }

    /// Waits for every queued alert to be delivered or dead-lettered, once every
    /// [`AlertSender`] is dropped. After `grace`, retries stop and what is left is dead-lettered.
    pub async fn finish(mut self, grace: Duration) {
        let all = async { while self.tasks.join_next().await.is_some() {} };
        tokio::pin!(all);
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            let _ = self.give_up.send(true);
            all.await;
        }
    }
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|err| format!("cannot build the webhook client: {err}"))
}

/// Prints each alert and fans it out to the webhooks' queues.
async fn dispatch(
    mut queue: mpsc::Receiver<Arc<Finding>>,
    stdout: StdoutFormat,
    hooks: Vec<(String, mpsc::Sender<Arc<Finding>>)>,
    dead: Arc<DeadLetter>,
) {
    while let Some(finding) = queue.recv().await {
        let line = match stdout {
            StdoutFormat::Ocsf => Some(ocsf::detection_finding(&finding).to_string()),
            StdoutFormat::Jsonl => serde_json::to_string(&*finding).ok(),
            StdoutFormat::None => None,
        };
        if let Some(mut line) = line {
            line.push('\n');
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        }
        for (name, hook) in &hooks {
            if let Err(mpsc::error::TrySendError::Full(finding)) =
                hook.try_send(Arc::clone(&finding))
            {
                dead.write(name, &finding, 0, "the webhook's queue was full");
            }
        }
    }
}

struct Webhook {
    spec: WebhookSpec,
    client: reqwest::Client,
    attempts: u32,
    backoff: Duration,
    dead: Arc<DeadLetter>,
    metrics: Arc<Metrics>,
    giving_up: watch::Receiver<bool>,
}

/// How one attempt went.
enum Attempt {
    Delivered,
    /// Worth another try, after at least this long when the webhook said so.
    Retry(String, Option<Duration>),
    /// Not worth another try.
    Permanent(String),
}

impl Webhook {
    async fn run(mut self, mut queue: mpsc::Receiver<Arc<Finding>>) {
        while let Some(finding) = queue.recv().await {
            self.deliver(&finding).await;
        }
    }

    async fn deliver(&mut self, finding: &Finding) {
        let body = match self.spec.format {
            WebhookFormat::Json => serde_json::to_vec(finding),
            WebhookFormat::Slack => {
                serde_json::to_vec(&serde_json::json!({"text": slack_text(finding)}))
            }
        };
        let body = match body {
            Ok(body) => body,
            Err(err) => {
                self.give_up(finding, 0, &format!("cannot encode the alert: {err}"));
                return;
            }
        };
        let mut wait = self.backoff;
        for attempt in 1..=self.attempts {
            if *self.giving_up.borrow() {
                self.give_up(finding, attempt - 1, "the server shut down before delivery");
                return;
            }
            let asked = match self.attempt(body.clone()).await {
                Attempt::Delivered => {
                    self.metrics.alert(AlertOutcome::Delivered);
                    return;
                }
                Attempt::Permanent(error) => {
                    self.give_up(finding, attempt, &error);
                    return;
                }
                Attempt::Retry(error, _) if attempt == self.attempts => {
                    self.give_up(finding, attempt, &error);
                    return;
                }
                Attempt::Retry(_, asked) => asked,
            };
            self.metrics.alert(AlertOutcome::Retried);
            let pause = asked.map_or(wait, |after| after.max(wait)).min(MAX_BACKOFF);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = self.giving_up.wait_for(|stop| *stop) => {}
            }
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }

    async fn attempt(&self, body: Vec<u8>) -> Attempt {
        let request = self
            .client
            .post(&self.spec.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                reqwest::header::USER_AGENT,
                concat!("nhiwatch/", env!("CARGO_PKG_VERSION")),
            )
            .body(body);
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    return Attempt::Delivered;
                }
                let after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let error = format!("the webhook answered HTTP {}", status.as_u16());
                if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
                    Attempt::Retry(error, after)
                } else {
                    Attempt::Permanent(error)
                }
            }
            // reqwest's error text names the URL; say only what kind of failure it was.
            Err(err) if err.is_timeout() => Attempt::Retry("timed out".into(), None),
            Err(err) if err.is_connect() => Attempt::Retry("cannot connect".into(), None),
            Err(_) => Attempt::Retry("the request failed".into(), None),
        }
    }

    fn give_up(&self, finding: &Finding, attempts: u32, error: &str) {
        self.metrics.alert(AlertOutcome::DeadLettered);
        self.dead.write(&self.spec.name, finding, attempts, error);
    }
}

/// A Slack message for a finding: `&`, `<` and `>` escaped as Slack requires.
pub fn slack_text(finding: &Finding) -> String {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    format!(
        "nhiwatch {} {}: {} (risk {}, decision {}, finding {})\n{}",
        finding.severity.as_str().to_uppercase(),
        finding.kind,
        escape(&finding.identity),
        finding.risk,
        finding.decision.as_str(),
        finding.id,
        escape(&finding.summary)
    )
}

#[cfg(test)]
mod tests {
    use nhiwatch_model::{Decision, Evidence, FindingKind};

    use super::*;

    #[test]
    fn slack_text_escapes_markup() {
        let finding = Finding {
            id: "f-1".into(),
            time: Timestamp(0),
            identity: "agent<script>&".into(),
            kind: FindingKind::OutOfScope,
            severity: Severity::High,
            risk: 75,
            decision: Decision::Block,
            summary: "read <secrets>".into(),
            evidence: Evidence {
                event_ids: vec!["e1".into()],
                detail: serde_json::Value::Null,
            },
            frameworks: vec![],
        };
        let text = slack_text(&finding);
        assert!(text.starts_with("nhiwatch HIGH out_of_scope: agent&lt;script&gt;&amp;"));
        assert!(text.contains("read &lt;secrets&gt;"));
    }
}
