//! `vr-model`: model-check vr's protocol core, list the scenarios, or serve
//! stateright's explorer.

use clap::{Args, Parser, Subcommand};
use stateright::Model;
use std::process::ExitCode;
use std::time::Duration;
use vr_model::check::{self, Progress, Report, RunOptions, Strategy};
use vr_model::model::ModelConfig;
use vr_model::scenarios::{self, Scenario};

// The checker clones and drops millions of states: mimalloc's thread-local
// free lists beat the system allocator at that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "vr-model",
    version,
    about = "Model-check vr's Viewstamped Replication core with stateright",
    long_about = "Model-check vr's Viewstamped Replication core with stateright.\n\n\
        The replica actors run the production core's own handlers; the checker explores every \
        interleaving of deliveries, losses, timer expiries, crashes and restarts within the bounds, \
        and checks every invariant of spec/invariants.md in every state."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a scenario (default: `default`) and report every property.
    ///
    /// Exit status: 0 when every `always` property holds and every `sometimes`
    /// property is witnessed over a complete run; 1 when a property fails or the
    /// run is incomplete (timeout, simulation); 2 for bad usage.
    Check(CheckArgs),
    /// List the named scenarios, one per line.
    Scenarios,
    /// Benchmark the checker: each scenario (default: all) checked in a child
    /// process of its own, with its unique states per second and peak memory;
    /// with --raft, stateright's Raft example beside it and the ratio.
    Bench(BenchArgs),
    /// Serve stateright's explorer for a scenario, to step through states in a
    /// browser.
    Explore {
        #[command(flatten)]
        model: ModelArgs,
        /// Address to serve the explorer on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: std::net::SocketAddr,
    },
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Search strategy (default: the scenario's): bfs finds the shortest
    /// counterexample; dfs needs far less memory; simulation walks at random
    /// and is never complete.
    #[arg(long, value_enum)]
    strategy: Option<Strategy>,
    /// Checker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Stop after this many seconds (the run is then incomplete).
    #[arg(long)]
    timeout: Option<u64>,
    /// Print one JSON object with the results instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// A scenario to run (repeatable; default: every scenario).
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Checker threads (default: one per core, as stateright's Raft example
    /// uses).
    #[arg(long)]
    threads: Option<usize>,
    /// The binary of stateright's Raft example (`cargo build --release
    /// --example raft` in stateright's source; bench/model-vs-raft.sh does
    /// it), run as `raft check SERVERS DEPTH` beside the scenarios.
    #[arg(long)]
    raft: Option<std::path::PathBuf>,
    /// Servers in the Raft model.
    #[arg(long, default_value_t = 3)]
    raft_servers: usize,
    /// The Raft model's depth bound.
    #[arg(long, default_value_t = 10)]
    raft_depth: usize,
    /// Print the rows as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The scenario and the bounds that override it.
#[derive(Args)]
struct ModelArgs {
    /// The named scenario to start from (see `vr-model scenarios`).
    #[arg(long, default_value = "default")]
    scenario: String,
    /// Replicas, n = 2f + 1 (odd).
    #[arg(long)]
    replicas: Option<u8>,
    /// Clients.
    #[arg(long)]
    clients: Option<u8>,
    /// Requests per client.
    #[arg(long)]
    requests: Option<u8>,
    /// Replica crashes (each may be followed by a restart with recovery).
    #[arg(long)]
    crashes: Option<u8>,
    /// Let the network lose messages (`--lossy=false` turns it off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    lossy: Option<bool>,
    /// Let the network deliver messages more than once.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    duplicating: Option<bool>,
    /// No replica goes past this view.
    #[arg(long)]
    max_view: Option<u64>,
    /// The delivery layer's attempts per message before a peer counts as
    /// disconnected.
    #[arg(long)]
    attempts_max: Option<u8>,
    /// Log entries per NewState message.
    #[arg(long)]
    state_transfer_entries_max: Option<u32>,
    /// Log entries per DoViewChange, StartView and RecoveryResponse beyond
    /// the uncommitted ones (default: no bound, whole logs).
    #[arg(long)]
    message_weight_max: Option<u32>,
    /// A checkpoint every N executed entries, compacting the log (default:
    /// never).
    #[arg(long)]
    checkpoint_interval: Option<u64>,
    /// Replicas 0 .. N are down from the start (their failure precedes
    /// everything else).
    #[arg(long)]
    down: Option<u8>,
    /// Only this replica may crash (the others never do).
    #[arg(long)]
    crash_only: Option<u8>,
    /// Start from this prelude's state, built by running the core (see
    /// `vr-model scenarios`), instead of empty replicas.
    #[arg(long, value_enum)]
    prelude: Option<vr_model::prelude::Prelude>,
    /// Clients without a session, each sending one Register.
    #[arg(long)]
    newcomers: Option<u8>,
    /// The bound on client-table rows (default 10,000): below clients +
    /// newcomers, a newcomer's Register prunes a client's session.
    #[arg(long)]
    client_table_max: Option<u64>,
    /// Start with malformed messages in flight, as a replica with a bug that
    /// holds the cluster key sends them; each must be refused by a guard.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    malformed: Option<bool>,
    /// Explore paths of at most this many steps.
    #[arg(long)]
    depth: Option<usize>,
}

impl ModelArgs {
    fn resolve(&self) -> Result<(Scenario, ModelConfig), String> {
        let scenario = scenarios::named(&self.scenario).ok_or_else(|| {
            let names: Vec<&str> = scenarios::all().iter().map(|s| s.name).collect();
            format!(
                "no scenario named {:?}; the scenarios are: {}",
                self.scenario,
                names.join(", ")
            )
        })?;
        let mut cfg = scenario.config.clone();
        let set = |target: &mut u8, value: Option<u8>| {
            if let Some(v) = value {
                *target = v;
            }
        };
        set(&mut cfg.replicas, self.replicas);
        set(&mut cfg.clients, self.clients);
        set(&mut cfg.requests, self.requests);
        set(&mut cfg.crashes, self.crashes);
        set(&mut cfg.attempts_max, self.attempts_max);
        set(&mut cfg.newcomers, self.newcomers);
        cfg.client_table_max = self.client_table_max.unwrap_or(cfg.client_table_max);
        cfg.lossy = self.lossy.unwrap_or(cfg.lossy);
        cfg.duplicating = self.duplicating.unwrap_or(cfg.duplicating);
        cfg.malformed = self.malformed.unwrap_or(cfg.malformed);
        cfg.max_view = self.max_view.unwrap_or(cfg.max_view);
        if let Some(down) = self.down {
            cfg.down = down;
        }
        if self.crash_only.is_some() {
            cfg.crash_only = self.crash_only;
        }
        cfg.state_transfer_entries_max = self
            .state_transfer_entries_max
            .unwrap_or(cfg.state_transfer_entries_max);
        cfg.message_weight_max = self.message_weight_max.unwrap_or(cfg.message_weight_max);
        cfg.checkpoint_interval = self.checkpoint_interval.unwrap_or(cfg.checkpoint_interval);
        if self.prelude.is_some() {
            cfg.prelude = self.prelude;
        }
        cfg.validate()?;
        cfg.replica_config().map_err(|e| e.to_string())?;
        Ok((scenario, cfg))
    }
}

/// mimalloc's `mi_option_purge_delay` (mimalloc v2's `mi_option_t`, which
/// the pinned libmimalloc-sys builds; its bindings do not name this one).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // A breadth-first search frees and allocates its frontier in waves: memory
    // handed back to the system is soon asked for again and the kernel zeroes
    // it anew each time. The checker is a short-lived process; it keeps what
    // it freed.
    // SAFETY: setting an option is allowed at any time; -1 means "never
    // purge" for this option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let cli = Cli::parse();
    match cli.command {
        Command::Scenarios => {
            for s in scenarios::all() {
                let depth = s
                    .depth
                    .map_or("no depth bound".to_string(), |d| format!("depth {d}"));
                println!("{:<20} {} ({:?}, {depth})", s.name, s.about, s.strategy);
            }
            ExitCode::SUCCESS
        }
        Command::Check(args) => check_command(args),
        Command::Bench(args) => bench_command(args),
        Command::Explore { model, addr } => {
            let (scenario, cfg) = match model.resolve() {
                Ok(resolved) => resolved,
                Err(message) => return usage(&message),
            };
            let depth = model.depth.or(scenario.depth);
            let model = cfg.into_model().expect("validated above");
            eprintln!(
                "serving the explorer for {:?} on http://{addr}",
                scenario.name
            );
            let mut builder = model.checker();
            if let Some(depth) = depth {
                builder = builder.target_max_depth(depth);
            }
            builder.serve(addr);
            ExitCode::SUCCESS
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn check_command(args: CheckArgs) -> ExitCode {
    let (scenario, cfg) = match args.model.resolve() {
        Ok(resolved) => resolved,
        Err(message) => return usage(&message),
    };
    let strategy = args.strategy.unwrap_or(scenario.strategy);
    if strategy == Strategy::Simulation && args.timeout.is_none() {
        return usage("--strategy simulation walks until stopped: give it --timeout SECS");
    }
    let options = RunOptions {
        strategy,
        threads: args.threads,
        timeout: args.timeout.map(Duration::from_secs),
        depth: args.model.depth.or(scenario.depth),
        progress: Some(print_progress),
    };
    if !args.json {
        eprintln!("checking {:?}: {cfg:?}", scenario.name);
    }
    let cfg_shown = format!("{cfg:?}");
    let model = cfg.into_model().expect("validated above");
    let report = check::run(model, &options);
    if args.json {
        let mut json = serde_json::to_value(&report).expect("a report serializes");
        json["scenario"] = scenario.name.into();
        json["config"] = cfg_shown.into();
        json["depth_bound"] = options.depth.into();
        json["strategy"] = format!("{:?}", options.strategy).to_lowercase().into();
        println!(
            "{}",
            serde_json::to_string_pretty(&json).expect("JSON prints")
        );
    } else {
        print_report(&report);
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn bench_command(args: BenchArgs) -> ExitCode {
    let names: Vec<String> = if args.scenarios.is_empty() {
        scenarios::all()
            .iter()
            .map(|s| s.name.to_string())
            .collect()
    } else {
        args.scenarios.clone()
    };
    if let Some(unknown) = names.iter().find(|n| scenarios::named(n).is_none()) {
        return usage(&format!("no scenario named {unknown:?}"));
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let me = match std::env::current_exe() {
        Ok(path) => path,
        Err(e) => return usage(&format!("cannot find this program: {e}")),
    };
    let mut rows = Vec::new();
    let mut failed = false;
    for name in &names {
        eprintln!("bench: checking {name} ({threads} threads) ...");
        let child_args: Vec<String> = ["check", "--scenario", name, "--json", "--threads"]
            .iter()
            .map(|s| s.to_string())
            .chain([threads.to_string()])
            .collect();
        let row = vr_model::bench::run_child(&me, &child_args)
            .and_then(|child| vr_model::bench::scenario_row(name, &child));
        match row {
            Ok(row) => {
                failed |= row.result != "pass";
                eprintln!("bench:   {:.1}s, {} unique", row.seconds, row.unique_states);
                rows.push(row);
            }
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(1);
            }
        }
    }
    let mut peer = None;
    if let Some(raft) = &args.raft {
        eprintln!(
            "bench: checking stateright's Raft example ({} servers, depth {}) ...",
            args.raft_servers, args.raft_depth
        );
        let name = format!("stateright raft ({} servers)", args.raft_servers);
        let child_args = vec![
            "check".to_string(),
            args.raft_servers.to_string(),
            args.raft_depth.to_string(),
        ];
        match vr_model::bench::run_child(raft, &child_args)
            .and_then(|child| vr_model::bench::raft_row(&name, &child))
        {
            Ok(row) => peer = Some(row),
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(1);
            }
        }
    }
    if args.json {
        let json = serde_json::json!({
            "threads": threads,
            "scenarios": rows,
            "peer": peer,
            "ratio_unique_per_second": peer.as_ref().map(|p| {
                rows.iter()
                    .map(|r| (r.name.clone(), r.unique_per_second / p.unique_per_second.max(1e-9)))
                    .collect::<std::collections::BTreeMap<_, _>>()
            }),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&json).expect("JSON prints")
        );
    } else {
        let mut all = rows.clone();
        all.extend(peer.clone());
        print!("{}", vr_model::bench::table(&all));
        if let Some(p) = &peer {
            println!();
            for r in &rows {
                println!(
                    "unique states/s, {} over {}: {:.2}",
                    r.name,
                    p.name,
                    r.unique_per_second / p.unique_per_second.max(1e-9)
                );
            }
            println!("(both breadth-first, {threads} threads; the Raft example uses one per core)");
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_progress(p: &Progress) {
    eprintln!(
        "  {:>10} states  {:>10} unique  depth {:>3}  {:>8.0} states/s  {:>6.1}s",
        p.states,
        p.unique_states,
        p.depth,
        p.states as f64 / p.seconds.max(1e-9),
        p.seconds
    );
}

fn print_report(report: &Report) {
    for p in &report.properties {
        println!("{:<13} {:<9} {}", p.status, p.kind, p.name);
        if p.status == "violated"
            && let Some(trace) = &p.trace
        {
            for (i, step) in trace.iter().enumerate() {
                println!("    {:>3}. {step}", i + 1);
            }
        }
    }
    println!(
        "{} states, {} unique, depth {}, {:.1}s, {:.0} states/s, {:.0} unique/s, {}",
        report.states,
        report.unique_states,
        report.max_depth,
        report.seconds,
        report.states_per_second(),
        report.unique_states_per_second(),
        if report.complete {
            "complete"
        } else {
            "INCOMPLETE"
        }
    );
    if report.passed() {
        println!("PASS: every invariant holds and every behaviour of interest was reached");
    } else if report.stopped_at_violation {
        println!("FAIL: an invariant is violated (the search stopped at the first violation)");
    } else if !report.complete {
        println!("FAIL: the run is incomplete, so nothing is proved");
    } else {
        println!("FAIL: see the properties above");
    }
}
