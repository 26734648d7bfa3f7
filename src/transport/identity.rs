//! Which data directory each peer had when this node first met it.
//!
//! Every node's database gets a random incarnation when it is created
//! (`NodeDb::incarnation`); the handshake carries it. A node whose data directory was
//! wiped or replaced comes back under its old id with a new incarnation, and without the
//! votes it cast and the entries it acknowledged: letting it vote or count towards a quorum
//! again could elect a leader that lacks acknowledged writes. So each node records the
//! incarnation every peer presented at their first authenticated handshake, and refuses a
//! peer that presents another one, in both directions. The operator replaces such a node
//! (a new id joins, the groups move to it, the old id is forgotten); a forgotten node's
//! record is dropped (when the node leaves the peers, and whenever a cluster map is
//! applied that lists it not and that is not a peer any more), so its id may be used again.
//!
//! Limits: the first incarnation a node sees of a peer is trusted, so a node that never met
//! a peer's earlier data directory (it joined later, or lost this record) admits a wiped
//! peer; and a data directory restored from a backup keeps its incarnation. A node that
//! was down while a peer's id was forgotten and joined again, or whose configuration still
//! names a forgotten peer (a layout node), keeps the old record and refuses the new node:
//! delete that node's line from the record.
//!
//! File: `<database file>.peers`, one line per peer, `node incarnation` in decimal and
//! hex, after a header line (blank lines and `#` comments are skipped, and not kept when
//! the file is next written); it is replaced
//! atomically (write, fsync, rename, fsync of the directory). A file that does not parse
//! is an error naming it, at start. The first meeting of a peer writes the file on a
//! blocking thread, never on the event loop.
//!
//! Must never: admit a peer under an incarnation other than the recorded one, record one
//! the handshake did not authenticate, or admit a new peer before its record is durable.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::raft::types::NodeId;

/// What follows the database file's name to make the record's.
pub const PEERS_FILE_SUFFIX: &str = ".peers";
/// The record's first line.
const HEADER: &str = "# shardkv peer incarnations v1: node incarnation";
/// Peers recorded, at most: `PEERS_MAX` peers plus forgotten ones not yet dropped.
pub const RECORDED_PEERS_MAX: usize = 4 * super::PEERS_MAX;

/// Why a peer was refused, or the record could not be kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "node {node} presents data directory incarnation {got:016x}, but node {by} first met \
         it with {known:016x}: node {node} lost its state (a wiped or replaced data \
         directory), or another machine runs as node {node}; it must not take part under \
         this id: join the machine as a new node and move node {node}'s replicas to it"
    )]
    Changed { node: NodeId, by: NodeId, known: u64, got: u64 },
    #[error("{RECORDED_PEERS_MAX} peers are recorded already; node {node} is not admitted")]
    Full { node: NodeId },
    #[error(
        "{path}: {reason} (fix the file, or delete it to trust each peer's next incarnation)"
    )]
    File { path: String, reason: String },
    #[error("{path}: cannot write: {reason}")]
    Write { path: String, reason: String },
    #[error("recording node {node}'s incarnation did not finish: {reason}")]
    Interrupted { node: NodeId, reason: String },
}

/// This node's incarnation and the ones its peers presented first.
#[derive(Debug)]
pub struct Identity {
    me: NodeId,
    mine: u64,
    /// Where the record lives; `None` keeps it in memory only (tests).
    path: Option<PathBuf>,
    known: Mutex<BTreeMap<NodeId, u64>>,
}

impl Identity {
    /// Opens the record beside the database `db_path` (empty if there is none yet).
    pub fn open(me: NodeId, mine: u64, db_path: &Path) -> Result<Identity, IdentityError> {
        let mut path = db_path.as_os_str().to_owned();
        path.push(PEERS_FILE_SUFFIX);
        let path = PathBuf::from(path);
        let known = match fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|reason| file_err(&path, reason))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(file_err(&path, format!("cannot read: {e}"))),
        };
        Ok(Identity { me, mine, path: Some(path), known: Mutex::new(known) })
    }

    /// A record kept in memory only.
    pub fn in_memory(me: NodeId, mine: u64) -> Identity {
        Identity { me, mine, path: None, known: Mutex::new(BTreeMap::new()) }
    }

    /// This node's incarnation.
    pub fn mine(&self) -> u64 {
        self.mine
    }

    /// Admits `node` presenting `incarnation` after an authenticated handshake: recorded
    /// (durably, first) if the node is new, refused if it presented another one before.
    /// A first meeting writes the file, once per peer; the handshake waits for it.
    pub fn admit(&self, node: NodeId, incarnation: u64) -> Result<(), IdentityError> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(checked) = self.compare(&known, node, incarnation) {
            return checked;
        }
        if known.len() >= RECORDED_PEERS_MAX {
            return Err(IdentityError::Full { node });
        }
        let mut next = known.clone();
        next.insert(node, incarnation);
        self.save(&next)?;
        *known = next;
        Ok(())
    }

    /// `admit`, from async code (on a tokio runtime): a known peer is checked at once; the
    /// file write of a first meeting runs on a blocking thread.
    pub async fn admit_async(
        self: &Arc<Self>,
        node: NodeId,
        incarnation: u64,
    ) -> Result<(), IdentityError> {
        // Never wait on the event loop for a record being written: a busy lock sends the
        // check to the blocking thread, where `admit` makes it under the lock.
        let checked = match self.known.try_lock() {
            Ok(known) => self.compare(&known, node, incarnation),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                self.compare(&p.into_inner(), node, incarnation)
            }
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(checked) = checked {
            return checked;
        }
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.admit(node, incarnation)).await {
            Ok(admitted) => admitted,
            Err(e) => Err(IdentityError::Interrupted { node, reason: e.to_string() }),
        }
    }

    /// The verdict on a peer already recorded; `None` for a new one.
    fn compare(
        &self,
        known: &BTreeMap<NodeId, u64>,
        node: NodeId,
        got: u64,
    ) -> Option<Result<(), IdentityError>> {
        match known.get(&node) {
            Some(&k) if k == got => Some(Ok(())),
            Some(&k) => Some(Err(IdentityError::Changed { node, by: self.me, known: k, got })),
            None => None,
        }
    }

    /// Keeps the records of the nodes `keep` accepts only (the others left the cluster).
    pub fn retain(&self, keep: impl Fn(NodeId) -> bool) -> Result<(), IdentityError> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.keys().all(|n| keep(*n)) {
            return Ok(());
        }
        let mut next = known.clone();
        next.retain(|n, _| keep(*n));
        self.save(&next)?;
        *known = next;
        Ok(())
    }

    /// The incarnation recorded for `node`, if any.
    pub fn known(&self, node: NodeId) -> Option<u64> {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).get(&node).copied()
    }

    fn save(&self, known: &BTreeMap<NodeId, u64>) -> Result<(), IdentityError> {
        let Some(path) = &self.path else { return Ok(()) };
        let mut text = format!("{HEADER}\n");
        for (node, inc) in known {
            text.push_str(&format!("{} {inc:016x}\n", node.get()));
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| IdentityError::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

fn file_err(path: &Path, reason: String) -> IdentityError {
    IdentityError::File { path: path.display().to_string(), reason }
}

fn parse(text: &str) -> Result<BTreeMap<NodeId, u64>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err("not a shardkv peer record (bad first line)".into());
    }
    let mut known = BTreeMap::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let bad = || format!("line {}: expected `node incarnation`, found {line:?}", n + 2);
        let mut words = line.split_whitespace();
        let (Some(node), Some(inc), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad());
        };
        let node = node.parse::<u64>().ok().filter(|n| *n != 0).ok_or_else(bad)?;
        let inc = u64::from_str_radix(inc, 16).map_err(|_| bad())?;
        if known.insert(NodeId(node), inc).is_some() {
            return Err(format!("line {}: node {node} recorded twice", n + 2));
        }
        if known.len() > RECORDED_PEERS_MAX {
            return Err(format!("more than {RECORDED_PEERS_MAX} peers"));
        }
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("node.redb")
    }

    #[test]
    fn a_peer_is_admitted_under_its_first_incarnation_only_and_that_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::open(NodeId(1), 7, &db_path(&dir)).unwrap();
        id.admit(NodeId(2), 0xabc).unwrap();
        id.admit(NodeId(2), 0xabc).unwrap();
        id.admit(NodeId(3), 0xdef).unwrap();
        let err = id.admit(NodeId(2), 0x123).unwrap_err();
        let (node, by) = (NodeId(2), NodeId(1));
        assert_eq!(err, IdentityError::Changed { node, by, known: 0xabc, got: 0x123 });
        assert!(err.to_string().contains("node 2 lost its state"), "{err}");

        let again = Identity::open(NodeId(1), 7, &db_path(&dir)).unwrap();
        assert_eq!(again.known(NodeId(2)), Some(0xabc));
        assert_eq!(again.known(NodeId(3)), Some(0xdef));
        assert!(again.admit(NodeId(2), 0x123).is_err());
        again.retain(|n| n != NodeId(2)).unwrap();
        let third = Identity::open(NodeId(1), 7, &db_path(&dir)).unwrap();
        assert_eq!(third.known(NodeId(2)), None);
        third.admit(NodeId(2), 0x123).unwrap();
        third.retain(|n| n == NodeId(2)).unwrap();
        let fourth = Identity::open(NodeId(1), 7, &db_path(&dir)).unwrap();
        assert_eq!((fourth.known(NodeId(2)), fourth.known(NodeId(3))), (Some(0x123), None));
    }

    #[test]
    fn a_hand_edited_record_with_blank_lines_and_comments_opens() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{HEADER}\n\n# node 2 was replaced\n3 ff\n");
        fs::write(dir.path().join("node.redb.peers"), text).unwrap();
        let id = Identity::open(NodeId(1), 1, &db_path(&dir)).unwrap();
        assert_eq!((id.known(NodeId(2)), id.known(NodeId(3))), (None, Some(0xff)));
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb.peers");
        for text in ["", "garbage\n", &format!("{HEADER}\n2 xyz\n"),
            &format!("{HEADER}\n2 1\n2 1\n"), &format!("{HEADER}\n0 1\n")] {
            fs::write(&path, text).unwrap();
            let err = Identity::open(NodeId(1), 1, &db_path(&dir)).unwrap_err();
            assert!(err.to_string().contains("node.redb.peers"), "{err}");
        }
    }
}
