"""Never write invalid JSON: NaN and infinity are refused (``write_json``, ``data convert``) with one line that names
the file (the input for ``data convert``) and the key. Python's ``json`` reads the bare ``NaN`` these inputs hold;
strict readers (``jq``, browsers, ``JSON.parse``) do not, which is why it must not reach an output."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from visionkit.atomic import write_json
from visionkit.errors import InputError


def test_write_json_refuses_nan_and_infinity_naming_the_key(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(InputError, match=r"out.json: refusing to write nan at rows\[1\]\.loss: JSON has no NaN"):
        write_json(target, {"rows": [{"loss": 1.0}, {"loss": float("nan")}]})
    with pytest.raises(InputError, match=r"at the top level"):
        write_json(target, float("-inf"))
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file
    write_json(target, {"ok": [1.5, None]})
    assert json.loads(target.read_text()) == {"ok": [1.5, None]}


def _coco(folder, area: str, bbox: str) -> None:
    Image.new("RGB", (40, 30)).save(folder / "a.jpg")
    (folder / "gt.json").write_text(
        '{"images": [{"id": 7, "file_name": "a.jpg", "width": 40, "height": 30}], "annotations": [{"id": 1, '
        f'"image_id": 7, "category_id": 1, "bbox": {bbox}, "area": {area}, "iscrowd": 0}}], '
        '"categories": [{"id": 1, "name": "thing"}]}')


def test_data_convert_refuses_a_nan_area_naming_input_image_and_key(cli, tmp_path):
    _coco(tmp_path, "NaN", "[1, 2, 10, 10]")
    result = cli("data", "convert", tmp_path / "gt.json", tmp_path / "out" / "coco.json")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {tmp_path / 'gt.json'}: annotations[0] (image a.jpg): 'area' is nan; "
                                     "COCO JSON cannot hold NaN or infinity: fix or remove that value in the input "
                                     "and convert again")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_data_convert_refuses_a_nan_voc_corner(cli, tmp_path):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    Image.new("RGB", (40, 30)).save(root / "JPEGImages" / "a.jpg")
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>40</width><height>30</height><depth>3</depth></size>"
        "<object><name>x</name><difficult>0</difficult><bndbox><xmin>nan</xmin><ymin>1</ymin><xmax>10</xmax>"
        "<ymax>10</ymax></bndbox></object></annotation>")
    result = cli("data", "convert", root, tmp_path / "coco.json")
    assert result.exit_code == 1 and not (tmp_path / "coco.json").exists()
    [line] = result.stderr.strip().splitlines()
    assert str(root) in line and "a.jpg" in line and "'bbox[0]' is nan" in line


def test_data_convert_of_finite_values_is_strict_json(cli, tmp_path):
    _coco(tmp_path, "100", "[1, 2, 10, 10]")
    result = cli("data", "convert", tmp_path / "gt.json", tmp_path / "coco.json")
    assert result.exit_code == 0, result.output
    json.loads((tmp_path / "coco.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in the JSON"))
