"""Run the four stages through the stage dispatch (`run_stage`, what `augment stage` and dvc.yaml call) with small
settings on scikit-learn's digits: balanced; an imbalanced subset (re-sampling and top-up evaluated); and
train.mode=per_class. 1 torch thread. Used to compare two code versions file by file (compare.py)."""
import shutil
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
from pipeline import config as config_module, demo  # noqa: E402

try:
    from pipeline.stages import run_stage  # after the house issue (#32)
except ImportError:
    from flows.stages import run_stage  # before it

out = Path(sys.argv[1])
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)
demo.export_digits(out / "data-digits")
imbalanced = out / "data-imb"  # class c keeps 10 + 15 * c images
for c in range(10):
    (imbalanced / str(c)).mkdir(parents=True)
    for f in sorted((out / "data-digits" / str(c)).iterdir())[: 10 + 15 * c]:
        shutil.copy(f, imbalanced / str(c) / f.name)
common = ["train.steps=120", "train.sample_every=60", "train.checkpoint_every=60", "evaluate.steps=60", "evaluate.seeds=2",
          "generate.per_class=40"]
for name, data, extra in (("bal", out / "data-digits", []), ("imb", imbalanced, []),
                          ("pc", out / "data-digits", ["train.mode=per_class", "train.steps=40"])):
    config = config_module.load(None, [f"ingest.dataset={data}", *common, *extra])
    for stage in ("ingest", "train", "generate", "evaluate"):
        run_stage(stage, config, out / name)
print("done", out)
