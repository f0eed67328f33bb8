#!/usr/bin/env bash
# Fetch, here where pip reaches PyPI, the packages the GPU machine's image lacks for `python3 -m benchmarks.gpu`:
# wheels for its Python 3.12 on x86-64 Linux into .whl/ (git-ignored), carried there with the run.
# The image already has torch, triton, lightning, transformers, peft, torchmetrics, pandas, pyarrow, fsspec, aiohttp,
# huggingface-hub, xxhash, ninja, py-cpuinfo, nvidia-ml-py, msgpack, einops, psutil (/work/.library/device/KINDS.md);
# the second group below is the Requires-Dist of the first that it lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.whl
mkdir -p "$dest"
wanted=(
  jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0  # jsonargparse[signatures]
  datasets==5.2.0 liger-kernel==0.8.5 cut-cross-entropy==25.1.1
  dill==0.4.1 multiprocess==0.70.19 hjson==3.1.0  # datasets, deepspeed
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection  # deepspeed
)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d "$dest" "${wanted[@]}"
# deepspeed ships a source distribution only; its pure-Python wheel builds here without compiling any op.
DS_BUILD_OPS=0 python3 -m pip wheel -q --no-deps --no-build-isolation -w "$dest" deepspeed==0.19.8
for wheel in "$dest"/*.whl; do
  echo "$(basename "$wheel"): $(unzip -p "$wheel" '*/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' \
    | sed 's/Requires-Dist: //' | tr '\n' ';')"
done
du -sh "$dest"
