"""The build's one step beyond pyproject.toml: the annotation page's onnxruntime-web (for client-side
decoding) is fetched from the npm registry into the package before it is built (samkit.server.vendor;
pinned version, checked sha512). Offline, the package builds without it and the server says how to
fetch it when --client-decoding is asked for."""

import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    def run(self):
        vendor = runpy.run_path(str(Path(__file__).parent / "src" / "samkit" / "server" / "vendor.py"))
        try:
            vendor["fetch_ort_web"]()
        except vendor["VendorError"] as e:
            print(f"warning: {e}; client-side decoding needs it (python -m samkit.server.vendor)")
        super().run()


setup(cmdclass={"build_py": BuildPy})
