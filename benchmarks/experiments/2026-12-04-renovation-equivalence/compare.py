import hashlib, json, sys, csv
from pathlib import Path
a, b = Path(sys.argv[1]), Path(sys.argv[2])
TIMING = {"seconds", "images_per_second", "wall_seconds", "date", "created", "commit", "version", "stage_seconds", "elapsed"}
def scrub(x):
    if isinstance(x, dict): return {k: scrub(v) for k, v in x.items() if k not in TIMING and "second" not in k}
    if isinstance(x, list): return [scrub(v) for v in x]
    return x
same = diff = 0
for fa in sorted(p for p in a.rglob("*") if p.is_file()):
    rel = fa.relative_to(a); fb = b / rel
    if not fb.exists(): print("only in A:", rel); diff += 1; continue
    if fa.suffix == ".json":
        ok = scrub(json.loads(fa.read_text())) == scrub(json.loads(fb.read_text()))
    elif fa.name == "losses.csv":
        ra = [r[:-1] for r in csv.reader(open(fa))]; rb = [r[:-1] for r in csv.reader(open(fb))]; ok = ra == rb
    elif fa.suffix == ".html":
        continue
    else:
        ok = fa.read_bytes() == fb.read_bytes()
    if ok: same += 1
    else: diff += 1; print("DIFF:", rel)
for fb in sorted(p for p in b.rglob("*") if p.is_file()):
    if not (a / fb.relative_to(b)).exists(): print("only in B:", fb.relative_to(b)); diff += 1
print(f"{same} files equal, {diff} differ")
