//! Tracing set-up shared by the binaries.

use crate::config::{LogFormat, TelemetryConfig};
use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber. Safe to call more than once (later calls are no-ops), which tests rely on.
pub fn init(config: &TelemetryConfig) {
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Cancels `token` on SIGTERM or Ctrl-C: the first phase of a graceful shutdown. The handlers are installed
/// when this is called, not when the returned future is first polled: a spawned task may wait to be scheduled,
/// and a SIGTERM in that window would kill the process with the default action instead of draining it (an
/// executor cancelled right after it started would then report nothing). Call it inside the runtime, first.
pub fn cancel_on_signal(token: tokio_util::sync::CancellationToken) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    #[cfg(unix)]
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
                match signal {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(err) => {
                        tracing::error!(cause = %err, "cannot listen for {name}");
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                () = wait(terminate, "SIGTERM") => {},
                () = wait(interrupt, "SIGINT") => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested");
        token.cancel();
    }
}

/// Installs aws-lc-rs as the process's TLS crypto provider. kube, reqwest, sqlx and the AWS SDK all use rustls;
/// with more than one provider compiled in, rustls refuses to guess, so every binary calls this first.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A `/metrics` answer in the format the scraper asked for: OpenMetrics when its `Accept` names it (Prometheus
/// does), else the Prometheus text format 0.0.4 (older scrapers, curl, `promtool check metrics`). `openmetrics`
/// is the registry's OpenMetrics encoding.
pub fn metrics_response(accept: Option<&str>, openmetrics: String) -> (&'static str, String) {
    if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        (OPENMETRICS_CONTENT_TYPE, openmetrics)
    } else {
        (PROMETHEUS_TEXT_CONTENT_TYPE, prometheus_text(&openmetrics))
    }
}

/// The Prometheus text format 0.0.4 of an OpenMetrics text: a counter family's HELP and TYPE lines name it with
/// its `_total` suffix (as its samples do), `# UNIT` and `# EOF` lines go.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line.starts_with("# HELP ") {
            if let Some(pending) = help.replace(line) {
                out.push_str(pending);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let counter = kind == "counter" && !name.ends_with("_total");
            if let Some(pending) = help.take() {
                match pending.strip_prefix("# HELP ").and_then(|h| h.strip_prefix(name)) {
                    Some(text) if counter => out.push_str(&format!("# HELP {name}_total{text}\n")),
                    _ => {
                        out.push_str(pending);
                        out.push('\n');
                    }
                }
            }
            match kind {
                "counter" if counter => out.push_str(&format!("# TYPE {name}_total counter\n")),
                "unknown" => out.push_str(&format!("# TYPE {name} untyped\n")),
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if let Some(pending) = help.take() {
            out.push_str(pending);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(pending) = help {
        out.push_str(pending);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_in_the_prometheus_text_format() {
        let open = "# HELP app_requests Requests handled.\n# TYPE app_requests counter\napp_requests_total{code=\"200\"} 3\n\
                    # HELP app_open Open streams.\n# TYPE app_open gauge\napp_open 1\n\
                    # HELP app_wait_seconds Wait.\n# TYPE app_wait_seconds histogram\n# UNIT app_wait_seconds seconds\n\
                    app_wait_seconds_bucket{le=\"+Inf\"} 1\napp_wait_seconds_sum 0.5\napp_wait_seconds_count 1\n# EOF\n";
        let text = prometheus_text(open);
        assert_eq!(
            text,
            "# HELP app_requests_total Requests handled.\n# TYPE app_requests_total counter\napp_requests_total{code=\"200\"} 3\n\
             # HELP app_open Open streams.\n# TYPE app_open gauge\napp_open 1\n\
             # HELP app_wait_seconds Wait.\n# TYPE app_wait_seconds histogram\n\
             app_wait_seconds_bucket{le=\"+Inf\"} 1\napp_wait_seconds_sum 0.5\napp_wait_seconds_count 1\n"
        );
    }

    #[test]
    fn the_scraper_chooses_the_format() {
        let open = "# HELP a_b B.\n# TYPE a_b counter\na_b_total 1\n# EOF\n".to_owned();
        let prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(metrics_response(Some(prometheus), open.clone()).0, OPENMETRICS_CONTENT_TYPE);
        let (kind, body) = metrics_response(None, open);
        assert_eq!(kind, PROMETHEUS_TEXT_CONTENT_TYPE);
        assert!(body.starts_with("# HELP a_b_total B.") && !body.contains("# EOF"), "{body}");
    }
}
