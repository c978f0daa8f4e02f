//! Jump hosts: a host reached through a chain of bastions, as `ssh -J a,b` does. The first bastion is connected
//! to over TCP; each next one, and finally the host, through a `direct-tcpip` channel of the one before, so an
//! address behind a bastion is resolved and connected to by that bastion, never by us. Every bastion's host key
//! is checked like any host's.
//!
//! One connection per chain prefix per scan: every host behind `a` shares `a`'s connection, and every host behind
//! `a,b` shares `b`'s (opened through `a`'s). A connection is opened by the first host that needs it, awaited by
//! the others, reopened once if it turns out dead; a failure is kept for the scan.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::{ChannelOpenFailure, ChannelStream};

use super::{Checker, Hop, Jump, SshError, Target, Transport, tcp};

/// One hop of a chain, as the bastion pool tells connections apart.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct HopKey {
    user: String,
    address: String,
    port: u16,
    identity_files: Vec<PathBuf>,
    certificate_files: Vec<PathBuf>,
    known_hosts: Vec<PathBuf>,
}

/// How a jump host is logged in to: its own user and keys when ssh_config gives it some, else the host's.
fn hop<'a>(jump: &'a Jump, t: &'a Target<'_>) -> Hop<'a> {
    Hop {
        address: &jump.address,
        port: jump.port,
        user: jump.user.as_deref().unwrap_or(t.user),
        identity_files: jump.identity_files.as_deref().unwrap_or(t.identity_files),
        certificate_files: jump.certificate_files.as_deref().unwrap_or(t.certificate_files),
        known_hosts: &jump.known_hosts,
    }
}

fn key(h: &Hop<'_>) -> HopKey {
    HopKey {
        user: h.user.to_owned(),
        address: h.address.to_owned(),
        port: h.port,
        identity_files: h.identity_files.to_vec(),
        certificate_files: h.certificate_files.to_vec(),
        known_hosts: h.known_hosts.to_vec(),
    }
}

/// `user@bastion:22`, and for a later hop the chain before it: `user@b:22 (through user@a:22)`.
fn name(chain: &[Jump], t: &Target<'_>) -> String {
    let one = |j: &Jump| Jump { user: Some(hop(j, t).user.to_owned()), ..j.clone() }.to_string();
    let (last, before) = chain.split_last().expect("a chain has a hop");
    if before.is_empty() {
        one(last)
    } else {
        format!("{} (through {})", one(last), before.iter().map(one).collect::<Vec<_>>().join(" -> "))
    }
}

type Connecting<'a> = Pin<Box<dyn Future<Output = Result<Arc<Handle<Checker>>, SshError>> + Send + 'a>>;

impl Transport {
    /// A `direct-tcpip` channel to the target through the last jump host of `chain`.
    pub(super) async fn tunnel(
        &self,
        chain: &[Jump],
        t: &Target<'_>,
        limit: Duration,
    ) -> Result<ChannelStream<client::Msg>, SshError> {
        self.through(chain, t.address, t.port, t, limit).await
    }

    /// A channel from the last bastion of `chain` to `address:port`. A second try when the shared connection
    /// turns out to be dead (the bastion restarted, a firewall dropped it): reconnect once.
    async fn through(
        &self,
        chain: &[Jump],
        address: &str,
        port: u16,
        t: &Target<'_>,
        limit: Duration,
    ) -> Result<ChannelStream<client::Msg>, SshError> {
        let bastion = name(chain, t);
        let pool_key: Vec<HopKey> = chain.iter().map(|j| key(&hop(j, t))).collect();
        let mut last = None;
        for _ in 0..2 {
            let cell = {
                let mut bastions = self.bastions.lock().unwrap_or_else(|e| e.into_inner());
                bastions.entry(pool_key.clone()).or_default().clone()
            };
            let handle = cell.get_or_init(|| self.bastion(chain, t, limit)).await.clone()?;
            let opened = if handle.is_closed() {
                Err(russh::Error::Disconnect)
            } else {
                handle.channel_open_direct_tcpip(address, u32::from(port), "127.0.0.1", 0).await
            };
            match opened {
                Ok(channel) => return Ok(channel.into_stream()),
                Err(russh::Error::ChannelOpenFailure(ChannelOpenFailure::ConnectFailed)) => {
                    return Err(SshError::Unreachable {
                        address: address.to_owned(),
                        port,
                        reason: format!("jump host {bastion} could not connect to it"),
                    });
                }
                Err(russh::Error::ChannelOpenFailure(why)) => {
                    let reason = match why {
                        ChannelOpenFailure::AdministrativelyProhibited => "administratively prohibited".to_owned(),
                        ChannelOpenFailure::UnknownChannelType => "it does not forward TCP".to_owned(),
                        ChannelOpenFailure::ResourceShortage => "resource shortage".to_owned(),
                        ChannelOpenFailure::ConnectFailed => "connect failed".to_owned(),
                        ChannelOpenFailure::Other { code, .. } => format!("reason code {code}"),
                    };
                    return Err(SshError::JumpRefused { jump: bastion, address: address.to_owned(), port, reason });
                }
                Err(e) => {
                    tracing::debug!(jump = %bastion, "the jump host connection is gone ({e}); reconnecting");
                    let mut bastions = self.bastions.lock().unwrap_or_else(|e| e.into_inner());
                    if bastions.get(&pool_key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                        bastions.remove(&pool_key);
                    }
                    last = Some(e);
                }
            }
        }
        let reason = last.map_or_else(String::new, |e| e.to_string());
        Err(SshError::JumpFailed {
            jump: bastion,
            cause: Box::new(SshError::Disconnected {
                reason: format!("the connection to the jump host dropped: {reason}"),
            }),
        })
    }

    /// A logged-in connection to the last bastion of `chain`: over TCP for the first, through the one before it
    /// otherwise. Its failure is the bastion's (`jump_failed`, naming it), unless a bastion before it failed:
    /// that one is named.
    fn bastion<'a>(&'a self, chain: &'a [Jump], t: &'a Target<'a>, limit: Duration) -> Connecting<'a> {
        Box::pin(async move {
            let (last, before) = chain.split_last().expect("a chain has a hop");
            let bastion = name(chain, t);
            let h = hop(last, t);
            tracing::debug!(jump = %bastion, "connecting to the jump host");
            let failed = |cause: SshError| match cause {
                e @ SshError::JumpFailed { .. } => e,
                cause => SshError::JumpFailed { jump: bastion.clone(), cause: Box::new(cause) },
            };
            self.check_certificates(&h).map_err(failed)?;
            let started = Instant::now();
            let session = if before.is_empty() {
                match tcp(&h, limit).await {
                    Ok(stream) => self.login(stream, &h, started, limit).await,
                    Err(e) => Err(e),
                }
            } else {
                match self.through(before, h.address, h.port, t, limit).await {
                    Ok(stream) => self.login(stream, &h, started, limit).await,
                    Err(e) => Err(e),
                }
            };
            session.map(|(handle, _)| Arc::new(handle)).map_err(failed)
        })
    }
}
