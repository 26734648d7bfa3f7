//! Real clusters for tests: one `shardkv server` process per node on loopback ports picked
//! at random, configurations and databases in a temporary directory, each node's output in
//! its own log file there. Nodes can be SIGKILLed, stopped with SIGTERM and restarted.
//! Dropping the cluster SIGKILLs every process it started; if the test is failing (or
//! `SHARDKV_KEEP_TEST_FILES` is set), it prints the tail of every log and keeps the
//! directory for a look.
//!
//! The configuration files are written by `shardkv::local::LocalPlan`, the code behind
//! `shardkv local`, so the tests start nodes exactly as an operator would.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shardkv::local::plan::LAYOUT_FILE;
use shardkv::local::LocalPlan;
use shardkv::node::config::{LimitConfig, ListenConfig, NodeConfig, ReadConfig, TimeoutConfig};
use shardkv::router::layout::Layout;

/// The binary under test.
pub const SHARDKV_EXE: &str = env!("CARGO_BIN_EXE_shardkv");
/// How often the harness polls a process or a port.
const POLL_INTERVAL_MS: u64 = 20;
/// A node stopped with SIGTERM gets its shutdown time-out plus this, then SIGKILL.
const STOP_MARGIN_MS: u64 = 2_000;
/// One PING of `wait_ready` gives up after this long.
const PING_TIMEOUT_MS: u64 = 500;
/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 40;
/// A secret the cluster does not share.
pub const WRONG_SECRET: &str = "not-the-cluster-secret-0123456789";

/// Time-outs for tests: elections within a few hundred milliseconds.
pub fn fast_timeouts() -> TimeoutConfig {
    TimeoutConfig {
        tick_ms: 20,
        election_ticks_min: 10,
        election_ticks_max: 20,
        heartbeat_ticks: 2,
        request_ms: 3_000,
        connect_ms: 300,
        reconnect_min_ms: 20,
        reconnect_max_ms: 300,
        shutdown_ms: 3_000,
        meta_sync_ms: 200,
        // Leaders stay where elections, placement and the tests put them: tests that
        // drive load through one node and then look at leaders would race the moves.
        // `tests/cluster.rs` turns it on where it tests it.
        follow_workload_ms: 0,
        ..TimeoutConfig::default()
    }
}

/// Which layout to start.
#[derive(Clone, Debug)]
pub enum ClusterLayout {
    /// `Layout::even(nodes, groups, replicas)`.
    Even {
        groups: u64,
        replicas: u64,
    },
    Given(Layout),
    /// A layout file, such as `shards/local-3x8.toml` (relative to the crate root).
    File(PathBuf),
}

/// Options of `TestCluster::start`.
#[derive(Clone, Debug)]
pub struct ClusterOpts {
    pub timeouts: TimeoutConfig,
    pub limits: LimitConfig,
    pub reads: ReadConfig,
    /// `RUST_LOG` of the nodes.
    pub rust_log: String,
}

impl Default for ClusterOpts {
    fn default() -> ClusterOpts {
        ClusterOpts {
            timeouts: fast_timeouts(),
            limits: LimitConfig::default(),
            reads: ReadConfig::default(),
            rust_log: "info".to_string(),
        }
    }
}

/// One process: a node of the cluster, or an extra one such as `wrong_secret` starts.
struct Proc {
    name: String,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
    /// Given to `shardkv server` after `--config FILE` (such as `--join ADDR`).
    args: Vec<String>,
}

/// A running cluster of `shardkv server` processes.
pub struct TestCluster {
    dir: Option<tempfile::TempDir>,
    plan: LocalPlan,
    configs: BTreeMap<u64, NodeConfig>,
    nodes: BTreeMap<u64, Proc>,
    extras: Vec<Proc>,
    rust_log: String,
}

/// Test ports come from here, below Linux's default ephemeral range (32768-60999): a port
/// found free and released cannot then be taken by some process's outgoing connection, or
/// handed by the kernel to another test asking for port 0, before the node binds it.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// The next candidate port of this process: each test process starts at its own offset
/// (from its PID) and walks up, so concurrent tests of one process never get the same
/// port, and test processes running at once rarely meet.
fn next_test_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    let n = NEXT.fetch_add(1, Ordering::SeqCst) % span;
    TEST_PORTS.start + n as u16
}

/// A run of `count` consecutive ports, each free when checked, that no other test of this
/// process is given.
pub fn free_port_run(count: u16) -> u16 {
    for _ in 0..TEST_PORTS.len() {
        let base = next_test_port();
        if base.checked_add(count).is_none_or(|end| end > TEST_PORTS.end) {
            continue;
        }
        for _ in 1..count {
            next_test_port();
        }
        let free = (base..base + count)
            .map(|p| TcpListener::bind(("127.0.0.1", p)))
            .collect::<Result<Vec<_>, _>>();
        if free.is_ok() {
            return base;
        }
    }
    panic!("no run of {count} free loopback ports in {TEST_PORTS:?}");
}

/// `count` loopback addresses on ports that were free a moment ago (see `free_port_run`).
pub fn free_addrs(count: usize) -> Vec<SocketAddr> {
    let count = u16::try_from(count).expect("port count");
    let base = free_port_run(count);
    (base..base + count).map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect()
}

fn resolve_layout(nodes: u64, layout: ClusterLayout) -> Layout {
    let layout = match layout {
        ClusterLayout::Even { groups, replicas } => Layout::even(nodes, groups, replicas),
        ClusterLayout::Given(layout) => layout,
        ClusterLayout::File(path) => {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read layout {}: {e}", path.display()));
            Layout::parse(&text).unwrap_or_else(|e| panic!("layout {}: {e}", path.display()))
        }
    };
    assert_eq!(layout.nodes.len() as u64, nodes, "the layout must have {nodes} nodes");
    layout
}

impl TestCluster {
    /// Writes the files of a `nodes`-node cluster and starts every node. Does not wait for
    /// it to serve: see `wait_ready`.
    pub fn start(nodes: u64, layout: ClusterLayout, opts: ClusterOpts) -> TestCluster {
        let layout = resolve_layout(nodes, layout);
        let dir = tempfile::Builder::new().prefix("shardkv-test-").tempdir().expect("tempdir");
        let addrs = free_addrs(layout.nodes.len() * 3);
        let listen = layout
            .nodes
            .iter()
            .zip(addrs.chunks(3))
            .map(|(n, a)| (n.id, ListenConfig { resp: a[0], peer: a[1], metrics: a[2] }))
            .collect();
        let mut plan = LocalPlan {
            data_dir: dir.path().to_path_buf(),
            layout,
            listen,
            timeouts: opts.timeouts,
            limits: opts.limits,
            reads: opts.reads,
            scheduling: Default::default(),
            cluster_redirects: false,
        };
        let written = plan.write().expect("write the cluster's files");
        let mut cluster = TestCluster {
            dir: Some(dir),
            plan,
            configs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            extras: Vec::new(),
            rust_log: opts.rust_log,
        };
        for node in written {
            let log_path = cluster.plan.data_dir.join(format!("node{}.log", node.id));
            let name = format!("node{}", node.id);
            let config_path = node.config_path;
            let proc = Proc { name, config_path, log_path, child: None, starts: 0, args: Vec::new() };
            cluster.nodes.insert(node.id, proc);
            cluster.configs.insert(node.id, node.config);
        }
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for id in ids {
            let rust_log = cluster.rust_log.clone();
            spawn(cluster.proc_mut(id), &rust_log);
        }
        cluster
    }

    fn proc_mut(&mut self, node: u64) -> &mut Proc {
        self.nodes.get_mut(&node).unwrap_or_else(|| panic!("node{node} is not in the cluster"))
    }

    fn proc(&self, node: u64) -> &Proc {
        self.nodes.get(&node).unwrap_or_else(|| panic!("node{node} is not in the cluster"))
    }

    /// Node ids, ascending.
    pub fn node_ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn layout(&self) -> &Layout {
        &self.plan.layout
    }

    pub fn config(&self, node: u64) -> &NodeConfig {
        &self.configs[&node]
    }

    pub fn config_path(&self, node: u64) -> &Path {
        &self.proc(node).config_path
    }

    pub fn resp_addr(&self, node: u64) -> SocketAddr {
        self.config(node).listen.resp
    }

    /// The node whose RESP address is `addr`, as `CLUSTER SLOTS` announces it.
    pub fn node_at(&self, addr: SocketAddr) -> Option<u64> {
        self.configs.iter().find(|(_, c)| c.listen.resp == addr).map(|(id, _)| *id)
    }

    /// The PID of the node's process, if it is running.
    pub fn pid(&self, node: u64) -> Option<u32> {
        self.proc(node).child.as_ref().map(Child::id)
    }

    pub fn log_path(&self, node: u64) -> &Path {
        &self.proc(node).log_path
    }

    /// Everything the node has logged, over all its starts.
    pub fn log(&self, node: u64) -> String {
        std::fs::read_to_string(self.log_path(node)).unwrap_or_default()
    }

    /// A client of the node's RESP port.
    pub fn client(&self, node: u64) -> redis::Client {
        let url = format!("redis://{}/", self.resp_addr(node));
        redis::Client::open(url).expect("a redis:// URL of a socket address")
    }

    /// SIGKILL, and reap the process.
    pub fn kill9(&mut self, node: u64) {
        let proc = self.proc_mut(node);
        let mut child = proc.child.take().unwrap_or_else(|| panic!("node{node} is not running"));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM, then wait for a graceful exit (its shutdown time-out plus a margin), then
    /// SIGKILL. Returns the exit status; `None` if it had to be killed.
    pub fn stop(&mut self, node: u64) -> Option<ExitStatus> {
        let timeout_ms = self.config(node).timeouts.shutdown_ms + STOP_MARGIN_MS;
        let proc = self.proc_mut(node);
        let child = proc.child.take().unwrap_or_else(|| panic!("node{node} is not running"));
        terminate(child, Duration::from_millis(timeout_ms))
    }

    /// Starts the node again with the same configuration and data (stopping it first with
    /// SIGKILL if it still runs).
    pub fn restart(&mut self, node: u64) {
        if self.proc(node).child.is_some() {
            self.kill9(node);
        }
        let rust_log = self.rust_log.clone();
        spawn(self.proc_mut(node), &rust_log);
    }

    /// Whether the node's process has exited by itself; reaps it if so.
    pub fn exited(&mut self, node: u64) -> Option<ExitStatus> {
        let proc = self.proc_mut(node);
        let status = proc.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        if status.is_some() {
            proc.child = None;
        }
        status
    }

    /// Polls every running node with PING until each answers, or `timeout` passes.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        for (&id, proc) in &self.nodes {
            if proc.child.is_none() {
                continue;
            }
            wait_ping(&self.client(id), deadline).map_err(|e| format!("node{id}: {e}"))?;
        }
        Ok(())
    }

    /// Starts an extra process claiming to be node `as_node`, with the cluster's peers but
    /// `WRONG_SECRET`, its own ports and its own empty database; the cluster must refuse
    /// its connections. Returns its log file.
    pub fn wrong_secret(&mut self, as_node: u64) -> PathBuf {
        let mut config = self.config(as_node).clone();
        let addrs = free_addrs(3);
        config.listen = ListenConfig { resp: addrs[0], peer: addrs[1], metrics: addrs[2] };
        config.secret = WRONG_SECRET.to_string();
        let name = format!("wrong-secret-{}", self.extras.len() + 1);
        let dir = &self.plan.data_dir;
        config.data_dir = dir.join(&name);
        config.layout = dir.join(LAYOUT_FILE);
        std::fs::create_dir_all(&config.data_dir).expect("create the extra node's directory");
        let config_path = dir.join(format!("{name}.toml"));
        let text = toml::to_string(&config).expect("config to TOML");
        std::fs::write(&config_path, text).expect("write the extra node's configuration");
        let log_path = dir.join(format!("{name}.log"));
        let mut proc =
            Proc { name, config_path, log_path, child: None, starts: 0, args: Vec::new() };
        spawn(&mut proc, &self.rust_log);
        let log = proc.log_path.clone();
        self.extras.push(proc);
        log
    }

    /// Starts a new node `id` that joins the running cluster through the RESP ports of
    /// `seeds` (`shardkv server --join`): its configuration names no layout and no peers,
    /// only its own ports, data directory and the cluster's secret. Restarting it joins
    /// again, as an operator's unit file would.
    pub fn join(&mut self, id: u64, seeds: &[u64]) {
        assert!(!self.nodes.contains_key(&id), "node{id} exists already");
        let any = *self.configs.keys().next().expect("a cluster has nodes");
        let mut config = self.config(any).clone();
        let addrs = free_addrs(3);
        config.node_id = id;
        config.listen = ListenConfig { resp: addrs[0], peer: addrs[1], metrics: addrs[2] };
        config.nodes = Vec::new();
        config.layout = PathBuf::new();
        let dir = self.plan.data_dir.clone();
        config.data_dir = dir.join(format!("node{id}"));
        let name = format!("node{id}");
        let config_path = dir.join(format!("{name}.toml"));
        let text = toml::to_string(&config).expect("config to TOML");
        std::fs::write(&config_path, text).expect("write the joining node's configuration");
        let seeds: Vec<String> = seeds.iter().map(|&n| self.resp_addr(n).to_string()).collect();
        let args = vec!["--join".to_string(), seeds.join(",")];
        let log_path = dir.join(format!("{name}.log"));
        let proc = Proc { name, config_path, log_path, child: None, starts: 0, args };
        self.nodes.insert(id, proc);
        self.configs.insert(id, config);
        let rust_log = self.rust_log.clone();
        spawn(self.proc_mut(id), &rust_log);
    }

    /// `CLUSTER SLOTS` as node `node` answers it.
    pub fn slot_masters(&self, node: u64) -> Result<Vec<SlotMaster>, String> {
        let mut con = self
            .client(node)
            .get_connection_with_timeout(Duration::from_millis(PING_TIMEOUT_MS))
            .map_err(|e| format!("connect to node{node}: {e}"))?;
        let reply: redis::Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut con)
            .map_err(|e| format!("CLUSTER SLOTS on node{node}: {e}"))?;
        parse_cluster_slots(reply)
    }

    /// For every node, how many slot ranges (groups) it leads, as node `asked` sees it: in
    /// shardkv the master of a range in `CLUSTER SLOTS` is the leader of its group.
    pub fn leaders_per_node(&self, asked: u64) -> Result<BTreeMap<u64, usize>, String> {
        let mut counts: BTreeMap<u64, usize> =
            self.node_ids().into_iter().map(|n| (n, 0)).collect();
        for range in self.slot_masters(asked)? {
            let node = self
                .node_at(range.master)
                .ok_or_else(|| format!("master {} is not a node of the cluster", range.master))?;
            *counts.entry(node).or_default() += 1;
        }
        Ok(counts)
    }

    /// The last `LOG_TAIL_LINES` lines of every process's log.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for proc in self.nodes.values().chain(&self.extras) {
            let text = std::fs::read_to_string(&proc.log_path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            out.push_str(&format!("----- {} ({}) -----\n", proc.name, proc.log_path.display()));
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for proc in self.nodes.values_mut().chain(self.extras.iter_mut()) {
            if let Some(mut child) = proc.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() || std::env::var_os("SHARDKV_KEEP_TEST_FILES").is_some() {
            eprintln!("{}", self.log_tails());
            if let Some(dir) = self.dir.take() {
                eprintln!("cluster files kept in {}", dir.keep().display());
            }
        }
    }
}

/// One slot range of `CLUSTER SLOTS` and the RESP address of its master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMaster {
    pub first: u16,
    pub last: u16,
    pub master: SocketAddr,
}

/// Parses `CLUSTER SLOTS`: `[[first, last, [host, port, id, ...], replicas...], ...]`.
pub fn parse_cluster_slots(reply: redis::Value) -> Result<Vec<SlotMaster>, String> {
    let bad = |what: &str| format!("CLUSTER SLOTS: {what}");
    let redis::Value::Array(ranges) = reply else { return Err(bad("not an array")) };
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        let redis::Value::Array(fields) = range else { return Err(bad("range not an array")) };
        let [first, last, master, ..] = fields.as_slice() else {
            return Err(bad("range with fewer than 3 fields"));
        };
        let redis::Value::Array(master) = master else { return Err(bad("master not an array")) };
        let [host, port, ..] = master.as_slice() else { return Err(bad("master without port")) };
        let host: String = redis::from_redis_value_ref(host).map_err(|e| bad(&e.to_string()))?;
        let port: u16 = redis::from_redis_value_ref(port).map_err(|e| bad(&e.to_string()))?;
        let addr = format!("{host}:{port}").parse().map_err(|_| bad("master address"))?;
        out.push(SlotMaster {
            first: redis::from_redis_value_ref(first).map_err(|e| bad(&e.to_string()))?,
            last: redis::from_redis_value_ref(last).map_err(|e| bad(&e.to_string()))?,
            master: addr,
        });
    }
    Ok(out)
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open log {}: {e}", path.display()))
}

fn spawn(proc: &mut Proc, rust_log: &str) {
    assert!(proc.child.is_none(), "{} is already running", proc.name);
    proc.starts += 1;
    let mut log = open_log(&proc.log_path);
    let _ = writeln!(log, "===== {} start {} =====", proc.name, proc.starts);
    let stderr = log.try_clone().expect("clone the log handle");
    let child = Command::new(SHARDKV_EXE)
        .arg("server")
        .arg("--config")
        .arg(&proc.config_path)
        .args(&proc.args)
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", proc.name));
    proc.child = Some(child);
}

/// SIGTERM; wait up to `timeout`; SIGKILL. The exit status, or `None` if it was killed.
pub fn terminate(mut child: Child, timeout: Duration) -> Option<ExitStatus> {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a PID fits in i32"));
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn wait_ping(client: &redis::Client, deadline: Instant) -> Result<(), String> {
    let mut last_error = String::from("no attempt");
    while Instant::now() < deadline {
        match ping(client) {
            Ok(()) => return Ok(()),
            Err(e) => last_error = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
    }
    Err(format!("no PONG before the deadline; last error: {last_error}"))
}

fn ping(client: &redis::Client) -> redis::RedisResult<()> {
    let timeout = Duration::from_millis(PING_TIMEOUT_MS);
    let mut con = client.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    let pong: String = redis::cmd("PING").query(&mut con)?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(redis::RedisError::from((redis::ErrorKind::Client, "unexpected PING reply")))
    }
}
