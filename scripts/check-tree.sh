#!/usr/bin/env bash
# check-tree.sh — fails when git tracks something built: a compiled binary
# (ELF, Mach-O, PE, a Go archive) or any file larger than MAX_KB. Source,
# docs and data are text; the few binary files that belong in the tree are
# named below, each with why.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_KB=${MAX_KB:-2048}
# Tracked on purpose:
allowed=(
	docs/swagger-ui.png # the Swagger UI screenshot the README shows
	docs/live.png       # the /live page screenshot the README shows
)

is_allowed() {
	local f=$1 a
	for a in "${allowed[@]}"; do [ "$f" = "$a" ] && return 0; done
	return 1
}

bad=0
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue
	is_allowed "$f" && continue
	kb=$(( ($(stat -c %s "$f") + 1023) / 1024 ))
	if [ "$kb" -gt "$MAX_KB" ]; then
		echo "check-tree: $f is ${kb} KiB (limit ${MAX_KB} KiB)"
		bad=1
	fi
	# The first four bytes name the executable formats Go can produce.
	magic=$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')
	case "$magic" in
	7f454c46 | cffaedfe | cefaedfe | feedfacf | 4d5a*) # ELF, Mach-O 64/32, PE
		echo "check-tree: $f is a compiled binary ($magic)"
		bad=1
		;;
	213c6172) # "!<ar": a Go or C archive
		echo "check-tree: $f is an archive"
		bad=1
		;;
	esac
done < <(git ls-files -z)

if [ "$bad" -ne 0 ]; then
	echo "check-tree: remove the files above from git (git rm --cached) and ignore them in .gitignore"
	exit 1
fi
echo "check-tree: no built files tracked"
