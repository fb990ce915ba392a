//! etcdserverpb.Auth, answering as an etcd with authentication disabled and no users. Keel
//! authenticates clients by TLS client certificates instead.

use std::sync::Arc;

use etcd_client::proto::*;
use tonic::{Code, Request, Response, Status};

use super::generated::auth::auth_server::Auth;
use crate::store::Store;

pub struct AuthService {
    pub store: Arc<Store>,
}

fn not_enabled() -> Status {
    Status::new(Code::FailedPrecondition, "etcdserver: authentication is not enabled")
}

fn unsupported() -> Status {
    Status::unimplemented(
        "keel: user and role management is not supported; clients authenticate with TLS client certificates",
    )
}

impl AuthService {
    fn header(&self) -> Option<PbResponseHeader> {
        Some(self.store.header(self.store.current_revision()))
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, _: Request<PbAuthEnableRequest>) -> Result<Response<PbAuthEnableResponse>, Status> {
        Err(Status::new(Code::FailedPrecondition, "etcdserver: root user does not exist"))
    }

    async fn auth_disable(&self, _: Request<PbAuthDisableRequest>) -> Result<Response<PbAuthDisableResponse>, Status> {
        Ok(Response::new(PbAuthDisableResponse { header: self.header() }))
    }

    async fn authenticate(
        &self,
        _: Request<PbAuthenticateRequest>,
    ) -> Result<Response<PbAuthenticateResponse>, Status> {
        Err(not_enabled())
    }

    async fn user_add(&self, _: Request<PbAuthUserAddRequest>) -> Result<Response<PbAuthUserAddResponse>, Status> {
        Err(unsupported())
    }

    async fn user_get(&self, _: Request<PbAuthUserGetRequest>) -> Result<Response<PbAuthUserGetResponse>, Status> {
        Err(Status::new(Code::FailedPrecondition, "etcdserver: user name not found"))
    }

    async fn user_list(&self, _: Request<PbAuthUserListRequest>) -> Result<Response<PbAuthUserListResponse>, Status> {
        Ok(Response::new(PbAuthUserListResponse { header: self.header(), users: Vec::new() }))
    }

    async fn user_delete(
        &self,
        _: Request<PbAuthUserDeleteRequest>,
    ) -> Result<Response<PbAuthUserDeleteResponse>, Status> {
        Err(Status::new(Code::FailedPrecondition, "etcdserver: user name not found"))
    }

    async fn user_change_password(
        &self,
        _: Request<PbAuthUserChangePasswordRequest>,
    ) -> Result<Response<PbAuthUserChangePasswordResponse>, Status> {
        Err(Status::new(Code::FailedPrecondition, "etcdserver: user name not found"))
    }

    async fn user_grant_role(
        &self,
        _: Request<PbAuthUserGrantRoleRequest>,
    ) -> Result<Response<PbAuthUserGrantRoleResponse>, Status> {
        Err(Status::new(Code::FailedPrecondition, "etcdserver: user name not found"))
    }

    async fn user_revoke_role(
        &self,
        _: Request<PbAuthUserRevokeRoleRequest>,
    ) -> Result<Response<PbAuthUserRevokeRoleResponse>, Status> {
        Err(Status::new(Code::FailedPrecondition, "etcdserver: user name not found"))
    }

    async fn role_add(&self, _: Request<PbAuthRoleAddRequest>) -> Result<Response<PbAuthRoleAddResponse>, Status> {
        Err(unsupported())
    }

    async fn role_get(&self, _: Request<PbAuthRoleGetRequest>) -> Result<Response<PbAuthRoleGetResponse>, Status> {
        Err(Status::new(Code::FailedPrecondition, "etcdserver: role name not found"))
    }

    async fn role_list(&self, _: Request<PbAuthRoleListRequest>) -> Result<Response<PbAuthRoleListResponse>, Status> {
        Ok(Response::new(PbAuthRoleListResponse { header: self.header(), roles: Vec::new() }))
    }

    async fn role_delete(
        &self,
        _: Request<PbAuthRoleDeleteRequest>,
    ) -> Result<Response<PbAuthRoleDeleteResponse>, Status> {
        Err(Status::new(Code::FailedPrecondition, "etcdserver: role name not found"))
    }

    async fn role_grant_permission(
        &self,
        _: Request<PbAuthRoleGrantPermissionRequest>,
    ) -> Result<Response<PbAuthRoleGrantPermissionResponse>, Status> {
        Err(Status::new(Code::FailedPrecondition, "etcdserver: role name not found"))
    }

    async fn role_revoke_permission(
        &self,
        _: Request<PbAuthRoleRevokePermissionRequest>,
    ) -> Result<Response<PbAuthRoleRevokePermissionResponse>, Status> {
        Err(Status::new(Code::FailedPrecondition, "etcdserver: role name not found"))
    }
}
