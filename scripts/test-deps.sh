#!/usr/bin/env bash
# System packages the tests need beyond the virtualenv (headless Chromium renders the report).
# Idempotent and quiet when already present; never fatal: tests that need it skip with a reason.
set -u
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium (Debian) for the report rendering test..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the rendering test will be skipped"
fi
exit 0
