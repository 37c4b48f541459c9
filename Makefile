# Two commands for a fresh machine: `make run` (the main job) and `make test`. Both set up .venv on first use.
VENV := .venv
ARGS ?=

.PHONY: setup run test colcon-check clean

setup:
	@bash scripts/setup_env.sh

run: setup
	@$(VENV)/bin/dimgestor-launch $(ARGS)

test: setup
	@HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/python -m pytest -q test

clean:
	rm -rf $(VENV) build install log
