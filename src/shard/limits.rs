//! Every bound of the group-replica runtime, in one place, each with its unit and its
//! reason. Owns the numbers only; hitting one yields `ShardError::Busy` or a retry later,
//! never unbounded memory.

/// Messages queued in one replica's mailbox before `try_send` to it fails (the transport
/// drops the Raft message, the router answers `-TRYAGAIN`). Inbound batches and client
/// requests share it.
pub const MAILBOX_MESSAGES_MAX: usize = 4096;

/// Client writes proposed and not yet answered, per replica, unless the configuration
/// says otherwise.
pub const PENDING_REQUESTS_MAX: usize = 4096;

/// Room in a peer frame beside one log entry, or one forwarded answer: the message's other
/// fields and the frame's envelope. A replica refuses to propose an entry larger than the
/// node's `limits.frame_bytes_max` less this (`LimitConfig::entry_bytes_max`): no frame
/// could carry it to the followers, so it would never commit, and every resend of it would
/// be dropped.
pub const ENTRY_FRAME_ENVELOPE_BYTES: u64 = 64 * 1024;

/// Bytes counted for the encoding of each argument of a write, or each element of an
/// answer, beside its own bytes, when they are held against a frame's room: msgpack takes
/// 1 to 5 for a string's header, and a reply's variant name up to 9 more.
pub const ENCODING_BYTES_PER_ITEM: u64 = 16;

/// A replica's largest entry unless the node says otherwise: the default
/// `limits.frame_bytes_max` (64 MiB) less the envelope.
pub const ENTRY_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024 - ENTRY_FRAME_ENVELOPE_BYTES;

/// Keys a Ready's committed requests visit (`KvCommand::keys_applied`) from which its
/// apply waits `APPLY_PAUSE` after its messages were handed to the transport (a flush
/// counts one key: its range delete runs in the writer). The transport's tasks
/// run on the replica's thread when the node has one replica thread
/// (`limits.replica_threads`, as `local` sets it on a machine of fewer than two cores per
/// node).
/// An MSET or DEL of hundreds of thousands of keys holds that thread for most of a second;
/// without the pause, the messages of that Ready (a leader's new commit index, a
/// follower's heartbeat answers) left only after it, so a leader's followers began their
/// own apply as it ended, and their silence then, after its own, made it step down
/// (check-quorum) in every group it led. With it, the replicas of the group apply at once
/// and their stalls overlap, which the election timer forgives (`catch_up_ticks`). A Ready
/// of pipelined writes from 50 clients holds hundreds of keys, far below it (hundreds of
/// clients pipelining into one group could reach it, for a millisecond each time). Where
/// nodes share cores, such a command's own answer comes later: its replicas now apply at
/// once, on the same cores, where the leader's apply used to run alone. With several
/// replica threads the transport runs beside them and they do not pause
/// (`ShardConfig::pause_long_applies`).
pub const APPLY_PAUSE_KEYS_MIN: usize = 32_768;

/// How long such an apply waits: a timer, not a yield, because the peer writer tasks yield
/// a few times themselves to gather a frame before they write it.
pub const APPLY_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Persist jobs one replica has handed to the node's writer and not yet seen durable. More
/// than one lets a Ready taken while a commit runs join the very next batch instead of
/// waiting a whole commit for the previous job's answer; the bound keeps a replica from
/// filling the writer's queue (`WRITER_QUEUE_SUBMISSIONS_MAX`) alone.
pub const PERSIST_JOBS_IN_FLIGHT_MAX: usize = 4;

/// Default of `timeouts.apply_flush_ms`: a replica keeps its applied state (key-value
/// records, sessions, the applied index) in memory and hands it to the writer once per
/// window of this length. The log is durable before an entry applies, so a crash loses
/// nothing: the replica applies again from the durable applied index. Writing it once per
/// window turns a hot key's thousands of updates into one record written, and takes the
/// state machine's scattered pages off most fsyncs: with random keys each record written
/// costs a B-tree page copied and checksummed, and records flushed together share pages.
/// The windows are the node's (`shard::ready::flush_window`), so the replicas of a node
/// flush within one tick of each other and a few B-tree transactions carry them all: each
/// such transaction holds the writer for milliseconds, and every group's log appends
/// wait behind it. Flushing on every tick (50 ms) made the applied state a B-tree
/// transaction per group per tick under load, and those commits the largest cost of a
/// write. A split, a configuration change or a snapshot writes it at once, past
/// `APPLY_UNFLUSHED_KEYS_MAX` or `APPLY_UNFLUSHED_BYTES_MAX` with the next Ready, and a
/// replica's `Stop` before it goes.
pub const APPLY_FLUSH_MS_DEFAULT: u64 = 1_000;

/// Largest `timeouts.apply_flush_ms`: the log is compacted only through the durable applied
/// index, and a restart re-applies what came after it, so both grow with the interval.
pub const APPLY_FLUSH_MS_MAX: u64 = 60_000;

/// Keys (and sessions) applied and not yet durable, per replica, past which the applied
/// state is written with the next Ready, before its flush window ends.
pub const APPLY_UNFLUSHED_KEYS_MAX: usize = 16_384;

/// Bytes of keys and records applied and not yet handed to the writer, per replica, past
/// which the applied state is written with the next Ready: large values do not pile up in
/// memory until the flush window ends.
pub const APPLY_UNFLUSHED_BYTES_MAX: u64 = 32 * 1024 * 1024;

/// Default of `limits.clean_cache_bytes_max`: bytes of records a node's replicas keep in
/// memory as redb holds them (their clean caches, `shard::undurable`), by key and record
/// length plus a per-entry overhead, so that hot keys are read without a redb read
/// transaction. The bound is the node's, split evenly among its replicas (`CleanBudget`):
/// a node hosting more groups, after splits or moves, gives each a smaller cache, never
/// more memory in all (plus the caches' own tables, a few bytes per entry).
pub const CLEAN_CACHE_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// Records one step of a replica (a batch of reads or of applied entries) fetches from redb
/// and then keeps in its clean cache, at most; more are read but not kept.
pub const CLEAN_FETCHED_PER_STEP_MAX: usize = 4096;

/// Snapshots one replica exports and sends at once; more wait for Raft to ask again.
pub const SNAPSHOT_SENDS_MAX: usize = 2;

/// Bytes of one chunk frame of snapshot data.
pub const SNAPSHOT_CHUNK_BYTES: usize = 256 * 1024;

/// Bytes of state-machine data one snapshot may carry. The leader exports it and the
/// follower assembles it in memory before installing it in one transaction, so this bounds
/// the memory a snapshot takes on either side.
pub const SNAPSHOT_DATA_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Bytes of data one part of a streamed snapshot carries (one Raft message), at most; a
/// single chunk frame larger than this travels alone.
pub const SNAPSHOT_PART_BYTES: usize = 1024 * 1024;

/// Ticks a leader waits for a follower to acknowledge a snapshot before it sends it again
/// (10 s at the default 50 ms tick): room for streaming `SNAPSHOT_DATA_BYTES_MAX` at
/// `SNAPSHOT_PARTS_PER_TICK` parts per tick. A retry never cuts a stream under way.
pub const SNAPSHOT_TIMEOUT_TICKS: u64 = 200;

/// Parts of each outgoing snapshot sent per tick: bounds what one snapshot puts in the
/// peer's queue at once (other groups' messages interleave).
pub const SNAPSHOT_PARTS_PER_TICK: usize = 8;

/// Compact the log once this many entries were applied (durably) since the last
/// compaction.
pub const COMPACT_EVERY_ENTRIES: u64 = 4096;

/// Entries kept below the applied index at a compaction, so that a follower a little
/// behind catches up from the log rather than by snapshot.
pub const LOG_KEEP_ENTRIES: u64 = 1024;

/// Entries a follower may be behind a read index it was given and still serve the reads
/// (waiting for the apply); further behind, it is catching up, and they go to the leader.
pub const FOLLOWER_READ_LAG_ENTRIES_MAX: u64 = 1024;

/// Keys one read answered through a replica's read door may name (`shard::read_door`). The
/// request path (a client's connection, or a peer's link for a forwarded read) does that
/// read itself and may have to fetch every key from redb, so a bigger read (a long MGET or
/// pipeline batch) goes to the replica instead, keeping the link's Raft messages from
/// waiting behind it.
pub const DOOR_READ_KEYS_MAX: usize = 64;

/// Default of `timeouts.expiry_step_ms`: a group's leader looks for expired records
/// (`shard::expiry`) once per this long, `EXPIRY_ROWS_PER_STEP` records at a time.
pub const EXPIRY_STEP_MS_DEFAULT: u64 = 100;

/// Records one step of the active expiry looks at, off the replica's thread, reading each
/// one's header in place in redb (about 50 ns each: half a millisecond per step). At the
/// default step, a leader walks up to 100,000 records a second of each group it leads,
/// costing the same whether any expire or not, then rests after a quiet pass
/// (`EXPIRY_BUSY_PASS_PERCENT`).
pub const EXPIRY_ROWS_PER_STEP: usize = 10_000;

/// Expired keys one step deletes: the `DeleteExpired` commands of one log entry, which each
/// replica applies on its thread (about a millisecond for a thousand).
pub const EXPIRY_KEYS_PER_ENTRY: usize = 1_000;

/// Bytes of keys one such entry holds (a first key whatever its length), far below a peer
/// frame.
pub const EXPIRY_KEY_BYTES_PER_ENTRY: usize = 256 * 1024;

/// A step that found more expired keys than one entry holds starts the next this long after
/// its entry applied, rather than a whole step later: a backlog (a million keys loaded with
/// one TTL) drains at up to a thousand keys per commit round trip and this pause, while the
/// group's own writes interleave.
pub const EXPIRY_BACKLOG_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// Percent of the records a whole pass walked that it must have found expired for the next
/// pass to start at once; after a pass that found fewer, the leader rests
/// `EXPIRY_QUIET_PASS_REST_STEPS` steps. Walking costs the same whether records expire or
/// not (a store of 670,000 keys with an hour left, walked over and over, took 5% of a core):
/// a quiet pass rests, so expired keys wait stored about a rest at most, or are a percent
/// of the store (Redis's expiry cycle, at its default effort, leaves up to 10%).
pub const EXPIRY_BUSY_PASS_PERCENT: u64 = 1;

/// Steps a leader rests after a quiet pass (5 s at the default step).
pub const EXPIRY_QUIET_PASS_REST_STEPS: u32 = 50;
