# The project's commands. Two matter to a newcomer (README): `make book` and `make test`.
# Every target creates .venv when it is missing or older than pyproject.toml or constraints.txt:
# the project with every extra, at the versions constraints.txt pins.

PYTHON  ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
# the extras `make` installs (pyproject.toml): the harness, the sweep, the book, the tests
EXTRAS  := paper,sweep,book,dev
# The book's profile: `paper` once results/paper holds every run (a GPU job, book/rerun.md);
# until then `quick`, which a CPU retrains in about 40 minutes.
PROFILE ?= paper
FRESH   ?=
export SGMCMC_PROFILE ?= $(PROFILE)

.PHONY: help venv system-deps data notebooks book html browser-check test lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
# torchattacks: the tests' peer for the attacks; it pins an old requests, so without its deps
	$(BIN)/python -m pip install --quiet --no-deps torchattacks==3.5.1
	touch $@

venv: $(BIN)/.installed  ## create .venv: the project with every extra, at constraints.txt's versions

system-deps:  ## Debian packages: fonts (notMNIST-style), Fashion-MNIST, Chromium (as root; else print the command)
	bash .ci/install-system-deps

data: venv system-deps  ## fetch, render and verify every dataset into data/ ($$SGMCMC_DATA)
	$(BIN)/sgmcmc data

notebooks: data  ## execute every notebook with papermill at PROFILE (ci|quick|paper; on a CPU quick and paper train nothing: runs not stored are 'not trained', a chapter with too little stored runs at a smaller profile) into book/notebooks/; FRESH=1 retrains
	$(BIN)/sgmcmc notebooks --profile $(PROFILE) $(if $(FRESH),--fresh,)

html: venv  ## render the book from the executed notebooks (no execution) into _build/html
	$(BIN)/jupyter-book build . --warningiserror --keep-going

book: notebooks html  ## the main job: execute the notebooks (from the stored results) and build _build/html

browser-check: venv  ## open every page of _build/html in headless Chromium, save screenshots
	$(BIN)/python .ci/browser_check.py _build/html

lint: venv  ## ruff, the only linter and formatter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: venv  ## the whole suite: lint, units, statistics, CLI, notebooks at ci (nbval), book build
	-@bash .ci/install-system-deps
	$(MAKE) lint
	$(BIN)/sgmcmc data --only mnist
	SGMCMC_PROFILE=ci $(BIN)/python -m pytest --nbval-lax tests notebooks

bench: venv  ## speed benchmarks: ratios against plain PyTorch, measured in one process
	$(BIN)/python benchmarks/sampler_overhead.py

clean:  ## remove build outputs (keeps .venv, data/ and results/)
	rm -rf _build
