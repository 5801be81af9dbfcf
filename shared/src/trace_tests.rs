//! Unit tests of `trace.rs`.

use super::*;

#[test]
fn traceparent_round_trips_and_bad_ones_are_refused() {
    let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let context = SpanContext::parse(header).unwrap();
    assert_eq!(context.traceparent(), header);
    assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    // A later version is read by its first four fields.
    assert!(SpanContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    ] {
        assert_eq!(SpanContext::parse(bad), None, "{bad}");
    }
}

#[test]
fn a_root_span_takes_the_execution_id_as_its_trace_id() {
    let id = Uuid::now_v7();
    let root = SpanContext::root(id);
    assert_eq!(root.trace_id_hex(), id.simple().to_string());
    let child = root.child();
    assert_eq!(child.trace_id, root.trace_id);
    assert_ne!(child.span_id, root.span_id);
}

#[test]
fn spans_encode_as_otlp_json() {
    let root = SpanContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    let mut span = Span::starting_at("run", SpanKind::Internal, root.child(), Some(root), start);
    span.attr("flowlike.tenant", "acme").int("flowlike.attempt", 2).fail("node `x` failed");
    span.end = Some(start + Duration::from_millis(5));
    let otlp = span.to_otlp();
    assert_eq!(otlp["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(otlp["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(otlp["startTimeUnixNano"], "1700000000000000000");
    assert_eq!(otlp["endTimeUnixNano"], "1700000000005000000");
    assert_eq!(otlp["kind"], 1);
    assert_eq!(otlp["status"], json!({"code": 2, "message": "node `x` failed"}));
    assert_eq!(otlp["attributes"][1], json!({"key": "flowlike.attempt", "value": {"intValue": "2"}}));
}

#[test]
fn header_values_are_percent_decoded() {
    assert_eq!(percent_decode("Basic%20abc%3D"), "Basic abc=");
    assert_eq!(percent_decode("100%"), "100%");
}
