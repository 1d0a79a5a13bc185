"""A reconcile that raises ends in a condition, not only a log traceback (issue 15, item 8).

``reconcile.failed`` decides what the handler writes when ``reconcile.reconcile`` raised:
``Reconciled`` False with the error's type and a short message, a Warning Event once per
distinct error (not once per retry), when to retry. The handler (``handlers.py``) only
writes it through Kopf's patch and raises ``kopf.TemporaryError``; the contract test
(tests/contract/test_error_conditions.py) checks that Kopf applies that patch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from test_reconcile import SPEC, RecordingClient, body, run

from llama_operator import reconcile
from llama_operator.api import conditions
from llama_operator.clients import k8s

NOW = "2026-01-01T00:00:00Z"
REFUSED = k8s.APIError(
    422,
    "Invalid",
    'Service "a.b.c" is invalid: metadata.name: Invalid value: "a.b.c": a DNS-1035 label '
    "must consist of lower case alphanumeric characters or '-'",
    request="apply Service/a.b.c",
)


def fail(
    error: BaseException,
    *,
    status: Mapping[str, Any] | None = None,
    reported: dict[str, float] | None = None,
    instant: float = 1000.0,
    attempt: int = 0,
) -> reconcile.Failed:
    return reconcile.failed(
        body=body(SPEC, dict(status or {})),
        error=error,
        now=NOW,
        instant=instant,
        reported={} if reported is None else reported,
        attempt=attempt,
        interval=15.0,
    )


def condition(patch: Mapping[str, Any]) -> Mapping[str, Any]:
    found = conditions.find(patch["conditions"], conditions.RECONCILED)
    assert found is not None
    return found


class TestTheCondition:
    def test_an_api_error_names_the_child_and_what_the_api_server_said(self) -> None:
        failed = fail(REFUSED)
        reconciled = condition(failed.status_patch)
        assert (reconciled["status"], reconciled["reason"]) == ("False", "APIError")
        assert reconciled["message"].startswith(
            'apply Service/a.b.c: the API server answered 422 Invalid: Service "a.b.c" is '
            "invalid: metadata.name"
        )
        assert reconciled["observedGeneration"] == 1
        assert failed.message == f"APIError: {reconciled['message']}"
        assert failed.log_traceback is False  # the message says it all

    def test_any_other_error_gives_its_type_and_first_line(self) -> None:
        failed = fail(KeyError("metadata"))
        reconciled = condition(failed.status_patch)
        assert reconciled["reason"] == "UnexpectedError"
        assert (
            reconciled["message"] == "KeyError: 'metadata' (the operator's log has the traceback)"
        )
        assert failed.log_traceback is True

    def test_the_message_is_short_and_one_line(self) -> None:
        long = RuntimeError("first line " + "x" * 2000 + "\nsecond line")
        message = condition(fail(long).status_patch)["message"]
        assert len(message) <= reconcile.ERROR_MESSAGE_LIMIT
        assert "second line" not in message
        api = k8s.APIError(500, "InternalError", "a\n  b   " + "y" * 2000, request="get Secret/x")
        message = condition(fail(api).status_patch)["message"]
        assert len(message) <= reconcile.ERROR_MESSAGE_LIMIT
        assert message.startswith("get Secret/x: the API server answered 500 InternalError: a b y")
        assert message.endswith("...")

    def test_nothing_but_the_condition_changes(self) -> None:
        ok, _ = run(body(SPEC))
        failed = fail(REFUSED, status=ok.status_patch)
        assert failed.status_patch.keys() == {"conditions"}
        before = {c["type"]: c for c in ok.status_patch["conditions"]}
        after = {c["type"]: c for c in failed.status_patch["conditions"]}
        assert before.keys() == after.keys()
        assert before["Reconciled"]["status"] == "True"
        assert {k: v for k, v in after.items() if k != "Reconciled"} == {
            k: v for k, v in before.items() if k != "Reconciled"
        }


class TestEvents:
    def test_one_warning_over_many_retries(self) -> None:
        reported: dict[str, float] = {}
        first = fail(REFUSED, reported=reported)
        assert [(e.type, e.reason) for e in first.events] == [("Warning", "APIError")]
        status = first.status_patch
        for attempt in range(1, 6):
            again = fail(REFUSED, status=status, reported=reported, attempt=attempt)
            assert again.events == []
            assert again.status_patch == {}  # no write either

    def test_a_retry_that_read_the_status_before_the_first_write_does_not_post_again(
        self,
    ) -> None:
        # A change handler and the timer can both fail before Kopf has applied the first
        # one's patch: the memo of what this process posted decides.
        reported: dict[str, float] = {}
        assert fail(REFUSED, reported=reported).events
        assert fail(REFUSED, reported=reported, instant=1001.0).events == []

    def test_a_different_error_is_posted(self) -> None:
        reported: dict[str, float] = {}
        first = fail(REFUSED, reported=reported)
        other = k8s.APIError(403, "Forbidden", "cannot patch", request="apply Deployment/x")
        second = fail(other, status=first.status_patch, reported=reported, instant=1001.0)
        assert [e.reason for e in second.events] == ["APIError"]
        assert "Deployment/x" in second.events[0].message

    def test_an_error_that_lasts_is_posted_again_after_a_while(self) -> None:
        reported: dict[str, float] = {}
        first = fail(REFUSED, reported=reported)
        later = 1000.0 + reconcile.REPEAT_WARNING_SECONDS
        early = fail(REFUSED, status=first.status_patch, reported=reported, instant=later - 1)
        assert early.events == []
        late = fail(REFUSED, status=first.status_patch, reported=reported, instant=later)
        assert [e.reason for e in late.events] == ["APIError"]

    def test_after_a_restart_the_status_says_it_was_posted(self) -> None:
        status = fail(REFUSED).status_patch
        reported: dict[str, float] = {}  # a new process: nothing remembered
        assert fail(REFUSED, status=status, reported=reported).events == []
        later = 1000.0 + reconcile.REPEAT_WARNING_SECONDS
        assert fail(REFUSED, status=status, reported=reported, instant=later).events

    def test_an_unexpected_error_logs_its_traceback_once(self) -> None:
        reported: dict[str, float] = {}
        first = fail(ValueError("boom"), reported=reported)
        assert first.log_traceback is True
        again = fail(ValueError("boom"), status=first.status_patch, reported=reported)
        assert again.log_traceback is False

    def test_success_after_a_failure_is_reconciled_again_with_a_normal_event(self) -> None:
        failed = fail(REFUSED)
        outcome, _ = run(body(SPEC, dict(failed.status_patch)))
        reconciled = condition(outcome.status_patch)
        assert (reconciled["status"], reconciled["reason"]) == ("True", "Succeeded")
        recovered = [e for e in outcome.events if e.reason == "Succeeded"]
        assert [(e.type, e.message) for e in recovered] == [
            ("Normal", "the last reconcile completed without error")
        ]


class TestRetry:
    @pytest.mark.parametrize(
        ("attempt", "seconds"),
        [(0, 15.0), (1, 30.0), (2, 60.0), (3, 120.0), (4, 240.0), (5, 300.0), (50, 300.0)],
    )
    def test_retries_double_from_the_resync_interval_up_to_five_minutes(
        self, attempt: int, seconds: float
    ) -> None:
        assert reconcile.retry_delay(attempt, 15.0) == seconds
        assert fail(REFUSED, attempt=attempt).retry_in == seconds


class FailingClient(RecordingClient):
    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "Service":
            raise k8s.APIError(
                422, "Invalid", "refused", request=f"apply Service/{obj['metadata']['name']}"
            )
        return super().apply(obj)


def test_a_refused_apply_propagates_with_the_child_named() -> None:
    with pytest.raises(k8s.APIError) as raised:
        run(body(SPEC), client=FailingClient())
    assert raised.value.request == "apply Service/chat"
    assert str(raised.value) == "apply Service/chat: 422 Invalid: refused"


# -- k8s.Client names the request in its errors --------------------------------------


class Response:
    def __init__(self, status: int, payload: Mapping[str, Any]) -> None:
        self.status = status
        self.reason = "Unprocessable Entity"
        self._raw = json.dumps(payload).encode()

    def read(self) -> bytes:
        return self._raw


class Api:
    """The two ``kubernetes.client.ApiClient`` calls ``k8s.Client`` makes."""

    def __init__(self, response: Response) -> None:
        self.response = response
        self.requests: list[tuple[Any, ...]] = []

    def param_serialize(self, **kwargs: Any) -> tuple[Any, ...]:
        self.requests.append((kwargs["method"], kwargs["resource_path"]))
        return (kwargs["method"], kwargs["resource_path"])

    def call_api(self, *args: Any, **kwargs: Any) -> Response:
        return self.response


@pytest.mark.parametrize(
    ("call", "request_"),
    [
        (
            lambda c: c.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": "a.b.c", "namespace": "ai"},
                }
            ),
            "apply Service/a.b.c",
        ),
        (
            lambda c: c.get(api_version="v1", kind="ConfigMap", namespace="ai", name="x"),
            "get ConfigMap/x",
        ),
        (
            lambda c: c.delete(api_version="v1", kind="Service", namespace="ai", name="x"),
            "delete Service/x",
        ),
        (
            lambda c: c.merge_patch(
                api_version="apps/v1",
                kind="Deployment",
                namespace="ai",
                name="x",
                body={},
                subresource="scale",
            ),
            "patch Deployment/x/scale",
        ),
        (lambda c: c.list_pods(namespace="ai", labels={"a": "b"}), "list Pods"),
    ],
)
def test_an_api_error_says_which_request_it_answered(call: Any, request_: str) -> None:
    answer = {"kind": "Status", "reason": "Invalid", "message": "it is invalid"}
    client = k8s.Client(api=Api(Response(422, answer)))  # type: ignore[arg-type]
    with pytest.raises(k8s.APIError) as raised:
        call(client)
    assert raised.value.request == request_
    assert (raised.value.status, raised.value.reason, raised.value.message) == (
        422,
        "Invalid",
        "it is invalid",
    )
    assert str(raised.value) == f"{request_}: 422 Invalid: it is invalid"
