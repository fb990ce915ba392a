//! `keel store` with TLS: the client port serves only TLS, and with `--trusted-ca-file` only
//! clients holding a certificate from that CA get in. Driven by the real etcdctl.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

/// Writes ca.pem, server.pem/server-key.pem (for 127.0.0.1) and client.pem/client-key.pem.
fn write_certificates(dir: &Path) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "keel test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca_params, ca_key);
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca");

    let leaf = |name: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params.extended_key_usages = vec![usage];
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &issuer).expect("sign leaf");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write cert");
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).expect("write key");
    };
    leaf("server", vec!["127.0.0.1".into(), "localhost".into()], ExtendedKeyUsagePurpose::ServerAuth);
    leaf("client", vec![], ExtendedKeyUsagePurpose::ClientAuth);
}

/// The server process, killed by PID when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn etcdctl_tls(endpoint: &str, dir: &Path, client_cert: bool, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(common::require_program("etcdctl"));
    command
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://{endpoint}"))
        .arg(format!("--cacert={}", dir.join("ca.pem").display()))
        .arg("--dial-timeout=2s")
        .arg("--command-timeout=3s");
    if client_cert {
        command
            .arg(format!("--cert={}", dir.join("client.pem").display()))
            .arg(format!("--key={}", dir.join("client-key.pem").display()));
    }
    command.args(args).output().expect("run etcdctl")
}

#[test]
fn tls_with_client_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_certificates(dir.path());
    let port = common::free_port();
    let endpoint = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log");
    let child = Command::new(common::keel_bin())
        .arg("store")
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--listen-client-urls=https://{endpoint}"))
        .arg(format!("--advertise-client-urls=https://{endpoint}"))
        .arg(format!("--cert-file={}", dir.path().join("server.pem").display()))
        .arg(format!("--key-file={}", dir.path().join("server-key.pem").display()))
        .arg(format!("--trusted-ca-file={}", dir.path().join("ca.pem").display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start keel store");
    let _server = Running(child);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = etcdctl_tls(&endpoint, dir.path(), true, &["put", "secure", "yes"]);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "TLS store never served: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
    let get = etcdctl_tls(&endpoint, dir.path(), true, &["get", "secure", "--print-value-only"]);
    assert!(get.status.success());
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "yes");

    let without_cert = etcdctl_tls(&endpoint, dir.path(), false, &["get", "secure"]);
    assert!(!without_cert.status.success(), "a client without a certificate must be refused");

    let plaintext = common::etcdctl(&endpoint, &["--dial-timeout=2s", "--command-timeout=3s", "get", "secure"]);
    assert!(!plaintext.status.success(), "plaintext must not be served on a TLS port");
}
