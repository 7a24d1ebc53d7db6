//! Who is asking: API tokens (checked by the server's [`Authenticate`] function), browser
//! sessions made from them, and the same-origin check that guards every `POST`.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};

/// What a request needs a token to allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Reading pages and exports (the server's `read` scope).
    Read,
    /// Acknowledging findings and marking them benign, which teaches the baseline (the server
    /// maps it to `admin`).
    Triage,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// No configured token matches.
    Invalid,
    /// The token is valid but lacks the scope.
    Forbidden,
    /// The token is over its request rate.
    RateLimited,
}

/// Checks a presented API token for a need: the token's name, or why not.
pub type Authenticate = Arc<dyn Fn(&str, Need) -> Result<String, Denied> + Send + Sync>;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "nhiwatch_session";

/// How long a session lasts after sign-in.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 4096;

/// Who is looking at a page.
#[derive(Clone, Debug)]
pub(crate) struct Viewer {
    /// The token's name; `None` when the server runs without authentication.
    pub who: Option<String>,
    /// Whether they may acknowledge findings and mark them benign.
    pub can_triage: bool,
    /// Whether they came with the session cookie (a browser): their `POST`s need the
    /// same-origin check.
    pub by_cookie: bool,
}

/// Why a request is not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No credential, or an unknown or expired one: sign in.
    SignIn,
    /// A token was refused.
    Denied(Denied),
}

#[derive(Clone, Debug)]
struct Session {
    who: String,
    can_triage: bool,
    expires: Instant,
}

/// Browser sessions, by the BLAKE3 hash of their id (the id itself is only in the cookie).
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// Opens a session; its id (64 hex digits) for the cookie.
    pub fn open(&self, who: String, can_triage: bool, now: Instant) -> Result<String, String> {
        let mut id = [0u8; 32];
        getrandom::fill(&mut id).map_err(|e| format!("no randomness for a session id: {e}"))?;
        let mut text = String::with_capacity(64);
        for byte in id {
            let _ = write!(text, "{byte:02x}");
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            *blake3::hash(text.as_bytes()).as_bytes(),
            Session {
                who,
                can_triage,
                expires: now + SESSION_TTL,
            },
        );
        Ok(text)
    }

    fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let key = *blake3::hash(id.as_bytes()).as_bytes();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&key) {
            Some(session) if session.expires > now => Some(session.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        let key = *blake3::hash(id.as_bytes()).as_bytes();
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
}

/// The value of the session cookie, if the request has one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Admits a request for `need`: a bearer token first, then the session cookie.
pub(crate) fn admit(
    auth: Option<&Authenticate>,
    sessions: &Sessions,
    headers: &HeaderMap,
    need: Need,
    now: Instant,
) -> Result<Viewer, Refusal> {
    let Some(auth) = auth else {
        return Ok(Viewer {
            who: None,
            can_triage: true,
            by_cookie: false,
        });
    };
    if let Some(token) = bearer(headers) {
        let who = auth(token, need).map_err(Refusal::Denied)?;
        return Ok(Viewer {
            who: Some(who),
            can_triage: need == Need::Triage,
            by_cookie: false,
        });
    }
    let session = session_cookie(headers)
        .and_then(|id| sessions.get(id, now))
        .ok_or(Refusal::SignIn)?;
    if need == Need::Triage && !session.can_triage {
        return Err(Refusal::Denied(Denied::Forbidden));
    }
    Ok(Viewer {
        who: Some(session.who),
        can_triage: session.can_triage,
        by_cookie: true,
    })
}

/// Whether a `POST` comes from a page of this server: its `Origin` names this server (scheme,
/// host and port as the request's `Host`), and `Sec-Fetch-Site`, when sent, says same-origin.
/// A request without `Origin` is refused: every browser in use sends it on `POST`.
pub(crate) fn same_origin(headers: &HeaderMap, tls: bool) -> bool {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if site != "same-origin" {
            return false;
        }
    }
    let (Some(host), Some(origin)) = (text(header::HOST), text(header::ORIGIN)) else {
        return false;
    };
    let scheme = if tls { "https://" } else { "http://" };
    origin
        .strip_prefix(scheme)
        .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
}

/// Where to go after signing in: a path of the UI, never another site.
pub(crate) fn safe_next(next: &str) -> &str {
    let ok = next.starts_with("/ui/")
        && !next.starts_with("//")
        && !next.contains("\\")
        && !next.chars().any(|c| c.is_control());
    if ok {
        next
    } else {
        "/ui/"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn auth() -> Authenticate {
        Arc::new(|token: &str, need: Need| match (token, need) {
            ("reader-token", Need::Read) => Ok("reader".into()),
            ("reader-token", Need::Triage) => Err(Denied::Forbidden),
            ("admin-token", _) => Ok("admin".into()),
            _ => Err(Denied::Invalid),
        })
    }

    #[test]
    fn bearer_tokens_and_sessions_are_admitted_by_need() {
        let (auth, sessions, now) = (auth(), Sessions::default(), Instant::now());
        let read = |h: &HeaderMap, need| admit(Some(&auth), &sessions, h, need, now);
        assert_eq!(
            read(&headers(&[]), Need::Read).unwrap_err(),
            Refusal::SignIn
        );
        let reader = headers(&[("authorization", "Bearer reader-token")]);
        assert_eq!(
            read(&reader, Need::Read).unwrap().who.as_deref(),
            Some("reader")
        );
        assert_eq!(
            read(&reader, Need::Triage).unwrap_err(),
            Refusal::Denied(Denied::Forbidden)
        );
        let wrong = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(
            read(&wrong, Need::Read).unwrap_err(),
            Refusal::Denied(Denied::Invalid)
        );

        let id = sessions.open("reader".into(), false, now).unwrap();
        assert_eq!(id.len(), 64);
        let cookie = headers(&[("cookie", &format!("theme=dark; {COOKIE}={id}"))]);
        let viewer = read(&cookie, Need::Read).unwrap();
        assert!(viewer.by_cookie && !viewer.can_triage);
        assert_eq!(
            read(&cookie, Need::Triage).unwrap_err(),
            Refusal::Denied(Denied::Forbidden)
        );
        let forged = headers(&[("cookie", &format!("{COOKIE}={}", "0".repeat(64)))]);
        assert_eq!(read(&forged, Need::Read).unwrap_err(), Refusal::SignIn);
        // Expiry, and sign-out.
        let later = now + SESSION_TTL + Duration::from_secs(1);
        assert!(admit(Some(&auth), &sessions, &cookie, Need::Read, later).is_err());
        let id = sessions.open("admin".into(), true, now).unwrap();
        let cookie = headers(&[("cookie", &format!("{COOKIE}={id}"))]);
        assert!(read(&cookie, Need::Triage).unwrap().can_triage);
        sessions.close(&id);
        assert_eq!(read(&cookie, Need::Read).unwrap_err(), Refusal::SignIn);
    }

    #[test]
    fn without_authentication_everyone_may_do_everything() {
        let viewer = admit(
            None,
            &Sessions::default(),
            &headers(&[]),
            Need::Triage,
            Instant::now(),
        )
        .unwrap();
        assert!(viewer.who.is_none() && viewer.can_triage && !viewer.by_cookie);
    }

    #[test]
    fn posts_must_come_from_this_origin() {
        let host = ("host", "127.0.0.1:7410");
        assert!(same_origin(
            &headers(&[host, ("origin", "http://127.0.0.1:7410")]),
            false
        ));
        assert!(same_origin(
            &headers(&[
                host,
                ("origin", "http://127.0.0.1:7410"),
                ("sec-fetch-site", "same-origin")
            ]),
            false
        ));
        assert!(!same_origin(
            &headers(&[host, ("origin", "http://127.0.0.1:7410")]),
            true
        ));
        assert!(!same_origin(
            &headers(&[host, ("origin", "http://evil.example")]),
            false
        ));
        assert!(!same_origin(
            &headers(&[host, ("origin", "http://127.0.0.1:7410.evil")]),
            false
        ));
        assert!(!same_origin(&headers(&[host, ("origin", "null")]), false));
        assert!(!same_origin(&headers(&[host]), false));
        assert!(!same_origin(
            &headers(&[
                host,
                ("origin", "http://127.0.0.1:7410"),
                ("sec-fetch-site", "cross-site")
            ]),
            false
        ));
    }

    #[test]
    fn sign_in_only_returns_to_the_ui() {
        assert_eq!(safe_next("/ui/identity?id=a"), "/ui/identity?id=a");
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui\\..",
            "/metrics",
            "/ui/\n",
        ] {
            assert_eq!(safe_next(bad), "/ui/", "{bad}");
        }
    }
}
