//! `array ... --report FILE.html`: a self-contained performance report, like Dask's
//! `performance_report`: the task stream (one lane per worker thread, transfers marked), time
//! per kind of task, memory over time, the expression and the timings. Plain HTML with inline
//! SVG and CSS: no script, nothing fetched, readable offline and in a mail attachment.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::model::Aggregator;
use crate::ids::WorkerId;

/// What the report says about the run besides what the scheduler observed.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub title: String,
    /// The expression (or command) that ran.
    pub expression: String,
    /// (what, seconds), in order.
    pub timings: Vec<(String, f64)>,
    /// Free lines: where it ran, the result's shape, ...
    pub notes: Vec<String>,
}

/// HTML-escapes text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A kind's colour: the same hue for the same name on every page and report (the page's
/// script computes the same hash).
pub fn colour(kind: &str) -> String {
    let mut h: u32 = 2166136261;
    for b in kind.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16777619);
    }
    format!("hsl({},65%,50%)", h % 360)
}

fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

fn bytes(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

const WIDTH: f64 = 1000.0;
const LANE: f64 = 14.0;

pub fn render(agg: &Aggregator, info: &RunInfo) -> String {
    let bars: Vec<_> = agg.all_bars().collect();
    let t0 = bars.iter().map(|b| b.start).fold(f64::INFINITY, f64::min);
    let t1 = bars.iter().map(|b| b.end).fold(f64::NEG_INFINITY, f64::max);
    let (t0, t1) = if t0.is_finite() && t1 > t0 {
        (t0, t1)
    } else {
        (0.0, 1.0)
    };
    let x = |t: f64| (t - t0) / (t1 - t0) * WIDTH;
    // Lanes: every (worker, thread) that ran something, in order.
    let mut rows: BTreeMap<(WorkerId, usize), usize> = BTreeMap::new();
    for b in &bars {
        rows.insert((b.worker, b.lane), 0);
    }
    for (i, r) in rows.values_mut().enumerate() {
        *r = i;
    }
    let height = (rows.len().max(1) as f64) * LANE + 20.0;
    let mut stream = String::new();
    let _ = write!(
        stream,
        "<svg class=\"stream\" viewBox=\"0 0 {WIDTH} {height}\" width=\"100%\" \
         preserveAspectRatio=\"none\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for b in &bars {
        let y = rows[&(b.worker, b.lane)] as f64 * LANE;
        let w = (x(b.end) - x(b.start)).max(0.5);
        let fill = if b.failed {
            "#000".to_string()
        } else {
            colour(&b.kind)
        };
        let _ = write!(
            stream,
            "<rect x=\"{:.2}\" y=\"{y:.1}\" width=\"{w:.2}\" height=\"{:.1}\" fill=\"{fill}\">\
             <title>{} x{} on worker {} thread {}: {}</title></rect>",
            x(b.start),
            LANE - 2.0,
            escape(&b.kind),
            b.tasks,
            b.worker,
            b.lane,
            seconds((b.end - b.start) / 1e3)
        );
    }
    for t in agg.all_transfers() {
        let Some(row) = rows
            .iter()
            .find(|((w, _), _)| *w == t.worker)
            .map(|(_, r)| *r)
        else {
            continue;
        };
        let _ = write!(
            stream,
            "<rect x=\"{:.2}\" y=\"{:.1}\" width=\"1\" height=\"{:.1}\" fill=\"#d00\">\
             <title>transfer of {} to worker {}</title></rect>",
            x(t.at),
            row as f64 * LANE,
            LANE - 2.0,
            bytes(t.nbytes as f64),
            t.worker
        );
    }
    let _ = write!(
        stream,
        "<text x=\"0\" y=\"{}\" font-size=\"11\">0 s</text><text x=\"{WIDTH}\" y=\"{}\" \
         font-size=\"11\" text-anchor=\"end\">{}</text></svg>",
        height - 4.0,
        height - 4.0,
        seconds((t1 - t0) / 1e3)
    );

    let kinds = agg.kinds();
    let most = kinds.values().map(|k| k.total_us).max().unwrap_or(1).max(1) as f64;
    let mut per_kind = String::from(
        "<table><tr><th>kind</th><th>tasks</th><th>total time</th><th>mean</th>\
         <th>output</th><th></th></tr>",
    );
    let mut sorted: Vec<_> = kinds.iter().collect();
    sorted.sort_by_key(|k| std::cmp::Reverse(k.1.total_us));
    for (kind, k) in sorted {
        let _ = write!(
            per_kind,
            "<tr><td><span class=\"sw\" style=\"background:{}\"></span>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td><div class=\"bar\" style=\"width:{:.0}px;\
             background:{}\"></div></td></tr>",
            colour(kind),
            escape(kind),
            k.tasks,
            seconds(k.total_us as f64 / 1e6),
            seconds(k.total_us as f64 / 1e6 / k.tasks.max(1) as f64),
            bytes(k.nbytes as f64),
            k.total_us as f64 / most * 300.0,
            colour(kind)
        );
    }
    per_kind.push_str("</table>");

    let c = agg.counters();
    let mem: Vec<_> = agg.memory_series().collect();
    let mut memory = String::new();
    if mem.len() >= 2 {
        let m0 = mem[0].0;
        let m1 = mem[mem.len() - 1].0.max(m0 + 1.0);
        let top = mem.iter().map(|m| m.2.max(m.1)).max().unwrap_or(1).max(1) as f64;
        let pts: Vec<String> = mem
            .iter()
            .map(|m| {
                format!(
                    "{:.1},{:.1}",
                    (m.0 - m0) / (m1 - m0) * WIDTH,
                    150.0 - m.1 as f64 / top * 140.0
                )
            })
            .collect();
        let _ = write!(
            memory,
            "<svg viewBox=\"0 0 {WIDTH} 160\" width=\"100%\" xmlns=\"http://www.w3.org/2000/svg\">\
             <polyline fill=\"none\" stroke=\"#36c\" stroke-width=\"2\" points=\"{}\"/>\
             <text x=\"4\" y=\"12\" font-size=\"11\">peak {} of {} limit</text></svg>",
            pts.join(" "),
            bytes(mem.iter().map(|m| m.1).max().unwrap_or(0) as f64),
            bytes(top)
        );
    } else {
        memory.push_str("<p>The run was shorter than one memory sample (1 s).</p>");
    }

    let mut timings = String::from("<table>");
    for (what, s) in &info.timings {
        let _ = write!(
            timings,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(what),
            seconds(*s)
        );
    }
    timings.push_str("</table>");
    let notes: String = info
        .notes
        .iter()
        .map(|n| format!("<li>{}</li>", escape(n)))
        .collect();

    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title><style>{css}</style></head><body>\
         <h1>{title}</h1><pre class=\"expr\">{expr}</pre><ul>{notes}</ul>\
         <h2>Timings</h2>{timings}\
         <p>{tasks} tasks finished, {failed} failed; {transfers} transfers moved {moved}.</p>\
         <h2>Task stream</h2><p class=\"hint\">One lane per worker thread; red marks are \
         transfers; hover for details.</p>{stream}\
         <h2>Time per kind of task</h2>{per_kind}\
         <h2>Memory of all workers</h2>{memory}\
         <p class=\"hint\">Written by rdask-jobqueue.</p></body></html>\n",
        title = escape(&info.title),
        css = REPORT_CSS,
        expr = escape(&info.expression),
        tasks = c.finished,
        failed = c.failed,
        transfers = c.transfers,
        moved = bytes(c.transferred_bytes as f64),
    )
}

const REPORT_CSS: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#222}\
pre.expr{background:#f4f4f4;padding:.6em;white-space:pre-wrap}\
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left}\
.sw{display:inline-block;width:10px;height:10px;margin-right:6px}\
.bar{height:10px}.hint{color:#666}svg.stream{height:auto;border:1px solid #ddd}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TaskId;
    use crate::scheduler::observe::{Observation, TaskDone};
    use std::time::{Duration, Instant};

    #[test]
    fn the_report_shows_every_kind_escapes_text_and_fetches_nothing() {
        let epoch = Instant::now();
        let mut agg = Aggregator::recording(epoch);
        for (i, kind) in ["array.block", "array.partial", "<script>"]
            .iter()
            .enumerate()
        {
            agg.observe(Observation::TasksDone {
                worker: 1,
                at: epoch + Duration::from_millis(10 * i as u64 + 10),
                tasks: vec![TaskDone {
                    task: TaskId(i as u64),
                    kind: (*kind).into(),
                    duration_us: 5_000,
                    nbytes: 80,
                }],
            });
        }
        agg.observe(Observation::Transfer {
            worker: 1,
            nbytes: 4096,
            at: epoch + Duration::from_millis(12),
        });
        let html = render(
            &agg,
            &RunInfo {
                title: "x.sum() & more".into(),
                expression: "x.sum() & <y>".into(),
                timings: vec![("compute".into(), 1.5)],
                notes: vec![],
            },
        );
        assert!(html.contains("array.block") && html.contains("array.partial"));
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert!(html.contains("x.sum() &amp; &lt;y&gt;"));
        assert!(html.contains("1.50 s"));
        assert!(html.contains("3 tasks finished"));
        assert!(html.contains("transfer of 4.0 KiB"));
        // Self-contained: no URL but the SVG namespace.
        for not in ["src=", "href=", "@import", "url("] {
            assert!(!html.contains(not), "{not}");
        }
    }
}
