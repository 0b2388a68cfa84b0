#!/bin/bash
# Idle-machine DeepSC timings at 2 threads (default thread count = all cores).
cd /work/main
C=$(git rev-parse --short HEAD)
echo "commit $C; load $(cat /proc/loadavg)"
rm -rf /work/exp/s7/run-default /work/exp/s7/run-preset
/usr/bin/time -v .venv/bin/sparsenet deepsc --data fashion-mnist --out /work/exp/s7/run-default > /work/exp/s7/idle-default.log 2>&1
grep -E "accuracy|Elapsed|Maximum resident" /work/exp/s7/idle-default.log
echo "load $(cat /proc/loadavg)"
SPARSENET_ARTIFACTS=/work/artifacts .venv/bin/python benchmarks/bench_deepsc.py --datasets fashion-mnist --compare-extraction 3000 --threads 2 > /work/exp/s7/idle-compare2.log 2>&1
tail -8 /work/exp/s7/idle-compare2.log
echo "load $(cat /proc/loadavg)"
/usr/bin/time -v .venv/bin/sparsenet deepsc --data fashion-mnist --atoms 128,128 --pyramid 1,2,4,8/1,2 --feature-norm sqrt --C 0.003 --out /work/exp/s7/run-preset > /work/exp/s7/idle-preset.log 2>&1
grep -E "accuracy|Elapsed|Maximum resident" /work/exp/s7/idle-preset.log
echo "done load $(cat /proc/loadavg)"
