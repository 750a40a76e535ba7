//! An interop shim on the Workload API's socket: gRPC's C core (grpc-python, so
//! py-spiffe) sends the socket path as the HTTP/2 `:authority`, with each `/` escaped as
//! `%2F` (`tmp%2Fagent.sock`), and h2 refuses any authority holding a `%` outside the
//! userinfo (`PROTOCOL_ERROR`, hyperium/tonic#742). Such callers are exactly the
//! SPIFFE clients the API is for, and the authority means nothing on a Unix socket, so
//! the client's bytes pass through a rewriter that replaces each `%` of a literal,
//! plain (not Huffman-coded) `:authority` value with `_` — the same length, so frames
//! and the HPACK dynamic table stay as the client built them. Everything else passes
//! untouched. Pure ([`Rewriter`]); [`AuthorityFix`] only feeds it.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: usize = 24;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// HPACK's static table index of `:authority`.
const AUTHORITY_INDEX: u64 = 1;

/// The largest frame the rewriter holds back to fix: the server's
/// `SETTINGS_MAX_FRAME_SIZE` (HTTP/2's default, which the Workload API's server keeps).
/// A longer frame is a protocol error h2 answers at its 9-byte header, so it is passed
/// on as it comes instead of being buffered: a client announcing a 16 MiB frame must not
/// make the gateway hold 16 MiB before h2 can refuse it.
pub const MAX_FRAME: usize = 16_384;

/// HTTP/2 frames from the client: a header block frame is buffered whole (at most
/// [`MAX_FRAME`] bytes) and released fixed; every other frame passes on as it arrives.
#[derive(Debug, Default)]
pub struct Rewriter {
    pending: Vec<u8>,
    preface_done: bool,
    /// Bytes of the current frame still to pass on unbuffered.
    passing: usize,
}

impl Rewriter {
    /// Takes bytes from the client; returns what may go on to the server now. What it
    /// holds back is never more than a preface or one frame of [`MAX_FRAME`] bytes.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() + self.pending.len());
        if self.passing > 0 {
            // Nothing is pending while a frame passes: it was all released first.
            let n = self.passing.min(bytes.len());
            out.extend_from_slice(&bytes[..n]);
            self.passing -= n;
            bytes = &bytes[n..];
        }
        self.pending.extend_from_slice(bytes);
        loop {
            if !self.preface_done {
                if self.pending.len() < PREFACE {
                    return out;
                }
                out.extend(self.pending.drain(..PREFACE));
                self.preface_done = true;
            }
            if self.pending.len() < 9 {
                return out;
            }
            let len = (usize::from(self.pending[0]) << 16)
                | (usize::from(self.pending[1]) << 8)
                | usize::from(self.pending[2]);
            let (kind, flags) = (self.pending[3], self.pending[4]);
            let header_block = kind == HEADERS || kind == CONTINUATION;
            if !header_block || len > MAX_FRAME {
                let here = self.pending.len().min(9 + len);
                out.extend(self.pending.drain(..here));
                self.passing = 9 + len - here;
                if self.passing > 0 {
                    return out;
                }
                continue;
            }
            if self.pending.len() < 9 + len {
                return out;
            }
            let mut frame: Vec<u8> = self.pending.drain(..9 + len).collect();
            let mut start = 9;
            let mut end = frame.len();
            if kind == HEADERS && flags & PADDED != 0 {
                let pad = usize::from(frame.get(9).copied().unwrap_or(0));
                start += 1;
                end = end.saturating_sub(pad);
            }
            if kind == HEADERS && flags & PRIORITY != 0 {
                start += 5;
            }
            if start <= end {
                fix_block(&mut frame[start..end]);
            }
            out.extend(frame);
        }
    }

    /// What it still holds when the client's bytes end (never a whole frame): it goes
    /// on as it is, for h2 to judge.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// How many bytes it holds back now.
    pub fn held(&self) -> usize {
        self.pending.len()
    }
}

/// An HPACK integer with an `n`-bit prefix at `at`: its value and where it ends.
fn integer(block: &[u8], at: usize, n: u32) -> Option<(u64, usize)> {
    let mask = (1u16 << n) - 1;
    let first = u64::from(u16::from(*block.get(at)?) & mask);
    if first < u64::from(mask) {
        return Some((first, at + 1));
    }
    let (mut value, mut shift, mut i) = (first, 0u32, at + 1);
    loop {
        let b = *block.get(i)?;
        value = value.checked_add(u64::from(b & 0x7f).checked_shl(shift)?)?;
        i += 1;
        if b & 0x80 == 0 {
            return Some((value, i));
        }
        shift += 7;
        if shift > 56 {
            return None;
        }
    }
}

/// A string at `at`: whether Huffman-coded, its bytes' range, where it ends.
fn string(block: &[u8], at: usize) -> Option<(bool, std::ops::Range<usize>)> {
    let huffman = *block.get(at)? & 0x80 != 0;
    let (len, start) = integer(block, at, 7)?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= block.len()).then_some((huffman, start..end))
}

/// Replaces `%` with `_` in each plain literal `:authority` value of a header block.
/// Stops at anything it does not understand (the block then passes as it is).
fn fix_block(block: &mut [u8]) {
    let mut at = 0;
    while at < block.len() {
        let b = block[at];
        if b & 0x80 != 0 {
            // Indexed field.
            let Some((_, next)) = integer(block, at, 7) else {
                return;
            };
            at = next;
            continue;
        }
        if b & 0xe0 == 0x20 {
            // Dynamic table size update.
            let Some((_, next)) = integer(block, at, 5) else {
                return;
            };
            at = next;
            continue;
        }
        // A literal: incremental indexing (6-bit index), else without or never indexed.
        let prefix = if b & 0x40 != 0 { 6 } else { 4 };
        let Some((index, mut next)) = integer(block, at, prefix) else {
            return;
        };
        let is_authority = if index == 0 {
            let Some((huffman, name)) = string(block, next) else {
                return;
            };
            next = name.end;
            !huffman && &block[name] == b":authority"
        } else {
            index == AUTHORITY_INDEX
        };
        let Some((huffman, value)) = string(block, next) else {
            return;
        };
        if is_authority && !huffman {
            for byte in &mut block[value.clone()] {
                if *byte == b'%' {
                    *byte = b'_';
                }
            }
        }
        at = value.end;
    }
}

/// A connection whose client bytes go through a [`Rewriter`].
#[derive(Debug)]
pub(crate) struct AuthorityFix<S> {
    inner: S,
    rewriter: Rewriter,
    ready: Vec<u8>,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            rewriter: Rewriter::default(),
            ready: Vec::new(),
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.drain(..n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                let rest = this.rewriter.finish();
                if rest.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.ready = rest;
                continue;
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.ready = this.rewriter.feed(read.filled());
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for AuthorityFix<tokio::net::UnixStream> {
    type ConnectInfo = tonic::transport::server::UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What grpc-python sent (captured): the preface, an empty SETTINGS, and HEADERS
    /// whose `:authority` is `tmp%2Fsniff.sock`, a literal with a literal name.
    fn captured() -> Vec<u8> {
        let mut block = b"\x40\x05:path\x1f/SpiffeWorkloadAPI/FetchJWTSVID".to_vec();
        block.extend_from_slice(b"\x40\x0a:authority\x10tmp%2Fsniff.sock\x83\x86");
        block.extend_from_slice(b"\x41\x0btmp%2Fb.sock");
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        let len = block.len();
        #[allow(clippy::cast_possible_truncation)]
        out.extend_from_slice(&[0, (len >> 8) as u8, len as u8, 1, 4, 0, 0, 0, 1]);
        out.extend_from_slice(&block);
        out
    }

    #[test]
    fn the_authority_loses_its_percent_and_nothing_else_changes() {
        let input = captured();
        let mut whole = Rewriter::default();
        let fixed = whole.feed(&input);
        assert_eq!(fixed.len(), input.len(), "same length: framing untouched");
        let text = String::from_utf8_lossy(&fixed);
        assert!(
            text.contains(":authority\u{10}tmp_2Fsniff.sock"),
            "{text:?}"
        );
        assert!(text.contains("tmp_2Fb.sock"), "the indexed-name form too");
        assert!(
            text.contains("/SpiffeWorkloadAPI/FetchJWTSVID"),
            "other headers untouched"
        );
        // Fed a byte at a time, the same comes out.
        let mut trickle = Rewriter::default();
        let bytes: Vec<u8> = input.iter().flat_map(|b| trickle.feed(&[*b])).collect();
        assert_eq!(bytes, fixed);
    }

    #[test]
    fn a_frame_it_does_not_fix_passes_as_it_comes_however_long_it_says_it_is() {
        let mut input = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // DATA on stream 1, announced at 16 MiB - 1: h2 refuses it at its header.
        input.extend_from_slice(&[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]);
        input.extend(std::iter::repeat_n(b'%', 100_000));
        let mut rewriter = Rewriter::default();
        let mut out = Vec::new();
        for chunk in input.chunks(8192) {
            out.extend(rewriter.feed(chunk));
            assert_eq!(rewriter.held(), 0, "nothing of a passing frame is held");
        }
        assert_eq!(out, input);
        // A header block frame over the frame size limit passes unfixed too.
        let mut headers = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let len = MAX_FRAME + 1;
        #[allow(clippy::cast_possible_truncation)]
        headers.extend_from_slice(&[
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            1,
            4,
            0,
            0,
            0,
            1,
        ]);
        headers.extend_from_slice(b"\x40\x0a:authority\x03a%b");
        let mut rewriter = Rewriter::default();
        assert_eq!(rewriter.feed(&headers), headers);
        assert_eq!(rewriter.held(), 0);
    }

    #[test]
    fn a_block_it_does_not_understand_passes_as_it_is() {
        let mut block = vec![
            0x40, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        let before = block.clone();
        fix_block(&mut block);
        assert_eq!(block, before);
        let mut truncated = b"\x40\x0a:autho".to_vec();
        fix_block(&mut truncated);
        assert_eq!(truncated, b"\x40\x0a:autho");
    }
}
