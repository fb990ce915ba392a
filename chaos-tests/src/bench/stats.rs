//! Latency samples, percentiles, and the result table.
//!
//! Owns the numbers side of `keel bench`: collecting per-operation latencies,
//! turning them into p50/p99/max, and rendering one aligned markdown table row
//! per test. Samples are kept in a plain `Vec<Duration>`, sorted once when a test
//! ends: memory is bounded by the op count of one test (at most `--total` ops, or
//! `--watchers` × `--watch-puts` events), which is a few MB at the defaults.

use std::time::Duration;

/// Largest number of samples (or revisions) reserved up front.
pub const MAX_PREALLOC: usize = 1 << 20;

/// Latency samples of one test (or of one worker, merged at the end).
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples: Vec<Duration>,
}

impl Latencies {
    /// An empty set with room for `n` samples (at most [`MAX_PREALLOC`]: a huge
    /// `--total` that the time limit cuts short must not allocate up front).
    pub fn with_capacity(n: usize) -> Self {
        Self { samples: Vec::with_capacity(n.min(MAX_PREALLOC)) }
    }

    /// Records one sample.
    pub fn record(&mut self, d: Duration) {
        self.samples.push(d);
    }

    /// Moves all samples of `other` into `self`.
    pub fn merge(&mut self, mut other: Latencies) {
        self.samples.append(&mut other.samples);
    }

    /// Number of samples recorded.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Sorts the samples and reduces them to a summary.
    pub fn summary(mut self) -> Summary {
        self.samples.sort_unstable();
        let s = &self.samples;
        Summary { count: s.len(), p50: percentile(s, 50.0), p99: percentile(s, 99.0), max: s.last().copied() }
    }
}

/// What the table shows of a latency distribution. `None` when there were no samples.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub max: Option<Duration>,
}

/// Nearest-rank percentile of an ascending-sorted slice: the smallest sample such
/// that at least `p` percent of all samples are less than or equal to it.
///
/// `p` is clamped to 0..=100 and resolved to hundredths of a percent, so the rank
/// is computed in integers (no `0.99 * 100 = 98.99999` surprises). Returns `None`
/// for an empty slice.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let basis_points = (p.clamp(0.0, 100.0) * 100.0).round() as u128;
    let n = sorted.len() as u128;
    // rank = ceil(p/100 * n), 1-based; p = 0 means the smallest sample.
    let rank = (basis_points * n).div_ceil(10_000).max(1);
    let index = usize::try_from(rank - 1).unwrap_or(usize::MAX).min(sorted.len() - 1);
    Some(sorted[index])
}

/// One line of the result table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Test name, e.g. `put`.
    pub test: String,
    /// Successful operations (for the watch test: events delivered).
    pub ops: u64,
    /// Failed operations (errors and timeouts).
    pub errors: u64,
    /// Events expected but never delivered; `None` where it does not apply.
    pub lost: Option<u64>,
    /// Wall time of the measured phase.
    pub elapsed: Duration,
    /// Latency distribution of the successful operations.
    pub latency: Summary,
    /// Free text printed under the table (parameters, stop reasons).
    pub note: Option<String>,
}

impl Row {
    /// Successful operations per second of wall time.
    pub fn ops_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.ops as f64 / secs } else { 0.0 }
    }
}

fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.2}", d.as_secs_f64() * 1000.0),
        None => "-".to_string(),
    }
}

const HEADERS: [&str; 9] = ["test", "ops", "errors", "lost", "secs", "ops/s", "p50 ms", "p99 ms", "max ms"];

fn cells(row: &Row) -> [String; 9] {
    [
        row.test.clone(),
        row.ops.to_string(),
        row.errors.to_string(),
        row.lost.map_or_else(|| "-".to_string(), |l| l.to_string()),
        format!("{:.2}", row.elapsed.as_secs_f64()),
        format!("{:.0}", row.ops_per_sec()),
        ms(row.latency.p50),
        ms(row.latency.p99),
        ms(row.latency.max),
    ]
}

/// Renders rows as a markdown table with padded, aligned columns (text left,
/// numbers right), followed by one `- test: note` line per row that has a note.
pub fn render_table(rows: &[Row]) -> String {
    let body: Vec<Vec<String>> = rows.iter().map(|r| cells(r).to_vec()).collect();
    let mut out = render_grid(&HEADERS, &body);
    let notes: Vec<String> =
        rows.iter().filter_map(|r| r.note.as_ref().map(|n| format!("- {}: {n}", r.test))).collect();
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

/// Renders any grid as an aligned markdown table: the first column left-aligned, the
/// others right-aligned. A row with fewer cells than `headers` is padded with blanks;
/// extra cells are ignored.
pub fn render_grid(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |row: &[String], i: usize| row.get(i).map_or("", String::as_str).to_string();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len().max(1)).collect();
    for r in rows {
        for (i, w) in widths.iter_mut().enumerate() {
            *w = (*w).max(cell(r, i).len());
        }
    }
    let line = |cols: &[String]| {
        let mut s = String::from("|");
        for (i, w) in widths.iter().enumerate() {
            let c = cell(cols, i);
            if i == 0 {
                s.push_str(&format!(" {c:<w$} |"));
            } else {
                s.push_str(&format!(" {c:>w$} |"));
            }
        }
        s
    };
    let mut out = String::new();
    out.push_str(&line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>()));
    out.push('\n');
    let mut sep = String::from("|");
    for (i, w) in widths.iter().enumerate() {
        // `:` marks right alignment for markdown renderers; keeps the width.
        if i == 0 {
            sep.push_str(&format!(" {} |", "-".repeat(*w)));
        } else {
            sep.push_str(&format!(" {}: |", "-".repeat(w - 1)));
        }
    }
    out.push_str(&sep);
    out.push('\n');
    for r in rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentiles_of_one_to_hundred() {
        let s = millis(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&s, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&s, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&s, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&s, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&s, 99.9), Some(Duration::from_millis(100)));
    }

    #[test]
    fn percentiles_of_small_and_empty_samples() {
        assert_eq!(percentile(&[], 50.0), None);
        let one = millis(&[7]);
        assert_eq!(percentile(&one, 50.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&one, 99.0), Some(Duration::from_millis(7)));
        // Nearest rank over 10 samples: p50 is the 5th, p99 the 10th.
        let ten = millis(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(percentile(&ten, 50.0), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&ten, 99.0), Some(Duration::from_millis(10)));
        // Out-of-range p is clamped, not a panic.
        assert_eq!(percentile(&ten, 250.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&ten, -3.0), Some(Duration::from_millis(1)));
    }

    #[test]
    fn summary_sorts_unordered_samples() {
        let mut l = Latencies::default();
        for m in [30, 10, 20, 50, 40] {
            l.record(Duration::from_millis(m));
        }
        let mut other = Latencies::with_capacity(1);
        other.record(Duration::from_millis(60));
        l.merge(other);
        assert_eq!(l.len(), 6);
        let s = l.summary();
        assert_eq!(s.count, 6);
        assert_eq!(s.p50, Some(Duration::from_millis(30)));
        assert_eq!(s.p99, Some(Duration::from_millis(60)));
        assert_eq!(s.max, Some(Duration::from_millis(60)));
        assert_eq!(Latencies::default().summary(), Summary::default());
    }

    #[test]
    fn table_is_aligned_and_shows_notes() {
        let mut lat = Latencies::default();
        lat.record(Duration::from_micros(1500));
        let rows = vec![
            Row {
                test: "seq-put".into(),
                ops: 2000,
                errors: 0,
                lost: None,
                elapsed: Duration::from_secs(2),
                latency: lat.summary(),
                note: None,
            },
            Row {
                test: "watch".into(),
                ops: 100_000,
                errors: 1,
                lost: Some(3),
                elapsed: Duration::from_millis(500),
                latency: Summary::default(),
                note: Some("3 events lost".into()),
            },
        ];
        let t = render_table(&rows);
        let table: Vec<&str> = t.lines().take_while(|l| l.starts_with('|')).collect();
        assert_eq!(table.len(), 4, "{t}");
        assert!(table.iter().all(|l| l.len() == table[0].len()), "{t}");
        let col = |line: &str, i: usize| line.split('|').nth(i + 1).unwrap_or("").trim().to_string();
        assert_eq!(col(table[0], 5), "ops/s");
        assert_eq!(col(table[2], 5), "1000", "ops/s of seq-put: {t}");
        assert_eq!(col(table[2], 6), "1.50", "p50 in ms: {t}");
        assert_eq!(col(table[2], 3), "-", "no lost column for kv: {t}");
        assert_eq!(col(table[3], 5), "200000", "ops/s of watch: {t}");
        assert_eq!(col(table[3], 3), "3", "lost column: {t}");
        assert_eq!(col(table[3], 6), "-", "no samples: {t}");
        assert!(t.contains("- watch: 3 events lost"), "{t}");
    }

    #[test]
    fn grid_pads_short_rows_and_aligns() {
        let t = render_grid(&["variant", "n"], &[vec!["list".into(), "10000".into()], vec!["table".into()]]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{t}");
        assert_eq!(lines[2], "| list    | 10000 |");
        assert_eq!(lines[3], "| table   |       |");
    }
}
