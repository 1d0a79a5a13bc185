"""Kopf handlers: the operator's entry points, kept a few lines each.

Create, update and resume all call one ``reconcile.reconcile``; a timer calls it
again to pick up children's readiness, re-create deleted children, re-apply
Deployments someone else edited, and re-check a closed gate (licence acceptance,
gated-model access) so serving starts once it opens. Children (Deployments,
Services) and GPU nodes are read from Kopf indexes fed by watches, so a reconcile
that has nothing to change issues no API request (but for the licence ConfigMap's
re-apply every few minutes, and the token Secret read while serving pods wait for a
gated-access check). The primary's ready pods are read for their KV capacity once per
set of ready pods (``autoscaling_loop.capacity_per_pod``), not on every tick, and for the
live serving figures every fifth of the SLO window (``slo_probe.Keeper``); with runtime
adapter updates, every reconcile lists (and loads) the adapters of the ready pods through
the engines' own endpoints (``adapter_loader.Loader``). Handlers are
sync: Kopf runs them in its thread pool, where the blocking ``kubernetes`` client is fine.

A reconcile that raises ends in status too: ``reconcile.failed`` decides the
``Reconciled`` False condition and its rate-limited Warning, written through the same
``patch`` (Kopf applies a failed handler's patch), and the handler raises
``kopf.TemporaryError`` so Kopf retries (transient errors heal) with one log line per
retry instead of a traceback each time.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import kopf

from llama_operator import api, reconcile
from llama_operator.api.events import Event
from llama_operator.clients import hub, k8s, scraper
from llama_operator.operations import rollout
from llama_operator.planning import config, pools
from llama_operator.runtime import (
    adapter_loader,
    autoscaling_loop,
    canary_probe,
    finalizers,
    operator_metrics,
    slo_probe,
)
from llama_operator.serving import builders

RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
MANAGED = {"app.kubernetes.io/managed-by": "llama-operator"}
# How often each LlamaDeployment is re-reconciled to pick up its pods' readiness and
# undo drift. Read at import because Kopf binds timer intervals when they register.
RESYNC_ENV = "LLAMA_OPERATOR_RESYNC_SECONDS"
TIMER_INTERVAL_SECONDS = float(os.environ.get(RESYNC_ENV, "15"))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_config = config.load()
    memo.config = operator_config
    memo.metrics_server = operator_metrics.serve()
    memo.client = k8s.Client.from_environment(field_manager=operator_config.fieldManager)
    hub.bound_requests()  # no Hub request may hang a reconcile
    # Our own prefixes, so Kopf's bookkeeping is recognisably ours and never collides
    # with another Kopf-based operator watching the same objects. Kopf puts the finalizer
    # on every LlamaDeployment because of the timer and daemon below; the chart's
    # uninstall hook releases it (runtime.finalizers says why it is needed at all).
    settings.persistence.finalizer = finalizers.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=api.GROUP, key="last-handled-configuration"
    )
    # Ask the API server to end each watch after 5 minutes and give up client-side a
    # bit later: load balancers in front of API servers silently drop idle streams,
    # and a bounded watch is re-established instead of hanging forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # Only our explicit Events reach `kubectl describe`; routine logs stay in logs.
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    # Sync handlers share this pool: size it for many LlamaDeployments reconciling at
    # once (each mostly waits on the API server).
    settings.execution.max_workers = 16


@kopf.on.cleanup()
def stop_metrics(memo: kopf.Memo, **_: Any) -> None:
    server = memo.get("metrics_server")
    if server is not None:
        server.shutdown()
        server.server_close()


@kopf.on.delete(*RESOURCE, optional=True)  # optional: no finalizer of its own
def forget(uid: str, **_: Any) -> None:
    operator_metrics.forget(uid)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, else $KUBECONFIG, read at login time.

    Kopf's default login goes through the ``kubernetes`` package, which reads
    $KUBECONFIG once at import; these read it when called, like our own client.
    """
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
    return info or kopf.login_with_kubeconfig(**kwargs)


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
def llama_deployments(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(namespace, name): _summary(body)}


@kopf.index("", "v1", "services", labels=MANAGED)
def llama_services(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(namespace, name): _summary(body)}


@kopf.index("discovery.k8s.io", "v1", "endpointslices", labels=MANAGED)
def llama_endpointslices(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]] | None:
    """Ready pods behind our Services: EndpointSlices carry their Service's labels."""
    service = labels.get("kubernetes.io/service-name")
    if not service:
        return None
    return {
        (namespace, service): {
            "addressType": body.get("addressType"),
            "ports": list(body.get("ports") or []),
            "endpoints": [
                {
                    "addresses": list(e.get("addresses") or []),
                    "conditions": dict(e.get("conditions") or {}),
                    "targetRef": {"name": (e.get("targetRef") or {}).get("name")},
                }
                for e in body.get("endpoints") or []
            ],
        }
    }


@kopf.index("", "v1", "nodes", labels={pools.PRODUCT_LABEL: kopf.PRESENT})
def gpu_nodes(body: kopf.Body, **_: Any) -> dict[None, dict[str, Any]]:
    return {
        None: {
            "metadata": {"labels": dict(body.metadata.labels)},
            "spec": {"taints": list(body.spec.get("taints") or [])},
            "status": {
                "allocatable": dict(body.status.get("allocatable") or {}),
                "capacity": dict(body.status.get("capacity") or {}),
            },
        }
    }


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
def on_change(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    _reconcile(body, patch, memo, kwargs)


@kopf.timer(*RESOURCE, interval=TIMER_INTERVAL_SECONDS, initial_delay=TIMER_INTERVAL_SECONDS)
def on_timer(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **kwargs: Any) -> None:
    """Refresh status from the children; re-create deleted ones, re-apply edited ones."""
    _reconcile(body, patch, memo, kwargs)


def _builtin_autoscaling(spec: kopf.Spec, **_: Any) -> bool:
    return autoscaling_loop.enabled(spec)


# cancellation_backoff: on stop, the loop is first asked to exit (it does at once:
# it waits on the stop flag between ticks) and cancelled only if it has not after 5 s.
@kopf.daemon(
    *RESOURCE,
    when=_builtin_autoscaling,
    cancellation_backoff=5.0,
    cancellation_timeout=10.0,
)
async def autoscale(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """The built-in autoscaler: every spec.autoscaling.intervalSeconds, autoscaling_loop.tick."""
    slices: kopf.Index[tuple[str | None, str], dict[str, Any]] = kwargs["llama_endpointslices"]
    resume = True  # the first tick starts a new stabilisation window (autoscaling_loop.tick)
    try:
        while not stopped:
            started = time.monotonic()
            # body is a live view: a changed interval or target applies from the next tick.
            interval = float((body.spec.get("autoscaling") or {}).get("intervalSeconds") or 5)
            if await _autoscale_once(body, memo, logger, slices, started, resume=resume):
                resume = False
            await stopped.wait(max(0.0, interval - (time.monotonic() - started)))
    finally:
        operator_metrics.forget_autoscale(body.metadata.uid or "")


async def _autoscale_once(
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    slices: kopf.Index[tuple[str | None, str], dict[str, Any]],
    started: float,
    *,
    resume: bool,
) -> bool:
    """One tick; True when it evaluated (and wrote its window, if that changed)."""
    name, namespace = body.metadata.name or "", body.metadata.namespace or ""
    try:
        # One HTTP session per tick: nothing of it outlives a stopped or cancelled daemon.
        async with scraper.session() as session:
            outcome = await autoscaling_loop.tick(
                body=body,
                # A canary takes its share of the requests during a rollout: its pods
                # are part of the load that spec.replicas (split between both) serves.
                slices=[
                    *slices.get((namespace, f"{name}-primary"), []),
                    *slices.get((namespace, f"{name}-canary"), []),
                ],
                session=session,
                client=memo.client,
                now=time.time(),
                wall=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                resume=resume,
            )
    except k8s.APIError as exc:
        logger.warning(f"autoscaler: {exc}")  # transient or a conflict: the next tick retries
        return False
    if outcome is None:
        return False
    # Evaluations that change nothing leave no status or Event; the log says what was seen.
    logger.debug(f"autoscaler: {outcome.decision.reason}: {outcome.decision.message}")
    failed = sum(1 for sample in outcome.samples if sample.value is None)
    operator_metrics.record_autoscale(
        uid=body.metadata.uid or "",
        namespace=namespace,
        name=name,
        metric=outcome.metric,
        load=outcome.decision.load,
        target=outcome.target,
        replicas=outcome.decision.replicas,
        previous=outcome.current,
        scraped=len(outcome.samples) - failed,
        failed=failed,
        seconds=time.monotonic() - started,
    )
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    return True


def _reconcile(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, kwargs: Mapping[str, Any]
) -> None:
    # Kopf serialises change handlers per object but runs timers beside them; one lock
    # per object (its memo lives exactly as long as the object) keeps reconciles of the
    # same LlamaDeployment from racing each other's applies and Events.
    lock: threading.Lock = memo.setdefault("reconcile_lock", threading.Lock())
    slices: kopf.Index[tuple[str | None, str], dict[str, Any]] = kwargs["llama_endpointslices"]
    if "analyzer" not in memo:
        memo.analyzer = canary_probe.Analyzer(lambda ns, service: slices.get((ns, service), []))
    if "adapter_loader" not in memo:
        client = memo.client
        memo.adapter_loader = adapter_loader.Loader(
            lambda ns, service: slices.get((ns, service), []),
            lambda ref, ns: client.read_secret_value(namespace=ns, name=ref.name, key=ref.key),
        )
    if "serving_keeper" not in memo:
        # Scrapes happen in reconciles: never more often than the resync.
        memo.serving_keeper = slo_probe.Keeper(
            lambda ns, service: slices.get((ns, service), []), floor=TIMER_INTERVAL_SECONDS
        )
    with lock:
        _reconcile_locked(
            body,
            patch,
            memo,
            # Kopf passes every index to every handler as a keyword argument.
            deployments=kwargs["llama_deployments"],
            services=kwargs["llama_services"],
            nodes=kwargs["gpu_nodes"],
            slices=kwargs["llama_endpointslices"],
            logger=kwargs["logger"],
            retry=int(kwargs.get("retry") or 0),
        )


def _reconcile_locked(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    *,
    deployments: kopf.Index[tuple[str | None, str], dict[str, Any]],
    services: kopf.Index[tuple[str | None, str], dict[str, Any]],
    nodes: kopf.Index[None, dict[str, Any]],
    slices: kopf.Index[tuple[str | None, str], dict[str, Any]],
    logger: kopf.Logger,
    retry: int,
) -> None:
    indexes = {"Deployment": deployments, "Service": services}
    started = time.monotonic()
    analyzer: canary_probe.Analyzer = memo.analyzer  # per object: its memo lives as long as it

    def lookup(kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        store = indexes[kind].get((namespace, name))
        return next(iter(store), None) if store else None

    try:
        outcome = reconcile.reconcile(
            body=body,
            settings=memo.config,
            cluster=reconcile.Cluster(
                client=memo.client, lookup=lookup, gpu_nodes=nodes.get(None, [])
            ),
            clock=reconcile.Clock(
                now=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                instant=time.time(),
            ),
            readers=_readers(memo, slices, analyzer, memo.serving_keeper),
            memory=reconcile.Memory(
                generations=memo.setdefault("child_generations", {}),
                unwatched=memo.setdefault("unwatched_children", {}),
                handled=memo.setdefault("handled_actions", {}),
            ),
        )
    except Exception as exc:
        operator_metrics.record_error(seconds=time.monotonic() - started)
        failed = reconcile.failed(
            body=body,
            error=exc,
            now=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            instant=time.time(),
            reported=memo.setdefault("reported_error", {}),
            attempt=retry,
            interval=TIMER_INTERVAL_SECONDS,
        )
        if failed.log_traceback:
            logger.error(f"reconcile failed: {failed.message}", exc_info=exc)
        # Kopf applies the patch of a handler that raised too: the condition is written.
        _report(body, patch, failed.status_patch, failed.events)
        # Retried (transient errors heal), with one log line per retry and no traceback.
        raise kopf.TemporaryError(failed.message, delay=failed.retry_in) from exc
    memo.setdefault("reported_error", {}).clear()
    operator_metrics.record(
        uid=body.metadata.uid or "",
        phase=outcome.phase,
        written=outcome.written,
        failure=outcome.failure,
        seconds=time.monotonic() - started,
    )
    operator_metrics.record_rollout([event.reason for event in outcome.events])
    # The per-endpoint gauges the chart's alerts join on: from the status this reconcile
    # leaves (the object's status with the patch about to be written merged in).
    operator_metrics.record_endpoint(
        uid=body.metadata.uid or "",
        namespace=body.metadata.namespace or "",
        name=body.metadata.name or "",
        spec=body.spec,
        status=_merged(body.status, outcome.status_patch),
    )
    if outcome.consume_action:
        patch.metadata.annotations[rollout.ACTION_ANNOTATION] = None
    _report(body, patch, outcome.status_patch, outcome.events)


def _merged(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with a JSON merge patch (RFC 7386) applied: null removes a key."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _readers(
    memo: kopf.Memo,
    slices: kopf.Index[tuple[str | None, str], dict[str, Any]],
    analyzer: canary_probe.Analyzer,
    keeper: slo_probe.Keeper,
) -> reconcile.Readers:
    """The outside world a reconcile may read: the Hub and tokens through the client, the
    primary's metrics from the pods behind its Service (the EndpointSlices index)."""
    return reconcile.Readers(
        fetch=reconcile.token_fetcher(memo.client),
        card=reconcile.card_fetcher(memo.client),
        access=reconcile.access_checker(memo.client, memo.config),
        api_key=reconcile.key_checker(memo.client),
        measure=analyzer.measure,
        queue=lambda ns, name, plan: autoscaling_loop.queue_per_pod(
            slices.get((ns, f"{name}-primary"), []),
            engine=plan.engine,
            version=plan.engineVersion,
        ),
        kv_capacity=lambda ns, name, plan: autoscaling_loop.capacity_per_pod(
            slices.get((ns, f"{name}-primary"), []), plan=plan
        ),
        corrections=reconcile.corrections_reader(memo.client, memo.config),
        serving=keeper.read,
        adapter=reconcile.adapter_reader(memo.client),
        adapter_load=memo.adapter_loader,
    )


def _report(
    body: kopf.Body, patch: kopf.Patch, status_patch: Mapping[str, Any], events: list[Event]
) -> None:
    if status_patch:
        patch.status.update(status_patch)
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def _summary(body: kopf.Body) -> dict[str, Any]:
    """What the reconciler needs of a child: its content hash and its status."""
    annotations = dict(body.metadata.annotations)
    return {
        "metadata": {
            "generation": body.metadata.get("generation"),
            "annotations": {
                key: annotations[key]
                for key in (builders.HASH_ANNOTATION, builders.REVISION_ANNOTATION)
                if key in annotations
            },
        },
        "spec": {"replicas": (body.get("spec") or {}).get("replicas")},
        "status": dict(body.get("status") or {}),
    }
