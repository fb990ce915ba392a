//! What every response header carries besides the revision: cluster, member and Raft term.

use std::sync::atomic::{AtomicU64, Ordering};

use etcd_client::proto::PbResponseHeader as ResponseHeader;

#[derive(Debug)]
pub struct HeaderSource {
    pub cluster_id: u64,
    pub member_id: u64,
    /// The Raft term this member knows. A single member runs at term 2, as etcd's does after
    /// electing itself.
    term: AtomicU64,
}

impl HeaderSource {
    pub fn new(cluster_id: u64, member_id: u64, term: u64) -> HeaderSource {
        HeaderSource { cluster_id, member_id, term: AtomicU64::new(term) }
    }

    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    pub fn set_term(&self, term: u64) {
        self.term.store(term, Ordering::Release);
    }

    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader { cluster_id: self.cluster_id, member_id: self.member_id, revision, raft_term: self.term() }
    }

    /// Fills cluster, member and term into a header that carries only a revision.
    pub fn fill(&self, header: &mut Option<ResponseHeader>) {
        let revision = header.as_ref().map_or(0, |h| h.revision);
        *header = Some(self.header(revision));
    }
}
