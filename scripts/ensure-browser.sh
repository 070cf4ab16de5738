#!/usr/bin/env bash
# Make sure the browser the live map's tests and `make bench` drive is on this machine:
# Debian's chromium (/usr/bin/chromium) and chromium-driver (/usr/bin/chromedriver). Playwright
# for Python drives that Chromium (executable_path); `playwright install` is never used: its
# browser downloads come from outside the package registries.
# Missing packages are installed with apt-get (needs root or password-less sudo).
set -euo pipefail

say() { echo "[browser] $*"; }
die() {
    echo "[browser] ERROR: $*" >&2
    exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo "$@"
    else
        die "need root (or password-less sudo) to run: $*"
    fi
}

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)

if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "no apt-get on this machine: install ${missing[*]} yourself, then rerun"
    say "apt-get update"
    as_root apt-get update -qq || say "WARNING: apt-get update failed; trying the install with the package lists at hand"
    say "apt-get install -y ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
fi
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium still missing after apt-get install chromium"
# Debian's wrapper script prints a harmless shell warning on some machines: keep only the version line.
say "$(/usr/bin/chromium --version 2>/dev/null | tail -n 1), $(/usr/bin/chromedriver --version 2>/dev/null | head -n 1)"
