#!/usr/bin/env bash
# One call on the lent GPU machine: the steps named on the command line, in order, each
# writing its log under $OUT. Run from the repository root with build-cuda's test_cuda and
# bench_kmeans_cuda and .devc (bench/NOTES-cuda.md: pack-device-runtime.sh) carried.
#   sass      HGMMA / HMMA counts per kernel of test_cuda (is the wgmma pass really wgmma?)
#   tests     test_cuda (GTEST_FILTER narrows it)
#   ab        same-machine A/B of variants ($AB: a FLASHKM_CUDA_MATH value plus environment;
#             binary $BENCH, default build-cuda's), Exact and Fast, on $SHAPES, twice, the
#             second round in reverse order
#   ncu       device time per kernel of one iteration, for each of $NCU_SHAPES and
#             $NCU_PRECISION ($NCU_KERNELS: an ncu --kernel-name filter, e.g. regex:wgmma;
#             $NCU_TAG: a suffix for its file names, e.g. per environment)
#   bench     the issue's four shapes, Exact and Fast, with the default pass (--verbose;
#             $BENCH_ITERS timed iterations, default 5 like the peers);
#             the Exact run dumps data and initial centroids for peers into /tmp/flashkm-dump
#             when $DUMP is set; $BENCH_VARIANTS: bench_kmeans_cuda --variants; $BENCH_SHAPES:
#             other shapes than the issue's four
#   ceilings  bench/cuda/ceilings.py (copy, matmul, host-to-device rates)
#   peers     bench/cuda/peers.py on the dumped shapes (the flash-kmeans wheel carried in .whl)
#   host      $HOST_SHAPE (default 100M x 128, K 4096) from host memory, Exact, one engine
#             per environment of $HOST_VARIANTS (bench_kmeans_cuda --variants), same data;
#             $HOST_ARGS: more bench arguments (e.g. --budget-mb 512)
#   sanitize  compute-sanitizer memcheck on $MEMCHECK_FILTER (default all tests), racecheck
#             on $RACECHECK_FILTER (default a subset; RACECHECK=0 skips it); time limits
#             $MEMCHECK_TIMEOUT, $RACECHECK_TIMEOUT (seconds)
# $TEST, $BENCH: other test_cuda / bench_kmeans_cuda binaries (e.g. stripped copies in .devc)
set -u
OUT=${OUT:-/tmp/flashkm-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.devc/lib:${LD_LIBRARY_PATH:-}
T=${TEST:-build-cuda/tests/cuda/test_cuda}
B=${BENCH:-build-cuda/bench/cuda/bench_kmeans_cuda}
SHAPES=${SHAPES:-1000000x128x1024,1000000x768x1024}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader

row() {  # the table rows of one bench run, tagged
  grep -E '^ +[0-9]+ +[0-9]+ +[0-9]+ \|' "$2" | sed "s/^/$1 /" | sort -u | tee -a "$OUT/summary.txt"
}

for step in "$@"; do
  echo "== $step $(date -u +%T)"
  case $step in
    sass)
      cuobjdump -sass "$T" | awk '/Function :/{f=$3} /HGMMA/{g[f]++} /HMMA/{h[f]++}
        END{for (k in g) print "HGMMA", g[k], k; for (k in h) print "HMMA", h[k], k}' |
        sed 's/_ZN7flashkm6detail4cuda[0-9A-Za-z_]*_cu_[0-9a-f]*//' | tee "$OUT/sass.txt"
      ;;
    tests)
      timeout 400 "$T" --gtest_brief=1 ${GTEST_FILTER:+--gtest_filter=$GTEST_FILTER} \
        >"$OUT/tests.log" 2>&1
      echo "test_cuda exit $?"
      grep -E '^\[  (PASSED|FAILED)|FAILED|Failure|error' "$OUT/tests.log" | head -30
      # Needs a process that has no CUDA context yet: the full run above skips it.
      "$T" --gtest_filter=DeviceInputPointer.HostDataOnCpuStartsNoContext >"$OUT/nocontext.log" 2>&1
      echo "HostDataOnCpuStartsNoContext alone: exit $?"
      ;;
    ab)
      # $AB: variants "math[,VAR=VALUE...]" (environment for that variant), run twice, the
      # second round in reverse order.
      AB=${AB:-fp16-sync fp16}
      for round in 1 2; do
        list=$AB
        [ "$round" = 2 ] && list=$(echo $AB | tr ' ' '\n' | tac | tr '\n' ' ')
        for v in $list; do
          m=${v%%,*}
          vars=$(echo "${v#$m}" | tr ',' ' ')
          for p in ${AB_PRECISIONS:-exact fast}; do
            env FLASHKM_CUDA_MATH=$m $vars timeout 250 "$B" --shapes "$SHAPES" --iters 3 \
              --precision $p --json /dev/null >"$OUT/ab.log.tmp" 2>&1 || echo "bench exit $?"
            row "r$round ${TAG:-} $v $p" "$OUT/ab.log.tmp"
          done
        done
      done
      ;;
    ncu)
      # Per-kernel device time of one timed iteration (after the warm-up).
      for shape in $(echo ${NCU_SHAPES:-1000000x768x1024} | tr ',' ' '); do
      for p in ${NCU_PRECISION:-exact}; do
        timeout 300 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
          ${NCU_KERNELS:+--kernel-name $NCU_KERNELS} \
          "$B" --shapes "$shape" --iters 1 --precision $p \
          --json /dev/null >"$OUT/ncu_${shape}_$p${NCU_TAG:-}.csv" 2>"$OUT/ncu.err"
        echo "ncu exit $? ($shape $p)"
        python3 - "$OUT/ncu_${shape}_$p${NCU_TAG:-}.csv" <<'PY'
import csv, re, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 14 and r[12] == "gpu__time_duration.sum"]
runs = {}
for r in rows:  # per kernel name, its launches in order; the later half is the timed iteration
    name = re.sub(r"[<(].*", "", r[4].replace("(anonymous namespace)::", "").replace("<unnamed>::", "")).split("::")[-1].split(" ")[-1]
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1, "usecond": 1, "ms": 1e3, "msecond": 1e3}[r[13]]
    runs.setdefault(name, []).append(float(r[14].replace(",", "")) * scale)
tot = {k: sum(v[len(v) // 2:]) for k, v in runs.items()}
for k, v in sorted(tot.items(), key=lambda kv: -kv[1]):
    print(f"{v:10.1f} us  {k} ({len(runs[k])} launches)")
print(f"{sum(v for k, v in tot.items() if len(runs[k]) > 1):10.1f} us  per iteration (kernels launched more than once)")
PY
      done
      done
      ;;
    bench)
      mkdir -p /tmp/flashkm-dump
      for p in exact fast; do
        dump=; [ $p = exact ] && [ -n "${DUMP:-}" ] && dump="--dump /tmp/flashkm-dump"
        timeout 500 "$B" --iters ${BENCH_ITERS:-5} --precision $p --verbose --json "$OUT/bench_$p.json" $dump \
          ${BENCH_SHAPES:+--shapes "$BENCH_SHAPES"} \
          ${BENCH_VARIANTS:+--variants "$BENCH_VARIANTS"} \
          >"$OUT/bench_$p.log" 2>&1 || echo "bench exit $?"
        grep -E 'recomputed' "$OUT/bench_$p.log" | sort | uniq -c | sort -rn | head -20
        grep -E 'MB of device memory' "$OUT/bench_$p.log"
        row "final $p" "$OUT/bench_$p.log"
      done
      ;;
    ceilings)
      timeout 200 python3 bench/cuda/ceilings.py 2>&1 | tee "$OUT/ceilings.txt"
      ;;
    peers)
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target \
        /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
      shapes=$(ls /tmp/flashkm-dump/*.x.f32 | sed 's|.*/||; s|\.x\.f32||' | paste -sd,)
      PYTHONUNBUFFERED=1 timeout 600 python3 bench/cuda/peers.py /tmp/flashkm-dump "$shapes" \
        --iters 5 --json "$OUT/peers.json" >"$OUT/peers.log" 2>&1
      echo "peers exit $?"
      tail -8 "$OUT/peers.log"
      rm -rf /tmp/flashkm-dump
      ;;
    host)
      # One data set, one engine per variant of $HOST_VARIANTS (bench --variants).
      TIMEV=; [ -x /usr/bin/time ] && TIMEV="/usr/bin/time -v"
      $TIMEV timeout 580 "$B" --shapes "${HOST_SHAPE:-100000000x128x4096}" --iters 3 \
        --precision exact --verbose --variants "${HOST_VARIANTS:--}" --json "$OUT/host.json" ${HOST_ARGS:-} \
        >"$OUT/host.log" 2>&1 || echo "host bench exit $?"
      grep -E 'MB of device memory|Maximum resident' "$OUT/host.log" | sort -u
      row host "$OUT/host.log"
      ;;
    sanitize)
      timeout ${MEMCHECK_TIMEOUT:-400} compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 "$T" \
        --gtest_brief=1 --gtest_filter="${MEMCHECK_FILTER:-*}" >"$OUT/memcheck.log" 2>&1
      echo "memcheck exit $?"
      tail -3 "$OUT/memcheck.log"
      [ "${RACECHECK:-1}" = 1 ] || continue
      timeout ${RACECHECK_TIMEOUT:-300} compute-sanitizer --tool racecheck --error-exitcode 9 "$T" --gtest_brief=1 \
        --gtest_filter="${RACECHECK_FILTER:-*TileShapes*:*Ties*:*Streaming*:*EdgeShapes*:*FastPrecision*:CudaTensor*:*ManyUncertified*}" \
        >"$OUT/racecheck.log" 2>&1
      echo "racecheck exit $?"
      tail -3 "$OUT/racecheck.log"
      ;;
    *) echo "unknown step $step" ;;
  esac
done
