//! The `shardkv` binary.
//!
//! - `shardkv server --config FILE`: one node, until SIGTERM or Ctrl-C. Exit code 0 after a
//!   clean shutdown, 1 on a runtime failure, 2 when the configuration cannot be used.
//! - `shardkv status --node HOST:PORT[,...] [--json]`: every group's state, read from the
//!   nodes' `/metrics`.
//! - `shardkv local`: a loopback cluster of `shardkv server` child processes (see
//!   `shardkv::local`).
//!
//! The node runtime is reached through one seam, [`run_node`]; nothing else here knows how
//! a node works.

use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use shardkv::local::plan::{discard, local_layout};
use shardkv::local::supervisor::{server_command, supervise, Ended};
use shardkv::local::{LocalNode, LocalPlan, PortBase};
use shardkv::node::config::NodeConfig;
use shardkv::router::layout::Layout;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// mimalloc: the node allocates small, short-lived buffers on several threads (frames,
/// entries, replies); glibc's allocator spent about a tenth of the cluster's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Completes when the node is asked to shut down.
type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;
/// A running node: completes when the node has stopped.
type NodeRun = Pin<Box<dyn Future<Output = Result<(), Box<dyn std::error::Error>>>>>;

/// How `shardkv server` runs a node, inside an actix system: the future finishes soon after
/// `Shutdown` completes (`timeouts.shutdown_ms` is allowed).
fn run_node(config: NodeConfig, layout: Layout, shutdown: Shutdown) -> NodeRun {
    Box::pin(async move {
        shardkv::node::run(config, layout, shutdown)
            .await
            .map_err(Into::into)
    })
}

/// Exit codes.
const EXIT_RUNTIME_FAILURE: u8 = 1;
const EXIT_BAD_CONFIG: u8 = 2;
/// Most nodes `shardkv local` starts.
const LOCAL_NODES_MAX: u64 = 64;
/// Groups and replicas per group of the layout made for `local --nodes N` when N differs
/// from the default layout's node count and no layout is given.
const LOCAL_GROUPS: u64 = 8;
const LOCAL_REPLICAS_MAX: u64 = 3;

const ABOUT: &str = "A sharded, strongly consistent Redis: every shard a Raft group.";

fn nodes_in_range(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if (1..=LOCAL_NODES_MAX).contains(&n) => Ok(n),
        _ => Err(format!("expected a number from 1 to {LOCAL_NODES_MAX}")),
    }
}

#[derive(Parser)]
#[command(name = "shardkv", version, about = ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node.
    Server(ServerArgs),
    /// Run a cluster of nodes on this machine (127.0.0.1), one child process each.
    Local(LocalArgs),
    /// Every group's slot range, leader, term, commit index, replica lag and health, read
    /// from the nodes' /metrics endpoints (give every node for a complete table).
    Status(StatusArgs),
    /// Operator commands: list groups and nodes, split a group, transfer leadership, add,
    /// remove and move replicas, rebalance.
    Admin(AdminArgs),
}

#[derive(Args)]
struct AdminArgs {
    /// Any node's RESP address.
    #[arg(
        long,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:7001",
        global = true
    )]
    node: String,
    /// The cluster's requirepass, if it has one.
    #[arg(long, global = true)]
    password: Option<String>,
    /// How long to wait for the cluster to show the change (for rebalance: each step),
    /// in milliseconds.
    #[arg(long, default_value_t = 60_000, global = true)]
    wait_ms: u64,
    #[command(subcommand)]
    op: AdminOp,
}

#[derive(Subcommand)]
enum AdminOp {
    /// Every group: slots, leader, replicas.
    Groups,
    /// Split GROUP: the slots from --at (default: where its keys halve) go to a new group
    /// on the same replicas; no data is copied.
    Split {
        group: u64,
        #[arg(long, value_name = "SLOT")]
        at: Option<u16>,
    },
    /// Hand GROUP's leadership to NODE (a voter of the group).
    TransferLeader {
        group: u64,
        #[arg(value_name = "NODE")]
        to: u64,
    },
    /// Every node of the cluster and its RESP address.
    Nodes,
    /// Remove NODE from the cluster (a machine being retired): refused while it holds a
    /// replica of any group (move them away first, metadata group 0 included).
    ForgetNode {
        #[arg(value_name = "NODE")]
        node: u64,
    },
    /// The cluster map (the layout as the metadata group holds it), as a layout file:
    /// nodes with their addresses, groups with their slots and replicas.
    Layout,
    /// GROUP's replicas as its leader sees them: voter or learner, and how far each has
    /// the log.
    Members { group: u64 },
    /// Add a replica of GROUP on NODE: it joins as a learner, catches up (a snapshot,
    /// then the log), then votes.
    AddReplica {
        group: u64,
        #[arg(value_name = "NODE")]
        target: u64,
    },
    /// Remove NODE's replica of GROUP (its leadership is handed off first); NODE deletes it.
    RemoveReplica {
        group: u64,
        #[arg(value_name = "NODE")]
        target: u64,
    },
    /// Move GROUP's replica from FROM to TO: TO joins as a learner and catches up, then
    /// one joint change makes it a voter and removes FROM, which deletes its replica.
    MoveReplica { group: u64, from: u64, to: u64 },
    /// Delete NODE's leftover replica of GROUP (NODE was removed while unreachable).
    DropReplica {
        group: u64,
        #[arg(value_name = "NODE")]
        target: u64,
    },
    /// Spread replicas, then leaderships, evenly over the nodes; prints the plan, then
    /// carries it out step by step (--wait-ms bounds each step).
    Rebalance {
        /// Print the plan only.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args)]
struct StatusArgs {
    /// A node's metrics address (listen.metrics); repeat or comma-separate for several.
    #[arg(long, value_name = "HOST:PORT", required = true, value_delimiter = ',')]
    node: Vec<String>,
    /// Print JSON instead of a table (peer handshakes refused, if any, go to standard error).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ServerArgs {
    /// The node's configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Join a running cluster through any of these nodes (RESP addresses): the cluster
    /// map records this node, and the node takes the layout and peers from it (the
    /// configuration needs no layout or [[nodes]]). Give it again on every start.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    join: Vec<String>,
    /// How long --join keeps trying.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    join_timeout_ms: u64,
    /// Log lines as text or as JSON objects; the filter is RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args)]
struct LocalArgs {
    /// Where the nodes' configurations, secret and databases live.
    #[arg(long, value_name = "DIR", default_value = "./data/local")]
    data_dir: PathBuf,
    /// The layout [default: shards/local-3x8.toml if present, else a built-in copy of it].
    #[arg(long, value_name = "FILE")]
    layout: Option<PathBuf>,
    /// Number of nodes; without --layout, a number other than 3 gets an even layout.
    #[arg(long, default_value_t = 3, value_parser = nodes_in_range)]
    nodes: u64,
    /// RESP port of the first node; node N listens on this + N - 1.
    #[arg(long, default_value_t = 7001)]
    base_resp_port: u16,
    /// Peer (transport) port of the first node.
    #[arg(long, default_value_t = 7101)]
    base_peer_port: u16,
    /// Metrics port of the first node.
    #[arg(long, default_value_t = 9101)]
    base_metrics_port: u16,
    /// Delete the data directory first: a new cluster, with a new secret.
    #[arg(long)]
    fresh: bool,
    /// Leaders answer reads on their lease (`[reads] mode = "lease"`) instead of a
    /// ReadIndex round per batch of reads; correct while clocks run at the same rate.
    #[arg(long)]
    lease_reads: bool,
    /// `[reads] node_rounds = false`: each group confirms its reads with a heartbeat round
    /// of its own, instead of node-level rounds that ask a peer once for every group led
    /// here.
    #[arg(long)]
    no_node_read_rounds: bool,
    /// `[scheduling] batch = false`: the nodes' threads keep the scheduling policy they are
    /// started with (normally the default one) instead of SCHED_BATCH, so a thread woken on
    /// a busy core preempts the one running there.
    #[arg(long)]
    no_batch_scheduling: bool,
    /// `cluster_redirects = true`: every connection starts cluster-aware (`-MOVED`, INFO's
    /// `cluster_enabled:1`), as a Redis Cluster's do; for cluster clients and
    /// `redis-cli --cluster check` (plain clients then need `CLIENT REDIRECTS OFF`).
    #[arg(long)]
    cluster_redirects: bool,
    /// `timeouts.follow_workload_ms` of every node: how often leaders move toward the node
    /// their requests come in through (0: never) [default: 5000]
    #[arg(long, value_name = "MS")]
    follow_workload_ms: Option<u64>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Server(args) => server(&args),
        Command::Local(args) => local(&args),
        Command::Status(args) => status(&args),
        Command::Admin(args) => admin(&args),
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn server(args: &ServerArgs) -> ExitCode {
    if !args.join.is_empty() {
        return join_and_serve(args);
    }
    let (config, layout) = match NodeConfig::load(&args.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("shardkv: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    init_tracing(args.log_format);
    schedule_threads(&config);
    actix_rt::System::new().block_on(serve(config, layout, &args.config))
}

/// `[scheduling]`, on the main thread before the node starts any other: they inherit it.
fn schedule_threads(config: &NodeConfig) {
    use shardkv::node::scheduling::{apply, Applied};
    match apply(&config.scheduling) {
        Ok(Applied::Batch) => tracing::info!("the node's threads run under SCHED_BATCH"),
        Ok(Applied::Kept(policy)) => {
            tracing::info!("the node's threads keep the scheduling policy they started with: \
                {policy}")
        }
        Ok(Applied::Unchanged) => {}
        Err(e) => tracing::warn!(error = %e, "the node's threads keep the scheduling policy \
            they started with: SCHED_BATCH ([scheduling] batch) could not be set"),
    }
}

/// `shardkv server --join`: the layout and peers come from the cluster.
fn join_and_serve(args: &ServerArgs) -> ExitCode {
    let mut config = match NodeConfig::load_alone(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("shardkv: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    init_tracing(args.log_format);
    let timeout = Duration::from_millis(args.join_timeout_ms);
    let layout = match shardkv::node::join::join(&mut config, &args.join, timeout) {
        Ok(layout) => layout,
        Err(e) => {
            tracing::error!("cannot join the cluster: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    schedule_threads(&config);
    actix_rt::System::new().block_on(serve(config, layout, &args.config))
}

/// SIGTERM and SIGINT (Ctrl-C), registered before the node starts so none is missed.
struct StopSignals {
    term: Signal,
    interrupt: Signal,
}

impl StopSignals {
    fn new() -> std::io::Result<StopSignals> {
        let term = signal(SignalKind::terminate())?;
        let interrupt = signal(SignalKind::interrupt())?;
        Ok(StopSignals { term, interrupt })
    }

    /// The name of the first signal to arrive.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Runs the node until SIGTERM or Ctrl-C, then gives it `timeouts.shutdown_ms` to stop.
async fn serve(config: NodeConfig, layout: Layout, path: &Path) -> ExitCode {
    let mut signals = match StopSignals::new() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!("cannot listen for signals: {e}");
            return ExitCode::from(EXIT_RUNTIME_FAILURE);
        }
    };
    // Logged once SIGTERM is handled: the tests wait for this line before sending it.
    tracing::info!(
        node = config.node_id,
        config = %path.display(),
        resp = %config.listen.resp,
        peer = %config.listen.peer,
        metrics = %config.listen.metrics,
        "shardkv {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let shutdown_ms = config.timeouts.shutdown_ms;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown: Shutdown = Box::pin(async move {
        let _ = stop_rx.await;
    });
    let mut node = run_node(config, layout, shutdown);
    let name = tokio::select! {
        result = &mut node => return node_exit(result, "stopped by itself"),
        name = signals.next() => name,
    };
    tracing::info!("{name}: shutting down (at most {shutdown_ms} ms)");
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_millis(shutdown_ms), node).await {
        Ok(result) => node_exit(result, "stopped"),
        Err(_) => {
            tracing::error!("the node did not stop within {shutdown_ms} ms (timeouts.shutdown_ms)");
            ExitCode::from(EXIT_RUNTIME_FAILURE)
        }
    }
}

fn node_exit(result: Result<(), Box<dyn std::error::Error>>, how: &str) -> ExitCode {
    match result {
        Ok(()) => {
            tracing::info!("node {how}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("node failed: {e}");
            ExitCode::from(EXIT_RUNTIME_FAILURE)
        }
    }
}

/// One scrape of `shardkv status` gives up after this long.
const STATUS_SCRAPE_TIMEOUT_MS: u64 = 3_000;

fn status(args: &StatusArgs) -> ExitCode {
    use shardkv::metrics::{scrape, status};
    let timeout = Duration::from_millis(STATUS_SCRAPE_TIMEOUT_MS);
    let mut scrapes = Vec::with_capacity(args.node.len());
    for addr in &args.node {
        match scrape::fetch(addr, timeout) {
            Ok(text) => scrapes.push(scrape::parse(&text)),
            Err(e) => eprintln!("shardkv status: {e}"),
        }
    }
    if scrapes.is_empty() {
        return ExitCode::from(EXIT_RUNTIME_FAILURE);
    }
    let rows = status::rows(&scrapes);
    let refusals = status::refusals_text(&status::refusals(&scrapes));
    if args.json {
        // Standard output stays the rows alone, for scripts; refusals are a warning.
        println!("{}", status::json(&rows));
        eprint!("{refusals}");
    } else {
        print!("{}{refusals}", status::table(&rows));
    }
    ExitCode::SUCCESS
}

fn admin(args: &AdminArgs) -> ExitCode {
    match run_admin(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardkv admin: {e}");
            ExitCode::from(EXIT_RUNTIME_FAILURE)
        }
    }
}

fn run_admin(args: &AdminArgs) -> Result<(), shardkv::admin::AdminError> {
    use shardkv::admin::{moves, rebalance, Admin};
    let mut say = |line: &str| println!("{line}");
    let wait = Duration::from_millis(args.wait_ms);
    let mut admin = Admin::connect(&args.node, args.password.as_deref(), wait)?;
    let started = Instant::now();
    let deadline = started + wait;
    match args.op {
        AdminOp::Groups => {
            println!("{:>6}  {:>11}  {:>6}  replicas", "group", "slots", "leader");
            for g in admin.groups()? {
                let leader = g.leader.map_or("-".to_string(), |l| l.to_string());
                let replicas: Vec<String> = g.replicas.iter().map(u64::to_string).collect();
                let slots = format!("{}-{}", g.slots.0, g.slots.1);
                println!(
                    "{:>6}  {slots:>11}  {leader:>6}  {}",
                    g.id,
                    replicas.join(",")
                );
            }
        }
        AdminOp::Split { group, at } => {
            let child = admin.split(group, at)?;
            let applied = started.elapsed();
            let first = admin.group(group)?.slots.0;
            println!(
                "split group {group}: it keeps slots {first}-{}, new group {} has {}-{} \
                 (applied in {} ms)",
                child.slots.0 - 1,
                child.id,
                child.slots.0,
                child.slots.1,
                applied.as_millis()
            );
            let leader = admin.wait_leader(child.id, deadline, |_| true)?;
            println!(
                "group {} elected node {leader} as leader {} ms after the split was asked",
                child.id,
                started.elapsed().as_millis()
            );
        }
        AdminOp::TransferLeader { group, to: node } => {
            let before = admin.members(group).ok().map(|m| m.leader);
            admin.transfer_leader(group, node)?;
            admin.wait_leader(group, deadline, |l| l == node)?;
            let from = before.map_or("none".to_string(), |l| format!("node {l}"));
            println!(
                "group {group}: leadership moved from {from} to node {node} in {} ms",
                started.elapsed().as_millis()
            );
        }
        AdminOp::Nodes => {
            for (id, addr) in admin.nodes()? {
                println!("{id:>6}  {addr}");
            }
        }
        AdminOp::ForgetNode { node } => {
            admin.forget_node(node)?;
            println!("node {node} left the cluster map; the nodes stop routing to it within a sync");
        }
        AdminOp::Layout => {
            let map = admin.map()?;
            println!("# cluster map version {}; next group id {}", map.version, map.next_group);
            print!("{}", Layout::from_map(&map).to_toml());
        }
        AdminOp::Members { group } => {
            let m = admin.members(group)?;
            let joint = if m.joint { " (joint configuration)" } else { "" };
            println!("group {group}: leader {}, commit index {}{joint}", m.leader, m.commit_index);
            for r in &m.replicas {
                println!("{:>6}  {:<8}  log at {}", r.node, r.kind, r.matched);
            }
        }
        AdminOp::AddReplica { group, target: node } => {
            moves::add_replica(&mut admin, group, node, deadline, &mut say)?;
            println!("group {group}: replica added on node {node} in {} ms", started.elapsed().as_millis());
        }
        AdminOp::RemoveReplica { group, target: node } => {
            moves::remove_replica(&mut admin, group, node, deadline, &mut say)?;
            println!("group {group}: replica removed from node {node} in {} ms", started.elapsed().as_millis());
        }
        AdminOp::MoveReplica { group, from, to } => {
            moves::move_replica(&mut admin, group, from, to, deadline, &mut say)?;
            println!(
                "group {group}: replica moved from node {from} to node {to} in {} ms",
                started.elapsed().as_millis()
            );
        }
        AdminOp::DropReplica { group, target: node } => {
            admin.connect_node(node)?.drop_replica(group)?;
            println!("node {node} deleted its replica of group {group}");
        }
        AdminOp::Rebalance { dry_run } => {
            let nodes: Vec<u64> = admin.nodes()?.into_iter().map(|(id, _)| id).collect();
            let show = |steps: &[rebalance::Step]| {
                println!("plan ({} steps):", steps.len());
                for (i, step) in steps.iter().enumerate() {
                    println!("  {:>3}. {step}", i + 1);
                }
            };
            if dry_run {
                let steps = rebalance::plan(&nodes, &rebalance::live_shapes(&mut admin)?);
                match steps.is_empty() {
                    true => println!("balanced: nothing to do"),
                    false => show(&steps),
                }
                return Ok(());
            }
            let mut shown = |steps: &[rebalance::Step]| show(steps);
            let taken = rebalance::run(&mut admin, &nodes, wait, &mut shown, &mut say)?;
            match taken {
                0 => println!("balanced: nothing to do"),
                n => println!("rebalanced in {} ms ({n} steps)", started.elapsed().as_millis()),
            }
        }
    }
    Ok(())
}

fn local(args: &LocalArgs) -> ExitCode {
    let nodes = match write_local_files(args) {
        Ok(nodes) => nodes,
        Err(e) => {
            eprintln!("shardkv local: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("shardkv local: cannot find this executable: {e}");
            return ExitCode::from(EXIT_RUNTIME_FAILURE);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("shardkv local: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME_FAILURE);
        }
    };
    runtime.block_on(run_local(&exe, &nodes))
}

async fn run_local(exe: &Path, nodes: &[LocalNode]) -> ExitCode {
    let mut signals = match StopSignals::new() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("shardkv local: cannot listen for signals: {e}");
            return ExitCode::from(EXIT_RUNTIME_FAILURE);
        }
    };
    let shutdown = async move {
        let name = signals.next().await;
        println!("[local] {name}");
    };
    match supervise(exe, nodes, |started| announce(exe, started), shutdown).await {
        Ok(Ended::Stopped { killed: 0 }) => ExitCode::SUCCESS,
        Ok(Ended::Stopped { .. }) | Ok(Ended::AllExited) => ExitCode::from(EXIT_RUNTIME_FAILURE),
        Err(e) => {
            eprintln!("shardkv local: {e}");
            ExitCode::from(EXIT_RUNTIME_FAILURE)
        }
    }
}

/// `--fresh`, the layout, the plan and its files.
fn write_local_files(args: &LocalArgs) -> Result<Vec<LocalNode>, Box<dyn std::error::Error>> {
    if args.fresh {
        discard(&args.data_dir)?;
    }
    let (mut layout, mut source) = local_layout(args.layout.as_deref())?;
    let declared = layout.nodes.len() as u64;
    if declared != args.nodes {
        if args.layout.is_some() {
            return Err(format!(
                "{source} declares {declared} nodes; --nodes is {}",
                args.nodes
            ))?;
        }
        let replicas = args.nodes.min(LOCAL_REPLICAS_MAX);
        layout = Layout::even(args.nodes, LOCAL_GROUPS, replicas);
        source = format!("even: {LOCAL_GROUPS} groups of {replicas} replicas");
    }
    let base = PortBase {
        resp: args.base_resp_port,
        peer: args.base_peer_port,
        metrics: args.base_metrics_port,
    };
    let mut plan = LocalPlan::on_loopback(&args.data_dir, layout, base)?;
    if args.lease_reads {
        plan.reads.mode = shardkv::node::config::ReadConsistency::Lease;
    }
    if args.no_node_read_rounds {
        plan.reads.node_rounds = false;
    }
    if args.no_batch_scheduling {
        plan.scheduling.batch = false;
    }
    plan.cluster_redirects = args.cluster_redirects;
    if let Some(ms) = args.follow_workload_ms {
        plan.timeouts.follow_workload_ms = ms;
    }
    let nodes = plan.write()?;
    println!(
        "shardkv {}: local cluster of {} nodes, {} groups, layout {source}, data in {}",
        env!("CARGO_PKG_VERSION"),
        nodes.len(),
        plan.layout.groups.len(),
        plan.data_dir.display()
    );
    Ok(nodes)
}

/// What an operator needs once the children run.
fn announce(exe: &Path, started: &[(LocalNode, u32)]) {
    for (node, pid) in started {
        let l = &node.config.listen;
        println!(
            "  node{}  pid {pid:<7}  resp {}  peer {}  metrics {}",
            node.id, l.resp, l.peer, l.metrics
        );
    }
    let Some((first, _)) = started.first() else {
        return;
    };
    println!(
        "Talk to it:      redis-cli -p {}",
        first.config.listen.resp.port()
    );
    println!("Kill a node:     kill -9 <pid>   (its groups elect leaders on the other nodes)");
    println!(
        "Restart a node:  {}",
        server_command(exe, &first.config_path)
    );
    println!("                 (with that node's own nodeN.toml)");
    println!("Stop them all:   Ctrl-C");
}
