#!/usr/bin/env bash
# Pack what a GPU run reads from the shared data folder into ONE file, .carry/data.tar.xz in the repository root
# (git-ignored; `run` carries it with carry=[".carry"]): the ARC-AGI-1 and ARC-AGI-2 json files, RE-ARC's tasks
# and extra/arc-gen, with their READMEs and licences, in the same layout as the shared folder, so that
# ARCSUB_DATA can point at the unpacked copy and every `data:` path of the configs resolves unchanged. The GPU
# machine reaches nothing outside, and carry takes at most 64 MiB in all: the pack must stay well under 40 MiB.
# Usage (from anywhere): bench/pack_data.sh [DATA_DIR]   (default: $ARCSUB_DATA, else ../shared/data)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-${ARCSUB_DATA:-$root/../shared/data}}
out=$root/.carry/data.tar.xz
limit=$((40 * 1024 * 1024))
[ -d "$src/arc-agi-1" ] && [ -d "$src/arc-agi-2" ] || { echo "pack_data: $src: no arc-agi-1/ and arc-agi-2/" >&2; exit 2; }
mkdir -p "$root/.carry"
cd "$src"
files=(README.md arc-agi-1/*.json arc-agi-2/*.json arc-agi-2/LICENSE re-arc/LICENSE re-arc/tasks
       extra/README.md extra/arc-gen)
for f in "${files[@]}"; do [ -e "$f" ] || { echo "pack_data: $src/$f: missing" >&2; exit 2; }; done
tmp=$(mktemp "$root/.carry/.data.tar.xz.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# -9e: the RE-ARC JSON is repetitive text (47 MB); one thread, the build machine is shared
tar --sort=name --owner=0 --group=0 --numeric-owner -cf - "${files[@]}" | xz -9e -T1 > "$tmp"
size=$(stat -c %s "$tmp")
if [ "$size" -ge "$limit" ]; then
  echo "pack_data: $size bytes, over the 40 MiB limit: not written" >&2; exit 1
fi
chmod 644 "$tmp"; mv "$tmp" "$out"; trap - EXIT
echo "pack_data: $out: $size bytes ($(numfmt --to=iec-i --suffix=B "$size")), $(tar -tJf "$out" | grep -c . ) entries"
echo "unpack on the GPU machine (with carry=[\".carry\"]):"
echo '  mkdir -p /tmp/arcdata && tar -xJf .carry/data.tar.xz -C /tmp/arcdata && export ARCSUB_DATA=/tmp/arcdata'
