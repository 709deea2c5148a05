#!/usr/bin/env bash
# Install everything the tests need (torch CPU, samkit, the reference `sam2` oracle) and run them.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pip_install() { "$PY" -m pip install --disable-pip-version-check --quiet "$@"; }

# torch first, pinned, so nothing below pulls a CUDA build
pip_install "torch==2.13.0"
pip_install -e ".[test]"
# the oracle: Meta's reference package, without its CUDA extension, and hydra's pinned parser
SAM2_BUILD_CUDA=0 pip_install --no-deps --no-build-isolation "sam2==1.1.0" "hydra-core==1.3.8" \
    "omegaconf==2.3.0" "antlr4-python3-runtime==4.9.3" "iopath==0.1.10" "portalocker" "pyyaml"

# onnxruntime-web for the page's client-side decoding, from the npm registry into the package
"$PY" -m samkit.server.vendor
# headless Chromium for the browser tests (Debian's package; Playwright drives it, no browser download)
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
fi

"$PY" -m ruff check src tests benchmarks
"$PY" -m ruff format --check --quiet src tests benchmarks
NO_MKDOCS_2_WARNING=1 "$PY" -m mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
set +e
"$PY" -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure here, not a pass
[ "$rc" -eq 5 ] && { echo "no tests ran" >&2; exit 1; }
exit "$rc"
