"""onnxruntime-web for the page's client-side decoding, taken from the npm registry at build time and
shipped in the package (``server/static/ort/``): the page never loads code from a CDN.

    python -m samkit.server.vendor            # fetch it (scripts/test.sh and wheel builds do)

Only the WASM backend's files (the loader, its module and the SIMD WASM binary, 14.2 MiB) and the
WebGPU backend's (27.5 MiB, loaded only by browsers that have WebGPU) are kept, with the package's MIT licence
written beside them. The tarball is checked against the registry's sha512 recorded here.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

ORT_WEB_VERSION = "1.31.1"
ORT_WEB_TARBALL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{ORT_WEB_VERSION}.tgz"
ORT_WEB_INTEGRITY = (
    "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
)
ORT_WEB_FILES = (
    # the WASM backend (CPU): what every browser runs
    "ort.wasm.min.js",
    "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm",
    # the WebGPU backend (with the WASM one inside, for the operators WebGPU lacks): where present
    "ort.webgpu.min.js",
    "ort-wasm-simd-threaded.asyncify.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
)
ORT_DIR = Path(__file__).resolve().parent / "static" / "ort"
# the npm package carries no licence file; its package.json says MIT (Microsoft's onnxruntime)
LICENSE = f"""onnxruntime-web {ORT_WEB_VERSION} (https://github.com/microsoft/onnxruntime), files from its npm package:
{", ".join(ORT_WEB_FILES)}
The bundles also hold third-party code under its own notices (kept in the files' headers; see
onnxruntime's ThirdPartyNotices.txt).

MIT License

Copyright (c) 2018 - present Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


class VendorError(RuntimeError):
    """onnxruntime-web could not be fetched or is missing."""


def ort_web_present(folder: Path = ORT_DIR) -> bool:
    return all((folder / f).is_file() for f in ORT_WEB_FILES)


def require_ort_web(folder: Path = ORT_DIR) -> None:
    if not ort_web_present(folder):
        raise VendorError(
            f"the page's onnxruntime-web files are missing from {folder}: fetch them once with "
            "`python -m samkit.server.vendor` (they come from the npm registry)"
        )


def fetch_ort_web(folder: Path = ORT_DIR, tarball: bytes | None = None, force: bool = False) -> Path:
    """Download the pinned onnxruntime-web tarball (or use ``tarball``), check its sha512 and unpack the
    WASM backend's files and the licence into ``folder``. Returns the folder."""
    if ort_web_present(folder) and not force:
        (folder / "LICENSE.txt").write_text(LICENSE)  # (the notice as this version words it)
        return folder
    if tarball is None:
        try:
            with urllib.request.urlopen(ORT_WEB_TARBALL, timeout=120) as r:
                tarball = r.read()
        except OSError as e:
            raise VendorError(f"could not download {ORT_WEB_TARBALL}: {e}") from None
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != ORT_WEB_INTEGRITY:
        raise VendorError(f"onnxruntime-web {ORT_WEB_VERSION}: the tarball's sha512 is not the registry's")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "LICENSE.txt").write_text(LICENSE)
    wanted = {f"package/dist/{f}": f for f in ORT_WEB_FILES}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = wanted.get(member.name)
            if name is None or not member.isfile():
                continue
            data = tar.extractfile(member).read()
            tmp = folder / (name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, folder / name)  # whole files only, even if interrupted
    require_ort_web(folder)
    return folder


def main() -> int:
    try:
        folder = fetch_ort_web(force="--force" in sys.argv[1:])
    except VendorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"onnxruntime-web {ORT_WEB_VERSION} in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
