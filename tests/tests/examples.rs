//! The workflows in examples/ (run end to end by scripts/demo.sh): each is a valid document once its
//! placeholders are replaced, has a JSON input, and examples/README.md states how it should end.

use flow_like_shared::workflow::{Limits, validate};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The placeholders scripts/run-examples.py replaces, with stand-ins of the same shape.
fn substitute(text: &str) -> String {
    text.replace("{{API_URL}}", "http://127.0.0.1:8080")
        .replace("{{FLAKY_URL}}", "http://127.0.0.1:8081")
        .replace("{{RUN_ID}}", "0123456789ab")
}

fn examples() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .map(|entry| entry.expect("readable entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json") && !name.ends_with(".input.json"))
        .map(|name| name.trim_end_matches(".json").to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_validates_and_has_an_input() {
    let names = examples();
    assert!(names.len() >= 6, "expected the examples of issue 3, found {names:?}");
    for name in &names {
        let text = std::fs::read_to_string(examples_dir().join(format!("{name}.json"))).unwrap();
        let doc: Value = serde_json::from_str(&substitute(&text)).unwrap_or_else(|e| panic!("{name}.json: {e}"));
        if let Err(errors) = validate(&doc, &Limits::default()) {
            panic!("{name}.json is not a valid workflow: {:?}", errors.errors());
        }
        let input = std::fs::read_to_string(examples_dir().join(format!("{name}.input.json")))
            .unwrap_or_else(|e| panic!("{name}.input.json: {e}"));
        let input: Value = serde_json::from_str(&input).unwrap_or_else(|e| panic!("{name}.input.json: {e}"));
        assert!(input.is_object(), "{name}.input.json is not a JSON object");
    }
}

#[test]
fn the_examples_cover_every_feature_the_demo_shows() {
    let mut types = Vec::new();
    let mut has = |what: &str| types.push(what.to_owned());
    for name in examples() {
        let text = std::fs::read_to_string(examples_dir().join(format!("{name}.json"))).unwrap();
        let doc: Value = serde_json::from_str(&substitute(&text)).unwrap();
        for node in doc["nodes"].as_object().unwrap().values() {
            has(node["type"].as_str().unwrap());
            if node.get("when").is_some() {
                has("when");
            }
            if node.get("retry").is_some() {
                has("retry");
            }
            if node["type"] == "map" && node["params"]["parallelism"].as_u64().unwrap_or(1) > 1 {
                has("parallel map");
            }
        }
    }
    for feature in ["transform", "when", "parallel map", "object.put", "object.get", "http.request", "retry", "fail"] {
        assert!(types.iter().any(|t| t == feature), "no example uses {feature}");
    }
}

#[test]
fn the_readme_states_each_examples_outcome() {
    let readme = std::fs::read_to_string(examples_dir().join("README.md")).unwrap();
    for name in examples() {
        let row = readme
            .lines()
            .find(|line| line.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("examples/README.md has no row for {name}"));
        assert!(
            ["**succeeded**", "**failed**", "**timed_out**", "**cancelled**"].iter().any(|s| row.contains(s)),
            "the row of {name} in examples/README.md states no outcome: {row}"
        );
    }
}
