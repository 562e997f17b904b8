#!/usr/bin/env bash
# `make demo`: the main job on the embedded default. Filled in by the CR-Seg end-to-end work.
echo "crseg demo: the end-to-end CR-Seg segmentor has not landed yet; the demo arrives with it." >&2
exit 1
