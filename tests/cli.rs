//! The `shardkv` binary as an operator runs it: exit codes, help, the life cycle of
//! `shardkv server` under signals, and `shardkv local` supervising its children. None of
//! these needs a node that serves clients.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::cluster::{free_port_run, terminate, ClusterLayout, ClusterOpts, TestCluster, SHARDKV_EXE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a process may take to print what a test waits for.
const OUTPUT_TIMEOUT_MS: u64 = 20_000;
/// Exit code of `shardkv server` for a configuration it cannot use.
const EXIT_BAD_CONFIG: i32 = 2;

#[test]
fn server_with_a_missing_config_exits_2_naming_the_file() {
    let out = Command::new(SHARDKV_EXE)
        .args(["server", "--config", "missing.toml"])
        .output()
        .expect("run shardkv");
    assert_eq!(out.status.code(), Some(EXIT_BAD_CONFIG));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read missing.toml"), "stderr: {stderr}");
}

#[test]
fn server_with_an_invalid_config_exits_2_saying_why() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("bad.toml");
    std::fs::write(&path, "node_id = \"one\"\n").expect("write");
    let out = Command::new(SHARDKV_EXE)
        .args(["server", "--config"])
        .arg(&path)
        .output()
        .expect("run shardkv");
    assert_eq!(out.status.code(), Some(EXIT_BAD_CONFIG));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml") && stderr.contains("node_id"), "stderr: {stderr}");
}

#[test]
fn local_help_lists_its_options() {
    let out = Command::new(SHARDKV_EXE).args(["local", "--help"]).output().expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--data-dir",
        "--layout",
        "--nodes",
        "--base-resp-port",
        "--base-peer-port",
        "--base-metrics-port",
        "--fresh",
        "--no-batch-scheduling",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

#[test]
fn server_help_offers_json_logs() {
    let out = Command::new(SHARDKV_EXE).args(["server", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--config") && help.contains("json"), "{help}");
}

fn wait_for_log(cluster: &TestCluster, node: u64, needle: &str) {
    let deadline = Instant::now() + Duration::from_millis(OUTPUT_TIMEOUT_MS);
    while !cluster.log(node).contains(needle) {
        assert!(Instant::now() < deadline, "node{node} never logged {needle:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn server_shuts_down_cleanly_on_sigterm_and_can_restart() {
    let layout = ClusterLayout::Even { groups: 2, replicas: 1 };
    let mut cluster = TestCluster::start(1, layout, ClusterOpts::default());
    wait_for_log(&cluster, 1, "starting");
    let status = cluster.stop(1).expect("node1 stops within its shutdown time-out");
    assert!(status.success(), "exit status {status}");
    assert!(cluster.log(1).contains("SIGTERM: shutting down"));
    cluster.restart(1);
    wait_for_log(&cluster, 1, "===== node1 start 2 =====");
    cluster.kill9(1);
}

/// Lines of a child's stdout, through a channel, so that a test can wait with a deadline.
fn lines_of(out: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Reads lines until one contains `needle`; returns every line read.
fn read_until(lines: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_millis(OUTPUT_TIMEOUT_MS);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let done = line.contains(needle);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => panic!("never printed {needle:?}; printed:\n{}", seen.join("\n")),
        }
    }
}

/// The PID printed on `  nodeN  pid P ...`.
fn pid_of(lines: &[String], node: u64) -> i32 {
    let prefix = format!("node{node}  pid ");
    let line = lines.iter().find(|l| l.trim_start().starts_with(&prefix)).expect("node line");
    let rest = &line.trim_start()[prefix.len()..];
    rest.split_whitespace().next().and_then(|p| p.parse().ok()).expect("a PID")
}

/// The scheduling policy of every thread of process `pid`, once its main thread has taken
/// the node's (`[scheduling]`: it does so before it starts any other thread) and started
/// others.
#[cfg(target_os = "linux")]
fn thread_policies(pid: i32) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_millis(OUTPUT_TIMEOUT_MS);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("threads of pid");
        let tids: Vec<i32> = tasks
            .filter_map(|t| t.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        // SAFETY: reads a thread's policy; a thread that ended meanwhile answers -1.
        let policies: Vec<i32> =
            tids.iter().map(|&tid| unsafe { libc::sched_getscheduler(tid) }).collect();
        let main = tids.iter().position(|&tid| tid == pid).map(|i| policies[i]);
        let settled = main == Some(libc::SCHED_BATCH) && tids.len() > 1;
        if settled || Instant::now() >= deadline {
            return policies.into_iter().filter(|&p| p >= 0).collect();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `shardkv local` and the PIDs of its nodes still running: if a test ends early, those
/// nodes are killed (before `local`, their parent, could reap them and free their PIDs),
/// then `local` is stopped.
struct Local {
    child: Option<std::process::Child>,
    nodes: Vec<i32>,
}

impl Drop for Local {
    fn drop(&mut self) {
        for &pid in &self.nodes {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(child) = self.child.take() {
            terminate(child, Duration::from_millis(OUTPUT_TIMEOUT_MS));
        }
    }
}

#[test]
fn local_starts_one_process_per_node_and_stops_them_on_sigterm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let child = Command::new(SHARDKV_EXE)
        .arg("local")
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["--base-resp-port", &free_port_run(3).to_string()])
        .args(["--base-peer-port", &free_port_run(3).to_string()])
        .args(["--base-metrics-port", &free_port_run(3).to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shardkv local");
    let mut local = Local { child: Some(child), nodes: Vec::new() };
    let stdout = local.child.as_mut().and_then(|c| c.stdout.take()).expect("stdout");
    let lines = lines_of(stdout);
    let banner = read_until(&lines, "Stop them all");
    assert!(banner.iter().any(|l| l.starts_with("Talk to it:") && l.contains("redis-cli -p")));
    let pids: Vec<i32> = (1..=3).map(|n| pid_of(&banner, n)).collect();
    local.nodes.clone_from(&pids);
    let mut distinct = pids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "one process per node: {pids:?}");
    for n in 1..=3 {
        let path = tmp.path().join(format!("node{n}.toml"));
        shardkv::node::config::NodeConfig::load(&path).expect("the written config loads");
    }
    #[cfg(target_os = "linux")]
    for &pid in &pids {
        let policies = thread_policies(pid);
        assert!(policies.len() > 1, "pid {pid}: {policies:?}");
        let batch = libc::SCHED_BATCH;
        assert!(policies.iter().all(|&p| p == batch), "pid {pid}: {policies:?}");
    }
    // A node killed with -9 is reported with the command that restarts it; the rest run on.
    kill(Pid::from_raw(pids[1]), Signal::SIGKILL).expect("kill -9 node2");
    local.nodes.retain(|&pid| pid != pids[1]);
    let report = read_until(&lines, "server --config");
    let restart = report.last().expect("a line");
    assert!(restart.contains("node2.toml"), "{restart}");
    assert!(report.iter().any(|l| l.contains("node2") && l.contains("SIGKILL")));
    // SIGTERM to `local` stops the others and it exits 0.
    let child = local.child.take().expect("still running");
    let status = terminate(child, Duration::from_millis(OUTPUT_TIMEOUT_MS)).expect("exits");
    assert!(status.success(), "shardkv local exited with {status}");
    for pid in [pids[0], pids[2]] {
        assert!(kill(Pid::from_raw(pid), None).is_err(), "pid {pid} still runs");
    }
    local.nodes.clear();
}
