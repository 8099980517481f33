#!/usr/bin/env python
"""Write avid_classes.txt (the AViD class list videotl reads) from the training annotations.

    python datasets/prepare_avid.py --root data/avid

The AViD release has no plain class list: its classes are the labels of avid_train.json. This
writes them sorted, one per line, leaving out "none" and the empty label (see DATASETS.md for how
those are treated), and prints how many clips carry each kind of label in train and val.
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from videotl.utils.fileio import atomic_write_text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root", required=True, help="folder with avid_train.json and avid_val.json (DATA.PATH_TO_DATA_DIR)"
    )
    parser.add_argument("--output", default="", help="class list to write (default ROOT/avid_classes.txt)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    train_file = root / "avid_train.json"
    if not train_file.is_file():
        print(
            f"{train_file}: no such file; expected the AViD training annotations "
            "(dataset/avid_train.json of github.com/piergiaj/AViD)",
            file=sys.stderr,
        )
        return 2
    train = json.loads(train_file.read_text(encoding="utf-8"))
    labels = Counter(name.strip() for name in train.values())
    classes = sorted(name for name in labels if name and name != "none")
    output = Path(args.output) if args.output else root / "avid_classes.txt"
    atomic_write_text(output, "".join(f"{name}\n" for name in classes))
    print(f"{output}: {len(classes)} classes")
    print(
        f"train: {len(train)} clips, {labels.get('none', 0)} labelled 'none', {labels.get('', 0)} with an empty label"
    )
    val_file = root / "avid_val.json"
    if val_file.is_file():
        val = Counter(name.strip() for name in json.loads(val_file.read_text(encoding="utf-8")).values())
        unknown = sum(n for name, n in val.items() if name and name != "none" and name not in set(classes))
        print(
            f"val: {sum(val.values())} clips, {val.get('none', 0)} labelled 'none', {val.get('', 0)} empty, "
            f"{unknown} with a name outside the class list"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
