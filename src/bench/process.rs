//! Child processes measured the way the harness reports them: stdout captured, stderr to a log
//! file, and the peak resident set size (the kernel's high-water mark) of the child alone.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What a finished child left behind.
#[derive(Clone, Debug)]
pub struct Finished {
    pub stdout: String,
    pub peak_rss_mb: f64,
}

impl Finished {
    /// The JSON report a pitwall command prints as its last stdout line.
    pub fn report(&self) -> Result<serde_json::Value> {
        let line = self.stdout.lines().last().context("the command printed no report")?;
        serde_json::from_str(line).with_context(|| format!("the report line is not JSON: {line}"))
    }
}

/// A child being measured.
pub struct Measured {
    child: Child,
    name: String,
    log: std::path::PathBuf,
    stdout: std::thread::JoinHandle<String>,
}

impl Measured {
    /// Spawns `command`; its stderr goes to `<logs>/<name>.log`.
    pub fn spawn(mut command: Command, name: &str, logs: &Path) -> Result<Measured> {
        std::fs::create_dir_all(logs)?;
        let log = logs.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).with_context(|| format!("creating {log:?}"))?;
        let mut child = command.stdout(Stdio::piped()).stderr(stderr).spawn().with_context(|| format!("spawning {name}: {command:?}"))?;
        let mut out = child.stdout.take().expect("stdout is piped");
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        Ok(Measured { child, name: name.to_string(), log, stdout })
    }

    /// Asks the child to shut down gracefully (SIGTERM).
    pub fn terminate(&self) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Waits at most `timeout` (then kills it and fails); fails unless it exits 0.
    ///
    /// Peak RSS is the child's `VmHWM`, sampled every 20 ms until it exits: the rusage that
    /// `wait4` reports would include the RSS this (large) harness had when it forked the child.
    pub fn finish(mut self, timeout: Duration) -> Result<Finished> {
        let deadline = Instant::now() + timeout;
        let status_file = format!("/proc/{}/status", self.child.id());
        let mut peak_kb = 0u64;
        let status = loop {
            if let Some(kb) = std::fs::read_to_string(&status_file).ok().as_deref().and_then(high_water_kb) {
                peak_kb = peak_kb.max(kb);
            }
            if let Some(status) = self.child.try_wait().with_context(|| format!("waiting for {}", self.name))? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} ran past {timeout:?} and was killed; see {:?}", self.name, self.log);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = self.stdout.join().unwrap_or_default();
        if !status.success() {
            bail!("{} failed ({status}); see {:?}", self.name, self.log);
        }
        Ok(Finished { stdout, peak_rss_mb: peak_kb as f64 / 1024.0 })
    }
}

/// `VmHWM` (peak resident set, KiB) from a `/proc/PID/status` text.
fn high_water_kb(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()).and_then(|kb| kb.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_peak_resident_set_from_proc_status() {
        let status = "Name:\tpitwall\nVmPeak:\t  900 kB\nVmHWM:\t  123456 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(super::high_water_kb(status), Some(123_456));
        assert_eq!(super::high_water_kb("Name: x\n"), None);
    }
}
