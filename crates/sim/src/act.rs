//! One simulated action, before it is written in a provider's format.

/// What was done, in the terms of the platform that records it.
#[derive(Clone, Debug)]
pub(crate) enum What {
    /// An AWS API call, recorded by CloudTrail.
    Aws {
        /// IAM service prefix, e.g. `s3`; the event source is `<service>.amazonaws.com`.
        service: &'static str,
        /// CloudTrail `eventName`.
        op: &'static str,
        /// `requestParameters`, as (name, value) pairs.
        params: Vec<(&'static str, String)>,
        /// `additionalEventData.bytesTransferredOut`, for S3 reads.
        bytes_out: Option<u64>,
    },
    /// A Kubernetes API request, recorded by the audit log.
    K8s {
        /// The verb.
        verb: &'static str,
        /// The resource.
        resource: &'static str,
        /// The subresource, if any.
        sub: Option<&'static str>,
        /// The namespace ("" for cluster-scoped).
        namespace: String,
        /// The object name, if any.
        name: Option<String>,
    },
    /// A GitHub audit log entry.
    Github {
        /// The action, e.g. `git.clone`.
        action: &'static str,
        /// The repository, `org/name`.
        repo: String,
    },
    /// An agent's tool call, recorded as an OTLP `execute_tool` span.
    Tool {
        /// The tool name.
        tool: &'static str,
        /// The arguments, as (name, value) pairs.
        args: Vec<(&'static str, String)>,
    },
}

/// How the platform answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Ok,
    Denied,
    /// Refused with this error code (throttling, not found).
    Failed(&'static str),
}

/// Where the call came from.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub ip: String,
    pub user_agent: String,
}

/// One action of one identity.
#[derive(Clone, Debug)]
pub(crate) struct Act {
    /// Nanoseconds since the epoch.
    pub time: i64,
    /// Index of the identity in the fleet.
    pub actor: usize,
    /// Session number within the identity (a deploy, an agent run, a poll cycle).
    pub session: u32,
    pub what: What,
    pub answer: Answer,
    /// `None`: the identity's usual origin.
    pub origin: Option<Origin>,
    /// Index of the incident this act belongs to.
    pub incident: Option<usize>,
}

impl Act {
    /// An AWS call with the usual origin and a successful answer.
    pub fn aws(
        time: i64,
        actor: usize,
        session: u32,
        service: &'static str,
        op: &'static str,
    ) -> Act {
        Act {
            time,
            actor,
            session,
            what: What::Aws {
                service,
                op,
                params: Vec::new(),
                bytes_out: None,
            },
            answer: Answer::Ok,
            origin: None,
            incident: None,
        }
    }

    /// Adds a request parameter (AWS) or tool argument (agents).
    pub fn param(mut self, name: &'static str, value: impl Into<String>) -> Act {
        match &mut self.what {
            What::Aws { params, .. } | What::Tool { args: params, .. } => {
                params.push((name, value.into()))
            }
            What::K8s { .. } | What::Github { .. } => {}
        }
        self
    }

    /// Sets the bytes an S3 read sent out.
    pub fn bytes(mut self, n: u64) -> Act {
        if let What::Aws { bytes_out, .. } = &mut self.what {
            *bytes_out = Some(n);
        }
        self
    }

    /// Sets the answer.
    pub fn answer(mut self, answer: Answer) -> Act {
        self.answer = answer;
        self
    }
}

/// Nanoseconds in a second, minute, hour and day.
pub(crate) const SEC: i64 = 1_000_000_000;
pub(crate) const MIN: i64 = 60 * SEC;
pub(crate) const HOUR: i64 = 60 * MIN;
pub(crate) const DAY: i64 = 24 * HOUR;
