//! Every bound of the storage layer, in one place, each with its unit and its reason.
//!
//! Owns: the numbers. Must never: hold logic; a bound that is hit yields backpressure (the
//! writer queue) or a split into the next batch, never unbounded memory.

/// Entries kept in memory per group, newest first, so that `term()` and `entries()` on the
/// replication hot path need no read transaction. A follower that lags by more than this
/// is served from redb. 1024 entries covers several round trips of a pipelined leader.
pub const LOG_CACHE_ENTRIES_MAX: usize = 1024;

/// Bytes of entries kept in memory per group (counted with `Entry::size_bytes`), so that a
/// node with many groups of large entries stays bounded: 256 groups × 1 MiB = 256 MiB.
pub const LOG_CACHE_BYTES_MAX: u64 = 1024 * 1024;

/// Entries in one group-commit transaction. With 256 groups that is 16 entries each; the
/// limit keeps a single commit (and the latency of every group in it) bounded.
pub const BATCH_ENTRIES_MAX: usize = 4096;

/// Bytes (entries, by `Entry::size_bytes`, plus key-value records) in one group-commit
/// transaction. 8 MiB takes about as long to write as one fsync on a common SSD.
pub const BATCH_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// Submissions queued for the threaded writer before `submit` blocks (backpressure).
pub const WRITER_QUEUE_SUBMISSIONS_MAX: usize = 1024;

/// Log entries deleted per compaction transaction, so that compacting a long log does not
/// hold the node's write transaction (and every group's commit) for long.
pub const COMPACT_DELETES_PER_TXN_MAX: u64 = 4096;

/// redb's page cache, per node.
pub const DB_PAGE_CACHE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Bytes of log writes durable in the write-ahead log but not yet in redb, summed over the
/// node's groups (`Entry::size_bytes`). Past it the writer absorbs them into redb in a
/// transaction of their own. It also bounds how far the group caches may grow past
/// `LOG_CACHE_BYTES_MAX`: a cache keeps every entry redb does not hold yet.
pub const WAL_PENDING_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The write-ahead log file is emptied once everything in it is absorbed and it is at least
/// this long; it grows about this far, plus one record and up to `WAL_PREALLOC_BYTES` of
/// zeros written ahead, between two emptyings.
pub const WAL_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// The write-ahead log file is extended with zeros this many bytes at a time, ahead of the
/// records that then overwrite them: an append that stays inside the file changes neither
/// its size nor its blocks, so `fdatasync` writes the data and need not write the inode too
/// (on ext4 without a journal that is one more wait on the disk per append). Each extension
/// costs its zeros written once, flushed by the next append's sync.
pub const WAL_PREALLOC_BYTES: u64 = 1024 * 1024;

/// Bytes of one write-ahead log record's payload. A batch larger than this (a single huge
/// entry) goes to redb directly; a longer length read from the file is damage.
pub const WAL_RECORD_BYTES_MAX: u64 = 64 * 1024 * 1024;
