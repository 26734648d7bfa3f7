//! Node configuration files and the layouts they name: every mistake an operator can make is
//! refused by `NodeConfig::load` with a message that says what to fix.

use std::path::{Path, PathBuf};

use shardkv::local::plan::DEFAULT_LAYOUT_TOML;
use shardkv::local::{LocalPlan, PortBase};
use shardkv::node::config::{ConfigError, NodeConfig};
use shardkv::router::layout::{Layout, LayoutError};

const BASE: PortBase = PortBase { resp: 7001, peer: 7101, metrics: 9101 };

/// A valid cluster's files in `dir`; returns node 1's configuration file.
fn valid_files(dir: &Path) -> PathBuf {
    let layout = Layout::parse(DEFAULT_LAYOUT_TOML).expect("built-in layout");
    let mut plan = LocalPlan::on_loopback(dir, layout, BASE).expect("plan");
    plan.write().expect("write")[0].config_path.clone()
}

/// Rewrites node 1's configuration with `edit` applied to its text, then loads it.
fn load_edited(edit: impl FnOnce(String) -> String) -> Result<(), ConfigError> {
    load_edited_config(edit).map(|_| ())
}

/// `load_edited`, giving the configuration loaded.
fn load_edited_config(edit: impl FnOnce(String) -> String) -> Result<NodeConfig, ConfigError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = valid_files(tmp.path());
    let text = std::fs::read_to_string(&path).expect("read config");
    std::fs::write(&path, edit(text)).expect("write config");
    NodeConfig::load(&path).map(|(config, _)| config)
}

/// Replaces the layout file next to a valid configuration, then loads the configuration.
fn load_with_layout(layout: &str) -> Result<(), ConfigError> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = valid_files(tmp.path());
    std::fs::write(tmp.path().join("layout.toml"), layout).expect("write layout");
    NodeConfig::load(&path).map(|_| ())
}

fn message(result: Result<(), ConfigError>) -> String {
    match result {
        Ok(()) => panic!("the configuration was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_written_configuration_loads() {
    assert!(load_edited(|text| text).is_ok());
}

#[test]
fn bad_toml_is_refused_naming_the_file() {
    let e = load_edited(|text| text.replace("node_id = 1", "node_id = = 1"));
    assert!(matches!(e, Err(ConfigError::Syntax { .. })), "{e:?}");
    assert!(message(e).contains("node1.toml"));
}

#[test]
fn an_unknown_field_is_refused() {
    let e = load_edited(|text| text.replace("node_id = 1", "node_id = 1\ncolour = 'red'"));
    assert!(message(e).contains("colour"));
}

#[test]
fn a_node_id_outside_the_layout_is_refused() {
    let e = load_edited(|text| text.replace("node_id = 1", "node_id = 9"));
    assert_eq!(message(e), "invalid configuration: node_id 9 is not a node of the layout");
}

#[test]
fn a_short_secret_is_refused() {
    let e = load_edited(|text| {
        let line = text.lines().find(|l| l.starts_with("secret = ")).expect("secret line");
        text.replace(line, "secret = \"short\"")
    });
    assert_eq!(message(e), "invalid configuration: secret must be at least 16 bytes");
}

#[test]
fn keyspace_event_flags_load_and_a_bad_letter_is_refused() {
    let set = |flags: &'static str| {
        move |text: String| {
            let line = "notify_keyspace_events = \"\"";
            assert!(text.contains(line), "a written configuration names it: {text}");
            text.replace(line, &format!("notify_keyspace_events = \"{flags}\""))
        }
    };
    let config = load_edited_config(set("KEA")).expect("loads");
    assert_eq!(config.notify_flags().to_string(), "AKE");
    let e = load_edited(set("KEé"));
    assert_eq!(
        message(e),
        "invalid configuration: notify_keyspace_events: 'é' is no event class; use letters of \
         'Ag$lshzxeKEtmdn'"
    );
}

#[test]
fn a_missing_peer_entry_is_refused() {
    let e = load_edited(|text| {
        let start = text.find("[[nodes]]\nid = 3").expect("node 3 entry");
        let end = start + text[start..].find("\n\n").expect("end of entry");
        format!("{}{}", &text[..start], &text[end..])
    });
    assert_eq!(message(e), "invalid configuration: node 3 of the layout has no [[nodes]] entry");
}

#[test]
fn heartbeat_not_shorter_than_the_election_timeout_is_refused() {
    let e = load_edited(|text| text.replace("heartbeat_ticks = 2", "heartbeat_ticks = 10"));
    assert!(message(e).contains("heartbeat_ticks < election_ticks_min"));
}

#[test]
fn a_read_round_backup_not_below_the_heartbeat_interval_is_refused() {
    let backup = |ms: u64| {
        move |t: String| {
            t.replace("node_round_backup_ms = 2\n", &format!("node_round_backup_ms = {ms}\n"))
        }
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = valid_files(tmp.path());
    let text = std::fs::read_to_string(&path).expect("read config");
    assert!(text.contains("node_round_backup_ms = 2\n"), "{text}");
    std::fs::write(&path, backup(99)(text)).expect("write config");
    let (config, _) = NodeConfig::load(&path).expect("a backup below 100 ms loads");
    assert_eq!(config.reads.node_round_backup_ms, 99);
    // The heartbeat interval of the test's files: 50 ms ticks, 2 of them.
    assert!(message(load_edited(backup(100))).contains("node_round_backup_ms"));
}

#[test]
fn lease_reads_load_and_a_drift_past_the_election_timeout_is_refused() {
    let lease = |drift: u64| {
        move |t: String| {
            t.replace(
                "[reads]\nmode = \"read-index\"\nlease_drift_ticks = 3",
                &format!("[reads]\nmode = \"lease\"\nlease_drift_ticks = {drift}"),
            )
        }
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = valid_files(tmp.path());
    let text = std::fs::read_to_string(&path).expect("read config");
    assert!(text.contains("[reads]\nmode = \"read-index\""), "{text}");
    std::fs::write(&path, lease(3)(text)).expect("write config");
    let (config, _) = NodeConfig::load(&path).expect("lease reads load");
    assert_eq!(config.reads.lease(), Some(3));
    assert!(message(load_edited(lease(10))).contains("lease_drift_ticks"));
    assert!(message(load_edited(lease(0))).contains("lease_drift_ticks"));
    let unknown = |t: String| t.replace("mode = \"read-index\"", "mode = \"stale\"");
    assert!(message(load_edited(unknown)).contains("stale"));
}

#[test]
fn batch_scheduling_is_on_unless_turned_off() {
    let batch =
        |edit: fn(String) -> String| load_edited_config(edit).expect("loads").scheduling.batch;
    assert!(batch(|text| {
        assert!(text.contains("[scheduling]\nbatch = true"), "written: {text}");
        text
    }));
    assert!(batch(|text| text.replace("[scheduling]\nbatch = true", "")), "on by default");
    assert!(!batch(|text| text.replace("batch = true", "batch = false")));
    let unknown = |t: String| t.replace("batch = true", "batch = true\nnice = 5");
    assert!(message(load_edited(unknown)).contains("nice"));
}

#[test]
fn the_applied_state_flush_interval_loads() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = valid_files(tmp.path());
    let text = std::fs::read_to_string(&path).expect("read config");
    assert!(text.contains("apply_flush_ms = 1000"), "{text}");
    std::fs::write(&path, text.replace("apply_flush_ms = 1000", "apply_flush_ms = 250"))
        .expect("write config");
    let (config, _) = NodeConfig::load(&path).expect("config loads");
    assert_eq!(config.timeouts.apply_flush(), std::time::Duration::from_millis(250));
    let longest = |t: String| t.replace("apply_flush_ms = 1000", "apply_flush_ms = 60000");
    load_edited(longest).expect("the longest interval loads");
    let long = |t: String| t.replace("apply_flush_ms = 1000", "apply_flush_ms = 60001");
    assert!(message(load_edited(long)).contains("apply_flush_ms must be at most 60000"));
}

#[test]
fn the_workload_window_is_off_or_at_least_its_minimum() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = valid_files(tmp.path());
    let text = std::fs::read_to_string(&path).expect("read config");
    assert!(text.contains("follow_workload_ms = 5000"), "{text}");
    let window = |ms: u64| {
        move |t: String| {
            t.replace("follow_workload_ms = 5000", &format!("follow_workload_ms = {ms}"))
        }
    };
    load_edited(window(0)).expect("0 turns it off");
    load_edited(window(100)).expect("the shortest window loads");
    let refused = message(load_edited(window(99)));
    assert!(refused.contains("follow_workload_ms must be 0 (off) or at least 100"), "{refused}");
}

#[test]
fn a_missing_layout_file_is_refused_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = valid_files(tmp.path());
    std::fs::remove_file(tmp.path().join("layout.toml")).expect("remove layout");
    let e = message(NodeConfig::load(&path).map(|_| ()));
    assert!(e.starts_with("cannot read") && e.contains("layout.toml"), "{e}");
}

const NODES: &str = "[[node]]\nid = 1\n[[node]]\nid = 2\n[[node]]\nid = 3\n";

#[test]
fn a_layout_with_a_gap_is_refused_naming_the_slots() {
    let groups = "[[group]]\nid = 1\nslots = [0, 99]\nreplicas = [1, 2, 3]\n\
                  [[group]]\nid = 2\nslots = [200, 16383]\nreplicas = [1, 2, 3]\n";
    let e = load_with_layout(&format!("{NODES}{groups}"));
    assert!(matches!(
        &e,
        Err(ConfigError::Layout { source: LayoutError::Gap { first: 100, last: 199 }, .. })
    ));
    assert!(message(e).ends_with("slots 100-199 belong to no group (a gap)"));
}

#[test]
fn a_layout_with_an_overlap_is_refused_naming_both_groups() {
    let groups = "[[group]]\nid = 1\nslots = [0, 100]\nreplicas = [1, 2, 3]\n\
                  [[group]]\nid = 2\nslots = [50, 16383]\nreplicas = [1, 2, 3]\n";
    let e = message(load_with_layout(&format!("{NODES}{groups}")));
    assert!(e.ends_with("slot 50 belongs to both group 1 and group 2 (an overlap)"), "{e}");
}

#[test]
fn a_layout_naming_an_unknown_node_is_refused() {
    let groups = "[[group]]\nid = 1\nslots = [0, 16383]\nreplicas = [1, 2, 4]\n";
    let e = message(load_with_layout(&format!("{NODES}{groups}")));
    assert!(e.ends_with("group 1 names node 4, which the layout does not declare"), "{e}");
}

/// Whatever a client may send must fit what the node carries: a value its peer frames,
/// a write's log entry its frames, a bulk string its request. Each mistake is named.
#[test]
fn size_bounds_that_do_not_fit_each_other_are_refused() {
    let config = load_edited_config(|t| t).expect("the written configuration loads");
    assert_eq!(config.limits.bulk_bytes_max, 8 * 1024 * 1024);
    let set = |field: &'static str, value: u64| {
        move |t: String| {
            let line = t.lines().find(|l| l.starts_with(&format!("{field} = "))).unwrap();
            t.replace(line, &format!("{field} = {value}"))
        }
    };
    let bulk = message(load_edited(set("bulk_bytes_max", 512 * 1024 * 1024)));
    assert!(bulk.contains("bulk_bytes_max must be between 1 and 8388608"), "{bulk}");
    let frame = message(load_edited(set("frame_bytes_max", 8 * 1024 * 1024)));
    assert!(frame.contains("frame_bytes_max must be between 8519680"), "{frame}");
    let write = message(load_edited(set("write_bytes_max", 64 * 1024 * 1024)));
    assert!(write.contains("write_bytes_max must be between"), "{write}");
    let write = message(load_edited(set("write_bytes_max", 1024)));
    assert!(write.contains("write_bytes_max must be between"), "{write}");
    let request = message(load_edited(set("request_bytes_max", 1024 * 1024)));
    assert!(request.contains("request_bytes_max must be at least"), "{request}");
    load_edited(set("write_bytes_max", 63 * 1024 * 1024)).expect("the largest write loads");
}

#[test]
fn cluster_redirects_is_written_off_and_read_back_on() {
    let config = load_edited_config(|text| text).expect("loads");
    assert!(!config.cluster_redirects, "plain connections by default");
    let on = |text: String| {
        assert!(text.contains("cluster_redirects = false"), "{text}");
        text.replace("cluster_redirects = false", "cluster_redirects = true")
    };
    assert!(load_edited_config(on).expect("loads").cluster_redirects);
}
