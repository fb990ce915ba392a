//! Starting a member's Raft: who it is (a bootstrapping member derives its ID; a member
//! joining a running cluster asks the cluster), then openraft on our log store and state
//! machine, and the one-time initialization of a new cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::StoreConfig;
use crate::datadir::{self, Identity, member_id_for};
use crate::raft::transport::Peers;
use crate::raft::types::PeerNode;
use crate::raft::wire::MembersRequest;

/// How long a joining member keeps asking the cluster for its ID.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    DataDir(#[from] datadir::DataDirError),
    #[error(
        "cannot join the cluster: no member listed in --initial-cluster knows a member with this member's peer URLs {urls:?}; add it first with `etcdctl member add`"
    )]
    NotAdded { urls: Vec<String> },
    #[error("invalid Raft settings: {0}")]
    Settings(#[from] openraft::ConfigError),
    #[error("Raft failed to start: {0}")]
    Raft(String),
}

/// This member's identity: stored in the data directory, derived from the flags (new
/// cluster), or learned from the running cluster (`--initial-cluster-state existing`).
pub async fn identity(config: &StoreConfig, peers: &Peers) -> Result<Identity, BootstrapError> {
    if let Some(stored) = datadir::stored_identity(&config.data_dir)? {
        if config.new_cluster {
            // The flags must still describe the cluster this directory belongs to.
            return Ok(derive(config));
        }
        return Ok(stored);
    }
    if config.new_cluster {
        return Ok(derive(config));
    }
    join(config, peers).await
}

pub fn derive(config: &StoreConfig) -> Identity {
    let initial: Vec<Vec<String>> = config.initial_cluster.iter().map(|(_, urls)| urls.clone()).collect();
    Identity::derive(&config.name, &config.peer_urls, &config.cluster_token, &initial)
}

/// The initial membership from `--initial-cluster`: member ID → peer URLs.
pub fn initial_members(config: &StoreConfig) -> BTreeMap<u64, PeerNode> {
    config
        .initial_cluster
        .iter()
        .map(|(_, urls)| (member_id_for(urls, &config.cluster_token), PeerNode { peer_urls: urls.clone() }))
        .collect()
}

/// Asks the members named in `--initial-cluster` which ID `member add` gave this member.
async fn join(config: &StoreConfig, peers: &Peers) -> Result<Identity, BootstrapError> {
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let others: Vec<&Vec<String>> =
        config.initial_cluster.iter().filter(|(name, _)| *name != config.name).map(|(_, urls)| urls).collect();
    while tokio::time::Instant::now() < deadline {
        for urls in &others {
            let node = PeerNode { peer_urls: (*urls).clone() };
            let Ok(mut client) = peers.client(0, &node) else { continue };
            let Ok(reply) = client.members(MembersRequest { cluster_id: 0 }).await else { continue };
            let reply = reply.into_inner();
            let mine = reply.members.iter().find(|m| m.peer_urls.iter().any(|u| config.peer_urls.contains(u)));
            match mine {
                Some(member) => {
                    return Ok(Identity::joined(
                        &config.name,
                        &config.peer_urls,
                        &config.cluster_token,
                        member.id,
                        reply.cluster_id,
                    ));
                }
                None => return Err(BootstrapError::NotAdded { urls: config.peer_urls.clone() }),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(BootstrapError::NotAdded { urls: config.peer_urls.clone() })
}
