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
    /// User + system CPU time of the whole child (all its threads, start to exit).
    pub cpu_s: f64,
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

    /// Kills the child at once (SIGKILL) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits at most `timeout` (then kills it and fails); fails unless it exits 0.
    ///
    /// Peak RSS is the child's `VmHWM`, sampled every 20 ms until it exits: the rusage that
    /// `wait4` reports would include the RSS this (large) harness had when it forked the child.
    pub fn finish(mut self, timeout: Duration) -> Result<Finished> {
        let deadline = Instant::now() + timeout;
        let status_file = format!("/proc/{}/status", self.child.id());
        let mut peak_kb = 0u64;
        let (status, cpu_s) = loop {
            if let Some(kb) = std::fs::read_to_string(&status_file).ok().as_deref().and_then(high_water_kb) {
                peak_kb = peak_kb.max(kb);
            }
            if let Some(done) = self.reap()? {
                break done;
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
        Ok(Finished { stdout, peak_rss_mb: peak_kb as f64 / 1024.0, cpu_s })
    }

    /// The child's exit status and CPU seconds once it has exited (`wait4`, not blocking).
    fn reap(&mut self) -> Result<Option<(std::process::ExitStatus, f64)>> {
        use std::os::unix::process::ExitStatusExt;
        let pid = self.child.id() as libc::pid_t;
        let mut raw = 0;
        // SAFETY: an all-zero rusage is a valid value of the plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own, not yet reaped child, with valid out-pointers.
        let reaped = unsafe { libc::wait4(pid, &mut raw, libc::WNOHANG, &mut usage) };
        if reaped < 0 {
            bail!("waiting for {}: {}", self.name, std::io::Error::last_os_error());
        }
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Ok((reaped == pid).then(|| (std::process::ExitStatus::from_raw(raw), seconds(usage.ru_utime) + seconds(usage.ru_stime))))
    }
}

/// `VmHWM` (peak resident set, KiB) from a `/proc/PID/status` text.
fn high_water_kb(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()).and_then(|kb| kb.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::Measured;
    use std::process::Command;
    use std::time::Duration;

    fn measure(name: &str, script: &str) -> anyhow::Result<super::Finished> {
        let logs = std::env::temp_dir().join(format!("pitwall-process-test-{}", std::process::id()));
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        Measured::spawn(command, name, &logs)?.finish(Duration::from_secs(60))
    }

    #[test]
    fn counts_the_cpu_time_of_a_busy_child_and_not_of_a_sleeping_one() {
        let busy = measure("busy", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo '{}'").unwrap();
        assert!(busy.cpu_s > 0.05, "a busy loop uses CPU: {}", busy.cpu_s);
        let sleeping = measure("sleeping", "sleep 0.5; echo '{}'").unwrap();
        assert!(sleeping.cpu_s < 0.1, "sleeping uses none: {}", sleeping.cpu_s);
        assert_eq!(sleeping.report().unwrap(), serde_json::json!({}));
    }

    #[test]
    fn a_failing_child_is_an_error() {
        let error = measure("failing", "exit 3").unwrap_err();
        assert!(error.to_string().contains("failing failed"), "{error}");
    }

    #[test]
    fn reads_the_peak_resident_set_from_proc_status() {
        let status = "Name:\tpitwall\nVmPeak:\t  900 kB\nVmHWM:\t  123456 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(super::high_water_kb(status), Some(123_456));
        assert_eq!(super::high_water_kb("Name: x\n"), None);
    }
}
