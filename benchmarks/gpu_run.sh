#!/usr/bin/env bash
# The GPU table, on a lent GPU machine (see the device tool): for each variant, make its perturbed
# official-layout checkpoint, check samkit against the reference there (tests/gpu/check.py), and
# run `samkit bench` on the GPU. Everything goes to OUTDIR (check-VARIANT.json, bench-VARIANT.txt).
#
#   bash benchmarks/gpu_run.sh OUTDIR DEPS_DIR VARIANT...
#
# DEPS_DIR holds what that machine lacks, as plain package folders (sam2 without its extension, hydra,
# omegaconf, antlr4, iopath), and data/truck.jpg and data/bedroom/*.jpg. Each step has its own time
# limit, so one that hangs leaves the others their time. To make it here (an ignored folder, carried):
#   d=.devpkgs; mkdir -p $d/data/bedroom; sp=$(python3 -c 'import sam2,os;print(os.path.dirname(os.path.dirname(sam2.__file__)))')
#   for p in sam2 hydra omegaconf antlr4 iopath; do cp -r $sp/$p $d/; done
#   cp ../shared/data/images/truck.jpg $d/data/; cp $(ls ../shared/data/videos/bedroom/*.jpg | head -8) $d/data/bedroom/
#   mkdir -p $d/data/bedroom40; cp ../shared/data/videos/bedroom/*.jpg $d/data/bedroom40/   (gpu_tracking.py)
# tests/gpu/smoke.py (the server step) also needs fastapi, starlette, pydantic(-core), python-multipart,
# annotated-types, typing-inspection and opentelemetry-api there: carry them as cp312 wheels.
set -u
out=$1 deps=$2
shift 2
export PYTHONPATH="$PWD/src:$deps:$PWD/tests" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"
for v in "$@"; do
    ck=/tmp/ck/$v.pt
    timeout 180 python3 -c "import oracle; oracle.make_checkpoint('$v', '$ck')" || { echo "no checkpoint for $v"; continue; }
    echo "== bench $v"
    timeout 300 python3 -m samkit bench --device cuda --model "$v" --checkpoint "$ck" \
        --image "$deps/data/truck.jpg" --runs 10 --no-compile 2>&1 | grep -v "it/s]" | tee "$out/bench-$v.txt"
    echo "== tracking $v (issue #29: samkit growing / static+graphs / static fast, reference, reference vos_optimized)"
    timeout 420 python3 benchmarks/gpu_tracking.py --model "$v" --checkpoint "$ck" --frames "$deps/data/bedroom40" \
        --count 40 --objects 1 4 --vos --json "$out/tracking-$v.json" 2>&1 | grep -v "it/s]" | tee "$out/tracking-$v.txt"
    echo "== check $v"
    timeout 240 python3 tests/gpu/check.py --model "$v" --checkpoint "$ck" --image "$deps/data/truck.jpg" \
        --frames "$deps/data/bedroom" --json "$out/check-$v.json" 2>&1 | grep -v "it/s]" | tee "$out/check-$v.txt"
done
