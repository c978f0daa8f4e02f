//! What one SSH connection costs, per key exchange: the part of a scan that grows with the fleet and is not
//! ours to optimise away, so the default must be chosen knowingly. Run: `cargo bench --bench handshake`.
//!
//! Client and simulated node (src/sim.rs, a russh server) run on one thread of one current-thread runtime, so
//! the thread's CPU time is the whole cost of a connection on both ends: TCP connect on 127.0.0.1, key
//! exchange, ed25519 host key signature and check, ed25519 user authentication, one channel running `ps -ef`
//! and reading a 24 KB table, disconnect. Each algorithm runs `ROUNDS` times `CONNECTIONS` connections,
//! interleaved, and the best round is reported (least disturbed by other work on the machine).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetaudit::sim::{self, Behavior, NodeSpec};
use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use russh::{ChannelMsg, Disconnect, Preferred, kex};

const CONNECTIONS: usize = 200;
const ROUNDS: usize = 5;

struct AnyKey;

impl client::Handler for AnyKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// CPU time of the calling thread (user + system), from the kernel's scheduler statistics.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("/proc/thread-self/schedstat");
    Duration::from_nanos(stat.split_whitespace().next().and_then(|n| n.parse().ok()).expect("schedstat field"))
}

async fn one(config: Arc<client::Config>, addr: std::net::SocketAddr, key: Arc<PrivateKey>) -> usize {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut handle: Handle<AnyKey> = client::connect_stream(config, stream, AnyKey).await.unwrap();
    let auth = handle.authenticate_publickey("audit", PrivateKeyWithHashAlg::new(key, None)).await.unwrap();
    assert!(auth.success());
    let mut channel = handle.channel_open_session().await.unwrap();
    channel.exec(true, fleetaudit::ssh::REMOTE_COMMAND).await.unwrap();
    let mut bytes = 0;
    while let Some(msg) = channel.wait().await {
        if let ChannelMsg::Data { data } = msg {
            bytes += data.len();
        }
    }
    handle.disconnect(Disconnect::ByApplication, "", "en").await.unwrap();
    bytes
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client_key = sim::generate_key("bench").unwrap();
        let table = sim::profile("kubeadm-hardened").unwrap();
        let spec = NodeSpec {
            name: "node".into(),
            table: Arc::new(table.as_bytes().to_vec()),
            behavior: Behavior::Normal,
            latency: Duration::ZERO,
        };
        let nodes = sim::start(vec![spec], vec![client_key.public_key().clone()]).await.unwrap();
        let addr = nodes[0].addr;
        let key = Arc::new(client_key);
        let algorithms = [kex::MLKEM768X25519_SHA256, kex::CURVE25519, kex::DH_G14_SHA256, kex::DH_G16_SHA512];
        let configs: Vec<Arc<client::Config>> = algorithms
            .iter()
            .map(|&k| {
                Arc::new(client::Config {
                    preferred: Preferred {
                        kex: Cow::Owned(vec![
                            k,
                            kex::EXTENSION_SUPPORT_AS_CLIENT,
                            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
                        ]),
                        ..Preferred::default()
                    },
                    nodelay: true,
                    ..Default::default()
                })
            })
            .collect();
        let mut best = vec![(Duration::MAX, Duration::MAX); algorithms.len()];
        for _ in 0..ROUNDS {
            for (i, config) in configs.iter().enumerate() {
                let (wall, cpu) = (Instant::now(), thread_cpu());
                for _ in 0..CONNECTIONS {
                    assert_eq!(one(config.clone(), addr, key.clone()).await, table.len());
                }
                let (wall, cpu) = (wall.elapsed() / CONNECTIONS as u32, (thread_cpu() - cpu) / CONNECTIONS as u32);
                best[i] = (best[i].0.min(wall), best[i].1.min(cpu));
            }
        }
        println!("one connection, client + simulated node on one thread (best of {ROUNDS} × {CONNECTIONS}):");
        println!("{:<30} {:>8} {:>8}", "key exchange", "wall ms", "CPU ms");
        for (k, (wall, cpu)) in algorithms.iter().zip(best) {
            println!("{:<30} {:>8.3} {:>8.3}", k.as_ref(), wall.as_secs_f64() * 1e3, cpu.as_secs_f64() * 1e3);
        }
    });
}
