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
use vr::runtime::startup::{self, Asked};
use vr::runtime::{ClusterConfig, Node, Start};

mod bench;
mod exit;
mod input;

use exit::Failure;
use input::Wanted;

#[derive(Parser)]
#[command(
    name = "vr",
    version,
    about = "Viewstamped Replication: run replicas of a key-value store, and talk to them",
    long_about = "Viewstamped Replication: run replicas of a key-value store, and talk to them.\n\n\
        RUST_LOG sets the log level (default: info for replicas, warn for clients); view changes, \
        disconnections and recoveries log at info; NO_COLOR (or a log that is not a terminal) \
        turns colours off.",
    after_help = exit::HELP
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
        #[arg(long, value_name = "PATH")]
        cluster_key_file: Option<PathBuf>,
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
        /// Overrides the configuration's data_dir: the replica keeps its
        /// state (durable mode) or its start marker in DATA_DIR/replica-ID.
        #[arg(long, alias = "state-dir")]
        data_dir: Option<PathBuf>,
        /// The cluster's first start: begin empty in view 0. Refused if the
        /// replica's directory holds its state. Without it, a replica
        /// restarts from its directory and refuses to start if that is
        /// empty.
        #[arg(long, conflicts_with = "recover")]
        fresh: bool,
        /// Recover from the other replicas (paper 4.3), whatever the
        /// replica's directory holds: for a replica whose disk was lost.
        #[arg(long)]
        recover: bool,
    },
    /// Set KEY to VALUE.
    Put {
        /// The key (unless --key-file gives it).
        key: Option<String>,
        /// The value (unless --value-file gives it).
        value: Option<String>,
        #[command(flatten)]
        key_file: KeyFile,
        /// Read VALUE from PATH (`-`: standard input), byte for byte,
        /// final newline included: for values a command line cannot hold.
        #[arg(long, value_name = "PATH")]
        value_file: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Read KEY (through the log: linearizable). Exits 1 if it is absent.
    Get {
        /// The key (unless --key-file gives it).
        key: Option<String>,
        #[command(flatten)]
        key_file: KeyFile,
        #[command(flatten)]
        target: Target,
    },
    /// Remove KEY. Exits 1 if it was absent.
    Delete {
        /// The key (unless --key-file gives it).
        key: Option<String>,
        #[command(flatten)]
        key_file: KeyFile,
        #[command(flatten)]
        target: Target,
    },
    /// Set KEY to NEW if it holds OLD, or, with --expect-absent, if it holds
    /// nothing (then give KEY NEW). OLD is compared as given: `-` is the
    /// one-character value. Exits 1 if the key held something else.
    Cas {
        /// The key (unless --key-file gives it).
        key: Option<String>,
        /// The value the key must hold (unless --expect-absent or
        /// --expect-file).
        old: Option<String>,
        /// The value to set (unless --new-file gives it).
        new: Option<String>,
        #[command(flatten)]
        key_file: KeyFile,
        /// Swap only if the key is absent.
        #[arg(long, conflicts_with = "expect_file")]
        expect_absent: bool,
        /// Read OLD from PATH (`-`: standard input), byte for byte.
        #[arg(long, value_name = "PATH")]
        expect_file: Option<PathBuf>,
        /// Read NEW from PATH (`-`: standard input), byte for byte.
        #[arg(long, value_name = "PATH")]
        new_file: Option<PathBuf>,
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

/// Where a key may come from instead of the command line.
#[derive(Args, Clone)]
pub struct KeyFile {
    /// Read KEY from PATH (`-`: standard input), byte for byte.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
}

impl KeyFile {
    fn wanted(&self) -> Wanted<'_> {
        Wanted {
            name: "KEY",
            file: self.key_file.as_ref(),
            flag: "--key-file",
        }
    }
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
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    cluster_key_file: Option<PathBuf>,
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
            self.cluster_key_file
                .clone()
                .unwrap_or_else(|| default_key_file(self.cluster_id)),
        );
        Ok(cluster)
    }
}

fn init_logging(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .init();
}

/// Whether logs are coloured: only on a terminal, and not when NO_COLOR is
/// set to anything but the empty string (https://no-color.org).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), Failure> = match cli.command {
        Command::Cluster {
            replicas,
            port,
            cluster_id,
            cluster_key_file,
        } => {
            init_logging("info");
            let key_file = cluster_key_file.unwrap_or_else(|| default_key_file(cluster_id));
            run_cluster(replicas, port, cluster_id, key_file).map_err(Failure::from)
        }
        Command::Keygen { path } => vr::runtime::keyfile::generate(&path, false)
            .map(|_| println!("wrote a new cluster key to {}", path.display()))
            .map_err(|e| Failure::usage(e.to_string())),
        Command::Replica {
            config,
            id,
            data_dir,
            fresh,
            recover,
        } => {
            init_logging("info");
            let asked = if fresh {
                Asked::Fresh
            } else if recover {
                Asked::Recover
            } else {
                Asked::Restart
            };
            run_replica(&config, id, data_dir, asked).map_err(Failure::from)
        }
        Command::Put {
            key,
            value,
            key_file,
            value_file,
            target,
        } => {
            let value_file = Wanted {
                name: "VALUE",
                file: value_file.as_ref(),
                flag: "--value-file",
            };
            operation(
                &[key, value],
                &target,
                &[key_file.wanted(), value_file],
                |mut inputs| {
                    let value = inputs.pop().expect("gathered");
                    let key = inputs.pop().expect("gathered");
                    KvOperation::Put { key, value }
                },
            )
        }
        Command::Get {
            key,
            key_file,
            target,
        } => operation(&[key], &target, &[key_file.wanted()], |mut inputs| {
            KvOperation::Get {
                key: inputs.pop().expect("gathered"),
            }
        }),
        Command::Delete {
            key,
            key_file,
            target,
        } => operation(&[key], &target, &[key_file.wanted()], |mut inputs| {
            KvOperation::Delete {
                key: inputs.pop().expect("gathered"),
            }
        }),
        Command::Cas {
            key,
            old,
            new,
            key_file,
            expect_absent,
            expect_file,
            new_file,
            target,
        } => {
            let mut wanted = vec![key_file.wanted()];
            if !expect_absent {
                wanted.push(Wanted {
                    name: "OLD",
                    file: expect_file.as_ref(),
                    flag: "--expect-file",
                });
            }
            wanted.push(Wanted {
                name: "NEW",
                file: new_file.as_ref(),
                flag: "--new-file",
            });
            operation(&[key, old, new], &target, &wanted, |mut inputs| {
                let new = inputs.pop().expect("gathered");
                let expected = (!expect_absent).then(|| inputs.pop().expect("gathered"));
                let key = inputs.pop().expect("gathered");
                KvOperation::Cas { key, expected, new }
            })
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
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            failure.exit_code()
        }
    }
}

/// Gathers a client command's inputs from its words and files, builds its
/// operation and carries it out.
fn operation(
    words: &[Option<String>],
    target: &Target,
    wanted: &[Wanted],
    build: impl FnOnce(Vec<String>) -> KvOperation,
) -> Result<(), Failure> {
    let inputs = input::gather(words, wanted)?;
    call(target, build(inputs))
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
        let node = Node::start(cluster.clone(), id, cluster.timers, Start::Fresh, None)
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
    data_dir: Option<PathBuf>,
    asked: Asked,
) -> Result<(), String> {
    let cluster = ClusterConfig::load(config).map_err(|e| e.to_string())?;
    cluster.core_config(id).map_err(|e| e.to_string())?;
    let dir = startup::replica_dir(data_dir.as_ref().unwrap_or(&cluster.data_dir), id);
    let (start, storage) = startup::prepare(&cluster, id, &dir, asked)?;
    let (durable, timers) = (cluster.durable, cluster.timers);
    let node = Node::start(cluster, id, timers, start, storage).map_err(|e| e.to_string())?;
    if !durable {
        startup::mark_started(&dir)
            .map_err(|e| format!("cannot use the data directory {}: {e}", dir.display()))?;
    }
    node.run(Arc::new(AtomicBool::new(false)))
        .map_err(|e| format!("replica stopped: {e}"))
}

fn call(target: &Target, operation: KvOperation) -> Result<(), Failure> {
    let cluster = target.resolve()?;
    let mut client = Client::new(cluster)?;
    let output = client.call(operation)?;
    match output {
        KvOutput::Stored => println!("OK"),
        KvOutput::Value(Some(value)) => println!("{value}"),
        KvOutput::Value(None) => return Err(Failure::no("not found")),
        KvOutput::Deleted(Some(value)) => println!("deleted {value}"),
        KvOutput::Deleted(None) => return Err(Failure::no("not found (nothing deleted)")),
        KvOutput::Cas { swapped: true, .. } => println!("OK"),
        KvOutput::Cas {
            swapped: false,
            previous,
        } => {
            return Err(Failure::no(format!(
                "not swapped: the key holds {}",
                previous.map_or("nothing".to_string(), |p| format!("{p:?}"))
            )));
        }
    }
    Ok(())
}

fn check_history(file: &std::path::Path) -> Result<(), Failure> {
    let summary = vr::history::check_file(file)?.map_err(|v| Failure::no(v.to_string()))?;
    println!(
        "linearizable: {} operations over {} keys ({} ok, {} failed, {} unknown)",
        summary.operations, summary.keys, summary.ok, summary.failed, summary.unknown
    );
    Ok(())
}

fn status(target: &Target) -> Result<(), Failure> {
    let cluster = target.resolve()?;
    let addresses = cluster.addresses.clone();
    let client = Client::new(cluster)?;
    let reports = client.statuses(Duration::from_millis(500))?;
    println!(
        "{:<8} {:<22} {:<11} {:>6} {:>10} {:>10} {:>9}  {:<12} dropped",
        "replica", "address", "status", "view", "op", "commit", "sessions", "connected"
    );
    let mut answered = 0;
    for (id, (address, report)) in addresses.iter().zip(reports).enumerate() {
        match report {
            Some(r) => {
                let connected: Vec<String> = r.connected.iter().map(|p| p.0.to_string()).collect();
                println!(
                    "{:<8} {:<22} {:<11} {:>6} {:>10} {:>10} {:>9}  {:<12} {} (malformed {}, wrong version {}, wrong cluster {}, oversized {}, unauthenticated {}, forged {}, unexpected {}; unsendable {})",
                    id,
                    address,
                    r.status,
                    r.view.0,
                    r.op.0,
                    r.commit.0,
                    r.sessions,
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
        return Err(Failure::unreachable("no replica answered"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(!colour(false, None), "a file or a pipe gets no colour");
        assert!(!colour(true, Some("1".into())), "NO_COLOR turns it off");
        assert!(colour(true, Some("".into())), "an empty NO_COLOR does not");
    }
}
