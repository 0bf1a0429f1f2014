#!/bin/sh
# Install the Debian packages of the commands in scripts/system-deps.txt that are missing, with apt-get as root.
# Quick and silent when every command is present. Never fails: without root or apt-get, or when apt-get
# fails, it warns naming the packages, and the tests that need them skip saying so.
set -u
cd "$(dirname "$0")/.."
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"  # nginx lives in sbin, off a non-root user's PATH

missing=$(grep -v '^#' scripts/system-deps.txt | while read -r command package; do
    [ -n "$command" ] && ! command -v "$command" >/dev/null 2>&1 && echo "$package"
done | sort -u | tr '\n' ' ')
missing=${missing% }
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: not installing $missing (needs root and apt-get; as root: scripts/install-system-deps.sh);" \
        "the tests that need them will skip" >&2
    exit 0
fi

echo "installing with apt-get: $missing" >&2
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if ! apt-get update -qq; then
    echo "warning: apt-get update failed; trying to install $missing anyway" >&2
fi
# shellcheck disable=SC2086 # one word per package
if ! apt_install $missing; then
    failed=""
    for package in $missing; do
        apt_install "$package" || failed="${failed:+$failed }$package"
    done
    [ -n "$failed" ] && echo "warning: apt-get could not install $failed; the tests that need them will skip" >&2
fi
exit 0
