"""Test-only stand-in for the parts of torchvision that the reference `sam2` package imports.

There is no CPU build of torchvision on our machines; the reference only needs Resize (bilinear,
antialiased), Normalize and ToTensor for its transforms, and nms / batched_nms / box_area for its
automatic mask generator. This package is put on sys.path by tests/oracle only; samkit never uses it.
"""

__version__ = "0.0-samkit-test-stub"
