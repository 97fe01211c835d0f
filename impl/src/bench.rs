//! `vr bench`: closed-loop load from concurrent clients, each waiting for its
//! reply before sending the next operation.

use super::Target;
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vr::app::{KvOperation, KvOutput};
use vr::client::{Client, ClientError};
use vr::runtime::ClusterConfig;

/// Written values start with the client id and a sequence number.
const VALUE_MIN: usize = 24;
/// Values and keys must fit one request datagram.
const VALUE_MAX: usize = vr::runtime::wire::REQUEST_MAX - 1024;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    target: Target,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Bytes per value written.
    #[arg(long, default_value_t = 32)]
    value_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Fraction of operations that are reads (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    read_ratio: f64,
    /// Write every operation to FILE as JSON lines.
    #[arg(long)]
    history: Option<PathBuf>,
}

/// One operation, as Jepsen-style checkers read it.
#[derive(Serialize)]
struct Record {
    client: u64,
    operation: &'static str,
    key: String,
    value: Option<String>,
    invoke_ns: u128,
    complete_ns: u128,
    result: Option<String>,
    /// ok, failed (did not take effect), or unknown (timed out: may have).
    status: &'static str,
}

struct Outcome {
    latencies_us: Vec<u64>,
    records: Vec<Record>,
    errors: u64,
}

pub fn run(args: &BenchArgs) -> Result<(), String> {
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return Err(format!(
            "--read-ratio {} is not between 0 and 1",
            args.read_ratio
        ));
    }
    if args.clients == 0 || args.keys == 0 {
        return Err("--clients and --keys must be positive".into());
    }
    let duration = Duration::try_from_secs_f64(args.duration)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!(
                "--duration {} is not a positive number of seconds",
                args.duration
            )
        })?;
    if args.value_size < VALUE_MIN || args.value_size > VALUE_MAX {
        return Err(format!(
            "--value-size must be between {VALUE_MIN} (each write's value is unique) and {VALUE_MAX} (a datagram)"
        ));
    }
    let cluster = args.target.resolve()?;
    let started = Instant::now();
    let completed = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for thread in 0..args.clients {
        let mut client = Client::new(cluster.clone()).map_err(|e| e.to_string())?;
        client.deadline = Duration::from_secs(2);
        let completed = Arc::clone(&completed);
        let (keys, value_size, read_ratio, keep) = (
            args.keys,
            args.value_size,
            args.read_ratio,
            args.history.is_some(),
        );
        let cluster = cluster.clone();
        handles.push(std::thread::spawn(move || {
            load(
                &cluster,
                &mut client,
                thread as u64,
                started,
                duration,
                keys,
                value_size,
                read_ratio,
                keep,
                &completed,
            )
        }));
    }
    let mut last = 0;
    while started.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(1).min(duration.saturating_sub(started.elapsed())));
        let now = completed.load(Ordering::Relaxed);
        eprint!(
            "\r  {:>6.1}s  {:>10} ops  {:>8} ops/s   ",
            started.elapsed().as_secs_f64(),
            now,
            now - last
        );
        last = now;
    }
    eprintln!();
    let mut latencies = Vec::new();
    let mut records = Vec::new();
    let mut errors = 0;
    for handle in handles {
        let outcome = handle
            .join()
            .map_err(|_| "a client thread panicked".to_string())?;
        latencies.extend(outcome.latencies_us);
        records.extend(outcome.records);
        errors += outcome.errors;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index] as f64 / 1000.0
    };
    println!(
        "{} clients, {:.1}s: {} ops, {:.0} ops/s, {} errors; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
        args.clients,
        seconds,
        latencies.len(),
        latencies.len() as f64 / seconds,
        errors,
        percentile(0.50),
        percentile(0.99),
        percentile(0.999)
    );
    if let Some(path) = &args.history {
        records.sort_by_key(|r| r.invoke_ns);
        let file = std::fs::File::create(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        for record in &records {
            serde_json::to_writer(&mut out, record).map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| e.to_string())?;
        }
        out.flush().map_err(|e| e.to_string())?;
        println!(
            "history: {} operations in {}",
            records.len(),
            path.display()
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn load(
    cluster: &ClusterConfig,
    client: &mut Client,
    thread: u64,
    started: Instant,
    duration: Duration,
    keys: usize,
    value_size: usize,
    read_ratio: f64,
    keep: bool,
    completed: &AtomicU64,
) -> Outcome {
    let mut outcome = Outcome {
        latencies_us: Vec::new(),
        records: Vec::new(),
        errors: 0,
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (thread + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut sequence = 0u64;
    let mut retire = false;
    while started.elapsed() < duration {
        let key = format!("key-{:0>12}", random() % keys as u64);
        let read = (random() % 1_000_000) as f64 / 1_000_000.0 < read_ratio;
        sequence += 1;
        let (operation, name, value) = if read {
            (KvOperation::Get { key: key.clone() }, "get", None)
        } else {
            let mut value = format!("{:016x}-{sequence}-", client.id().0);
            value.extend(std::iter::repeat_n(
                'x',
                value_size.saturating_sub(value.len()),
            ));
            (
                KvOperation::Put {
                    key: key.clone(),
                    value: value.clone(),
                },
                "put",
                Some(value),
            )
        };
        let invoke = started.elapsed();
        let result = client.call(operation);
        let complete = started.elapsed();
        let (status, result) = match result {
            Ok(output) => {
                outcome
                    .latencies_us
                    .push((complete - invoke).as_micros() as u64);
                completed.fetch_add(1, Ordering::Relaxed);
                let shown = match output {
                    KvOutput::Value(v) => v,
                    KvOutput::Stored => Some("stored".into()),
                    other => Some(format!("{other:?}")),
                };
                ("ok", shown)
            }
            Err(ClientError::Rejected(_)) => {
                outcome.errors += 1;
                ("failed", None)
            }
            Err(_) => {
                // It may still take effect: this client's next operation
                // would overlap it, so later operations use a new client.
                outcome.errors += 1;
                retire = true;
                ("unknown", None)
            }
        };
        let id = client.id().0;
        if retire {
            retire = false;
            if let Ok(fresh) = Client::new(cluster.clone()) {
                let deadline = client.deadline;
                *client = fresh;
                client.deadline = deadline;
            }
        }
        if keep {
            outcome.records.push(Record {
                client: id,
                operation: name,
                key,
                value,
                invoke_ns: invoke.as_nanos(),
                complete_ns: complete.as_nanos(),
                result,
                status,
            });
        }
    }
    outcome
}
