//! TLS to PostgreSQL: over TCP the store verifies the server's certificate and name by default (verify-full,
//! the system's CAs), so a server with a private CA is refused with the fix, accepted with `sslrootcert`, and
//! refused again when the name in the URL is not the certificate's; a URL's own sslmode is honoured. The server
//! is a real PostgreSQL on 127.0.0.1 with a certificate made here (rcgen).

mod support;

use fleetaudit::store::{Database, Store};

/// A CA and a server certificate it signs for `localhost` only (not 127.0.0.1), as PEM: (CA, cert, key).
fn pki() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(rcgen::DnType::CommonName, "fleetaudit test CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut server = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    server.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = server.signed_by(&key, &issuer).unwrap().pem();
    (ca_pem, cert, key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_connections_verify_the_servers_certificate_and_name_by_default() {
    let (ca, cert, key) = pki();
    let pg = support::postgres::Postgres::start_tls(&cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let connect = |url: String| async move { Store::connect(&Database::parse(&url), true).await };

    // The private CA is not among the system's: refused, saying how to trust it.
    let refused = connect(pg.tcp_url("localhost", "postgres", "")).await.unwrap_err().to_string();
    assert!(refused.starts_with("TLS to the PostgreSQL database postgres://"), "{refused}");
    assert!(refused.contains("add sslrootcert=/path/to/ca.pem"), "{refused}");

    // With the CA: connected, migrated, usable, and the connection really is TLS.
    let root = format!("sslrootcert={}", ca_file.display());
    let store = connect(pg.tcp_url("localhost", "postgres", &root)).await.unwrap();
    assert!(store.scans().await.unwrap().is_empty());
    let tls = pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
          WHERE a.application_name = 'fleetaudit' AND s.ssl",
    );
    assert!(tls.trim().parse::<i64>().unwrap() >= 1, "the store's connections are TLS: {tls}");
    store.close().await;

    // The certificate names localhost, not 127.0.0.1: verify-full refuses the address even with the CA.
    let wrong_name = connect(pg.tcp_url("127.0.0.1", "postgres", &root)).await.unwrap_err().to_string();
    assert!(wrong_name.starts_with("TLS to the PostgreSQL database"), "{wrong_name}");

    // The URL's own choice is honoured: require (encrypted, not verified) connects to the address.
    let store = connect(pg.tcp_url("127.0.0.1", "postgres", "sslmode=require")).await.unwrap();
    store.close().await;
}
