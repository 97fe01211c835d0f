//! A replica's resident memory before and after a flood of client sessions
//! (issue 11: "bounded memory under hostile load"). One replica (n = 1, so
//! every request commits at once) of the KV store, configured as the
//! runtime configures it (checkpoints every `wire::CHECKPOINT_INTERVAL`
//! entries), is stepped in this process with `--requests` requests, each a
//! Register from a new client followed by one put of that client, 64 to a
//! batch; the process's resident memory (VmRSS) is printed at the start,
//! once the client table is full, at each quarter, and at the end. The log
//! is compacted every checkpoint interval, so after the first two intervals
//! the figure stays level when the table is bounded. bench/session-flood.sh
//! runs it with the default bound and without one.
//!
//!     cargo run --release -p vr --example session_flood -- \
//!         --requests 1000000 --client-table-max 10000

use std::time::Instant;
use vr::app::{Kv, KvOperation};
use vr::core::{
    ClientId, Command, Config, Effect, Input, Outcome, Replica, ReplicaId, Request, RequestNumber,
};
use vr::runtime::wire;

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), String> {
    let mut requests: u64 = 1_000_000;
    let mut max: u64 = vr::core::CLIENT_TABLE_MAX_DEFAULT;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: not a number: {value}"))?;
        match flag.as_str() {
            "--requests" => requests = number,
            "--client-table-max" => max = number,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let config = Config::with_settings(1, ReplicaId(0), 3, wire::STATE_TRANSFER_ENTRIES_MAX)
        .and_then(|c| c.with_message_weight_max(wire::MESSAGE_WEIGHT_MAX))
        .and_then(|c| c.with_checkpoint_interval(wire::CHECKPOINT_INTERVAL))
        .and_then(|c| c.with_client_table_max(max))
        .map_err(|e| e.to_string())?;
    let mut effects = Vec::new();
    let mut replica = Replica::<Kv>::new(config, &mut effects);
    let before = resident_kib();
    println!("client_table_max {max}, {requests} requests (Registers and puts)");
    println!("resident before: {before} KiB");
    let started = Instant::now();
    let (mut sent, mut secret, mut full_at) = (0u64, 0u64, None);
    while sent < requests {
        // A batch of Registers, each from a new client.
        let batch: Vec<Request<Kv>> = (0..32)
            .map(|i| Request {
                operation: Command::Register,
                client: ClientId::provisional(secret + i),
                request: RequestNumber(1),
            })
            .collect();
        secret += 32;
        effects.clear();
        replica.step(Input::Requests(batch), &mut effects);
        // Each new client's first put.
        let puts: Vec<Request<Kv>> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Reply(r) => match r.output {
                    Outcome::Registered(client) => Some(Request {
                        operation: Command::Apply(KvOperation::Put {
                            key: format!("k{}", client.secret() % 1000),
                            value: "v".into(),
                        }),
                        client,
                        request: RequestNumber(1),
                    }),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        sent += 32 + puts.len() as u64;
        effects.clear();
        replica.step(Input::Requests(puts), &mut effects);
        if sent / (requests / 4).max(1) != (sent - 32 - 32) / (requests / 4).max(1) {
            println!(
                "resident at {sent} requests: {} KiB ({} rows, log base {})",
                resident_kib(),
                replica.client_table().len(),
                replica.log().base()
            );
        }
        if full_at.is_none() && replica.client_table().len() as u64 >= max {
            full_at = Some(sent);
            println!(
                "resident when the table filled ({} rows, {sent} requests): {} KiB",
                replica.client_table().len(),
                resident_kib()
            );
        }
    }
    let after = resident_kib();
    println!(
        "resident after: {after} KiB ({} rows, commit {}, {:.1}s)",
        replica.client_table().len(),
        replica.commit_number(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "growth: {} KiB, {:.1} bytes per client",
        after.saturating_sub(before),
        (after.saturating_sub(before) * 1024) as f64 / (requests as f64 / 2.0)
    );
    Ok(())
}
