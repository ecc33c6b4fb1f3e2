#!/usr/bin/env bash
# The GPU benchmark (benchmarks/pipeline.py --device cuda) on a lent device machine, in two steps.
#
# Here, once (fills two ignored folders: .gpu-data with the raccoon test split and car-detection.mp4, 6 MB;
# .whl with the wheels the device image lacks, PyAV and pycocotools for its Python 3.12, 35 MB):
#     bash benchmarks/gpu_prepare.sh
# There, as one device run that carries [".gpu-data", ".whl"] (the tree, the wheels and the data are ~62 MB of
# the 64 MiB a call may carry); installs visionkit without touching the image's torch, then runs the suite:
#     bash benchmarks/gpu_prepare.sh run
# The JSON lands in $OUT/gpu_pipeline.json (and on stdout).
# Then, if device time is left, the decoders (jpeg_decoder opencv vs nvjpeg; TorchCodec's wheel, 10 MB, does not
# fit the first carry beside PyAV's), as a second run that carries [".gpu-data", ".whl-tc"]:
#     bash benchmarks/gpu_prepare.sh run-decode        ->  $OUT/gpu_decode.json
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "run" ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir -e .
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
    # expected (not yet measured) to take 6-8 minutes on an H200 at these sizes: 7 bench processes, 3 compiling; each row goes to
    # $OUT/gpu_pipeline_partial.json as it finishes, so a run stopped at the 10-minute limit keeps what it did
    python3 benchmarks/pipeline.py --device cuda --data .gpu-data --rounds "${ROUNDS:-2}" \
        --gpu-images "${GPU_IMAGES:-512}" | tee "${OUT:-.}/gpu_pipeline.json"
    exit 0
fi

if [[ "${1:-}" == "run-decode" ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl-tc/*.whl
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir -e .
    python3 benchmarks/pipeline.py --device cuda --suite gpu-decode --data .gpu-data --rounds "${ROUNDS:-2}" \
        --gpu-images "${GPU_IMAGES:-512}" | tee "${OUT:-.}/gpu_decode.json"
    exit 0
fi

shared=../shared/data
rm -rf .gpu-data && mkdir -p .gpu-data/raccoon/images .gpu-data/raccoon/data .gpu-data/videos
cp "$shared"/raccoon/data/test_labels.csv .gpu-data/raccoon/data/
cp "$shared"/raccoon/SOURCE.md .gpu-data/raccoon/ 2>/dev/null || true
mkdir -p .gpu-data/raccoon/annotations
tail -n +2 "$shared"/raccoon/data/test_labels.csv | cut -d, -f1 | sort -u | while read -r name; do
    cp "$shared/raccoon/images/$name" .gpu-data/raccoon/images/
    cp "$shared/raccoon/annotations/${name%.*}.xml" .gpu-data/raccoon/annotations/
done
cp "$shared"/videos/car-detection.mp4 .gpu-data/videos/
rm -rf .whl && python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "av>=12" "pycocotools>=2.0.7"
rm -rf .whl-tc && python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    -d .whl-tc "torchcodec>=0.16" "pycocotools>=2.0.7"
du -sh .gpu-data .whl .whl-tc
