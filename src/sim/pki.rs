//! The simulated clusters' certificates: real X.509, made when the simulator starts (rcgen, P-256).
//!
//! Owns: one cluster CA per simulator process (`CN=kubernetes`, ten years, as kubeadm makes it), shared by every
//! simulated cluster, and the certificates the profiles' manifests ask for ([`generate`]): a CA file, a
//! component certificate signed by the CA, a kubelet's self-generated `kubelet.crt` (a leaf and the
//! `HOST-ca@TIME` CA that issued it, as client-go's `GenerateSelfSignedCertKey` writes it) and a kubelet's rotated
//! `kubelet-server-*.pem` (the CA-signed certificate, then its private key, made up and marked with the secret
//! canary). Every leaf covers `127.0.0.1`, the address every simulated node has. The faults that age a node's
//! kubelet certificate (`cert-expiring`, `cert-expired`) regenerate it with another validity.
//! Must not touch: the network, the scanner's code. The keys made here sign and are dropped; none is served
//! except the made-up one inside a rotated file.

use std::sync::OnceLock;

/// The CA every simulated cluster's kubelets and components are signed by.
struct Ca {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| {
        let key = rcgen::KeyPair::generate().expect("P-256 key generation");
        let p = params("kubernetes", &[], true, -1, 3650);
        let pem = p.self_signed(&key).expect("self-signing the simulated CA").pem();
        Ca { pem, issuer: rcgen::Issuer::new(p, key) }
    })
}

/// Days from now: `from` (usually negative: already valid) to `to`.
fn params(cn: &str, sans: &[&str], is_ca: bool, from: i64, to: i64) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("simulated SANs are valid");
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::days(from);
    p.not_after = now + time::Duration::days(to);
    if is_ca {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
            rcgen::KeyUsagePurpose::KeyCertSign,
        ];
    } else {
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    }
    p
}

fn signed(cn: &str, sans: &[&str], days: i64) -> String {
    let key = rcgen::KeyPair::generate().expect("P-256 key generation");
    params(cn, sans, false, -30, days).signed_by(&key, &ca().issuer).expect("signing a simulated certificate").pem()
}

/// The certificate file's name without its extension: the subject of what is made for it.
fn stem(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.split('.').next().unwrap_or(name)
}

/// How long a kubelet's serving certificate a profile carries lives, in days from now: a year, or for the
/// faults a week and two days ago.
pub const KUBELET_DAYS: i64 = 365;
pub const EXPIRING_DAYS: i64 = 7;
pub const EXPIRED_DAYS: i64 = -2;

/// The contents of a certificate file a manifest asks for with `generate`, or `None` for another generator.
/// `days`: how long a kubelet's serving certificate lives (see [`KUBELET_DAYS`]).
pub fn generate(generator: &str, path: &str, days: i64, key_pem: impl FnOnce() -> String) -> Option<Vec<u8>> {
    let host = "cp1";
    let pem = match generator {
        "ca-certificate" => ca().pem.clone(),
        "certificate" => signed(stem(path), &[stem(path), "localhost", "127.0.0.1"], 365),
        // client-go util/cert GenerateSelfSignedCertKey: HOST@TIME issued by HOST-ca@TIME, the CA after the leaf.
        "kubelet-certificate" => {
            let key = rcgen::KeyPair::generate().expect("P-256 key generation");
            let own = params(&format!("{host}-ca@1732701600"), &[], true, -30, 365);
            let own_pem = own.self_signed(&key).expect("self-signing").pem();
            let issuer = rcgen::Issuer::new(own, key);
            let leaf_key = rcgen::KeyPair::generate().expect("P-256 key generation");
            let leaf = params(&format!("{host}@1732701600"), &[host, "127.0.0.1"], false, -30, days)
                .signed_by(&leaf_key, &issuer)
                .expect("signing");
            format!("{}{own_pem}", leaf.pem())
        }
        // A serving certificate the cluster CA signed, at the kubelet's tlsCertFile.
        "kubelet-serving" => signed(&format!("system:node:{host}"), &[host, "127.0.0.1"], days),
        // client-go util/certificate/certificate_store.go Update: the certificate, then its key, in one file.
        "kubelet-serving-rotated" => {
            format!("{}{}", signed(&format!("system:node:{host}"), &[host, "127.0.0.1"], days), key_pem())
        }
        _ => return None,
    };
    Some(pem.into_bytes())
}

/// Whether `generator` makes a kubelet's serving certificate (the one the certificate faults age).
pub fn is_kubelet_serving(generator: &str) -> bool {
    matches!(generator, "kubelet-certificate" | "kubelet-serving" | "kubelet-serving-rotated")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::x509;

    #[test]
    fn the_simulated_certificates_are_real_and_chain_as_a_cluster_s_do() {
        let ca = &x509::parse_pem(&generate("ca-certificate", "/etc/kubernetes/pki/ca.crt", 0, String::new).unwrap())
            .unwrap()[0];
        assert!(ca.is_ca && ca.subject == "CN=kubernetes");
        let leaf =
            &x509::parse_pem(&generate("certificate", "/etc/etcd/server.pem", 0, String::new).unwrap()).unwrap()[0];
        assert_eq!(leaf.signed_by(ca), Ok(()));
        assert!(leaf.covers("127.0.0.1"));
        let own = x509::parse_pem(
            &generate("kubelet-certificate", "/var/lib/kubelet/pki/kubelet.crt", 365, String::new).unwrap(),
        )
        .unwrap();
        assert_eq!(own.len(), 2);
        assert!(own[0].signed_by(&own[1]).is_ok() && own[0].signed_by(ca).is_err());
        let rotated = generate("kubelet-serving-rotated", "/x.pem", EXPIRING_DAYS, || {
            "-----BEGIN EC PRIVATE KEY-----\nk\n-----END EC PRIVATE KEY-----\n".into()
        })
        .unwrap();
        let text = String::from_utf8(rotated).unwrap();
        assert!(text.contains("PRIVATE KEY"));
        let c = &x509::parse_pem(text.as_bytes()).unwrap()[0];
        assert_eq!(c.signed_by(ca), Ok(()));
        let left = c.not_after - crate::model::unix_now();
        assert!((6 * 86_400..8 * 86_400).contains(&left), "{left}");
        assert!(generate("private-key", "/k", 0, String::new).is_none());
    }
}
