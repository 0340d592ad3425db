#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Wraps layer tarballs into an OCI image archive that `ctr image import` takes.

    oci-image.py --name REF --out IMAGE.tar [--cmd ARG ...] LAYER.tar [LAYER.tar ...]

Each LAYER.tar is an uncompressed layer (the first the base, whiteouts as `.wh.NAME` entries,
as OCI specifies). The archive holds the OCI image layout (`oci-layout`, `index.json`,
`blobs/sha256/`), one manifest for linux/amd64 whose layers are the inputs gzip-compressed, and
an image configuration. The index names the image REF twice: `io.containerd.image.name` (which
ctr uses as the full name) and `org.opencontainers.image.ref.name` (its tag).

There is no registry to pull from in the test machines: scripts/mkrootfs.sh builds the guest's
test images from Debian packages and busybox and wraps them with this. The output is
reproducible: gzip and tar headers carry no time stamps.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def gzip_file(src, dst):
    with open(src, "rb") as fin, open(dst, "wb") as raw:
        # mtime=0 and no file name: the same input always gives the same blob.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            for chunk in iter(lambda: fin.read(1 << 20), b""):
                gz.write(chunk)


def add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def add_file(tar, name, path):
    info = tarfile.TarInfo(name)
    info.size = os.path.getsize(path)
    info.mode = 0o644
    with open(path, "rb") as f:
        tar.addfile(info, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True, help="image reference, e.g. localhost/lcfs-test/debian:bookworm")
    ap.add_argument("--out", required=True, help="the OCI archive to write")
    ap.add_argument("--cmd", nargs="+", default=["/bin/sh"], help="the image's default command")
    ap.add_argument("layers", nargs="+", help="uncompressed layer tarballs, base first")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(args.out))) as tmp:
        blobs = []  # (digest, path, size)
        diff_ids, layer_descs = [], []
        for i, layer in enumerate(args.layers):
            gz = os.path.join(tmp, f"layer{i}.tar.gz")
            gzip_file(layer, gz)
            digest = sha256_file(gz)
            diff_ids.append("sha256:" + sha256_file(layer))
            size = os.path.getsize(gz)
            blobs.append((digest, gz))
            layer_descs.append({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + digest,
                "size": size,
            })

        def blob(obj):
            data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
            return hashlib.sha256(data).hexdigest(), data

        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": args.cmd,
                "WorkingDir": "/",
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"lcfs scripts/oci-image.py layer {i}"} for i in range(len(diff_ids))],
        }
        config_digest, config_data = blob(config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + config_digest,
                "size": len(config_data),
            },
            "layers": layer_descs,
        }
        manifest_digest, manifest_data = blob(manifest)
        tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + manifest_digest,
                "size": len(manifest_data),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": args.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
        }

        out_tmp = os.path.join(tmp, "out.tar")
        with tarfile.open(out_tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode())
            add_bytes(tar, f"blobs/sha256/{config_digest}", config_data)
            add_bytes(tar, f"blobs/sha256/{manifest_digest}", manifest_data)
            for digest, path in blobs:
                add_file(tar, f"blobs/sha256/{digest}", path)
        os.replace(out_tmp, args.out)
    print(f"{args.out}: {args.name}, {len(args.layers)} layer(s)", file=sys.stderr)


if __name__ == "__main__":
    main()
