# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Where the OpenKBP sample lies (the repository's sibling folder `shared/`).
OPENKBP_DIR ?= ../shared/data/openkbp-sample
DEMO_OUT    ?= outputs/demo
DEMO_SITE   ?= lung

.PHONY: demo demo-openkbp test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned to 2.13.0 (CPU wheel on local disk) in pyproject.toml; never torchvision.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The main job on the built-in default: synthetic cohort -> training -> evaluation (CPU preset).
demo: $(VENV)/.installed
	$(BIN)/python cohort.py site=$(DEMO_SITE) spacing_mm=6 n=24 hydra.run.dir=$(DEMO_OUT)/cohort
	$(BIN)/python train.py site=$(DEMO_SITE) experiment=cpu_quick logger=csv hydra.run.dir=$(DEMO_OUT)/train
	$(BIN)/python evaluate.py -m site=$(DEMO_SITE) institution=A,C patients_from=A \
	    evaluation=cpu_quick ckpt_path=$(DEMO_OUT)/train/checkpoints/last.ckpt \
	    hydra.sweep.dir=$(DEMO_OUT)/evaluate
	# blinded review of that evaluation by 3 SIMULATED reviewers (a pipeline check)
	$(BIN)/python review.py step=prepare 'runs=[$(DEMO_OUT)/evaluate]' \
	    review_dir=$(DEMO_OUT)/review 'review.reviewers=[sim_1,sim_2,sim_3]' overwrite=true
	$(BIN)/python review.py step=simulate review_dir=$(DEMO_OUT)/review
	$(BIN)/python review.py step=analyze review_dir=$(DEMO_OUT)/review \
	    answers_dir=$(DEMO_OUT)/review/answers_simulated
	@echo "report: $(DEMO_OUT)/evaluate/summary/report.html (per institution: */report.html)"
	@echo "blinded review, SIMULATED reviewers: $(DEMO_OUT)/review/analysis_simulated/report.html"

# A tour on the real OpenKBP sample: predict (distance-to-target baseline, challenge scores),
# plan every validation patient from the prediction, judge ATP against the clinical plans
# with the OpenKBP-Opt criteria, report (outputs/demo-openkbp/evaluate/report.html).
demo-openkbp: $(VENV)/.installed
	$(BIN)/python -m atp.demo --openkbp-dir $(OPENKBP_DIR) --out outputs/demo-openkbp
	$(BIN)/python evaluate.py site=npc institution=A data=openkbp split=val \
	    paths.openkbp_dir=$(OPENKBP_DIR) prediction=$(CURDIR)/outputs/demo-openkbp/predictions \
	    'criteria=[protocol,openkbp_opt]' hydra.run.dir=outputs/demo-openkbp/evaluate

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check .

bench: $(VENV)/.installed
	$(BIN)/python -m atp.bench.dose_engine
	$(BIN)/python -m atp.bench.optimizer
	$(BIN)/python -m atp.bench.train_step --sizes 64

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
