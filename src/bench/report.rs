//! The harness's results: one row per measurement, written as CSV, a markdown table and PNG
//! plots (plotters, bitmap backend).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::prelude::*;

use crate::cli::ClusterShape;

/// The seed Python pipeline's measured throughput (one producer, 3 drivers), msg/s.
pub const SEED_MSG_PER_S: f64 = 2_200.0;
/// The seed's end-to-end latency goal, ms (a projection, never measured there).
pub const SEED_LATENCY_MS: f64 = 100.0;

/// Picks one percentile, for plotting.
type Pick = fn(&Percentiles) -> f64;

/// Latency percentiles in ms.
#[derive(Clone, Copy, Debug, Default)]
pub struct Percentiles {
    pub samples: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// One measurement.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// `produce`, `ceiling`, `run` or `latency`.
    pub kind: &'static str,
    /// The cluster shape, e.g. `-w 2` or `-n 2 -w 1`.
    pub config: String,
    pub workers: usize,
    pub processes: usize,
    pub records: u64,
    pub seconds: f64,
    pub msg_per_s: f64,
    pub peak_rss_mb: f64,
    /// CPU seconds (user + system) of the process(es), start to exit, where measured.
    pub cpu_s: f64,
    /// CPU seconds the broker used over the same span, where the harness can see it (a Tansu it
    /// started); 0 where not measured. On one machine the broker's CPU comes out of the same cores.
    pub broker_cpu_s: f64,
    /// Throughput rows measured more than once (`--repeat`): how many runs, and the slowest and
    /// fastest; the row's own figures are the median run's.
    pub runs: usize,
    pub msg_per_s_min: f64,
    pub msg_per_s_max: f64,
    /// Latency rows: the offered rate asked for and the rate achieved.
    pub offered: u64,
    pub achieved: f64,
    pub published: Percentiles,
    pub received: Percentiles,
    /// Ingest to a plain consumer's receipt of the telemetry records themselves (Kafka alone).
    pub transport: Percentiles,
}

impl Row {
    /// The median (by throughput) of several runs of one measurement, with their range.
    pub fn median(mut runs: Vec<Row>) -> Option<Row> {
        runs.sort_by(|a, b| a.msg_per_s.total_cmp(&b.msg_per_s));
        let (min, max) = (runs.first()?.msg_per_s, runs.last()?.msg_per_s);
        let mut row = runs[(runs.len() - 1) / 2].clone();
        (row.runs, row.msg_per_s_min, row.msg_per_s_max) = (runs.len(), min, max);
        Some(row)
    }

    pub fn produce(records: u64, seconds: f64) -> Row {
        Row { kind: "produce", config: "4 producers".into(), records, seconds, msg_per_s: records as f64 / seconds.max(1e-9), ..Row::default() }
    }

    pub fn ceiling(records: u64, seconds: f64, peak_rss_mb: f64, cpu_s: f64) -> Row {
        let msg_per_s = records as f64 / seconds.max(1e-9);
        Row {
            kind: "ceiling",
            config: "1 consumer".into(),
            workers: 1,
            processes: 1,
            records,
            seconds,
            msg_per_s,
            peak_rss_mb,
            cpu_s,
            ..Row::default()
        }
    }

    /// An empty run row of `shape`; the caller adds up its processes.
    pub fn run(shape: &ClusterShape) -> Row {
        Row { kind: "run", config: shape.to_string(), workers: shape.workers, processes: shape.processes, ..Row::default() }
    }

    pub fn latency(
        offered: u64,
        workers: usize,
        records: u64,
        achieved: f64,
        published: Percentiles,
        received: Percentiles,
        peak_rss_mb: f64,
    ) -> Row {
        Row {
            kind: "latency",
            config: format!("-w {workers}"),
            workers,
            processes: 1,
            records,
            msg_per_s: achieved,
            peak_rss_mb,
            offered,
            achieved,
            published,
            received,
            ..Row::default()
        }
    }
}

/// Everything one harness run measured, with the context needed to read it.
pub struct Results {
    pub rows: Vec<Row>,
    pub machine: String,
    pub broker: String,
    pub command: String,
}

impl Results {
    pub fn new(broker: String) -> Results {
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        Results { rows: Vec::new(), machine: machine(), broker, command }
    }

    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    fn ceiling(&self) -> Option<f64> {
        self.rows.iter().find(|r| r.kind == "ceiling").map(|r| r.msg_per_s)
    }

    /// Throughput as a fraction of the raw ceiling.
    pub fn ratio(&self, row: &Row) -> Option<f64> {
        self.ceiling().filter(|c| *c > 0.0 && row.kind == "run").map(|c| row.msg_per_s / c)
    }

    pub fn csv(&self) -> String {
        let mut out = String::from(
            "kind,config,workers,processes,records,seconds,msg_per_s,ratio_to_ceiling,peak_rss_mb,offered_msg_per_s,achieved_msg_per_s,\
             alerts_timed,published_p50_ms,published_p95_ms,published_p99_ms,published_max_ms,received_p50_ms,received_p95_ms,received_p99_ms,received_max_ms,\
             transport_p50_ms,transport_p99_ms,runs,msg_per_s_min,msg_per_s_max,cpu_s,broker_cpu_s\n",
        );
        for r in &self.rows {
            let (p, q) = (r.published, r.received);
            let _ = writeln!(
                out,
                "{},{},{},{},{},{:.3},{:.0},{},{:.1},{},{:.0},{},{},{},{},{},{},{},{},{},{},{},{},{:.0},{:.0},{:.2},{:.2}",
                r.kind,
                r.config,
                r.workers,
                r.processes,
                r.records,
                r.seconds,
                r.msg_per_s,
                self.ratio(r).map_or(String::new(), |x| format!("{x:.3}")),
                r.peak_rss_mb,
                r.offered,
                r.achieved,
                p.samples,
                p.p50,
                p.p95,
                p.p99,
                p.max,
                q.p50,
                q.p95,
                q.p99,
                q.max,
                r.transport.p50,
                r.transport.p99,
                r.runs.max(1),
                if r.runs > 1 { r.msg_per_s_min } else { r.msg_per_s },
                if r.runs > 1 { r.msg_per_s_max } else { r.msg_per_s },
                r.cpu_s,
                r.broker_cpu_s
            );
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Machine: {}  \nBroker: {}  \nCommand: `{}`\n", self.machine, self.broker, self.command);
        let _ =
            writeln!(out, "| what | shape | records | seconds | msg/s | runs: min-max msg/s | vs ceiling | vs seed (2,200 msg/s) | peak RSS MB | CPU s per million | broker CPU s per million |");
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in self.rows.iter().filter(|r| r.kind != "latency") {
            let ratio = self.ratio(r).map_or("-".into(), |x| format!("{:.0}%", x * 100.0));
            let rss = if r.peak_rss_mb > 0.0 { format!("{:.0}", r.peak_rss_mb) } else { "-".into() };
            let per_million = |cpu_s: f64| if cpu_s > 0.0 && r.records > 0 { format!("{:.2}", cpu_s * 1e6 / r.records as f64) } else { "-".into() };
            let (cpu, broker_cpu) = (per_million(r.cpu_s), per_million(r.broker_cpu_s));
            let range = if r.runs > 1 { format!("{}: {:.0}-{:.0}", r.runs, r.msg_per_s_min, r.msg_per_s_max) } else { "1".into() };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {:.0} | {} | {} | {:.0}x | {} | {} | {} |",
                r.kind,
                r.config,
                r.records,
                r.seconds,
                r.msg_per_s,
                range,
                ratio,
                r.msg_per_s / SEED_MSG_PER_S,
                rss,
                cpu,
                broker_cpu
            );
        }
        let _ =
            writeln!(out, "\nIngest-to-alert latency (ms) under steady offered load; the seed's goal was < {SEED_LATENCY_MS:.0} ms end to end.\n");
        let _ = writeln!(
            out,
            "| offered msg/s | achieved msg/s | shape | alerts timed | published p50 | p95 | p99 | max | received p50 | p99 | Kafka alone p50 | p99 | peak RSS MB |"
        );
        let _ = writeln!(out, "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in self.rows.iter().filter(|r| r.kind == "latency") {
            let (p, q) = (r.published, r.received);
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
                r.offered, r.achieved, r.config, p.samples, p.p50, p.p95, p.p99, p.max, q.p50, q.p99, r.transport.p50, r.transport.p99, r.peak_rss_mb
            );
        }
        out
    }

    /// Writes results.csv, results.md, throughput.png and latency.png into `dir`.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let files = [dir.join("results.csv"), dir.join("results.md"), dir.join("throughput.png"), dir.join("latency.png")];
        std::fs::write(&files[0], self.csv())?;
        std::fs::write(&files[1], self.markdown())?;
        register_font()?;
        self.plot_throughput(&files[2]).map_err(|e| anyhow::anyhow!("plotting throughput: {e}"))?;
        self.plot_latency(&files[3]).map_err(|e| anyhow::anyhow!("plotting latency: {e}"))?;
        Ok(files.to_vec())
    }

    fn plot_throughput(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let bars: Vec<&Row> = self.rows.iter().filter(|r| r.kind == "ceiling" || r.kind == "run").collect();
        let top = bars.iter().map(|r| r.msg_per_s).fold(1.0, f64::max) * 1.2;
        let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Throughput: pitwall run --exit-at-end vs raw consume+decode ceiling", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d((0..bars.len().saturating_sub(1)).into_segmented(), 0.0..top)?;
        let names: Vec<String> = bars.iter().map(|r| if r.kind == "ceiling" { "ceiling".to_string() } else { r.config.clone() }).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc("msg/s")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, r)| {
            let colour = if r.kind == "ceiling" { RGBColor(120, 120, 120) } else { RGBColor(200, 30, 40) };
            Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), r.msg_per_s)], colour.filled())
        }))?;
        chart.draw_series(
            bars.iter()
                .enumerate()
                .map(|(i, r)| Text::new(format!("{:.0}", r.msg_per_s), (SegmentValue::CenterOf(i), r.msg_per_s + top * 0.02), ("sans-serif", 15))),
        )?;
        root.present()?;
        Ok(())
    }

    fn plot_latency(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let rows: Vec<&Row> = self.rows.iter().filter(|r| r.kind == "latency").collect();
        let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let min_rate = rows.iter().map(|r| r.offered as f64).fold(f64::INFINITY, f64::min).max(1.0);
        let max_rate = rows.iter().map(|r| r.offered as f64).fold(1.0, f64::max).max(min_rate * 2.0);
        let top = rows.iter().map(|r| r.published.max).fold(1.0, f64::max) * 1.5;
        let mut chart = ChartBuilder::on(&root)
            .caption("Ingest-to-alert-published latency vs offered load", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((min_rate / 1.5..max_rate * 1.5).log_scale(), (0.5..top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("offered msg/s")
            .y_desc("ms")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y}"))
            .draw()?;
        let series: [(&str, RGBColor, Pick); 4] =
            [("p50", BLUE, |p| p.p50), ("p95", GREEN, |p| p.p95), ("p99", RED, |p| p.p99), ("max", BLACK, |p| p.max)];
        for (name, colour, pick) in series {
            let points: Vec<(f64, f64)> = rows.iter().map(|r| (r.offered as f64, pick(&r.published).max(0.5))).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, colour.filled())))?;
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
        root.present()?;
        Ok(())
    }
}

/// Plotters' text needs a font; DejaVu Sans comes with Debian's fonts-dejavu-core (scripts/setup.sh).
fn register_font() -> Result<()> {
    const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    static REGISTERED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if REGISTERED.get().is_some() {
        return Ok(());
    }
    let bytes = std::fs::read(FONT).with_context(|| format!("reading {FONT} for the plots (apt-get install fonts-dejavu-core)"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
        .map_err(|_| anyhow::anyhow!("{FONT} is not a usable font"))?;
    let _ = REGISTERED.set(());
    Ok(())
}

/// CPU model, cores and memory of this machine, from /proc.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("MemTotal")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cpu}, {cores} cores, {memory_gib:.0} GiB")
}
