"""report.html: one self-contained page (PNG plots embedded) that leads with the verdict."""
from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to memory
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline import storage  # noqa: E402

GRID_COLUMNS = 8
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.verdict{font-size:1.5em;padding:.6em 1em;
margin:.5em 0;border-radius:6px}.gain{background:#d9f2d9}.loss{background:#f8d7d7}.neutral{background:#eee}
img{max-width:100%;image-rendering:pixelated}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em}
.note{color:#555}.stale{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em;border-radius:6px}"""


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return _img(buffer.getvalue())


def _img(data: bytes, alt: str = "plot") -> str:
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _sample_grid(real: tuple[np.ndarray, np.ndarray], synthetic: tuple[np.ndarray, np.ndarray], classes: list[str]) -> str:
    """One row per class: 8 real training images | gap | 8 synthetic images, upscaled for the eye."""
    channels, side = real[0].shape[1], real[0].shape[-1]
    rows = []
    for index in range(len(classes)):
        row = []
        for images, labels in (real, synthetic):
            chosen = images[labels == index][:GRID_COLUMNS]
            chosen = np.concatenate([chosen, np.zeros((GRID_COLUMNS - len(chosen), channels, side, side), np.uint8)])
            row.append(np.concatenate(list(chosen), axis=2))                       # C x S x 8S
        gap = np.full((channels, side, side // 2), 255, np.uint8)
        rows.append(np.concatenate([row[0], gap, row[1]], axis=2))
    grid = np.concatenate(rows, axis=1).transpose(1, 2, 0)                         # H x W x C
    image = Image.fromarray(grid[..., 0] if channels == 1 else grid)
    scale = max(1, 48 // side)
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return _img(buffer.getvalue(), "real (left) and synthetic (right) samples, one row per class")


def _conditions_plot(metrics: dict) -> str:
    names = list(metrics["conditions"])
    means = [100 * metrics["conditions"][n]["accuracy_mean"] for n in names]
    stds = [100 * metrics["conditions"][n]["accuracy_std"] for n in names]
    figure, axis = plt.subplots(figsize=(7, 3))
    axis.barh(names, means, xerr=stds, color="#6a9fd4")
    for y, name in enumerate(names):
        axis.scatter([100 * v for v in metrics["conditions"][name]["accuracy_runs"]], [y] * metrics["seeds"], s=8, c="k", zorder=3)
    axis.set_xlim(max(0, min(means) - 10), 100)
    axis.set_xlabel("held-out real accuracy (%), mean ± std, dots = seeds")
    axis.invert_yaxis()
    return _png(figure)


def _per_class_plot(metrics: dict) -> str:
    classes = metrics["classes"]
    figure, axis = plt.subplots(figsize=(7, 3))
    width = 0.4
    for offset, (name, gain) in zip((-width / 2, width / 2), metrics["gain"].items()):
        values = [100 * gain["per_class_gain_mean"][c] for c in classes]
        axis.bar(np.arange(len(classes)) + offset, values, width, label=name)
    axis.axhline(0, color="k", linewidth=0.8)
    axis.set_xticks(range(len(classes)), classes, rotation=45 if len(classes) > 12 else 0)
    axis.set_ylabel("accuracy gain (points)")
    axis.legend(fontsize=8)
    return _png(figure)


def _curves_plot(path: Path, panels: list[tuple[str, list[str]]], missing: str) -> str:
    """Columns of a per-step CSV as lines against `step`, one panel per (title, columns)."""
    if not path.is_file():
        return f"<p class=note>{html.escape(missing)}</p>"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    steps = [int(r["step"]) for r in rows]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 2, 2.8), squeeze=False)
    for axis, (title, keys) in zip(axes[0], panels):
        for key in keys:
            axis.plot(steps, [float(r[key]) for r in rows], marker="o" if len(rows) < 30 else None, label=key)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("step")
        axis.legend(fontsize=7)
    return _png(figure)


def _distance_plot(fidelity: dict, distances: np.ndarray) -> str:
    figure, axis = plt.subplots(figsize=(7, 2.6))
    axis.hist(distances, bins=40, color="#d48a6a")
    axis.axvline(fidelity["nearest_real"]["copy_threshold"], color="k", linestyle="--", label="closest pair of real images")
    axis.set_xlabel("pixel distance from each synthetic image to its nearest real training image")
    axis.legend(fontsize=8)
    return _png(figure)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _per_class_table(metrics: dict) -> str:
    """Per class: real and synthetic training images, accuracy of each compared condition, and the gains."""
    header, rows = ["class", "real train", "synthetic"], []
    for name, gain in metrics["gain"].items():
        treated, baseline = name.split("_vs_")
        header += [f"{baseline} %", f"{treated} %", "gain (points)"]
    for c in metrics["classes"]:
        row = [c, metrics.get("n_train_real_per_class", {}).get(c, ""), metrics.get("n_synthetic_per_class", {}).get(c, "")]
        for name, gain in metrics["gain"].items():
            treated, baseline = name.split("_vs_")
            row += [f"{100 * metrics['conditions'][baseline]['per_class_accuracy_mean'][c]:.1f}",
                    f"{100 * metrics['conditions'][treated]['per_class_accuracy_mean'][c]:.1f}",
                    f"{100 * gain['per_class_gain_mean'][c]:+.1f}"]
        rows.append(row)
    return _table(header, rows)


def _worst_class_line(gain: dict) -> str:
    worst = gain.get("worst_class_gain")
    if worst is None:
        return ""
    return (f"<br>worst class: {100 * worst['mean']:+.2f} points (paired per seed), macro-F1: "
            f"{100 * gain['macro_f1_gain_mean']:+.2f} points")


def _recommendation(metrics: dict) -> str:
    """The tool's advice, chosen on the validation split, with its test result (reported, never used to choose)."""
    choice = metrics.get("recommendation")
    if not choice:
        return ""
    kind = "gain" if choice["use_synthetic"] else "neutral"
    advice = f"use synthetic data: {choice['setting']}" if choice["use_synthetic"] else \
        f"do not use synthetic data{': ' + choice['setting'] if choice['setting'] else ''}"
    result = choice.get("test_result")
    tested = "" if not result else f"<br>Test accuracy of this setting: {100 * result['mean']:.2f} ± {100 * result['std']:.2f}%"
    return (f'<div class="verdict {kind}"><b>Recommendation: {html.escape(advice)}</b><br>'
            f'<span class=note>{html.escape(choice["reason"])}{tested}</span></div>')


def _verdicts(metrics: dict) -> str:
    parts = [_recommendation(metrics)]
    for name, gain in metrics["gain"].items():
        kind = {"significant gain": "gain", "significant loss": "loss"}.get(gain["verdict"], "neutral")
        interval = "" if gain["ci95"] is None else f", 95% CI [{100 * gain['ci95'][0]:+.2f}, {100 * gain['ci95'][1]:+.2f}]"
        parts.append(f'<div class="verdict {kind}"><b>{html.escape(name)}: {html.escape(gain["verdict"])}</b> '
                     f'({100 * gain["mean"]:+.2f} points{interval}){_worst_class_line(gain)}<br><span class=note>{html.escape(gain["verdict_note"])}</span></div>')
    return "".join(parts)


def write_report(path: Path, metrics: dict, real, synthetic, distances: np.ndarray, gan_dir: Path, ingest_dir: Path,
                 stale: str | None = None) -> Path:
    """Render the report for one evaluation; every figure is embedded, nothing is loaded from the network. `stale`:
    why the evaluation no longer matches the run's synthetic set (shown above everything)."""
    conditions = [[n, *(f"{100 * v[f'{s}_mean']:.2f} ± {100 * v[f'{s}_std']:.2f}" for s in ("accuracy", "balanced_accuracy", "macro_f1")),
                   f"{100 * v['worst_class_accuracy_mean']:.1f}"] for n, v in metrics["conditions"].items()]
    fid = metrics["fidelity"]
    fidelity_rows = [["all classes", *(f"{fid[k]:.3f}" for k in ("frechet_distance", "precision", "recall", "density", "coverage"))]]
    fidelity_rows += [[c, *(f"{v[k]:.3f}" for k in ("frechet_distance", "precision", "recall", "density", "coverage"))]
                      for c, v in fid["per_class"].items()]
    near = fid["nearest_real"]
    context = {"ingest": _read(ingest_dir / "stats.json"), "gan": _read(gan_dir / "generator.json"),
               "gan_training": _read(gan_dir / "summary.json"),
               "evaluate": metrics["config"], "evaluate_seconds": metrics.get("seconds")}
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>augment report</title><style>{STYLE}</style></head><body>
<h1>Does the synthetic data help?</h1>{_stale(stale)}{_verdicts(metrics)}
<p class=note>Classifier trained {metrics['classifier_steps']} steps per run, {metrics['seeds']} seeds per condition (paired: same
initialisation and real-batch order), tested on {metrics['n_test']} held-out real images that neither the GAN nor
any choice saw. {metrics['n_train_real']} real training images, {metrics['n_synthetic']} synthetic.</p>
<h2>Conditions</h2>{_table(["condition", "accuracy %", "balanced accuracy %", "macro-F1 %", "worst class %"], conditions)}
{_conditions_plot(metrics)}
<h2>Per-class gains</h2>{_per_class_plot(metrics)}{_per_class_table(metrics)}
<h2>Samples: real (left) and synthetic (right)</h2>{_sample_grid(real, synthetic, metrics['classes'])}
<h2>Fidelity and diversity</h2><p class=note>In the feature space of {html.escape(fid['feature_space'])}, against the real
training images. Fréchet distance: lower is closer; precision: share of synthetic images that look real; recall: share
of the real variety that is reproduced; density/coverage: the same ideas, robust to outliers.</p>
{_table(["classes", "Fréchet distance", "precision", "recall", "density", "coverage"], fidelity_rows)}
<p>Nearest-real-image distance: median {near['synthetic_to_real']['q50']:.3f} for synthetic images, {near['real_to_real']['q50']:.3f}
between real images; <b>{near['suspected_copies']}</b> synthetic images are closer to a real image than any two real images
are to each other (likely copies).</p>{_distance_plot(fid, distances)}
<h2>GAN training</h2>{_curves_plot(gan_dir / "losses.csv", [("losses", ["loss_d", "loss_g", "d_real", "d_fake"])],
                                     "no losses.csv in the GAN folder")}
<p class=note>Fidelity of the EMA generator's samples during training, in the features of a quick classifier trained on
the real training images:</p>{_curves_plot(gan_dir / "quality.csv", [("Fréchet distance (lower is closer)", ["frechet_distance"]),
                                         ("", ["precision", "recall", "density", "coverage"])],
                                        "no quality.csv in the GAN folder (train.track_quality is off)")}
<h2>Configuration and timings</h2><pre>{html.escape(json.dumps(context, indent=2))}</pre>
</body></html>"""
    return storage.write_text(path, page)


def _stale(reason: str | None) -> str:
    if not reason:
        return ""
    return (f"<p class=stale><b>Stale:</b> {html.escape(reason)}. The figures below are from the evaluation before that; "
            "re-run the evaluate stage.</p>")


def _read(path: Path) -> dict:
    return storage.read_json(path) if path.is_file() else {}
