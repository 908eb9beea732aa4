# syntax=docker/dockerfile:1
# The personid service image: ONNX Runtime + FastAPI, no torch, no training code.
#
#   docker build -t personid:gpu .                          # default: CUDA 12 + onnxruntime-gpu
#   docker build -t personid:cpu --build-arg VARIANT=cpu .  # CPU only: python slim + onnxruntime
#
# onnxruntime-gpu's PyPI wheels are built for CUDA 12 + cuDNN 9 up to 1.26 and for CUDA 13 from 1.27 on,
# so the CUDA base image and the onnxruntime-gpu range move together. CUDA 13 (host driver >= 580):
#   --build-arg CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 --build-arg ORT_GPU="onnxruntime-gpu>=1.27"

ARG VARIANT=gpu
ARG CUDA_IMAGE=nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- base images, one per variant; `FROM base-${VARIANT}` picks one and BuildKit skips the other ---
FROM ${CUDA_IMAGE} AS base-gpu
ARG ORT_GPU="onnxruntime-gpu>=1.20,<1.27"
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV SERVE_EXTRA=gpu \
    ORT_REQUIREMENT="${ORT_GPU}"

FROM ${PYTHON_IMAGE} AS base-cpu
ENV SERVE_EXTRA=serve \
    ORT_REQUIREMENT="onnxruntime>=1.17"

FROM base-${VARIANT} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# --- build: install the package and its serving extra into /opt/venv ---
FROM base AS build
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app/ app/
COPY personid/ personid/
# A regular (not editable) install: the runtime stage needs /opt/venv only, not /src.
RUN pip install --no-cache-dir ".[${SERVE_EXTRA}]" "${ORT_REQUIREMENT}"

# --- runtime: the virtual environment, the models, a non-root user ---
FROM base AS runtime
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/personid personid \
    && mkdir -p /srv/personid/data \
    && chown personid:personid /srv/personid/data
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/personid
COPY models/ models/
USER personid

# Listen on all interfaces inside the container; embedded Qdrant (no PERSONID_QDRANT_URL) writes to data/,
# mount a volume there to keep it.
ENV PERSONID_HOST=0.0.0.0 \
    PERSONID_PORT=8000 \
    PERSONID_MODEL_PATH=/srv/personid/models/default.onnx \
    PERSONID_QDRANT_PATH=/srv/personid/data/qdrant
EXPOSE 8000

# No curl in the image: the interpreter it already has does the probe.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PERSONID_PORT', '8000') + '/healthz', timeout=4)"]

CMD ["personid", "serve"]
