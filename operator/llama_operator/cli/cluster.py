"""The commands that act on a cluster: ``run`` (the operator) and ``release-finalizers``.

``run`` starts the Kopf operator with the handlers of ``llama_operator.runtime.handlers``;
any Kopf option after ``run`` passes through. ``release-finalizers`` removes the
operator's finalizer from the LlamaDeployments once the operator is gone
(``runtime.finalizers``), with the credentials ``clients.k8s`` finds.
"""

from __future__ import annotations

import argparse
import sys

from kopf import cli as kopf_cli

from llama_operator.clients import k8s
from llama_operator.runtime import finalizers


def cmd_release_finalizers(args: argparse.Namespace) -> int:
    """``release-finalizers``: 1 without credentials, or when a release failed or the
    finalizer kept coming back."""
    try:
        client = k8s.Client.from_environment()
    except k8s.CredentialsError as exc:
        print(f"error: no cluster credentials: {exc}", file=sys.stderr)
        return 1
    outcome = finalizers.release(client=client, namespaces=args.namespaces, wait=args.wait)
    for released in outcome.released:
        again = " (it had come back)" if released.pass_number > 1 else ""
        print(f"released {finalizers.FINALIZER} from {released.namespace}/{released.name}{again}")
    for error in outcome.errors:
        print(f"error: {error}", file=sys.stderr)
    if outcome.came_back:
        print(
            f"error: {finalizers.FINALIZER} came back on {', '.join(outcome.came_back)} "
            f"until the end of the wait ({args.wait:g} s): is an operator still running?",
            file=sys.stderr,
        )
    if not outcome.released and outcome.ok:
        print(f"no LlamaDeployment carries {finalizers.FINALIZER}")
    return 0 if outcome.ok else 1


def run_operator(extra: list[str]) -> int:
    """``kopf run`` on the operator's handlers, in every namespace unless ``extra`` names
    some (``extra``: the Kopf options given after ``run``, in order)."""
    scoped = any(
        a in ("-A", "--all-namespaces") or a.startswith(("-n", "--namespace")) for a in extra
    )
    argv = [
        "run",
        "-m",
        "llama_operator.runtime.handlers",
        *([] if scoped else ["--all-namespaces"]),
    ]
    kopf_cli.main(args=[*argv, *extra], prog_name="llama-operator")
    return 0
