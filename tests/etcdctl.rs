//! Differential acceptance suite: the real `etcdctl` 3.4 must print, against `keel store`,
//! exactly what it prints against real etcd 3.4 for the same command sequence on a fresh store.
//!
//! Every test starts a fresh real etcd and a fresh `keel store`, runs the identical etcdctl
//! commands against both, normalizes only what legitimately differs between two servers
//! (member/cluster/lease IDs, ports, database sizes, Raft indexes, timings, the server version
//! string, remaining lease TTLs, temp paths) and requires exit code, stdout and stderr to be
//! equal. Revisions, keys, values, counts, versions, error texts and exit codes are never
//! normalized. Each test also checks a few concrete expectations on etcd's output, so a test
//! cannot pass because both sides failed the same way.
//!
//! All mismatches of a test are collected and reported together (etcd vs keel, as a line diff),
//! so one run shows everything the store still gets wrong.
//!
//! `KEEL_TEST_TARGET=etcd` replaces the Keel side by a second real etcd: an etcd-vs-etcd run
//! that must pass, which is how the normalization itself is checked.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, Target, etcdctl_stdin, require_program};

// ---------------------------------------------------------------------------------------------
// The differential harness
// ---------------------------------------------------------------------------------------------

/// What one etcdctl invocation produced (after normalization, when it comes from `Pair`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// One of the two servers under comparison, with the IDs learned from it.
struct Side {
    label: &'static str,
    server: Server,
    dir: tempfile::TempDir,
    member_id: Option<u64>,
    cluster_id: Option<u64>,
    /// Lease IDs granted through `Pair::grant`, in grant order on both sides.
    leases: Vec<i64>,
}

impl Side {
    fn start(label: &'static str, target: Target) -> Side {
        let dir = tempfile::Builder::new().prefix(&format!("keel-etcdctl-{label}-")).tempdir().expect("tempdir");
        // The harness gives both a peer URL of the same shape, so `member list` compares.
        let server = Server::start_with(target, dir.path(), &[]);
        let mut side = Side { label, server, dir, member_id: None, cluster_id: None, leases: Vec::new() };
        side.learn_ids();
        side
    }

    /// Member and cluster ID as this server reports them (`endpoint status -w json`).
    fn learn_ids(&mut self) {
        let out = self.run(&["endpoint", "status", "-w", "json"], None);
        assert_eq!(out.code, 0, "{}: endpoint status failed: {out:?}", self.label);
        let json: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("{}: endpoint status -w json is not JSON ({e}): {:?}", self.label, out.stdout));
        let header = &json[0]["Status"]["header"];
        self.member_id = header["member_id"].as_u64();
        self.cluster_id = header["cluster_id"].as_u64();
    }

    fn tmp(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces `{LEASE1}`.. (hex, as etcdctl takes them), `{TMP}` and `{ENDPOINT}` in an arg.
    fn expand(&self, arg: &str) -> String {
        let mut s = arg.replace("{TMP}", &self.tmp().display().to_string());
        s = s.replace("{ENDPOINT}", &self.server.endpoint);
        for (i, id) in self.leases.iter().enumerate() {
            s = s.replace(&format!("{{LEASE{}}}", i + 1), &format!("{id:x}"));
        }
        s
    }

    /// Runs etcdctl against this side (raw output, placeholders expanded).
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let expanded: Vec<String> = args.iter().map(|a| self.expand(a)).collect();
        let refs: Vec<&str> = expanded.iter().map(String::as_str).collect();
        let out = etcdctl_stdin(&self.server.endpoint, &refs, stdin);
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts etcdctl in the background (for `watch`), output going to files in the temp dir.
    fn spawn(&self, args: &[&str], tag: &str) -> Background {
        let stdout_path = self.tmp().join(format!("{tag}.stdout"));
        let stderr_path = self.tmp().join(format!("{tag}.stderr"));
        let child = Command::new(require_program("etcdctl"))
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.server.endpoint))
            .arg("--command-timeout=10s")
            .args(args.iter().map(|a| self.expand(a)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("create stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("create stderr file"))
            .spawn()
            .expect("spawn etcdctl");
        Background { child: Some(child), stdout_path, stderr_path }
    }

    /// Every ID this side reported, with the placeholder it is shown as.
    fn id_tokens(&self) -> HashMap<String, String> {
        let mut map = HashMap::new();
        if let Some(m) = self.member_id {
            map.insert(m.to_string(), "<MEMBER>".to_string());
        }
        if let Some(c) = self.cluster_id {
            map.insert(c.to_string(), "<CLUSTER>".to_string());
        }
        for (i, id) in self.leases.iter().enumerate() {
            map.insert(id.to_string(), format!("<LEASE{}>", i + 1));
        }
        map
    }

    /// Normalizes one output stream of `args` run against this side.
    fn normalize(&self, args: &[&str], text: &str) -> String {
        let mut s = text.replace(&self.tmp().display().to_string(), "<TMP>");
        s = s.replace(&self.server.endpoint, "<CLIENT>");
        s = mask_host_ports(&s);
        for (i, id) in self.leases.iter().enumerate() {
            s = replace_token(&s, &format!("{id:016x}"), &format!("<LEASE{}>", i + 1));
        }
        let ids = self.id_tokens();
        for key in
            ["cluster_id", "member_id", "leader", "ID", "id", "lease", "ClusterID", "MemberID", "Leader", "Lease"]
        {
            s = map_json_field(&s, key, |v| ids.get(v).cloned());
        }
        // Timings, sizes, Raft indexes and terms that differ between any two servers (a fresh etcd
        // member elects itself in term 2, a fresh Keel member in term 1: Raft bookkeeping, not
        // data).
        for key in [
            "raft_term",
            "raftTerm",
            "RaftTerm",
            "ts",
            "took",
            "target",
            "dbSize",
            "dbSizeInUse",
            "raftIndex",
            "raftAppliedIndex",
            "size",
            "Took",
            "DBSize",
            "DBSizeInUse",
            "RaftIndex",
            "RaftAppliedIndex",
        ] {
            s = map_json_field(&s, key, |_| Some(format!("<{key}>")));
        }
        // The server version string (a JSON string, unlike the numeric key versions).
        for key in ["version", "Version"] {
            s = map_json_field(&s, key, |v| v.starts_with('"').then(|| "<version>".to_string()));
        }
        // Remaining lease TTL counts down; -1 ("expired") and 0 are exact.
        s = map_json_field(&s, "ttl", |v| (v.parse::<i64>().map_or(false, |n| n > 0)).then(|| "<ttl>".to_string()));
        s = mask_remaining(&s);
        // etcd lists a lease's keys in Go map order (random): compare them as sets.
        s = sort_list(&s, "attached keys([", "])", " ");
        s = sort_list(&s, "\"keys\":[", "]", ",");
        s = mask_after(&s, "took = ", "<TOOK>");
        s = flatten_tables(&s);
        let member_hex = self.member_id.map(|m| format!("{m:x}"));
        let structured = args.iter().any(|a| a.contains("json") || a.contains("fields"));
        let has = |a: &str, b: &str| !structured && args.contains(&a) && args.contains(&b);
        if has("endpoint", "status") {
            s = map_fields(
                &s,
                &[
                    (1, FieldKind::Member),
                    (2, FieldKind::Mask("<VERSION>")),
                    (3, FieldKind::Mask("<DB SIZE>")),
                    (6, FieldKind::Mask("<RAFT TERM>")),
                    (7, FieldKind::Mask("<RAFT INDEX>")),
                    (8, FieldKind::Mask("<APPLIED INDEX>")),
                ],
                member_hex.as_deref(),
            );
        } else if has("member", "list") {
            s = map_fields(&s, &[(0, FieldKind::Member)], member_hex.as_deref());
        } else if has("endpoint", "health") {
            s = map_fields(&s, &[(2, FieldKind::Mask("<TOOK>"))], None);
        }
        s
    }

    fn normalize_out(&self, args: &[&str], out: &Out) -> Out {
        Out { code: out.code, stdout: self.normalize(args, &out.stdout), stderr: self.normalize(args, &out.stderr) }
    }
}

/// A background etcdctl (a `watch`); killed by PID when finished or dropped.
struct Background {
    child: Option<Child>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Background {
    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Waits (bounded) until stdout has `lines` lines or the process exits, then gives it
    /// `grace` to print anything extra, stops it and returns what it printed.
    fn finish(mut self, lines: usize, grace: Duration, timeout: Duration) -> Out {
        let deadline = Instant::now() + timeout;
        let mut code = None;
        loop {
            let child = self.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                code = Some(status.code().unwrap_or(-1));
                break;
            }
            if self.stdout().lines().count() >= lines || Instant::now() > deadline {
                std::thread::sleep(grace);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut child = self.child.take().expect("running");
        let code = match code {
            Some(c) => c,
            None => match child.try_wait() {
                Ok(Some(status)) => status.code().unwrap_or(-1),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // Still running when stopped: the normal end of a watch.
                    -9
                }
            },
        };
        Out { code, stdout: self.stdout(), stderr: std::fs::read_to_string(&self.stderr_path).unwrap_or_default() }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh real etcd and a fresh `keel store`, driven by identical etcdctl commands.
struct Pair {
    etcd: Side,
    keel: Side,
    mismatches: Vec<String>,
    commands: usize,
}

impl Pair {
    fn new() -> Pair {
        require_program("etcd");
        require_program("etcdctl");
        // The Keel side is `keel store` unless KEEL_TEST_TARGET=etcd asks for an etcd-vs-etcd
        // run (to check the normalization itself).
        let other = if Target::from_env() == Target::Etcd { Target::Etcd } else { Target::Keel };
        let (etcd, keel) = std::thread::scope(|s| {
            let e = s.spawn(|| Side::start("etcd", Target::Etcd));
            let k = s.spawn(move || Side::start("keel", other));
            (e.join().expect("start etcd"), k.join().expect("start keel"))
        });
        Pair { etcd, keel, mismatches: Vec::new(), commands: 0 }
    }

    /// Runs `args` against both; records a mismatch if the normalized outputs differ.
    /// Returns etcd's normalized output (the reference) for concrete expectations.
    fn ctl(&mut self, args: &[&str]) -> Out {
        self.ctl_stdin(args, None)
    }

    fn ctl_stdin(&mut self, args: &[&str], stdin: Option<&str>) -> Out {
        let e = self.etcd.run(args, stdin);
        let k = self.keel.run(args, stdin);
        self.compare(args, stdin, &e, &k)
    }

    fn compare(&mut self, args: &[&str], stdin: Option<&str>, e: &Out, k: &Out) -> Out {
        self.commands += 1;
        let en = self.etcd.normalize_out(args, e);
        let kn = self.keel.normalize_out(args, k);
        if en != kn {
            let mut msg = format!("MISMATCH for `etcdctl {}`", args.join(" "));
            if let Some(input) = stdin {
                msg += &format!(" with stdin {input:?}");
            }
            msg += "\n";
            if en.code != kn.code {
                msg += &format!("  exit code: etcd {} / keel {}\n", en.code, kn.code);
            }
            if en.stdout != kn.stdout {
                msg += &format!("  stdout (- etcd, + keel):\n{}", diff(&en.stdout, &kn.stdout));
            }
            if en.stderr != kn.stderr {
                msg += &format!("  stderr (- etcd, + keel):\n{}", diff(&en.stderr, &kn.stderr));
            }
            eprintln!("{msg}");
            self.mismatches.push(msg);
        }
        en
    }

    /// `lease grant TTL` on both sides; remembers the granted IDs as `{LEASEn}`/`<LEASEn>`.
    fn grant(&mut self, ttl: u32, json: bool) -> Out {
        let ttl = ttl.to_string();
        let mut args = vec!["lease", "grant", ttl.as_str()];
        if json {
            args.extend(["-w", "json"]);
        }
        let e = self.etcd.run(&args, None);
        let k = self.keel.run(&args, None);
        for (side, out) in [(&mut self.etcd, &e), (&mut self.keel, &k)] {
            let id = parse_granted_lease(&out.stdout, json)
                .unwrap_or_else(|| panic!("{}: cannot parse lease grant output {out:?}", side.label));
            side.leases.push(id);
        }
        self.compare(&args, None, &e, &k)
    }

    /// Starts a background `etcdctl watch ...` on both sides.
    fn spawn_watch(&mut self, args: &[&str]) -> (Background, Background) {
        let tag = format!("watch{}", self.commands);
        self.commands += 1;
        (self.etcd.spawn(args, &tag), self.keel.spawn(args, &tag))
    }

    /// Waits for both watches to print `lines` lines (bounded), stops them, compares.
    fn finish_watch(&mut self, args: &[&str], watches: (Background, Background), lines: usize) -> Out {
        let grace = Duration::from_millis(300);
        let timeout = Duration::from_secs(10);
        let (e, k) = watches;
        let e = e.finish(lines, grace, timeout);
        let k = k.finish(lines, grace, timeout);
        self.compare(args, None, &e, &k)
    }

    /// Runs a command that ends by itself (bounded by 15 s) on both sides and compares.
    fn ctl_bounded(&mut self, args: &[&str]) -> Out {
        let (e, k) = self.spawn_watch(args);
        self.finish_watch_exit(args, e, k)
    }

    fn finish_watch_exit(&mut self, args: &[&str], e: Background, k: Background) -> Out {
        let timeout = Duration::from_secs(15);
        let e = e.finish(usize::MAX, Duration::ZERO, timeout);
        let k = k.finish(usize::MAX, Duration::ZERO, timeout);
        self.compare(args, None, &e, &k)
    }

    /// Fails the test if any command's output differed, listing every difference.
    fn finish(mut self) {
        let mismatches = std::mem::take(&mut self.mismatches);
        assert!(
            mismatches.is_empty(),
            "{} of {} etcdctl commands printed something different against keel than against etcd:\n\n{}",
            mismatches.len(),
            self.commands,
            mismatches.join("\n")
        );
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if !std::thread::panicking() && !self.mismatches.is_empty() {
            panic!("unreported mismatches (call Pair::finish):\n{}", self.mismatches.join("\n"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Normalization helpers (all text-level, so formatting differences are still caught)
// ---------------------------------------------------------------------------------------------

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// Replaces whole-word occurrences of `from` (not inside a longer alphanumeric run).
fn replace_token(s: &str, from: &str, to: &str) -> String {
    if from.is_empty() {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(from) {
        let before = if pos > 0 { rest[..pos].chars().next_back() } else { out.chars().next_back() };
        let before_ok = before.map_or(true, |c| !is_word(c));
        let after = &rest[pos + from.len()..];
        let after_ok = after.chars().next().map_or(true, |c| !is_word(c));
        out.push_str(&rest[..pos]);
        if before_ok && after_ok {
            out.push_str(to);
        } else {
            out.push_str(from);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// `127.0.0.1:NNNN` and `localhost:NNNN` (other than the client endpoint, already replaced)
/// become `<HOST:PORT>`: peer URLs differ between any two servers.
fn mask_host_ports(s: &str) -> String {
    let mut out = s.to_string();
    for host in ["127.0.0.1:", "localhost:"] {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(pos) = rest.find(host) {
            result.push_str(&rest[..pos]);
            let after = &rest[pos + host.len()..];
            let digits = after.chars().take_while(|c| c.is_ascii_digit()).count();
            if digits > 0 {
                result.push_str("<HOST:PORT>");
            } else {
                result.push_str(host);
            }
            rest = &after[digits..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// Finds `"key":VALUE` (JSON) and `"key" : VALUE` (`-w fields`), VALUE a string or a bare word,
/// and replaces VALUE by what `f` returns (given the raw value text, quotes included for
/// strings); `None` keeps it.
fn map_json_field(s: &str, key: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let s = map_field_sep(s, &format!("\"{key}\":"), &f);
    map_field_sep(&s, &format!("\"{key}\" : "), &f)
}

fn map_field_sep(s: &str, pattern: &str, f: &impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(pattern) {
        out.push_str(&rest[..pos + pattern.len()]);
        let after = &rest[pos + pattern.len()..];
        let len = if let Some(body) = after.strip_prefix('"') {
            // A string: up to the closing quote (the values we mask hold no escapes).
            body.find('"').map_or(after.len(), |end| end + 2)
        } else {
            after.find(|c: char| matches!(c, ',' | '}' | ']') || c.is_whitespace()).unwrap_or(after.len())
        };
        let value = &after[..len];
        match f(value) {
            Some(replacement) if len > 0 => out.push_str(&replacement),
            _ => out.push_str(value),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// `remaining(299s)` → `remaining(<ttl>s)` (positive values only).
fn mask_remaining(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let pat = "remaining(";
    while let Some(pos) = rest.find(pat) {
        out.push_str(&rest[..pos + pat.len()]);
        let after = &rest[pos + pat.len()..];
        let digits = after.chars().take_while(|c| c.is_ascii_digit()).count();
        let n: i64 = after[..digits].parse().unwrap_or(0);
        if n > 0 {
            out.push_str("<ttl>");
        } else {
            out.push_str(&after[..digits]);
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// Sorts the `sep`-separated items between every `open` and the next `close`.
fn sort_list(s: &str, open: &str, close: &str, sep: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(open) {
        out.push_str(&rest[..pos + open.len()]);
        let after = &rest[pos + open.len()..];
        let Some(end) = after.find(close) else {
            rest = after;
            break;
        };
        let mut items: Vec<&str> = after[..end].split(sep).collect();
        items.sort_unstable();
        out.push_str(&items.join(sep));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Replaces the word after each `marker` (up to whitespace) by `with`.
fn mask_after(s: &str, marker: &str, with: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(marker) {
        out.push_str(&rest[..pos + marker.len()]);
        let after = &rest[pos + marker.len()..];
        let len = after.find(char::is_whitespace).unwrap_or(after.len());
        out.push_str(with);
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// Table output: column widths depend on the (normalized) cell contents, so borders become `+`
/// and cells are trimmed: `| a | b |` → `|a|b|`.
fn flatten_tables(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if body.starts_with("+-") && body.ends_with('+') {
            out.push('+');
        } else if body.starts_with('|') && body.ends_with('|') && body.len() > 1 {
            let cells: Vec<&str> = body[1..body.len() - 1].split('|').map(str::trim).collect();
            out.push('|');
            out.push_str(&cells.join("|"));
            out.push('|');
        } else {
            out.push_str(body);
        }
        out.push_str(nl);
    }
    out
}

enum FieldKind {
    /// The member ID in hex: `<MEMBER>` if it is this server's.
    Member,
    Mask(&'static str),
}

/// For `endpoint status`, `member list`, `endpoint health` in simple (`a, b, c`) or flattened
/// table (`|a|b|c|`) form: replaces the given field positions on every data row.
fn map_fields(s: &str, fields: &[(usize, FieldKind)], member_hex: Option<&str>) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let (mut cells, sep, table): (Vec<String>, &str, bool) =
            if body.starts_with('|') && body.ends_with('|') && body.len() > 1 {
                (body[1..body.len() - 1].split('|').map(String::from).collect(), "|", true)
            } else if body.contains(", ") && !body.starts_with('{') && !body.starts_with("Error") {
                (body.split(", ").map(String::from).collect(), ", ", false)
            } else {
                (Vec::new(), "", false)
            };
        let header = cells.first().map_or(false, |c| c == "ENDPOINT" || c == "ID");
        if cells.is_empty() || header {
            out.push_str(body);
        } else {
            for (index, kind) in fields {
                if let Some(cell) = cells.get_mut(*index) {
                    match kind {
                        FieldKind::Member => {
                            if Some(cell.as_str()) == member_hex {
                                *cell = "<MEMBER>".to_string();
                            }
                        }
                        FieldKind::Mask(m) => *cell = m.to_string(),
                    }
                }
            }
            let joined = cells.join(sep);
            if table {
                out.push('|');
                out.push_str(&joined);
                out.push('|');
            } else {
                out.push_str(&joined);
            }
        }
        out.push_str(nl);
    }
    out
}

/// The lease ID from `lease grant` output (`lease 694d... granted with TTL(10s)` or JSON).
fn parse_granted_lease(stdout: &str, json: bool) -> Option<i64> {
    if json {
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).ok()?;
        v["ID"].as_i64()
    } else {
        let hex = stdout.strip_prefix("lease ")?.split_whitespace().next()?;
        i64::from_str_radix(hex, 16).ok()
    }
}

/// A line diff (longest common subsequence): ` ` common, `-` etcd only, `+` keel only.
fn diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.split('\n').collect();
    let b: Vec<&str> = b.split('\n').collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out += &format!("      {}\n", a[i]);
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("    - {}\n", a[i]);
            i += 1;
        } else {
            out += &format!("    + {}\n", b[j]);
            j += 1;
        }
    }
    out
}

/// Header revision of a `-w json` output (etcd's side, normalized).
fn json_revision(out: &Out) -> i64 {
    // The first `"revision":N` is the header's (IDs are already placeholders, so not JSON).
    let pat = "\"revision\":";
    let at = out.stdout.find(pat).unwrap_or_else(|| panic!("no revision in {out:?}")) + pat.len();
    let digits: String = out.stdout[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().unwrap_or_else(|_| panic!("bad revision in {out:?}"))
}

fn assert_ok(out: &Out, stdout: &str) {
    assert_eq!(out.code, 0, "etcd side failed: {out:?}");
    assert_eq!(out.stdout, stdout, "etcd side printed something unexpected: {out:?}");
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[test]
fn put_and_get() {
    let mut p = Pair::new();
    assert_ok(&p.ctl(&["put", "foo", "bar"]), "OK\n");
    assert_ok(&p.ctl(&["put", "foo", "bar2"]), "OK\n");
    assert_ok(&p.ctl(&["put", "foo2", "x"]), "OK\n");
    assert_ok(&p.ctl(&["put", "fo", "short"]), "OK\n");
    assert_ok(&p.ctl(&["put", "g", "other"]), "OK\n");
    p.ctl(&["put", "empty", ""]);
    assert_ok(&p.ctl(&["get", "foo"]), "foo\nbar2\n");
    let json = p.ctl(&["get", "foo", "-w", "json"]);
    assert_eq!(json_revision(&json), 7);
    assert!(json.stdout.contains(r#""create_revision":2,"mod_revision":3,"version":2,"value":"YmFyMg==""#), "{json:?}");
    assert_ok(&p.ctl(&["get", "foo", "--print-value-only"]), "bar2\n");
    assert_ok(&p.ctl(&["get", "--prefix", "foo"]), "foo\nbar2\nfoo2\nx\n");
    assert_ok(&p.ctl(&["get", "--prefix", "fo", "--keys-only"]), "fo\n\nfoo\n\nfoo2\n\n");
    p.ctl(&["get", "--prefix", "fo", "--print-value-only"]);
    p.ctl(&["get", "--prefix", "fo", "-w", "json"]);
    p.ctl(&["get", "--prefix", "fo", "--keys-only", "-w", "json"]);
    assert_ok(&p.ctl(&["get", "foo", "--rev=2"]), "foo\nbar\n");
    p.ctl(&["get", "foo", "--rev=3", "-w", "json"]);
    p.ctl(&["get", "--prefix", "", "--rev=4"]);
    p.ctl(&["get", "foo", "--rev=1"]);
    p.ctl(&["get", "foo", "--rev=1", "-w", "json"]);
    p.ctl(&["get", "empty"]);
    p.ctl(&["get", "empty", "-w", "json"]);
    assert_ok(&p.ctl(&["get", "missing"]), "");
    p.ctl(&["get", "missing", "-w", "json"]);
    let limited = p.ctl(&["get", "--prefix", "f", "--limit", "2", "-w", "json"]);
    assert!(limited.stdout.contains(r#""more":true,"count":3"#), "{limited:?}");
    p.ctl(&["get", "--prefix", "f", "--limit", "2"]);
    p.ctl(&["get", "--prefix", "f", "--limit", "3", "-w", "json"]);
    p.ctl(&["get", "foo", "zzz"]);
    p.ctl(&["get", "fo", "--from-key", "--keys-only"]);
    p.ctl(&["get", "", "--from-key", "--limit=1", "-w", "json"]);
    p.ctl(&["get", "--prefix", "", "-w", "fields"]);
    // A future revision is an error with etcd's text.
    let future = p.ctl(&["get", "foo", "--rev=100"]);
    assert_ne!(future.code, 0);
    assert!(future.stderr.contains("Error: etcdserver: mvcc: required revision is a future revision"), "{future:?}");
    p.finish();
}

#[test]
fn get_sorted() {
    let mut p = Pair::new();
    // Versions and create/mod revisions chosen so that every sort target gives another order,
    // with ties (VERSION) to pin down the tie order too.
    for (k, v) in
        [("s/b", "3"), ("s/a", "9"), ("s/d", "1"), ("s/c", "5"), ("s/a", "2"), ("s/e", "7"), ("s/d", "8"), ("s/d", "4")]
    {
        assert_ok(&p.ctl(&["put", k, v]), "OK\n");
    }
    for target in ["MODIFY", "CREATE", "VERSION", "VALUE", "KEY"] {
        for order in ["ASCEND", "DESCEND"] {
            let sort = format!("--sort-by={target}");
            let order = format!("--order={order}");
            p.ctl(&["get", "--prefix", "s/", &sort, &order]);
            p.ctl(&["get", "--prefix", "s/", &sort, &order, "--limit=2", "-w", "json"]);
            p.ctl(&["get", "--prefix", "s/", &sort, &order, "--keys-only", "--limit=3"]);
        }
    }
    p.ctl(&["get", "--prefix", "s/", "--order=DESCEND"]);
    p.ctl(&["get", "--prefix", "s/", "--sort-by=MODIFY"]);
    p.ctl(&["get", "--prefix", "s/", "--sort-by=VALUE", "--order=DESCEND", "--rev=5"]);
    assert_ok(
        &p.ctl(&["get", "--prefix", "s/", "--sort-by=KEY", "--order=DESCEND", "--keys-only"]),
        "s/e\n\ns/d\n\ns/c\n\ns/b\n\ns/a\n\n",
    );
    assert_ok(
        &p.ctl(&["get", "--prefix", "s/", "--sort-by=MODIFY", "--order=DESCEND", "--print-value-only", "--limit=2"]),
        "4\n7\n",
    );
    assert_ok(
        &p.ctl(&["get", "--prefix", "s/", "--sort-by=VERSION", "--order=ASCEND", "--keys-only"]),
        "s/b\n\ns/c\n\ns/e\n\ns/a\n\ns/d\n\n",
    );
    let bad = p.ctl(&["get", "--prefix", "s/", "--sort-by=NOPE"]);
    assert_ne!(bad.code, 0);
    p.finish();
}

#[test]
fn delete() {
    let mut p = Pair::new();
    for (k, v) in [("a", "1"), ("b", "2"), ("b/1", "3"), ("b/2", "4"), ("c", "5")] {
        assert_ok(&p.ctl(&["put", k, v]), "OK\n");
    }
    assert_ok(&p.ctl(&["del", "a"]), "1\n");
    assert_ok(&p.ctl(&["del", "a"]), "0\n");
    assert_ok(&p.ctl(&["del", "nothere"]), "0\n");
    // Deleting nothing does not create a revision.
    assert_eq!(json_revision(&p.ctl(&["get", "c", "-w", "json"])), 7);
    assert_ok(&p.ctl(&["del", "--prev-kv", "c"]), "1\nc\n5\n");
    p.ctl(&["del", "--prev-kv", "c"]);
    p.ctl(&["del", "--prev-kv", "-w", "json", "nothere"]);
    assert_ok(&p.ctl(&["del", "--prefix", "b/"]), "2\n");
    p.ctl(&["get", "--prefix", "", "-w", "json"]);
    assert_ok(&p.ctl(&["put", "b/3", "x"]), "OK\n");
    p.ctl(&["put", "b/4", "y"]);
    p.ctl(&["del", "--prefix", "--prev-kv", "-w", "json", "b"]);
    p.ctl(&["del", "--prefix", "--prev-kv", "b"]);
    p.ctl(&["put", "r/1", "1"]);
    p.ctl(&["put", "r/5", "5"]);
    p.ctl(&["put", "r/9", "9"]);
    p.ctl(&["del", "r/1", "r/9", "--prev-kv"]);
    p.ctl(&["del", "r/", "--from-key", "-w", "json"]);
    let all = p.ctl(&["get", "--prefix", "", "-w", "json"]);
    assert!(all.stdout.starts_with("{\"header\":"), "{all:?}");
    assert_eq!(json_revision(&all), 17);
    p.ctl(&["get", "b", "--rev=8"]);
    p.finish();
}

#[test]
fn txn() {
    let mut p = Pair::new();
    assert_ok(&p.ctl(&["put", "t1", "v1"]), "OK\n");
    assert_ok(&p.ctl(&["put", "t2", "v2"]), "OK\n");
    // Success branch: value and version compares.
    let out = p.ctl_stdin(
        &["txn", "-i"],
        Some("value(\"t1\") = \"v1\"\nversion(\"t2\") = \"1\"\n\nput t1 new\nget t2\n\nput t1 bad\n\n"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.ends_with("SUCCESS\n\nOK\n\nt2\nv2\n"), "{out:?}");
    // Failure branch: create revision compare.
    let out = p.ctl_stdin(&["txn", "-i"], Some("create(\"t1\") > \"100\"\n\nput x y\n\nget t1\ndel t2\n\n"));
    assert!(out.stdout.ends_with("FAILURE\n\nt1\nnew\n\n1\n"), "{out:?}");
    // A value compare on a missing key is false; JSON output.
    p.ctl_stdin(
        &["txn", "-i", "-w", "json"],
        Some("mod(\"t1\") < \"100\"\nvalue(\"t2\") != \"zz\"\n\nput x y\nget t1 --prefix\n\ndel t2\nget t2\n\n"),
    );
    // All four targets, success, JSON.
    let out = p.ctl_stdin(
        &["txn", "-i", "-w", "json"],
        Some("value(\"t1\") = \"new\"\nversion(\"t1\") = \"2\"\ncreate(\"t1\") = \"2\"\nmod(\"t1\") = \"4\"\n\nput t1 newer\nget t1\ndel nothere\nput t3 v3 --prev-kv\n\n\n"),
    );
    assert!(out.stdout.contains("\"succeeded\":true"), "{out:?}");
    // Version/create/mod compares on a missing key compare against 0.
    p.ctl_stdin(&["txn", "-i"], Some("version(\"missing\") = \"0\"\ncreate(\"missing\") < \"1\"\nmod(\"missing\") = \"0\"\n\nput m 1\n\nput m 2\n\n"));
    p.ctl_stdin(
        &["txn", "-i"],
        Some("version(\"t1\") > \"2\"\nmod(\"t2\") != \"3\"\n\nget --prefix t\n\nget t1 --print-value-only\n\n"),
    );
    // Deletes with prev-kv and prefix inside a txn; no compares at all.
    p.ctl_stdin(&["txn", "-i", "-w", "json"], Some("\ndel t --prefix --prev-kv\nget --prefix \"\"\n\n\n"));
    // Nothing to do on either branch.
    p.ctl_stdin(&["txn", "-i"], Some("value(\"nope\") = \"x\"\n\n\n\n"));
    p.ctl_stdin(&["txn", "-i", "-w", "json"], Some("value(\"nope\") = \"x\"\n\n\n\n"));
    // Same key twice in one txn is rejected by the server.
    let dup = p.ctl_stdin(&["txn", "-i"], Some("\nput d 1\nput d 2\n\n\n"));
    assert_ne!(dup.code, 0, "{dup:?}");
    let last = p.ctl(&["get", "--prefix", "", "-w", "json"]);
    assert_eq!(json_revision(&last), 8);
    p.finish();
}

#[test]
fn watch_live_prefix_prev_kv() {
    let mut p = Pair::new();
    p.ctl(&["put", "w/old", "before"]);
    let args = ["watch", "--prefix", "w/", "--prev-kv"];
    let watches = p.spawn_watch(&args);
    // Let both watches register before writing (etcdctl connects in milliseconds).
    std::thread::sleep(Duration::from_millis(1500));
    p.ctl(&["put", "w/1", "a"]);
    p.ctl(&["put", "w/1", "b"]);
    p.ctl(&["put", "other", "not watched"]);
    p.ctl(&["del", "w/1"]);
    p.ctl(&["put", "w/old", "after"]);
    p.ctl(&["del", "--prefix", "w/"]);
    p.ctl_stdin(&["txn", "-i"], Some("\nput w/t1 x\nput w/t2 y\n\n\n"));
    // 8 events: 3 lines each without a previous value, 5 with one.
    let expected = "PUT\nw/1\na\n\
                    PUT\nw/1\na\nw/1\nb\n\
                    DELETE\nw/1\nb\nw/1\n\n\
                    PUT\nw/old\nbefore\nw/old\nafter\n\
                    DELETE\nw/old\nafter\nw/old\n\n\
                    PUT\nw/t1\nx\n\
                    PUT\nw/t2\ny\n";
    let out = p.finish_watch(&args, watches, expected.lines().count());
    assert_eq!(out.stdout, expected, "{out:?}");
    // Same in JSON: one line per response, so this pins down how events are batched.
    let args = ["watch", "--prefix", "w/", "-w", "json", "--prev-kv"];
    let watches = p.spawn_watch(&args);
    std::thread::sleep(Duration::from_millis(1500));
    p.ctl(&["put", "w/2", "a"]);
    p.ctl(&["put", "w/2", "b"]);
    p.ctl(&["del", "w/2"]);
    p.ctl_stdin(&["txn", "-i"], Some("\nput w/t3 x\ndel w/t1\n\n\n"));
    let out = p.finish_watch(&args, watches, 4);
    assert_eq!(out.stdout.lines().count(), 4, "{out:?}");
    p.finish();
}

#[test]
fn watch_from_revision() {
    let mut p = Pair::new();
    p.ctl(&["put", "k/1", "a"]); // rev 2
    p.ctl(&["put", "k/2", "b"]); // rev 3
    p.ctl(&["put", "k/1", "c"]); // rev 4
    p.ctl(&["put", "zz", "x"]); // rev 5
    p.ctl(&["del", "k/2"]); // rev 6
    p.ctl(&["put", "k/3", "d"]); // rev 7
    // History replay: timing-independent.
    let args = ["watch", "--prefix", "k/", "--rev=3"];
    let w = p.spawn_watch(&args);
    let out = p.finish_watch(&args, w, 12);
    assert_eq!(out.stdout, "PUT\nk/2\nb\nPUT\nk/1\nc\nDELETE\nk/2\n\nPUT\nk/3\nd\n", "{out:?}");
    let args = ["watch", "--prefix", "k/", "--rev=2", "--prev-kv"];
    let w = p.spawn_watch(&args);
    p.finish_watch(&args, w, 17);
    let args = ["watch", "k/1", "--rev=1"];
    let w = p.spawn_watch(&args);
    p.finish_watch(&args, w, 6);
    // JSON: a replay is one response (one line) on etcd.
    let args = ["watch", "--prefix", "k/", "--rev=2", "-w", "json"];
    let w = p.spawn_watch(&args);
    let out = p.finish_watch(&args, w, 1);
    assert!(out.stdout.starts_with("{\"Header\":"), "{out:?}");
    // Replay, then live events on the same watch.
    let args = ["watch", "--prefix", "k/", "--rev=6", "--prev-kv"];
    let w = p.spawn_watch(&args);
    std::thread::sleep(Duration::from_millis(1000));
    p.ctl(&["put", "k/3", "e"]);
    p.ctl(&["put", "k/4", "f"]);
    p.finish_watch(&args, w, 3 + 3 + 5 + 3);
    // Range watch [k/1, k/3).
    let args = ["watch", "k/1", "k/3", "--rev=2"];
    let w = p.spawn_watch(&args);
    p.finish_watch(&args, w, 12);
    p.finish();
}

#[test]
fn watch_compacted_revision() {
    let mut p = Pair::new();
    for v in ["1", "2", "3", "4", "5"] {
        p.ctl(&["put", "c", v]);
    }
    assert_ok(&p.ctl(&["compact", "4"]), "compacted revision 4\n");
    // Watching from before the compaction: the server cancels, etcdctl exits by itself.
    let out = p.ctl_bounded(&["watch", "c", "--rev=2"]);
    assert_eq!(out.code, 5, "{out:?}");
    assert_eq!(
        out.stderr,
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)\nError: watch is canceled by the server\n"
    );
    p.ctl_bounded(&["watch", "--prefix", "", "--rev=3", "-w", "json"]);
    // From the compaction revision itself: allowed.
    let args = ["watch", "c", "--rev=4"];
    let w = p.spawn_watch(&args);
    let out = p.finish_watch(&args, w, 9);
    assert_eq!(out.stdout, "PUT\nc\n3\nPUT\nc\n4\nPUT\nc\n5\n", "{out:?}");
    p.finish();
}

#[test]
fn lease_lifecycle() {
    let mut p = Pair::new();
    // Granted out of TTL order: `lease list` is ordered by expiry on etcd.
    let g = p.grant(300, false);
    assert!(g.stdout.starts_with("lease <LEASE1> granted with TTL(300s)"), "{g:?}");
    p.grant(100, false);
    p.grant(200, true);
    assert_ok(&p.ctl(&["put", "--lease={LEASE1}", "lk1", "v1"]), "OK\n");
    assert_ok(&p.ctl(&["put", "--lease={LEASE1}", "lk2", "v2"]), "OK\n");
    p.ctl(&["put", "--lease={LEASE2}", "lk3", "v3"]);
    p.ctl(&["put", "plain", "p"]);
    let got = p.ctl(&["get", "lk1", "-w", "json"]);
    assert!(got.stdout.contains("\"lease\":<LEASE1>"), "{got:?}");
    p.ctl(&["get", "--prefix", "", "-w", "json"]);
    p.ctl(&["get", "lk3", "-w", "fields"]);
    let ttl = p.ctl(&["lease", "timetolive", "{LEASE1}"]);
    assert_ok(&ttl, "lease <LEASE1> granted with TTL(300s), remaining(<ttl>s)\n");
    assert_ok(
        &p.ctl(&["lease", "timetolive", "{LEASE1}", "--keys"]),
        "lease <LEASE1> granted with TTL(300s), remaining(<ttl>s), attached keys([lk1 lk2])\n",
    );
    p.ctl(&["lease", "timetolive", "{LEASE1}", "--keys", "-w", "json"]);
    p.ctl(&["lease", "timetolive", "{LEASE3}", "--keys"]);
    p.ctl(&["lease", "timetolive", "{LEASE3}", "-w", "json"]);
    assert_ok(&p.ctl(&["lease", "keep-alive", "--once", "{LEASE2}"]), "lease <LEASE2> keepalived with TTL(100)\n");
    p.ctl(&["lease", "keep-alive", "--once", "{LEASE1}", "-w", "json"]);
    assert_ok(&p.ctl(&["lease", "list"]), "found 3 leases\n<LEASE2>\n<LEASE3>\n<LEASE1>\n");
    p.ctl(&["lease", "list", "-w", "json"]);
    // Re-attaching a key to another lease.
    p.ctl(&["put", "--lease={LEASE3}", "lk2", "v2b"]);
    p.ctl(&["lease", "timetolive", "{LEASE1}", "--keys"]);
    p.ctl(&["lease", "timetolive", "{LEASE3}", "--keys"]);
    // Revoking deletes the attached keys (one revision for all of them).
    assert_ok(&p.ctl(&["lease", "revoke", "{LEASE1}"]), "lease <LEASE1> revoked\n");
    p.ctl(&["get", "--prefix", "", "-w", "json"]);
    p.ctl(&["get", "lk1", "--rev=7"]);
    // Revoked/unknown leases: etcd's error texts and exit codes.
    p.ctl(&["lease", "revoke", "{LEASE1}"]);
    assert_ok(&p.ctl(&["lease", "timetolive", "{LEASE1}"]), "lease <LEASE1> already expired\n");
    p.ctl(&["lease", "timetolive", "{LEASE1}", "--keys", "-w", "json"]);
    let ka = p.ctl(&["lease", "keep-alive", "--once", "{LEASE1}"]);
    assert_ne!(ka.code, 0, "{ka:?}");
    p.ctl(&["lease", "keep-alive", "--once", "{LEASE1}", "-w", "json"]);
    let put = p.ctl(&["put", "--lease={LEASE1}", "x", "y"]);
    assert!(put.stderr.contains("Error: etcdserver: requested lease not found"), "{put:?}");
    p.ctl(&["put", "--lease=1234", "x", "y"]);
    p.ctl(&["lease", "timetolive", "1234"]);
    p.ctl(&["lease", "revoke", "1234"]);
    p.ctl(&["lease", "list"]);
    p.ctl(&["lease", "revoke", "{LEASE2}"]);
    p.ctl(&["lease", "revoke", "{LEASE3}"]);
    assert_ok(&p.ctl(&["lease", "list"]), "found 0 leases\n");
    p.ctl(&["lease", "list", "-w", "json"]);
    let all = p.ctl(&["get", "--prefix", "", "-w", "json"]);
    assert_eq!(json_revision(&all), 9);
    p.finish();
}

#[test]
fn endpoint_status_and_health() {
    let mut p = Pair::new();
    p.ctl(&["endpoint", "status"]);
    p.ctl(&["put", "a", "1"]);
    p.ctl(&["put", "b", "2"]);
    let status = p.ctl(&["endpoint", "status"]);
    assert_eq!(
        status.stdout,
        "<CLIENT>, <MEMBER>, <VERSION>, <DB SIZE>, true, false, <RAFT TERM>, <RAFT INDEX>, <APPLIED INDEX>, \n"
    );
    p.ctl(&["endpoint", "status", "-w", "table"]);
    let json = p.ctl(&["endpoint", "status", "-w", "json"]);
    assert!(json.stdout.contains("\"revision\":3,"), "{json:?}");
    p.ctl(&["endpoint", "status", "-w", "fields"]);
    let health = p.ctl(&["endpoint", "health"]);
    assert_eq!(health.code, 0, "{health:?}");
    assert_eq!(health.stderr, "<CLIENT> is healthy: successfully committed proposal: took = <TOOK>\n");
    p.ctl(&["endpoint", "health", "-w", "json"]);
    p.ctl(&["endpoint", "health", "-w", "table"]);
    p.ctl(&["endpoint", "health", "-w", "fields"]);
    p.finish();
}

#[test]
fn member_list() {
    let mut p = Pair::new();
    let simple = p.ctl(&["member", "list"]);
    assert_eq!(simple.stdout, "<MEMBER>, started, default, http://<HOST:PORT>, http://<CLIENT>, false\n", "{simple:?}");
    p.ctl(&["member", "list", "-w", "table"]);
    let json = p.ctl(&["member", "list", "-w", "json"]);
    assert!(json.stdout.contains("\"members\":[{\"ID\":<MEMBER>,\"name\":\"default\""), "{json:?}");
    p.ctl(&["member", "list", "-w", "fields"]);
    p.finish();
}

#[test]
fn compaction() {
    let mut p = Pair::new();
    for (k, v) in [("a", "1"), ("a", "2"), ("b", "1"), ("a", "3"), ("b", "2"), ("c", "1")] {
        p.ctl(&["put", k, v]);
    }
    p.ctl(&["del", "c"]); // rev 8
    assert_ok(&p.ctl(&["get", "a", "--rev=3"]), "a\n2\n");
    assert_ok(&p.ctl(&["compact", "5"]), "compacted revision 5\n");
    let old = p.ctl(&["get", "a", "--rev=3"]);
    assert_eq!(old.code, 1, "{old:?}");
    assert!(old.stderr.ends_with("Error: etcdserver: mvcc: required revision has been compacted\n"), "{old:?}");
    p.ctl(&["get", "--prefix", "", "--rev=4", "-w", "json"]);
    // At the compaction revision itself, and after it, history is still there.
    assert_ok(&p.ctl(&["get", "a", "--rev=5"]), "a\n3\n");
    p.ctl(&["get", "--prefix", "", "--rev=5", "-w", "json"]);
    p.ctl(&["get", "--prefix", "", "--rev=7"]);
    p.ctl(&["get", "c", "--rev=7"]);
    // Compacting again at or below, or in the future: errors.
    p.ctl(&["compact", "5"]);
    p.ctl(&["compact", "2"]);
    p.ctl(&["compact", "100"]);
    p.ctl(&["get", "a", "--rev=100"]);
    assert_ok(&p.ctl(&["compact", "8", "--physical"]), "compacted revision 8\n");
    p.ctl(&["get", "c", "--rev=7"]);
    let now = p.ctl(&["get", "--prefix", "", "-w", "json"]);
    assert_eq!(json_revision(&now), 8);
    p.ctl(&["put", "d", "1"]);
    p.ctl(&["get", "--prefix", ""]);
    p.ctl(&["compact", "0"]);
    p.finish();
}

#[test]
fn defrag() {
    let mut p = Pair::new();
    p.ctl(&["put", "a", "1"]);
    p.ctl(&["put", "a", "2"]);
    p.ctl(&["compact", "3"]);
    let out = p.ctl(&["defrag"]);
    assert_ok(&out, "Finished defragmenting etcd member[<CLIENT>]\n");
    assert_ok(&p.ctl(&["get", "a"]), "a\n2\n");
    p.ctl(&["get", "a", "-w", "json"]);
    p.ctl(&["endpoint", "status"]);
    p.finish();
}

#[test]
fn snapshot_save() {
    let mut p = Pair::new();
    p.ctl(&["put", "a", "1"]);
    p.ctl(&["put", "b", "2"]);
    let out = p.ctl(&["snapshot", "save", "{TMP}/snap.db"]);
    assert_ok(&out, "Snapshot saved at <TMP>/snap.db\n");
    for side in [&p.etcd, &p.keel] {
        let path = side.tmp().join("snap.db");
        let len = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {}: {e}", side.label, path.display())).len();
        assert!(len > 32, "{}: snapshot of {len} bytes", side.label);
        assert_eq!(len % 512, 32, "{}: snapshot size {len} is not a multiple of 512 plus a 32-byte hash", side.label);
        assert!(!side.tmp().join("snap.db.part").exists(), "{}: leftover .part file", side.label);
    }
    // Unwritable destination: etcdctl's error, before talking to the server.
    p.ctl(&["snapshot", "save", "{TMP}/no/such/dir/snap.db"]);
    // The server keeps serving after a snapshot.
    assert_ok(&p.ctl(&["get", "b"]), "b\n2\n");
    p.finish();
}

// ---------------------------------------------------------------------------------------------
// The normalization itself
// ---------------------------------------------------------------------------------------------

#[test]
fn normalization_helpers() {
    assert_eq!(replace_token("a 0badf00d b x0badf00d", "0badf00d", "<L>"), "a <L> b x0badf00d");
    assert_eq!(mask_host_ports("http://127.0.0.1:2380, 127.0.0.1:x"), "http://<HOST:PORT>, 127.0.0.1:x");
    assert_eq!(
        map_json_field(
            r#"{"ts":"2026-01-01","took":0.5,"revision":3,"version":"3.4.23","v":{"version":2}}"#,
            "version",
            |v| v.starts_with('"').then(|| "<v>".into())
        ),
        r#"{"ts":"2026-01-01","took":0.5,"revision":3,"version":<v>,"v":{"version":2}}"#
    );
    assert_eq!(map_json_field(r#"{"ttl":-1}"#, "ttl", |_| Some("X".into())), r#"{"ttl":X}"#);
    assert_eq!(mask_remaining("remaining(299s), remaining(0s)"), "remaining(<ttl>s), remaining(0s)");
    assert_eq!(mask_after("took = 1.2ms\n", "took = ", "<T>"), "took = <T>\n");
    assert_eq!(flatten_tables("+--+--+\n| a |  b |\n"), "+\n|a|b|\n");
    assert_eq!(
        map_fields("h, 1f, x\n|ID|1f|\n|1f|y|\n", &[(0, FieldKind::Member), (1, FieldKind::Mask("M"))], Some("1f")),
        "h, M, x\n|ID|1f|\n|<MEMBER>|M|\n"
    );
    assert_eq!(sort_list("x keys([b a c]) y", "keys([", "])", " "), "x keys([a b c]) y");
    assert!(diff("a\nb\n", "a\nc\n").contains("    - b\n    + c\n"));
}
