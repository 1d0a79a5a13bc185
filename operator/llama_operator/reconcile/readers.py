"""The readers the runtime hands a reconcile (``inputs.Readers``), built over the k8s client.

Each reads only when called, and only what it needs: a token Secret is read when the Hub
is actually asked (a cached answer needs none), an API-key Secret is looked at without
reading its value, the calibration ConfigMap when a plan is made anew. Tokens are never
logged or put in a message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from llama_operator import api
from llama_operator.clients import hub, k8s
from llama_operator.licensing import gating
from llama_operator.operations import adapters, capacity
from llama_operator.planning import config, facts
from llama_operator.reconcile import inputs


def token_fetcher(client: k8s.Client) -> inputs.HubFetch:
    """A Hub fetch that reads the token from the referenced Secret, only when called."""

    def fetch(model: api.ModelSpec, namespace: str) -> facts.PartialFacts:
        known = hub.cached(repo_id=model.id, revision=model.revision)
        if known is not None:
            return known  # no Secret read, no request: the answer does not change
        token = _token_of(client, model, namespace)()
        return hub.fetch(repo_id=model.id, revision=model.revision, token=token)

    return fetch


def _token_of(client: k8s.Client, model: api.ModelSpec, namespace: str) -> Callable[[], str | None]:
    """Reads the referenced token when called: the Secret is read only if the Hub is asked."""

    def read() -> str | None:
        ref = model.tokenSecretRef
        if ref is None:
            return None
        return client.read_secret_value(namespace=namespace, name=ref.name, key=ref.key)

    return read


def adapter_reader(client: k8s.Client) -> inputs.AdapterRead:
    """Adapter facts from the Hub, with the adapter's token (else the model's) read from its
    Secret only on a lookup that goes to the Hub."""

    def read(adapter: api.Adapter, model: api.ModelSpec, namespace: str) -> adapters.Found:
        ref = adapter.tokenSecretRef or model.tokenSecretRef

        def token() -> str | None:
            if ref is None:
                return None
            return client.read_secret_value(namespace=namespace, name=ref.name, key=ref.key)

        return adapter_facts(adapter, token=token)

    return read


def adapter_facts(adapter: api.Adapter, *, token: Callable[[], str | None]) -> adapters.Found:
    """What the Hub says about one adapter; a path adapter is not looked up. Its
    adapter_config.json is read only when the spec does not give both rank and
    targetModules; its card always (the licence it declares, the base models it names)."""
    if adapter.id is None:
        return adapters.Found()
    config: hub.AdapterConfig | None = None
    try:
        if adapter.rank is None or not adapter.targetModules:
            config = hub.adapter_config(repo_id=adapter.id, revision=adapter.revision, token=token)
        card = hub.card(repo_id=adapter.id, revision=adapter.revision, token=token)
    except hub.HubError as exc:
        # The card's messages name the model's fields; this card is the adapter's.
        return adapters.Found(error=str(exc).replace("spec.model.", "spec.adapters[].", 1))
    named = (config.base_model,) if config is not None and config.base_model else ()
    return adapters.Found(
        rank=config.rank if config is not None else None,
        target_modules=config.target_modules if config is not None else (),
        base_models=tuple(dict.fromkeys((*named, *card.base_models))),
        license=card.license,
        license_name=card.license_name,
    )


def key_checker(client: k8s.Client) -> inputs.KeyCheck:
    """Whether the Secret of spec.auth.apiKeySecretRef holds its key (its value unread)."""

    def check(ref: api.APIKeySecretRef, namespace: str) -> bool:
        return client.secret_has_key(namespace=namespace, name=ref.name, key=ref.key)

    return check


def card_fetcher(client: k8s.Client) -> inputs.CardFetch:
    """Hub cards, with the model's token read only on a lookup that goes to the Hub."""

    def fetch(repo_id: str, revision: str, model: api.ModelSpec, namespace: str) -> hub.Card:
        return hub.card(
            repo_id=repo_id, revision=revision, token=_token_of(client, model, namespace)
        )

    return fetch


def access_checker(client: k8s.Client, settings: config.OperatorConfig) -> inputs.AccessCheck:
    """Gated-access checks of the token in spec.model.tokenSecretRef (never logged)."""

    def check(model: api.ModelSpec, namespace: str) -> gating.AccessAnswer:
        ref = model.tokenSecretRef
        token = _token_of(client, model, namespace)()
        if ref is None or token is None:
            where = f"{ref.name!r} (key {ref.key!r})" if ref is not None else "(none)"
            return gating.AccessAnswer(
                "SecretMissing",
                f"the Secret {where} named in spec.model.tokenSecretRef does not exist in "
                f"namespace {namespace} or has no such key: create it with a Hugging Face "
                f"token that has been granted access to {model.id}",
            )
        try:
            answer = hub.access(
                repo_id=model.id,
                token=token,
                retry_seconds=settings.hub.accessRetrySeconds,
                max_retry_seconds=settings.hub.accessMaxRetrySeconds,
            )
        except hub.HubError as exc:
            return gating.AccessAnswer(
                "Unreachable",
                f"gated access to {model.id} could not be checked ({exc}); serving goes ahead "
                "and the engine reports any access error itself",
            )
        return gating.AccessAnswer(answer.reason, answer.message)  # type: ignore[arg-type]

    return check


def corrections_reader(
    client: k8s.Client, settings: config.OperatorConfig
) -> inputs.CorrectionsRead | None:
    """The recorded corrections, read from the calibration ConfigMap when called (a plan is
    made anew); None when the operator config names no calibration namespace."""
    namespace, name = settings.calibration.namespace, settings.calibration.configMap
    if namespace is None:
        return None

    def read() -> Mapping[str, capacity.Correction]:
        found = client.get(api_version="v1", kind="ConfigMap", namespace=namespace, name=name)
        return capacity.records((found or {}).get("data"))

    return read
