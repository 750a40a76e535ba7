//! A tiny HTTP/1.1 responder on loopback that says who answered and what was asked:
//! the sample service of `isthmus dev` and of the mesh tests.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::DevMeshError;

fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> DevMeshError + '_ {
    move |e| DevMeshError(format!("{what}: {e}"))
}

/// Serves a tiny HTTP/1.1 responder on loopback that says who answered and what was
/// asked; returns its address.
pub async fn echo_server(label: &str) -> Result<SocketAddr, DevMeshError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(err("echo server"))?;
    let addr = listener.local_addr().map_err(err("echo server"))?;
    let label = label.to_owned();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            let label = label.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut len = 0;
                while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
                    match tcp.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => len += n,
                    }
                }
                let request = String::from_utf8_lossy(&buf[..len]).into_owned();
                let line = request.lines().next().unwrap_or_default().to_owned();
                // Read the body too: closing with unread bytes would reset the
                // connection, and the answer could be lost with it.
                let head_end = request.find("\r\n\r\n").map_or(len, |i| i + 4);
                let body_len = request
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .unwrap_or(0)
                    .min(1 << 20);
                let mut unread = body_len.saturating_sub(len - head_end);
                while unread > 0 {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => unread = unread.saturating_sub(n),
                    }
                }
                let body = format!("hello from {label}: echo.demo answered \"{line}\"\n");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    Ok(addr)
}

/// Serves a byte echo on loopback: whatever a connection sends comes back, until it
/// half-closes. The soaks' held connections talk to it; returns its address.
pub async fn byte_echo_server() -> Result<SocketAddr, DevMeshError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(err("byte echo server"))?;
    let addr = listener.local_addr().map_err(err("byte echo server"))?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                // Out of descriptors, say: wait for some to be given back.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            tokio::spawn(async move {
                let (mut read, mut write) = tcp.into_split();
                if tokio::io::copy(&mut read, &mut write).await.is_ok() {
                    let _ = write.shutdown().await;
                }
            });
        }
    });
    Ok(addr)
}
