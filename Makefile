# The two commands of the README. Each creates/repairs .venv first (tools/install/setup_venv.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: env test demo lint clean-env table webui

env:
	@bash tools/install/setup_venv.sh

test: env
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

demo: env
	@bash tools/demo.sh

lint: env
	$(PY) -m flake8 crseg tools tests

clean-env:
	rm -rf $(VENV)

# The SynthReason comparison table (CR-Seg, ablations, baselines); runs `make demo` first if needed.
table: env
	@bash tools/analysis_tools/synthreason_table.sh

# The web demo on the embedded default (needs `make demo`'s checkpoint); 127.0.0.1:7860.
webui: env
	@bash tools/webui.sh
