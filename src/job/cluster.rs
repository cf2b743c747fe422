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
