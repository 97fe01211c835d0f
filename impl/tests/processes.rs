//! Real `vr replica` processes on loopback: failover after kill -9, recovery
//! of the restarted replica, a whole-cluster kill -9 in durable mode, the
//! safe start, hostile datagrams, bad configuration files.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vr::app::{KvOperation, KvOutput};
use vr::client::Client;
use vr::core::ReplicaId;
use vr::runtime::ClusterConfig;
use vr::runtime::auth::Key;
use vr::runtime::wire::{self, Packet, Sender};

struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vr-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn cluster(dir: &Path, cluster_id: u32) -> (ClusterConfig, PathBuf) {
    cluster_in_mode(dir, cluster_id, true)
}

fn cluster_in_mode(dir: &Path, cluster_id: u32, durable: bool) -> (ClusterConfig, PathBuf) {
    let ports = free_ports(3);
    let addresses = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}").parse().unwrap())
        .collect();
    let mut config = ClusterConfig::new(cluster_id, addresses).unwrap();
    config.durable = durable;
    config.key_file = Some(dir.join("cluster.key"));
    vr::runtime::keyfile::generate(&dir.join("cluster.key"), true).unwrap();
    let path = dir.join("cluster.toml");
    std::fs::write(&path, config.to_toml()).unwrap();
    (config, path)
}

/// Replica `id`'s first start (with `--fresh`).
fn start(config: &Path, id: u8, data: &Path) -> Replica {
    spawn(config, id, data, &["--fresh"])
}

/// Replica `id`'s restart (no flag: from its data directory).
fn restart(config: &Path, id: u8, data: &Path) -> Replica {
    spawn(config, id, data, &[])
}

fn spawn(config: &Path, id: u8, data: &Path, flags: &[&str]) -> Replica {
    Replica(
        Command::new(env!("CARGO_BIN_EXE_vr"))
            .args(["replica", "--config"])
            .arg(config)
            .args(["--id", &id.to_string(), "--data-dir"])
            .arg(data)
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("vr replica starts"),
    )
}

fn put(key: &str, value: &str) -> KvOperation {
    KvOperation::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn status_of(client: &Client, id: usize) -> Option<vr::runtime::wire::StatusReport> {
    client
        .statuses(Duration::from_millis(300))
        .ok()?
        .into_iter()
        .nth(id)
        .flatten()
}

#[test]
fn a_write_survives_kill_dash_nine_of_the_primary_and_the_restarted_replica_recovers() {
    let dir = scratch("failover");
    // In-memory mode: the restarted replica runs the recovery protocol.
    let (config, path) = cluster_in_mode(&dir, 11, false);
    let state = dir.join("state");
    let mut replicas: Vec<Option<Replica>> =
        (0..3).map(|i| Some(start(&path, i, &state))).collect();
    let mut client = Client::new(config.clone()).unwrap();
    client.deadline = Duration::from_secs(10);
    for i in 0..5 {
        assert_eq!(
            client
                .call(put(&format!("k{i}"), &format!("v{i}")))
                .unwrap(),
            KvOutput::Stored
        );
    }
    // kill -9 of the primary of view 0.
    let mut primary = replicas[0].take().unwrap();
    primary.0.kill().unwrap();
    primary.0.wait().unwrap();
    let killed = Instant::now();
    assert_eq!(
        client.call(put("after", "failover")).unwrap(),
        KvOutput::Stored
    );
    let failover = killed.elapsed();
    assert!(client.view().0 >= 1, "a new view serves the write");
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    // The killed replica restarts, finds its start marker, and recovers.
    replicas[0] = Some(restart(&path, 0, &state));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(report) = status_of(&client, 0)
            && report.status == "Normal"
            && report.commit.0 >= 6
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica 0 never recovered: {:?}",
            status_of(&client, 0)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every acknowledged write reads back.
    for i in 0..5 {
        let got = client
            .call(KvOperation::Get {
                key: format!("k{i}"),
            })
            .unwrap();
        assert_eq!(got, KvOutput::Value(Some(format!("v{i}"))));
    }
    let got = client
        .call(KvOperation::Get {
            key: "after".into(),
        })
        .unwrap();
    assert_eq!(got, KvOutput::Value(Some("failover".into())));
    eprintln!("failover (kill -9 of the primary to the next acknowledged write): {failover:?}");
}

fn wait_until_normal(client: &Client, id: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while status_of(client, id).is_none_or(|r| r.status != "Normal") {
        assert!(
            Instant::now() < deadline,
            "replica {id} never became Normal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn in_durable_mode_every_acknowledged_write_survives_kill_dash_nine_of_the_whole_cluster() {
    let dir = scratch("whole-cluster");
    let (config, path) = cluster(&dir, 13);
    let data = dir.join("data");
    let mut replicas: Vec<Replica> = (0..3).map(|i| start(&path, i, &data)).collect();
    let mut client = Client::new(config.clone()).unwrap();
    client.deadline = Duration::from_secs(10);
    for i in 0..20 {
        assert_eq!(
            client
                .call(put(&format!("k{i}"), &format!("v{i}")))
                .unwrap(),
            KvOutput::Stored
        );
    }
    // Every replica at once: a power loss of the machine room.
    for replica in &mut replicas {
        replica.0.kill().unwrap();
    }
    for replica in &mut replicas {
        replica.0.wait().unwrap();
    }
    let _replicas: Vec<Replica> = (0..3).map(|i| restart(&path, i, &data)).collect();
    for id in 0..3 {
        wait_until_normal(&client, id);
    }
    for i in 0..20 {
        let got = client
            .call(KvOperation::Get {
                key: format!("k{i}"),
            })
            .unwrap();
        assert_eq!(got, KvOutput::Value(Some(format!("v{i}"))), "k{i}");
    }
    assert_eq!(
        client.call(put("after", "restart")).unwrap(),
        KvOutput::Stored
    );
}

#[test]
fn a_replica_never_starts_empty_unless_told_and_the_error_says_what_to_do() {
    let dir = scratch("safe-start");
    for durable in [true, false] {
        let (_, path) = cluster_in_mode(&dir, 14, durable);
        let data = dir.join(format!("data-{durable}"));
        let output = Command::new(env!("CARGO_BIN_EXE_vr"))
            .args(["replica", "--config"])
            .arg(&path)
            .args(["--id", "1", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(!output.status.success(), "durable={durable}: started empty");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--fresh") && stderr.contains("--recover"),
            "durable={durable}: {stderr}"
        );
    }
    // In durable mode, --fresh over a replica's state is refused.
    let (config, path) = cluster(&dir, 15);
    let data = dir.join("data-fresh-twice");
    let mut replica = start(&path, 0, &data);
    let client = Client::new(config).unwrap();
    wait_until_normal(&client, 0);
    replica.0.kill().unwrap();
    replica.0.wait().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vr"))
        .args(["replica", "--config"])
        .arg(&path)
        .args(["--id", "0", "--fresh", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("holds its state"));
}

#[test]
fn garbage_truncated_and_forged_datagrams_are_dropped_and_counted_and_the_replica_still_serves() {
    let dir = scratch("hostile");
    let (config, path) = cluster(&dir, 12);
    let state = dir.join("state");
    let _replicas: Vec<Replica> = (0..3).map(|i| start(&path, i, &state)).collect();
    let mut client = Client::new(config.clone()).unwrap();
    assert_eq!(client.call(put("a", "1")).unwrap(), KvOutput::Stored);
    let view_before = status_of(&client, 0).expect("replica 0 answers").view;
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = config.address(ReplicaId(0)).unwrap();
    let key = vr::runtime::keyfile::for_cluster(&config).unwrap();
    // Garbage, a truncated datagram, another cluster's, one tagged with
    // another key, and a forged sender (with the key, from the wrong address).
    attacker.send_to(b"\xff\x00garbage", target).unwrap();
    let status = wire::encode(&key, Sender::Client, 12, &Packet::StatusQuery).unwrap();
    attacker.send_to(&status[..3], target).unwrap();
    attacker
        .send_to(
            &wire::encode(&key, Sender::Client, 99, &Packet::StatusQuery).unwrap(),
            target,
        )
        .unwrap();
    let other_key = Key::generate().unwrap();
    attacker
        .send_to(
            &wire::encode(&other_key, Sender::Client, 12, &Packet::StatusQuery).unwrap(),
            target,
        )
        .unwrap();
    let forged = Packet::Replica(vr::core::Envelope {
        from: ReplicaId(1),
        id: vr::core::MessageId(1),
        msg: vr::core::Message::StartViewChange(vr::core::StartViewChange {
            view: vr::core::View(5),
        }),
    });
    attacker
        .send_to(
            &wire::encode(&key, Sender::Replica(ReplicaId(1)), 12, &forged).unwrap(),
            target,
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let report = status_of(&client, 0).expect("replica 0 answers");
    assert_eq!(report.counters.wrong_version, 1, "garbage: {report:?}");
    assert_eq!(report.counters.malformed, 1, "truncated: {report:?}");
    assert_eq!(report.counters.wrong_cluster, 1);
    assert_eq!(report.counters.unauthenticated, 1);
    assert_eq!(report.counters.forged, 1);
    assert!(
        report.view >= view_before && report.view < vr::core::View(5),
        "the forged StartViewChange (view 5) was not taken: {report:?}"
    );
    assert_eq!(
        client.call(KvOperation::Get { key: "a".into() }).unwrap(),
        KvOutput::Value(Some("1".into()))
    );
}

#[test]
fn bad_configuration_files_give_a_clear_error_and_a_non_zero_exit() {
    let dir = scratch("badconfig");
    let cases = [
        (
            "even.toml",
            "cluster_id = 1\n[[replica]]\nid = 0\naddress = \"127.0.0.1:1\"\n[[replica]]\nid = 1\naddress = \"127.0.0.1:2\"\n",
            "odd number",
        ),
        (
            "dup.toml",
            "cluster_id = 1\n[[replica]]\nid = 0\naddress = \"127.0.0.1:1\"\n[[replica]]\nid = 0\naddress = \"127.0.0.1:2\"\n[[replica]]\nid = 1\naddress = \"127.0.0.1:3\"\n",
            "appears twice",
        ),
        ("syntax.toml", "cluster_id = \n", "invalid configuration"),
        (
            "timers.toml",
            "cluster_id = 1\n[[replica]]\nid = 0\naddress = \"127.0.0.1:1\"\n[timers]\nheartbeat_ms = 500\n",
            "must be below primary_timeout_ms",
        ),
    ];
    for (name, text, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_vr"))
            .args(["replica", "--config"])
            .arg(&path)
            .args(["--id", "0"])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_vr"))
        .args(["replica", "--config"])
        .arg(dir.join("missing.toml"))
        .args(["--id", "0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
}
