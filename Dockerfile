# The CPU image of `headrace serve` (and of the KubeRay manifests' Ray nodes):
#
#   docker build -t headrace:latest .
#   docker run --rm -p 8000-8002:8000-8002 -v $PWD/models:/models:ro headrace:latest
#
# The entrypoint is `headrace serve --host 0.0.0.0` (inside a container, loopback would reach
# nobody); the command is the repository and any further flags, so
# `docker run headrace:latest /models --model-control-mode explicit --load-model mlp` adds
# flags without losing the address. Dockerfile.cuda builds the GPU variant (headrace:latest-cuda)
# with the same Python, Ray and headrace, so both may sit in one Ray cluster.
# tests/deploy/test_dockerfiles.py checks the extras, the pins and the command offline.
ARG PYTHON_VERSION=3.12
FROM python:${PYTHON_VERSION}-slim

# Ray in the image must equal the KubeRay manifests' rayVersion (deploy/kuberay/*.yaml).
ARG RAY_VERSION=2.60.0
# The CPU build of torch: PyPI's Linux wheel pulls in the CUDA libraries (gigabytes).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG HEADRACE_EXTRAS=serve,onnx,torch,ray

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0

# KubeRay starts Ray pods with `/bin/bash -lc` and probes them with wget.
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/*

RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

WORKDIR /tmp/headrace-src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[${HEADRACE_EXTRAS}]" "ray[data]==${RAY_VERSION}" \
    && cd / && rm -rf /tmp/headrace-src

# Non-root, with a fixed uid the Kubernetes manifests name (runAsUser: 10001).
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin headrace
USER 10001:10001
WORKDIR /home/headrace

# HTTP/REST, gRPC, Prometheus metrics (Triton's ports).
EXPOSE 8000 8001 8002

# Ready = the server is live and every model that should be loaded is (--strict-readiness).
# Plain HTTP on the container's own loopback; with --http-ssl-cert, run with --no-healthcheck
# (Kubernetes ignores this check and uses the manifests' probes anyway).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]

ENTRYPOINT ["headrace", "serve", "--host", "0.0.0.0"]
CMD ["/models"]
