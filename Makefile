# selfsup — one binary on libtorch 2.11 (tch 0.24). `make demo` and `make test` do everything on a
# fresh Debian machine with Rust: project venv with torch==2.11.0 from PyPI, release build, run.
VENV    := .venv
PY      := $(VENV)/bin/python
TORCH   := torch==2.11.0
# torchvision and safetensors are for the tests' independent references only (never at run time)
TESTPY  := torchvision==0.26.0 safetensors
# headers only, for compiling c10d's NCCL process group (build.rs): CUDA's crt/ and CCCL, at the
# versions of the CUDA 13.0 runtime the torch wheel brings
CUDAH   := nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup build demo test docs gpu-tests gpu-pack clean

setup: $(VENV)/.ready

$(VENV)/.ready:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH) $(TESTPY) $(CUDAH)
	touch $@

build: setup
	cargo build --release
	@echo "binary: target/release/selfsup"

# The main job: BYOL on the embedded synthetic shapes, then kNN of the trained vs a random encoder.
demo: build
	rm -rf runs/demo
	./target/release/selfsup train --config configs/demo.toml --out runs/demo

test: build
	cargo test --release -- --test-threads 2

# Test binaries whose checks need CUDA (views made on the GPU, side-stream copies, CUDA graph replay), gathered in
# target/gpu-tests for bench/gpu.sh to run on a GPU machine (carry that folder with the binary).
gpu-tests: build
	rm -rf target/gpu-tests && mkdir -p target/gpu-tests
	cargo test --release --test copy_ahead --test augment_batched --test cuda_graph --no-run --message-format=json \
	  | $(PY) -c 'import json, sys; [print(m["executable"]) for m in map(json.loads, sys.stdin) if m.get("executable") and m["profile"]["test"]]' \
	  | xargs -I{} cp {} target/gpu-tests/
	@ls target/gpu-tests

# Everything bench/gpu.sh needs on a GPU machine that does not travel with the working tree: the
# binary, the GPU test binaries, and a copy of ../shared's reference scripts and CIFAR-10 archive
# (../shared is not sent). Carry: target/release/selfsup target/gpu-tests target/gpu-shared.
gpu-pack: gpu-tests
	rm -rf target/gpu-shared && mkdir -p target/gpu-shared/data
	cp -r ../shared/bench target/gpu-shared/
	cp ../shared/data/cifar10-jpeg.tar.gz target/gpu-shared/data/
	@du -sh target/release/selfsup target/gpu-tests target/gpu-shared

docs: build
	./target/release/selfsup config docs > docs/config.md

clean:
	cargo clean
