# Sourced by the GPU-machine scripts (gpu_session.sh, gpu_small12.sh): the carried wheels, if
# any, installed into /tmp/site, then PYTHONPATH = /tmp/site (when installed), src/ and the
# folders given ("$PWD/benchmarks"). Needs PY, WHEELS (empty: none) and a say function.
use_wheels() {
  local path="$PWD/src${1:+:$1}"
  if [ -n "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$WHEELS"/*.whl || { say "wheel install failed"; exit 3; }
    path="/tmp/site:$path"
  fi
  export PYTHONPATH="$path:${PYTHONPATH:-}"
}
