#!/usr/bin/env bash
# Per built kernel in the cache: how many HGMMA (warpgroup MMA) instructions its SASS has, and how many local-memory
# loads/stores (register spills). Usage: scripts/sass_check.sh [kernel cache dir, default $GNA_KERNEL_CACHE]
for so in "${1:-$GNA_KERNEL_CACHE}"/*/*.so; do
  sass=$(cuobjdump -sass "$so")
  echo "$(basename "$so"): HGMMA $(grep -c HGMMA <<< "$sass"), local-memory ops $(grep -cE '\b(LDL|STL)\b' <<< "$sass")"
done
