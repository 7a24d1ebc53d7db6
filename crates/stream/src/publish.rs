//! Publishing normalised events to their partitions.
//!
//! Each event goes to `nhiwatch.events.<partition_of(identity.id)>` as nhiwatch's own JSON form
//! (what `nhiwatch normalize` writes and [`nhiwatch_decode::normalised`] reads back), with
//! `Nats-Msg-Id` = [`message_id`], so that JetStream drops a re-sent event within the stream's
//! duplicate window. Publishes are pipelined: up to [`Publisher::MAX_IN_FLIGHT`] wait for their
//! acknowledgement at once, and the oldest is awaited before another is sent. An event is
//! published once JetStream has acknowledged it (stored it, or recognised it as a duplicate).
//!
//! Events of one partition are sent over one connection in input order, and JetStream keeps
//! the order of a subject, so each identity's events reach its worker in the order they were
//! read, as `nhiwatch detect` would see them.

use std::collections::VecDeque;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use async_nats::{Client, HeaderMap};
use nhiwatch_model::Event;

use crate::layout::{Layout, CONTROL_FINISH, CONTROL_HEADER};
use crate::partition::{partition_of, subject};
use crate::StreamError;

/// Longest event id used verbatim in a message id.
const MAX_VERBATIM_ID: usize = 200;

/// The JetStream message id of an event: `<source>:<event id>`, or `<source>:b3:<hex>` (the
/// BLAKE3 of the id) when the id is longer than 200 bytes or holds anything but printable ASCII
/// (header values cannot carry line breaks). Ids are unique within a source, so this is unique.
pub fn message_id(event: &Event<'_>) -> String {
    let id = event.id.as_ref();
    let source = event.source.as_str();
    if id.len() <= MAX_VERBATIM_ID && id.bytes().all(|b| b.is_ascii_graphic()) {
        format!("{source}:{id}")
    } else {
        format!("{source}:b3:{}", blake3::hash(id.as_bytes()).to_hex())
    }
}

/// One event, ready to publish.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Its partition.
    pub partition: u32,
    /// Its deduplication id ([`message_id`]).
    pub id: String,
    /// The normalised event as JSON.
    pub payload: Vec<u8>,
}

impl Outgoing {
    /// Serialises an event for a stream of `partitions` partitions.
    pub fn event(event: &Event<'_>, partitions: u32) -> Result<Outgoing, serde_json::Error> {
        Ok(Outgoing {
            partition: partition_of(&event.identity.id, partitions),
            id: message_id(event),
            payload: serde_json::to_vec(event)?,
        })
    }
}

/// What a publisher sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishStats {
    /// Events acknowledged by JetStream (duplicates included).
    pub events: u64,
    /// Of which JetStream already held (same message id within the duplicate window).
    pub duplicates: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Events per partition.
    pub per_partition: Vec<u64>,
}

/// Publishes events to their partitions, pipelined.
pub struct Publisher {
    js: Context,
    partitions: u32,
    in_flight: VecDeque<PublishAckFuture>,
    stats: PublishStats,
}

impl Publisher {
    /// Most publishes awaiting their acknowledgement at once.
    pub const MAX_IN_FLIGHT: usize = 4096;

    /// A publisher for the events stream of `layout`, which is created if missing (an existing
    /// stream must have the same number of partitions).
    pub async fn new(client: Client, layout: &Layout) -> Result<Self, StreamError> {
        let js = async_nats::jetstream::new(client);
        layout.ensure_events(&js).await?;
        Ok(Publisher {
            js,
            partitions: layout.partitions,
            in_flight: VecDeque::with_capacity(Self::MAX_IN_FLIGHT),
            stats: PublishStats {
                per_partition: vec![0; layout.partitions as usize],
                ..PublishStats::default()
            },
        })
    }

    /// The stream's number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Sends one event (made by [`Outgoing::event`] with this publisher's partitions).
    pub async fn send(&mut self, out: Outgoing) -> Result<(), StreamError> {
        if self.in_flight.len() >= Self::MAX_IN_FLIGHT {
            self.settle_one().await?;
        }
        let partition = out.partition.min(self.partitions - 1);
        self.stats.bytes += out.payload.len() as u64;
        self.stats.per_partition[partition as usize] += 1;
        let message = PublishMessage::build()
            .payload(out.payload.into())
            .message_id(&out.id);
        let ack = self
            .js
            .send_publish(subject(partition), message)
            .await
            .map_err(|err| {
                StreamError::nats(
                    format!("cannot publish event {} to partition {partition}", out.id),
                    err,
                )
            })?;
        self.in_flight.push_back(ack);
        Ok(())
    }

    /// Marks the end of a bounded input on every partition: workers close all open episodes
    /// when they reach it ([`CONTROL_FINISH`]). `run` names this input, so that sending the
    /// marks again for the same run is deduplicated.
    pub async fn finish_partitions(&mut self, run: &str) -> Result<(), StreamError> {
        for partition in 0..self.partitions {
            if self.in_flight.len() >= Self::MAX_IN_FLIGHT {
                self.settle_one().await?;
            }
            let mut headers = HeaderMap::new();
            headers.insert(CONTROL_HEADER, CONTROL_FINISH);
            let message = PublishMessage::build()
                .headers(headers)
                .message_id(format!("finish:{run}:{partition}"));
            let ack = self
                .js
                .send_publish(subject(partition), message)
                .await
                .map_err(|err| {
                    StreamError::nats(
                        format!("cannot publish the end of input to partition {partition}"),
                        err,
                    )
                })?;
            self.in_flight.push_back(ack);
        }
        Ok(())
    }

    /// Waits for every acknowledgement; returns the counts so far.
    pub async fn flush(&mut self) -> Result<PublishStats, StreamError> {
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        Ok(self.stats.clone())
    }

    /// Counts so far (acknowledged events and duplicates lag what was sent until [`Publisher::flush`]).
    pub fn stats(&self) -> &PublishStats {
        &self.stats
    }

    async fn settle_one(&mut self) -> Result<(), StreamError> {
        let Some(ack) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let ack = ack
            .await
            .map_err(|err| StreamError::nats("JetStream did not acknowledge a publish", err))?;
        self.stats.events += 1;
        if ack.duplicate {
            self.stats.duplicates += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhiwatch_model::{Identity, Source, Timestamp};

    fn event(id: &str) -> Event<'_> {
        Event {
            id: id.into(),
            time: Timestamp(0),
            time_inferred: false,
            source: Source::K8sAudit,
            identity: Identity {
                id: "system:serviceaccount:ns:sa".into(),
                ..Identity::default()
            },
            action: "k8s:get/secrets".into(),
            action_class: Default::default(),
            resource: None,
            outcome: Default::default(),
            error: None,
            src_ip: None,
            user_agent: None,
            bytes_out: None,
            records: None,
            raw: std::borrow::Cow::Owned(
                serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            ),
        }
    }

    #[test]
    fn message_ids_are_header_safe() {
        assert_eq!(message_id(&event("a1-b2")), "k8s_audit:a1-b2");
        let odd = message_id(&event("line\nbreak"));
        assert!(
            odd.starts_with("k8s_audit:b3:") && odd.len() == 13 + 64,
            "{odd}"
        );
        assert_ne!(odd, message_id(&event("line\rbreak")));
        assert!(message_id(&event(&"x".repeat(201))).contains(":b3:"));
    }

    #[test]
    fn outgoing_is_the_normalised_form() {
        let out = Outgoing::event(&event("e1"), 12).unwrap();
        let back: Event<'_> = serde_json::from_slice(&out.payload).unwrap();
        assert_eq!(back.id, "e1");
        assert_eq!(
            out.partition,
            partition_of("system:serviceaccount:ns:sa", 12)
        );
    }
}
