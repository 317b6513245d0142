# Sourced by the GPU-machine scripts (gpu_session.sh, gpu_small12.sh).

# The carried wheels, if any, installed into /tmp/site, then PYTHONPATH = /tmp/site (when
# installed), src/ and the folders given ("$PWD/benchmarks"). Needs PY, WHEELS (empty: none)
# and a say function.
use_wheels() {
  local path="$PWD/src${1:+:$1}"
  if [ -n "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$WHEELS"/*.whl || { say "wheel install failed"; exit 3; }
    path="/tmp/site:$path"
  fi
  export PYTHONPATH="$path:${PYTHONPATH:-}"
}

# claim_folders SCRIPT VAR DIR [VAR DIR ...]: each DIR made (with a marker), or made by an
# earlier call of SCRIPT; a folder holding other files is refused, before any folder is made,
# since the script's fixed names there (results.tgz, session.log, queue, ...) would replace a
# user's files.
claim_folders() {
  local script=$1 marker=".${1%.sh}_folder" var dir
  shift
  local args=("$@") i
  for ((i = 0; i < ${#args[@]}; i += 2)); do
    var=${args[i]} dir=${args[i + 1]}
    if [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ] && [ ! -e "$dir/$marker" ]; then
      echo "$script: error: $dir ($var) holds files this script did not write; give a new or" \
        "empty folder" >&2
      exit 2
    fi
  done
  for ((i = 1; i < ${#args[@]}; i += 2)); do
    mkdir -p "${args[i]}" && touch "${args[i]}/$marker"
  done
}
