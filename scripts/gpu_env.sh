# Sourced by the scripts/gpu_*_check.sh scripts (run from the repository root on a lent GPU machine):
# soundfile from the wheels carried in .whl/ when the machine lacks it, this checkout's src/ on the
# path, and a time budget: `left` prints the seconds remaining of LIMIT_S since sourcing.
if ! python3 -c "import soundfile" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
T0=$SECONDS
left() { echo $(( LIMIT_S - (SECONDS - T0) )); }
