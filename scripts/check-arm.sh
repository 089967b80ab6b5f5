#!/usr/bin/env bash
# The device side on ARM, under QEMU: Debian bookworm roots for arm64 and armhf (cached), the edge
# side installed in each the README's way (arm64: venv + ".[edge]", LiteRT; armhf: Debian's
# python3-numpy + venv --system-site-packages + ".[tflite-runtime]"; arm64 also gets tflite-runtime),
# the edge tests inside, a real pull + benchmark + report against an mlflow server on this host's
# loopback (its signed report verified inside the root with the device's own key), and every fixture
# bundle's predictions compared with x86 LiteRT's. Prints a table.
#
#   scripts/check-arm.sh                  # as root; roots cached in $EDGEQ_ARM_CACHE (/var/cache/edgeq-arm)
#   EDGEQ_ARM_ARCHES=armhf scripts/check-arm.sh    # one root only; EDGEQ_ARM_CHECK=0 skips it all
#
# Emulated latency means nothing about a Pi; correctness does. As root on x86_64 Linux it installs
# what it needs when missing (apt-get: qemu-user-static debootstrap binfmt-support), mounts
# binfmt_misc and enables the QEMU handlers; when it still cannot run, it FAILS (exit 1). It skips,
# loudly and with exit 0, only when asked (EDGEQ_ARM_CHECK=0) or where it is impossible (not
# x86_64 Linux, not root). The test files run inside each root: ROOT_TESTS below (or EDGEQ_ARM_TESTS).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CACHE=${EDGEQ_ARM_CACHE:-/var/cache/edgeq-arm}
ARCHES=${EDGEQ_ARM_ARCHES:-arm64 armhf}
MIRROR=${EDGEQ_ARM_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
HOST_PY=$REPO/.venv/bin/python
HOST_PREFIX=$("$HOST_PY" -c 'import sys; print(sys.base_prefix)' 2>/dev/null || true)
HOST_CA=${PIP_CERT:-$(sed -n 's/^cert *= *//p' /etc/pip.conf 2>/dev/null | head -1)}
[ -f "$HOST_CA" ] || HOST_CA=""
MODEL_VARIANT=int8  # the variant QEMU's default CPU gets wrong (XNNPACK int8): the one worth pulling

# The test files (or directories) run inside each root, relative to the checkout; add ARM tests here.
ROOT_TESTS=(
    tests/edge
)
[ -z "${EDGEQ_ARM_TESTS:-}" ] || read -r -a ROOT_TESTS <<<"$EDGEQ_ARM_TESTS"
ROOT_TESTS_MARKERS=${EDGEQ_ARM_TEST_MARKERS:-not slow}  # as scripts/test-edge.sh runs them
# What the check needs from Debian (apt-get names; the commands they provide are checked below).
HOST_PACKAGES=(qemu-user-static debootstrap binfmt-support)

skip() {  # only when asked or impossible: loud, exit 0
    printf '%s\n' "check-arm: ======== SKIPPED: $* ========" "check-arm: the ARM proof did NOT run on this machine" >&2
    echo "check-arm: SKIPPED: $*"
    exit 0
}
fail() { echo "check-arm: FAILED: $*" >&2; exit 1; }
say() { echo "check-arm: $*" >&2; }

[ "${EDGEQ_ARM_CHECK:-1}" != 0 ] || skip "EDGEQ_ARM_CHECK=0"
[ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] || skip "emulates ARM from x86_64 Linux only; on a Pi, install the README's way"
[ "$(id -u)" = 0 ] || skip "needs root (apt-get, debootstrap, chroot, mounts)"

qemu_of() { case $1 in arm64) echo aarch64 ;; armhf) echo arm ;; *) return 1 ;; esac; }
# A Pi 4's core. QEMU's default "max" CPU makes XNNPACK's int8 kernels return wrong results.
cpu_of() { case $1 in arm64) echo cortex-a72 ;; armhf) echo cortex-a7 ;; esac; }
for arch in $ARCHES; do qemu_of "$arch" >/dev/null || fail "unknown architecture $arch in EDGEQ_ARM_ARCHES (arm64, armhf)"; done

install_host_packages() {  # a fresh machine: what is missing, from Debian, once
    local missing=() arch log
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    for arch in $ARCHES; do command -v "qemu-$(qemu_of "$arch")-static" >/dev/null || missing+=(qemu-user-static); done
    [ "${#missing[@]}" -gt 0 ] || return 0
    command -v apt-get >/dev/null || fail "missing ${missing[*]} and no apt-get here: install ${HOST_PACKAGES[*]} (or their equivalents)"
    say "installing ${HOST_PACKAGES[*]} (apt-get; missing: $(printf '%s\n' "${missing[@]}" | sort -u | paste -sd' ' -))"
    log=$(mktemp /tmp/edgeq-arm-apt.XXXXXX)
    { timeout 900 apt-get update -q && DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install -y -q \
        --no-install-recommends "${HOST_PACKAGES[@]}"; } >"$log" 2>&1 ||
        { tail -5 "$log" >&2; fail "apt-get could not install ${HOST_PACKAGES[*]} (log: $log)"; }
    rm -f "$log"
}

enable_binfmt() {  # enable_binfmt QEMU_NAME: the kernel runs ARM binaries through qemu-*-static
    local q=$1 handler=/proc/sys/fs/binfmt_misc/qemu-$1
    grep -qx enabled "$handler" 2>/dev/null && return 0
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null ||
            fail "cannot mount binfmt_misc (a container without privileges? run it with --privileged, or on the host)"
    fi
    update-binfmts --import "qemu-$q" >/dev/null 2>&1 || true  # registered by the package's postinst only if mounted then
    update-binfmts --enable "qemu-$q" >/dev/null 2>&1 || true
    grep -qx enabled "$handler" 2>/dev/null ||
        fail "binfmt_misc has no enabled qemu-$q handler after update-binfmts --enable qemu-$q (see update-binfmts --display qemu-$q)"
}

install_host_packages
for tool in debootstrap chroot timeout git findmnt flock update-binfmts; do
    command -v "$tool" >/dev/null || fail "no $tool on this machine (apt-get install -y ${HOST_PACKAGES[*]} git util-linux coreutils)"
done
for arch in $ARCHES; do
    q=$(qemu_of "$arch")
    command -v "qemu-$q-static" >/dev/null || fail "no qemu-$q-static after installing qemu-user-static"
    enable_binfmt "$q"
done
[ -x "$REPO/.venv/bin/mlflow" ] && [ -d "$HOST_PREFIX" ] || fail "no .venv with mlflow for the host's server: run scripts/setup.sh first"
[ -f tests/edge/fixtures/registry.json ] || fail "no fixture bundles in tests/edge/fixtures (scripts/make_edge_fixtures.py)"
for t in "${ROOT_TESTS[@]}"; do [ -e "$t" ] || fail "no $t (ROOT_TESTS / EDGEQ_ARM_TESTS name test files of this checkout)"; done

BASE_PACKAGES=python3,python3-venv,ca-certificates
apt_packages_of() {  # what the README's recipe installs with apt on top (apt resolves their dependencies)
    case $1 in
        arm64) echo "" ;;
        # 32-bit: the index has no armv7l wheels for NumPy (nor cffi, which cryptography needs).
        armhf) echo "python3-numpy python3-cffi" ;;
    esac
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then  # another check-arm.sh: wait for it (its roots are ours next), never skip
    say "another check-arm.sh holds $CACHE/.lock: waiting (at most 1 h)"
    flock -w 3600 9 || fail "another check-arm.sh held $CACHE/.lock for an hour"
fi
WORK=$(mktemp -d /tmp/edgeq-arm.XXXXXX)
launcher() { "$HOST_PY" -m registry_tools.mlflow_server "$@"; }  # the project's one mlflow server launcher
cleanup() {
    for arch in $ARCHES; do unmount_all "$CACHE/$SUITE-$arch"; done
    [ ! -f "$WORK/server/server.pid" ] || launcher stop --dir "$WORK/server" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
unmount_all() {  # everything mounted below $1, deepest first: never rm -rf a root with /dev or /usr bound in it
    { findmnt -rn -o TARGET | grep -F "$1/" || true; } | sort -r | while read -r target; do umount -l "$target" || true; done
    ! findmnt -rn -o TARGET | grep -qF "$1/" || { echo "check-arm: cannot unmount below $1" >&2; exit 1; }
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

write_cpuinfo() {  # LiteRT segfaults creating an interpreter when it reads an x86 /proc/cpuinfo
    local arch=$1 out=$2 i
    for i in 0 1 2 3; do
        if [ "$arch" = arm64 ]; then
            printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i"
        else
            printf 'processor\t: %d\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS\t: 108.00\nFeatures\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\nCPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i"
        fi
    done >"$out"
    printf 'Hardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 10000000edge0000\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n' >>"$out"
}

build_root() {  # a cached debootstrap root: rebuilt only when the package lists change
    local arch=$1 root=$CACHE/$SUITE-$1 want apt log=$CACHE/debootstrap-$1.log
    apt=$(apt_packages_of "$arch")
    want="$SUITE $arch $BASE_PACKAGES${apt:+ $apt}"
    [ "$(cat "$root/.edgeq-root" 2>/dev/null)" = "$want" ] && return 0
    say "$arch: debootstrap $SUITE (first run: several minutes under emulation)"
    unmount_all "$root"; unmount_all "$root.tmp"
    rm -rf --one-file-system "$root" "$root.tmp"
    timeout 3600 debootstrap --arch="$arch" --variant=minbase --include="$BASE_PACKAGES" \
        "$SUITE" "$root.tmp" "$MIRROR" >"$log" 2>&1 || { tail -5 "$log" >&2; return 1; }
    if [ -n "$apt" ]; then
        mount -t proc proc "$root.tmp/proc"
        cp /etc/resolv.conf "$root.tmp/etc/resolv.conf"
        timeout 1800 env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
            QEMU_CPU="$(cpu_of "$arch")" chroot "$root.tmp" /bin/sh -c \
            "apt-get update -q && apt-get install -y -q --no-install-recommends $apt && apt-get clean" >>"$log" 2>&1 ||
            { umount -l "$root.tmp/proc"; tail -5 "$log" >&2; return 1; }
        umount -l "$root.tmp/proc"
    fi
    echo "$want" >"$root.tmp/.edgeq-root"
    mv "$root.tmp" "$root"
}

enter_root() {  # proc with an ARM cpuinfo, sys, /dev, DNS, and this checkout's files at /opt/edgeq
    local arch=$1 root=$CACHE/$SUITE-$1
    unmount_all "$root"
    write_cpuinfo "$arch" "$WORK/cpuinfo-$arch"
    mount -t proc proc "$root/proc"
    mount --bind "$WORK/cpuinfo-$arch" "$root/proc/cpuinfo"
    mount -t sysfs -o ro sysfs "$root/sys"  # cpuinfo (in the runtimes) reads the CPU lists there
    mount --bind /dev "$root/dev"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    # Behind a TLS-inspecting proxy pip needs this host's CA bundle (PIP_CERT or pip.conf's cert).
    [ -z "$HOST_CA" ] || cp "$HOST_CA" "$root/etc/ssl/certs/edgeq-host-ca.crt"
    # The edge tests start real mlflow servers from next to their python (registry_tools/mlflow_server.py). The
    # host's x86 mlflow runs natively inside the root when its interpreter and libraries are there.
    local dir
    for dir in /usr/lib/x86_64-linux-gnu /usr/lib64 "$HOST_PREFIX" "$REPO/.venv"; do
        mkdir -p "$root$dir"
        mount --bind "$dir" "$root$dir"
        mount -o remount,bind,ro "$root$dir"
    done
    [ -e "$root/lib64" ] || ln -s usr/lib64 "$root/lib64"
    rm -rf --one-file-system "$root/opt/edgeq" "$root/tmp/edgeq-"*
    mkdir -p "$root/opt/edgeq"
    git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
        tar --null -T - -cf - | tar -xf - -C "$root/opt/edgeq"
}

inroot() {  # inroot ARCH SECONDS 'shell command' [NAME=VALUE...]: a clean environment, the Pi's CPU
    local arch=$1 seconds=$2 cmd=$3
    shift 3
    timeout -k 10 "$seconds" env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LANG=C.UTF-8 \
        QEMU_CPU="$(cpu_of "$arch")" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore \
        ${HOST_CA:+PIP_CERT=/etc/ssl/certs/edgeq-host-ca.crt} "$@" \
        chroot "$CACHE/$SUITE-$arch" /bin/sh -c "$cmd"
}

install_edge() {  # install_edge ARCH VENV EXTRA [--system-site-packages]: the README's commands, venv cached
    local arch=$1 venv=$2 extra=$3 site=${4:-} root=$CACHE/$SUITE-$1 key
    key="$(sha256sum pyproject.toml | cut -c1-16) $extra $site"
    if [ "$(cat "$root$venv/.edgeq-key" 2>/dev/null)" = "$key" ]; then
        # Dependencies as installed before; this checkout's code, fresh.
        inroot "$arch" 900 "$venv/bin/pip install -q --no-deps --force-reinstall /opt/edgeq" >>"$WORK/$arch-install.log" 2>&1 || return 1
        link_host_mlflow "$arch" "$venv"
        return
    fi
    rm -rf --one-file-system "$root$venv"
    inroot "$arch" 1800 "python3 -m venv $site $venv && $venv/bin/pip install -q '/opt/edgeq[$extra]'" \
        >>"$WORK/$arch-install.log" 2>&1 || { tail -5 "$WORK/$arch-install.log" >&2; return 1; }
    du -sm "$root$venv" | cut -f1 >"$root$venv/.edgeq-size"
    inroot "$arch" 900 "$venv/bin/pip install -q pytest" >>"$WORK/$arch-install.log" 2>&1 ||
        { tail -5 "$WORK/$arch-install.log" >&2; return 1; }
    echo "$key" >"$root$venv/.edgeq-key"
    link_host_mlflow "$arch" "$venv"
}

link_host_mlflow() {  # link_host_mlflow ARCH VENV: the host's mlflow (for the tests' servers) as VENV/bin/mlflow
    # Written on every run, never cached: the checkout (and its .venv) may be elsewhere than last time.
    local arch=$1 venv=$2 root=$CACHE/$SUITE-$1
    printf '#!/bin/sh\nexec %s "$@"\n' "$REPO/.venv/bin/mlflow" >"$root$venv/bin/mlflow"
    chmod +x "$root$venv/bin/mlflow"
    inroot "$arch" 300 "$venv/bin/mlflow --version" >>"$WORK/$arch-install.log" 2>&1 ||
        { say "$arch: the host's mlflow does not run inside the root ($REPO/.venv/bin/mlflow)"; return 1; }
}

start_server() {  # store, log and pid file in $WORK/server, any free port; 3 minutes: a loaded machine starts it slowly
    URI=$(launcher start --dir "$WORK/server" --port 0 --timeout 180 | sed -n 's/^MLFLOW_TRACKING_URI=//p')
    [ -n "$URI" ]
}

register() {  # register NAME: the fixture bundle as version 1 of NAME, alias production; prints the run id
    "$HOST_PY" -c 'import sys
from tests.edge.registry_rest import MlflowRest, register_fixture
print(register_fixture(MlflowRest(sys.argv[1]), sys.argv[2], sys.argv[3]).run_id)' "$URI" "$1" "$MODEL_VARIANT"
}

reported_accuracy() {  # reported_accuracy STATE_DIR: the sample accuracy the device reported about version 1, on its own run
    "$HOST_PY" -c 'import json, sys
from edge import contract
from edge.heartbeat import FLEET_FILE
from tests.edge.registry_rest import MlflowRest
try:
    run_id = json.load(open(f"{sys.argv[2]}/{FLEET_FILE}"))["run_id"]
except (OSError, ValueError, KeyError):
    sys.exit(print("-"))
try:
    value = MlflowRest(sys.argv[1]).run_metrics(run_id).get(contract.version_key("1", contract.D_SAMPLE_ACCURACY))
except Exception:  # noqa: BLE001 - any failure to read it back means: not reported
    value = None
print("-" if value is None else f"{value:.3f}")' "$URI" "$1"
}

signed_report() {  # signed_report ARCH VENV STATE_DIR: inside the root, the device's report on v1 verifies with its own key
    inroot "$1" 600 "$2/bin/python - $URI $3" <<'PY'
import json, sys
import requests
from edge import contract, evidence, identity
from edge.heartbeat import FLEET_FILE
uri, state = sys.argv[1], sys.argv[2]
key = identity.load_or_create(state)  # made by the pull; made now would mean the pull signed nothing
run_id = json.load(open(f"{state}/{FLEET_FILE}"))["run_id"]
run = requests.get(f"{uri}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=120).json()["run"]
params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
signed = [evidence.verify(v, key.public_raw()) for k, v in params.items() if k.startswith(evidence.PARAM_PREFIX)]
reports = [p for p in signed if p.kind == evidence.KIND_REPORT and p.version == "1"]
marker = params.get(contract.version_key("1", contract.D_EVIDENCE))
if key.created or len(reports) != 1 or marker != contract.EVIDENCE_MARK:
    sys.exit(f"no verified report on v1 (key made now: {key.created}, reports: {len(reports)}, marker: {marker})")
print(f"verified: the {reports[0].verdict} report on v1 and {len(signed) - 1} more signed param(s), key {key.public_text()}")
PY
}

# The fixture bundles registry.json lists (other directories there, e.g. hostile/, are not bundles to compare).
FIXTURE_VARIANTS=$("$HOST_PY" -c 'import json; print(" ".join(sorted(json.load(open("tests/edge/fixtures/registry.json"))["variants"])))')
bundle_args() { local v; for v in $FIXTURE_VARIANTS; do printf '%s=%s/tests/edge/fixtures/%s ' "$v" "$1" "$v"; done; }

ROWS=()
CHECKS=()
FAILED=0

check_one() {  # check_one ARCH VENV EXTRA RUN_TESTS [--system-site-packages]
    local arch=$1 venv=$2 extra=$3 tests=$4 site=${5:-} root=$CACHE/$SUITE-$1 name device code out
    local label=$arch/$extra runtime="-" numpy="-" size="-" counts="-" accuracy="-" verdict="-"
    if ! install_edge "$arch" "$venv" "$extra" "$site"; then
        ROWS+=("| $label | install failed | - | - | - | - | - | - |"); FAILED=1; return
    fi
    size="$(cat "$root$venv/.edgeq-size") MB"
    if [ -n "$site" ]; then
        size="$size + $(( $(inroot "$arch" 120 "dpkg-query -W -f='\${Installed-Size}' python3-numpy") / 1024 )) MB Debian NumPy"
    fi
    inroot "$arch" 300 "$venv/bin/edgeq-pull doctor" >"$WORK/$arch-$extra-doctor.txt" 2>&1 || true
    runtime=$(sed -n 's/^runtime *\(.*\) (≈ .*<- used$/\1/p' "$WORK/$arch-$extra-doctor.txt")
    numpy=$(sed -n 's/^numpy *//p' "$WORK/$arch-$extra-doctor.txt")
    [ -n "$runtime" ] || { say "$label: no usable runtime:"; cat "$WORK/$arch-$extra-doctor.txt" >&2; runtime="none"; FAILED=1; }

    if [ "$tests" = yes ]; then
        out=$WORK/$arch-$extra-pytest.txt
        code=0
        # As scripts/test-edge.sh runs them; no extra runtime venvs (this script compares the runtimes itself).
        inroot "$arch" 2400 "cd /opt/edgeq && $venv/bin/python -m pytest ${ROOT_TESTS[*]} -m '$ROOT_TESTS_MARKERS' -q -p no:cacheprovider" \
            EDGEQ_TEST_VENVS=off >"$out" 2>&1 || code=$?
        counts=$(grep -Eo '[0-9]+ (passed|failed|skipped|errors?)' "$out" | paste -sd, - | sed 's/,/, /g')
        [ "$code" = 0 ] || { say "$label: edge tests failed (exit $code):"; tail -30 "$out" >&2; FAILED=1; counts="${counts:-none} (exit $code)"; }
    fi

    name=edgeq-arm-check-$arch-$extra
    device=qemu-$arch-$extra
    register "$name" >/dev/null
    code=0
    inroot "$arch" 900 "$venv/bin/edgeq-pull --tracking-uri $URI --model $name --device-id $device \
        --state-dir /tmp/edgeq-state-$extra --runs 20 --warmup 2" >"$WORK/$arch-$extra-pull.txt" 2>&1 || code=$?
    CHECKS+=("PULL $label: $(tail -1 "$WORK/$arch-$extra-pull.txt")")
    accuracy=$(reported_accuracy "$root/tmp/edgeq-state-$extra")
    [ "$code" = 0 ] && [ "$accuracy" != - ] || FAILED=1
    signed_report "$arch" "$venv" "/tmp/edgeq-state-$extra" >"$WORK/$arch-$extra-evidence.txt" 2>&1 || FAILED=1
    CHECKS+=("EVIDENCE $label: $(tail -1 "$WORK/$arch-$extra-evidence.txt")")

    inroot "$arch" 900 "$venv/bin/python /opt/edgeq/tests/edge/predictions.py predict $(bundle_args /opt/edgeq)" \
        >"$WORK/$arch-$extra-pred.json" 2>"$WORK/$arch-$extra-pred.err" || true
    if "$HOST_PY" tests/edge/predictions.py compare "$WORK/x86.json" "$WORK/$arch-$extra-pred.json" \
        >"$WORK/$arch-$extra-compare.txt" 2>&1; then
        verdict="agree ($(grep -c 'top-1 equal' "$WORK/$arch-$extra-compare.txt") bundles)"
    else
        verdict=DISAGREE; FAILED=1
        tail -3 "$WORK/$arch-$extra-pred.err" >&2
    fi
    while IFS= read -r line; do CHECKS+=("CHECK $label: ${line#  }"); done <"$WORK/$arch-$extra-compare.txt"
    ROWS+=("| $arch ($(cpu_of "$arch")) | $runtime | $numpy | $size | $counts | $accuracy | $verdict | $code |")
}

START=$(date +%s)
start_server || { echo "check-arm: FAILED: mlflow server did not start" >&2; exit 1; }
"$HOST_PY" tests/edge/predictions.py predict $(bundle_args "$REPO") >"$WORK/x86.json" ||
    fail "x86 predictions of the fixture bundles failed (tests/edge/predictions.py)"
for arch in $ARCHES; do
    build_root "$arch" || { ROWS+=("| $arch | debootstrap failed | - | - | - | - | - | - |"); FAILED=1; continue; }
    enter_root "$arch"
    if [ "$arch" = arm64 ]; then
        check_one arm64 /opt/venv-edge edge yes
        check_one arm64 /opt/venv-tflite tflite-runtime no
    else
        check_one armhf /opt/venv-tflite tflite-runtime yes --system-site-packages
    fi
    unmount_all "$CACHE/$SUITE-$arch"
done

echo
echo "ARM check under QEMU ($(( $(date +%s) - START )) s; emulated latency means nothing, so none is shown):"
echo "| platform (QEMU CPU) | runtime | NumPy | install size | edge tests | sample accuracy (reported) | predictions vs x86 LiteRT | pull exit |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
printf '%s\n' "${CHECKS[@]}"
rm -rf "$CACHE/last-run" && cp -r "$WORK" "$CACHE/last-run"
[ "$FAILED" = 0 ] && echo "check-arm: ok (logs in $CACHE/last-run)" || echo "check-arm: FAILED (logs in $CACHE/last-run)"
exit "$FAILED"
