# syntax=docker/dockerfile:1
# llama-operator image: a virtualenv built in one stage, copied into a slim runtime.
# Build: docker build -t llama-operator:0.1.0 .

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/llama-operator
COPY pyproject.toml constraints.txt README.md ./
COPY operator ./operator
# Exact versions from constraints.txt: the image holds what CI tested. pip and the
# venv's own setuptools are removed afterwards: the running operator needs neither,
# and an unused, unpinned installer is only attack surface.
RUN /opt/llama-operator/bin/pip install -c constraints.txt . \
 && /opt/llama-operator/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
# No compilers, no pip cache, no source tree: only the virtualenv.
COPY --from=build /opt/llama-operator /opt/llama-operator
ENV PATH=/opt/llama-operator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed non-root UID so Pod Security "restricted" (runAsNonRoot) can verify it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["llama-operator", "run"]
# Kopf's liveness endpoint, for the liveness and readiness probes of the operator Pod.
CMD ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]
