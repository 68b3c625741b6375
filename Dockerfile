# One image for every RewardLab process: web (gunicorn), worker-cpu and worker-gpu (celery).
# Which process a container runs is its command (docker-compose.yml); configuration is environment only.
#
#   docker build -t rewardlab .                                                          # CPU torch
#   docker build -t rewardlab-gpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# The CPU image installs the CPU wheel of torch (about 200 MB). A GPU image installs the CUDA build of the
# same version instead, from the CUDA index that matches the GPU host's driver (cu126, cu128, ...); the
# CUDA runtime comes inside those wheels, the driver from the host (NVIDIA Container Toolkit).

# htmx comes from the npm package htmx.org (package.json, locked); settings serve it from node_modules.
FROM node:22-bookworm-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # The checkout in /app is what runs (settings find templates/, static/ and node_modules/ beside it).
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=annotate.settings \
    # Nothing is ever downloaded at run time (API.md): encoders load from local paths or installed packages.
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    MEDIA_ROOT=/data/media \
    REWARDLAB_MODEL_DIR=/data/models \
    REWARDLAB_CACHE_DIR=/cache

WORKDIR /app

# torch first, from the chosen index: `pip install .` then finds torch==2.13.0 satisfied (2.13.0+cpu counts)
# instead of pulling the default CUDA build and its gigabytes of nvidia-* packages from PyPI.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

# Dependencies before the code, so editing code does not reinstall them: install from pyproject.toml alone.
COPY pyproject.toml README.md ./
RUN mkdir -p annotate rewardlab workers \
    && touch annotate/__init__.py rewardlab/__init__.py workers/__init__.py \
    && pip install . \
    && pip uninstall --yes rewardlab

COPY . .
COPY --from=assets /src/node_modules ./node_modules
RUN pip install --no-deps . \
    && python manage.py collectstatic --noinput -v 0

# Run as a user that owns only what it must write: media and models (a volume), the embedding cache and var/.
RUN useradd --create-home --uid 10001 rewardlab \
    && mkdir -p /data/media /data/models /cache /app/var \
    && chown -R rewardlab:rewardlab /data /cache /app/var
USER rewardlab

EXPOSE 8000
CMD ["gunicorn", "annotate.wsgi", "--bind", "0.0.0.0:8000"]
