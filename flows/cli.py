"""The `augment` command line: parse typed options, build one config, call one function."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from flows.process import bound_shutdown, console, filter_user_error_tracebacks, run_app
from flows.names import HELP, Runner, Stage
from pipeline import config as config_module
from pipeline.errors import AugmentError

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Train a class-conditional GAN on a small image folder and measure whether its images help a classifier.")

ParamsOption = Annotated[Optional[Path], typer.Option("--params", help=HELP["params"])]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", help=HELP["set"])]
PerClassOption = Annotated[Optional[int], typer.Option(help=f"generate.per_class: {config_module.help_for('generate.per_class')}.")]
RunnerOption = Annotated[Runner, typer.Option(help="Where fanned-out tasks (per-class generators, classifier seeds) run: local (one at a time) or dask.")]
DaskAddressOption = Annotated[Optional[str], typer.Option(help="An existing Dask scheduler, e.g. tcp://host:8786 (with --runner dask); default: a LocalCluster on this machine.")]
DaskWorkersOption = Annotated[Optional[int], typer.Option(help="Worker processes of the LocalCluster (1 thread each); default: one per CPU core.")]
SyntheticOption = Annotated[Optional[list[str]], typer.Option("--synthetic", help="An outside synthetic source, NAME=FOLDER: an ImageFolder of the dataset's classes made elsewhere (a diffusion model, a renderer, another GAN), measured beside the others (repeatable; evaluate.sources).")]
FoldsOption = Annotated[Optional[int], typer.Option(help=f"evaluate.folds: {config_module.help_for('evaluate.folds')}; 5 judges by every real image outside the test split (five times the validation split), for 6x the classifiers of each candidate; outside sources only.")]
TorchThreadsOption = Annotated[Optional[int], typer.Option(help="torch threads per task with --runner dask; default 1 (one worker per core).")]
CronOption = Annotated[str, typer.Option(help='Cron schedule of the runs, e.g. "0 3 * * *" (every day at 03:00).')]
NameOption = Annotated[str, typer.Option(help="Deployment name; the deployment is augment/NAME.")]


def _version(value: bool) -> None:
    """--version: this package's version and the versions of what it runs on, then exit."""
    if value:
        from importlib.metadata import version

        import torch

        device = f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no CUDA GPU"
        print(f"augment {version('augment')} (torch {torch.__version__}, {device}; prefect {version('prefect')}, "
              f"dvc {version('dvc')}, python {sys.version.split()[0]})")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                   help="Print the version (and torch, CUDA, Prefect, DVC) and exit.")] = False) -> None:
    """Train a class-conditional GAN on a small image folder and measure whether its images help a classifier."""


def _load_config(params: Optional[Path], overrides: list[str]) -> config_module.Config:
    if params is None and Path("params.yaml").is_file():
        params = Path("params.yaml")
        console.print(f"reading {params.resolve()}")
    return config_module.load(params, overrides)


def _print_result(metrics: dict, out_dir: Path) -> None:
    from flows.tables import result_rows

    table = Table(title=f"held-out real test images: {metrics['n_test']}, classifier seeds: {metrics['seeds']}")
    for column in ("condition", "accuracy (%)", "runs / 95% interval"):
        table.add_column(column)
    for row in result_rows(metrics):
        table.add_row(*row)
    Console(width=max(Console().width, 110)).print(table)
    console.print(f"outputs in {out_dir}  (metrics: {out_dir / 'evaluation' / 'metrics.json'})")


@app.command()
def run(
    dataset: Annotated[Optional[Path], typer.Option(help=f"ingest.dataset: {config_module.help_for('ingest.dataset')}.")] = None,
    per_class: PerClassOption = None,
    balance: Annotated[Optional[bool], typer.Option("--balance/--no-balance", help=f"generate.balance: {config_module.help_for('generate.balance')}; the target is --per-class if given, else the largest class's real training count.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder; default: runs/<dataset folder name> (outputs/ in a DVC project).")] = None,
    params: ParamsOption = None,
    set_: SetOption = None,
    dvc: Annotated[Optional[bool], typer.Option("--dvc/--no-dvc", help="Run the stages through `dvc repro` so dvc.lock versions them; default: when the current folder is a DVC project and --out is not another folder.")] = None,
    runner: RunnerOption = Runner.local,
    dask_address: DaskAddressOption = None,
    dask_workers: DaskWorkersOption = None,
    torch_threads: TorchThreadsOption = None,
    synthetic: SyntheticOption = None,
    folds: FoldsOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config, the per-class plan, the disk and time estimates; write nothing.")] = False,
) -> None:
    """Run the whole pipeline (ingest, train, generate, evaluate) as a Prefect flow and print the result table."""
    from flows import versioning
    from flows.runners import task_runner
    from pipeline import plan

    overrides, config = _config_with_shorthands(dataset, per_class, params, set_, balance, synthetic, folds)
    task_runner(runner.value, dask_address, dask_workers, torch_threads)  # checks the options before anything starts
    use_dvc = dvc
    if use_dvc is None:  # by default DVC versions the run in a DVC project, unless --out names another folder
        use_dvc = versioning.is_dvc_project(Path.cwd()) and (out is None or out.resolve() == versioning.DVC_OUT.resolve())
        if not use_dvc and out is not None and versioning.is_dvc_project(Path.cwd()):
            console.print(f"not versioned by DVC: --out {out} is outside the DVC project's {versioning.DVC_OUT}/ (drop --out to version it)")
    out_dir = versioning.DVC_OUT if use_dvc else out or Path("runs") / Path(config.ingest.dataset).resolve().name
    # Fail fast, before a Prefect server starts and hours before generation, on what can be checked now.
    plan.preflight(config, out_dir, user_code=not dry_run)
    if dry_run:
        return _print_plan(config)
    if use_dvc:
        _check_dvc_mode(params, out)
        if runner is not Runner.local:
            raise AugmentError("--runner dask fans out tasks of the Prefect flow; in a DVC project add --no-dvc")
    filter_user_error_tracebacks()
    if use_dvc:
        changed = versioning.write_overrides(Path("params.yaml"), config, overrides)
        if changed:
            console.print(f"params.yaml updated: {', '.join(changed)}")
        from flows.augment import augment_dvc_flow

        metrics = augment_dvc_flow(params=config, repo=str(Path.cwd()))
    else:
        metrics = _run_flow(config, out_dir, runner, dask_address, dask_workers, torch_threads)
    _print_result(metrics, out_dir)


def _run_flow(config: config_module.Config, out_dir: Path, runner: Runner, dask_address, dask_workers, torch_threads,
              gan: bool = True) -> dict:
    """The Prefect flow on out_dir: checked, claimed and locked here, before the Prefect server starts; the flow does
    the same (re-entrant), since deployments call it without this command."""
    from flows.augment import augment_flow
    from pipeline import runfolder
    from pipeline.stages import inputs

    with runfolder.open_run(out_dir, inputs(config)):
        return augment_flow(params=config, out_dir=str(out_dir), runner=runner.value, dask_address=dask_address,
                            dask_workers=dask_workers, torch_threads=torch_threads, gan=gan)


@app.command("evaluate")
def evaluate_command(
    synthetic: Annotated[list[str], typer.Option("--synthetic", help="An outside synthetic source, NAME=FOLDER: an ImageFolder of the dataset's classes made elsewhere (repeatable: sources are compared with each other and with no synthetic data, paired by seed).")],
    dataset: Annotated[Optional[Path], typer.Option(help=f"ingest.dataset: {config_module.help_for('ingest.dataset')}.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder; default: runs/<dataset folder name>-evaluate.")] = None,
    params: ParamsOption = None,
    set_: SetOption = None,
    runner: RunnerOption = Runner.local,
    dask_address: DaskAddressOption = None,
    dask_workers: DaskWorkersOption = None,
    torch_threads: TorchThreadsOption = None,
    folds: FoldsOption = None,
) -> None:
    """Measure synthetic images made elsewhere (a diffusion model, a renderer, another GAN) the way `run` measures its
    own: the same ingest, baselines, paired seeds and recommendation chosen on validation (or, with --folds, by cross-validation); no generator is trained."""
    from flows.runners import task_runner
    from pipeline import plan

    _, config = _config_with_shorthands(dataset, None, params, set_, None, synthetic, folds)
    task_runner(runner.value, dask_address, dask_workers, torch_threads)
    out_dir = out or Path("runs") / f"{Path(config.ingest.dataset).resolve().name}-evaluate"
    plan.preflight(config, out_dir)
    filter_user_error_tracebacks()
    _print_result(_run_flow(config, out_dir, runner, dask_address, dask_workers, torch_threads, gan=False), out_dir)


def _print_plan(config: config_module.Config) -> None:
    """--dry-run: what the run would do, measured or counted without writing anything."""
    import yaml

    from pipeline import device, plan

    resolved = device.resolve(config)
    print(yaml.safe_dump(resolved.to_dict(), sort_keys=False).rstrip())
    result = plan.plan(resolved)
    table = Table(title="per-class plan (from the file list: undecodable files and duplicates are dropped later)")
    for column in ("class", "train", "validation", "test", "synthetic", "why"):
        table.add_column(column)
    for row in result["classes"]:
        table.add_row(str(row["class"]), str(row["real_train"]), str(row["val"]), str(row["test"]), str(row["generated"]), row["reason"])
    Console(width=max(Console().width, 110)).print(table)
    seconds = result["estimated_seconds"]
    print(f"synthetic images: {result['n_synthetic']} (at most {result['disk_bytes'] / 1e6:.1f} MB on disk); "
          f"classifier conditions: {result['conditions']} x {resolved.evaluate.seeds} seeds"
          + (f", and {result['cross_validated']} fold trainings x {resolved.evaluate.seeds} seeds for the cross-validated "
             "recommendation" if result["cross_validated"] else ""))
    print(f"estimated time on {result['device']}: train {seconds['train'] / 60:.1f} min, generate {seconds['generate'] / 60:.1f} min, "
          f"evaluate {seconds['evaluate'] / 60:.1f} min, total {sum(seconds.values()) / 60:.1f} min "
          f"(from {result['seconds_per_gan_step']:.3f} s per GAN step and {result['seconds_per_classifier_step']:.3f} s per "
          "classifier step timed just now; a rough guide)")
    print("dry run: nothing was written")


def _config_with_shorthands(dataset: Optional[Path], per_class: Optional[int], params: Optional[Path],
                            set_: Optional[list[str]], balance: Optional[bool] = None,
                            synthetic: Optional[list[str]] = None,
                            folds: Optional[int] = None) -> tuple[list[str], config_module.Config]:
    """The config from params + shorthands + --set, validated; each --synthetic NAME=FOLDER is added to the sources
    the params already name."""
    overrides = []  # shorthands first, so an explicit --set of the same key wins
    if dataset is not None:
        overrides.append(f"ingest.dataset={dataset}")
    if per_class is not None:
        overrides.append(f"generate.per_class={per_class}")
    if balance is not None:
        overrides.append(f"generate.balance={balance}")
        if balance and per_class is None:
            overrides.append("generate.per_class=0")  # no explicit target: up to the largest class
    if folds is not None:
        overrides.append(f"evaluate.folds={folds}")
    overrides += list(set_ or [])
    config = _load_config(params, overrides)
    if synthetic:
        joined = ", ".join(part for part in [config.evaluate.sources, *synthetic] if part.strip())
        overrides.append(f"evaluate.sources={joined}")
        config = config_module.apply_overrides(config, [overrides[-1]])
    return overrides, config


# serve and deploy take the same options; only deploy adds --pool.
ScheduledDatasetOption = Annotated[Path, typer.Option("--dataset", help="ImageFolder to retrain on at every scheduled run (read afresh each time; with deploy, the worker must see this path).")]
ScheduledOutOption = Annotated[Path, typer.Option(help="Parent folder: every run writes to a new <dataset>-<date>-<run id> folder in it.")]


def _scheduled_parameters(dataset, cron, per_class, params, set_, out, runner, dask_address, dask_workers, torch_threads) -> dict:
    """Checks shared by `serve` and `deploy` (cron, config, runner options, output location), then the flow's parameters."""
    from flows import deploy
    from flows.runners import task_runner
    from pipeline import plan, runfolder

    deploy.check_cron(cron)
    _, config = _config_with_shorthands(dataset, per_class, params, set_)
    task_runner(runner.value, dask_address, dask_workers, torch_threads)
    runfolder.check_output_location(config.ingest.dataset, out)
    plan.preflight(config, out)
    return deploy.flow_parameters(config, out, runner.value, dask_address, dask_workers, torch_threads)


@app.command()
def serve(
    dataset: ScheduledDatasetOption,
    cron: CronOption,
    name: NameOption,
    per_class: PerClassOption = None,
    out: ScheduledOutOption = Path("runs/scheduled"),
    params: ParamsOption = None,
    set_: SetOption = None,
    runner: RunnerOption = Runner.local,
    dask_address: DaskAddressOption = None,
    dask_workers: DaskWorkersOption = None,
    torch_threads: TorchThreadsOption = None,
) -> None:
    """Register deployment augment/NAME with a cron schedule and execute its runs in this process until Ctrl-C."""
    from flows import deploy

    parameters = _scheduled_parameters(dataset, cron, per_class, params, set_, out, runner, dask_address, dask_workers, torch_threads)
    filter_user_error_tracebacks()
    bound_shutdown(f"stopped serving augment/{name}")
    try:
        deploy.serve(name, cron, parameters)
    except KeyboardInterrupt:
        pass
    console.print(f"stopped serving augment/{name}")


@app.command("deploy")
def deploy_command(
    dataset: ScheduledDatasetOption,
    cron: CronOption,
    name: NameOption,
    pool: Annotated[str, typer.Option(help="Prefect work pool whose worker runs the flow (`prefect worker start --pool POOL`); a process pool is created when missing.")],
    per_class: PerClassOption = None,
    out: ScheduledOutOption = Path("runs/scheduled"),
    params: ParamsOption = None,
    set_: SetOption = None,
    runner: RunnerOption = Runner.local,
    dask_address: DaskAddressOption = None,
    dask_workers: DaskWorkersOption = None,
    torch_threads: TorchThreadsOption = None,
) -> None:
    """Register deployment augment/NAME on a work pool with a cron schedule; a separate worker executes the runs."""
    from flows import deploy

    parameters = _scheduled_parameters(dataset, cron, per_class, params, set_, out, runner, dask_address, dask_workers, torch_threads)
    deployment_id = deploy.deploy(name, cron, pool, parameters)
    console.print(f"deployment augment/{name} ({deployment_id}) on work pool '{pool}', schedule '{cron}'; "
                  f"start a worker: prefect worker start --pool {pool}")


def _check_dvc_mode(params: Optional[Path], out: Optional[Path]) -> None:
    from flows import versioning

    if not versioning.is_dvc_project(Path.cwd()):
        raise AugmentError("--dvc needs the current folder to be a DVC project with dvc.yaml (run `dvc init`)")
    if out is not None and out.resolve() != versioning.DVC_OUT.resolve():
        raise AugmentError(f"in a DVC project the stages write to {versioning.DVC_OUT}/ (dvc.yaml); drop --out, or add --no-dvc")
    if params is not None and params.resolve() != Path("params.yaml").resolve():
        raise AugmentError("in a DVC project the stages read ./params.yaml (dvc.yaml); drop --params, or add --no-dvc")


@app.command()
def stage(
    name: Annotated[Stage, typer.Argument(help="The stage to run.")],
    out: Annotated[Path, typer.Option(help=HELP["out"])] = Path("outputs"),
    params: ParamsOption = None,
    set_: SetOption = None,
) -> None:
    """Run one stage without Prefect (what dvc.yaml calls); reads its inputs from earlier stages in --out."""
    from pipeline.stages import run_stage

    result = run_stage(name.value, _load_config(params, list(set_ or [])), out)
    if name is Stage.evaluate:
        _print_result(result, out)


RunOption = Annotated[Path, typer.Option("--run", help="A finished run folder (holds config.json), e.g. runs/digits.")]


@app.command("generate")
def generate_command(
    run: RunOption,
    per_class: Annotated[int, typer.Option(help="Synthetic images per class to hold (generate.per_class); with generate.balance the target total.")],
) -> None:
    """Generate the run's synthetic images again from its trained generator (no retraining; an interrupted call
    resumes). The run's evaluation is marked stale until it is re-run."""
    from pipeline import runs

    summary = runs.regenerate(run, per_class)
    console.print(f"wrote {summary['n_images']} synthetic images to {run / 'synthetic'} in {summary['seconds']:.0f} s")
    if runs.stale_reason(run):
        console.print(f"the evaluation is now stale; re-run it: augment stage evaluate --out {run} --params {run / 'config.json'}")


@app.command()
def report(
    run: RunOption,
    json_: Annotated[bool, typer.Option("--json", help="Print metrics.json instead of the table.")] = False,
) -> None:
    """Re-render the run's report.html and print its result table (or its metrics as JSON)."""
    import json

    from pipeline import runs

    path, metrics = runs.render_report(run)
    if json_:
        print(json.dumps(metrics, indent=2, sort_keys=True))
        return
    stale = runs.stale_reason(run)
    if stale:
        console.print(f"[bold yellow]stale:[/] {stale}; re-run the evaluate stage", highlight=False)
    _print_result(metrics, run)
    console.print(f"report: {path}")


@app.command()
def export(
    run: RunOption,
    out: Annotated[Optional[Path], typer.Option("--out", help="New folder for the ImageFolder (class sub-folders, manifest.csv, summary.json).")] = None,
    setting: Annotated[Optional[str], typer.Option(help="Export this evaluated setting (e.g. real+aug+resampled) instead of the recommended one.")] = None,
    out_argument: Annotated[Optional[Path], typer.Argument(metavar="[OUT]", help="The same as --out (the older spelling).", show_default=False)] = None,
) -> None:
    """Export the run's recommended training set: its real training images and the synthetic images the
    recommendation uses, with a manifest whose sampling weights reproduce the recommended batch mix."""
    from pipeline import runs

    if (out is None) == (out_argument is None):
        raise AugmentError("name the export folder once: augment export --run RUN --out FOLDER")
    out = out or out_argument
    summary = runs.export_training_set(run, out, setting)
    augment = f", classical augmentation {summary['classical_policy']}" if summary["classical_augmentation"] else ""
    console.print(f"exported {summary['setting']} to {out}: {summary['n_real']} real + {summary['n_synthetic']} synthetic "
                  f"images{augment}; draw them with the weights in {out / 'manifest.csv'}")


@app.command("export-digits")
def export_digits(
    out: Annotated[Path, typer.Argument(help="Folder to write the ImageFolder into.")] = Path("data/digits"),
) -> None:
    """Write scikit-learn's 1,797 real 8x8 digit images as an ImageFolder (the embedded demo dataset)."""
    from pipeline.demo import export_digits as export

    export(out)
    console.print(f"wrote scikit-learn digits to {out}")


@app.command()
def options() -> None:
    """Every config key: its default, what it accepts and what it does (the table of docs/options.md)."""
    table = Table(title="config keys (params.yaml sections; override with --set section.key=value)")
    for column in ("key", "default", "accepts", "meaning"):
        table.add_column(column)
    for section in config_module.SECTIONS:
        for field, kind in config_module.fields(section):
            table.add_row(f"{section}.{field.name}", str(field.default), config_module.allowed(kind, field.metadata).replace("`", "").replace("\\|", "|"),
                          field.metadata["help"])
    Console(width=max(Console().width, 140)).print(table)


def main() -> None:
    """Console entry point (pyproject.toml's `augment`)."""
    run_app(app)
