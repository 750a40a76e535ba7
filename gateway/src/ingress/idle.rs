//! The idle clock of one terminated ingress connection: how many of its requests are in
//! progress (from the request's head until its response body is sent or dropped) and
//! when the last one ended. HTTP/1.1's head-read bound does not cover a connection that
//! holds no request at all, and HTTP/2 has none: without this, a client past the TLS
//! handshake that sends nothing (or only the HTTP/2 preface) held its connection for
//! ever. The connection is closed once nothing has been in progress for
//! `timeouts.idle`, the gateway's idle bound for every connection it carries.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::Notify;
use tokio::time::Instant;

/// One connection's requests in progress and the end of its last.
#[derive(Debug)]
pub(super) struct Activity {
    in_progress: AtomicUsize,
    last_end: Mutex<Instant>,
    ended: Notify,
}

impl Activity {
    /// A connection that starts now, with nothing in progress.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            in_progress: AtomicUsize::new(0),
            last_end: Mutex::new(Instant::now()),
            ended: Notify::new(),
        })
    }

    /// A request begins; it is in progress until the guard drops.
    pub(super) fn begin(self: &Arc<Self>) -> InProgress {
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        InProgress(self.clone())
    }

    /// When the connection has been idle for `idle`: `None` while a request is in
    /// progress.
    fn idle_deadline(&self, idle: std::time::Duration) -> Option<Instant> {
        let last = *self.last_end.lock().unwrap_or_else(|p| p.into_inner());
        (self.in_progress.load(Ordering::SeqCst) == 0).then_some(last + idle)
    }

    /// Returns once nothing has been in progress for `idle`.
    pub(super) async fn idled(&self, idle: std::time::Duration) {
        loop {
            // Registered before reading the state, so that a request ending in between
            // still wakes this.
            let ended = self.ended.notified();
            match self.idle_deadline(idle) {
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = ended => {}
                    }
                }
                None => ended.await,
            }
        }
    }
}

/// A request in progress.
#[derive(Debug)]
pub(super) struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_progress.fetch_sub(1, Ordering::SeqCst);
        self.0.ended.notify_waiters();
    }
}

/// A response body that keeps its request in progress until it is sent or dropped.
pub(super) struct Tracked<B> {
    inner: B,
    _request: InProgress,
}

impl<B> Tracked<B> {
    pub(super) fn new(inner: B, request: InProgress) -> Self {
        Self {
            inner,
            _request: request,
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_request_and_never_during_one() {
        let activity = Activity::new();
        let idle = Duration::from_secs(10);
        let started = Instant::now();
        let request = activity.begin();
        let waiting = tokio::spawn({
            let activity = activity.clone();
            async move {
                activity.idled(idle).await;
                Instant::now()
            }
        });
        // In progress for 30 s: not idle, however long.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!waiting.is_finished());
        drop(request);
        let at = waiting.await.unwrap();
        assert_eq!(
            at - started,
            Duration::from_secs(40),
            "10 s after the request ended"
        );
    }
}
