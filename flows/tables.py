"""The result table the CLI prints and the Prefect artifact shows, from metrics.json."""
from __future__ import annotations


def result_rows(metrics: dict) -> list[list[str]]:
    """Rows of the human result table: verdicts first, then every condition (accuracy in percent)."""
    rows = []
    choice = metrics.get("recommendation")
    if choice:
        result = choice.get("test_result")
        tested = f"{100 * result['mean']:.2f}" if result else "n/a"
        advice = "USE synthetic data" if choice["use_synthetic"] else "do NOT use synthetic data"
        rows.append([f"recommendation: {choice['setting'] or 'none'}", tested, f"{advice} (chosen on validation)"])
    for name, gain in metrics["gain"].items():
        interval = "n/a" if gain["ci95"] is None else f"[{100 * gain['ci95'][0]:+.2f}, {100 * gain['ci95'][1]:+.2f}]"
        worst = f"; worst class {100 * gain['worst_class_gain']['mean']:+.2f}" if "worst_class_gain" in gain else ""
        rows.append([f"gain {name}", f"{100 * gain['mean']:+.2f}", f"{gain['verdict'].upper()}  95% CI {interval}{worst}"])
    for name, values in metrics["conditions"].items():
        runs = ", ".join(f"{100 * v:.1f}" for v in values["accuracy_runs"])
        rows.append([name, f"{100 * values['accuracy_mean']:.2f} ± {100 * values['accuracy_std']:.2f}",
                     f"{runs}  (worst class {100 * values['worst_class_accuracy_mean']:.1f})"])
    return rows
