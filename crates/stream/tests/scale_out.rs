//! Scale-out against a real `nats-server -js` on loopback (see `nhiwatch_stream::testing`):
//! several workers over 12 partitions find what one `detect` run finds, store every event
//! exactly once, and lose nothing when a worker is killed with SIGKILL mid-stream.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use nhiwatch_stream::testing::NatsServer;
use nhiwatch_stream::{NatsOptions, Worker, WorkerConfig};

const PARTITIONS: u32 = 12;

fn server() -> Option<NatsServer> {
    NatsServer::start().unwrap_or_else(|err| panic!("{err}"))
}

fn worker_config(name: &str, data: &Path, sim: &Sim) -> WorkerConfig {
    let mut config = WorkerConfig::new(name, data);
    config.policy = sim.policy.clone();
    config.lease = Duration::from_secs(2);
    config.batch = 128;
    let me = name.to_owned();
    let t0 = Instant::now();
    config.notify = Some(Arc::new(move |n: &nhiwatch_stream::Notice| {
        eprintln!("{:?} {me}: {n:?}", t0.elapsed())
    }));
    config
}

/// Checks the end state: every event stored exactly once, and the published findings equal to
/// those of a single run.
async fn check(url: &str, data: &Path, sim: &Sim, expected: &[Key]) {
    let js = jetstream(url).await;
    let published = published_findings(&js).await;
    assert!(!expected.is_empty(), "the simulation should raise findings");
    if published != expected {
        let missing: Vec<_> = expected.iter().filter(|k| !published.contains(k)).collect();
        let extra: Vec<_> = published.iter().filter(|k| !expected.contains(k)).collect();
        panic!(
            "findings differ from one detect run: {} expected, {} published\nmissing: {missing:#?}\nextra: {extra:#?}",
            expected.len(),
            published.len()
        );
    }
    let stored = stored_events(data, PARTITIONS);
    let input = event_keys(&sim.events);
    let twice: Vec<_> = stored.iter().filter(|(_, &n)| n > 1).take(5).collect();
    assert!(twice.is_empty(), "events stored more than once: {twice:?}");
    let missing: Vec<_> = input
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "events never stored: {missing:?}");
    assert_eq!(stored.len(), input.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_over_twelve_partitions_find_what_one_detect_run_finds() {
    let Some(nats) = server() else { return };
    let started = Instant::now();
    let (sim, expected) = fleet();
    eprintln!(
        "simulated and detected {} events in {:?}",
        sim.events.len(),
        started.elapsed()
    );
    let data = tempfile::tempdir().unwrap();
    let url = nats.url();
    let started = Instant::now();
    let published = publish(&url, &sim.events, PARTITIONS).await;
    eprintln!("published in {:?}", started.elapsed());
    let started = Instant::now();
    assert_eq!(
        published.events as usize,
        sim.events.len() + PARTITIONS as usize
    );

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut runs = Vec::new();
    for name in ["w1", "w2", "w3"] {
        let client = NatsOptions::new(&url).connect().await.unwrap();
        let worker = Worker::start(client, worker_config(name, data.path(), sim))
            .await
            .unwrap();
        let mut stopped = stopped.clone();
        runs.push(tokio::spawn(worker.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    let js = jetstream(&url).await;
    wait_drained(&js, PARTITIONS, Duration::from_secs(120)).await;
    eprintln!("drained in {:?}", started.elapsed());
    stop.send(true).unwrap();
    let mut events = 0;
    for run in runs {
        let stats = run.await.unwrap().unwrap();
        assert_eq!(stats.rejects, 0);
        events += stats.events;
    }
    assert!(events >= sim.events.len() as u64, "{events}");
    check(&url, data.path(), sim, expected).await;
}

#[tokio::test]
async fn an_unreachable_server_is_named_with_what_was_tried() {
    let mut options = NatsOptions::new("nats://127.0.0.1:1");
    options.connect_timeout = Duration::from_secs(2);
    let err = options.connect().await.unwrap_err().to_string();
    assert!(err.contains("nats://127.0.0.1:1"), "{err}");
    assert!(err.contains("no authentication"), "{err}");
    assert!(err.contains("is nats-server running there"), "{err}");
}

/// Run by `worker_killed_with_sigkill_mid_stream_loses_nothing` as a child process: one worker,
/// until its standard input closes. Does nothing when run on its own.
#[test]
#[ignore = "a child process of the kill test"]
fn child_worker() {
    let Ok(spec) = std::env::var("NHIWATCH_STREAM_CHILD") else {
        return;
    };
    let mut parts = spec.splitn(4, '|');
    let (url, data, name, policy) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut config = WorkerConfig::new(&name, &data);
        config.lease = Duration::from_secs(2);
        config.batch = 64;
        let me = name.clone();
        config.notify = Some(Arc::new(move |n: &nhiwatch_stream::Notice| {
            println!("notice {me}: {n:?}")
        }));
        if !policy.is_empty() {
            config.policy = Some(Arc::new(
                nhiwatch_policy::Policy::load(Path::new(&policy)).unwrap(),
            ));
        }
        let client = NatsOptions::new(&url).connect().await.unwrap();
        let worker = Worker::start(client, config).await.unwrap();
        let stats = worker.stats();
        let (closed, on_close) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            let _ = closed.send(());
        });
        tokio::spawn(async move {
            loop {
                println!("events {}", stats.snapshot().events);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        worker
            .run(async move {
                let _ = on_close.await;
            })
            .await
            .unwrap();
    });
}

struct ChildWorker {
    child: Child,
    events: Arc<std::sync::atomic::AtomicU64>,
}

fn spawn_child(url: &str, data: &Path, name: &str, policy: &Path) -> ChildWorker {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "NHIWATCH_STREAM_CHILD",
            format!("{url}|{}|{name}|{}", data.display(), policy.display()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let events = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = events.clone();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("events ").and_then(|n| n.parse().ok()) {
                seen.store(n, std::sync::atomic::Ordering::Relaxed);
            } else if line.starts_with("notice ") {
                eprintln!("{line}");
            }
        }
    });
    ChildWorker { child, events }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_killed_with_sigkill_mid_stream_loses_nothing() {
    let Some(nats) = server() else { return };
    let (sim, expected) = fleet();
    let data = tempfile::tempdir().unwrap();
    let url = nats.url();
    // Create the stream with 12 partitions before the workers look for it.
    nhiwatch_stream::Layout::new(PARTITIONS)
        .unwrap()
        .ensure_events(&jetstream(&url).await)
        .await
        .unwrap();
    let policy = sim.dir.path().join("policy.yaml");
    let mut children: Vec<ChildWorker> = ["w1", "w2", "w3"]
        .iter()
        .map(|name| spawn_child(&url, data.path(), name, &policy))
        .collect();

    // Wait until the three own all partitions between them.
    let js = jetstream(&url).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(leases) = leases_now(&js).await {
            if leases == PARTITIONS as usize {
                break;
            }
        }
        assert!(Instant::now() < deadline, "partitions were not all taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let publishing = {
        let url = url.clone();
        let events = sim.events.clone();
        tokio::spawn(async move { publish(&url, &events, PARTITIONS).await })
    };
    // Kill w1 once it has processed a share of its events, while events are still coming.
    let deadline = Instant::now() + Duration::from_secs(120);
    while children[0]
        .events
        .load(std::sync::atomic::Ordering::Relaxed)
        < 1_000
    {
        assert!(Instant::now() < deadline, "w1 processed nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    children[0].child.kill().unwrap(); // SIGKILL
    children[0].child.wait().unwrap();
    let killed_at = children[0]
        .events
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("killed w1 (SIGKILL) after {killed_at} events");

    let published = publishing.await.unwrap();
    assert_eq!(
        published.events as usize,
        sim.events.len() + PARTITIONS as usize
    );
    wait_drained(&js, PARTITIONS, Duration::from_secs(180)).await;
    for child in &mut children[1..] {
        drop(child.child.stdin.take());
    }
    for child in &mut children[1..] {
        let status = child.child.wait().unwrap();
        assert!(status.success(), "{status}");
    }
    assert!(
        killed_at < sim.events.len() as u64,
        "w1 was killed after {killed_at} events"
    );
    check(&url, data.path(), sim, expected).await;
}

async fn leases_now(js: &async_nats::jetstream::Context) -> Result<usize, ()> {
    use futures_util::StreamExt;
    let bucket = js
        .get_key_value(nhiwatch_stream::layout::LEASES_BUCKET)
        .await
        .map_err(|_| ())?;
    let mut keys = bucket.keys().await.map_err(|_| ())?;
    let mut n = 0;
    while let Some(key) = keys.next().await {
        if key.map_err(|_| ())?.starts_with("partition.") {
            n += 1;
        }
    }
    Ok(n)
}

/// Workers running in this process until `stop` is sent.
struct Fleet {
    stop: tokio::sync::watch::Sender<bool>,
    runs: Vec<
        tokio::task::JoinHandle<
            Result<nhiwatch_stream::StatsSnapshot, nhiwatch_stream::StreamError>,
        >,
    >,
}

impl Fleet {
    async fn start(url: &str, names: &[&str], data: &Path, sim: &Sim) -> Fleet {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut runs = Vec::new();
        for name in names {
            let client = NatsOptions::new(url).connect().await.unwrap();
            let worker = Worker::start(client, worker_config(name, data, sim))
                .await
                .unwrap();
            let mut stopped = stopped.clone();
            runs.push(tokio::spawn(worker.run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })));
        }
        Fleet { stop, runs }
    }

    async fn stop(self) -> Vec<nhiwatch_stream::StatsSnapshot> {
        self.stop.send(true).unwrap();
        let mut stats = Vec::new();
        for run in self.runs {
            stats.push(run.await.unwrap().unwrap());
        }
        stats
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_server_restart_mid_stream_loses_nothing() {
    let Some(mut nats) = server() else { return };
    let (sim, expected) = fleet();
    let data = tempfile::tempdir().unwrap();
    let url = nats.url();
    let half = sim.events.len() / 2;
    publish_part(&url, &sim.events[..half], PARTITIONS, false).await;
    let workers = Fleet::start(&url, &["w1", "w2"], data.path(), sim).await;
    let js = jetstream(&url).await;
    wait_drained(&js, PARTITIONS, Duration::from_secs(120)).await;
    nats.restart().unwrap(); // kill -9 and start again, same port and store
    publish_part(&url, &sim.events[half..], PARTITIONS, true).await;
    let js = jetstream(&url).await;
    wait_drained(&js, PARTITIONS, Duration::from_secs(120)).await;
    let stats = workers.stop().await;
    assert_eq!(stats.iter().map(|s| s.rejects).sum::<u64>(), 0);
    check(&url, data.path(), sim, expected).await;
}

/// One identity's events, a minute apart from `start` (minutes since the fleet's first day).
fn steady_events(identity: &str, start: u32, count: u32) -> Vec<nhiwatch_model::Event<'static>> {
    (start..start + count)
        .map(|minute| {
            let line = format!(
                r#"{{"id":"{identity}-{minute}","time":"2026-03-02T00:00:00Z","source":"jsonl","identity":{{"id":"{identity}","kind":"workload"}},"action":"s3:GetObject","action_class":"read","resource":"arn:aws:s3:::bucket/key","outcome":"success","raw":{{}}}}"#
            );
            let mut event: nhiwatch_model::Event<'_> = serde_json::from_str(&line).unwrap();
            event.time = nhiwatch_model::Timestamp(event.time.0 + i64::from(minute) * 60_000_000_000);
            event.into_owned()
        })
        .collect()
}

async fn learned(js: &async_nats::jetstream::Context, identity: &str, partitions: u32) -> u64 {
    let profiles = js
        .get_object_store(nhiwatch_stream::layout::PROFILES_BUCKET)
        .await
        .unwrap();
    let partition = nhiwatch_stream::partition_of(identity, partitions);
    let (baseline, _) = nhiwatch_stream::snapshot::load(&profiles, partition)
        .await
        .unwrap()
        .expect("a snapshot");
    baseline.get(identity).map_or(0, |p| p.events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn profiles_move_with_a_partition_once_retention_has_dropped_its_history() {
    let Some(nats) = server() else { return };
    let (sim, _) = fleet();
    let url = nats.url();
    let identity = "arn:aws:iam::111122223333:role/steady";
    let partitions = 2;
    // Week one, learned by w1, which hands its partitions back when it stops.
    let first = steady_events(identity, 0, 300);
    publish_part(&url, &first, partitions, false).await;
    let data = tempfile::tempdir().unwrap();
    let workers = Fleet::start(&url, &["w1"], data.path(), sim).await;
    let js = jetstream(&url).await;
    wait_drained(&js, partitions, Duration::from_secs(60)).await;
    workers.stop().await;
    let after_first = learned(&js, identity, partitions).await;
    assert!(after_first > 0);
    // Retention drops week one from the stream; week two arrives; another worker takes over.
    js.get_stream(nhiwatch_stream::layout::EVENTS_STREAM)
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
    let second = steady_events(identity, 300, 100);
    publish_part(&url, &second, partitions, false).await;
    let other = tempfile::tempdir().unwrap();
    let workers = Fleet::start(&url, &["w2"], other.path(), sim).await;
    wait_drained(&js, partitions, Duration::from_secs(60)).await;
    workers.stop().await;
    let after_second = learned(&js, identity, partitions).await;
    assert!(
        after_second > after_first && after_second > second.len() as u64,
        "w2 should learn on top of w1's profile: {after_first} then {after_second}"
    );
}
