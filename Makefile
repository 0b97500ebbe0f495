# Two commands set everything up on a fresh machine:
#   make demo   - create .venv, install, encode + decode a bundled sample, print bpp and PSNR
#   make test   - create .venv, install, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SAD := $(VENV)/bin/sad
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-rd clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(SAD) encode samples/kodim23_crop.png -o out/demo.sad --bpp 1.0
	$(SAD) decode out/demo.sad -o out/demo.png
	$(SAD) info out/demo.sad

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check sadcodec kernels tests bench

# Kodak at 1 bpp against JPEG (about an hour on 2 cores); writes bench/results/kodak-1bpp.csv
# and the report generated from it, bench/results/kodak-1bpp.md. The images are read from
# ../shared/data/kodak (kodim01.png .. kodim24.png). Extra options: make bench BENCH_ARGS=--resume
bench: $(STAMP)
	$(PY) -m bench.kodak --bpp 1.0 $(BENCH_ARGS)

# Kodak at 0.25/0.5/1/2 bpp against JPEG, WebP and AVIF (hours on 2 cores); writes
# bench/results/kodak-rd.csv and, generated from it, bench/results/kodak-rd.md and .png.
# Extra options: make bench-rd RD_ARGS="--resume" (or "--limit 4", "--effort 6", ...)
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench-rd: $(BENCH_STAMP)
	$(PY) -m bench.rd $(RD_ARGS)

clean:
	rm -rf out build *.egg-info
