//! etcdctl with endpoints written as URLs (`--endpoints=http://127.0.0.1:PORT`, and `--cluster`,
//! which takes the client URLs from the member list) dials its Maintenance calls as
//! `passthrough:///http://...`, so grpc-go sends the whole URL as the HTTP/2 `:authority`. etcd
//! accepts that; Keel must too (see `keel_store::grpc::authority`).
//!
//! Every test here also passes against real etcd 3.4 (`KEEL_TEST_TARGET=etcd`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{Server, etcdctl};

fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    (dir, server)
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: stdout {:?} stderr {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn endpoint_status_and_hashkv_accept_url_endpoints() {
    let (_dir, server) = start();
    let url = format!("http://{}", server.endpoint);

    let status = ok(&etcdctl(&url, &["endpoint", "status", "-w", "json"]), "endpoint status (URL)");
    let parsed: serde_json::Value = serde_json::from_str(status.trim()).expect("status JSON");
    let first = &parsed[0];
    assert_eq!(first["Endpoint"], url.as_str(), "{status}");
    assert!(first["Status"]["header"]["revision"].as_i64().is_some_and(|r| r >= 1), "{status}");
    assert!(first["Status"]["version"].as_str().is_some_and(|v| v.starts_with("3.")), "{status}");

    let hashkv = ok(&etcdctl(&url, &["endpoint", "hashkv", "-w", "json"]), "endpoint hashkv (URL)");
    let parsed: serde_json::Value = serde_json::from_str(hashkv.trim()).expect("hashkv JSON");
    // (`hash` itself is left out of the JSON when it is 0.)
    assert!(parsed[0]["HashKV"]["header"]["revision"].as_i64().is_some(), "{hashkv}");

    // The plain host:port form keeps working.
    ok(&etcdctl(&server.endpoint, &["endpoint", "status"]), "endpoint status (host:port)");
    ok(&etcdctl(&server.endpoint, &["endpoint", "hashkv"]), "endpoint hashkv (host:port)");
}

#[test]
fn cluster_flag_and_snapshot_use_member_urls() {
    let (dir, server) = start();
    let url = format!("http://{}", server.endpoint);

    let status = ok(&etcdctl(&server.endpoint, &["endpoint", "status", "--cluster", "-w", "json"]), "status --cluster");
    assert!(status.contains(&url), "--cluster dials the member's client URL: {status}");
    ok(&etcdctl(&server.endpoint, &["endpoint", "hashkv", "--cluster"]), "hashkv --cluster");

    ok(&etcdctl(&url, &["put", "snap-key", "snap-value"]), "put (URL)");
    let path = dir.path().join("url.snapshot");
    ok(&etcdctl(&url, &["snapshot", "save", path.to_str().expect("utf-8 path")]), "snapshot save (URL)");
    assert!(std::fs::metadata(&path).expect("snapshot written").len() > 0);
}

#[test]
fn key_value_calls_work_with_both_endpoint_forms() {
    let (_dir, server) = start();
    let url = format!("http://{}", server.endpoint);
    ok(&etcdctl(&url, &["put", "k1", "v1"]), "put (URL)");
    ok(&etcdctl(&server.endpoint, &["put", "k2", "v2"]), "put (host:port)");
    for endpoint in [url.as_str(), server.endpoint.as_str()] {
        let got = ok(&etcdctl(endpoint, &["get", "k", "--prefix"]), "get");
        assert_eq!(got.lines().collect::<Vec<_>>(), ["k1", "v1", "k2", "v2"], "get via {endpoint}");
    }
}

// --- One raw HTTP/2 connection, several calls: the URL authority is fixed on each, also when
// later requests refer to it through the HPACK dynamic table. ---

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A plain (not Huffman) HPACK string of under 127 bytes.
fn string(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 127);
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

#[test]
fn url_authority_is_fixed_on_every_call_of_a_connection() {
    let (_dir, server) = start();
    let mut s = TcpStream::connect(&server.endpoint).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");

    // Call 1: literals with incremental indexing. Dynamic table afterwards (newest first):
    // te (62), content-type (63), :authority (64), :path (65).
    let mut first = vec![0x83, 0x86, 0x44];
    string(&mut first, "/etcdserverpb.Maintenance/Status");
    first.push(0x41);
    string(&mut first, &format!("http://{}", server.endpoint));
    first.push(0x5f);
    string(&mut first, "application/grpc");
    first.push(0x40);
    string(&mut first, "te");
    string(&mut first, "trailers");
    // Calls 2 and 3: everything by index.
    let again = [0x83, 0x86, 0x80 | 65, 0x80 | 64, 0x80 | 63, 0x80 | 62];
    let empty_request = [0u8, 0, 0, 0, 0];

    let mut wire = PREFACE.to_vec();
    wire.extend(frame(SETTINGS, 0, 0, &[]));
    for (stream, block) in [(1u32, &first[..]), (3, &again[..]), (5, &again[..])] {
        wire.extend(frame(HEADERS, END_HEADERS, stream, block));
        wire.extend(frame(DATA, END_STREAM, stream, &empty_request));
    }
    s.write_all(&wire).expect("write");

    // Read frames until each stream has ended (trailers with END_STREAM) or been reset.
    let mut inbox = Vec::new();
    let mut data_bytes = [0usize; 3];
    let mut ended = [false; 3];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ended.iter().all(|&e| e) {
        assert!(Instant::now() < deadline, "no answers within 10s (ended {ended:?})");
        let mut chunk = [0u8; 16 * 1024];
        match s.read(&mut chunk) {
            Ok(0) => panic!("server closed the connection (ended {ended:?})"),
            Ok(n) => inbox.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => panic!("read: {e}"),
        }
        while inbox.len() >= 9 {
            let len = (usize::from(inbox[0]) << 16) | (usize::from(inbox[1]) << 8) | usize::from(inbox[2]);
            if inbox.len() < 9 + len {
                break;
            }
            let (kind, flags) = (inbox[3], inbox[4]);
            let stream = u32::from_be_bytes([inbox[5], inbox[6], inbox[7], inbox[8]]) & 0x7fff_ffff;
            let slot = match stream {
                1 => Some(0),
                3 => Some(1),
                5 => Some(2),
                _ => None,
            };
            match (kind, slot) {
                (SETTINGS, _) if flags & 1 == 0 => s.write_all(&frame(SETTINGS, 1, 0, &[])).expect("ack settings"),
                (GOAWAY, _) => panic!("GOAWAY: {:?}", &inbox[9..9 + len]),
                (RST_STREAM, Some(i)) => panic!("stream {stream} (call {}) reset: {:?}", i + 1, &inbox[9..9 + len]),
                (DATA, Some(i)) => data_bytes[i] += len,
                (HEADERS, Some(i)) if flags & END_STREAM != 0 => ended[i] = true,
                _ => {}
            }
            inbox.drain(..9 + len);
        }
    }
    // A StatusResponse in a DATA frame on each stream: an error would be trailers only.
    assert!(data_bytes.iter().all(|&n| n > 5), "every call answered with a message: {data_bytes:?}");
}
