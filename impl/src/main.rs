//! `vr`: run replicas, talk to a cluster, benchmark it.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use vr::app::{KvOperation, KvOutput};
use vr::client::Client;
use vr::runtime::{ClusterConfig, Node, Start, mark_started, start_mode};

mod bench;

#[derive(Parser)]
#[command(
    name = "vr",
    version,
    about = "Viewstamped Replication: run replicas of a key-value store, and talk to them",
    long_about = "Viewstamped Replication: run replicas of a key-value store, and talk to them.\n\n\
        RUST_LOG sets the log level (default: info for replicas, warn for clients); view changes, \
        disconnections and recoveries log at info."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole cluster on loopback in this process (replica i on
    /// 127.0.0.1:PORT+i) until Ctrl-C.
    Cluster {
        /// Replicas (odd).
        #[arg(long, default_value_t = 3)]
        replicas: u8,
        /// Port of replica 0.
        #[arg(long, default_value_t = 7000)]
        port: u16,
        /// Cluster id: datagrams of other clusters are dropped.
        #[arg(long, default_value_t = 1)]
        cluster_id: u32,
        /// Where to write the new cluster key the replicas use, for clients
        /// (default: vr/cluster-ID.key in the temporary directory, where
        /// `vr put` and the others look without --config).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Write a new random cluster key to PATH, readable by its owner only
    /// (mode 0600); name it in the configuration as key_file = "PATH".
    Keygen { path: PathBuf },
    /// Run one replica of the cluster a configuration file describes.
    Replica {
        /// The cluster's configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// This replica's id in it.
        #[arg(long)]
        id: u8,
        /// Where the replica notes that it has started before: a restart runs
        /// the recovery protocol instead of starting empty in view 0.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("vr"))]
        state_dir: PathBuf,
        /// Start as the cluster's first start, even if this replica ran before.
        #[arg(long, conflicts_with = "recover")]
        fresh: bool,
        /// Start by recovering, even if this replica never ran before.
        #[arg(long)]
        recover: bool,
    },
    /// Set KEY to VALUE.
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        target: Target,
    },
    /// Read KEY (through the log: linearizable).
    Get {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Remove KEY.
    Delete {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Set KEY to NEW if it holds OLD (`-` for absent).
    Cas {
        key: String,
        old: String,
        new: String,
        #[command(flatten)]
        target: Target,
    },
    /// Show each replica's status, view, op-number, commit-number, connected
    /// peers and dropped-datagram counters.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Closed-loop load against a running cluster.
    Bench(bench::BenchArgs),
    /// Check that a history `vr bench --history` wrote is linearizable.
    CheckHistory {
        /// The history (JSON lines).
        file: PathBuf,
    },
}

/// Which cluster to talk to.
#[derive(Args, Clone)]
pub struct Target {
    /// The cluster's configuration file.
    #[arg(long, conflicts_with = "cluster")]
    config: Option<PathBuf>,
    /// The replicas' addresses, in id order (ADDR,ADDR,...).
    #[arg(long, value_delimiter = ',')]
    cluster: Vec<SocketAddr>,
    /// The cluster id (with --cluster).
    #[arg(long, default_value_t = 1)]
    cluster_id: u32,
    /// The cluster key's file, without --config (default: the one `vr
    /// cluster` writes, vr/cluster-ID.key in the temporary directory).
    #[arg(long, conflicts_with = "config")]
    key_file: Option<PathBuf>,
}

/// Where `vr cluster` writes its key, and clients without a configuration
/// file look for it.
fn default_key_file(cluster_id: u32) -> PathBuf {
    std::env::temp_dir()
        .join("vr")
        .join(format!("cluster-{cluster_id}.key"))
}

impl Target {
    pub fn resolve(&self) -> Result<ClusterConfig, String> {
        if let Some(path) = &self.config {
            return ClusterConfig::load(path).map_err(|e| e.to_string());
        }
        let mut cluster = if self.cluster.is_empty() {
            ClusterConfig::loopback(self.cluster_id, 3, 7000)
        } else {
            ClusterConfig::new(self.cluster_id, self.cluster.clone())
        }
        .map_err(|e| e.to_string())?;
        cluster.key_file = Some(
            self.key_file
                .clone()
                .unwrap_or_else(|| default_key_file(self.cluster_id)),
        );
        Ok(cluster)
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Cluster {
            replicas,
            port,
            cluster_id,
            key_file,
        } => {
            init_logging("info");
            let key_file = key_file.unwrap_or_else(|| default_key_file(cluster_id));
            run_cluster(replicas, port, cluster_id, key_file)
        }
        Command::Keygen { path } => vr::runtime::keyfile::generate(&path, false)
            .map(|_| println!("wrote a new cluster key to {}", path.display()))
            .map_err(|e| e.to_string()),
        Command::Replica {
            config,
            id,
            state_dir,
            fresh,
            recover,
        } => {
            init_logging("info");
            run_replica(&config, id, &state_dir, fresh, recover)
        }
        Command::Put { key, value, target } => call(&target, KvOperation::Put { key, value }),
        Command::Get { key, target } => call(&target, KvOperation::Get { key }),
        Command::Delete { key, target } => call(&target, KvOperation::Delete { key }),
        Command::Cas {
            key,
            old,
            new,
            target,
        } => {
            let expected = (old != "-").then_some(old);
            call(&target, KvOperation::Cas { key, expected, new })
        }
        Command::Status { target } => status(&target),
        Command::Bench(args) => {
            init_logging("warn");
            bench::run(&args)
        }
        Command::CheckHistory { file } => check_history(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_cluster(replicas: u8, port: u16, cluster_id: u32, key_file: PathBuf) -> Result<(), String> {
    if u32::from(port) + u32::from(replicas) > 65536 {
        return Err(format!("ports {port}.. do not fit {replicas} replicas"));
    }
    let mut cluster =
        ClusterConfig::loopback(cluster_id, replicas, port).map_err(|e| e.to_string())?;
    // A new key for each run: the cluster starts empty, so no client needs
    // an older one.
    vr::runtime::keyfile::generate(&key_file, true).map_err(|e| e.to_string())?;
    cluster.key_file = Some(key_file);
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for id in 0..replicas {
        let node = Node::start(cluster.clone(), id, cluster.timers, Start::Fresh)
            .map_err(|e| e.to_string())?;
        let stop = Arc::clone(&stop);
        handles.push(std::thread::spawn(move || node.run(stop)));
    }
    println!("vr cluster {cluster_id}: {replicas} replicas on loopback");
    for (id, address) in cluster.addresses.iter().enumerate() {
        println!("  replica {id}: {address}");
    }
    println!(
        "\nA configuration file for this cluster:\n\n{}",
        cluster.to_toml()
    );
    println!("Try: vr put greeting hello && vr get greeting    (Ctrl-C stops the cluster)");
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("a replica's socket failed: {e}")),
            Err(_) => return Err("a replica thread panicked".into()),
        }
    }
    Ok(())
}

fn run_replica(
    config: &std::path::Path,
    id: u8,
    state_dir: &std::path::Path,
    fresh: bool,
    recover: bool,
) -> Result<(), String> {
    let cluster = ClusterConfig::load(config).map_err(|e| e.to_string())?;
    cluster.core_config(id).map_err(|e| e.to_string())?;
    let start = if fresh {
        Start::Fresh
    } else if recover {
        Start::Recover
    } else {
        start_mode(state_dir, cluster.cluster_id, id)
    };
    let cluster_id = cluster.cluster_id;
    let timers = cluster.timers;
    let node = Node::start(cluster, id, timers, start).map_err(|e| e.to_string())?;
    mark_started(state_dir, cluster_id, id)
        .map_err(|e| format!("cannot use state directory {}: {e}", state_dir.display()))?;
    node.run(Arc::new(AtomicBool::new(false)))
        .map_err(|e| format!("socket failed: {e}"))
}

fn call(target: &Target, operation: KvOperation) -> Result<(), String> {
    let cluster = target.resolve()?;
    let mut client = Client::new(cluster).map_err(|e| e.to_string())?;
    let output = client.call(operation).map_err(|e| e.to_string())?;
    match output {
        KvOutput::Stored => println!("OK"),
        KvOutput::Value(Some(value)) => println!("{value}"),
        KvOutput::Value(None) => return Err("not found".into()),
        KvOutput::Deleted(Some(value)) => println!("deleted {value}"),
        KvOutput::Deleted(None) => println!("not found (nothing deleted)"),
        KvOutput::Cas { swapped: true, .. } => println!("OK"),
        KvOutput::Cas {
            swapped: false,
            previous,
        } => {
            return Err(format!(
                "not swapped: the key holds {}",
                previous.map_or("nothing".to_string(), |p| format!("{p:?}"))
            ));
        }
    }
    Ok(())
}

fn check_history(file: &std::path::Path) -> Result<(), String> {
    let records = vr::history::read(file)?;
    let summary = vr::history::check(&records).map_err(|violation| violation.to_string())?;
    println!(
        "linearizable: {} operations over {} keys ({} ok, {} failed, {} unknown)",
        summary.operations, summary.keys, summary.ok, summary.failed, summary.unknown
    );
    Ok(())
}

fn status(target: &Target) -> Result<(), String> {
    let cluster = target.resolve()?;
    let addresses = cluster.addresses.clone();
    let client = Client::new(cluster).map_err(|e| e.to_string())?;
    let reports = client
        .statuses(Duration::from_millis(500))
        .map_err(|e| e.to_string())?;
    println!(
        "{:<8} {:<22} {:<11} {:>6} {:>10} {:>10}  {:<12} dropped",
        "replica", "address", "status", "view", "op", "commit", "connected"
    );
    let mut answered = 0;
    for (id, (address, report)) in addresses.iter().zip(reports).enumerate() {
        match report {
            Some(r) => {
                let connected: Vec<String> = r.connected.iter().map(|p| p.0.to_string()).collect();
                println!(
                    "{:<8} {:<22} {:<11} {:>6} {:>10} {:>10}  {:<12} {} (malformed {}, wrong version {}, wrong cluster {}, oversized {}, unauthenticated {}, forged {}, unexpected {}; unsendable {})",
                    id,
                    address,
                    r.status,
                    r.view.0,
                    r.op.0,
                    r.commit.0,
                    if connected.is_empty() {
                        "-".to_string()
                    } else {
                        connected.join(",")
                    },
                    r.counters.dropped(),
                    r.counters.malformed,
                    r.counters.wrong_version,
                    r.counters.wrong_cluster,
                    r.counters.oversized,
                    r.counters.unauthenticated,
                    r.counters.forged,
                    r.counters.unexpected,
                    r.counters.unsendable
                );
                answered += 1;
            }
            None => println!("{id:<8} {address:<22} unreachable"),
        }
    }
    if answered == 0 {
        return Err("no replica answered".into());
    }
    Ok(())
}
