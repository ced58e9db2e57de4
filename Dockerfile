# The ResNet-50 image: the inference service by default, the trainer with another command.
#   docker build -t resnet50-serving .
#   docker build --build-arg BASE_IMAGE=my-registry/python:3.11 .   (Debian-like, python3 >= 3.11 with venv)
# torch comes from PyPI: its default (CUDA) build, which also runs on hosts without a GPU.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Only the dependency list reaches the torch layer below, so editing anything else in
# pyproject.toml (version, tool settings) keeps that multi-GB layer cached.
FROM ${BASE_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
    > requirements.txt

FROM ${BASE_IMAGE} AS runtime
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# PyPI's torch is built for CUDA 13 (NVIDIA driver 580 or newer). For an older driver, take the
# wheels from PyTorch's own index for that CUDA, e.g. https://download.pytorch.org/whl/cu126.
ARG TORCH_INDEX_URL=https://pypi.org/simple
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
# A C++ compiler for the trainer's --compile: torch.compile builds Triton launchers and CPU kernels.
# The base image's Debian release fixes the versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
# A venv rather than the base's own site-packages: the same steps then work on the official image
# (python in /usr/local) and on a Debian base (python in /usr, pip installs refused by PEP 668).
RUN python3 -m venv /opt/venv
COPY --from=requirements /src/requirements.txt /tmp/requirements.txt
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The weights volume is mounted on /weights; an empty named volume takes this folder's owner.
RUN groupadd --gid 10001 app \
    && useradd --create-home --uid 10001 --gid app --no-log-init app \
    && mkdir /weights /data \
    && chown app:app /weights
WORKDIR /app
COPY model/ model/
COPY training/ training/
COPY app/ app/
COPY docker/entrypoint.sh docker/healthcheck.py docker/

ENV PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVE_MODEL_PATH=/weights/model.safetensors \
    SERVE_HOST=0.0.0.0 \
    SERVE_PORT=8000
USER 10001:10001
EXPOSE 8000 8001
# start-period covers a first start that downloads the weights.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5m --retries=3 CMD ["python", "/app/docker/healthcheck.py"]
CMD ["/app/docker/entrypoint.sh"]
