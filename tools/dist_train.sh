#!/usr/bin/env bash
# Multi-process training with torchrun. Single node: tools/dist_train.sh CONFIG GPUS [args]
# PYTHON selects the interpreter (default: the repository's .venv/bin/python when it exists,
# else python on PATH).
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) on every node.
set -euo pipefail
CONFIG=${1:?usage: dist_train.sh CONFIG NPROC [train.py args]}
NPROC=${2:?usage: dist_train.sh CONFIG NPROC [train.py args]}
shift 2
NNODES=${NNODES:-1}
case "$NPROC" in (""|*[!0-9]*|0) echo "$(basename "$0"): NPROC must be a positive integer, got '$NPROC'" >&2; exit 2;; esac
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
if [ "$NNODES" -gt 1 ] && [ -z "${MASTER_ADDR:-}" ]; then
  echo "dist_train.sh: NNODES=$NNODES needs MASTER_ADDR (the address of node 0)" >&2; exit 2
fi
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
# DeepSpeed's CPU accelerator counts devices from LOCAL_SIZE (else it calls numactl).
export LOCAL_SIZE=${LOCAL_SIZE:-$NPROC}
DIR=$(cd "$(dirname "$0")" && pwd)
VENV_PY="$DIR/../.venv/bin/python"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$VENV_PY" ]; then PYTHON=$VENV_PY; else PYTHON=python; fi
fi
PYTHONPATH="$DIR/..:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
  --nproc_per_node="$NPROC" --master_port="$PORT" \
  "$DIR/train.py" "$CONFIG" --launcher pytorch "$@"
