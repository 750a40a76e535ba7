//! The gateway's QUIC socket: quinn's own UDP socket with every GSO batch kept within
//! what the kernel takes in one `sendmsg`.
//!
//! quinn hands its socket up to ten datagrams of the path MTU at once (one buffer and a
//! `UDP_SEGMENT` size). With 1,452-byte datagrams that is 14.5 KB; once MTU discovery
//! grows datagrams on a loopback or jumbo-frame path, ten of them pass the 64 KB a UDP
//! send may carry, the kernel answers `EMSGSIZE`, and quinn-udp 0.5 drops the batch
//! without a word (quinn-rs/quinn#2199, #2653). Every such batch then looks lost, and
//! black-hole detection sends the path back to 1,200 bytes. Here an oversized batch is
//! sent as several that fit.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

/// The most bytes one GSO send may carry: the largest IPv4 UDP payload.
pub const MAX_GSO_BYTES: usize = 65_507;

/// A quinn socket whose GSO batches never pass [`MAX_GSO_BYTES`].
pub struct BoundedGso(Arc<dyn AsyncUdpSocket>);

impl BoundedGso {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn AsyncUdpSocket>) -> Arc<Self> {
        Arc::new(Self(inner))
    }
}

impl fmt::Debug for BoundedGso {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BoundedGso").field(&self.0).finish()
    }
}

/// The pieces `transmit` goes out as: itself when it fits, else runs of whole segments
/// that do (the last may be shorter, as GSO allows).
pub fn pieces<'a>(transmit: &Transmit<'a>) -> Vec<Transmit<'a>> {
    let Some(segment) = transmit.segment_size.filter(|s| *s > 0) else {
        return vec![Transmit { ..*transmit }];
    };
    if transmit.contents.len() <= MAX_GSO_BYTES {
        return vec![Transmit { ..*transmit }];
    }
    let per_send = (MAX_GSO_BYTES / segment).max(1) * segment;
    transmit
        .contents
        .chunks(per_send)
        .map(|contents| Transmit {
            contents,
            // A single datagram goes without a segment size: some kernels refuse a
            // segment size larger than the buffer.
            segment_size: (contents.len() > segment).then_some(segment),
            ..*transmit
        })
        .collect()
}

impl AsyncUdpSocket for BoundedGso {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.0.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        if transmit
            .segment_size
            .is_none_or(|_| transmit.contents.len() <= MAX_GSO_BYTES)
        {
            return self.0.try_send(transmit);
        }
        // Once a piece is out, the batch counts as sent: were a later piece to block
        // and the error returned, quinn would send the whole batch again, the first
        // pieces twice. The pieces not sent are lost, as on a full link, and loss
        // recovery and congestion control take them from there.
        let mut sent_any = false;
        for piece in pieces(transmit) {
            match self.0.try_send(&piece) {
                Ok(()) => sent_any = true,
                Err(e) if sent_any && e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.0.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.0.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.0.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transmit(contents: &[u8], segment_size: Option<usize>) -> Transmit<'_> {
        Transmit {
            destination: "127.0.0.1:1".parse().unwrap(),
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        }
    }

    #[test]
    fn an_oversized_batch_goes_as_batches_that_fit_and_nothing_else_changes() {
        let bytes = vec![7u8; 10 * 9000 - 100];
        let split = pieces(&transmit(&bytes, Some(9000)));
        let sizes: Vec<(usize, Option<usize>)> = split
            .iter()
            .map(|t| (t.contents.len(), t.segment_size))
            .collect();
        assert_eq!(sizes, [(63_000, Some(9000)), (26_900, Some(9000))]);
        assert_eq!(
            split.iter().map(|t| t.contents.len()).sum::<usize>(),
            bytes.len()
        );
        // The last piece holding one datagram carries no segment size.
        let bytes = vec![7u8; 8 * 9000];
        let split = pieces(&transmit(&bytes, Some(9000)));
        assert_eq!(split[1].contents.len(), 9000);
        assert_eq!(split[1].segment_size, None);
        // What fits is passed on as it is.
        let bytes = vec![7u8; 10 * 1452];
        let split = pieces(&transmit(&bytes, Some(1452)));
        assert_eq!(split.len(), 1);
        assert_eq!(split[0].segment_size, Some(1452));
    }
}
