//! The timely cluster a job runs on, from timely's own flags (`-w -n -p -h`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

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

/// Starts this process's timely workers on `config`, as `timely::execute` does, except that a
/// multi-process cluster's connections are made by [`connect_peers`] and handed to timely's own
/// networking (`initialize_networking_from_sockets`): timely's connection loops sleep a whole
/// second whenever a peer is not there yet, which cost every `-n` start-up about a second.
pub fn execute<T, F>(config: timely::Config, func: F) -> Result<timely::communication::WorkerGuards<T>>
where
    T: Send + 'static,
    F: Fn(&mut timely::worker::Worker) -> T + Send + Sync + 'static,
{
    use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
    use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};

    let timely::Config { communication, worker } = config;
    let (builders, guard): (Vec<AllocatorBuilder>, Box<dyn std::any::Any + Send>) = match communication {
        timely::CommunicationConfig::Cluster { threads, process, addresses, zerocopy: false, .. } => {
            let sockets = connect_peers(&addresses, process, PEER_RETRY)?;
            let hooks = timely::communication::Hooks::default();
            let local = ProcessBuilder::new_typed_vector(threads, hooks.refill.clone(), hooks.spill.clone());
            let (builders, guard) = initialize_networking_from_sockets(local, sockets, process, threads, hooks)
                .context("starting timely's networking on the cluster's connections")?;
            (builders.into_iter().map(AllocatorBuilder::Tcp).collect(), Box::new(guard))
        }
        other => other.try_build().map_err(|e| anyhow::anyhow!("starting timely: {e}"))?,
    };
    timely::execute::execute_from(builders, guard, worker, func).map_err(|e| anyhow::anyhow!("starting timely: {e}"))
}

/// How often a process retries connecting to a peer that is not listening yet.
const PEER_RETRY: Duration = Duration::from_millis(20);
/// How often a process still waiting for its peers says so.
const PEER_WAIT_REPORT: Duration = Duration::from_secs(5);

/// The connections of process `me` of a cluster at `addresses` to every other process, by
/// process index (`None` at `me`), made the way timely makes them so that its networking takes
/// them as its own: `me` connects to every lower-indexed process and sends its index (a
/// big-endian `u64`), and accepts one connection from every higher-indexed one. Waits as long
/// as the peers take to start (saying so every few seconds), retrying every `retry`.
pub(crate) fn connect_peers(addresses: &[String], me: usize, retry: Duration) -> Result<Vec<Option<TcpStream>>> {
    let mine = addresses.get(me).with_context(|| format!("no address for process {me} of {}", addresses.len()))?;
    // Listen before connecting out, so that peers connecting to us find us as soon as possible.
    let listeners = mine
        .split_whitespace()
        .map(|address| {
            let listener = TcpListener::bind(address).with_context(|| format!("process {me}: listening on {address} for the cluster's peers"))?;
            listener.set_nonblocking(true).context("making the cluster listener non-blocking")?;
            Ok(listener)
        })
        .collect::<Result<Vec<_>>>()?;
    let higher = addresses.len() - me - 1;
    let accepting = std::thread::Builder::new()
        .name("pitwall-cluster-accept".into())
        .spawn(move || -> Result<Vec<Option<TcpStream>>> {
            let mut accepted: Vec<Option<TcpStream>> = (0..higher).map(|_| None).collect();
            let started = Instant::now();
            let mut reported = Instant::now();
            while accepted.iter().any(Option::is_none) {
                let mut any = false;
                for listener in &listeners {
                    match listener.accept() {
                        Ok((mut stream, from)) => {
                            stream.set_nonblocking(false).context("making a peer connection blocking")?;
                            stream.set_nodelay(true).context("setting TCP_NODELAY on a peer connection")?;
                            let mut index = [0_u8; 8];
                            stream.read_exact(&mut index).with_context(|| format!("reading the process index of the peer at {from}"))?;
                            let index = u64::from_be_bytes(index);
                            let slot =
                                usize::try_from(index).ok().and_then(|i| i.checked_sub(me + 1)).filter(|slot| *slot < higher).with_context(|| {
                                    format!("the peer at {from} says it is process {index}, not one of {}..{}", me + 1, me + 1 + higher)
                                })?;
                            if accepted[slot].replace(stream).is_some() {
                                bail!("two peers connected as process {index}: check the hostfiles and -p of the cluster");
                            }
                            any = true;
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(error) => return Err(error).context("accepting a peer connection"),
                    }
                }
                if !any {
                    if reported.elapsed() >= PEER_WAIT_REPORT {
                        let waiting: Vec<usize> = (0..higher).filter(|s| accepted[*s].is_none()).map(|s| s + me + 1).collect();
                        tracing::warn!(?waiting, waited_s = started.elapsed().as_secs(), "waiting for the cluster's processes to connect");
                        reported = Instant::now();
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Ok(accepted)
        })
        .context("starting the cluster's accepting thread")?;
    let mut peers: Vec<Option<TcpStream>> = Vec::with_capacity(addresses.len());
    for (index, address) in addresses.iter().enumerate().take(me) {
        let started = Instant::now();
        let mut reported = Instant::now();
        let mut stream = loop {
            match TcpStream::connect(address) {
                Ok(stream) => break stream,
                Err(error) => {
                    if reported.elapsed() >= PEER_WAIT_REPORT {
                        tracing::warn!(process = index, address, %error, waited_s = started.elapsed().as_secs(), "waiting for a cluster process to listen");
                        reported = Instant::now();
                    }
                    std::thread::sleep(retry);
                }
            }
        };
        stream.set_nodelay(true).context("setting TCP_NODELAY on a peer connection")?;
        stream.write_all(&(me as u64).to_be_bytes()).with_context(|| format!("introducing process {me} to process {index} at {address}"))?;
        peers.push(Some(stream));
    }
    peers.push(None);
    peers.extend(accepting.join().map_err(|_| anyhow::anyhow!("the cluster's accepting thread panicked"))??);
    Ok(peers)
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
    /// Three processes on loopback, started in the worst order (the highest first, so its
    /// connections are refused until the others listen): every process ends up with one
    /// connected stream per peer, in index order, and each stream reaches the peer it names.
    #[test]
    fn peers_connect_in_timely_s_layout_whatever_the_start_order() {
        use std::io::{Read, Write};
        let ports: Vec<u16> = (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let handles: Vec<_> = (0..3)
            .rev()
            .map(|me| {
                let addresses = addresses.clone();
                std::thread::sleep(std::time::Duration::from_millis(30));
                std::thread::spawn(move || super::connect_peers(&addresses, me, std::time::Duration::from_millis(5)).unwrap())
            })
            .collect();
        let mut peers: Vec<Vec<Option<std::net::TcpStream>>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        peers.reverse();
        for (me, streams) in peers.iter_mut().enumerate() {
            assert_eq!(streams.len(), 3);
            assert!(streams[me].is_none(), "no connection to itself");
            // Each process writes its index to every peer...
            for stream in streams.iter_mut().flatten() {
                stream.write_all(&[me as u8]).unwrap();
            }
        }
        // ...and reads, on the stream at index i, the index i.
        for streams in &mut peers {
            for (index, stream) in streams.iter_mut().enumerate() {
                if let Some(stream) = stream {
                    let mut byte = [0_u8; 1];
                    stream.read_exact(&mut byte).unwrap();
                    assert_eq!(byte[0] as usize, index);
                }
            }
        }
    }

    #[test]
    fn only_timely_s_connection_errors_are_a_lost_peer() {
        assert!(super::lost_peer("timely communication error: reading data: socket closed"));
        assert!(super::lost_peer("timely communication error: flushing writer: Broken pipe (os error 32)"));
        assert!(!super::lost_peer("index out of bounds"));
    }
}
