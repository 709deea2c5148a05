"""CUDA graph recording without a GPU, for the graph caches' tests: a "graph" that re-runs the
recorded function on the recorded (static) tensors and copies the results into its first outputs, so
everything around recording -- which shapes are recorded, buffers refilled, copies handed out,
eviction, the fallback -- runs on the CPU."""

from __future__ import annotations


class Replay:
    """Stands in for torch.cuda.CUDAGraph: replay() recomputes fn(*args) into the first outputs."""

    def __init__(self, fn, args, outputs):
        self.fn, self.args, self.outputs = fn, args, outputs

    def replay(self):
        for out, new in zip(self.outputs, self.fn(*self.args)):
            out.copy_(new)


def fake_capture(self, fn, args):
    """A replacement for the caches' ``_capture`` method."""
    outputs = fn(*args)
    return Replay(fn, args, outputs), outputs
