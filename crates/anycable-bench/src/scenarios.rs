//! The benchmark scenarios.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anycable_rs::identity::issue_token;
use anycable_rs::streams::StreamVerifier;
use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;

use crate::client::{connect, now_nanos, subscribe};
use crate::fixture::{CHANNEL, CLIENT_TOKEN, SECRET, STREAM};
use crate::fleet::Fleet;
use crate::options::Options;
use crate::procfs::{kernel_slab_kib, rss_kib, CpuTime};
use crate::progress::Progress;
use crate::publisher::{stamped_publications, Publisher};
use crate::report::Report;
use crate::target::Target;

/// N idle subscribed connections: server memory per connection.
pub async fn idle(
    target: &Target,
    options: &Options,
    progress: &Progress,
) -> Result<Report, String> {
    let before = rss_kib(target.pid).ok_or("cannot read server RSS")?;
    progress.phase(format_args!(
        "connecting {} {} clients",
        options.connections,
        options.transport.name()
    ));
    let slab_before = kernel_slab_kib().ok_or("cannot read /proc/meminfo")?;
    let fleet = Fleet::start(target, options, 0).await?;
    // Let every connection go through a few ping rounds before measuring.
    progress.phase(format_args!(
        "holding {} connections for {:?}",
        fleet.len(),
        options.hold
    ));
    tokio::time::sleep(options.hold).await;
    let after = rss_kib(target.pid).ok_or("cannot read server RSS")?;
    let slab_after = kernel_slab_kib().ok_or("cannot read /proc/meminfo")?;
    let pings_before = fleet.pings();
    // Leak check: hold as long again, with pings flowing; memory must not grow beyond noise and
    // every connection must still be open.
    progress.phase(format_args!("leak check: holding {:?} more", options.hold));
    tokio::time::sleep(options.hold).await;
    let later = rss_kib(target.pid).ok_or("cannot read server RSS")?;
    let pings = fleet.pings() - pings_before;
    let open = fleet.open();
    let mut report = Report::new("idle");
    report.add("transport", options.transport.name());
    report.add("auth", options.auth.name());
    report.add("connections", fleet.len());
    report.add("rss_before_kib", before);
    report.add("rss_after_kib", after);
    report.add(
        "kib_per_connection",
        after.saturating_sub(before) as f64 / fleet.len().max(1) as f64,
    );
    report.add("rss_growth_while_idle_kib", later as i64 - after as i64);
    // Both ends of every connection are on this machine: half of the slab's growth is the
    // server's side (indicative: other processes allocate slab memory too).
    report.add(
        "kernel_slab_kib_per_connection",
        slab_after.saturating_sub(slab_before) as f64 / 2.0 / fleet.len().max(1) as f64,
    );
    report.add("pings_while_idle", pings);
    report.add("still_open", open);
    let allowed_growth = (after / 10).max(2048);
    if open != fleet.len() {
        return Err(format!(
            "{} of {} idle connections were closed",
            fleet.len() - open,
            fleet.len()
        ));
    }
    if pings == 0 {
        return Err("no pings reached idle connections".into());
    }
    if later > after + allowed_growth {
        return Err(format!("server RSS grew from {after} KiB to {later} KiB while idle (allowed {allowed_growth} KiB)"));
    }
    fleet.close();
    Ok(report)
}

/// Which way the messages went, first in the reports of the scenarios that publish.
fn add_paths(report: &mut Report, options: &Options) {
    report.add("transport", options.transport.name());
    report.add("broadcaster", options.broadcaster.name());
}

/// N subscribers on one stream, M messages at rate R.
pub async fn fanout(
    target: &Target,
    options: &Options,
    progress: &Progress,
) -> Result<Report, String> {
    let messages = options.messages;
    progress.phase(format_args!(
        "connecting {} {} subscribers",
        options.connections,
        options.transport.name()
    ));
    let fleet = Fleet::start(target, options, messages).await?;
    let mut publisher = Publisher::connect(target, options.broadcaster).await?;
    let cpu_before = CpuTime::read(target.pid).ok_or("cannot read server CPU time")?;
    let started = Instant::now();
    progress.phase(format_args!(
        "publishing {messages} messages at {}/s over {}",
        options.rate,
        options.broadcaster.name()
    ));
    publish_at_rate(&mut publisher, 0..messages, options.rate).await?;
    let expected = (fleet.len() * messages) as u64;
    progress.phase("waiting for the last deliveries");
    fleet.wait_for(expected, Duration::from_secs(10)).await;
    let elapsed = started.elapsed();
    let cpu = CpuTime::read(target.pid)
        .ok_or("cannot read server CPU time")?
        .since(cpu_before);
    let stats = fleet.stats(0..messages);
    let mut report = Report::new("fanout");
    add_paths(&mut report, options);
    report.add("subscribers", fleet.len());
    report.add("messages", messages);
    report.add("rate_per_s", options.rate);
    report.add("deliveries", stats.deliveries);
    report.add("losses", stats.losses);
    report.add("duplicates", stats.duplicates);
    report.add("latency_p50_ms", stats.p50_ms);
    report.add("latency_p99_ms", stats.p99_ms);
    report.add("latency_max_ms", stats.max_ms);
    report.add("completion_p50_ms", stats.completion_p50_ms);
    report.add("completion_p99_ms", stats.completion_p99_ms);
    report.add("completion_max_ms", stats.completion_max_ms);
    report.add("elapsed_s", elapsed.as_secs_f64());
    let per_delivery = |seconds: f64| seconds * 1e6 / stats.deliveries.max(1) as f64;
    report.add("server_cpu_us_per_delivery", per_delivery(cpu.total()));
    report.add("server_user_cpu_us_per_delivery", per_delivery(cpu.user));
    fleet.close();
    Ok(report)
}

/// Steps the publish rate up until p99 exceeds 500 ms or a message is lost.
pub async fn throughput(
    target: &Target,
    options: &Options,
    progress: &Progress,
) -> Result<Report, String> {
    let rates: Vec<f64> = options.throughput_rates.clone();
    let step = options.step;
    let per_step: Vec<usize> = rates
        .iter()
        .map(|r| (r * step.as_secs_f64()).ceil() as usize)
        .collect();
    let capacity = per_step.iter().sum();
    progress.phase(format_args!(
        "connecting {} {} subscribers",
        options.connections,
        options.transport.name()
    ));
    let fleet = Fleet::start(target, options, capacity).await?;
    let mut publisher = Publisher::connect(target, options.broadcaster).await?;
    let mut report = Report::new("throughput");
    add_paths(&mut report, options);
    report.add("subscribers", fleet.len());
    let mut best = 0.0_f64;
    let mut first_seq = 0;
    let mut delivered_before = 0u64;
    for (rate, count) in rates.iter().zip(per_step) {
        let seqs = first_seq..first_seq + count;
        let started = Instant::now();
        publish_at_rate(&mut publisher, seqs.clone(), *rate).await?;
        let expected = delivered_before + (fleet.len() * count) as u64;
        fleet.wait_for(expected, Duration::from_secs(5)).await;
        // From the first publication to the last delivery, so a backlog drained after the
        // publisher stopped does not count as throughput.
        let elapsed = started.elapsed().as_secs_f64();
        let stats = fleet.stats(seqs.clone());
        delivered_before += stats.deliveries;
        let achieved = stats.deliveries as f64 / elapsed;
        let clean = stats.losses == 0 && stats.p99_ms <= 500.0;
        progress.phase(format_args!(
            "rate {rate:>8.0} msg/s: {achieved:>12.0} deliveries/s, p99 {:.1} ms, losses {}{}",
            stats.p99_ms,
            stats.losses,
            if clean { "" } else { "  <- limit" }
        ));
        if !clean {
            break;
        }
        best = best.max(achieved);
        first_seq = seqs.end;
    }
    report.add("best_clean_deliveries_per_s", best);
    fleet.close();
    Ok(report)
}

/// Connections per second to a confirmed subscription: with a JWT and a signed stream, or
/// authenticated and subscribed by the target's RPC backend.
pub async fn connect_rate(
    target: &Target,
    options: &Options,
    progress: &Progress,
) -> Result<Report, String> {
    let (path, identifier) = match &target.backend {
        Some(_) => (format!("/cable?{CLIENT_TOKEN}"), CHANNEL.to_string()),
        None => {
            let token = issue_token(SECRET, r#"{"user":"bench"}"#, None);
            let signed = StreamVerifier::new(Some(SECRET))
                .ok_or("empty secret")?
                .sign(STREAM);
            let identifier =
                serde_json::json!({"channel": "$pubsub", "signed_stream_name": signed});
            (format!("/cable?jid={token}"), identifier.to_string())
        }
    };
    let gate = Arc::new(Semaphore::new(options.concurrency));
    progress.phase(format_args!(
        "opening {} connections, {} handshakes at a time",
        options.connections, options.concurrency
    ));
    let cpu_before = CpuTime::read(target.pid).ok_or("cannot read server CPU time")?;
    let started = Instant::now();
    let mut handles = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        let gate = gate.clone();
        let (addr, path, identifier) = (target.addr, path.clone(), identifier.clone());
        handles.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let begun = Instant::now();
            let mut ws = connect(addr, &path).await?;
            subscribe(&mut ws, &identifier).await?;
            Ok::<_, String>((begun.elapsed(), ws))
        }));
    }
    let mut times = Vec::with_capacity(handles.len());
    let mut sockets = Vec::with_capacity(handles.len());
    let mut failures = 0;
    for handle in handles {
        match handle.await.map_err(|e| e.to_string())? {
            Ok((time, ws)) => {
                times.push(time);
                sockets.push(ws);
            }
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    eprintln!("connect failed: {error}");
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = CpuTime::read(target.pid)
        .ok_or("cannot read server CPU time")?
        .since(cpu_before);
    times.sort_unstable();
    let p99 = times
        .get((times.len() * 99 / 100).min(times.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    let mut report = Report::new("connect");
    let mode = target
        .backend
        .as_ref()
        .map_or("standalone", |b| b.protocol.name());
    report.add("mode", mode);
    report.add("transport", options.transport.name());
    report.add("connections", times.len());
    report.add("failures", failures);
    report.add("connections_per_s", times.len() as f64 / elapsed);
    report.add("p99_ms_to_confirmed", p99.as_secs_f64() * 1000.0);
    // The rate depends on what else runs on the machine, the server's CPU time much less.
    let per_connection = |cpu: CpuTime| cpu.total() * 1e6 / times.len().max(1) as f64;
    report.add("server_cpu_us_per_connection", per_connection(cpu));
    let mut problems = Vec::new();
    if failures > 0 {
        problems.push(format!(
            "{failures} of {} connections failed",
            options.connections
        ));
    }
    if let Some(backend) = &target.backend {
        let calls = backend.calls();
        report.add("rpc_connect_calls", calls.connect);
        report.add("rpc_command_calls", calls.command);
        report.add("rpc_refused_calls", calls.refused);
        // The backend started with this scenario, so all its time so far went to this run.
        let backend_cpu = backend.cpu().ok_or("cannot read the backend's CPU time")?;
        report.add("backend_cpu_us_per_connection", per_connection(backend_cpu));
        let expected = options.connections as u64;
        if calls.connect != expected || calls.command != expected || calls.refused > 0 {
            problems.push(format!(
                "the backend answered {} Connect and {} Command calls ({} refused) for {expected} connections",
                calls.connect, calls.command, calls.refused
            ));
        }
    }
    drop(sockets);
    if !problems.is_empty() {
        report.print_table();
        return Err(problems.join("; "));
    }
    Ok(report)
}

/// Longest gap between two publish requests: at higher rates the messages due are sent together
/// as one batch, as applications publishing at high rates do, so that the HTTP round trip
/// per request does not cap the rate.
const PUBLISH_TICK: Duration = Duration::from_millis(10);

/// Publishes `seqs` spread evenly at `rate` messages per second.
async fn publish_at_rate(
    publisher: &mut Publisher,
    seqs: std::ops::Range<usize>,
    rate: f64,
) -> Result<(), String> {
    let rate = rate.max(0.001);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate).min(PUBLISH_TICK));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut next = seqs.start;
    while next < seqs.end {
        ticker.tick().await;
        let due = seqs.start + (started.elapsed().as_secs_f64() * rate) as usize + 1;
        let upto = due.min(seqs.end);
        if upto <= next {
            continue;
        }
        let body = stamped_publications(STREAM, next as u64..upto as u64, now_nanos());
        publisher.publish(body).await?;
        next = upto;
    }
    Ok(())
}
