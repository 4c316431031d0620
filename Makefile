# `make demo`: set up .venv, train a small German->English model, translate, print test BLEU.
# `make test`: set up .venv, lint, run the test suite.
VENV := .venv
BIN := $(VENV)/bin
DEMO := runs/multi30k_de_en_demo

.PHONY: setup demo test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/s2s fit --config recipes/multi30k_de_en_demo.yaml
	printf '%s\n' 'Ein Mann fährt Fahrrad auf einer Straße.' \
	    'Zwei Kinder spielen im Sand am Strand.' 'Eine Frau mit einem roten Hut liest ein Buch.' \
	    | $(BIN)/s2s-translate --ckpt $(DEMO)/checkpoints/best.ckpt
	$(BIN)/s2s test --config recipes/multi30k_de_en_demo.yaml --ckpt_path $(DEMO)/checkpoints/best.ckpt

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest
