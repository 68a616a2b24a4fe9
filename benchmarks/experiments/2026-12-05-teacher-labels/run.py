"""Issue #35, item 2: the second untested lever, screened on the imbalanced `steps` profile. Synthetic images
labelled with a teacher's class probabilities instead of their conditioning class, those the teacher disagrees with
dropped, and a synthetic loss weight below 1 (the recipe of the from-scratch generative long-tail methods: DiffuLT,
NeurIPS 2024; cGAN-KD, 2021), against class-balanced re-sampling of the real images, the strongest baseline there.

Every condition trains the evaluate stage's built-in CNN with its defaults (600 steps, batch 64, Adam 1e-3 cosine,
elastic augmentation on every image) in ONE loop written here, so the conditions differ only in their pool and
targets; the pool is drawn class-balanced (every class equally likely), as real+aug+resampled and real+aug+topup are
in the tool:

  resampled     the real images only (the tool's real+aug+resampled)
  topup         real + synthetic images topping every class up to the largest class's count, conditioning labels
                (the tool's real+aug+topup)
  topup-agree   the same, the synthetic rows drawn only from images the teacher assigns to their conditioning class
  teacher-w1    topup-agree with the teacher's probabilities as the synthetic targets (soft cross-entropy), weight 1
  teacher-w0.5  the same with the synthetic images' loss weighted 0.5 (the recipe)

The teacher: the built-in CNN trained on the real training images, class-balanced, classical augmentation, 600 steps
(seed 1000, not one of the paired seeds). The test images only report.

    python benchmarks/experiments/2026-12-05-teacher-labels/run.py --run /tmp/budget-steps-w128 --step 2000 --seeds 5

--run is budget_curve.py's scratch folder of the `steps` profile (its ingest/ and snapshots/step_NNNNNN/synthetic/);
writes results.json and results.md beside this file (one section per --step).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from pipeline import storage  # noqa: E402
from pipeline.classifier import _to_float, build_model, classical_grid, predict, resample  # noqa: E402
from pipeline.config import EvaluateConfig  # noqa: E402
from pipeline.evaluate.stage import load_synthetic  # noqa: E402
from pipeline.metrics.stats import paired_gain, verdict  # noqa: E402
from pipeline.sampling import class_balanced_weights  # noqa: E402

CONDITIONS = ("resampled", "topup", "topup-agree", "teacher-w1", "teacher-w0.5")


def train(config: EvaluateConfig, seed: int, images: np.ndarray, targets: np.ndarray, weights: np.ndarray,
          labels: np.ndarray, num_classes: int) -> torch.nn.Module:
    """The built-in CNN on one pool drawn class-balanced by `labels`; targets: N x C probabilities, weights: per image."""
    torch.manual_seed(seed)
    x_all, t_all, w_all = torch.from_numpy(images), torch.from_numpy(targets).float(), torch.from_numpy(weights).float()
    model = build_model("small", images.shape[1], num_classes, images.shape[-1], config.width)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    draw = class_balanced_weights(torch.from_numpy(labels))
    rng, augment_rng = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 2)
    model.train()
    for _ in range(config.steps):
        index = torch.multinomial(draw, config.batch_size, replacement=True, generator=rng)
        x = _to_float(x_all[index])
        x = resample(x, classical_grid(x, config.augment, augment_rng, config.augment_probability))
        per_image = -(t_all[index] * F.log_softmax(model(x), dim=1)).sum(dim=1)
        loss = (w_all[index] * per_image).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def topup_rows(real_labels: np.ndarray, synthetic_labels: np.ndarray, allowed: np.ndarray, num_classes: int) -> np.ndarray:
    """The first (largest real count - class count) allowed synthetic rows of every class."""
    counts = np.bincount(real_labels, minlength=num_classes)
    return np.concatenate([np.flatnonzero((synthetic_labels == c) & allowed)[:counts.max() - counts[c]]
                           for c in range(num_classes)] + [np.zeros(0, dtype=np.int64)])


def pools(real, synthetic, teacher_probs: np.ndarray, num_classes: int) -> dict:
    """condition -> (images, targets, weights, labels)."""
    eye = np.eye(num_classes, dtype=np.float32)
    agree = teacher_probs.argmax(axis=1) == synthetic[1]
    every = np.ones(len(synthetic[1]), dtype=bool)
    result = {"resampled": (real[0], eye[real[1]], np.ones(len(real[1]), np.float32), real[1])}
    for name, allowed, soft, weight in (("topup", every, False, 1.0), ("topup-agree", agree, False, 1.0),
                                        ("teacher-w1", agree, True, 1.0), ("teacher-w0.5", agree, True, 0.5)):
        rows = topup_rows(real[1], synthetic[1], allowed, num_classes)
        targets = teacher_probs[rows] if soft else eye[synthetic[1][rows]]
        result[name] = (np.concatenate([real[0], synthetic[0][rows]]), np.concatenate([eye[real[1]], targets]),
                        np.concatenate([np.ones(len(real[1]), np.float32), np.full(len(rows), weight, np.float32)]),
                        np.concatenate([real[1], synthetic[1][rows]]))
    return result


def scores(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> dict:
    per_class = np.array([np.mean(predicted[truth == c] == c) for c in range(num_classes)])
    return {"accuracy": float(np.mean(predicted == truth)), "balanced_accuracy": float(per_class.mean()),
            "worst_class": float(per_class.min()), "per_class": per_class.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--step", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=600, help="classifier steps (600: the evaluate stage's default)")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.{json,md} go (a smoke run: elsewhere)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    config = EvaluateConfig(steps=args.steps)
    arrays = storage.load_arrays(args.run / "ingest")
    classes = [str(c) for c in arrays["classes"]]
    real, test = (arrays["train_images"], arrays["train_labels"]), (arrays["test_images"], arrays["test_labels"])
    synthetic = load_synthetic(args.run / "snapshots" / f"step_{args.step:06d}" / "synthetic", classes, real[0].shape[1:],
                               config.max_synthetic_per_class)
    n = len(classes)
    teacher = train(config, 1000, real[0], np.eye(n, dtype=np.float32)[real[1]], np.ones(len(real[1]), np.float32), real[1], n)
    with torch.no_grad():
        probs = np.concatenate([F.softmax(teacher(_to_float(torch.from_numpy(synthetic[0][i:i + 1024]))), dim=1).numpy()
                                for i in range(0, len(synthetic[1]), 1024)])
    agree = probs.argmax(axis=1) == synthetic[1]
    made = pools(real, synthetic, probs, n)
    runs = {name: [] for name in CONDITIONS}
    for seed in range(args.seeds):
        for name in CONDITIONS:
            images, targets, weights, labels = made[name]
            model = train(config, seed, images, targets, weights, labels, n)
            runs[name].append(scores(predict(model, test[0], torch.device("cpu")), test[1], n))
            print(f"step {args.step} seed {seed} {name:13s} balanced {100 * runs[name][-1]['balanced_accuracy']:.2f} "
                  f"worst {100 * runs[name][-1]['worst_class']:.1f}", flush=True)
    section = {
        "step": args.step, "seeds": args.seeds, "seconds": round(time.perf_counter() - start, 1),
        "real_per_class": np.bincount(real[1], minlength=n).tolist(),
        "teacher_agreement_per_class": [float(agree[synthetic[1] == c].mean()) for c in range(n)],
        "synthetic_rows": {name: int(len(made[name][3]) - len(real[1])) for name in CONDITIONS},
        "conditions": {name: {"balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in v])),
                              "worst_class": float(np.mean([r["worst_class"] for r in v])), "runs": v}
                       for name, v in runs.items()},
        "gains_vs_resampled": {},
    }
    for name in CONDITIONS[1:]:
        gain = paired_gain([r["balanced_accuracy"] for r in runs[name]], [r["balanced_accuracy"] for r in runs["resampled"]])
        section["gains_vs_resampled"][name] = {"mean": gain["mean"], "ci95": gain["ci95"], "verdict": verdict(gain),
                                               "worst_class": section["conditions"][name]["worst_class"]
                                               - section["conditions"]["resampled"]["worst_class"]}
    out = args.out / "results.json"
    results = json.loads(out.read_text()) if out.is_file() else {"sections": {}}
    results["command"] = ("python benchmarks/experiments/2026-12-05-teacher-labels/run.py --run RUN --step STEP --seeds "
                          f"{args.seeds}" + (f" --steps {args.steps}" if args.steps != 600 else ""))
    results["sections"][str(args.step)] = section
    storage.write_json(out, results)
    storage.write_text(args.out / "results.md", markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    lines = ["# Teacher labels for synthetic images on the imbalanced `steps` profile (issue #35, item 2)", "",
             f"Command: `{results['command']}` (RUN: budget_curve.py's scratch folder of `steps`, width 128).", "",
             "Balanced accuracy on 1,000 test images (100 per class), mean over paired seeds; gains against "
             "`resampled` (class-balanced re-sampling of the real images) in points [95% CI over seeds].", ""]
    for step, s in sorted(results["sections"].items(), key=lambda kv: int(kv[0])):
        lines += [f"## GAN snapshot at {int(step):,} steps ({s['seeds']} seeds, {s['seconds']:.0f} s at 1 thread)", "",
                  f"Real training images per class: {s['real_per_class']}; teacher agreement with the conditioning class "
                  f"per class: {[round(a, 2) for a in s['teacher_agreement_per_class']]}.", "",
                  "| condition | synthetic images | balanced accuracy % | worst class % | vs resampled | worst class vs resampled |",
                  "|---|---|---|---|---|---|"]
        for name, c in s["conditions"].items():
            g = s["gains_vs_resampled"].get(name)
            interval = f" [{100 * g['ci95'][0]:+.2f}, {100 * g['ci95'][1]:+.2f}]" if g and g["ci95"] else ""
            vs = f"{100 * g['mean']:+.2f}{interval} {g['verdict']}" if g else "baseline"
            worst = f"{100 * g['worst_class']:+.1f}" if g else ""
            lines.append(f"| {name} | {s['synthetic_rows'][name]} | {100 * c['balanced_accuracy']:.2f} | "
                         f"{100 * c['worst_class']:.1f} | {vs} | {worst} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
