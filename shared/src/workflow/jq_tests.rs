//! Unit tests of `jq.rs`.

use super::*;
use serde_json::json;

fn run(expr: &str, input: Value) -> Result<Value, JqError> {
    JqProgram::compile(expr)?.run(input)
}

#[test]
fn program_is_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JqProgram>();
}

#[test]
fn runs_design_example_expression() {
    let input = json!({"orders": {"body": [{"amount": 60}, {"amount": 70.5}]}});
    assert_eq!(run("[.orders.body[].amount] | add", input).unwrap(), json!(130.5));
}

#[test]
fn converts_all_json_shapes_both_ways() {
    let doc = json!({"a": [1, -2, 3.5, true, null, "x", {"b": []}], "c": {}, "big": 18446744073709551615u64});
    assert_eq!(run(".", doc.clone()).unwrap(), doc);
}

#[test]
fn first_output_wins_and_run_all_collects() {
    let program = JqProgram::compile(".[]").unwrap();
    assert_eq!(program.run(json!([1, 2, 3])).unwrap(), json!(1));
    assert_eq!(program.run_all(json!([1, 2, 3])).unwrap(), vec![json!(1), json!(2), json!(3)]);
}

#[test]
fn empty_output_is_an_error() {
    assert_eq!(run("empty", json!(1)), Err(JqError::NoOutput));
}

#[test]
fn runtime_errors_are_reported() {
    assert!(matches!(
        run("error(\"boom\")", json!(null)),
        Err(JqError::Runtime(m)) if m.contains("boom")
    ));
    assert!(matches!(run(".a + 1", json!({"a": "x"})), Err(JqError::Runtime(_))));
}

#[test]
fn halt_does_not_exit_the_process() {
    assert_eq!(run("halt", json!(null)), Err(JqError::Halted));
}

#[test]
fn compile_errors_are_reported() {
    assert!(matches!(JqProgram::compile(".a |"), Err(JqError::Compile(_))));
    assert!(matches!(
        JqProgram::compile("nosuchfn(1)"),
        Err(JqError::Compile(m)) if m.contains("nosuchfn")
    ));
}

#[test]
fn env_is_not_available() {
    assert!(matches!(JqProgram::compile("env"), Err(JqError::Compile(_))));
}

#[test]
fn deep_expression_is_refused_before_parsing() {
    let expr = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert_eq!(JqProgram::compile(&expr).unwrap_err(), JqError::TooDeep);
}

#[test]
fn deep_output_is_refused() {
    let err = run("reduce range(200) as $i (null; [.])", json!(null)).unwrap_err();
    assert_eq!(err, JqError::OutputTooDeep);
    assert_eq!(run("reduce range(100) as $i (null; [.]) | flatten", json!(null)).unwrap(), json!([null]));
}

#[test]
fn condition_uses_jq_truthiness() {
    let program = JqProgram::compile(".x").unwrap();
    assert!(!program.run_condition(json!({"x": false})).unwrap());
    assert!(!program.run_condition(json!({})).unwrap());
    assert!(program.run_condition(json!({"x": 0})).unwrap());
}

#[test]
fn standard_library_is_available() {
    assert_eq!(run("map(. * 2) | length", json!([1, 2])).unwrap(), json!(2));
    assert_eq!(run("\"a-b\" | split(\"-\")", json!(null)).unwrap(), json!(["a", "b"]));
    assert_eq!(run("\"x=\\(.)\"", json!(1)).unwrap(), json!("x=1"));
}
