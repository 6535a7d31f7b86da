#!/usr/bin/env bash
# Test-only dependencies outside Go. psec (knovichikhin, PyPI) is the
# independent implementation pinblock's cross-check test compares against;
# without it that test skips.
set -euo pipefail
if command -v python3 >/dev/null 2>&1; then
  python3 -c 'import psec' 2>/dev/null || python3 -m pip install --quiet 'psec==1.3.0'
fi
