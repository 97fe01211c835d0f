//! Real `vr replica` processes on loopback, under fault rounds while `vr bench`
//! keeps 8 clients busy: kill -9 and restart (from the data directory), kill -9
//! of every replica at once (durable mode, the default), SIGSTOP
//! and SIGCONT, and primary(v+1) failing while the view change to v+1 is under
//! way. Afterwards every key is read back, the reads are appended to the
//! bench's history, and the whole is checked for linearizability: every
//! acknowledged write is present and every read agrees with one order.
//!
//! `VR_FAULT_ROUNDS` (default 1, 5 s of load each) sets the budget;
//! `VR_FAULT_SEED` replays a run's choices of victims and pauses (the seed is
//! printed; timing on a real machine varies, so a replay is likely, not
//! certain, to take the same path).
//!
//! The load runs unpaced by default, so the log grows to tens of thousands of
//! entries and every view change and recovery moves a log far larger than a
//! datagram (spec/protocol.md, "Bounded messages"). `VR_FAULT_RATE` paces
//! it, in operations per second.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vr::app::{KvOperation, KvOutput};
use vr::client::Client;
use vr::core::View;
use vr::history::{Record, Status};
use vr::runtime::ClusterConfig;
use vr::runtime::wire::StatusReport;

const REPLICAS: u8 = 3;
/// Executed entries between checkpoints in this test's cluster.
const CHECKPOINT_INTERVAL: u64 = 2_000;
const CLIENTS: &str = "8";
/// Few keys, so that clients often meet on one.
const KEYS: &str = "20";
/// Load before the first fault, per round, and after the last.
const WARM_UP: Duration = Duration::from_millis(1500);
/// A round's three faults take 2.5 to 4 s here; the rest of the round is calm.
const ROUND: Duration = Duration::from_secs(5);
const CALM: Duration = Duration::from_secs(3);
/// How long the cluster may take to have every replica Normal in one view
/// again after a fault ends.
const SETTLE_MAX: Duration = Duration::from_secs(20);

/// A small seeded generator (xorshift64).
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// A child process killed (after a SIGCONT, in case it is stopped) when
/// dropped.
struct Process(Child);

impl Process {
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("the kill command runs");
        assert!(status.success(), "kill -{signal} {}", self.0.id());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.signal("CONT");
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Three replica processes, their logs, and what was done to them.
struct Cluster {
    dir: PathBuf,
    config_path: PathBuf,
    observer: Client,
    replicas: Vec<Option<Process>>,
    started: Instant,
    events: Vec<String>,
}

impl Cluster {
    fn start(dir: &Path, cluster_id: u32) -> Cluster {
        let sockets: Vec<UdpSocket> = (0..REPLICAS)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let addresses = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        drop(sockets);
        let mut config = ClusterConfig::new(cluster_id, addresses).unwrap();
        // Checkpoints every few thousand operations, so that the faults meet
        // compacted logs: a restarted replica recovers from a checkpoint.
        config.checkpoint_interval = CHECKPOINT_INTERVAL;
        config.key_file = Some(dir.join("cluster.key"));
        vr::runtime::keyfile::generate(&dir.join("cluster.key"), true).unwrap();
        let config_path = dir.join("cluster.toml");
        std::fs::write(&config_path, config.to_toml()).unwrap();
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            config_path,
            observer: Client::new(config).unwrap(),
            replicas: (0..REPLICAS).map(|_| None).collect(),
            started: Instant::now(),
            events: Vec::new(),
        };
        for id in 0..REPLICAS {
            cluster.spawn(id, true);
        }
        cluster
    }

    fn note(&mut self, event: String) {
        let line = format!("{:8.3}s  {event}", self.started.elapsed().as_secs_f64());
        eprintln!("{line}");
        self.events.push(line);
    }

    fn log_path(&self, id: u8) -> PathBuf {
        self.dir.join(format!("replica-{id}.log"))
    }

    /// Starts replica `id`: the first time with `--fresh`, then from its
    /// data directory (durable mode, the default).
    fn spawn(&mut self, id: u8, fresh: bool) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vr"))
            .args(["replica", "--config"])
            .arg(&self.config_path)
            .args(["--id", &id.to_string(), "--data-dir"])
            .arg(self.dir.join("data"))
            .args(if fresh { &["--fresh"][..] } else { &[] })
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("vr replica starts");
        self.replicas[usize::from(id)] = Some(Process(child));
    }

    fn process(&self, id: u8) -> &Process {
        self.replicas[usize::from(id)]
            .as_ref()
            .expect("the replica is running")
    }

    fn kill(&mut self, id: u8) {
        self.note(format!("kill -9 replica {id}"));
        let mut process = self.replicas[usize::from(id)].take().unwrap();
        process.0.kill().unwrap();
        process.0.wait().unwrap();
    }

    fn restart(&mut self, id: u8) {
        self.note(format!("restart replica {id} (from its data directory)"));
        self.spawn(id, false);
    }

    fn stop(&mut self, id: u8) {
        self.note(format!("SIGSTOP replica {id}"));
        self.process(id).signal("STOP");
    }

    fn resume(&mut self, id: u8) {
        self.note(format!("SIGCONT replica {id}"));
        self.process(id).signal("CONT");
    }

    fn statuses(&self, wait: Duration) -> Vec<Option<StatusReport>> {
        self.observer.statuses(wait).unwrap()
    }

    /// Waits until every replica answers, Normal, in one view; that view.
    fn settle(&mut self) -> View {
        let started = Instant::now();
        loop {
            let reports = self.statuses(Duration::from_millis(200));
            let views: BTreeSet<View> = reports.iter().flatten().map(|r| r.view).collect();
            if reports
                .iter()
                .all(|r| r.as_ref().is_some_and(|r| r.status == "Normal"))
                && views.len() == 1
            {
                let view = *views.first().unwrap();
                self.note(format!(
                    "settled in view {} after {:?}",
                    view.0,
                    started.elapsed()
                ));
                return view;
            }
            if started.elapsed() > SETTLE_MAX {
                self.fail(&format!(
                    "the cluster did not settle (every replica Normal in one view) within {SETTLE_MAX:?}: {}",
                    show(&reports)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics with what happened, the replicas' last words and where the
    /// files are (kept for a look).
    fn fail(&self, message: &str) -> ! {
        let mut text = format!("{message}\n\nevents:\n");
        for event in &self.events {
            text.push_str(&format!("  {event}\n"));
        }
        for id in 0..REPLICAS {
            let log = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            text.push_str(&format!("\nreplica {id}, last lines of its log:\n"));
            for line in &lines[lines.len().saturating_sub(25)..] {
                text.push_str(&format!("  {line}\n"));
            }
        }
        text.push_str(&format!(
            "\nlogs, history and configuration kept in {}",
            self.dir.display()
        ));
        panic!("{text}");
    }
}

fn show(reports: &[Option<StatusReport>]) -> String {
    reports
        .iter()
        .enumerate()
        .map(|(id, r)| match r {
            Some(r) => format!(
                "{id}: {} view {} op {} commit {}",
                r.status, r.view.0, r.op.0, r.commit.0
            ),
            None => format!("{id}: no answer"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// kill -9 a replica, restart it after a pause: it restarts from its
    /// data directory.
    Crash,
    /// SIGSTOP a replica for a few hundred ms.
    Pause,
    /// SIGSTOP primary(v); primary(v+1) fails while the view change to v+1
    /// is under way.
    NextPrimaryFails,
    /// kill -9 every replica at once (a power loss), restart them all after
    /// a pause: each restarts from its data directory, and no acknowledged
    /// write is lost.
    ClusterCrash,
}

/// What the rounds did.
#[derive(Default)]
struct Tally {
    crashes: usize,
    pauses: usize,
    next_primary_failures: usize,
    /// Of those, how often the view change to v+1 had begun while
    /// primary(v+1) was down.
    during_view_change: usize,
    cluster_crashes: usize,
}

fn cluster_crash(cluster: &mut Cluster, random: &mut Random) {
    cluster.note("kill -9 every replica at once".into());
    let mut processes: Vec<Process> = cluster.replicas.iter_mut().flat_map(Option::take).collect();
    for process in &mut processes {
        process.0.kill().unwrap();
    }
    for process in &mut processes {
        process.0.wait().unwrap();
    }
    std::thread::sleep(random.millis(100, 500));
    for id in 0..REPLICAS {
        cluster.restart(id);
    }
}

fn crash(cluster: &mut Cluster, random: &mut Random) {
    let id = random.below(u64::from(REPLICAS)) as u8;
    cluster.kill(id);
    std::thread::sleep(random.millis(200, 1000));
    cluster.restart(id);
}

fn pause(cluster: &mut Cluster, random: &mut Random) {
    let id = random.below(u64::from(REPLICAS)) as u8;
    cluster.stop(id);
    std::thread::sleep(random.millis(200, 800));
    cluster.resume(id);
}

/// Primary(v) stops; primary(v+1) stops within the primary timeout, so the
/// third replica begins the view change to v+1 without it (the others keep
/// their state while stopped). Once the view change is under way,
/// primary(v) resumes, and primary(v+1) is killed, or resumed after a pause:
/// the two others must move on to view v+2 (or complete v+1 with it).
/// Returns whether the third replica was seen changing to view v+1 (not
/// past it: primary(v+1) may time out and complete that view change first).
fn next_primary_fails(cluster: &mut Cluster, random: &mut Random, view: View) -> bool {
    let old = view.primary(REPLICAS).0;
    let next = View(view.0 + 1).primary(REPLICAS).0;
    let third = View(view.0 + 2).primary(REPLICAS).0;
    cluster.note(format!(
        "view {}: primary {old}; primary of view {} is {next}",
        view.0,
        view.0 + 1
    ));
    cluster.stop(old);
    std::thread::sleep(random.millis(0, 150));
    cluster.stop(next);
    let started = Instant::now();
    let seen = loop {
        let reports = cluster.statuses(Duration::from_millis(20));
        if let Some(r) = &reports[usize::from(third)]
            && (r.status != "Normal" || r.view > view)
        {
            cluster.note(format!(
                "replica {third}: {} in view {}",
                r.status, r.view.0
            ));
            break r.status == "ViewChange" && r.view == View(view.0 + 1);
        }
        if started.elapsed() > Duration::from_secs(3) {
            cluster.note(format!(
                "replica {third} not seen changing views: {}",
                show(&reports)
            ));
            break false;
        }
    };
    cluster.resume(old);
    if random.below(2) == 0 {
        std::thread::sleep(random.millis(0, 200));
        cluster.kill(next);
        wait_for_view(cluster, [old, third], View(view.0 + 2));
        cluster.restart(next);
    } else {
        std::thread::sleep(random.millis(100, 700));
        cluster.resume(next);
    }
    seen
}

/// Waits until replicas `ids` are Normal in one view at least `view`.
fn wait_for_view(cluster: &mut Cluster, ids: [u8; 2], view: View) {
    let started = Instant::now();
    loop {
        let reports = cluster.statuses(Duration::from_millis(100));
        let views: Vec<Option<View>> = ids
            .iter()
            .map(|&id| {
                reports[usize::from(id)]
                    .as_ref()
                    .filter(|r| r.status == "Normal")
                    .map(|r| r.view)
            })
            .collect();
        if let [Some(a), Some(b)] = views[..]
            && a == b
            && a >= view
        {
            cluster.note(format!(
                "replicas {ids:?} Normal in view {} after {:?}",
                a.0,
                started.elapsed()
            ));
            return;
        }
        if started.elapsed() > SETTLE_MAX {
            cluster.fail(&format!(
                "replicas {ids:?} never reached view {} together: {}",
                view.0,
                show(&reports)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

/// Reads every key back, after everything else completed, as extra
/// operations of the history.
fn read_back(cluster: &Cluster, config: &ClusterConfig, records: &[Record]) -> Vec<Record> {
    let keys: BTreeSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
    let mut client = Client::new(config.clone()).unwrap();
    client.deadline = Duration::from_secs(10);
    let mut time = records.iter().map(|r| r.complete_ns).max().unwrap_or(0) + 1;
    let mut reads = Vec::new();
    for key in keys {
        let operation = KvOperation::Get { key: key.into() };
        let output = client.call(operation.clone()).unwrap_or_else(|e| {
            cluster.fail(&format!("the final read of {key} failed: {e}"));
        });
        assert!(matches!(output, KvOutput::Value(_)), "{output:?}");
        reads.push(Record::new(
            client.label(),
            &operation,
            time,
            time + 1,
            Some(&output),
            Status::Ok,
        ));
        time += 2;
    }
    reads
}

#[test]
fn acknowledged_writes_survive_crashes_pauses_and_a_failing_next_primary_and_the_history_is_linearizable()
 {
    let rounds = env_number("VR_FAULT_ROUNDS").unwrap_or(1);
    let seed = env_number("VR_FAULT_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    eprintln!("VR_FAULT_ROUNDS={rounds} VR_FAULT_SEED={seed}");
    let mut random = Random(seed | 1);
    let dir = std::env::temp_dir().join(format!("vr-test-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cluster = Cluster::start(&dir, 21);
    let config = ClusterConfig::load(&cluster.config_path).unwrap();
    let view = cluster.settle();
    assert_eq!(view, View(0));

    let history = dir.join("history.jsonl");
    let load = WARM_UP + ROUND * rounds as u32 + CALM;
    let rate = env_number("VR_FAULT_RATE").map_or(0.0, |r| r as f64);
    let bench_started = Instant::now();
    let mut bench = Process(
        Command::new(env!("CARGO_BIN_EXE_vr"))
            .arg("bench")
            .arg("--config")
            .arg(&cluster.config_path)
            .args(["--clients", CLIENTS, "--keys", KEYS])
            .args(["--read-ratio", "0.5", "--delete-ratio", "0.05"])
            .args(["--cas-ratio", "0.15"])
            .args(["--duration", &load.as_secs_f64().to_string()])
            .args(if rate > 0.0 {
                vec!["--rate".to_string(), rate.to_string()]
            } else {
                Vec::new()
            })
            .arg("--history")
            .arg(&history)
            .stdout(std::fs::File::create(dir.join("bench.out")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("vr bench starts"),
    );
    cluster.note(format!(
        "vr bench: {CLIENTS} clients over {KEYS} keys for {load:?}, {}",
        if rate > 0.0 {
            format!("{rate:.0} operations/s")
        } else {
            "unpaced".into()
        }
    ));
    std::thread::sleep(WARM_UP);

    let mut tally = Tally::default();
    for round in 1..=rounds {
        let round_started = Instant::now();
        let mut faults = [
            Fault::Crash,
            Fault::Pause,
            Fault::NextPrimaryFails,
            Fault::ClusterCrash,
        ];
        for i in (1..faults.len()).rev() {
            faults.swap(i, random.below(i as u64 + 1) as usize);
        }
        cluster.note(format!("round {round}: {faults:?}"));
        for fault in faults {
            let view = cluster.settle();
            match fault {
                Fault::Crash => {
                    crash(&mut cluster, &mut random);
                    tally.crashes += 1;
                }
                Fault::Pause => {
                    pause(&mut cluster, &mut random);
                    tally.pauses += 1;
                }
                Fault::NextPrimaryFails => {
                    let during = next_primary_fails(&mut cluster, &mut random, view);
                    tally.next_primary_failures += 1;
                    tally.during_view_change += usize::from(during);
                }
                Fault::ClusterCrash => {
                    cluster_crash(&mut cluster, &mut random);
                    tally.cluster_crashes += 1;
                }
            }
            cluster.settle();
            std::thread::sleep(random.millis(200, 600));
        }
        cluster.note(format!(
            "round {round} done in {:?}",
            round_started.elapsed()
        ));
        std::thread::sleep(ROUND.saturating_sub(round_started.elapsed()));
    }
    let faults_ended = bench_started.elapsed();
    let view = cluster.settle();

    let bench_deadline = Instant::now() + load + Duration::from_secs(30);
    while bench.0.try_wait().unwrap().is_none() {
        if Instant::now() > bench_deadline {
            cluster.fail("vr bench did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = std::fs::read_to_string(dir.join("bench.out")).unwrap();
    cluster.note(format!("vr bench: {}", output.trim().replace('\n', "; ")));

    let mut records = vr::history::read(&history).unwrap();
    let after_faults = records
        .iter()
        .filter(|r| r.status == Status::Ok && r.invoke_ns > faults_ended.as_nanos())
        .count();
    let reads = read_back(&cluster, &config, &records);
    let keys = reads.len();
    records.extend(reads);
    let started = Instant::now();
    let summary = vr::history::check(&records).unwrap_or_else(|violation| {
        cluster.fail(&format!(
            "VR_FAULT_SEED={seed}: the history is not linearizable (final reads by the last client, after everything else):\n{violation}"
        ))
    });
    let checked = started.elapsed();
    eprintln!(
        "{rounds} round(s), seed {seed}: {} crashes, {} whole-cluster crashes, {} pauses, {} next-primary failures ({} with the view change to v+1 seen under way); final view {}\n\
         history: {} operations ({} ok, {} failed, {} unknown) over {} keys, {keys} final reads; linearizable (checked in {checked:?}); {after_faults} ok operations after the last fault",
        tally.crashes,
        tally.cluster_crashes,
        tally.pauses,
        tally.next_primary_failures,
        tally.during_view_change,
        view.0,
        summary.operations,
        summary.ok,
        summary.failed,
        summary.unknown,
        summary.keys,
    );
    if after_faults == 0 {
        cluster.fail(&format!(
            "no bench operation completed after the last fault ({faults_ended:?} into the {load:?} of load): the cluster made no progress, or the rounds overran"
        ));
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
