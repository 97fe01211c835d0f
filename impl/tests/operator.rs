//! The operator's experience on real processes: exit codes, `cas
//! --expect-absent`, values from standard input, the one request limit, a
//! wrong cluster id, a wrong key, `vr bench` against a dead cluster, logs in
//! a file.

use std::io::Write;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vr::app::{KvOperation, KvOutput};
use vr::client::Client;
use vr::runtime::ClusterConfig;
use vr::runtime::refusal::{self, ANSWERS_PER_SECOND, REFUSAL_LEN, Refusal};
use vr::runtime::wire::{self, Packet, Sender};

/// A `vr cluster` process, killed when dropped.
struct Cluster {
    child: Child,
    port: u16,
    cluster_id: u32,
    /// The key `vr cluster` wrote: this test's own, not the shared default.
    key_file: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.key_file);
    }
}

/// A key file path of this test process's own.
fn key_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("vr-test-{}-{name}.key", std::process::id()))
}

impl Cluster {
    /// `vr cluster` on three free consecutive ports, its log in `log` if
    /// given; returns once it serves.
    fn start(cluster_id: u32, log: Option<&PathBuf>) -> Cluster {
        let port = free_consecutive_ports(3);
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        let key_file = key_path(&format!("cluster-{cluster_id}"));
        let child = Command::new(env!("CARGO_BIN_EXE_vr"))
            .args(["cluster", "--port", &port.to_string()])
            .args(["--cluster-id", &cluster_id.to_string()])
            .arg("--cluster-key-file")
            .arg(&key_file)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("vr cluster starts");
        let cluster = Cluster {
            child,
            port,
            cluster_id,
            key_file,
        };
        // The key file appears when `vr cluster` has written it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cluster.key_file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut client = Client::new(cluster.config()).unwrap();
        client.deadline = Duration::from_secs(10);
        let ready = client.call(KvOperation::Get {
            key: "ready?".into(),
        });
        assert_eq!(ready.unwrap(), KvOutput::Value(None), "the cluster serves");
        cluster
    }

    fn config(&self) -> ClusterConfig {
        let mut config = ClusterConfig::loopback(self.cluster_id, 3, self.port).unwrap();
        config.key_file = Some(self.key_file.clone());
        config
    }

    /// `--cluster ADDR,ADDR,ADDR --cluster-id ID --cluster-key-file PATH`
    /// for this cluster, with its key.
    fn target(&self, cluster_id: u32) -> Vec<String> {
        self.target_with_key(cluster_id, &self.key_file)
    }

    /// [`Self::target`] with the key in `key_file`.
    fn target_with_key(&self, cluster_id: u32, key_file: &std::path::Path) -> Vec<String> {
        let addresses: Vec<String> = (0..3)
            .map(|i| format!("127.0.0.1:{}", self.port + i))
            .collect();
        vec![
            "--cluster".into(),
            addresses.join(","),
            "--cluster-id".into(),
            cluster_id.to_string(),
            "--cluster-key-file".into(),
            key_file.display().to_string(),
        ]
    }
}

fn free_consecutive_ports(n: u16) -> u16 {
    for _ in 0..100 {
        let base = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if base > 65535 - n {
            continue;
        }
        let held: Vec<_> = (0..n)
            .map_while(|i| UdpSocket::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == usize::from(n) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// What `vr ARGS` (with `stdin` on standard input) printed and its exit code.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn vr(args: &[&str], target: &[String], stdin: &[u8]) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vr"))
        .args(args)
        .args(target)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // A command that does not read standard input closes it early.
        let _ = input.write_all(&data);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        code: output.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    }
}

#[test]
fn a_missing_key_exits_1_for_get_delete_and_cas_and_usage_errors_exit_2() {
    let cluster = Cluster::start(31, None);
    let target = cluster.target(31);
    let run = |args: &[&str]| vr(args, &target, b"");
    assert_eq!(run(&["put", "k", "v"]).code, 0);
    let got = run(&["get", "k"]);
    assert_eq!((got.code, got.stdout.as_str()), (0, "v\n"));
    let missing = run(&["get", "nothing-here"]);
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(missing.stderr.contains("not found"), "{}", missing.stderr);
    let missing = run(&["delete", "nothing-here"]);
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(missing.stderr.contains("not found"), "{}", missing.stderr);
    let differs = run(&["cas", "k", "other", "w"]);
    assert_eq!(differs.code, 1, "{}", differs.stderr);
    assert!(differs.stderr.contains("holds \"v\""), "{}", differs.stderr);
    let absent = run(&["cas", "nothing-here", "old", "w"]);
    assert_eq!(absent.code, 1, "{}", absent.stderr);
    assert!(absent.stderr.contains("holds nothing"), "{}", absent.stderr);
    assert_eq!(run(&["delete", "k"]).code, 0);
    // Usage and configuration errors.
    assert_eq!(run(&["get"]).code, 2);
    assert_eq!(run(&["put", "k"]).code, 2);
    assert_eq!(run(&["get", "--bogus-flag", "k"]).code, 2);
    let unreadable = run(&["put", "k", "--value-file", "/nonexistent/value"]);
    assert_eq!(unreadable.code, 2);
    assert!(
        unreadable.stderr.contains("cannot read VALUE"),
        "{}",
        unreadable.stderr
    );
    let both = vr(
        &["cas", "k", "--expect-file", "-", "--new-file", "-"],
        &target,
        b"x",
    );
    assert_eq!(both.code, 2);
    assert!(both.stderr.contains("standard input"), "{}", both.stderr);
    // --help documents the codes.
    let help = vr(&["--help"], &[], b"");
    assert!(help.stdout.contains("Exit status:"), "{}", help.stdout);
    assert!(help.stdout.contains("3  no answer"), "{}", help.stdout);
}

#[test]
fn a_cluster_that_does_not_answer_exits_3_for_clients_status_and_bench() {
    // Three ports nobody listens on.
    let port = free_consecutive_ports(3);
    let addresses: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", port + i)).collect();
    let key_file = key_path("silent");
    vr::runtime::keyfile::generate(&key_file, true).unwrap();
    let target = vec![
        "--cluster".to_string(),
        addresses.join(","),
        "--cluster-key-file".to_string(),
        key_file.display().to_string(),
    ];
    let get = vr(&["get", "k"], &target, b"");
    assert_eq!(get.code, 3, "{}", get.stderr);
    assert!(get.stderr.contains("no reply"), "{}", get.stderr);
    let status = vr(&["status"], &target, b"");
    assert_eq!(status.code, 3, "{}", status.stderr);
    let bench = vr(
        &["bench", "--clients", "2", "--duration", "0.5"],
        &target,
        b"",
    );
    assert_eq!(bench.code, 3, "{}", bench.stderr);
    assert!(
        bench.stderr.contains("no operation succeeded"),
        "{}",
        bench.stderr
    );
    let _ = std::fs::remove_file(&key_file);
}

#[test]
fn cas_compares_a_literal_dash_and_expect_absent_means_absent() {
    let cluster = Cluster::start(32, None);
    let target = cluster.target(32);
    let run = |args: &[&str]| vr(args, &target, b"");
    assert_eq!(run(&["put", "dash", "-"]).code, 0);
    let swapped = run(&["cas", "dash", "-", "after"]);
    assert_eq!(swapped.code, 0, "{}", swapped.stderr);
    assert_eq!(run(&["get", "dash"]).stdout, "after\n");
    // `-` is not "absent": on an absent key it does not swap.
    assert_eq!(run(&["cas", "fresh", "-", "x"]).code, 1);
    let created = run(&["cas", "fresh", "--expect-absent", "x"]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    assert_eq!(run(&["get", "fresh"]).stdout, "x\n");
    let again = run(&["cas", "fresh", "--expect-absent", "y"]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.contains("holds \"x\""), "{}", again.stderr);
    // --expect-absent takes no OLD: a third word is refused.
    assert_eq!(run(&["cas", "fresh", "--expect-absent", "x", "y"]).code, 2);
}

#[test]
fn a_value_read_from_standard_input_round_trips_and_every_oversized_request_quotes_one_limit() {
    let cluster = Cluster::start(33, None);
    let target = cluster.target(33);
    // A value with newlines, quotes and a final newline, too long for most
    // terminals' line editors, through standard input; its key from a file.
    let mut value = String::new();
    while value.len() < 50_000 {
        value.push_str("line \"quoted\" $HOME `tick` -\n");
    }
    let key_file = std::env::temp_dir().join(format!("vr-test-key-{}", std::process::id()));
    std::fs::write(&key_file, "a key with spaces").unwrap();
    let key_arg = key_file.to_str().unwrap();
    let put = vr(
        &["put", "--key-file", key_arg, "--value-file", "-"],
        &target,
        value.as_bytes(),
    );
    assert_eq!(put.code, 0, "{}", put.stderr);
    let got = vr(&["get", "a key with spaces"], &target, b"");
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(got.stdout, format!("{value}\n"));
    let via_file = vr(&["get", "--key-file", key_arg], &target, b"");
    assert_eq!(via_file.stdout, got.stdout);
    let _ = std::fs::remove_file(&key_file);
    // Larger than one command-line argument may be (128 KiB on Linux), and
    // just over the limit: both refused before sending, quoting the same
    // limit, the one the replicas apply.
    let limit = wire::REQUEST_MAX.to_string();
    for size in [200_000, 59_000, 100_000] {
        let big = "x".repeat(size);
        let refused = vr(
            &["put", "big", "--value-file", "-"],
            &target,
            big.as_bytes(),
        );
        assert_eq!(refused.code, 2, "{size}: {}", refused.stderr);
        assert!(
            refused.stderr.contains(&format!("at most {limit} bytes")),
            "{size}: {}",
            refused.stderr
        );
        assert!(!refused.stderr.contains("60000"), "{}", refused.stderr);
    }
    assert_eq!(vr(&["get", "big"], &target, b"").code, 1);
}

#[test]
fn a_wrong_cluster_id_is_reported_as_such_at_once_and_answers_are_small_and_limited() {
    let cluster = Cluster::start(34, None);
    let wrong = vr(&["get", "k"], &cluster.target(35), b"");
    assert_eq!(wrong.code, 3, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("wrong cluster id"),
        "{}",
        wrong.stderr
    );
    assert!(wrong.stderr.contains("cluster 35"), "{}", wrong.stderr);
    assert!(
        wrong.took < Duration::from_secs(5),
        "not the 5 s timeout: {:?}",
        wrong.took
    );
    let status = vr(&["status"], &cluster.target(35), b"");
    assert_eq!(status.code, 3, "{}", status.stderr);
    assert!(
        status.stderr.contains("wrong cluster id"),
        "{}",
        status.stderr
    );
    // On the wire: a StatusQuery of cluster 35 gets a smaller answer,
    // readable as cluster 35's refusal of that query, that does not name
    // cluster 34.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let replica = ("127.0.0.1", cluster.port);
    let key = vr::runtime::keyfile::for_cluster(&cluster.config()).unwrap();
    let query = wire::encode(&key, Sender::Client, 35, &Packet::StatusQuery).unwrap();
    socket.send_to(&query, replica).unwrap();
    let mut buffer = [0u8; 2048];
    let (len, _) = socket.recv_from(&mut buffer).expect("an answer");
    assert!(
        len < query.len(),
        "{len} bytes answer {} bytes",
        query.len()
    );
    assert_eq!(
        refusal::read(&buffer[..len], 35, &query),
        Some(Refusal::WrongCluster)
    );
    assert!(!buffer[..len].windows(4).any(|w| w == 34u32.to_le_bytes()));
    // A replica's datagram under a wrong id, and a refusal, get nothing.
    let from_replica = wire::encode(
        &key,
        Sender::Replica(vr::core::ReplicaId(1)),
        35,
        &Packet::StatusQuery,
    )
    .unwrap();
    socket.send_to(&from_replica, replica).unwrap();
    socket.send_to(&buffer[..len], replica).unwrap();
    assert!(socket.recv_from(&mut buffer).is_err(), "answered");
    // A flood gets at most the rate limit's answers.
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..200 {
        socket.send_to(&query, replica).unwrap();
    }
    let mut answers = 0;
    while socket.recv_from(&mut buffer).is_ok() {
        answers += 1;
    }
    assert!(
        answers > 0 && answers <= 2 * ANSWERS_PER_SECOND,
        "{answers} answers to a flood of 200"
    );
    // Nothing changed: the right cluster id still works.
    let right = vr(&["put", "k", "v"], &cluster.target(34), b"");
    assert_eq!(right.code, 0, "{}", right.stderr);
}

#[test]
fn a_wrong_key_is_reported_as_such_at_once_and_changes_nothing() {
    let cluster = Cluster::start(37, None);
    assert_eq!(
        vr(&["put", "k", "before"], &cluster.target(37), b"").code,
        0
    );
    let wrong_key = key_path("wrong");
    let keygen = vr(&["keygen", wrong_key.to_str().unwrap()], &[], b"");
    assert_eq!(keygen.code, 0, "{}", keygen.stderr);
    let target = cluster.target_with_key(37, &wrong_key);
    let put = vr(&["put", "k", "after"], &target, b"");
    assert_eq!(put.code, 3, "{}", put.stderr);
    assert!(put.stderr.contains("wrong key"), "{}", put.stderr);
    assert!(
        put.stderr.contains(wrong_key.to_str().unwrap()),
        "names the key file: {}",
        put.stderr
    );
    assert!(
        put.took < Duration::from_secs(5),
        "not the 5 s timeout: {:?}",
        put.took
    );
    let status = vr(&["status"], &target, b"");
    assert_eq!(status.code, 3, "{}", status.stderr);
    assert!(status.stderr.contains("wrong key"), "{}", status.stderr);
    // On the wire: a request under another key gets a refusal smaller than
    // the request, which echoes its tag and nothing else of it.
    let other = vr::runtime::keyfile::read(&wrong_key).unwrap();
    let request = Packet::Request(vr::core::Request {
        operation: vr::core::Command::Apply(KvOperation::Put {
            key: "k".into(),
            value: "evil".into(),
        }),
        client: vr::core::ClientId(77),
        request: vr::core::RequestNumber(1),
    });
    let sent = wire::encode(&other, Sender::Client, 37, &request).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    socket.send_to(&sent, ("127.0.0.1", cluster.port)).unwrap();
    let mut buffer = [0u8; 2048];
    let (len, _) = socket.recv_from(&mut buffer).expect("an answer");
    assert_eq!(len, REFUSAL_LEN);
    assert!(len < sent.len());
    assert_eq!(
        refusal::read(&buffer[..len], 37, &sent),
        Some(Refusal::Unauthenticated)
    );
    // The value is what the right key wrote, and the replicas counted the
    // refused datagrams.
    let got = vr(&["get", "k"], &cluster.target(37), b"");
    assert_eq!((got.code, got.stdout.as_str()), (0, "before\n"));
    let client = Client::new(cluster.config()).unwrap();
    let unauthenticated: u64 = client
        .statuses(Duration::from_secs(2))
        .unwrap()
        .iter()
        .flatten()
        .map(|report| report.counters.unauthenticated)
        .sum();
    assert!(unauthenticated >= 2, "{unauthenticated} counted");
    let _ = std::fs::remove_file(&wrong_key);
}

#[test]
fn replica_logs_written_to_a_file_carry_no_colour_codes() {
    let log = std::env::temp_dir().join(format!("vr-test-log-{}.txt", std::process::id()));
    let cluster = Cluster::start(36, Some(&log));
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("replica running") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(cluster);
    let _ = std::fs::remove_file(&log);
    assert!(text.contains("replica running"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in a log file: {text:?}"
    );
}

#[test]
fn check_history_exits_0_1_or_2_for_linearizable_violated_or_unreadable() {
    let path = std::env::temp_dir().join(format!("vr-test-history-{}.jsonl", std::process::id()));
    let put = r#"{"client":1,"operation":"put","key":"k","value":"a","invoke_ns":0,"complete_ns":1,"result":"stored","status":"ok"}"#;
    let stale = r#"{"client":2,"operation":"get","key":"k","value":null,"invoke_ns":2,"complete_ns":3,"result":null,"status":"ok"}"#;
    let file = path.to_str().unwrap();
    std::fs::write(&path, format!("{put}\n")).unwrap();
    assert_eq!(vr(&["check-history", file], &[], b"").code, 0);
    std::fs::write(&path, format!("{put}\n{stale}\n")).unwrap();
    let violated = vr(&["check-history", file], &[], b"");
    assert_eq!(violated.code, 1, "{}", violated.stderr);
    assert!(
        violated.stderr.contains("not linearizable"),
        "{}",
        violated.stderr
    );
    std::fs::write(&path, "not json\n").unwrap();
    assert_eq!(vr(&["check-history", file], &[], b"").code, 2);
    let _ = std::fs::remove_file(&path);
    assert_eq!(vr(&["check-history", file], &[], b"").code, 2);
}
