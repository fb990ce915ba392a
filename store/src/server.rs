//! Starting a store member: check the data directory, open the engine, start Raft (log store,
//! state machine, peers), the watch hub, lease expiry and compaction, and serve the etcd v3 API
//! and the peer API. [`start`] returns the running member (the API server embeds one this
//! way); [`run`] is `keel store`: start, wait for SIGINT/SIGTERM, stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::Request;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};

use crate::apply::Proposal;
use crate::compactor;
use crate::config::{Listen, StoreConfig, TlsFiles};
use crate::datadir::{self, DataDirError};
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
use crate::raft::bootstrap::{self, BootstrapError};
use crate::raft::generated::peer_server::PeerServer;
use crate::raft::handover::TransferReplies;
use crate::raft::leadership;
use crate::raft::log_store::LogStore;
use crate::raft::network::Network;
use crate::raft::node::RaftNode;
use crate::raft::peer_service::PeerService;
use crate::raft::proposer::Proposer;
use crate::raft::read_index::ReadBarrier;
use crate::raft::runtime::RaftRuntime;
use crate::raft::state_machine::StateMachine;
use crate::raft::transport::{PeerTls, Peers};
use crate::raft::types::Raft;
use crate::shutdown::{self, Background, Drain, ServerTask, Serving};
use crate::store::{Limits, MemberInfo, Store};
use crate::watch::WatchHub;

/// Largest peer message (a batch of log entries or a snapshot chunk) a member accepts.
const PEER_MAX_MESSAGE_BYTES: usize = 64 << 20;
fn load_peer_tls(files: &crate::config::PeerTlsFiles) -> Result<PeerTls, ServeError> {
    PeerTls::load(&files.cert_file, &files.key_file, &files.trusted_ca_file)
        .map_err(|e| ServeError::PeerTls(e.to_string()))
}

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
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error("peer TLS: {0}")]
    PeerTls(String),
    #[error("raft: {0}")]
    Raft(String),
}

/// Opens the store described by `config` and starts its Raft member (without serving the
/// client API). Also returns the tasks and threads it started, for [`shutdown::stop`].
/// Runs on the Raft thread (`raft::runtime`): what it spawns, Raft's tasks among them, stays
/// there.
async fn open(
    config: &StoreConfig,
    raft_runtime: tokio::runtime::Handle,
) -> Result<(Arc<Store>, Background), ServeError> {
    let peer_tls = match &config.peer_tls {
        Some(files) => Some(load_peer_tls(files)?),
        None => None,
    };
    let peers = Peers::on_runtime(peer_tls.clone(), raft_runtime);
    let wanted = bootstrap::identity(config, &peers).await?;
    let (identity, db_path) = datadir::prepare(&config.data_dir, &wanted)?;
    let engine = Arc::new(Engine::open(&db_path).map_err(|source| match &source {
        StoreError::Storage(e) if e.to_string().contains("lock") => ServeError::InUse { path: config.data_dir.clone() },
        _ => ServeError::Open { path: db_path.clone(), source },
    })?);
    let lessor = Arc::new(Lessor::new(min_lease_ttl_seconds(&config.raft)));
    let header = Arc::new(HeaderSource::new(identity.cluster_id, identity.member_id, 0));
    let hub = WatchHub::new(engine.clone(), header.clone(), config.progress_notify_interval);
    let compactor = compactor::start(engine.clone()).map_err(ServeError::Thread)?;
    let mut background =
        Background { tasks: Vec::new(), threads: vec![("compactor", compactor.thread)], raft_runtime: None };
    let log_store = LogStore::new(engine.clone()).map_err(|e| ServeError::Raft(e.to_string()))?;
    let state_machine = StateMachine::open(
        engine.clone(),
        lessor.clone(),
        hub.clone(),
        compactor.requests,
        config.data_dir.join("snap"),
    )
    .map_err(|e| ServeError::Raft(e.to_string()))?;
    let applied_index = state_machine.applied_index();
    hub.start().map_err(ServeError::Thread)?;
    let transfers = TransferReplies::default();
    let network = Network::new(identity.cluster_id, peers.clone()).reporting_transfers_to(transfers.clone());
    let raft_config = Arc::new(config.raft.openraft_config().map_err(BootstrapError::from)?);
    let raft = Raft::new(identity.member_id, raft_config, network, log_store, state_machine)
        .await
        .map_err(|e| ServeError::Raft(e.to_string()))?;
    if config.new_cluster && !raft.is_initialized().await.map_err(|e| ServeError::Raft(e.to_string()))? {
        let members = bootstrap::initial_members(config);
        if let Err(error) = raft.initialize(members).await {
            // Another member initialized first and already replicated to us: fine.
            tracing::info!(%error, "cluster already initialized");
        }
    }
    let identity_ids = (identity.cluster_id, identity.member_id);
    let node = RaftNode::new(raft, identity_ids, peers, config.raft.clone(), applied_index, transfers);
    background.tasks.push(leadership::spawn(node.clone(), lessor.clone(), header.clone()));
    background.tasks.push(leadership::publish_attributes(
        node.clone(),
        engine.clone(),
        config.name.clone(),
        config.advertise_client_urls.clone(),
    ));
    let proposer = Proposer::start(node.clone());
    let reads = ReadBarrier::start(node.clone());
    let store = Arc::new(Store {
        engine,
        lessor,
        hub,
        proposer,
        reads,
        node,
        header,
        member: MemberInfo {
            id: identity.member_id,
            name: config.name.clone(),
            peer_urls: config.peer_urls.clone(),
            client_urls: config.advertise_client_urls.clone(),
        },
        limits: Limits { max_request_bytes: config.max_request_bytes, max_txn_ops: config.max_txn_ops },
        physically_compacted: compactor.progress,
    });
    Ok((store, background))
}

/// etcd's minimum lease TTL: 1.5 election timeouts, rounded up to whole seconds (at least 2 s,
/// etcd's value with its default 1 s election timeout).
fn min_lease_ttl_seconds(settings: &crate::raft::node::RaftSettings) -> i64 {
    let millis = settings.election_timeout.as_millis() as i64 * 3 / 2;
    ((millis + 999) / 1000).max(MIN_LEASE_TTL_SECONDS)
}

/// A store member that is serving: its peer and client ports listen, and lease expiry and
/// auto-compaction run. Whoever started it owns it and calls [`RunningStore::stop`].
pub struct RunningStore {
    /// The member's state, for callers in the same process (the API server's embedded store).
    pub store: Arc<Store>,
    /// The client addresses bound, in `--listen-client-urls` order (a port 0 is resolved).
    pub client_addrs: Vec<SocketAddr>,
    /// The peer addresses bound, in `--listen-peer-urls` order.
    pub peer_addrs: Vec<SocketAddr>,
    /// The client gRPC servers: drained first when the member stops.
    clients: Vec<ServerTask>,
    /// The peer gRPC servers: closed once leadership is handed over.
    peers: Vec<ServerTask>,
    /// Loops and threads besides the servers (lease expiry, auto-compaction, compactor, ...).
    background: Background,
}

impl RunningStore {
    /// Waits until this member is removed from its cluster (it then should stop).
    pub async fn removed(&self) {
        self.store.node.removed.notified().await;
    }

    /// Stops the member within [`shutdown::STOP_BUDGET`]: see [`shutdown`] for the steps. The
    /// database closes before this returns unless a caller still holds `store` (it then closes
    /// when the last holder lets go; the store takes no more writes either way).
    pub async fn stop(self) {
        self.stop_by(Instant::now() + shutdown::STOP_BUDGET).await;
    }

    /// [`RunningStore::stop`] by `deadline` (a master gives its member what its API server left).
    pub async fn stop_by(self, deadline: Instant) {
        let serving =
            Serving { store: self.store, clients: self.clients, peers: self.peers, background: self.background };
        shutdown::stop(serving, deadline).await;
    }
}

/// Opens the store described by `config`, serves its peer and client ports and starts lease
/// expiry and auto-compaction. Returns once everything listens; the member may still be
/// electing a leader (requests wait for one). On an error after the store opened, what was
/// started is stopped again before the error is returned.
pub async fn start(config: StoreConfig) -> Result<RunningStore, ServeError> {
    let raft_runtime = RaftRuntime::start().map_err(ServeError::Thread)?;
    let raft_handle = raft_runtime.handle().clone();
    let config = Arc::new(config);
    let opening = {
        let config = config.clone();
        raft_handle.spawn(async move {
            // Peers must reach this member before it can take part in elections or be asked
            // for its membership, so the peer port listens before Raft starts. Bound here, the
            // listeners are driven by the Raft thread as the rest of the peer traffic is.
            let mut peer_listeners = Vec::new();
            for listen in &config.listen_peer {
                peer_listeners.push(bind(listen).await?);
            }
            let (store, background) = open(&config, tokio::runtime::Handle::current()).await?;
            Ok::<_, ServeError>((peer_listeners, store, background))
        })
    };
    let opened = opening.await.unwrap_or_else(|failed| Err(ServeError::Raft(format!("opening the store: {failed}"))));
    let (peer_listeners, store, mut background) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            let _ = raft_runtime.stop();
            return Err(error);
        }
    };
    background.raft_runtime = Some(raft_runtime);
    let mut running = RunningStore {
        store,
        client_addrs: Vec::new(),
        peer_addrs: local_addrs(&peer_listeners),
        clients: Vec::new(),
        peers: Vec::new(),
        background,
    };
    if let Err(error) = serve_all(&mut running, &config, peer_listeners, &raft_handle).await {
        running.stop().await;
        return Err(error);
    }
    tracing::info!(
        name = %config.name,
        member_id = format!("{:x}", running.store.member.id),
        revision = running.store.current_revision(),
        listen = ?running.client_addrs,
        "keel store is serving"
    );
    Ok(running)
}

/// Starts the peer servers (on the Raft thread), the background loops and the client servers of
/// an opened store.
async fn serve_all(
    running: &mut RunningStore,
    config: &StoreConfig,
    peer_listeners: Vec<TcpListener>,
    raft_runtime: &tokio::runtime::Handle,
) -> Result<(), ServeError> {
    let store = running.store.clone();
    for listener in peer_listeners {
        let drain = Drain::default();
        let task = raft_runtime.spawn(serve_peers(store.clone(), config, listener, drain.clone())?);
        running.peers.push(ServerTask { task, drain });
    }
    running.background.tasks.push(tokio::spawn(expire_leases(store.clone())));
    if let Some(retention) = config.auto_compaction_retention {
        running.background.tasks.push(tokio::spawn(compactor::auto_compact(store.clone(), retention)));
    }
    let tls = match &config.tls {
        Some(files) => Some(tls_config(files)?),
        None => None,
    };
    for listen in &config.listen_client {
        let listener = bind(listen).await?;
        running.client_addrs.extend(listener.local_addr().ok());
        let tls = if listen.tls { tls.clone() } else { None };
        let drain = Drain::default();
        let server = serve(store.clone(), config, listen.clone(), listener, tls, drain.clone())?;
        running.clients.push(ServerTask { task: tokio::spawn(server), drain });
    }
    Ok(())
}

async fn bind(listen: &Listen) -> Result<TcpListener, ServeError> {
    TcpListener::bind(listen.addr).await.map_err(|source| ServeError::Listen { addr: listen.addr, source })
}

fn local_addrs(listeners: &[TcpListener]) -> Vec<SocketAddr> {
    listeners.iter().filter_map(|l| l.local_addr().ok()).collect()
}

/// Runs a store member until SIGINT or SIGTERM (or until it is removed from the cluster), then
/// stops it ([`shutdown`]).
pub async fn run(config: StoreConfig) -> Result<(), ServeError> {
    // Listening before the start: a signal during it stops the member once it is up.
    let asked_to_stop = shutdown::signal();
    let running = start(config).await?;
    tokio::select! {
        () = asked_to_stop => tracing::info!("shutting down"),
        _ = running.removed() => tracing::info!("removed from the cluster: shutting down"),
    }
    running.stop().await;
    Ok(())
}

/// Serves the peer port: Raft's messages and calls other members forward here.
fn serve_peers(
    store: Arc<Store>,
    config: &StoreConfig,
    listener: TcpListener,
    drain: Drain,
) -> Result<impl std::future::Future<Output = ()> + use<>, ServeError> {
    let mut builder = Server::builder().max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS)).layer(drain.count_calls());
    if let Some(files) = &config.peer_tls {
        let tls = load_peer_tls(files)?;
        builder = builder.tls_config(tls.server_config())?;
    }
    let service = PeerService {
        node: store.node.clone(),
        proposer: store.proposer.clone(),
        lessor: store.lessor.clone(),
        reads: store.reads.clone(),
        incoming_dir: config.data_dir.join("snap-incoming"),
        drain: drain.clone(),
    };
    let router = builder.add_service(
        PeerServer::new(service)
            .max_decoding_message_size(PEER_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(PEER_MAX_MESSAGE_BYTES),
    );
    let addr = listener.local_addr().ok();
    Ok(async move {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let incoming = drain.wrap(keel_net::coalesce::coalesce_incoming(incoming));
        if let Err(error) = router.serve_with_incoming_shutdown(incoming, drain.accepting_stopped()).await {
            tracing::error!(%error, ?addr, "peer gRPC server failed");
        }
    })
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
    drain: Drain,
) -> Result<impl std::future::Future<Output = ()> + use<>, ServeError> {
    let max_decode = config.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let mut builder = Server::builder()
        .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
        .layer(FrameLimitLayer)
        .layer(drain.count_calls());
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let scratch_dir = config.data_dir.clone();
    let leader = require_leader(store.node.clone());
    let router = builder
        .add_service(intercept(
            KvServer::new(KvService { store: store.clone() }).max_decoding_message_size(max_decode),
            &leader,
        ))
        .add_service(intercept(
            WatchServer::new(WatchService { store: store.clone() }).max_decoding_message_size(max_decode),
            &leader,
        ))
        .add_service(intercept(
            LeaseServer::new(LeaseService { store: store.clone() }).max_decoding_message_size(max_decode),
            &leader,
        ))
        .add_service(intercept(
            ClusterServer::new(ClusterService { store: store.clone() }).max_decoding_message_size(max_decode),
            &leader,
        ))
        .add_service(intercept(
            MaintenanceServer::new(MaintenanceService { store: store.clone(), scratch_dir })
                .max_decoding_message_size(max_decode),
            &leader,
        ))
        .add_service(intercept(AuthServer::new(AuthService { store }).max_decoding_message_size(max_decode), &leader));
    Ok(async move {
        // Small request/response exchanges must not wait for Nagle's algorithm.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        // grpc-go sends a URL as `:authority` for etcdctl's Maintenance calls; h2 would refuse it.
        // Plaintext only: on a TLS listener tonic decrypts above this layer.
        let incoming = crate::grpc::authority::fix_incoming(incoming, !listen.tls);
        // Responses that complete together leave in one write.
        let incoming = keel_net::coalesce::coalesce_incoming(incoming);
        // Cut when the member stops, after its calls are answered.
        let incoming = drain.wrap(incoming);
        if let Err(error) = router.serve_with_incoming_shutdown(incoming, drain.accepting_stopped()).await {
            tracing::error!(%error, addr = %listen.addr, "gRPC server failed");
        }
    })
}

type LeaderCheck = Arc<dyn Fn(Request<()>) -> Result<Request<()>, tonic::Status> + Send + Sync>;

/// etcd clients that set `hasleader: true` (etcdctl, `with_require_leader`) get etcd's "no
/// leader" error instead of waiting while the cluster has no leader.
fn require_leader(node: Arc<RaftNode>) -> LeaderCheck {
    Arc::new(move |request: Request<()>| {
        let required = request.metadata().get("hasleader").is_some_and(|v| v.as_bytes() == b"true");
        if required && node.leader().is_none() {
            return Err(tonic::Status::unavailable("etcdserver: no leader"));
        }
        Ok(request)
    })
}

fn intercept<S>(
    service: S,
    check: &LeaderCheck,
) -> InterceptedService<S, impl tonic::service::Interceptor + Clone + use<S>> {
    let check = check.clone();
    InterceptedService::new(service, move |request: Request<()>| check(request))
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
    let wanted = bootstrap::derive(config);
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
