//! `vr bench`: closed-loop load from concurrent clients, each waiting for its
//! reply before sending the next operation.

use super::Target;
use super::exit::Failure;
use clap::Args;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vr::app::{KvOperation, KvOutput};
use vr::client::{Client, ClientError};
use vr::history::{Record, Status};
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
    /// Fraction of operations that are deletes.
    #[arg(long, default_value_t = 0.0)]
    delete_ratio: f64,
    /// Fraction of operations that are compare-and-swaps, each expecting the
    /// value this client last saw for its key. The rest are puts.
    #[arg(long, default_value_t = 0.0)]
    cas_ratio: f64,
    /// Operations per second, in all, at most (default: as fast as the
    /// clients go).
    #[arg(long)]
    rate: Option<f64>,
    /// Write every operation to FILE as JSON lines (see `vr::history`).
    #[arg(long)]
    history: Option<PathBuf>,
}

/// The mix of operations: each a fraction of all.
#[derive(Clone, Copy)]
struct Mix {
    read: f64,
    delete: f64,
    cas: f64,
}

/// What each client thread does.
#[derive(Clone, Copy)]
struct Plan {
    started: Instant,
    duration: Duration,
    keys: usize,
    value_size: usize,
    mix: Mix,
    clients: usize,
    /// Each client starts an operation at most this often.
    interval: Option<Duration>,
    keep: bool,
}

struct Outcome {
    latencies_us: Vec<u64>,
    records: Vec<Record>,
    errors: u64,
}

/// Runs the load and reports it; fails (exit 3) if no operation succeeded,
/// as against a cluster that is down.
pub fn run(args: &BenchArgs) -> Result<(), Failure> {
    let (succeeded, attempted) = load_and_report(args)?;
    if succeeded == 0 {
        return Err(Failure::unreachable(format!(
            "no operation succeeded ({attempted} attempted): is the cluster up, and is its id the one given?"
        )));
    }
    Ok(())
}

/// The operations that succeeded and those attempted.
fn load_and_report(args: &BenchArgs) -> Result<(usize, u64), String> {
    let mix = Mix {
        read: args.read_ratio,
        delete: args.delete_ratio,
        cas: args.cas_ratio,
    };
    for (name, ratio) in [
        ("--read-ratio", mix.read),
        ("--delete-ratio", mix.delete),
        ("--cas-ratio", mix.cas),
    ] {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(format!("{name} {ratio} is not between 0 and 1"));
        }
    }
    if mix.read + mix.delete + mix.cas > 1.0 {
        return Err("--read-ratio, --delete-ratio and --cas-ratio add up to more than 1".into());
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
            "--value-size must be between {VALUE_MIN} (each write's value is unique) and {VALUE_MAX} (a request, key and value together, is at most {} bytes)",
            vr::runtime::wire::REQUEST_MAX
        ));
    }
    let interval = match args.rate {
        None => None,
        Some(rate) if rate > 0.0 && rate.is_finite() => {
            Some(Duration::from_secs_f64(args.clients as f64 / rate))
        }
        Some(rate) => return Err(format!("--rate {rate} is not a positive number")),
    };
    let cluster = args.target.resolve()?;
    let started = Instant::now();
    let plan = Plan {
        started,
        duration,
        keys: args.keys,
        value_size: args.value_size,
        mix,
        clients: args.clients,
        interval,
        keep: args.history.is_some(),
    };
    let completed = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for thread in 0..args.clients {
        let mut client = Client::new(cluster.clone()).map_err(|e| e.to_string())?;
        client.deadline = Duration::from_secs(2);
        let completed = Arc::clone(&completed);
        let cluster = cluster.clone();
        handles.push(std::thread::spawn(move || {
            load(&cluster, &mut client, thread as u64, plan, &completed)
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
        vr::history::write(&mut out, &records)
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!(
            "history: {} operations in {}",
            records.len(),
            path.display()
        );
    }
    Ok((latencies.len(), latencies.len() as u64 + errors))
}

fn load(
    cluster: &ClusterConfig,
    client: &mut Client,
    thread: u64,
    plan: Plan,
    completed: &AtomicU64,
) -> Outcome {
    let Plan {
        started,
        duration,
        keys,
        value_size,
        mix,
        clients,
        interval,
        keep,
    } = plan;
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
    // The value this thread last saw for each key: what its cas expects.
    let mut seen: HashMap<String, Option<String>> = HashMap::new();
    // With a rate, client i starts its operations i / clients of an
    // interval apart from client 0's, skipping the starts it missed.
    let mut next_start = started;
    if let Some(interval) = interval {
        next_start += interval.mul_f64(thread as f64 / clients as f64);
    }
    while started.elapsed() < duration {
        if let Some(interval) = interval {
            std::thread::sleep(next_start.saturating_duration_since(Instant::now()));
            next_start = (next_start + interval).max(Instant::now());
            if started.elapsed() >= duration {
                break;
            }
        }
        let key = format!("key-{:0>12}", random() % keys as u64);
        let draw = (random() % 1_000_000) as f64 / 1_000_000.0;
        sequence += 1;
        let value = || {
            let mut value = format!("{:016x}-{sequence}-", client.label());
            value.extend(std::iter::repeat_n(
                'x',
                value_size.saturating_sub(value.len()),
            ));
            value
        };
        let operation = if draw < mix.read {
            KvOperation::Get { key: key.clone() }
        } else if draw < mix.read + mix.delete {
            KvOperation::Delete { key: key.clone() }
        } else if draw < mix.read + mix.delete + mix.cas {
            KvOperation::Cas {
                key: key.clone(),
                expected: seen.get(&key).cloned().flatten(),
                new: value(),
            }
        } else {
            KvOperation::Put {
                key: key.clone(),
                value: value(),
            }
        };
        let invoke = started.elapsed();
        let result = client.call(operation.clone());
        let complete = started.elapsed();
        let (status, output) = match result {
            Ok(output) => {
                outcome
                    .latencies_us
                    .push((complete - invoke).as_micros() as u64);
                completed.fetch_add(1, Ordering::Relaxed);
                if mix.cas > 0.0 {
                    seen.insert(key, value_after(&operation, &output));
                }
                (Status::Ok, Some(output))
            }
            Err(ClientError::Rejected(_)) => {
                outcome.errors += 1;
                (Status::Failed, None)
            }
            Err(_) => {
                // It may still take effect: this client's next operation
                // would overlap it, so later operations use a new client.
                outcome.errors += 1;
                retire = true;
                (Status::Unknown, None)
            }
        };
        let id = client.label();
        if retire {
            retire = false;
            if let Ok(fresh) = Client::new(cluster.clone()) {
                let deadline = client.deadline;
                *client = fresh;
                client.deadline = deadline;
            }
        }
        if keep {
            outcome.records.push(Record::new(
                id,
                &operation,
                invoke.as_nanos(),
                complete.as_nanos(),
                output.as_ref(),
                status,
            ));
        }
    }
    outcome
}

/// The value a key holds just after `operation` returned `output`.
fn value_after(operation: &KvOperation, output: &KvOutput) -> Option<String> {
    match (operation, output) {
        (KvOperation::Put { value, .. }, _) => Some(value.clone()),
        (KvOperation::Cas { new, .. }, KvOutput::Cas { swapped: true, .. }) => Some(new.clone()),
        (
            _,
            KvOutput::Value(value)
            | KvOutput::Cas {
                previous: value, ..
            },
        ) => value.clone(),
        (_, KvOutput::Stored | KvOutput::Deleted(_)) => None,
    }
}
