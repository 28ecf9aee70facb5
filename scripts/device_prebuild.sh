#!/usr/bin/env bash
# On the development machine: build the binaries a GPU-machine run needs from a clean worktree of HEAD
# (other work in the checkout stays out), strip them and pack them into .device/prebuilt.tgz, with the
# Debian libraries the GPU machine's image lacks in .device/lib. scripts/device_gpu.sh unpacks them and
# so spends no device time compiling. Their compiled-in models path is /work/shared/models (the GPU run
# links it to .device/models).
#   usage: scripts/device_prebuild.sh [WORKTREE_DIR]   (default /tmp/ra-prebuild)
set -euo pipefail
root=$(git rev-parse --show-toplevel)
tree=${1:-/tmp/ra-prebuild}
commit=$(git -C "$root" rev-parse --short HEAD)
if [[ -d "$tree" ]]; then git -C "$tree" checkout -q --detach "$commit"; else git -C "$root" worktree add -f --detach "$tree" "$commit" > /dev/null; fi
cmake -S "$tree" -B "$tree/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRA_SHARED_MODELS_DIR=/work/shared/models > /dev/null
targets=(ra ra-gpu-worker ra-cpu-retriever ra-bench-kernels backend_ops_gpu_test cuda_backend_gpu_test cuda_model_gpu_test
         train_lists_gpu_test kv_rows_gpu_test grouped_search_test ra-bench-search ra-serve-test-model)
ninja -C "$tree/build" -j"$(nproc)" "${targets[@]}"
stage=$(mktemp -d)
mkdir -p "$stage/launcher" "$stage/bench/search" "$stage/tests"
for b in launcher/ra launcher/ra-gpu-worker launcher/ra-cpu-retriever bench/ra-bench-kernels bench/search/ra-bench-search \
         tests/backend_ops_gpu_test \
         tests/cuda_backend_gpu_test tests/cuda_model_gpu_test tests/train_lists_gpu_test tests/kv_rows_gpu_test tests/grouped_search_test \
         tests/ra-serve-test-model; do
  strip -o "$stage/$b" "$tree/build/$b"
done
mkdir -p "$root/.device/lib"
# The Debian libraries the GPU machine's image lacks (ra serve links cpp-httplib and prometheus-cpp).
for lib in libyaml-cpp.so.0.7 libcpp-httplib.so.0.11 libprometheus-cpp-core.so.1.0 libbrotlicommon.so.1 \
           libbrotlidec.so.1 libbrotlienc.so.1; do
  cp -L "/usr/lib/x86_64-linux-gnu/$lib" "$root/.device/lib/"
done
# ra bench accuracy's text (public domain; the GPU machine's image may lack libsqlite3-dev).
mkdir -p "$root/.device/text" && cp /usr/include/sqlite3.h "$root/.device/text/"
tar -czf "$root/.device/prebuilt.tgz" -C "$stage" .
echo "$commit" > "$root/.device/prebuilt.commit"
rm -rf "$stage"
echo "prebuilt $commit: $(du -h "$root/.device/prebuilt.tgz" | cut -f1)"
