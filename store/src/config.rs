//! `keel store` flags (etcd's names where etcd has one) and the validated configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// etcd's default `--max-request-bytes`: 1.5 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1_572_864;
/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory.
    #[arg(long, default_value = "default.keel")]
    pub data_dir: PathBuf,
    /// Comma-separated URLs to listen on for client traffic (http:// or https://).
    #[arg(long, default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// Comma-separated client URLs advertised to the rest of the cluster and to clients.
    #[arg(long, default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// Comma-separated URLs to listen on for peer traffic (used once the store is replicated).
    #[arg(long, default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// This member's peer URLs, advertised to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping: name=peer-url,...
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Initial cluster token; members bootstrapped with different tokens form different clusters.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, default_value = "new")]
    pub initial_cluster_state: String,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, default_value_t = DEFAULT_MAX_TXN_OPS)]
    pub max_txn_ops: usize,
    /// Path to the client server TLS certificate file.
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Path to the client server TLS trusted CA certificate file; client certificates must be
    /// signed by it.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Enable client certificate authentication (implied by --trusted-ca-file).
    #[arg(long)]
    pub client_cert_auth: bool,
    /// Duration between periodic watch progress notifications (e.g. 10m, 500ms).
    #[arg(long = "experimental-watch-progress-notify-interval", default_value = "10m", value_parser = parse_duration)]
    pub watch_progress_notify_interval: Duration,
    /// Auto compaction retention in hours of history (0 disables), as etcd's periodic mode.
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 50)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) a follower waits without hearing from the leader before it
    /// campaigns. Keel's default is short so a failed leader is replaced fast; on slow or
    /// distant machines raise it (and --heartbeat-interval) as for etcd.
    #[arg(long, default_value_t = 300)]
    pub election_timeout: u64,
    /// Number of committed log entries between two snapshots (after which the log is trimmed).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Path to the peer server TLS certificate file (peers are then reached over https).
    #[arg(long)]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long)]
    pub peer_key_file: Option<PathBuf>,
    /// Path to the peer TLS trusted CA file: peers must present certificates signed by it.
    #[arg(long)]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Require client certificates from peers (implied by --peer-trusted-ca-file).
    #[arg(long)]
    pub peer_client_cert_auth: bool,
}

/// Parses `500ms`, `10s`, `10m`, `1h` (etcd's Go duration spelling for the forms we accept).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("invalid duration {text:?}"))?;
    let millis = match unit {
        "ms" => number,
        "s" | "" => number.saturating_mul(1_000),
        "m" => number.saturating_mul(60_000),
        "h" => number.saturating_mul(3_600_000),
        _ => return Err(format!("invalid duration unit in {text:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_millis(millis))
}

/// Errors in the flags, found before anything is opened.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid URL {url:?} in --{flag}: {reason}")]
    BadUrl { flag: &'static str, url: String, reason: String },
    #[error("--cert-file and --key-file must be given together")]
    HalfTls,
    #[error("--{0} must be positive")]
    NotPositive(&'static str),
    #[error("--initial-cluster-state must be 'new' or 'existing', not {0:?}")]
    BadClusterState(String),
    #[error("invalid --auto-compaction-retention {0:?}: give hours as a number, or a duration like 30m")]
    BadRetention(String),
    #[error("--peer-cert-file, --peer-key-file and --peer-trusted-ca-file must be given together")]
    HalfPeerTls,
    #[error("invalid --initial-cluster {0:?}: expected name=peer-url,name=peer-url,...")]
    BadInitialCluster(String),
    #[error("--initial-cluster has no entry for this member's name {name:?} with its advertised peer URLs")]
    NotInInitialCluster { name: String },
    #[error("--election-timeout ({election_ms} ms) must be at least 5 times --heartbeat-interval ({heartbeat_ms} ms)")]
    Timeouts { election_ms: u64, heartbeat_ms: u64 },
}

/// TLS material for the peer port: mutual TLS with the cluster CA.
#[derive(Debug, Clone)]
pub struct PeerTlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub trusted_ca_file: PathBuf,
}

/// One address to listen on, and whether it speaks TLS.
#[derive(Debug, Clone)]
pub struct Listen {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// TLS material for the client port.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub trusted_ca_file: Option<PathBuf>,
}

/// The validated configuration of one store member.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: Vec<Listen>,
    pub advertise_client_urls: Vec<String>,
    pub peer_urls: Vec<String>,
    pub cluster_token: String,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub tls: Option<TlsFiles>,
    pub progress_notify_interval: Duration,
    /// Keep this much history when auto-compacting; None disables auto compaction.
    pub auto_compaction_retention: Option<Duration>,
    /// Every member of the initial cluster: name and peer URLs, in flag order.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    /// `--initial-cluster-state new`: bootstrap; `existing`: join a running cluster.
    pub new_cluster: bool,
    pub listen_peer: Vec<Listen>,
    pub peer_tls: Option<PeerTlsFiles>,
    pub raft: crate::raft::node::RaftSettings,
}

impl StoreArgs {
    pub fn into_config(self) -> Result<StoreConfig, ConfigError> {
        if self.max_request_bytes == 0 {
            return Err(ConfigError::NotPositive("max-request-bytes"));
        }
        if self.max_txn_ops == 0 {
            return Err(ConfigError::NotPositive("max-txn-ops"));
        }
        if self.initial_cluster_state != "new" && self.initial_cluster_state != "existing" {
            return Err(ConfigError::BadClusterState(self.initial_cluster_state));
        }
        let tls = match (self.cert_file, self.key_file) {
            (Some(cert_file), Some(key_file)) => {
                Some(TlsFiles { cert_file, key_file, trusted_ca_file: self.trusted_ca_file })
            }
            (None, None) => None,
            _ => return Err(ConfigError::HalfTls),
        };
        let listen_client = split_urls(&self.listen_client_urls)
            .map(|url| parse_listen_url("listen-client-urls", url))
            .collect::<Result<Vec<_>, _>>()?;
        let listen_peer = split_urls(&self.listen_peer_urls)
            .map(|url| parse_listen_url("listen-peer-urls", url))
            .collect::<Result<Vec<_>, _>>()?;
        let peer_urls: Vec<String> = split_urls(&self.initial_advertise_peer_urls).map(String::from).collect();
        let initial_cluster = match &self.initial_cluster {
            Some(text) => parse_initial_cluster(text)?,
            None => vec![(self.name.clone(), peer_urls.clone())],
        };
        let mine = initial_cluster.iter().find(|(name, _)| *name == self.name);
        let listed = mine.is_some_and(|(_, urls)| peer_urls.iter().all(|u| urls.contains(u)));
        if !listed {
            return Err(ConfigError::NotInInitialCluster { name: self.name });
        }
        let peer_tls = match (self.peer_cert_file, self.peer_key_file, self.peer_trusted_ca_file) {
            (Some(cert_file), Some(key_file), Some(trusted_ca_file)) => {
                Some(PeerTlsFiles { cert_file, key_file, trusted_ca_file })
            }
            (None, None, None) => None,
            _ => return Err(ConfigError::HalfPeerTls),
        };
        if self.heartbeat_interval == 0 {
            return Err(ConfigError::NotPositive("heartbeat-interval"));
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(ConfigError::Timeouts {
                election_ms: self.election_timeout,
                heartbeat_ms: self.heartbeat_interval,
            });
        }
        if self.snapshot_count == 0 {
            return Err(ConfigError::NotPositive("snapshot-count"));
        }
        let raft = crate::raft::node::RaftSettings {
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            snapshot_count: self.snapshot_count,
        };
        Ok(StoreConfig {
            initial_cluster,
            new_cluster: self.initial_cluster_state == "new",
            listen_peer,
            peer_tls,
            raft,
            name: self.name,
            data_dir: self.data_dir,
            listen_client,
            advertise_client_urls: split_urls(&self.advertise_client_urls).map(String::from).collect(),
            peer_urls,
            cluster_token: self.initial_cluster_token,
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
            tls,
            progress_notify_interval: self.watch_progress_notify_interval,
            auto_compaction_retention: parse_retention(&self.auto_compaction_retention)?,
        })
    }
}

/// `a=http://h:1,b=http://h:2,a=http://h:3` → [(a, [h:1, h:3]), (b, [h:2])] in first-seen order.
fn parse_initial_cluster(text: &str) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for entry in split_urls(text) {
        let (name, url) = entry.split_once('=').ok_or_else(|| ConfigError::BadInitialCluster(text.to_string()))?;
        if name.is_empty() || !url.contains("://") {
            return Err(ConfigError::BadInitialCluster(text.to_string()));
        }
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => members.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if members.is_empty() {
        return Err(ConfigError::BadInitialCluster(text.to_string()));
    }
    Ok(members)
}

fn split_urls(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_retention(text: &str) -> Result<Option<Duration>, ConfigError> {
    let bad = || ConfigError::BadRetention(text.to_string());
    if let Ok(hours) = text.parse::<u64>() {
        return Ok((hours > 0).then(|| Duration::from_secs(hours * 3600)));
    }
    let duration = parse_duration(text).map_err(|_| bad())?;
    Ok((!duration.is_zero()).then_some(duration))
}

/// `http://127.0.0.1:2379` → 127.0.0.1:2379 without TLS; `localhost` resolves to 127.0.0.1.
pub fn parse_listen_url(flag: &'static str, url: &str) -> Result<Listen, ConfigError> {
    let bad = |reason: &str| ConfigError::BadUrl { flag, url: url.to_string(), reason: reason.into() };
    let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err(bad("scheme must be http or https"));
    };
    let rest = rest.trim_end_matches('/');
    let rest = match rest.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => rest.to_string(),
    };
    let addr = rest.parse::<SocketAddr>().map_err(|_| bad("expected host:port with an IP address"))?;
    Ok(Listen { addr, tls })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_go_spelling() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("10x").is_err());
    }

    #[test]
    fn listen_urls() {
        let l = parse_listen_url("f", "https://localhost:2379").unwrap();
        assert!(l.tls);
        assert_eq!(l.addr.to_string(), "127.0.0.1:2379");
        assert!(parse_listen_url("f", "tcp://1.2.3.4:1").is_err());
        assert!(parse_listen_url("f", "http://example.com:1").is_err());
    }

    #[test]
    fn retention_hours_or_duration() {
        assert_eq!(parse_retention("0").unwrap(), None);
        assert_eq!(parse_retention("1").unwrap(), Some(Duration::from_secs(3600)));
        assert_eq!(parse_retention("30m").unwrap(), Some(Duration::from_secs(1800)));
        assert!(parse_retention("soon").is_err());
    }
}
