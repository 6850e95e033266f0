//! The `anycable-rs` binary: load the config, start the server, wait for a signal, drain;
//! or, as `anycable-rs doctor [flags]`, check the configuration (see `doctor`).

mod allocator;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anycable_rs::app;
use anycable_rs::config::{self, Config, Loaded};
use anycable_rs::open_files::OpenFiles;
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: HashMap<String, String> = std::env::vars().collect();
    let cwd = std::env::current_dir().unwrap_or_default();
    let doctor = args.first().is_some_and(|a| a == "doctor");
    let flags = if doctor { &args[1..] } else { &args[..] };
    let config = match config::load(flags, &env, &cwd) {
        Ok(Loaded::Run(config)) => config,
        Ok(Loaded::PrintConfig(text) | Loaded::Help(text) | Loaded::Version(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("Error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    if doctor {
        return runtime.block_on(anycable_rs::doctor::command(&config, &env));
    }
    for warning in &config.load.warnings {
        println!("{warning}");
    }
    if env
        .get("ANYCABLE_MEMORY_METRICS")
        .is_some_and(|v| v == "1" || v == "true")
    {
        println!("ANYCABLE_MEMORY_METRICS has no effect: there is no Go heap to report (mem_sys_bytes reports the resident memory)");
    }
    let unsupported = config.unsupported_settings();
    if !unsupported.is_empty() {
        for message in unsupported {
            eprintln!("Error: {message}");
        }
        eprintln!("Error: refusing to start with settings this version does not implement");
        return ExitCode::FAILURE;
    }
    anycable_rs::logging::init(&config.logging, &config.node_id);
    // Only `--debug` says so, as the reference does; `--log_level=debug` alone does not.
    if config.logging.debug {
        tracing::debug!("🔧 🔧 🔧 Debug mode is on 🔧 🔧 🔧");
    }
    runtime.block_on(run(*config))
}

async fn run(config: Config) -> ExitCode {
    tracing::info!(
        "Starting AnyCable {} (pid: {}, open file limit: {}, threads: {})",
        anycable_rs::config::VERSION,
        std::process::id(),
        OpenFiles::raise_soft_to_hard().soft_text(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    if let Some(path) = &config.load.config_file {
        tracing::info!("Using configuration from file: {}", path.display());
    }
    let running = match app::start(&config).await {
        Ok(running) => running,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let stop = async {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    // The second signal is watched by fresh handlers: tokio delivers each signal to every
    // registered stream, so these see the next one.
    let force = || -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async {
            let (Ok(mut terminate), Ok(mut interrupt)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    };
    let timeout = Duration::from_secs(config.app.shutdown_timeout_secs);
    let delay = Duration::from_secs(config.app.shutdown_delay_secs);
    match running.run_until(stop, force, timeout, delay).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            tracing::error!("stopped: {reason}");
            ExitCode::FAILURE
        }
    }
}
