//! X.509 certificates from what a host sends: the PEM files the processes name, split into blocks, each
//! certificate parsed (x509-parser) into the facts fleetaudit keeps and judges.
//!
//! Owns: [`parse_pem`] (a file's `CERTIFICATE` blocks, bounded: at most [`MAX_CERTS`] a file, each parsed
//! whole or refused with its block number), [`Certificate`] (subject, issuer, serial, validity, CA flag, key
//! usages, SANs, SHA-256 fingerprint, the DER itself: all public), [`Certificate::signed_by`] (the issuer's key
//! checks the signature: RSA PKCS#1 and PSS, ECDSA P-256/P-384, Ed25519, through ring), [`Certificate::covers`]
//! (a name or an address against the SANs as Go's `x509.Certificate.VerifyHostname` matches them) and
//! [`certificates_only`], which keeps only the certificate blocks of a PEM file, so a file that holds a private
//! key beside its certificate (the kubelet's rotated `kubelet-server-current.pem`) never keeps the key.
//! Must not touch: SSH, rules, the database. A private key is never parsed here.

use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

/// Certificates read from one file at most: a CA bundle of a few, a leaf and its chain.
pub const MAX_CERTS: usize = 64;

/// One certificate, as fleetaudit keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// SHA-256 of the DER (hex, lower case): `openssl x509 -noout -fingerprint -sha256` without the colons.
    pub fingerprint: String,
    /// RFC 4514, as `openssl x509 -noout -subject -nameopt RFC2253` prints it: `CN=kubernetes`.
    pub subject: String,
    pub issuer: String,
    /// Hex, colon-separated.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// `basicConstraints CA:TRUE`.
    pub is_ca: bool,
    /// Key usages and extended key usages: `digitalSignature`, `keyCertSign`, `serverAuth`, `clientAuth`.
    pub usages: Vec<String>,
    /// DNS names of the subject alternative names.
    pub dns_names: Vec<String>,
    /// IP addresses of the subject alternative names, as text (`10.0.0.1`, `fd00::1`).
    pub ip_addresses: Vec<String>,
    pub der: Vec<u8>,
}

/// The certificates of a PEM file, in order. A file with no certificate block, a block whose base64 or DER is
/// broken, or more than [`MAX_CERTS`] is an error naming the block. Other blocks (a key beside a certificate)
/// are skipped unread.
pub fn parse_pem(bytes: &[u8]) -> Result<Vec<Certificate>, String> {
    let mut out = Vec::new();
    for (n, block) in blocks(bytes).into_iter().enumerate() {
        let block = block.map_err(|e| format!("PEM block {}: {e}", n + 1))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        if out.len() == MAX_CERTS {
            return Err(format!("more than {MAX_CERTS} certificates in one file: refused"));
        }
        out.push(
            parse_der(&block.der).map_err(|e| format!("certificate {} (PEM block {}): {e}", out.len() + 1, n + 1))?,
        );
    }
    if out.is_empty() {
        return Err("no PEM CERTIFICATE block in the file".into());
    }
    Ok(out)
}

/// One certificate from its DER.
pub fn parse_der(der: &[u8]) -> Result<Certificate, String> {
    let (rest, c) = parse_x509_certificate(der).map_err(|e| format!("not an X.509 certificate ({e})"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the certificate", rest.len()));
    }
    let mut usages = Vec::new();
    if let Ok(Some(ku)) = c.key_usage() {
        let ku = ku.value;
        for (on, name) in [
            (ku.digital_signature(), "digitalSignature"),
            (ku.non_repudiation(), "nonRepudiation"),
            (ku.key_encipherment(), "keyEncipherment"),
            (ku.data_encipherment(), "dataEncipherment"),
            (ku.key_agreement(), "keyAgreement"),
            (ku.key_cert_sign(), "keyCertSign"),
            (ku.crl_sign(), "cRLSign"),
        ] {
            if on {
                usages.push(name.to_owned());
            }
        }
    }
    if let Ok(Some(eku)) = c.extended_key_usage() {
        let eku = eku.value;
        for (on, name) in
            [(eku.any, "anyExtendedKeyUsage"), (eku.server_auth, "serverAuth"), (eku.client_auth, "clientAuth")]
        {
            if on {
                usages.push(name.to_owned());
            }
        }
    }
    let (mut dns_names, mut ip_addresses) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                GeneralName::IPAddress(ip) => ip_addresses.extend(ip_text(ip)),
                _ => {}
            }
        }
    }
    Ok(Certificate {
        fingerprint: Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect(),
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        serial: c.raw_serial_as_string(),
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
        is_ca: c.is_ca(),
        usages,
        dns_names,
        ip_addresses,
        der: der.to_vec(),
    })
}

fn ip_text(raw: &[u8]) -> Option<String> {
    match raw.len() {
        4 => Some(std::net::Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).to_string()),
        16 => <[u8; 16]>::try_from(raw).ok().map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

impl Certificate {
    /// Whether `issuer`'s public key verifies this certificate's signature, and `issuer` may sign
    /// certificates (CA:TRUE, and `keyCertSign` where it lists key usages), as Go's `crypto/x509` requires of a
    /// parent. `Err` says which part fails.
    pub fn signed_by(&self, issuer: &Certificate) -> Result<(), String> {
        let (_, child) = parse_x509_certificate(&self.der).map_err(|e| format!("unparsable certificate: {e}"))?;
        let (_, parent) = parse_x509_certificate(&issuer.der).map_err(|e| format!("unparsable CA: {e}"))?;
        if child.issuer().as_raw() != parent.subject().as_raw() {
            return Err(format!("issued by {}, not by {}", self.issuer, issuer.subject));
        }
        child
            .verify_signature(Some(parent.public_key()))
            .map_err(|e| format!("its signature does not verify with the key of {} ({e})", issuer.subject))?;
        if !issuer.is_ca {
            return Err(format!("{} is not a CA certificate (no basicConstraints CA:TRUE)", issuer.subject));
        }
        if parent.key_usage().ok().flatten().is_some_and(|ku| !ku.value.key_cert_sign()) {
            return Err(format!("{} may not sign certificates (its key usage lacks keyCertSign)", issuer.subject));
        }
        Ok(())
    }

    /// Whether the certificate was signed by its own key (a kubelet's generated `kubelet.crt` is issued by an
    /// ephemeral `HOST-ca@TIME`, so it is not self-signed but chains to nothing the cluster knows).
    pub fn self_signed(&self) -> bool {
        self.subject == self.issuer
            && parse_x509_certificate(&self.der).is_ok_and(|(_, c)| c.verify_signature(None).is_ok())
    }

    /// Whether the SANs cover `name` (a DNS name or an IP address) as Go's `VerifyHostname` decides: an IP
    /// against the IP SANs only; a name against the DNS SANs, case-insensitively, `*.` matching one leftmost
    /// label. Go ignores the common name since 1.15, and so does this.
    pub fn covers(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        if let Ok(ip) = name.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>() {
            return self.ip_addresses.iter().any(|a| a.parse::<std::net::IpAddr>().is_ok_and(|a| a == ip));
        }
        let name = name.to_ascii_lowercase();
        self.dns_names.iter().any(|d| {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            match d.strip_prefix("*.") {
                Some(suffix) => name.split_once('.').is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
                None => d == name,
            }
        })
    }

    /// The validity end as RFC 3339 (`2027-12-01T10:00:00Z`).
    pub fn not_after_text(&self) -> String {
        crate::model::rfc3339(self.not_after, 0)
    }

    pub fn not_before_text(&self) -> String {
        crate::model::rfc3339(self.not_before, 0)
    }
}

/// The certificate blocks of a PEM file, each as it was, every other block (a private key) dropped;
/// `None` when the file holds nothing but certificates (or is not PEM), so it is kept as it came.
pub fn certificates_only(bytes: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !text.contains("-----BEGIN ") {
        return None;
    }
    let mut out = String::new();
    let mut dropped = false;
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start..];
        let label = after["-----BEGIN ".len()..].split("-----").next().unwrap_or_default();
        let end_marker = format!("-----END {label}-----");
        let Some(end) = after.find(&end_marker) else {
            // An unterminated block: whatever it is, it is not kept.
            dropped = true;
            break;
        };
        let block = &after[..end + end_marker.len()];
        if label == "CERTIFICATE" {
            out.push_str(block);
            out.push('\n');
        } else {
            dropped = true;
        }
        rest = &after[end + end_marker.len()..];
    }
    dropped.then(|| out.into_bytes())
}

/// The BEGIN line of a certificate block, as every PEM writer spells it.
pub const PEM_BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
/// Its END line.
pub const PEM_END: &[u8] = b"-----END CERTIFICATE-----";

/// The leading certificate blocks of a PEM file, up to the end of the last one's END line (its newline
/// included): what [`crate::files::Want::Certs`] keeps of a file that holds a key after its certificates.
pub fn leading_certificates(bytes: &[u8]) -> &[u8] {
    let mut kept = 0;
    let mut at = 0;
    loop {
        let rest = &bytes[at..];
        let start = rest.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(rest.len());
        if !rest[start..].starts_with(PEM_BEGIN) {
            return &bytes[..kept];
        }
        let Some(end) = rest.windows(PEM_END.len()).position(|w| w == PEM_END) else { return &bytes[..kept] };
        let mut stop = at + end + PEM_END.len();
        if bytes.get(stop) == Some(&b'\n') {
            stop += 1;
        }
        kept = stop;
        at = stop;
    }
}

struct Block {
    label: String,
    der: Vec<u8>,
}

/// The PEM blocks of a file (RFC 7468, lax: headers before the base64 as in RFC 1421 are skipped).
fn blocks(bytes: &[u8]) -> Vec<Result<Block, String>> {
    use base64::Engine;
    let Ok(text) = std::str::from_utf8(bytes) else { return vec![Err("the file is not text (not PEM)".into())] };
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line.trim().strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            let l = l.trim();
            if l == end {
                closed = true;
                break;
            }
            if !l.contains(':') {
                body.push_str(l);
            }
        }
        if label != "CERTIFICATE" {
            // Never decoded: a key's bytes are not looked at.
            out.push(Ok(Block { label: label.to_owned(), der: Vec::new() }));
            continue;
        }
        if !closed {
            out.push(Err(format!("no {end} line")));
            break;
        }
        out.push(
            base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map(|der| Block { label: label.to_owned(), der })
                .map_err(|e| format!("broken base64 ({e})")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(name: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        (cert, rcgen::Issuer::new(p, key))
    }

    fn leaf(names: &[&str], issuer: &rcgen::Issuer<'_, rcgen::KeyPair>) -> (rcgen::Certificate, rcgen::KeyPair) {
        let p = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        (p.signed_by(&key, issuer).unwrap(), key)
    }

    #[test]
    fn a_leaf_chains_to_its_ca_and_not_to_another() {
        let (ca_cert, issuer) = ca("kubernetes");
        let (other_cert, _) = ca("kubernetes");
        let (node, key) = leaf(&["node-1", "10.0.0.7"], &issuer);
        let ca = &parse_pem(ca_cert.pem().as_bytes()).unwrap()[0];
        let other = &parse_pem(other_cert.pem().as_bytes()).unwrap()[0];
        // The kubelet's rotated file: the certificate, then its key.
        let combined = format!("{}{}", node.pem(), key.serialize_pem());
        let certs = parse_pem(combined.as_bytes()).unwrap();
        assert_eq!(certs.len(), 1);
        let n = &certs[0];
        assert!(ca.is_ca && !n.is_ca && ca.self_signed() && !n.self_signed());
        assert_eq!(n.signed_by(ca), Ok(()));
        // Same subject, another key: the signature decides, not the names.
        assert!(n.signed_by(other).unwrap_err().contains("does not verify"), "{:?}", n.signed_by(other));
        assert!(n.signed_by(n).unwrap_err().contains("issued by"));
        assert!(n.covers("node-1") && n.covers("NODE-1.") && n.covers("10.0.0.7") && !n.covers("10.0.0.8"));
        assert!(!n.covers("node-2") && !n.covers("7.0.0.10"));
        assert_eq!(n.fingerprint.len(), 64);
    }

    #[test]
    fn keys_never_stay_and_broken_files_say_where() {
        let (ca_cert, issuer) = ca("c");
        let (node, key) = leaf(&["n"], &issuer);
        let combined = format!("{}{}", node.pem(), key.serialize_pem());
        let kept = String::from_utf8(certificates_only(combined.as_bytes()).unwrap()).unwrap();
        assert!(!kept.contains("PRIVATE KEY") && kept.contains("BEGIN CERTIFICATE"));
        assert_eq!(parse_pem(kept.as_bytes()).unwrap()[0].der, node.der().to_vec());
        assert_eq!(certificates_only(ca_cert.pem().as_bytes()), None, "a certificate file stays as it came");
        assert!(parse_pem(b"hello").unwrap_err().contains("no PEM CERTIFICATE"));
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(parse_pem(broken.as_bytes()).unwrap_err().starts_with("PEM block 1: broken base64"));
        let not_der = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert!(parse_pem(not_der.as_bytes()).unwrap_err().contains("not an X.509 certificate"));
        let many = ca_cert.pem().repeat(MAX_CERTS + 1);
        assert!(parse_pem(many.as_bytes()).unwrap_err().contains("more than 64"));
    }

    #[test]
    fn wildcards_match_one_label() {
        let (_, issuer) = ca("c");
        let (w, _) = leaf(&["*.nodes.example"], &issuer);
        let w = &parse_pem(w.pem().as_bytes()).unwrap()[0];
        assert!(w.covers("a.nodes.example") && !w.covers("a.b.nodes.example") && !w.covers("nodes.example"));
    }
}
