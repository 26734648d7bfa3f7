//! One client connection: read bytes, decode requests, prepare each in order, run them
//! concurrently except where they conflict, and write the replies back in request order.
//! Two commands conflict when one writes and they touch a common group: the later starts
//! only once the earlier has answered. So a connection's writes reach each group in order
//! (its seqs increase per group, as the group's deduplication requires), a read sees the
//! connection's earlier writes of its group, and pipelined commands on different groups —
//! operations whose replies the client has not yet seen, hence concurrent — overlap.
//! A lone request (nothing before it unanswered, nothing after it read yet: a client that
//! waits for each reply) runs in the connection's own task, without a task of its own.
//! Pipelined writes of named keys on one group, read together, go to the group as one
//! request (a batch, `exec::run_batch`) instead of one after another; so do pipelined reads
//! of named keys on one group (one read instead of many). A batch is open while the
//! requests already read are prepared, until a command that conflicts with it, the batch
//! bounds or the end of what was read starts it; a group has at most one open batch.
//! A protocol error is answered and closes this connection only. Bounds: the number of
//! requests in flight, and the reply bytes buffered (past `client_output_bytes_max` the
//! client is disconnected). A connection that listens (Pub/Sub, MONITOR) writes what its
//! mailbox (`resp::pubsub`) holds whenever it idles, and before each reply what was posted
//! before that reply's request was prepared or while it was; past the mailbox's bound
//! (what waits there and what was taken for replies not yet written, together), or
//! killed, while any write to it blocks or a WAIT does, it is disconnected. Never
//! interprets a command itself.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::backend::Backend;
use super::client::{ClientEntry, ClientState, SlotSet};
use super::cmd::{self, Ctx};
use super::decode::{decode, DecodeLimits, Progress};
use super::exec::{self, Job};
use super::frame::{Frame, Proto};
use super::pubsub::{Delivery, Mailbox, Overflow};
use crate::raft::types::GroupId;
use super::server::Shared;
use super::stats::ServerStats;
use crate::metrics::resp::UNKNOWN_COMMAND;

/// Requests of one connection prepared but not yet answered.
pub const PIPELINE_REQUESTS_MAX: usize = 1024;
/// Reply bytes gathered before they are written out mid-pipeline.
pub const OUTPUT_FLUSH_BYTES: usize = 64 * 1024;
/// Initial size of a connection's read buffer.
pub const READ_BUFFER_BYTES: usize = 16 * 1024;
/// Commands gathered into one pipeline batch (one request to their group).
pub const PIPELINE_BATCH_COMMANDS_MAX: usize = 128;
/// Argument bytes of the commands of one pipeline batch; a command that would pass it
/// starts the batch and opens the next (one larger than this alone is a batch of one).
pub const PIPELINE_BATCH_BYTES_MAX: usize = 1024 * 1024;

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("reply bytes exceeded client_output_bytes_max ({0} bytes)")]
    OutputLimit(u64),
    #[error("killed (CLIENT KILL) while writing")]
    Killed,
}

enum Pending {
    Ready(Frame),
    /// Messages and MONITOR lines taken from the mailbox to go before a reply, with the
    /// bytes the mailbox counted for them (`Conn::taken_bytes`).
    Pushed(Frame, u64),
    Running(JoinHandle<Frame>, Footprint),
    /// The `index`-th command of the pipeline batch `id` (`Conn::batches`).
    InBatch { id: u64, index: usize },
}

/// Pipelined writes, or reads, of one group, run as one request.
struct Batch {
    id: u64,
    group: GroupId,
    write: bool,
    state: BatchState,
}

enum BatchState {
    /// Gathering: the commands, their timers, their argument bytes.
    Open { commands: Vec<exec::Ops>, timers: Vec<CommandTimer>, bytes: usize },
    Running(JoinHandle<Vec<Frame>>),
    /// Answered: the answers not yet taken, by index.
    Done(Vec<Option<Frame>>),
}

impl Batch {
    /// Starts the batch if it is open.
    fn launch<B: Backend>(&mut self, backend: &B) {
        let BatchState::Open { commands, timers, .. } = &mut self.state else { return };
        let (commands, timers) = (std::mem::take(commands), std::mem::take(timers));
        // Boxed: the task's own future stays small, and tokio copies it whole when it
        // starts the task and when its answer is taken (the batch's own is kilobytes).
        let run = Box::pin(exec::run_batch(backend.clone(), commands));
        self.state = BatchState::Running(tokio::spawn(async move {
            let frames = run.await;
            timers.into_iter().zip(&frames).for_each(|(timer, frame)| timer.stop(frame));
            frames
        }));
    }

    /// Waits for the batch's answers if it runs.
    async fn settle(&mut self) {
        if let BatchState::Running(task) = &mut self.state {
            let frames = task.await.unwrap_or_default();
            self.state = BatchState::Done(frames.into_iter().map(Some).collect());
        }
    }
}

/// What a running command touches, for the conflict rule.
struct Footprint {
    write: bool,
    /// `None`: every group.
    groups: Option<Vec<GroupId>>,
}

impl Footprint {
    fn of(job: &Job) -> Footprint {
        match job {
            Job::Run(ops) => {
                Footprint { write: ops.write, groups: Some(ops.parts.iter().map(|p| p.group).collect()) }
            }
            Job::Transaction(tx) => {
                let groups = tx.ops.iter().flat_map(|(_, ops)| ops.parts.iter().map(|p| p.group));
                // Watched keys are read again, or compared, after the connection's writes.
                let watched = tx.watch_at.map(|(group, _)| group);
                Footprint { write: job.is_write(), groups: Some(groups.chain(watched).collect()) }
            }
            Job::Watch(ops, _) => {
                let groups = ops.parts.iter().map(|p| p.group).collect();
                Footprint { write: false, groups: Some(groups) }
            }
            _ => Footprint { write: false, groups: None },
        }
    }

    fn conflicts(&self, other: &Footprint) -> bool {
        if !self.write && !other.write {
            return false;
        }
        match (&self.groups, &other.groups) {
            (Some(a), Some(b)) => a.iter().any(|g| b.contains(g)),
            _ => true,
        }
    }

    /// `conflicts` with a command that touches `group` alone (a batch).
    fn conflicts_with(&self, write: bool, group: GroupId) -> bool {
        (self.write || write) && self.groups.as_ref().is_none_or(|groups| groups.contains(&group))
    }
}

struct Conn<B> {
    backend: B,
    shared: Arc<Shared>,
    client: ClientState,
    /// Read by `run`'s loop between requests, and by a blocked WAIT to see the client go.
    reader: OwnedReadHalf,
    /// What a blocked WAIT read (later requests), for the decoder once it answered: with the
    /// bytes read before it, at most `limits.request_bytes_max`, past which it reads no more
    /// until then.
    stash: BytesMut,
    writer: OwnedWriteHalf,
    output: BytesMut,
    pending: VecDeque<(Proto, Pending)>,
    /// Pipeline batches with answers not yet written, oldest first.
    batches: VecDeque<Batch>,
    next_batch: u64,
    /// How far the decoder got into the partial request at the start of the input.
    progress: Progress,
    /// Bytes of the messages in `pending` (`Pending::Pushed`): with those still in the
    /// mailbox, at most its bound.
    taken_bytes: u64,
}

/// Serves one client until it quits, breaks the protocol, is killed or disconnects.
pub async fn run<B: Backend>(stream: TcpStream, addr: SocketAddr, backend: B, shared: Arc<Shared>) {
    let id = backend.new_client_id();
    let entry = shared.clients.register(id, addr, stream.local_addr().ok());
    let client = ClientState {
        id,
        addr,
        proto: Proto::Resp2,
        authenticated: shared.options.requirepass.is_empty(),
        name: None,
        redirects: shared.options.cluster_redirects,
        readonly: false,
        seq: 0,
        multi: None,
        watched: Vec::new(),
        written: SlotSet::default(),
        subscriptions: None,
        monitor: None,
        mailbox: None,
        entry: entry.clone(),
    };
    let (reader, writer) = stream.into_split();
    let mut conn = Conn {
        backend,
        shared: shared.clone(),
        client,
        reader,
        stash: BytesMut::new(),
        writer,
        output: BytesMut::new(),
        pending: VecDeque::new(),
        batches: VecDeque::new(),
        next_batch: 0,
        progress: Progress::default(),
        taken_bytes: 0,
    };
    let mut input = BytesMut::with_capacity(READ_BUFFER_BYTES);
    // One wait for CLIENT KILL for the whole connection, not one set up for every read.
    let killed = entry.killed();
    tokio::pin!(killed);
    loop {
        match conn.serve_buffered(&mut input).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => {
                tracing::debug!(client = id, %addr, %error, "closing client connection");
                break;
            }
        }
        let mailbox = conn.client.mailbox.clone();
        tokio::select! {
            read = conn.reader.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => break,
                Ok(bytes) => shared.stats.input(bytes),
            },
            _ = &mut killed => break,
            () = posted(mailbox.as_deref()) => {
                if let Err(error) = conn.deliver().await {
                    tracing::debug!(client = id, %addr, %error, "closing subscriber connection");
                    break;
                }
            }
        }
    }
    if conn.client.mailbox.as_ref().is_some_and(|mailbox| mailbox.is_overflowed()) {
        conn.backend.hub().count_disconnected();
    }
    let _ = conn.writer.shutdown().await;
    shared.clients.unregister(id);
}

impl<B: Backend> Conn<B> {
    /// Serves every complete request in `input`; `Ok(false)` when the connection must close.
    async fn serve_buffered(&mut self, input: &mut BytesMut) -> Result<bool, ConnectionError> {
        let mut open = true;
        loop {
            if self.pending.len() >= PIPELINE_REQUESTS_MAX {
                self.drain().await?;
            }
            let limits = DecodeLimits {
                bulk_bytes_max: self.shared.options.limits.bulk_bytes_max,
                multibulk_len_max: self.shared.options.limits.multibulk_len_max,
                request_bytes_max: self.shared.options.limits.request_bytes_max,
                authenticated: self.client.authenticated,
            };
            let args = match decode(input, &limits, &mut self.progress) {
                Ok(None) => break,
                Ok(Some(args)) if args.is_empty() => continue,
                Ok(Some(args)) => args,
                Err(error) => {
                    tracing::debug!(client = self.client.id, %error, "protocol error");
                    let proto = self.client.proto;
                    let reply = error.reply_text();
                    self.shared.stats.error_reply(&reply);
                    self.pending.push_back((proto, Pending::Ready(Frame::error(reply))));
                    open = false;
                    break;
                }
            };
            let alone = self.pending.is_empty() && input.is_empty();
            if !self.submit(args, alone, input.len()).await? {
                open = false;
                break;
            }
            if !self.stash.is_empty() {
                // Read after what `input` holds: it goes after it. Taken, so that the
                // stash's memory goes with it.
                input.extend_from_slice(&std::mem::take(&mut self.stash));
            }
        }
        self.drain().await?;
        self.flush().await?;
        Ok(open && !self.client.entry.is_killed())
    }

    /// Prepares one request and queues it, running; false after QUIT. `alone`: no other
    /// request to overlap it with, so it runs here and now. `buffered`: bytes of later
    /// requests read already (a blocked WAIT reads more only up to the request bound).
    async fn submit(
        &mut self,
        args: Vec<bytes::Bytes>,
        alone: bool,
        buffered: usize,
    ) -> Result<bool, ConnectionError> {
        let index = args.first().and_then(|first| cmd::spec_index_of_arg(first));
        let mut timer = CommandTimer::start(self.shared.clone(), index);
        // Held across the request: a RESET lets the connection's mailbox go, not what
        // waits in it for the replies before.
        let listening = self.client.mailbox.clone();
        let job = {
            let mut cx = Ctx {
                backend: &self.backend,
                client: &mut self.client,
                shared: &self.shared,
            };
            cmd::prepare(&mut cx, &args, index)
        };
        if let Some(mailbox) = self.client.mailbox.clone().or(listening) {
            // What was published before this request was read, or while it was prepared (a
            // PUBLISH to the connection itself), goes before its reply, as Redis writes it:
            // an UNSUBSCRIBE's confirmation comes after those messages.
            let deliveries = self.take(&mailbox)?;
            if !deliveries.is_empty() {
                let bytes: u64 = deliveries.iter().map(Delivery::bytes).sum();
                self.taken_bytes += bytes;
                if self.taken_bytes > mailbox.bytes_max() {
                    return Err(ConnectionError::OutputLimit(mailbox.bytes_max()));
                }
                let frames = deliveries.iter().map(Delivery::frame).collect();
                let proto = self.client.proto;
                self.pending.push_back((proto, Pending::Pushed(Frame::Several(frames), bytes)));
            }
        }
        let bytes = match &job {
            Job::Run(_) => args.iter().map(|a| a.len()).sum(),
            _ => 0,
        };
        if self.backend.hub().monitored() {
            self.feed_monitors(index, &args, &job);
        }
        timer.keep(args, &self.client.entry);
        let proto = self.client.proto;
        self.note_written(&job);
        match job {
            Job::Now(frame) => {
                timer.stop(&frame);
                self.pending.push_back((proto, Pending::Ready(frame)));
            }
            Job::Close(frame) => {
                timer.stop(&frame);
                self.pending.push_back((proto, Pending::Ready(frame)));
                return Ok(false);
            }
            Job::Run(ops) if !alone && exec::batchable(&ops) => {
                self.add_to_batch(ops, timer, bytes, proto).await;
            }
            Job::Wait(wait) => {
                // Once everything before it answered (its answers sent): blocks the
                // connection, as in Redis, until it answers or the client goes.
                self.drain().await?;
                self.flush().await?;
                let backend = self.backend.clone();
                let killed = self.client.entry.clone();
                let limit = self.shared.options.limits.request_bytes_max as usize;
                let room = limit.saturating_sub(buffered);
                let stats = &self.shared.stats;
                let mailbox = self.client.mailbox.clone();
                let frame = tokio::select! {
                    biased;
                    frame = crate::resp::wait::run(backend, wait) => frame,
                    () = gone(&mut self.reader, &mut self.stash, room, stats) => return Ok(false),
                    () = killed.killed() => return Ok(false),
                    () = overflowed(mailbox.as_deref()) => return Ok(false),
                };
                // As Redis, the time spent blocked is not the command's (SLOWLOG, stats).
                timer.started = Instant::now();
                timer.stop(&frame);
                self.pending.push_back((proto, Pending::Ready(frame)));
            }
            job => {
                let footprint = Footprint::of(&job);
                self.settle_conflicts(&footprint).await;
                let run = exec::run(self.backend.clone(), job);
                if alone {
                    // Boxed: a connection's own future stays small while it idles.
                    let frame = Box::pin(AssertUnwindSafe(run).catch_unwind()).await;
                    let frame = frame.unwrap_or_else(|_| failed());
                    timer.stop(&frame);
                    self.pending.push_back((proto, Pending::Ready(frame)));
                    return Ok(true);
                }
                let run = Box::pin(run); // as a batch's (`Batch::launch`)
                let task = tokio::spawn(async move {
                    let frame = run.await;
                    timer.stop(&frame);
                    frame
                });
                self.pending.push_back((proto, Pending::Running(task, footprint)));
            }
        }
        Ok(true)
    }

    /// Shows the command to this node's monitors, unless it was refused before running or
    /// is one they do not see (`cmd::monitor::shown`).
    fn feed_monitors(&self, index: Option<usize>, args: &[bytes::Bytes], job: &Job) {
        let Some(spec) = index.and_then(|index| cmd::SPECS.get(index)) else { return };
        let refused = matches!(job, Job::Now(frame) if cmd::multi::refused_now(frame));
        if !refused && cmd::monitor::shown(spec) {
            let bytes_max = self.shared.options.limits.client_output_bytes_max;
            let line = cmd::monitor::line(spec, &self.client.addr.to_string(), args, bytes_max);
            self.backend.hub().feed_monitors(line);
        }
    }

    /// Remembers the slots a write goes to, for WAIT.
    fn note_written(&mut self, job: &Job) {
        let written = &mut self.client.written;
        match job {
            Job::Run(ops) if ops.write => written.extend(ops.parts.iter().map(|p| p.slot)),
            Job::Transaction(tx) => {
                let writes = tx.ops.iter().filter(|(_, ops)| ops.write);
                written.extend(writes.flat_map(|(_, ops)| ops.parts.iter().map(|p| p.slot)));
            }
            _ => {}
        }
    }

    /// Queues a batchable command in its group's open batch of its kind, or opens one
    /// (once the connection's earlier commands it conflicts with have answered).
    async fn add_to_batch(
        &mut self,
        ops: exec::Ops,
        timer: CommandTimer,
        size: usize,
        proto: Proto,
    ) {
        let (group, write) = (ops.parts[0].group, ops.write);
        let open = self.batches.iter_mut().find(|b| {
            b.group == group && b.write == write && matches!(b.state, BatchState::Open { .. })
        });
        if let Some(batch) = open {
            if let BatchState::Open { commands, timers, bytes } = &mut batch.state {
                let fits = commands.len() < PIPELINE_BATCH_COMMANDS_MAX
                    && *bytes + size <= PIPELINE_BATCH_BYTES_MAX;
                if fits {
                    commands.push(ops);
                    timers.push(timer);
                    *bytes += size;
                    let (id, index) = (batch.id, commands.len() - 1);
                    self.pending.push_back((proto, Pending::InBatch { id, index }));
                    return;
                }
            }
            batch.launch(&self.backend);
        }
        let footprint = Footprint { write, groups: Some(vec![group]) };
        self.settle_conflicts(&footprint).await;
        let id = self.next_batch;
        self.next_batch += 1;
        let state = BatchState::Open { commands: vec![ops], timers: vec![timer], bytes: size };
        self.batches.push_back(Batch { id, group, write, state });
        self.pending.push_back((proto, Pending::InBatch { id, index: 0 }));
    }

    /// Waits, in place, for every queued command and batch that conflicts with `footprint`.
    /// Before any wait, every open batch starts: none waits behind another group's round
    /// trip, and one that conflicts is then awaited like any running command.
    async fn settle_conflicts(&mut self, footprint: &Footprint) {
        let running_conflict = self.pending.iter().any(|(_, pending)| {
            matches!(pending, Pending::Running(_, other) if footprint.conflicts(other))
        });
        let batch_conflict = self.batches.iter().any(|b| {
            !matches!(b.state, BatchState::Done(_)) && footprint.conflicts_with(b.write, b.group)
        });
        if !running_conflict && !batch_conflict {
            return;
        }
        for batch in self.batches.iter_mut() {
            batch.launch(&self.backend);
        }
        for (_, pending) in self.pending.iter_mut() {
            let Pending::Running(task, other) = pending else { continue };
            if footprint.conflicts(other) {
                *pending = Pending::Ready(finish(task).await);
            }
        }
        for batch in self.batches.iter_mut() {
            if footprint.conflicts_with(batch.write, batch.group) {
                batch.settle().await;
            }
        }
    }

    /// The answer to the `index`-th command of batch `id`, once the batch answered.
    async fn batch_answer(&mut self, id: u64, index: usize) -> Frame {
        let Some(at) = self.batches.iter().position(|b| b.id == id) else { return failed() };
        let batch = &mut self.batches[at];
        batch.settle().await;
        let BatchState::Done(frames) = &mut batch.state else { return failed() };
        let frame = frames.get_mut(index).and_then(Option::take);
        if frames.iter().all(Option::is_none) {
            self.batches.remove(at);
        }
        frame.unwrap_or_else(failed)
    }

    /// Starts the open batches, then waits for every queued reply, in order, and encodes it.
    async fn drain(&mut self) -> Result<(), ConnectionError> {
        for batch in self.batches.iter_mut() {
            batch.launch(&self.backend);
        }
        while let Some((proto, pending)) = self.pending.pop_front() {
            let frame = match pending {
                Pending::Ready(frame) => frame,
                Pending::Pushed(frame, bytes) => {
                    self.taken_bytes -= bytes;
                    frame
                }
                Pending::Running(mut task, _) => finish(&mut task).await,
                Pending::InBatch { id, index } => self.batch_answer(id, index).await,
            };
            frame.encode(proto, &mut self.output);
            let output_max = self.shared.options.limits.client_output_bytes_max;
            if self.output.len() as u64 > output_max {
                return Err(ConnectionError::OutputLimit(output_max));
            }
            if self.output.len() >= OUTPUT_FLUSH_BYTES {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// Writes the Pub/Sub messages and MONITOR lines waiting in the connection's mailbox,
    /// oldest first; an error if the mailbox passed its bound (the client did not read
    /// them).
    async fn deliver(&mut self) -> Result<(), ConnectionError> {
        let Some(mailbox) = self.client.mailbox.clone() else { return Ok(()) };
        for delivery in self.take(&mailbox)? {
            delivery.frame().encode(self.client.proto, &mut self.output);
            if self.output.len() >= OUTPUT_FLUSH_BYTES {
                self.flush().await?;
            }
        }
        self.flush().await
    }

    /// What waits in `mailbox`, counted as handed out (`HubStats::delivered`); an error
    /// once it passed its bound.
    fn take(&self, mailbox: &Mailbox) -> Result<Vec<Delivery>, ConnectionError> {
        let deliveries = mailbox
            .take()
            .map_err(|Overflow(bytes_max)| ConnectionError::OutputLimit(bytes_max))?;
        self.backend.hub().count_delivered(deliveries.len());
        Ok(deliveries)
    }

    /// Writes the output. A connection that listens gives up with an error once its
    /// mailbox passes its bound or it is killed meanwhile: a subscriber that stopped
    /// reading is disconnected, not waited for.
    async fn flush(&mut self) -> Result<(), ConnectionError> {
        let Some(mailbox) = self.client.mailbox.clone() else { return self.write_out().await };
        let entry = self.client.entry.clone();
        tokio::select! {
            written = self.write_out() => written,
            () = mailbox.overflow() => Err(ConnectionError::OutputLimit(mailbox.bytes_max())),
            () = entry.killed() => Err(ConnectionError::Killed),
        }
    }

    async fn write_out(&mut self) -> Result<(), ConnectionError> {
        if !self.output.is_empty() {
            self.writer.write_all(&self.output).await?;
            self.shared.stats.output(self.output.len());
            self.output.clear();
        }
        Ok(())
    }
}

/// A command task's answer (a task that panicked answers an error, the connection lives).
async fn finish(task: &mut JoinHandle<Frame>) -> Frame {
    task.await.unwrap_or_else(|_| failed())
}

/// The answer of a command whose run panicked.
fn failed() -> Frame {
    Frame::error("ERR internal error: the command's task failed")
}

// Every command's series, and the unknown commands' (index `SPECS.len()`), are kept by index.
const _: () = assert!(cmd::SPECS.len() < crate::metrics::resp::CACHED_COMMANDS_MAX);

/// Times one command for `RespMetrics`, INFO's `ServerStats` and SLOWLOG, from its
/// preparation to its reply.
struct CommandTimer {
    shared: Arc<Shared>,
    /// The command's index in the command table; its length for an unknown command.
    index: usize,
    started: Instant,
    /// For SLOWLOG, if it may keep the command: its arguments (moved here once prepared,
    /// not copied) and its client.
    kept: Option<(Vec<bytes::Bytes>, Arc<ClientEntry>)>,
}

impl CommandTimer {
    /// `index`: the command's index in the command table, if it is there.
    fn start(shared: Arc<Shared>, index: Option<usize>) -> CommandTimer {
        let index = index.unwrap_or(cmd::SPECS.len());
        CommandTimer { shared, index, started: Instant::now(), kept: None }
    }

    /// Holds the command's arguments for SLOWLOG until its reply, unless it keeps none.
    /// Moved, not copied; they stay alive until then (a RESTORE's payload beside its
    /// decoded value).
    fn keep(&mut self, args: Vec<bytes::Bytes>, client: &Arc<ClientEntry>) {
        let config = self.shared.slowlog.config();
        if config.log_slower_than_us >= 0 && config.max_len > 0 {
            self.kept = Some((args, client.clone()));
        }
    }

    /// The command answered `reply`.
    fn stop(self, reply: &Frame) {
        let elapsed = self.started.elapsed();
        if let Some(metrics) = &self.shared.options.metrics {
            let name = cmd::SPECS.get(self.index).map_or(UNKNOWN_COMMAND, |spec| spec.name);
            metrics.command_at(self.index, name, elapsed);
        }
        self.shared.stats.command(self.index, elapsed, reply);
        if let Some((args, client)) = self.kept {
            // As in Redis, a command refused before it runs is never kept, nor one queued
            // in a transaction. EXEC is kept whole (its commands run as one request), where
            // Redis keeps each of its commands and not EXEC.
            let queued = matches!(reply, Frame::Simple(text) if text == "QUEUED");
            let slow = self.shared.slowlog.is_slow(elapsed);
            if slow && !queued && !super::stats::is_rejected(reply) {
                self.shared.slowlog.add(&args, elapsed, client.addr.to_string(), client.name());
            }
        }
    }
}

/// Resolves once `mailbox` passed its bound (never without one).
async fn overflowed(mailbox: Option<&Mailbox>) {
    match mailbox {
        Some(mailbox) => mailbox.overflow().await,
        None => std::future::pending().await,
    }
}

/// Resolves when `mailbox` has messages (never without one).
async fn posted(mailbox: Option<&Mailbox>) {
    match mailbox {
        Some(mailbox) => mailbox.posted().await,
        None => std::future::pending().await,
    }
}

/// Resolves once the client closed its end (or the socket failed), reading what it sends
/// meanwhile into `stash`, up to `room` bytes (then it waits, reading no more).
async fn gone(reader: &mut OwnedReadHalf, stash: &mut BytesMut, room: usize, stats: &ServerStats) {
    while stash.len() < room {
        let left = room - stash.len();
        let mut space = (&mut *stash).limit(left);
        match reader.read_buf(&mut space).await {
            Ok(0) | Err(_) => return,
            Ok(bytes) => stats.input(bytes),
        }
    }
    std::future::pending().await
}
