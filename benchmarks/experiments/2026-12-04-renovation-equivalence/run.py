"""Run the four stages with small settings on the digits (balanced, and an imbalanced subset with rebalance on,
and train.mode=per_class), 1 torch thread; used to compare two code versions file by file."""
import sys, shutil
from pathlib import Path
import torch
torch.set_num_threads(1)
import numpy as np
from pipeline import config as config_module, ingest, generate, demo
from pipeline.evaluate import stage as evaluate_stage
from pipeline.gan import train, per_class

out = Path(sys.argv[1]); shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
demo.export_digits(out / "data-digits")
# imbalanced copy: class c keeps 10 + 15 * c images
imb = out / "data-imb"
for c in range(10):
    files = sorted((out / "data-digits" / str(c)).iterdir())[: 10 + 15 * c]
    (imb / str(c)).mkdir(parents=True)
    for f in files: shutil.copy(f, imb / str(c) / f.name)
common = ["train.steps=120", "train.sample_every=60", "train.checkpoint_every=60", "evaluate.steps=60", "evaluate.seeds=2", "generate.per_class=40"]
for name, data, extra in (("bal", out / "data-digits", []), ("imb", imb, []), ("pc", out / "data-digits", ["train.mode=per_class", "train.steps=40"])):
    cfg = config_module.load(None, [f"ingest.dataset={data}", *common, *extra])
    run = out / name
    ingest.run(cfg.ingest, run / "ingest")
    (per_class.run if cfg.train.mode == "per_class" else train.run)(cfg.train, run / "ingest", run / "gan")
    generate.run(cfg.generate, run / "gan", run / "synthetic", run / "ingest")
    evaluate_stage.run(cfg.evaluate, run / "ingest", run / "synthetic", run / "gan", run / "evaluation")
print("done", out)
