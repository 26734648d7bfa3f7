//! Keyspace notifications (Redis's `notify-keyspace-events`): the events a write raises as
//! it applies, and the flags that choose which of them are published.
//!
//! A command applying (see `apply`) pushes, in order, the events Redis 7's command raises
//! (`set`, `del`, `expire`, `rename_from`, ...; `new` when a key comes into being, before
//! the command's own event), but only the classes the flags ask for, and only when the
//! flags publish something at all: with notifications off, nothing is built. Each replica
//! raises the events of the entries it applies, so a node publishes the events of every
//! group it holds a replica of, in each group's log order; the node turns them into
//! messages on `__keyspace@0__:<key>` (the event) and `__keyevent@0__:<event>` (the key).
//!
//! `expired` is raised when the active expiry's `DeleteExpired` applies, or before a write
//! stores over (or BITOP deletes) a record whose deadline passed, as Redis's lazy expiry
//! raises it first; never by a read, which does not reach the apply (nor by a write's
//! reading of a key it leaves in place: BITOP's sources, SET XX, DEL). A SET whose deadline
//! already passed raises `expired` at once (Redis: when its expiry gets to it). A BITFIELD
//! whose writes leave the bytes as they were raises nothing (Redis: `setbit`). Classes this
//! store has no use for (lists, sets, hashes, sorted sets, streams, module types,
//! evictions) parse, and raise nothing. `m` (key misses, which Redis raises on reads)
//! parses and raises nothing too: reads here never reach the state machine's apply.
//!
//! Must never: let what the flags ask change a write, a reply or a transaction's work (the
//! flags are node-local: replicas may differ).

use std::fmt;
use std::sync::atomic::{AtomicU16, Ordering};

use bytes::{BufMut, Bytes, BytesMut};

/// `K`: publish on `__keyspace@0__:<key>`.
pub const KEYSPACE: u16 = 1 << 0;
/// `E`: publish on `__keyevent@0__:<event>`.
pub const KEYEVENT: u16 = 1 << 1;
/// `g`: commands of any type (DEL, EXPIRE, RENAME, ...).
pub const GENERIC: u16 = 1 << 2;
/// `$`: string commands.
pub const STRING: u16 = 1 << 3;
const LIST: u16 = 1 << 4;
const SET: u16 = 1 << 5;
const HASH: u16 = 1 << 6;
const ZSET: u16 = 1 << 7;
/// `x`: a key deleted because its deadline passed.
pub const EXPIRED: u16 = 1 << 8;
const EVICTED: u16 = 1 << 9;
const STREAM: u16 = 1 << 10;
const KEY_MISS: u16 = 1 << 11;
const MODULE: u16 = 1 << 13;
/// `n`: a key came into being (not part of `A`).
pub const NEW: u16 = 1 << 14;
/// `A`: every class but `m` and `n`.
const ALL: u16 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;
/// The flags that are not classes of events.
const NOT_CLASSES: u16 = KEYSPACE | KEYEVENT | KEY_MISS;

/// Each letter but `A` and its flag, in the order CONFIG GET shows them (Redis's).
const LETTERS: [(char, u16); 14] = [
    ('g', GENERIC),
    ('$', STRING),
    ('l', LIST),
    ('s', SET),
    ('h', HASH),
    ('z', ZSET),
    ('x', EXPIRED),
    ('e', EVICTED),
    ('t', STREAM),
    ('d', MODULE),
    ('n', NEW),
    ('K', KEYSPACE),
    ('E', KEYEVENT),
    ('m', KEY_MISS),
];

/// Every letter, as Redis's error texts list them.
pub const LETTERS_SHOWN: &str = "Ag$lshzxeKEtmdn";

/// Which events are published, as `notify-keyspace-events` sets them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotifyFlags(u16);

impl NotifyFlags {
    /// Parses Redis's letters (`KEA`, `Ex`, ...); an unknown letter is `Err` with it.
    pub fn parse(text: &str) -> Result<NotifyFlags, char> {
        let mut flags = 0;
        for c in text.chars() {
            flags |= match LETTERS.iter().find(|(letter, _)| *letter == c) {
                Some((_, bit)) => *bit,
                None if c == 'A' => ALL,
                None => return Err(c),
            };
        }
        Ok(NotifyFlags(flags))
    }

    /// Whether any event would be published: a channel kind (`K` or `E`) and a class.
    pub fn publishes(self) -> bool {
        self.0 & (KEYSPACE | KEYEVENT) != 0 && self.0 & !(KEYSPACE | KEYEVENT) != 0
    }

    /// Whether events of `class` (of any of them, for several) are published.
    pub fn wants(self, class: u16) -> bool {
        self.publishes() && self.0 & class != 0
    }

    /// The messages `event` makes: (channel, message) on the keyspace channel, then on the
    /// keyevent one, as the flags ask.
    pub fn messages(self, event: &KeyEvent) -> impl Iterator<Item = (Bytes, Bytes)> + '_ {
        let name = Bytes::from_static(event.event.as_bytes());
        let keyspace = (self.0 & KEYSPACE != 0)
            .then(|| (prefixed("__keyspace@0__:", &event.key), name.clone()));
        let keyevent = (self.0 & KEYEVENT != 0)
            .then(|| (prefixed("__keyevent@0__:", event.event.as_bytes()), event.key.clone()));
        keyspace.into_iter().chain(keyevent)
    }
}

fn prefixed(prefix: &str, rest: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(prefix.len() + rest.len());
    out.put_slice(prefix.as_bytes());
    out.put_slice(rest);
    out.freeze()
}

/// As CONFIG GET shows them, in Redis's order: `A` for every class of it (the classes it
/// leaves out, `n` among them, are then not shown, as Redis does not), else each class's
/// letter, then `K`, `E` and `m`.
impl fmt::Display for NotifyFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all = self.0 & ALL == ALL;
        let mut out = String::from(if all { "A" } else { "" });
        let shown = |&&(_, bit): &&(char, u16)| {
            self.0 & bit != 0 && !(all && bit & NOT_CLASSES == 0)
        };
        out.extend(LETTERS.iter().filter(shown).map(|(c, _)| c));
        f.write_str(&out)
    }
}

/// The node's current flags, shared by its replicas (read at each apply) and CONFIG.
#[derive(Debug, Default)]
pub struct Notifier {
    flags: AtomicU16,
}

impl Notifier {
    pub fn flags(&self) -> NotifyFlags {
        NotifyFlags(self.flags.load(Ordering::Relaxed))
    }

    pub fn set(&self, flags: NotifyFlags) {
        self.flags.store(flags.0, Ordering::Relaxed);
    }

    /// A collector for one apply batch, `None` when nothing is published.
    pub fn collector(&self) -> Option<KeyEvents> {
        let flags = self.flags();
        flags.publishes().then(|| KeyEvents { flags, list: Vec::new() })
    }
}

/// One event a write raised on a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEvent {
    pub event: &'static str,
    pub key: Bytes,
}

/// The events of an apply batch, in the order they were raised, kept only for the classes
/// `flags` publishes.
#[derive(Debug)]
pub struct KeyEvents {
    flags: NotifyFlags,
    list: Vec<KeyEvent>,
}

impl KeyEvents {
    pub fn new(flags: NotifyFlags) -> KeyEvents {
        KeyEvents { flags, list: Vec::new() }
    }

    pub fn flags(&self) -> NotifyFlags {
        self.flags
    }

    /// Keeps `event` on `key` if its class is published.
    pub fn raise(&mut self, class: u16, event: &'static str, key: &Bytes) {
        if self.flags.wants(class) {
            self.list.push(KeyEvent { event, key: key.clone() });
        }
    }

    /// How many are kept (a mark `truncate` goes back to).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Forgets the events after the first `len` (a transaction that was undone).
    pub fn truncate(&mut self, len: usize) {
        self.list.truncate(len);
    }

    /// The (channel, message) pairs to publish, in order.
    pub fn messages(&self) -> impl Iterator<Item = (Bytes, Bytes)> + '_ {
        self.list.iter().flat_map(|event| self.flags.messages(event))
    }

    pub fn events(&self) -> &[KeyEvent] {
        &self.list
    }

    /// What they hold, for a queue's bound: each event's key and name, plus
    /// `EVENT_OVERHEAD_BYTES`.
    pub fn bytes(&self) -> u64 {
        let each = |e: &KeyEvent| (e.key.len() + e.event.len()) as u64 + EVENT_OVERHEAD_BYTES;
        self.list.iter().map(each).sum()
    }
}

/// What a queue counts for one event beyond its key and name (its place in the list and
/// the messages it becomes), so that events of empty keys fill a bound too.
pub const EVENT_OVERHEAD_BYTES: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        NotifyFlags::parse(text).unwrap().to_string()
    }

    #[test]
    fn flags_show_as_redis_shows_them() {
        // As redis-server 7.0's CONFIG GET answers after CONFIG SET of the left side.
        assert_eq!(shown(""), "");
        assert_eq!(shown("KEA"), "AKE");
        assert_eq!(shown("KEAn"), "AKE");
        assert_eq!(shown("Ex$g"), "g$xE");
        assert_eq!(shown("mKn"), "nKm");
        assert_eq!(shown("g$lshzxetd"), "A");
        assert_eq!(NotifyFlags::parse("KEq"), Err('q'));
        assert_eq!(NotifyFlags::parse("KE a"), Err(' '));
        assert_eq!(NotifyFlags::parse("Eé"), Err('é'));
    }

    #[test]
    fn nothing_is_published_without_a_channel_kind_and_a_class() {
        for text in ["", "A", "K", "KE", "Kn"] {
            let flags = NotifyFlags::parse(text).unwrap();
            assert_eq!(flags.publishes(), text == "Kn", "{text}");
            let notifier = Notifier::default();
            notifier.set(flags);
            assert_eq!(notifier.collector().is_some(), text == "Kn", "{text}");
        }
        let flags = NotifyFlags::parse("E$").unwrap();
        assert!(flags.wants(STRING) && !flags.wants(GENERIC) && !flags.wants(NEW));
    }

    #[test]
    fn events_become_keyspace_then_keyevent_messages_of_the_wanted_classes() {
        let mut events = KeyEvents::new(NotifyFlags::parse("KE$").unwrap());
        let key = Bytes::from_static(b"k:1");
        events.raise(NEW, "new", &key);
        events.raise(STRING, "set", &key);
        events.raise(GENERIC, "expire", &key);
        let messages: Vec<(Bytes, Bytes)> = events.messages().collect();
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"__keyspace@0__:k:1", b"set"),
            (b"__keyevent@0__:set", b"k:1"),
        ];
        let got: Vec<(&[u8], &[u8])> = messages.iter().map(|(c, m)| (&c[..], &m[..])).collect();
        assert_eq!(got, want);
        let mark = events.len();
        events.raise(STRING, "append", &key);
        events.truncate(mark);
        assert_eq!(events.len(), 1);
    }
}
