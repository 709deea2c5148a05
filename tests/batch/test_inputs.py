"""Finding images: folders, globs, list files, fsspec URLs; keys and errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from samkit.batch.inputs import InputError, decode_image, find_images, load, normalize_key

from .conftest import make_photos


def keys(refs):
    return [r.key for r in refs]


def test_folder_is_searched_recursively_by_extension(tmp_path):
    good = make_photos(tmp_path / "photos")
    refs = find_images(tmp_path / "photos")
    assert keys(refs) == sorted(good + ["broken.jpg"])  # notes.txt ignored, sorted keys
    assert all((tmp_path / "photos" / r.key).as_posix() == r.uri.replace("\\", "/") for r in refs)


def test_glob_keys_are_relative_to_the_pattern_folder(tmp_path):
    make_photos(tmp_path / "photos")
    refs = find_images(str(tmp_path / "photos" / "**" / "*.png"))
    assert keys(refs) == ["sub/p1.png", "sub/p4.png"]


def test_list_file_paths_relative_to_the_list(tmp_path):
    make_photos(tmp_path / "photos")
    lst = tmp_path / "list.txt"
    lst.write_text("# my images\nphotos/p0.jpg\n\n./photos/sub/p1.png  # a comment\n")
    refs = find_images(lst)
    assert keys(refs) == ["photos/p0.jpg", "photos/sub/p1.png"]
    assert load(refs[1]).shape == (104, 132, 3)


def test_single_image_and_several_sources(tmp_path):
    make_photos(tmp_path / "a")
    assert keys(find_images(tmp_path / "a" / "p0.jpg")) == ["p0.jpg"]
    both = find_images([tmp_path / "a" / "p0.jpg", tmp_path / "a" / "sub" / "p1.png"])
    assert keys(both) == ["p0.jpg", "p1.png"]
    (tmp_path / "b").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "b" / "p0.jpg")
    with pytest.raises(InputError, match="share the key 'p0.jpg'"):
        find_images([tmp_path / "a" / "p0.jpg", tmp_path / "b" / "p0.jpg"])


def test_fsspec_url_source(tmp_path):
    fsspec = pytest.importorskip("fsspec")  # fsspec comes with the test extras; this guards odd installs
    fs = fsspec.filesystem("memory")
    src = make_photos(tmp_path / "photos", n=3, corrupt=False)
    for k in src:
        fs.pipe(f"/bucket/photos/{k}", (tmp_path / "photos" / k).read_bytes())
    refs = find_images("memory://bucket/photos")
    assert keys(refs) == sorted(src)
    assert refs[0].uri.startswith("memory://")
    assert load(refs[0]).shape[2] == 3
    assert keys(find_images("memory://bucket/photos/*.jpg")) == ["p0.jpg", "p2.jpg"]


def test_errors_are_clear(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        find_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        find_images(tmp_path / "empty")
    with pytest.raises(InputError, match="cannot open nosuchproto://"):
        find_images("nosuchproto://bucket/x")
    with pytest.raises(ValueError, match="not an image file"):
        decode_image(b"garbage")


def test_normalize_key():
    assert normalize_key("./a\\b/c.jpg") == "a/b/c.jpg"
    assert normalize_key("/abs/x.png") == "abs/x.png"
    assert normalize_key("../up/x.png") == "__/up/x.png"
