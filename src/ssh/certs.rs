//! OpenSSH certificates: host certificates judged against the `@cert-authority` lines of known_hosts, and the
//! validity of user certificates fleetaudit logs in with.
//!
//! Owns: every check OpenSSH's `ssh` makes of a host certificate (PROTOCOL.certkeys; sshconnect.c
//! `check_host_cert`), each refusal with its own error kind and fix: the CA's signature, certificate type host,
//! a principal matching the name fleetaudit connects to, the validity window (with [`CLOCK_SKEW`]), no critical
//! options, no SHA-1 (`ssh-rsa`) CA signature, and `@revoked` for both the host's key and the CA's.
//! Must not touch: the network, the database. It judges a certificate it is handed; `ssh::Checker` hands it the
//! one the server presented.

use std::fmt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Algorithm, Certificate, PublicKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::known_hosts::{self, KnownHosts, Recorded};

/// How far the scanner's clock may be from the CA's: a certificate is accepted from this long before its
/// `valid_after` until this long after its `valid_before`. CAs such as Vault and Teleport issue certificates
/// valid from the moment they sign them, so a scanner whose clock is a few seconds behind would otherwise
/// refuse a certificate issued that second; a minute covers NTP-synchronised machines and keeps an expired
/// certificate refused within a minute.
pub const CLOCK_SKEW: u64 = 60;

/// What a host proved with its certificate: stored with the host's scan outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCertificate {
    /// The signing CA's key, `SHA256:...`.
    pub ca_fingerprint: String,
    pub serial: u64,
    pub key_id: String,
    pub principals: Vec<String>,
    /// Seconds since 1970 (`u64::MAX`: forever), as in the certificate.
    pub valid_after: u64,
    pub valid_before: u64,
    /// SHA-256 of the certificate (hex): one certificate, however many scans see it.
    pub sha256: String,
}

impl HostCertificate {
    fn of(cert: &Certificate, ca: &PublicKey) -> HostCertificate {
        HostCertificate {
            ca_fingerprint: known_hosts::fingerprint(ca),
            serial: cert.serial(),
            key_id: cert.key_id().to_owned(),
            principals: cert.valid_principals().to_vec(),
            valid_after: cert.valid_after(),
            valid_before: cert.valid_before(),
            sha256: cert.to_bytes().map(|b| hex(&Sha256::digest(b))).unwrap_or_default(),
        }
    }
}

impl fmt::Display for HostCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "certificate signed by CA {}, serial {}, key id {:?}", self.ca_fingerprint, self.serial, self.key_id)
    }
}

/// Why a certificate was refused. [`CertError::kind`] is the stable name stored in the database.
#[derive(Debug, Clone, Error)]
pub enum CertError {
    #[error(
        "host certificate of {address}:{port} ({cert}) is for {principals}, not {address}: fleetaudit checks the \
         certificate's principals against the address it connects to. Reissue it with `ssh-keygen -s CA -h -n \
         {address},...`, or set the host's address to one of its principals"
    )]
    Principal { address: String, port: u16, cert: String, principals: String },
    #[error(
        "host certificate of {address}:{port} ({cert}) is {state}: valid {window}, now is {now} (allowing {skew} s \
         of clock skew). Renew the host's certificate (`ssh-keygen -s CA -h -V ...`), or check the clocks of the \
         host's CA and of this machine",
        skew = CLOCK_SKEW
    )]
    Expired { address: String, port: u16, cert: String, state: &'static str, window: String, now: String },
    #[error(
        "host certificate of {address}:{port} is signed by CA {ca}, which no @cert-authority line trusts for \
         {name}{trusted}, and the host's own key is in no known_hosts file either. {fix}",
        name = known_hosts::host_name(address, *port)
    )]
    UnknownCa { address: String, port: u16, ca: String, trusted: String, fix: String },
    #[error(
        "host certificate of {address}:{port} is signed by CA {ca}, which is marked @revoked at {recorded}; the \
         host was not audited. Reissue the host's certificate with a CA in force"
    )]
    CaRevoked { address: String, port: u16, ca: String, recorded: String },
    #[error("host certificate of {address}:{port} ({cert}) is not valid: {reason}; the host was not audited")]
    Invalid { address: String, port: u16, cert: String, reason: String },
    #[error(
        "user certificate {path} ({cert}) is {state}: valid {window}, now is {now}; nothing was sent to the host. \
         Renew it (your CA's login command, or `ssh-keygen -s CA -I ID -n USER -V +1d KEY.pub`)"
    )]
    UserExpired { path: PathBuf, cert: String, state: &'static str, window: String, now: String },
}

impl CertError {
    /// The error kind stored with a host's outcome; stable, documented in the README.
    pub fn kind(&self) -> &'static str {
        match self {
            CertError::Principal { .. } => "host_cert_principal",
            CertError::Expired { .. } => "host_cert_expired",
            CertError::UnknownCa { .. } => "host_cert_unknown_ca",
            CertError::CaRevoked { .. } => "host_ca_revoked",
            CertError::Invalid { .. } => "host_cert_invalid",
            CertError::UserExpired { .. } => "user_cert_expired",
        }
    }
}

/// Seconds since 1970 now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `None` when `cert` is valid at `now` (within [`CLOCK_SKEW`]); else whether it is "expired" or "not yet
/// valid".
fn outside_window(cert: &Certificate, now: u64) -> Option<&'static str> {
    if now.saturating_add(CLOCK_SKEW) < cert.valid_after() {
        Some("not yet valid")
    } else if now >= cert.valid_before().saturating_add(CLOCK_SKEW) {
        Some("expired")
    } else {
        None
    }
}

/// `from 2026-12-01T10:00:00Z to 2026-12-02T10:00:00Z`, as `ssh-keygen -L` shows a window.
fn window(cert: &Certificate) -> String {
    format!("from {} to {}", time(cert.valid_after()), time(cert.valid_before()))
}

/// A certificate time: RFC 3339 UTC, `forever` for the largest value, `always` for 0.
pub fn time(t: u64) -> String {
    match t {
        0 => "always".to_owned(),
        u64::MAX => "forever".to_owned(),
        t => i64::try_from(t)
            .ok()
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map_or_else(|| "forever".to_owned(), |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `"node-1" (serial 3, CA SHA256:...)`: enough to find the certificate in the CA's log.
fn describe(cert: &Certificate) -> String {
    let ca = PublicKey::new(cert.signature_key().clone(), "");
    format!("key id {:?}, serial {}, CA {}", cert.key_id(), cert.serial(), known_hosts::fingerprint(&ca))
}

/// Judges the host certificate `cert` presented by `address` on `port` at `now` (seconds since 1970) against the
/// known_hosts files, as `ssh` does. A refusal for the host's own key being revoked is a [`Recorded`] line in
/// [`HostCertRefusal::KeyRevoked`], so the caller can report it as for a plain key.
pub fn check_host(
    cert: &Certificate,
    known: &KnownHosts,
    address: &str,
    port: u16,
    now: u64,
) -> Result<HostCertificate, HostCertRefusal> {
    let key = PublicKey::new(cert.public_key().clone(), "");
    if let Some(r) = known.revoked(address, port, &key) {
        return Err(HostCertRefusal::KeyRevoked(r));
    }
    let ca = PublicKey::new(cert.signature_key().clone(), "");
    let ca_fp = known_hosts::fingerprint(&ca);
    let (address_s, cert_s) = (address.to_owned(), describe(cert));
    if let Some(r) = known.revoked(address, port, &ca) {
        return Err(HostCertRefusal::Cert(CertError::CaRevoked {
            address: address_s,
            port,
            ca: ca_fp,
            recorded: r.to_string(),
        }));
    }
    let authorities = known.authorities(address, port);
    if !authorities.iter().any(|(k, _)| k.key_data() == ca.key_data()) {
        let trusted = if authorities.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = authorities.iter().map(|(_, r)| r.to_string()).collect();
            format!(" (the CAs trusted for it: {})", list.join(", "))
        };
        let mut ca_key = ca.clone();
        ca_key.set_comment("");
        let fix = format!(
            "After checking the CA's key out of band, add `@cert-authority {} {}` to a known_hosts file, or trust \
             the host's key {} itself: {}",
            known_hosts::host_name(address, port),
            ca_key.to_openssh().unwrap_or_default().trim_end(),
            known_hosts::fingerprint(&key),
            known_hosts::line_for(address, port, &key),
        );
        return Err(HostCertRefusal::Cert(CertError::UnknownCa { address: address_s, port, ca: ca_fp, trusted, fix }));
    }
    let invalid = |reason: String| {
        HostCertRefusal::Cert(CertError::Invalid { address: address.to_owned(), port, cert: cert_s.clone(), reason })
    };
    // The signature over every field, by the CA the certificate names (and a trusted line holds).
    if cert.verify_signature().is_err() {
        return Err(invalid(format!("its signature does not verify with CA {ca_fp}: it was altered or forged")));
    }
    if cert.cert_type() != CertType::Host {
        return Err(invalid(
            "it is a user certificate, not a host certificate: sign host keys with `ssh-keygen -s CA -h`".into(),
        ));
    }
    // OpenSSH refuses SHA-1 RSA signatures by CAs by default since 8.2 (CASignatureAlgorithms).
    if cert.signature().algorithm() == (Algorithm::Rsa { hash: None }) {
        return Err(invalid(
            "the CA signed it with ssh-rsa (SHA-1), which OpenSSH refuses since 8.2: re-sign it with \
             `ssh-keygen -s CA -h -t rsa-sha2-512`"
                .into(),
        ));
    }
    // No critical option is defined for host certificates; `ssh` refuses any (sshconnect.c check_host_cert).
    if !cert.critical_options().is_empty() {
        let names: Vec<&str> = cert.critical_options().keys().map(String::as_str).collect();
        return Err(invalid(format!(
            "it carries critical option(s) {}, which no host certificate may: reissue it without -O",
            names.join(", ")
        )));
    }
    if let Some(state) = outside_window(cert, now) {
        return Err(HostCertRefusal::Cert(CertError::Expired {
            address: address.to_owned(),
            port,
            cert: cert_s,
            state,
            window: window(cert),
            now: time(now),
        }));
    }
    // Principals may be wildcards, as `ssh` allows for host certificates. An empty list would vouch for every
    // host, which `ssh` accepts and fleetaudit does not: a certificate for one host must not serve another.
    let principals = cert.valid_principals();
    if !principals.iter().any(|p| known_hosts::glob(p, address)) {
        let principals = if principals.is_empty() {
            "no principal at all (a certificate valid for any host)".to_owned()
        } else {
            principals.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(", ")
        };
        return Err(HostCertRefusal::Cert(CertError::Principal {
            address: address.to_owned(),
            port,
            cert: cert_s,
            principals,
        }));
    }
    Ok(HostCertificate::of(cert, &ca))
}

/// Why [`check_host`] refused a certificate.
#[derive(Debug, Clone)]
pub enum HostCertRefusal {
    /// The host's own key is `@revoked` (reported as for a plain key: `host_key_revoked`).
    KeyRevoked(Recorded),
    Cert(CertError),
}

/// Refuses a user certificate that is not valid now, before anything is sent to a host.
pub fn check_user(cert: &Certificate, path: &std::path::Path, now: u64) -> Result<(), CertError> {
    match outside_window(cert, now) {
        None => Ok(()),
        Some(state) => Err(CertError::UserExpired {
            path: path.to_owned(),
            cert: describe(cert),
            state,
            window: window(cert),
            now: time(now),
        }),
    }
}

/// Whether a certificate is valid now (user certificates of the agent: an expired one is skipped).
pub fn valid_now(cert: &Certificate) -> bool {
    outside_window(cert, now()).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::PrivateKey;
    use russh::keys::ssh_key::certificate::Builder;
    use russh::keys::ssh_key::private::Ed25519Keypair;

    /// A distinct ed25519 key per call (deterministic: no RNG needed).
    fn key() -> PrivateKey {
        static N: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
        let seed = [N.fetch_add(1, std::sync::atomic::Ordering::Relaxed); 32];
        PrivateKey::from(Ed25519Keypair::from_seed(&seed))
    }

    fn builder(subject: &PrivateKey) -> Builder {
        Builder::new([7u8; 16], subject.public_key(), 1_000, 2_000).unwrap()
    }

    fn cert(host: &PrivateKey, ca: &PrivateKey, f: impl FnOnce(&mut Builder)) -> Certificate {
        typed(host, ca, CertType::Host, f)
    }

    fn typed(host: &PrivateKey, ca: &PrivateKey, t: CertType, f: impl FnOnce(&mut Builder)) -> Certificate {
        let mut b = builder(host);
        b.serial(7).unwrap().key_id("node-1").unwrap().cert_type(t).unwrap();
        b.valid_principal("node-1.example.internal").unwrap();
        f(&mut b);
        b.sign(ca).unwrap()
    }

    fn known(text: &str) -> KnownHosts {
        let mut k = KnownHosts::default();
        k.add(std::path::Path::new("kh"), text);
        k
    }

    fn ca_line(pattern: &str, ca: &PrivateKey) -> String {
        format!("@cert-authority {pattern} {}\n", ca.public_key().to_openssh().unwrap())
    }

    fn kind(r: Result<HostCertificate, HostCertRefusal>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(HostCertRefusal::KeyRevoked(_)) => "host_key_revoked",
            Err(HostCertRefusal::Cert(e)) => e.kind(),
        }
    }

    #[test]
    fn every_check_has_its_refusal() {
        let (host, ca, other_ca) = (key(), key(), key());
        let name = "node-1.example.internal";
        let good = cert(&host, &ca, |_| {});
        let kh = known(&ca_line("*.example.internal", &ca));
        let id = check_host(&good, &kh, name, 22, 1_500).unwrap();
        assert_eq!((id.serial, id.key_id.as_str()), (7, "node-1"));
        assert_eq!(id.ca_fingerprint, known_hosts::fingerprint(ca.public_key()));
        assert!(id.to_string().starts_with("certificate signed by CA SHA256:"), "{id}");

        // The CA line's pattern decides which names it vouches for; ports as for keys.
        assert_eq!(kind(check_host(&good, &kh, "node-1.other.internal", 22, 1_500)), "host_cert_unknown_ca");
        assert_eq!(kind(check_host(&good, &kh, name, 2222, 1_500)), "host_cert_unknown_ca");
        let several = known(&format!("{}{}", ca_line("*", &other_ca), ca_line(&format!("[{name}]:2222"), &ca)));
        assert_eq!(kind(check_host(&good, &several, name, 2222, 1_500)), "ok");
        assert_eq!(kind(check_host(&good, &known(&ca_line("*", &other_ca)), name, 22, 1_500)), "host_cert_unknown_ca");

        // Validity, with the skew either side.
        assert_eq!(kind(check_host(&good, &kh, name, 22, 1_000 - CLOCK_SKEW)), "ok");
        assert_eq!(kind(check_host(&good, &kh, name, 22, 1_000 - CLOCK_SKEW - 1)), "host_cert_expired");
        assert_eq!(kind(check_host(&good, &kh, name, 22, 2_000 + CLOCK_SKEW - 1)), "ok");
        assert_eq!(kind(check_host(&good, &kh, name, 22, 2_000 + CLOCK_SKEW)), "host_cert_expired");

        // Principals: exact, wildcard, none.
        assert_eq!(kind(check_host(&good, &kh, "node-2.example.internal", 22, 1_500)), "host_cert_principal");
        let wild = cert(&host, &ca, |b| {
            b.valid_principal("*.example.internal").unwrap();
        });
        assert_eq!(kind(check_host(&wild, &kh, "node-9.example.internal", 22, 1_500)), "ok");
        let mut b = builder(&host);
        b.cert_type(CertType::Host).unwrap().all_principals_valid().unwrap();
        let anyone = b.sign(&ca).unwrap();
        assert_eq!(kind(check_host(&anyone, &kh, name, 22, 1_500)), "host_cert_principal");

        // Type, critical options.
        let user = typed(&host, &ca, CertType::User, |_| {});
        assert_eq!(kind(check_host(&user, &kh, name, 22, 1_500)), "host_cert_invalid");
        let forced = cert(&host, &ca, |b| {
            b.critical_option("force-command", "/bin/true").unwrap();
        });
        let e = check_host(&forced, &kh, name, 22, 1_500).unwrap_err();
        assert!(
            matches!(&e, HostCertRefusal::Cert(CertError::Invalid { reason, .. }) if reason.contains("force-command"))
        );

        // Revocation of the CA, and of the host key itself.
        let revoked_ca = known(&format!("{}@revoked * {}\n", ca_line("*", &ca), ca.public_key().to_openssh().unwrap()));
        assert_eq!(kind(check_host(&good, &revoked_ca, name, 22, 1_500)), "host_ca_revoked");
        let revoked_key =
            known(&format!("{}@revoked * {}\n", ca_line("*", &ca), host.public_key().to_openssh().unwrap()));
        assert_eq!(kind(check_host(&good, &revoked_key, name, 22, 1_500)), "host_key_revoked");
    }

    #[test]
    fn a_tampered_certificate_does_not_verify() {
        let (host, ca) = (key(), key());
        let good = cert(&host, &ca, |_| {});
        // Re-encode with another serial but the original signature.
        let mut bytes = good.to_bytes().unwrap();
        let serial = 7u64.to_be_bytes();
        let at = bytes.windows(8).position(|w| w == serial).unwrap();
        bytes[at + 7] = 8;
        let forged = Certificate::from_bytes(&bytes).unwrap();
        let kh = known(&ca_line("*", &ca));
        let e = check_host(&forged, &kh, "node-1.example.internal", 22, 1_500).unwrap_err();
        assert!(matches!(&e, HostCertRefusal::Cert(CertError::Invalid { reason, .. }) if reason.contains("signature")));
    }

    #[test]
    fn user_certificates_outside_their_window_are_refused() {
        let (user, ca) = (key(), key());
        let c = typed(&user, &ca, CertType::User, |_| {});
        assert!(check_user(&c, std::path::Path::new("id-cert.pub"), 1_500).is_ok());
        let e = check_user(&c, std::path::Path::new("id-cert.pub"), 5_000).unwrap_err();
        assert_eq!(e.kind(), "user_cert_expired");
        assert!(e.to_string().contains("id-cert.pub") && e.to_string().contains("expired"), "{e}");
        assert!(check_user(&c, std::path::Path::new("x"), 10).unwrap_err().to_string().contains("not yet valid"));
        assert_eq!(
            (time(0), time(u64::MAX), time(86_400)),
            ("always".into(), "forever".into(), "1970-01-02T00:00:00Z".into())
        );
    }
}
