//! The routes: sign-in, the pages (rendered off the async threads), triage, export, the data
//! version, the static files, and the headers every answer carries.

use std::fmt::Write;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;

use crate::auth::{self, Denied, Need, Refusal, Sessions, Viewer};
use crate::html::{esc, href};
use crate::pages::{self, layout, w, Chrome, Ctx, Nav};
use crate::triage::{Mark, Record, Triage, MAX_NOTE_CHARS};
use crate::{Authenticate, Benign, BenignHook, Settings, UiError};

const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const ICON: &str = include_str!("../assets/icon.svg");

/// The Content-Security-Policy of every answer: nothing inline, nothing from elsewhere.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A hash of the static files, in their URLs, so that browsers may cache them for good.
pub(crate) fn asset_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hasher = blake3::Hasher::new();
        for file in [APP_JS, APP_CSS, ICON] {
            hasher.update(file.as_bytes());
        }
        hasher.finalize().to_hex()[..16].to_owned()
    })
}

/// Everything the handlers share.
pub(crate) struct App {
    ctx: Ctx,
    auth: Option<Authenticate>,
    sessions: Sessions,
    tls: bool,
    benign: Option<BenignHook>,
}

type Shared = Arc<App>;

pub(crate) fn router(settings: Settings) -> Result<axum::Router, UiError> {
    let Settings {
        store,
        policy,
        auth,
        tls,
        benign,
    } = settings;
    let dir = store
        .path()
        .parent()
        .map(|d| d.to_path_buf())
        .unwrap_or_default();
    let triage = Triage::open(&dir).map_err(|source| UiError::Triage {
        path: dir.join(crate::triage::FILE_NAME),
        source,
    })?;
    let app = Arc::new(App {
        ctx: Ctx::new(store, policy, triage),
        auth,
        sessions: Sessions::default(),
        tls,
        benign,
    });
    teach_benign_marks(&app);
    let read = Router::new()
        .route("/ui/", get(overview))
        .route("/ui/findings", get(findings))
        .route("/ui/identity", get(identity))
        .route("/ui/finding", get(finding))
        .route("/ui/finding.json", get(export))
        .route("/ui/api/version", get(version))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            require_read,
        ));
    let open = Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/finding/mark", post(mark))
        .route(
            "/ui/static/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/static/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/static/icon.svg",
            get(|| async { asset(ICON, "image/svg+xml") }),
        );
    Ok(read
        .merge(open)
        .layer(middleware::map_response(security_headers))
        .with_state(app))
}

/// The headers every answer of the UI carries.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

/// Pages and reads need the `read` scope: a bearer token or a session. A browser without one
/// is sent to sign in, and brought back afterwards.
async fn require_read(State(app): State<Shared>, mut request: Request, next: Next) -> Response {
    match auth::admit(
        app.auth.as_ref(),
        &app.sessions,
        request.headers(),
        Need::Read,
        Instant::now(),
    ) {
        Ok(viewer) => {
            request.extensions_mut().insert(viewer);
            next.run(request).await
        }
        Err(Refusal::SignIn)
            if request.method() == Method::GET && !request.uri().path().starts_with("/ui/api/") =>
        {
            let here = request
                .uri()
                .path_and_query()
                .map_or("/ui/", |p| p.as_str())
                .to_owned();
            see_other(&href("/ui/login", &[("next", &here)]).replace("&amp;", "&"))
        }
        Err(refusal) => refused(refusal),
    }
}

fn refused(refusal: Refusal) -> Response {
    let (status, text) = match refusal {
        Refusal::SignIn => (
            StatusCode::UNAUTHORIZED,
            "Sign in at /ui/login, or send an API token as `Authorization: Bearer TOKEN`.",
        ),
        Refusal::Denied(Denied::Invalid) => {
            (StatusCode::UNAUTHORIZED, "The API token is not valid.")
        }
        Refusal::Denied(Denied::Forbidden) => (
            StatusCode::FORBIDDEN,
            "This token lacks the scope this needs.",
        ),
        Refusal::Denied(Denied::RateLimited) => (
            StatusCode::TOO_MANY_REQUESTS,
            "This token is over its request rate; retry shortly.",
        ),
    };
    let mut response = (status, text).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"nhiwatch\""),
        );
    }
    response
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response(),
        Err(_) => Redirect::to("/ui/").into_response(),
    }
}

/// Renders a page on a blocking thread (store reads block); `None` becomes a 404 page.
async fn page<P, F>(app: Shared, viewer: Viewer, params: P, render: F) -> Response
where
    P: Send + 'static,
    F: FnOnce(&Ctx, &P, &Chrome) -> Result<Option<String>, nhiwatch_store::StoreError>
        + Send
        + 'static,
{
    let result = tokio::task::spawn_blocking(move || {
        let chrome = Chrome {
            who: viewer.who,
            can_triage: viewer.can_triage,
            version: app.ctx.version()?,
        };
        let html = render(&app.ctx, &params, &chrome)?;
        Ok::<_, nhiwatch_store::StoreError>(html.ok_or(chrome))
    })
    .await;
    match result {
        Ok(Ok(Ok(html))) => html_response(StatusCode::OK, html),
        Ok(Ok(Err(chrome))) => html_response(
            StatusCode::NOT_FOUND,
            layout(
                "Not found",
                Nav::Other,
                &chrome,
                r#"<h1>Not found</h1><p>The store holds no such item. <a href="/ui/">Back to the identities</a></p>"#,
            ),
        ),
        Ok(Err(err)) => internal(&err.to_string()),
        Err(err) => internal(&err.to_string()),
    }
}

fn internal(cause: &str) -> Response {
    eprintln!("nhiwatch: the UI could not read the evidence store: {cause}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "The evidence store could not be read; the server log has the cause.",
    )
        .into_response()
}

fn html_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

async fn overview(
    State(app): State<Shared>,
    Extension(viewer): Extension<Viewer>,
    Query(params): Query<pages::overview::Params>,
) -> Response {
    page(app, viewer, params, |ctx, p, chrome| {
        pages::overview::render(ctx, p, chrome).map(Some)
    })
    .await
}

async fn findings(
    State(app): State<Shared>,
    Extension(viewer): Extension<Viewer>,
    Query(params): Query<pages::findings::Params>,
) -> Response {
    page(app, viewer, params, |ctx, p, chrome| {
        pages::findings::render(ctx, p, chrome).map(Some)
    })
    .await
}

async fn identity(
    State(app): State<Shared>,
    Extension(viewer): Extension<Viewer>,
    Query(params): Query<pages::identity::Params>,
) -> Response {
    page(app, viewer, params, pages::identity::render).await
}

async fn finding(
    State(app): State<Shared>,
    Extension(viewer): Extension<Viewer>,
    Query(params): Query<pages::finding::Params>,
) -> Response {
    page(app, viewer, params, pages::finding::render).await
}

async fn export(
    State(app): State<Shared>,
    Query(params): Query<pages::finding::Params>,
) -> Response {
    let id = params.id.clone();
    let result =
        tokio::task::spawn_blocking(move || pages::finding::export(&app.ctx, &params)).await;
    match result {
        Ok(Ok(Some(value))) => {
            let name: String = id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(64)
                .collect();
            let body = serde_json::to_vec_pretty(&value).unwrap_or_default();
            (
                [
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"finding-{name}.json\""),
                    ),
                ],
                body,
            )
                .into_response()
        }
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, "no such finding").into_response(),
        Ok(Err(err)) => internal(&err.to_string()),
        Err(err) => internal(&err.to_string()),
    }
}

async fn version(State(app): State<Shared>) -> Response {
    match tokio::task::spawn_blocking(move || app.ctx.version()).await {
        Ok(Ok(version)) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "version": version }).to_string(),
        )
            .into_response(),
        Ok(Err(err)) => internal(&err.to_string()),
        Err(err) => internal(&err.to_string()),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginParams {
    next: String,
}

async fn login_page(State(app): State<Shared>, Query(params): Query<LoginParams>) -> Response {
    if app.auth.is_none() {
        return see_other(auth::safe_next(&params.next));
    }
    html_response(StatusCode::OK, login_html(&params.next, None))
}

fn login_html(next: &str, error: Option<&str>) -> String {
    let mut main = String::from(r#"<h1>Sign in</h1>"#);
    if let Some(error) = error {
        w!(main, r#"<p class="notice" role="alert">{}</p>"#, esc(error));
    }
    w!(
        main,
        r#"<form class="login" action="/ui/login" method="post"><input type="hidden" name="next" value="{}"><label for="token">API token (read scope; admin to triage)</label><input id="token" name="token" type="password" autocomplete="current-password" required autofocus><button type="submit">Sign in</button></form><p class="muted">The token is checked once; the browser then keeps only a session cookie (12 hours, this site only).</p>"#,
        esc(auth::safe_next(next))
    );
    layout("Sign in", Nav::Other, &Chrome::default(), &main)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoginForm {
    token: String,
    next: String,
}

async fn login(
    State(app): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !auth::same_origin(&headers, app.tls) {
        return cross_origin();
    }
    let Some(check) = app.auth.clone() else {
        return see_other(auth::safe_next(&form.next));
    };
    let token = form.token.trim().to_owned();
    let checked = tokio::task::spawn_blocking(move || {
        check(&token, Need::Read).map(|who| (who, check(&token, Need::Triage).is_ok()))
    })
    .await;
    let (who, can_triage) = match checked {
        Ok(Ok(found)) => found,
        Ok(Err(denied)) => {
            let (status, why) = match denied {
                Denied::Invalid => (StatusCode::UNAUTHORIZED, "That token is not valid."),
                Denied::Forbidden => (StatusCode::FORBIDDEN, "That token lacks the read scope."),
                Denied::RateLimited => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "That token is over its request rate; try again shortly.",
                ),
            };
            return html_response(status, login_html(&form.next, Some(why)));
        }
        Err(err) => return internal(&err.to_string()),
    };
    let id = match app.sessions.open(who, can_triage, Instant::now()) {
        Ok(id) => id,
        Err(err) => return internal(&err),
    };
    let cookie = format!(
        "{}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        auth::COOKIE,
        auth::SESSION_TTL.as_secs(),
        if app.tls { "; Secure" } else { "" }
    );
    let mut response = see_other(auth::safe_next(&form.next));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn cross_origin() -> Response {
    (
        StatusCode::FORBIDDEN,
        "This form must be sent from a page of this server (the Origin header did not match).",
    )
        .into_response()
}

async fn logout(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if !auth::same_origin(&headers, app.tls) {
        return cross_origin();
    }
    if let Some(id) = auth::session_cookie(&headers) {
        app.sessions.close(id);
    }
    let mut response = see_other("/ui/login");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "nhiwatch_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MarkForm {
    id: String,
    identity: String,
    mark: String,
    note: String,
}

/// Hands every finding whose latest mark is benign to the [`BenignHook`] again, on a blocking
/// thread (inline when there is no runtime), so that what a mark taught after the engine's
/// last snapshot is learned again after a crash.
fn teach_benign_marks(app: &Shared) {
    if app.benign.is_none() {
        return;
    }
    let app = Arc::clone(app);
    let teach = move || {
        let Some(hook) = &app.benign else { return };
        for (id, identity) in app.ctx.triage.benign() {
            match app.ctx.finding(&id, &identity) {
                Ok(Some(finding)) => hook(&finding, Benign::AtStart),
                Ok(None) => {}
                Err(err) => eprintln!("nhiwatch: cannot read benign finding {id}: {err}"),
            }
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(teach)),
        Err(_) => teach(),
    }
}

/// Acknowledges a finding or marks it benign (teaching the baseline), then shows the finding
/// again.
async fn mark(
    State(app): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<MarkForm>,
) -> Response {
    let viewer = match auth::admit(
        app.auth.as_ref(),
        &app.sessions,
        &headers,
        Need::Triage,
        Instant::now(),
    ) {
        Ok(viewer) => viewer,
        Err(refusal) => return refused(refusal),
    };
    if viewer.by_cookie && !auth::same_origin(&headers, app.tls) {
        return cross_origin();
    }
    let Some(mark) = Mark::parse(&form.mark) else {
        return (
            StatusCode::BAD_REQUEST,
            "`mark` must be `acknowledged` or `benign`",
        )
            .into_response();
    };
    let back = href(
        "/ui/finding",
        &[("id", &form.id), ("identity", &form.identity)],
    )
    .replace("&amp;", "&");
    let result = tokio::task::spawn_blocking(move || {
        let Some(finding) = app.ctx.finding(&form.id, &form.identity)? else {
            return Ok(None);
        };
        let record = Record {
            finding: finding.id.clone(),
            identity: finding.identity.clone(),
            mark,
            by: viewer.who.unwrap_or_else(|| "anonymous".into()),
            time: nhiwatch_model::Timestamp::now(),
            note: form.note.trim().chars().take(MAX_NOTE_CHARS).collect(),
        };
        let path = app.ctx.triage.path().display().to_string();
        let recorded = app.ctx.triage.record(record);
        if let (Ok(()), Mark::Benign, Some(teach)) = (&recorded, mark, &app.benign) {
            teach(&finding, Benign::JustMarked);
        }
        Ok::<_, nhiwatch_store::StoreError>(Some(
            recorded.map_err(|e| format!("cannot write {path}: {e}")),
        ))
    })
    .await;
    match result {
        Ok(Ok(Some(Ok(())))) => see_other(&back),
        Ok(Ok(Some(Err(err)))) => internal(&err),
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, "no such finding").into_response(),
        Ok(Err(err)) => internal(&err.to_string()),
        Err(err) => internal(&err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;

    use crate::{Benign, BenignHook};
    use axum::http::{header, Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::pages::tests::{fixture, DEPLOYER, FINDING, HOSTILE};
    use crate::{Authenticate, Denied, Need, Settings};

    const HOST: &str = "127.0.0.1:7410";
    const ORIGIN: &str = "http://127.0.0.1:7410";

    fn auth() -> Authenticate {
        Arc::new(|token: &str, need: Need| match (token, need) {
            ("reader-token-0123456789", Need::Read) => Ok("reader".into()),
            ("reader-token-0123456789", Need::Triage) => Err(Denied::Forbidden),
            ("admin-token-0123456789", _) => Ok("admin".into()),
            _ => Err(Denied::Invalid),
        })
    }

    struct Answer {
        status: StatusCode,
        headers: axum::http::HeaderMap,
        body: String,
    }

    async fn send(app: &axum::Router, request: Request<Body>) -> Answer {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    fn get(path: &str, extra: &[(&'static str, &str)]) -> Request<Body> {
        let mut request = Request::get(path).header(header::HOST, HOST);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        request.body(Body::empty()).unwrap()
    }

    fn post(path: &str, form: &str, extra: &[(&'static str, &str)]) -> Request<Body> {
        let mut request = Request::post(path)
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        request.body(Body::from(form.to_owned())).unwrap()
    }

    /// Signs in with a token; the cookie header to send afterwards.
    async fn sign_in(app: &axum::Router, token: &str) -> String {
        let answer = send(
            app,
            post(
                "/ui/login",
                &format!("token={token}&next=%2Fui%2Ffindings"),
                &[("origin", ORIGIN)],
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        assert_eq!(answer.headers[header::LOCATION], "/ui/findings");
        let cookie = answer.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            cookie.contains("; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=43200"),
            "{cookie}"
        );
        assert!(!cookie.contains(token), "the token is not handed back");
        cookie.split(';').next().unwrap().to_owned()
    }

    fn router(f: &crate::pages::tests::Fixture, auth: Option<Authenticate>) -> axum::Router {
        taught_router(f, auth, None)
    }

    fn taught_router(
        f: &crate::pages::tests::Fixture,
        auth: Option<Authenticate>,
        benign: Option<BenignHook>,
    ) -> axum::Router {
        super::router(Settings {
            store: Arc::clone(&f.ctx.store),
            policy: f.ctx.policy.clone(),
            auth,
            tls: false,
            benign,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_benign_mark_is_taught_at_once_and_again_at_every_start() {
        let f = fixture();
        let taught = Arc::new(std::sync::Mutex::new(Vec::<(String, Benign)>::new()));
        let hook: BenignHook = {
            let taught = Arc::clone(&taught);
            Arc::new(move |finding, when| taught.lock().unwrap().push((finding.id.clone(), when)))
        };
        let app = taught_router(&f, Some(auth()), Some(Arc::clone(&hook)));
        let bearer = [("authorization", "Bearer admin-token-0123456789")];
        let identity: String = DEPLOYER.replace(':', "%3A").replace('/', "%2F");
        for mark in ["acknowledged", "benign", "acknowledged"] {
            let form = format!("id={FINDING}&identity={identity}&mark={mark}");
            let answer = send(&app, post("/ui/finding/mark", &form, &bearer)).await;
            assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        }
        assert_eq!(
            *taught.lock().unwrap(),
            [(FINDING.to_owned(), Benign::JustMarked)],
            "only the benign mark"
        );

        let form = format!("id={FINDING}&identity={identity}&mark=benign");
        send(&app, post("/ui/finding/mark", &form, &bearer)).await;
        taught.lock().unwrap().clear();
        // A restart: the UI reads the marks back and teaches the benign one again.
        drop(taught_router(&f, None, Some(hook)));
        for _ in 0..500 {
            if !taught.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            *taught.lock().unwrap(),
            [(FINDING.to_owned(), Benign::AtStart)],
            "taught again at start"
        );
    }

    #[tokio::test]
    async fn pages_need_a_token_and_carry_a_strict_csp() {
        let f = fixture();
        let app = router(&f, Some(auth()));
        let answer = send(&app, get("/ui/identity?id=a%26b", &[])).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER);
        assert_eq!(
            answer.headers[header::LOCATION],
            "/ui/login?next=%2Fui%2Fidentity%3Fid%3Da%2526b"
        );
        assert_eq!(
            send(&app, get("/ui/api/version", &[])).await.status,
            StatusCode::UNAUTHORIZED
        );
        let wrong = send(
            &app,
            get(
                "/ui/",
                &[("authorization", "Bearer wrong-token-0123456789")],
            ),
        )
        .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

        let answer = send(
            &app,
            get(
                "/ui/",
                &[("authorization", "Bearer reader-token-0123456789")],
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers[header::CONTENT_SECURITY_POLICY], super::CSP);
        assert_eq!(answer.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            answer.headers[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(answer.body.contains("role/ci-deployer"));
        assert!(!answer.body.contains("<script>alert"));

        let js = send(
            &app,
            get(
                &format!("/ui/static/app.js?v={}", super::asset_version()),
                &[],
            ),
        )
        .await;
        assert_eq!(js.status, StatusCode::OK);
        assert_eq!(
            js.headers[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(js.headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable"));
        assert_eq!(js.headers[header::CONTENT_SECURITY_POLICY], super::CSP);
        let home = send(&app, get("/", &[])).await;
        assert_eq!(home.headers[header::LOCATION], "/ui/");
        let missing = send(
            &app,
            get(
                "/ui/identity?id=nobody",
                &[("authorization", "Bearer reader-token-0123456789")],
            ),
        )
        .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        let version = send(
            &app,
            get(
                "/ui/api/version",
                &[("authorization", "Bearer reader-token-0123456789")],
            ),
        )
        .await;
        assert!(
            version.body.starts_with(r#"{"version":"0-"#),
            "{}",
            version.body
        );
    }

    #[tokio::test]
    async fn sign_in_keeps_a_session_and_refuses_other_origins() {
        let f = fixture();
        let app = router(&f, Some(auth()));
        let page = send(&app, get("/ui/login?next=%2Fui%2Ffindings", &[])).await;
        assert!(page.body.contains(r#"name="next" value="/ui/findings""#));
        let evil = send(
            &app,
            post(
                "/ui/login",
                "token=reader-token-0123456789",
                &[("origin", "http://evil.example")],
            ),
        )
        .await;
        assert_eq!(evil.status, StatusCode::FORBIDDEN);
        let no_origin = send(
            &app,
            post("/ui/login", "token=reader-token-0123456789", &[]),
        )
        .await;
        assert_eq!(no_origin.status, StatusCode::FORBIDDEN);
        let bad = send(&app, post("/ui/login", "token=nope", &[("origin", ORIGIN)])).await;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
        assert!(bad.body.contains("That token is not valid."));
        let escape = send(
            &app,
            post(
                "/ui/login",
                "token=reader-token-0123456789&next=https%3A%2F%2Fevil.example%2F",
                &[("origin", ORIGIN)],
            ),
        )
        .await;
        assert_eq!(escape.headers[header::LOCATION], "/ui/");

        let cookie = sign_in(&app, "reader-token-0123456789").await;
        let page = send(&app, get("/ui/findings", &[("cookie", &cookie)])).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains(r#"<span class="who">reader</span>"#));
        let out = send(
            &app,
            post("/ui/logout", "", &[("cookie", &cookie), ("origin", ORIGIN)]),
        )
        .await;
        assert_eq!(out.status, StatusCode::SEE_OTHER);
        assert_eq!(
            send(&app, get("/ui/findings", &[("cookie", &cookie)]))
                .await
                .status,
            StatusCode::SEE_OTHER
        );
    }

    #[tokio::test]
    async fn triage_needs_the_scope_and_the_origin_and_is_durable() {
        let f = fixture();
        let app = router(&f, Some(auth()));
        let identity: String = DEPLOYER.replace(':', "%3A").replace('/', "%2F");
        let form = format!("id={FINDING}&identity={identity}&mark=benign&note=planned+%3Cb%3E");
        let reader = sign_in(&app, "reader-token-0123456789").await;
        let page = send(
            &app,
            get(
                &format!("/ui/finding?id={FINDING}&identity={identity}"),
                &[("cookie", &reader)],
            ),
        )
        .await;
        assert!(!page.body.contains(r#"<form class="triage""#));
        let refused = send(
            &app,
            post(
                "/ui/finding/mark",
                &form,
                &[("cookie", &reader), ("origin", ORIGIN)],
            ),
        )
        .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);

        let admin = sign_in(&app, "admin-token-0123456789").await;
        let forged = send(
            &app,
            post(
                "/ui/finding/mark",
                &form,
                &[("cookie", &admin), ("origin", "http://evil.example")],
            ),
        )
        .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        let cross = send(
            &app,
            post(
                "/ui/finding/mark",
                &form,
                &[
                    ("cookie", &admin),
                    ("origin", ORIGIN),
                    ("sec-fetch-site", "same-site"),
                ],
            ),
        )
        .await;
        assert_eq!(cross.status, StatusCode::FORBIDDEN);
        let done = send(
            &app,
            post(
                "/ui/finding/mark",
                &form,
                &[("cookie", &admin), ("origin", ORIGIN)],
            ),
        )
        .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        assert!(done.headers[header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with(&format!("/ui/finding?id={FINDING}&identity=arn%3Aaws")));
        let line = std::fs::read_to_string(f.dir.path().join(crate::triage::FILE_NAME)).unwrap();
        assert!(
            line.contains(r#""mark":"benign","by":"admin""#) && line.contains("planned <b>"),
            "{line}"
        );
        let page = send(
            &app,
            get(
                &format!("/ui/finding?id={FINDING}&identity={identity}"),
                &[("cookie", &admin)],
            ),
        )
        .await;
        assert!(page.body.contains("planned &lt;b&gt;"));

        // A script with a bearer token needs no Origin; an unknown finding or mark is refused.
        let bearer = [("authorization", "Bearer admin-token-0123456789")];
        let ack = format!("id={FINDING}&identity={identity}&mark=acknowledged");
        assert_eq!(
            send(&app, post("/ui/finding/mark", &ack, &bearer))
                .await
                .status,
            StatusCode::SEE_OTHER
        );
        let unknown = send(
            &app,
            post("/ui/finding/mark", "id=f-x&mark=benign", &bearer),
        )
        .await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        let bad = send(
            &app,
            post(
                "/ui/finding/mark",
                &format!("id={FINDING}&mark=delete"),
                &bearer,
            ),
        )
        .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);

        let export = send(
            &app,
            get(
                &format!("/ui/finding.json?id={FINDING}&identity={identity}"),
                &bearer,
            ),
        )
        .await;
        assert_eq!(
            export.headers[header::CONTENT_DISPOSITION],
            format!("attachment; filename=\"finding-{FINDING}.json\"")
        );
        let json: serde_json::Value = serde_json::from_str(&export.body).unwrap();
        assert_eq!(json["triage"][1]["mark"], "acknowledged");
    }

    #[tokio::test]
    async fn without_authentication_the_pages_are_open() {
        let f = fixture();
        let app = router(&f, None);
        let page = send(&app, get(&format!("/ui/identity?id={}", "%3Cscript%3Ealert%281%29%3C%2Fscript%3E%1B%5B31m%3Cimg%20src%3Dx%20onerror%3Dalert%282%29%3E"), &[])).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.body.contains(HOSTILE));
        assert!(!page.body.contains("<img"));
        assert_eq!(
            send(&app, get("/ui/login", &[])).await.headers[header::LOCATION],
            "/ui/"
        );
    }
}
