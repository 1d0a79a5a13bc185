"""Releasing the operator's finalizer (``llama-operator release-finalizers``): which JSON
patch for which finalizer list, and the passes, against an in-memory stand-in for the
API that can refuse, conflict and put the finalizer back."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Mapping, Sequence
from typing import Any, cast

import jsonpatch
import kopf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llama_operator import api, cli
from llama_operator.cli import arguments
from llama_operator.clients import k8s
from llama_operator.runtime import finalizers, operator_metrics

OURS = finalizers.FINALIZER
OTHER = "example.com/other"


def apply(patch: list[dict[str, Any]], finalizer_list: list[str]) -> list[str]:
    result = jsonpatch.apply_patch({"metadata": {"finalizers": finalizer_list}}, patch)
    return list(result["metadata"]["finalizers"])


class TestReleasePatch:
    def test_is_the_name_the_operator_gives_kopf(self, monkeypatch: pytest.MonkeyPatch) -> None:
        assert OURS == "llamaops.dev/finalizer" == f"{api.GROUP}/finalizer"
        # Imported here, not at the top: importing the handlers binds the timer interval,
        # which the contract tests' conftest shortens before it imports them itself.
        handlers = importlib.import_module("llama_operator.runtime.handlers")
        monkeypatch.setattr(operator_metrics, "serve", lambda: None)
        monkeypatch.setattr(k8s.Client, "from_environment", lambda **_: None)
        monkeypatch.delenv("LLAMA_OPERATOR_CONFIG", raising=False)
        settings = kopf.OperatorSettings()
        handlers.configure(settings=settings, memo=kopf.Memo())
        assert settings.persistence.finalizer == OURS

    @pytest.mark.parametrize("listed", [[], [OTHER], [OTHER, "example.com/third"]])
    def test_nothing_to_release(self, listed: list[str]) -> None:
        assert finalizers.release_patch(listed) == []

    def test_ours_alone(self) -> None:
        assert finalizers.release_patch([OURS]) == [
            {"op": "test", "path": "/metadata/finalizers/0", "value": OURS},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ]

    def test_ours_after_another_keeps_the_other(self) -> None:
        patch = finalizers.release_patch([OTHER, OURS])
        assert patch == [
            {"op": "test", "path": "/metadata/finalizers/1", "value": OURS},
            {"op": "remove", "path": "/metadata/finalizers/1"},
        ]
        assert apply(patch, [OTHER, OURS]) == [OTHER]

    def test_ours_twice_highest_index_first(self) -> None:
        patch = finalizers.release_patch([OURS, OTHER, OURS])
        assert [op["path"] for op in patch] == [
            "/metadata/finalizers/2",
            "/metadata/finalizers/2",
            "/metadata/finalizers/0",
            "/metadata/finalizers/0",
        ]
        assert apply(patch, [OURS, OTHER, OURS]) == [OTHER]

    def test_a_list_changed_meanwhile_fails_the_patch(self) -> None:
        # Computed for [other, ours]; someone removed "other" before it landed.
        patch = finalizers.release_patch([OTHER, OURS])
        with pytest.raises(jsonpatch.JsonPatchTestFailed):
            apply(patch, [OURS])
        # Computed for [ours, other]; someone put a third finalizer first.
        patch = finalizers.release_patch([OURS, OTHER])
        with pytest.raises(jsonpatch.JsonPatchTestFailed):
            apply(patch, ["example.com/third", OURS, OTHER])

    @given(
        st.lists(st.sampled_from([OURS, OTHER, "a.example/x", "b.example/y"]), max_size=6),
        st.lists(st.sampled_from([OURS, OTHER, "a.example/x", "b.example/y"]), max_size=6),
    )
    def test_never_removes_another_finalizer(self, seen: list[str], live: list[str]) -> None:
        """Computed from ``seen``, applied to whatever ``live`` is by then: it removes all
        of ours when nothing changed, and never anything but ours when it applies."""
        patch = finalizers.release_patch(seen)
        if live == seen:
            assert apply(patch, live) == [name for name in live if name != OURS]
        try:
            result = apply(patch, list(live))
        except (jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPointerException):
            return
        assert [name for name in result if name != OURS] == [n for n in live if n != OURS]


class FakeAPI:
    """LlamaDeployments in memory, behind the three calls ``release`` makes. JSON patches
    apply as the API server applies them (all or nothing, a failed test is 422)."""

    def __init__(self, objects: Sequence[Mapping[str, Any]]) -> None:
        self.objects = {
            (o["metadata"]["namespace"], o["metadata"]["name"]): copy.deepcopy(dict(o))
            for o in objects
        }
        self.patches: list[tuple[str, str, list[dict[str, Any]]]] = []
        self.listed: list[str | None] = []
        self.refuse_list: set[str] = set()
        self.refuse_patch: dict[str, k8s.APIError] = {}
        self.before_patch: list[tuple[str, list[str]]] = []  # a concurrent edit, once each
        self.add_back: int = 0  # how many times the "operator" puts ours back after a patch

    def list_objects(
        self, *, api_version: str, kind: str, namespace: str | None
    ) -> list[dict[str, Any]]:
        assert (api_version, kind) == (api.API_VERSION, api.KIND)
        self.listed.append(namespace)
        if namespace in self.refuse_list:
            raise k8s.APIError(403, "Forbidden", "cannot list", request=f"list {kind}")
        return [
            copy.deepcopy(o)
            for (ns, _), o in sorted(self.objects.items())
            if namespace is None or ns == namespace
        ]

    def get(
        self, *, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        found = self.objects.get((str(namespace), name))
        return copy.deepcopy(found) if found is not None else None

    def json_patch(
        self,
        *,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        operations: Sequence[Mapping[str, Any]],
    ) -> dict[str, Any]:
        key = (str(namespace), name)
        self.patches.append((key[0], name, [dict(op) for op in operations]))
        if self.before_patch and self.before_patch[0][0] == f"{key[0]}/{name}":
            _, changed = self.before_patch.pop(0)
            self.objects[key]["metadata"]["finalizers"] = changed
        if f"{key[0]}/{name}" in self.refuse_patch:
            raise self.refuse_patch[f"{key[0]}/{name}"]
        if key not in self.objects:
            raise k8s.APIError(404, "NotFound", "gone")
        try:
            patched = jsonpatch.apply_patch(self.objects[key], list(operations))
        except (jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPointerException) as exc:
            raise k8s.APIError(422, "Invalid", str(exc)) from exc
        self.objects[key] = patched
        if self.add_back:
            self.add_back -= 1
            patched["metadata"]["finalizers"].append(OURS)
        return copy.deepcopy(patched)

    def finalizers_of(self, namespace: str, name: str) -> list[str]:
        return list(self.objects[namespace, name]["metadata"].get("finalizers") or [])


def llama(namespace: str, name: str, listed: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"namespace": namespace, "name": name, "finalizers": listed},
        "spec": {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}},
    }


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def release(
    fake: FakeAPI, *, wait: float = 0.0, namespaces: list[str] | None = None
) -> tuple[finalizers.Outcome, Clock]:
    clock = Clock()
    outcome = finalizers.release(
        client=cast(k8s.Client, fake),
        namespaces=namespaces,
        wait=wait,
        clock=clock,
        sleep=clock.sleep,
    )
    return outcome, clock


class TestRelease:
    def test_releases_ours_everywhere_and_keeps_the_rest(self) -> None:
        fake = FakeAPI(
            [
                llama("a", "chat", [OURS, OTHER]),
                llama("b", "code", [OTHER, OURS]),
                llama("b", "plain", [OTHER]),
                llama("c", "bare", []),
            ]
        )
        outcome, clock = release(fake)
        assert outcome.ok
        assert [(r.namespace, r.name, r.pass_number) for r in outcome.released] == [
            ("a", "chat", 1),
            ("b", "code", 1),
        ]
        assert fake.finalizers_of("a", "chat") == [OTHER]
        assert fake.finalizers_of("b", "code") == [OTHER]
        assert fake.finalizers_of("b", "plain") == [OTHER]
        assert fake.listed == [None]  # all namespaces, one list
        assert [(ns, name) for ns, name, _ in fake.patches] == [("a", "chat"), ("b", "code")]
        assert clock.slept == []  # --wait 0: one pass

    def test_only_the_given_namespaces(self) -> None:
        fake = FakeAPI([llama("a", "chat", [OURS]), llama("b", "code", [OURS])])
        outcome, _ = release(fake, namespaces=["b"])
        assert outcome.ok
        assert fake.listed == ["b"]
        assert fake.finalizers_of("a", "chat") == [OURS]
        assert fake.finalizers_of("b", "code") == []

    def test_a_concurrent_edit_is_read_again_and_the_patch_recomputed(self) -> None:
        fake = FakeAPI([llama("a", "chat", [OURS, OTHER])])
        # Between our list and our patch, another controller puts its finalizer first.
        fake.before_patch = [("a/chat", ["example.com/third", OURS, OTHER])]
        outcome, _ = release(fake)
        assert outcome.ok, outcome.errors
        assert fake.finalizers_of("a", "chat") == ["example.com/third", OTHER]
        first, second = (ops for _, _, ops in fake.patches)
        assert first[0] == {"op": "test", "path": "/metadata/finalizers/0", "value": OURS}
        assert second[0] == {"op": "test", "path": "/metadata/finalizers/1", "value": OURS}

    def test_gone_meanwhile_is_not_an_error(self) -> None:
        fake = FakeAPI([llama("a", "chat", [OURS])])
        fake.refuse_patch["a/chat"] = k8s.APIError(404, "NotFound", "gone")
        outcome, _ = release(fake)
        assert outcome.ok
        assert outcome.released == []

    def test_released_by_someone_else_meanwhile_is_not_an_error(self) -> None:
        fake = FakeAPI([llama("a", "chat", [OURS, OTHER])])
        fake.before_patch = [("a/chat", [OTHER])]
        outcome, _ = release(fake)
        assert outcome.ok
        assert outcome.released == []
        assert fake.finalizers_of("a", "chat") == [OTHER]

    def test_a_refusal_is_reported_and_the_others_still_released(self) -> None:
        fake = FakeAPI([llama("a", "chat", [OURS]), llama("b", "code", [OURS])])
        fake.refuse_patch["a/chat"] = k8s.APIError(403, "Forbidden", "no", request="patch x")
        outcome, _ = release(fake, wait=30)
        assert not outcome.ok
        assert outcome.errors == ["a/chat: patch x: 403 Forbidden: no"]
        assert fake.finalizers_of("b", "code") == []

    def test_a_namespace_that_cannot_be_listed_is_reported(self) -> None:
        fake = FakeAPI([llama("b", "code", [OURS])])
        fake.refuse_list = {"a"}
        outcome, _ = release(fake, namespaces=["a", "b"])
        assert not outcome.ok
        [error] = outcome.errors
        assert error.startswith("cannot list llamadeployments in namespace a: ")
        assert fake.finalizers_of("b", "code") == []

    def test_conflicts_without_end_give_up(self) -> None:
        fake = FakeAPI([llama("a", "chat", [OURS])])
        fake.refuse_patch["a/chat"] = k8s.APIError(409, "Conflict", "again")
        outcome, _ = release(fake)
        assert not outcome.ok
        assert len(fake.patches) == finalizers.ATTEMPTS

    def test_put_back_once_by_a_stopping_operator(self) -> None:
        fake = FakeAPI([llama("a", "chat", [OURS])])
        fake.add_back = 1
        outcome, clock = release(fake, wait=60)
        assert outcome.ok
        assert [r.pass_number for r in outcome.released] == [1, 2]
        assert fake.finalizers_of("a", "chat") == []
        # A third pass found nothing, and ended it long before the wait ran out.
        assert clock.slept == [finalizers.PASS_INTERVAL_SECONDS] * 2

    def test_put_back_until_the_wait_runs_out_is_a_failure(self) -> None:
        fake = FakeAPI([llama("a", "chat", [OURS])])
        fake.add_back = 1_000  # an operator that still runs
        outcome, clock = release(fake, wait=5)
        assert not outcome.ok
        assert outcome.came_back == ["a/chat"]
        assert sum(clock.slept) == 5
        assert clock.slept == [2.0, 2.0, 1.0]

    def test_nothing_to_do(self) -> None:
        fake = FakeAPI([llama("a", "chat", [OTHER])])
        outcome, clock = release(fake, wait=60)
        assert outcome.ok
        assert outcome.released == []
        assert fake.patches == []
        assert clock.slept == []


class TestCommand:
    def test_arguments(self) -> None:
        args = arguments.parser().parse_args(["release-finalizers", "-n", "a", "--namespace", "b"])
        assert (args.namespaces, args.wait) == (["a", "b"], 0.0)
        assert (
            arguments.parser().parse_args(["release-finalizers", "--wait", "60"]).namespaces is None
        )

    @pytest.mark.parametrize("wait", ["-1", "soon", "nan"])
    def test_wait_must_be_seconds(self, wait: str, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            cli.main(["release-finalizers", "--wait", wait])
        assert "is not a number of seconds >= 0" in capsys.readouterr().err

    def test_no_credentials_is_an_error(
        self,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        assert cli.main(["release-finalizers"]) == 1
        assert capsys.readouterr().err.startswith("error: no cluster credentials: ")
