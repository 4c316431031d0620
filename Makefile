# `make demo`: set up .venv, train a small German->English model, translate, print test BLEU;
#   then train a small captioner on generated shapes scenes, caption three images, print its scores.
# `make test`: set up .venv, lint, run the test suite.
VENV := .venv
BIN := $(VENV)/bin
DEMO := runs/multi30k_de_en_demo
CAPTION_DEMO := runs/shapes_caption_demo
# $(call timed,WHAT,COMMAND): run COMMAND, then print how long it took (plain sh: no `time`).
timed = start=$$(date +%s) && $(2) && echo "$(1) took $$(($$(date +%s) - start)) s"

.PHONY: setup demo caption-demo test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,pretrained]'
	touch $@

# The demo starts afresh: it removes its own earlier run (s2s fit refuses to overwrite a run).
demo: setup
	rm -rf $(DEMO)
	$(call timed,translator training,$(BIN)/s2s fit --config recipes/multi30k_de_en_demo.yaml)
	printf '%s\n' 'Ein Mann fährt Fahrrad auf einer Straße.' \
	    'Zwei Kinder spielen im Sand am Strand.' 'Eine Frau mit einem roten Hut liest ein Buch.' \
	    | $(BIN)/s2s-translate --ckpt $(DEMO)/checkpoints/best.ckpt
	$(BIN)/s2s test --config recipes/multi30k_de_en_demo.yaml --ckpt_path $(DEMO)/checkpoints/best.ckpt
	$(MAKE) caption-demo

caption-demo: setup data/shapes/train.tsv
	rm -rf $(CAPTION_DEMO)
	$(call timed,captioner training,$(BIN)/s2s fit --config recipes/shapes_caption_demo.yaml)
	$(BIN)/s2s-caption --ckpt $(CAPTION_DEMO)/checkpoints/best.ckpt \
	    --attention-png $(CAPTION_DEMO)/attention data/shapes/test/0000[012].png
	$(BIN)/s2s test --config recipes/shapes_caption_demo.yaml \
	    --ckpt_path $(CAPTION_DEMO)/checkpoints/best.ckpt

data/shapes/train.tsv: tools/make_shapes.py | setup
	$(BIN)/python tools/make_shapes.py --out data/shapes

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest
