//! `keel master`: a store replica (or a remote etcd) plus the API server on it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::apiserver::storage::WriteMode;
use crate::apiserver::{self, Api};
use crate::components::{self, Components};
use crate::kv::Kv;
use crate::kv::embedded::EmbeddedKv;
use crate::kv::remote::{RemoteKv, RemoteTls};
use crate::pki;

/// Namespaces every cluster has.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];
/// How long start-up keeps trying to create the system namespaces (the store may still be
/// electing its first leader).
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bookmarks and watch progress: how often an idle store watch reports its revision.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// The whole stop, API server and store, from the signal: what a member alone gets
/// (`keel_store::shutdown::STOP_BUDGET`), within the 5 s a process is given to exit.
const STOP_BUDGET: Duration = keel_store::shutdown::STOP_BUDGET;
/// Of that, what releasing the components' Leases may take.
const COMPONENTS_STOP_BUDGET: Duration = Duration::from_millis(500);

#[derive(clap::Args, Debug)]
pub struct MasterArgs {
    /// The embedded store replica, with etcd's flag names.
    #[command(flatten)]
    pub store: keel_store::config::StoreArgs,
    /// Use these etcd v3 endpoints (comma-separated) instead of an embedded store replica.
    #[arg(long, value_delimiter = ',')]
    pub store_endpoints: Vec<String>,
    /// CA, certificate and key for TLS to `--store-endpoints`.
    #[arg(long)]
    pub store_cacert: Option<PathBuf>,
    #[arg(long)]
    pub store_cert: Option<PathBuf>,
    #[arg(long)]
    pub store_key: Option<PathBuf>,
    /// Where the API server listens (HTTPS).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub api_listen: SocketAddr,
    /// The cluster PKI: CA and certificates, generated on first start.
    #[arg(long, default_value = ".keel/pki")]
    pub pki_dir: PathBuf,
    /// Leader election of the scheduler and the controller manager.
    #[command(flatten)]
    pub election: crate::election::ElectionConfig,
    /// The controllers' settings.
    #[command(flatten)]
    pub controllers: crate::controller_manager::ControllerConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("store flags: {0}")]
    Config(#[from] keel_store::config::ConfigError),
    #[error("store: {0}")]
    Store(#[from] keel_store::server::ServeError),
    #[error("remote store: {0}")]
    Remote(#[from] crate::kv::KvError),
    #[error("pki: {0}")]
    Pki(#[from] pki::PkiError),
    #[error("listening on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("--store-cacert, --store-cert and --store-key go together")]
    HalfStoreTls,
    #[error("--cluster-cidr / --node-cidr-mask-size: {0}")]
    ClusterCidr(#[from] crate::controllers::node_ipam::CidrError),
    #[error("components: {0}")]
    Components(#[from] crate::components::informers::MissingResource),
}

/// Runs a master until SIGINT or SIGTERM.
pub async fn run(args: MasterArgs) -> Result<(), MasterError> {
    // Listening before the start: a signal during it stops the master once it is up.
    let asked_to_stop = keel_store::shutdown::signal();
    args.controllers.validate()?;
    let hosts = vec![args.api_listen.ip().to_string()];
    let cluster_pki = pki::ensure(&args.pki_dir, &hosts)?;
    let tls = Arc::new(pki::server_config(&cluster_pki)?);
    // Bound before the store starts, so a taken port fails the start with nothing to stop.
    let listener = tokio::net::TcpListener::bind(args.api_listen)
        .await
        .map_err(|source| MasterError::Listen { addr: args.api_listen, source })?;
    let master_name = args.store.name.clone();
    let (kv, embedded): (Arc<dyn Kv>, _) = if args.store_endpoints.is_empty() {
        let mut config = args.store.into_config()?;
        config.progress_notify_interval = config.progress_notify_interval.min(PROGRESS_INTERVAL);
        let running = keel_store::server::start(config).await?;
        (Arc::new(EmbeddedKv::new(running.store.clone())), Some(running))
    } else {
        let remote_tls = match (args.store_cacert, args.store_cert, args.store_key) {
            (Some(ca), Some(cert), Some(key)) => Some(RemoteTls { ca, cert, key }),
            (None, None, None) => None,
            _ => return Err(MasterError::HalfStoreTls),
        };
        (Arc::new(RemoteKv::connect(&args.store_endpoints, remote_tls).await?), None)
    };
    let api = Api::new(kv, format!("{}", args.api_listen));
    let store_metrics = embedded
        .as_ref()
        .map(|running| tokio::spawn(crate::metrics::watch_store(api.metrics.clone(), running.store.clone())));
    let bootstrap = tokio::spawn(bootstrap(api.clone()));
    let components = components::start(&api, &master_name, args.election, &args.controllers, args.api_listen)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(apiserver::server::serve(api, listener, tls, stop_rx));
    tracing::info!(listen = %args.api_listen, "keel master is serving the API");
    match &embedded {
        Some(running) => tokio::select! {
            () = asked_to_stop => tracing::info!("shutting down"),
            _ = running.removed() => tracing::warn!("this member was removed from the cluster; stopping"),
        },
        None => {
            asked_to_stop.await;
            tracing::info!("shutting down");
        }
    }
    stop(Serving { components, stop_tx, server, bootstrap, embedded, store_metrics }).await;
    Ok(())
}

/// What a running master stops.
struct Serving {
    /// The scheduler and the controller manager (when this master leads them), their
    /// electors and the informers.
    components: Components,
    /// Tells the API server to drain and return.
    stop_tx: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    /// Creating the system namespaces (if still at it).
    bootstrap: tokio::task::JoinHandle<()>,
    /// The embedded store member, when there is one (not with `--store-endpoints`).
    embedded: Option<keel_store::server::RunningStore>,
    /// Samples the embedded member for the etcd metrics (it holds the store: stopped first).
    store_metrics: Option<tokio::task::JoinHandle<()>>,
}

/// Stops a master within [`STOP_BUDGET`]: first the components (their work ends and their
/// Leases are released while the store still takes the write, for a prompt takeover), then the
/// API server (it drains its requests, ends
/// its watches and drops every handle on the store: `apiserver::server`), then the embedded
/// store member with the time left (`keel_store::shutdown`: leadership handed over, Raft
/// stopped, database closed). The other way round, requests in flight would lose their store.
async fn stop(serving: Serving) {
    let deadline = tokio::time::Instant::now() + STOP_BUDGET;
    let Serving { components, stop_tx, mut server, bootstrap, embedded, store_metrics } = serving;
    bootstrap.abort();
    if let Some(sampler) = store_metrics {
        sampler.abort();
        let _ = sampler.await;
    }
    components.stop_by(tokio::time::Instant::now() + COMPONENTS_STOP_BUDGET).await;
    let _ = stop_tx.send(true);
    if tokio::time::timeout_at(deadline, &mut server).await.is_err() {
        server.abort();
    }
    if let Some(running) = embedded {
        running.stop_by(deadline).await;
    }
}

/// Creates the system namespaces (every master tries; the first wins, the rest see
/// AlreadyExists).
async fn bootstrap(api: Arc<Api>) {
    let deadline = tokio::time::Instant::now() + BOOTSTRAP_TIMEOUT;
    let Some(namespaces) = apiserver::resources::find("", "v1", "namespaces") else { return };
    for name in SYSTEM_NAMESPACES {
        loop {
            let mut namespace = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } });
            apiserver::object::prepare_for_create(&mut namespace, None, false);
            crate::registry::defaults::apply_defaults("namespaces", &mut namespace);
            apiserver::hooks::before_create(namespaces, &mut namespace);
            match api.storage.create(namespaces, None, name, &namespace, WriteMode::Commit).await {
                Ok(_) => break,
                Err(error) if error.reason == "AlreadyExists" => break,
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(?error, "creating system namespaces; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    tracing::error!(?error, %name, "could not create a system namespace");
                    break;
                }
            }
        }
    }
}
