//! The files of a local cluster, under one directory:
//!
//! ```text
//! <data dir>/secret        the cluster secret: random, made once, reused on every restart
//! <data dir>/layout.toml   the layout every node loads
//! <data dir>/node<N>.toml  node N's configuration (`shardkv server --config` takes it)
//! <data dir>/node<N>/      node N's database, and nothing else
//! ```
//!
//! Pure file writing: no processes, no sockets. The real-process tests build their clusters
//! with the same code, on ports of their own choosing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::node::config::{
    ConfigError, LimitConfig, ListenConfig, NodeConfig, PeerConfig, ReadConfig, SchedulingConfig,
    TimeoutConfig, SECRET_BYTES_MIN,
};
use crate::router::layout::{Layout, LayoutError};

/// The layout `shardkv local` starts when none is given, built into the binary so that the
/// command works from any directory.
pub const DEFAULT_LAYOUT_TOML: &str = include_str!("../../shards/local-3x8.toml");
/// Where `shardkv local` looks for its layout first, relative to the current directory.
pub const DEFAULT_LAYOUT_PATH: &str = "shards/local-3x8.toml";
/// File names inside the data directory.
pub const SECRET_FILE: &str = "secret";
pub const LAYOUT_FILE: &str = "layout.toml";
/// Random bytes in a generated secret (written as twice as many hex digits).
const SECRET_RANDOM_BYTES: usize = 32;
/// Only the owner may read the secret file.
const SECRET_FILE_MODE: u32 = 0o600;

/// Why the files of a local cluster could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot {action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("layout {path}: {source}")]
    Layout { path: PathBuf, source: LayoutError },
    #[error(
        "{path} holds a different layout; start with --fresh to discard the data in {dir}"
    )]
    LayoutChanged { path: PathBuf, dir: PathBuf },
    #[error("the secret in {path} is shorter than {SECRET_BYTES_MIN} bytes; start with --fresh")]
    ShortSecret { path: PathBuf },
    #[error("refusing to delete {path}: it is not empty and holds no shardkv `{SECRET_FILE}`")]
    NotLocalData { path: PathBuf },
    #[error("port {base} + {offset} is past 65535")]
    PortRange { base: u16, offset: usize },
    #[error("node {node} of the layout has no listen addresses")]
    NoListen { node: u64 },
    #[error("generated configuration of node {node}: {source}")]
    Config { node: u64, source: ConfigError },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LocalError {
    let path = path.to_path_buf();
    move |source| LocalError::Io { action, path, source }
}

/// First ports of a loopback cluster: the i-th node of the layout (from 0) listens on
/// `resp + i`, `peer + i` and `metrics + i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortBase {
    pub resp: u16,
    pub peer: u16,
    pub metrics: u16,
}

/// What to write: where, which layout, who listens where, which time-outs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPlan {
    pub data_dir: PathBuf,
    pub layout: Layout,
    /// Every node of the layout, by id.
    pub listen: BTreeMap<u64, ListenConfig>,
    pub timeouts: TimeoutConfig,
    pub limits: LimitConfig,
    pub reads: ReadConfig,
    pub scheduling: SchedulingConfig,
    /// `cluster_redirects` of every node.
    pub cluster_redirects: bool,
}

/// One node as written: its configuration file and what that file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalNode {
    pub id: u64,
    pub config_path: PathBuf,
    pub config: NodeConfig,
}

fn port(base: u16, offset: usize) -> Result<u16, LocalError> {
    u16::try_from(usize::from(base) + offset).map_err(|_| LocalError::PortRange { base, offset })
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

impl LocalPlan {
    /// A plan on 127.0.0.1 with consecutive ports from `base`, default time-outs and bounds.
    pub fn on_loopback(
        data_dir: &Path,
        layout: Layout,
        base: PortBase,
    ) -> Result<LocalPlan, LocalError> {
        let mut listen = BTreeMap::new();
        for (i, node) in layout.nodes.iter().enumerate() {
            let addrs = ListenConfig {
                resp: loopback(port(base.resp, i)?),
                peer: loopback(port(base.peer, i)?),
                metrics: loopback(port(base.metrics, i)?),
            };
            listen.insert(node.id, addrs);
        }
        Ok(LocalPlan {
            data_dir: data_dir.to_path_buf(),
            layout,
            listen,
            timeouts: TimeoutConfig::default(),
            limits: LimitConfig::default(),
            reads: ReadConfig::default(),
            scheduling: SchedulingConfig::default(),
            cluster_redirects: false,
        })
    }

    /// The configuration file of node `id`.
    pub fn config_path(&self, id: u64) -> PathBuf {
        self.data_dir.join(format!("node{id}.toml"))
    }

    /// The database directory of node `id`.
    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.data_dir.join(format!("node{id}"))
    }

    /// The configuration of every node, in layout order, given the cluster secret. Pure.
    pub fn configs(&self, secret: &str) -> Result<Vec<NodeConfig>, LocalError> {
        let mut peers = Vec::with_capacity(self.layout.nodes.len());
        for n in &self.layout.nodes {
            let l = self.listen.get(&n.id).ok_or(LocalError::NoListen { node: n.id })?;
            peers.push(PeerConfig { id: n.id, peer: l.peer, resp: l.resp });
        }
        let mut configs = Vec::with_capacity(peers.len());
        let mut limits = self.limits.clone();
        if limits.replica_threads == 0 {
            // The nodes share this machine: each gets its share of the cores.
            let cores = std::thread::available_parallelism().map_or(1, usize::from);
            limits.replica_threads = (cores / self.layout.nodes.len().max(1)).max(1);
        }
        for n in &self.layout.nodes {
            let listen = self.listen.get(&n.id).ok_or(LocalError::NoListen { node: n.id })?;
            let config = NodeConfig {
                node_id: n.id,
                data_dir: self.node_dir(n.id),
                layout: PathBuf::from(LAYOUT_FILE),
                secret: secret.to_string(),
                requirepass: String::new(),
                cluster_redirects: self.cluster_redirects,
                listen: listen.clone(),
                nodes: peers.clone(),
                timeouts: self.timeouts.clone(),
                limits: limits.clone(),
                reads: self.reads.clone(),
                scheduling: self.scheduling.clone(),
                slowlog: crate::node::config::SlowlogConfig::default(),
                notify_keyspace_events: String::new(),
                joined: false,
            };
            config
                .validate(&self.layout)
                .map_err(|source| LocalError::Config { node: n.id, source })?;
            configs.push(config);
        }
        Ok(configs)
    }

    /// Writes the secret (unless one is there: it is reused), the layout, every node's
    /// configuration and database directory. The data directory becomes absolute, so the
    /// files work from any current directory. A layout different from the one already in
    /// the directory is refused: the data was made for the old one.
    pub fn write(&mut self) -> Result<Vec<LocalNode>, LocalError> {
        let dir = &self.data_dir;
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        self.data_dir = std::fs::canonicalize(dir).map_err(io("resolve", dir))?;
        self.write_layout()?;
        let secret = load_or_make_secret(&self.data_dir.join(SECRET_FILE))?;
        let mut nodes = Vec::with_capacity(self.layout.nodes.len());
        for config in self.configs(&secret)? {
            let node_dir = &config.data_dir;
            std::fs::create_dir_all(node_dir).map_err(io("create", node_dir))?;
            let path = self.config_path(config.node_id);
            let text = config_toml(&config);
            std::fs::write(&path, text).map_err(io("write", &path))?;
            nodes.push(LocalNode { id: config.node_id, config_path: path, config });
        }
        Ok(nodes)
    }

    fn write_layout(&self) -> Result<(), LocalError> {
        let path = self.data_dir.join(LAYOUT_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let old = Layout::parse(&text)
                    .map_err(|source| LocalError::Layout { path: path.clone(), source })?;
                if old != self.layout {
                    let dir = self.data_dir.clone();
                    return Err(LocalError::LayoutChanged { path, dir });
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::write(&path, self.layout.to_toml()).map_err(io("write", &path))
            }
            Err(e) => Err(io("read", &path)(e)),
        }
    }
}

/// A node configuration as TOML, headed by a line saying how to start it.
fn config_toml(config: &NodeConfig) -> String {
    // Serializing plain structs of strings, numbers and paths cannot fail.
    let body = toml::to_string(config).unwrap_or_else(|e| panic!("node config to TOML: {e}"));
    format!("# Written by `shardkv local`; start with: shardkv server --config <this file>\n{body}")
}

/// Reads the secret file, or makes a random secret and writes it (mode 0600).
pub fn load_or_make_secret(path: &Path) -> Result<String, LocalError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim().to_string();
            if secret.len() < SECRET_BYTES_MIN {
                return Err(LocalError::ShortSecret { path: path.to_path_buf() });
            }
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = random_secret()?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(SECRET_FILE_MODE)
                .open(path)
                .map_err(io("create", path))?;
            writeln!(file, "{secret}").map_err(io("write", path))?;
            Ok(secret)
        }
        Err(e) => Err(io("read", path)(e)),
    }
}

/// `SECRET_RANDOM_BYTES` bytes of the operating system's randomness, in hex.
fn random_secret() -> Result<String, LocalError> {
    let source = Path::new("/dev/urandom");
    let mut bytes = [0u8; SECRET_RANDOM_BYTES];
    std::fs::File::open(source)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io("read", source))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Deletes a local cluster's data directory (`--fresh`). A directory that is not empty and
/// has no secret file is not ours, and is left alone.
pub fn discard(data_dir: &Path) -> Result<(), LocalError> {
    let mut entries = match std::fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("read", data_dir)(e)),
    };
    let empty = entries.next().is_none();
    if !empty && !data_dir.join(SECRET_FILE).is_file() {
        return Err(LocalError::NotLocalData { path: data_dir.to_path_buf() });
    }
    std::fs::remove_dir_all(data_dir).map_err(io("delete", data_dir))
}

/// The layout for `shardkv local`: the file given, else `DEFAULT_LAYOUT_PATH` if it exists
/// in the current directory, else the built-in copy. Returns it and where it came from.
pub fn local_layout(given: Option<&Path>) -> Result<(Layout, String), LocalError> {
    let default = Path::new(DEFAULT_LAYOUT_PATH);
    let path = match given {
        Some(path) => path,
        None if default.is_file() => default,
        None => {
            let layout = Layout::parse(DEFAULT_LAYOUT_TOML).map_err(|source| {
                LocalError::Layout { path: PathBuf::from(DEFAULT_LAYOUT_PATH), source }
            })?;
            return Ok((layout, format!("{DEFAULT_LAYOUT_PATH} (built in)")));
        }
    };
    let text = std::fs::read_to_string(path).map_err(io("read", path))?;
    let layout = Layout::parse(&text)
        .map_err(|source| LocalError::Layout { path: path.to_path_buf(), source })?;
    Ok((layout, path.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: PortBase = PortBase { resp: 7001, peer: 7101, metrics: 9101 };

    fn plan(dir: &Path) -> LocalPlan {
        let layout = Layout::parse(DEFAULT_LAYOUT_TOML).expect("built-in layout");
        LocalPlan::on_loopback(dir, layout, BASE).expect("plan")
    }

    #[test]
    fn written_configs_load_back_with_node_config_load() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let nodes = plan(tmp.path()).write().expect("write");
        assert_eq!(nodes.len(), 3);
        for (i, node) in nodes.iter().enumerate() {
            let (config, layout) = NodeConfig::load(&node.config_path).expect("load back");
            assert_eq!(layout, Layout::parse(DEFAULT_LAYOUT_TOML).expect("layout"));
            assert_eq!(config.node_id, node.id);
            assert_eq!(config.listen.resp.port(), 7001 + i as u16);
            assert_eq!(config.listen.peer.port(), 7101 + i as u16);
            assert_eq!(config.listen.metrics.port(), 9101 + i as u16);
            assert!(config.data_dir.is_absolute() && config.data_dir.is_dir());
            assert_eq!(config.nodes.len(), 3, "every node knows every peer");
            assert_eq!(config.secret, nodes[0].config.secret, "one secret for the cluster");
        }
    }

    #[test]
    fn the_secret_is_made_once_and_reused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let first = plan(tmp.path()).write().expect("write")[0].config.secret.clone();
        let again = plan(tmp.path()).write().expect("rewrite")[0].config.secret.clone();
        assert_eq!(first, again);
        assert!(first.len() >= SECRET_BYTES_MIN);
        discard(tmp.path()).expect("discard");
        let fresh = plan(tmp.path()).write().expect("fresh")[0].config.secret.clone();
        assert_ne!(first, fresh, "a fresh cluster has a new secret");
    }

    #[test]
    fn a_changed_layout_is_refused_until_fresh() {
        let tmp = tempfile::tempdir().expect("tempdir");
        plan(tmp.path()).write().expect("write");
        let mut other = plan(tmp.path());
        other.layout = Layout::even(3, 4, 3);
        assert!(matches!(other.write(), Err(LocalError::LayoutChanged { .. })));
    }

    #[test]
    fn discard_leaves_directories_that_are_not_local_data() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("precious"), "x").expect("write");
        assert!(matches!(discard(tmp.path()), Err(LocalError::NotLocalData { .. })));
        assert!(tmp.path().join("precious").exists());
    }

    #[test]
    fn ports_past_65535_are_refused() {
        let layout = Layout::parse(DEFAULT_LAYOUT_TOML).expect("layout");
        let base = PortBase { resp: 65534, ..BASE };
        let e = LocalPlan::on_loopback(Path::new("x"), layout, base);
        assert!(matches!(e, Err(LocalError::PortRange { base: 65534, offset: 2 })));
    }
}
