"""report.html: one self-contained page (PNG plots embedded) that leads with the verdict."""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import subprocess
from importlib import metadata
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to memory
matplotlib.rcParams["text.parse_math"] = False  # class names are text: '$1_$2' must not be read as TeX math
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline import storage  # noqa: E402
from pipeline.evaluate.conditions import advice  # noqa: E402

GRID_COLUMNS = 8
PROGRESS_GRIDS = 4    # training-progress sample grids shown: the first, the last and evenly spaced ones between
CLOSEST_PAIRS = 8     # synthetic images shown beside their nearest real image, closest first
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.verdict{font-size:1.5em;padding:.6em 1em;
margin:.5em 0;border-radius:6px}.gain{background:#d9f2d9}.loss{background:#f8d7d7}.neutral{background:#eee}
img{max-width:100%;image-rendering:pixelated}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em}
.note{color:#555}.stale{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em;border-radius:6px}
.identity{font-size:.85em;border:1px solid #ddd;border-radius:6px;padding:.4em .8em;display:grid;
grid-template-columns:max-content 1fr max-content 1fr;gap:.15em 1em}.identity b{color:#555;font-weight:600}
.todo{font-size:.62em;margin-top:.4em;line-height:1.45}.todo b{font-size:1.3em}table.samples td{text-align:left;padding:6px}table.samples img{height:auto}
figure{display:inline-block;margin:0 .5em .5em 0;text-align:center;font-size:.8em;color:#555}
figure img{width:250px}figure.pair img{width:auto}.copy{background:#f8d7d7}"""


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return _img(buffer.getvalue())


def _img(data: bytes, alt: str = "plot") -> str:
    return f'<img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _strip(images: np.ndarray, channels: int, side: int) -> str:
    """GRID_COLUMNS images side by side (padded with black: a class may have fewer), upscaled to >= 48 px for the eye."""
    images = np.concatenate([images, np.zeros((GRID_COLUMNS - len(images), channels, side, side), np.uint8)])
    strip = np.concatenate([np.pad(i, ((0, 0), (0, 0), (0, 2)), constant_values=255) for i in images], axis=2)
    return _image(strip.transpose(1, 2, 0), max(1, 48 // side), "samples")


def _image(pixels: np.ndarray, scale: int, alt: str) -> str:
    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return _img(buffer.getvalue(), alt)


def _sample_grid(real: tuple[np.ndarray, np.ndarray], sets: dict, classes: list[str]) -> str:
    """One row per class, named: 8 real training images | 8 images of each synthetic source."""
    shape = real[0].shape[1], real[0].shape[-1]
    head = "".join(f"<th>{html.escape(_source_title(name))}</th>" for name in sets)
    rows = "".join(f"<tr><th>{html.escape(name)}</th><td>{_strip(real[0][real[1] == index][:GRID_COLUMNS], *shape)}</td>"
                   + "".join(f"<td>{_strip(images[images_labels == index][:GRID_COLUMNS], *shape)}</td>"
                             for images, images_labels in sets.values()) + "</tr>"
                   for index, name in enumerate(classes))
    return f"<table class=samples><tr><th>class</th><th>real training images</th>{head}</tr>{rows}</table>"


def _source_title(name: str) -> str:
    return "synthetic images (this run's generator)" if name == "synthetic" else f"source '{name}'"


GRID_NAME = re.compile(r"step_(\d{1,9})\.png")


def _progress_grids(gan_dir: Path) -> str:
    """The GAN's sample grids over training (train.sample_every), so a reader sees what it learnt when. Only plain
    files named as the trainer names them are embedded: a link in a run folder that travelled is never followed."""
    folder = gan_dir / "samples"
    found = [] if folder.is_symlink() or not folder.is_dir() else sorted(folder.iterdir())
    grids = [(int(match.group(1)), data) for path in found if (match := GRID_NAME.fullmatch(path.name))
             and (data := storage.read_plain_bytes(path)) is not None]
    if not grids:
        return "<p class=note>no sample grids in the GAN folder</p>"
    picks = sorted({round(i * (len(grids) - 1) / max(1, PROGRESS_GRIDS - 1)) for i in range(PROGRESS_GRIDS)})
    return "".join(f"<figure>{_img(grids[i][1], f'step {grids[i][0]}')}<figcaption>step {grids[i][0]}</figcaption></figure>"
                   for i in picks)


def confusion_conditions(metrics: dict) -> list[str]:
    """The conditions whose confusion matrices are drawn (and written for DVC): the classical baseline(s), the tool's
    synthetic condition and the recommendation, in that order, each once."""
    choice = (metrics.get("recommendation") or {}).get("setting")
    wanted = ["real+aug", "real+aug+resampled", "real+aug+synthetic", choice]
    return [name for name in dict.fromkeys(wanted) if name in metrics["conditions"]]


def _confusion_plots(metrics: dict) -> str:
    """Row-normalised confusion matrices (share of each actual class predicted as each class, all seeds)."""
    names, classes = confusion_conditions(metrics), metrics["classes"]
    if not names:
        return ""
    figure, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.6), squeeze=False)
    for axis, name in zip(axes[0], names):
        matrix = np.asarray(metrics["conditions"][name]["confusion_matrix"], dtype=float)
        share = 100 * matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        axis.imshow(share, cmap="Blues", vmin=0, vmax=100)
        if len(classes) <= 12:
            for (row, column), value in np.ndenumerate(share):
                if value >= 0.5:
                    axis.text(column, row, f"{value:.0f}", ha="center", va="center", fontsize=6,
                              color="white" if value > 60 else "black")
        ticks = range(len(classes)) if len(classes) <= 30 else []
        axis.set_xticks(ticks, [classes[i] for i in ticks], fontsize=6, rotation=90 if len(classes) > 12 else 0)
        axis.set_yticks(ticks, [classes[i] for i in ticks], fontsize=6)
        axis.set_title(name, fontsize=8)
        axis.set_xlabel("predicted", fontsize=7)
    axes[0][0].set_ylabel("actual", fontsize=7)
    return _png(figure)


def _conditions_plot(metrics: dict) -> str:
    names = list(metrics["conditions"])
    means = [100 * metrics["conditions"][n]["accuracy_mean"] for n in names]
    stds = [100 * metrics["conditions"][n]["accuracy_std"] for n in names]
    figure, axis = plt.subplots(figsize=(7, 3))
    axis.barh(names, means, xerr=stds, color="#6a9fd4")
    for y, name in enumerate(names):
        axis.scatter([100 * v for v in metrics["conditions"][name]["accuracy_runs"]], [y] * metrics["seeds"], s=8, c="k", zorder=3)
    axis.set_xlim(0, 100)  # from zero: a cut axis makes a one-point difference look like a landslide
    axis.set_xlabel("held-out real accuracy (%), mean ± std, dots = seeds")
    axis.invert_yaxis()
    return _png(figure)


def _per_class_plot(metrics: dict) -> str:
    classes = metrics["classes"]
    # The gains the verdict rests on: every synthetic setting against the run's strongest baseline.
    strongest = "real+aug+resampled" if "real+aug+resampled" in metrics["conditions"] else "real+aug"
    shown = {name: gain for name, gain in metrics["gain"].items() if name.endswith(f"_vs_{strongest}")} or metrics["gain"]
    figure, axis = plt.subplots(figsize=(7, 3))
    width = 0.8 / max(1, len(shown))
    for k, (name, gain) in enumerate(shown.items()):
        values = [100 * gain["per_class_gain_mean"][c] for c in classes]
        axis.bar(np.arange(len(classes)) + (k - (len(shown) - 1) / 2) * width, values, width, label=name.replace("_vs_", " vs "))
    axis.axhline(0, color="k", linewidth=0.8)
    axis.set_xticks(range(len(classes)), classes, rotation=45 if len(classes) > 12 else 0)
    axis.set_ylabel("accuracy gain (points)")
    axis.legend(fontsize=8)
    return _png(figure)


def _curves_plot(path: Path, panels: list[tuple[str, list[str]]], missing: str) -> str:
    """Columns of a per-step CSV as lines against `step`, one panel per (title, columns)."""
    data = storage.read_plain_bytes(path)
    if data is None:
        return f"<p class=note>{html.escape(missing)}</p>"
    try:
        rows = list(csv.DictReader(io.StringIO(data.decode())))
        steps = [int(r["step"]) for r in rows]
        columns = {key: [float(r[key]) for r in rows] for _, keys in panels for key in keys}
    except (KeyError, ValueError, TypeError, csv.Error):
        return f"<p class=note>{html.escape(path.name)} is damaged: not drawn</p>"
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 2, 2.8), squeeze=False)
    for axis, (title, keys) in zip(axes[0], panels):
        for key in keys:
            axis.plot(steps, columns[key], marker="o" if len(rows) < 30 else None, label=key)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("step")
        axis.legend(fontsize=7)
    return _png(figure)


def _distance_plot(fidelity: dict, distances: np.ndarray) -> str:
    """The histogram of every synthetic image's distance to its nearest real training image."""
    figure, axis = plt.subplots(figsize=(7, 2.6))
    axis.hist(distances, bins=40, color="#d48a6a")
    axis.axvline(fidelity["nearest_real"]["copy_threshold"], color="k", linestyle="--", label="closest pair of real images")
    axis.set_xlabel("feature distance from each synthetic image to its nearest real training image")
    axis.legend(fontsize=8)
    return _png(figure)


def _copies(nearest: np.ndarray | None, real, synthetic, classes: list[str], fidelity: dict) -> str:
    if nearest is None:
        return "<p class=note>The synthetic images were regenerated after this evaluation: re-run it to see the pairs.</p>"
    return _closest_pairs(nearest, real, synthetic, classes, fidelity["nearest_real"]["copy_threshold"]) + \
        _distance_plot(fidelity, nearest[0])


def _closest_pairs(nearest: np.ndarray, real, synthetic, classes: list[str], threshold: float) -> str:
    """The synthetic images closest to a real training image, each beside that image; copies are marked."""
    distances, index = nearest[0], nearest[1].astype(np.int64)
    scale = max(1, 64 // real[0].shape[-1])
    pairs = []
    for j in np.argsort(distances, kind="stable")[:CLOSEST_PAIRS]:
        pair = np.concatenate([synthetic[0][j], np.full_like(synthetic[0][j][..., :2], 255), real[0][index[j]]], axis=2)
        copy = distances[j] < threshold
        pairs.append(f"<figure class='pair{' copy' if copy else ''}'>{_image(pair.transpose(1, 2, 0), scale, 'synthetic | nearest real')}"
                     f"<figcaption>{html.escape(classes[synthetic[1][j]])} | real {html.escape(classes[real[1][index[j]]])}, "
                     f"distance {distances[j]:.3f}{' <b>copy?</b>' if copy else ''}</figcaption></figure>")
    return f"<div>{''.join(pairs)}</div>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _per_class_table(metrics: dict) -> str:
    """Per class: real and synthetic training images, accuracy of each compared condition, and the gains."""
    header, rows = ["class", "real train", "synthetic"], []
    for name in metrics["gain"]:
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


def _verdict_box(metrics: dict, run_dir: Path | None = None) -> str:
    """One box that says what to do: the setting chosen on validation, why, its test result against the best setting
    without synthetic images, what the run could resolve, and how to get that training set."""
    choice = metrics.get("recommendation")
    if not choice or not choice.get("setting"):
        reason = choice["reason"] if choice else "no recommendation was made"
        return (f'<div class="verdict neutral"><b>No recommendation</b><br><span class=note>{html.escape(reason)}.'
                " The comparisons below are on the test images only.</span></div>")
    setting, result = choice["setting"], choice.get("test_result") or {}
    if choice.get("inconclusive"):
        head, kind = "Inconclusive: no synthetic images recommended", "neutral"
    elif choice["use_synthetic"]:
        head, kind = "Use the synthetic images", "gain"
    else:
        head, kind = "Do not use the synthetic images", "neutral"
    tested = ""
    if result:
        tested = f"Test accuracy of this setting: <b>{100 * result['mean']:.2f} ± {100 * result['std']:.2f}%</b>"
        gain = result.get("gain")
        if gain:
            interval = "" if gain["ci95"] is None else f", 95% CI [{100 * gain['ci95'][0]:+.2f}, {100 * gain['ci95'][1]:+.2f}]"
            tested += (f" ({100 * gain['mean']:+.2f} points against {html.escape(result['gain_vs'])}{interval}: "
                       f"{html.escape(gain['verdict'])})")
        tested += ".<br>"
    validation = (choice.get("validation") or {}).get("gain") or {}
    folded = choice.get("cross_validation")
    judged = "cross-validated images" if folded else "validation images"
    resolve = ""
    if validation.get("min_detectable_gain") is not None:
        resolve = (f"With {validation['seeds']} seeds and {validation['images']} {judged} this run could "
                   f"reliably detect a gain above {100 * validation['min_detectable_gain']:.1f} points; "
                   "smaller ones pass unseen. ")
    if folded and folded.get("left_out"):
        resolve += html.escape(f"Not candidates: {', '.join(folded['left_out'])} ({folded['why_left_out']}). ")
    run = html.escape(str(run_dir)) if run_dir is not None else "RUN"
    info = metrics["conditions"].get(setting, {})
    todo = advice(setting, choice.get("synthetic_share", 0.0), info.get("base"), info.get("source", "synthetic"))
    return (f'<div class="verdict {kind}"><b>{head}</b>: {html.escape(todo)}.'
            f'<div class="todo">{tested}<span class=note>Chosen on the {judged}, never on the test images: '
            f'{html.escape(choice["reason"])}. {resolve}<code>augment export --run {run} --out EXPORT_FOLDER</code> '
            "writes this training set as an ImageFolder.</span></div></div>")


def _gains_table(metrics: dict) -> str:
    """Every paired comparison on the test images: gain, interval, verdict, what the seeds could resolve, worst class."""
    rows = []
    for name, gain in metrics["gain"].items():
        treated, baseline = name.split("_vs_")
        interval = "n/a" if gain["ci95"] is None else f"[{100 * gain['ci95'][0]:+.2f}, {100 * gain['ci95'][1]:+.2f}]"
        worst = gain.get("worst_class_gain")
        detectable = gain.get("min_detectable_gain")
        rows.append([treated, baseline, f"{100 * gain['mean']:+.2f}", interval, gain["verdict"],
                     "n/a" if detectable is None else f"{100 * detectable:.1f}",
                     "" if worst is None else f"{100 * worst['mean']:+.2f}"])
    notes = sorted({gain["verdict_note"] for gain in metrics["gain"].values() if gain.get("verdict_note")})
    note = "".join(f"<p class=note>{html.escape(n[0].upper() + n[1:])}.</p>" for n in notes)
    return _table(["condition", "against", "gain (points)", "95% CI", "verdict", "detectable above (points)",
                   "worst-class gain"], rows) + note


def _code_version() -> str:
    """The installed augment version, and the git commit of this checkout when it is one (+ if it has edits)."""
    try:
        text = f"augment {metadata.version('augment')}"
    except metadata.PackageNotFoundError:
        text = "augment (not installed)"
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
                               text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return text
    if commit.returncode == 0:
        text += f", commit {commit.stdout.strip()}{'+' if dirty.stdout.strip() else ''}"
    return text


def _identity(metrics: dict, ingest_dir: Path, gan_dir: Path | None, synthetic_dir: Path | None) -> str:
    """What was run, on what, when, by which code, with which split and how long each stage took."""
    stats, spec = _read(ingest_dir / "stats.json"), _read(gan_dir / "generator.json") if gan_dir else {}
    gan = _read(gan_dir / "summary.json") if gan_dir else {}
    made = _read(synthetic_dir / "summary.json") if synthetic_dir else {}
    train, ev = spec.get("train", {}), metrics["config"]
    counts = [c["train"] for c in stats.get("per_class", {}).values()] or [0]
    quarantined = stats.get("n_quarantined", 0)
    seconds = lambda d: f"{d['seconds']:.0f} s" if isinstance(d.get("seconds"), (int, float)) else "n/a"
    items = [
        ("dataset", f"{stats.get('dataset', '?')} ({len(metrics['classes'])} classes, {stats.get('image_size', '?')} px, "
                    f"{'RGB' if stats.get('channels') == 3 else 'gray'})"),
        ("evaluated", metrics.get("evaluated_at", "unknown (an evaluation from an older version)")),
        ("split", f"{stats.get('n_train', '?')} train ({min(counts)}–{max(counts)} per class), {stats.get('n_val', '?')} "
                  f"validation, {stats.get('n_test', '?')} test ({stats.get('split', '?')})"),
        ("code", _code_version()),
        ("quarantined", f"{quarantined} file(s)" + (f": {ingest_dir / 'quarantine.csv'}" if quarantined else "")),
        ("GAN", f"{train.get('mode', '?')}, {train.get('steps', '?')} steps, batch {train.get('batch_size', '?')}, "
                f"keep {train.get('keep', '?')}"),
        ("synthetic", f"{metrics['n_synthetic']} images ({made.get('per_class', '?')} per class, filter "
                      f"{made.get('filter', '?')}{', balanced top-up' if made.get('balance') else ''})"),
        ("classifier", f"{ev.get('model', '?')}, {metrics['classifier_steps']} steps, {metrics['seeds']} paired seeds, "
                       f"augment {ev.get('augment', '?')} @ {ev.get('augment_probability', '?')}"),
        ("time per stage", f"ingest {seconds(stats)}, train {seconds(gan)}, generate {seconds(made)}, "
                           f"evaluate {seconds(metrics)}"),
    ]
    cells = "".join(f"<b>{html.escape(k)}</b><span>{html.escape(str(v))}</span>" for k, v in items)
    return f"<div class=identity>{cells}</div>"


def write_report(path: Path, *args, **kwargs) -> Path:
    """render_report(*args, **kwargs), written to path."""
    return storage.write_text(path, render_report(*args, **kwargs))


FIDELITY_KEYS = ("frechet_distance", "precision", "recall", "density", "coverage")


def _fidelity_section(name: str, fid: dict, nearest: np.ndarray | None, real, images, classes: list[str],
                      source: dict | None) -> str:
    """One synthetic set's fidelity table, copy check and closest pairs (and, for an outside source, what was read)."""
    rows = [["all classes", *(f"{fid[k]:.3f}" for k in FIDELITY_KEYS)]]
    rows += [[c, *(f"{v[k]:.3f}" for k in FIDELITY_KEYS)] for c, v in fid["per_class"].items()]
    near = fid["nearest_real"]
    read = ""
    if source:
        excluded = source.get("excluded") or []
        listed = "".join(f"<li>{html.escape(e['file'])}: {html.escape(e['reason'])}</li>" for e in excluded[:20])
        read = (f"<p>Read from <code>{html.escape(source.get('folder', '?'))}</code>: {source.get('n_images', '?')} images "
                f"kept, {source.get('n_quarantined', 0)} quarantined (unreadable), <b>{source.get('n_excluded', 0)}</b> "
                "excluded as copies of validation or test images" + (f" (<ul>{listed}</ul>)" if listed else "") + ". "
                + (f"No images of {html.escape(', '.join(source['missing_classes']))}: its conditions use the other "
                   "classes' images only. " if source.get("missing_classes") else "") + "</p>")
    return f"""<h3>{html.escape(_source_title(name))}</h3>{read}
{_table(["classes", "Fréchet distance", "precision", "recall", "density", "coverage"], rows)}
<p>Copies of training images: all {near['checked']} images were checked against every real training image in the same
features. Median distance to the nearest real image: {near['synthetic_to_real']['q50']:.3f} for these images,
{near['real_to_real']['q50']:.3f} between real images; <b>{near['suspected_copies']}</b> are closer to a real image than
the closest two real images are to each other ({near['copy_threshold']:.3f}): suspected copies. The {CLOSEST_PAIRS}
closest, each (left) beside its nearest real image (right), with their classes:</p>
{_copies(nearest, real, images, classes, fid)}"""


def _gan_section(gan_dir: Path | None) -> str:
    if gan_dir is None or not gan_dir.is_dir():
        return "<h2>GAN training</h2><p class=note>No generator was trained in this run (outside sources only).</p>"
    return f"""<h2>GAN training</h2><p class=note>Sample grids of the EMA generator during training:</p>{_progress_grids(gan_dir)}
{_curves_plot(gan_dir / "losses.csv", [("losses", ["loss_d", "loss_g", "d_real", "d_fake"])], "no losses.csv in the GAN folder")}
<p class=note>Fidelity of the EMA generator's samples during training, in the features of a quick classifier trained on
the real training images (300 steps, width 16). Its Fréchet distances are on another scale than the tables above
(other features, fewer samples): compare them along this curve, not with the tables.</p>{_curves_plot(gan_dir / "quality.csv", [("Fréchet distance (lower is closer)", ["frechet_distance"]),
                                         ("", ["precision", "recall", "density", "coverage"])],
                                        "no quality.csv in the GAN folder (train.track_quality is off)")}"""


def render_report(metrics: dict, real, sets: dict, nearest: dict, gan_dir: Path | None, ingest_dir: Path,
                  synthetic_dir: Path | None = None, stale: str | None = None) -> str:
    """The report page for one evaluation; every figure is embedded, nothing is loaded from the network.
    sets: source -> (images, labels) ('synthetic' is the run's own generator); nearest: source -> 2 x N, every image's
    feature distance to its nearest real training image and that image's index (None: not available).
    `stale`: why the evaluation no longer matches the run's synthetic set (shown above everything)."""
    conditions = [[n, *(f"{100 * v[f'{s}_mean']:.2f} ± {100 * v[f'{s}_std']:.2f}" for s in ("accuracy", "balanced_accuracy", "macro_f1")),
                   f"{100 * v['worst_class_accuracy_mean']:.1f}"] for n, v in metrics["conditions"].items()]
    fidelities = {"synthetic": metrics["fidelity"]} if metrics.get("fidelity") else {}
    fidelities.update({name: source["fidelity"] for name, source in (metrics.get("sources") or {}).items()})
    space = next(iter(fidelities.values()))["feature_space"] if fidelities else "?"
    fidelity = "".join(_fidelity_section(name, fid, nearest.get(name), real, sets[name], metrics["classes"],
                                         (metrics.get("sources") or {}).get(name))
                       for name, fid in fidelities.items() if name in sets)
    context = {"ingest": _read(ingest_dir / "stats.json"), "gan": _read(gan_dir / "generator.json") if gan_dir else {},
               "gan_training": _read(gan_dir / "summary.json") if gan_dir else {},
               "evaluate": metrics["config"], "evaluate_seconds": metrics.get("seconds")}
    outside = ", ".join(f"{name}: {len(images[1])}" for name, images in sets.items() if name != "synthetic")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>augment report</title><style>{STYLE}</style></head><body>
<h1>Does the synthetic data help?</h1>{_identity(metrics, ingest_dir, gan_dir, synthetic_dir)}{_stale(stale)}{_verdict_box(metrics, ingest_dir.parent)}
<p class=note>Classifier trained {metrics['classifier_steps']} steps per run, {metrics['seeds']} seeds per condition (paired: same
initialisation and real-batch order), tested on {metrics['n_test']} held-out real images that neither the GAN nor
any choice saw. {metrics['n_train_real']} real training images, {metrics['n_synthetic']} synthetic from this run's
generator{f"; outside sources ({html.escape(outside)} images)" if outside else ""}.</p>
<h2>Comparisons on the test images</h2>{_gains_table(metrics)}
<h2>Conditions</h2>{_table(["condition", "accuracy %", "balanced accuracy %", "macro-F1 %", "worst class %"], conditions)}
{_conditions_plot(metrics)}
<h2>Confusion matrices</h2><p class=note>Share (%) of each actual class predicted as each class, test images, all seeds.</p>
{_confusion_plots(metrics)}
<h2>Per-class gains</h2>{_per_class_plot(metrics)}{_per_class_table(metrics)}
<h2>Samples</h2>{_sample_grid(real, sets, metrics['classes'])}
<h2>Fidelity and diversity</h2><p class=note>In the feature space of {html.escape(space)}, against the real
training images. Fréchet distance: lower is closer; precision: share of synthetic images that look real; recall: share
of the real variety that is reproduced; density/coverage: the same ideas, robust to outliers.</p>
{fidelity}
{_gan_section(gan_dir)}
<h2>Configuration and timings</h2><details><summary>the resolved configuration, stage by stage (JSON)</summary>
<pre>{html.escape(json.dumps(context, indent=2))}</pre></details>
</body></html>"""
    return page


def _stale(reason: str | None) -> str:
    if not reason:
        return ""
    return (f"<p class=stale><b>Stale:</b> {html.escape(reason)}. The figures below are from the evaluation before that; "
            "re-run the evaluate stage.</p>")


def _read(path: Path) -> dict:
    """A JSON object the run wrote, for context only: a missing, linked or damaged file shows as empty."""
    data = storage.read_plain_bytes(path)
    try:
        value = json.loads(data) if data is not None else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
