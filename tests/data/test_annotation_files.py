"""Annotation files as a user's programs save them: a spreadsheet's copy of every annotation format
(UTF-8 with a byte-order mark, CRLF line ends, blank rows, spaces around fields, every field
quoted) reads and trains as the original does; what is truly broken (a quote left open by a cut-off
last row, a row with missing fields, a byte that is not UTF-8) stops in one line naming file and row."""

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import videotl_logger_restored
from videotl.config import load_config
from videotl.data import DatasetError, load_records

from .conftest import CHARADES_CLASSES, SMALL, write_charades, write_video

BOM = "\ufeff"


def _charades(root: Path):
    write_charades(root)
    tables = ["Charades_v1_train.csv", "Charades_v1_test.csv"]
    overrides = ["MODEL.NUM_CLASSES", str(len(CHARADES_CLASSES))]
    return overrides, {"table": tables, "lines": ["Charades_v1_classes.txt"]}


def _avid(root: Path):
    (root / "videos").mkdir(parents=True)
    (root / "avid_classes.txt").write_text("archery\nbaking\n", encoding="utf-8")
    splits = {"train": {"a.mp4": "archery", "b.mp4": "baking"}, "val": {"c.mp4": "baking", "a.mp4": "archery"}}
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        write_video(root / "videos" / name, rate=25, num_frames=50)
    for split, entries in splits.items():
        (root / f"avid_{split}.json").write_text(json.dumps(entries, indent=2), encoding="utf-8")
    overrides = [
        "MODEL.NUM_CLASSES", "2", "DATA.MULTI_LABEL", "False", "MODEL.LOSS_FUNC", "cross_entropy",
        "MODEL.HEAD_ACT", "softmax", "TRAIN.DATASET", "avid", "TEST.DATASET", "avid", "TEST.SPLIT", "val",
    ]  # fmt: skip
    return overrides, {"json": ["avid_train.json", "avid_val.json"], "lines": ["avid_classes.txt"]}


def _video_list(root: Path):
    (root / "clips").mkdir(parents=True)
    for name in ("a", "b", "c"):
        write_video(root / "clips" / f"{name}.mp4", rate=25, num_frames=50)
    (root / "train.csv").write_text("clips/a.mp4 0\nclips/b.mp4 1,2\n", encoding="utf-8")
    (root / "test.csv").write_text("clips/c.mp4 2\nclips/a.mp4 0,1\n", encoding="utf-8")
    (root / "classes.txt").write_text("archery\nbaking\ncycling\n", encoding="utf-8")
    overrides = ["MODEL.NUM_CLASSES", "3", "TRAIN.DATASET", "csv", "TEST.DATASET", "csv", "DATA.TRAIN_LABELS", "video"]
    return overrides, {"lines": ["train.csv", "test.csv", "classes.txt"]}


def _mmaction(root: Path):
    from ..tools.test_kinetics_mmaction import mmaction_run, write_mmaction

    write_mmaction(root, multi_label=True)
    lists = ["kinetics400_train_list_videos.txt", "kinetics400_val_list_videos.txt"]
    for name in lists:
        # Paths from the root, which is what the copy moves (DATA.PATH_PREFIX would stay behind).
        lines = (root / name).read_text(encoding="utf-8").splitlines()
        (root / name).write_text("".join(f"videos/{line}\n" for line in lines), encoding="utf-8")
    return mmaction_run(True), {"lines": [*lists, "label_map.txt"]}


def _kinetics(root: Path):
    from ..tools.test_kinetics_mmaction import KINETICS_RUN, write_kinetics

    write_kinetics(root / "k400")
    shutil.copytree(root / "k400", root, dirs_exist_ok=True)
    shutil.rmtree(root / "k400")
    return KINETICS_RUN, {"table": ["train.csv", "validate.csv", "test.csv"]}


# name -> writer(root) -> (config overrides, {kind: [annotation files]}); kinds: "table" (a CSV with
# a header), "lines" (one item per line), "json".
FORMATS = {"charades": _charades, "avid": _avid, "csv": _video_list, "mmaction2": _mmaction, "kinetics": _kinetics}


def spreadsheet_table(text: str) -> str:
    """A CSV as a spreadsheet saves it: every field quoted, spaces around them, CRLF, a blank row
    of commas and blank lines at the end (the byte-order mark comes with the file)."""
    rows = list(csv.reader(io.StringIO(text)))
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    for row in rows:
        writer.writerow([f" {field} " if field else field for field in row])
    return buffer.getvalue().replace('" ', '"  ', 1) + "," * (len(rows[0]) - 1) + "\r\n\r\n\r\n"


def spreadsheet_lines(text: str) -> str:
    """A one-column list as a spreadsheet saves it: lines holding a comma quoted, CRLF, stray
    spaces, a blank row padded with commas, blank lines at the end."""
    lines = []
    for line in text.splitlines():
        lines.append(f'"{line}"' if "," in line else f"  {line} ")
    return "\r\n".join(lines[:1] + [",,"] + lines[1:]) + "\r\n\r\n"


def spreadsheet_copy(source: Path, target: Path, files: dict) -> Path:
    shutil.copytree(source, target, symlinks=True)
    rewrite = {
        "table": spreadsheet_table,
        "lines": spreadsheet_lines,
        "json": lambda text: text.replace("\n", "\r\n") + "\r\n\r\n",
    }
    for kind, names in files.items():
        for name in names:
            text = (source / name).read_text(encoding="utf-8")
            (target / name).write_bytes((BOM + rewrite[kind](text)).encode("utf-8"))
    return target


def _cfg(root: Path, overrides, *extra):
    return load_config("", [*SMALL, "DATA.PATH_TO_DATA_DIR", str(root), *overrides, *extra])


def _relative(records, root: Path):
    return [(r.video_id, r.path.relative_to(root), r.labels, r.intervals) for r in records]


@pytest.fixture(scope="module", params=sorted(FORMATS))
def original_and_copy(request, tmp_path_factory):
    """(dataset name, config overrides, original root, spreadsheet copy root, annotation files)."""
    name = request.param
    original = tmp_path_factory.mktemp(f"{name}_original")
    overrides, files = FORMATS[name](original)
    copy = spreadsheet_copy(original, tmp_path_factory.mktemp(f"{name}_copy") / "data", files)
    return name, overrides, original, copy, files


def test_the_spreadsheet_copy_is_what_a_spreadsheet_writes(original_and_copy):
    _, _, _, copy, files = original_and_copy
    for names in files.values():
        for name in names:
            data = (copy / name).read_bytes()
            assert data.startswith(BOM.encode("utf-8")) and data.endswith(b"\r\n\r\n"), name
            assert b"\n" not in data.replace(b"\r\n", b""), name


def test_a_spreadsheet_copy_reads_as_the_original(original_and_copy):
    name, overrides, original, copy, _ = original_and_copy
    for split in {_cfg(original, overrides).TRAIN.SPLIT, _cfg(original, overrides).TEST.SPLIT}:
        dataset = _cfg(original, overrides).TRAIN.DATASET
        records, names = load_records(_cfg(original, overrides), split, dataset)
        copied, copied_names = load_records(_cfg(copy, overrides), split, dataset)
        assert copied_names == names and _relative(copied, copy) == _relative(records, original), (name, split)


def _train_losses(root: Path, out: Path, overrides) -> list:
    from videotl.engine import train

    from ..tools.test_tools import TINY_MODEL

    cfg = _cfg(root, overrides, *TINY_MODEL, "DEVICE", "cpu", "SOLVER.MAX_EPOCH", "1", "TEST.ENABLE", "False",
               "TENSORBOARD.ENABLE", "False", "OUTPUT_DIR", str(out))  # fmt: skip
    with videotl_logger_restored():
        train(cfg)
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text(encoding="utf-8").splitlines()]
    return [row["loss"] for row in stats if "loss" in row]


def test_a_spreadsheet_copy_trains_as_the_original(original_and_copy, tmp_path):
    _, overrides, original, copy, _ = original_and_copy
    losses = _train_losses(original, tmp_path / "original", overrides)
    assert losses and _train_losses(copy, tmp_path / "copy", overrides) == losses


def _charades_with_test_rows(root: Path, extra: bytes) -> Path:
    """The Charades fixture whose test CSV ends in ``extra`` (line 5: header, three rows, then it)."""
    write_charades(root)
    annotation = root / "Charades_v1_test.csv"
    annotation.write_bytes(annotation.read_bytes() + extra)
    return annotation


BROKEN_ROWS = {
    # A write cut off inside a quoted description: the quote runs to the end of the file.
    "unterminated quote": (b'DDD04,S1,Kitchen,6,7,Yes,"A person walks', r":5: unterminated quote"),
    # A write cut off between fields.
    "missing fields": (b"DDD04,S1,Kitchen,6\r\n", r":5: 4 fields where the header has 11 .* cut off"),
    "extra fields": (b"DDD04,S1,Kitchen,6,7,Yes,s,o,d,,3.00,x\n", r":5: 12 fields where the header has 11"),
    # A description saved as Latin-1 (Windows-1252) by an older program.
    "not UTF-8": (
        "DDD04,S1,Kitchen,6,7,Yes,café,o,d,,3.00\n".encode("latin-1"),
        r":5: byte 0xe9 at column 29 is not UTF-8",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_ROWS))
def test_a_broken_row_is_named_by_file_and_row(tmp_path, case):
    extra, message = BROKEN_ROWS[case]
    annotation = _charades_with_test_rows(tmp_path, extra)
    cfg = _cfg(tmp_path, ["MODEL.NUM_CLASSES", str(len(CHARADES_CLASSES))])
    with pytest.raises(DatasetError, match=f"^{annotation}{message}"):
        load_records(cfg, "test", "charades")


def test_a_list_line_left_in_an_open_quote_is_named(tmp_path):
    overrides, _ = _video_list(tmp_path)
    (tmp_path / "test.csv").write_text('clips/c.mp4 2\n"clips/a.mp4 0,1\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'test.csv'}:2: unterminated quote"):
        load_records(_cfg(tmp_path, overrides), "test", "csv")
    (tmp_path / "test.csv").write_bytes("clips/c.mp4 2\nclips/é.mp4 1\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'test.csv'}:2: byte 0xe9 at column 7 is not UTF-8"):
        load_records(_cfg(tmp_path, overrides), "test", "csv")


def test_train_net_stops_on_a_cut_off_last_row_before_writing_anything(tmp_path, capsys):
    from videotl_tools import train_net

    from ..tools.test_tools import TINY_MODEL

    annotation = _charades_with_test_rows(tmp_path / "data", b'DDD04,S1,Kitchen,6,7,Yes,"A person walks')
    out = tmp_path / "run"
    args = [*SMALL, *TINY_MODEL, "DATA.PATH_TO_DATA_DIR", str(tmp_path / "data"), "DEVICE", "cpu",
            "MODEL.NUM_CLASSES", str(len(CHARADES_CLASSES)), "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", str(out)]  # fmt: skip
    assert train_net.main(args) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {annotation}:5: unterminated quote"), lines
    assert not out.exists()
