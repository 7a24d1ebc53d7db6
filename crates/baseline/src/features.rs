//! What a profile learns from one event: its keys, worked out once and without allocating.

use nhiwatch_model::{ActionClass, Event, Outcome};

use crate::hash::{self, ResourceKeys};

/// Nanoseconds per day.
pub const DAY: i64 = 86_400 * 1_000_000_000;

/// One event's features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Event time, nanoseconds since the epoch.
    pub time: i64,
    /// Days since 1970-01-01.
    pub day: u32,
    /// Hour of the week, 0 = Monday 00:00 UTC.
    pub hour_of_week: u8,
    /// False when the source had no timestamp (the time is when it was read): such events
    /// say nothing about hours or rates and are left out of both.
    pub timed: bool,
    /// The action's key ([`hash::key`] of `service:Operation`).
    pub action: u64,
    /// The action's class.
    pub class: ActionClass,
    /// How the provider answered.
    pub outcome: Outcome,
    /// The resource's keys, when the event names one.
    pub resource: Option<ResourceKeys>,
    /// The source network's key, 0 when the event has no source address.
    pub network: u64,
    /// The user-agent family's key, 0 when the event has no user agent.
    pub agent: u64,
    /// The session's key, 0 when the event has no session.
    pub session: u64,
    /// Bytes sent out, 0 when not reported.
    pub bytes: u64,
}

/// The last source address and user agent of one identity and their keys: an identity mostly
/// calls from the same place with the same client, so their keys are worked out again only
/// when the text changes (a plain hash of the text is cheaper than parsing an address or
/// scanning a user agent).
#[derive(Clone, Copy, Debug, Default)]
pub struct OriginCache {
    ip_text: u64,
    network: u64,
    agent_text: u64,
    agent: u64,
}

impl OriginCache {
    fn network(&mut self, src_ip: &str) -> u64 {
        let text = hash::key(src_ip);
        if text != self.ip_text {
            self.ip_text = text;
            self.network = hash::network(src_ip);
        }
        self.network
    }

    fn agent(&mut self, user_agent: &str) -> u64 {
        let text = hash::key(user_agent);
        if text != self.agent_text {
            self.agent_text = text;
            self.agent = hash::agent_family(user_agent);
        }
        self.agent
    }
}

impl Features {
    /// The features of `event`, whose action's key the caller already has (detectors cache
    /// it per interned action).
    pub fn of(event: &Event<'_>, action: u64) -> Features {
        Features::of_cached(event, action, &mut OriginCache::default())
    }

    /// [`Features::of`], with the identity's origin cache.
    pub fn of_cached(event: &Event<'_>, action: u64, cache: &mut OriginCache) -> Features {
        let time = event.time.unix_nanos();
        Features {
            time,
            day: time.div_euclid(DAY).clamp(0, i64::from(u32::MAX)) as u32,
            hour_of_week: event.time.hour_of_week(),
            timed: !event.time_inferred,
            action,
            class: event.action_class,
            outcome: event.outcome,
            resource: event
                .resource
                .as_deref()
                .filter(|r| !r.is_empty())
                .map(hash::resource),
            network: event
                .src_ip
                .as_deref()
                .filter(|s| !s.is_empty())
                .map_or(0, |ip| cache.network(ip)),
            agent: event
                .user_agent
                .as_deref()
                .filter(|s| !s.is_empty())
                .map_or(0, |ua| cache.agent(ua)),
            session: event
                .identity
                .session
                .as_deref()
                .filter(|s| !s.is_empty())
                .map_or(0, hash::key),
            bytes: event.bytes_out.unwrap_or(0),
        }
    }

    /// Whether the action reads or lists (what enumeration counts).
    pub fn is_lookup(&self) -> bool {
        matches!(self.class, ActionClass::Read | ActionClass::List)
    }

    /// Hour of the day, 0-23 UTC.
    pub fn hour_of_day(&self) -> u8 {
        self.hour_of_week % 24
    }
}
