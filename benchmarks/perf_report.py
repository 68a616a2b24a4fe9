"""Results of benchmarks/performance.py: merged into results.json, rendered as the markdown table results.md."""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path



def row_command(row_id: str, args: argparse.Namespace) -> str:
    """The command that re-measures just this row under the same settings."""
    parts = ["python", "benchmarks/performance.py", "--only", row_id, "--threads", str(args.threads)]
    if args.quick:
        parts.append("--quick")
    if args.reuse_run and row_id in ("P3", "P5"):
        parts += ["--reuse-run", str(args.reuse_run)]
        if args.reuse_wall_seconds is not None:
            parts += ["--reuse-wall-seconds", str(args.reuse_wall_seconds)]
    return shlex.join(parts)


def merge_results(folder: Path, mode: str, run_info: dict, rows: dict) -> dict:
    """Update results.json (results-quick.json in quick mode) with these rows, keeping other rows from earlier runs;
    write it and results.md next to it; return the merged results."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / ("results" if mode == "full" else "results-quick")
    path = stem.with_suffix(".json")
    results = json.loads(path.read_text()) if path.is_file() else {"runs": [], "rows": {}}
    results["runs"] = [*results["runs"], {**run_info, "rows": sorted(rows)}][-10:]
    results["rows"].update(rows)
    results["rows"] = dict(sorted(results["rows"].items()))
    path.write_text(json.dumps(results, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(results))
    return results


def _met(value) -> str:
    return {True: "yes", False: "**no**", None: "—"}[value]


def _load(row: dict) -> str:
    return f"{row['loadavg_before'][0]:.2f} → {row['loadavg_after'][0]:.2f}"


def markdown(results: dict) -> str:
    """The table (id, what, figure, target, met, load average before → after) and each row's command and details."""
    last = results["runs"][-1]
    lines = [f"Performance (issue #8), {last['mode']} mode: torch {last['torch']}, {last['threads']} thread(s) on "
             f"{last['cores']} core(s). Load average is the 1-minute figure before → after the row.", "",
             "| id | what | measured | target | met? | load avg | row time |", "|---|---|---|---|---|---|---|"]
    for row in results["rows"].values():
        lines.append(f"| {row['id']} | {row['what']} | {row['figure']} | {row['target']} | {_met(row['met'])} | "
                     f"{_load(row)} | {row['seconds']:.0f} s |")
    lines += ["", "Commands (each row's figure was produced by this command; the runs that wrote this file are listed last):", ""]
    lines += [f"- {row['id']}: `{row['command']}`" for row in results["rows"].values()]
    lines += ["", "Details:", ""]
    for row in results["rows"].values():
        lines.append(f"- {row['id']}: `{json.dumps(row['details'], separators=(', ', ': '))}`")
    lines += ["", "Runs:", ""]
    lines += [f"- {run['finished']}: `{run['command']}` (rows {', '.join(run['rows'])})" for run in results["runs"]]
    return "\n".join(lines) + "\n"
