"""Check the YOLO txt label files of a split: every line that does not fit the task as 'file:line: reason', the split
refused as a whole, labels missing altogether, and the report users read."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ultralytics.data.utils import img2label_paths

from yolo_lightning.data_checks.common import DatasetError, plural
from yolo_lightning.data_checks.image_sources import ImageSource, image_files
from yolo_lightning.data_checks.label_rows import LabelFormat, RowContext, label_format_for
from yolo_lightning.data_checks.task_keys import kpt_shape_or_none


@dataclass(frozen=True)
class LabelProblem:
    """One label line that does not fit the task (1-based line number; None for a per-pixel label file as a whole).

    ``skipped``: Ultralytics skips the image of this label file (True), or loads the line as it is although it does not
    fit the task (False: e.g. a pose visibility of 3, trained as visible, or an OBB polygon of 3 points).
    """

    file: Path
    line: int | None
    reason: str
    skipped: bool = True


def find_label_problems(
    image_dir: ImageSource, nc: int, task: str = "detect", kpt_shape: Sequence[int] | None = None
) -> list[LabelProblem]:
    """List every label line of the images in image_dir that does not fit ``task`` (YOLO txt labels).

    ``kpt_shape`` is the data.yaml's, whatever the task: pose needs it, and Ultralytics reads the rows of that width of
    any other task as their boxes. Raises DatasetError when Ultralytics would refuse the split as a whole: label files
    of box rows only for segment or obb (a detect dataset), or pose without a valid kpt_shape.
    """
    label_format = label_format_for(task)
    shape = kpt_shape_or_none(kpt_shape)
    if label_format.keypoints and shape is None:
        raise DatasetError(
            f"pose labels need kpt_shape [nkpt, ndim] (ndim 2 or 3), got {kpt_shape!r}: "
            "add 'kpt_shape' to the data.yaml"
        )
    label_files = dict.fromkeys(img2label_paths(image_files(image_dir)))  # unique, in image order
    problems: list[LabelProblem] = []
    box_only: list[Path] = []
    n_loaded = 0  # label files with rows that Ultralytics loads
    pose_rows = False
    for label_file in label_files:
        if os.path.isfile(label_file):  # a missing label file is a background image
            checked = _label_file_problems(Path(label_file), nc, label_format, shape)
            problems += checked.problems
            if checked.rows and not any(p.skipped for p in checked.problems):
                n_loaded += 1
                if checked.box_only:
                    box_only.append(Path(label_file))
                    pose_rows |= checked.pose_rows
    if label_format.polygons and box_only:
        raise _box_only_error(image_dir, label_format.polygons, box_only, n_loaded, pose_rows)
    return problems


def report_label_problems(problems: list[LabelProblem], split: str, max_listed: int = 10) -> str:
    """One readable message: how many labels in how many files will be skipped, listing file:line: reason.

    Lines Ultralytics loads although they do not fit the task (``skipped=False``) follow in a section of their own.
    """
    if not problems:
        return f"No invalid labels in split '{split}'."
    skipped = [p for p in problems if p.skipped]
    loaded = [p for p in problems if not p.skipped]
    sections = []
    if skipped:
        n_files = len({p.file for p in skipped})
        sections.append(
            f"{plural(len(skipped), 'invalid label')} in {plural(n_files, 'file')} of split '{split}'; "
            f"Ultralytics will skip the {plural(n_files, 'image')} of these label files:"
        )
        sections += _listed(skipped, max_listed)
    if loaded:
        n_files = len({p.file for p in loaded})
        sections.append(
            f"{plural(len(loaded), 'label')} in {plural(n_files, 'file')} of split '{split}' "
            f"{'does' if len(loaded) == 1 else 'do'} not fit the task; Ultralytics will train on "
            f"{'it' if len(loaded) == 1 else 'them'} as read:"
        )
        sections += _listed(loaded, max_listed)
    return "\n".join(sections)


def _listed(problems: list[LabelProblem], max_listed: int) -> list[str]:
    """The 'file:line: reason' lines of at most max_listed problems, then how many more there are."""
    lines = [f"  {p.file}{'' if p.line is None else f':{p.line}'}: {p.reason}" for p in problems[:max_listed]]
    if len(problems) > max_listed:
        lines.append(f"  ... and {len(problems) - max_listed} more")
    return lines


def missing_labels_message(image_source: ImageSource, split: str) -> str | None:
    """Say where the label files were expected when none of the split's images has one, else None."""
    images = image_files(image_source)
    label_files = img2label_paths(images)
    if any(os.path.isfile(f) for f in label_files):
        return None
    folders = list(dict.fromkeys(os.path.dirname(f) for f in label_files))
    where = ", ".join(f"{f}{'' if os.path.isdir(f) else ' (missing)'}" for f in folders[:3])
    more = f" and {len(folders) - 3} more folders" if len(folders) > 3 else ""
    return (
        f"none of the {plural(len(images), 'image')} of split '{split}' has a label file: put one .txt file per image "
        f"in {where}{more}, with one 'class x_center y_center width height' line per object, normalized to 0-1 "
        f"(Ultralytics reads the labels of {images[0]} from {label_files[0]}: the image path with its last "
        f"'{os.sep}images{os.sep}' replaced by '{os.sep}labels{os.sep}' and the extension by .txt)"
    )


class _LabelFile(NamedTuple):
    """The checked lines of one label file."""

    problems: list[LabelProblem]
    rows: int  # non-blank lines
    box_only: bool  # every row is a box (after pose rows were read as their boxes)
    pose_rows: bool  # some rows were pose rows read as their boxes


def _label_file_problems(
    file: Path, nc: int, label_format: LabelFormat, kpt_shape: tuple[int, int] | None
) -> _LabelFile:
    """Check every line of one label file, mirroring ultralytics.data.utils.verify_image_label."""
    # Not verify_image_label itself: it stops at a file's first failed assert, names no line and needs the image.
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        problem = LabelProblem(file, raw[: e.start].count(b"\n") + 1, f"not UTF-8 text ({e.reason})")
        return _LabelFile([problem], 1, False, False)
    rows = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    pose_rows = False
    if kpt_shape and not label_format.keypoints:  # Ultralytics keeps the box of a pose row for the other tasks
        width = 5 + kpt_shape[0] * kpt_shape[1]
        pose_rows = any(len(cols) == width for _, cols in rows)
        rows = [(n, cols[:5] if len(cols) == width else cols) for n, cols in rows]
    polygons = not label_format.keypoints and any(len(cols) > 6 for _, cols in rows)  # the switch is per file
    context = RowContext(nc, kpt_shape, polygons)
    problems = [
        LabelProblem(file, n, *finding) for n, cols in rows if (finding := label_format.row(cols, context)) is not None
    ]
    return _LabelFile(problems, len(rows), bool(rows) and not polygons, pose_rows)


def _box_only_error(
    source: ImageSource, needed: str, box_only: list[Path], n_loaded: int, pose_rows: bool
) -> DatasetError:
    """The error for label files of box rows only where the task needs polygons (YOLODataset.verify_labels)."""
    kind = "a pose dataset (Ultralytics reads its rows as their boxes)" if pose_rows else "a detect dataset"
    if len(box_only) == n_loaded:
        return DatasetError(
            f"the labels of {_describe(source)} have no polygons: every label file holds only box rows 'class x_center "
            f"y_center width height' (e.g. {box_only[0]}), so this is {kind}; {needed}. Train a "
            f"{'pose or detect' if pose_rows else 'detect'} model on it, or write its objects as such rows"
        )
    listed = ", ".join(str(f) for f in box_only[:3]) + (f" and {len(box_only) - 3} more" if len(box_only) > 3 else "")
    verb = "holds" if len(box_only) == 1 else "hold"
    return DatasetError(
        f"{plural(len(box_only), 'label file')} of {_describe(source)} {verb} only box rows 'class x_center y_center "
        f"width height' and no polygons: {listed}; {needed}. Ultralytics refuses the whole split when some label "
        "files have box rows only: rewrite their objects as such rows, or remove these files"
    )


def _describe(source: ImageSource) -> str:
    """An image source for a message: the path, or the first paths of a list."""
    if isinstance(source, (str, Path)):
        return str(source)
    paths = [str(s) for s in source]
    return ", ".join(paths[:2]) + (f" and {len(paths) - 2} more" if len(paths) > 2 else "")
