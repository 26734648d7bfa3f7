//! Coalesced heartbeats, measured on real processes through `/metrics`: an idle node sends
//! each peer about one heartbeat frame per heartbeat interval whatever the number of groups
//! (TiKV's lesson: heartbeat cost must not grow with the number of regions), while the
//! heartbeat entries inside those frames do grow with the groups.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{fast_timeouts, ClusterLayout, ClusterOpts, TestCluster};
use shardkv::metrics::scrape::{fetch, parse, Sample};

/// Every group must have a leader within this long of the start.
const LEADERS_TIMEOUT_MS: u64 = 30_000;
/// The idle window over which rates are measured.
const IDLE_WINDOW_MS: u64 = 3_000;
/// Settling time after the last leader appears (elections' own traffic dies down).
const SETTLE_MS: u64 = 1_000;
/// One scrape gives up after this long.
const SCRAPE_TIMEOUT_MS: u64 = 2_000;
const FRAMES: &str = "shardkv_transport_heartbeat_frames_sent_total";
const ENTRIES: &str = "shardkv_transport_heartbeat_entries_sent_total";

fn scrape(cluster: &TestCluster, node: u64) -> Vec<Sample> {
    let addr = cluster.config(node).listen.metrics.to_string();
    let text = fetch(&addr, Duration::from_millis(SCRAPE_TIMEOUT_MS))
        .unwrap_or_else(|e| panic!("scrape node{node}: {e}"));
    parse(&text)
}

/// Groups that some node reports itself leader of.
fn led_groups(cluster: &TestCluster) -> usize {
    let mut led = std::collections::BTreeSet::new();
    for node in cluster.node_ids() {
        let Ok(text) = fetch(
            &cluster.config(node).listen.metrics.to_string(),
            Duration::from_millis(SCRAPE_TIMEOUT_MS),
        ) else {
            continue;
        };
        for s in parse(&text) {
            if s.name == "shardkv_raft_is_leader" && s.value == 1.0 {
                led.insert(s.label("group").unwrap_or("").to_string());
            }
        }
    }
    led.len()
}

/// (node, peer) -> counter value.
fn per_peer(cluster: &TestCluster, name: &str) -> BTreeMap<(u64, String), f64> {
    let mut out = BTreeMap::new();
    for node in cluster.node_ids() {
        for s in scrape(cluster, node).into_iter().filter(|s| s.name == name) {
            out.insert((node, s.label("peer").unwrap_or("").to_string()), s.value);
        }
    }
    out
}

/// Heartbeat frames and entries per second per (node, peer) while the cluster idles.
struct Rates {
    frames: BTreeMap<(u64, String), f64>,
    entries: BTreeMap<(u64, String), f64>,
}

fn idle_rates(groups: u64) -> Rates {
    let cluster = TestCluster::start(
        3,
        ClusterLayout::Even {
            groups,
            replicas: 3,
        },
        ClusterOpts::default(),
    );
    let deadline = Instant::now() + Duration::from_millis(LEADERS_TIMEOUT_MS);
    // The data groups and the metadata group.
    while led_groups(&cluster) <= groups as usize {
        assert!(
            Instant::now() < deadline,
            "{groups} groups: not all have a leader in time"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(SETTLE_MS));
    let (f0, e0, t0) = (
        per_peer(&cluster, FRAMES),
        per_peer(&cluster, ENTRIES),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_millis(IDLE_WINDOW_MS));
    let (f1, e1) = (per_peer(&cluster, FRAMES), per_peer(&cluster, ENTRIES));
    let seconds = t0.elapsed().as_secs_f64();
    let rate = |a: &BTreeMap<(u64, String), f64>, b: &BTreeMap<(u64, String), f64>| {
        b.iter()
            .map(|(k, v)| (k.clone(), (v - a.get(k).copied().unwrap_or(0.0)) / seconds))
            .collect()
    };
    Rates {
        frames: rate(&f0, &f1),
        entries: rate(&e0, &e1),
    }
}

#[test]
fn heartbeat_frames_per_peer_do_not_grow_with_groups() {
    let t = fast_timeouts();
    let per_second = 1000.0 / (t.tick_ms * t.heartbeat_ticks) as f64;
    let few = idle_rates(8);
    let many = idle_rates(64);
    eprintln!(
        "8 groups: frames {:?} entries {:?}",
        few.frames, few.entries
    );
    eprintln!(
        "64 groups: frames {:?} entries {:?}",
        many.frames, many.entries
    );
    assert_eq!(few.frames.len(), 6, "3 nodes x 2 peers: {:?}", few.frames);
    assert_eq!(many.frames.len(), 6, "3 nodes x 2 peers: {:?}", many.frames);
    for (key, &rate) in &few.frames {
        assert!(
            rate >= per_second * 0.7 && rate <= per_second * 1.5,
            "8 groups, {key:?}: {rate:.1} frames/s, expected about {per_second:.1}"
        );
        let big = many.frames[key];
        assert!(
            big <= rate * 1.5 + 1.0,
            "{key:?}: {big:.1} frames/s with 64 groups vs {rate:.1} with 8"
        );
    }
    let sum = |m: &BTreeMap<(u64, String), f64>| m.values().sum::<f64>();
    assert!(
        sum(&many.entries) > sum(&few.entries) * 4.0,
        "heartbeat entries grow with groups: {:.0}/s vs {:.0}/s",
        sum(&many.entries),
        sum(&few.entries)
    );
}

#[test]
fn status_lists_every_group_with_its_leader_and_replica_lag() {
    let cluster = TestCluster::start(
        3,
        ClusterLayout::Even {
            groups: 4,
            replicas: 3,
        },
        ClusterOpts::default(),
    );
    let deadline = Instant::now() + Duration::from_millis(LEADERS_TIMEOUT_MS);
    while led_groups(&cluster) <= 4 {
        assert!(
            Instant::now() < deadline,
            "not every group has a leader in time"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The poll refreshes gauges every second: let the followers' match lag appear.
    std::thread::sleep(Duration::from_millis(1_500));
    let nodes: Vec<String> = cluster
        .node_ids()
        .iter()
        .map(|&n| cluster.config(n).listen.metrics.to_string())
        .collect();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(common::cluster::SHARDKV_EXE)
            .args(["status", "--node", &nodes.join(",")])
            .args(extra)
            .output()
            .expect("run shardkv status");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let table = run(&[]);
    assert!(table.trim_start().starts_with("GROUP"), "{table}");
    assert_eq!(table.lines().count(), 6, "a header, the metadata group and 4 groups:\n{table}");
    assert!(table.contains("(cluster map)"), "{table}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&run(&["--json"])).expect("JSON");
    assert_eq!(rows.len(), 5);
    for row in &rows {
        assert!(row["leader"].as_u64().is_some(), "{row}");
        assert_eq!(row["health"], "ok", "{row}");
        assert_eq!(row["replicas"].as_array().map(Vec::len), Some(3), "{row}");
    }
    let slots: u64 = rows
        .iter()
        .filter(|r| r["group"].as_u64() != Some(0))
        .map(|r| r["slot_last"].as_u64().unwrap_or(0) - r["slot_first"].as_u64().unwrap_or(0) + 1)
        .sum();
    assert_eq!(slots, 16384, "the groups cover every slot");
}
