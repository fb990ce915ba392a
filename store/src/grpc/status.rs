//! StoreError → gRPC status, with etcd's codes and texts (clients match on both).

use tonic::{Code, Status};

use crate::error::StoreError;

pub fn to_status(error: StoreError) -> Status {
    let code = match &error {
        StoreError::EmptyKey
        | StoreError::KeyNotFound
        | StoreError::ValueProvided
        | StoreError::LeaseProvided
        | StoreError::TooManyOps
        | StoreError::DuplicateKey
        | StoreError::InvalidSortOption
        | StoreError::RequestTooLarge => Code::InvalidArgument,
        StoreError::Compacted | StoreError::FutureRevision | StoreError::LeaseTtlTooLarge => Code::OutOfRange,
        StoreError::LeaseNotFound | StoreError::MemberNotFound => Code::NotFound,
        StoreError::LeaseExists
        | StoreError::MemberExists
        | StoreError::PeerUrlExists
        | StoreError::NotLearner
        | StoreError::LearnerNotReady
        | StoreError::NotEnoughStartedMembers => Code::FailedPrecondition,
        StoreError::TooManyRequests => Code::ResourceExhausted,
        StoreError::Stopped
        | StoreError::NoLeader
        | StoreError::LeaderChanged
        | StoreError::Timeout
        | StoreError::UnhealthyCluster => Code::Unavailable,
        StoreError::Internal(_) => Code::Unknown,
        StoreError::Storage(_) | StoreError::Corrupt(_) => {
            tracing::error!(%error, "storage error while serving a request");
            Code::Internal
        }
    };
    Status::new(code, error.to_string())
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        to_status(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_codes_and_texts() {
        let status = to_status(StoreError::Compacted);
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(status.message(), "etcdserver: mvcc: required revision has been compacted");
        let status = to_status(StoreError::LeaseNotFound);
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "etcdserver: requested lease not found");
        assert_eq!(to_status(StoreError::RequestTooLarge).message(), "etcdserver: request is too large");
    }
}
