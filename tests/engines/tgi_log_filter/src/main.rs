//! Filters events the way the TGI launcher does and emits one of each kind that the
//! operator's LOG_LEVEL directive must hide or keep, each with a marker the test looks for.
//!
//! The filter is built as in launcher/src/main.rs, fn main (TGI v3.3.7): LOG_LEVEL
//! "warn"/"info"/"debug" map to fixed directives, any other value is parsed as an
//! EnvFilter directive with INFO as the default, and an unset LOG_LEVEL means "info".
//! Targets and span names are TGI's: the launcher's events and spans have the target
//! `text_generation_launcher` (its crate), the router's `text_generation_router` and
//! `text_generation_router_v3`.
//!
//! Usage: tgi_log_filter API_KEY; prints to stdout, no colours.

use std::thread;

use tracing::level_filters::LevelFilter;
use tracing::{debug, error, info, span, warn, Level};
use tracing_subscriber::EnvFilter;

const LAUNCHER: &str = "text_generation_launcher";

/// Stands in for the launcher's parsed CLI arguments, which it logs whole at INFO.
#[derive(Debug)]
#[allow(dead_code)] // read only through Debug
struct Args {
    model_id: String,
    api_key: Option<String>,
    marker: &'static str,
}

fn env_filter() -> EnvFilter {
    match std::env::var("LOG_LEVEL") {
        Ok(log_level) => {
            let log_level = match &log_level[..] {
                "warn" => "text_generation_launcher=warn,text_generation_router=warn",
                "info" => "text_generation_launcher=info,text_generation_router=info",
                "debug" => "text_generation_launcher=debug,text_generation_router=debug",
                log_level => log_level,
            };
            EnvFilter::builder()
                .with_default_directive(LevelFilter::INFO.into())
                .parse_lossy(log_level)
        }
        Err(_) => EnvFilter::new("info"),
    }
}

/// The launcher forwards a Python process's JSON log lines from a thread it spawns for
/// the process's stdout: that thread has no current span.
fn forwarded_from_python(info_marker: &'static str, warn_marker: &'static str) {
    thread::spawn(move || {
        info!(target: LAUNCHER, "{info_marker} forwarded Python INFO line");
        warn!(target: LAUNCHER, "{warn_marker} forwarded Python WARNING line");
    })
    .join()
    .unwrap();
}

fn main() {
    let api_key = std::env::args()
        .nth(1)
        .expect("usage: tgi_log_filter API_KEY");

    tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        .with_ansi(false)
        .compact()
        .init();

    // main(), outside any span: the Args dump, api_key included.
    let args = Args {
        model_id: "meta-llama/Llama-3.1-8B-Instruct".to_string(),
        api_key: Some(api_key),
        marker: "MARK_ARGS_DUMP",
    };
    info!(target: LAUNCHER, "{:#?}", args);

    // download_convert_model(): on the main thread, inside the "download" span.
    {
        let _span = span!(target: LAUNCHER, Level::INFO, "download").entered();
        info!(target: LAUNCHER, "MARK_DOWNLOAD_INFO Starting check and download process");
        debug!(target: LAUNCHER, "MARK_DOWNLOAD_DEBUG");
        forwarded_from_python("MARK_DOWNLOAD_PYTHON_INFO", "MARK_DOWNLOAD_PYTHON_WARN");
        error!(target: LAUNCHER, "MARK_DOWNLOAD_ERROR Download encountered an error");
    }

    // shard_manager(): on a thread of its own, inside the "shard-manager" span.
    thread::spawn(|| {
        let rank = 0;
        let _span = span!(target: LAUNCHER, Level::INFO, "shard-manager", rank = rank).entered();
        info!(target: LAUNCHER, "MARK_SHARD_INFO Starting shard");
        forwarded_from_python("MARK_SHARD_PYTHON_INFO", "MARK_SHARD_PYTHON_WARN");
        error!(target: LAUNCHER, "MARK_SHARD_ERROR Shard complete standard error output");
    })
    .join()
    .unwrap();

    // main() again, outside any span.
    info!(target: LAUNCHER, "MARK_LAUNCHER_INFO Starting Webserver");
    warn!(target: LAUNCHER, "MARK_LAUNCHER_WARN");
    error!(target: LAUNCHER, "MARK_LAUNCHER_ERROR");

    // A dependency's event, outside any span (the Hub client, for example).
    info!(target: "hf_hub", "MARK_OTHER_CRATE_INFO");

    // The router, a separate process reading the same LOG_LEVEL the same way
    // (router/src/logging.rs): its library crate and its v3 backend binary. Real targets
    // are module paths, which a directive naming the crate matches as a prefix.
    info!(target: "text_generation_router", "MARK_ROUTER_INFO");
    info!(target: "text_generation_router::server", "MARK_ROUTER_SERVER_INFO");
    info!(target: "text_generation_router_v3", "MARK_ROUTER_V3_INFO");
}
