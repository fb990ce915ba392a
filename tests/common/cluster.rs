//! A cluster of several members (Keel or real etcd) for the multi-member acceptance tests.
//!
//! Every member gets etcd's flags (`--name`, `--data-dir`, `--listen-client-urls`,
//! `--advertise-client-urls`, `--listen-peer-urls`, `--initial-advertise-peer-urls`,
//! `--initial-cluster`, `--initial-cluster-state`, `--initial-cluster-token`) plus the shared flags
//! the test gives, on free 127.0.0.1 ports; Keel is started as `keel store <flags>`, etcd as
//! `etcd <flags>`. Member `i` is named `m<i>`, keeps its data in `<dir>/m<i>` and its log
//! (appended across restarts) in `<dir>/m<i>.log`. Every process is started by this harness and
//! stopped by its PID (SIGKILL, then reaped) in `stop` or on drop; when the test is panicking,
//! the tail of every member's log is printed.
//!
//! The harness is synchronous (it runs etcdctl and sleeps between polls); async tests call it
//! from a multi-threaded runtime, where a blocked worker does not stop the others.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Target, etcdctl, free_port, keel_bin, require_program};

/// How long `start`, `restart` and the other waits give a cluster or member.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of each member's log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// What `etcdctl endpoint status -w json` says about one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub member_id: u64,
    pub leader: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    /// `header.revision`: the member's current store revision.
    pub revision: i64,
}

/// One member: its identity, ports, command line and process.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// Every flag, the same at each (re)start.
    args: Vec<String>,
    child: Option<Child>,
}

impl Member {
    /// `127.0.0.1:PORT`, what etcdctl's `--endpoints` and etcd-client take.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// A new member registered with `etcdctl member add` but not started yet.
#[derive(Clone, Debug)]
pub struct AddedMember {
    pub name: String,
    pub peer_port: u16,
    /// The `ETCD_INITIAL_CLUSTER` etcdctl printed: the flag value the new member must start with.
    pub initial_cluster: String,
    /// etcdctl's whole stdout.
    pub stdout: String,
}

pub struct Cluster {
    pub target: Target,
    pub dir: PathBuf,
    pub token: String,
    /// Flags every member gets (e.g. `--snapshot-count=100`).
    pub flags: Vec<String>,
    members: Vec<Member>,
}

impl Cluster {
    /// Starts `n` members of `target` in `dir` and waits until all answer `etcdctl endpoint
    /// status` and agree on one leader.
    pub fn start(target: Target, dir: &Path, n: usize) -> Cluster {
        Cluster::start_with_flags(target, dir, n, &[])
    }

    /// `start`, passing `flags` to every member (flags Keel and etcd share, e.g.
    /// `--snapshot-count=100`, `--election-timeout=500`).
    pub fn start_with_flags(target: Target, dir: &Path, n: usize, flags: &[&str]) -> Cluster {
        assert!(n >= 1, "a cluster needs a member");
        let ports = keel_net::ports::free_local_ports(2 * n).expect("free ports for the members");
        let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let initial_cluster: Vec<String> =
            names.iter().enumerate().map(|(i, name)| format!("{name}=http://127.0.0.1:{}", ports[2 * i + 1])).collect();
        let initial_cluster = initial_cluster.join(",");
        let mut cluster = Cluster {
            target,
            dir: dir.to_path_buf(),
            token: format!("keel-test-{}", ports[0]),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            members: Vec::new(),
        };
        for (i, name) in names.iter().enumerate() {
            cluster.push_member(name, ports[2 * i], ports[2 * i + 1], &initial_cluster, "new");
        }
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_ready(i);
        }
        cluster.wait_leader(READY_TIMEOUT);
        cluster
    }

    fn push_member(
        &mut self,
        name: &str,
        client_port: u16,
        peer_port: u16,
        initial_cluster: &str,
        state: &str,
    ) -> usize {
        let data_dir = self.dir.join(name);
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-state={state}"),
            format!("--initial-cluster-token={}", self.token),
        ];
        args.extend(self.flags.iter().cloned());
        self.members.push(Member {
            name: name.to_string(),
            client_port,
            peer_port,
            log_path: self.dir.join(format!("{name}.log")),
            data_dir,
            args,
            child: None,
        });
        self.members.len() - 1
    }

    fn spawn(&mut self, i: usize) {
        let target = self.target;
        let m = &mut self.members[i];
        assert!(m.child.is_none(), "{} is already running", m.name);
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log_path).expect("open member log");
        {
            use std::io::Write;
            let _ = writeln!(log, "==== harness: starting {} ====", m.name);
        }
        let log_err = log.try_clone().expect("clone log handle");
        let mut cmd = match target {
            Target::Keel => {
                let mut c = Command::new(keel_bin());
                // Every other member runs on one thread (tokio's current-thread scheduler, as
                // `keel up` and the benchmarks run members on a small machine), the others on
                // the default multi-threaded runtime: a cluster mixes both.
                if i % 2 == 1 {
                    c.arg("--worker-threads").arg("1");
                }
                c.arg("store");
                c
            }
            Target::Etcd => Command::new(require_program("etcd")),
        };
        cmd.args(&m.args).stdin(Stdio::null()).stdout(log).stderr(log_err);
        m.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", m.name)));
    }

    /// Members ever started (including stopped and removed ones); indexes never change.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn member(&self, i: usize) -> &Member {
        &self.members[i]
    }

    /// Every member's endpoint, member `i` at index `i` (running or not).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].endpoint()
    }

    /// Endpoints of the running members, comma-separated, for etcdctl's `--endpoints`.
    pub fn running_endpoints_arg(&mut self) -> String {
        let running: Vec<usize> = (0..self.len()).filter(|&i| self.is_running(i)).collect();
        running.iter().map(|&i| self.endpoint(i)).collect::<Vec<_>>().join(",")
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.members[i]
            .child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("{} is not running", self.members[i].name))
    }

    /// True while the process this harness started for member `i` is alive.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.members[i].child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL by PID and reap: a crash.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again (same flags, data directory and ports) without waiting.
    pub fn start_member(&mut self, i: usize) {
        self.kill9(i);
        self.spawn(i);
    }

    /// Kills member `i` if it runs, starts it again and waits until it answers
    /// `etcdctl endpoint status` and knows a leader.
    pub fn restart(&mut self, i: usize) {
        self.start_member(i);
        self.wait_ready(i);
        self.wait_member_has_leader(i, READY_TIMEOUT);
    }

    /// Waits until member `i` answers `etcdctl endpoint status`; panics with the logs if it exits
    /// or does not answer within `READY_TIMEOUT`.
    pub fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.assert_alive(i);
            if self.status(i).is_some() {
                return;
            }
            assert!(Instant::now() < deadline, "{} not ready after {READY_TIMEOUT:?}", self.members[i].name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_member_has_leader(&mut self, i: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_alive(i);
            if self.status(i).is_some_and(|s| s.leader != 0) {
                return;
            }
            assert!(Instant::now() < deadline, "{} knows no leader after {timeout:?}", self.members[i].name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn assert_alive(&mut self, i: usize) {
        if let Some(child) = self.members[i].child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("{} exited with {status}", self.members[i].name);
        }
    }

    /// Member `i`'s `endpoint status`, or `None` if it does not answer.
    pub fn status(&self, i: usize) -> Option<MemberStatus> {
        let out = etcdctl(&self.endpoint(i), &["endpoint", "status", "-w", "json", "--dial-timeout=1s"]);
        if !out.status.success() {
            return None;
        }
        parse_status(&String::from_utf8_lossy(&out.stdout)).into_iter().next()
    }

    /// The index of the leader, if every running member answers and all name the same leader,
    /// which is one of them.
    pub fn leader_index(&mut self) -> Option<usize> {
        let running: Vec<usize> = (0..self.len()).filter(|&i| self.is_running(i)).collect();
        let mut statuses = Vec::new();
        for &i in &running {
            statuses.push((i, self.status(i)?));
        }
        let leader = statuses.first()?.1.leader;
        if leader == 0 || statuses.iter().any(|(_, s)| s.leader != leader) {
            return None;
        }
        statuses.iter().find(|(_, s)| s.member_id == leader).map(|(i, _)| *i)
    }

    /// Waits until `leader_index` names a leader; panics after `timeout`.
    pub fn wait_leader(&mut self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            for i in 0..self.len() {
                self.assert_alive(i);
            }
            if let Some(i) = self.leader_index() {
                return i;
            }
            assert!(Instant::now() < deadline, "no agreed leader after {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Member `i`'s ID (from its status).
    pub fn member_id(&self, i: usize) -> u64 {
        self.status(i).unwrap_or_else(|| panic!("{} does not answer status", self.members[i].name)).member_id
    }

    /// Runs etcdctl against the running members.
    pub fn etcdctl(&mut self, args: &[&str]) -> Output {
        let endpoints = self.running_endpoints_arg();
        etcdctl(&endpoints, args)
    }

    /// `etcdctl member add NAME --peer-urls=<new free port>` on the running members; panics if it
    /// fails. The member is registered, not started: see `start_new_member`.
    pub fn add_member(&mut self, name: &str) -> AddedMember {
        let peer_port = loop {
            let p = free_port();
            if self.members.iter().all(|m| m.peer_port != p && m.client_port != p) {
                break p;
            }
        };
        let peer_url = format!("--peer-urls=http://127.0.0.1:{peer_port}");
        // etcd refuses to add a voting member ("unhealthy cluster") until every member has been
        // connected for 5 s (its strict reconfiguration check): retry that, for at most 30 s.
        let deadline = Instant::now() + READY_TIMEOUT;
        let out = loop {
            let out = self.etcdctl(&["member", "add", name, &peer_url]);
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            if out.status.success() || !stderr.contains("unhealthy cluster") || Instant::now() > deadline {
                break out;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "member add failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let initial_cluster = stdout
            .lines()
            .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("no ETCD_INITIAL_CLUSTER in member add output: {stdout}"));
        AddedMember { name: name.to_string(), peer_port, initial_cluster, stdout }
    }

    /// Starts a member that joins with `--initial-cluster=initial_cluster` and
    /// `--initial-cluster-state=state` (`existing` after `member add`) on `peer_port` and a new
    /// client port, and waits until it answers status. Returns its index.
    pub fn start_new_member(&mut self, name: &str, peer_port: u16, initial_cluster: &str, state: &str) -> usize {
        let client_port = loop {
            let p = free_port();
            if p != peer_port && self.members.iter().all(|m| m.peer_port != p && m.client_port != p) {
                break p;
            }
        };
        let i = self.push_member(name, client_port, peer_port, initial_cluster, state);
        self.spawn(i);
        self.wait_ready(i);
        i
    }

    /// `add_member` then `start_new_member` with state `existing`.
    pub fn add_and_start_member(&mut self, name: &str) -> usize {
        let added = self.add_member(name);
        self.start_new_member(&added.name, added.peer_port, &added.initial_cluster, "existing")
    }

    /// `etcdctl member remove <hex ID of member i>` on the other running members; panics if it
    /// fails. Does not stop the process (etcd exits by itself once removed: see the tests).
    pub fn remove_member(&mut self, i: usize) -> Output {
        let id = format!("{:x}", self.member_id(i));
        let running: Vec<usize> = (0..self.len()).filter(|&j| j != i && self.is_running(j)).collect();
        let others: Vec<String> = running.iter().map(|&j| self.endpoint(j)).collect();
        let out = etcdctl(&others.join(","), &["member", "remove", &id]);
        assert!(
            out.status.success(),
            "member remove {id} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Waits at most `timeout` for member `i`'s process to exit by itself; true if it did.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_running(i) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        !self.is_running(i)
    }

    /// Sends `signal` (`"TERM"`, `"INT"`, ...) to member `i`'s process by PID, as a service
    /// manager stops it. Panics if the member is not running.
    pub fn signal(&mut self, i: usize, signal: &str) {
        super::send_signal(self.pid(i), signal);
    }

    /// Waits at most `timeout` for member `i`'s process to exit; its exit status, or None if it
    /// is still running. The process stays reaped; `start_member` starts it again.
    pub fn wait_exit_status(&mut self, i: usize, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.members[i].child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log_path).unwrap_or_default()
    }

    /// The last `LOG_TAIL_LINES` lines of every member's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            let log = self.log(i);
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            out.push_str(&format!("---- {} ({}), last {} lines ----\n", m.name, m.log_path.display(), tail.len()));
            out.push_str(&tail.join("\n"));
            out.push('\n');
        }
        out
    }

    /// Kills every member by PID and reaps it.
    pub fn stop(&mut self) {
        for i in 0..self.len() {
            self.kill9(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("cluster in {} ({:?}); member logs:\n{}", self.dir.display(), self.target, self.logs());
        }
    }
}

/// Parses `etcdctl endpoint status -w json` (one entry per endpoint).
pub fn parse_status(json: &str) -> Vec<MemberStatus> {
    let value: serde_json::Value = match serde_json::from_str(json.trim()) {
        Ok(v) => v,
        Err(_) => return Vec::new(),
    };
    let Some(entries) = value.as_array() else { return Vec::new() };
    entries
        .iter()
        .filter_map(|e| {
            let s = e.get("Status")?;
            let header = s.get("header")?;
            Some(MemberStatus {
                member_id: header.get("member_id")?.as_u64()?,
                leader: s.get("leader").and_then(|v| v.as_u64()).unwrap_or(0),
                raft_term: s.get("raftTerm").and_then(|v| v.as_u64()).unwrap_or(0),
                raft_index: s.get("raftIndex").and_then(|v| v.as_u64()).unwrap_or(0),
                revision: header.get("revision").and_then(|v| v.as_i64()).unwrap_or(0),
            })
        })
        .collect()
}
