"""Hyperparameter search: Optuna trials, each a real `modelci train`, pruned on the per-epoch validation metric.

Each trial sets the parameters of `tune.space` over modelci.yaml (validated like the file itself)
and trains exactly as `modelci train` does. The trial's value is its model's metric on the validation
rows (the best epoch's when early stopping keeps one), measured during training, without ONNX export:
the evaluation rows, which the gate judges on, choose nothing.
With `tune.storage`, trials of several runners (a workflow matrix) go into one study. The best
parameters go to `tune.best_file`, which `train` then applies.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml

from modelci import atomic, github
from modelci.config import Config, SearchParam, merge_params, parse_config
from modelci.errors import ModelciError, UsageError
from modelci.evaluate.metrics import DEFAULT_METRICS, LOWER_IS_BETTER

if TYPE_CHECKING:
    import optuna

    from modelci.data.tables import Datasets
    from modelci.frameworks.fitting import Diverged
    from modelci.outputs import EpochRecord, TrainLog

REPORT_FILE = "tune-report.json"
REPORT_VERSION = 1
TRIALS_DIR = "tune"
STARTUP_TRIALS = 3  # trials that always finish, so the median a later trial is pruned against means something


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Literal["maximize", "minimize"]


def objective_of(config: Config) -> Objective:
    metric = config.tune.metric or (config.evaluate.metrics or DEFAULT_METRICS[config.task])[0]
    given = config.tune.direction
    if given is None:
        given = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    return Objective(metric, "minimize" if given == "minimize" else "maximize")


def _grid(param: SearchParam) -> list[Any]:
    if param.type == "categorical":
        return list(param.choices)
    step = param.step or 1
    values = np.arange(param.low, param.high + step / 2, step)
    return [int(v) for v in values] if param.type == "int" else [float(v) for v in values]


def _sampler(config: Config) -> optuna.samplers.BaseSampler:
    import optuna

    settings = config.tune
    if settings.sampler == "grid":
        return optuna.samplers.GridSampler({p.key: _grid(p) for p in settings.space}, seed=settings.seed)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    return optuna.samplers.TPESampler(seed=settings.seed)


def _suggest(trial: optuna.Trial, param: SearchParam) -> Any:
    if param.type == "categorical":
        return trial.suggest_categorical(param.key, list(param.choices))
    if param.type == "int":
        return trial.suggest_int(param.key, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(param.key, param.low, param.high, step=param.step, log=param.log)


def _measuring(config: Config, metric: str) -> Config:
    """The config with `metric` among those training measures every epoch (it may not be an evaluate metric)."""
    names = config.evaluate.metrics or DEFAULT_METRICS[config.task]
    if metric in names:
        return config
    return dataclasses.replace(config, evaluate=dataclasses.replace(config.evaluate, metrics=(*names, metric)))


def _value(log: TrainLog, metric: str) -> float:
    """The validation metric of the epoch the trial's model is (the best one when train.patience keeps it)."""
    kept = log.epochs[(log.kept_epoch or len(log.epochs)) - 1]
    value = kept.metrics.get(metric)
    if value is None:
        raise UsageError(f"tune.metric {metric} is undefined for this trial's model")
    return value


def shown_storage(url: str | None) -> str | None:
    """The storage URL without a password, for reports and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url) if url else None


def search(config: Config, raw: dict[str, Any], datasets: Datasets, out: Path, trials: int) -> dict[str, Any]:
    """Run `trials` trials of the study (creating it or joining it) and write the report and the best parameters."""
    import optuna

    from modelci.frameworks.fitting import Diverged
    from modelci.train.trainer import train

    settings, goal = config.tune, objective_of(config)
    # NOTE: at WARNING Optuna prints a traceback for every failed trial; modelci says why in one line.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=1) if settings.pruning
              else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name=settings.study or config.root.name, storage=settings.storage,
                                sampler=_sampler(config), pruner=pruner, direction=goal.direction,
                                load_if_exists=True)
    work = out / TRIALS_DIR

    def objective(trial: optuna.Trial) -> float:
        params = {p.key: _suggest(trial, p) for p in settings.space}
        trial.set_user_attr("began", time.time())
        try:
            trial_config = _measuring(parse_config(merge_params(raw, params), config.path), goal.metric)

            def report(record: EpochRecord) -> None:
                value = record.metrics.get(goal.metric)
                if value is None:
                    return
                trial.report(value, record.epoch)
                trial.set_user_attr("epochs", record.epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"epoch {record.epoch}: {goal.metric} {value:.4f}")

            value = _value(train(trial_config, datasets, work / f"trial-{trial.number}", on_epoch=report),
                           goal.metric)
        except Diverged as exc:
            raise _pruned_as_diverged(trial, exc) from None
        except ModelciError as exc:
            trial.set_user_attr("error", exc.message)
            github.log(f"    trial {trial.number}: failed: {exc.message}")
            raise
        finally:
            trial.set_user_attr("seconds", round(time.time() - trial.user_attrs["began"], 3))
        github.log(f"    trial {trial.number}: {goal.metric} {value:.4f}  {_params_text(params)}")
        return value

    try:
        with github.group(f"Hyperparameter search: {trials} trials, {settings.sampler} sampler, "
                          f"{goal.direction} {goal.metric}"):
            study.optimize(objective, n_trials=trials, catch=(ModelciError,), callbacks=[_say_pruned])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = _report(study, config, goal)
    atomic.write_json(out / REPORT_FILE, report)
    if report["best"] is None:
        raise _no_trial_completed(report)
    _write_best(settings.best_file, report)
    github.log(f"    best: trial {report['best']['number']}, {goal.metric} {report['best']['value']:.4f}; "
               f"written to {settings.best_file.name}, which `modelci train` applies")
    return report


def _pruned_as_diverged(trial: optuna.Trial, exc: Diverged) -> optuna.TrialPruned:
    """A trial that diverged, as Optuna's samplers learn from best: pruned, with NaN at that epoch.

    NOTE: not failed: TPE ignores failed trials, so it would keep proposing the parameters that
    diverged; a pruned one counts among the worst trials, a NaN intermediate value last of all.
    """
    import optuna

    trial.report(math.nan, exc.epoch)
    trial.set_user_attr("error", exc.message)
    trial.set_user_attr("epochs", exc.epoch)
    github.log(f"    trial {trial.number}: pruned: {exc.message}  {_params_text(trial.params)}")
    return optuna.TrialPruned(exc.message)


def _params_text(params: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())


def _say_pruned(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    import optuna

    if trial.state == optuna.trial.TrialState.PRUNED and "error" not in trial.user_attrs:
        github.log(f"    trial {trial.number}: pruned after epoch {trial.last_step}  {_params_text(trial.params)}")


def _report(study: optuna.Study, config: Config, goal: Objective) -> dict[str, Any]:
    import optuna

    trials = [{"number": t.number, "state": t.state.name.lower(), "params": t.params,
               "value": t.value if t.value is not None and math.isfinite(t.value) else None,
               "epochs": t.user_attrs.get("epochs"), "seconds": t.user_attrs.get("seconds"),
               "error": t.user_attrs.get("error")} for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial if complete else None
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"version": REPORT_VERSION, "date": now,
            "study": study.study_name, "storage": shown_storage(config.tune.storage), "sampler": config.tune.sampler,
            "metric": goal.metric, "direction": goal.direction, "trials": trials,
            "best": {"number": best.number, "value": best.value, "params": best.params} if best else None}


def _no_trial_completed(report: dict[str, Any]) -> UsageError:
    """Every trial failed or diverged: the search space or the config is what to change (exit 2)."""
    trials = report["trials"]
    errors = [t["error"] for t in trials if t["error"]]
    diverged = sum(1 for t in trials if t["state"] == "pruned" and t["error"])  # see _pruned_as_diverged
    first = f"; the first error: {errors[0]}" if errors else ""
    return UsageError(f"no trial of the search completed: {len(trials)} trials, {diverged} diverged{first}",
                      hint="narrow tune.space (a lower train.lr range, for one) or fix the error above; every "
                           "trial's error is in tune-report.json")


def _write_best(path: Path, report: dict[str, Any]) -> None:
    best = report["best"]
    header = (f"# The best of {len(report['trials'])} trials of study {report['study']!r} ({report['metric']} "
              f"{best['value']:.4f}), written by `modelci tune` on {report['date']}.\n"
              "# modelci applies these over modelci.yaml; commit this file to keep them, delete it to stop.\n")
    atomic.write_text(path, header + yaml.safe_dump(best["params"], sort_keys=True))
