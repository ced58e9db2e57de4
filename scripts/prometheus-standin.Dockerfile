# A stand-in for prom/prometheus where Docker Hub is out of reach: Debian's prometheus package on the
# stand-in base, laid out like the official image (/prometheus owned by nobody, the binary as entrypoint).
#   docker build -t resnet50-serving/prometheus:standin --build-arg BASE_IMAGE=... - < scripts/prometheus-standin.Dockerfile
ARG BASE_IMAGE=resnet50-serving/base:bookworm
FROM ${BASE_IMAGE}
# The Debian release fixes the versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus \
    && chown nobody:nogroup /prometheus
USER 65534:65534
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
