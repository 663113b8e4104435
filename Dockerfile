# syntax=docker/dockerfile:1
# hgfleet container image: `docker build -t hgfleet:0.1.0 .`
#
# Two stages: the first builds the `hgfleet` binary with Debian 12's -dev
# packages; the second carries only the binary and the shared libraries it
# links, and runs as the unprivileged user 10001. SQL migrations are compiled
# into the binary, so the image needs no source tree. No secret is baked in:
# the Helm chart mounts them as files (HGFLEET_*_FILE) at run time.

FROM debian:12 AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libcurl4-openssl-dev libssl-dev libjansson-dev libpq-dev libev-dev \
      libmicrohttpd-dev libexpat1-dev libcmocka-dev libyaml-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore keeps build trees, .git and test artifacts out of the context.
COPY . .
# Only the daemon is built: the simulator and the tests are not shipped.
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build /build --target hgfleet -j"$(nproc)" \
 && strip /build/hgfleet \
 && /build/hgfleet version

FROM debian:12-slim
# The runtime halves of the build stage's -dev packages, nothing else.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcurl4 libssl3 libjansson4 libpq5 libev4 libmicrohttpd12 libexpat1 libyaml-0-2 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 hgfleet \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin hgfleet
COPY --from=build /build/hgfleet /usr/local/bin/hgfleet
LABEL org.opencontainers.image.title="hgfleet" \
      org.opencontainers.image.description="ECR fleet scheduler: syncs AWS ECR registries into PostgreSQL" \
      org.opencontainers.image.version="0.1.0"
# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/hgfleet"]
CMD ["serve"]
