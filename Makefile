# Two commands for a new user: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data
STAMP  := $(VENV)/.installed

.PHONY: install browser demo test test-fast bench clean

install: $(STAMP)

# constraints.txt pins every dependency to the versions the project is tested with.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The main job on real data: three clips counted at once by the Ray actor pipeline (a local Ray
# starts inside the command), every count update written to Parquet; then one clip annotated.
demo: install
	@test -d $(DATA)/videos || { echo "demo: $(DATA)/videos not found (set DATA=path/to/data)"; exit 2; }
	mkdir -p demo-out
	$(BIN)/cadence count $(DATA)/videos/jumpingjack_correct_001.mp4 $(DATA)/videos/squat_correct_001.avi \
		$(DATA)/videos/pullup_correct_002.mp4 --out demo-out/counts.parquet
	$(BIN)/cadence count $(DATA)/videos/jumpingjack_correct_001.mp4 --annotate demo-out/annotated.mp4
	@echo "count updates in demo-out/counts.parquet; annotated video in demo-out/annotated.mp4"

test: install browser
	$(BIN)/python -m pytest -q --durations=30

# The tier to run while editing, in under a minute: no Ray, no MediaPipe, nothing slow (tests/conftest.py).
test-fast: install
	CADENCE_TEST_TIER=fast $(BIN)/python -m pytest -q -m "not ray and not mediapipe and not slow"

# The live page's test drives Debian's chromium (browser downloads fail here): installed when
# missing, as root; otherwise that one test skips, saying why.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium and chromium-driver for the page test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else \
	    echo "make: chromium and chromium-driver are missing (apt-get install them as root); the page test will skip"; \
	  fi; \
	fi

# The benchmarks (figures only; about an hour in all). librosa is a bench-only extra.
bench: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python bench/pose_extraction.py $(DATA)
	$(BIN)/cadence bench repcount --poses $(DATA)/repcount-dev/poses --labels $(DATA)/repcount-dev/labels.csv
	$(BIN)/cadence bench repcount --poses $(DATA)/repcount-dev/poses --labels $(DATA)/repcount-dev/labels.csv --stride 90
	$(BIN)/cadence bench startup --data $(DATA)
	$(BIN)/cadence bench pipeline --data $(DATA) --feeds 1 --seconds 30
	$(BIN)/cadence bench pipeline --data $(DATA) --feeds 2 --seconds 30
	for n in 1 2 8 24 40; do $(BIN)/cadence bench pipeline --data $(DATA) --feeds $$n --seconds 30 --skip-inline || exit; done
	$(BIN)/cadence bench pipeline --data $(DATA) --feeds 1 --seconds 30 --live
	$(BIN)/cadence bench pipeline --data $(DATA) --feeds 2 --seconds 30 --skip-inline --compare-driver
	$(BIN)/cadence bench cluster --data $(DATA) --nodes 3 --feeds 6 --kill-node-after 15
	$(BIN)/cadence bench serve --data $(DATA) --feeds 1 --minutes 1
	$(BIN)/cadence bench serve --data $(DATA)
	$(BIN)/cadence bench features --data $(DATA) --hours 10
	$(BIN)/python bench/fsdd_accuracy.py --data $(DATA)
	$(BIN)/python bench/training.py --data $(DATA) --memory

clean:
	rm -rf $(VENV) demo-out .pytest_cache
