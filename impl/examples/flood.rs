//! A flood of requests from distinct client ids, for `bench/client-flood.sh`:
//! `flood CONFIG COUNT [--without-key] [--rate OPS_PER_SECOND]`.
//!
//! Sends COUNT requests, each a Register under a new provisional client id
//! (the request that adds a row to the client table when it executes; see
//! spec/protocol.md, "Client sessions"), to every replica (as a retrying
//! client would), paced at
//! the rate (default 40,000 a second). With `--without-key` the requests are
//! tagged with a random key instead of the cluster's, as an attacker without
//! the key would send them. Then waits until the primary's commit-number
//! stops moving and prints it.

use std::net::UdpSocket;
use std::time::{Duration, Instant};
use vr::client::Client;
use vr::core::{ClientId, Command, Request, RequestNumber};
use vr::runtime::auth::Key;
use vr::runtime::wire::{self, Packet, Sender};
use vr::runtime::{ClusterConfig, keyfile};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: flood CONFIG COUNT [--without-key] [--rate OPS_PER_SECOND]";
    let [config, count, rest @ ..] = args.as_slice() else {
        return Err(usage.into());
    };
    let cluster = ClusterConfig::load(config.as_ref()).map_err(|e| e.to_string())?;
    let count: u64 = count.parse().map_err(|_| usage.to_string())?;
    let without_key = rest.iter().any(|a| a == "--without-key");
    let rate: f64 = match rest.iter().position(|a| a == "--rate") {
        Some(i) => rest
            .get(i + 1)
            .and_then(|r| r.parse().ok())
            .ok_or(usage.to_string())?,
        None => 40_000.0,
    };
    let key = if without_key {
        Key::generate().map_err(|e| e.to_string())?
    } else {
        keyfile::for_cluster(&cluster).map_err(|e| e.to_string())?
    };
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let base = getrandom::u64().map_err(|e| e.to_string())? >> 1;
    let started = Instant::now();
    for i in 0..count {
        let request = Packet::Request(Request {
            operation: Command::Register,
            client: ClientId::provisional(base.wrapping_add(i)),
            request: RequestNumber(1),
        });
        let bytes = wire::encode(&key, Sender::Client, cluster.cluster_id, &request)
            .map_err(|e| e.to_string())?;
        for address in &cluster.addresses {
            let _ = socket.send_to(&bytes, address);
        }
        let due = started + Duration::from_secs_f64((i + 1) as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let sent = started.elapsed();
    let observer = Client::new(cluster).map_err(|e| e.to_string())?;
    let mut last = None;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let commit = observer
            .statuses(Duration::from_millis(500))
            .map_err(|e| e.to_string())?
            .into_iter()
            .flatten()
            .map(|r| r.commit.0)
            .max();
        if commit == last {
            break;
        }
        last = commit;
    }
    println!(
        "sent {count} requests from distinct client ids ({}) in {:.1} s; primary commit-number {}",
        if without_key {
            "without the key"
        } else {
            "with the key"
        },
        sent.as_secs_f64(),
        last.map_or("unknown".into(), |c| c.to_string())
    );
    Ok(())
}
