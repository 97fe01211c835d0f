//! Sends `--count` Register requests, each from a new provisional client id,
//! to the replica at `--address` of cluster `--cluster-id`, paced at about
//! `--rate` a second: the hostile load of issue 11 ("unauthenticated requests
//! grow replica memory without bound") against a real replica.
//! bench/session-flood.sh runs it against three `vr replica` processes.

use std::net::UdpSocket;
use std::time::{Duration, Instant};
use vr::core::{ClientId, Command, Request, RequestNumber};
use vr::runtime::wire::{self, Packet};

fn main() -> Result<(), String> {
    let (mut address, mut cluster_id, mut count, mut rate) =
        (String::new(), 1u32, 1_000_000u64, 50_000u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|_| format!("{flag}: {value}"));
        match flag.as_str() {
            "--address" => address = value.clone(),
            "--cluster-id" => cluster_id = number()? as u32,
            "--count" => count = number()?,
            "--rate" => rate = number()?.max(1),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let started = Instant::now();
    for i in 0..count {
        let request = Request {
            operation: Command::Register,
            client: ClientId::provisional(i + 1),
            request: RequestNumber(1),
        };
        let bytes =
            wire::encode(cluster_id, &Packet::Request(request)).map_err(|e| e.to_string())?;
        let _ = socket.send_to(&bytes, &address);
        // Pacing: sleep until this send's time.
        let due = started + Duration::from_secs_f64((i + 1) as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now())
            && i % 256 == 0
        {
            std::thread::sleep(wait);
        }
    }
    eprintln!(
        "sent {count} Registers in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
