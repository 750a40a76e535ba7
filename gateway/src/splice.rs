//! Carrying bytes between a local connection (plain TCP, or a workload's TLS over TCP)
//! and a QUIC stream, both ways, with the TCP semantics kept: a half-close becomes a
//! stream finish and back, a reset becomes a stream reset and back, and a connection
//! idle in both directions is closed. "TCP" below is that local side, whichever it is.
//!
//! Backpressure is end to end: each direction holds at most one chunk, and waits for
//! the other side to take it before reading more. An idle plain TCP connection holds no
//! buffer.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use quinn::{ReadError, RecvStream, SendStream, VarInt};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest chunk read from TCP at once.
pub const CHUNK: usize = 64 * 1024;
/// Most received stream chunks written to TCP in one vectored write.
const BATCH: usize = 32;

/// QUIC application error code sent when the TCP side was reset.
pub const RESET_CODE: u32 = 1;
/// QUIC application error code sent when the connection idled out or failed.
pub const ABORT_CODE: u32 = 2;

/// The local side of a spliced connection.
pub trait Downstream: Send + Sized {
    /// What bytes are read from.
    type Read: ReadChunk;
    /// What bytes are written to.
    type Write: AsyncWrite + Unpin + Send;

    /// The two directions, to be driven at once.
    fn split(self) -> (Self::Read, Self::Write);

    /// Ends the connection with a TCP RST (what [`Self::split`] returned, put back).
    fn abort(read: Self::Read, write: Self::Write);

    /// Ends the connection with a TCP RST, so the client sees a failure at once rather
    /// than an empty reply.
    fn reset(self) {
        let (read, write) = self.split();
        Self::abort(read, write);
    }
}

/// The reading direction of a [`Downstream`].
pub trait ReadChunk: Send {
    /// The next bytes, `None` at the end of the stream.
    fn read_chunk(&mut self) -> impl Future<Output = io::Result<Option<BytesMut>>> + Send;
}

impl Downstream for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;

    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }

    fn abort(read: OwnedReadHalf, write: OwnedWriteHalf) {
        if let Ok(tcp) = read.reunite(write) {
            let _ = tcp.set_zero_linger();
        }
    }
}

impl ReadChunk for OwnedReadHalf {
    async fn read_chunk(&mut self) -> io::Result<Option<BytesMut>> {
        loop {
            self.readable().await?;
            // The buffer exists only while there are bytes to move.
            let mut buf = BytesMut::with_capacity(CHUNK);
            match self.try_read_buf(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(_) => return Ok(Some(buf)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A workload's mutual-TLS connection, its handshake done.
pub(crate) type WorkloadTls = tokio_rustls::server::TlsStream<crate::prefixed::Prefixed>;

/// Largest TLS record's plaintext: what one read of a TLS connection gives at most.
const TLS_RECORD: usize = 16 * 1024;

impl Downstream for WorkloadTls {
    type Read = ReadHalf<WorkloadTls>;
    type Write = WriteHalf<WorkloadTls>;

    fn split(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }

    fn abort(read: Self::Read, write: Self::Write) {
        let tls = read.unsplit(write);
        let _ = tls.get_ref().0.tcp().set_zero_linger();
    }
}

impl ReadChunk for ReadHalf<WorkloadTls> {
    async fn read_chunk(&mut self) -> io::Result<Option<BytesMut>> {
        // rustls holds a decrypted record anyway; a read waits with one record's room.
        let mut buf = BytesMut::with_capacity(TLS_RECORD);
        // A TCP FIN without a close_notify is an error here (rustls: `UnexpectedEof`), and
        // is passed on as a failure, not a finish: anyone on the path can send a FIN, and
        // an app that frames by the end of the connection must not take a cut-off stream
        // for a whole one.
        match self.read_buf(&mut buf).await {
            Ok(0) => Ok(None),
            Ok(_) => Ok(Some(buf)),
            Err(e) => Err(e),
        }
    }
}

/// How one direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The sender finished (FIN); passed on as a finish.
    Finished,
    /// The sender reset; passed on as a reset.
    Reset,
    /// Something failed; the whole connection is aborted.
    Failed,
    /// The stream's QUIC connection was lost (the peer gateway went away or stopped
    /// answering); the whole connection is aborted.
    PeerLost,
}

impl Summary {
    /// Whether the QUIC connection under the stream was lost.
    pub fn peer_lost(&self) -> bool {
        self.tcp_to_quic == Ending::PeerLost || self.quic_to_tcp == Ending::PeerLost
    }
}

/// How a spliced connection ended and how much it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// TCP to QUIC direction.
    pub tcp_to_quic: Ending,
    /// QUIC to TCP direction.
    pub quic_to_tcp: Ending,
    /// Whether the idle timeout closed it.
    pub idle_timeout: bool,
    /// Whether the drain deadline cut it.
    pub cut: bool,
    /// What went from TCP to the stream.
    pub from_tcp: Carried,
    /// What went from the stream to TCP (the early bytes included).
    pub from_quic: Carried,
}

/// What one direction of a spliced connection carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    /// Bytes.
    pub bytes: u64,
    /// The first byte, if any (whether the app speaks TLS shows in it).
    pub first: Option<u8>,
}

/// A direction's running [`Carried`], readable after its future is dropped.
#[derive(Debug, Default)]
struct Tally {
    bytes: AtomicU64,
    /// The first byte plus one; 0 while none was carried.
    first: std::sync::atomic::AtomicU16,
}

impl Tally {
    fn add(&self, chunk: &[u8]) {
        if let Some(&b) = chunk.first() {
            if self.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed) == 0 {
                self.first.store(u16::from(b) + 1, Ordering::Relaxed);
            }
        }
    }

    fn carried(&self) -> Carried {
        let first = self.first.load(Ordering::Relaxed);
        Carried {
            bytes: self.bytes.load(Ordering::Relaxed),
            first: first.checked_sub(1).and_then(|b| u8::try_from(b).ok()),
        }
    }
}

/// Byte counters, one per direction.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Bytes read from TCP and sent on the stream.
    pub tcp_to_quic: Counter,
    /// Bytes received on the stream and written to TCP.
    pub quic_to_tcp: Counter,
}

/// How long a cleanly finished stream may take to have its last bytes acknowledged.
const ACK_WAIT: Duration = Duration::from_secs(10);

/// Splices `tcp` with the stream (`send`, `recv`) until both directions end, one side
/// resets, nothing moves for `idle`, or `cut` is cancelled (a drain's deadline). `early`
/// bytes (already read from the stream) are written to TCP first.
pub async fn splice<D: Downstream>(
    tcp: D,
    mut send: SendStream,
    mut recv: RecvStream,
    early: &[u8],
    idle: Duration,
    counters: &Counters,
    cut: &CancellationToken,
) -> Summary {
    let start = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let (mut rd, mut wr) = tcp.split();
    let mut up_end = None;
    let mut down_end = None;
    let mut idle_timeout = false;
    let mut was_cut = false;
    let (from_tcp, from_quic) = (Tally::default(), Tally::default());
    {
        let up = tcp_to_quic(
            &mut rd,
            &mut send,
            (&counters.tcp_to_quic, &from_tcp),
            &activity,
            start,
        );
        let down = quic_to_tcp(
            &mut recv,
            &mut wr,
            early,
            (&counters.quic_to_tcp, &from_quic),
            &activity,
            start,
        );
        let watchdog = idle_watchdog(&activity, start, idle);
        tokio::pin!(up, down, watchdog);
        while up_end.is_none() || down_end.is_none() {
            tokio::select! {
                end = &mut up, if up_end.is_none() => up_end = Some(end),
                end = &mut down, if down_end.is_none() => down_end = Some(end),
                () = &mut watchdog => {
                    idle_timeout = true;
                    break;
                }
                () = cut.cancelled() => {
                    was_cut = true;
                    break;
                }
            }
            let ended = |e: Option<Ending>| {
                matches!(e, Some(Ending::Reset | Ending::Failed | Ending::PeerLost))
            };
            if ended(up_end) || ended(down_end) {
                break;
            }
        }
    }
    let summary = Summary {
        tcp_to_quic: up_end.unwrap_or(Ending::Failed),
        quic_to_tcp: down_end.unwrap_or(Ending::Failed),
        idle_timeout,
        cut: was_cut,
        from_tcp: from_tcp.carried(),
        from_quic: from_quic.carried(),
    };
    let clean = summary.tcp_to_quic == Ending::Finished && summary.quic_to_tcp == Ending::Finished;
    if clean {
        // Keep the task (and a drain waiting on it) until the peer has the last bytes.
        let _ = tokio::time::timeout(ACK_WAIT.min(idle), send.stopped()).await;
    } else {
        // A reset on either side is passed on as a reset (code 1); anything else aborts.
        let reset = summary.tcp_to_quic == Ending::Reset || summary.quic_to_tcp == Ending::Reset;
        let code = if reset { RESET_CODE } else { ABORT_CODE };
        let _ = send.reset(VarInt::from_u32(code));
        let _ = recv.stop(VarInt::from_u32(code));
        // Abort the TCP side with RST rather than FIN, so the peer sees a failure.
        D::abort(rd, wr);
    }
    summary
}

fn touch(activity: &AtomicU64, start: Instant) {
    let now = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    activity.store(now, Ordering::Relaxed);
}

async fn tcp_to_quic(
    rd: &mut impl ReadChunk,
    send: &mut SendStream,
    (counter, tally): (&Counter, &Tally),
    activity: &AtomicU64,
    start: Instant,
) -> Ending {
    loop {
        match rd.read_chunk().await {
            Ok(None) => {
                return if send.finish().is_ok() {
                    Ending::Finished
                } else {
                    Ending::PeerLost
                };
            }
            Ok(Some(buf)) => {
                let n = buf.len();
                touch(activity, start);
                counter.inc_by(n as u64);
                tally.add(&buf);
                // quinn keeps a chunk until it is acknowledged; a small read must not pin
                // a whole read buffer's allocation for that long.
                let chunk = if n < buf.capacity() / 4 {
                    Bytes::copy_from_slice(&buf)
                } else {
                    buf.freeze()
                };
                match send.write_chunk(chunk).await {
                    Ok(()) => {}
                    Err(quinn::WriteError::ConnectionLost(_)) => return Ending::PeerLost,
                    Err(_) => return Ending::Failed,
                }
            }
            Err(e) => return tcp_failure(&e),
        }
    }
}

/// A TCP error: the peer's RST is a reset to pass on; anything else aborts.
fn tcp_failure(err: &io::Error) -> Ending {
    if is_reset(err) {
        Ending::Reset
    } else {
        Ending::Failed
    }
}

async fn quic_to_tcp(
    recv: &mut RecvStream,
    wr: &mut (impl AsyncWrite + Unpin),
    early: &[u8],
    (counter, tally): (&Counter, &Tally),
    activity: &AtomicU64,
    start: Instant,
) -> Ending {
    if !early.is_empty() {
        counter.inc_by(early.len() as u64);
        tally.add(early);
        if let Err(e) = async {
            wr.write_all(early).await?;
            wr.flush().await
        }
        .await
        {
            return tcp_failure(&e);
        }
    }
    // Several received frames go out in one vectored write: one syscall for what may be
    // dozens of QUIC packets' worth of data.
    let mut chunks: [Bytes; BATCH] = Default::default();
    loop {
        match recv.read_chunks(&mut chunks).await {
            Ok(Some(n)) => {
                touch(activity, start);
                let bytes: usize = chunks[..n].iter().map(Bytes::len).sum();
                counter.inc_by(bytes as u64);
                for chunk in &chunks[..n] {
                    tally.add(chunk);
                }
                // The flush matters for TLS, whose writer may keep the last record
                // until asked; for TCP it does nothing.
                let written = match write_all_vectored(wr, &mut chunks[..n]).await {
                    Ok(()) => wr.flush().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    return tcp_failure(&e);
                }
            }
            Ok(None) => {
                return if wr.shutdown().await.is_ok() {
                    Ending::Finished
                } else {
                    Ending::Failed
                };
            }
            Err(ReadError::Reset(_)) => return Ending::Reset,
            Err(ReadError::ConnectionLost(_)) => return Ending::PeerLost,
            Err(_) => return Ending::Failed,
        }
    }
}

/// Writes every byte of `chunks`, as few syscalls as the socket allows; empties them.
async fn write_all_vectored(
    wr: &mut (impl AsyncWrite + Unpin),
    chunks: &mut [Bytes],
) -> io::Result<()> {
    let mut first = 0;
    while first < chunks.len() {
        let slices: Vec<io::IoSlice<'_>> = chunks[first..]
            .iter()
            .map(|c| io::IoSlice::new(c))
            .collect();
        let mut written = wr.write_vectored(&slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while first < chunks.len() && written >= chunks[first].len() {
            written -= chunks[first].len();
            chunks[first] = Bytes::new();
            first += 1;
        }
        if written > 0 {
            bytes::Buf::advance(&mut chunks[first], written);
        }
    }
    Ok(())
}

async fn idle_watchdog(activity: &AtomicU64, start: Instant, idle: Duration) {
    loop {
        let last = start + Duration::from_millis(activity.load(Ordering::Relaxed));
        let deadline = last + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}
