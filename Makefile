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

# The whole chain on the real OpenKBP sample: train the CPU preset on its 8 training
# patients (about 20-30 min on 2 cores; OPENKBP_CKPT=<ckpt> uses a trained network instead),
# predict the validation patients (submission CSVs, challenge scores), plan each one from
# its prediction, judge ATP against the clinical plans with the OpenKBP-Opt criteria, report
# (outputs/demo-openkbp/evaluate/report.html). Fluence plans on both sides: OpenKBP's
# clinical doses were not sequenced (deliverable=false).
OPENKBP_CKPT ?=
OPENKBP_TRAIN ?=
demo-openkbp: $(VENV)/.installed
	set -e; ckpt="$(OPENKBP_CKPT)"; out=$(CURDIR)/outputs/demo-openkbp; \
	if [ -z "$$ckpt" ]; then \
	    OMP_WAIT_POLICY=PASSIVE $(BIN)/python train.py experiment=openkbp_cpu \
	        paths.openkbp_dir=$(OPENKBP_DIR) hydra.run.dir=$$out/train $(OPENKBP_TRAIN); \
	    ckpt=$$out/train/checkpoints/last.ckpt; \
	fi; \
	$(BIN)/python predict.py ckpt_path=$$ckpt input=$(OPENKBP_DIR)/validation-pats \
	    format=openkbp paths.openkbp_dir=$(OPENKBP_DIR) hydra.run.dir=$$out/predict; \
	$(BIN)/python evaluate.py site=npc institution=A data=openkbp split=val \
	    paths.openkbp_dir=$(OPENKBP_DIR) prediction=$$out/predict/predictions \
	    'criteria=[protocol,openkbp_opt]' deliverable=false hydra.run.dir=$$out/evaluate

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
