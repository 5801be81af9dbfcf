//! The docs match the code: the settings reference is generated from the binaries' own argument definitions,
//! the OpenAPI document from the handlers, and every Redis key the code builds or writes is in docs/redis.md.
//! Run with `FLOWLIKE_UPDATE_DOCS=1` to rewrite the generated parts after changing the code.

use clap::CommandFactory;
use flow_like_shared::protocol::keys::Keys;
use flow_like_test_harness::{ADMIN_TOKEN, TestApi};
use flow_like_tests::fixtures::sample_workflow;
use serde_json::json;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn updating() -> bool {
    std::env::var_os("FLOWLIKE_UPDATE_DOCS").is_some()
}

/// Replaces the text between `<!-- begin NAME -->` and `<!-- end NAME -->`, or checks it is current.
fn check_generated(path: &Path, name: &str, generated: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (begin, end) = (format!("<!-- begin {name} -->\n"), format!("<!-- end {name} -->"));
    let start = text.find(&begin).unwrap_or_else(|| panic!("{} has no {begin:?} marker", path.display())) + begin.len();
    let stop = text.find(&end).unwrap_or_else(|| panic!("{} has no {end:?} marker", path.display()));
    if updating() {
        let updated = format!("{}{generated}{}", &text[..start], &text[stop..]);
        std::fs::write(path, updated).unwrap();
    } else {
        assert_eq!(
            &text[start..stop],
            generated,
            "{} is out of date with the code: run FLOWLIKE_UPDATE_DOCS=1 cargo test -p flow-like-tests --test docs",
            path.display()
        );
    }
}

/// One markdown table of a command's settings that have an environment variable.
fn settings_table(command: &clap::Command) -> String {
    let mut out = String::from("| Variable | Flag | Default | Meaning |\n|---|---|---|---|\n");
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env() else { continue };
        let default: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        let default = match default.join(",") {
            _ if default.is_empty() => "(none)".to_string(),
            joined if joined.is_empty() => "(empty)".to_string(),
            joined => format!("`{joined}`"),
        };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default().replace('|', "\\|");
        out.push_str(&format!(
            "| `{}` | `--{}` | {} | {} |\n",
            env.to_string_lossy(),
            arg.get_long().unwrap_or_default(),
            default,
            help
        ));
    }
    out
}

fn subcommand(command: &clap::Command, name: &str) -> clap::Command {
    command.find_subcommand(name).unwrap_or_else(|| panic!("no subcommand {name}")).clone()
}

#[test]
fn the_settings_reference_is_generated_from_the_code() {
    let api = flow_like_api::config::Cli::command();
    let dispatcher = flow_like_dispatcher::config::Cli::command();
    let executor = flow_like_executor::config::ExecutorConfig::command();
    api.clone().debug_assert();
    dispatcher.clone().debug_assert();
    executor.clone().debug_assert();
    let generated = format!(
        "### flow-like-api serve\n\n{}\n### flow-like-api migrate\n\n{}\n### flow-like-dispatcher run\n\n{}\n### flow-like-executor\n\n{}\n### Every binary\n\n{}",
        settings_table(&subcommand(&api, "serve")),
        settings_table(&subcommand(&api, "migrate")),
        settings_table(&subcommand(&dispatcher, "run")),
        settings_table(&executor),
        settings_table(&api),
    );
    check_generated(&repo().join("docs/configuration.md"), "settings", &generated);
}

#[test]
fn the_openapi_document_is_current() {
    let generated = serde_json::to_string_pretty(&flow_like_api::openapi::document()).unwrap() + "\n";
    let path = repo().join("docs/openapi.json");
    if updating() {
        std::fs::write(&path, &generated).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == generated,
        "docs/openapi.json is out of date: run FLOWLIKE_UPDATE_DOCS=1 cargo test -p flow-like-tests --test docs"
    );
}

/// The key patterns in docs/redis.md's table, as (pattern text, matcher).
fn documented_key_patterns() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("docs/redis.md")).unwrap();
    text.lines()
        .filter(|line| line.starts_with("| `{prefix}"))
        .filter_map(|line| line.split('`').nth(1).map(str::to_string))
        .collect()
}

/// Whether `key` (with prefix `prefix`) matches a documented pattern; `{name}` stands for one or more characters.
fn matches(pattern: &str, key: &str, prefix: &str) -> bool {
    let pattern = pattern.replace("{prefix}", prefix);
    let parts: Vec<&str> = pattern.split(['{', '}']).collect();
    // Literal parts are at even indexes, placeholders at odd ones.
    let literals: Vec<&str> = parts.iter().step_by(2).copied().collect();
    fn go(key: &str, literals: &[&str], first: bool) -> bool {
        match literals {
            [] => key.is_empty(),
            [only] if !first => key.ends_with(only) && key.len() > only.len(),
            [head, rest @ ..] => {
                if first {
                    key.strip_prefix(head).is_some_and(|k| go(k, rest, false))
                } else {
                    // A placeholder (1+ chars) then `head`.
                    (1..=key.len())
                        .filter(|i| key.is_char_boundary(*i))
                        .any(|i| key[i..].strip_prefix(head).is_some_and(|k| go(k, rest, false)))
                }
            }
        }
    }
    go(key, &literals, true)
}

#[test]
fn every_key_builder_is_documented() {
    let patterns = documented_key_patterns();
    assert!(patterns.len() >= 10, "{patterns:?}");
    let built = Keys::new("flowlike").catalogue();
    for key in built {
        assert!(patterns.iter().any(|p| matches(p, &key, "flowlike")), "{key} is not documented in docs/redis.md");
    }
    assert!(!patterns.iter().any(|p| matches(p, "flowlike:nonsense:x", "flowlike")));
}

#[tokio::test]
async fn every_key_the_api_and_reconciler_write_is_documented() {
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    for priority in [1, 5] {
        let response = api
            .post_json("/api/v1/executions", &key, &json!({"workflow": sample_workflow(), "priority": priority}))
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    api.http
        .put(api.url("/api/v1/tenants/acme/limits"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"concurrency_limit": 2, "workflow_limit": 1}))
        .send()
        .await
        .unwrap();
    let mut reconciler = api.reconciler(std::time::Duration::ZERO);
    reconciler.pass().await.unwrap();
    let patterns = documented_key_patterns();
    let written = api.redis_keys().await.unwrap();
    assert!(written.len() >= 5, "{written:?}");
    for key in written {
        assert!(
            patterns.iter().any(|p| matches(p, &key, api.keys.prefix())),
            "{key} is written by the code but not documented in docs/redis.md"
        );
    }
}

/// Every metric family the API and the dispatcher expose is listed in docs/metrics.md, with a HELP line.
#[tokio::test]
async fn every_metric_is_documented() {
    let doc = std::fs::read_to_string(repo().join("docs/metrics.md")).unwrap();
    let api = TestApi::start().await.unwrap();
    let key = api.tenant_key("acme").await.unwrap();
    api.post_json("/api/v1/executions", &key, &json!({"workflow": sample_workflow()})).await.unwrap();
    // In OpenMetrics, where a counter's family is named without `_total`.
    let api_metrics = api.http.get(format!("{}/metrics", api.metrics_base));
    let api_metrics = api_metrics.header("accept", "application/openmetrics-text; version=1.0.0").send().await.unwrap();
    let api_metrics = api_metrics.text().await.unwrap();
    let dispatcher_metrics = flow_like_dispatcher::health::Metrics::every_family().encode();
    for (server, text) in [("API", &api_metrics), ("dispatcher", &dispatcher_metrics)] {
        let families: Vec<(&str, &str)> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_once(' ')).collect();
        assert!(families.len() >= 3, "{server} exposes almost nothing:\n{text}");
        for (family, kind) in families {
            assert!(family.starts_with("flowlike_"), "{server}: {family} has no flowlike_ prefix");
            assert!(text.contains(&format!("# HELP {family} ")), "{server}: {family} has no HELP");
            let name = if kind == "counter" { format!("{family}_total") } else { family.to_string() };
            assert!(doc.contains(&format!("`{name}`")), "docs/metrics.md does not list the {server}'s {name} ({kind})");
        }
    }
}
