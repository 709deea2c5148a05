"""The GPU tracking A/B of the 2026-11-23 re-check: seconds per tracked frame (1 and 4 objects, 12
frames, 5 runs after a warm-up), exact and fast, for the samkit tree on PYTHONPATH. Prints one "AB"
JSON line: per precision and object count, [median, min]. Run once per tree, alternating trees:

    PYTHONPATH=TREE/src python3 ab_video.py CHECKPOINT LABEL
"""

import json
import statistics
import sys

import samkit
from samkit import bench

ck, label = sys.argv[1], sys.argv[2]
out = {"label": label, "samkit": samkit.__file__}
for prec in ("fp32", "bf16"):
    model = samkit.load_model("sam2.1-hiera-tiny", checkpoint=ck, device="cuda", precision=prec)
    img = bench._test_image(1200, 1800)
    bench.samkit_long_figures(model, img, auto=False, video_frames=4, video_objects=(1,))  # warm-up
    runs = {1: [], 4: []}
    for _ in range(5):
        r = bench.samkit_long_figures(model, img, auto=False, video_frames=12, video_objects=(1, 4))
        runs[1].append(r["video1_s"])
        runs[4].append(r["video4_s"])
    out[prec] = {k: [round(statistics.median(v), 4), round(min(v), 4)] for k, v in runs.items()}
print("AB", json.dumps(out), flush=True)
