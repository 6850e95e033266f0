//! `anycable-bench soak`: a long run under churn, for leaks and losses (not part of CI).
//!
//! A spawned server gets `--connections` healthy WebSocket clients that connect, subscribe to
//! one of `--streams` ordinary streams, switch to another halfway through a random life
//! (`--lifetime` on average), leave and connect again; a few more healthy "watchers" do the
//! same on a firehose stream of large messages, next to `--stalled` readers that subscribe to
//! it and never read (replaced every `--stall-seconds`, so the server keeps dropping slow
//! clients). One publisher sends to the ordinary streams at `--rate` per second, another to
//! the firehose.
//!
//! Every `--report-seconds` it prints the server's RSS and open descriptors with the
//! deliveries, losses and churn of the period. It fails on any loss or duplicate seen by a
//! healthy client (`ledger.rs` says what is owed), on a failed publication, and when RSS or
//! descriptors grew beyond noise between the end of the first third of the run and its end.

mod client;
mod ledger;
mod sample;
mod shared;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::client::{connect, expect_type, now_nanos, Socket};
use crate::options::{Auth, Broadcaster, Flags, Transport};
use crate::publisher::HttpPublisher;
use crate::target::Target;
use client::{Rng, Role};
use sample::{baseline, Sample, Verdict};
use shared::{Shared, StreamId};

pub const USAGE: &str = "usage: anycable-bench soak [options] [-- server args]

  --minutes M            how long to run (60)
  --connections N        healthy clients, always connected (10000)
  --streams S            ordinary streams (8)
  --rate R               publications per second to the ordinary streams, together (20)
  --lifetime SECS        average life of a connection; each lives 0.5x to 1.5x of it (60)
  --stalled K            readers that never read, on the firehose (5); as many healthy
                         watchers read it
  --stall-seconds SECS   the stalled readers are replaced this often (60)
  --firehose-rate R      firehose publications per second (20), of --firehose-bytes (16384)
  --report-seconds SECS  report period (60; 10 when --minutes is below 10)
  --server-bin PATH      server binary to start (default: anycable-rs next to this binary)

Quick check: anycable-bench soak --minutes 1 --connections 1000";

/// Soak parameters.
struct Options {
    duration: Duration,
    connections: usize,
    streams: usize,
    rate: f64,
    lifetime: Duration,
    stalled: usize,
    stall_period: Duration,
    firehose_rate: f64,
    firehose_bytes: usize,
    report_every: Duration,
    server_bin: Option<PathBuf>,
    server_args: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut minutes = 60.0;
    let mut report: Option<f64> = None;
    let mut options = Options {
        duration: Duration::ZERO,
        connections: 10_000,
        streams: 8,
        rate: 20.0,
        lifetime: Duration::from_secs(60),
        stalled: 5,
        stall_period: Duration::from_secs(60),
        firehose_rate: 20.0,
        firehose_bytes: 16384,
        report_every: Duration::ZERO,
        server_bin: None,
        server_args: Vec::new(),
    };
    let mut flags = Flags::new(args);
    while let Some(name) = flags.next_flag() {
        match name {
            "--" => {
                options.server_args = flags.remaining();
                break;
            }
            "--minutes" => minutes = flags.number()?,
            "--connections" => options.connections = flags.number()? as usize,
            "--streams" => options.streams = flags.number()? as usize,
            "--rate" => options.rate = flags.number()?,
            "--lifetime" => options.lifetime = Duration::from_secs_f64(flags.number()?),
            "--stalled" => options.stalled = flags.number()? as usize,
            "--stall-seconds" => options.stall_period = Duration::from_secs_f64(flags.number()?),
            "--firehose-rate" => options.firehose_rate = flags.number()?,
            "--firehose-bytes" => options.firehose_bytes = flags.number()? as usize,
            "--report-seconds" => report = Some(flags.number()?),
            "--server-bin" => options.server_bin = Some(flags.value()?.into()),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown soak option {other}\n{USAGE}")),
        }
    }
    if options.streams < 2 {
        return Err("--streams: at least 2 (clients switch streams)".into());
    }
    if options.rate <= 0.0 || options.lifetime < Duration::from_secs(1) {
        return Err("--rate must be positive and --lifetime at least 1 s".into());
    }
    options.duration = Duration::from_secs_f64(minutes * 60.0);
    let report = report.unwrap_or(if minutes < 10.0 { 10.0 } else { 60.0 });
    options.report_every = Duration::from_secs_f64(report.max(1.0));
    if options.duration < options.report_every * 3 {
        return Err("the run must cover at least three report periods".into());
    }
    Ok(options)
}

/// Parses the soak's arguments and runs it; `Err` is printed and fails the command.
pub fn main(args: &[String], runtime: &tokio::runtime::Runtime) -> Result<(), String> {
    let options = parse(args)?;
    let bin = match &options.server_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("anycable-rs"),
    };
    runtime.block_on(run(&options, &bin))
}

async fn run(options: &Options, bin: &PathBuf) -> Result<(), String> {
    let mut server_args = vec!["--metrics_http=/metrics".to_string()];
    server_args.extend(options.server_args.iter().cloned());
    let target = Target::spawn(
        bin,
        None,
        Auth::None,
        Transport::Ws,
        Broadcaster::Http,
        &server_args,
    )?;
    let shared = Arc::new(Shared::new(target.addr, options.streams, options.lifetime));
    println!(
        "soak: {} connections + {} watchers, {} streams at {}/s, firehose {}/s of {} B with {} \
         stalled readers, lifetime {:?}, for {:?} (server pid {})",
        options.connections,
        options.stalled,
        options.streams,
        options.rate,
        options.firehose_rate,
        options.firehose_bytes,
        options.stalled,
        options.lifetime,
        options.duration,
        target.pid
    );
    let mut tasks: Vec<JoinHandle<Result<(), String>>> = Vec::new();
    let ordinary: Vec<StreamId> = (0..options.streams).collect();
    tasks.push(tokio::spawn(publish(
        shared.clone(),
        target.broadcast_key.clone(),
        ordinary,
        options.rate,
        96,
    )));
    tasks.push(tokio::spawn(publish(
        shared.clone(),
        target.broadcast_key.clone(),
        vec![shared.firehose()],
        options.firehose_rate,
        options.firehose_bytes,
    )));
    tasks.push(tokio::spawn(stall(
        shared.clone(),
        options.stalled,
        options.stall_period,
    )));
    let clients = spawn_clients(&shared, options);

    let started = Instant::now();
    let mut samples = vec![Sample::take(&target, &shared, Duration::ZERO).await?];
    let mut ticker = tokio::time::interval_at(started + options.report_every, options.report_every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while started.elapsed() + options.report_every / 2 < options.duration {
        ticker.tick().await;
        let sample = Sample::take(&target, &shared, started.elapsed()).await?;
        sample.print(samples.last(), shared.take_error());
        samples.push(sample);
        if let Some(failed) = tasks.iter().position(|t| t.is_finished()) {
            let task = tasks.swap_remove(failed);
            let outcome = task.await.map_err(|e| e.to_string())?;
            return Err(format!(
                "a publisher stopped: {}",
                outcome.err().unwrap_or_default()
            ));
        }
    }
    // Every client leaves, checking what it is owed, while publishing goes on.
    shared.stop();
    let leaving = tokio::time::timeout(client::DRAIN * 2, async {
        for client in clients {
            let _ = client.await;
        }
    })
    .await;
    // The server closes its side as it notices each client gone: give it a moment.
    let settle = Instant::now() + Duration::from_secs(10);
    let settled = baseline(&samples).other_fds() + 64;
    let mut last = Sample::take(&target, &shared, started.elapsed()).await?;
    while last.fds as i64 > settled && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = Sample::take(&target, &shared, started.elapsed()).await?;
    }
    for task in tasks {
        task.abort();
    }
    last.print(samples.last(), shared.take_error());
    if leaving.is_err() {
        return Err(format!(
            "clients did not finish leaving within {:?}",
            client::DRAIN * 2
        ));
    }
    let verdict = Verdict::of(&samples, &last, options.connections + 2 * options.stalled);
    verdict.print();
    verdict.result()
}

/// Starts the healthy clients, spread over a ramp so that they do not all connect (and later
/// leave) at once.
fn spawn_clients(shared: &Arc<Shared>, options: &Options) -> Vec<JoinHandle<()>> {
    let total = options.connections + options.stalled;
    let ramp = (options.lifetime / 2).min(Duration::from_secs(30));
    (0..total)
        .map(|index| {
            let shared = shared.clone();
            let role = if index < options.connections {
                Role::Ordinary
            } else {
                Role::Watcher
            };
            let delay = ramp.mul_f64(index as f64 / total.max(1) as f64);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                client::run(shared, role, index as u64 + 1).await;
            })
        })
        .collect()
}

/// Publishes to `streams` in turn at `rate` per second, each publication numbered per stream
/// and padded to about `bytes`. Stops at the first failure.
async fn publish(
    shared: Arc<Shared>,
    key: Option<String>,
    streams: Vec<StreamId>,
    rate: f64,
    bytes: usize,
) -> Result<(), String> {
    if rate <= 0.0 || streams.is_empty() {
        return Ok(());
    }
    let mut publisher = HttpPublisher::connect(shared.addr, key).await?;
    let padding = "x".repeat(bytes.saturating_sub(48));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for turn in 0usize.. {
        ticker.tick().await;
        let stream = streams[turn % streams.len()];
        let state = &shared.streams[stream];
        let seq = state.sent.load(Ordering::Acquire) + 1;
        state.sent.store(seq, Ordering::Release);
        let data = format!(
            r#"{{"s":{stream},"i":{seq},"t":{},"p":"{padding}"}}"#,
            now_nanos()
        );
        let body = serde_json::json!({"stream": state.name, "data": data}).to_string();
        publisher
            .publish(body)
            .await
            .map_err(|e| format!("publication {seq} to {}: {e}", state.name))?;
        state.acked.store(seq, Ordering::Release);
        shared.counters.published.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Keeps `count` readers subscribed to the firehose that never read, replacing them every
/// `period`.
async fn stall(shared: Arc<Shared>, count: usize, period: Duration) -> Result<(), String> {
    if count == 0 {
        return Ok(());
    }
    let mut rng = Rng::new(0x5eed);
    loop {
        let mut stalled: Vec<Socket> = Vec::with_capacity(count);
        for _ in 0..count {
            match stalled_reader(&shared).await {
                Ok(socket) => stalled.push(socket),
                Err(error) => shared.note_error(format!("stalled reader: {error}")),
            }
        }
        shared
            .counters
            .stalled
            .store(stalled.len() as i64, Ordering::Relaxed);
        // Not all at the same moment every time.
        let jitter = rng.between(Duration::ZERO, period / 10);
        tokio::time::sleep(period + jitter).await;
        shared.counters.stalled.store(0, Ordering::Relaxed);
        drop(stalled);
    }
}

async fn stalled_reader(shared: &Shared) -> Result<Socket, String> {
    let mut ws = connect(shared.addr, "/cable").await?;
    expect_type(&mut ws, "welcome").await?;
    let identifier = shared.identifier(shared.firehose());
    let command = serde_json::json!({"command": "subscribe", "identifier": identifier});
    ws.send_text(&command.to_string()).await?;
    expect_type(&mut ws, "confirm_subscription").await?;
    Ok(ws)
}
