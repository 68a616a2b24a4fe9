"""Compare two output trees of run.py file by file: JSON without timing fields, losses.csv and runs.csv without their
last (timing) column, report.html skipped (it embeds the code version), everything else byte for byte."""
import csv
import json
import sys
from pathlib import Path

a, b = Path(sys.argv[1]), Path(sys.argv[2])
TIMING = {"seconds", "images_per_second", "wall_seconds", "date", "created", "commit", "version", "stage_seconds",
          "elapsed", "evaluated_at"}


def scrub(x):
    if isinstance(x, dict):
        return {k: scrub(v) for k, v in x.items() if k not in TIMING and "second" not in k}
    if isinstance(x, list):
        return [scrub(v) for v in x]
    return x


def rows(path: Path) -> list:
    return [r[:-1] for r in csv.reader(open(path))]


same = diff = 0
for fa in sorted(p for p in a.rglob("*") if p.is_file()):
    rel = fa.relative_to(a)
    fb = b / rel
    if not fb.exists():
        print("only in A:", rel)
        diff += 1
        continue
    if fa.suffix == ".json":
        ok = scrub(json.loads(fa.read_text())) == scrub(json.loads(fb.read_text()))
    elif fa.name in ("losses.csv", "runs.csv"):
        ok = rows(fa) == rows(fb)
    elif fa.suffix == ".html" or fa.name == ".augment.lock":
        continue
    else:
        ok = fa.read_bytes() == fb.read_bytes()
    if ok:
        same += 1
    else:
        diff += 1
        print("DIFF:", rel)
for fb in sorted(p for p in b.rglob("*") if p.is_file()):
    if not (a / fb.relative_to(b)).exists():
        print("only in B:", fb.relative_to(b))
        diff += 1
print(f"{same} files equal, {diff} differ")
