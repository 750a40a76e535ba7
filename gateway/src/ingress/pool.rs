//! Idle HTTP/1.1 connections to this cluster's own endpoints, kept for the next request
//! (upstream keep-alive). A connection is taken only when it is open and not busy with
//! an earlier response; at most [`MAX_IDLE`] are kept per endpoint.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

/// Idle connections kept per endpoint: more than one busy HTTP/2 client has requests in
/// flight (8 connections × 16 streams dialled 3,873 times in 60,000 requests with 64
/// kept, 96 times with 256; docs/benchmarks.md), and a few MiB at most.
pub(super) const MAX_IDLE: usize = 256;

/// Upstream connections by endpoint.
#[derive(Debug, Default)]
pub(super) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<SendRequest<Incoming>>>>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Vec<SendRequest<Incoming>>>> {
        // Every update leaves the map whole, so a poisoned lock is still consistent.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection to `addr` ready for a request, if one is kept. Closed ones are
    /// dropped; busy ones (a response still streaming) stay for later.
    pub(super) fn take(&self, addr: SocketAddr) -> Option<SendRequest<Incoming>> {
        let mut idle = self.lock();
        let list = idle.get_mut(&addr)?;
        list.retain(|s| !s.is_closed());
        let ready = list.iter().position(SendRequest::is_ready)?;
        Some(list.swap_remove(ready))
    }

    /// Keeps `sender` for a later request (dropped when the endpoint already has
    /// [`MAX_IDLE`]; the connection then closes after its response).
    pub(super) fn put(&self, addr: SocketAddr, sender: SendRequest<Incoming>) {
        let mut idle = self.lock();
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE && !sender.is_closed() {
            list.push(sender);
        }
    }
}
