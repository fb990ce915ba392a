//! `keel bench failover`: how long a cluster cannot take writes after its leader dies.
//!
//! Owns the failover benchmark: finding the leader, killing it, timing the recovery, restarting
//! the member and waiting until it has caught up, round after round. It either launches a local
//! cluster itself (`--launch keel|etcd`, the members are its child processes and are killed with
//! SIGKILL by PID), or drives an existing cluster through shell command templates
//! (`--kill-cmd`, `--restart-cmd`). Both Keel and real etcd take the same member flags, so the
//! launcher is the same for both; only the binary (and Keel's `store` role argument) differ.
//!
//! One round:
//! 1. Fresh clients, one per member, each connected to exactly one member. Every member answers
//!    Maintenance/Status and all name the same leader (`leader == member_id` of one of them).
//! 2. The leader is killed. The clock starts when SIGKILL has been sent (`--launch`) or when the
//!    kill command has exited.
//! 3. Two measurements run side by side until both are done or `--stuck-after` has passed:
//!    - *first put*: one writer per survivor; it starts a put every `--put-interval-ms` (each
//!      with `--put-timeout-ms`) until one is acknowledged; the measure is the earliest
//!      acknowledged put over all survivors (puts are only sent after the kill). With one put in
//!      flight and a retry on failure, the measure would include up to a whole timeout of waiting
//!      on a put sent while the old leader was still believed alive (etcd holds those; a server
//!      that fails them fast would look better for no real reason); starting puts at an interval
//!      makes both resolve to the interval. `--put-interval-ms 0` gives the one-in-flight loop.
//!    - *new leader*: one Status poller per survivor every `--poll-ms`; the measure is the first
//!      answer naming a leader that is a survivor.
//!
//!    A round whose writers got no put through by `--stuck-after` is *stuck*.
//! 4. The killed member is restarted and must answer Status with a leader, serve a linearizable
//!    read, and reach (in a serializable read) the revision a survivor had after the restart, all
//!    within `--recover-timeout`. Then `--pause-ms`, and the next round.
//!
//! The table shows median (p50), p99 and max (nearest rank) of both measures over the rounds
//! that produced them, and the number of stuck rounds; any stuck round makes the run fail.
//! Every loop is bounded by a deadline; every process the benchmark starts (members, commands)
//! is stopped by its PID when the run ends, also on error, Ctrl-C or SIGTERM.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};
use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use super::BenchError;
use super::stats::{Latencies, Summary};

/// The value every failover put writes.
const VALUE: &[u8] = b"failover";

/// Lines of each member's log shown when a launched cluster fails.
const LOG_TAIL_LINES: usize = 40;

/// Which server `--launch` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LaunchKind {
    /// `keel store <flags>` (default binary: this `keel`).
    Keel,
    /// `etcd <flags>` (default binary: `etcd` from PATH).
    Etcd,
}

const FAILOVER_HELP: &str = "\
Kills the leader of a cluster over and over and measures (a) the time from the kill to the \
first acknowledged put through a survivor and (b) the time to a new leader.

Two ways to give it a cluster:

  --launch keel|etcd   starts a local cluster of --members members on free 127.0.0.1 ports, \
data and logs in a new temporary directory (or --dir), with etcd's flags (--name, --data-dir, \
--listen-client-urls, --advertise-client-urls, --listen-peer-urls, --initial-advertise-peer-urls, \
--initial-cluster, --initial-cluster-state=new, --initial-cluster-token) plus every \
--member-flag; kills the leader with SIGKILL by PID and restarts it with the same command line. \
Every member is stopped by PID at the end, also on error, Ctrl-C or SIGTERM; the directory is \
deleted after a successful run and kept (with the log tails printed) after a failed one.

  --endpoints A,B,C --kill-cmd CMD --restart-cmd CMD   drives an existing cluster. The \
commands run with `sh -c` after these placeholders are replaced for the member concerned: \
{name} (its name in MemberList), {endpoint} (host:port as given), {url} (http://host:port), \
{index} (0-based position in --endpoints), {member_id} (hex, as etcdctl prints it). The kill \
command must return once the member is dead (the clock starts when it exits), the restart \
command once the member has been started (e.g. `systemctl start`, `docker start`); each may \
take at most --cmd-timeout seconds. Example: --kill-cmd 'docker kill {name}' \
--restart-cmd 'docker start {name}'.

Measures: one writer per survivor starts a put every --put-interval-ms (each with \
--put-timeout-ms) until one is acknowledged; the first put acknowledged after the kill counts \
(0 = one put in flight per survivor, retried as soon as it fails or times out; the measure then \
includes up to a whole timeout spent on a put the old leader would have had to take). One \
Status poller per survivor every --poll-ms; the first answer naming a surviving member as \
leader counts. A round with no acknowledged put within --stuck-after seconds is stuck; the \
run then exits non-zero. After each round the killed member is restarted and must catch up (Status with a leader, a \
linearizable read, and the survivors' revision in a serializable read) within \
--recover-timeout seconds.

Examples:
  keel bench failover --launch etcd
  keel bench failover --launch keel --member-flag=--election-timeout=1000 --rounds 50";

#[derive(clap::Args, Debug)]
#[command(about = "Leader failover: time from killing the leader to the first put and to a new leader")]
#[command(long_about = FAILOVER_HELP)]
pub struct FailoverArgs {
    /// Launch a local cluster of this kind instead of using --endpoints.
    #[arg(long, value_enum, conflicts_with_all = ["endpoints", "kill_cmd", "restart_cmd"])]
    pub launch: Option<LaunchKind>,
    /// Server binary for --launch (default: this keel for keel, `etcd` from PATH for etcd).
    #[arg(long, requires = "launch")]
    pub binary: Option<PathBuf>,
    /// Members of the launched cluster.
    #[arg(long, default_value_t = 3, requires = "launch")]
    pub members: usize,
    /// An extra flag for every launched member, repeatable, e.g. --member-flag=--election-timeout=1000.
    #[arg(long = "member-flag", allow_hyphen_values = true, requires = "launch")]
    pub member_flags: Vec<String>,
    /// Directory for the launched members' data and logs; must be empty or missing; kept.
    #[arg(long, requires = "launch")]
    pub dir: Option<PathBuf>,
    /// Client endpoints of an existing cluster, one per member (host:port or http://host:port).
    #[arg(long)]
    pub endpoints: Option<String>,
    /// Shell command that kills one member of an existing cluster (placeholders: see --help).
    #[arg(long)]
    pub kill_cmd: Option<String>,
    /// Shell command that starts a killed member again (placeholders: see --help).
    #[arg(long)]
    pub restart_cmd: Option<String>,
    /// Time limit of each --kill-cmd / --restart-cmd run, in seconds.
    #[arg(long, default_value_t = 30)]
    pub cmd_timeout: u64,
    /// Rounds (leader kills).
    #[arg(long, default_value_t = 20)]
    pub rounds: u32,
    /// Time limit of each put (and Status poll) after the kill, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub put_timeout_ms: u64,
    /// Each survivor's writer starts a new put this often (ms) while none has succeeded, so the
    /// first-put measure resolves to this interval, not to the timeout; 0 = one put in flight,
    /// the next as soon as it fails or times out.
    #[arg(long, default_value_t = 10)]
    pub put_interval_ms: u64,
    /// A round with no acknowledged put this many seconds after the kill is stuck.
    #[arg(long, default_value_t = 10)]
    pub stuck_after: u64,
    /// Time limit for the cluster to start, and for a restarted member to catch up, in seconds.
    #[arg(long, default_value_t = 60)]
    pub recover_timeout: u64,
    /// Pause between rounds, after the restarted member caught up, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub pause_ms: u64,
    /// Interval of the Status polls that look for the new leader, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub poll_ms: u64,
    /// Name shown in the header, e.g. "etcd 3.4, 3 members".
    #[arg(long)]
    pub label: Option<String>,
}

impl FailoverArgs {
    fn check(&self) -> Result<(), BenchError> {
        let positive = [
            ("--rounds", u64::from(self.rounds)),
            ("--put-timeout-ms", self.put_timeout_ms),
            ("--stuck-after", self.stuck_after),
            ("--recover-timeout", self.recover_timeout),
            ("--poll-ms", self.poll_ms),
            ("--cmd-timeout", self.cmd_timeout),
        ];
        for (flag, v) in positive {
            if v == 0 {
                return Err(BenchError::Args(format!("{flag} must be at least 1")));
            }
        }
        if self.launch.is_some() {
            if !(3..=9).contains(&self.members) {
                return Err(BenchError::Args("--members must be between 3 and 9".into()));
            }
        } else if self.endpoints.is_none() || self.kill_cmd.is_none() || self.restart_cmd.is_none() {
            return Err(BenchError::Args(
                "give either --launch keel|etcd, or --endpoints with --kill-cmd and --restart-cmd".into(),
            ));
        }
        Ok(())
    }

    fn put_timeout(&self) -> Duration {
        Duration::from_millis(self.put_timeout_ms)
    }

    fn recover_timeout(&self) -> Duration {
        Duration::from_secs(self.recover_timeout)
    }
}

fn failed(reason: impl Into<String>) -> BenchError {
    BenchError::Test { test: "failover".into(), reason: reason.into() }
}

// ---------------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------------

/// What one round measured.
#[derive(Debug, Clone)]
struct Round {
    killed: String,
    /// Kill → first acknowledged put; `None` = stuck.
    put: Option<Duration>,
    /// Kill → a survivor names a surviving leader; `None` = not seen within --stuck-after.
    leader: Option<Duration>,
}

pub async fn run(args: FailoverArgs) -> Result<(), BenchError> {
    args.check()?;
    let mut cluster = match args.launch {
        Some(kind) => Cluster::Launched(Launched::create(&args, kind)?),
        None => Cluster::External(External::new(&args)?),
    };
    let mut rounds = Vec::new();
    let outcome = tokio::select! {
        r = run_rounds(&args, &mut cluster, &mut rounds) => r,
        signal = shutdown_signal() => Err(failed(format!("interrupted by {signal}"))),
    };
    let stuck = rounds.iter().filter(|r| r.put.is_none()).count();
    let ok = outcome.is_ok() && stuck == 0;
    if !rounds.is_empty() {
        println!("{}", render(&rounds));
    }
    cluster.finish(ok);
    outcome?;
    if stuck > 0 {
        return Err(failed(format!(
            "{stuck} of {} rounds got stuck (no put within {}s)",
            rounds.len(),
            args.stuck_after
        )));
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (never, if neither can be listened for).
async fn shutdown_signal() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let int = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = term => "SIGTERM",
        _ = int => "SIGINT",
    }
}

async fn run_rounds(args: &FailoverArgs, cluster: &mut Cluster, rounds: &mut Vec<Round>) -> Result<(), BenchError> {
    cluster.start(args).await?;
    let endpoints = cluster.endpoints();
    let connect_timeout = Duration::from_secs(5);
    let prefix = format!("/bench/{:08x}/failover/", rand::random::<u32>());
    println!("{}", header(args, cluster, &prefix));

    for round in 0..args.rounds {
        let clients = connect_all(&endpoints, connect_timeout).await?;
        let (leader, statuses) = find_leader(&clients, args, cluster).await?;
        let survivors: Vec<usize> = (0..clients.len()).filter(|&i| i != leader).collect();
        let survivor_ids: Vec<u64> = survivors.iter().map(|&i| statuses[i].member_id).collect();
        let old_id = statuses[leader].member_id;
        // Connections up before the kill, so the measure holds no connection setup.
        for &s in &survivors {
            let _ = status(&clients[s], connect_timeout).await;
        }
        tracing::info!("failover round {}: killing leader {} ({:x})", round + 1, cluster.name(leader), old_id);

        let t0 = cluster.kill(leader, args).await?;
        let key = format!("{prefix}{round:04}");
        let (put, new_leader) = measure(&clients, &survivors, &survivor_ids, old_id, &key, t0, args).await;
        tracing::info!("failover round {}: first put {}, new leader {}", round + 1, fmt_ms(put), fmt_ms(new_leader));
        rounds.push(Round { killed: cluster.name(leader), put, leader: new_leader });
        cluster.check_alive()?;

        cluster.restart(leader, args).await?;
        wait_caught_up(&endpoints, leader, &survivors, args, cluster).await?;
        if round + 1 < args.rounds {
            tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
        }
    }
    if matches!(cluster, Cluster::External(_)) {
        let clients = connect_all(&endpoints, connect_timeout).await?;
        for c in &clients {
            if super::kv::delete_prefix(c, &prefix, Duration::from_secs(5)).await.is_ok() {
                break;
            }
        }
    }
    Ok(())
}

/// Both measures of one round, each `None` if not reached within --stuck-after.
async fn measure(
    clients: &[Client],
    survivors: &[usize],
    survivor_ids: &[u64],
    old_id: u64,
    key: &str,
    t0: Instant,
    args: &FailoverArgs,
) -> (Option<Duration>, Option<Duration>) {
    let deadline = t0 + Duration::from_secs(args.stuck_after);
    let put_timeout = args.put_timeout();
    let put_done = AtomicBool::new(false);
    let leader_done = AtomicBool::new(false);

    let interval = Duration::from_millis(args.put_interval_ms);
    // Puts one survivor may have in flight: a new one every interval, each living at most the timeout.
    let cap = if interval.is_zero() { 1 } else { (args.put_timeout_ms / args.put_interval_ms + 1).min(1000) as usize };
    let writers = survivors.iter().map(|&s| {
        let client = clients[s].clone();
        let put_done = &put_done;
        async move {
            let mut inflight = FuturesUnordered::new();
            let mut next_launch = Instant::now();
            // Bounded by `deadline`: nothing is sent after it, and every put lives at most until it.
            // A put is started when the interval has passed (sequential mode: when none is in
            // flight and at least 1 ms after the last start, so a fast-failing member is not spun on).
            loop {
                if put_done.load(Ordering::Relaxed) {
                    return None;
                }
                let now = Instant::now();
                let room = if interval.is_zero() { inflight.is_empty() } else { inflight.len() < cap };
                if room && now >= next_launch && now < deadline {
                    let mut c = client.clone();
                    let budget = put_timeout.min(deadline - now);
                    inflight.push(async move { tokio::time::timeout(budget, c.put(key, VALUE, None)).await });
                    next_launch = now + interval.max(Duration::from_millis(1));
                    continue;
                }
                let may_launch = room && now < deadline && next_launch < deadline;
                if inflight.is_empty() && !may_launch {
                    return None;
                }
                tokio::select! {
                    Some(result) = inflight.next(), if !inflight.is_empty() => {
                        if let Ok(Ok(_)) = result {
                            let at = Instant::now();
                            put_done.store(true, Ordering::Relaxed);
                            return Some(at - t0);
                        }
                    }
                    _ = tokio::time::sleep_until(next_launch), if may_launch => {}
                }
            }
        }
    });
    let pollers = survivors.iter().map(|&s| {
        let client = &clients[s];
        let leader_done = &leader_done;
        async move {
            while !leader_done.load(Ordering::Relaxed) {
                let sent = Instant::now();
                if sent >= deadline {
                    return None;
                }
                let budget = put_timeout.min(deadline - sent);
                if let Ok(st) = status(client, budget).await
                    && st.leader != 0
                    && st.leader != old_id
                    && survivor_ids.contains(&st.leader)
                {
                    let at = Instant::now();
                    leader_done.store(true, Ordering::Relaxed);
                    return Some(at - t0);
                }
                let next = sent + Duration::from_millis(args.poll_ms);
                tokio::time::sleep_until(next.min(deadline)).await;
            }
            None
        }
    });
    let (puts, leaders) = tokio::join!(join_all(writers), join_all(pollers));
    (puts.into_iter().flatten().min(), leaders.into_iter().flatten().min())
}

/// Waits until the restarted member `i` answers Status with a leader, serves a linearizable
/// read, and its serializable reads reach the revision a survivor had after the restart.
async fn wait_caught_up(
    endpoints: &[String],
    i: usize,
    survivors: &[usize],
    args: &FailoverArgs,
    cluster: &mut Cluster,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + args.recover_timeout();
    let step = Duration::from_secs(2);
    let member = connect_one(&endpoints[i], step).await?;
    let mut survivor_clients = Vec::with_capacity(survivors.len());
    for &s in survivors {
        survivor_clients.push(connect_one(&endpoints[s], step).await?);
    }
    let mut target: Option<i64> = None;
    let mut last = String::from("no answer yet");
    loop {
        cluster.check_alive()?;
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "{} (restarted) did not catch up within {}s: {last}",
                cluster.name(i),
                args.recover_timeout
            )));
        }
        match status(&member, step).await {
            Ok(st) if st.leader != 0 => {
                if target.is_none() {
                    for c in &survivor_clients {
                        if let Ok(rev) = read_revision(c, false, step).await {
                            target = Some(rev);
                            break;
                        }
                    }
                }
                match target {
                    None => last = "no survivor answered a linearizable read".into(),
                    Some(t) => match read_revision(&member, true, step).await {
                        Ok(rev) if rev >= t => match read_revision(&member, false, step).await {
                            Ok(_) => return Ok(()),
                            Err(e) => last = format!("linearizable read failed: {e}"),
                        },
                        Ok(rev) => last = format!("at revision {rev}, survivors at {t}"),
                        Err(e) => last = format!("serializable read failed: {e}"),
                    },
                }
            }
            Ok(_) => last = "Status names no leader".into(),
            Err(e) => last = format!("Status failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(args.poll_ms.max(20))).await;
    }
}

/// Waits until every member answers Status and all name the same leader, one of them.
/// Returns the leader's index and every member's status.
async fn find_leader(
    clients: &[Client],
    args: &FailoverArgs,
    cluster: &mut Cluster,
) -> Result<(usize, Vec<Status>), BenchError> {
    let deadline = Instant::now() + args.recover_timeout();
    let mut last = String::new();
    loop {
        cluster.check_alive()?;
        if Instant::now() >= deadline {
            return Err(failed(format!("no agreed leader within {}s: {last}", args.recover_timeout)));
        }
        let answers = join_all(clients.iter().map(|c| status(c, Duration::from_secs(2)))).await;
        let mut statuses = Vec::with_capacity(answers.len());
        last.clear();
        for (i, a) in answers.into_iter().enumerate() {
            match a {
                Ok(st) => {
                    let _ = write!(last, "[{}: member {:x} leader {:x}] ", cluster.name(i), st.member_id, st.leader);
                    statuses.push(st);
                }
                Err(e) => {
                    let _ = write!(last, "[{}: {e}] ", cluster.name(i));
                }
            }
        }
        if statuses.len() == clients.len() {
            let leader = statuses[0].leader;
            let agreed = leader != 0 && statuses.iter().all(|s| s.leader == leader);
            let holders: Vec<usize> = (0..statuses.len()).filter(|&i| statuses[i].member_id == leader).collect();
            if agreed && holders.len() == 1 {
                return Ok((holders[0], statuses));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Clone, Copy, Debug)]
struct Status {
    member_id: u64,
    leader: u64,
}

async fn status(client: &Client, timeout: Duration) -> Result<Status, String> {
    let mut c = client.clone();
    let r = tokio::time::timeout(timeout, c.status())
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    Ok(Status { member_id: r.header().map_or(0, |h| h.member_id()), leader: r.leader() })
}

/// The store revision in the header of a read (serializable or linearizable).
async fn read_revision(client: &Client, serializable: bool, timeout: Duration) -> Result<i64, String> {
    let mut c = client.clone();
    let options = serializable.then(|| GetOptions::new().with_serializable());
    let r = tokio::time::timeout(timeout, c.get("/bench/failover-probe", options))
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    r.header().map(|h| h.revision()).ok_or_else(|| "answer without a header".to_string())
}

/// One client per endpoint, each talking to that endpoint only. Connecting is lazy (no RPC).
async fn connect_all(endpoints: &[String], timeout: Duration) -> Result<Vec<Client>, BenchError> {
    let mut clients = Vec::with_capacity(endpoints.len());
    for e in endpoints {
        clients.push(connect_one(e, timeout).await?);
    }
    Ok(clients)
}

async fn connect_one(endpoint: &str, timeout: Duration) -> Result<Client, BenchError> {
    let unreachable = |reason: String| BenchError::Unreachable { endpoint: endpoint.into(), reason };
    let options = ConnectOptions::new().with_connect_timeout(timeout);
    tokio::time::timeout(timeout, Client::connect([endpoint], Some(options)))
        .await
        .map_err(|_| unreachable(format!("no connection within {timeout:?}")))?
        .map_err(|e| unreachable(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Output.
// ---------------------------------------------------------------------------------------------

fn fmt_ms(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        None => "-".into(),
    }
}

fn header(args: &FailoverArgs, cluster: &Cluster, prefix: &str) -> String {
    let label = args.label.clone().unwrap_or_else(|| match args.launch {
        Some(LaunchKind::Keel) => format!("keel, {} members", cluster.endpoints().len()),
        Some(LaunchKind::Etcd) => format!("etcd, {} members", cluster.endpoints().len()),
        None => "unlabeled run".into(),
    });
    let mut s = format!("## keel bench failover: {label}\n\n");
    match cluster {
        Cluster::Launched(l) => {
            let _ = writeln!(
                s,
                "- launched: {} in {}; member flags: {}",
                l.binary.display(),
                l.dir.display(),
                if l.member_flags.is_empty() { "(none)".to_string() } else { l.member_flags.join(" ") }
            );
        }
        Cluster::External(e) => {
            let _ = writeln!(s, "- kill: `{}`; restart: `{}`", e.kill_cmd, e.restart_cmd);
        }
    }
    let names: Vec<String> =
        cluster.endpoints().iter().enumerate().map(|(i, e)| format!("{}={e}", cluster.name(i))).collect();
    let _ = writeln!(s, "- members: {}", names.join(" "));
    let _ = writeln!(
        s,
        "- rounds={} put-timeout={}ms put-interval={}ms stuck-after={}s poll={}ms pause={}ms, keys under {prefix}",
        args.rounds, args.put_timeout_ms, args.put_interval_ms, args.stuck_after, args.poll_ms, args.pause_ms
    );
    s
}

/// The result table, then one line with every round's figures.
fn render(rounds: &[Round]) -> String {
    let mut puts = Latencies::default();
    let mut leaders = Latencies::default();
    for r in rounds {
        if let Some(p) = r.put {
            puts.record(p);
        }
        if let Some(l) = r.leader {
            leaders.record(l);
        }
    }
    let stuck = rounds.iter().filter(|r| r.put.is_none()).count();
    let no_leader = rounds.iter().filter(|r| r.leader.is_none()).count();
    let ms = |d: Option<Duration>| d.map_or_else(|| "-".to_string(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0));
    let row = |name: &str, s: Summary, missed: usize| {
        [name.to_string(), s.count.to_string(), ms(s.p50), ms(s.p99), ms(s.max), missed.to_string()]
    };
    let rows = [
        ["measure", "runs", "median ms", "p99 ms", "max ms", "stuck"].map(String::from),
        row("kill leader → first put", puts.summary(), stuck),
        row("kill leader → new leader", leaders.summary(), no_leader),
    ];
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (n, r) in rows.iter().enumerate() {
        out.push('|');
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            if i == 0 {
                let _ = write!(out, " {c}{} |", " ".repeat(pad));
            } else {
                let _ = write!(out, " {}{c} |", " ".repeat(pad));
            }
        }
        out.push('\n');
        if n == 0 {
            out.push('|');
            for (i, w) in widths.iter().enumerate() {
                if i == 0 {
                    let _ = write!(out, " {} |", "-".repeat(*w));
                } else {
                    let _ = write!(out, " {}: |", "-".repeat(w - 1));
                }
            }
            out.push('\n');
        }
    }
    let _ = writeln!(
        out,
        "\n- stuck = rounds with no put acknowledged within --stuck-after (for the leader row: no new leader seen)"
    );
    let per_round: Vec<String> = rounds
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let f = |d: Option<Duration>| d.map_or_else(|| "stuck".to_string(), |d| format!("{}", d.as_millis()));
            format!("{}:{}:{}/{}", i + 1, r.killed, f(r.put), f(r.leader))
        })
        .collect();
    let _ = writeln!(out, "- per round (killed member: put ms/leader ms): {}", per_round.join(" "));
    out
}

// ---------------------------------------------------------------------------------------------
// The cluster under test: launched by us, or driven through commands.
// ---------------------------------------------------------------------------------------------

enum Cluster {
    Launched(Launched),
    External(External),
}

impl Cluster {
    /// Starts (launched) or discovers (external) the members.
    async fn start(&mut self, args: &FailoverArgs) -> Result<(), BenchError> {
        match self {
            Cluster::Launched(l) => l.spawn_all(),
            Cluster::External(e) => e.discover(args).await,
        }
    }

    /// Client URLs, member `i` at index `i`.
    fn endpoints(&self) -> Vec<String> {
        match self {
            Cluster::Launched(l) => l.members.iter().map(|m| m.client_url.clone()).collect(),
            Cluster::External(e) => e.endpoints.clone(),
        }
    }

    fn name(&self, i: usize) -> String {
        match self {
            Cluster::Launched(l) => l.members.get(i).map(|m| m.name.clone()),
            Cluster::External(e) => e.names.get(i).cloned(),
        }
        .unwrap_or_else(|| format!("member{i}"))
    }

    /// Kills member `i`; returns when the clock starts (see the module docs).
    async fn kill(&mut self, i: usize, args: &FailoverArgs) -> Result<Instant, BenchError> {
        match self {
            Cluster::Launched(l) => l.kill(i),
            Cluster::External(e) => {
                e.run_template(e.kill_cmd.clone(), i, args).await?;
                Ok(Instant::now())
            }
        }
    }

    async fn restart(&mut self, i: usize, args: &FailoverArgs) -> Result<(), BenchError> {
        match self {
            Cluster::Launched(l) => l.restart(i),
            Cluster::External(e) => e.run_template(e.restart_cmd.clone(), i, args).await,
        }
    }

    /// Fails if a launched member that should be running has exited.
    fn check_alive(&mut self) -> Result<(), BenchError> {
        match self {
            Cluster::Launched(l) => l.check_alive(),
            Cluster::External(_) => Ok(()),
        }
    }

    /// Stops what we started; `ok` decides whether the launch directory is deleted.
    fn finish(&mut self, ok: bool) {
        if let Cluster::Launched(l) = self {
            l.finish(ok);
        }
    }
}

/// An existing cluster driven through `--kill-cmd` / `--restart-cmd`.
struct External {
    /// Client URLs as given (scheme added).
    endpoints: Vec<String>,
    names: Vec<String>,
    ids: Vec<u64>,
    kill_cmd: String,
    restart_cmd: String,
}

impl External {
    fn new(args: &FailoverArgs) -> Result<External, BenchError> {
        let endpoints = super::conn::parse_endpoints(args.endpoints.as_deref().unwrap_or_default())?;
        if endpoints.len() < 2 {
            return Err(BenchError::Args("--endpoints needs one endpoint per member, at least 2".into()));
        }
        Ok(External {
            names: (0..endpoints.len()).map(|i| format!("member{i}")).collect(),
            ids: vec![0; endpoints.len()],
            endpoints,
            kill_cmd: args.kill_cmd.clone().unwrap_or_default(),
            restart_cmd: args.restart_cmd.clone().unwrap_or_default(),
        })
    }

    /// Learns each endpoint's member ID (Status) and name (MemberList).
    async fn discover(&mut self, args: &FailoverArgs) -> Result<(), BenchError> {
        let timeout = Duration::from_secs(5);
        let clients = connect_all(&self.endpoints, timeout).await?;
        for (i, c) in clients.iter().enumerate() {
            let st = status(c, timeout)
                .await
                .map_err(|reason| BenchError::Unreachable { endpoint: self.endpoints[i].clone(), reason })?;
            self.ids[i] = st.member_id;
        }
        let mut c = clients[0].clone();
        let list = tokio::time::timeout(timeout, c.member_list())
            .await
            .map_err(|_| failed("MemberList timed out"))?
            .map_err(|e| failed(format!("MemberList: {e}")))?;
        for (i, id) in self.ids.iter().enumerate() {
            if let Some(m) = list.members().iter().find(|m| m.id() == *id)
                && !m.name().is_empty()
            {
                self.names[i] = m.name().to_string();
            }
        }
        let mut distinct = self.ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != self.ids.len() {
            return Err(BenchError::Args("two --endpoints reach the same member".into()));
        }
        let _ = args;
        Ok(())
    }

    fn expand(&self, template: &str, i: usize) -> String {
        let url = &self.endpoints[i];
        let hostport = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        template
            .replace("{name}", &self.names[i])
            .replace("{endpoint}", hostport)
            .replace("{url}", url)
            .replace("{index}", &i.to_string())
            .replace("{member_id}", &format!("{:x}", self.ids[i]))
    }

    /// Runs a command template for member `i` with `sh -c`, killing it (by PID) after --cmd-timeout.
    /// Its output goes to our stderr (not a pipe: a member it starts in the background would
    /// hold a pipe open), so stdout keeps only the report.
    async fn run_template(&self, template: String, i: usize, args: &FailoverArgs) -> Result<(), BenchError> {
        use std::os::fd::AsFd;
        let cmd = self.expand(&template, i);
        tracing::info!("failover: running `{cmd}`");
        let to_stderr = || {
            std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map(Stdio::from)
                .map_err(|e| failed(format!("cannot duplicate stderr: {e}")))
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stdin(Stdio::null())
            .stdout(to_stderr()?)
            .stderr(to_stderr()?)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(format!("cannot run `{cmd}`: {e}")))?;
        let status = match tokio::time::timeout(Duration::from_secs(args.cmd_timeout), child.wait()).await {
            Ok(r) => r.map_err(|e| failed(format!("`{cmd}`: {e}")))?,
            Err(_) => {
                let _ = child.kill().await;
                return Err(failed(format!("`{cmd}` did not finish within {}s (killed)", args.cmd_timeout)));
            }
        };
        if !status.success() {
            return Err(failed(format!("`{cmd}` failed with {status}")));
        }
        Ok(())
    }
}

/// A local cluster of child processes.
struct Launched {
    kind: LaunchKind,
    binary: PathBuf,
    dir: PathBuf,
    /// Delete `dir` after a successful run (only when we created it).
    created_dir: bool,
    member_flags: Vec<String>,
    members: Vec<LaunchedMember>,
}

struct LaunchedMember {
    name: String,
    client_url: String,
    /// The full argument list (after the binary), the same at every start.
    args: Vec<String>,
    log_path: PathBuf,
    child: Option<Child>,
    /// Killed but maybe not reaped yet.
    dying: Option<Child>,
}

impl Launched {
    fn create(args: &FailoverArgs, kind: LaunchKind) -> Result<Launched, BenchError> {
        let binary = match (&args.binary, kind) {
            (Some(b), _) => b.clone(),
            (None, LaunchKind::Keel) => std::env::current_exe()
                .map_err(|e| BenchError::Args(format!("cannot find this keel binary ({e}); give --binary")))?,
            (None, LaunchKind::Etcd) => {
                find_in_path("etcd").ok_or_else(|| BenchError::Args("`etcd` is not in PATH; give --binary".into()))?
            }
        };
        let (dir, created_dir) = match &args.dir {
            Some(d) => {
                let empty = match std::fs::read_dir(d) {
                    Ok(mut entries) => entries.next().is_none(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                    Err(e) => return Err(BenchError::Args(format!("--dir {}: {e}", d.display()))),
                };
                if !empty {
                    return Err(BenchError::Args(format!("--dir {} is not empty", d.display())));
                }
                (d.clone(), false)
            }
            None => (std::env::temp_dir().join(format!("keel-failover-{:08x}", rand::random::<u32>())), true),
        };
        std::fs::create_dir_all(&dir).map_err(|e| BenchError::Args(format!("cannot create {}: {e}", dir.display())))?;

        // Below the ephemeral range: while a killed member is down the others keep dialing it,
        // and a dial's source port must not be the one it needs when it restarts.
        let ports = keel_net::ports::free_local_ports(args.members * 2).map_err(|e| failed(e.to_string()))?;

        let token = format!("keel-failover-{:08x}", rand::random::<u32>());
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let names: Vec<String> = (0..args.members).map(|i| format!("m{i}")).collect();
        let initial_cluster: Vec<String> =
            names.iter().enumerate().map(|(i, n)| format!("{n}={}", peer_url(i))).collect();
        let initial_cluster = initial_cluster.join(",");
        let mut members = Vec::with_capacity(args.members);
        for (i, name) in names.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{}", ports[2 * i]);
            let mut argv = Vec::new();
            if kind == LaunchKind::Keel {
                argv.push("store".to_string());
            }
            argv.extend([
                format!("--name={name}"),
                format!("--data-dir={}", dir.join(name).display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={}", peer_url(i)),
                format!("--initial-advertise-peer-urls={}", peer_url(i)),
                format!("--initial-cluster={initial_cluster}"),
                "--initial-cluster-state=new".to_string(),
                format!("--initial-cluster-token={token}"),
            ]);
            argv.extend(args.member_flags.iter().cloned());
            members.push(LaunchedMember {
                name: name.clone(),
                client_url,
                args: argv,
                log_path: dir.join(format!("{name}.log")),
                child: None,
                dying: None,
            });
        }
        Ok(Launched { kind, binary, dir, created_dir, member_flags: args.member_flags.clone(), members })
    }

    fn spawn_all(&mut self) -> Result<(), BenchError> {
        for i in 0..self.members.len() {
            self.spawn(i)?;
        }
        tracing::info!("failover: launched {} {:?} members in {}", self.members.len(), self.kind, self.dir.display());
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> Result<(), BenchError> {
        let binary = self.binary.clone();
        let m = &mut self.members[i];
        let open = || std::fs::OpenOptions::new().create(true).append(true).open(&m.log_path);
        let log = open().map_err(|e| failed(format!("cannot open {}: {e}", m.log_path.display())))?;
        let log_err = open().map_err(|e| failed(format!("cannot open {}: {e}", m.log_path.display())))?;
        let child = Command::new(&binary)
            .args(&m.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| failed(format!("cannot start {} for {}: {e}", binary.display(), m.name)))?;
        m.child = Some(child);
        Ok(())
    }

    /// SIGKILL by PID; returns the instant the signal was sent. Reaped at the restart.
    fn kill(&mut self, i: usize) -> Result<Instant, BenchError> {
        let m = &mut self.members[i];
        let mut child = m.child.take().ok_or_else(|| failed(format!("{} is not running", m.name)))?;
        let t0 = Instant::now();
        child.kill().map_err(|e| failed(format!("kill {} (pid {}): {e}", m.name, child.id())))?;
        m.dying = Some(child);
        Ok(t0)
    }

    fn restart(&mut self, i: usize) -> Result<(), BenchError> {
        if let Some(mut dying) = self.members[i].dying.take() {
            let _ = dying.wait();
        }
        self.spawn(i)
    }

    fn check_alive(&mut self) -> Result<(), BenchError> {
        for m in &mut self.members {
            if let Some(child) = m.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                m.child = None;
                return Err(failed(format!("member {} exited with {status} (log: {})", m.name, m.log_path.display())));
            }
        }
        Ok(())
    }

    /// Kills every member by PID and reaps it.
    fn stop_all(&mut self) {
        for m in &mut self.members {
            for mut child in [m.child.take(), m.dying.take()].into_iter().flatten() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    fn finish(&mut self, ok: bool) {
        self.stop_all();
        if ok && self.created_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else if !ok {
            for m in &self.members {
                eprintln!("---- {} ({}), last {LOG_TAIL_LINES} lines ----", m.name, m.log_path.display());
                eprintln!("{}", log_tail(&m.log_path, LOG_TAIL_LINES));
            }
            eprintln!("failover: member data and logs kept in {}", self.dir.display());
        }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    // Lossy: a log cut off in the middle of a character must still show its tail.
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => return format!("(cannot read {}: {error})", path.display()),
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_survives_bytes_that_are_not_utf8() {
        let path = std::env::temp_dir().join(format!("keel-log-tail-{}.log", std::process::id()));
        std::fs::write(&path, b"first\nbroken \xe2\x86\nthread 'main' panicked\n").expect("write log");
        let tail = log_tail(&path, 2);
        let _ = std::fs::remove_file(&path);
        assert_eq!(tail, "broken \u{fffd}\nthread 'main' panicked");
        assert!(log_tail(&path, 2).starts_with("(cannot read"), "a missing log says so");
    }

    #[test]
    fn table_counts_stuck_rounds() {
        let rounds = vec![
            Round {
                killed: "m0".into(),
                put: Some(Duration::from_millis(1200)),
                leader: Some(Duration::from_millis(1100)),
            },
            Round { killed: "m1".into(), put: None, leader: None },
            Round {
                killed: "m2".into(),
                put: Some(Duration::from_millis(1500)),
                leader: Some(Duration::from_millis(1400)),
            },
        ];
        let t = render(&rounds);
        let lines: Vec<&str> = t.lines().take_while(|l| l.starts_with('|')).collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines.iter().all(|l| l.chars().count() == lines[0].chars().count()), "{t}");
        let cols = |l: &str| l.split('|').map(|c| c.trim().to_string()).collect::<Vec<_>>();
        assert_eq!(cols(lines[2])[2..7], ["2", "1200.0", "1500.0", "1500.0", "1"], "{t}");
        assert!(t.contains("2:m1:stuck/stuck"), "{t}");
    }

    #[test]
    fn templates_are_expanded() {
        let e = External {
            endpoints: vec!["http://127.0.0.1:2379".into(), "http://127.0.0.1:22379".into()],
            names: vec!["a".into(), "b".into()],
            ids: vec![1, 0x8e9e05c52164694d],
            kill_cmd: String::new(),
            restart_cmd: String::new(),
        };
        assert_eq!(
            e.expand("x {name} {endpoint} {url} {index} {member_id}", 1),
            "x b 127.0.0.1:22379 http://127.0.0.1:22379 1 8e9e05c52164694d"
        );
    }
}
