#!/usr/bin/env bash
# Installs the real clients the end-to-end suites drive: sentry-sdk, pytest and
# sentry-cli 2.x from PyPI; @sentry/node, @sentry/browser, @sentry/cli 3.x, esbuild and
# playwright-core from npm; Chromium from Debian. Idempotent: a stamp per step.
set -euo pipefail
WORK=${1:?work dir}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"

if [ ! -f "$WORK/venv/.stamp-v2" ]; then
  echo "installing Python test clients into $WORK/venv"
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check \
    'sentry-sdk==2.75.0' 'brotli==1.1.0' 'pytest==8.4.2' 'sentry-cli==2.58.6' 'zstandard==0.25.0'
  touch "$WORK/venv/.stamp-v2"
fi

# A real SMTP server for the email alert tests (its own stamp: added after the first venv).
if [ ! -f "$WORK/venv/.stamp-smtp-v1" ]; then
  "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check 'aiosmtpd==1.4.6'
  touch "$WORK/venv/.stamp-smtp-v1"
fi

if [ ! -f "$WORK/node/.stamp-v1" ]; then
  echo "installing Node test clients into $WORK/node"
  mkdir -p "$WORK/node"
  cp "$HERE/package.json" "$WORK/node/package.json"
  (cd "$WORK/node" && npm install --no-audit --no-fund --loglevel=error)
  touch "$WORK/node/.stamp-v1"
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing Chromium from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq chromium >/dev/null
fi

# Observability tests: an OTLP receiver (opentelemetry-proto) and Prometheus' parsers.
if [ ! -f "$WORK/venv/.stamp-obs-v1" ]; then
  "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check \
    'opentelemetry-proto==1.45.2' 'prometheus-client==0.26.0'
  touch "$WORK/venv/.stamp-obs-v1"
fi

# Artifact storage in S3: moto's server is a real S3-compatible endpoint; boto3 lists it.
if [ ! -f "$WORK/venv/.stamp-s3-v1" ]; then
  "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5' 'boto3==1.44.5'
  touch "$WORK/venv/.stamp-s3-v1"
fi

# `nginx -t` checks deploy/nginx/faultline.conf. Debian's package unpacked into the work
# folder, not installed: installing it would start a daemon on port 80.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x "$WORK/nginx/usr/sbin/nginx" ]; then
  echo "unpacking nginx from Debian into $WORK/nginx"
  rm -rf "$WORK/nginx.deb" && mkdir -p "$WORK/nginx.deb"
  (cd "$WORK/nginx.deb" && apt-get download -qq nginx 2>/dev/null || { apt-get update -qq >/dev/null && apt-get download -qq nginx; })
  dpkg -x "$WORK"/nginx.deb/nginx_*.deb "$WORK/nginx"
  rm -rf "$WORK/nginx.deb"
fi

# `docker compose config` validates docker-compose.yml; without the docker client and its
# compose plugin, Debian's docker-compose (v1) does the same check without a daemon.
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
  echo "installing docker-compose from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq docker-compose >/dev/null
fi
