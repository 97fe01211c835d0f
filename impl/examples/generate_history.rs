//! Writes a linearizable key-value history, as `vr bench --history` would,
//! deterministically from a seed, for benchmarking `vr check-history`
//! (`bench/check-history.sh`).
//!
//! ```sh
//! cargo run --release -p vr --example generate_history -- OPERATIONS KEYS CLIENTS SEED > history.jsonl
//! ```
//!
//! Closed-loop clients each invoke an operation on a random key, which takes
//! effect at a point inside its interval (so the history is linearizable by
//! construction) and completes; the next is invoked a moment later. Half the
//! operations are reads, a third puts, the rest deletes and compare-and-swaps
//! expecting the value the client last saw. One in 10,000 times out (half of
//! those take effect) and one in 10,000 fails; a client that timed out is
//! replaced by a new one, as `vr bench` does. Records are written as their
//! operations take effect, one a line, without holding the history.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::Write;
use vr::app::{Kv, KvOperation, KvOutput};
use vr::core::StateMachine;
use vr::history::{Record, Status};

/// An operation in flight: its client's id, its interval.
struct Planned {
    id: u64,
    operation: KvOperation,
    invoke: u64,
    complete: u64,
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .unwrap_or_else(|_| panic!("usage: OPERATIONS KEYS CLIENTS SEED (numbers): {a}"))
        })
        .collect();
    let arg = |i: usize, default: u64| args.get(i).copied().unwrap_or(default);
    let (operations, keys, clients, seed) = (arg(0, 1_500_000), arg(1, 5), arg(2, 16), arg(3, 1));
    assert!(keys > 0 && clients > 0, "KEYS and CLIENTS must be positive");
    let mut seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut kv = Kv::default();
    let mut seen: Vec<HashMap<String, Option<String>>> = vec![HashMap::new(); clients as usize];
    let mut ids: Vec<u64> = (0..clients).map(|c| c + 1).collect();
    let mut next_id = clients + 1;
    // Ordered by the point where the operation takes effect.
    let mut flight: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut planned: Vec<Option<Planned>> = (0..clients).map(|_| None).collect();
    let mut sequence = 0u64;
    let mut plan = |now: u64,
                    random: &mut dyn FnMut(u64) -> u64,
                    seen: &HashMap<String, Option<String>>,
                    id: u64|
     -> (u64, Planned) {
        sequence += 1;
        let key = format!("key-{:0>12}", random(keys));
        let value = format!("{id:016x}-{sequence}-xxxxxxxx");
        let operation = match random(100) {
            0..50 => KvOperation::Get { key },
            50..85 => KvOperation::Put { key, value },
            85..90 => KvOperation::Delete { key },
            _ => KvOperation::Cas {
                expected: seen.get(&key).cloned().flatten(),
                key,
                new: value,
            },
        };
        // Latencies of 20 to 220 µs, effect anywhere inside.
        let invoke = now + 1_000 + random(4_000);
        let point = invoke + 10_000 + random(100_000);
        let complete = point + 10_000 + random(100_000);
        let op = Planned {
            id,
            operation,
            invoke,
            complete,
        };
        (point, op)
    };
    for client in 0..clients as usize {
        let (point, op) = plan(0, &mut random, &seen[client], ids[client]);
        planned[client] = Some(op);
        flight.push(Reverse((point, client)));
    }
    for _ in 0..operations {
        let Reverse((_, client)) = flight.pop().expect("every client has one in flight");
        let op = planned[client].take().expect("planned");
        let fate = random(10_000);
        let (output, status) = match fate {
            0 => (None, Status::Failed),
            1 => (None, Status::Unknown),
            2 => {
                kv.apply(&op.operation);
                (None, Status::Unknown)
            }
            _ => (Some(kv.apply(&op.operation)), Status::Ok),
        };
        if let Some(output) = &output {
            let after = match (&op.operation, output) {
                (KvOperation::Put { value, .. }, _) => Some(value.clone()),
                (KvOperation::Cas { new, .. }, KvOutput::Cas { swapped: true, .. }) => {
                    Some(new.clone())
                }
                (_, KvOutput::Value(v) | KvOutput::Cas { previous: v, .. }) => v.clone(),
                (_, KvOutput::Stored | KvOutput::Deleted(_)) => None,
            };
            let key = match &op.operation {
                KvOperation::Put { key, .. }
                | KvOperation::Get { key }
                | KvOperation::Delete { key }
                | KvOperation::Cas { key, .. } => key.clone(),
            };
            seen[client].insert(key, after);
        }
        let record = Record::new(
            op.id,
            &op.operation,
            u128::from(op.invoke),
            u128::from(op.complete),
            output.as_ref(),
            status,
        );
        serde_json::to_writer(&mut out, &record).expect("stdout");
        out.write_all(b"\n").expect("stdout");
        if status == Status::Unknown {
            ids[client] = next_id;
            next_id += 1;
            seen[client].clear();
        }
        let (point, next) = plan(op.complete, &mut random, &seen[client], ids[client]);
        planned[client] = Some(next);
        flight.push(Reverse((point, client)));
    }
    out.flush().expect("stdout");
}
