//! The attacks of issue 11, on real `vr replica` processes on loopback, and
//! what stops each (spec/protocol.md, "Threat model").
//!
//! An attacker on the network can forge a datagram's source address. As root
//! (CI runs as root) these tests do too, through a raw socket that writes
//! the IP and UDP headers itself, and they capture the replicas' real
//! datagrams through another raw socket to replay them. Without the
//! privilege a forged datagram goes out of an ordinary socket instead (without
//! the key it must fail either way: the test says which it did), and the
//! replay test, which needs captures, says it is skipped.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vr::app::{KvOperation, KvOutput};
use vr::client::{Client, ClientError};
use vr::core::{
    ClientId, CommitNumber, Entry, Envelope, Message, MessageId, OpNumber, Prepare, ReplicaId,
    Request, RequestNumber, StartViewChange, View,
};
use vr::runtime::ClusterConfig;
use vr::runtime::auth::Key;
use vr::runtime::wire::{self, Packet, Sender, StatusReport};

struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Three replica processes of a fresh cluster with its own key.
struct Cluster {
    config: ClusterConfig,
    path: PathBuf,
    state: PathBuf,
    replicas: Vec<Option<Replica>>,
}

impl Cluster {
    fn start(name: &str, cluster_id: u32) -> Cluster {
        Cluster::start_with(name, cluster_id, |_| {})
    }

    /// A cluster whose configuration `adjust` changes first.
    fn start_with(name: &str, cluster_id: u32, adjust: impl Fn(&mut ClusterConfig)) -> Cluster {
        let dir = std::env::temp_dir().join(format!("vr-attack-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sockets: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let addresses = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
        drop(sockets);
        let mut config = ClusterConfig::new(cluster_id, addresses).unwrap();
        config.key_file = Some(dir.join("cluster.key"));
        adjust(&mut config);
        vr::runtime::keyfile::generate(&dir.join("cluster.key"), true).unwrap();
        let path = dir.join("cluster.toml");
        std::fs::write(&path, config.to_toml()).unwrap();
        let mut cluster = Cluster {
            config,
            path,
            state: dir.join("state"),
            replicas: (0..3).map(|_| None).collect(),
        };
        for id in 0..3 {
            cluster.spawn(id);
        }
        // Every replica has bound its socket before any attack: a datagram
        // sent earlier would be lost, not refused.
        cluster.statuses(&cluster.client());
        cluster
    }

    /// Replica `id`'s first start.
    fn spawn(&mut self, id: u8) {
        let child = Command::new(env!("CARGO_BIN_EXE_vr"))
            .args(["replica", "--config"])
            .arg(&self.path)
            .args(["--id", &id.to_string(), "--fresh", "--data-dir"])
            .arg(&self.state)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("vr replica starts");
        self.replicas[usize::from(id)] = Some(Replica(child));
    }

    fn kill(&mut self, id: u8) {
        let mut replica = self.replicas[usize::from(id)].take().unwrap();
        replica.0.kill().unwrap();
        replica.0.wait().unwrap();
    }

    fn key(&self) -> Key {
        vr::runtime::keyfile::for_cluster(&self.config).unwrap()
    }

    fn address(&self, id: u8) -> SocketAddrV4 {
        match self.config.address(ReplicaId(id)).unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("loopback IPv4"),
        }
    }

    fn client(&self) -> Client {
        let mut client = Client::new(self.config.clone()).unwrap();
        client.deadline = Duration::from_secs(10);
        client
    }

    /// Every replica's status, waiting until all three answer.
    fn statuses(&self, client: &Client) -> Vec<StatusReport> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let reports = client.statuses(Duration::from_millis(300)).unwrap();
            if reports.iter().all(Option::is_some) {
                return reports.into_iter().flatten().collect();
            }
            assert!(Instant::now() < deadline, "a replica does not answer");
        }
    }
}

fn put(key: &str, value: &str) -> KvOperation {
    KvOperation::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn get(client: &mut Client, key: &str) -> KvOutput {
    client.call(KvOperation::Get { key: key.into() }).unwrap()
}

fn value(v: &str) -> KvOutput {
    KvOutput::Value(Some(v.into()))
}

/// A raw IPv4 socket that writes its own IP and UDP headers: the forged
/// source address of an attacker on the network. `None` without CAP_NET_RAW.
struct Spoofer(i32);

impl Spoofer {
    fn open() -> Option<Spoofer> {
        // SAFETY: a plain socket(2) call; the descriptor is owned by the
        // Spoofer and closed on drop.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        (fd >= 0).then_some(Spoofer(fd))
    }

    /// Sends `payload` as a UDP datagram from `source` to `destination`.
    fn send(&self, source: SocketAddrV4, destination: SocketAddrV4, payload: &[u8]) {
        let udp_len = 8 + payload.len();
        let total = 20 + udp_len;
        let mut packet = Vec::with_capacity(total);
        // IPv4 header: the kernel fills in the checksum and the id.
        packet.extend_from_slice(&[0x45, 0]);
        packet.extend_from_slice(&(total as u16).to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0, 0, 64, libc::IPPROTO_UDP as u8, 0, 0]);
        packet.extend_from_slice(&source.ip().octets());
        packet.extend_from_slice(&destination.ip().octets());
        // UDP header: checksum 0 (none), allowed over IPv4.
        packet.extend_from_slice(&source.port().to_be_bytes());
        packet.extend_from_slice(&destination.port().to_be_bytes());
        packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
        packet.extend_from_slice(&[0, 0]);
        packet.extend_from_slice(payload);
        let to = sockaddr(destination);
        // SAFETY: `packet` and `to` outlive the call; lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                self.0,
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        assert_eq!(sent, total as isize, "raw send");
    }
}

impl Drop for Spoofer {
    fn drop(&mut self) {
        // SAFETY: the descriptor is this Spoofer's.
        unsafe { libc::close(self.0) };
    }
}

fn sockaddr(address: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: address.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(address.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// A datagram seen on the wire.
#[derive(Clone)]
struct Captured {
    source: SocketAddrV4,
    destination: SocketAddrV4,
    payload: Vec<u8>,
}

/// A raw socket that receives a copy of every UDP datagram the host
/// receives. `None` without CAP_NET_RAW.
struct Capture(i32);

impl Capture {
    fn open() -> Option<Capture> {
        // SAFETY: as in Spoofer::open.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP) };
        if fd < 0 {
            return None;
        }
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 20_000,
        };
        // SAFETY: `timeout` outlives the call.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Some(Capture(fd))
    }

    /// The datagrams received until `until`, among `among` (both ends).
    fn collect(&self, until: Instant, among: &[SocketAddrV4]) -> Vec<Captured> {
        let mut buffer = vec![0u8; 65_536];
        let mut seen = Vec::new();
        while Instant::now() < until {
            // SAFETY: `buffer` outlives the call and is its length.
            let n = unsafe { libc::recv(self.0, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
            if n <= 0 {
                continue;
            }
            let packet = &buffer[..n as usize];
            let header = usize::from(packet[0] & 0x0f) * 4;
            if packet.len() < header + 8 {
                continue;
            }
            let ip = |at: usize| {
                Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3])
            };
            let port = |at: usize| u16::from_be_bytes([packet[at], packet[at + 1]]);
            let source = SocketAddrV4::new(ip(12), port(header));
            let destination = SocketAddrV4::new(ip(16), port(header + 2));
            if among.contains(&source) && among.contains(&destination) {
                seen.push(Captured {
                    source,
                    destination,
                    payload: packet[header + 8..].to_vec(),
                });
            }
        }
        seen
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // SAFETY: the descriptor is this Capture's.
        unsafe { libc::close(self.0) };
    }
}

/// Sends `payload` to `destination` claiming `source`: spoofed if this
/// process may, else from an ordinary socket. Says which.
fn send_forged(source: SocketAddrV4, destination: SocketAddrV4, payload: &[u8]) -> &'static str {
    match Spoofer::open() {
        Some(spoofer) => {
            spoofer.send(source, destination, payload);
            "a raw socket, from a spoofed source address"
        }
        None => {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.send_to(payload, destination).unwrap();
            "an ordinary socket (no CAP_NET_RAW: the source is not spoofed)"
        }
    }
}

fn envelope(from: u8, to: u8, msg: Message<vr::app::Kv>) -> Packet {
    Packet::Replica(Envelope {
        from: ReplicaId(from),
        id: MessageId::of(ReplicaId(to), &msg),
        msg,
    })
}

/// Waits until replicas `ids` report a commit-number of at least `commit`.
fn await_commit(cluster: &Cluster, client: &Client, ids: &[usize], commit: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ids
        .iter()
        .all(|id| cluster.statuses(client)[*id].commit.0 >= commit)
    {
        assert!(
            Instant::now() < deadline,
            "replicas {ids:?} never committed {commit}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_forged_prepare_claiming_the_primary_is_dropped_and_counted_and_acknowledged_writes_survive_kill_dash_nine()
 {
    let mut cluster = Cluster::start("prepare", 21);
    let mut client = cluster.client();
    for i in 0..5 {
        let stored = client
            .call(put(&format!("k{i}"), &format!("v{i}")))
            .unwrap();
        assert_eq!(stored, KvOutput::Stored);
    }
    await_commit(&cluster, &client, &[0, 1, 2], 5);
    let op = cluster.statuses(&client)[1].op.0;
    let forged = envelope(
        0,
        1,
        Message::Prepare(Prepare {
            view: View(0),
            op: OpNumber(op + 1),
            entries: vec![Entry {
                operation: vr::core::Command::Apply(put("victim", "EVIL")),
                client: client.id().expect("a session"),
                request: RequestNumber(1_000),
            }],
            commit: CommitNumber(op + 1),
        }),
    );
    // The attacker has no key: it tags with one of its own.
    let bytes = wire::encode(
        &Key::generate().unwrap(),
        Sender::Replica(ReplicaId(0)),
        21,
        &forged,
    )
    .unwrap();
    let mut how = "";
    for backup in [1, 2] {
        how = send_forged(cluster.address(0), cluster.address(backup), &bytes);
    }
    eprintln!("forged Prepare sent through {how}");
    std::thread::sleep(Duration::from_millis(200));
    let reports = cluster.statuses(&client);
    for backup in [1, 2] {
        let r = &reports[backup];
        assert_eq!(r.counters.unauthenticated, 1, "replica {backup}: {r:?}");
        assert_eq!(r.op.0, op, "replica {backup} appended nothing: {r:?}");
    }
    assert_eq!(
        client.call(put("victim", "good")).unwrap(),
        KvOutput::Stored
    );
    cluster.kill(0);
    assert_eq!(get(&mut client, "victim"), value("good"));
    assert!(client.view().0 >= 1, "read in a new view");
    for i in 0..5 {
        assert_eq!(get(&mut client, &format!("k{i}")), value(&format!("v{i}")));
    }
}

#[test]
fn a_forged_or_overflowing_start_view_change_changes_no_view_and_failover_still_works() {
    let mut cluster = Cluster::start("svc", 22);
    let mut client = cluster.client();
    assert_eq!(client.call(put("a", "1")).unwrap(), KvOutput::Stored);
    let svc = |view: u64| {
        envelope(
            1,
            0,
            Message::StartViewChange(StartViewChange { view: View(view) }),
        )
    };
    let stranger = Key::generate().unwrap();
    let key = cluster.key();
    let one = Sender::Replica(ReplicaId(1));
    // Without the key: StartViewChange(1000) and (u64::MAX - 1), to everyone.
    for view in [1000, u64::MAX - 1] {
        let bytes = wire::encode(&stranger, one, 22, &svc(view)).unwrap();
        for to in [0, 2] {
            send_forged(cluster.address(1), cluster.address(to), &bytes);
        }
    }
    // With the key (as a corrupted replica could): an overflowing view is
    // dropped by the core's range guard, not by the MAC.
    let keyed = wire::encode(&key, one, 22, &svc(u64::MAX - 1)).unwrap();
    let mut how = "";
    for to in [0, 2] {
        how = send_forged(cluster.address(1), cluster.address(to), &keyed);
    }
    eprintln!("forged StartViewChanges sent through {how}");
    std::thread::sleep(Duration::from_millis(300));
    for r in cluster.statuses(&client) {
        assert_eq!(r.view, View(0), "{r:?}");
        assert_eq!(r.status, "Normal", "{r:?}");
    }
    let reports = cluster.statuses(&client);
    assert_eq!(reports[0].counters.unauthenticated, 2);
    assert_eq!(reports[2].counters.unauthenticated, 2);
    // kill -9 of the primary: the view change goes to view 1, not past the
    // end of the number line.
    cluster.kill(0);
    assert_eq!(client.call(put("a", "2")).unwrap(), KvOutput::Stored);
    assert_eq!(client.view(), View(1));
    assert_eq!(get(&mut client, "a"), value("2"));
}

#[test]
fn a_request_hijacking_another_clients_id_is_dropped_and_the_victim_is_still_served() {
    let cluster = Cluster::start("hijack", 23);
    let mut victim = cluster.client();
    assert_eq!(victim.call(put("a", "1")).unwrap(), KvOutput::Stored);
    // Any sender can send a request (no spoofing needed): the victim's id
    // with a far request-number, tagged without the cluster key.
    let session = victim.id().expect("a session");
    let hijack = Packet::Request(Request {
        operation: vr::core::Command::Apply(put("a", "EVIL")),
        client: session,
        request: RequestNumber(1_000_000),
    });
    let bytes = wire::encode(&Key::generate().unwrap(), Sender::Client, 23, &hijack).unwrap();
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    for id in 0..3 {
        attacker.send_to(&bytes, cluster.address(id)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    for (id, r) in cluster.statuses(&victim).iter().enumerate() {
        assert_eq!(r.counters.unauthenticated, 1, "replica {id}: {r:?}");
    }
    assert_eq!(victim.call(put("a", "2")).unwrap(), KvOutput::Stored);
    assert_eq!(get(&mut victim, "a"), value("2"));
    // A key holder that knows the victim's session number but not its secret
    // names a session the cluster never granted: answered SessionExpired, not
    // executed (spec/protocol.md, "Client sessions").
    let mut holder = cluster.client();
    let guessed = ClientId::granted(session.register_op().unwrap(), session.secret() ^ 1);
    let hijack = Packet::Request(Request {
        operation: vr::core::Command::Apply(put("a", "EVIL")),
        client: guessed,
        request: RequestNumber(1_000_000),
    });
    let bytes = wire::encode(&cluster.key(), Sender::Client, 23, &hijack).unwrap();
    for id in 0..3 {
        attacker.send_to(&bytes, cluster.address(id)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(&mut holder, "a"), value("2"));
    assert_eq!(victim.call(put("a", "3")).unwrap(), KvOutput::Stored);
    assert_eq!(get(&mut victim, "a"), value("3"));
}

#[test]
fn replaying_captured_authenticated_datagrams_changes_nothing() {
    let (Some(capture), Some(spoofer)) = (Capture::open(), Spoofer::open()) else {
        eprintln!("SKIPPED: capturing and replaying datagrams needs CAP_NET_RAW (root)");
        return;
    };
    let cluster = Cluster::start("replay", 24);
    let mut client = cluster.client();
    let among: Vec<SocketAddrV4> = (0..3).map(|id| cluster.address(id)).collect();
    let writer = std::thread::spawn({
        let mut client = cluster.client();
        move || {
            for i in 0..20 {
                let stored = client
                    .call(put(&format!("k{i}"), &format!("v{i}")))
                    .unwrap();
                assert_eq!(stored, KvOutput::Stored);
            }
        }
    });
    let captured = capture.collect(Instant::now() + Duration::from_millis(1500), &among);
    writer.join().unwrap();
    await_commit(&cluster, &client, &[0, 1, 2], 20);
    let before: Vec<_> = cluster
        .statuses(&client)
        .into_iter()
        .map(|r| (r.status, r.view, r.op, r.commit))
        .collect();
    assert!(captured.len() >= 40, "only {} captured", captured.len());
    // Every captured datagram again, twice, each from its real source.
    for _ in 0..2 {
        for c in &captured {
            spoofer.send(c.source, c.destination, &c.payload);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let reports = cluster.statuses(&client);
    let after: Vec<_> = reports
        .iter()
        .map(|r| (r.status.clone(), r.view, r.op, r.commit))
        .collect();
    assert_eq!(after, before, "{} datagrams replayed", captured.len());
    for r in &reports {
        assert_eq!(r.counters.dropped(), 0, "authentic, so not dropped: {r:?}");
    }
    // Not vacuous: the replayed datagrams do reach the replicas. One more,
    // with a bit flipped, is counted where it lands.
    let mut flipped = captured[0].clone();
    flipped.payload[10] ^= 1;
    spoofer.send(flipped.source, flipped.destination, &flipped.payload);
    std::thread::sleep(Duration::from_millis(100));
    let landed = among
        .iter()
        .position(|a| *a == flipped.destination)
        .unwrap();
    let r = &cluster.statuses(&client)[landed];
    assert_eq!(r.counters.unauthenticated, 1, "{r:?}");
    for i in 0..20 {
        assert_eq!(get(&mut client, &format!("k{i}")), value(&format!("v{i}")));
    }
    eprintln!(
        "{} captured datagrams replayed twice: nothing changed",
        captured.len()
    );
}

#[test]
fn a_flood_of_sessions_from_distinct_client_ids_leaves_the_client_table_bounded() {
    const MAX: u64 = 20;
    let cluster = Cluster::start_with("flood", 25, |c| c.client_table_max = MAX);
    let mut early = cluster.client();
    assert_eq!(early.call(put("a", "1")).unwrap(), KvOutput::Stored);
    // A key holder's flood: Registers, each under a new provisional id, to
    // the primary.
    let key = cluster.key();
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..500u64 {
        let register = Packet::Request(Request {
            operation: vr::core::Command::Register,
            client: ClientId::provisional(1_000_000 + i),
            request: RequestNumber(1),
        });
        let bytes = wire::encode(&key, Sender::Client, 25, &register).unwrap();
        flooder.send_to(&bytes, cluster.address(0)).unwrap();
        if i % 25 == 24 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Wait until the replicas agree and stop moving.
    let observer = cluster.client();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    let reports = loop {
        std::thread::sleep(Duration::from_millis(500));
        let reports = cluster.statuses(&observer);
        let commits: Vec<u64> = reports.iter().map(|r| r.commit.0).collect();
        let settled = commits.iter().all(|c| *c == commits[0]);
        if settled && last == Some(commits[0]) {
            break reports;
        }
        last = settled.then_some(commits[0]);
        assert!(
            Instant::now() < deadline,
            "the replicas do not settle: {reports:?}"
        );
    };
    assert!(
        reports[0].commit.0 >= 200,
        "most Registers executed: {reports:?}"
    );
    for r in &reports {
        assert!(
            r.sessions >= 1 && r.sessions <= MAX,
            "replica {:?} holds {} sessions, bound {MAX}",
            r.id,
            r.sessions
        );
    }
    // The early client's session was pruned: its next request is answered
    // SessionExpired and not executed; its next call opens a new session.
    assert!(
        matches!(early.call(put("a", "2")), Err(ClientError::SessionExpired)),
        "a pruned session's request"
    );
    assert_eq!(get(&mut early, "a"), value("1"));
}
