"""The prompt file: parsing and the errors that name file and line."""

from __future__ import annotations

import json

import pytest

from samkit.batch.prompts import PromptFileError, load_prompts


def write(path, *lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_parses_points_boxes_and_groups_by_image(tmp_path):
    p = write(
        tmp_path / "p.jsonl",
        {"image": "./a/x.jpg", "points": [[1, 2], [3, 4]], "labels": [1, 0]},
        "",
        {"image": "a/x.jpg", "box": [0, 0, 5, 5]},
        {"image": "y.jpg", "points": [[7, 8]]},
    )
    prompts = load_prompts(p)
    assert list(prompts) == ["a/x.jpg", "y.jpg"]
    first, second = prompts["a/x.jpg"]
    assert first.points == ((1.0, 2.0), (3.0, 4.0)) and first.labels == (1, 0) and first.box is None
    assert second.box == (0.0, 0.0, 5.0, 5.0) and second.points == () and not second.multimask
    assert prompts["y.jpg"][0].labels == (1,) and prompts["y.jpg"][0].multimask
    assert first.line == 1 and second.line == 3


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "expected a JSON object"),
        ({"points": [[1, 2]]}, "'image' must be"),
        ({"image": "a.jpg"}, "give 'points' and/or 'box'"),
        ({"image": "a.jpg", "points": [[1]]}, "list of \\[x, y\\]"),
        ({"image": "a.jpg", "points": [[1, 2]], "labels": [1, 1]}, "one label per point"),
        ({"image": "a.jpg", "points": [[1, 2]], "labels": [2]}, "labels must be 1"),
        ({"image": "a.jpg", "box": [5, 5, 1, 1]}, "x1 > x0"),
        ({"image": "a.jpg", "box": [0, 0, 1]}, "'box' must be"),
        ({"image": "a.jpg", "box": [0, 0, 1, 1], "colour": "red"}, "unknown field"),
        ({"image": "a.jpg", "labels": [1], "box": [0, 0, 1, 1]}, "'labels' without 'points'"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    p = write(tmp_path / "p.jsonl", {"image": "ok.jpg", "points": [[1, 1]]}, line)
    with pytest.raises(PromptFileError, match=message) as e:
        load_prompts(p)
    assert f"{p}:2:" in str(e.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(PromptFileError, match="not found"):
        load_prompts(tmp_path / "none.jsonl")
    with pytest.raises(PromptFileError, match="holds no prompts"):
        load_prompts(write(tmp_path / "e.jsonl", ""))
