//! The wire between a simulated node's SSH session and its TCP connection: a delay line. The session runs over
//! an in-memory pipe; bytes from the client pass straight through, and each flight of bytes the server writes
//! is held back until `latency` after it was written, so every round trip of the protocol pays the latency, as
//! with a distant host. The line can also cut the connection after what was already sent (a host that dies).
//!
//! Cheap per connection: one small pipe, a bounded queue of flights, no task of its own.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// Capacity of the in-memory pipe between the session and the line, each way.
pub(super) const PIPE_BYTES: usize = 64 << 10;

/// Most bytes read from the session as one flight.
const FLIGHT_BYTES: usize = 32 << 10;

/// Flights in transit at once; the session waits when the line is full (with a 32 KiB flight size, at most
/// 1 MiB per connection is held).
const FLIGHTS: usize = 32;

/// How long the line waits for the client to close once the server side is done.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

enum Flight {
    Bytes(Instant, Bytes),
    /// Close the connection once everything before it has been delivered.
    Cut(Instant),
}

/// Moves bytes between `socket` and the session's end of the pipe until either side is done, or until `cut`
/// is notified.
pub(super) async fn pump(socket: TcpStream, pipe: DuplexStream, latency: Duration, cut: Arc<Notify>) {
    let (mut sock_r, mut sock_w) = socket.into_split();
    let (mut pipe_r, mut pipe_w) = tokio::io::split(pipe);
    let upstream = async {
        let _ = tokio::io::copy(&mut sock_r, &mut pipe_w).await;
        let _ = pipe_w.shutdown().await;
    };
    let (tx, mut rx) = mpsc::channel::<Flight>(FLIGHTS);
    let read = async move {
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(FLIGHT_BYTES);
            tokio::select! {
                biased;
                _ = cut.notified() => {
                    let _ = tx.send(Flight::Cut(Instant::now() + latency)).await;
                    return;
                }
                // Cancel-safe: when the cut wins, nothing was read.
                n = pipe_r.read_buf(&mut buf) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let flight = Flight::Bytes(Instant::now() + latency, buf.split().freeze());
                        if tx.send(flight).await.is_err() {
                            return;
                        }
                    }
                },
            }
        }
    };
    // Owns the queue's receiver: if the socket fails, the reader's sends fail too instead of waiting forever.
    let write = async move {
        while let Some(flight) = rx.recv().await {
            let (due, bytes) = match flight {
                Flight::Bytes(due, bytes) => (due, Some(bytes)),
                Flight::Cut(due) => (due, None),
            };
            if !latency.is_zero() {
                tokio::time::sleep_until(due).await;
            }
            match bytes {
                Some(bytes) => {
                    if sock_w.write_all(&bytes).await.is_err() {
                        return true;
                    }
                }
                None => return true,
            }
        }
        let _ = sock_w.shutdown().await;
        false
    };
    let downstream = async { tokio::join!(read, write).1 };
    tokio::pin!(upstream, downstream);
    let mut upstream_done = false;
    loop {
        tokio::select! {
            _ = &mut upstream, if !upstream_done => upstream_done = true,
            cut = &mut downstream => {
                if !cut && !upstream_done {
                    let _ = tokio::time::timeout(CLOSE_GRACE, &mut upstream).await;
                }
                // Dropping both halves closes the connection.
                return;
            }
        }
    }
}

/// Holds a connection without sending anything until the client gives up.
pub(super) async fn hold(mut socket: TcpStream) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = socket.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}
