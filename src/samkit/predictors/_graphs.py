"""CUDA graphs of a click: the prompt encoder and mask decoder replayed as one recorded launch.

On a GPU a click is ~200 small kernels (the two-way transformer's matmuls, norms and softmaxes for a
handful of tokens). Launching them one by one from Python takes longer than running them; a replayed
CUDA graph runs them several times faster (see the performance page), with bit-identical outputs (same
kernels on the same inputs).

A graph is recorded per decoder and per prompt shape (points per prompt, prompts, multimask), the
second time that shape is asked for, so a one-off shape costs no recording. Every graph of a decoder
reads the image side (:class:`~samkit.modeling.mask_decoder.DecoderInputs`) from one set of static
buffers, refilled only when the image changes: a shape recorded on one image replays on the next.
The graphs share one memory pool, and their outputs are copied out under a lock before any other
replay can overwrite them.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import fields

import torch

from ..modeling.mask_decoder import DecoderInputs

__all__ = ["DecoderGraphs", "StepGraphs", "graphs_for", "step_graphs_for"]

# Graphs kept per decoder (least recently used dropped): the number of points in a prompt grows by
# one with each refining click, so an annotator's session needs about as many shapes as clicks.
MAX_GRAPHS = 32
# More prompts than this go eagerly: each prompt adds ~4 MiB of recorded intermediates, and with
# many prompts the kernels are long enough that launching them is no longer the cost.
MAX_PROMPTS = 16

DecodeFn = Callable[[DecoderInputs, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

_BY_DECODER: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BY_DECODER_LOCK = threading.Lock()


def graphs_for(decoder: torch.nn.Module) -> DecoderGraphs:
    """The graphs of ``decoder`` (made on first use; they go when the decoder does)."""
    with _BY_DECODER_LOCK:
        graphs = _BY_DECODER.get(decoder)
        if graphs is None:
            graphs = _BY_DECODER[decoder] = DecoderGraphs()
        return graphs


def _flat(prep: DecoderInputs) -> list[torch.Tensor | None]:
    """The image side's tensors in a fixed order (None where a field is absent)."""
    out: list[torch.Tensor | None] = []
    for f in fields(prep):
        v = getattr(prep, f.name)
        out.extend(v if isinstance(v, tuple) else [v])
    return out


def _signature(tensors) -> tuple:
    return tuple(None if t is None else (tuple(t.shape), t.dtype, t.device) for t in tensors)


class DecoderGraphs:
    """Recorded clicks of one mask decoder. :meth:`run` is ``fn(prep, coords, labels)`` -- a pure
    function of its tensors -- replayed from a CUDA graph when one is recorded for the shapes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.graphs: OrderedDict[tuple, tuple] = OrderedDict()
        self.seen: Counter = Counter()
        self.pool = None
        self.static: DecoderInputs | None = None
        self.static_sig: tuple | None = None
        self.source: weakref.ref | None = None  # the image side last copied into `static`
        self.failed: str | None = None
        self.replays = 0  # (read by tests and benchmarks)
        self.recorded = 0

    def run(
        self, fn: DecodeFn, prep: DecoderInputs, coords: torch.Tensor, labels: torch.Tensor, key: tuple
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``fn(prep, coords, labels)``: coords (B, N, 2), labels (B, N); ``key`` holds what else
        ``fn`` depends on (flags such as multimask). Returns fresh tensors, never the graph's own."""
        if self.failed is not None or coords.shape[0] > MAX_PROMPTS:
            return fn(prep, coords, labels)
        flat = _flat(prep)
        image_sig = _signature(flat)
        key = (key, _signature([coords, labels]), image_sig)
        record = False
        with self.lock:
            entry = self.graphs.get(key)
            if entry is None:
                if len(self.seen) > 4 * MAX_GRAPHS:
                    self.seen.clear()
                self.seen[key] += 1
                record = self.seen[key] >= 2
            if entry is not None or record:
                self._load_image_side(prep, flat, image_sig)
                if entry is None:
                    entry = self._record(fn, coords, labels, key)
            if entry is not None:
                self.graphs.move_to_end(key)
                graph, static_coords, static_labels, outputs = entry
                static_coords.copy_(coords)
                static_labels.copy_(labels)
                graph.replay()
                self.replays += 1
                # the graph writes its outputs to the same memory on every replay: hand out copies
                return tuple(o.clone() for o in outputs)
        # a shape seen for the first time (or one that failed to record) runs eagerly, unlocked
        return fn(prep, coords, labels)

    def _load_image_side(self, prep: DecoderInputs, flat: list, sig: tuple) -> None:
        if self.source is not None and self.source() is prep:
            return
        if sig != self.static_sig:
            # another layout of image side (a new device, dtype or size): the graphs read the old
            # buffers, so they go with them
            self.graphs.clear()
            self.static = self._clone_prep(prep)
            self.static_sig = sig
        else:
            for dst, src in zip(_flat(self.static), flat):
                if dst is not None:
                    dst.copy_(src)
        self.source = weakref.ref(prep)

    @staticmethod
    def _clone_prep(prep: DecoderInputs) -> DecoderInputs:
        def c(v):
            if isinstance(v, tuple):
                return tuple(x.clone() for x in v)
            return None if v is None else v.clone()

        return DecoderInputs(**{f.name: c(getattr(prep, f.name)) for f in fields(prep)})

    def _record(self, fn: DecodeFn, coords, labels, key) -> tuple | None:
        static_coords, static_labels = coords.clone(), labels.clone()
        try:
            graph, outputs = self._capture(fn, (self.static, static_coords, static_labels))
        except Exception as e:  # an operation that cannot be recorded: stay eager from now on
            self.failed = f"{type(e).__name__}: {e}"
            self.graphs.clear()
            warnings.warn(
                f"samkit: recording a CUDA graph of the mask decoder failed ({self.failed}); "
                "clicks run eagerly (same results, slower)",
                RuntimeWarning,
                stacklevel=4,
            )
            return None
        entry = (graph, static_coords, static_labels, outputs)
        self.graphs[key] = entry
        self.recorded += 1
        while len(self.graphs) > MAX_GRAPHS:
            self.graphs.popitem(last=False)
        return entry

    def _capture(self, fn: DecodeFn, args: tuple) -> tuple[torch.cuda.CUDAGraph, tuple]:
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        return capture(fn, args, args[1].device, self.pool)


def capture(fn: Callable, args: tuple, device: torch.device, pool) -> tuple[torch.cuda.CUDAGraph, tuple]:
    """Record ``fn(*args)`` on ``device`` into the memory ``pool``: the graph, and the output tensors
    each replay writes."""
    with torch.cuda.device(device):
        # the first run of a shape (lazy library set-up, workspace allocation) must not happen while
        # recording: run it once on a side stream first, as PyTorch advises
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn(*args)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            outputs = fn(*args)
    return graph, outputs


# --- a tracked frame ---------------------------------------------------------------------------------

# Graphs kept per model: one per (objects in a batch, conditioning-frame slots, flags) shape.
MAX_STEP_GRAPHS = 8

_BY_MODEL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def step_graphs_for(model: torch.nn.Module) -> StepGraphs:
    """The tracking-step graphs of ``model`` (made on first use; they go when the model does)."""
    with _BY_DECODER_LOCK:
        graphs = _BY_MODEL.get(model)
        if graphs is None:
            graphs = _BY_MODEL[model] = StepGraphs()
        return graphs


class StepGraphs:
    """Recorded tracking steps of one model: :meth:`run` is ``fn(*inputs)`` -- a pure function of its
    tensors, the fixed-size memory bank's step (memory attention, heads, memory encoder) -- replayed
    from a CUDA graph recorded the second time its shapes (and ``key``) come. Inputs are copied into
    the graph's own buffers; outputs are copied out. A recording that fails warns once, and every
    step runs eagerly after it (same results)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.graphs: OrderedDict[tuple, tuple] = OrderedDict()
        self.seen: Counter = Counter()
        self.pool = None
        self.failed: str | None = None
        self.replays = 0  # (read by tests and benchmarks)
        self.recorded = 0

    def run(
        self,
        fn: Callable[..., tuple],
        inputs: tuple[torch.Tensor, ...],
        key: tuple,
        before_record: Callable[[], object] | None = None,
    ) -> tuple:
        """``before_record``: called before a recording (the caller's other CUDA work, such as a frame
        being prefetched in another thread, must not run while a graph is captured)."""
        if self.failed is not None:
            return fn(*inputs)
        key = (key, _signature(inputs))
        with self.lock:
            entry = self.graphs.get(key)
            if entry is None:
                if len(self.seen) > 4 * MAX_STEP_GRAPHS:
                    self.seen.clear()
                self.seen[key] += 1
                if self.seen[key] >= 2:
                    if before_record is not None:
                        before_record()
                    entry = self._record(fn, inputs, key)
            if entry is not None:
                self.graphs.move_to_end(key)
                graph, static, outputs = entry
                for dst, src in zip(static, inputs):
                    dst.copy_(src)
                graph.replay()
                self.replays += 1
                return tuple(o.clone() for o in outputs)
        return fn(*inputs)

    def _record(self, fn, inputs: tuple, key: tuple) -> tuple | None:
        static = tuple(t.clone() for t in inputs)
        try:
            graph, outputs = self._capture(fn, static)
        except Exception as e:  # an operation that cannot be recorded: eager from now on
            self.failed = f"{type(e).__name__}: {e}"
            self.graphs.clear()
            warnings.warn(
                f"samkit: recording a CUDA graph of the tracking step failed ({self.failed}); "
                "tracking runs eagerly (same results, slower)",
                RuntimeWarning,
                stacklevel=5,
            )
            return None
        entry = (graph, static, outputs)
        self.graphs[key] = entry
        self.recorded += 1
        while len(self.graphs) > MAX_STEP_GRAPHS:
            self.graphs.popitem(last=False)
        return entry

    def _capture(self, fn, args: tuple) -> tuple[torch.cuda.CUDAGraph, tuple]:
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        return capture(fn, args, args[0].device, self.pool)
