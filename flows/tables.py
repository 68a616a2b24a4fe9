"""The result table the CLI prints and the Prefect artifact shows, from metrics.json."""
from __future__ import annotations


def _interval(gain: dict) -> str:
    return "n/a" if gain["ci95"] is None else f"[{100 * gain['ci95'][0]:+.2f}, {100 * gain['ci95'][1]:+.2f}]"


def result_rows(metrics: dict) -> list[list[str]]:
    """Rows of the human result table: the recommendation and why, every paired comparison with what the run could
    resolve, then every condition (accuracy in percent)."""
    rows = []
    choice = metrics.get("recommendation")
    if choice:
        result = choice.get("test_result")
        tested = f"{100 * result['mean']:.2f}" if result else "n/a"
        advice = ("INCONCLUSIVE: no synthetic data recommended" if choice.get("inconclusive") else
                  "USE synthetic data" if choice["use_synthetic"] else "do NOT use synthetic data")
        chosen = "by cross-validation" if choice.get("cross_validation") else "on validation"
        rows.append([f"recommendation: {choice['setting'] or 'none'}", tested, f"{advice} (chosen {chosen})"])
        rows.append(["why", "", choice["reason"]])
    for name, gain in metrics["gain"].items():
        treated, baseline = name.split("_vs_")
        worst = f"; worst class {100 * gain['worst_class_gain']['mean']:+.2f}" if "worst_class_gain" in gain else ""
        detectable = gain.get("min_detectable_gain")
        resolve = f"; detects gains above {100 * detectable:.1f}" if detectable is not None else "; one seed: no interval"
        rows.append([f"{treated} vs {baseline}", f"{100 * gain['mean']:+.2f}",
                     f"{gain['verdict'].upper()}  95% CI {_interval(gain)}{worst}{resolve}"])
    for name, values in metrics["conditions"].items():
        runs = ", ".join(f"{100 * v:.1f}" for v in values["accuracy_runs"])
        rows.append([name, f"{100 * values['accuracy_mean']:.2f} ± {100 * values['accuracy_std']:.2f}",
                     f"{runs}  (worst class {100 * values['worst_class_accuracy_mean']:.1f})"])
    return rows
