//! Who the agent is to the API servers and how it trusts them: the cluster CA and a client
//! certificate, read from PEM files (`--ca/--cert/--key`) or from a kubeconfig's `*-data` fields,
//! turned into one rustls client configuration offering HTTP/2.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::ApiError;

/// The PEM bytes of the three things a TLS client with a client certificate needs.
pub struct Credentials {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// A kubeconfig file: the kubeconfig's first cluster's server and CA, its first user's client
/// certificate. Only the embedded (`*-data`) form is read: it is what `keel up` writes.
pub struct Kubeconfig {
    pub server: String,
    pub credentials: Credentials,
}

#[derive(Deserialize)]
struct KubeconfigFile {
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
}

#[derive(Deserialize)]
struct NamedCluster {
    cluster: ClusterEntry,
}

#[derive(Deserialize)]
struct ClusterEntry {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
}

#[derive(Deserialize)]
struct NamedUser {
    user: UserEntry,
}

#[derive(Deserialize)]
struct UserEntry {
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<String>,
}

impl Credentials {
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Credentials, ApiError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ApiError::Credentials(format!("reading {}: {source}", path.display())))
        };
        Ok(Credentials { ca_pem: read(ca)?, cert_pem: read(cert)?, key_pem: read(key)? })
    }

    /// The rustls configuration: trust only the cluster CA, present the client certificate,
    /// offer only `h2` (the agent multiplexes everything over one connection).
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, ApiError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.ca_pem.as_slice()) {
            let cert = cert.map_err(|e| ApiError::Credentials(format!("the CA certificate: {e}")))?;
            roots.add(cert).map_err(|e| ApiError::Credentials(format!("the CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(ApiError::Credentials("the CA file holds no certificate".into()));
        }
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut self.cert_pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| ApiError::Credentials(format!("the client certificate: {e}")))?;
        if chain.is_empty() {
            return Err(ApiError::Credentials("the client certificate file holds no certificate".into()));
        }
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut self.key_pem.as_slice())
            .map_err(|e| ApiError::Credentials(format!("the client key: {e}")))?
            .ok_or_else(|| ApiError::Credentials("the client key file holds no key".into()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ApiError::Credentials(format!("TLS versions: {e}")))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| ApiError::Credentials(format!("the client certificate and key: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

impl Kubeconfig {
    pub fn load(path: &Path) -> Result<Kubeconfig, ApiError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ApiError::Credentials(format!("reading {}: {e}", path.display())))?;
        Kubeconfig::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Kubeconfig, ApiError> {
        let file: KubeconfigFile =
            serde_yaml::from_str(text).map_err(|e| ApiError::Credentials(format!("the kubeconfig: {e}")))?;
        let cluster = file
            .clusters
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::Credentials("the kubeconfig names no cluster".into()))?
            .cluster;
        let user = file
            .users
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::Credentials("the kubeconfig names no user".into()))?
            .user;
        let decode = |field: &str, value: Option<String>| {
            let value = value.ok_or_else(|| ApiError::Credentials(format!("the kubeconfig has no {field}")))?;
            base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .map_err(|e| ApiError::Credentials(format!("the kubeconfig's {field}: {e}")))
        };
        Ok(Kubeconfig {
            server: cluster.server,
            credentials: Credentials {
                ca_pem: decode("certificate-authority-data", cluster.certificate_authority_data)?,
                cert_pem: decode("client-certificate-data", user.client_certificate_data)?,
                key_pem: decode("client-key-data", user.client_key_data)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_yields_its_server_and_decoded_credentials() {
        let text = "apiVersion: v1\nkind: Config\nclusters:\n- name: keel\n  cluster:\n    server: \"https://127.0.0.1:6443\"\n    certificate-authority-data: Q0E=\nusers:\n- name: keel-admin\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";
        let config = Kubeconfig::parse(text).expect("parses");
        assert_eq!(config.server, "https://127.0.0.1:6443");
        assert_eq!(config.credentials.ca_pem, b"CA");
        assert_eq!(config.credentials.cert_pem, b"CERT");
        assert_eq!(config.credentials.key_pem, b"KEY");
    }

    #[test]
    fn a_kubeconfig_without_a_user_is_an_error() {
        let text = "clusters:\n- name: keel\n  cluster:\n    server: https://x\n";
        assert!(matches!(Kubeconfig::parse(text), Err(ApiError::Credentials(_))));
    }
}
