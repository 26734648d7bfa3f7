//! The processes of `shardkv local`: one `shardkv server --config <file>` child per node,
//! each with its own PID, its output forwarded line by line with a `[node<N>]` prefix. A
//! child that exits is reported with the command that restarts it, and the others keep
//! running; nothing is restarted automatically. On shutdown every child gets SIGTERM, then
//! SIGKILL if it has not exited in time.

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::plan::LocalNode;

/// Waiting for the children after SIGTERM: their own shutdown time-out plus this much.
pub const CHILD_STOP_MARGIN_MS: u64 = 2_000;
/// Waiting for the children to be reaped after SIGKILL.
pub const CHILD_KILL_WAIT_MS: u64 = 2_000;

/// Why the children could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("cannot start node {node} ({exe} server --config {config}): {source}")]
    Spawn { node: u64, exe: PathBuf, config: PathBuf, source: std::io::Error },
}

/// How the supervision ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// A shutdown signal arrived; `killed` children had to be SIGKILLed.
    Stopped { killed: usize },
    /// Every child had exited by itself.
    AllExited,
}

/// One child's end, as the wait task reports it.
struct Exit {
    node: u64,
    status: std::io::Result<ExitStatus>,
}

/// A started child: its PID is valid until its wait task reports the exit (the process is
/// not reaped before), so signalling it by PID cannot reach another process.
struct Running {
    pid: Pid,
    config_path: PathBuf,
}

/// The command that (re)starts one node.
pub fn server_command(exe: &Path, config_path: &Path) -> String {
    format!("{} server --config {}", exe.display(), config_path.display())
}

/// Runs one child per node until `shutdown` completes or every child has exited.
/// `announce` is called once every child is started, with each node's PID.
pub async fn supervise(
    exe: &Path,
    nodes: &[LocalNode],
    announce: impl FnOnce(&[(LocalNode, u32)]),
    shutdown: impl Future<Output = ()>,
) -> Result<Ended, SuperviseError> {
    let (exits_tx, mut exits) = mpsc::channel::<Exit>(nodes.len().max(1));
    let mut running = BTreeMap::new();
    let mut started = Vec::with_capacity(nodes.len());
    for node in nodes {
        let mut child = spawn(exe, node)?;
        let Some(pid) = child.id() else { continue };
        forward_output(&mut child, node.id);
        let tx = exits_tx.clone();
        let id = node.id;
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tx.send(Exit { node: id, status }).await;
        });
        let raw = i32::try_from(pid).unwrap_or(i32::MAX);
        let path = node.config_path.clone();
        running.insert(node.id, Running { pid: Pid::from_raw(raw), config_path: path });
        started.push((node.clone(), pid));
    }
    drop(exits_tx);
    announce(&started);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            exit = exits.recv() => {
                let Some(exit) = exit else { return Ok(Ended::AllExited) };
                if let Some(child) = running.remove(&exit.node) {
                    report_exit(exe, &exit, &child);
                }
                if running.is_empty() {
                    println!("[local] every node has exited");
                    return Ok(Ended::AllExited);
                }
            }
        }
    }
    let stop_ms = nodes.iter().map(|n| n.config.timeouts.shutdown_ms).max().unwrap_or(0)
        + CHILD_STOP_MARGIN_MS;
    let killed = stop_all(&mut running, &mut exits, Duration::from_millis(stop_ms)).await;
    Ok(Ended::Stopped { killed })
}

fn spawn(exe: &Path, node: &LocalNode) -> Result<Child, SuperviseError> {
    Command::new(exe)
        .arg("server")
        .arg("--config")
        .arg(&node.config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SuperviseError::Spawn {
            node: node.id,
            exe: exe.to_path_buf(),
            config: node.config_path.clone(),
            source,
        })
}

/// Copies the child's stdout to ours and its stderr to ours, each line prefixed.
fn forward_output(child: &mut Child, node: u64) {
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_lines(out, format!("[node{node}]"), false));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_lines(err, format!("[node{node}]"), true));
    }
}

async fn forward_lines(from: impl AsyncRead + Unpin, prefix: String, to_stderr: bool) {
    let mut lines = BufReader::new(from).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if to_stderr {
            eprintln!("{prefix} {line}");
        } else {
            println!("{prefix} {line}");
        }
    }
}

fn describe(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(sig)) => match Signal::try_from(sig) {
                Ok(name) => format!("was killed by signal {sig} ({name})"),
                Err(_) => format!("was killed by signal {sig}"),
            },
            (None, None) => format!("ended ({s})"),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}

fn report_exit(exe: &Path, exit: &Exit, child: &Running) {
    println!(
        "[local] node{} (pid {}) {}; the other nodes keep running. Restart it with:\n\
         [local]   {}",
        exit.node,
        child.pid,
        describe(&exit.status),
        server_command(exe, &child.config_path)
    );
}

/// SIGTERM to every running child, wait up to `timeout`, SIGKILL the rest; returns how
/// many had to be killed.
async fn stop_all(
    running: &mut BTreeMap<u64, Running>,
    exits: &mut mpsc::Receiver<Exit>,
    timeout: Duration,
) -> usize {
    println!("[local] stopping {} node(s): SIGTERM, then SIGKILL after {timeout:?}", running.len());
    for (node, child) in running.iter() {
        if let Err(e) = kill(child.pid, Signal::SIGTERM) {
            println!("[local] SIGTERM to node{node} (pid {}): {e}", child.pid);
        }
    }
    reap(running, exits, timeout).await;
    let killed = running.len();
    for (node, child) in running.iter() {
        println!("[local] node{node} (pid {}) did not stop in time: SIGKILL", child.pid);
        let _ = kill(child.pid, Signal::SIGKILL);
    }
    reap(running, exits, Duration::from_millis(CHILD_KILL_WAIT_MS)).await;
    killed
}

/// Takes exit reports until every child has exited or `timeout` has passed.
async fn reap(
    running: &mut BTreeMap<u64, Running>,
    exits: &mut mpsc::Receiver<Exit>,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !running.is_empty() {
        match tokio::time::timeout_at(deadline, exits.recv()).await {
            Ok(Some(exit)) => {
                if let Some(child) = running.remove(&exit.node) {
                    println!("[local] node{} (pid {}) {}", exit.node, child.pid, {
                        describe(&exit.status)
                    });
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
}
