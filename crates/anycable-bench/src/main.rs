//! `anycable-bench`: the project's load benchmark. It starts the server (or uses a running one),
//! drives it over loopback with Action Cable clients (WebSocket or SSE) and publications (HTTP
//! or Redis), and prints figures as a table and, with `--json`, as JSON. Every scenario stops
//! by itself.

mod backend;
mod buffer;
mod client;
mod fixture;
mod fleet;
mod options;
mod procfs;
mod progress;
mod publisher;
mod redis_publisher;
mod report;
mod scenarios;
mod soak;
mod sse;
mod storm;
mod target;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use backend::{Backend, Capacity, Protocol};
use options::{Auth, Broadcaster, Flags, Options, Transport};
use progress::Progress;
use report::Report;
use target::Target;

const USAGE: &str =
    "usage: anycable-bench <idle|fanout|throughput|connect|storm|all> [options] [-- server args]
       anycable-bench soak [options] [-- server args]   (a long run under churn; soak --help)

  --quick                small sizes, for CI (checks that every scenario works)
  --connections N        clients (defaults: idle 10000, fanout 5000, throughput 1000, connect 10000,
                         storm 10000)
  --messages M           fanout: messages to publish (200)
  --rate R               fanout: messages per second (20)
  --rates A,B,...        throughput: publish rates to step through (msg/s)
  --step SECS            throughput: seconds per rate step (2)
  --hold SECS            idle: seconds to hold the connections before measuring (5)
  --concurrency C        connection handshakes in flight (100)
  --transport ws|sse     idle, fanout, throughput: the clients' transport (ws); sse starts the
                         server with --sse and reads GET /events?stream=... (connect is ws only)
  --broadcaster http|redis
                         fanout, throughput: publish through POST /_broadcast (http) or with
                         PUBLISH on Redis at 127.0.0.1:6379 (the server gets
                         --broadcast_adapter=redis and a channel of its own); unless
                         these two are given, `all` also runs fanout over sse and redis
  --rpc grpc|http        connect: authenticate through an in-process RPC backend instead of
                         JWT and signed streams (`all` runs connect in all three modes)
  --backend-capacity N   storm: Connect calls the backend runs at once; more are refused with
                         RESOURCE_EXHAUSTED (200)
  --backend-latency-ms L storm: how long each Connect takes (5)
  --client-timeout SECS  storm: a client waiting this long for its welcome closes and retries (6)
  --auth noauth|jwt|public|rpc
                         idle over WebSocket: how the server authenticates the clients (noauth:
                         --noauth --norpc; jwt: a JWT each; public: --public with an RPC host
                         nothing calls; rpc: the in-process gRPC backend, with identifiers,
                         connection and channel state); `all` runs idle in every mode
  --json                 also print the figures as one JSON document
  --server-bin PATH      server binary to start (default: anycable-rs next to this binary)
  --server ADDR          use a running server instead (with --server-pid and --broadcast-key)
  --server-pid PID       its process id, for RSS and CPU figures
  --broadcast-key KEY    its broadcast key";

/// One scenario to run, with what its server and clients use.
struct Run {
    scenario: &'static str,
    rpc: Option<Protocol>,
    auth: Auth,
    transport: Transport,
    broadcaster: Broadcaster,
}

struct Cli {
    scenario: String,
    quick: bool,
    json: bool,
    sizes: Sizes,
    concurrency: usize,
    rpc: Option<Protocol>,
    auth: Option<Auth>,
    transport: Option<Transport>,
    broadcaster: Option<Broadcaster>,
    server: ServerChoice,
}

/// Scenario sizes given on the command line (`None`: the scenario's default, full or quick).
#[derive(Default)]
struct Sizes {
    connections: Option<usize>,
    messages: Option<usize>,
    rate: Option<f64>,
    rates: Option<Vec<f64>>,
    step: Option<f64>,
    hold: Option<f64>,
    backend_capacity: Option<u64>,
    backend_latency_ms: Option<f64>,
    client_timeout: Option<f64>,
}

/// Which server is measured: one started per scenario (`bin` with `args`), or one already
/// running (`addr`, `pid`, its broadcast key).
#[derive(Default)]
struct ServerChoice {
    bin: Option<PathBuf>,
    args: Vec<String>,
    addr: Option<SocketAddr>,
    pid: Option<u32>,
    broadcast_key: Option<String>,
}

fn parse_cli(args: &[String]) -> Result<Cli, String> {
    let mut cli = Cli {
        scenario: args.first().cloned().ok_or(USAGE)?,
        quick: false,
        json: false,
        sizes: Sizes::default(),
        concurrency: 100,
        rpc: None,
        auth: None,
        transport: None,
        broadcaster: None,
        server: ServerChoice::default(),
    };
    let mut flags = Flags::new(&args[1..]);
    while let Some(name) = flags.next_flag() {
        match name {
            "--" => {
                cli.server.args = flags.remaining();
                break;
            }
            "--quick" => cli.quick = true,
            "--json" => cli.json = true,
            "--connections" => cli.sizes.connections = Some(flags.number()? as usize),
            "--messages" => cli.sizes.messages = Some(flags.number()? as usize),
            "--rate" => cli.sizes.rate = Some(flags.number()?),
            "--rates" => {
                let list = flags.value()?;
                cli.sizes.rates = Some(
                    list.split(',')
                        .map(|r| flags.parse_number(r))
                        .collect::<Result<_, _>>()?,
                );
            }
            "--step" => cli.sizes.step = Some(flags.number()?),
            "--hold" => cli.sizes.hold = Some(flags.number()?),
            "--backend-capacity" => cli.sizes.backend_capacity = Some(flags.number()? as u64),
            "--backend-latency-ms" => cli.sizes.backend_latency_ms = Some(flags.number()?),
            "--client-timeout" => cli.sizes.client_timeout = Some(flags.number()?),
            "--concurrency" => cli.concurrency = flags.number()? as usize,
            "--rpc" => cli.rpc = Some(Protocol::parse(&flags.value()?)?),
            "--auth" => cli.auth = Some(Auth::parse(&flags.value()?)?),
            "--transport" => cli.transport = Some(Transport::parse(&flags.value()?)?),
            "--broadcaster" => cli.broadcaster = Some(Broadcaster::parse(&flags.value()?)?),
            "--server-bin" => cli.server.bin = Some(flags.value()?.into()),
            "--server" => {
                cli.server.addr = Some(
                    flags
                        .value()?
                        .parse()
                        .map_err(|e| format!("--server: {e}"))?,
                )
            }
            "--server-pid" => cli.server.pid = Some(flags.number()? as u32),
            "--broadcast-key" => cli.server.broadcast_key = Some(flags.value()?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    Ok(cli)
}

impl Cli {
    fn options(&self, run: &Run) -> Options {
        let default_connections = match (run.scenario, self.quick) {
            (_, true) => 200,
            ("idle" | "connect" | "storm", false) => 10_000,
            ("fanout", false) => 5_000,
            _ => 1_000,
        };
        let default_rates = if self.quick {
            vec![100.0, 400.0]
        } else {
            vec![
                100.0, 200.0, 400.0, 800.0, 1200.0, 1600.0, 2400.0, 3200.0, 4800.0,
            ]
        };
        Options {
            connections: self.sizes.connections.unwrap_or(default_connections),
            messages: self
                .sizes
                .messages
                .unwrap_or(if self.quick { 20 } else { 200 }),
            rate: self
                .sizes
                .rate
                .unwrap_or(if self.quick { 50.0 } else { 20.0 }),
            throughput_rates: self.sizes.rates.clone().unwrap_or(default_rates),
            step: Duration::from_secs_f64(self.sizes.step.unwrap_or(if self.quick {
                0.5
            } else {
                2.0
            })),
            hold: Duration::from_secs_f64(self.sizes.hold.unwrap_or(if self.quick {
                1.0
            } else {
                5.0
            })),
            concurrency: self.concurrency,
            transport: run.transport,
            broadcaster: run.broadcaster,
            client_timeout: Duration::from_secs_f64(self.sizes.client_timeout.unwrap_or(6.0)),
            storm_limit: Duration::from_secs(if self.quick { 60 } else { 300 }),
            auth: run.auth,
        }
    }

    /// One fresh server per scenario, so figures do not depend on what ran before.
    async fn target(&self, run: &Run) -> Result<Target, String> {
        if run.broadcaster == Broadcaster::Redis {
            // Fail before connecting thousands of clients when Redis is not there.
            redis_publisher::open().await?;
        }
        if let Some(addr) = self.server.addr {
            if run.rpc.is_some() {
                return Err("--rpc starts its own server, not with --server".into());
            }
            let pid = self.server.pid.ok_or("--server needs --server-pid")?;
            return Ok(Target::existing(
                addr,
                pid,
                self.server.broadcast_key.clone(),
            ));
        }
        let bin = match &self.server.bin {
            Some(bin) => bin.clone(),
            None => std::env::current_exe()
                .map_err(|e| e.to_string())?
                .with_file_name("anycable-rs"),
        };
        let mut args = self.server.args.clone();
        let backend = match (run.scenario, run.rpc) {
            ("storm", _) => {
                args.push(format!("--metrics_http={}", storm::METRICS_PATH));
                let capacity = Capacity::new(
                    self.sizes.backend_capacity.unwrap_or(200),
                    Duration::from_secs_f64(self.sizes.backend_latency_ms.unwrap_or(5.0) / 1000.0),
                );
                Some(Backend::start_with(Protocol::Grpc, Some(capacity))?)
            }
            (_, rpc) => rpc.map(Backend::start).transpose()?,
        };
        Target::spawn(
            &bin,
            backend,
            run.auth,
            run.transport,
            run.broadcaster,
            &args,
        )
    }

    /// The scenarios to run, each with the RPC backend its server authenticates through and
    /// the transport and broadcaster it uses.
    fn runs(&self) -> Result<Vec<Run>, String> {
        let transport = self.transport.unwrap_or(Transport::Ws);
        let broadcaster = self.broadcaster.unwrap_or(Broadcaster::Http);
        let run = |scenario, rpc, transport, broadcaster| Run {
            scenario,
            rpc,
            auth: Auth::None,
            transport,
            broadcaster,
        };
        // Idle WebSocket connections authenticated as `auth` (through the gRPC backend for rpc).
        let idle_as = |auth| Run {
            rpc: (auth == Auth::Rpc).then_some(Protocol::Grpc),
            auth,
            ..run("idle", None, Transport::Ws, Broadcaster::Http)
        };
        // Each option where it applies: only fanout and throughput publish, and connect
        // measures WebSocket handshakes.
        let fitted = |scenario: &'static str, rpc| {
            let transport = if matches!(scenario, "connect" | "storm") {
                Transport::Ws
            } else {
                transport
            };
            let publishes = matches!(scenario, "fanout" | "throughput");
            let broadcaster = if publishes {
                broadcaster
            } else {
                Broadcaster::Http
            };
            run(scenario, rpc, transport, broadcaster)
        };
        let standalone = ["idle", "fanout", "throughput", "connect"];
        match (self.scenario.as_str(), self.rpc) {
            ("connect", _) if transport == Transport::Sse => Err(
                "connect measures WebSocket handshakes only; --transport sse applies to idle, fanout and throughput".into(),
            ),
            ("connect" | "idle", _) if broadcaster == Broadcaster::Redis => Err(
                "--broadcaster applies to fanout and throughput (the scenarios that publish)".into(),
            ),
            (scenario, _) if self.auth.is_some() && (transport == Transport::Sse || !matches!(scenario, "idle" | "all")) => Err(
                "--auth applies to idle over WebSocket".into(),
            ),
            (_, _) if self.auth.is_some() && self.server.addr.is_some() => Err(
                "--auth starts its own server, not with --server".into(),
            ),
            ("idle", None) if transport == Transport::Ws => {
                Ok(vec![idle_as(self.auth.unwrap_or(Auth::None))])
            }
            ("connect", rpc) => Ok(vec![fitted("connect", rpc)]),
            ("storm", None | Some(Protocol::Grpc)) if self.server.addr.is_none() => {
                Ok(vec![fitted("storm", Some(Protocol::Grpc))])
            }
            ("storm", _) => Err(
                "storm starts its own server and its gRPC backend (no --server, no --rpc http)".into(),
            ),
            ("all", None) => {
                // A running server's mode and endpoints were chosen by whoever started it.
                let own_server = self.server.addr.is_none();
                let mut runs = Vec::new();
                // Idle in every authentication mode (or the one given), and over SSE.
                if own_server && transport == Transport::Ws {
                    let auths = self.auth.map_or(Auth::ALL.to_vec(), |auth| vec![auth]);
                    runs.extend(auths.into_iter().map(idle_as));
                    if self.transport.is_none() {
                        runs.push(run("idle", None, Transport::Sse, Broadcaster::Http));
                    }
                } else {
                    runs.push(fitted("idle", None));
                }
                runs.extend(standalone[1..].iter().map(|&s| fitted(s, None)));
                if own_server {
                    runs.push(fitted("connect", Some(Protocol::Grpc)));
                    runs.push(fitted("connect", Some(Protocol::Http)));
                    runs.push(fitted("storm", Some(Protocol::Grpc)));
                    // So that every path is exercised, fan-out also through what was not chosen.
                    if self.transport.is_none() {
                        runs.push(run("fanout", None, Transport::Sse, broadcaster));
                    }
                    if self.broadcaster.is_none() {
                        runs.push(run("fanout", None, transport, Broadcaster::Redis));
                    }
                }
                Ok(runs)
            }
            (one, None) => standalone
                .into_iter()
                .find(|&s| s == one)
                .map(|s| vec![fitted(s, None)])
                .ok_or(format!("unknown scenario {one}\n{USAGE}")),
            (_, Some(_)) => Err("--rpc applies to the connect scenario only".into()),
        }
    }
}

/// The sandbox caps open files per process; use all of the hard limit.
fn raise_open_files_limit() {
    anycable_rs::open_files::OpenFiles::raise_soft_to_hard();
}

/// A multi-threaded runtime for the clients, publishers and measurements.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("soak") {
        raise_open_files_limit();
        let outcome = runtime().and_then(|runtime| soak::main(&args[1..], &runtime));
        return match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("{message}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = match parse_cli(&args) {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runs = match cli.runs() {
        Ok(runs) => runs,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    raise_open_files_limit();
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let mut reports: Vec<Report> = Vec::new();
    for run in runs {
        let options = cli.options(&run);
        let scenario = run.scenario;
        let progress = Progress::new(scenario);
        let result = runtime.block_on(async {
            progress.phase("starting the server");
            let target = cli.target(&run).await?;
            let run = async {
                match scenario {
                    "idle" => scenarios::idle(&target, &options, &progress).await,
                    "fanout" => scenarios::fanout(&target, &options, &progress).await,
                    "throughput" => scenarios::throughput(&target, &options, &progress).await,
                    "storm" => storm::storm(&target, &options, &progress).await,
                    _ => scenarios::connect_rate(&target, &options, &progress).await,
                }
            };
            // Every scenario stops by itself, even when the server stops answering.
            tokio::time::timeout(Duration::from_secs(600), run)
                .await
                .map_err(|_| format!("{scenario}: gave up after 10 minutes"))?
        });
        match result {
            Ok(report) => {
                progress.phase("done");
                report.print_table();
                reports.push(report);
            }
            Err(error) => {
                eprintln!("{scenario} failed: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    if cli.json {
        let all: Vec<_> = reports.iter().map(Report::to_json).collect();
        println!("{}", serde_json::Value::Array(all));
    }
    ExitCode::SUCCESS
}
