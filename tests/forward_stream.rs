//! Forwarded writes (`keelpeer.Peer/ForwardStream`) on a real three-member Keel cluster, called
//! the way a follower calls them: batches sent back to back on one stream are committed and
//! answered in order; a member that does not lead refuses each batch as "not the leader" (so the
//! sender may retry elsewhere); a batch addressed to another member ends the stream with
//! `FailedPrecondition` after the answers to the batches before it.

mod common;

use std::time::Duration;

use common::Target;
use common::cluster::Cluster;
use etcd_client::proto::PbPutRequest;
use keel_store::apply::{Applied, Proposal};
use keel_store::raft::codec;
use keel_store::raft::generated::peer_client::PeerClient;
use keel_store::raft::wire::{self, ForwardReply, ForwardRequest};

fn put_batch(cluster_id: u64, target: u64, keys: &[&str]) -> ForwardRequest {
    let proposals: Vec<Proposal> = keys
        .iter()
        .map(|key| {
            Proposal::Put(PbPutRequest { key: key.as_bytes().to_vec(), value: b"v".to_vec(), ..Default::default() })
        })
        .collect();
    ForwardRequest { cluster_id, target, proposals: codec::encode_proposals(&proposals) }
}

/// The revisions a batch's answer carries, one per put.
fn revisions(reply: &ForwardReply) -> Vec<i64> {
    assert!(reply.error.is_none(), "batch refused: {:?}", reply.error);
    codec::decode_outcomes(&reply.outcomes)
        .expect("outcomes decode")
        .into_iter()
        .map(|outcome| match outcome {
            Ok(Applied::Put(response)) => response.header.expect("header").revision,
            other => panic!("unexpected outcome {other:?}"),
        })
        .collect()
}

/// Sends `batches` on one stream to the member at `peer_url` and collects every answer until
/// the stream ends, with the status it ended with, if any.
async fn call(peer_url: String, batches: Vec<ForwardRequest>) -> (Vec<ForwardReply>, Option<tonic::Status>) {
    let mut client = PeerClient::connect(peer_url).await.expect("peer connects");
    let mut replies = client.forward_stream(futures::stream::iter(batches)).await.expect("stream opens").into_inner();
    let mut answers = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), replies.message()).await.expect("answer within 10 s") {
            Ok(Some(reply)) => answers.push(reply),
            Ok(None) => return (answers, None),
            Err(status) => return (answers, Some(status)),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_batches_are_answered_in_order_and_only_by_the_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(Target::Keel, dir.path(), 3));
    let leader = tokio::task::block_in_place(|| cluster.wait_leader(Duration::from_secs(10)));
    let follower = (leader + 1) % 3;
    let status = cluster.status(leader).expect("leader status");
    let mut etcd = etcd_client::Client::connect([cluster.endpoint(leader)], None).await.expect("client");
    let cluster_id = etcd.status().await.expect("status").header().expect("header").cluster_id();
    let leader_id = status.member_id;
    let follower_id = cluster.status(follower).expect("follower status").member_id;

    // Three batches back to back: each answered, in order, with increasing revisions.
    let batches = vec![
        put_batch(cluster_id, leader_id, &["fwd/a", "fwd/b"]),
        put_batch(cluster_id, leader_id, &["fwd/c"]),
        put_batch(cluster_id, leader_id, &["fwd/d", "fwd/e", "fwd/f"]),
    ];
    let (answers, ended) = call(cluster.member(leader).peer_url(), batches).await;
    assert!(ended.is_none(), "the stream ended with {ended:?}");
    let per_batch: Vec<Vec<i64>> = answers.iter().map(revisions).collect();
    assert_eq!(per_batch.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1, 3], "{per_batch:?}");
    let all: Vec<i64> = per_batch.concat();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "revisions not increasing: {all:?}");
    let stored = etcd.get("fwd/f", None).await.expect("get");
    assert_eq!(stored.kvs()[0].mod_revision(), all[5]);

    // A follower refuses each batch, so the sender can retry with the leader.
    let (answers, ended) = call(
        cluster.member(follower).peer_url(),
        vec![put_batch(cluster_id, follower_id, &["fwd/x"]), put_batch(cluster_id, follower_id, &["fwd/y"])],
    )
    .await;
    assert!(ended.is_none(), "the stream ended with {ended:?}");
    assert_eq!(answers.len(), 2);
    for answer in &answers {
        assert_eq!(answer.error.as_ref().map(|e| e.code), Some(wire::NOT_LEADER), "{answer:?}");
    }
    assert!(etcd.get("fwd/x", None).await.expect("get").kvs().is_empty(), "a refused batch was applied");

    // A batch for another member ends the stream after the answer to the batch before it.
    let (answers, ended) = call(
        cluster.member(leader).peer_url(),
        vec![put_batch(cluster_id, leader_id, &["fwd/g"]), put_batch(cluster_id, follower_id, &["fwd/h"])],
    )
    .await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(revisions(&answers[0]).len(), 1);
    let status = ended.expect("the stream ends with an error");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(etcd.get("fwd/h", None).await.expect("get").kvs().is_empty(), "a misaddressed batch was applied");
}
