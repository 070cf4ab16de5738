#!/usr/bin/env bash
# Does requirements.lock still match pyproject.toml?
#   scripts/check-lock.sh UV LOCK [uv pip compile flags...]
# Resolves again, starting from the current pins (so an unchanged pyproject.toml gives the same
# pins), and compares the pinned lines. Exit 0: up to date; 1: stale (diff printed);
# 2: could not resolve (e.g. no network), nothing known.
set -uo pipefail
uv="$1" lock="$2"
shift 2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$lock" "$tmp/lock"
if ! UV_CUSTOM_COMPILE_COMMAND="make lock" "$uv" pip compile --quiet pyproject.toml "$@" -o "$tmp/lock" 2>"$tmp/err"; then
    echo "could not check $lock: uv pip compile failed:" >&2
    tail -n 5 "$tmp/err" >&2
    exit 2
fi
if diff -u <(grep -E '^[A-Za-z0-9]' "$lock") <(grep -E '^[A-Za-z0-9]' "$tmp/lock") >"$tmp/diff"; then
    exit 0
fi
echo "$lock does not match pyproject.toml (- lock, + what pyproject.toml needs now):" >&2
grep -E '^[-+][A-Za-z0-9]' "$tmp/diff" >&2
exit 1
