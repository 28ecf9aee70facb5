#!/usr/bin/env bash
# On the GPU machine: the same 128K offload run with two builds, one after the other on one machine, so
# that a change's effect on the prefill, the build tail and the decode is measured apart from the host's
# (CPU-side figures differ by 30-50% between the hosts the device tool lends; docs/perf.md, fourteenth
# round). The baseline is .device/prebuilt_old.tgz (scripts/device_prebuild.sh run on the older commit,
# repacked with launcher/ only to fit the carry limit); the candidate is .device/prebuilt.tgz.
#   usage (device tool, carry .device):  source .device/bootstrap.sh && bash scripts/device_ab_128k.sh
#   knobs: AB_RUN (an OFFLOAD_RUNS entry, default the measured 128K retrieval run), AB_TOKENS (32)
set -uo pipefail
out=${OUT:-out}
run=${AB_RUN:-131072:retrieval:2048:0:1:32::int8}
mkdir -p "$out" build-old && tar -xzf .device/prebuilt_old.tgz -C build-old
for side in old new; do
  if [[ $side == old ]]; then dir=build-old stages=offload; else dir=build-gpu stages=build,offload; fi
  BUILD_DIR=$dir OUT=$out/$side STAGES=$stages OFFLOAD_TOKENS=${AB_TOKENS:-32} OFFLOAD_TIMEOUT=105 \
    OFFLOAD_RUNS=$run DEADLINE_S=110 bash scripts/device_gpu.sh > /dev/null 2>&1
  echo "== $side"
  grep -v "^ra-cpu-retriever rank [0-9]: \(first step\|mean step\|over the\|[0-9]* evicted\)\|on vm" "$out/$side/summary.txt" | tail -30
done
