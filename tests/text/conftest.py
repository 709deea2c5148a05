"""Tiny random detectors of both architectures, built once per session into a temporary folder."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def dino_dir(tmp_path_factory):
    import textgen

    return textgen.grounding_dino(tmp_path_factory.mktemp("detectors") / "grounding-dino")


@pytest.fixture(scope="session")
def owl_dir(tmp_path_factory):
    import textgen

    return textgen.owlv2(tmp_path_factory.mktemp("detectors") / "owlv2")


@pytest.fixture(scope="session")
def dino(dino_dir):
    from samkit.text import Detector

    return Detector.load(dino_dir)


@pytest.fixture(scope="session")
def owl(owl_dir):
    from samkit.text import Detector

    return Detector.load(owl_dir)
