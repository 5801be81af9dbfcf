"""A client generated from docs/openapi.json (openapi-python-client), used as a user of the API would use it:
register a workflow, submit (inline and by reference), read, list, wait for the result, cancel, redrive a dead
letter, and read the problem document of a refused request. Typed models only: every request body is built from
the generated classes, every answer parsed by them, so a document that drifts from the code fails here.

Run by tests/contract/run.sh with FLOWLIKE_API_URL, FLOWLIKE_CLIENT_KEY (an admin key of tenant `client`) and
FLOWLIKE_CLIENT_DEAD_EXECUTION (a dead-lettered execution of that tenant) in the environment, and the generated
package `flow_like_client` on PYTHONPATH.
"""

import os
import sys
import time
import uuid

from flow_like_client import AuthenticatedClient
from flow_like_client.api.admin import list_dead_letters, redrive_dead_letter, set_tenant_limits
from flow_like_client.api.executions import (
    cancel_execution,
    get_execution,
    get_execution_result,
    list_executions,
    submit_execution,
)
from flow_like_client.api.queue import get_queue
from flow_like_client.api.workflows import get_workflow, register_workflow
from flow_like_client.models import (
    Accepted,
    ExecutionDetail,
    ExecutionPage,
    LimitsBody,
    Problem,
    SleepNode,
    SleepNodeParams,
    SubmitInlineWorkflow,
    SubmitRegisteredWorkflow,
    TransformNode,
    TransformNodeParams,
    Workflow,
    WorkflowNodes,
    WorkflowRef,
)
from flow_like_client.models.list_executions_status import ListExecutionsStatus

TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def doubling(name):
    nodes = WorkflowNodes()
    nodes["double"] = TransformNode(type_="transform", params=TransformNodeParams(expr=".input.n * 2"))
    return Workflow(name=name, nodes=nodes, output="double")


def sleeping(ms):
    nodes = WorkflowNodes()
    nodes["nap"] = SleepNode(type_="sleep", params=SleepNodeParams(ms=ms))
    return Workflow(name="nap", nodes=nodes, output="nap")


def wait(client, execution_id, statuses, seconds=60):
    deadline = time.monotonic() + seconds
    while True:
        detail = get_execution.sync(client=client, id=execution_id)
        check(isinstance(detail, ExecutionDetail), f"GET execution {execution_id}: {detail!r}")
        if detail.status.value in statuses:
            return detail
        check(time.monotonic() < deadline, f"{execution_id} still {detail.status.value} after {seconds} s")
        time.sleep(0.2)


def main():
    client = AuthenticatedClient(base_url=os.environ["FLOWLIKE_API_URL"], token=os.environ["FLOWLIKE_CLIENT_KEY"])
    tenant = "client"
    name = f"double-{uuid.uuid4().hex[:8]}"

    # Register, then read the registered version back.
    registered = register_workflow.sync_detailed(client=client, name=name, body=doubling(name))
    check(registered.status_code == 201, f"register: {registered.status_code} {registered.content!r}")
    shown = get_workflow.sync(client=client, name=name)
    check(not isinstance(shown, Problem) and shown.version == 1, f"get workflow: {shown!r}")

    # Submit inline and by reference; the same Idempotency-Key gives the same execution.
    inline = submit_execution.sync(
        client=client, body=SubmitInlineWorkflow(workflow=doubling("inline-double"), input_={"n": 4}, priority=7)
    )
    check(isinstance(inline, Accepted), f"submit inline: {inline!r}")
    key = uuid.uuid4().hex
    by_ref = submit_execution.sync(
        client=client,
        body=SubmitRegisteredWorkflow(workflow_ref=WorkflowRef(name=name), input_={"n": 21}),
        idempotency_key=key,
    )
    again = submit_execution.sync(
        client=client,
        body=SubmitRegisteredWorkflow(workflow_ref=WorkflowRef(name=name), input_={"n": 21}),
        idempotency_key=key,
    )
    check(isinstance(by_ref, Accepted) and isinstance(again, Accepted), f"submit by ref: {by_ref!r} {again!r}")
    check(by_ref.id == again.id, f"same Idempotency-Key, two executions: {by_ref.id} {again.id}")

    # Read them to the end and fetch the results.
    for accepted, expected in ((inline, 8), (by_ref, 42)):
        detail = wait(client, accepted.id, TERMINAL)
        check(detail.status.value == "succeeded", f"{accepted.id} ended {detail.status.value}: {detail.error}")
        result = get_execution_result.sync_detailed(client=client, id=accepted.id)
        check(result.status_code == 200, f"result of {accepted.id}: {result.status_code} {result.content!r}")
        output = result.parsed.to_dict().get("output")
        check(output == expected, f"result of {accepted.id}: output {output!r}, expected {expected}")
    detail = get_execution.sync(client=client, id=by_ref.id)
    check(detail.workflow == name and detail.workflow_version == 1, f"by-ref execution: {detail!r}")

    # List: filtered by workflow and status, paged with the cursor.
    page = list_executions.sync(client=client, workflow=name, status=ListExecutionsStatus.SUCCEEDED, limit=10)
    check(isinstance(page, ExecutionPage), f"list: {page!r}")
    check([e.id for e in page.items] == [by_ref.id], f"list by workflow: {[e.id for e in page.items]}")
    seen, cursor = [], None
    while True:
        kwargs = {"cursor": cursor} if cursor else {}
        page = list_executions.sync(client=client, limit=1, **kwargs)
        check(isinstance(page, ExecutionPage), f"list page: {page!r}")
        seen.extend(e.id for e in page.items)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    check({inline.id, by_ref.id} <= set(seen), f"paging missed executions: {seen}")
    check(len(seen) == len(set(seen)), f"paging repeated executions: {seen}")

    # Cancel a long one.
    long = submit_execution.sync(client=client, body=SubmitInlineWorkflow(workflow=sleeping(60_000)))
    check(isinstance(long, Accepted), f"submit sleeping: {long!r}")
    cancelled = cancel_execution.sync_detailed(client=client, id=long.id)
    check(cancelled.status_code == 202, f"cancel: {cancelled.status_code} {cancelled.content!r}")
    wait(client, long.id, {"cancelled"})

    # Redrive the dead letter the test harness left for this tenant.
    dead = uuid.UUID(os.environ["FLOWLIKE_CLIENT_DEAD_EXECUTION"])
    letters = list_dead_letters.sync(client=client)
    check(not isinstance(letters, Problem), f"dead letters: {letters!r}")
    entry = next((letter for letter in letters.items if str(letter.execution_id) == str(dead)), None)
    check(entry is not None, f"{dead} is not among the dead letters: {letters!r}")
    redriven = redrive_dead_letter.sync_detailed(client=client, entry_id=entry.entry_id)
    check(redriven.status_code == 202, f"redrive: {redriven.status_code} {redriven.content!r}")
    check(wait(client, dead, TERMINAL).status.value == "succeeded", f"redriven {dead} did not succeed")

    # Limits, and the queue view that shows them.
    limits = set_tenant_limits.sync_detailed(
        client=client, tenant=tenant, body=LimitsBody(concurrency_limit=3, workflow_limit=2)
    )
    check(limits.status_code == 200, f"limits: {limits.status_code} {limits.content!r}")
    queue = get_queue.sync(client=client, tenant=tenant)  # an admin key: narrowed to its tenant
    check(not isinstance(queue, Problem), f"queue: {queue!r}")
    check([t.tenant for t in queue.tenants] == [tenant], f"queue of {[t.tenant for t in queue.tenants]}")
    mine = queue.tenants[0]
    check(mine.limits.tenant == 3 and mine.limits.workflow == 2, f"queue limits: {mine.limits!r}")
    check(mine.queue.waiting >= 0 and queue.dispatchers_alive >= 1, f"queue: {queue!r}")
    check(all(w.queued >= 0 and w.admitted_last_minute >= 0 for w in mine.workflows), f"workflows: {mine!r}")

    # A refused request parses as the documented problem document.
    missing = get_execution.sync(client=client, id=uuid.uuid4())
    check(isinstance(missing, Problem) and missing.status == 404, f"missing execution: {missing!r}")
    refused = submit_execution.sync(
        client=client, body=SubmitRegisteredWorkflow(workflow_ref=WorkflowRef(name="never-registered"))
    )
    check(isinstance(refused, Problem) and refused.status in (404, 422), f"unknown workflow_ref: {refused!r}")

    print("client: register, submit (inline, by reference, idempotent), read, result, list, page, cancel, "
          "redrive, limits, queue and problems all as documented")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as failure:
        print(f"client: {failure}", file=sys.stderr)
        sys.exit(1)
