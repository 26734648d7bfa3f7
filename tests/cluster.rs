//! Real three-node clusters on loopback, driven through the Redis protocol with a plain
//! (not cluster-aware) client: any node serves any key, forwarding to the group's leader.
//! Writes, leaders placed as the layout lists them, `kill -9` of the node leading most
//! groups, a restarted node catching up, and a process with the wrong secret being refused.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{ClusterLayout, ClusterOpts, TestCluster};
use shardkv::kv::slot::key_slot;
use shardkv::router::layout::Layout;

/// A fresh cluster answers PING within this.
const READY_TIMEOUT_MS: u64 = 20_000;
/// Every group elects a leader, or fails over, within this.
const CONVERGE_TIMEOUT_MS: u64 = 20_000;
/// Between two attempts of an operation that may fail while leaders change.
const RETRY_INTERVAL_MS: u64 = 50;
const LAYOUT_FILE: &str = "shards/local-3x8.toml";

fn start_local_3x8() -> TestCluster {
    let layout = ClusterLayout::File(LAYOUT_FILE.into());
    let cluster = TestCluster::start(3, layout, ClusterOpts::default());
    if let Err(e) = cluster.wait_ready(Duration::from_millis(READY_TIMEOUT_MS)) {
        panic!("cluster not ready: {e}");
    }
    cluster
}

/// One key per group, in group order: the first `<prefix>:<n>` whose slot the group owns.
fn key_per_group(layout: &Layout, prefix: &str) -> Vec<(u64, String)> {
    layout
        .groups
        .iter()
        .map(|g| {
            let key = (0u64..)
                .map(|n| format!("{prefix}:{n}"))
                .find(|k| (g.slots[0]..=g.slots[1]).contains(&key_slot(k.as_bytes())))
                .unwrap_or_default();
            (g.id, key)
        })
        .collect()
}

/// Retries `op` until it succeeds or `CONVERGE_TIMEOUT_MS` passes (leaders may be changing).
fn eventually<T>(what: &str, mut op: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_millis(CONVERGE_TIMEOUT_MS);
    loop {
        match op() {
            Ok(value) => return value,
            Err(e) if Instant::now() >= deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(RETRY_INTERVAL_MS)),
        }
    }
}

fn set(cluster: &TestCluster, node: u64, key: &str, value: &str) -> Result<(), String> {
    let mut con = cluster.client(node).get_connection().map_err(|e| e.to_string())?;
    let reply: String =
        redis::cmd("SET").arg(key).arg(value).query(&mut con).map_err(|e| e.to_string())?;
    if reply == "OK" {
        Ok(())
    } else {
        Err(format!("SET {key}: {reply}"))
    }
}

fn get(cluster: &TestCluster, node: u64, key: &str) -> Result<Option<String>, String> {
    let mut con = cluster.client(node).get_connection().map_err(|e| e.to_string())?;
    redis::cmd("GET").arg(key).query(&mut con).map_err(|e| e.to_string())
}

/// Writes `<key> = <key>-<tag>` for every key through `node`, each retried until it works.
fn write_all(cluster: &TestCluster, node: u64, keys: &[(u64, String)], tag: &str) {
    for (group, key) in keys {
        let value = format!("{key}-{tag}");
        eventually(&format!("SET to group {group} via node{node}"), || {
            set(cluster, node, key, &value)
        });
    }
}

/// Reads every key through `node` and expects the value `write_all` wrote with `tag`.
fn check_all(cluster: &TestCluster, node: u64, keys: &[(u64, String)], tag: &str) {
    for (group, key) in keys {
        let value = eventually(&format!("GET from group {group} via node{node}"), || {
            get(cluster, node, key)
        });
        assert_eq!(value, Some(format!("{key}-{tag}")), "group {group}, key {key}");
    }
}

/// Leaders per node, once every group has one, as `asked` sees it through CLUSTER SLOTS.
fn settled_leaders(cluster: &TestCluster, asked: u64) -> BTreeMap<u64, usize> {
    let groups = cluster.layout().groups.len();
    eventually("every group has a leader", || {
        let counts = cluster.leaders_per_node(asked)?;
        let led: usize = counts.values().sum();
        if led == groups {
            Ok(counts)
        } else {
            Err(format!("{led} of {groups} groups have a leader: {counts:?}"))
        }
    })
}

#[test]
fn cluster_accepts_writes_to_every_group() {
    let cluster = start_local_3x8();
    let keys = key_per_group(cluster.layout(), "every-group");
    assert_eq!(keys.len(), 8);
    write_all(&cluster, 1, &keys, "v1");
    check_all(&cluster, 1, &keys, "v1");
    check_all(&cluster, 2, &keys, "v1");
}

#[test]
fn a_new_cluster_places_each_leader_on_the_node_its_layout_lists_first() {
    let cluster = start_local_3x8();
    let layout = cluster.layout().clone();
    // Every node leads a share: 3, 3 and 2 of the 8 groups.
    let firsts: Vec<u64> = layout.groups.iter().map(|g| g.replicas[0]).collect();
    assert_eq!(firsts, [1, 2, 3, 1, 2, 3, 1, 2], "the layout rotates its replica lists");
    // Each node logs the groups it came to lead by placement (its own replica reported
    // leading them); a leader change later, under a loaded machine, cannot undo that.
    eventually("each first-listed node leads its groups", || {
        for group in &layout.groups {
            let node = group.replicas[0];
            let placed = cluster.log(node).lines().any(|line| {
                line.contains("as the layout places it")
                    && line.split_whitespace().any(|w| w == format!("group={}", group.id))
            });
            if !placed {
                return Err(format!("node{node} has not led group {}", group.id));
            }
        }
        Ok(())
    });
}

/// The node that leads the group owning `slot`, as node `asked` sees it (`CLUSTER SLOTS`).
fn leader_of_slot(cluster: &TestCluster, asked: u64, slot: u16) -> Result<u64, String> {
    let ranges = cluster.slot_masters(asked)?;
    let range = ranges.iter().find(|r| (r.first..=r.last).contains(&slot));
    let range = range.ok_or_else(|| format!("no master for slot {slot}"))?;
    cluster.node_at(range.master).ok_or_else(|| format!("{} is no node", range.master))
}

/// A hash tag whose keys (`{tag}...`) all live in `slot`.
fn tag_of_slot(slot: u16) -> String {
    (0u64..).map(|n| format!("t{n}")).find(|t| key_slot(t.as_bytes()) == slot).unwrap_or_default()
}

/// A writer thread gives up on a reply after this long and connects again.
const WRITER_IO_TIMEOUT_MS: u64 = 5_000;

/// Threads writing keys tagged `tag`, one SET at a time, each through its node of `via`,
/// until `stop` is set.
fn write_until(
    cluster: &TestCluster,
    tag: &str,
    via: &[u64],
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    via.iter()
        .enumerate()
        .map(|(i, &node)| {
            let (client, stop, tag) = (cluster.client(node), stop.clone(), tag.to_string());
            std::thread::spawn(move || {
                let mut n = 0u64;
                let limit = Some(Duration::from_millis(WRITER_IO_TIMEOUT_MS));
                while !stop.load(Ordering::Relaxed) {
                    let connected = client.get_connection().and_then(|con| {
                        con.set_read_timeout(limit)?;
                        con.set_write_timeout(limit)?;
                        Ok(con)
                    });
                    let Ok(mut con) = connected else {
                        std::thread::sleep(Duration::from_millis(RETRY_INTERVAL_MS));
                        continue;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let key = format!("{{{tag}}}:{i}:{n}");
                        // A leader transfer may refuse one; the next goes on.
                        let sent: redis::RedisResult<String> =
                            redis::cmd("SET").arg(&key).arg(n).query(&mut con);
                        if sent.as_ref().is_err_and(|e| e.is_io_error()) {
                            break;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Lines of `node`'s log where it moved `group`'s leadership to follow the workload.
fn workload_moves(cluster: &TestCluster, node: u64, group: u64) -> usize {
    let log = cluster.log(node);
    let field = format!("group={group} ");
    let moved = |l: &&str| l.contains("requests come in through") && l.contains(&field);
    log.lines().filter(moved).count()
}

#[test]
fn a_leader_moves_to_the_node_its_requests_come_in_through() {
    let mut opts = ClusterOpts::default();
    opts.timeouts.follow_workload_ms = 1_000;
    let layout = ClusterLayout::File(LAYOUT_FILE.into());
    let cluster = TestCluster::start(3, layout, opts);
    if let Err(e) = cluster.wait_ready(Duration::from_millis(READY_TIMEOUT_MS)) {
        panic!("cluster not ready: {e}");
    }
    // Group 2 is placed on node 2 and group 3 on node 3 (the layout's first replicas).
    let slot_of = |group: u64| cluster.layout().groups[group as usize - 1].slots[0];
    let (moved, stays) = (slot_of(2), slot_of(3));
    eventually("the layout's leaders are placed", || {
        match (leader_of_slot(&cluster, 1, moved)?, leader_of_slot(&cluster, 1, stays)?) {
            (2, 3) => Ok(()),
            other => Err(format!("leaders of groups 2 and 3: {other:?}")),
        }
    });
    // Group 2's requests all come in through node 1. Group 3's come in through node 1 a
    // little more than through its own leader's node, but not twice as much: it stays.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = write_until(&cluster, &tag_of_slot(moved), &[1; 6], &stop);
    writers.extend(write_until(&cluster, &tag_of_slot(stays), &[1, 1, 1, 3, 3], &stop));
    let deadline = Instant::now() + Duration::from_millis(CONVERGE_TIMEOUT_MS);
    while leader_of_slot(&cluster, 1, moved) != Ok(1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(RETRY_INTERVAL_MS));
    }
    // A few more windows of the same traffic.
    std::thread::sleep(Duration::from_millis(3_000));
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer");
    }
    assert_eq!(leader_of_slot(&cluster, 1, moved), Ok(1), "group 2's leader did not follow \
        its requests to node1:\n{}", cluster.log_tails());
    // (A transfer that gave up, or an election that took the group away, may make a
    // leader move it again; never away from node 1, where its requests come in.)
    assert!(workload_moves(&cluster, 2, 2) >= 1, "node2 logs why it handed group 2 over");
    let metrics = cluster.config(2).listen.metrics.to_string();
    let text = shardkv::metrics::scrape::fetch(&metrics, Duration::from_secs(5)).expect("scrape");
    let counted = shardkv::metrics::scrape::parse(&text)
        .iter()
        .filter(|s| s.name == "shardkv_raft_workload_leader_moves_total")
        .map(|s| s.value)
        .sum::<f64>();
    assert!(counted >= 1.0, "node2 counts the move in its metrics");
    assert_eq!(workload_moves(&cluster, 1, 2), 0, "node1 moved group 2 away from its clients");
    for node in [1, 2, 3] {
        assert_eq!(workload_moves(&cluster, node, 3), 0, "node{node} moved group 3");
    }
}

/// On one connection: a SET of each key (retried while leaders change), then `WAIT replicas
/// timeout_ms`; its answer and how long it took.
fn write_and_wait(
    con: &mut redis::Connection,
    keys: &[(u64, String)],
    replicas: i64,
    timeout_ms: u64,
) -> (i64, Duration) {
    for (group, key) in keys {
        eventually(&format!("SET to group {group} before WAIT"), || {
            redis::cmd("SET").arg(key).arg("w").query::<()>(con).map_err(|e| e.to_string())
        });
    }
    let started = Instant::now();
    let answer = redis::cmd("WAIT").arg(replicas).arg(timeout_ms).query(con).expect("WAIT");
    (answer, started.elapsed())
}

/// Also WAIT, through a surviving node: both other replicas of every group written hold
/// the writes before the `kill -9`, one after it (WAIT for two answers 1 at its time-out).
#[test]
fn kill9_leader_of_most_groups_then_failover() {
    let mut cluster = start_local_3x8();
    let keys = key_per_group(cluster.layout(), "failover");
    write_all(&cluster, 1, &keys, "before");
    let counts = settled_leaders(&cluster, 1);
    let (&victim, _) = counts.iter().max_by_key(|(_, &led)| led).expect("three nodes");
    let survivor = cluster.node_ids().into_iter().find(|&n| n != victim).expect("a survivor");
    let mut waiting = cluster.client(survivor).get_connection().expect("a connection");
    let waited = key_per_group(cluster.layout(), "wait");
    let (replicas, _) = write_and_wait(&mut waiting, &waited[..2], 2, 10_000);
    assert_eq!(replicas, 2, "both followers hold the writes");
    cluster.kill9(victim);
    // Every group elects a leader among the two survivors, and none is still the victim.
    let after = eventually("failover", || {
        let counts = cluster.leaders_per_node(survivor)?;
        let led: usize = counts.values().sum();
        match counts.get(&victim) {
            Some(&n) if n > 0 => Err(format!("node{victim} still leads {n} groups")),
            _ if led < keys.len() => Err(format!("only {led} groups have a leader")),
            _ => Ok(counts),
        }
    });
    assert_eq!(after.get(&victim).copied().unwrap_or(0), 0);
    check_all(&cluster, survivor, &keys, "before");
    write_all(&cluster, survivor, &keys, "after");
    check_all(&cluster, survivor, &keys, "after");
    let (replicas, took) = write_and_wait(&mut waiting, &waited[..2], 2, 300);
    assert_eq!(replicas, 1, "one follower left to hold the writes");
    assert!(took >= Duration::from_millis(300), "answered before its time-out: {took:?}");
    let (replicas, took) = write_and_wait(&mut waiting, &waited[2..4], 1, 0);
    assert_eq!(replicas, 1);
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// Pub/Sub over a real cluster: a message published on one node reaches the channel and
/// pattern subscribers of the others, in the order it was published; with a node killed,
/// publishing goes on and reaches the survivors.
#[test]
fn published_messages_reach_subscribers_on_every_node() {
    let mut cluster = start_local_3x8();
    let mut subscribers: Vec<(u64, redis::Connection)> = [2, 3]
        .into_iter()
        .map(|node| (node, cluster.client(node).get_connection().expect("a connection")))
        .collect();
    let mut pubsubs: Vec<redis::PubSub<'_>> = Vec::new();
    for (node, con) in &mut subscribers {
        let mut pubsub = con.as_pubsub();
        pubsub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match node {
            2 => pubsub.subscribe("orders").unwrap(),
            _ => pubsub.psubscribe("ord*").unwrap(),
        }
        pubsubs.push(pubsub);
    }
    let mut publisher = cluster.client(1).get_connection().expect("a connection");
    // A message is dropped while node 1's link to a node is not up yet: probes until each
    // subscriber got one (later probes arrive before the orders: one node's messages keep
    // their order).
    for pubsub in &mut pubsubs {
        pubsub.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        eventually("a first message", || {
            let _: i64 = redis::cmd("PUBLISH")
                .arg("orders")
                .arg("probe")
                .query(&mut publisher)
                .map_err(|e| e.to_string())?;
            pubsub.get_message().map(|_| ()).map_err(|e| e.to_string())
        });
        pubsub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    for n in 0..20 {
        let received: i64 = redis::cmd("PUBLISH")
            .arg("orders")
            .arg(format!("order {n}"))
            .query(&mut publisher)
            .unwrap();
        assert_eq!(received, 0, "no subscriber on node 1 itself");
    }
    for pubsub in &mut pubsubs {
        for n in 0..20 {
            let mut message = pubsub.get_message().expect("a message within the time-out");
            while message.get_payload::<String>().unwrap() == "probe" {
                message = pubsub.get_message().expect("a message within the time-out");
            }
            assert_eq!(message.get_channel_name(), "orders");
            assert_eq!(message.get_payload::<String>().unwrap(), format!("order {n}"));
        }
    }
    drop(pubsubs);
    drop(subscribers);
    let mut listener = cluster.client(2).get_connection().expect("a connection");
    let mut pubsub = listener.as_pubsub();
    pubsub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    pubsub.subscribe("after").unwrap();
    cluster.kill9(3);
    let received: i64 =
        redis::cmd("PUBLISH").arg("after").arg("still").query(&mut publisher).unwrap();
    assert_eq!(received, 0);
    let message = pubsub.get_message().expect("a message after node 3 died");
    assert_eq!(message.get_payload::<String>().unwrap(), "still");
}

/// Keyspace events are raised by every replica as it applies: a node asked for them
/// (CONFIG SET, node-local) publishes the events of writes sent through another node, in
/// the group's log order, and `expired` when the leader's active expiry deletes a key.
#[test]
fn keyspace_events_reach_subscribers_of_every_node_that_asks() {
    let cluster = start_local_3x8();
    let mut listeners = Vec::new();
    for (node, flags) in [(1, ""), (2, "E$gx"), (3, "Ex")] {
        let mut con = cluster.client(node).get_connection().expect("a connection");
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg(flags)
            .query(&mut con)
            .unwrap();
        listeners.push(cluster.client(node).get_connection().expect("a connection"));
    }
    let mut pubsubs: Vec<redis::PubSub<'_>> = Vec::new();
    for listener in &mut listeners {
        let mut pubsub = listener.as_pubsub();
        pubsub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        pubsub.psubscribe("__keyevent@0__:*").unwrap();
        pubsubs.push(pubsub);
    }
    let mut writer = cluster.client(1).get_connection().expect("a connection");
    let run = |writer: &mut redis::Connection, args: &[&str]| {
        let mut cmd = redis::cmd(args[0]);
        args[1..].iter().for_each(|a| {
            cmd.arg(*a);
        });
        cmd.query::<redis::Value>(writer).unwrap();
    };
    // One hash tag: one group, whose log order the events keep.
    run(&mut writer, &["SET", "{o}1", "v"]);
    run(&mut writer, &["INCR", "{o}n"]);
    run(&mut writer, &["DEL", "{o}1", "{o}none"]);
    run(&mut writer, &["SET", "{o}short", "v", "PX", "200"]);
    let next = |pubsub: &mut redis::PubSub<'_>| {
        let message = pubsub.get_message().expect("an event within the time-out");
        let event = message.get_channel_name().trim_start_matches("__keyevent@0__:").to_string();
        format!("{event} {}", message.get_payload::<String>().unwrap())
    };
    let on_2: Vec<String> = (0..6).map(|_| next(&mut pubsubs[1])).collect();
    let want = ["set {o}1", "incrby {o}n", "del {o}1", "set {o}short", "expire {o}short",
        "expired {o}short"];
    assert_eq!(on_2, want, "node 2 asked for string, generic and expired events");
    assert_eq!(next(&mut pubsubs[2]), "expired {o}short", "node 3 asked for expired only");
    // Nothing more on any node, and nothing at all on node 1, which did not ask: the next
    // message each reads is one published after the events.
    run(&mut writer, &["PUBLISH", "__keyevent@0__:end", "marker"]);
    for (pubsub, node) in pubsubs.iter_mut().zip(1..) {
        assert_eq!(next(pubsub), "end marker", "node {node}");
    }
}

/// `kill -9` of every node, then every node started again and answering.
fn kill9_every_node_and_restart(cluster: &mut TestCluster) {
    for node in cluster.node_ids() {
        cluster.kill9(node);
    }
    for node in cluster.node_ids() {
        cluster.restart(node);
    }
    cluster.wait_ready(Duration::from_millis(READY_TIMEOUT_MS)).expect("every node back");
}

fn dbsize(cluster: &TestCluster, node: u64) -> Result<i64, String> {
    let mut con = cluster.client(node).get_connection().map_err(|e| e.to_string())?;
    redis::cmd("DBSIZE").query(&mut con).map_err(|e| e.to_string())
}

/// FLUSHALL removes every key of every group as one range delete per group: keys written
/// after it stay, and a `kill -9` of every node brings neither the flushed keys back nor
/// loses the later writes, whether the range delete was durable (first kill) or the flush
/// applies again from the log (second kill, at once after it).
#[test]
fn flushall_stays_flushed_across_a_kill9_of_every_node() {
    let mut cluster = start_local_3x8();
    let keys = key_per_group(cluster.layout(), "flushed");
    let kept = key_per_group(cluster.layout(), "kept");
    write_all(&cluster, 1, &keys, "v1");
    write_all(&cluster, 2, &kept, "v1");
    let mut con = cluster.client(1).get_connection().expect("connect");
    for tag in 0..10 {
        // One slot per MSET (a cross-slot one is refused as in Redis Cluster), spread over
        // the groups by its hash tag.
        let pairs: Vec<(String, &str)> = (0..200).map(|i| (format!("{{b{tag}}}:{i}"), "v")).collect();
        let _: () = redis::cmd("MSET").arg(&pairs).query(&mut con).expect("MSET");
    }
    assert_eq!(dbsize(&cluster, 3), Ok(2_016));
    // Past two windows of `timeouts.apply_flush_ms` the keys are in redb, not only in the
    // replicas' memory, where a flush would take them before they reached it.
    let apply_flush_ms = cluster.config(1).timeouts.apply_flush_ms;
    let applied_state_written = Duration::from_millis(2 * apply_flush_ms + 500);
    std::thread::sleep(applied_state_written);
    let flushed: String = redis::cmd("FLUSHALL").query(&mut con).expect("FLUSHALL");
    assert_eq!(flushed, "OK");
    for node in cluster.node_ids() {
        assert_eq!(dbsize(&cluster, node), Ok(0), "node{node}");
    }
    write_all(&cluster, 3, &kept, "v2");
    // Now the flush is in redb too: the stored keys are gone, and a restart does not apply
    // it again.
    std::thread::sleep(applied_state_written);
    let gone = |cluster: &TestCluster| {
        for (group, key) in &keys {
            let value = eventually(&format!("GET from group {group}"), || get(cluster, 1, key));
            assert_eq!(value, None, "group {group}, key {key}");
        }
        assert_eq!(eventually("DBSIZE", || dbsize(cluster, 3)), 8);
    };
    gone(&cluster);
    kill9_every_node_and_restart(&mut cluster);
    check_all(&cluster, 2, &kept, "v2");
    gone(&cluster);

    // Killed before the flush reached redb, every node applies it again from its log.
    write_all(&cluster, 1, &keys, "v3");
    std::thread::sleep(applied_state_written);
    let mut con = cluster.client(2).get_connection().expect("connect");
    let flushed: String = redis::cmd("FLUSHALL").query(&mut con).expect("FLUSHALL");
    assert_eq!(flushed, "OK");
    write_all(&cluster, 2, &kept, "v4");
    kill9_every_node_and_restart(&mut cluster);
    check_all(&cluster, 3, &kept, "v4");
    gone(&cluster);
}

/// Keys past their TTL leave the store with no write meeting them: each group's leader
/// deletes them (active expiry), so DBSIZE and INFO's keyspace fall to the keys still live,
/// and the nodes count the deletes in `shardkv_kv_expired_keys_total`.
#[test]
fn keys_past_their_ttl_leave_the_store_without_a_write() {
    let cluster = start_local_3x8();
    let mut con = cluster.client(2).get_connection().expect("connect");
    let mut pipe = redis::pipe();
    for i in 0..1_000 {
        pipe.cmd("SET").arg(format!("ttl:{i}")).arg("v").arg("PX").arg(300).ignore();
    }
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("kept:{i}")).arg("v").ignore();
        pipe.cmd("SET").arg(format!("later:{i}")).arg("v").arg("EX").arg(3_600).ignore();
    }
    eventually("the pipeline of SETs", || pipe.query::<()>(&mut con).map_err(|e| e.to_string()));
    eventually("expired keys deleted", || match dbsize(&cluster, 1)? {
        200 => Ok(()),
        n => Err(format!("DBSIZE {n}")),
    });
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut con).expect("INFO");
    assert!(info.contains("db0:keys=200,expires=100,"), "{info}");
    let get: Option<String> = redis::cmd("GET").arg("kept:7").query(&mut con).expect("GET");
    assert_eq!(get.as_deref(), Some("v"));
    let metrics = || {
        let mut deleted = 0.0;
        for node in cluster.node_ids() {
            let addr = cluster.config(node).listen.metrics.to_string();
            let text = shardkv::metrics::scrape::fetch(&addr, Duration::from_secs(2))
                .map_err(|e| e.to_string())?;
            let samples = shardkv::metrics::scrape::parse(&text);
            let expired = samples.iter().filter(|s| s.name == "shardkv_kv_expired_keys_total");
            deleted += expired.map(|s| s.value).sum::<f64>();
        }
        Ok::<f64, String>(deleted)
    };
    // INFO's `expired_keys` counts the same deletes, node by node.
    let info = || {
        let mut reported = 0;
        for node in cluster.node_ids() {
            let mut con = cluster.client(node).get_connection().map_err(|e| e.to_string())?;
            let info: String =
                redis::cmd("INFO").arg("stats").query(&mut con).map_err(|e| e.to_string())?;
            let line = info.lines().find_map(|l| l.strip_prefix("expired_keys:"));
            reported += line.and_then(|l| l.trim().parse::<u64>().ok()).ok_or(info.clone())?;
        }
        Ok::<f64, String>(reported as f64)
    };
    // A leader counts its deletes once their entry's answer reached it, just after DBSIZE
    // may have seen them gone.
    let deleted = eventually("INFO and the metrics count the same deletes", || {
        let (deleted, reported) = (metrics()?, info()?);
        if deleted == reported { Ok(deleted) } else { Err(format!("{deleted} and {reported}")) }
    });
    // Each key is deleted once; a leader that lost its leadership before its entry's
    // answer does not count the keys it deleted.
    assert!(deleted > 0.0 && deleted <= 1_000.0, "{deleted} expired keys counted");
}

#[test]
fn restarted_node_catches_up() {
    let mut cluster = start_local_3x8();
    let keys = key_per_group(cluster.layout(), "catch-up");
    write_all(&cluster, 1, &keys, "v1");
    cluster.kill9(3);
    write_all(&cluster, 1, &keys, "v2");
    cluster.restart(3);
    cluster.wait_ready(Duration::from_millis(READY_TIMEOUT_MS)).expect("node3 back");
    check_all(&cluster, 3, &keys, "v2");
    // With node1 gone, every group needs node3 in its majority: it must have caught up
    // (entries or a snapshot) for writes to commit and reads to see v2.
    cluster.kill9(1);
    check_all(&cluster, 3, &keys, "v2");
    write_all(&cluster, 3, &keys, "v3");
    check_all(&cluster, 2, &keys, "v3");
}

#[test]
fn wrong_secret_is_refused() {
    let mut cluster = start_local_3x8();
    let keys = key_per_group(cluster.layout(), "secret");
    write_all(&cluster, 1, &keys, "v1");
    let impostor_log = cluster.wrong_secret(1);
    eventually("a node logs that it refused the wrong secret", || {
        let refused = cluster
            .node_ids()
            .into_iter()
            .any(|n| cluster.log(n).to_lowercase().contains("refused"));
        if refused {
            Ok(())
        } else {
            Err(format!("no node log mentions \"refused\"; see {}", impostor_log.display()))
        }
    });
    // The impostor disturbs nothing: every group still serves.
    write_all(&cluster, 2, &keys, "v2");
    check_all(&cluster, 1, &keys, "v2");
}

#[test]
fn a_node_back_with_a_wiped_data_directory_is_refused_by_its_peers() {
    let mut cluster = start_local_3x8();
    let keys = key_per_group(cluster.layout(), "wiped");
    write_all(&cluster, 1, &keys, "v1");
    // Node 2's disk is replaced: it comes back under its old id with nothing, and would
    // bootstrap its groups again, with no memory of its votes and acknowledged entries.
    cluster.kill9(2);
    let data_dir = cluster.config(2).data_dir.clone();
    std::fs::remove_dir_all(&data_dir).expect("wipe node2's data directory");
    cluster.restart(2);
    eventually("both peers refuse node2, and node2 hears why", || {
        for node in [1, 3] {
            if !cluster.log(node).contains("node 2 lost its state") {
                return Err(format!("node{node} has not refused node2"));
            }
        }
        let heard = cluster.log(2).lines().any(|line| {
            line.contains("refused by node") && line.contains("node 2 presents data directory")
        });
        if !heard {
            return Err("node2 does not log the refusal".into());
        }
        Ok(())
    });
    // An operator sees it without reading logs: `shardkv status` lists the refusals.
    let metrics: Vec<String> =
        [1, 2, 3].iter().map(|&n| cluster.config(n).listen.metrics.to_string()).collect();
    eventually("shardkv status lists the refusals of node2", || {
        let out = std::process::Command::new(common::cluster::SHARDKV_EXE)
            .args(["status", "--node", &metrics.join(",")])
            .output()
            .map_err(|e| format!("run shardkv status: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        for want in ["node 2 was refused by node 1", "node 2 was refused by node 3",
            "node 1 refused node 2", "node 3 refused node 2"] {
            if !text.contains(want) {
                return Err(format!("no \"{want}\" in:\n{text}"));
            }
        }
        Ok(())
    });
    // For scripts, standard output stays the rows alone; the refusals are a warning.
    let out = std::process::Command::new(common::cluster::SHARDKV_EXE)
        .args(["status", "--json", "--node", &metrics.join(",")])
        .output()
        .expect("run shardkv status --json");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("the rows as a JSON array");
    assert!(!rows.is_empty());
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(warning.contains("node 2 was refused by node 1"), "{warning}");
    // Nodes 1 and 3 are a majority of every group: the cluster keeps serving.
    write_all(&cluster, 1, &keys, "v2");
    check_all(&cluster, 3, &keys, "v2");
    // Without node 3, node 1 has no majority: the wiped node must not make one with it
    // (it would vote and acknowledge as if it still held what it had acknowledged).
    cluster.kill9(3);
    let (group, key) = &keys[0];
    for attempt in 0..3 {
        let written = set(&cluster, 1, key, "v3");
        assert!(written.is_err(), "group {group} took a write with only node1 and the wiped \
            node2 (attempt {attempt})");
        std::thread::sleep(Duration::from_millis(RETRY_INTERVAL_MS * 10));
    }
}

/// Writers running through a surviving node while the node leading most groups is killed.
const WRITERS: u64 = 4;
/// How long writers run before and after the kill.
const WRITE_BEFORE_KILL_MS: u64 = 1_000;
const WRITE_AFTER_KILL_MS: u64 = 3_000;

/// Writes unique keys until `stop`, returning the acknowledged ones.
fn acknowledged_writes(
    cluster: &TestCluster,
    node: u64,
    writer: u64,
    stop: Instant,
) -> Vec<String> {
    let mut acked = Vec::new();
    let mut con = None;
    let mut i = 0u64;
    while Instant::now() < stop {
        i += 1;
        if con.is_none() {
            con = cluster.client(node).get_connection().ok();
        }
        let Some(c) = con.as_mut() else { continue };
        let key = format!("ack:{writer}:{i}");
        let reply: redis::RedisResult<String> = redis::cmd("SET").arg(&key).arg(&key).query(c);
        match reply {
            Ok(ok) if ok == "OK" => acked.push(key),
            Ok(_) => {}
            // An error may be "outcome unknown": the key is neither acknowledged nor lost.
            Err(e) if e.is_io_error() => con = None,
            Err(_) => {}
        }
    }
    acked
}

#[test]
fn kill9_under_load_loses_no_acknowledged_write() {
    let mut cluster = start_local_3x8();
    let counts = settled_leaders(&cluster, 1);
    let (&victim, _) = counts.iter().max_by_key(|(_, &led)| led).expect("three nodes");
    let survivor = cluster.node_ids().into_iter().find(|&n| n != victim).expect("a survivor");
    let stop = Instant::now() + Duration::from_millis(WRITE_BEFORE_KILL_MS + WRITE_AFTER_KILL_MS);
    let acked: Vec<String> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let cluster = &cluster;
                s.spawn(move || acknowledged_writes(cluster, survivor, w, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(WRITE_BEFORE_KILL_MS));
        // Safe: kill9 only signals the victim's process; writers use the survivor.
        let victim_pid = cluster.pid(victim);
        nix_kill9(victim_pid);
        writers.into_iter().flat_map(|w| w.join().expect("writer")).collect()
    });
    cluster.kill9(victim);
    assert!(acked.len() > 50, "only {} writes were acknowledged", acked.len());
    for key in &acked {
        let value =
            eventually(&format!("GET {key} via node{survivor}"), || get(&cluster, survivor, key));
        assert_eq!(value.as_deref(), Some(key.as_str()), "acknowledged write {key} lost");
    }
    cluster.restart(victim);
    cluster.wait_ready(Duration::from_millis(READY_TIMEOUT_MS)).expect("victim back");
    for key in acked.iter().step_by(7) {
        let value =
            eventually(&format!("GET {key} via node{victim}"), || get(&cluster, victim, key));
        assert_eq!(value.as_deref(), Some(key.as_str()), "restarted node lost {key}");
    }
}

/// SIGKILL by pid (the harness's `kill9` needs `&mut`, which the writers' borrow forbids).
fn nix_kill9(pid: Option<u32>) {
    let pid = pid.expect("the victim runs");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL the victim");
}

#[test]
fn cluster_client_follows_the_slot_map_and_plain_pipelines_span_groups() {
    let cluster = start_local_3x8();
    settled_leaders(&cluster, 1);
    let nodes: Vec<String> = cluster
        .node_ids()
        .into_iter()
        .map(|n| format!("redis://{}/", cluster.resp_addr(n)))
        .collect();
    let client = redis::cluster::ClusterClient::new(nodes).expect("cluster client");
    let mut con =
        eventually("cluster connection", || client.get_connection().map_err(|e| e.to_string()));
    for i in 0..200 {
        let key = format!("cc:{i}");
        let _: () = eventually(&format!("cluster SET {key}"), || {
            redis::cmd("SET").arg(&key).arg(i).query(&mut con).map_err(|e| e.to_string())
        });
    }
    for i in (0..200).step_by(13) {
        let value: Option<i64> =
            redis::cmd("GET").arg(format!("cc:{i}")).query(&mut con).expect("GET");
        assert_eq!(value, Some(i));
    }
    // A plain connection pipelines writes and reads over every group through one node.
    let mut plain = cluster.client(2).get_connection().expect("plain connection");
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("pp:{i}")).arg(i).ignore();
        pipe.cmd("INCR").arg(format!("pp:{i}"));
    }
    let counts: Vec<i64> = pipe.query(&mut plain).expect("pipeline");
    assert_eq!(counts, (1..=100).collect::<Vec<i64>>());
    let values: Vec<Option<i64>> = redis::cmd("MGET")
        .arg((0..100).map(|i| format!("pp:{i}")).collect::<Vec<_>>())
        .query(&mut plain)
        .expect("MGET across groups");
    assert_eq!(values, (1..=100).map(Some).collect::<Vec<_>>());
}
