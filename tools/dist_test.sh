#!/usr/bin/env bash
# Multi-process evaluation with torchrun, with or without a trained checkpoint:
#   tools/dist_test.sh CONFIG NPROC [test.py args]             (weights from the config's files)
#   tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args]
# The 2nd argument is NPROC when it is a positive integer and no file of that name exists;
# otherwise it is CHECKPOINT and the 3rd is NPROC.
# PYTHON selects the interpreter (default: the repository's .venv/bin/python when it exists,
# else python on PATH).
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on every node.
set -euo pipefail
USAGE="usage: $(basename "$0") CONFIG [CHECKPOINT] NPROC [test.py args]"
CONFIG=${1:?$USAGE}
ARG2=${2:?$USAGE}
CHECKPOINT=()
case "$ARG2" in
  (*[!0-9]*|0*) ;;
  (*) [ -e "$ARG2" ] || { NPROC=$ARG2; shift 2; }
esac
if [ -z "${NPROC:-}" ]; then
  if [ $# -lt 3 ]; then
    echo "$(basename "$0"): '$ARG2' is taken as CHECKPOINT (not a positive integer, or an" \
      "existing file), so NPROC must follow it; $USAGE" >&2; exit 2
  fi
  NPROC=$3
  CHECKPOINT=("$ARG2")
  shift 3
fi
NNODES=${NNODES:-1}
case "$NPROC" in (""|*[!0-9]*|0) echo "$(basename "$0"): NPROC must be a positive integer, got '$NPROC' ($USAGE)" >&2; exit 2;; esac
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
if [ "$NNODES" -gt 1 ] && [ -z "${MASTER_ADDR:-}" ]; then
  echo "dist_test.sh: NNODES=$NNODES needs MASTER_ADDR (the address of node 0)" >&2; exit 2
fi
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
DIR=$(cd "$(dirname "$0")" && pwd)
VENV_PY="$DIR/../.venv/bin/python"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$VENV_PY" ]; then PYTHON=$VENV_PY; else PYTHON=python; fi
fi
PYTHONPATH="$DIR/..:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
  --nproc_per_node="$NPROC" --master_port="$PORT" \
  "$DIR/test.py" "$CONFIG" ${CHECKPOINT[@]+"${CHECKPOINT[@]}"} --launcher pytorch "$@"
