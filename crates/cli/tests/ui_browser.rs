//! The web UI in a real browser: headless Chromium driven by chromedriver over the W3C
//! WebDriver protocol (plain HTTP/JSON on loopback, no client library), against the real
//! `nhiwatch serve` on a store filled by `nhiwatch simulate` and `nhiwatch ingest`.
//!
//! It signs in with a token, loads the overview, opens the riskiest identity and its finding,
//! checks that the evidence events and the decision are shown (and agree with the export),
//! acknowledges the finding, pushes an identity named like an XSS attack while the overview is
//! open and waits for the live update to show it escaped, and checks keyboard basics and that
//! nothing overflows at 1280×800 and 1920×1080. Screenshots go to `target/ui-screenshots/`
//! (also on failure, with the page's HTML).
//!
//! Needs `chromium` and `chromedriver` on the PATH (Debian: `apt-get install chromium
//! chromium-driver`); fails clearly without them unless `NHIWATCH_SKIP_BROWSER=1`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const READ_TOKEN: &str = "ui-read-token-0123456789";
const ADMIN_TOKEN: &str = "ui-admin-token-0123456789";
/// An identity that tries to script the page and recolour a terminal.
const HOSTILE: &str =
    "<script>window.__pwned=1</script>\u{1b}[31m<img src=x onerror=\"window.__pwned=2\">";
/// How the page must show it: as text, the escape character made visible.
const HOSTILE_SHOWN: &str =
    "<script>window.__pwned=1</script>\\u{1b}[31m<img src=x onerror=\"window.__pwned=2\">";

/// One HTTP/1.1 request on a fresh connection; the status and the body. The body is read by
/// its `Content-Length` or chunks (chromedriver keeps connections open whatever is asked).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let stream =
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    (&stream).write_all(head.as_bytes()).expect("writes");
    (&stream).write_all(body).expect("writes");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("a status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in `{line}`"));
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        reader.read_line(&mut line).expect("a header line");
        let header = line.trim_end().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if let Some(value) = header.strip_prefix("content-length:") {
            length = value.trim().parse::<usize>().ok();
        }
        chunked |= header.starts_with("transfer-encoding:") && header.contains("chunked");
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).expect("a chunk size");
            let size = usize::from_str_radix(line.trim(), 16).expect("a chunk size");
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).expect("a chunk");
            out.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = length {
        out.resize(length, 0);
        reader.read_exact(&mut out).expect("the body");
    } else {
        reader.read_to_end(&mut out).expect("the body");
    }
    (status, out)
}

/// A program on the PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Children killed when the test ends, however it ends.
struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_nhiwatch"))
        .args(args)
        .output()
        .expect("the nhiwatch binary runs");
    assert!(
        output.status.success(),
        "nhiwatch {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts `nhiwatch serve` on a free loopback port; returns its address.
fn serve(sim: &Path, data: &Path, reaper: &mut Reaper) -> SocketAddr {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nhiwatch"))
        .args(["serve", "--bind", "127.0.0.1:0", "--policy"])
        .arg(sim.join("policy.yaml"))
        .arg("--data")
        .arg(data)
        .env(
            "NHIWATCH_TOKENS",
            format!("read:{READ_TOKEN} admin:{ADMIN_TOKEN}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the nhiwatch binary runs");
    let stderr = child.stderr.take().expect("stderr");
    reaper.0.push(child);
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().expect("a line").expect("text");
    let addr = first
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in `{first}`"));
    std::thread::spawn(move || lines.for_each(drop));
    addr
}

/// A WebDriver session on chromedriver.
struct Browser {
    driver: SocketAddr,
    session: String,
    shots: PathBuf,
}

impl Browser {
    fn start(chromium: &Path, chromedriver: &Path, shots: PathBuf, reaper: &mut Reaper) -> Browser {
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        reaper.0.push(child);
        let driver: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(driver).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {driver}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,800", "--hide-scrollbars", "--no-first-run", "--disable-extensions"],
            },
        }}});
        let mut browser = Browser {
            driver,
            session: String::new(),
            shots,
        };
        let answer = browser.call("POST", "/session", Some(capabilities));
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        browser
    }

    /// One WebDriver command; its `value`, or a panic naming the command and the error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let full = if path == "/session" {
            path.to_owned()
        } else {
            format!("/session/{}{path}", self.session)
        };
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = [("Content-Type", "application/json")];
        let (status, answer) = http(self.driver, method, &full, &headers, body.as_bytes());
        let answer: Value =
            serde_json::from_slice(&answer).map_err(|e| format!("not JSON ({e})"))?;
        if status != 200 {
            return Err(format!("{status}: {}", answer["value"]));
        }
        Ok(answer["value"].clone())
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn find(&self, css: &str) -> Option<String> {
        let found = self
            .try_call(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        found
            .as_object()?
            .values()
            .next()?
            .as_str()
            .map(str::to_owned)
    }

    /// Waits for an element; fails with a screenshot when it never comes.
    fn wait(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(element) = self.find(css) {
                return element;
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "no element `{css}` on {}",
                    self.script("return location.href", json!([]))
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn click(&self, element: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    fn type_into(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    fn keys(&self, key: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]});
        self.call("POST", "/actions", Some(actions));
    }

    fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Waits until the page's own script says `cond` holds.
    fn wait_until(&self, what: &str, cond: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.script(cond, json!([])) != json!(true) {
            if Instant::now() > deadline {
                self.fail(&format!("timed out waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Saves a screenshot of the whole page (Chromium's DevTools command through chromedriver),
    /// or of the window when that is not available.
    fn screenshot(&self, name: &str) {
        let size = self.script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]",
            json!([]),
        );
        let whole = json!({"cmd": "Page.captureScreenshot", "params": {
            "format": "png", "captureBeyondViewport": true,
            "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
        }});
        let data = match self.try_call("POST", "/goog/cdp/execute", Some(whole)) {
            Ok(answer) => answer["data"].clone(),
            Err(_) => self.call("GET", "/screenshot", None),
        };
        let png = base64(data.as_str().unwrap_or_default());
        std::fs::write(self.shots.join(name), png).expect("writes the screenshot");
    }

    /// Keeps a screenshot and the page's HTML, then fails.
    fn fail(&self, message: &str) -> ! {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.screenshot("failure.png");
            let html = self.script("return document.documentElement.outerHTML", json!([]));
            let _ = std::fs::write(
                self.shots.join("failure.html"),
                html.as_str().unwrap_or_default(),
            );
        }));
        panic!(
            "{message} (see {})",
            self.shots.join("failure.png").display()
        );
    }

    /// Console messages of the page (CSP violations among them).
    fn console(&self) -> Vec<String> {
        match self.try_call("POST", "/se/log", Some(json!({"type": "browser"}))) {
            Ok(Value::Array(entries)) => entries
                .iter()
                .filter_map(|e| e["message"].as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// How long the current page took to load (navigation start to the load event), in ms.
    fn load_ms(&self) -> f64 {
        let script = "const n = performance.getEntriesByType('navigation')[0]; return n ? n.loadEventEnd - n.startTime : -1";
        self.script(script, json!([])).as_f64().unwrap_or(-1.0)
    }

    /// No horizontal scrolling of the page as a whole.
    fn assert_fits(&self, what: &str) {
        let fits = self.script(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            json!([]),
        );
        if fits != json!(true) {
            self.fail(&format!("{what} is wider than the window"));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.try_call("DELETE", "", None);
        }
    }
}

/// Standard base64 (screenshots), ignoring padding.
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        .map(value)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | u32::from(*d) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn the_ui_shows_the_riskiest_identity_its_finding_and_escapes_hostile_names() {
    if std::env::var("NHIWATCH_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("NHIWATCH_SKIP_BROWSER=1: the browser test is skipped");
        return;
    }
    let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"])
        .expect("no chromium on the PATH: install it (Debian: apt-get install chromium chromium-driver) or set NHIWATCH_SKIP_BROWSER=1");
    let chromedriver = on_path(&["chromedriver"])
        .expect("no chromedriver on the PATH: install it (Debian: apt-get install chromium-driver) or set NHIWATCH_SKIP_BROWSER=1");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("ui-screenshots");
    std::fs::create_dir_all(&shots).expect("creates the screenshot folder");

    // NHIWATCH_UI_TEST_DIR keeps the simulated data between runs (for working on the UI);
    // by default each run starts from a fresh folder.
    let work = tempfile::tempdir().expect("a temporary folder");
    let root = std::env::var_os("NHIWATCH_UI_TEST_DIR")
        .map_or_else(|| work.path().to_path_buf(), PathBuf::from);
    let (sim, data) = (root.join("sim"), root.join("data"));
    let text = |p: &Path| p.to_str().expect("a UTF-8 path").to_owned();
    if !data.join("nhiwatch.redb").is_file() {
        run(&[
            "simulate",
            "--out",
            &text(&sim),
            "--identities",
            "20",
            "--days",
            "12",
        ]);
        run(&[
            "ingest",
            &text(&sim.join("telemetry")),
            "--data",
            &text(&data),
            "--policy",
            &text(&sim.join("policy.yaml")),
            "-q",
        ]);
    }

    let mut reaper = Reaper(Vec::new());
    let addr = serve(&sim, &data, &mut reaper);
    let base = format!("http://{addr}");
    let browser = Browser::start(&chromium, &chromedriver, shots.clone(), &mut reaper);

    // Signing in: the page asks for a token, then comes back to where it was going.
    browser.go(&format!("{base}/ui/"));
    let token = browser.wait("#token");
    browser.type_into(&token, ADMIN_TOKEN);
    browser.click(&browser.wait("form.login button"));
    browser.wait("table.ranked tbody tr");
    eprintln!("overview loaded in {:.0} ms", browser.load_ms());
    browser.screenshot("overview-1280x800.png");
    browser.assert_fits("the overview at 1280×800");
    for needle in [
        "Events",
        "Identities",
        "Rejected records",
        "findings over time by severity",
        "findings over time by kind",
    ] {
        let found = browser.script(
            "return document.body.innerHTML.includes(arguments[0])",
            json!([needle]),
        );
        if found != json!(true) {
            browser.fail(&format!("the overview lacks `{needle}`"));
        }
    }

    // Keyboard: Tab reaches the skip link first; "/" jumps to the search box.
    browser.keys("\u{E004}");
    let focused = browser.script("return document.activeElement.className", json!([]));
    assert_eq!(focused, json!("skip"), "Tab first reaches the skip link");
    browser.keys("/");
    assert_eq!(
        browser.script("return document.activeElement.id", json!([])),
        json!("search")
    );

    // The first row is the riskiest identity.
    let risks = browser.script(
        "return Array.from(document.querySelectorAll('table.ranked tbody tr td:nth-child(7) .risk')).map(e => Number(e.textContent))",
        json!([]),
    );
    let risks: Vec<u64> = risks
        .as_array()
        .expect("risks")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(
        !risks.is_empty() && risks.iter().all(|r| *r <= risks[0]),
        "ranked by risk: {risks:?}"
    );
    assert!(
        risks[0] > 0,
        "the simulation's attacks raised some risk: {risks:?}"
    );
    let first = browser.wait("table.ranked tbody tr:first-child a.id");
    let riskiest = browser.text(&first);
    browser.click(&first);

    // Its page: activity, heatmap against the baseline, sessions, permitted vs used, findings.
    let heading = browser.wait("h1.ident");
    assert_eq!(browser.text(&heading), riskiest);
    for css in [
        "svg.heat",
        "details.session",
        "#used",
        "section[aria-labelledby=findings] table.findings",
    ] {
        browser.wait(css);
    }
    eprintln!("identity page loaded in {:.0} ms", browser.load_ms());
    browser.screenshot("identity.png");
    browser.assert_fits("the identity page");

    // Its riskiest finding.
    let link = browser.script(
        "const rows = Array.from(document.querySelectorAll('section[aria-labelledby=findings] table.findings tbody tr'));\
         rows.sort((a, b) => Number(b.querySelector('.risk').textContent) - Number(a.querySelector('.risk').textContent));\
         return rows[0].querySelector('td a').getAttribute('href')",
        json!([]),
    );
    let link = link.as_str().expect("a finding link").to_owned();
    browser.click(&browser.wait(&format!("a[href=\"{link}\"]")));
    let decision = browser.text(&browser.wait(".verdict .decision .badge"));
    let evidence = browser.script(
        "return document.querySelectorAll('ol.evidence > li').length",
        json!([]),
    );
    let evidence = evidence.as_u64().unwrap_or(0);
    if evidence == 0 {
        browser.fail("the finding shows no evidence event");
    }
    browser.wait("section[aria-labelledby=compared]");
    // The page agrees with the export of the same finding.
    let export = browser.script(
        "const a = document.querySelector('a[download]'); const r = new XMLHttpRequest(); r.open('GET', a.getAttribute('href'), false); r.send(); return r.responseText",
        json!([]),
    );
    let export: Value =
        serde_json::from_str(export.as_str().unwrap_or_default()).expect("the export is JSON");
    assert_eq!(
        export["finding"]["decision"],
        json!(decision),
        "decision shown"
    );
    assert_eq!(export["finding"]["identity"], json!(riskiest));
    assert_eq!(
        export["evidence_events"].as_array().map(Vec::len),
        Some(evidence as usize)
    );
    let actions = browser.script(
        "return Array.from(document.querySelectorAll('ol.evidence .act')).map(e => e.textContent)",
        json!([]),
    );
    let exported: Vec<Value> = export["evidence_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert_eq!(actions, Value::Array(exported), "evidence events in order");
    browser.click(&browser.wait("ol.evidence > li:first-child details summary"));
    let raw = browser.text(&browser.wait("ol.evidence > li:first-child pre.raw"));
    serde_json::from_str::<Value>(&raw).expect("the raw record is shown as JSON");
    eprintln!("finding page loaded in {:.0} ms", browser.load_ms());
    browser.screenshot("finding.png");
    browser.assert_fits("the finding page");

    // Acknowledge it (a POST from the page: same origin, session cookie).
    browser.click(&browser.wait("button[value=acknowledged]"));
    browser.wait(".verdict .badge.t-acknowledged");

    // A hostile identity arrives while the overview, filtered to find it, is open: the live
    // update shows it, escaped.
    browser.go(&format!("{base}/ui/?q=__pwned"));
    browser.wait("#ranked");
    let event = json!({
        "id": "hostile-1", "time": "2026-03-13T10:00:00Z", "source": "agent_trace",
        "identity": {"id": HOSTILE, "kind": "agent"}, "action": "tool:<b>send</b>",
        "action_class": "exec", "resource": "<img src=x onerror=\"window.__pwned=3\">",
        "outcome": "denied", "raw": {"note": "<script>window.__pwned=4</script>"},
    });
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (status, body) = http(
        addr,
        "POST",
        "/v1/events",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-ndjson"),
        ],
        format!("{event}\n").as_bytes(),
    );
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    browser.wait_until(
        "the live update to show the hostile identity",
        "return Array.from(document.querySelectorAll('a.id')).some(a => a.textContent.includes('__pwned'))",
    );
    let shown = browser.script("return Array.from(document.querySelectorAll('a.id')).map(a => a.textContent).find(t => t.includes('__pwned'))", json!([]));
    assert_eq!(
        shown,
        json!(HOSTILE_SHOWN),
        "shown as text, the escape character visible"
    );
    assert_eq!(
        browser.script("return typeof window.__pwned", json!([])),
        json!("undefined")
    );
    assert_eq!(browser.script("return document.querySelectorAll('script').length + document.querySelectorAll('img').length", json!([])), json!(1));
    browser.screenshot("overview-live-hostile.png");
    let hostile = browser.wait("table.ranked a.id[href*='__pwned']");
    browser.click(&hostile);
    assert_eq!(browser.text(&browser.wait("h1.ident")), HOSTILE_SHOWN);
    assert_eq!(
        browser.script(
            "return typeof window.__pwned + document.querySelectorAll('img').length",
            json!([])
        ),
        json!("undefined0")
    );
    browser.screenshot("identity-hostile.png");

    // A wide screen.
    browser.resize(1920, 1080);
    browser.go(&format!("{base}/ui/"));
    browser.wait("table.ranked tbody tr");
    browser.assert_fits("the overview at 1920×1080");
    browser.screenshot("overview-1920x1080.png");

    let blocked: Vec<String> = browser
        .console()
        .into_iter()
        .filter(|m| m.contains("Content Security Policy") || m.contains("Refused"))
        .collect();
    assert!(blocked.is_empty(), "the CSP blocked something: {blocked:?}");
    eprintln!("screenshots in {}", shots.display());
}
