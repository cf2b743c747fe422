//! Child processes measured the way the harness reports them: stdout captured, stderr to a log
//! file, and the peak resident set size from the kernel's accounting when the child exits.

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
    pub wall: Duration,
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
    started: Instant,
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
        Ok(Measured { child, name: name.to_string(), log, started: Instant::now(), stdout })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the child to shut down gracefully (SIGTERM).
    pub fn terminate(&self) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Waits at most `timeout` (then kills it and fails); fails unless it exits 0.
    pub fn finish(self, timeout: Duration) -> Result<Finished> {
        let pid = self.child.id() as libc::pid_t;
        let deadline = Instant::now() + timeout;
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: wait4 on our own child with valid out-pointers; WNOHANG never blocks.
            let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if reaped == pid {
                break;
            }
            if reaped < 0 {
                bail!("waiting for {}: {}", self.name, std::io::Error::last_os_error());
            }
            if Instant::now() > deadline {
                // SAFETY: as in `terminate`.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                bail!("{} ran past {timeout:?} and was killed; see {:?}", self.name, self.log);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let wall = self.started.elapsed();
        let stdout = self.stdout.join().unwrap_or_default();
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            bail!("{} failed (wait status {status}); see {:?}", self.name, self.log);
        }
        // ru_maxrss is in KiB on Linux.
        Ok(Finished { stdout, peak_rss_mb: usage.ru_maxrss as f64 / 1024.0, wall })
    }
}
