//! The timely cluster a job runs on, from timely's own flags (`-w -n -p -h`).

use anyhow::{bail, Context, Result};

use crate::cli::TimelyArgs;

/// Timely's communication config from the `-w -n -p -h` flags.
pub fn timely_config(args: &TimelyArgs) -> Result<timely::Config> {
    if args.workers == 0 || args.processes == 0 || args.process >= args.processes {
        bail!("need -w >= 1, -n >= 1 and 0 <= -p < -n (got -w {} -n {} -p {})", args.workers, args.processes, args.process);
    }
    let communication = if args.processes > 1 {
        let addresses: Vec<String> = match &args.hostfile {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading hostfile {}", path.display()))?;
                let lines: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).take(args.processes).collect();
                if lines.len() < args.processes {
                    bail!("hostfile {} has {} addresses but -n is {}", path.display(), lines.len(), args.processes);
                }
                lines
            }
            None => (0..args.processes).map(|i| format!("localhost:{}", 2101 + i)).collect(),
        };
        timely::CommunicationConfig::Cluster { threads: args.workers, process: args.process, addresses, report: false, zerocopy: false }
    } else if args.workers > 1 {
        timely::CommunicationConfig::Process(args.workers)
    } else {
        timely::CommunicationConfig::Thread
    };
    Ok(timely::Config { communication, worker: timely::WorkerConfig::default() })
}

/// The exit status of a process whose `-n` cluster lost a peer process.
pub const EXIT_LOST_PEER: i32 = 3;

/// In a multi-process cluster, a peer process that dies (killed, its machine gone) closes its
/// connections, and timely's communication threads panic on it ("timely communication error:
/// reading data: socket closed"). The dataflows span every process, so nothing more can make
/// progress here: this hook turns that panic into one clear error and exit status
/// [`EXIT_LOST_PEER`] at once, so a supervisor restarts the cluster (which resumes from the
/// last commits, as after a crash). Other panics go to the previous hook as before.
pub fn stop_on_lost_peer(process: usize, processes: usize) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message =
            info.payload().downcast_ref::<String>().map(String::as_str).or_else(|| info.payload().downcast_ref::<&str>().copied()).unwrap_or("");
        if lost_peer(message) {
            eprintln!(
                "error: process {process} of this {processes}-process cluster lost a peer ({message}): another process stopped or \
                 died, so this one stops too (exit status {EXIT_LOST_PEER}); restart the whole cluster, it resumes from the last commits"
            );
            std::process::exit(EXIT_LOST_PEER);
        }
        previous(info);
    }));
}

/// Whether a panic message is timely's report of a broken connection to a peer process.
fn lost_peer(message: &str) -> bool {
    message.starts_with("timely communication error")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_timely_s_connection_errors_are_a_lost_peer() {
        assert!(super::lost_peer("timely communication error: reading data: socket closed"));
        assert!(super::lost_peer("timely communication error: flushing writer: Broken pipe (os error 32)"));
        assert!(!super::lost_peer("index out of bounds"));
    }
}
