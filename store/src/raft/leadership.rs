//! What follows leadership: the response headers' term, and the lessor. A new leader first
//! applies everything earlier leaders committed (so it knows every lease), then promotes its
//! lessor, which extends every lease by its full TTL before any can expire; a member that
//! stops leading demotes its lessor at once. Also publishes this member's name and client URLs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use tokio::task::JoinHandle;

use crate::header::HeaderSource;
use crate::lease::Lessor;
use crate::mvcc::Engine;
use crate::raft::applied::published_members;
use crate::raft::membership::{self, MemberChange};
use crate::raft::node::RaftNode;
use crate::raft::read_index::local_read_index;

/// Follows the Raft server metrics until the node stops. (Those change only with the vote,
/// the leader or the membership; the full metrics change several times per log entry.)
pub fn spawn(node: Arc<RaftNode>, lessor: Arc<Lessor>, header: Arc<HeaderSource>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut metrics = node.raft.server_metrics();
        // Bumped on every change of leadership, so a late promotion of an old term is dropped.
        let epoch = Arc::new(AtomicU64::new(0));
        let mut leading = false;
        let mut was_member = false;
        loop {
            let (term, now_leading, member) = {
                let m = metrics.borrow_watched();
                let membership = m.membership_config.membership();
                let member = membership.get_node(&node.member_id).is_some();
                let known = membership.nodes().next().is_some();
                (m.vote.leader_id().term, m.state == ServerState::Leader, if known { Some(member) } else { None })
            };
            header.set_term(term);
            match member {
                Some(true) => was_member = true,
                Some(false) if was_member => {
                    tracing::warn!(
                        member = format!("{:x}", node.member_id),
                        "this member was removed from the cluster; stopping"
                    );
                    lessor.demote();
                    node.removed.notify_one();
                    return;
                }
                _ => {}
            }
            if now_leading != leading {
                leading = now_leading;
                let this_epoch = epoch.fetch_add(1, Ordering::SeqCst) + 1;
                if leading {
                    tokio::spawn(promote(node.clone(), lessor.clone(), epoch.clone(), this_epoch));
                } else {
                    lessor.demote();
                    tracing::info!(term, "no longer the leader; lease expiry handed over");
                }
            }
            if metrics.changed().await.is_err() {
                lessor.demote();
                return;
            }
        }
    })
}

async fn promote(node: Arc<RaftNode>, lessor: Arc<Lessor>, epoch: Arc<AtomicU64>, this_epoch: u64) {
    // Bounded retries: leadership may be lost meanwhile, which ends the attempt.
    for _ in 0..100 {
        if epoch.load(Ordering::SeqCst) != this_epoch {
            return;
        }
        let ready = match local_read_index(&node).await {
            Ok(index) => node.wait_applied(index, tokio::time::Instant::now() + Duration::from_secs(5)).await,
            Err(_) => false,
        };
        if ready && epoch.load(Ordering::SeqCst) == this_epoch {
            lessor.promote(node.settings.election_timeout);
            tracing::info!(member = format!("{:x}", node.member_id), "leader: leases extended, expiry tracked here");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes this member's name and client URLs through Raft once a leader exists, unless the
/// cluster already has them (as etcd does at start). The task holds the engine: whoever stops
/// the member aborts it.
pub fn publish_attributes(
    node: Arc<RaftNode>,
    engine: Arc<Engine>,
    name: String,
    client_urls: Vec<String>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        // Bounded: about ten minutes of retries, then a warning.
        for _ in 0..600 {
            let current = published_members(&engine)
                .ok()
                .and_then(|m| m.get(&node.member_id).map(|p| (p.name.clone(), p.client_urls.clone())));
            if current.as_ref() == Some(&(name.clone(), client_urls.clone())) {
                return;
            }
            let change =
                MemberChange::Publish { id: node.member_id, name: name.clone(), client_urls: client_urls.clone() };
            match membership::change(&node, change).await {
                Ok(_) => return,
                Err(error) => tracing::debug!(%error, "publishing member attributes; will retry"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        tracing::warn!("could not publish this member's name and client URLs; member list shows it unstarted");
    })
}
