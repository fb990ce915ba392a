//! Generates the etcd v3 gRPC service traits Keel implements, over the message types that
//! `etcd-client` exports. Only the RPCs Keel serves are declared; any other method on these
//! services is answered with `Unimplemented` by the generated router.

use tonic_build::manual::{Builder, Method, Service};

const PACKAGE: &str = "etcdserverpb";

struct Rpc {
    name: &'static str,
    route: &'static str,
    input: &'static str,
    output: &'static str,
    client_streaming: bool,
    server_streaming: bool,
}

const fn unary(name: &'static str, route: &'static str, input: &'static str, output: &'static str) -> Rpc {
    Rpc { name, route, input, output, client_streaming: false, server_streaming: false }
}

fn service(name: &str, rpcs: &[Rpc]) -> Service {
    service_in(PACKAGE, "etcd_client::proto", name, rpcs)
}

fn service_in(package: &str, types: &str, name: &str, rpcs: &[Rpc]) -> Service {
    let mut builder = Service::builder().name(name).package(package);
    for rpc in rpcs {
        let mut method = Method::builder()
            .name(rpc.name)
            .route_name(rpc.route)
            .input_type(format!("{types}::{}", rpc.input))
            .output_type(format!("{types}::{}", rpc.output))
            .codec_path("tonic_prost::ProstCodec");
        if rpc.client_streaming {
            method = method.client_streaming();
        }
        if rpc.server_streaming {
            method = method.server_streaming();
        }
        builder = builder.method(method.build());
    }
    builder.build()
}

fn main() {
    let kv = [
        unary("range", "Range", "PbRangeRequest", "PbRangeResponse"),
        unary("put", "Put", "PbPutRequest", "PbPutResponse"),
        unary("delete_range", "DeleteRange", "PbDeleteRequest", "PbDeleteResponse"),
        unary("txn", "Txn", "PbTxnRequest", "PbTxnResponse"),
        unary("compact", "Compact", "PbCompactionRequest", "PbCompactionResponse"),
    ];
    let watch = [Rpc {
        name: "watch",
        route: "Watch",
        input: "PbWatchRequest",
        output: "PbWatchResponse",
        client_streaming: true,
        server_streaming: true,
    }];
    let lease = [
        unary("lease_grant", "LeaseGrant", "PbLeaseGrantRequest", "PbLeaseGrantResponse"),
        unary("lease_revoke", "LeaseRevoke", "PbLeaseRevokeRequest", "PbLeaseRevokeResponse"),
        Rpc {
            name: "lease_keep_alive",
            route: "LeaseKeepAlive",
            input: "PbLeaseKeepAliveRequest",
            output: "PbLeaseKeepAliveResponse",
            client_streaming: true,
            server_streaming: true,
        },
        unary("lease_time_to_live", "LeaseTimeToLive", "PbLeaseTimeToLiveRequest", "PbLeaseTimeToLiveResponse"),
        unary("lease_leases", "LeaseLeases", "PbLeaseLeasesRequest", "PbLeaseLeasesResponse"),
    ];
    let cluster = [
        unary("member_add", "MemberAdd", "PbMemberAddRequest", "PbMemberAddResponse"),
        unary("member_remove", "MemberRemove", "PbMemberRemoveRequest", "PbMemberRemoveResponse"),
        unary("member_update", "MemberUpdate", "PbMemberUpdateRequest", "PbMemberUpdateResponse"),
        unary("member_list", "MemberList", "PbMemberListRequest", "PbMemberListResponse"),
        unary("member_promote", "MemberPromote", "PbMemberPromoteRequest", "PbMemberPromoteResponse"),
    ];
    let maintenance = [
        unary("alarm", "Alarm", "PbAlarmRequest", "PbAlarmResponse"),
        unary("status", "Status", "PbStatusRequest", "PbStatusResponse"),
        unary("defragment", "Defragment", "PbDefragmentRequest", "PbDefragmentResponse"),
        unary("hash", "Hash", "PbHashRequest", "PbHashResponse"),
        unary("hash_kv", "HashKV", "PbHashKvRequest", "PbHashKvResponse"),
        Rpc {
            name: "snapshot",
            route: "Snapshot",
            input: "PbSnapshotRequest",
            output: "PbSnapshotResponse",
            client_streaming: false,
            server_streaming: true,
        },
        unary("move_leader", "MoveLeader", "PbMoveLeaderRequest", "PbMoveLeaderResponse"),
    ];
    let auth = [
        unary("auth_enable", "AuthEnable", "PbAuthEnableRequest", "PbAuthEnableResponse"),
        unary("auth_disable", "AuthDisable", "PbAuthDisableRequest", "PbAuthDisableResponse"),
        unary("authenticate", "Authenticate", "PbAuthenticateRequest", "PbAuthenticateResponse"),
        unary("user_add", "UserAdd", "PbAuthUserAddRequest", "PbAuthUserAddResponse"),
        unary("user_get", "UserGet", "PbAuthUserGetRequest", "PbAuthUserGetResponse"),
        unary("user_list", "UserList", "PbAuthUserListRequest", "PbAuthUserListResponse"),
        unary("user_delete", "UserDelete", "PbAuthUserDeleteRequest", "PbAuthUserDeleteResponse"),
        unary(
            "user_change_password",
            "UserChangePassword",
            "PbAuthUserChangePasswordRequest",
            "PbAuthUserChangePasswordResponse",
        ),
        unary("user_grant_role", "UserGrantRole", "PbAuthUserGrantRoleRequest", "PbAuthUserGrantRoleResponse"),
        unary("user_revoke_role", "UserRevokeRole", "PbAuthUserRevokeRoleRequest", "PbAuthUserRevokeRoleResponse"),
        unary("role_add", "RoleAdd", "PbAuthRoleAddRequest", "PbAuthRoleAddResponse"),
        unary("role_get", "RoleGet", "PbAuthRoleGetRequest", "PbAuthRoleGetResponse"),
        unary("role_list", "RoleList", "PbAuthRoleListRequest", "PbAuthRoleListResponse"),
        unary("role_delete", "RoleDelete", "PbAuthRoleDeleteRequest", "PbAuthRoleDeleteResponse"),
        unary(
            "role_grant_permission",
            "RoleGrantPermission",
            "PbAuthRoleGrantPermissionRequest",
            "PbAuthRoleGrantPermissionResponse",
        ),
        unary(
            "role_revoke_permission",
            "RoleRevokePermission",
            "PbAuthRoleRevokePermissionRequest",
            "PbAuthRoleRevokePermissionResponse",
        ),
    ];
    Builder::new().build_client(false).compile(&[
        service("KV", &kv),
        service("Watch", &watch),
        service("Lease", &lease),
        service("Cluster", &cluster),
        service("Maintenance", &maintenance),
        service("Auth", &auth),
    ]);
    // Member-to-member calls: Raft's messages and Keel's forwarding (store/src/raft/wire.rs).
    let peer = [
        unary("append_entries", "AppendEntries", "RaftMessage", "RaftMessage"),
        Rpc {
            name: "append_stream",
            route: "AppendStream",
            input: "RaftMessage",
            output: "RaftMessage",
            client_streaming: true,
            server_streaming: true,
        },
        unary("vote", "Vote", "RaftMessage", "RaftMessage"),
        unary("pre_vote", "PreVote", "RaftMessage", "RaftMessage"),
        unary("transfer_leader", "TransferLeader", "RaftMessage", "RaftMessage"),
        Rpc {
            name: "install_snapshot",
            route: "InstallSnapshot",
            input: "SnapshotChunk",
            output: "RaftMessage",
            client_streaming: true,
            server_streaming: false,
        },
        Rpc {
            name: "forward_stream",
            route: "ForwardStream",
            input: "ForwardRequest",
            output: "ForwardReply",
            client_streaming: true,
            server_streaming: true,
        },
        unary("read_index", "ReadIndex", "ReadIndexRequest", "ReadIndexReply"),
        unary("lease_keep_alive", "LeaseKeepAlive", "LeaseRequest", "LeaseReply"),
        unary("lease_time_to_live", "LeaseTimeToLive", "LeaseRequest", "LeaseReply"),
        unary("member_change", "MemberChange", "MemberChangeRequest", "MemberChangeReply"),
        unary("members", "Members", "MembersRequest", "MembersReply"),
    ];
    Builder::new().compile(&[service_in("keelpeer", "crate::raft::wire", "Peer", &peer)]);
}
