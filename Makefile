# Two commands for a new user: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

# constraints.txt pins every dependency to the versions the project is tested with.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The main job on real data: count the reps in a two-person jumping-jack clip and write it annotated.
demo: install
	@test -d $(DATA)/videos || { echo "demo: $(DATA)/videos not found (set DATA=path/to/data)"; exit 2; }
	mkdir -p demo-out
	$(BIN)/cadence count $(DATA)/videos/jumpingjack_correct_001.mp4 $(DATA)/videos/squat_correct_001.avi \
		--annotate demo-out/annotated.mp4
	@echo "annotated videos written to demo-out/"

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-out .pytest_cache
