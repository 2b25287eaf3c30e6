"""Task-aware data checks (segment, pose, obb, classify), each checked against what Ultralytics' own loading does.

Broken copies of the synthetic dataset of each task; dataset_checks' functions are called directly (no datamodule).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from ultralytics.cfg import get_cfg
from ultralytics.data.augment import RandomFlip
from ultralytics.data.build import build_yolo_dataset
from ultralytics.data.utils import verify_image_label

from yolo_lightning import dataset_checks
from yolo_lightning.dataset_checks import (
    ConfigurationError,
    DatasetError,
    LabelProblem,
    check_task_data,
    count_images,
    find_label_problems,
    load_classification_config,
    load_data_config,
    report_label_problems,
)
from yolo_lightning.synthetic import SYNTHETIC_TASKS, synthetic_data

YOLO_TASKS = ("detect", "segment", "pose", "obb")
KPT = [4, 3]  # the synthetic pose dataset's kpt_shape
POSE_COLUMNS = (
    "expected 17 columns for kpt_shape [4, 3] (class x y w h, then x y visibility of each of the 4 keypoints)"
)


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The valid synthetic dataset of every task (8 train / 4 val images): data.yaml, or the classify folder."""
    root = tmp_path_factory.mktemp("synthetic")
    return {task: synthetic_data(task, root, n_train=8, n_val=4) for task in SYNTHETIC_TASKS}


def _copy(originals: dict[str, Path], task: str, tmp_path: Path) -> Path:
    """A copy of a task's synthetic dataset to break: its data.yaml (its 'path' points at the copy) or its folder."""
    source = originals[task]
    target = tmp_path / task
    shutil.copytree(source if task == "classify" else source.parent, target)
    if task == "classify":
        return target
    _edit_yaml(target / "data.yaml", path=str(target))
    return target / "data.yaml"


def _edit_yaml(data_yaml: Path, /, **changes: object) -> Path:
    """Set (None: remove) top-level keys of a data.yaml, keeping the key order."""
    data = yaml.safe_load(data_yaml.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_yaml


def _line(path: Path, key: str) -> str:
    """'file:line' of a top-level key of a YAML file."""
    lines = path.read_text().splitlines()
    return f"{path}:{next(i for i, line in enumerate(lines, 1) if line.startswith(f'{key}:'))}"


def _config(data_yaml: Path) -> dict:
    return load_data_config(data_yaml)


def _problems(data_yaml: Path, task: str, split: str = "train", kpt_shape: list[int] | None = None) -> list:
    config = _config(data_yaml)
    return find_label_problems(config[split], config["nc"], task, kpt_shape or config.get("kpt_shape"))


def _label_files(data_yaml: Path, split: str = "train") -> list[Path]:
    return sorted((data_yaml.parent / "labels" / split).glob("*.txt"))


def _first_labelled(data_yaml: Path) -> Path:
    """The first train label file with at least one row."""
    return next(f for f in _label_files(data_yaml) if f.read_text().strip())


def _replace_first_row(label: Path, row: str) -> None:
    lines = label.read_text().splitlines()
    label.write_text("\n".join([row, *lines[1:]]) + "\n")


# --- the valid synthetic dataset of every task ------------------------------------------------------------


@pytest.mark.parametrize("task", YOLO_TASKS)
def test_valid_synthetic_dataset_has_no_problems(originals: dict[str, Path], task: str) -> None:
    config = _config(originals[task])
    assert check_task_data(config, task, config["yaml_file"]) == []
    for split in ("train", "val"):
        assert find_label_problems(config[split], config["nc"], task, config.get("kpt_shape")) == []


def test_valid_synthetic_classify_folder(originals: dict[str, Path]) -> None:
    folder = originals["classify"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = load_classification_config(folder, ("train", "val"))
    assert config["train"] == str(folder.resolve() / "train") and config["val"] == str(folder.resolve() / "val")
    assert config["names"] == {0: "circle", 1: "square", 2: "star", 3: "triangle"} and config["nc"] == 4


# --- rows: exactly what Ultralytics' verify_image_label skips, per task -------------------------------------

POSE_ROW = "0 0.5 0.5 0.2 0.2 0.4 0.4 2 0.6 0.6 1"
AGREEMENT_CASES = [
    # pose, kpt_shape [2, 3]
    ("pose", [2, 3], POSE_ROW),
    ("pose", [2, 3], "0 0.5 0.5 0.2 0.2 0 0 0 0.6 0.6 1"),  # an unlabelled keypoint
    ("pose", [2, 3], "0 0.5 0.5 0.2 0.2 0.4 0.4 2 0.6 0.6"),  # 10 columns
    ("pose", [2, 3], "0 0.5 0.5 0.2 0.2"),  # a detect row
    ("pose", [2, 3], "0 0.5 0.5 0.2 0.2 1.02 0.4 2 0.6 0.6 1"),
    ("pose", [2, 3], "0 0.5 0.5 0.2 0.2 1.009 0.4 2 0.6 0.6 1"),
    ("pose", [2, 3], "0 0.5 0.5 0.2 0.2 0.4 0.4 1.5 0.6 0.6 1"),  # a visibility of 1.5: loaded
    ("pose", [2, 3], "0 0.5 0.5 0.2 0.2 0.4 0.4 3 0.6 0.6 1"),  # loaded
    ("pose", [2, 3], "0 0.5 0.5 0.2 0.2 0.4 0.4 -0.02 0.6 0.6 1"),
    ("pose", [2, 3], "0 0.5 0.5 0.2 0.2 -0.02 0.4 2 0.6 0.6 1"),
    ("pose", [2, 3], "0 0.5 0.5 0.2 0.2 -0.005 0.4 2 0.6 0.6 1"),
    ("pose", [2, 3], "0 1.5 0.5 0.2 0.2 0.4 0.4 2 0.6 0.6 1"),  # pose boxes are not checked: loaded
    ("pose", [2, 3], "0 0.5 0.5 1.5 0.2 0.4 0.4 2 0.6 0.6 1"),
    ("pose", [2, 3], "0 0.5 0.5 -0.001 0.2 0.4 0.4 2 0.6 0.6 1"),
    ("pose", [2, 3], "0 -0.005 0.5 0.2 0.2 0.4 0.4 2 0.6 0.6 1"),
    ("pose", [2, 3], "2 0.5 0.5 0.2 0.2 0.4 0.4 2 0.6 0.6 1"),
    ("pose", [2, 3], "0.5 0.5 0.5 0.2 0.2 0.4 0.4 2 0.6 0.6 1"),
    ("pose", [2, 3], "0 0.5 0.5 0.2 0.2 nan 0.4 2 0.6 0.6 1"),
    ("pose", [2, 3], "0 0.5 0.5 0.2 0.2 0.4 0.4 2 0.6 x 1"),
    ("pose", [2, 3], f"{POSE_ROW}\n0 0.5 0.5 0.2 0.2"),  # ragged rows
    # pose, kpt_shape [2, 2]: a negative x or y (down to -0.01) marks a missing keypoint
    ("pose", [2, 2], "0 0.5 0.5 0.2 0.2 0.4 0.4 0.6 0.6"),
    ("pose", [2, 2], "0 0.5 0.5 0.2 0.2 -0.005 0.4 0.6 0.6"),
    ("pose", [2, 2], "0 0.5 0.5 0.2 0.2 0 0 0.6 0.6"),  # (0, 0) is a visible keypoint: loaded
    ("pose", [2, 2], POSE_ROW),  # a [2, 3] row
    # obb: polygons (reduced to their minimum-area rectangle); a file of box rows passes here, refused as a split
    ("obb", None, "0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5"),
    ("obb", None, "0 0.1 0.1 0.5 0.1 0.5 0.5"),  # a triangle: loaded
    ("obb", None, "0 -0.3 0.1 0.5 0.1 0.5 0.9 -0.3 0.9"),  # a corner outside: loaded
    ("obb", None, "0 0.1 0.1 1.5 0.1 1.5 0.5 0.1 0.5"),
    ("obb", None, "0 0.1 0.1 0.5 0.1 0.5 0.5 0.1"),
    ("obb", None, "0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n0 0.5 0.5 0.2 0.2"),
    ("obb", None, "0 0.5 0.5 0.2 0.2"),
    ("obb", None, "3 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5"),
    # segment: read like detect
    ("segment", None, "0 0.1 0.1 0.9 0.1 0.9 0.9"),
    ("segment", None, "0 0.1 0.1 0.9 0.1 0.9 0.9\n1 0.5 0.5 0.2 0.2"),
    ("segment", None, "0 0.1 0.1 0.9 0.1 0.9"),
    ("segment", None, "0 0.5 0.5 0.2 0.2"),
    # detect and segment with a kpt_shape: Ultralytics keeps the box of a pose row
    ("detect", [2, 3], POSE_ROW),
    ("detect", [2, 3], "0 1.5 0.5 0.2 0.2 0.4 0.4 2 0.6 0.6 1"),
    ("segment", [2, 3], f"{POSE_ROW}\n0 0.1 0.1 0.9 0.1 0.9 0.9"),
    ("detect", None, POSE_ROW),  # without it, a polygon whose visibilities are coordinates > 1
]


@pytest.mark.parametrize(("task", "kpt_shape", "text"), AGREEMENT_CASES)
def test_skipped_lines_agree_with_ultralytics_verify_image_label(
    tmp_path: Path, task: str, kpt_shape: list[int] | None, text: str
) -> None:
    image = tmp_path / "images" / "im.png"
    image.parent.mkdir(parents=True)
    assert cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    label = tmp_path / "labels" / "im.txt"
    label.parent.mkdir()
    label.write_text(text + "\n")
    nkpt, ndim = kpt_shape or (0, 0)
    result = verify_image_label((str(image), str(label), "", task == "pose", 2, nkpt, ndim, False))
    try:
        problems = find_label_problems(image.parent, nc=2, task=task, kpt_shape=kpt_shape)
    except DatasetError:  # box rows only: each file passes verify_image_label, the split is refused (verify_labels)
        assert task in {"segment", "obb"} and result[8] == 0 and len(result[1]) and not result[3]
        return
    assert any(p.skipped for p in problems) == (result[8] == 1), (problems, result[9])


# --- pose rows ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "reason", "skipped"),
    [
        ("0 0.5 0.5 0.2 0.2", f"{POSE_COLUMNS}, got 5: a box row without keypoints", True),
        ("0 0.5 0.5 0.2 0.2 0.4 0.4 2", f"{POSE_COLUMNS}, got 8", True),
        ("0 0.5 0.5 0.2 0.2 " + "0.4 0.4 2 " * 3 + "0.4 1.5 2", "keypoint 3 y not normalized (1.5 > 1)", True),
        ("0 0.5 0.5 0.2 0.2 " + "0.4 0.4 2 " * 3 + "0.4 0.4 -0.5", "negative keypoint 3 visibility (-0.5)", True),
        ("9 0.5 0.5 0.2 0.2 " + "0.4 0.4 2 " * 4, "class id 9 >= nc=4", True),
        (
            "0 0.5 0.5 0.2 0.2 0.4 0.4 2 0.4 0.4 3 0.4 0.4 2 0.4 0.4 2",
            "keypoint 1 visibility 3 is not 0, 1 or 2 (Ultralytics trains any non-zero visibility as a labelled "
            "keypoint)",
            False,
        ),
        (
            "0 1.4 0.5 0.2 0.2 " + "0.4 0.4 2 " * 4,
            "box not normalized (1.4 > 1); Ultralytics does not check pose boxes and trains on it",
            False,
        ),
    ],
)
def test_pose_row_reasons(originals: dict[str, Path], tmp_path: Path, row: str, reason: str, skipped: bool) -> None:
    data_yaml = _copy(originals, "pose", tmp_path)
    label = _first_labelled(data_yaml)
    _replace_first_row(label, row)
    assert _problems(data_yaml, "pose") == [LabelProblem(label, 1, reason, skipped)]


def test_pose_keypoint_at_origin_with_two_dims(originals: dict[str, Path], tmp_path: Path) -> None:
    data_yaml = _copy(originals, "pose", tmp_path)
    _edit_yaml(data_yaml, kpt_shape=[4, 2])
    for other in _label_files(data_yaml):
        other.write_text("")
    label = data_yaml.parent / "labels" / "train" / "00000.txt"
    label.write_text("0 0.5 0.5 0.2 0.2 0.4 0.4 0 0 0.6 0.6 -0.005 0.5\n")
    (problem,) = _problems(data_yaml, "pose")
    assert (problem.file, problem.line, problem.skipped) == (label, 1, False)
    assert problem.reason.startswith("keypoint 1 at (0, 0) is trained as a visible keypoint")
    assert "only a negative x or y (down to -0.01) marks a missing keypoint" in problem.reason


def test_pose_without_kpt_shape_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match=r"pose labels need kpt_shape \[nkpt, ndim\].*got None"):
        find_label_problems(tmp_path / "images", nc=1, task="pose")
    with pytest.raises(DatasetError, match=r"got \[4, 4\]"):
        find_label_problems(tmp_path / "images", nc=1, task="pose", kpt_shape=[4, 4])


# --- a dataset of the wrong kind --------------------------------------------------------------------------


def test_detect_dataset_to_segment_is_one_error(originals: dict[str, Path], tmp_path: Path) -> None:
    data_yaml = _copy(originals, "detect", tmp_path)
    with pytest.raises(DatasetError) as info:
        _problems(data_yaml, "segment")
    msg = str(info.value)
    assert msg.startswith(f"the labels of {data_yaml.parent / 'images' / 'train'} have no polygons")
    assert "so this is a detect dataset" in msg and str(_label_files(data_yaml)[0]) in msg
    assert "segment needs polygon rows 'class x1 y1 x2 y2 x3 y3 ...'" in msg and "Train a detect model" in msg


def test_one_box_only_file_in_a_segment_dataset_is_one_error(originals: dict[str, Path], tmp_path: Path) -> None:
    data_yaml = _copy(originals, "segment", tmp_path)
    label = _label_files(data_yaml)[2]
    label.write_text("0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n")
    with pytest.raises(DatasetError) as info:
        _problems(data_yaml, "segment")
    msg = str(info.value)
    assert msg.startswith(f"1 label file of {data_yaml.parent / 'images' / 'train'} holds only box rows")
    assert f"and no polygons: {label};" in msg and "segment needs polygon rows" in msg
    assert "Ultralytics refuses the whole split" in msg
    assert _problems(data_yaml, "detect") == []  # a detect model takes it


def test_detect_and_pose_datasets_to_obb_are_one_error(originals: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"so this is a detect dataset; obb needs rows of 4 corner points 'class x1"):
        _problems(_copy(originals, "detect", tmp_path), "obb")
    pose = _copy(originals, "pose", tmp_path)
    with pytest.raises(DatasetError, match=r"so this is a pose dataset \(Ultralytics reads its rows as their boxes\)"):
        _problems(pose, "obb")
    with pytest.raises(DatasetError, match="Train a pose or detect model on it"):
        _problems(pose, "segment")


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_detect_and_segment_datasets_to_pose_fail_every_line(
    originals: dict[str, Path], tmp_path: Path, task: str
) -> None:
    data_yaml = _copy(originals, task, tmp_path)
    problems = _problems(data_yaml, "pose", kpt_shape=KPT)
    labelled = [f for f in _label_files(data_yaml) if f.read_text().strip()]
    n_rows = sum(len(f.read_text().splitlines()) for f in labelled)
    assert len(problems) == n_rows and all(p.skipped and p.reason.startswith(POSE_COLUMNS) for p in problems)
    assert len({p.file for p in problems}) == count_images(_config(data_yaml)["train"])  # the caller raises
    if task == "detect":
        assert problems[0].reason == f"{POSE_COLUMNS}, got 5: a box row without keypoints"
    report = report_label_problems(problems, "train")
    header = f"{n_rows} invalid labels in {len(labelled)} files of split 'train'; Ultralytics will skip"
    assert report.startswith(header)


def test_segment_dataset_to_obb_names_the_polygons_that_are_not_four_corners(
    originals: dict[str, Path], tmp_path: Path
) -> None:
    data_yaml = _copy(originals, "segment", tmp_path)
    problems = _problems(data_yaml, "obb")
    assert problems and not any(p.skipped for p in problems)
    rows = {(p.file, p.line): p.reason for p in problems}
    for label in _label_files(data_yaml):
        for n, row in enumerate(label.read_text().splitlines(), 1):
            columns = len(row.split())
            if columns == 9:  # a square: 4 corners
                assert (label, n) not in rows
            else:
                assert rows[(label, n)] == (
                    f"expected 9 columns (class + 4 corner points x y), got {columns}: Ultralytics trains on the "
                    f"minimum-area rectangle of this {(columns - 1) // 2}-point polygon"
                )


def test_obb_corner_outside_the_image(originals: dict[str, Path], tmp_path: Path) -> None:
    data_yaml = _copy(originals, "obb", tmp_path)
    label = _first_labelled(data_yaml)
    _replace_first_row(label, "1 0.1 0.1 0.5 0.1 0.5 0.5 -0.3 0.5")
    assert _problems(data_yaml, "obb") == [
        LabelProblem(label, 1, "corner 4 x outside the image (-0.3, normalized 0-1)", skipped=False)
    ]


@pytest.mark.parametrize(
    ("dataset", "task", "refused"),
    [
        ("detect", "segment", True),
        ("detect", "obb", True),
        ("pose", "segment", True),
        ("segment", "obb", False),
        ("obb", "segment", False),
        ("pose", "detect", False),
        ("segment", "detect", False),
    ],
)
def test_refused_splits_agree_with_ultralytics_yolodataset(
    originals: dict[str, Path], tmp_path: Path, dataset: str, task: str, refused: bool
) -> None:
    data_yaml = _copy(originals, dataset, tmp_path)
    config = _config(data_yaml)
    if refused:
        with pytest.raises(DatasetError):
            find_label_problems(config["val"], config["nc"], task, config.get("kpt_shape"))
    else:
        find_label_problems(config["val"], config["nc"], task, config.get("kpt_shape"))
    hyp = get_cfg(overrides={"task": task, "imgsz": 64})
    if refused:
        with pytest.raises(ValueError, match="requires equal numbers of boxes and segments"):
            build_yolo_dataset(hyp, config["val"], 2, config, mode="val")
    else:
        assert len(build_yolo_dataset(hyp, config["val"], 2, config, mode="val")) == 4


def test_label_checks_refuse_classify_and_unknown_tasks(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="use load_classification_config"):
        find_label_problems(tmp_path, nc=2, task="classify")
    with pytest.raises(ConfigurationError, match="depth has no label rows"):
        find_label_problems(tmp_path, nc=2, task="depth")
    with pytest.raises(ConfigurationError, match="unknown task 'panoptic'"):
        find_label_problems(tmp_path, nc=2, task="panoptic")


# --- report: lines Ultralytics loads anyway ---------------------------------------------------------------


def test_report_lists_loaded_lines_in_their_own_section(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    problems = [LabelProblem(a, 1, "class id 7 >= nc=3"), LabelProblem(b, 2, "visibility", skipped=False)]
    assert report_label_problems(problems, "train").splitlines() == [
        "1 invalid label in 1 file of split 'train'; Ultralytics will skip the 1 image of these label files:",
        f"  {a}:1: class id 7 >= nc=3",
        "1 label in 1 file of split 'train' does not fit the task; Ultralytics will train on it as read:",
        f"  {b}:2: visibility",
    ]
    loaded = [LabelProblem(b, i, "x", skipped=False) for i in range(1, 4)]
    report = report_label_problems(loaded, "val", max_listed=2)
    assert report.startswith("3 labels in 1 file of split 'val' do not fit the task; Ultralytics will train on them")
    assert "skip" not in report and report.endswith("... and 1 more")


# --- check_task_data: the data.yaml keys of a task ---------------------------------------------------------


def _task_data_error(data_yaml: Path, task: str = "pose") -> str:
    with pytest.raises(DatasetError) as info:
        check_task_data(_config(data_yaml), task, data_yaml)
    return str(info.value)


def test_pose_without_kpt_shape(originals: dict[str, Path], tmp_path: Path) -> None:
    data_yaml = _edit_yaml(_copy(originals, "pose", tmp_path), kpt_shape=None)
    msg = _task_data_error(data_yaml)
    assert msg.startswith(f"{data_yaml}: pose needs 'kpt_shape: [nkpt, ndim]' in the data.yaml")
    assert check_task_data(_config(data_yaml), "detect", data_yaml) == []  # only pose needs it


@pytest.mark.parametrize(
    ("kpt_shape", "expected"),
    [
        ([17], "must be a list of 2 integers [nkpt, ndim]"),
        ("17, 3", "must be a list of 2 integers"),
        ([4.0, 3], "must be a list of 2 integers"),
        ([True, 3], "must be a list of 2 integers"),
        ([0, 3], "nkpt (the number of keypoints per object) must be at least 1, got 0"),
        ([4, 4], "ndim must be 2 (x y) or 3 (x y visibility), got 4"),
    ],
)
@pytest.mark.parametrize("task", ["pose", "detect"])
def test_malformed_kpt_shape(
    originals: dict[str, Path], tmp_path: Path, task: str, kpt_shape: object, expected: str
) -> None:
    data_yaml = _edit_yaml(_copy(originals, "pose", tmp_path), kpt_shape=kpt_shape)
    msg = _task_data_error(data_yaml, task)
    assert msg.startswith(f"{_line(data_yaml, 'kpt_shape')}: 'kpt_shape: {kpt_shape!r}' {expected}")


def test_pose_without_flip_idx_warns_that_flips_are_off(originals: dict[str, Path], tmp_path: Path) -> None:
    data_yaml = _edit_yaml(_copy(originals, "pose", tmp_path), flip_idx=None)
    config = _config(data_yaml)
    (message,) = check_task_data(config, "pose", data_yaml)
    assert message.startswith(f"{_line(data_yaml, 'kpt_shape')}: no 'flip_idx' in the data.yaml")
    assert "turns off the horizontal (fliplr) and vertical (flipud) flip augmentations" in message
    hyp = get_cfg(overrides={"task": "pose", "imgsz": 64, "fliplr": 0.5, "flipud": 0.5})
    for data, p in ((config, 0.0), (_config(originals["pose"]), 0.5)):  # what Ultralytics does without / with it
        dataset = build_yolo_dataset(hyp, config["train"], 2, data, mode="train")
        assert [t.p for t in dataset.transforms.transforms if isinstance(t, RandomFlip)] == [p, p]


@pytest.mark.parametrize(
    ("flip_idx", "expected"),
    [
        ([0, 3, 2], "'flip_idx' has 3 entries but kpt_shape has 4 keypoints"),
        ([0, 3, 3, 1], "must list each keypoint index 0..3 exactly once (repeated: [3]; missing: [2])"),
        ([0, 3, 2, 4], "must list each keypoint index 0..3 exactly once (out of range: [4]; missing: [1])"),
        ([1, 2, 3, 0], "is not its own inverse: keypoint 0 becomes 1 in a mirrored image but 1 becomes 2"),
        ("0 3 2 1", "must be a list of keypoint indices"),
    ],
)
def test_bad_flip_idx(originals: dict[str, Path], tmp_path: Path, flip_idx: object, expected: str) -> None:
    data_yaml = _edit_yaml(_copy(originals, "pose", tmp_path), flip_idx=flip_idx)
    msg = _task_data_error(data_yaml)
    assert msg.startswith(f"{_line(data_yaml, 'flip_idx')}: ") and expected in msg


@pytest.mark.parametrize("sigmas", [[0.1, 0.1], [0.1, 0.1, 0.1, 0], "0.1"])
def test_bad_kpt_oks_sigmas(originals: dict[str, Path], tmp_path: Path, sigmas: object) -> None:
    data_yaml = _edit_yaml(_copy(originals, "pose", tmp_path), kpt_oks_sigmas=sigmas)
    msg = _task_data_error(data_yaml)
    assert msg.startswith(f"{_line(data_yaml, 'kpt_oks_sigmas')}: 'kpt_oks_sigmas' must be 4 positive numbers")


def test_check_task_data_without_yaml_path_and_unknown_task(originals: dict[str, Path]) -> None:
    config = {**_config(originals["pose"]), "kpt_shape": [4, 4]}
    with pytest.raises(DatasetError, match=r"^the data config: 'kpt_shape: \[4, 4\]'"):
        check_task_data(config, "pose")
    with pytest.raises(ConfigurationError, match="unknown task 'panoptic'"):
        check_task_data(config, "panoptic")
    assert check_task_data(config, "classify") == []


# --- classify folders -----------------------------------------------------------------------------------------


@pytest.fixture
def cls_folder(originals: dict[str, Path], tmp_path: Path) -> Path:
    return _copy(originals, "classify", tmp_path)


def _cls_error(folder: Path | str, splits: tuple[str, ...] | None = ("train", "val")) -> str:
    with pytest.raises(DatasetError) as info:
        load_classification_config(folder, splits)
    return str(info.value)


def _never_reach_ultralytics(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> dict:
        raise AssertionError("check_cls_dataset (which downloads or splits) must not be reached")

    monkeypatch.setattr(dataset_checks, "check_cls_dataset", fail)


def test_missing_classify_folder_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _never_reach_ultralytics(monkeypatch)
    msg = _cls_error(tmp_path / "nope")
    assert msg.startswith(f"classification folder not found: {tmp_path / 'nope'};") and "downloads" in msg
    assert "datasets_dir" in _cls_error("no-such-cls-dataset-xyz")
    assert "downloads are disabled" in _cls_error("https://example.com/data.zip")


def test_relative_classify_folder_under_datasets_dir(
    cls_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataset_checks, "DATASETS_DIR", tmp_path)
    assert load_classification_config("classify", ("train",))["train"] == str(cls_folder.resolve() / "train")


def test_classify_data_must_be_a_folder(originals: dict[str, Path], tmp_path: Path) -> None:
    data_yaml = _copy(originals, "detect", tmp_path)
    msg = _cls_error(data_yaml)
    assert msg.startswith(f"{data_yaml}: classify data must be a folder") and "a data.yaml describes" in msg


def test_classify_folder_without_train(cls_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _never_reach_ultralytics(monkeypatch)
    shutil.rmtree(cls_folder / "train")
    msg = _cls_error(cls_folder, ("val",))
    assert msg.startswith(f"{cls_folder.resolve()}: no train/ folder (the class names and their order come from")
    assert sorted(p.name for p in cls_folder.parent.iterdir()) == ["classify"]  # nothing split into a new folder


def test_classify_folder_with_one_class(cls_folder: Path) -> None:
    for folder in (cls_folder / "train").iterdir():
        if folder.name != "circle":
            shutil.rmtree(folder)
    msg = _cls_error(cls_folder)
    assert msg.startswith(f"{cls_folder.resolve()}: a classify folder with one class ('circle' in ")
    assert "at least 2 classes" in msg


def test_classify_split_folders(cls_folder: Path) -> None:
    shutil.rmtree(cls_folder / "val")
    assert _cls_error(cls_folder).startswith(f"{cls_folder.resolve()}: no val/ folder (nor validation/, valid/")
    assert load_classification_config(cls_folder, ("train",))["val"] is None
    msg = _cls_error(cls_folder, ("test",))
    assert msg.startswith(f"{cls_folder.resolve()}: no test/ folder to test on") and "use validate" in msg


def test_classify_valid_folder_and_test_fallback(cls_folder: Path) -> None:
    (cls_folder / "val").rename(cls_folder / "valid")
    assert load_classification_config(cls_folder, ("val",))["val"] == str(cls_folder.resolve() / "valid")
    (cls_folder / "valid").rename(cls_folder / "test")
    with pytest.warns(UserWarning, match=r"no val/, validation/, valid/ folder; validating on test/"):
        config = load_classification_config(cls_folder, ("train", "val"))
    assert config["val"] == config["test"] == str(cls_folder.resolve() / "test")


def test_classify_val_class_not_in_train(cls_folder: Path) -> None:
    (cls_folder / "val" / "star").rename(cls_folder / "val" / "starfish")
    msg = _cls_error(cls_folder)
    assert msg.startswith(f"{cls_folder.resolve() / 'val'}: class folder(s) 'starfish' are not in ")
    assert "Ultralytics would skip their" in msg


def test_classify_split_without_images(cls_folder: Path) -> None:
    for image in (cls_folder / "val").rglob("*.png"):
        image.unlink()
    assert _cls_error(cls_folder).startswith(f"{cls_folder.resolve() / 'val'}: no images")
    for image in (cls_folder / "train").rglob("*.png"):
        image.unlink()
    assert _cls_error(cls_folder, ("train",)).startswith(f"{cls_folder.resolve() / 'train'}: no images")


def test_classify_empty_class_folder_and_stray_images_warn(cls_folder: Path) -> None:
    star = cls_folder / "train" / "star"
    for image in star.iterdir():
        image.rename(cls_folder / "train" / image.name)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        config = load_classification_config(cls_folder, ("train", "val"))
    messages = [str(w.message) for w in record]
    assert f"{cls_folder.resolve() / 'train'}: class folder(s) 'star' hold no image" in messages[0]
    assert "directly in train/ belong to no class and are ignored" in messages[1]
    assert len(messages) == 2 and config["nc"] == 4  # the empty folder is still a class, as in Ultralytics
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_classification_config(cls_folder, ("train", "val"), warn=False)
