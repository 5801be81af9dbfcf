#!/usr/bin/env python3
"""Runs every workflow in examples/ through the local stack and checks that each ends as examples/README.md says.

    scripts/run-examples.py [EXAMPLE ...]     (the stack must be up: scripts/stack.sh up; scripts/demo.sh does both)

Reads the stack's settings from .state/env, issues an API key for tenant `demo` through the admin endpoint (and
revokes it at the end) and substitutes the placeholders of the examples ({{API_URL}}, {{FLAKY_URL}}, {{RUN_ID}}).

With the command-line tool built (release/flow-like under $CARGO_TARGET_DIR or target/, or $FLOWLIKE_CLI; scripts/stack.sh up
builds it), each example runs through it, one after the other: `flow-like submit FILE --input INPUT --label ...
--watch` shows its progress live and ends with its outcome, timeline and output, and its exit code must match the
expected status (0 for succeeded, 1 otherwise). Without the tool, the examples are submitted all at once over HTTP
and GET /api/v1/executions/{id} is polled until each is finished.

Either way each execution is then read back (GET /api/v1/executions/{id} and /result) and checked as below; the
script prints for each its status, timeline, per-node report and result document. Exits 1 when an example does
not end as expected, 2 when the stack cannot be used. Only the Python standard library is used.

{{FLAKY_URL}} is a small HTTP endpoint this script serves on 127.0.0.1 while it runs: a GET of
/<anything>?fail_first=N answers 503 to the first N requests for that path and 200 afterwards, so the retry
example fails a known number of times before it succeeds.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
ENV_FILE = REPO / ".state" / "env"
TENANT = "demo"
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}
POLL_TIMEOUT_SECS = 120
CLI = Path(os.environ.get("FLOWLIKE_CLI")
           or Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "release" / "flow-like")


# ---- expectations (keep in step with examples/README.md) -------------------------------------------------------


def node(result, name):
    return (result or {}).get("nodes", {}).get(name, {})


def duration_ms(report):
    start, end = parse_time(report.get("started_at")), parse_time(report.get("finished_at"))
    return None if start is None or end is None else (end - start).total_seconds() * 1000


def check_invoice(result, flaky):
    out = result.get("output") or {}
    # 3 x 1250 + 4999 + 4 x 300 = 9949; 20 % tax rounded down = 1989
    return [] if (out.get("subtotal_cents"), out.get("tax_cents"), out.get("total_cents")) == (9949, 1989, 11938) \
        else [f"expected subtotal 9949, tax 1989, total 11938 cents, got {out}"]


def check_order_report(result, flaky):
    problems = []
    for name, status in (("total", "succeeded"), ("big", "skipped"), ("review", "skipped"), ("standard", "succeeded")):
        if node(result, name).get("status") != status:
            problems.append(f"node {name}: expected {status}, got {node(result, name).get('status')}")
    if result.get("output") != {"standard": {"total": 75, "shipping": "standard"}}:
        problems.append(f"unexpected output {result.get('output')}")
    return problems


def check_map(result, flaky):
    problems = []
    out = result.get("output") or {}
    if out.get("squares") != [n * n for n in range(1, 9)] or out.get("sum_of_squares") != 204:
        problems.append(f"unexpected output {out}")
    waited = duration_ms(node(result, "waits"))
    # 8 sleeps of 250 ms take 2 s one after another; 4 at a time they take about 500 ms.
    if waited is None or waited >= 1500:
        problems.append(f"node waits took {waited} ms: the sleeps did not run 4 at a time")
    return problems


def check_objects(result, flaky):
    out = result.get("output") or {}
    if out.get("same_as_written") is True and out.get("read_back") == {"name": "Ada", "visits": 42}:
        return []
    return [f"object.get did not read back what object.put wrote: {out}"]


def check_http(result, flaky):
    out = result.get("output") or {}
    problems = []
    if out.get("healthz", {}).get("status") != 200:
        problems.append(f"GET /healthz: expected status 200, got {out.get('healthz')}")
    if not out.get("api") or not out.get("paths"):
        problems.append(f"GET /openapi.json: expected the API's title and paths, got {out}")
    return problems


def check_retry(result, flaky):
    problems = []
    fetch = node(result, "fetch")
    if fetch.get("status") != "succeeded" or fetch.get("attempts") != 3:
        problems.append(f"node fetch: expected succeeded after 3 attempts, got {fetch}")
    if (result.get("output") or {}).get("served_on_request") != 3:
        problems.append(f"expected the 3rd request to be served, got output {result.get('output')}")
    return problems


def check_retry_exhausted(result, flaky):
    problems = []
    outcome = result.get("outcome", {})
    if outcome.get("node") != "reject" or "negative amount" not in str(outcome.get("error")):
        problems.append(f"expected the run to fail at node reject with 'negative amount', got {outcome}")
    if node(result, "reject").get("attempts") != 3:
        problems.append(f"node reject: expected 3 attempts, got {node(result, 'reject')}")
    if node(result, "slow").get("status") != "cancelled":
        problems.append(f"node slow: expected cancelled, got {node(result, 'slow')}")
    return problems


# name -> (expected execution status, check of the result document)
EXPECTED = {
    "invoice": ("succeeded", check_invoice),
    "order-report": ("succeeded", check_order_report),
    "map": ("succeeded", check_map),
    "objects": ("succeeded", check_objects),
    "http-request": ("succeeded", check_http),
    "retry": ("succeeded", check_retry),
    "retry-exhausted": ("failed", check_retry_exhausted),
}


# ---- the flaky endpoint ----------------------------------------------------------------------------------------


class FlakyEndpoint:
    """GET /<path>?fail_first=N: 503 for the first N requests of that path, then 200."""

    def __init__(self):
        self.counts = {}
        self.answers = {}  # path -> the status codes answered, in order
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                fail_first = int(urllib.parse.parse_qs(url.query).get("fail_first", ["0"])[0])
                with endpoint.lock:
                    endpoint.counts[url.path] = count = endpoint.counts.get(url.path, 0) + 1
                if count <= fail_first:
                    status, body = 503, {"error": "temporarily unavailable", "request": count}
                else:
                    status, body = 200, {"path": url.path, "served_on_request": count}
                with endpoint.lock:
                    endpoint.answers.setdefault(url.path, []).append(status)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


# ---- HTTP client ----------------------------------------------------------------------------------------------


class ApiError(Exception):
    pass


def call(method, url, token, body=None, expect=(200,)):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except OSError as error:
        raise ApiError(f"{method} {url}: {error}") from None
    if status not in expect:
        raise ApiError(f"{method} {url}: HTTP {status}: {raw.decode(errors='replace')[:500]}")
    return status, (json.loads(raw) if raw else None)


# ---- output ----------------------------------------------------------------------------------------------------


def parse_time(text):
    """RFC 3339 with any number of fraction digits (Python before 3.11 takes at most 6)."""
    if not text:
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        return None
    base, fraction, zone = match.groups()
    micros = int(((fraction or "") + "000000")[:6])
    moment = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).replace(microsecond=micros)
    return moment.astimezone(timezone.utc)


def offset(start, text):
    moment = parse_time(text)
    if moment is None or start is None:
        return "-"
    return f"+{(moment - start).total_seconds() * 1000:.0f} ms"


def print_example(name, workflow, execution, result, result_note, problems, expected_status, flaky):
    ok = not problems
    print(f"\n=== {name}  ({'OK' if ok else 'UNEXPECTED'})")
    print(f"execution {execution['id']}: {execution['status']} (expected {expected_status}), "
          f"dispatcher attempts {execution.get('attempts')}"
          + (f", error: {execution['error']}" if execution.get("error") else ""))
    timeline = execution.get("timeline", {})
    queued = parse_time(timeline.get("queued_at"))
    print(f"timeline: queued {timeline.get('queued_at')}  claimed {offset(queued, timeline.get('claimed_at'))}"
          f"  dispatched {offset(queued, timeline.get('dispatched_at'))}"
          f"  started {offset(queued, timeline.get('started_at'))}"
          f"  finished {offset(queued, timeline.get('finished_at'))}")
    if result is None:
        print(f"result: {result_note}")
    else:
        run_start = parse_time(result.get("started_at"))
        print(f"outcome: {json.dumps(result.get('outcome'))}")
        print(f"{'node':<16} {'status':<12} {'attempts':>8} {'start':>10} {'duration':>10}  error")
        reports = result.get("nodes", {})
        # In the order of the document, then any the document does not name.
        for node_name in [n for n in workflow.get("nodes", {}) if n in reports] + \
                [n for n in reports if n not in workflow.get("nodes", {})]:
            report = reports[node_name]
            took = duration_ms(report)
            print(f"{node_name:<16} {report.get('status', ''):<12} {report.get('attempts', 0):>8} "
                  f"{offset(run_start, report.get('started_at')):>10} "
                  f"{'-' if took is None else f'{took:.0f} ms':>10}  {report.get('error') or ''}")
        output = json.dumps(result.get("output"))
        if len(output) > 110:
            output = json.dumps(result.get("output"), indent=2)
        lines = output.splitlines()
        if len(lines) > 40:
            lines = lines[:40] + [f"... ({len(lines) - 40} more lines)"]
        print("output:", "\n".join(lines))
    for path, answers in flaky.answers.items():
        if flaky.url + path in json.dumps(workflow):
            print(f"flaky endpoint {path} answered: {', '.join(map(str, answers))}")
    for problem in problems:
        print(f"!! {problem}")


# ---- main ------------------------------------------------------------------------------------------------------


def read_env():
    if not ENV_FILE.is_file():
        sys.exit(f"run-examples: no {ENV_FILE}: start the stack first (scripts/stack.sh up)")
    env = {}
    for line in ENV_FILE.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def substitute(value, replacements):
    if isinstance(value, str):
        for placeholder, text in replacements.items():
            value = value.replace(placeholder, text)
        return value
    if isinstance(value, list):
        return [substitute(item, replacements) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, replacements) for key, item in value.items()}
    return value


def load_examples(names):
    found = sorted(p.stem for p in EXAMPLES.glob("*.json") if not p.name.endswith(".input.json"))
    order = [n for n in EXPECTED if n in found] + [n for n in found if n not in EXPECTED]
    if names:
        unknown = [n for n in names if n not in found]
        if unknown:
            sys.exit(f"run-examples: no such example: {', '.join(unknown)} (have: {', '.join(found)})")
        order = [n for n in order if n in names]
    examples = []
    for name in order:
        input_path = EXAMPLES / f"{name}.input.json"
        workflow = json.loads((EXAMPLES / f"{name}.json").read_text())
        example_input = json.loads(input_path.read_text()) if input_path.is_file() else {}
        examples.append((name, workflow, example_input))
    return examples

def run_over_http(api, key, examples, replacements):
    """Submits every example at once, then polls until each has finished (or the time is up)."""
    submitted = {}
    for name, workflow, example_input in examples:
        body = {"workflow": substitute(workflow, replacements), "input": example_input,
                "labels": {"source": "demo", "example": name}}
        _, accepted = call("POST", f"{api}/api/v1/executions", key, body, expect=(201, 202))
        submitted[name] = accepted["id"]
        print(f"submitted {name:<16} -> {accepted['id']} ({accepted['status']})")

    finished, waiting = {}, {}
    deadline = time.monotonic() + POLL_TIMEOUT_SECS
    while len(finished) < len(submitted) and time.monotonic() < deadline:
        for name, execution_id in submitted.items():
            if name in finished:
                continue
            _, execution = call("GET", f"{api}/api/v1/executions/{execution_id}", key)
            if execution["status"] in TERMINAL:
                finished[name] = execution
                print(f"finished  {name:<16} -> {execution['status']}")
            else:
                waiting[name] = execution
        time.sleep(0.2)
    return finished, waiting, {}


def run_with_cli(api, key, examples, replacements, run_id):
    """Runs each example with `flow-like submit --watch` (its output goes straight to the terminal), checks its
    exit code, and finds its execution again by a label unique to this run."""
    finished, waiting, problems = {}, {}, {}
    env = dict(os.environ, FLOWLIKE_URL=api, FLOWLIKE_TOKEN=key)
    with tempfile.TemporaryDirectory(prefix="flow-like-examples-") as scratch:
        for name, workflow, example_input in examples:
            workflow_file, input_file = Path(scratch) / f"{name}.json", Path(scratch) / f"{name}.input.json"
            workflow_file.write_text(json.dumps(substitute(workflow, replacements)))
            input_file.write_text(json.dumps(example_input))
            tag = f"{run_id}-{name}"
            command = [str(CLI), "submit", str(workflow_file), "--input", str(input_file),
                       "--label", "source=demo", "--label", f"example={name}", "--label", f"demo_run={tag}",
                       "--watch"]
            print(f"\n--- {name}: flow-like submit examples/{name}.json --input examples/{name}.input.json --watch",
                  flush=True)
            try:
                code = subprocess.run(command, env=env, timeout=POLL_TIMEOUT_SECS).returncode
            except subprocess.TimeoutExpired:
                code = None
            _, page = call("GET", f"{api}/api/v1/executions?label=demo_run%3D{tag}", key)
            items = (page or {}).get("items", [])
            if not items:
                raise ApiError(f"flow-like submit did not submit {name} (exit code {code})")
            execution = items[0]
            if execution["status"] in TERMINAL:
                finished[name] = execution
            else:
                waiting[name] = execution
            expected_status = EXPECTED.get(name, ("succeeded", None))[0]
            expected_code = 0 if expected_status == "succeeded" else 1
            if code != expected_code:
                said = "did not end in time" if code is None else f"exited {code}"
                problems[name] = [f"flow-like submit --watch {said}, expected exit code {expected_code}"]
    return finished, waiting, problems


def main():
    env = read_env()
    api = f"http://{env['API_LISTEN']}"
    admin = env["FLOWLIKE_ADMIN_TOKEN"]
    examples = load_examples(sys.argv[1:])
    flaky = FlakyEndpoint()
    run_id = uuid.uuid4().hex[:12]
    replacements = {"{{API_URL}}": api, "{{FLAKY_URL}}": flaky.url, "{{RUN_ID}}": run_id}

    _, issued = call("POST", f"{api}/api/v1/tenants/{TENANT}/api-keys", admin, expect=(201,))
    key = issued["key"]
    print(f"API key {issued['id']} issued for tenant {TENANT} (revoked at the end)")
    try:
        if CLI.is_file():
            finished, waiting, cli_problems = run_with_cli(api, key, examples, replacements, run_id)
        else:
            print(f"run-examples: {CLI} is not built (cargo build --release -p flow-like-cli): submitting over HTTP")
            finished, waiting, cli_problems = run_over_http(api, key, examples, replacements)

        failures = []
        for name, workflow, _ in examples:
            workflow = substitute(workflow, replacements)
            expected_status, check = EXPECTED.get(name, ("succeeded", lambda result, flaky: []))
            execution = finished.get(name)
            if execution is None:
                last = waiting.get(name, {})
                print(f"\n=== {name}  (UNEXPECTED)\n!! not finished after {POLL_TIMEOUT_SECS} s: "
                      f"{last.get('status')}, waiting_reason: {last.get('waiting_reason')}")
                failures.append(name)
                continue
            status, result = call("GET", f"{api}/api/v1/executions/{execution['id']}/result", key,
                                  expect=(200, 404, 409))
            note = None
            if status != 200:
                note, result = f"HTTP {status}: {(result or {}).get('detail') or (result or {}).get('title')}", None
            problems = list(cli_problems.get(name, []))
            if execution["status"] != expected_status:
                problems.append(f"expected status {expected_status}, got {execution['status']}")
            if result is None:
                problems.append("no result document")
            else:
                problems += check(result, flaky)
            print_example(name, workflow, execution, result, note, problems, expected_status, flaky)
            if problems:
                failures.append(name)
    finally:
        try:
            call("DELETE", f"{api}/api/v1/api-keys/{issued['id']}", admin, expect=(204,))
        except ApiError as error:
            print(f"run-examples: could not revoke the demo API key: {error}", file=sys.stderr)
        flaky.close()

    print(f"\n{len(examples) - len(failures)} of {len(examples)} examples ended as expected"
          + (f"; unexpected: {', '.join(failures)}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ApiError as error:
        print(f"run-examples: {error}", file=sys.stderr)
        sys.exit(2)
