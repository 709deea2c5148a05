"""COCO documents: the one writer behind ``samkit auto``, the server's ``/v1/automatic`` and the batch
job's ``--coco`` file.

Annotations are the generator's or predictor's dicts (``segmentation`` as COCO RLE, ``area``, ``bbox``
and any extra fields); each gets ``id``, ``image_id``, ``category_id`` and ``iscrowd``. Masks are
class-agnostic (one category, ``object``) unless a prompt-free head names its classes.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CATEGORY", "dataset", "single_image"]

CATEGORY = {"id": 1, "name": "object"}


def dataset(
    images: Iterable[tuple[dict, list[dict]]], description: str, categories: list[str] | None = None
) -> dict:
    """A COCO dataset from ``(image, annotations)`` pairs, where ``image`` has ``file_name``,
    ``width`` and ``height``; image ids count from 1 in the given order, annotation ids from 1 over
    the whole document. ``categories``: class names (ids 1, 2, ...; an annotation's own
    ``category_id`` says which), for a prompt-free head's masks; default the one ``object``."""
    out_images, out_anns = [], []
    for image_id, (image, anns) in enumerate(images, start=1):
        out_images.append({"id": image_id, **image})
        for a in anns:
            out_anns.append(
                {
                    "id": len(out_anns) + 1,
                    "image_id": image_id,
                    "category_id": CATEGORY["id"],
                    "iscrowd": 0,
                    **a,
                }
            )
    return {
        "info": {"description": description},
        "images": out_images,
        "categories": (
            [{"id": i + 1, "name": str(c)} for i, c in enumerate(categories)]
            if categories
            else [dict(CATEGORY)]
        ),
        "annotations": out_anns,
    }


def single_image(
    anns: list[dict],
    file_name: str,
    width: int,
    height: int,
    description: str,
    categories: list[str] | None = None,
) -> dict:
    """A COCO dataset of one image."""
    return dataset(
        [({"file_name": file_name, "width": width, "height": height}, anns)], description, categories
    )
