#!/usr/bin/env bash
# Builds the `strait` binary of an older commit for the chaos suite's
# rolling upgrade (the fleet starts on it; the upgrade moves every process
# to the current build, old and new side by side meanwhile).
#
#   scripts/chaos-old.sh            prints the old binary's path
#
# STRAIT_CHAOS_OLD_REV picks the commit (default: the last one before the
# chaos suite, whose stored formats the current build must still read).
# Prints nothing if this clone does not have that commit (a shallow clone):
# the upgrade then runs one binary, and the table says so.
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${STRAIT_CHAOS_OLD_REV:-51afaa9192b8685fb08651b11b506105f209d2ec}"
if ! git cat-file -e "$rev^{commit}" 2>/dev/null; then
  echo "chaos-old: commit $rev is not in this clone; the rolling upgrade runs one binary" >&2
  exit 0
fi
short=$(git rev-parse --short=12 "$rev")
out="$PWD/target/chaos-old"
bin="$out/strait-$short"
if [ ! -x "$bin" ]; then
  src="$out/src-$short"
  rm -rf "$src" && mkdir -p "$src"
  git archive "$rev" | tar -x -C "$src"
  echo "chaos-old: building strait at $short" >&2
  # Its own target directory: building it in ours would replace
  # target/debug/strait with the old binary. Seeded with hard links to our
  # compiled dependencies (same Cargo.lock), so only strait's crates build.
  if [ -d target/debug/deps ] && [ ! -d "$out/target/debug/deps" ]; then
    mkdir -p "$out/target/debug"
    cp -al target/debug/deps target/debug/build target/debug/.fingerprint "$out/target/debug/" 2>/dev/null || true
    # strait's own crates must build from the old sources: drop their
    # artifacts (never overwrite a hard-linked file) and fingerprints.
    find "$out/target/debug" -name '*strait*' -prune -exec rm -rf {} +
  fi
  # git archive stamps files with the commit's time; make them newer than
  # anything built, so nothing of ours is taken for them.
  find "$src" -type f -exec touch {} +
  cargo build --locked --quiet --bin strait --manifest-path "$src/Cargo.toml" --target-dir "$out/target" >&2
  cp "$out/target/debug/strait" "$bin"
fi
echo "$bin"
