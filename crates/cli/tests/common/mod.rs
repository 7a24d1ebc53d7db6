//! Helpers for the tests that run `nhiwatch serve` as a process: plain HTTP/1.1 on loopback,
//! starting the server (on a free port, optionally under a file size limit), and stopping it
//! gracefully or with SIGKILL. A [`Server`] is killed when dropped, so a failing test leaves no
//! process behind.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The admin token every test server accepts.
pub const TOKEN: &str = "e2e-admin-token-0123456789";

/// How long a server may take to start listening, or to stop after SIGTERM.
const PATIENCE: Duration = Duration::from_secs(60);

/// One HTTP/1.1 request on a fresh connection: the status and the body, or the I/O error
/// (the server is gone, or went away before it answered).
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let incomplete = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no full answer");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(incomplete)?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(incomplete)?;
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = unchunk(&body);
    }
    Ok((status, body))
}

/// One HTTP/1.1 request, which must get an answer.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    try_http(addr, method, path, body)
        .unwrap_or_else(|err| panic!("{method} {path}: no answer: {err}"))
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16)
            .expect("a chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 4 + size..];
    }
    out
}

/// A GET that must answer 200 with JSON.
pub fn get(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path, b"");
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).expect("JSON")
}

/// `nhiwatch serve` on a free loopback port, keeping evidence in `data`, judging by `policy`
/// when given; the admin token comes from the environment, findings printed on standard
/// output are dropped.
pub fn serve_command(data: &Path, policy: Option<&Path>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nhiwatch"));
    command.args(["serve", "--bind", "127.0.0.1:0", "--data"]);
    command.arg(data);
    if let Some(policy) = policy {
        command.arg("--policy").arg(policy);
    }
    command.env("NHIWATCH_TOKENS", format!("admin:{TOKEN}"));
    command
}

/// `command` run under a file size limit of `bytes` (`RLIMIT_FSIZE`, set by `sh`'s `ulimit`;
/// no privileges needed), with SIGXFSZ ignored: a write past the limit then fails with `EFBIG`
/// instead of killing the process, as a write to a full disk fails with `ENOSPC`. The shell
/// `exec`s the program, so the child's pid is the program's.
pub fn with_file_size_limit(command: &Command, bytes: u64) -> Command {
    // `ulimit -f` counts 512-byte blocks in POSIX shells (dash; bash in POSIX mode as `sh`).
    let mut limited = Command::new("sh");
    limited
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {}; exec \"$0\" \"$@\"",
            bytes.div_ceil(512)
        ))
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => limited.env(key, value),
            None => limited.env_remove(key),
        };
    }
    limited
}

/// A running `nhiwatch serve`, killed (SIGKILL) if dropped before it is stopped.
pub struct Server {
    child: Option<Child>,
    addr: Option<SocketAddr>,
    listening: Receiver<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts `command` (a serve command), without waiting for it to listen. Its standard error
    /// is read as it comes (so it never blocks on a full pipe) and kept.
    pub fn spawn(mut command: Command) -> Server {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the nhiwatch binary runs");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tell, listening) = mpsc::channel();
        let kept = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line
                    .strip_prefix("nhiwatch: listening on http://")
                    .and_then(|a| a.trim().parse().ok())
                {
                    let _ = tell.send(addr);
                }
                kept.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Server {
            child: Some(child),
            addr: None,
            listening,
            log,
            reader: Some(reader),
        }
    }

    /// Starts `command` and waits until it listens; panics with its log if it does not.
    pub fn start(command: Command) -> Server {
        let mut server = Server::spawn(command);
        if let Err(log) = server.wait_listening() {
            panic!("the server did not start:\n{log}");
        }
        server
    }

    /// Waits until the server listens; its log if it exits or takes too long first.
    pub fn wait_listening(&mut self) -> Result<SocketAddr, String> {
        if let Some(addr) = self.addr {
            return Ok(addr);
        }
        match self.listening.recv_timeout(PATIENCE) {
            Ok(addr) => {
                self.addr = Some(addr);
                Ok(addr)
            }
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("not listening after {PATIENCE:?}:\n{}", self.log()))
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Standard error is closed: the process ended.
                let status = self.child.as_mut().and_then(|c| c.wait().ok());
                self.read_to_end();
                Err(format!("exited ({status:?}):\n{}", self.log()))
            }
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("the server listens")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits until all of standard error has been read (once the process has ended).
    fn read_to_end(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    /// What it has written on standard error so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("the server is reaped");
        }
    }

    /// Stops the server with SIGTERM (a graceful shutdown), which must end it, successfully,
    /// within a minute; returns its log.
    pub fn stop(mut self) -> String {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let started = Instant::now();
        let exit = loop {
            if let Some(exit) = child.try_wait().expect("waits") {
                break exit;
            }
            if started.elapsed() > PATIENCE {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server did not stop within {PATIENCE:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.read_to_end();
        let log = self.log();
        assert!(exit.success(), "the server exited with {exit}:\n{log}");
        log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `done` every 20 ms until it holds; panics naming `what` after a minute.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
