//! Owning one partition: take it over, consume it, hand it back.
//!
//! ```text
//! take over   open the partition's store (waits while a previous owner still holds it)
//!             F = the durable consumer's ack floor: everything up to F is stored and published
//!             when the stream still holds every event since its first and the partition has
//!               at most `max_replay` of them (or there is no snapshot): a fresh engine replays
//!               the partition's events up to F, so its state is exactly what one run over
//!               them would hold
//!             otherwise (retention has dropped old events, or replaying all would take too
//!               long): the engine starts from the profile snapshot (learned up to S) and
//!               replays the events after S up to F; episodes that were open at S restart
//!             (replayed findings are dropped: they were committed and published before)
//!             re-create the durable consumer from F+1, so the rest comes in stream order,
//!               including what a dead owner had processed but not acknowledged
//! consume     fetch a batch ─► engine + store commit (one durable transaction)
//!             ─► publish its findings (await JetStream's acks) ─► acknowledge the messages
//! snapshot    every `snapshot_every`, between batches, the profiles go to the object store
//! hand back   finish the batch in hand, snapshot the profiles to the object store
//! ```
//!
//! Events the store already holds are dropped there by their natural key (source and id), and
//! findings are published with `Nats-Msg-Id` = finding id, so reprocessing after a crash adds
//! nothing twice. A redelivered message that this owner's engine has already seen and the store
//! holds (its acknowledgement was lost) is passed over, so no event is counted twice.
//!
//! Any interruption of fetching (a reconnect, the consumer lost) re-creates the consumer from
//! the last committed and published sequence: nothing unacknowledged is skipped, and nothing
//! already done is redone.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::{ConsumerErrorKind, Stream};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, message::PublishMessage};
use futures_util::StreamExt;
use nhiwatch_baseline::Baseline;
use nhiwatch_store::{Options, Store, StoreError};
use tokio::sync::watch;

use super::processor::{partition_dir, Done, Inbound, Processor, Start};
use super::{Notice, Shared};
use crate::layout::{
    consumer_config, consumer_name, partition_messages, CONTROL_FINISH, CONTROL_HEADER,
    EVENTS_STREAM, FINDINGS_SUBJECT,
};
use crate::partition::subject;
use crate::{snapshot, StreamError};

/// What the coordinator asks of a partition's task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Directive {
    /// Keep consuming.
    Run,
    /// Finish the batch in hand, snapshot the profiles, stop.
    Release,
    /// Stop now: the lease is lost (another worker may own the partition already).
    Abort,
}

/// How a partition's task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Handed back in good order.
    Released,
    /// Stopped without finishing.
    Aborted,
}

/// Messages replayed per job.
const REPLAY_CHUNK: usize = 1024;
/// Longest wait for the next replayed message before the replay is taken as complete.
const REPLAY_STALL: Duration = Duration::from_secs(5);

/// Owns `partition` until told to stop.
pub(crate) async fn own(
    shared: Arc<Shared>,
    partition: u32,
    mut directive: watch::Receiver<Directive>,
) -> Result<Exit, StreamError> {
    let started = Instant::now();
    let config = &shared.config;
    let dir = partition_dir(&config.data, partition);
    let Some(store) = open_store(&dir, partition, &mut directive).await? else {
        return Ok(Exit::Aborted);
    };
    let mut floor = ack_floor(&shared.events, partition).await?;
    let (profiles, replay_after) = match snapshot::load(&shared.profiles, partition).await? {
        Some((profiles, seq)) if !replay_all(&shared, partition).await? => {
            // Everything up to the snapshot was committed and published before it was taken.
            floor = floor.max(seq);
            (profiles, seq)
        }
        _ => (Baseline::new(), 0),
    };
    let processor = Processor::start(Start {
        partition,
        store,
        dir,
        policy: config.policy.clone(),
        engine: config.engine.clone(),
        profiles,
    })?;
    let replayed = replay(&shared.events, &processor, partition, replay_after, floor).await?;
    shared.stats.replayed.fetch_add(replayed, Ordering::Relaxed);
    let mut consumer = reset_consumer(&shared, partition, floor + 1).await?;
    let mut done = floor;
    shared.notify(Notice::Acquired {
        partition,
        from: floor + 1,
        replayed,
        elapsed: started.elapsed(),
    });
    let mut idle = IDLE_MIN;
    let mut snapshotted = Instant::now();
    loop {
        if snapshotted.elapsed() >= config.snapshot_every {
            let bytes = processor.snapshot().await?;
            snapshot::save(&shared.profiles, partition, &bytes).await?;
            snapshotted = Instant::now();
        }
        match *directive.borrow_and_update() {
            Directive::Run => {}
            Directive::Release => break,
            Directive::Abort => return Ok(Exit::Aborted),
        }
        let messages = match fetch(&consumer, config.batch).await {
            Ok(messages) => messages,
            Err(err) => {
                shared.notify(Notice::Retrying {
                    partition,
                    error: err.to_string(),
                });
                match resync(&shared, partition, done, &mut directive).await? {
                    Some(fresh) => consumer = fresh,
                    None => return Ok(Exit::Aborted),
                }
                continue;
            }
        };
        let Some(last) = messages
            .last()
            .and_then(|m| m.info().ok())
            .map(|i| i.stream_sequence)
        else {
            // Nothing waiting: poll again soon, backing off while the partition stays quiet.
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = directive.changed() => {}
            }
            idle = (idle * 2).min(config.idle_poll.max(IDLE_MIN));
            continue;
        };
        idle = IDLE_MIN;
        let inbound = messages.iter().filter_map(inbound).collect();
        let result = processor.batch(inbound).await?;
        if !publish_findings(&shared, partition, &result, &mut directive).await {
            return Ok(Exit::Aborted);
        }
        // Cumulative: acknowledges the whole batch. A lost acknowledgement only means a
        // redelivery, which is recognised and passed over; a lost connection makes the next
        // fetch fail and re-create the consumer.
        if let Some(message) = messages.last() {
            let _ = message.ack().await;
        }
        done = done.max(last);
        shared.stats.add(&result);
    }
    let bytes = processor.release().await?;
    snapshot::save(&shared.profiles, partition, &bytes).await?;
    Ok(Exit::Released)
}

const IDLE_MIN: Duration = Duration::from_millis(5);

/// Opens the partition's store, waiting while another owner (a previous one still stopping)
/// holds it. `None` when told to stop while waiting.
async fn open_store(
    dir: &Path,
    partition: u32,
    directive: &mut watch::Receiver<Directive>,
) -> Result<Option<Store>, StreamError> {
    loop {
        let path = dir.to_path_buf();
        let opened = tokio::task::spawn_blocking(move || Store::open(&path, Options::default()))
            .await
            .map_err(|err| StreamError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::other(err),
            })?;
        match opened {
            Ok(store) => return Ok(Some(store)),
            Err(StoreError::Busy(_)) => {
                if *directive.borrow() != Directive::Run {
                    return Ok(None);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(source) => return Err(StreamError::Store { partition, source }),
        }
    }
}

/// The last stream sequence up to which the partition is durably processed: the consumer's
/// ack floor, or the sequence before the one it was created to start from. 0 when there is no
/// consumer yet.
async fn ack_floor(stream: &Stream, partition: u32) -> Result<u64, StreamError> {
    match stream.consumer_info(consumer_name(partition)).await {
        Ok(info) => {
            let start = match info.config.deliver_policy {
                DeliverPolicy::ByStartSequence { start_sequence } => {
                    start_sequence.saturating_sub(1)
                }
                _ => 0,
            };
            Ok(info.ack_floor.stream_sequence.max(start))
        }
        Err(err) if err.kind() == ConsumerInfoErrorKind::NotFound => Ok(0),
        Err(err) => Err(StreamError::nats(
            format!("cannot read the consumer of partition {partition}"),
            err,
        )),
    }
}

/// Whether to rebuild the partition by replaying everything the stream holds of it, rather
/// than from its profile snapshot: when the stream still holds every message since its first
/// (retention has dropped nothing, so the replay is exact) and the partition has at most
/// `max_replay` of them.
async fn replay_all(shared: &Shared, partition: u32) -> Result<bool, StreamError> {
    let stream = shared
        .js
        .get_stream(EVENTS_STREAM)
        .await
        .map_err(|err| StreamError::nats(format!("cannot read {EVENTS_STREAM}"), err))?;
    if stream.cached_info().state.first_sequence > 1 {
        return Ok(false);
    }
    Ok(partition_messages(&stream, partition).await? <= shared.config.max_replay)
}

/// Replays the partition's retained messages after `after` up to `floor` through the
/// processor. Returns how many were replayed.
async fn replay(
    stream: &Stream,
    processor: &Processor,
    partition: u32,
    after: u64,
    floor: u64,
) -> Result<u64, StreamError> {
    if floor <= after {
        return Ok(0);
    }
    let what = || format!("cannot replay partition {partition}");
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject(partition),
            deliver_policy: if after == 0 {
                DeliverPolicy::All
            } else {
                DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                }
            },
            ..Default::default()
        })
        .await
        .map_err(|err| StreamError::nats(what(), err))?;
    if consumer.cached_info().num_pending == 0 {
        return Ok(0);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|err| StreamError::nats(what(), err))?;
    let mut chunk = Vec::with_capacity(REPLAY_CHUNK);
    let mut replayed = 0u64;
    loop {
        let next = match tokio::time::timeout(REPLAY_STALL, messages.next()).await {
            Ok(Some(next)) => next.map_err(|err| StreamError::nats(what(), err))?,
            Ok(None) | Err(_) => break,
        };
        let Ok(info) = next.info() else { continue };
        let (seq, pending) = (info.stream_sequence, info.pending);
        if seq > floor {
            break;
        }
        if let Some(message) = inbound(&next) {
            chunk.push(message);
        }
        replayed += 1;
        if chunk.len() == REPLAY_CHUNK {
            processor.replay(std::mem::take(&mut chunk)).await?;
        }
        if seq == floor || pending == 0 {
            break;
        }
    }
    if !chunk.is_empty() {
        processor.replay(chunk).await?;
    }
    Ok(replayed)
}

/// Deletes the partition's durable consumer and creates it again, delivering from stream
/// sequence `from`.
async fn reset_consumer(
    shared: &Shared,
    partition: u32,
    from: u64,
) -> Result<PullConsumer, StreamError> {
    let name = consumer_name(partition);
    match shared.events.delete_consumer(&name).await {
        Ok(_) => {}
        Err(err)
            if matches!(err.kind(), ConsumerErrorKind::JetStream(e)
                if e.error_code() == ErrorCode::CONSUMER_NOT_FOUND) => {}
        Err(err) => {
            return Err(StreamError::nats(
                format!("cannot reset the consumer of partition {partition}"),
                err,
            ))
        }
    }
    let config = &shared.config;
    shared
        .events
        .create_consumer(consumer_config(
            partition,
            from,
            config.ack_wait,
            (config.batch * 4) as i64,
        ))
        .await
        .map_err(|err| {
            StreamError::nats(
                format!("cannot create the consumer of partition {partition}"),
                err,
            )
        })
}

/// Re-creates the consumer from `done + 1`, retrying (backing off) until it works or the
/// directive changes. `None` when told to stop.
async fn resync(
    shared: &Shared,
    partition: u32,
    done: u64,
    directive: &mut watch::Receiver<Directive>,
) -> Result<Option<PullConsumer>, StreamError> {
    let mut delay = Duration::from_millis(100);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = directive.changed() => {}
        }
        if *directive.borrow() == Directive::Abort {
            return Ok(None);
        }
        match reset_consumer(shared, partition, done + 1).await {
            Ok(consumer) => return Ok(Some(consumer)),
            Err(err) => shared.notify(Notice::Retrying {
                partition,
                error: err.to_string(),
            }),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Longest a fetch may take: a pull request lost in a reconnect is never answered.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches what is waiting, up to `max` messages, without waiting for more.
async fn fetch(
    consumer: &PullConsumer,
    max: usize,
) -> Result<Vec<jetstream::Message>, StreamError> {
    let what = "cannot fetch events";
    let collect = async {
        let mut batch = consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(|err| StreamError::nats(what, err))?;
        let mut messages = Vec::with_capacity(max);
        while let Some(message) = batch.next().await {
            messages.push(message.map_err(|err| StreamError::nats(what, err))?);
        }
        Ok(messages)
    };
    tokio::time::timeout(FETCH_TIMEOUT, collect)
        .await
        .map_err(|elapsed| StreamError::nats(what, elapsed))?
}

/// A message as the processing thread takes it; `None` for one without JetStream metadata.
fn inbound(message: &jetstream::Message) -> Option<Inbound> {
    let info = message.info().ok()?;
    let finish = message
        .headers
        .as_ref()
        .and_then(|h| h.get(CONTROL_HEADER))
        .is_some_and(|v| v.as_str() == CONTROL_FINISH);
    Some(Inbound {
        seq: info.stream_sequence,
        redelivered: info.delivered > 1,
        payload: message.payload.clone(),
        finish,
    })
}

/// Publishes a committed batch's findings to `nhiwatch.findings`, deduplicated by finding id,
/// retrying until JetStream has them all. False when told to abort first.
async fn publish_findings(
    shared: &Shared,
    partition: u32,
    done: &Done,
    directive: &mut watch::Receiver<Directive>,
) -> bool {
    if done.findings.is_empty() {
        return true;
    }
    let mut delay = Duration::from_millis(100);
    loop {
        match try_publish(shared, done).await {
            Ok(()) => return true,
            Err(err) => shared.notify(Notice::Retrying {
                partition,
                error: err.to_string(),
            }),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = directive.changed() => {}
        }
        if *directive.borrow() == Directive::Abort {
            return false;
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn try_publish(shared: &Shared, done: &Done) -> Result<(), StreamError> {
    let mut acks = Vec::with_capacity(done.findings.len());
    for finding in &done.findings {
        let payload = serde_json::to_vec(finding)
            .map_err(|err| StreamError::nats("cannot encode a finding", err))?;
        let message = PublishMessage::build()
            .payload(payload.into())
            .message_id(&finding.id);
        acks.push(
            shared
                .js
                .send_publish(FINDINGS_SUBJECT, message)
                .await
                .map_err(|err| StreamError::nats("cannot publish a finding", err))?,
        );
    }
    for ack in acks {
        ack.await
            .map_err(|err| StreamError::nats("JetStream did not acknowledge a finding", err))?;
    }
    Ok(())
}
