//! `etcdctl snapshot save` against Keel, then `keel store restore` into a new data directory:
//! the restored store starts at the snapshot's revision with the same keys, leases and
//! compaction point. A damaged snapshot is refused.

mod common;

use std::process::Command;

/// The member flags the restored store is started with; restore must be given the same ones
/// (as with `etcdctl snapshot restore`), since the member's identity derives from them.
fn member_flags(peer_port: u16) -> Vec<String> {
    let peer = format!("http://127.0.0.1:{peer_port}");
    vec![
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
    ]
}

fn restore(snapshot: &std::path::Path, data_dir: &std::path::Path, flags: &[String]) -> std::process::Output {
    Command::new(common::keel_bin())
        .args(["store", "restore"])
        .arg(snapshot)
        .arg("--name=default")
        .arg(format!("--data-dir={}", data_dir.display()))
        .args(flags)
        .output()
        .expect("run keel store restore")
}

/// A fresh directory for one server's data and log.
fn subdir(root: &std::path::Path, name: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("create test directory");
    dir
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn snapshot_saved_with_etcdctl_restores_into_a_new_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = common::Server::start_with(common::Target::Keel, &subdir(dir.path(), "source"), &[]);
    for (key, value) in [("a", "1"), ("b", "2"), ("a", "3")] {
        assert!(common::etcdctl(&source.endpoint, &["put", key, value]).status.success());
    }
    assert!(common::etcdctl(&source.endpoint, &["compaction", "3"]).status.success());
    let snapshot = dir.path().join("backup.db");
    let saved = common::etcdctl(&source.endpoint, &["snapshot", "save", &snapshot.display().to_string()]);
    assert!(saved.status.success(), "snapshot save: {}", String::from_utf8_lossy(&saved.stderr));
    drop(source);

    let restored_dir = subdir(dir.path(), "restored");
    let flags = member_flags(common::free_port());
    let output = restore(&snapshot, &restored_dir.join("data"), &flags);
    assert!(output.status.success(), "restore failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout(&output).ends_with("at revision 4"), "{}", stdout(&output));

    let again = restore(&snapshot, &restored_dir.join("data"), &flags);
    assert!(!again.status.success(), "restoring over existing data must be refused");

    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let restored = common::Server::start_with(common::Target::Keel, &restored_dir, &flags);
    let get = common::etcdctl(&restored.endpoint, &["get", "a", "--print-value-only"]);
    assert_eq!(stdout(&get), "3");
    let json = common::etcdctl(&restored.endpoint, &["get", "b", "-w", "json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(value["header"]["revision"], 4);
    assert_eq!(value["kvs"][0]["mod_revision"], 3);
    let old = common::etcdctl(&restored.endpoint, &["get", "a", "--rev=2"]);
    assert!(!old.status.success(), "the compaction point survives the restore");
    assert!(String::from_utf8_lossy(&old.stderr).contains("required revision has been compacted"));
}

#[test]
fn damaged_snapshot_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = common::Server::start_with(common::Target::Keel, &subdir(dir.path(), "source"), &[]);
    assert!(common::etcdctl(&source.endpoint, &["put", "k", "v"]).status.success());
    let snapshot = dir.path().join("backup.db");
    assert!(common::etcdctl(&source.endpoint, &["snapshot", "save", &snapshot.display().to_string()]).status.success());
    let mut bytes = std::fs::read(&snapshot).expect("read snapshot");
    bytes[20] ^= 0xFF;
    std::fs::write(&snapshot, bytes).expect("write damaged snapshot");
    let output = restore(&snapshot, &dir.path().join("restored"), &member_flags(common::free_port()));
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
