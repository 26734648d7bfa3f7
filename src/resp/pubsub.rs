//! Pub/Sub and MONITOR: which connections of this node listen to which channels, patterns
//! and shard channels, or to every command the node receives, and the delivery of what
//! they listen to. Owns the node's registry (`Hub`) and each listening connection's
//! mailbox; never touches a socket (the connection writes what its mailbox holds) and
//! never persists anything.
//!
//! Delivery is at most once, as in Redis: a message reaches the clients subscribed when it
//! arrives, on every node (`Backend::publish_to_peers` hands it to each peer's transport
//! queue, which drops it if the link is down, the queue half full or the publications
//! queued past `transport::peer::PEER_PUBLICATION_BYTES_MAX`), in the order one node
//! published them. A subscriber that does not read is bounded by its mailbox
//! (`Mailbox::bytes_max`, `limits.client_output_bytes_max`, each delivery counted with
//! `DELIVERY_OVERHEAD_BYTES`): past it the connection is closed, even while a write to it
//! blocks, as Redis closes a Pub/Sub client past its output buffer limit.
//!
//! Publishing matches the channel against every pattern subscribed on the node, under the
//! registry's lock: its cost grows with the patterns, as in Redis.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use super::frame::Frame;
use crate::kv::glob::glob_match;
use crate::kv::notify::{KeyEvent, NotifyFlags};
pub use crate::transport::api::Publication;

/// Channels, patterns and shard channels one connection listens to at once, together
/// (Redis has no bound): each costs an entry in the node's registry.
pub const SUBSCRIPTIONS_PER_CLIENT_MAX: usize = 100_000;

/// What a subscription names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// SUBSCRIBE: one channel.
    Channel,
    /// PSUBSCRIBE: every channel its glob pattern matches.
    Pattern,
    /// SSUBSCRIBE: one shard channel (a name of its own space, routed by its slot).
    Shard,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Channel, Kind::Pattern, Kind::Shard];

    /// The word a confirmation of `subscribe` (or its reverse) begins with.
    pub fn confirmation(self, subscribe: bool) -> &'static str {
        match (self, subscribe) {
            (Kind::Channel, true) => "subscribe",
            (Kind::Channel, false) => "unsubscribe",
            (Kind::Pattern, true) => "psubscribe",
            (Kind::Pattern, false) => "punsubscribe",
            (Kind::Shard, true) => "ssubscribe",
            (Kind::Shard, false) => "sunsubscribe",
        }
    }
}

/// What a mailbox counts for a delivery beyond its channel, pattern and message (or its
/// MONITOR line): its place in the queue and its frame's encoding, so that a flood of
/// empty messages fills the bound too.
pub const DELIVERY_OVERHEAD_BYTES: u64 = 64;

/// The bytes a mailbox counts for `p`.
fn publication_bytes(p: &Publication) -> u64 {
    (p.channel.len() + p.message.len()) as u64 + DELIVERY_OVERHEAD_BYTES
}

/// What waits for a listening connection.
#[derive(Clone, Debug)]
pub enum Delivery {
    /// A published message, with the pattern that matched if any.
    Message { pattern: Option<Bytes>, publication: Arc<Publication> },
    /// A MONITOR line: a command this node received.
    Monitor(Arc<str>),
}

impl Delivery {
    /// The frame the connection reads: a push (`message`, `pmessage` or `smessage`), or a
    /// status line for MONITOR.
    pub fn frame(&self) -> Frame {
        let (pattern, p) = match self {
            Delivery::Message { pattern, publication } => (pattern, publication),
            Delivery::Monitor(line) => return Frame::Simple(line.to_string()),
        };
        let mut items = Vec::with_capacity(4);
        match (pattern, p.shard) {
            (Some(pattern), _) => {
                items.push(Frame::text("pmessage"));
                items.push(Frame::Bulk(pattern.clone()));
            }
            (None, true) => items.push(Frame::text("smessage")),
            (None, false) => items.push(Frame::text("message")),
        }
        items.push(Frame::Bulk(p.channel.clone()));
        items.push(Frame::Bulk(p.message.clone()));
        Frame::Push(items)
    }

    /// What a mailbox counts for it.
    pub fn bytes(&self) -> u64 {
        match self {
            Delivery::Message { pattern, publication } => {
                publication_bytes(publication) + pattern.as_ref().map_or(0, |p| p.len() as u64)
            }
            Delivery::Monitor(line) => line.len() as u64 + DELIVERY_OVERHEAD_BYTES,
        }
    }
}

/// The messages waiting for one subscribed connection.
#[derive(Debug)]
pub struct Mailbox {
    state: Mutex<MailboxState>,
    /// Rung by every post, for the connection's one wait (a permit is kept until then).
    ready: Notify,
    /// Rung once, when the bound is passed: for a connection blocked writing what it took.
    overflowed: Notify,
    /// Bytes of deliveries (channel, pattern and message, or MONITOR line, each with
    /// `DELIVERY_OVERHEAD_BYTES`) waiting at most; one more closes the connection. The
    /// connection holds besides what it took for replies not yet written (counted with
    /// these against the same bound) or what one `take` gave it while it writes that.
    bytes_max: u64,
}

#[derive(Debug, Default)]
struct MailboxState {
    waiting: VecDeque<Delivery>,
    bytes: u64,
    overflowed: bool,
}

/// A subscriber's mailbox passed its bound: the connection must close.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow(pub u64);

impl Mailbox {
    pub fn new(bytes_max: u64) -> Mailbox {
        let (ready, overflowed) = (Notify::new(), Notify::new());
        Mailbox { state: Mutex::default(), ready, overflowed, bytes_max }
    }

    fn lock(&self) -> MutexGuard<'_, MailboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves `delivery` for the connection; past the bound, drops everything and marks
    /// the mailbox overflowed. Whether it was taken.
    fn post(&self, delivery: Delivery) -> bool {
        let mut state = self.lock();
        if state.overflowed {
            return false;
        }
        state.bytes += delivery.bytes();
        let overflowed = state.bytes > self.bytes_max;
        if overflowed {
            state.overflowed = true;
            state.waiting = VecDeque::new();
        } else {
            state.waiting.push_back(delivery);
        }
        drop(state);
        if overflowed {
            self.overflowed.notify_waiters();
        }
        self.ready.notify_one();
        true
    }

    /// Everything waiting, oldest first; `Overflow` once the bound was passed.
    pub fn take(&self) -> Result<Vec<Delivery>, Overflow> {
        let mut state = self.lock();
        if state.overflowed {
            return Err(Overflow(self.bytes_max));
        }
        state.bytes = 0;
        Ok(std::mem::take(&mut state.waiting).into())
    }

    /// Resolves when something was posted since the last `take` began (at once if so).
    pub async fn posted(&self) {
        self.ready.notified().await;
    }

    /// Resolves once the bound was passed (while the connection writes what it took).
    /// Registered before it looks, so an overflow between the two is not missed; it takes
    /// no permit of `posted`'s.
    pub async fn overflow(&self) {
        let notified = self.overflowed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.lock().overflowed {
            notified.await;
        }
    }

    pub fn bytes_max(&self) -> u64 {
        self.bytes_max
    }

    /// Whether the bound was passed.
    pub fn is_overflowed(&self) -> bool {
        self.lock().overflowed
    }
}

type Listeners = HashMap<Bytes, BTreeMap<u64, Arc<Mailbox>>>;

/// The node's subscriptions, by kind and name, then by client id; and its monitors.
#[derive(Debug, Default)]
pub struct Hub {
    registry: Mutex<[Listeners; 3]>,
    monitors: Mutex<BTreeMap<u64, Arc<Mailbox>>>,
    /// How many monitors there are: read for every command, so that one with none costs
    /// a load.
    monitoring: AtomicUsize,
    counts: HubCounts,
}

/// What a node's Pub/Sub did since it started (`Hub::stats`, the node's metrics).
#[derive(Debug, Default)]
struct HubCounts {
    delivered: AtomicU64,
    from_peers: AtomicU64,
    disconnected: AtomicU64,
    keyspace: AtomicU64,
    keyspace_dropped: AtomicU64,
}

/// A snapshot of a node's Pub/Sub: monotonic totals, then the names with a subscriber.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Messages and MONITOR lines taken by their connections to be written (one per
    /// subscriber and match); what an overflow discarded is not among them.
    pub delivered: u64,
    /// Messages other nodes relayed here.
    pub from_peers: u64,
    /// Subscribers and monitors disconnected past their mailbox's bound.
    pub disconnected: u64,
    /// Keyspace notification messages this node's replicas published.
    pub keyspace: u64,
    /// Keyspace events dropped: the node's delivery queue was full.
    pub keyspace_dropped: u64,
    /// Channels, patterns and shard channels with a subscriber here.
    pub names: [usize; 3],
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Channel => 0,
        Kind::Pattern => 1,
        Kind::Shard => 2,
    }
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, [Listeners; 3]> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn subscribe(&self, kind: Kind, name: &Bytes, client: u64, mailbox: &Arc<Mailbox>) {
        let mut registry = self.lock();
        let listeners = registry[slot(kind)].entry(name.clone()).or_default();
        listeners.insert(client, mailbox.clone());
    }

    fn unsubscribe(&self, kind: Kind, name: &Bytes, client: u64) {
        let mut registry = self.lock();
        let listeners = &mut registry[slot(kind)];
        if let Some(clients) = listeners.get_mut(name) {
            clients.remove(&client);
            if clients.is_empty() {
                listeners.remove(name);
            }
        }
    }

    /// Delivers `publication` to this node's subscribers: of its channel and the patterns
    /// matching it, or of its shard channel. Answers how many received it (a client
    /// subscribed to the channel and to a pattern matching it counts twice, as in Redis).
    pub fn deliver(&self, publication: Publication) -> usize {
        let publication = Arc::new(publication);
        let registry = self.lock();
        let mut received = 0;
        let direct = if publication.shard { Kind::Shard } else { Kind::Channel };
        if let Some(clients) = registry[slot(direct)].get(&publication.channel) {
            for mailbox in clients.values() {
                let publication = publication.clone();
                let delivery = Delivery::Message { pattern: None, publication };
                received += usize::from(mailbox.post(delivery));
            }
        }
        if !publication.shard {
            for (pattern, clients) in &registry[slot(Kind::Pattern)] {
                if !glob_match(pattern, &publication.channel) {
                    continue;
                }
                for mailbox in clients.values() {
                    let pattern = Some(pattern.clone());
                    let publication = publication.clone();
                    let delivery = Delivery::Message { pattern, publication };
                    received += usize::from(mailbox.post(delivery));
                }
            }
        }
        received
    }

    /// `deliver`, for keyspace events raised under `flags` (`kv::notify`).
    pub fn deliver_keyspace(&self, flags: NotifyFlags, events: &[KeyEvent]) {
        for (channel, message) in events.iter().flat_map(|event| flags.messages(event)) {
            self.counts.keyspace.fetch_add(1, Ordering::Relaxed);
            self.deliver(Publication { shard: false, channel, message });
        }
    }

    /// `n` keyspace events were dropped before delivery (`node::run`'s queue was full).
    pub fn count_keyspace_dropped(&self, n: usize) {
        self.counts.keyspace_dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A connection took `n` deliveries from its mailbox to write them.
    pub fn count_delivered(&self, n: usize) {
        self.counts.delivered.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `deliver`, for a message another node relayed.
    pub fn deliver_from_peer(&self, publication: Publication) {
        self.counts.from_peers.fetch_add(1, Ordering::Relaxed);
        self.deliver(publication);
    }

    /// A subscriber or monitor was disconnected past its mailbox's bound.
    pub fn count_disconnected(&self) {
        self.counts.disconnected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> HubStats {
        let c = &self.counts;
        HubStats {
            delivered: c.delivered.load(Ordering::Relaxed),
            from_peers: c.from_peers.load(Ordering::Relaxed),
            disconnected: c.disconnected.load(Ordering::Relaxed),
            keyspace: c.keyspace.load(Ordering::Relaxed),
            keyspace_dropped: c.keyspace_dropped.load(Ordering::Relaxed),
            names: Kind::ALL.map(|kind| self.count(kind)),
        }
    }

    /// The names of `kind` with a subscriber here, matching `pattern` if given, sorted.
    pub fn names(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let registry = self.lock();
        let mut names: Vec<Bytes> = registry[slot(kind)]
            .keys()
            .filter(|name| pattern.is_none_or(|p| glob_match(p, name)))
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Subscribers here of the name `name` of `kind`.
    pub fn subscribers(&self, kind: Kind, name: &[u8]) -> usize {
        self.lock()[slot(kind)].get(name).map_or(0, BTreeMap::len)
    }

    /// Whether any connection of this node runs MONITOR.
    pub fn monitored(&self) -> bool {
        self.monitoring.load(Ordering::Relaxed) > 0
    }

    /// Hands `line` to every monitor.
    pub fn feed_monitors(&self, line: String) {
        let line: Arc<str> = line.into();
        let monitors = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
        for mailbox in monitors.values() {
            mailbox.post(Delivery::Monitor(line.clone()));
        }
    }

    fn set_monitor(&self, client: u64, mailbox: Option<&Arc<Mailbox>>) {
        let mut monitors = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
        match mailbox {
            Some(mailbox) => monitors.insert(client, mailbox.clone()),
            None => monitors.remove(&client),
        };
        self.monitoring.store(monitors.len(), Ordering::Relaxed);
    }

    /// Distinct names of `kind` with a subscriber here (NUMPAT for patterns).
    pub fn count(&self, kind: Kind) -> usize {
        self.lock()[slot(kind)].len()
    }
}

/// One connection's subscriptions; dropping it (the connection ends, RESET) takes them
/// out of the hub.
#[derive(Debug)]
pub struct Subscriptions {
    hub: Arc<Hub>,
    client: u64,
    mailbox: Arc<Mailbox>,
    names: [BTreeSet<Bytes>; 3],
}

impl Subscriptions {
    /// None yet, delivered to `mailbox`.
    pub fn new(hub: Arc<Hub>, client: u64, mailbox: Arc<Mailbox>) -> Subscriptions {
        Subscriptions { hub, client, mailbox, names: Default::default() }
    }

    /// Where its messages go.
    pub fn mailbox(&self) -> &Arc<Mailbox> {
        &self.mailbox
    }

    /// Channels, patterns and shard channels together.
    pub fn total(&self) -> usize {
        self.names.iter().map(BTreeSet::len).sum()
    }

    /// How many of `kind`.
    pub fn len(&self, kind: Kind) -> usize {
        self.names[slot(kind)].len()
    }

    /// The names of `kind`, sorted.
    pub fn names(&self, kind: Kind) -> Vec<Bytes> {
        self.names[slot(kind)].iter().cloned().collect()
    }

    /// Subscribes to `name` (again is harmless); false if the bound forbids a new one.
    /// The name is copied: it outlives the request it came in.
    pub fn add(&mut self, kind: Kind, name: &Bytes) -> bool {
        if self.names[slot(kind)].contains(name) {
            return true;
        }
        if self.total() >= SUBSCRIPTIONS_PER_CLIENT_MAX {
            return false;
        }
        let name = Bytes::copy_from_slice(name);
        self.hub.subscribe(kind, &name, self.client, &self.mailbox);
        self.names[slot(kind)].insert(name);
        true
    }

    /// Unsubscribes from `name` (a name not subscribed is harmless).
    pub fn remove(&mut self, kind: Kind, name: &Bytes) {
        if self.names[slot(kind)].remove(name) {
            self.hub.unsubscribe(kind, name, self.client);
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for kind in Kind::ALL {
            for name in std::mem::take(&mut self.names[slot(kind)]) {
                self.hub.unsubscribe(kind, &name, self.client);
            }
        }
    }
}

/// A connection running MONITOR; dropping it (the connection ends, RESET) stops it.
#[derive(Debug)]
pub struct Monitor {
    hub: Arc<Hub>,
    client: u64,
}

impl Monitor {
    /// Every command this node receives from now on goes to `mailbox` too.
    pub fn start(hub: Arc<Hub>, client: u64, mailbox: &Arc<Mailbox>) -> Monitor {
        hub.set_monitor(client, Some(mailbox));
        Monitor { hub, client }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.hub.set_monitor(self.client, None);
    }
}

/// The MONITOR line of a command received at `unix_micros` from `addr` (Redis's: the
/// time, the database and the client, then each argument quoted with `quote`). Written
/// only until it passes `bytes_max` (what a monitor's mailbox holds: a longer line
/// overflows it, whatever its end).
pub fn monitor_line(unix_micros: u64, addr: &str, args: &[Bytes], bytes_max: u64) -> String {
    let (seconds, micros) = (unix_micros / 1_000_000, unix_micros % 1_000_000);
    let mut line = format!("{seconds}.{micros:06} [0 {addr}]");
    for arg in args {
        if line.len() as u64 > bytes_max {
            break;
        }
        line.push(' ');
        quote(&mut line, arg, bytes_max);
    }
    line
}

/// Appends `bytes` in double quotes as Redis's `sdscatrepr` writes them: backslash
/// escapes for `\`, `"`, and the control characters it names, `\xHH` for any other byte
/// that is not printable ASCII.
/// Stops once `out` passes `bytes_max`.
pub fn quote(out: &mut String, bytes: &[u8], bytes_max: u64) {
    out.push('"');
    for (i, &b) in bytes.iter().enumerate() {
        if i % 1024 == 0 && out.len() as u64 > bytes_max {
            return;
        }
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(shard: bool, channel: &'static str, message: &'static str) -> Publication {
        Publication { shard, channel: Bytes::from(channel), message: Bytes::from(message) }
    }

    fn mailbox(bytes_max: u64) -> Arc<Mailbox> {
        Arc::new(Mailbox::new(bytes_max))
    }

    fn channels(deliveries: &[Delivery]) -> Vec<(Option<Bytes>, Bytes)> {
        let message = |d: &Delivery| match d {
            Delivery::Message { pattern, publication } => {
                (pattern.clone(), publication.channel.clone())
            }
            Delivery::Monitor(line) => panic!("a monitor line {line}"),
        };
        deliveries.iter().map(message).collect()
    }

    /// Channels, patterns and shard channels each reach their own subscribers; a client on
    /// a channel and a matching pattern gets it twice; a dropped subscriber is gone.
    #[test]
    fn a_message_reaches_the_channel_and_pattern_subscribers_and_no_one_else() {
        let hub = Arc::new(Hub::default());
        let mut a = Subscriptions::new(hub.clone(), 1, mailbox(1 << 20));
        let mut b = Subscriptions::new(hub.clone(), 2, mailbox(1 << 20));
        assert!(a.add(Kind::Channel, &Bytes::from("news")));
        assert!(a.add(Kind::Pattern, &Bytes::from("n*")));
        assert!(b.add(Kind::Shard, &Bytes::from("news")));
        assert_eq!(hub.deliver(publication(false, "news", "hi")), 2);
        assert_eq!(hub.deliver(publication(true, "news", "shard")), 1);
        assert_eq!(hub.deliver(publication(false, "other", "x")), 0);
        let got = a.mailbox().take().unwrap();
        let news = Bytes::from("news");
        assert_eq!(channels(&got), vec![(None, news.clone()), (Some("n*".into()), news.clone())]);
        let got = b.mailbox().take().unwrap();
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], Delivery::Message { publication, .. } if publication.shard));
        assert_eq!(hub.names(Kind::Channel, None), vec![news.clone()]);
        assert_eq!(hub.names(Kind::Channel, Some(b"x*")), Vec::<Bytes>::new());
        assert_eq!(hub.count(Kind::Pattern), 1);
        a.remove(Kind::Channel, &news);
        assert_eq!(hub.deliver(publication(false, "news", "hi")), 1, "the pattern only");
        hub.deliver_from_peer(publication(false, "news", "relayed"));
        hub.count_delivered(3);
        let stats = hub.stats();
        assert_eq!((stats.delivered, stats.from_peers, stats.names), (3, 1, [0, 1, 1]));
        drop(a);
        drop(b);
        assert_eq!(hub.deliver(publication(false, "news", "hi")), 0);
        assert_eq!(hub.deliver(publication(true, "news", "hi")), 0);
        assert_eq!(Kind::ALL.map(|k| hub.count(k)), [0, 0, 0]);
    }

    /// Past its bound a mailbox drops what it held and says so from then on.
    #[test]
    fn a_mailbox_past_its_bound_overflows_for_good() {
        let hub = Arc::new(Hub::default());
        // Each message of channel `c` and 8 bytes counts 9 bytes and the overhead.
        let each = 9 + DELIVERY_OVERHEAD_BYTES;
        let mut s = Subscriptions::new(hub.clone(), 1, mailbox(2 * each));
        s.add(Kind::Channel, &Bytes::from("c"));
        assert_eq!(hub.deliver(publication(false, "c", "12345678")), 1);
        assert_eq!(hub.deliver(publication(false, "c", "12345678")), 1);
        assert_eq!(s.mailbox().take().unwrap().len(), 2, "two fit");
        hub.deliver(publication(false, "c", "12345678"));
        hub.deliver(publication(false, "c", "12345678"));
        hub.deliver(publication(false, "c", ""));
        assert_eq!(s.mailbox().take().err(), Some(Overflow(2 * each)), "an empty one counts");
        assert_eq!(hub.deliver(publication(false, "c", "1")), 0);
        assert_eq!(s.mailbox().take().err(), Some(Overflow(2 * each)));
    }

    /// A connection subscribes to at most `SUBSCRIPTIONS_PER_CLIENT_MAX` names.
    #[test]
    fn subscriptions_are_bounded_per_connection() {
        let hub = Arc::new(Hub::default());
        let mut s = Subscriptions::new(hub.clone(), 1, mailbox(1024));
        for i in 0..SUBSCRIPTIONS_PER_CLIENT_MAX {
            assert!(s.add(Kind::Channel, &Bytes::from(i.to_string())));
        }
        assert!(s.add(Kind::Channel, &Bytes::from("0")), "again is no new one");
        assert!(!s.add(Kind::Pattern, &Bytes::from("p")));
        assert_eq!(s.total(), SUBSCRIPTIONS_PER_CLIENT_MAX);
        drop(s);
        assert_eq!(hub.count(Kind::Channel), 0);
    }

    /// Monitors get each line fed while they run, nobody after; the line quotes as Redis.
    #[test]
    fn monitors_get_lines_while_they_run() {
        let hub = Arc::new(Hub::default());
        assert!(!hub.monitored());
        let (a, b) = (mailbox(1 << 20), mailbox(1 << 20));
        let first = Monitor::start(hub.clone(), 1, &a);
        let second = Monitor::start(hub.clone(), 2, &b);
        assert!(hub.monitored());
        let odd = Bytes::from(&b"\r\n\t\x07\x08\x00\xff"[..]);
        let args = [Bytes::from("SET"), Bytes::from("k \"x\"\\"), odd];
        let line = monitor_line(1_700_000_000_000_042, "127.0.0.1:5000", &args, 1 << 20);
        let cut = monitor_line(1_700_000_000_000_042, "127.0.0.1:5000", &args, 10);
        assert_eq!(cut, "1700000000.000042 [0 127.0.0.1:5000]", "past the bound at once");
        assert_eq!(
            line,
            r#"1700000000.000042 [0 127.0.0.1:5000] "SET" "k \"x\"\\" "\r\n\t\a\b\x00\xff""#
        );
        hub.feed_monitors(line.clone());
        drop(first);
        hub.feed_monitors("later".into());
        let frames = |m: &Arc<Mailbox>| -> Vec<Frame> {
            m.take().unwrap().iter().map(Delivery::frame).collect()
        };
        assert_eq!(frames(&a), vec![Frame::Simple(line.clone())]);
        assert_eq!(frames(&b), vec![Frame::Simple(line), Frame::Simple("later".into())]);
        drop(second);
        assert!(!hub.monitored());
    }
}
