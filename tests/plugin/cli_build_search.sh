#!/usr/bin/env bash
# End-to-end check of `flashkm build` and `flashkm search`: an IVF index built by flashkm and
# searched with nprobe = nlist must find what an exact Flat index finds.
# Usage: cli_build_search.sh /path/to/flashkm
set -euo pipefail
flashkm=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$flashkm" gen --n 5000 --d 16 --centers 20 --seed 3 --spread 3 --output "$tmp/base.fvecs" >/dev/null

# Ground truth: an exact Flat index (faiss built it unchanged), its results written as ivecs.
"$flashkm" build --input "$tmp/base.fvecs" --factory Flat --output "$tmp/flat.faiss" >/dev/null
"$flashkm" search --index "$tmp/flat.faiss" --queries "$tmp/base.fvecs" --k 10 \
  --output "$tmp/gt.ivecs" >/dev/null

out=$("$flashkm" build --input "$tmp/base.fvecs" --factory IVF16,Flat --output "$tmp/ivf.faiss" \
  --device cpu --json)
echo "$out"
grep -q '"kmeans_points":5000' <<<"$out" || fail "k-means did not run on all 5000 points"
grep -q '"ntotal":5000' <<<"$out" || fail "index does not hold 5000 vectors"

out=$("$flashkm" search --index "$tmp/ivf.faiss" --queries "$tmp/base.fvecs" --k 10 --nprobe 16 \
  --gt "$tmp/gt.ivecs" --json)
echo "$out"
recall=$(grep -o '"recall_at_k":[0-9.eE+-]*' <<<"$out" | cut -d: -f2)
awk -v r="$recall" 'BEGIN { exit !(r >= 0.999) }' || fail "recall@10 with nprobe = nlist is $recall"

out=$("$flashkm" search --index "$tmp/ivf.faiss" --queries "$tmp/base.fvecs" --k 10 --nprobe 1 \
  --gt "$tmp/gt.ivecs" --json)
recall=$(grep -o '"recall_at_k":[0-9.eE+-]*' <<<"$out" | cut -d: -f2)
awk -v r="$recall" 'BEGIN { exit !(r > 0.3 && r < 0.999) }' ||
  fail "recall@10 with nprobe 1 is $recall: expected partial recall"

# The same build persisted in RocksDB (--index DIR) gives the same search results as the file.
"$flashkm" build --input "$tmp/base.fvecs" --factory IVF16,Flat --index "$tmp/ivf.db" \
  --device cpu >/dev/null
for nprobe in 1 4; do
  "$flashkm" search --index "$tmp/ivf.faiss" --queries "$tmp/base.fvecs" --k 10 \
    --nprobe $nprobe --output "$tmp/file.ivecs" >/dev/null
  "$flashkm" search --index "$tmp/ivf.db" --queries "$tmp/base.fvecs" --k 10 \
    --nprobe $nprobe --output "$tmp/db.ivecs" >/dev/null
  cmp -s "$tmp/file.ivecs" "$tmp/db.ivecs" ||
    fail "persisted index and faiss file disagree at nprobe $nprobe"
done

# Usage errors exit 2, runtime errors 1.
set +e
"$flashkm" build --input "$tmp/base.fvecs" --factory IVF16,Flat >/dev/null 2>&1
[ $? -eq 2 ] || fail "build without --output should be a usage error"
"$flashkm" build --input "$tmp/base.fvecs" --factory IVF16,Flat --output "$tmp/y.faiss" \
  --index "$tmp/y.db" >/dev/null 2>&1
[ $? -eq 2 ] || fail "build with both --output and --index should be a usage error"
"$flashkm" build --input "$tmp/base.fvecs" --factory IVF16,Flat --index "$tmp/ivf.db" \
  >/dev/null 2>&1
[ $? -eq 1 ] || fail "building over an existing index should fail"
"$flashkm" search --index "$tmp/flat.faiss" --queries "$tmp/base.fvecs" --nprobe 4 >/dev/null 2>&1
[ $? -eq 1 ] || fail "--nprobe on a Flat index should fail"
"$flashkm" build --input "$tmp/base.fvecs" --factory IVF16,Nonsense --output "$tmp/x.faiss" \
  >/dev/null 2>&1
[ $? -eq 1 ] || fail "an unparsable factory string should fail"
echo PASS
