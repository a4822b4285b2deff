# Every target installs what it needs, so `make run` and `make test` each work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
STAMP := $(VENV)/.installed

.PHONY: install run test test-quick lint bench tiny-model packer-requirements clean test-tools docs

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# [test] pulls in the [worker] and [launcher] extras. torch==2.13.0 is pinned in pyproject.toml;
	# on a machine with a local CPU wheel pip takes it from there.
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(CHECKOV_VENV)/.installed:
	# checkov pins its own dependency versions, so it lives in a venv of its own.
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==3.3.30'
	touch $@

run: install
	$(PY) -m worker

# Debian packages the tests drive: chromium (the listening page in a real browser), systemd
# (systemd-analyze verify/security on the worker units) and shellcheck (the bootstrap and the
# rendered UserData). CI runs as root on a fresh machine, so missing ones are installed there; where
# that is impossible (not root, no apt-get) their tests skip with a message naming the tool.
TEST_TOOLS := chromium:chromium systemd-analyze:systemd shellcheck:shellcheck

test-tools:
	@missing=""; for tool in $(TEST_TOOLS); do \
	  command -v $${tool%%:*} >/dev/null 2>&1 || missing="$$missing $${tool#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "not installed:$$missing (their tests will be skipped)"; fi; \
	fi

# pytest-xdist workers: the process tier mostly waits on processes, servers and terraform, so
# more workers than cores pay off; tests that share one resource (the terraform deployment, the
# launcher's venv build) stay on one worker each (xdist_group, --dist loadgroup).
TEST_WORKERS ?= 4
XDIST := -n $(TEST_WORKERS) --dist loadgroup

test: install test-tools
	$(PY) -m pytest $(XDIST) --hypothesis-profile ci

# The inner loop: the in-process tests (not the process tier, marked slow: real worker processes,
# boots, the real terraform apply, the browser, venv builds) of a fast file or two per layer, with
# a tenth of the property tests' examples. `make test` runs them all; `pytest -m 'not slow'` runs
# every in-process test.
QUICK_TESTS := \
	tests/test_prompts.py tests/test_values.py tests/test_worker_decisions.py \
	tests/test_prompts_fuzz.py tests/test_leases_and_store.py \
	tests/test_launcher_prices.py tests/test_launcher_estimate.py tests/test_launcher_quotas.py \
	tests/test_launcher_help.py tests/test_launcher_names.py tests/test_launcher_tf.py \
	tests/test_launcher_gpus.py tests/test_launcher_aws.py tests/test_terraform_structure.py \
	tests/test_systemd_units.py tests/test_page.py tests/test_layout.py tests/test_docs.py

test-quick: install
	$(PY) -m pytest $(XDIST) -m 'not slow' --hypothesis-profile dev $(QUICK_TESTS)

# ruff, then the checks that read files only (lint/test_lint.py): terraform fmt, packer fmt and
# checkov, which fail on any finding.
lint: install $(CHECKOV_VENV)/.installed
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache
	CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest lint

# The option and variable tables in docs/ come from the click commands and terraform/variables.tf;
# tests/test_docs.py fails when they are stale.
docs: install
	$(PY) -m tools.docs

# A tiny random MusicGen for trying the pipeline offline: MUSICGEN_MODEL=.tiny-model make run
tiny-model: install
	$(PY) -m tools.tiny_model .tiny-model

# The AMI's requirements come from pyproject.toml (its base dependencies and the [worker] extra);
# run after changing either, tests/test_packer.py fails while the file is stale.
packer-requirements:
	$(PYTHON) packer/generate_requirements.py

bench: install
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) output .pytest_cache .tiny-model .spool .cache
