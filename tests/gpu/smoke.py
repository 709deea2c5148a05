"""On a CUDA GPU: run every user-facing entry point once and say which work (no timings, no parity:
tests/gpu/check.py does parity). The CLI commands run in-process with ``--device cuda``
(segment, exact and fast; auto with crops; track; batch with prompts and with --auto), then the HTTP
server through a TestClient on a CUDA model (upload, clicks with RLE and PNG output, a refinement,
automatic masks). Each step runs on its own; a failure prints the end of its traceback.

    python tests/gpu/smoke.py --checkpoint ck.pt --image truck.jpg --frames bedroom/
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import traceback
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="sam2.1-hiera-tiny")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--frames", required=True, help="folder of JPEG frames (the first 4 are tracked)")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args(argv)

    from samkit.cli import main as cli

    tmp = Path(tempfile.mkdtemp())
    m = ["--model", args.model, "--checkpoint", args.checkpoint, "--device", args.device]
    clip = tmp / "clip"
    clip.mkdir()
    for f in sorted(Path(args.frames).glob("*.jpg"))[:4]:
        shutil.copy(f, clip / f.name)
    photos = tmp / "photos"
    photos.mkdir()
    for i in range(3):
        shutil.copy(args.image, photos / f"p{i}.jpg")
    prompts = tmp / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"image": f"p{i}.jpg", "points": [[900, 600]]}) + "\n" for i in range(3))
    )
    seg = ["segment", args.image, "--point", "900,600", "--out", str(tmp / "m.png"), "--json"]
    steps = {
        "segment": lambda: cli([*seg, *m]),
        "segment --fast --box": lambda: cli([*seg, "--box", "100,100,1500,1000", "--fast", *m]),
        "auto --fast crops": lambda: cli(
            [
                "auto",
                args.image,
                "--fast",
                "--crop-n-layers",
                "1",
                "--points-per-side",
                "8",
                "--pred-iou-thresh",
                "0",
                "--stability-score-thresh",
                "0",
                "--out",
                str(tmp / "a.json"),
                *m,
            ]
        ),
        "track --fast": lambda: cli(
            [
                "track",
                str(clip),
                "--prompt",
                "0:1:400,300",
                "--prompt",
                "0:2:700,200",
                "--out",
                str(tmp / "trk"),
                "--fast",
                *m,
                *([] if has_av() else ["--no-overlay"]),
            ]
        ),
        "batch prompts": lambda: cli(
            ["batch", str(photos), "--out", str(tmp / "b1"), "--prompts", str(prompts), "--quiet", *m]
        ),
        "batch --auto --fast": lambda: cli(
            [
                "batch",
                str(photos),
                "--out",
                str(tmp / "b2"),
                "--auto",
                "--points-per-side",
                "8",
                "--fast",
                "--quiet",
                *m,
            ]
        ),
        "server": lambda: server(args),
    }
    failed = []
    for name, step in steps.items():
        try:
            rc = step()
            ok = rc in (0, None)
        except BaseException:  # noqa: BLE001 - SystemExit from argparse too: report and go on
            ok = False
            print("\n".join(traceback.format_exc().splitlines()[-12:]))
        print(f"[{'ok' if ok else 'FAILED'}] {name}", flush=True)
        if not ok:
            failed.append(name)
    print(
        f"{len(steps) - len(failed)} of {len(steps)} steps work on {args.device}; failed: {failed or 'none'}"
    )
    return 1 if failed else 0


def has_av() -> bool:
    """Whether PyAV (the overlay video's writer) is installed."""
    import importlib.util

    return importlib.util.find_spec("av") is not None


def server(args) -> int:
    import base64

    from fastapi.testclient import TestClient

    import samkit
    from samkit.server import ServerConfig, create_app

    cfg = ServerConfig(model=args.model, checkpoint=args.checkpoint, device=args.device)
    # as `samkit serve --fast` loads it
    model = samkit.load_model(
        args.model, checkpoint=args.checkpoint, device=args.device, precision="bf16", compile=True
    )
    with TestClient(create_app(cfg, model=model)) as c:
        health = c.get("/healthz").json()
        assert health["device"].startswith(args.device), health
        data = Path(args.image).read_bytes()
        up = c.post("/v1/images", files={"file": ("t.jpg", data, "image/jpeg")})
        assert up.status_code == 200, up.text
        image_id = up.json()["image_id"]
        first = c.post("/v1/segment", json={"image_id": image_id, "points": [[900, 600]], "labels": [1]})
        assert first.status_code == 200, first.text
        mask_id = first.json()["masks"][0]["mask_id"]
        again = c.post(
            "/v1/segment",
            json={
                "image_id": image_id,
                "points": [[900, 600], [300, 300]],
                "labels": [1, 0],
                "mask_from": mask_id,
                "multimask": False,
                "output": "png",
            },
        )
        assert (
            again.status_code == 200 and base64.b64decode(again.json()["masks"][0]["png"])[:4] == b"\x89PNG"
        )
        auto = c.post("/v1/automatic", json={"image_id": image_id, "points_per_side": 8})
        assert auto.status_code == 200, auto.text
        print(f"  server on {health['device']}: clicks and automatic masks answered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
