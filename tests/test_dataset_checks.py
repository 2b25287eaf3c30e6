"""Tests for yolo_lightning.dataset_checks (data.yaml, label and image checks) and the splits prepare_data checks."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import matplotlib

# Ultralytics reads these at import time; the font stops check_font() from reaching the network.
_CONFIG_DIR = Path(os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-lightning-cfg-")))
os.environ.setdefault("YOLO_OFFLINE", "1")
for _font in (_CONFIG_DIR / "Arial.ttf", _CONFIG_DIR / "Ultralytics" / "Arial.ttf"):
    if not _font.exists():
        _font.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", _font)

import cv2  # noqa: E402
import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from lightning.pytorch.trainer.states import TrainerFn  # noqa: E402
from ultralytics.data.utils import verify_image_label  # noqa: E402

from yolo_lightning import YOLODataModule, dataset_checks  # noqa: E402
from yolo_lightning.dataset_checks import (  # noqa: E402
    DatasetError,
    LabelProblem,
    count_images,
    find_label_problems,
    load_data_config,
    missing_labels_message,
    report_label_problems,
    unusable_images,
)

GOOD_YAML = "path: {root}\ntrain: images/train\nval: images/val\nnames:\n  - red\n  - blue\n"


def _image(path: Path) -> Path:
    """Write a 32x32 black PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.zeros((32, 32, 3), np.uint8))
    return path


def _label(image: Path, text: str) -> Path:
    """Write the YOLO label file that Ultralytics pairs with an image under .../images/...."""
    path = Path(str(image).replace(f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}")).with_suffix(".txt")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A tiny valid dataset: 2 train and 1 val image with labels; returns its root."""
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            _label(_image(tmp_path / "images" / split / f"im{i}.png"), "0 0.5 0.5 0.2 0.2\n")
    return tmp_path


def _write_yaml(dataset: Path, text: str, name: str = "data.yaml") -> Path:
    path = dataset / name
    path.write_text(text.replace("{root}", str(dataset)))
    return path


def _load_error(yaml_path: Path | str) -> str:
    with pytest.raises(DatasetError) as info:
        load_data_config(yaml_path)
    return str(info.value)


# --- load_data_config: good input -----------------------------------------------------------------


def test_good_yaml_returns_resolved_dict(dataset: Path) -> None:
    cfg = load_data_config(_write_yaml(dataset, GOOD_YAML))
    assert cfg["nc"] == 2
    assert cfg["names"] == {0: "red", 1: "blue"}
    assert cfg["train"] == str(dataset / "images" / "train")
    assert cfg["val"] == str(dataset / "images" / "val")


def test_good_yaml_without_path_key_uses_yaml_folder_txt_list_and_folder_list(dataset: Path) -> None:
    (dataset / "train.txt").write_text("./images/train/im0.png\n./images/train/im1.png\n")
    text = "train: train.txt\nval: [images/val, images/train]\nnc: 2\n"
    cfg = load_data_config(_write_yaml(dataset, text))
    assert cfg["nc"] == 2 and cfg["train"] == str(dataset / "train.txt")
    assert cfg["val"] == [str(dataset / "images" / "val"), str(dataset / "images" / "train")]


def test_validation_key_is_accepted_as_val(dataset: Path) -> None:
    text = "train: images/train\nvalidation: images/val\nnames: {0: red}\n"
    assert load_data_config(_write_yaml(dataset, text))["val"] == str(dataset / "images" / "val")


# --- load_data_config: one error per bad input -------------------------------------------------------


def test_missing_file_names_path(tmp_path: Path) -> None:
    msg = _load_error(tmp_path / "nope.yaml")
    assert "not found" in msg and str(tmp_path / "nope.yaml") in msg


def test_missing_non_yaml_file_says_not_yaml(tmp_path: Path) -> None:
    msg = _load_error(tmp_path / "data.json")
    assert str(tmp_path / "data.json") in msg and ".yaml" in msg


def test_existing_non_yaml_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("train: x\n")
    msg = _load_error(path)
    assert str(path) in msg and "not a .yaml" in msg


def test_directory_is_rejected(tmp_path: Path) -> None:
    assert "is a directory" in _load_error(tmp_path)


def test_yaml_syntax_error_names_file_and_line(dataset: Path) -> None:
    path = _write_yaml(dataset, "train: images/train\nval: images/val\nnames: [red, blue\nnc: 2\n")
    msg = _load_error(path)
    assert f"{path}:4:" in msg and "YAML syntax error" in msg


def test_top_level_not_mapping(dataset: Path) -> None:
    path = _write_yaml(dataset, "- images/train\n- images/val\n")
    msg = _load_error(path)
    assert str(path) in msg and "mapping" in msg and "list" in msg


def test_empty_yaml(dataset: Path) -> None:
    path = _write_yaml(dataset, "# nothing here\n")
    msg = _load_error(path)
    assert str(path) in msg and "empty" in msg


def test_no_names_and_no_nc(dataset: Path) -> None:
    path = _write_yaml(dataset, "train: images/train\nval: images/val\n")
    msg = _load_error(path)
    assert str(path) in msg and "'names'" in msg and "'nc'" in msg


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ("names: red", "must be a list or a mapping"),
        ("names:\n  - red\n  - [blue]", "class name #1"),
        ("names:\n  - red\n  - no", "class name #1 is False"),  # YAML 1.1 reads a bare `no` as a boolean
        ("names: {0: red, 2: blue}", "keys must be the class ids 0..1"),
        ("names: []", "'names' is empty"),
    ],
)
def test_malformed_names_names_key_and_line(dataset: Path, names: str, expected: str) -> None:
    path = _write_yaml(dataset, f"train: images/train\nval: images/val\n{names}\n")
    msg = _load_error(path)
    assert f"{path}:3:" in msg and expected in msg


def test_nc_not_matching_names(dataset: Path) -> None:
    path = _write_yaml(dataset, "train: images/train\nval: images/val\nnames: [red, blue]\nnc: 3\n")
    msg = _load_error(path)
    assert f"{path}:4:" in msg and "'nc: 3'" in msg and "2 entries of 'names'" in msg


@pytest.mark.parametrize(("nc", "expected"), [("0", "at least 1"), ("2.5", "must be an integer"), ("x", "integer")])
def test_bad_nc(dataset: Path, nc: str, expected: str) -> None:
    path = _write_yaml(dataset, f"train: images/train\nval: images/val\nnc: {nc}\n")
    msg = _load_error(path)
    assert f"{path}:3:" in msg and f"'nc: {nc}'" in msg and expected in msg


@pytest.mark.parametrize("missing", ["train", "val"])
def test_missing_split_key(dataset: Path, missing: str) -> None:
    lines = {"train": "train: images/train\n", "val": "val: images/val\n"}
    path = _write_yaml(dataset, "".join(v for k, v in lines.items() if k != missing) + "names: [red]\n")
    msg = _load_error(path)
    assert str(path) in msg and f"missing '{missing}:' key" in msg


def test_empty_split_value(dataset: Path) -> None:
    path = _write_yaml(dataset, "train: images/train\nval:\nnames: [red]\n")
    msg = _load_error(path)
    assert f"{path}:2:" in msg and "'val' must be a non-empty path" in msg


def test_missing_split_folder_names_key_resolved_path_and_yaml(dataset: Path) -> None:
    path = _write_yaml(dataset, GOOD_YAML.replace("images/val", "images/valid"))
    msg = _load_error(path)
    assert f"{path}:3:" in msg and "'val' path not found" in msg and str(dataset / "images" / "valid") in msg


def test_missing_folder_in_split_list(dataset: Path) -> None:
    path = _write_yaml(dataset, "train: [images/train, images/extra]\nval: images/val\nnames: [red]\n")
    msg = _load_error(path)
    assert f"{path}:1:" in msg and str(dataset / "images" / "extra") in msg


def test_relative_missing_path_key_mentions_datasets_dir(dataset: Path) -> None:
    path = _write_yaml(dataset, "path: no-such-root-xyz\ntrain: images/train\nval: images/val\nnames: [red]\n")
    msg = _load_error(path)
    expected = dataset_checks.DATASETS_DIR.resolve() / "no-such-root-xyz" / "images" / "train"
    assert f"{path}:2:" in msg and str(expected) in msg and "datasets_dir" in msg


def test_split_without_images(dataset: Path) -> None:
    (dataset / "images" / "empty").mkdir()
    (dataset / "images" / "empty" / "notes.txt").write_text("no images here")
    path = _write_yaml(dataset, GOOD_YAML.replace("images/val", "images/empty"))
    msg = _load_error(path)
    assert f"{path}:3:" in msg and "'val' has no images" in msg and str(dataset / "images" / "empty") in msg


def test_download_key_never_downloads(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> dict:
        raise AssertionError("check_det_dataset must not be reached")

    monkeypatch.setattr(dataset_checks, "check_det_dataset", fail)
    text = GOOD_YAML.replace("images/val", "images/missing") + "download: https://example.com/data.zip\n"
    msg = _load_error(_write_yaml(dataset, text))
    assert "'val' path not found" in msg and "download" in msg


def test_remaining_ultralytics_error_is_wrapped(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> dict:
        raise RuntimeError("boom")

    monkeypatch.setattr(dataset_checks, "check_det_dataset", fail)
    path = _write_yaml(dataset, GOOD_YAML)
    with pytest.raises(DatasetError) as info:
        load_data_config(path)
    assert str(path) in str(info.value) and "boom" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


# --- label checks ---------------------------------------------------------------------------------


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """An images/train folder with three images: one clean, one background, one with an empty label."""
    folder = tmp_path / "images" / "train"
    _label(_image(folder / "clean.png"), "0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.1 0.1\n")
    _image(folder / "background.png")  # no label file
    _label(_image(folder / "empty.png"), "")
    return folder


def _add(image_dir: Path, name: str, text: str) -> Path:
    return _label(_image(image_dir / f"{name}.png"), text)


def test_clean_set_has_no_problems(image_dir: Path) -> None:
    _add(image_dir, "polygon", "1 0.1 0.1 0.9 0.1 0.9 0.9\n0 0.2 0.2 0.3 0.2 0.3 0.3 0.2 0.3\n")
    _add(image_dir, "tolerance", "\n0 1.005 0.5 0.01 0.0\n1 -0.005 0.5 0.1 0.1\n")
    assert find_label_problems(image_dir, nc=2) == []
    assert count_images(image_dir) == 5


def test_class_id_out_of_range(image_dir: Path) -> None:
    bad = _add(image_dir, "bad", "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    assert find_label_problems(image_dir, nc=3) == [LabelProblem(bad, 2, "class id 7 >= nc=3")]


def test_non_normalized_coordinate(image_dir: Path) -> None:
    bad = _add(image_dir, "bad", "1 0.5 1.42 0.2 0.2\n")
    assert find_label_problems(image_dir, nc=2) == [LabelProblem(bad, 1, "coordinates not normalized (1.42 > 1)")]


def test_wrong_column_count_counts_blank_lines(image_dir: Path) -> None:
    bad = _add(image_dir, "bad", "0 0.5 0.5 0.2 0.2\n\n0 0.5 0.5\n")
    assert find_label_problems(image_dir, nc=2) == [LabelProblem(bad, 3, "expected 5 columns, got 3")]


def test_non_numeric(image_dir: Path) -> None:
    bad = _add(image_dir, "bad", "0 0.5 0.5 0.2 0.2\n0 0.5 abc 0.2 0.2\n")
    assert find_label_problems(image_dir, nc=2) == [LabelProblem(bad, 2, "column 3 is not a number: 'abc'")]


def test_every_bad_line_of_every_file_is_listed(image_dir: Path) -> None:
    a = _add(image_dir, "a", "5 0.5 0.5 0.2 0.2\n0 0.5 0.5 -0.2 0.2\n")
    b = _add(image_dir, "b", "0.5 0.5 0.5 0.2 0.2\n")
    problems = find_label_problems(image_dir, nc=2)
    assert [(p.file, p.line) for p in problems] == [(a, 1), (a, 2), (b, 1)]
    assert problems[1].reason == "negative width/height (-0.2)"
    assert problems[2].reason == "class id 0.5 is not an integer"


def test_txt_list_and_folder_list_sources(image_dir: Path) -> None:
    bad = _add(image_dir, "bad", "9 0.5 0.5 0.2 0.2\n")
    listing = image_dir.parent.parent / "train.txt"
    listing.write_text("./images/train/bad.png\n./images/train/clean.png\n")
    assert [p.file for p in find_label_problems(listing, nc=2)] == [bad]
    assert [p.file for p in find_label_problems([image_dir, str(image_dir)], nc=2)] == [bad]
    assert count_images(listing) == 2


def test_missing_image_source_raises(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="image source not found"):
        find_label_problems(tmp_path / "nope", nc=1)


@pytest.mark.parametrize(
    "text",
    [
        "0 0.5 0.5 0.2 0.2",
        "2 0.5 0.5 0.2 0.2",
        "-1 0.5 0.5 0.2 0.2",
        "0 0.5 0.5 0.2",
        "0 0.5 0.5 0.2 0.2 0.9",
        "0 1.011 0.5 0.2 0.2",
        "0 1.009 0.5 0.2 0.2",
        "0 -0.011 0.5 0.2 0.2",
        "0 -0.009 0.5 0.2 0.2",
        "0 0.5 0.5 -0.001 0.2",
        "0 0.5 0.5 0 0",
        "0 nan 0.5 0.2 0.2",
        "0 0.5 0.5 0.2 x",
        "1.0 0.5 0.5 0.2 0.2",
        "0 0.1 0.1 0.9 0.1 0.9 0.9",
        "0 0.1 0.1 0.9 0.1 0.9 0.9\n0 0.5 0.5 0.2 0.2",
        "0 0.1 0.1 0.9 0.1 0.9 0.9\n0 0.5 0.5",
        "0 0.1 0.1 0.9 0.1 0.9 0.9\n0 0.5 0.5 0.2",
        "0 0.1 0.1 1.5 0.1 0.9 0.9 0.1",
        "0 -0.5 0.1 0.6 0.1 0.6 0.9",
        "0 -0.5 0.1 0.4 0.1 0.4 0.9",
    ],
)
def test_agrees_with_ultralytics_verify_image_label(tmp_path: Path, text: str) -> None:
    image = _image(tmp_path / "images" / "im.png")
    label = _label(image, text + "\n")
    result = verify_image_label((str(image), str(label), "", False, 2, 0, 0, False))
    ultralytics_rejects = result[8] == 1
    assert bool(find_label_problems(image.parent, nc=2)) == ultralytics_rejects, result[9]


# --- report ----------------------------------------------------------------------------------------


def test_report_states_counts_and_lists_lines(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    problems = [LabelProblem(a, 1, "class id 7 >= nc=3"), LabelProblem(a, 4, "x"), LabelProblem(b, 2, "y")]
    report = report_label_problems(problems, "train")
    assert report.splitlines()[0].startswith("3 invalid labels in 2 files of split 'train'")
    assert f"{a}:1: class id 7 >= nc=3" in report and f"{b}:2: y" in report


def test_report_truncates_and_handles_singular_and_empty(tmp_path: Path) -> None:
    problems = [LabelProblem(tmp_path / "a.txt", i, "bad") for i in range(1, 6)]
    report = report_label_problems(problems, "val", max_listed=2)
    assert report.startswith("5 invalid labels in 1 file of split 'val'")
    assert len(report.splitlines()) == 4 and report.endswith("... and 3 more")
    assert report_label_problems([], "val") == "No invalid labels in split 'val'."


# --- splits checked per Trainer function ------------------------------------------------------------


def test_bad_test_path_names_the_test_key(dataset: Path) -> None:
    path = _write_yaml(dataset, GOOD_YAML + "test: images/nope\n")
    msg = _load_error(path)
    assert f"{path}:7:" in msg and "'test' path not found" in msg and str(dataset / "images" / "nope") in msg


def test_only_the_requested_splits_are_checked(dataset: Path) -> None:
    path = _write_yaml(dataset, "path: {root}\ntrain: images/nope\nval: images/gone\ntest: images/val\nnc: 2\n")
    assert load_data_config(path, ("test",))["test"] == str(dataset / "images" / "val")
    assert "'train' path not found" in _load_error(path)
    with pytest.raises(DatasetError, match="'val' path not found"):
        load_data_config(path, ("val",))


def test_testing_without_test_key(dataset: Path) -> None:
    path = _write_yaml(dataset, GOOD_YAML)
    with pytest.raises(DatasetError, match=r"no 'test:' split to test on.*use validate instead"):
        load_data_config(path, ("test",))


def _datamodule(data_yaml: Path, fn: TrainerFn | None) -> YOLODataModule:
    """A datamodule attached to a Trainer running ``fn`` (as Lightning sets it before prepare_data)."""
    datamodule = YOLODataModule(data=str(data_yaml), imgsz=64, batch=2, workers=0)
    if fn is not None:
        datamodule.trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
        datamodule.trainer.state.fn = fn
    return datamodule


def test_bad_test_path_fails_only_runs_that_test(dataset: Path) -> None:
    path = _write_yaml(dataset, GOOD_YAML + "test: images/nope\n")
    for fn in (TrainerFn.FITTING, TrainerFn.VALIDATING, TrainerFn.PREDICTING):
        datamodule = _datamodule(path, fn)
        datamodule.prepare_data()
        datamodule.setup(fn.value)
    for fn in (TrainerFn.TESTING, None):
        with pytest.raises(DatasetError, match=r"data.yaml:7: 'test' path not found: .*images/nope"):
            _datamodule(path, fn).prepare_data()
    with pytest.raises(DatasetError, match="'test' path not found"):
        _datamodule(path, None).setup("test")


def test_validating_does_not_need_the_train_split(dataset: Path) -> None:
    path = _write_yaml(dataset, GOOD_YAML.replace("images/train", "images/nope"))
    datamodule = _datamodule(path, TrainerFn.VALIDATING)
    datamodule.prepare_data()
    datamodule.setup("validate")
    assert len(datamodule.val_dataset) == 1
    with pytest.raises(DatasetError, match="'train' path not found"):
        _datamodule(path, TrainerFn.FITTING).prepare_data()


# --- splits without label files ---------------------------------------------------------------------


def test_train_split_without_labels_names_the_labels_folder(dataset: Path) -> None:
    shutil.rmtree(dataset / "labels" / "train")
    with pytest.raises(DatasetError) as info:
        _datamodule(_write_yaml(dataset, GOOD_YAML), None).prepare_data()
    msg = str(info.value)
    assert "none of the 2 images of split 'train' has a label file" in msg
    assert f"in {dataset / 'labels' / 'train'} (missing)" in msg and "class x_center y_center width height" in msg
    assert ".cache" not in msg


def test_val_split_without_labels_warns_unless_predicting(dataset: Path) -> None:
    for label in (dataset / "labels" / "val").iterdir():
        label.unlink()  # the folder stays: it is named without "(missing)"
    path = _write_yaml(dataset, GOOD_YAML)
    with pytest.warns(UserWarning, match=rf"split 'val' has a label file: put one .txt file per image in {dataset}"):
        _datamodule(path, TrainerFn.VALIDATING).prepare_data()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _datamodule(path, TrainerFn.PREDICTING).prepare_data()
    assert not [w for w in record if "has a label file" in str(w.message)]  # predict needs no labels


def test_missing_labels_message(image_dir: Path) -> None:
    assert missing_labels_message(image_dir, "train") is None
    other = image_dir.parent.parent / "other" / "pics"
    _image(other / "a.png")
    msg = missing_labels_message([str(other)], "val")
    assert msg is not None and f"in {other} (missing)" not in msg and f"in {other}," in msg
    assert f"labels of {other / 'a.png'} from {other / 'a.txt'}" in msg


# --- unreadable images --------------------------------------------------------------------------------


def _corrupt_images(folder: Path) -> list[Path]:
    """Write a .jpg of random bytes and a PNG cut inside its header, each with a valid label; return them."""
    noise = _image(folder / "noise.jpg")
    noise.write_bytes(np.random.default_rng(0).bytes(256))
    truncated = _image(folder / "truncated.png")
    truncated.write_bytes(truncated.read_bytes()[:12])
    for image in (noise, truncated):
        _label(image, "0 0.5 0.5 0.2 0.2\n")
    return [noise, truncated]


def test_unusable_images_gives_pil_errors(tmp_path: Path) -> None:
    noise, truncated = _corrupt_images(tmp_path / "images")
    tiny = tmp_path / "images" / "tiny.png"
    assert cv2.imwrite(str(tiny), np.zeros((5, 5, 3), np.uint8))
    good = _image(tmp_path / "images" / "good.png")
    reasons = unusable_images([str(p) for p in (noise, truncated, tiny, good)])
    assert reasons == {
        str(noise): f"not a readable image (cannot identify image file {str(noise)!r})",
        str(truncated): f"not a readable image (cannot identify image file {str(truncated)!r})",
        str(tiny): "image size (5, 5) <10 pixels",
    }


def test_unreadable_images_are_reported_once_with_the_pil_error(
    dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corrupt = _corrupt_images(dataset / "images" / "train")
    opened: list[str] = []

    def counting_open(path: str) -> object:
        opened.append(path)
        return pil_open(path)

    pil_open = dataset_checks._pil_open
    monkeypatch.setattr(dataset_checks, "_pil_open", counting_open)
    path = _write_yaml(dataset, GOOD_YAML)
    for _ in range(2):  # the second run reads Ultralytics' label cache
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            _datamodule(path, TrainerFn.FITTING).prepare_data()
        skipped = sorted(str(w.message) for w in record if ": skipped, " in str(w.message))
        expected = [f"{p}: skipped, not a readable image (cannot identify image file {str(p)!r})" for p in corrupt]
        assert skipped == expected  # once per file, with PIL's error rather than "No module named 'pi_heif'"
        assert sorted(opened) == [str(p) for p in corrupt]  # only the images Ultralytics skipped are opened again
        opened.clear()


def test_split_of_unreadable_images_is_an_error(dataset: Path) -> None:
    shutil.rmtree(dataset / "images" / "val")
    shutil.rmtree(dataset / "labels" / "val")
    noise, truncated = _corrupt_images(dataset / "images" / "val")
    with pytest.raises(DatasetError) as info:
        _datamodule(_write_yaml(dataset, GOOD_YAML), TrainerFn.VALIDATING).prepare_data()
    msg = str(info.value)
    assert msg.startswith("every image of the 'val' split is unusable: ")
    assert f"{noise}: not a readable image (cannot identify" in msg and f"{truncated}: not a readable image" in msg


# --- .txt image lists ---------------------------------------------------------------------------------


def test_missing_list_entry_is_an_error_before_any_cache_is_written(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for split in ("train", "val"):
        _label(_image(root / "images" / split / "im0.png"), "0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "a_outside").mkdir()  # sorts first: Ultralytics would name its cache after it, outside the dataset
    missing = tmp_path / "a_outside" / "missing" / "a.jpg"
    listing = root / "train.txt"
    listing.write_text(f"\n./images/train/im0.png\n{missing}\n")
    path = _write_yaml(root, "train: train.txt\nval: images/val\nnames: [red]\n")
    with pytest.raises(DatasetError) as info:
        _datamodule(path, TrainerFn.FITTING).prepare_data()
    assert str(info.value).startswith(f"{listing}:3: no such image file: {missing} (listed by 'train')")
    assert list(tmp_path.rglob("*.cache")) == []


def test_relative_list_entry_hint(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (dataset / "train.txt").write_text("images/train/im0.png\n")
    monkeypatch.chdir(dataset / "images")
    msg = _load_error(_write_yaml(dataset, GOOD_YAML.replace("images/train", "train.txt")))
    assert f"{dataset / 'train.txt'}:1: no such image file: images/train/im0.png" in msg
    assert f"relative to the current directory {dataset / 'images'}" in msg and "start it with './'" in msg
