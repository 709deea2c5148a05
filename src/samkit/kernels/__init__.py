"""Speed-ups, kept apart from the model.

Each module here replaces one plain PyTorch expression of the model or its post-processing with a
faster computation of the same numbers (or, for the bfloat16 fast path, of numbers within the fast
path's tolerance). Each opens with the plain expression it must equal and has an equivalence test in
``tests/kernels/``. Which one runs is decided by the execution policy (:mod:`samkit.policy`).

- :mod:`~samkit.kernels.attention`: bfloat16 CPU attention as matmuls and a softmax in query chunks.
- :mod:`~samkit.kernels.linear`: linear layers with bias and activation fused (oneDNN), and 1x1
  convolutions as matmuls on channels-last maps.
- :mod:`~samkit.kernels.upscale`: the mask decoder's upscaling and mask filters as token-order
  matmuls, tiled by grid rows (CPU) or untiled (GPU).
- :mod:`~samkit.kernels.upsample`: a click's masks to full resolution as banded matmuls with flat
  tiles skipped, or a compiled row mixer.
- :mod:`~samkit.kernels.cells`: the automatic mask generator's full-resolution stability scores and
  boxes computed by cells of the low-res grid.
"""
