//! SLOWLOG's entries: the commands whose reply took at least `slowlog.log_slower_than_us`
//! µs, newest first, at most `slowlog.max_len` of them, each as
//! Redis keeps one (id, unix time, µs, arguments, client address, client name) with its
//! arguments cut as Redis cuts them. Shared by a server's connections; its lock is taken
//! only to add a slow command's entry or to answer SLOWLOG.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::frame::Frame;
use crate::node::config::SlowlogConfig;

/// Arguments an entry keeps: past it, the last one kept says how many more there were.
pub const ENTRY_ARGS_MAX: usize = 32;
/// Bytes an argument keeps: past it, the rest is counted, not kept.
pub const ENTRY_ARG_BYTES_MAX: usize = 128;

/// One slow command.
#[derive(Clone, Debug)]
struct Entry {
    id: u64,
    unix_s: i64,
    micros: i64,
    args: Vec<Bytes>,
    client: String,
    name: Bytes,
}

#[derive(Debug, Default)]
struct Log {
    /// Newest first.
    entries: VecDeque<Entry>,
    next_id: u64,
}

/// A server's slow log.
#[derive(Debug)]
pub struct SlowLog {
    config: SlowlogConfig,
    log: Mutex<Log>,
}

impl SlowLog {
    pub fn new(config: SlowlogConfig) -> SlowLog {
        SlowLog { config, log: Mutex::new(Log::default()) }
    }

    pub fn config(&self) -> &SlowlogConfig {
        &self.config
    }

    /// Whether a command that took `elapsed` is kept.
    pub fn is_slow(&self, elapsed: Duration) -> bool {
        let Ok(threshold) = u128::try_from(self.config.log_slower_than_us) else {
            return false;
        };
        self.config.max_len > 0 && elapsed.as_micros() >= threshold
    }

    /// Keeps a command that took `elapsed` (the caller checked `is_slow`); `args` with
    /// AUTH's and HELLO's secrets replaced, as Redis shows them. What it keeps is copied,
    /// never a slice of a connection's buffer.
    pub fn add(&self, args: &[Bytes], elapsed: Duration, client: String, name: Bytes) {
        let unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let micros = i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX);
        let args = kept_args(args);
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let id = log.next_id;
        log.next_id += 1;
        let unix_s = i64::try_from(unix_s).unwrap_or(i64::MAX);
        let name = Bytes::copy_from_slice(&name);
        log.entries.push_front(Entry { id, unix_s, micros, args, client, name });
        log.entries.truncate(self.config.max_len);
    }

    pub fn len(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn reset(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).entries.clear();
    }

    /// SLOWLOG GET: the newest `count` entries (all of them for `None`).
    pub fn newest(&self, count: Option<usize>) -> Frame {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let entries = log.entries.iter().take(count.unwrap_or(usize::MAX));
        Frame::Array(
            entries
                .map(|e| {
                    Frame::Array(vec![
                        Frame::Int(e.id as i64),
                        Frame::Int(e.unix_s),
                        Frame::Int(e.micros),
                        Frame::Array(e.args.iter().cloned().map(Frame::Bulk).collect()),
                        Frame::bulk(e.client.clone()),
                        Frame::Bulk(e.name.clone()),
                    ])
                })
                .collect(),
        )
    }
}

/// What an entry keeps of a command's arguments: at most `ENTRY_ARGS_MAX`, each at most
/// `ENTRY_ARG_BYTES_MAX` bytes, with Redis's notes of what was left out; the secrets of
/// AUTH and of HELLO's AUTH redacted.
fn kept_args(args: &[Bytes]) -> Vec<Bytes> {
    let redacted = |at: usize| {
        let name = &args[0];
        name.eq_ignore_ascii_case(b"auth") && at > 0
            || name.eq_ignore_ascii_case(b"hello")
                && (1..at).any(|i| args[i].eq_ignore_ascii_case(b"auth") && at <= i + 2)
    };
    let shown = if args.len() > ENTRY_ARGS_MAX { ENTRY_ARGS_MAX - 1 } else { args.len() };
    let mut kept: Vec<Bytes> = (0..shown)
        .map(|at| {
            let arg = &args[at];
            if redacted(at) {
                Bytes::from_static(b"(redacted)")
            } else if arg.len() > ENTRY_ARG_BYTES_MAX {
                let mut cut = arg[..ENTRY_ARG_BYTES_MAX].to_vec();
                let more = arg.len() - ENTRY_ARG_BYTES_MAX;
                cut.extend_from_slice(format!("... ({more} more bytes)").as_bytes());
                Bytes::from(cut)
            } else {
                // A copy: the argument is a slice of the request's whole read buffer.
                Bytes::copy_from_slice(arg)
            }
        })
        .collect();
    if shown < args.len() {
        let more = args.len() - shown;
        kept.push(Bytes::from(format!("... ({more} more arguments)")));
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Bytes> {
        text.split(' ').map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
    }

    #[test]
    fn arguments_are_cut_and_secrets_redacted_as_redis_does() {
        let kept = kept_args(&words("AUTH user secret"));
        assert_eq!(kept, words("AUTH (redacted) (redacted)"));
        let kept = kept_args(&words("HELLO 3 AUTH user secret SETNAME n"));
        assert_eq!(kept, words("HELLO 3 AUTH (redacted) (redacted) SETNAME n"));
        let long = Bytes::from(vec![b'a'; 200]);
        let kept = kept_args(&[Bytes::from_static(b"SET"), Bytes::from_static(b"k"), long]);
        let want = format!("{}... (72 more bytes)", "a".repeat(128));
        assert_eq!(kept[2], Bytes::from(want));
        let many: Vec<Bytes> = (0..40).map(|i| Bytes::from(i.to_string())).collect();
        let kept = kept_args(&many);
        assert_eq!(kept.len(), ENTRY_ARGS_MAX);
        assert_eq!(kept[30], Bytes::from_static(b"30"));
        assert_eq!(kept[31], Bytes::from_static(b"... (9 more arguments)"));
    }

    #[test]
    fn the_log_keeps_the_newest_entries_up_to_its_length() {
        let log = SlowLog::new(SlowlogConfig { log_slower_than_us: 5, max_len: 2 });
        assert!(!log.is_slow(Duration::from_micros(4)));
        assert!(log.is_slow(Duration::from_micros(5)));
        for name in ["a", "b", "c"] {
            log.add(&words(name), Duration::from_micros(7), "1.2.3.4:5".into(), Bytes::new());
        }
        assert_eq!(log.len(), 2);
        let Frame::Array(entries) = log.newest(None) else { panic!() };
        let ids: Vec<Frame> = entries
            .iter()
            .map(|e| match e {
                Frame::Array(fields) => fields[0].clone(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(ids, vec![Frame::Int(2), Frame::Int(1)]);
        let Frame::Array(one) = log.newest(Some(1)) else { panic!() };
        assert_eq!(one.len(), 1);
        log.reset();
        assert!(log.is_empty());
        let off = SlowLog::new(SlowlogConfig { log_slower_than_us: -1, max_len: 2 });
        assert!(!off.is_slow(Duration::from_secs(100)));
    }
}
