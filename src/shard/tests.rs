//! In-process clusters of three nodes (three redb files, three writers, replicas on two
//! arbiters of one actix system) joined by an in-memory `PeerSender`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;

use super::*;
use crate::kv::command::{ExpireCondition, KvCommand, Request, SetCondition};
use crate::kv::read::ReadCommand;
use crate::kv::Reply;
use crate::raft::{GroupId, NodeId, Role};
use crate::shard::api::{Endorsement, LeaderChange, ShardError, ShardOp, ShardResult};
use crate::storage::{NodeDb, StorageError};
use crate::transport::api::{ForwardReply, ForwardRequest, GroupMessage, PeerSender, Urgency};
use crate::transport::api::{TermAnswer, TermProbe};

const GROUP: GroupId = GroupId(1);
const NODES: [u64; 3] = [1, 2, 3];
const WAIT_MAX: Duration = Duration::from_secs(20);

/// Routes Raft messages to the replica registered for the destination node, and checks
/// each against its sender's `published_term` (`Net::check_published`).
#[derive(Default)]
struct Net {
    routes: Mutex<HashMap<NodeId, Addr<ShardActor>>>,
    published: Mutex<HashMap<NodeId, Arc<std::sync::atomic::AtomicU64>>>,
    /// Messages checked against their sender's published term, and those above it.
    checked: std::sync::atomic::AtomicU64,
    above: Mutex<Vec<String>>,
    /// ReadIndex requests sent, by sender.
    read_indexes: Mutex<HashMap<NodeId, u64>>,
    /// Drop every ReadIndex answer.
    drop_read_answers: std::sync::atomic::AtomicBool,
    /// Messages to this node are held, in order, until released.
    held: Mutex<Option<(NodeId, Vec<(GroupMessage, Urgency)>)>>,
}

impl Net {
    /// A message of a term above its sender's published term would let an endorsement of
    /// that older term stand for a node that had moved on. Pre-votes alone carry the next
    /// term without being in it.
    fn check_published(&self, m: &crate::raft::Message) {
        use crate::raft::MessageBody::{PreVote, PreVoteResponse};
        use std::sync::atomic::Ordering;
        if matches!(m.body, PreVote { .. } | PreVoteResponse { .. }) {
            return;
        }
        let Some(cell) = self.published.lock().expect("published").get(&m.from).cloned() else {
            return;
        };
        self.checked.fetch_add(1, Ordering::Relaxed);
        let published = cell.load(Ordering::Acquire);
        if m.term.get() > published {
            let kind = m.body.kind();
            let seen = format!("{kind} from {} in term {} (published {published})", m.from, m.term);
            self.above.lock().expect("above").push(seen);
        }
    }
}

impl PeerSender for Net {
    fn send_raft(&self, to: NodeId, message: GroupMessage, urgency: Urgency) {
        self.check_published(&message.msg);
        let from = message.msg.from;
        if matches!(message.msg.body, crate::raft::MessageBody::ReadIndex { .. }) {
            *self.read_indexes.lock().expect("read indexes").entry(from).or_default() += 1;
        }
        let answer = matches!(message.msg.body, crate::raft::MessageBody::ReadIndexResponse { .. });
        if answer && self.drop_read_answers.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if let Some((node, queue)) = self.held.lock().expect("held").as_mut() {
            if *node == to {
                queue.push((message, urgency));
                return;
            }
        }
        self.deliver(to, message, urgency);
    }
    fn send_forward(&self, _to: NodeId, _request: ForwardRequest) {}
    fn send_forward_reply(&self, _to: NodeId, _reply: ForwardReply) {}
    fn send_term_probe(&self, _to: NodeId, _probe: TermProbe) {}
    fn send_term_answer(&self, _to: NodeId, _answer: TermAnswer) {}
    fn send_publication(&self, _to: NodeId, _publication: crate::transport::api::Publication) {}
}

impl Net {
    fn deliver(&self, to: NodeId, message: GroupMessage, urgency: Urgency) {
        let addr = self.routes.lock().expect("routes").get(&to).cloned();
        if let Some(addr) = addr {
            let _ = addr.try_send(Inbound(vec![(message, urgency)]));
        }
    }

    /// Holds every message to `node` from now on.
    fn hold(&self, node: NodeId) {
        *self.held.lock().expect("held") = Some((node, Vec::new()));
    }

    /// Delivers the held messages up to and including the first ReadIndex answer (true if
    /// there was one), still holding what comes later; or, `all`, every held message, and
    /// holds no more.
    fn release(&self, all: bool) -> bool {
        let mut held = self.held.lock().expect("held");
        let Some((node, queue)) = held.as_mut() else { return false };
        let node = *node;
        let is_answer =
            |m: &GroupMessage| matches!(m.msg.body, crate::raft::MessageBody::ReadIndexResponse { .. });
        let upto = match all {
            true => Some(queue.len()),
            false => queue.iter().position(|(m, _)| is_answer(m)).map(|i| i + 1),
        };
        let Some(upto) = upto else { return false };
        let due: Vec<_> = queue.drain(..upto).collect();
        if all {
            *held = None;
        }
        drop(held);
        for (message, urgency) in due {
            self.deliver(node, message, urgency);
        }
        true
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    net: Arc<Net>,
    arbiters: Vec<Arbiter>,
    changes: Arc<Mutex<Vec<LeaderChange>>>,
    compact_every_entries: u64,
    /// `ShardConfig::apply_flush`: zero (every tick) unless a test studies the interval,
    /// so durable applied indexes, and the compactions they allow, follow writes at once.
    apply_flush: Duration,
    /// Each node's database, for its fsync count (weak: a stopped node closes it).
    dbs: Mutex<HashMap<u64, Weak<NodeDb>>>,
    /// Each node's replica's counters (shared with it).
    metrics: Mutex<HashMap<u64, crate::metrics::GroupMetrics>>,
    /// Election time-out, in ticks of 10 ms: least and most.
    election_ticks: (u64, u64),
    /// `ShardConfig::lease_reads`.
    lease_reads: Option<u64>,
    /// Each node's replica's read door (shared with it).
    doors: Mutex<HashMap<u64, Weak<crate::shard::read_door::ReadDoor>>>,
    /// `ShardConfig::entry_bytes_max`.
    entry_bytes_max: u64,
    /// `ShardConfig::pause_long_applies`.
    pause_long_applies: bool,
    /// `ShardConfig::expiry_step`: off unless a test studies it (the tests' writes carry a
    /// clock of 1970, whose deadlines the real clock of the active expiry has passed).
    expiry_step: Option<Duration>,
    /// Each node's keyspace notification flags (off unless a test sets them).
    notifiers: Mutex<HashMap<u64, Arc<crate::kv::notify::Notifier>>>,
    /// The keyspace events each node's replica raised, as "event key", in order.
    key_events: Arc<Mutex<HashMap<u64, Vec<String>>>>,
}

fn open_db(path: &std::path::Path) -> Arc<NodeDb> {
    let start = Instant::now();
    loop {
        match NodeDb::open(path) {
            Ok(db) => return Arc::new(db),
            // The previous incarnation's last handles are still being dropped.
            Err(StorageError::AlreadyOpen { .. }) if start.elapsed() < WAIT_MAX => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    }
}

impl Cluster {
    fn new(compact_every_entries: u64) -> Cluster {
        Cluster {
            dir: tempfile::tempdir().expect("tempdir"),
            net: Arc::new(Net::default()),
            arbiters: vec![Arbiter::new(), Arbiter::new()],
            changes: Arc::new(Mutex::new(Vec::new())),
            compact_every_entries,
            apply_flush: Duration::ZERO,
            dbs: Mutex::new(HashMap::new()),
            metrics: Mutex::new(HashMap::new()),
            election_ticks: (10, 20),
            lease_reads: None,
            doors: Mutex::new(HashMap::new()),
            entry_bytes_max: crate::shard::limits::ENTRY_BYTES_MAX_DEFAULT,
            pause_long_applies: true,
            expiry_step: None,
            notifiers: Mutex::new(HashMap::new()),
            key_events: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Node `node`'s keyspace notification flags (the node must have started).
    fn notify(&self, node: u64, flags: &str) {
        let flags = crate::kv::notify::NotifyFlags::parse(flags).expect("flags");
        self.notifiers.lock().expect("notifiers")[&node].set(flags);
    }

    fn key_events(&self, node: u64) -> Vec<String> {
        self.key_events.lock().expect("events").get(&node).cloned().unwrap_or_default()
    }

    fn start_node(&self, node: u64) {
        let db = open_db(&self.dir.path().join(format!("node{node}.redb")));
        self.dbs.lock().expect("dbs").insert(node, Arc::downgrade(&db));
        let writer = ShardWriter::start(Arc::clone(&db)).expect("writer");
        let voters: Vec<NodeId> = NODES.iter().map(|&n| NodeId(n)).collect();
        let slots = crate::kv::range::SlotRange::new(0, 16383);
        bootstrap_group(&writer, GROUP, &voters, slots).expect("bootstrap");
        let mut cfg = ShardConfig::new(NodeId(node), GROUP, 0..=16383);
        cfg.tick = Duration::from_millis(10);
        (cfg.election_ticks_min, cfg.election_ticks_max) = self.election_ticks;
        cfg.compact_every_entries = self.compact_every_entries;
        cfg.log_keep_entries = 2;
        cfg.apply_flush = self.apply_flush;
        cfg.rng_seed = 42;
        cfg.lease_reads = self.lease_reads;
        cfg.entry_bytes_max = self.entry_bytes_max;
        cfg.pause_long_applies = self.pause_long_applies;
        cfg.expiry_step = self.expiry_step;
        self.doors.lock().expect("doors").insert(node, Arc::downgrade(&cfg.read_door));
        self.metrics.lock().expect("metrics").insert(node, cfg.metrics.clone());
        let published = Arc::clone(&cfg.published_term);
        self.net.published.lock().expect("published").insert(NodeId(node), published);
        let changes = Arc::clone(&self.changes);
        let notifier = Arc::clone(
            self.notifiers.lock().expect("notifiers").entry(node).or_default(),
        );
        let key_events = Arc::clone(&self.key_events);
        let on_key_events: crate::shard::actor::KeyEventsFn = Arc::new(move |events| {
            let shown = events.events().iter().map(|e| {
                format!("{} {}", e.event, String::from_utf8_lossy(&e.key))
            });
            key_events.lock().expect("events").entry(node).or_default().extend(shown);
        });
        let deps = ShardDeps {
            db,
            writer,
            peers: Arc::clone(&self.net) as Arc<dyn PeerSender>,
            on_leader_change: Arc::new(move |c| changes.lock().expect("changes").push(c)),
            on_split: Arc::new(|_| {}),
            on_removed: Arc::new(|_, _| {}),
            on_members: Arc::new(|_, _| {}),
            on_report: Arc::new(|_| {}),
            clean_budget: crate::shard::undurable::CleanBudget::new(
                crate::shard::limits::CLEAN_CACHE_BYTES_DEFAULT,
            ),
            notifier,
            on_key_events,
        };
        let arbiter = &self.arbiters[node as usize % self.arbiters.len()];
        let addr = ShardActor::start(&arbiter.handle(), cfg, deps).expect("start");
        self.net.routes.lock().expect("routes").insert(NodeId(node), addr);
    }

    /// A cluster whose replicas write their applied state every `apply_flush`, all started.
    fn started_with_flush(apply_flush: Duration) -> Cluster {
        let cluster = Cluster { apply_flush, ..Cluster::new(1_000_000) };
        cluster.start_all();
        cluster
    }

    fn start_all(&self) {
        for n in NODES {
            self.start_node(n);
        }
    }

    async fn stop_all(&self) {
        for n in NODES {
            self.stop_node(n).await;
        }
    }

    async fn stop_node(&self, node: u64) {
        let addr = self.net.routes.lock().expect("routes").remove(&NodeId(node));
        if let Some(addr) = addr {
            let _ = addr.send(Stop).await;
        }
    }

    fn addr(&self, node: u64) -> Addr<ShardActor> {
        self.net.routes.lock().expect("routes")[&NodeId(node)].clone()
    }

    /// The database of running `node`.
    fn db(&self, node: u64) -> Arc<NodeDb> {
        let db = self.dbs.lock().expect("dbs").get(&node).and_then(Weak::upgrade);
        db.expect("node running")
    }

    /// Durable commits of `node`'s database since it was opened.
    fn fsyncs(&self, node: u64) -> u64 {
        self.db(node).fsync_count()
    }

    async fn status(&self, node: u64) -> ShardStatus {
        self.addr(node).send(GetStatus).await.expect("status")
    }

    /// Waits for a leader whose no-op is applied.
    async fn leader(&self) -> u64 {
        let start = Instant::now();
        while start.elapsed() < WAIT_MAX {
            let routes: Vec<u64> =
                self.net.routes.lock().expect("routes").keys().map(|n| n.get()).collect();
            for node in routes {
                let s = self.status(node).await;
                if s.role == Role::Leader && s.applied_index >= s.commit_index
                    && s.commit_index > crate::raft::LogIndex(0)
                {
                    return node;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no leader within {WAIT_MAX:?}");
    }

    /// Waits for a leader, writes k = v1 through it, and gives the leader and its term.
    async fn leader_after_a_write(&self) -> (u64, crate::raft::Term) {
        let leader = self.leader().await;
        assert_eq!(self.exec(leader, set(1, "k", "v1")).await, Ok(Reply::Ok));
        (leader, self.status(leader).await.term)
    }

    fn door(&self, node: u64) -> Arc<crate::shard::read_door::ReadDoor> {
        self.doors.lock().expect("doors")[&node].upgrade().expect("node running")
    }

    async fn exec(&self, node: u64, op: ShardOp) -> ShardResult {
        self.addr(node).send(Execute(op)).await.expect("mailbox")
    }
}

fn set(seq: u64, key: &str, value: &str) -> ShardOp {
    let command = KvCommand::Set {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(value.to_string()),
        expire_at_ms: None,
        keep_ttl: false,
        condition: SetCondition::Always,
        get: false,
    };
    ShardOp::Write(Request { client_id: 7, seq, now_ms: 1_000, command })
}

fn get(key: &str) -> ShardOp {
    ShardOp::read(ReadCommand::Get { key: Bytes::from(key.to_string()) }, 1_000)
}

/// A read of the node's own request path: a follower may serve it.
fn follower_get(key: &str) -> ShardOp {
    let command = ReadCommand::Get { key: Bytes::from(key.to_string()) };
    ShardOp::Read { command, now_ms: 1_000, endorsement: None, follower_ok: true }
}

fn bulk(value: &str) -> ShardResult {
    Ok(Reply::Bulk(Bytes::from(value.to_string())))
}

fn run(test: impl std::future::Future<Output = ()> + 'static) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    System::new().block_on(async move {
        tokio::time::timeout(Duration::from_secs(90), test).await.expect("test timed out");
    });
}

#[test]
fn three_replicas_elect_write_and_read_linearizably() {
    run(async {
        let cluster = Cluster::new(1_000_000);
        cluster.start_all();
        let leader = cluster.leader().await;
        assert_eq!(cluster.exec(leader, set(1, "k", "v1")).await, Ok(Reply::Ok));
        assert_eq!(cluster.exec(leader, get("k")).await, bulk("v1"));
        // A retry of the same request is answered again, not applied twice.
        assert_eq!(cluster.exec(leader, set(1, "k", "v1")).await, Ok(Reply::Ok));
        for follower in NODES.into_iter().filter(|&n| n != leader) {
            let hint = Some(NodeId(leader));
            let not_leader = Err(ShardError::NotLeader { group: GROUP, leader: hint });
            assert_eq!(cluster.exec(follower, get("k")).await, not_leader);
            assert_eq!(cluster.exec(follower, set(2, "k", "x")).await, not_leader);
        }
        let changes = cluster.changes.lock().expect("changes").clone();
        assert!(changes.iter().any(|c| c.leader == Some(NodeId(leader))), "{changes:?}");
        cluster.stop_all().await;
    });
}

/// Each replica raises the keyspace events of what it applies, as its node's flags ask,
/// leader and followers alike, in log order; a node that does not ask raises none.
#[test]
fn every_replica_raises_the_keyspace_events_its_node_asks_for() {
    run(async {
        let cluster = Cluster::new(1_000_000);
        cluster.start_all();
        cluster.notify(1, "KEA");
        cluster.notify(3, "E$gn");
        let leader = cluster.leader().await;
        let del = |seq, key: &str| {
            let command = KvCommand::Del { keys: vec![Bytes::from(key.to_string())] };
            ShardOp::Write(Request { client_id: 7, seq, now_ms: 1_000, command })
        };
        assert_eq!(cluster.exec(leader, set(1, "k", "v1")).await, Ok(Reply::Ok));
        assert_eq!(cluster.exec(leader, set(2, "k", "v2")).await, Ok(Reply::Ok));
        assert_eq!(cluster.exec(leader, set(2, "k", "v2")).await, Ok(Reply::Ok), "a retry");
        assert_eq!(cluster.exec(leader, del(3, "k")).await, Ok(Reply::Int(1)));
        let want_1 = ["set k", "set k", "del k"].map(String::from).to_vec();
        let want_3 = ["new k", "set k", "set k", "del k"].map(String::from).to_vec();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while (cluster.key_events(1) != want_1 || cluster.key_events(3) != want_3)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(cluster.key_events(1), want_1, "node 1 asked for every class");
        assert_eq!(cluster.key_events(3), want_3, "node 3 asked for new too");
        // Node 2 has applied the DEL once its read after it finds no key.
        assert_eq!(cluster.exec(2, follower_get("k")).await, Ok(Reply::Nil));
        assert_eq!(cluster.key_events(2), Vec::<String>::new(), "node 2 did not ask");
        cluster.stop_all().await;
    });
}

/// Every node's thread stalls at once for several election time-outs, as when each applies
/// one large command (a DEL of 500,000 keys held a node's thread for over a second): the
/// timers count a heartbeat interval of the stall, the lease clock all of it, so no
/// follower campaigns and the leader does not step down. Same term, same leader.
#[test]
fn a_stall_of_every_node_at_once_starts_no_election() {
    run(async {
        let cluster = Cluster::new(1_000_000);
        cluster.start_all();
        let (leader, term) = cluster.leader_after_a_write().await;
        // Election time-outs are 100-200 ms here (ticks of 10 ms).
        let stall = Duration::from_millis(600);
        // Both arbiters stall together, not one after the other.
        let together = Arc::new(std::sync::Barrier::new(cluster.arbiters.len()));
        for arbiter in &cluster.arbiters {
            let together = together.clone();
            let stalled = arbiter.spawn_fn(move || {
                together.wait();
                std::thread::sleep(stall);
            });
            assert!(stalled, "the arbiter runs");
        }
        tokio::time::sleep(stall + Duration::from_millis(400)).await;
        let after = cluster.status(leader).await;
        assert_eq!((after.role, after.term), (Role::Leader, term), "no election");
        assert_eq!(cluster.exec(leader, set(2, "k", "v2")).await, Ok(Reply::Ok));
        cluster.stop_all().await;
    });
}

/// A Ready that commits requests of `APPLY_PAUSE_KEYS_MIN` keys or more hands its messages
/// to the transport and applies `APPLY_PAUSE` later, on every replica: the large MSET and
/// the writes behind it apply in order everywhere, and the group keeps its leader and term.
/// A Ready of fewer keys does not pause, nor does a flush of them all (one range delete).
#[test]
fn a_commit_of_many_keys_pauses_before_it_applies_and_the_writes_behind_it_follow() {
    run(async {
        let cluster = Cluster::new(1_000_000);
        cluster.start_all();
        let (leader, term) = cluster.leader_after_a_write().await;
        let pauses = |cluster: &Cluster| -> Vec<u64> {
            let metrics = cluster.metrics.lock().expect("metrics");
            NODES.iter().map(|n| metrics[n].apply_pauses.get()).collect()
        };
        let key = |i: usize| Bytes::from(format!("k{i}"));
        let mset = |seq: u64, keys: usize| {
            let pairs = (0..keys).map(|i| (key(i), Bytes::from_static(b"v"))).collect();
            let command = KvCommand::MSet { pairs };
            ShardOp::Write(Request { client_id: 7, seq, now_ms: 1_000, command })
        };
        let many = crate::shard::limits::APPLY_PAUSE_KEYS_MIN;
        // Fewer even should a follower commit it in one Ready with the writes around it.
        assert_eq!(cluster.exec(leader, mset(2, many / 2)).await, Ok(Reply::Ok));
        assert_eq!(cluster.exec(leader, set(3, "k", "v3")).await, Ok(Reply::Ok));
        for node in NODES {
            assert_eq!(cluster.exec(node, follower_get("k")).await, bulk("v3"), "node {node}");
        }
        assert_eq!(pauses(&cluster), vec![0; NODES.len()], "fewer keys: no pause");

        assert_eq!(cluster.exec(leader, mset(4, many)).await, Ok(Reply::Ok));
        assert_eq!(cluster.exec(leader, set(5, "k", "v5")).await, Ok(Reply::Ok));
        let last = format!("k{}", many - 1);
        for node in NODES {
            assert_eq!(cluster.exec(node, follower_get("k")).await, bulk("v5"), "node {node}");
            assert_eq!(cluster.exec(node, follower_get(&last)).await, bulk("v"), "node {node}");
        }
        assert_eq!(pauses(&cluster), vec![1; NODES.len()], "each replica paused once");

        let command = KvCommand::FlushSlots { slot_first: 0, slot_last: 16383 };
        let flush = ShardOp::Write(Request { client_id: 7, seq: 6, now_ms: 1_000, command });
        assert_eq!(cluster.exec(leader, flush).await, Ok(Reply::Ok));
        assert_eq!(cluster.exec(leader, set(7, "k", "v7")).await, Ok(Reply::Ok));
        for node in NODES {
            assert_eq!(cluster.exec(node, follower_get(&last)).await, Ok(Reply::Nil));
            assert_eq!(cluster.exec(node, follower_get("k")).await, bulk("v7"), "node {node}");
        }
        assert_eq!(pauses(&cluster), vec![1; NODES.len()], "a flush does not pause");
        assert_eq!(cluster.status(leader).await.term, term);
        cluster.stop_all().await;
    });
}

/// A replica on a thread of its own (`pause_long_applies` off) applies a commit of many
/// keys at once, with no pause. (Here the test network shares the replicas' threads, so
/// the group may elect meanwhile, which the node's own transport thread spares it.)
#[test]
fn a_replica_on_its_own_thread_applies_many_keys_without_a_pause() {
    run(async {
        let cluster = Cluster { pause_long_applies: false, ..Cluster::new(1_000_000) };
        cluster.start_all();
        let (leader, _) = cluster.leader_after_a_write().await;
        let many = crate::shard::limits::APPLY_PAUSE_KEYS_MIN;
        let pairs = (0..many).map(|i| (Bytes::from(format!("k{i}")), Bytes::from("v"))).collect();
        let command = KvCommand::MSet { pairs };
        let mset = ShardOp::Write(Request { client_id: 7, seq: 2, now_ms: 1_000, command });
        assert_eq!(cluster.exec(leader, mset).await, Ok(Reply::Ok));
        let applied = cluster.status(leader).await.applied_index;
        for node in NODES {
            let start = Instant::now();
            while cluster.status(node).await.applied_index < applied {
                assert!(start.elapsed() < WAIT_MAX, "node {node} never applied the MSET");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let metrics = cluster.metrics.lock().expect("metrics");
            assert_eq!(metrics[&node].apply_pauses.get(), 0, "node {node}");
        }
        let last = get(&format!("k{}", many - 1));
        assert_eq!(cluster.exec(cluster.leader().await, last).await, bulk("v"));
        cluster.stop_all().await;
    });
}

/// A write whose log entry would not fit a peer frame is refused before it is proposed: it
/// could never reach the followers, so it would never commit, and each resend would be
/// dropped. The group goes on in the same term with the same leader.
#[test]
fn a_write_larger_than_a_frame_carries_is_refused_before_it_is_proposed() {
    run(async {
        let cluster = Cluster { entry_bytes_max: 4096, ..Cluster::new(1_000_000) };
        cluster.start_all();
        let leader = cluster.leader().await;
        let before = cluster.status(leader).await;
        let refused = cluster.exec(leader, set(1, "k", &"v".repeat(5000))).await;
        let Err(ShardError::Refused { group: GROUP, reason }) = refused else {
            panic!("expected a refusal, got {refused:?}");
        };
        assert!(reason.contains("exceeds the 4096 bytes a peer frame carries"), "{reason}");
        let after = cluster.status(leader).await;
        assert_eq!(after.last_index, before.last_index, "nothing was proposed");
        assert_eq!(cluster.exec(leader, set(2, "k", &"v".repeat(4000))).await, Ok(Reply::Ok));
        assert_eq!(cluster.exec(leader, get("k")).await, bulk(&"v".repeat(4000)));
        let term = cluster.status(leader).await.term;
        assert_eq!((term, cluster.leader().await), (before.term, leader));
        cluster.stop_all().await;
    });
}

/// Every message a replica sends is in a term at most its published term (pre-votes
/// aside), across elections and leader transfers; and a read endorsed by a follower in the
/// leader's term is answered without a heartbeat round, one endorsed in an older term after
/// one. Either way it sees the last write.
#[test]
fn the_published_term_covers_every_message_and_endorses_reads() {
    use std::sync::atomic::Ordering;
    run(async {
        let cluster = Cluster::new(1_000_000);
        cluster.start_all();
        let mut leader = cluster.leader().await;
        for round in 1..=3u64 {
            let value = format!("v{round}");
            assert_eq!(cluster.exec(leader, set(round, "k", &value)).await, Ok(Reply::Ok));
            let term = cluster.status(leader).await.term;
            let follower = NODES.into_iter().find(|&n| n != leader).expect("a follower");
            // A write commits on one acknowledgement: the other follower may be a moment behind.
            let published = cluster.net.published.lock().expect("published")[&NodeId(follower)]
                .clone();
            let start = Instant::now();
            while published.load(Ordering::Acquire) != term.get() && start.elapsed() < WAIT_MAX {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let endorsed = published.load(Ordering::Acquire);
            assert_eq!(endorsed, term.get(), "the follower published the leader's term");
            let metrics = cluster.metrics.lock().expect("metrics")[&leader].clone();
            let before = metrics.reads_endorsed.get();
            let read = |term| ShardOp::Read {
                command: ReadCommand::Get { key: Bytes::from_static(b"k") },
                now_ms: 1_000,
                endorsement: Some(Endorsement { node: NodeId(follower), term }),
                follower_ok: false,
            };
            assert_eq!(cluster.exec(leader, read(term)).await, bulk(&value));
            assert_eq!(metrics.reads_endorsed.get(), before + 1, "answered on the endorsement");
            let older = crate::raft::Term(term.get() - 1);
            assert_eq!(cluster.exec(leader, read(older)).await, bulk(&value));
            assert_eq!(metrics.reads_endorsed.get(), before + 1, "an older term takes a round");
            // A new term for the next round.
            let next = NODES.into_iter().find(|&n| n != leader && n != follower).expect("third");
            let to = NodeId(next);
            let started_in = Ok(Reply::Int(term.get() as i64));
            assert_eq!(cluster.exec(leader, ShardOp::TransferLeader { to }).await, started_in);
            leader = next;
            let start = Instant::now();
            while cluster.leader().await != next && start.elapsed() < WAIT_MAX {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(cluster.leader().await, next, "the transfer to node {next} took");
        }
        let above = cluster.net.above.lock().expect("above").clone();
        assert!(above.is_empty(), "messages above their sender's published term: {above:?}");
        let checked = cluster.net.checked.load(Ordering::Relaxed);
        // Each round: a write's appends and acknowledgements, a transfer's TimeoutNow,
        // votes and the new leader's appends (well over ten messages).
        assert!(checked >= 30, "only {checked} messages checked");
        cluster.stop_all().await;
    });
}

/// A follower serves its node's reads after a read index from the leader: each sees the
/// write acknowledged before it, reads arriving together share one request to the leader,
/// and a round the leader never answers ends in `NotLeader` (the node then forwards).
#[test]
fn followers_serve_reads_after_a_read_index_and_share_rounds() {
    run(async {
        let cluster = Cluster::new(1_000_000);
        cluster.start_all();
        let leader = cluster.leader().await;
        let followers: Vec<u64> = NODES.into_iter().filter(|&n| n != leader).collect();
        for (seq, &follower) in (1..).zip(&followers) {
            let value = format!("v{seq}");
            assert_eq!(cluster.exec(leader, set(seq, "k", &value)).await, Ok(Reply::Ok));
            let served = cluster.metrics.lock().expect("metrics")[&follower].reads_follower.clone();
            let before = served.get();
            assert_eq!(cluster.exec(follower, follower_get("k")).await, bulk(&value));
            assert_eq!(served.get(), before + 1, "node {follower} served it as a follower");
        }
        // Reads arriving together: far fewer read index requests than reads.
        let follower = followers[0];
        assert_eq!(cluster.exec(leader, set(9, "k", "last")).await, Ok(Reply::Ok));
        let asked = |n: u64| {
            cluster.net.read_indexes.lock().expect("read indexes").get(&NodeId(n)).copied()
        };
        let before = asked(follower).unwrap_or(0);
        let reads = (0..32).map(|_| cluster.exec(follower, follower_get("k")));
        for answer in futures_util::future::join_all(reads).await {
            assert_eq!(answer, bulk("last"));
        }
        let rounds = asked(follower).unwrap_or(0) - before;
        assert!((1..=8).contains(&rounds), "32 reads took {rounds} read index requests");
        // The leader's answers are lost: the round ends after an election time-out, with
        // the same leader in the same term, and the read is refused.
        let term = cluster.status(leader).await.term;
        cluster.net.drop_read_answers.store(true, std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        let refused = cluster.exec(follower, follower_get("k")).await;
        let hint = Some(NodeId(leader));
        assert_eq!(refused, Err(ShardError::NotLeader { group: GROUP, leader: hint }));
        assert!(started.elapsed() >= Duration::from_millis(100), "not before the time-out");
        assert_eq!(cluster.status(leader).await.term, term, "no election ended it");
        cluster.net.drop_read_answers.store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(cluster.exec(follower, follower_get("k")).await, bulk("last"));
        cluster.stop_all().await;
    });
}

/// A read that arrives while its follower's round is in flight waits for the next round:
/// the index of the round in flight was given before the read began and may miss a write
/// acknowledged since. Here the follower hears nothing (its round's answer included) while
/// a write commits on the two others; then it gets the answer alone, and only later the
/// write. The read that came in between must see the write.
#[test]
fn a_read_arriving_during_a_round_waits_for_the_next() {
    run(async {
        // Long election time-outs: the follower hears no heartbeat for a while.
        let cluster = Cluster { election_ticks: (100, 200), ..Cluster::new(1_000_000) };
        cluster.start_all();
        let leader = cluster.leader().await;
        let follower = NODES.into_iter().find(|&n| n != leader).expect("a follower");
        assert_eq!(cluster.exec(leader, set(1, "k", "old")).await, Ok(Reply::Ok));
        assert_eq!(cluster.exec(follower, follower_get("k")).await, bulk("old"));
        let asked = || {
            let counts = cluster.net.read_indexes.lock().expect("read indexes");
            counts.get(&NodeId(follower)).copied().unwrap_or(0)
        };
        let before = asked();
        cluster.net.hold(NodeId(follower));
        let first = cluster.addr(follower).send(Execute(follower_get("k")));
        let start = Instant::now();
        while asked() == before && start.elapsed() < WAIT_MAX {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(asked(), before + 1, "the first read's round was asked");
        assert_eq!(cluster.exec(leader, set(2, "k", "new")).await, Ok(Reply::Ok));
        let second = cluster.addr(follower).send(Execute(follower_get("k")));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(cluster.net.release(false), "the first round's answer was held");
        let first = first.await.expect("mailbox");
        assert!(first == bulk("old") || first == bulk("new"), "{first:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        cluster.net.release(true);
        assert_eq!(second.await.expect("mailbox"), bulk("new"));
        cluster.stop_all().await;
    });
}

#[test]
fn a_read_right_after_a_write_sees_it() {
    run(async {
        let cluster = Cluster::new(1_000_000);
        cluster.start_all();
        let leader = cluster.leader().await;
        for seq in 1..=60u64 {
            let value = format!("v{seq}");
            assert_eq!(cluster.exec(leader, set(seq, "hot", &value)).await, Ok(Reply::Ok));
            assert_eq!(cluster.exec(leader, get("hot")).await, bulk(&value), "seq {seq}");
        }
        // Pipelined: writes sent together, then a read; it must see the last one.
        let addr = cluster.addr(leader);
        let writes: Vec<_> = (61..=80u64)
            .map(|seq| addr.send(Execute(set(seq, "hot", &format!("p{seq}")))))
            .collect();
        for w in writes {
            assert_eq!(w.await.expect("mailbox"), Ok(Reply::Ok));
        }
        assert_eq!(cluster.exec(leader, get("hot")).await, bulk("p80"));
        cluster.stop_all().await;
    });
}

/// Waits until `node`'s read door answers the read of `key` (endorsed as `endorsement`
/// says, if it is), and returns that answer.
async fn door_answer(
    cluster: &Cluster,
    node: u64,
    key: &str,
    endorsement: Option<Endorsement>,
) -> ShardResult {
    let (door, start) = (cluster.door(node), Instant::now());
    let command = ReadCommand::Get { key: Bytes::from(key.to_string()) };
    while start.elapsed() < WAIT_MAX {
        if let Some(answer) = door.read(&command, 1_000, endorsement) {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("node{node}'s read door did not open within {WAIT_MAX:?}");
}

/// With lease reads, a leader opens its read door once its lease stands and its commit
/// index is applied; the door answers key reads from the applied state (never older than
/// an acknowledged write), only for the group's slots and before its time, and closes with
/// a leader transfer; the new leader's door opens in its stead. Followers' doors stay shut.
#[test]
fn a_leaders_read_door_answers_on_its_lease_and_closes_with_a_transfer() {
    use crate::kv::range::SlotRange;
    use crate::shard::read_door::ReadDoor;
    run(async {
        let cluster = Cluster { lease_reads: Some(2), ..Cluster::new(1_000_000) };
        cluster.start_all();
        let leader = cluster.leader().await;
        assert_eq!(cluster.exec(leader, set(1, "k", "v1")).await, Ok(Reply::Ok));
        assert_eq!(door_answer(&cluster, leader, "k", None).await, bulk("v1"));
        let direct = cluster.metrics.lock().expect("metrics")[&leader].reads_direct.clone();
        assert!(direct.get() > 0, "the door's reads are counted");
        let get_k = ReadCommand::Get { key: Bytes::from_static(b"k") };
        // Once a write is acknowledged, the door answers it or nothing: never the old value.
        assert_eq!(cluster.exec(leader, set(2, "k", "v2")).await, Ok(Reply::Ok));
        let seen = cluster.door(leader).read(&get_k, 1_000, None);
        assert!(seen.is_none() || seen == Some(bulk("v2")), "{seen:?}");
        assert_eq!(door_answer(&cluster, leader, "k", None).await, bulk("v2"));
        // Not a key read: the replica answers it.
        let scan = ReadCommand::DbSize { slot_first: 0, slot_last: 16383 };
        assert_eq!(cluster.door(leader).read(&scan, 1_000, None), None);
        for follower in NODES.into_iter().filter(|&n| n != leader) {
            assert_eq!(cluster.door(follower).read(&get_k, 1_000, None), None, "node{follower}");
        }

        // A door opened by hand, over the leader's database with an empty overlay: its time,
        // its slots and its endorsers bound it.
        let door = ReadDoor::default();
        let metrics = crate::metrics::GroupMetrics::detached();
        let undurable = crate::shard::undurable::Undurable::default();
        door.init(cluster.db(leader), GROUP, metrics, undurable);
        let slot = crate::kv::slot::key_slot(b"k");
        let others = if slot == 0 { SlotRange::new(1, 16383) } else { SlotRange::new(0, slot - 1) };
        let all = SlotRange::new(0, 16383);
        let (term, later) = (crate::raft::Term(5), Some(Instant::now() + WAIT_MAX));
        door.open(others, later, term, []);
        assert_eq!(door.read(&get_k, 1_000, None), None, "a slot the door is not open for");
        door.open(all, Some(Instant::now()), term, []);
        assert_eq!(door.read(&get_k, 1_000, None), None, "past the door's time");
        door.open(all, later, term, []);
        assert!(door.read(&get_k, 1_000, None).is_some(), "open, in time, the group's slot");
        let keys_max = crate::shard::limits::DOOR_READ_KEYS_MAX;
        let many = |n| ReadCommand::MGet { keys: vec![Bytes::from_static(b"k"); n] };
        assert!(door.read(&many(keys_max), 1_000, None).is_some(), "as many keys as it takes");
        assert_eq!(door.read(&many(keys_max + 1), 1_000, None), None, "more: the replica's");
        door.open(all, None, term, []);
        assert!(!door.is_open(), "neither a lease nor an endorser: the door stays shut");
        // No lease: only an endorsement in the door's term, by a voter it lists, answers.
        door.open(all, None, term, [NodeId(2)]);
        let by = |node, term| {
            Some(Endorsement { node: NodeId(node), term: crate::raft::Term(term) })
        };
        assert_eq!(door.read(&get_k, 1_000, None), None, "no lease");
        assert_eq!(door.read(&get_k, 1_000, by(2, 4)), None, "an older term");
        assert_eq!(door.read(&get_k, 1_000, by(3, 5)), None, "a voter the door does not list");
        assert!(door.read(&get_k, 1_000, by(2, 5)).is_some(), "endorsed in the door's term");
        door.close();
        assert_eq!(door.read(&get_k, 1_000, None), None, "closed");

        let to = NODES.into_iter().find(|&n| n != leader).expect("another node");
        let transfer = ShardOp::TransferLeader { to: NodeId(to) };
        let term = cluster.status(leader).await.term.get() as i64;
        assert_eq!(cluster.exec(leader, transfer).await, Ok(Reply::Int(term)), "its term");
        assert_eq!(cluster.door(leader).read(&get_k, 1_000, None), None, "closed by the transfer");
        assert_eq!(door_answer(&cluster, to, "k", None).await, bulk("v2"));
        let old = cluster.door(leader).read(&get_k, 1_000, None);
        assert_eq!(old, None, "the old leader's stays shut");

        // The new leader's arbiter stalls (as a paused process would): nothing closes its
        // door, which shuts by itself at the lease's end (8 ticks of 10 ms here).
        let stall = Duration::from_millis(400);
        let arbiter = &cluster.arbiters[to as usize % cluster.arbiters.len()];
        assert!(arbiter.spawn_fn(move || std::thread::sleep(stall)), "the arbiter runs");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(cluster.door(to).read(&get_k, 1_000, None), None, "shut at the lease's end");
        tokio::time::sleep(stall).await;
        cluster.stop_all().await;
    });
}

/// Without leases, a leader's read door answers a read endorsed in its term by a voter that
/// makes a quorum with it: the door lists its term and exactly its two followers (so no
/// read without an endorsement, nor one by itself or a stranger, nor in another term).
#[test]
fn a_leaders_read_door_answers_endorsed_reads_in_its_term() {
    run(async {
        let cluster = Cluster::new(1_000_000);
        cluster.start_all();
        let (leader, term) = cluster.leader_after_a_write().await;
        let follower = NODES.into_iter().find(|&n| n != leader).expect("a follower");
        let by = |node, term| Some(Endorsement { node: NodeId(node), term });
        let door = cluster.door(leader);
        assert_eq!(door_answer(&cluster, leader, "k", by(follower, term)).await, bulk("v1"));
        let endorsed = cluster.metrics.lock().expect("metrics")[&leader].reads_endorsed.clone();
        assert!(endorsed.get() > 0, "counted as answered on an endorsement");
        // The door shuts and opens again around every tick: wait for it open, then look.
        let start = Instant::now();
        let listed = loop {
            if let Some(listed) = door.endorsers() {
                break listed;
            }
            assert!(start.elapsed() < WAIT_MAX, "the door did not open again");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let followers: Vec<NodeId> =
            NODES.into_iter().filter(|&n| n != leader).map(NodeId).collect();
        assert_eq!(listed, (term, followers), "the leader's term and its followers");
        cluster.stop_all().await;
    });
}

#[test]
fn a_restarted_replica_catches_up_by_snapshot_and_serves_after_transfer() {
    catch_up_by_snapshot(1);
}

/// Waits until just past the start of the next flush window of `flush`, and past the
/// flush that start brings: writes applied from then on wait for the window after.
async fn past_a_windows_flush(flush: Duration) {
    use crate::shard::ready::flush_window;
    let started = flush_window(flush);
    while flush_window(flush) == started {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The applied state of a few writes stays in memory (served to reads) until the node's
/// next flush window begins, then it is written.
#[test]
fn the_applied_state_is_written_once_per_flush_window() {
    use crate::shard::ready::flush_window;
    run(async {
        let flush = Duration::from_millis(1_500);
        let cluster = Cluster::started_with_flush(flush);
        let leader = cluster.leader().await;
        past_a_windows_flush(flush).await;
        let window = flush_window(flush);
        let before = cluster.status(leader).await;
        let written = Instant::now();
        for seq in 1..=5u64 {
            let value = format!("v{seq}");
            assert_eq!(cluster.exec(leader, set(seq, "k", &value)).await, Ok(Reply::Ok));
        }
        let s = cluster.status(leader).await;
        assert!(s.applied_index >= before.applied_index.plus(5), "{s:?}");
        if flush_window(flush) == window {
            assert!(s.durable_applied_index < s.applied_index, "written within the window: {s:?}");
        }
        assert_eq!(cluster.exec(leader, get("k")).await, bulk("v5"));
        loop {
            let now = cluster.status(leader).await;
            if now.durable_applied_index >= s.applied_index {
                assert!(flush_window(flush) > window, "written before the window ended: {now:?}");
                break;
            }
            assert!(written.elapsed() < flush * 3, "not written in the next window: {now:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cluster.stop_all().await;
    });
}

/// Key counts (DBSIZE, COUNTKEYSINSLOT, INFO's keyspace), counted off the replica's thread,
/// see the applied state: records in redb, writes and deletes not yet written there, and a
/// flush not yet written there; INFO's counts deadlines too, a pending one replacing a
/// written one. Each count answers at least what was acknowledged before it was sent, and
/// at most what was sent before it answered.
#[test]
fn key_counts_see_every_applied_write_whether_written_to_redb_or_not() {
    use futures_util::future::join_all;
    run(async {
        let flush_every = Duration::from_secs(3);
        let cluster = Cluster::started_with_flush(flush_every);
        let leader = cluster.leader().await;
        let write = |seq: u64, command: KvCommand| {
            ShardOp::Write(Request { client_id: 9, seq, now_ms: 1_000, command })
        };
        let all = ReadCommand::DbSize { slot_first: 0, slot_last: 16383 };
        let dbsize = || ShardOp::read(all.clone(), 1_000);
        let count = |r: ShardResult| match r {
            Ok(Reply::Int(n)) => n,
            other => panic!("not a count: {other:?}"),
        };
        let key = |i: u64| format!("key-{i}");
        let deadline = |seq: u64, i: u64, deadline_ms: u64| {
            let (key, condition) = (Bytes::from(key(i)), ExpireCondition::Always);
            let command = KvCommand::Expire { key, deadline_ms, condition };
            ShardOp::Write(Request { client_id: 11, seq, now_ms: 1_000, command })
        };
        let keyspace = || {
            let command = ReadCommand::Keyspace { slot_first: 0, slot_last: 16383 };
            let cluster = &cluster;
            async move {
                match cluster.exec(leader, ShardOp::read(command, 1_000)).await {
                    Ok(Reply::Array(fields)) => fields,
                    other => panic!("not a keyspace count: {other:?}"),
                }
            }
        };
        let fields = |keys: i64, expires: i64, mean_deadline_ms: i64| {
            vec![Reply::Int(keys), Reply::Int(expires), Reply::Int(mean_deadline_ms)]
        };
        // Written to redb, then more on top, pending: written after a window's start, they
        // wait for the next one.
        for i in 1..=20 {
            assert_eq!(cluster.exec(leader, set(i, &key(i), "v")).await, Ok(Reply::Ok));
        }
        for i in 2..=5 {
            assert_eq!(cluster.exec(leader, deadline(i, i, i * 10_000)).await, Ok(Reply::Int(1)));
        }
        let written = cluster.status(leader).await.applied_index;
        while cluster.status(leader).await.durable_applied_index < written {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        past_a_windows_flush(flush_every).await;
        assert_eq!(count(cluster.exec(leader, dbsize()).await), 20);
        assert_eq!(keyspace().await, fields(20, 4, 35_000), "deadlines 20 to 50 s, in redb");
        // Pending over redb: key-2 loses its deadline, key-6 gains one.
        let persist = KvCommand::Persist { key: Bytes::from(key(2)) };
        let persist = Request { client_id: 11, seq: 6, now_ms: 1_000, command: persist };
        assert_eq!(cluster.exec(leader, ShardOp::Write(persist)).await, Ok(Reply::Int(1)));
        assert_eq!(cluster.exec(leader, deadline(7, 6, 60_000)).await, Ok(Reply::Int(1)));
        assert_eq!(keyspace().await, fields(20, 4, 45_000), "30 to 60 s, two pending");
        let flush = KvCommand::FlushSlots { slot_first: 0, slot_last: 16383 };
        assert_eq!(cluster.exec(leader, write(1, flush)).await, Ok(Reply::Ok));
        for i in 21..=40 {
            assert_eq!(cluster.exec(leader, set(i, &key(i), "v")).await, Ok(Reply::Ok));
        }
        let del = KvCommand::Del { keys: vec![Bytes::from(key(21)), Bytes::from(key(1))] };
        assert_eq!(cluster.exec(leader, write(2, del)).await, Ok(Reply::Int(1)));
        assert_eq!(count(cluster.exec(leader, dbsize()).await), 19);
        assert_eq!(cluster.exec(leader, deadline(8, 22, 100_000)).await, Ok(Reply::Int(1)));
        assert_eq!(cluster.exec(leader, deadline(9, 23, 300_000)).await, Ok(Reply::Int(1)));
        assert_eq!(keyspace().await, fields(19, 2, 200_000), "the flush took the others");
        let s = cluster.status(leader).await;
        assert!(s.durable_applied_index < s.applied_index, "pending still: {s:?}");

        // Counts sent together with writes: between the keys before and after them.
        let counts = (0..16).map(|_| cluster.exec(leader, dbsize()));
        let writes = (41..=56).map(|i| cluster.exec(leader, set(i, &key(i), "v")));
        let (counts, writes) = futures_util::future::join(join_all(counts), join_all(writes)).await;
        assert!(writes.iter().all(|w| *w == Ok(Reply::Ok)), "{writes:?}");
        for n in counts.into_iter().map(count) {
            assert!((19..=35).contains(&n), "{n}");
        }
        assert_eq!(count(cluster.exec(leader, dbsize()).await), 35);
        let slot = crate::kv::slot::key_slot(key(30).as_bytes());
        let in_slot = ShardOp::read(ReadCommand::CountKeysInSlot { slot }, 1_000);
        assert_eq!(count(cluster.exec(leader, in_slot).await), 1);
        cluster.stop_all().await;
    });
}

/// The leader's active expiry deletes, on every replica, the keys whose deadline passed
/// (a backlog of more than one entry holds too), and keeps those without a deadline or
/// with one ahead. Writes carry the real clock here, as the active expiry does.
#[test]
fn the_leader_deletes_expired_keys_on_every_replica_and_keeps_the_rest() {
    use crate::shard::limits::EXPIRY_KEYS_PER_ENTRY;
    run(async {
        let step = Duration::from_millis(20);
        let cluster = Cluster { expiry_step: Some(step), ..Cluster::new(1_000_000) };
        cluster.start_all();
        let leader = cluster.leader().await;
        let now_ms = || {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.expect("clock after 1970").as_millis() as u64
        };
        let soon = 2 * EXPIRY_KEYS_PER_ENTRY + 300;
        let set = |i: usize, expire_at_ms: Option<u64>| KvCommand::Set {
            key: Bytes::from(format!("key-{i}")),
            value: Bytes::from_static(b"v"),
            expire_at_ms,
            keep_ttl: false,
            condition: SetCondition::Always,
            get: false,
        };
        // Keys that expire in 300 ms, keys without a deadline, keys with an hour left.
        let at = now_ms();
        let commands: Vec<KvCommand> = (0..soon)
            .map(|i| set(i, Some(at + 300)))
            .chain((soon..soon + 10).map(|i| set(i, None)))
            .chain((soon + 10..soon + 20).map(|i| set(i, Some(at + 3_600_000))))
            .collect();
        let command = KvCommand::Batch { commands };
        let batch = Request { client_id: 5, seq: 1, now_ms: at, command };
        assert!(matches!(cluster.exec(leader, ShardOp::Write(batch)).await, Ok(Reply::Array(_))));
        let stored = |node: u64| {
            let view = crate::storage::group_snapshot::latest_kv_view(&cluster.db(node), GROUP)
                .expect("view");
            crate::kv::KvRead::count_keys(&view, 0..=16383, crate::kv::read::Tally::Keys).keys
        };
        let start = Instant::now();
        for node in NODES {
            while stored(node) != 20 {
                assert!(start.elapsed() < WAIT_MAX, "node {node} holds {} keys", stored(node));
                tokio::time::sleep(step).await;
            }
        }
        let expired = cluster.metrics.lock().expect("metrics")[&leader].expired_keys.get();
        assert_eq!(expired, soon as u64, "deleted by the leader");
        for node in NODES.into_iter().filter(|n| *n != leader) {
            let metrics = cluster.metrics.lock().expect("metrics")[&node].expired_keys.get();
            assert_eq!(metrics, 0, "node {node} is no leader");
        }
        let keyspace = ReadCommand::Keyspace { slot_first: 0, slot_last: 16383 };
        let counted = cluster.exec(leader, ShardOp::read(keyspace, now_ms())).await;
        let Ok(Reply::Array(fields)) = counted else { panic!("{counted:?}") };
        assert_eq!(fields[..2], [Reply::Int(20), Reply::Int(10)]);
        let read = |i: usize| {
            ShardOp::read(ReadCommand::Get { key: Bytes::from(format!("key-{i}")) }, now_ms())
        };
        assert_eq!(cluster.exec(leader, read(soon + 5)).await, bulk("v"));
        assert_eq!(cluster.exec(leader, read(soon + 15)).await, bulk("v"));
        assert_eq!(cluster.exec(leader, read(0)).await, Ok(Reply::Nil));
        cluster.stop_all().await;
    });
}

/// A Ready that only moves the commit index is not synced on its own (followers learn the
/// commit from heartbeats): each write costs every replica one sync, its entry. Stopped
/// and restarted, the replicas serve every write.
#[test]
fn a_commit_index_alone_is_not_synced() {
    const ROUNDS_MAX: u32 = 5;
    run(async {
        let flush = Duration::from_secs(3_600);
        let cluster = Cluster::started_with_flush(flush);
        let all_applied = |target: crate::raft::LogIndex| {
            let cluster = &cluster;
            async move {
                let start = Instant::now();
                for n in NODES {
                    while cluster.status(n).await.applied_index < target {
                        assert!(start.elapsed() < WAIT_MAX, "node {n} never applied {target}");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        };
        // A round is measured again when an election came in between (a stalled machine):
        // a new term is synced, as it must be.
        let writes = 5u64;
        let mut seq = 0;
        let mut measured = false;
        for _ in 0..ROUNDS_MAX {
            let leader = cluster.leader().await;
            all_applied(cluster.status(leader).await.applied_index).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let term = cluster.status(leader).await.term;
            let before: Vec<u64> = NODES.iter().map(|&n| cluster.fsyncs(n)).collect();
            let mut all_ok = true;
            for _ in 0..writes {
                seq += 1;
                let value = format!("v{seq}");
                if cluster.exec(leader, set(seq, "k", &value)).await != Ok(Reply::Ok) {
                    all_ok = false;
                    break;
                }
                all_applied(cluster.status(leader).await.applied_index).await;
            }
            // Several heartbeats, each telling the followers the commit index.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut same_term = true;
            for n in NODES {
                same_term &= cluster.status(n).await.term == term;
            }
            if !same_term || !all_ok {
                continue;
            }
            for (n, before) in NODES.iter().zip(before) {
                let syncs = cluster.fsyncs(*n) - before;
                assert!(syncs <= writes, "node {n}: {syncs} syncs for {writes} writes");
            }
            measured = true;
            break;
        }
        assert!(measured, "an election in each of {ROUNDS_MAX} rounds");
        cluster.stop_all().await;
        cluster.start_all();
        let leader = cluster.leader().await;
        assert_eq!(cluster.exec(leader, get("k")).await, bulk(&format!("v{seq}")));
        cluster.stop_all().await;
    });
}

/// The commit index held back from syncs rides with every later write: the durable commit
/// index of each replica never falls behind its durable applied index, which a restart
/// after a crash would otherwise lower the applied index to (and apply entries twice).
#[test]
fn the_durable_commit_index_never_falls_behind_the_durable_applied_index() {
    run(async {
        // The applied state is written on every tick, while commit indexes are held back.
        let cluster = Cluster::new(1_000_000);
        cluster.start_all();
        let leader = cluster.leader().await;
        let check = |cluster: &Cluster| {
            for n in NODES {
                let storage = crate::storage::RedbStorage::open(cluster.db(n), GROUP);
                let storage = storage.expect("storage");
                // Applied first: the commit index read after it is at least what it was then.
                let applied = storage.applied_index();
                let commit = storage.hard_state().commit_index;
                assert!(commit >= applied, "node {n}: durable commit {commit}, applied {applied}");
            }
        };
        for seq in 1..=40u64 {
            let value = format!("v{seq}");
            assert_eq!(cluster.exec(leader, set(seq, "k", &value)).await, Ok(Reply::Ok));
            check(&cluster);
            tokio::time::sleep(Duration::from_millis(3)).await;
            check(&cluster);
        }
        cluster.stop_all().await;
    });
}

/// `Stop` hands the applied state kept in memory to the writer: restarted, the replica finds
/// it durable at once, and replays nothing it had applied.
#[test]
fn a_stopped_replica_writes_its_applied_state() {
    run(async {
        let flush = Duration::from_secs(3_600);
        let cluster = Cluster::started_with_flush(flush);
        let leader = cluster.leader().await;
        for seq in 1..=5u64 {
            let value = format!("v{seq}");
            assert_eq!(cluster.exec(leader, set(seq, "k", &value)).await, Ok(Reply::Ok));
        }
        let s = cluster.status(leader).await;
        assert!(s.durable_applied_index < s.applied_index, "written before the interval: {s:?}");
        cluster.stop_node(leader).await;
        cluster.start_node(leader);
        let after = cluster.status(leader).await;
        assert!(
            after.durable_applied_index >= s.applied_index,
            "applied {} before the stop, durable {} after the restart",
            s.applied_index,
            after.durable_applied_index
        );
        cluster.stop_all().await;
    });
}

/// A snapshot several times `SNAPSHOT_PART_BYTES` travels in parts, assembled in order.
#[test]
fn a_large_snapshot_streams_in_parts_and_installs_whole() {
    let value_bytes = 64 * 1024;
    let keys = 59;
    assert!(value_bytes * keys > 3 * crate::shard::limits::SNAPSHOT_PART_BYTES);
    catch_up_by_snapshot(value_bytes);
}

/// One replica misses 59 writes of `value_bytes` each while the log is compacted past
/// them; restarted, it catches up by snapshot, takes the leadership and serves them all.
fn catch_up_by_snapshot(value_bytes: usize) {
    run(async move {
        let value = "x".repeat(value_bytes);
        let cluster = Cluster::new(8);
        cluster.start_all();
        let leader = cluster.leader().await;
        let down = NODES.into_iter().find(|&n| n != leader).expect("a follower");
        assert_eq!(cluster.exec(leader, set(1, "before", "1")).await, Ok(Reply::Ok));
        cluster.stop_node(down).await;
        for seq in 2..=60u64 {
            let key = format!("k{seq}");
            assert_eq!(cluster.exec(leader, set(seq, &key, &value)).await, Ok(Reply::Ok));
        }
        let leader_status = cluster.status(leader).await;
        assert!(leader_status.first_index.get() > 2, "log compacted: {leader_status:?}");
        cluster.start_node(down);
        let start = Instant::now();
        loop {
            let s = cluster.status(down).await;
            if s.applied_index >= leader_status.commit_index {
                assert!(s.snapshots_installed >= 1, "caught up by snapshot: {s:?}");
                break;
            }
            assert!(start.elapsed() < WAIT_MAX, "no catch-up: {s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cluster.addr(leader).send(TransferLeader(NodeId(down))).await.expect("mailbox")
            .expect("transfer");
        let start = Instant::now();
        while cluster.status(down).await.role != Role::Leader {
            assert!(start.elapsed() < WAIT_MAX, "transfer did not happen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let new_leader = cluster.leader().await;
        assert_eq!(new_leader, down);
        assert_eq!(cluster.exec(down, get("before")).await, bulk("1"));
        for seq in [2u64, 31, 60] {
            assert_eq!(cluster.exec(down, get(&format!("k{seq}"))).await, bulk(&value));
        }
        assert_eq!(cluster.exec(down, set(61, "after", "y")).await, Ok(Reply::Ok));
        cluster.stop_all().await;
    });
}
