//! The cluster PKI: one CA and the certificates every Keel component presents.
//!
//! On first start [`ensure`] creates a private CA and signs one certificate per role. On later
//! starts it loads them and re-issues only a leaf that is missing, expires within
//! [`LEAF_RENEW_BEFORE`], does not match its key, no longer chains to the CA, has the wrong
//! subject, or lacks a host name it must now carry (a node got a new address). The CA itself is
//! never replaced: a new CA would silently invalidate every kubeconfig and every store member's
//! trust, so a missing CA key or a broken CA is an error for the operator.
//!
//! # Files
//!
//! All PEM, in one directory that [`ensure`] creates with mode 0700. Keys are PKCS#8 ECDSA P-256
//! with mode 0600; certificates have mode 0644.
//!
//! | files | certificate | why it exists |
//! | --- | --- | --- |
//! | `ca.crt`, `ca.key` | CA, CN `keel-ca`, 10 years, path length 0 | the one trust root of kubectl, the API server and the store members |
//! | `apiserver.crt/.key` | serverAuth; SANs: the hosts, `localhost`, `127.0.0.1`, `kubernetes`, `kubernetes.default`, `kubernetes.default.svc`, `kubernetes.default.svc.cluster.local` | the API server's TLS identity; the in-cluster names let pods reach it as the `kubernetes` service |
//! | `admin.crt/.key` | clientAuth; CN `kubernetes-admin`, O `system:masters` | the credential in the kubeconfig Keel writes; RBAC treats `system:masters` as cluster-admin |
//! | `store-server.crt/.key` | serverAuth + clientAuth; SANs: the hosts, `localhost`, `127.0.0.1` | the store's client port, so `etcdctl --cacert --cert --key` works; clientAuth because etcd's gateway connects to its own port with it |
//! | `store-peer.crt/.key` | serverAuth + clientAuth; the same SANs | mutual TLS between store members: a member is server and client on the peer port |
//! | `store-client.crt/.key` | clientAuth; CN `keel-apiserver` | how the API server (or an operator's etcdctl) authenticates to the store |
//!
//! Leaves are valid for one year (never past the CA) and renewed with the same key.
//!
//! # Concurrency and crash safety
//!
//! Two processes may run [`ensure`] on one directory at once. No lock file is used: a lock left
//! behind by a crash would block every later start until someone deletes it by hand. Instead every
//! file is written under a unique temporary name in the same directory, synced, and published in
//! one atomic step:
//! - keys and `ca.crt` are published **once**, with `link(2)`, which fails if the name exists: the
//!   first process wins, every other one discards its own and loads the winner's from disk;
//! - leaf certificates are published with `rename(2)` and are always issued for the key on disk
//!   (which never changes once published), so whichever racer's rename lands last, the certificate
//!   matches the key.
//!
//! `ca.key` is published before `ca.crt`, so an existing `ca.crt` means the CA is complete. Readers
//! never see half a file; a crash leaves at most a stray `.NAME.tmp-*` file, and the next start
//! finishes the job.
//!
//! # API boundary
//!
//! This module knows files and TLS configuration, not HTTP. [`server_config`] builds the API
//! server's rustls config (client certificates optional, but verified against the CA when sent);
//! [`client_identity`] turns the verified peer certificate into a user and groups. Answering 401
//! to a request without an identity is the HTTP layer's job.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SerialNumber,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};
use x509_parser::certificate::X509Certificate;

/// Common name of the cluster CA.
pub const CA_COMMON_NAME: &str = "keel-ca";
/// User name of the admin client certificate (the kubeconfig's credential).
pub const ADMIN_USER: &str = "kubernetes-admin";
/// Group of the admin client certificate: Kubernetes RBAC binds it to cluster-admin.
pub const ADMIN_GROUP: &str = "system:masters";
/// User name the API server presents to the store.
pub const STORE_CLIENT_USER: &str = "keel-apiserver";

/// How long the CA is valid: long, because replacing it means redistributing every credential.
pub const CA_LIFETIME: Duration = Duration::from_secs(3650 * SECONDS_PER_DAY);
/// How long a leaf is valid; [`ensure`] renews it well before that.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(365 * SECONDS_PER_DAY);
/// A leaf with less validity left than this is renewed by [`ensure`].
pub const LEAF_RENEW_BEFORE: Duration = Duration::from_secs(30 * SECONDS_PER_DAY);
/// `notBefore` is back-dated by this much so that a member whose clock is slightly behind the one
/// that issued the certificate still accepts it.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(3600);
const SECONDS_PER_DAY: u64 = 86_400;

const KEY_FILE_MODE: u32 = 0o600;
const CERT_FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o700;

/// Names every API server certificate carries besides the caller's hosts: local access and the
/// in-cluster DNS names of the `kubernetes` service.
const APISERVER_NAMES: [&str; 6] = [
    "localhost",
    "127.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];
/// Names every store server and peer certificate carries besides the caller's hosts.
const STORE_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// Which host names a leaf certificate must be valid for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NameSet {
    /// A pure client certificate: no subject alternative names.
    None,
    /// The hosts plus [`APISERVER_NAMES`].
    Apiserver,
    /// The hosts plus [`STORE_NAMES`].
    Store,
}

/// What one leaf certificate is: its files, subject and uses.
#[derive(Debug)]
struct LeafSpec {
    /// File stem: the certificate is `STEM.crt`, the key `STEM.key`.
    stem: &'static str,
    common_name: &'static str,
    /// Subject O values; Kubernetes reads them as the user's groups.
    organizations: &'static [&'static str],
    /// EKU serverAuth: may be presented by a TLS server.
    server_auth: bool,
    /// EKU clientAuth: may be presented by a TLS client.
    client_auth: bool,
    names: NameSet,
}

const APISERVER: LeafSpec = LeafSpec {
    stem: "apiserver",
    common_name: "kube-apiserver",
    organizations: &[],
    server_auth: true,
    client_auth: false,
    names: NameSet::Apiserver,
};
const ADMIN: LeafSpec = LeafSpec {
    stem: "admin",
    common_name: ADMIN_USER,
    organizations: &[ADMIN_GROUP],
    server_auth: false,
    client_auth: true,
    names: NameSet::None,
};
const STORE_SERVER: LeafSpec = LeafSpec {
    stem: "store-server",
    common_name: "keel-store",
    organizations: &[],
    server_auth: true,
    // etcd's gRPC gateway dials its own client port with the serving certificate, so real etcd
    // run with this certificate and --client-cert-auth needs clientAuth too (as kubeadm's has).
    client_auth: true,
    names: NameSet::Store,
};
const STORE_PEER: LeafSpec = LeafSpec {
    stem: "store-peer",
    common_name: "keel-store-peer",
    organizations: &[],
    server_auth: true,
    client_auth: true,
    names: NameSet::Store,
};
const STORE_CLIENT: LeafSpec = LeafSpec {
    stem: "store-client",
    common_name: STORE_CLIENT_USER,
    organizations: &[],
    server_auth: false,
    client_auth: true,
    names: NameSet::None,
};
/// Every leaf [`ensure`] maintains.
const LEAVES: [&LeafSpec; 5] = [&APISERVER, &ADMIN, &STORE_SERVER, &STORE_PEER, &STORE_CLIENT];

/// Everything that can go wrong; each variant names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done: "reading", "writing", ...
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a valid {what}: {reason}", path.display())]
    Parse { path: PathBuf, what: &'static str, reason: String },
    #[error(
        "{} exists but the CA key {} is missing: restore the key, or remove the whole PKI directory \
         to create a new cluster CA (every kubeconfig and store member must then be updated)",
        cert.display(),
        key.display()
    )]
    MissingCaKey { cert: PathBuf, key: PathBuf },
    #[error("{}: unusable cluster CA: {reason}", path.display())]
    InvalidCa { path: PathBuf, reason: String },
    #[error("{host:?} cannot be a certificate host name: it is neither an IP address nor a DNS name")]
    InvalidHost { host: String },
    #[error("generating {}: {source}", path.display())]
    Generate {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("building the TLS configuration from {}: {source}", path.display())]
    Tls {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the system clock is before 1970")]
    Clock,
}

/// The PKI directory of one cluster member; see the module docs for what each file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pki {
    /// The directory holding every file; all paths below are inside it.
    pub dir: PathBuf,
}

impl Pki {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn apiserver_cert(&self) -> PathBuf {
        self.leaf_cert(&APISERVER)
    }
    pub fn apiserver_key(&self) -> PathBuf {
        self.leaf_key(&APISERVER)
    }
    pub fn admin_cert(&self) -> PathBuf {
        self.leaf_cert(&ADMIN)
    }
    pub fn admin_key(&self) -> PathBuf {
        self.leaf_key(&ADMIN)
    }
    /// The store's serving certificate for its client port.
    pub fn store_server_cert(&self) -> PathBuf {
        self.leaf_cert(&STORE_SERVER)
    }
    pub fn store_server_key(&self) -> PathBuf {
        self.leaf_key(&STORE_SERVER)
    }
    /// The store members' peer certificate: presented both as server and as client.
    pub fn store_peer_cert(&self) -> PathBuf {
        self.leaf_cert(&STORE_PEER)
    }
    pub fn store_peer_key(&self) -> PathBuf {
        self.leaf_key(&STORE_PEER)
    }
    /// The certificate the API server (or etcdctl) presents to the store.
    pub fn store_client_cert(&self) -> PathBuf {
        self.leaf_cert(&STORE_CLIENT)
    }
    pub fn store_client_key(&self) -> PathBuf {
        self.leaf_key(&STORE_CLIENT)
    }

    fn leaf_cert(&self, spec: &LeafSpec) -> PathBuf {
        self.dir.join(format!("{}.crt", spec.stem))
    }
    fn leaf_key(&self, spec: &LeafSpec) -> PathBuf {
        self.dir.join(format!("{}.key", spec.stem))
    }
}

/// Loads the PKI in `dir`, creating whatever is missing.
///
/// `hosts` are the names (IP addresses or DNS names) clients use to reach this member; the API
/// server and store server/peer certificates carry them all. If `dir/ca.crt` exists the CA is
/// loaded (a missing `ca.key` is an error) and each leaf is checked and re-issued if needed (see
/// the module docs); otherwise everything is generated. Safe to call from racing processes.
pub fn ensure(dir: &Path, hosts: &[String]) -> Result<Pki, PkiError> {
    let host_names = validated_hosts(hosts)?;
    create_private_dir(dir)?;
    let pki = Pki { dir: dir.to_path_buf() };
    let now = unix_now()?;
    let ca = if exists(&pki.ca_cert())? { load_ca(&pki, now)? } else { create_ca(&pki, now)? };
    for spec in LEAVES {
        let names = match spec.names {
            NameSet::None => Vec::new(),
            NameSet::Apiserver => names_with(&host_names, &APISERVER_NAMES),
            NameSet::Store => names_with(&host_names, &STORE_NAMES),
        };
        ensure_leaf(&pki, &ca, spec, &names, now)?;
    }
    Ok(pki)
}

/// The API server's TLS configuration: it serves `apiserver.crt`, asks for a client certificate
/// but accepts connections without one, rejects (fails the handshake on) a client certificate
/// that does not chain to `ca.crt`, and offers ALPN `h2` then `http/1.1`.
///
/// Uses the ring provider explicitly, so it does not depend on a process-wide default provider.
pub fn server_config(pki: &Pki) -> Result<ServerConfig, PkiError> {
    let provider = Arc::new(ring::default_provider());
    let ca_path = pki.ca_cert();
    let roots = root_store(&ca_path, &read_file(&ca_path)?)?;
    let client_verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|error| PkiError::InvalidCa { path: ca_path.clone(), reason: error.to_string() })?;

    let cert_path = pki.apiserver_cert();
    let cert = parse_cert_pem(&cert_path, &read_file(&cert_path)?)?;
    let key_path = pki.apiserver_key();
    let key = parse_private_key_der(&key_path, &read_file(&key_path)?)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| PkiError::Tls { path: cert_path.clone(), source })?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(vec![cert], key)
        .map_err(|source| PkiError::Tls { path: cert_path, source })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Who a TLS client is, per its client certificate (the Kubernetes x509 authenticator's rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject's common name.
    pub user: String,
    /// The subject's organization values, in certificate order.
    pub groups: Vec<String>,
}

/// The identity in the client's leaf certificate, or None if there is none (no certificate, an
/// unparsable one, or no common name): the request is then unauthenticated.
///
/// `peer_certs` must come from a handshake under [`server_config`] (for tokio-rustls:
/// `stream.get_ref().1.peer_certificates()`): rustls only reports certificates its verifier
/// accepted, which is what makes trusting the subject here sound. Do not pass unverified input.
pub fn client_identity(peer_certs: Option<&[CertificateDer<'_>]>) -> Option<ClientIdentity> {
    let leaf = peer_certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let (common_name, groups) = subject_of(&cert);
    let user = common_name.filter(|name| !name.is_empty())?;
    Some(ClientIdentity { user, groups })
}

/// Writes a kubeconfig for the admin user to `path` (mode 0600, atomically replacing any old
/// file), with the CA, certificate and key embedded, so it works from any directory.
pub fn write_kubeconfig(path: &Path, server_url: &str, pki: &Pki, cluster_name: &str) -> Result<(), PkiError> {
    let ca_pem = read_file(&pki.ca_cert())?;
    let cert_pem = read_file(&pki.admin_cert())?;
    let key_pem = read_file(&pki.admin_key())?;
    let yaml = kubeconfig_for(server_url, cluster_name, &ca_pem, &cert_pem, &key_pem);
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_error("creating directory", parent))?;
    }
    StagedFile::write(path, yaml.as_bytes(), KEY_FILE_MODE)?.replace(path)
}

/// The kubeconfig text [`write_kubeconfig`] writes: one cluster, one user named
/// `CLUSTER-admin`, one context named after the cluster, which is current.
pub fn kubeconfig_for(server_url: &str, cluster_name: &str, ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> String {
    let cluster = yaml_quoted(cluster_name);
    let user = yaml_quoted(&kubeconfig_user(cluster_name));
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {cluster}\n  \
           cluster:\n    \
             server: {server}\n    \
             certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n  \
           user:\n    \
             client-certificate-data: {cert}\n    \
             client-key-data: {key}\n\
         contexts:\n\
         - name: {cluster}\n  \
           context:\n    \
             cluster: {cluster}\n    \
             user: {user}\n\
         current-context: {cluster}\n\
         preferences: {{}}\n",
        server = yaml_quoted(server_url),
        ca = base64_encode(ca_pem),
        cert = base64_encode(cert_pem),
        key = base64_encode(key_pem),
    )
}

/// The kubeconfig user name for a cluster: distinct per cluster so kubeconfigs merge cleanly.
pub fn kubeconfig_user(cluster_name: &str) -> String {
    format!("{cluster_name}-admin")
}

// ---------------------------------------------------------------------------------------------
// The CA

/// The loaded cluster CA: what issuing and checking leaves needs.
struct Ca {
    /// `ca.crt` as on disk; leaves are issued under its subject and key identifier.
    cert_der: CertificateDer<'static>,
    key: KeyPair,
    /// Leaves never outlive the CA.
    not_after_unix: i64,
    /// Checks a server leaf chains to this CA and covers a name.
    server_verifier: Arc<WebPkiServerVerifier>,
    /// Checks a client leaf chains to this CA.
    client_verifier: Arc<dyn ClientCertVerifier>,
}

fn create_ca(pki: &Pki, now: Duration) -> Result<Ca, PkiError> {
    let cert_path = pki.ca_cert();
    // An existing ca.key without ca.crt is left over from an interrupted first start: reuse it.
    let key = load_or_create_key(&pki.ca_key())?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(CA_COMMON_NAME, &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(random_serial());
    set_validity(&mut params, now, CA_LIFETIME, None);
    let cert = params.self_signed(&key).map_err(|source| PkiError::Generate { path: cert_path.clone(), source })?;
    if StagedFile::write(&cert_path, cert.pem().as_bytes(), CERT_FILE_MODE)?.publish_once(&cert_path)? {
        tracing::info!(path = %cert_path.display(), "created the cluster CA");
    }
    // Load what is on disk: if another process published first, its CA is the one.
    load_ca(pki, now)
}

fn load_ca(pki: &Pki, now: Duration) -> Result<Ca, PkiError> {
    let cert_path = pki.ca_cert();
    let key_path = pki.ca_key();
    let cert_pem = read_file(&cert_path)?;
    if !exists(&key_path)? {
        return Err(PkiError::MissingCaKey { cert: cert_path, key: key_path });
    }
    let key = load_key(&key_path)?;
    let cert_der = parse_cert_pem(&cert_path, &cert_pem)?;
    let (_, cert) = parse_x509(&cert_path, &cert_der)?;
    let invalid = |reason: String| PkiError::InvalidCa { path: cert_path.clone(), reason };
    if !cert.is_ca() {
        return Err(invalid("not a CA certificate (basicConstraints CA is not set)".into()));
    }
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(invalid(format!("does not match the key in {}", key_path.display())));
    }
    let not_after_unix = cert.validity().not_after.timestamp();
    if not_after_unix <= seconds(now) {
        return Err(invalid(format!("expired at {}", cert.validity().not_after)));
    }
    if not_after_unix <= seconds(now + LEAF_RENEW_BEFORE) {
        tracing::warn!(path = %cert_path.display(), not_after = %cert.validity().not_after, "the cluster CA expires soon");
    }
    let roots = Arc::new(root_store(&cert_path, &cert_pem)?);
    let provider = Arc::new(ring::default_provider());
    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|error| invalid(error.to_string()))?;
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|error| invalid(error.to_string()))?;
    Ok(Ca { cert_der, key, not_after_unix, server_verifier, client_verifier })
}

fn root_store(path: &Path, ca_pem: &[u8]) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(parse_cert_pem(path, ca_pem)?)
        .map_err(|error| PkiError::InvalidCa { path: path.to_path_buf(), reason: error.to_string() })?;
    Ok(roots)
}

// ---------------------------------------------------------------------------------------------
// Leaves

/// Makes sure the leaf's key exists and its certificate is valid for `names`, issuing one if not.
fn ensure_leaf(pki: &Pki, ca: &Ca, spec: &LeafSpec, names: &[String], now: Duration) -> Result<(), PkiError> {
    let key = load_or_create_key(&pki.leaf_key(spec))?;
    let cert_path = pki.leaf_cert(spec);
    let defect = match read_optional(&cert_path)? {
        None => Some("missing".to_string()),
        Some(pem) => leaf_defect(ca, spec, names, &key, &cert_path, &pem, now)?,
    };
    let Some(defect) = defect else { return Ok(()) };
    tracing::info!(path = %cert_path.display(), reason = %defect, "issuing certificate");
    let pem = issue_leaf(ca, spec, names, &key, now)
        .map_err(|source| PkiError::Generate { path: cert_path.clone(), source })?;
    StagedFile::write(&cert_path, pem.as_bytes(), CERT_FILE_MODE)?.replace(&cert_path)
}

/// Why the leaf certificate on disk must be re-issued, or None if it is fine. An unparsable file
/// is an error rather than a reason: Keel never writes one, so something else is going on.
fn leaf_defect(
    ca: &Ca,
    spec: &LeafSpec,
    names: &[String],
    key: &KeyPair,
    path: &Path,
    pem: &[u8],
    now: Duration,
) -> Result<Option<String>, PkiError> {
    let der = parse_cert_pem(path, pem)?;
    let (_, cert) = parse_x509(path, &der)?;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Ok(Some("does not match its key".into()));
    }
    let (common_name, organizations) = subject_of(&cert);
    if common_name.as_deref() != Some(spec.common_name) || organizations != spec.organizations {
        return Ok(Some(format!("subject is CN={common_name:?} O={organizations:?}")));
    }
    if cert.validity().not_after.timestamp() <= seconds(now + LEAF_RENEW_BEFORE) {
        return Ok(Some(format!("expires at {}", cert.validity().not_after)));
    }
    let verify_time = UnixTime::since_unix_epoch(now);
    if spec.client_auth
        && let Err(error) = ca.client_verifier.verify_client_cert(&der, &[], verify_time)
    {
        return Ok(Some(format!("not a valid client certificate under the CA: {error}")));
    }
    if spec.server_auth {
        for name in names {
            let server_name = server_name(name)?;
            if let Err(error) = ca.server_verifier.verify_server_cert(&der, &[], &server_name, &[], verify_time) {
                return Ok(Some(format!("not a valid server certificate for {name} under the CA: {error}")));
            }
        }
    }
    Ok(None)
}

/// A PEM certificate for `key`, signed by the CA, as `spec` describes.
fn issue_leaf(
    ca: &Ca,
    spec: &LeafSpec,
    names: &[String],
    key: &KeyPair,
    now: Duration,
) -> Result<String, rcgen::Error> {
    // `new` turns each name into an IP or DNS subject alternative name.
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = distinguished_name(spec.common_name, spec.organizations);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if spec.server_auth {
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if spec.client_auth {
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    set_validity(&mut params, now, LEAF_LIFETIME, Some(ca.not_after_unix));
    let issuer = Issuer::from_ca_cert_der(&ca.cert_der, &ca.key)?;
    Ok(params.signed_by(key, &issuer)?.pem())
}

fn distinguished_name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    for organization in organizations {
        name.push(DnType::OrganizationName, *organization);
    }
    name
}

/// The subject's first common name and all organization values (undecodable values skipped).
fn subject_of(cert: &X509Certificate<'_>) -> (Option<String>, Vec<String>) {
    let subject = cert.subject();
    let common_name = subject.iter_common_name().next().and_then(|value| value.as_str().ok()).map(str::to_owned);
    let organizations =
        subject.iter_organization().filter_map(|value| value.as_str().ok()).map(str::to_owned).collect();
    (common_name, organizations)
}

/// A random positive 128-bit serial: certificates re-issued for the same key must still differ.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and without a leading zero byte, so the DER integer is exactly these 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// Valid from a little before `now` for `lifetime`, but not past `not_after_max_unix`.
fn set_validity(params: &mut CertificateParams, now: Duration, lifetime: Duration, not_after_max_unix: Option<i64>) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let not_before = now.saturating_sub(CLOCK_SKEW_ALLOWANCE).as_secs();
    let mut not_after = (now + lifetime).as_secs();
    if let Some(max) = not_after_max_unix {
        not_after = not_after.min(u64::try_from(max).unwrap_or(0));
    }
    params.not_before = epoch + Duration::from_secs(not_before);
    params.not_after = epoch + Duration::from_secs(not_after);
}

// ---------------------------------------------------------------------------------------------
// Host names

/// The caller's hosts, trimmed, without empties and duplicates, each checked to be an IP address
/// or a DNS name a TLS client can verify.
fn validated_hosts(hosts: &[String]) -> Result<Vec<String>, PkiError> {
    let mut names = Vec::with_capacity(hosts.len());
    for host in hosts.iter().map(|host| host.trim()).filter(|host| !host.is_empty()) {
        server_name(host)?;
        if !names.iter().any(|name: &String| name == host) {
            names.push(host.to_string());
        }
    }
    Ok(names)
}

/// `hosts` followed by those of `fixed` not already in it.
fn names_with(hosts: &[String], fixed: &[&str]) -> Vec<String> {
    let mut names = hosts.to_vec();
    for name in fixed {
        if !names.iter().any(|existing| existing == name) {
            names.push((*name).to_string());
        }
    }
    names
}

fn server_name(host: &str) -> Result<ServerName<'static>, PkiError> {
    ServerName::try_from(host.to_string()).map_err(|_| PkiError::InvalidHost { host: host.to_string() })
}

// ---------------------------------------------------------------------------------------------
// Files

/// A file written in full under a unique temporary name next to its destination, then published
/// atomically. Dropped unpublished, it removes itself.
struct StagedFile {
    path: PathBuf,
    published: bool,
}

impl StagedFile {
    /// Writes and syncs `contents` with exactly `mode` (no umask) next to `destination`.
    fn write(destination: &Path, contents: &[u8], mode: u32) -> Result<StagedFile, PkiError> {
        let dir = parent_dir(destination);
        let name = destination.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
        let suffix: u64 = rand::random();
        let path = dir.join(format!(".{name}.tmp-{}-{suffix:016x}", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(io_error("creating", &path))?;
        let staged = StagedFile { path, published: false };
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_error("setting the mode of", &staged.path))?;
        file.write_all(contents).map_err(io_error("writing", &staged.path))?;
        file.sync_all().map_err(io_error("syncing", &staged.path))?;
        Ok(staged)
    }

    /// Puts the file at `destination`, replacing whatever is there.
    fn replace(mut self, destination: &Path) -> Result<(), PkiError> {
        fs::rename(&self.path, destination).map_err(io_error("renaming into place", destination))?;
        self.published = true;
        sync_dir(parent_dir(destination))
    }

    /// Puts the file at `destination` unless something is already there; true if it did.
    fn publish_once(self, destination: &Path) -> Result<bool, PkiError> {
        // The temporary name is removed on drop either way; the link keeps the data.
        match fs::hard_link(&self.path, destination) {
            Ok(()) => {
                sync_dir(parent_dir(destination))?;
                Ok(true)
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(error) => {
                Err(PkiError::Io { op: "linking into place", path: destination.to_path_buf(), source: error })
            }
        }
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.published {
            // Best effort: a leftover temporary file is harmless and never read.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The key at `path`, generating and publishing one first if there is none.
fn load_or_create_key(path: &Path) -> Result<KeyPair, PkiError> {
    if !exists(path)? {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|source| PkiError::Generate { path: path.to_path_buf(), source })?;
        // Losing the race is fine: the winner's key is loaded below.
        StagedFile::write(path, key.serialize_pem().as_bytes(), KEY_FILE_MODE)?.publish_once(path)?;
    }
    load_key(path)
}

/// Reads a private key, first tightening its mode to 0600 if someone loosened it.
fn load_key(path: &Path) -> Result<KeyPair, PkiError> {
    let metadata = fs::metadata(path).map_err(io_error("inspecting", path))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "private key was readable by others; setting mode 0600");
        fs::set_permissions(path, fs::Permissions::from_mode(KEY_FILE_MODE))
            .map_err(io_error("setting the mode of", path))?;
    }
    let pem = read_file(path)?;
    let text = std::str::from_utf8(&pem).map_err(|error| parse_error(path, "private key", error))?;
    KeyPair::from_pem(text).map_err(|error| parse_error(path, "private key", error))
}

fn parse_cert_pem(path: &Path, pem: &[u8]) -> Result<CertificateDer<'static>, PkiError> {
    let mut reader = pem;
    match rustls_pemfile::certs(&mut reader).next() {
        Some(Ok(der)) => Ok(der),
        Some(Err(error)) => Err(parse_error(path, "certificate", error)),
        None => Err(parse_error(path, "certificate", "no CERTIFICATE block")),
    }
}

fn parse_private_key_der(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, PkiError> {
    let mut reader = pem;
    match rustls_pemfile::private_key(&mut reader) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(parse_error(path, "private key", "no PRIVATE KEY block")),
        Err(error) => Err(parse_error(path, "private key", error)),
    }
}

fn parse_x509<'a>(path: &Path, der: &'a CertificateDer<'_>) -> Result<(&'a [u8], X509Certificate<'a>), PkiError> {
    x509_parser::parse_x509_certificate(der.as_ref()).map_err(|error| parse_error(path, "certificate", error))
}

fn parse_error(path: &Path, what: &'static str, reason: impl ToString) -> PkiError {
    PkiError::Parse { path: path.to_path_buf(), what, reason: reason.to_string() }
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PkiError + 'a {
    move |source| PkiError::Io { op, path: path.to_path_buf(), source }
}

fn read_file(path: &Path) -> Result<Vec<u8>, PkiError> {
    fs::read(path).map_err(io_error("reading", path))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, PkiError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io { op: "reading", path: path.to_path_buf(), source }),
    }
}

fn exists(path: &Path) -> Result<bool, PkiError> {
    path.try_exists().map_err(io_error("inspecting", path))
}

fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(io_error("creating directory", dir))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Makes a rename or link in `dir` durable, so a crash cannot roll a published file back.
fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    File::open(dir).and_then(|handle| handle.sync_all()).map_err(io_error("syncing directory", dir))
}

fn unix_now() -> Result<Duration, PkiError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|_| PkiError::Clock)?;
    Ok(Duration::from_secs(now.as_secs()))
}

fn seconds(since_epoch: Duration) -> i64 {
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Text encodings for the kubeconfig

/// Standard base64 with padding (RFC 4648 §4), as kubeconfig `*-data` fields expect.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte_at = |index: usize| u32::from(chunk.get(index).copied().unwrap_or(0));
        let group = (byte_at(0) << 16) | (byte_at(1) << 8) | byte_at(2);
        let sextet = |shift: u32| char::from(ALPHABET[((group >> shift) & 0x3f) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// `text` as a YAML double-quoted scalar, so names and URLs with `:`, `#` or quotes stay strings.
fn yaml_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            // Other control characters and YAML's extra line breaks, escaped so none ends the line.
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    const ALL_FILES: [&str; 12] = [
        "ca.crt",
        "ca.key",
        "apiserver.crt",
        "apiserver.key",
        "admin.crt",
        "admin.key",
        "store-server.crt",
        "store-server.key",
        "store-peer.crt",
        "store-peer.key",
        "store-client.crt",
        "store-client.key",
    ];

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
        ALL_FILES.iter().map(|name| (name.to_string(), fs::read(dir.join(name)).expect("read pki file"))).collect()
    }

    fn cert_der(path: &Path) -> CertificateDer<'static> {
        parse_cert_pem(path, &fs::read(path).expect("read cert")).expect("parse cert")
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    /// The CA's verifiers, built independently of `ensure`'s own checks.
    fn verifiers(pki: &Pki) -> (Arc<WebPkiServerVerifier>, Arc<dyn ClientCertVerifier>) {
        let pem = fs::read(pki.ca_cert()).expect("read ca");
        let roots = Arc::new(root_store(&pki.ca_cert(), &pem).expect("roots"));
        let provider = Arc::new(ring::default_provider());
        let server = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone()).build().expect("sv");
        let client = WebPkiClientVerifier::builder_with_provider(roots, provider).build().expect("cv");
        (server, client)
    }

    fn assert_server_cert_valid(pki: &Pki, cert: &Path, name: &str) {
        let (server, _) = verifiers(pki);
        let name = ServerName::try_from(name.to_string()).expect("server name");
        server
            .verify_server_cert(&cert_der(cert), &[], &name, &[], UnixTime::now())
            .unwrap_or_else(|error| panic!("{} not valid for {name:?}: {error}", cert.display()));
    }

    fn assert_client_cert_valid(pki: &Pki, cert: &Path) {
        let (_, client) = verifiers(pki);
        client
            .verify_client_cert(&cert_der(cert), &[], UnixTime::now())
            .unwrap_or_else(|error| panic!("{} not a valid client cert: {error}", cert.display()));
    }

    #[test]
    fn ensure_creates_every_file_with_private_keys() {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("pki");
        let pki = ensure(&dir, &hosts(&["10.0.0.5", "node-a.example"])).expect("ensure");
        assert_eq!(pki.dir, dir);
        for name in ALL_FILES {
            let path = dir.join(name);
            assert!(path.is_file(), "{name} missing");
            let expected = if name.ends_with(".key") { 0o600 } else { 0o644 };
            assert_eq!(mode(&path), expected, "{name} mode");
        }
        assert_eq!(mode(&dir), 0o700);
        // Exactly the twelve files: no temporary file left behind.
        let entries = fs::read_dir(&dir).expect("read_dir").count();
        assert_eq!(entries, ALL_FILES.len());
        let accessors = [
            pki.ca_cert(),
            pki.ca_key(),
            pki.apiserver_cert(),
            pki.apiserver_key(),
            pki.admin_cert(),
            pki.admin_key(),
            pki.store_server_cert(),
            pki.store_server_key(),
            pki.store_peer_cert(),
            pki.store_peer_key(),
            pki.store_client_cert(),
            pki.store_client_key(),
        ];
        let expected: Vec<PathBuf> = ALL_FILES.iter().map(|name| dir.join(name)).collect();
        assert_eq!(accessors.to_vec(), expected);
    }

    #[test]
    fn certificates_have_the_documented_contents() {
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(temp.path(), &hosts(&["10.0.0.5", "node-a.example"])).expect("ensure");

        let ca_der = cert_der(&pki.ca_cert());
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("parse ca");
        assert!(ca.is_ca());
        assert_eq!(subject_of(&ca), (Some(CA_COMMON_NAME.to_string()), vec![]));
        let ca_days = (ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp()) / 86_400;
        assert!((3650..=3651).contains(&ca_days), "CA valid {ca_days} days");

        for name in ["10.0.0.5", "node-a.example", "localhost", "127.0.0.1", "kubernetes.default.svc.cluster.local"] {
            assert_server_cert_valid(&pki, &pki.apiserver_cert(), name);
        }
        for name in ["10.0.0.5", "node-a.example", "localhost", "127.0.0.1"] {
            assert_server_cert_valid(&pki, &pki.store_server_cert(), name);
            assert_server_cert_valid(&pki, &pki.store_peer_cert(), name);
        }
        assert_client_cert_valid(&pki, &pki.store_peer_cert());
        assert_client_cert_valid(&pki, &pki.store_server_cert());
        assert_client_cert_valid(&pki, &pki.admin_cert());
        assert_client_cert_valid(&pki, &pki.store_client_cert());

        let admin_der = cert_der(&pki.admin_cert());
        let (_, admin) = x509_parser::parse_x509_certificate(&admin_der).expect("parse admin");
        assert_eq!(subject_of(&admin), (Some(ADMIN_USER.to_string()), vec![ADMIN_GROUP.to_string()]));
        assert!(!admin.is_ca());
        let leaf_days = (admin.validity().not_after.timestamp() - admin.validity().not_before.timestamp()) / 86_400;
        assert_eq!(leaf_days, 365);
        let store_client_der = cert_der(&pki.store_client_cert());
        let (_, store_client) = x509_parser::parse_x509_certificate(&store_client_der).expect("parse");
        assert_eq!(subject_of(&store_client).0.as_deref(), Some(STORE_CLIENT_USER));
    }

    #[test]
    fn certificates_are_used_only_for_their_purpose() {
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(temp.path(), &[]).expect("ensure");
        let (server, client) = verifiers(&pki);
        let localhost = ServerName::try_from("localhost").expect("name");
        // A client certificate cannot serve, a server certificate cannot authenticate a client.
        assert!(
            server.verify_server_cert(&cert_der(&pki.admin_cert()), &[], &localhost, &[], UnixTime::now()).is_err()
        );
        assert!(client.verify_client_cert(&cert_der(&pki.apiserver_cert()), &[], UnixTime::now()).is_err());
        // The store certificates do not carry the API server's in-cluster names.
        let kubernetes = ServerName::try_from("kubernetes").expect("name");
        let store = cert_der(&pki.store_server_cert());
        assert!(server.verify_server_cert(&store, &[], &kubernetes, &[], UnixTime::now()).is_err());
    }

    #[test]
    fn second_ensure_loads_without_regenerating() {
        let temp = tempfile::tempdir().expect("tempdir");
        let host_list = hosts(&["10.0.0.5"]);
        ensure(temp.path(), &host_list).expect("first ensure");
        let before = snapshot(temp.path());
        ensure(temp.path(), &host_list).expect("second ensure");
        assert_eq!(snapshot(temp.path()), before);
    }

    #[test]
    fn deleted_leaf_is_regenerated_and_chains_to_the_ca() {
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(temp.path(), &[]).expect("ensure");
        let ca_before = fs::read(pki.ca_cert()).expect("read ca");
        let cert_before = fs::read(pki.apiserver_cert()).expect("read cert");
        let key_before = fs::read(pki.apiserver_key()).expect("read key");

        // The certificate alone: re-issued for the same key.
        fs::remove_file(pki.apiserver_cert()).expect("remove cert");
        ensure(temp.path(), &[]).expect("ensure after cert removal");
        assert_ne!(fs::read(pki.apiserver_cert()).expect("read cert"), cert_before);
        assert_eq!(fs::read(pki.apiserver_key()).expect("read key"), key_before);
        assert_server_cert_valid(&pki, &pki.apiserver_cert(), "kubernetes");

        // Key and certificate: both new, still under the same CA.
        fs::remove_file(pki.admin_cert()).expect("remove cert");
        fs::remove_file(pki.admin_key()).expect("remove key");
        ensure(temp.path(), &[]).expect("ensure after leaf removal");
        assert_eq!(mode(&pki.admin_key()), 0o600);
        assert_client_cert_valid(&pki, &pki.admin_cert());

        // The key alone: the old certificate no longer matches, so it is re-issued.
        let peer_cert_before = fs::read(pki.store_peer_cert()).expect("read");
        fs::remove_file(pki.store_peer_key()).expect("remove key");
        ensure(temp.path(), &[]).expect("ensure after key removal");
        assert_ne!(fs::read(pki.store_peer_cert()).expect("read"), peer_cert_before);
        let key = load_key(&pki.store_peer_key()).expect("load key");
        let der = cert_der(&pki.store_peer_cert());
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parse");
        assert_eq!(cert.public_key().raw, key.subject_public_key_info().as_slice());

        assert_eq!(fs::read(pki.ca_cert()).expect("read ca"), ca_before);
    }

    #[test]
    fn a_new_host_reissues_only_the_server_certificates() {
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(temp.path(), &hosts(&["10.0.0.5"])).expect("ensure");
        let before = snapshot(temp.path());
        ensure(temp.path(), &hosts(&["10.0.0.5", "10.0.0.6"])).expect("ensure with a new host");
        let after = snapshot(temp.path());
        let changed: Vec<&str> =
            before.iter().zip(&after).filter(|(old, new)| old.1 != new.1).map(|(old, _)| old.0.as_str()).collect();
        assert_eq!(changed, ["apiserver.crt", "store-server.crt", "store-peer.crt"]);
        assert_server_cert_valid(&pki, &pki.apiserver_cert(), "10.0.0.6");
        assert_server_cert_valid(&pki, &pki.store_peer_cert(), "10.0.0.6");
    }

    #[test]
    fn loosened_key_permissions_are_restored() {
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(temp.path(), &[]).expect("ensure");
        fs::set_permissions(pki.ca_key(), fs::Permissions::from_mode(0o644)).expect("chmod");
        ensure(temp.path(), &[]).expect("ensure");
        assert_eq!(mode(&pki.ca_key()), 0o600);
    }

    #[test]
    fn a_missing_ca_key_is_an_error_naming_it() {
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(temp.path(), &[]).expect("ensure");
        let ca_before = fs::read(pki.ca_cert()).expect("read ca");
        fs::remove_file(pki.ca_key()).expect("remove ca key");
        let error = ensure(temp.path(), &[]).expect_err("a CA without its key must not load");
        assert!(matches!(error, PkiError::MissingCaKey { .. }), "{error:?}");
        assert!(error.to_string().contains(&pki.ca_key().display().to_string()), "{error}");
        // Nothing was regenerated behind the operator's back.
        assert_eq!(fs::read(pki.ca_cert()).expect("read ca"), ca_before);
        assert!(!pki.ca_key().exists());
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(temp.path(), &[]).expect("ensure");
        fs::write(pki.admin_cert(), "not a certificate").expect("corrupt");
        let error = ensure(temp.path(), &[]).expect_err("a corrupt certificate must not load");
        assert!(matches!(error, PkiError::Parse { .. }), "{error:?}");
        assert!(error.to_string().contains("admin.crt"), "{error}");

        fs::write(pki.ca_cert(), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").expect("corrupt");
        let error = ensure(temp.path(), &[]).expect_err("a corrupt CA must not load");
        assert!(error.to_string().contains("ca.crt"), "{error}");
    }

    #[test]
    fn an_invalid_host_is_rejected() {
        let temp = tempfile::tempdir().expect("tempdir");
        let error = ensure(temp.path(), &hosts(&["not a host"])).expect_err("invalid host");
        assert!(matches!(error, PkiError::InvalidHost { ref host } if host == "not a host"), "{error:?}");
    }

    #[test]
    fn racing_ensures_converge_on_one_consistent_pki() {
        const RACERS: usize = 4;
        for round in 0..3 {
            let temp = tempfile::tempdir().expect("tempdir");
            let dir = temp.path().join(format!("pki-{round}"));
            let barrier = Arc::new(std::sync::Barrier::new(RACERS));
            let racers: Vec<_> = (0..RACERS)
                .map(|_| {
                    let (dir, barrier) = (dir.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        ensure(&dir, &hosts(&["10.0.0.5"]))
                    })
                })
                .collect();
            for racer in racers {
                racer.join().expect("racer panicked").expect("racing ensure");
            }
            // Every key matches its certificate and every leaf chains: otherwise this ensure
            // would re-issue something.
            let settled = snapshot(&dir);
            let pki = ensure(&dir, &hosts(&["10.0.0.5"])).expect("ensure after the race");
            assert_eq!(snapshot(&dir), settled, "round {round}");
            assert_server_cert_valid(&pki, &pki.apiserver_cert(), "10.0.0.5");
            assert_eq!(fs::read_dir(&dir).expect("read_dir").count(), ALL_FILES.len(), "temporary files left");
        }
    }

    // --- TLS --------------------------------------------------------------------------------

    fn client_config(ca: &Path, identity: Option<(PathBuf, PathBuf)>) -> rustls::ClientConfig {
        let roots = root_store(ca, &fs::read(ca).expect("read ca")).expect("roots");
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let der = cert_der(&cert);
                let key = parse_private_key_der(&key, &fs::read(&key).expect("read key")).expect("key");
                builder.with_client_auth_cert(vec![der], key).expect("client auth")
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }

    /// What each side of one handshake saw.
    struct Outcome {
        /// The server's result: the client's identity, or the handshake error.
        server: Result<Option<ClientIdentity>, io::Error>,
        /// What the client read after its handshake: the server's greeting, or an error.
        client_read: Result<Vec<u8>, io::Error>,
        alpn: Option<Vec<u8>>,
    }

    /// One connection over loopback TCP: the server sends "ok" after a successful handshake.
    async fn handshake(pki: &Pki, client: rustls::ClientConfig) -> Outcome {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(pki).expect("server config")));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut tls = acceptor.accept(tcp).await?;
            let identity = client_identity(tls.get_ref().1.peer_certificates());
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            tls.write_all(b"ok").await?;
            tls.shutdown().await?;
            Ok::<_, io::Error>((identity, alpn))
        });
        let tcp = TcpStream::connect(address).await.expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        let client_read = match TlsConnector::from(Arc::new(client)).connect(name, tcp).await {
            Ok(mut tls) => {
                let mut greeting = Vec::new();
                tls.read_to_end(&mut greeting).await.map(|_| greeting)
            }
            Err(error) => Err(error),
        };
        let server = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server side timed out")
            .expect("server task panicked");
        let alpn = server.as_ref().ok().and_then(|(_, alpn)| alpn.clone());
        Outcome { server: server.map(|(identity, _)| identity), client_read, alpn }
    }

    #[tokio::test]
    async fn tls_with_the_admin_certificate_identifies_the_admin() {
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(temp.path(), &[]).expect("ensure");
        let client = client_config(&pki.ca_cert(), Some((pki.admin_cert(), pki.admin_key())));
        let outcome = handshake(&pki, client).await;
        let identity = outcome.server.expect("handshake");
        assert_eq!(
            identity,
            Some(ClientIdentity { user: ADMIN_USER.to_string(), groups: vec![ADMIN_GROUP.to_string()] })
        );
        assert_eq!(outcome.client_read.expect("client read"), b"ok");
        assert_eq!(outcome.alpn.as_deref(), Some(&b"h2"[..]));
    }

    #[tokio::test]
    async fn tls_without_a_client_certificate_is_anonymous() {
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(temp.path(), &[]).expect("ensure");
        let outcome = handshake(&pki, client_config(&pki.ca_cert(), None)).await;
        assert_eq!(outcome.server.expect("handshake"), None);
        assert_eq!(outcome.client_read.expect("client read"), b"ok");
    }

    #[tokio::test]
    async fn tls_with_a_certificate_from_another_ca_fails() {
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(&temp.path().join("cluster"), &[]).expect("ensure");
        let other = ensure(&temp.path().join("other"), &[]).expect("ensure other");
        let client = client_config(&pki.ca_cert(), Some((other.admin_cert(), other.admin_key())));
        let outcome = handshake(&pki, client).await;
        let error = outcome.server.expect_err("the server must reject a foreign client certificate");
        // Every Keel CA is named "keel-ca", so rustls finds the trust anchor by name and then
        // rejects the signature; a differently named CA would give UnknownIssuer.
        let message = error.to_string();
        assert!(message.contains("BadSignature") || message.contains("UnknownIssuer"), "unexpected error: {message}");
        assert!(outcome.client_read.is_err(), "the client must not get the greeting: {:?}", outcome.client_read);
    }

    #[tokio::test]
    async fn tls_with_a_server_only_certificate_as_client_fails() {
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(temp.path(), &[]).expect("ensure");
        let client = client_config(&pki.ca_cert(), Some((pki.apiserver_cert(), pki.apiserver_key())));
        let outcome = handshake(&pki, client).await;
        assert!(outcome.server.is_err(), "a serverAuth-only certificate must not authenticate a client");
    }

    #[test]
    fn client_identity_needs_a_certificate_with_a_common_name() {
        assert_eq!(client_identity(None), None);
        assert_eq!(client_identity(Some(&[])), None);
        assert_eq!(client_identity(Some(&[CertificateDer::from(vec![1, 2, 3])])), None);
    }

    // --- kubeconfig -------------------------------------------------------------------------

    fn base64_decode(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut buffer, mut bits) = (0u32, 0u32);
        for byte in text.bytes().filter(|byte| *byte != b'=') {
            let value = ALPHABET.iter().position(|candidate| *candidate == byte).expect("base64 character") as u32;
            buffer = (buffer << 6) | value;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
                buffer &= (1 << bits) - 1;
            }
        }
        out
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let vectors =
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")];
        for (plain, encoded) in vectors.into_iter().chain([("foobar", "Zm9vYmFy")]) {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded), plain.as_bytes());
        }
        let all_bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(&base64_encode(&all_bytes)), all_bytes);
    }

    fn yaml_str<'a>(value: &'a serde_yaml::Value, path: &[&str]) -> &'a str {
        let mut current = value;
        for key in path {
            current = match key.parse::<usize>() {
                Ok(index) => &current[index],
                Err(_) => &current[*key],
            };
        }
        current.as_str().unwrap_or_else(|| panic!("{path:?} is not a string in the kubeconfig"))
    }

    #[test]
    fn kubeconfig_is_yaml_whose_data_decodes_to_the_pem_files() {
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(&temp.path().join("pki"), &[]).expect("ensure");
        let path = temp.path().join("kube").join("config");
        write_kubeconfig(&path, "https://127.0.0.1:6443", &pki, "keel").expect("write kubeconfig");
        assert_eq!(mode(&path), 0o600);
        let yaml: serde_yaml::Value = serde_yaml::from_slice(&fs::read(&path).expect("read")).expect("parse yaml");
        assert_eq!(yaml_str(&yaml, &["current-context"]), "keel");
        assert_eq!(yaml_str(&yaml, &["clusters", "0", "cluster", "server"]), "https://127.0.0.1:6443");
        assert_eq!(yaml_str(&yaml, &["users", "0", "name"]), "keel-admin");
        assert_eq!(yaml_str(&yaml, &["contexts", "0", "context", "user"]), "keel-admin");
        assert_eq!(yaml_str(&yaml, &["contexts", "0", "context", "cluster"]), "keel");
        let decoded = |path: &[&str]| base64_decode(yaml_str(&yaml, path));
        assert_eq!(
            decoded(&["clusters", "0", "cluster", "certificate-authority-data"]),
            fs::read(pki.ca_cert()).expect("ca")
        );
        assert_eq!(
            decoded(&["users", "0", "user", "client-certificate-data"]),
            fs::read(pki.admin_cert()).expect("cert")
        );
        assert_eq!(decoded(&["users", "0", "user", "client-key-data"]), fs::read(pki.admin_key()).expect("key"));
    }

    #[test]
    fn kubeconfig_names_with_yaml_syntax_stay_strings() {
        let awkward = "prod: \"eu\" #1 \\ \u{1}";
        let text = kubeconfig_for("https://[::1]:6443/#x", awkward, b"ca", b"cert", b"key");
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("parse yaml");
        assert_eq!(yaml_str(&yaml, &["current-context"]), awkward);
        assert_eq!(yaml_str(&yaml, &["users", "0", "name"]), kubeconfig_user(awkward));
        assert_eq!(yaml_str(&yaml, &["clusters", "0", "cluster", "server"]), "https://[::1]:6443/#x");
    }

    /// The real kubectl; a missing one fails the test: it is the point of the test.
    fn kubectl(home: &Path) -> std::process::Command {
        let mut command = std::process::Command::new("kubectl");
        command.env("HOME", home).env_remove("KUBECONFIG");
        command
    }

    #[test]
    fn kubectl_reads_the_kubeconfig() {
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(&temp.path().join("pki"), &[]).expect("ensure");
        let path = temp.path().join("kubeconfig");
        write_kubeconfig(&path, "https://127.0.0.1:6443", &pki, "keel").expect("write kubeconfig");
        let output = kubectl(temp.path())
            .arg("--kubeconfig")
            .arg(&path)
            .args(["config", "view", "--raw", "-o", "jsonpath={.users[0].name}"])
            .output()
            .expect("running kubectl (it must be installed: this test checks the kubeconfig against it)");
        assert!(output.status.success(), "kubectl failed: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stdout), "keel-admin");
    }

    /// Serves one HTTP/1.1 request on `tls` with `body`, returning the request head.
    async fn answer_once(tls: &mut tokio_rustls::server::TlsStream<TcpStream>, body: &str) -> io::Result<String> {
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") && request.len() < 65_536 {
            let read = tls.read(&mut chunk).await?;
            if read == 0 {
                break;
            }
            request.extend_from_slice(&chunk[..read]);
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(response.as_bytes()).await?;
        tls.shutdown().await?;
        Ok(String::from_utf8_lossy(&request).into_owned())
    }

    /// kubectl connects with the kubeconfig: it must trust the server through
    /// `certificate-authority-data` and authenticate with the embedded admin certificate.
    #[tokio::test]
    async fn kubectl_authenticates_with_the_kubeconfig() {
        // A /version answer, because some kubectl builds (a version dispatcher) ask for it first.
        const BODY: &str = r#"{"major":"1","minor":"32","gitVersion":"v1.32.4","platform":"linux/amd64"}"#;
        const CONNECTIONS_MAX: usize = 8;
        let temp = tempfile::tempdir().expect("tempdir");
        let pki = ensure(&temp.path().join("pki"), &[]).expect("ensure");
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&pki).expect("server config")));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let path = temp.path().join("kubeconfig");
        write_kubeconfig(&path, &format!("https://127.0.0.1:{port}"), &pki, "keel").expect("write kubeconfig");

        // A tiny HTTP/1.1 server (kubectl is told not to use HTTP/2 below), one connection at a
        // time; it reports each connection's identity and request, or its error.
        let (report, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            for _ in 0..CONNECTIONS_MAX {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let served = async {
                    let mut tls = acceptor.accept(tcp).await?;
                    let identity = client_identity(tls.get_ref().1.peer_certificates());
                    Ok::<_, io::Error>((identity, answer_once(&mut tls, BODY).await?))
                };
                let _ = report.send(served.await.map_err(|error| error.to_string()));
            }
        });

        let mut command = tokio::process::Command::from(kubectl(temp.path()));
        command
            .arg("--kubeconfig")
            .arg(&path)
            .args(["get", "--raw", "/version", "--request-timeout=10s"])
            .env("DISABLE_HTTP2", "1")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(30), command.output())
            .await
            .expect("kubectl timed out")
            .expect("running kubectl (it must be installed: this test checks the kubeconfig against it)");
        server.abort();
        let mut connections = Vec::new();
        while let Some(connection) = reports.recv().await {
            connections.push(connection);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kubectl failed: {stderr}\nconnections: {connections:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), BODY);
        assert!(!connections.is_empty());
        let admin = ClientIdentity { user: ADMIN_USER.to_string(), groups: vec![ADMIN_GROUP.to_string()] };
        for connection in &connections {
            let (identity, request) = connection.as_ref().expect("every connection is served");
            assert!(request.starts_with("GET /version"), "request: {request}");
            assert_eq!(identity.as_ref(), Some(&admin), "request: {request}");
        }
    }
}
