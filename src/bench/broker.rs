//! A Tansu broker process (in-memory storage) on a free loopback port, for the benchmark
//! harness and the integration tests. Killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pitwall_dataflows::decode::encode_telemetry;
use pitwall_dataflows::partition::key_partition;
use pitwall_dataflows::records::TelemetryRecord;

/// A free loopback port (bound, read, released).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?.local_addr()?.port())
}

/// Writes a timely hostfile (`-h`) for `processes` processes on free loopback ports.
pub fn write_hostfile(path: &std::path::Path, processes: usize) -> Result<()> {
    let lines: Result<Vec<String>> = (0..processes).map(|_| Ok(format!("127.0.0.1:{}", free_port()?))).collect();
    std::fs::write(path, lines?.join("\n")).with_context(|| format!("writing the hostfile {path:?}"))
}

/// The Tansu binary: `$TANSU_BIN`, else `tansu` on the `PATH`, else `~/.cargo/bin/tansu`.
pub fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return path.into();
    }
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).map(|d| d.join("tansu"));
    let in_cargo = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin").join("tansu"));
    on_path.chain(in_cargo).find(|p| p.is_file()).unwrap_or_else(|| "tansu".into())
}

/// A running Tansu broker.
pub struct Tansu {
    child: Child,
    pub brokers: String,
}

impl Tansu {
    /// Starts Tansu with in-memory storage on a free port and waits until it accepts connections.
    pub fn start() -> Result<Tansu> {
        Tansu::start_with(free_port()?, "memory://tansu/", &[])
    }

    /// Starts Tansu on `port` (e.g. again on the port of a stopped one) with `storage` (e.g.
    /// `s3://tansu/`, which survives a restart) and extra environment (the S3 endpoint and keys).
    pub fn start_with(port: u16, storage: &str, env: &[(&str, &str)]) -> Result<Tansu> {
        let binary = tansu_binary();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args(["broker", "--storage-engine", storage, "--listener-url", &url, "--advertised-listener-url", &url])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start the Tansu broker {binary:?}; run scripts/setup.sh (cargo install tansu --features dynostore)"))?;
        let brokers = format!("127.0.0.1:{port}");
        let mut tansu = Tansu { child, brokers };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&tansu.brokers).is_err() {
            if let Some(status) = tansu.child.try_wait()? {
                bail!("Tansu exited ({status}) before listening on {}", tansu.brokers);
            }
            if Instant::now() > deadline {
                bail!("Tansu did not listen on {} within 20 s", tansu.brokers);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(tansu)
    }
}

impl Tansu {
    /// CPU seconds (user + system, all threads) the broker has used since it started.
    pub fn cpu_seconds(&self) -> Option<f64> {
        process_cpu_seconds(self.child.id())
    }

    /// Stops the broker now (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker a benchmark runs against. Dropping it stops a broker the harness started.
pub enum Broker {
    Tansu(Tansu),
    /// librdkafka's mock cluster, hosted in this process.
    Mock(rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>),
    External(String),
}

/// What librdkafka's mock cluster keeps per partition before it drops the oldest message sets
/// (`rdkafka_mock.c`: 5 MiB, or 100,000 sets, which a preload never reaches).
pub const MOCK_PARTITION_BYTES: usize = 5 * 1024 * 1024;

/// Fails if the fullest partition of a mock-cluster preload, given as each partition's (bytes,
/// messages) as the records' keys place them, would overflow what the mock cluster keeps.
fn refuse_overfull_mock(partitions: &[(usize, usize)]) -> Result<()> {
    let messages: usize = partitions.iter().map(|(_, m)| m).sum();
    if messages == 0 {
        return Ok(());
    }
    // Each record also costs its batch entry (lengths, deltas, key): ~32 bytes.
    let size = |(bytes, messages): &(usize, usize)| bytes + messages * 32;
    let fullest = partitions.iter().map(size).max().unwrap_or(0).max(1);
    // Segments are dropped whole: keep a fifth of headroom.
    let limit = MOCK_PARTITION_BYTES * 4 / 5;
    if fullest > limit {
        let fit = messages * limit / fullest;
        bail!(
            "librdkafka's mock cluster keeps at most {} MiB per partition and drops older segments: the fullest partition \
             would hold {} KiB of these {messages} records (drivers are partitioned by key, not evenly); use --records {fit} or fewer",
            MOCK_PARTITION_BYTES >> 20,
            fullest >> 10,
        );
    }
    Ok(())
}

impl Broker {
    /// Refuses a preload of `records` over `partitions` that the broker would not keep whole (the
    /// mock cluster drops old segments), instead of failing later with a short count. Only the
    /// mock cluster is checked, so only it pays for sizing the records.
    pub fn check_fits(&self, records: &[TelemetryRecord], partitions: i32) -> Result<()> {
        if !matches!(self, Broker::Mock(_)) {
            return Ok(());
        }
        let mut sizes = vec![(0usize, 0usize); partitions.max(1) as usize];
        for record in records {
            let slot = &mut sizes[key_partition(record.driver.as_bytes(), partitions.max(1)) as usize];
            *slot = (slot.0 + encode_telemetry(record).len(), slot.1 + 1);
        }
        refuse_overfull_mock(&sizes)
    }

    /// The broker a harness run asked for: `--brokers`, else `--mock-broker`, else a Tansu it starts.
    pub fn choose(brokers: Option<&String>, mock: bool) -> Result<Broker> {
        Ok(match brokers {
            Some(brokers) => Broker::External(brokers.clone()),
            None if mock => Broker::Mock(rdkafka::mocking::MockCluster::new(1).context("starting librdkafka's mock cluster")?),
            None => Broker::Tansu(Tansu::start()?),
        })
    }

    pub fn brokers(&self) -> String {
        match self {
            Broker::Tansu(tansu) => tansu.brokers.clone(),
            Broker::Mock(mock) => mock.bootstrap_servers(),
            Broker::External(brokers) => brokers.clone(),
        }
    }

    /// CPU seconds the broker process has used so far, where the harness can see it: a Tansu it
    /// started. The mock cluster runs in the harness's own process and an external broker on
    /// another machine, so neither is counted.
    pub fn cpu_seconds(&self) -> Option<f64> {
        match self {
            Broker::Tansu(tansu) => tansu.cpu_seconds(),
            Broker::Mock(_) | Broker::External(_) => None,
        }
    }

    /// What the results say the broker was.
    pub fn describe(&self) -> String {
        match self {
            Broker::Tansu(_) => "Tansu 0.6 (in-memory storage), same machine".into(),
            Broker::Mock(_) => "librdkafka mock cluster, in the harness process".into(),
            Broker::External(brokers) => format!("external: {brokers}"),
        }
    }

    /// Creates `topics` (name, partitions); the mock cluster has no admin API, so it is asked directly.
    pub fn create_topics(&self, kafka: &pitwall_connectors::kafka::KafkaConfig, topics: &[(String, i32)]) -> Result<()> {
        match self {
            Broker::Mock(mock) => {
                for (topic, partitions) in topics {
                    mock.create_topic(topic, *partitions, 1).with_context(|| format!("creating {topic} on the mock cluster"))?;
                }
            }
            _ => {
                pitwall_connectors::kafka::admin::create_topics(kafka, topics, 1)?;
            }
        }
        Ok(())
    }
}

/// User + system CPU seconds of a running process, from `/proc/PID/stat`.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?).map(|ticks| ticks as f64 / clock_ticks_per_second())
}

/// `utime + stime` (fields 14 and 15, in clock ticks) of a `/proc/PID/stat` line. The command
/// name (field 2) is in parentheses and may hold spaces, so fields are counted after its `)`.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th field from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_ticks_from_a_stat_line_whose_name_has_spaces() {
        // A real line's shape: pid, (comm), state, then fields 4.. ; utime=1234, stime=56.
        let line = "4242 (tokio runtime) S 1 4242 4242 0 -1 4194560 9000 0 0 0 1234 56 0 0 20 0 12 0 777 1000000 2000 18446744073709551615";
        assert_eq!(stat_cpu_ticks(line), Some(1290));
        assert_eq!(stat_cpu_ticks("garbage"), None);
        // This process's own figure is readable and grows with work.
        let before = process_cpu_seconds(std::process::id()).unwrap();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = process_cpu_seconds(std::process::id()).unwrap();
        assert!(after - before >= 0.1, "300 ms of busy loop counted: {before} -> {after}");
    }

    #[test]
    fn a_preload_the_mock_cluster_would_not_keep_whole_is_refused_up_front() {
        // The fullest of 8 partitions with 40,000 records of 300 bytes: 12.6 MB, over its 5 MiB.
        let mut partitions = vec![(20_000 * 300, 20_000); 7];
        partitions.push((40_000 * 300, 40_000));
        let error = refuse_overfull_mock(&partitions).unwrap_err().to_string();
        assert!(error.contains("--records") && error.contains("5 MiB"), "{error}");
        let fit: usize = error.split("--records ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().parse().unwrap();
        // 4 MiB of 332-byte entries in the fullest partition, which holds 2/9 of the records.
        assert!((55_000..=60_000).contains(&fit), "{error}");
        refuse_overfull_mock(&[(10_000 * 300, 10_000); 8]).unwrap();
        // Through the broker, on the harness's own race: the mock cluster refuses 120,000
        // records (they lost some when tried) and keeps 50,000; other brokers are not checked.
        let mock = Broker::choose(None, true).unwrap();
        let race = crate::bench::race_records(120_000, 20);
        assert!(mock.check_fits(&race, 8).unwrap_err().to_string().contains("--records"));
        mock.check_fits(&race[..50_000], 8).unwrap();
        Broker::External("127.0.0.1:9".into()).check_fits(&race, 8).unwrap();
    }
}
