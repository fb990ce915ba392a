//! Starting a store member: check the data directory, open the engine, start the writer,
//! watch hub, lease expiry and compaction, and serve the etcd v3 API until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};

use crate::apply::{Applier, Proposal};
use crate::config::{Listen, StoreConfig, TlsFiles};
use crate::datadir::{self, DataDirError, Identity};
use crate::error::StoreError;
use crate::grpc::GRPC_OVERHEAD_BYTES;
use crate::grpc::auth::AuthService;
use crate::grpc::cluster::ClusterService;
use crate::grpc::frame_limit::FrameLimitLayer;
use crate::grpc::generated::{auth::auth_server::AuthServer, cluster::cluster_server::ClusterServer};
use crate::grpc::generated::{kv::k_v_server::KVServer as KvServer, lease::lease_server::LeaseServer};
use crate::grpc::generated::{maintenance::maintenance_server::MaintenanceServer, watch::watch_server::WatchServer};
use crate::grpc::kv::KvService;
use crate::grpc::lease::LeaseService;
use crate::grpc::maintenance::MaintenanceService;
use crate::grpc::watch::WatchService;
use crate::header::HeaderSource;
use crate::lease::Lessor;
use crate::mvcc::Engine;
use crate::mvcc::engine::CF_LEASE;
use crate::store::{Limits, MemberInfo, Store};
use crate::watch::WatchHub;
use crate::{compactor, writer};

/// A single member runs at term 2, as a fresh single-member etcd does.
const SINGLE_MEMBER_TERM: u64 = 2;
/// etcd's minimum lease TTL with its default 1 s election timeout.
const MIN_LEASE_TTL_SECONDS: i64 = 2;
/// How often the primary lessor looks for expired leases.
const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Expired leases revoked per check at most.
const LEASE_REVOKES_PER_CHECK: usize = 256;
/// Concurrent HTTP/2 streams per client connection.
const MAX_CONCURRENT_STREAMS: u32 = 1_024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("data directory {path} is in use by another process (RocksDB lock held)")]
    InUse { path: PathBuf },
    #[error("cannot open the store in {path}: {source}")]
    Open { path: PathBuf, source: StoreError },
    #[error("cannot read TLS file {path}: {source}")]
    TlsFile { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("TLS setup failed: {0}")]
    Tls(#[from] tonic::transport::Error),
    #[error("cannot start a background thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Opens the store described by `config` (without serving it).
pub fn open(config: &StoreConfig) -> Result<Arc<Store>, ServeError> {
    let wanted = Identity::derive(&config.name, &config.peer_urls, &config.cluster_token);
    let (identity, db_path) = datadir::prepare(&config.data_dir, &wanted)?;
    let engine = Arc::new(Engine::open(&db_path).map_err(|source| match &source {
        StoreError::Storage(e) if e.to_string().contains("lock") => ServeError::InUse { path: config.data_dir.clone() },
        _ => ServeError::Open { path: db_path.clone(), source },
    })?);
    let lessor = Arc::new(Lessor::new(MIN_LEASE_TTL_SECONDS));
    load_leases(&engine, &lessor)?;
    let header = Arc::new(HeaderSource::new(identity.cluster_id, identity.member_id, SINGLE_MEMBER_TERM));
    let hub = WatchHub::new(engine.clone(), header.clone(), config.progress_notify_interval);
    hub.start().map_err(ServeError::Thread)?;
    let (compactions, physically_compacted) = compactor::start(engine.clone()).map_err(ServeError::Thread)?;
    let applier = Applier::new(engine.clone(), lessor.clone());
    let proposer = writer::start(engine.clone(), applier, hub.clone(), compactions).map_err(ServeError::Thread)?;
    // A single member is always the leader: it decides lease expiry from the start.
    lessor.promote(Duration::ZERO);
    Ok(Arc::new(Store {
        engine,
        lessor,
        hub,
        proposer,
        header,
        member: MemberInfo {
            id: identity.member_id,
            name: config.name.clone(),
            peer_urls: config.peer_urls.clone(),
            client_urls: config.advertise_client_urls.clone(),
        },
        limits: Limits { max_request_bytes: config.max_request_bytes, max_txn_ops: config.max_txn_ops },
        physically_compacted,
    }))
}

fn load_leases(engine: &Engine, lessor: &Lessor) -> Result<(), StoreError> {
    for entry in engine.iter_cf(CF_LEASE) {
        let (key, value) = entry?;
        let corrupt = || {
            StoreError::Corrupt(crate::mvcc::codec::CorruptRecord {
                space: "lease",
                what: "entry is not two 8-byte integers",
            })
        };
        let id = i64::from_be_bytes(key.as_ref().try_into().map_err(|_| corrupt())?);
        let ttl = i64::from_be_bytes(value.as_ref().try_into().map_err(|_| corrupt())?);
        lessor.apply_grant(id, ttl);
    }
    Ok(())
}

/// Runs a store member until SIGINT or SIGTERM.
pub async fn run(config: StoreConfig) -> Result<(), ServeError> {
    let store = open(&config)?;
    tokio::spawn(expire_leases(store.clone()));
    if let Some(retention) = config.auto_compaction_retention {
        tokio::spawn(compactor::auto_compact(store.clone(), retention));
    }
    let tls = match &config.tls {
        Some(files) => Some(tls_config(files)?),
        None => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for listen in &config.listen_client {
        let listener =
            TcpListener::bind(listen.addr).await.map_err(|source| ServeError::Listen { addr: listen.addr, source })?;
        let tls = if listen.tls { tls.clone() } else { None };
        servers.push(tokio::spawn(serve(store.clone(), &config, listen.clone(), listener, tls, stop_rx.clone())?));
    }
    tracing::info!(
        name = %config.name,
        member_id = format!("{:x}", store.member.id),
        revision = store.current_revision(),
        listen = ?config.listen_client.iter().map(|l| l.addr).collect::<Vec<_>>(),
        "keel store is serving"
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for server in servers {
        let _ = server.await;
    }
    Ok(())
}

fn tls_config(files: &TlsFiles) -> Result<ServerTlsConfig, ServeError> {
    let read =
        |path: &PathBuf| std::fs::read(path).map_err(|source| ServeError::TlsFile { path: path.clone(), source });
    let mut tls =
        ServerTlsConfig::new().identity(TlsIdentity::from_pem(read(&files.cert_file)?, read(&files.key_file)?));
    if let Some(ca) = &files.trusted_ca_file {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(tls)
}

fn serve(
    store: Arc<Store>,
    config: &StoreConfig,
    listen: Listen,
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<impl std::future::Future<Output = ()> + use<>, ServeError> {
    let max_decode = config.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let mut builder = Server::builder().max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS)).layer(FrameLimitLayer);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let scratch_dir = config.data_dir.clone();
    let router = builder
        .add_service(KvServer::new(KvService { store: store.clone() }).max_decoding_message_size(max_decode))
        .add_service(WatchServer::new(WatchService { store: store.clone() }).max_decoding_message_size(max_decode))
        .add_service(LeaseServer::new(LeaseService { store: store.clone() }).max_decoding_message_size(max_decode))
        .add_service(ClusterServer::new(ClusterService { store: store.clone() }).max_decoding_message_size(max_decode))
        .add_service(
            MaintenanceServer::new(MaintenanceService { store: store.clone(), scratch_dir })
                .max_decoding_message_size(max_decode),
        )
        .add_service(AuthServer::new(AuthService { store }).max_decoding_message_size(max_decode));
    Ok(async move {
        // Small request/response exchanges must not wait for Nagle's algorithm.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        if let Err(error) = router.serve_with_incoming_shutdown(incoming, stopped).await {
            tracing::error!(%error, addr = %listen.addr, "gRPC server failed");
        }
    })
}

/// The primary lessor's expiry loop: expired leases are revoked through the write path, so
/// all keys of a lease go in one revision.
async fn expire_leases(store: Arc<Store>) {
    let mut ticker = tokio::time::interval(LEASE_CHECK_INTERVAL);
    loop {
        ticker.tick().await;
        for id in store.lessor.take_expired(LEASE_REVOKES_PER_CHECK) {
            match store.propose(Proposal::LeaseRevoke { id }).await {
                Ok(_) | Err(StoreError::LeaseNotFound) => {}
                Err(error) => tracing::warn!(%error, lease = id, "revoking an expired lease failed; will retry"),
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Open(#[from] ServeError),
    #[error("data directory {path} already holds data (revision {revision}); restore into a new --data-dir")]
    NotEmpty { path: PathBuf, revision: i64 },
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates the data directory described by `config` from a snapshot file written by
/// `etcdctl snapshot save` against Keel. Returns the restored revision.
pub fn restore(config: &StoreConfig, snapshot: &std::path::Path) -> Result<i64, RestoreError> {
    let wanted = Identity::derive(&config.name, &config.peer_urls, &config.cluster_token);
    let (_, db_path) = datadir::prepare(&config.data_dir, &wanted).map_err(ServeError::from)?;
    let engine = Engine::open(&db_path).map_err(|source| ServeError::Open { path: db_path.clone(), source })?;
    let existing = engine.iter_cf(crate::mvcc::engine::CF_REV).next().is_some();
    if existing {
        return Err(RestoreError::NotEmpty { path: config.data_dir.clone(), revision: engine.committed_revision() });
    }
    crate::snapshot::restore(snapshot, &engine)?;
    drop(engine);
    // Reopen to read the restored revision the way a start would.
    let engine = Engine::open(&db_path).map_err(|source| ServeError::Open { path: db_path, source })?;
    Ok(engine.committed_revision())
}
