//! Opening a tunnel stream (outbound) and reading its header (inbound): the IO around the
//! pure codec in [`crate::header`].

use std::time::{Duration, Instant};

use quinn::{RecvStream, SendStream};

use crate::header::{Decoded, FrameError, Response, StreamHeader};
use crate::peers::{PeerError, PeerPool};

/// Why reading a frame from a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadFrameError {
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended first.
    #[error("the stream ended before a whole frame")]
    Ended,
    /// The stream failed.
    #[error("reading the stream: {0}")]
    Read(#[from] quinn::ReadError),
}

/// Reads one frame from `recv` with `decode`; returns it and any bytes after it.
pub async fn read_frame<T>(
    recv: &mut RecvStream,
    limit: usize,
    decode: fn(&[u8]) -> Decoded<T>,
) -> Result<(T, Vec<u8>), ReadFrameError> {
    let mut buf = Vec::with_capacity(256);
    loop {
        if let Some((frame, used)) = decode(&buf)? {
            return Ok((frame, buf.split_off(used)));
        }
        if buf.len() >= limit {
            return Err(FrameError::TooLong(buf.len()).into());
        }
        match recv.read_chunk(limit - buf.len(), true).await? {
            Some(chunk) => buf.extend_from_slice(&chunk.bytes),
            None => return Err(ReadFrameError::Ended),
        }
    }
}

/// A stream the peer accepted.
#[derive(Debug)]
pub struct Opened {
    /// Towards the peer.
    pub send: SendStream,
    /// From the peer.
    pub recv: RecvStream,
    /// Bytes the peer sent after its answer.
    pub early: Vec<u8>,
    /// Time from opening to the answer.
    pub latency: Duration,
    /// The peer gateway's address.
    pub peer: std::net::SocketAddr,
}

/// Why no stream could be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No connection to the peer.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The peer answered with a refusal.
    #[error("refused by the peer: {} ({})", .0.status, .0.message)]
    Refused(Response),
    /// The stream failed or the answer did not come in time, twice.
    #[error("no answer from the peer: {0}")]
    NoAnswer(String),
}

/// Opens a stream to `cluster`'s gateway, sends `header` and waits for the answer, all
/// within `timeout`. If the QUIC connection turns out to be dead (the peer restarted or
/// went away), it is dropped from the pool and the open retried once on a fresh one;
/// nothing of the client's has been sent yet, so the retry is safe. A stream that fails
/// on a live connection is reset on its own: the other streams of the connection go on.
pub async fn open(
    pool: &PeerPool,
    cluster: &str,
    header: &StreamHeader,
    timeout: Duration,
) -> Result<Opened, OpenError> {
    let encode = |connection: &quinn::Connection| {
        // Extensions only to a peer that reads them (ALPN isthmus/1.1).
        let bytes = if crate::quic::speaks_extensions(connection) {
            header.encode()
        } else {
            StreamHeader {
                trace: None,
                ..header.clone()
            }
            .encode()
        };
        bytes.map_err(|e| OpenError::NoAnswer(format!("cannot encode the header: {e}")))
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    for _ in 0..2 {
        let connection = tokio::time::timeout_at(deadline, pool.connection(cluster))
            .await
            .map_err(|_| OpenError::NoAnswer(format!("no connection within {timeout:?}")))??;
        let bytes = encode(&connection)?;
        let started = Instant::now();
        let (mut send, mut recv) =
            match tokio::time::timeout_at(deadline, connection.open_bi()).await {
                Ok(Ok(streams)) => streams,
                Ok(Err(e)) => {
                    last = e.to_string();
                    pool.discard_if_dead(cluster, &connection).await;
                    continue;
                }
                Err(_) => {
                    return Err(OpenError::NoAnswer(format!(
                        "no stream within {timeout:?} (the peer allows no more)"
                    )));
                }
            };
        let exchange = tokio::time::timeout_at(deadline, async {
            send.write_all(&bytes).await.map_err(|e| e.to_string())?;
            read_frame(
                &mut recv,
                4 + 3 + crate::header::MAX_MESSAGE,
                Response::decode,
            )
            .await
            .map_err(|e| e.to_string())
        })
        .await;
        match exchange {
            Ok(Ok((response, early))) => {
                if response.status != crate::header::Status::Ok {
                    return Err(OpenError::Refused(response));
                }
                return Ok(Opened {
                    send,
                    recv,
                    early,
                    latency: started.elapsed(),
                    peer: connection.remote_address(),
                });
            }
            Ok(Err(reason)) => last = reason,
            Err(_) => last = format!("no answer within {timeout:?}"),
        }
        // Reset, not finish: the peer must not take a half-sent header as a request.
        let _ = send.reset(quinn::VarInt::from_u32(crate::splice::ABORT_CODE));
        let _ = recv.stop(quinn::VarInt::from_u32(crate::splice::ABORT_CODE));
        if !pool.discard_if_dead(cluster, &connection).await {
            break;
        }
    }
    Err(OpenError::NoAnswer(last))
}
