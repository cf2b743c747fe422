//! `pitwall tail`: a topic's messages as JSON lines.

use std::io::Write;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use pitwall_connectors::kafka::tail::tail;

use crate::cli::TailArgs;

pub fn run(args: &TailArgs) -> Result<()> {
    let stop = AtomicBool::new(false);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = None;
    tail(&args.kafka.config(), &args.topic, args.from_beginning, args.exit_at_end, &stop, |message| {
        if failed.is_none() {
            let line = serde_json::to_string(&message).expect("tail messages serialize");
            if let Err(e) = writeln!(out, "{line}").and_then(|_| if args.exit_at_end { Ok(()) } else { out.flush() }) {
                // A closed pipe (`pitwall tail ... | head`) ends the tail quietly.
                failed = Some(e);
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    })?;
    out.flush()?;
    Ok(())
}
