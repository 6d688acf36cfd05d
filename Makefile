# Two commands: `make demo` and `make test`. Each creates .venv if missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU machines take the CPU build of torch that pip finds locally; GPU users may override, e.g. TORCH_SPEC=torch.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test lint check-cuda check-cuda-emulated gpu-check install browser clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	# torch first, in its own command, so nothing that depends on it pulls a CUDA build.
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" "numpy>=2"
	$(BIN)/python -m pip install --quiet -e ".[dev,gen]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/splat4d demo --out out/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# nvcc -c on every .cu (skipped with a notice where nvcc is absent), plus the WITH_CUDA binding.
check-cuda: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/check_cuda.sh

# The CUDA kernels run on the CPU under a host emulation of the CUDA runtime, against the CPU kernels.
check-cuda-emulated:
	bash scripts/check_cuda_emulated.sh

# On a GPU machine (not part of `make test`): builds the extension for the local GPU, runs the CUDA tests,
# compute-sanitizer on every kernel, the rasterizer benches against gsplat and a short lego training; results in
# gpu-check-results/. Uses the machine's own python and torch (PYTHON=...); see scripts/gpu_check.sh.
gpu-check:
	bash scripts/gpu_check.sh

# The viewer's browser tests drive Debian's Chromium (never a downloaded one): installed with apt when missing and
# possible (root, apt-get); otherwise those tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium for the browser tests (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } || \
	    echo "note: apt-get could not install chromium; the browser tests will skip"; \
	  else echo "note: chromium is missing and cannot be installed here (needs root and apt-get); the browser tests will skip"; fi; }

test: $(STAMP) lint check-cuda check-cuda-emulated browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out build *.egg-info
