//! Per-connection state (protocol, authentication, name, redirect mode, request seq) and
//! the server-wide registry of connected clients behind CLIENT LIST/KILL and INFO. Owns
//! that bookkeeping; never reads or writes a socket.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use super::frame::Proto;

/// What one connection knows about itself.
#[derive(Debug)]
pub struct ClientState {
    pub id: u64,
    pub addr: SocketAddr,
    pub proto: Proto,
    pub authenticated: bool,
    pub name: Option<Bytes>,
    /// Cluster-aware mode: `-MOVED` for keys led elsewhere, `-CROSSSLOT` for multi-key
    /// commands whose keys hash to different slots.
    pub redirects: bool,
    /// READONLY was sent (reads are linearizable either way; kept for CLIENT LIST).
    pub readonly: bool,
    /// The seq of the last write request built; the next write gets `seq + 1`.
    pub seq: u64,
    /// The transaction being queued, after MULTI.
    pub multi: Option<super::cmd::multi::Multi>,
    /// WATCHed keys, for the next EXEC (at most `multi::WATCH_KEYS_MAX`).
    pub watched: Vec<super::cmd::multi::Watch>,
    /// The slots the connection sent writes to, for WAIT: for each group a write reached,
    /// the slot its part names.
    pub written: SlotSet,
    /// Its Pub/Sub subscriptions, once it subscribed to anything.
    pub subscriptions: Option<Box<super::pubsub::Subscriptions>>,
    /// MONITOR runs on it.
    pub monitor: Option<super::pubsub::Monitor>,
    /// Where its messages and MONITOR lines wait to be written, once it listens to any.
    pub mailbox: Option<Arc<super::pubsub::Mailbox>>,
    pub entry: Arc<ClientEntry>,
}

impl ClientState {
    /// Its mailbox, made on first use with room for `bytes_max` bytes.
    pub fn mailbox(&mut self, bytes_max: u64) -> Arc<super::pubsub::Mailbox> {
        let new = || Arc::new(super::pubsub::Mailbox::new(bytes_max));
        self.mailbox.get_or_insert_with(new).clone()
    }

    /// Subscribed to any channel, pattern or shard channel: a RESP2 connection takes only
    /// Pub/Sub commands, PING, QUIT and RESET then.
    pub fn subscribed(&self) -> bool {
        self.subscriptions.as_ref().is_some_and(|s| s.total() > 0)
    }
}

/// Hash slots, one bit each: 2 KiB, taken on the first insert, then no allocation.
#[derive(Debug, Default)]
pub struct SlotSet {
    bits: Option<Box<[u64; SLOT_WORDS]>>,
}

const SLOT_WORDS: usize = crate::kv::slot::SLOT_COUNT as usize / 64;

impl SlotSet {
    /// Adds `slot` (a number past the last slot is ignored).
    pub fn insert(&mut self, slot: u16) {
        let bits = self.bits.get_or_insert_with(|| Box::new([0; SLOT_WORDS]));
        if let Some(word) = bits.get_mut(usize::from(slot / 64)) {
            *word |= 1 << (slot % 64);
        }
    }

    /// The slots in the set, in order.
    pub fn slots(&self) -> Vec<u16> {
        let Some(bits) = &self.bits else { return Vec::new() };
        let set = |(i, word): (usize, &u64)| {
            let word = *word;
            (0..64u16).filter(move |bit| word & (1 << bit) != 0).map(move |bit| i as u16 * 64 + bit)
        };
        bits.iter().enumerate().flat_map(set).collect()
    }
}

impl Extend<u16> for SlotSet {
    fn extend<I: IntoIterator<Item = u16>>(&mut self, slots: I) {
        slots.into_iter().for_each(|slot| self.insert(slot));
    }
}

/// A connected client as others see it (CLIENT LIST, CLIENT KILL).
#[derive(Debug)]
pub struct ClientEntry {
    pub id: u64,
    pub addr: SocketAddr,
    /// This server's end of the connection (`laddr`), if the socket could tell.
    pub laddr: Option<SocketAddr>,
    pub created: Instant,
    shown: Mutex<Shown>,
    killed: AtomicBool,
    kill: Notify,
}

/// Kept as given (a shared `Bytes`, a command-table name): recorded on every command, it
/// allocates nothing; CLIENT LIST formats it.
#[derive(Debug, Default)]
struct Shown {
    name: Option<Bytes>,
    last_command: &'static str,
    proto: i64,
    /// Channels, patterns and shard channels subscribed to.
    subscriptions: [usize; 3],
    /// MONITOR runs on it.
    monitor: bool,
}

impl Shown {
    fn subscribed(&self) -> bool {
        self.subscriptions.iter().any(|&n| n > 0)
    }
}

impl ClientEntry {
    /// Records what CLIENT LIST shows of the connection.
    pub fn show(&self, name: Option<&Bytes>, last_command: &'static str, proto: Proto) {
        let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        if shown.name.as_ref() != name {
            shown.name = name.cloned();
        }
        if !last_command.is_empty() {
            shown.last_command = last_command;
        }
        shown.proto = proto.number();
    }

    /// Records how many channels, patterns and shard channels the connection listens to.
    pub fn show_subscriptions(&self, counts: [usize; 3]) {
        self.shown.lock().unwrap_or_else(|e| e.into_inner()).subscriptions = counts;
    }

    /// Records that MONITOR runs on the connection (or no longer does).
    pub fn show_monitor(&self, monitor: bool) {
        self.shown.lock().unwrap_or_else(|e| e.into_inner()).monitor = monitor;
    }

    /// Redis's client type `pubsub`: subscribed to anything.
    pub fn is_pubsub(&self) -> bool {
        self.shown.lock().unwrap_or_else(|e| e.into_inner()).subscribed()
    }

    /// The name CLIENT SETNAME gave, empty if none.
    pub fn name(&self) -> Bytes {
        let shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        shown.name.clone().unwrap_or_default()
    }

    /// The CLIENT LIST / CLIENT INFO line of this client (without a newline).
    pub fn line(&self) -> String {
        let shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
        let age = self.created.elapsed().as_secs();
        let cmd = if shown.last_command.is_empty() { "NULL" } else { shown.last_command };
        let name = shown.name.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle=0 flags={} db=0 sub={} psub={} \
             ssub={} multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 obl=0 oll=0 omem=0 \
             tot-mem=0 events=r cmd={} user=default redir=-1 resp={}",
            self.id,
            self.addr,
            self.laddr.map(|a| a.to_string()).unwrap_or_default(),
            name,
            age,
            match (shown.monitor, shown.subscribed()) {
                (true, true) => "OP",
                (true, false) => "O",
                (false, true) => "P",
                (false, false) => "N",
            },
            shown.subscriptions[0],
            shown.subscriptions[1],
            shown.subscriptions[2],
            cmd,
            shown.proto
        )
    }

    /// Asks the connection to close (CLIENT KILL, shutdown): wakes every wait for it (the
    /// connection's own, and a blocked WAIT's).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill.notify_waiters();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Resolves once `kill` has been called. Registered for the wake-up before it looks at
    /// the flag, so a `kill` between the two is not missed.
    pub async fn killed(&self) {
        let notified = self.kill.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.is_killed() {
            notified.await;
        }
    }
}

/// Every connected client of the server.
#[derive(Debug, Default)]
pub struct Clients {
    entries: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
}

impl Clients {
    pub fn register(
        &self,
        id: u64,
        addr: SocketAddr,
        laddr: Option<SocketAddr>,
    ) -> Arc<ClientEntry> {
        let entry = Arc::new(ClientEntry {
            id,
            addr,
            laddr,
            created: Instant::now(),
            shown: Mutex::new(Shown {
                proto: 2,
                ..Shown::default()
            }),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        });
        self.lock().insert(id, entry.clone());
        entry
    }

    pub fn unregister(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    pub fn all(&self) -> Vec<Arc<ClientEntry>> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ClientEntry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::SlotSet;

    /// Each slot once, in order, at word edges too; one past the last slot is ignored.
    #[test]
    fn a_slot_set_holds_each_slot_once_in_order() {
        let mut set = SlotSet::default();
        assert_eq!(set.slots(), Vec::<u16>::new());
        set.extend([16383, 64, 5, 0, 63, 5, 16384]);
        assert_eq!(set.slots(), vec![0, 5, 63, 64, 16383]);
    }
}
