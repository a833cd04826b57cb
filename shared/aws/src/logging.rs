//! Logging for the functions whose events carry secrets (the gate and changeset: a job's temporary artifact
//! credentials; approval: a Manual approval's token, a chat request's signed body): Lambda's default subscriber (JSON
//! with `AWS_LAMBDA_LOG_FORMAT=json`, the level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`), except that the
//! runtime's own TRACE line with the raw event is never enabled.

use lambda_runtime::tracing::subscriber::filter::{Directive, EnvFilter, LevelFilter};

/// The runtime's target that logs each raw event at TRACE level.
pub const RAW_EVENT_TARGET: &str = "lambda_runtime::layers::api_response";

/// The filter: the configured level, with the raw-event target capped at DEBUG whatever the level says.
pub fn filter(level: Option<&str>) -> EnvFilter {
    let level = level
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let cap: Directive = format!("{RAW_EVENT_TARGET}=debug")
        .parse()
        .unwrap_or_else(|_| LevelFilter::INFO.into());
    EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy()
        .add_directive(cap)
}

/// Installs the subscriber (once, at cold start).
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = lambda_runtime::tracing::subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter(level.as_deref()));
    if json {
        builder.json().init()
    } else {
        builder.init()
    }
}
