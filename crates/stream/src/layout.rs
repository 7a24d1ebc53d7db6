//! What nhiwatch keeps in JetStream, and creating it.
//!
//! | name | kind | holds |
//! |---|---|---|
//! | `NHIWATCH_EVENTS` | stream, subjects `nhiwatch.events.*` | normalised events (nhiwatch's JSON form), one subject per partition; deduplicated on `Nats-Msg-Id` = `source:event id` within the duplicate window |
//! | `partition-NNNN` | durable pull consumer on it, filtered to one partition, cumulative ack | how far the partition is durably processed (its ack floor) |
//! | `NHIWATCH_FINDINGS` | stream, subject `nhiwatch.findings` | findings (the DESIGN.md JSON), deduplicated on `Nats-Msg-Id` = finding id |
//! | `nhiwatch_leases` | key-value bucket, entries expire after the lease time | `member.<worker>` (who is alive, and which partitions it may own) and `partition.NNNN` (who owns it) |
//! | `nhiwatch_profiles` | object store | `partition-NNNN`: the partition's identity profiles, as of a stream sequence |
//!
//! The number of partitions is fixed when the events stream is created and recorded in its
//! metadata (`nhiwatch.partitions`); every publisher and worker checks it.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::{self, Stream};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{context, kv, object_store, Context};
use futures_util::StreamExt;

use crate::partition::{subject, EVENTS_SUBJECT_PREFIX, MAX_PARTITIONS};
use crate::StreamError;

/// The events stream.
pub const EVENTS_STREAM: &str = "NHIWATCH_EVENTS";
/// The findings stream.
pub const FINDINGS_STREAM: &str = "NHIWATCH_FINDINGS";
/// The subject findings are published to.
pub const FINDINGS_SUBJECT: &str = "nhiwatch.findings";
/// The bucket of worker memberships and partition leases.
pub const LEASES_BUCKET: &str = "nhiwatch_leases";
/// The object store of partition profile snapshots.
pub const PROFILES_BUCKET: &str = "nhiwatch_profiles";
/// The events stream's metadata key that records the number of partitions.
pub const PARTITIONS_METADATA: &str = "nhiwatch.partitions";
/// The header of a control message on a partition subject (instead of an event).
pub const CONTROL_HEADER: &str = "Nhiwatch-Control";
/// The control message that ends a bounded input: workers close every open episode of the
/// partition when they reach it, as `nhiwatch detect` does at the end of its files.
pub const CONTROL_FINISH: &str = "finish";
/// Partitions of a stream created without a count.
pub const DEFAULT_PARTITIONS: u32 = 12;

/// The shape of the events stream.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Partitions (fixed for the life of the stream).
    pub partitions: u32,
    /// How long events are kept (zero: until removed by hand). A worker that takes a partition
    /// over replays its retained events to rebuild detection state, so this bounds both the
    /// history kept and the replay; see docs/scale-out.md.
    pub retention: Duration,
    /// How long a `Nats-Msg-Id` is remembered for deduplication.
    pub duplicate_window: Duration,
    /// Stream replicas (1 for a single server; 3 in a cluster).
    pub replicas: usize,
    /// Compress stored events (S2): normalised events carry their raw record and shrink
    /// several times, for some server CPU (measured in docs/scale-out.md).
    pub compress: bool,
}

impl Layout {
    /// A layout with `partitions`, 7 days of retention, a 10-minute duplicate window, one
    /// replica and compression.
    pub fn new(partitions: u32) -> Result<Self, StreamError> {
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(StreamError::Layout(format!(
                "{partitions} partitions: choose 1 to {MAX_PARTITIONS}"
            )));
        }
        Ok(Layout {
            partitions,
            retention: Duration::from_secs(7 * 86_400),
            duplicate_window: Duration::from_secs(600),
            replicas: 1,
            compress: true,
        })
    }

    /// The events stream, created with this layout when missing; an existing stream must have
    /// the same number of partitions.
    pub async fn ensure_events(&self, js: &Context) -> Result<Stream, StreamError> {
        if let Some((stream, partitions)) = open_events(js).await? {
            if partitions != self.partitions {
                return Err(StreamError::Layout(format!(
                    "the stream {EVENTS_STREAM} was created with {partitions} partitions; this run \
                     asks for {}: use --partitions {partitions}, or delete the stream to start over",
                    self.partitions
                )));
            }
            return Ok(stream);
        }
        let config = stream::Config {
            name: EVENTS_STREAM.into(),
            description: Some(format!(
                "nhiwatch normalised events, {} partitions by identity",
                self.partitions
            )),
            subjects: vec![format!("{EVENTS_SUBJECT_PREFIX}.*")],
            max_age: self.retention,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            compression: Some(if self.compress {
                stream::Compression::S2
            } else {
                stream::Compression::None
            }),
            metadata: HashMap::from([(
                PARTITIONS_METADATA.to_owned(),
                self.partitions.to_string(),
            )]),
            ..Default::default()
        };
        match js.create_stream(config).await {
            Ok(stream) => Ok(stream),
            // Another process created it at the same moment: check what it made.
            Err(_) => match open_events(js).await? {
                Some((stream, partitions)) if partitions == self.partitions => Ok(stream),
                _ => Err(StreamError::Layout(format!(
                    "cannot create the stream {EVENTS_STREAM} with {} partitions",
                    self.partitions
                ))),
            },
        }
    }
}

/// The events stream and its number of partitions, when the stream exists.
pub async fn open_events(js: &Context) -> Result<Option<(Stream, u32)>, StreamError> {
    match js.get_stream(EVENTS_STREAM).await {
        Ok(stream) => {
            let partitions = stream
                .cached_info()
                .config
                .metadata
                .get(PARTITIONS_METADATA)
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|&n| (1..=MAX_PARTITIONS).contains(&n))
                .ok_or_else(|| {
                    StreamError::Layout(format!(
                        "the stream {EVENTS_STREAM} exists but was not made by nhiwatch (no \
                         `{PARTITIONS_METADATA}` metadata)"
                    ))
                })?;
            Ok(Some((stream, partitions)))
        }
        Err(err)
            if matches!(err.kind(), context::GetStreamErrorKind::JetStream(e)
                if e.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
        {
            Ok(None)
        }
        Err(err) => Err(StreamError::nats(
            format!("cannot look up {EVENTS_STREAM} (is JetStream enabled: nats-server -js?)"),
            err,
        )),
    }
}

/// The number of partitions of the events stream, when it exists.
pub async fn stream_partitions(client: &async_nats::Client) -> Result<Option<u32>, StreamError> {
    let js = async_nats::jetstream::new(client.clone());
    Ok(open_events(&js).await?.map(|(_, partitions)| partitions))
}

/// Events published but not yet durably processed, over all partitions: for each partition,
/// what its consumer has not delivered or not had acknowledged, or (with no consumer yet)
/// every event of the partition. `None` when there is no events stream.
pub async fn backlog(client: &async_nats::Client) -> Result<Option<u64>, StreamError> {
    let js = async_nats::jetstream::new(client.clone());
    let Some((stream, partitions)) = open_events(&js).await? else {
        return Ok(None);
    };
    let mut total = 0u64;
    for partition in 0..partitions {
        total += match stream.consumer_info(consumer_name(partition)).await {
            Ok(info) => info.num_pending + info.num_ack_pending as u64,
            Err(err) if err.kind() == context::ConsumerInfoErrorKind::NotFound => {
                partition_messages(&stream, partition).await?
            }
            Err(err) => {
                return Err(StreamError::nats(
                    format!("cannot read the consumer of partition {partition}"),
                    err,
                ))
            }
        };
    }
    Ok(Some(total))
}

/// How many messages the events stream holds for a partition.
pub async fn partition_messages(stream: &Stream, partition: u32) -> Result<u64, StreamError> {
    let what = || format!("cannot read {EVENTS_STREAM}");
    let mut subjects = stream
        .info_with_subjects(subject(partition))
        .await
        .map_err(|err| StreamError::nats(what(), err))?;
    let mut messages = 0u64;
    while let Some(entry) = subjects.next().await {
        messages += entry.map_err(|err| StreamError::nats(what(), err))?.1 as u64;
    }
    Ok(messages)
}

/// The findings stream, created when missing: findings published by every worker, deduplicated
/// by finding id within `duplicate_window`.
pub async fn ensure_findings(
    js: &Context,
    retention: Duration,
    duplicate_window: Duration,
    replicas: usize,
) -> Result<Stream, StreamError> {
    js.get_or_create_stream(stream::Config {
        name: FINDINGS_STREAM.into(),
        description: Some("nhiwatch findings".into()),
        subjects: vec![FINDINGS_SUBJECT.into()],
        max_age: retention,
        duplicate_window,
        num_replicas: replicas,
        compression: Some(stream::Compression::S2),
        ..Default::default()
    })
    .await
    .map_err(|err| StreamError::nats(format!("cannot create {FINDINGS_STREAM}"), err))
}

/// The leases bucket; an entry not renewed within `ttl` disappears.
pub async fn leases(
    js: &Context,
    ttl: Duration,
    replicas: usize,
) -> Result<kv::Store, StreamError> {
    if let Ok(store) = js.get_key_value(LEASES_BUCKET).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: LEASES_BUCKET.into(),
        description: "nhiwatch worker memberships and partition leases".into(),
        history: 1,
        max_age: ttl,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|err| StreamError::nats(format!("cannot create the bucket {LEASES_BUCKET}"), err))
}

/// The profiles object store.
pub async fn profiles(
    js: &Context,
    replicas: usize,
) -> Result<object_store::ObjectStore, StreamError> {
    if let Ok(store) = js.get_object_store(PROFILES_BUCKET).await {
        return Ok(store);
    }
    js.create_object_store(object_store::Config {
        bucket: PROFILES_BUCKET.into(),
        description: Some("nhiwatch identity profiles per partition".into()),
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|err| {
        StreamError::nats(
            format!("cannot create the object store {PROFILES_BUCKET}"),
            err,
        )
    })
}

/// The durable consumer name of a partition.
pub fn consumer_name(partition: u32) -> String {
    format!("partition-{partition:04}")
}

/// The durable consumer of a partition, delivering from stream sequence `from` (1: the start).
///
/// Acknowledgement is cumulative ([`AckPolicy::All`]): a worker acknowledges the last message of
/// each batch once the whole batch is committed, which acknowledges every message before it.
/// That is one acknowledgement per batch instead of one per event (JetStream spends more on
/// acknowledgements than on delivery), and it is safe because a worker processes a partition
/// strictly in order: a pull request delivers messages without gaps, the next is fetched only
/// after the batch before it is acknowledged, and any interruption re-creates the consumer from
/// the last committed sequence.
pub fn consumer_config(
    partition: u32,
    from: u64,
    ack_wait: Duration,
    max_ack_pending: i64,
) -> pull::Config {
    pull::Config {
        durable_name: Some(consumer_name(partition)),
        description: Some(format!("nhiwatch partition {partition}")),
        filter_subject: subject(partition),
        deliver_policy: if from <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: from,
            }
        },
        ack_policy: AckPolicy::All,
        ack_wait,
        max_ack_pending,
        ..Default::default()
    }
}
