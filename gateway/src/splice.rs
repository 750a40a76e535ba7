//! Carrying bytes between a TCP connection and a QUIC stream, both ways, with the TCP
//! semantics kept: a half-close becomes a stream finish and back, a reset becomes a
//! stream reset and back, and a connection idle in both directions is closed.
//!
//! Backpressure is end to end: each direction holds at most one chunk, and waits for
//! the other side to take it before reading more. An idle connection holds no buffer.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use quinn::{ReadError, RecvStream, SendStream, VarInt};
use tokio::io::AsyncWriteExt;
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

/// How one direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The sender finished (FIN); passed on as a finish.
    Finished,
    /// The sender reset; passed on as a reset.
    Reset,
    /// Something failed; the whole connection is aborted.
    Failed,
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
pub async fn splice(
    tcp: TcpStream,
    mut send: SendStream,
    mut recv: RecvStream,
    early: &[u8],
    idle: Duration,
    counters: &Counters,
    cut: &CancellationToken,
) -> Summary {
    let start = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let (mut rd, mut wr) = tcp.into_split();
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
            if matches!(up_end, Some(Ending::Reset | Ending::Failed))
                || matches!(down_end, Some(Ending::Reset | Ending::Failed))
            {
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
        if let Ok(tcp) = rd.reunite(wr) {
            let _ = tcp.set_zero_linger();
        }
    }
    summary
}

fn touch(activity: &AtomicU64, start: Instant) {
    let now = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    activity.store(now, Ordering::Relaxed);
}

async fn tcp_to_quic(
    rd: &mut OwnedReadHalf,
    send: &mut SendStream,
    (counter, tally): (&Counter, &Tally),
    activity: &AtomicU64,
    start: Instant,
) -> Ending {
    loop {
        if rd.readable().await.is_err() {
            return Ending::Failed;
        }
        // The buffer exists only while there are bytes to move.
        let mut buf = BytesMut::with_capacity(CHUNK);
        match rd.try_read_buf(&mut buf) {
            Ok(0) => {
                return if send.finish().is_ok() {
                    Ending::Finished
                } else {
                    Ending::Failed
                };
            }
            Ok(n) => {
                touch(activity, start);
                counter.inc_by(n as u64);
                tally.add(&buf);
                // quinn keeps a chunk until it is acknowledged; a small read must not pin
                // a whole 64 KiB allocation for that long.
                let chunk = if n < CHUNK / 4 {
                    Bytes::copy_from_slice(&buf)
                } else {
                    buf.freeze()
                };
                if send.write_chunk(chunk).await.is_err() {
                    return Ending::Failed;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
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
    wr: &mut OwnedWriteHalf,
    early: &[u8],
    (counter, tally): (&Counter, &Tally),
    activity: &AtomicU64,
    start: Instant,
) -> Ending {
    if !early.is_empty() {
        counter.inc_by(early.len() as u64);
        tally.add(early);
        if let Err(e) = wr.write_all(early).await {
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
                if let Err(e) = write_all_vectored(wr, &mut chunks[..n]).await {
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
            Err(_) => return Ending::Failed,
        }
    }
}

/// Writes every byte of `chunks`, as few syscalls as the socket allows; empties them.
async fn write_all_vectored(wr: &mut OwnedWriteHalf, chunks: &mut [Bytes]) -> io::Result<()> {
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
