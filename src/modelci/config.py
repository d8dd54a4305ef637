"""`modelci.yaml`: loaded, validated in full, and turned into frozen dataclasses.

Every problem is collected before anything is reported, and each names the key, the value found
and what is allowed. Relative paths in the file are relative to the file's own folder (the model
repository's root), so commands work from any working directory.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelci import github
from modelci.compare.operational import CANDIDATE_ONLY, FIGURES
from modelci.compare.verdicts import NO_REGRESSION, NON_INFERIOR, REQUIREMENTS, SUPERIOR
from modelci.data.schema import DRIFT_THRESHOLDS, DriftRule, drift_rule
from modelci.errors import ConfigError
from modelci.evaluate.metrics import DEFAULT_THRESHOLD, METRICS_BY_TASK, THRESHOLD_CRITERIA

DEFAULT_CONFIG = "modelci.yaml"
DEFAULT_REGISTRY = "oci:.modelci/registry"
TASKS = ("binary", "multiclass", "regression")
DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = ("constant", "cosine", "onecycle")
CLASS_WEIGHTS = ("none", "balanced")
PRECISIONS = ("auto", "fp32", "bf16")
INVALID_ROWS = ("keep", "drop", "clip")
IMAGE_CHANNELS = (1, 3)  # grey or RGB: what an image is converted to before the model sees it
MAX_IMAGE_SIDE = 4096
AUGMENTATIONS = ("flip", "crop", "color_jitter")
FLIPS = ("horizontal", "vertical", "both")
JITTERS = ("brightness", "contrast", "saturation")


@dataclass(frozen=True)
class SplitConfig:
    fraction: float = 0.2
    seed: int = 0
    stratify: bool = True


@dataclass(frozen=True)
class ValidationSplitConfig:
    """The validation rows carved from the training rows (after the evaluation split): early stopping, the kept
    epoch and the tuning objective are chosen on them, never on the evaluation rows."""

    fraction: float = 0.1
    seed: int = 0
    stratify: bool = True  # each class in its share; not with group or time
    group: str | None = None  # a column whose groups stay whole on one side (a customer, a patient)
    time: str | None = None  # a column by which the latest rows become the validation rows


@dataclass(frozen=True)
class CleanConfig:
    """What to do with rows before training; the user's files are never changed."""

    drop_duplicates: bool = False
    drop_null_label: bool = False
    invalid_rows: str = "keep"  # keep | drop | clip (clip out-of-range numbers, drop other invalid rows)

    @property
    def active(self) -> bool:
        return self.drop_duplicates or self.drop_null_label or self.invalid_rows != "keep"


@dataclass(frozen=True)
class DriftConfig:
    method: str = "psi"
    threshold: float = DRIFT_THRESHOLDS["psi"]
    severity: str = "warning"  # warning | error

    @property
    def rule(self) -> DriftRule:
        return DriftRule(method=self.method, threshold=self.threshold)


@dataclass(frozen=True)
class ImageConfig:
    """What an image model takes (`data.image`): each image decoded, converted to `channels` (3: RGB, 1: grey),
    resized to `size` and normalized as (pixel / 255 - mean) / std per channel, inside the model."""

    size: tuple[int, int]  # height, width
    channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width): the `input_shape` the model factory is given."""
        return (self.channels, *self.size)


@dataclass(frozen=True)
class TextConfig:
    """What a text model takes (`data.text`): each text split into words (`data.text.tokens.words`), the first
    `max_tokens` of them, each a number from a vocabulary learnt from the training texts, inside the model."""

    max_tokens: int = 256  # words read of each text; the rest is cut off
    vocabulary: int = 20_000  # the most frequent training words kept; any other word is "unknown"
    min_count: int = 1  # a word seen fewer times in the training texts is "unknown"


@dataclass(frozen=True)
class DataConfig:
    train: Path
    label: str
    eval: Path | None = None
    split: SplitConfig = field(default_factory=SplitConfig)
    validation: Path | None = None  # the validation rows' file; without it, `validation_split` of the training rows
    validation_split: ValidationSplitConfig = field(default_factory=ValidationSplitConfig)
    schema: Path | None = None
    features: tuple[str, ...] | None = None
    clean: CleanConfig = field(default_factory=CleanConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    image: ImageConfig | None = None  # set for an image model: the size and normalization it takes
    text: TextConfig | None = None  # set for a text model: how its texts become numbers


@dataclass(frozen=True)
class AugmentConfig:
    """`train.augment`: random changes to each training image (never to validation or evaluation images)."""

    flip: str | None = None  # horizontal | vertical | both: each a mirror with probability 0.5
    crop_padding: int = 0  # `crop: N`: pad N pixels on every side, then cut a random window of the image's size
    crop_scale: tuple[float, float] | None = None  # `crop: {scale: [A, B]}`: a random window of that share of the
    # area (aspect ratio 3/4 to 4/3), resized back to the image's size
    brightness: float = 0.0  # `color_jitter`: each a factor drawn from [1 - v, 1 + v]
    contrast: float = 0.0
    saturation: float = 0.0

    @property
    def active(self) -> bool:
        return self != AugmentConfig()


@dataclass(frozen=True)
class ModelConfig:
    factory: str  # "" for a model.onnx or a train.command
    params: dict[str, Any] = field(default_factory=dict)
    onnx: Path | None = None  # the team's own ONNX model, used as it is (see train/command.py)
    predictions: Path | None = None  # that model's own predictions for the evaluation rows, for parity
    weights: Path | None = None  # a PyTorch factory's starting weights, a local file or folder (frameworks/weights.py)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    schedule: str = "constant"  # constant | cosine | onecycle, stepped every batch
    patience: int = 0  # epochs without a better validation loss before stopping; 0: never stop early
    grad_clip: float | None = None  # the largest gradient norm; None: not clipped
    class_weights: str = "none"  # none | balanced (classes weighted by their inverse frequency)
    precision: str = "auto"  # auto (bf16 on a CUDA device that has it, else fp32) | fp32 | bf16
    deterministic: bool = False  # deterministic algorithms only; slower on GPUs
    command: str | tuple[str, ...] | None = None  # the user's own training script (see train/command.py)
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # images only
    workers: int = 2  # images only: the processes that decode (and augment) images; 0: in the training process


@dataclass(frozen=True)
class EvaluateConfig:
    metrics: tuple[str, ...] = ()
    slices: tuple[str, ...] = ()  # columns whose values (or quartiles) get metrics of their own
    kfold: int = 0  # K-fold cross-validation of the training data; 0: none
    repeats: int = 1  # repeated K-fold: partitions into K folds, each shuffled with its own seed
    group: str | None = None  # a column whose groups stay whole in one fold (a customer, a patient)
    # binary: the probability at which a row is called positive, or the criterion (f1 | youden) that chooses
    # it on the validation rows at export (evaluate/metrics.py choose_threshold)
    threshold: float | str = DEFAULT_THRESHOLD


@dataclass(frozen=True)
class GateRule:
    metric: str
    min: float | None = None
    max: float | None = None
    max_drop: float | None = None  # in the metric's units, or a fraction of the baseline's value if relative
    relative: bool = False  # max_drop was written as a percentage, e.g. "2%"
    direction: str | None = None  # higher | lower is better; default: from the metric
    # no-regression | non-inferior | superior (compare/verdicts.py); None: the rule does not judge the
    # difference from the baseline (only min or max); no-regression when max_drop is given
    require: str | None = None
    max_increase: float | None = None  # operational figures: the largest increase over the baseline, a fraction
    slice: str | None = None  # a column: the rule judges each of its slices (values, or quartiles)
    max_gap: float | None = None  # with slice: the largest difference allowed between the candidate's slices


@dataclass(frozen=True)
class CompareConfig:
    bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0
    latency_batch: int = 64  # rows in the batched request whose latency is measured beside one row's
    latency_repeats: int = 200  # requests of each kind per model, after a warm-up
    # fail the gate when there is no baseline, or none comparable (or an unfair one); None: on pull requests in
    # GitHub Actions once main has published (compare/comparison.py)
    require_baseline: bool | None = None
    min_slice_rows: int = 30  # a slice with fewer evaluation rows is reported as too small to judge
    seeds: int = 1  # trainings of the candidate, with train.seed, train.seed + 1, ...: their spread is in the verdict
    seed_processes: int | None = None  # the other seeds trained at once, each in a process; None: auto
    # the largest share of evaluation rows the baseline may have been trained on before the comparison is flagged
    # unfair (a failure only with require_baseline)
    max_overlap: float = 0.01


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 18
    atol: float = 1e-4
    rtol: float = 1e-3
    quantize: str = "none"  # none | int8 (dynamic quantization of the weights; the int8 model is the artifact)


@dataclass(frozen=True)
class SearchParam:
    """One dimension of the search space: `model.params.NAME` or `train.NAME`."""

    key: str
    type: str  # float | int | categorical
    low: float = 0.0  # numbers only
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class TuneConfig:
    trials: int = 20
    sampler: str = "tpe"  # tpe | random | grid
    metric: str | None = None  # default: the first evaluate metric
    direction: str | None = None  # maximize | minimize; default: from the metric
    pruning: bool = True  # stop a trial whose per-epoch metric is below the median of earlier trials
    storage: str | None = None  # an Optuna storage URL (sqlite:///..., postgresql://...): one study, many runners
    study: str | None = None  # default: the model repository's folder name
    seed: int = 0
    best_file: Path = Path("tuned.yaml")  # where the best parameters go; every command applies them
    space: tuple[SearchParam, ...] = ()


@dataclass(frozen=True)
class Config:
    task: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    gate: tuple[GateRule, ...] = ()
    compare: CompareConfig = field(default_factory=CompareConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    registry: str = DEFAULT_REGISTRY
    registry_local_in_ci: bool = False  # a registry on the runner's disk is kept in GitHub Actions (a persistent disk)
    path: Path = Path(DEFAULT_CONFIG)
    tuned_from: Path | None = None  # the file of tuned parameters applied over the config file, if any

    @property
    def root(self) -> Path:
        """The model repository's root: the folder that holds the config file."""
        return self.path.parent

    def with_train(self, **changes: Any) -> Config:
        """A copy with the given `train` settings replaced; `None` values are left as they are."""
        given = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **given))

    def with_kfold(self, kfold: int | None) -> Config:
        return self if kfold is None else dataclasses.replace(self, evaluate=dataclasses.replace(self.evaluate,
                                                                                                 kfold=kfold))

    def with_registry(self, registry: str | None) -> Config:
        return self if registry is None else dataclasses.replace(self, registry=registry)


class _Problems(list[str]):
    """Collects one line per problem, each starting with the key it is about."""

    def add(self, key: str, message: str) -> None:
        self.append(f"{key}: {message}")


def _unknown_keys(section: dict[str, Any], allowed: list[str], prefix: str, problems: _Problems) -> None:
    for key in section:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            advice = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(allowed)}"
            problems.add(f"{prefix}{key}", f"unknown key; {advice}")


def _typed(value: Any, kind: type | tuple[type, ...]) -> bool:
    # NOTE: YAML's `true` is a bool, which is an int in Python; never accept it as a number.
    return isinstance(value, kind) and not isinstance(value, bool)


def _number(section: dict[str, Any], key: str, prefix: str, problems: _Problems,
            default: float | None, *, positive: bool = False, integer: bool = False) -> Any:
    value = section.get(key, default)
    if value is None:
        return None
    kind: type | tuple[type, ...] = int if integer else (int, float)
    what = "an integer" if integer else "a number"
    if not _typed(value, kind) or not math.isfinite(value):
        problems.add(f"{prefix}{key}", f"expected {what}, got {value!r}")
        return default
    if positive and value <= 0:
        problems.add(f"{prefix}{key}", f"expected {what} greater than 0, got {value!r}")
        return default
    return value


def _choice(section: dict[str, Any], key: str, prefix: str, problems: _Problems,
            choices: tuple[str, ...], default: str | None) -> Any:
    value = section.get(key, default)
    if value not in choices:
        shown = "nothing" if value is None else repr(value)
        problems.add(f"{prefix}{key}", f"expected one of {', '.join(choices)}; got {shown}")
        return default
    return value


def _mapping(raw: dict[str, Any], key: str, problems: _Problems, *, required: bool) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            problems.add(key, "missing; this section is required")
        return {}
    if not isinstance(value, dict):
        problems.add(key, f"expected a mapping of keys to values, got {value!r}")
        return {}
    return value


def _path(value: Any, key: str, root: Path, problems: _Problems) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.add(key, f"expected a file path, got {value!r}")
        return None
    return root / value


def _data(raw: dict[str, Any], root: Path, problems: _Problems) -> DataConfig:
    section = _mapping(raw, "data", problems, required=True)
    _unknown_keys(section, ["train", "eval", "split", "validation", "validation_split", "label", "schema", "features",
                            "clean", "drift", "image", "text"], "data.", problems)
    train = _path(section.get("train"), "data.train", root, problems)
    if "train" not in section:
        problems.add("data.train", "missing; name the training data (a Parquet or CSV file, or a folder per class "
                                   "of images)")
    label = section.get("label")
    if not isinstance(label, str) or not label:
        problems.add("data.label", f"expected the name of the label column, got {label!r}")
    if "eval" in section and "split" in section:
        problems.add("data", "give either 'eval' (a file) or 'split' (a fraction of train), not both")
    split = _split(section.get("split") or {}, problems)
    if "validation" in section and "validation_split" in section:
        problems.add("data", "give either 'validation' (a file) or 'validation_split' (a fraction of train), not both")
    validation_split = _validation_split(section.get("validation_split") or {}, problems)
    features = section.get("features")
    if features is not None and not (
        isinstance(features, list) and features and all(isinstance(f, str) for f in features)
    ):
        problems.add("data.features", f"expected a list of column names, got {features!r}")
        features = None
    return DataConfig(
        train=train or root,
        label=label if isinstance(label, str) else "",
        eval=_path(section.get("eval"), "data.eval", root, problems),
        split=split,
        validation=_path(section.get("validation"), "data.validation", root, problems),
        validation_split=validation_split,
        schema=_path(section.get("schema"), "data.schema", root, problems),
        features=tuple(features) if features else None,
        clean=_clean(section.get("clean") or {}, problems),
        drift=_drift(section.get("drift") or {}, problems),
        image=_image(section.get("image"), problems),
        text=_text(section.get("text"), problems),
    )


def _image(section: Any, problems: _Problems) -> ImageConfig | None:
    """`data.image: {size: [H, W], channels: 3, mean: [...], std: [...]}`; None when not given."""
    if section is None:
        return None
    if not isinstance(section, dict):
        problems.add("data.image", f"expected a mapping such as {{size: [32, 32], channels: 3}}, got {section!r}")
        return None
    prefix = "data.image."
    _unknown_keys(section, ["size", "channels", "mean", "std"], prefix, problems)
    channels = section.get("channels", 3)
    if not _typed(channels, int) or channels not in IMAGE_CHANNELS:
        problems.add(f"{prefix}channels", f"expected 3 (RGB) or 1 (grey), got {channels!r}")
        channels = 3
    return ImageConfig(size=_image_size(section.get("size"), problems), channels=channels,
                       mean=_per_channel(section, "mean", channels, problems),
                       std=_per_channel(section, "std", channels, problems))


def _text(section: Any, problems: _Problems) -> TextConfig | None:
    """`data.text: {max_tokens: 256, vocabulary: 20000, min_count: 1}` (`data.text: {}` for the defaults); None
    when not given."""
    if section is None:
        return None
    if not isinstance(section, dict):
        problems.add("data.text", f"expected a mapping such as {{max_tokens: 256}} ({{}} for the defaults), got "
                                  f"{section!r}")
        return None
    defaults = TextConfig()
    _unknown_keys(section, [f.name for f in dataclasses.fields(TextConfig)], "data.text.", problems)
    found = {}
    for name in ("max_tokens", "vocabulary", "min_count"):
        value = section.get(name, getattr(defaults, name))
        if not _typed(value, int) or value < 1:
            problems.add(f"data.text.{name}", f"expected a whole number, at least 1, got {value!r}")
            value = getattr(defaults, name)
        found[name] = value
    return TextConfig(**found)


def _image_size(value: Any, problems: _Problems) -> tuple[int, int]:
    """`size: N` (square) or `size: [height, width]`, in pixels."""
    sides = [value, value] if _typed(value, int) else value
    if not (isinstance(sides, list) and len(sides) == 2
            and all(_typed(v, int) and 1 <= v <= MAX_IMAGE_SIDE for v in sides)):
        shown = "nothing" if value is None else repr(value)
        problems.add("data.image.size", f"expected the size the model takes, [height, width] in pixels from 1 to "
                                         f"{MAX_IMAGE_SIDE} (or one number for a square), got {shown}")
        return (1, 1)
    return (int(sides[0]), int(sides[1]))


def _per_channel(section: dict[str, Any], key: str, channels: int, problems: _Problems) -> tuple[float, ...]:
    """`mean` or `std`: one number for every channel, or a list of one per channel (of pixels scaled to 0..1)."""
    value = section.get(key, 0.5)
    values = [value] * channels if _typed(value, (int, float)) else value
    low = 0.0 if key == "mean" else math.ulp(0.0)
    if not (isinstance(values, list) and len(values) == channels
            and all(_typed(v, (int, float)) and low <= v <= 1 for v in values)):
        what = "from 0 to 1" if key == "mean" else "greater than 0 and at most 1"
        problems.add(f"data.image.{key}", f"expected {channels} numbers {what} (one per channel, of pixels scaled to "
                                          f"0..1), or one for all, got {value!r}")
        return (0.5,) * channels
    return tuple(float(v) for v in values)


def _flag(section: dict[str, Any], key: str, prefix: str, problems: _Problems, default: bool = False) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        problems.add(f"{prefix}{key}", f"expected true or false, got {value!r}")
        return default
    return value


def _clean(section: Any, problems: _Problems) -> CleanConfig:
    if not isinstance(section, dict):
        problems.add("data.clean", f"expected a mapping such as {{drop_duplicates: true}}, got {section!r}")
        return CleanConfig()
    _unknown_keys(section, ["drop_duplicates", "drop_null_label", "invalid_rows"], "data.clean.", problems)
    return CleanConfig(drop_duplicates=_flag(section, "drop_duplicates", "data.clean.", problems),
                       drop_null_label=_flag(section, "drop_null_label", "data.clean.", problems),
                       invalid_rows=_choice(section, "invalid_rows", "data.clean.", problems, INVALID_ROWS, "keep"))


def _drift(section: Any, problems: _Problems) -> DriftConfig:
    if not isinstance(section, dict):
        problems.add("data.drift", f"expected a mapping such as {{method: psi, threshold: 0.2}}, got {section!r}")
        return DriftConfig()
    found: list[str] = []
    rule = drift_rule({k: v for k, v in section.items() if k != "severity"}, "data.drift", found)
    problems.extend(found)
    severity = _choice(section, "severity", "data.drift.", problems, ("warning", "error"), "warning")
    if rule is None:
        return DriftConfig(severity=severity)
    return DriftConfig(method=rule.method, threshold=rule.threshold, severity=severity)


def _split(section: Any, problems: _Problems) -> SplitConfig:
    if not isinstance(section, dict):
        problems.add("data.split", f"expected a mapping such as {{fraction: 0.2}}, got {section!r}")
        return SplitConfig()
    _unknown_keys(section, ["fraction", "seed", "stratify"], "data.split.", problems)
    fraction = _number(section, "fraction", "data.split.", problems, 0.2, positive=True)
    if fraction is not None and fraction >= 1:
        problems.add("data.split.fraction", f"expected a fraction between 0 and 1, got {fraction!r}")
        fraction = 0.2
    stratify = section.get("stratify", True)
    if not isinstance(stratify, bool):
        problems.add("data.split.stratify", f"expected true or false, got {stratify!r}")
        stratify = True
    seed = _number(section, "seed", "data.split.", problems, 0, integer=True)
    return SplitConfig(fraction=fraction, seed=seed, stratify=stratify)


def _validation_split(section: Any, problems: _Problems) -> ValidationSplitConfig:
    prefix = "data.validation_split."
    if not isinstance(section, dict):
        problems.add(prefix.rstrip("."), f"expected a mapping such as {{fraction: 0.1}}, got {section!r}")
        return ValidationSplitConfig()
    _unknown_keys(section, ["fraction", "seed", "stratify", "group", "time"], prefix, problems)
    fraction = _number(section, "fraction", prefix, problems, 0.1, positive=True)
    if fraction is not None and fraction >= 1:
        problems.add(f"{prefix}fraction", f"expected a fraction between 0 and 1, got {fraction!r}")
        fraction = 0.1
    columns: dict[str, Any] = {}
    for key in ("group", "time"):
        value = section.get(key)
        if value is not None and not (isinstance(value, str) and value):
            problems.add(f"{prefix}{key}", f"expected a column name, got {value!r}")
            value = None
        columns[key] = value
    if columns["group"] and columns["time"]:
        problems.add(prefix.rstrip("."), "give either 'group' or 'time', not both")
    return ValidationSplitConfig(fraction=fraction, seed=_number(section, "seed", prefix, problems, 0, integer=True),
                                 stratify=_flag(section, "stratify", prefix, problems, default=True), **columns)


def _model(raw: dict[str, Any], root: Path, problems: _Problems) -> ModelConfig:
    # NOTE: a model comes from exactly one place: a factory, the team's own ONNX file, or their script.
    train = raw.get("train")
    own_script = isinstance(train, dict) and train.get("command") is not None
    section = _mapping(raw, "model", problems, required=not own_script)
    _unknown_keys(section, ["factory", "params", "onnx", "predictions", "weights"], "model.", problems)
    onnx = _path(section.get("onnx"), "model.onnx", root, problems)
    predictions = _path(section.get("predictions"), "model.predictions", root, problems)
    weights = _path(section.get("weights"), "model.weights", root, problems)
    factory = section.get("factory")
    given = [name for name, found in (("model.factory", factory is not None),
                                      ("model.onnx", section.get("onnx") is not None),
                                      ("train.command", own_script)) if found]
    if len(given) > 1:
        problems.add("model", f"{' and '.join(given)} are set; give only one of model.factory, model.onnx "
                              "and train.command")
    if predictions is not None and section.get("onnx") is None:
        problems.add("model.predictions", "only with model.onnx; a train.command writes its predictions to "
                                          "the path in MODELCI_PREDICTIONS")
    if factory is None and (own_script or section.get("onnx") is not None):
        if weights is not None:
            problems.add("model.weights", "only with model.factory: they are the factory's network's starting "
                                          "weights")
        return ModelConfig(factory="", onnx=onnx, predictions=predictions)
    if not isinstance(factory, str) or ":" not in factory:
        problems.add("model.factory", f"expected 'FILE.py:FUNCTION' such as 'model.py:build', got {factory!r} "
                                      "(or model.onnx: PATH, or train.command)")
        factory = ""
    params = section.get("params") or {}
    if not isinstance(params, dict):
        problems.add("model.params", f"expected a mapping of keyword arguments, got {params!r}")
        params = {}
    return ModelConfig(factory=factory, params=params, weights=weights)


def _train(raw: dict[str, Any], problems: _Problems) -> TrainConfig:
    section = _mapping(raw, "train", problems, required=False)
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    _unknown_keys(section, names, "train.", problems)
    defaults = TrainConfig()
    return TrainConfig(
        epochs=_number(section, "epochs", "train.", problems, defaults.epochs, positive=True, integer=True),
        batch_size=_number(section, "batch_size", "train.", problems, defaults.batch_size, positive=True, integer=True),
        lr=_number(section, "lr", "train.", problems, defaults.lr, positive=True),
        weight_decay=_number(section, "weight_decay", "train.", problems, defaults.weight_decay),
        seed=_number(section, "seed", "train.", problems, defaults.seed, integer=True),
        device=_choice(section, "device", "train.", problems, DEVICES, defaults.device),
        schedule=_choice(section, "schedule", "train.", problems, SCHEDULES, defaults.schedule),
        patience=_count(section, "patience", "train.", problems, defaults.patience),
        grad_clip=_number(section, "grad_clip", "train.", problems, defaults.grad_clip, positive=True),
        class_weights=_choice(section, "class_weights", "train.", problems, CLASS_WEIGHTS, defaults.class_weights),
        precision=_choice(section, "precision", "train.", problems, PRECISIONS, defaults.precision),
        deterministic=_flag(section, "deterministic", "train.", problems),
        command=_command(section.get("command"), problems),
        augment=_augment(section.get("augment"), problems),
        workers=_count(section, "workers", "train.", problems, defaults.workers),
    )


def _augment(section: Any, problems: _Problems) -> AugmentConfig:
    """`train.augment: {flip: horizontal, crop: 4, color_jitter: 0.2}`."""
    prefix = "train.augment."
    if section is None:
        return AugmentConfig()
    if not isinstance(section, dict):
        problems.add("train.augment", f"expected a mapping such as {{flip: horizontal, crop: 4}}, got {section!r}")
        return AugmentConfig()
    _unknown_keys(section, list(AUGMENTATIONS), prefix, problems)
    flip = section.get("flip")
    flip = "horizontal" if flip is True else None if flip is False else flip
    if flip is not None and flip not in FLIPS:
        problems.add(f"{prefix}flip", f"expected true, false or one of {', '.join(FLIPS)}; got {flip!r}")
        flip = None
    padding, scale = _crop(section.get("crop"), problems)
    return AugmentConfig(flip=flip, crop_padding=padding, crop_scale=scale, **_jitter(section.get("color_jitter"),
                                                                                       problems))


def _crop(value: Any, problems: _Problems) -> tuple[int, tuple[float, float] | None]:
    """`crop: N` (pixels of padding) or `crop: {scale: [A, B]}` (a share of the area): (padding, scale)."""
    key = "train.augment.crop"
    if value is None or value is False:
        return 0, None
    if _typed(value, int) and value >= 1:
        return int(value), None
    scale = value.get("scale") if isinstance(value, dict) and list(value) == ["scale"] else None
    if (isinstance(scale, list) and len(scale) == 2 and all(_typed(v, (int, float)) for v in scale)
            and 0 < scale[0] <= scale[1] <= 1):
        return 0, (float(scale[0]), float(scale[1]))
    problems.add(key, f"expected pixels of padding (an integer of 1 or more) or {{scale: [A, B]}} with "
                      f"0 < A <= B <= 1, got {value!r}")
    return 0, None


def _jitter(value: Any, problems: _Problems) -> dict[str, float]:
    """`color_jitter: V` (brightness, contrast and saturation alike) or a mapping of each."""
    key = "train.augment.color_jitter"
    if value is None:
        return {}
    if _typed(value, (int, float)):
        value = dict.fromkeys(JITTERS, value)
    if not isinstance(value, dict):
        problems.add(key, f"expected a number or a mapping such as {{brightness: 0.2, contrast: 0.2}}, got {value!r}")
        return {}
    _unknown_keys(value, list(JITTERS), f"{key}.", problems)
    found = {}
    for name in JITTERS:
        amount = value.get(name, 0.0)
        if not _typed(amount, (int, float)) or not 0 <= amount <= 1:
            problems.add(f"{key}.{name}", f"expected a number from 0 to 1, got {amount!r}")
            continue
        found[name] = float(amount)
    return found


def _command(value: Any, problems: _Problems) -> str | tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(a, str) for a in value):
        return tuple(value)
    problems.add("train.command", f"expected a command such as 'python train.py' or a list of arguments, got {value!r}")
    return None


def _count(section: dict[str, Any], key: str, prefix: str, problems: _Problems, default: int) -> int:
    value = _number(section, key, prefix, problems, default, integer=True)
    if value < 0:
        problems.add(f"{prefix}{key}", f"expected 0 or more, got {value!r}")
        return default
    return int(value)


def _metrics(raw: dict[str, Any], task: str | None, problems: _Problems) -> EvaluateConfig:
    section = _mapping(raw, "evaluate", problems, required=False)
    _unknown_keys(section, ["metrics", "slices", "kfold", "repeats", "group", "threshold"], "evaluate.", problems)
    slices = section.get("slices") or []
    if not (isinstance(slices, list) and all(isinstance(c, str) and c for c in slices)):
        problems.add("evaluate.slices", f"expected a list of column names, got {slices!r}")
        slices = []
    kfold = _count(section, "kfold", "evaluate.", problems, 0)
    if kfold == 1:
        problems.add("evaluate.kfold", "expected 0 (no cross-validation) or 2 folds or more, got 1")
        kfold = 0
    group = section.get("group")
    if group is not None and not (isinstance(group, str) and group):
        problems.add("evaluate.group", f"expected a column name, got {group!r}")
        group = None
    repeats = _number(section, "repeats", "evaluate.", problems, 1, positive=True, integer=True)
    found = EvaluateConfig(slices=tuple(slices), kfold=kfold, repeats=repeats, group=group,
                           threshold=_threshold(section.get("threshold"), task, problems))
    metrics = section.get("metrics")
    if metrics is None or task not in METRICS_BY_TASK:
        return found
    allowed = METRICS_BY_TASK[task]
    if not isinstance(metrics, list) or not metrics:
        problems.add("evaluate.metrics", f"expected a list of metric names from {', '.join(allowed)}")
        return found
    for name in metrics:
        if name not in allowed:
            problems.add("evaluate.metrics", f"{name!r} is not a {task} metric; allowed: {', '.join(allowed)}")
    return dataclasses.replace(found, metrics=tuple(m for m in metrics if m in allowed))


def _threshold(value: Any, task: str | None, problems: _Problems) -> float | str:
    """evaluate.threshold: a number in (0, 1), or {choose: CRITERION}; binary tasks only."""
    choices = " or ".join(f"{{choose: {c}}}" for c in THRESHOLD_CRITERIA)
    if value is None:
        return DEFAULT_THRESHOLD
    if task in METRICS_BY_TASK and task != "binary":
        problems.add("evaluate.threshold", f"a classification threshold is for binary tasks; this task is {task}")
        return DEFAULT_THRESHOLD
    if isinstance(value, dict):
        _unknown_keys(value, ["choose"], "evaluate.threshold.", problems)
        if value.get("choose") not in THRESHOLD_CRITERIA:
            problems.add("evaluate.threshold.choose",
                         f"expected one of {', '.join(THRESHOLD_CRITERIA)}; got {value.get('choose')!r}")
            return DEFAULT_THRESHOLD
        return str(value["choose"])
    if not _typed(value, (int, float)) or not 0 < value < 1:
        problems.add("evaluate.threshold", f"expected a number between 0 and 1 (both excluded), or {choices}; "
                                           f"got {value!r}")
        return DEFAULT_THRESHOLD
    return float(value)


def _gate(raw: dict[str, Any], task: str | None, problems: _Problems, path: Path) -> tuple[GateRule, ...]:
    rules = raw.get("gate") or []
    if not isinstance(rules, list):
        problems.add("gate", "expected a list of rules such as [{metric: roc_auc, min: 0.8, max_drop: 0.01}]")
        return ()
    allowed = METRICS_BY_TASK.get(task or "", ())
    out: list[GateRule] = []
    for i, rule in enumerate(rules):
        prefix = f"gate[{i}]."
        if not isinstance(rule, dict) or not isinstance(rule.get("metric"), str):
            problems.add(f"gate[{i}]", f"expected a mapping with a 'metric' name, got {rule!r}")
            continue
        metric, column = rule["metric"], rule.get("slice")
        if any(earlier.metric == metric and earlier.slice == column for earlier in out):
            # NOTE: one rule per metric (and slice column), so no bound is silently overridden by a later rule
            where = f" by {column}" if column else ""
            problems.add(f"{prefix}metric", f"a second rule on {metric}{where}; put all of its bounds in one rule")
            continue
        if metric in FIGURES:
            found = _operational_rule(rule, prefix, problems)
        elif allowed and metric not in allowed:
            problems.add(f"{prefix}metric", f"expected a {task} metric ({', '.join(allowed)}) or an operational "
                         f"figure ({', '.join(FIGURES)}), got {metric!r}")
            continue
        elif "slice" in rule:
            found = _slice_rule(rule, prefix, problems)
        else:
            found = _metric_rule(rule, prefix, problems, path)
        if found is not None:
            out.append(found)
    return tuple(out)


def _fraction(rule: dict[str, Any], key: str, prefix: str, problems: _Problems) -> tuple[dict[str, Any], bool]:
    """`key` written as a percentage ('2%') becomes a fraction; returns the rule and whether it was one."""
    value = rule.get(key)
    if not (isinstance(value, str) and value.strip().endswith("%")):
        return rule, False
    try:
        fraction = float(value.strip()[:-1]) / 100
    except ValueError:
        fraction = math.nan
    if not math.isfinite(fraction):
        problems.add(f"{prefix}{key}", f"expected a number or a percentage such as '2%', got {value!r}")
        return {k: v for k, v in rule.items() if k != key}, True
    return {**rule, key: fraction}, True


def _metric_rule(rule: dict[str, Any], prefix: str, problems: _Problems, path: Path) -> GateRule | None:
    _unknown_keys(rule, ["metric", "min", "max", "max_drop", "direction", "require", "on_inconclusive"], prefix,
                  problems)
    rule, relative = _fraction(_old_spelling(rule, prefix, problems, path), "max_drop", prefix, problems)
    bounds = {k: _number(rule, k, prefix, problems, None) for k in ("min", "max", "max_drop")}
    _at_least_zero(rule, "max_drop", bounds["max_drop"], prefix, problems)
    require = _require(rule, prefix, problems, bounds["max_drop"])
    if all(v is None for v in bounds.values()) and require is None:
        problems.add(prefix.rstrip("."), "a rule needs at least one of min, max, max_drop or require")
    return GateRule(metric=str(rule["metric"]), **bounds, relative=relative,
                    direction=_direction(rule, prefix, problems), require=require)


def _slice_rule(rule: dict[str, Any], prefix: str, problems: _Problems) -> GateRule | None:
    """`{metric, slice, max_drop | require}`: every slice's paired interval judged by the rule; `max_gap`: the
    largest difference between the candidate's slices."""
    _unknown_keys(rule, ["metric", "slice", "max_drop", "require", "direction", "max_gap"], prefix, problems)
    column = rule.get("slice")
    if not (isinstance(column, str) and column):
        problems.add(f"{prefix}slice", f"expected a column name of the evaluation data, got {column!r}")
        return None
    rule, relative = _fraction(rule, "max_drop", prefix, problems)
    drop, gap = (_number(rule, k, prefix, problems, None) for k in ("max_drop", "max_gap"))
    _at_least_zero(rule, "max_drop", drop, prefix, problems)
    _at_least_zero(rule, "max_gap", gap, prefix, problems)
    require = _require(rule, prefix, problems, drop)
    if drop is None and gap is None and require is None:
        problems.add(prefix.rstrip("."), "a slice rule needs max_drop, require or max_gap")
    return GateRule(metric=str(rule["metric"]), max_drop=drop, relative=relative,
                    direction=_direction(rule, prefix, problems), require=require, slice=column, max_gap=gap)


def _at_least_zero(rule: dict[str, Any], key: str, value: float | None, prefix: str, problems: _Problems) -> None:
    if value is not None and value < 0:
        problems.add(f"{prefix}{key}", f"expected 0 or more, got {rule.get(key)!r}")


def _direction(rule: dict[str, Any], prefix: str, problems: _Problems) -> str | None:
    direction = rule.get("direction")
    if direction is not None and direction not in ("higher", "lower"):
        problems.add(f"{prefix}direction", f"expected higher or lower (is better), got {direction!r}")
        return None
    return direction


def _old_spelling(rule: dict[str, Any], prefix: str, problems: _Problems, path: Path) -> dict[str, Any]:
    """`on_inconclusive` (pass | fail), read as `require` (no-regression | superior) with a warning."""
    old = rule.get("on_inconclusive")
    if old is None:
        return rule
    rest = {k: v for k, v in rule.items() if k != "on_inconclusive"}
    if "require" in rule:
        problems.add(f"{prefix}on_inconclusive", "the old spelling of require; keep require only")
    elif old not in ("pass", "fail"):
        problems.add(f"{prefix}on_inconclusive", f"expected pass or fail, got {old!r}; it is deprecated: write "
                     f"require: {' | '.join(REQUIREMENTS)}")
    elif old == "fail":
        github.warning_once(f"{path}: {prefix}on_inconclusive is deprecated; write require: {SUPERIOR} instead")
        return {**rest, "require": SUPERIOR}
    else:
        # NOTE: pass was the default: it judged the difference only when max_drop was given, as now
        github.warning_once(f"{path}: {prefix}on_inconclusive is deprecated; write require: {NO_REGRESSION} "
                            "instead (the default with max_drop)")
    return rest


def _require(rule: dict[str, Any], prefix: str, problems: _Problems, max_drop: float | None) -> str | None:
    """What the rule requires of the difference from the baseline; None when it judges none (no max_drop)."""
    require = rule.get("require")
    if require is None:
        return NO_REGRESSION if max_drop is not None else None
    if require not in REQUIREMENTS:
        problems.add(f"{prefix}require", f"expected one of {', '.join(REQUIREMENTS)}; got {require!r}")
        return None
    if require == NON_INFERIOR and max_drop is None:
        problems.add(f"{prefix}require", "non-inferior needs max_drop: the margin within which the candidate must be "
                     "shown to be, such as 0.01 or '2%'")
    return str(require)


def _operational_rule(rule: dict[str, Any], prefix: str, problems: _Problems) -> GateRule | None:
    """Latency, size, parity error and drift: lower is better; a ceiling (max), and for the figures
    measured on the baseline too, an allowed increase over it (max_increase: 0.2 or '20%')."""
    metric = str(rule["metric"])
    keys = ["metric", "max"] + ([] if metric in CANDIDATE_ONLY else ["max_increase"])
    _unknown_keys(rule, keys, prefix, problems)
    rule, _ = _fraction(rule, "max_increase", prefix, problems)
    ceiling = _number(rule, "max", prefix, problems, None)
    increase = _number(rule, "max_increase", prefix, problems, None)
    if increase is not None and increase < 0:
        problems.add(f"{prefix}max_increase", f"expected 0 or more, got {increase!r}")
    if ceiling is None and increase is None:
        problems.add(prefix.rstrip("."), f"a rule on {metric} needs {' or '.join(keys[1:])}")
        return None
    return GateRule(metric=metric, max=ceiling, max_increase=increase)


def _compare(raw: dict[str, Any], problems: _Problems) -> CompareConfig:
    section = _mapping(raw, "compare", problems, required=False)
    _unknown_keys(section, ["bootstrap", "confidence", "seed", "latency_batch", "latency_repeats", "require_baseline",
                            "min_slice_rows", "seeds", "seed_processes", "max_overlap"], "compare.", problems)
    confidence = _number(section, "confidence", "compare.", problems, 0.95, positive=True)
    if confidence is not None and confidence >= 1:
        problems.add("compare.confidence", f"expected a level between 0 and 1 such as 0.95, got {confidence!r}")
        confidence = 0.95
    return CompareConfig(
        bootstrap=_number(section, "bootstrap", "compare.", problems, 1000, positive=True, integer=True),
        confidence=confidence,
        seed=_number(section, "seed", "compare.", problems, 0, integer=True),
        latency_batch=_number(section, "latency_batch", "compare.", problems, 64, positive=True, integer=True),
        latency_repeats=_number(section, "latency_repeats", "compare.", problems, 200, positive=True, integer=True),
        require_baseline=None if section.get("require_baseline") is None else
        _flag(section, "require_baseline", "compare.", problems),
        min_slice_rows=_number(section, "min_slice_rows", "compare.", problems, 30, positive=True, integer=True),
        seeds=_number(section, "seeds", "compare.", problems, 1, positive=True, integer=True),
        seed_processes=_seed_processes(section, problems),
        max_overlap=_max_overlap(section, problems),
    )


def _seed_processes(section: dict[str, Any], problems: _Problems) -> int | None:
    """`auto` (None: evaluate/seeds.py chooses from the machine) or a number of processes."""
    if section.get("seed_processes", "auto") == "auto":
        return None
    value = section["seed_processes"]
    if not _typed(value, int) or value < 1:
        problems.add("compare.seed_processes", f"expected auto or an integer greater than 0, got {value!r}")
        return None
    return int(value)


def _max_overlap(section: dict[str, Any], problems: _Problems) -> float:
    value = _number(section, "max_overlap", "compare.", problems, 0.01)
    if value is None or not 0 <= value <= 1:
        problems.add("compare.max_overlap", f"expected a share of the evaluation rows from 0 to 1 such as 0.01, "
                                            f"got {value!r}")
        return 0.01
    return float(value)


def _export(raw: dict[str, Any], problems: _Problems) -> ExportConfig:
    section = _mapping(raw, "export", problems, required=False)
    _unknown_keys(section, ["opset", "atol", "rtol", "quantize"], "export.", problems)
    opset = _number(section, "opset", "export.", problems, 18, integer=True)
    if opset is not None and not 17 <= opset <= 23:
        problems.add("export.opset", f"expected an ONNX opset from 17 to 23, got {opset!r}")
        opset = 18
    return ExportConfig(
        opset=opset,
        atol=_number(section, "atol", "export.", problems, 1e-4, positive=True),
        rtol=_number(section, "rtol", "export.", problems, 1e-3, positive=True),
        quantize=_choice(section, "quantize", "export.", problems, ("none", "int8"), "none"),
    )


TUNABLE_TRAIN = ("epochs", "batch_size", "lr", "weight_decay", "schedule", "patience", "grad_clip", "class_weights")
SAMPLERS = ("tpe", "random", "grid")


def _tune(raw: dict[str, Any], task: str | None, root: Path, problems: _Problems) -> TuneConfig:
    section = _mapping(raw, "tune", problems, required=False)
    names = [f.name for f in dataclasses.fields(TuneConfig)]
    _unknown_keys(section, names, "tune.", problems)
    sampler = _choice(section, "sampler", "tune.", problems, SAMPLERS, "tpe")
    metric = section.get("metric")
    allowed = METRICS_BY_TASK.get(task or "", ())
    if metric is not None and allowed and metric not in allowed:
        problems.add("tune.metric", f"expected a {task} metric ({', '.join(allowed)}), got {metric!r}")
        metric = None
    direction = section.get("direction")
    if direction is not None and direction not in ("maximize", "minimize"):
        problems.add("tune.direction", f"expected maximize or minimize, got {direction!r}")
        direction = None
    text = {k: section.get(k) for k in ("storage", "study")}
    for key, value in text.items():
        if value is not None and not (isinstance(value, str) and value):
            problems.add(f"tune.{key}", f"expected a string, got {value!r}")
            text[key] = None
    space = section.get("space") or {}
    if not isinstance(space, dict):
        problems.add("tune.space", "expected a mapping such as {train.lr: {type: float, low: 0.0001, high: 0.01}}")
        space = {}
    params = tuple(p for key, spec in space.items() if (p := _search_param(str(key), spec, sampler, problems)))
    if section and not params:
        problems.add("tune.space", "name at least one parameter to search")
    best_file = _path(section.get("best_file") or "tuned.yaml", "tune.best_file", root, problems)
    return TuneConfig(
        trials=_number(section, "trials", "tune.", problems, 20, positive=True, integer=True), sampler=sampler,
        metric=metric, direction=direction, pruning=_flag(section, "pruning", "tune.", problems, True),
        storage=text["storage"], study=text["study"],
        seed=_number(section, "seed", "tune.", problems, 0, integer=True),
        best_file=best_file or root / "tuned.yaml", space=params)


def _search_param(key: str, spec: Any, sampler: str, problems: _Problems) -> SearchParam | None:
    where = f"tune.space.{key}"
    group, _, name = key.partition(".")
    if not ((group == "model" and name.startswith("params.") and len(name) > 7)
            or (group == "train" and name in TUNABLE_TRAIN)):
        problems.add(where, f"expected model.params.NAME or train.NAME ({', '.join(TUNABLE_TRAIN)})")
        return None
    if not isinstance(spec, dict):
        problems.add(where, "expected a mapping such as {type: float, low: 0.0001, high: 0.01, log: true}")
        return None
    kind = spec.get("type")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            problems.add(where, "a categorical parameter needs a non-empty list of choices")
            return None
        return SearchParam(key, kind, choices=tuple(choices))
    if kind not in ("float", "int"):
        problems.add(where, f"type: expected float, int or categorical, got {kind!r}")
        return None
    low: Any = spec.get("low")
    high: Any = spec.get("high")
    step, log = spec.get("step"), spec.get("log", False)
    if not (_typed(low, (int, float)) and _typed(high, (int, float)) and low < high):
        problems.add(where, f"expected numbers low < high, got low {low!r} and high {high!r}")
        return None
    if log and low <= 0:
        problems.add(where, f"a log scale needs low > 0, got {low!r}")
        return None
    if step is not None and (not _typed(step, (int, float)) or step <= 0 or log):
        problems.add(where, f"step: expected a positive number (and no log scale), got {step!r}")
        return None
    if kind == "int" and not all(_typed(v, int) for v in (low, high, *([step] if step is not None else []))):
        problems.add(where, f"an int parameter needs whole numbers for low, high and step, got {low!r}, {high!r}, "
                            f"{step!r}")
        return None
    if sampler == "grid" and kind == "float" and step is None:
        problems.add(where, "the grid sampler needs a step for a float parameter (or a categorical list)")
        return None
    return SearchParam(key, kind, low=low, high=high, log=bool(log), step=step)


def default_registry() -> str:
    """Where artifacts go when the config names no registry: in GitHub Actions, the repository's own package on
    GitHub's registry (a runner's disk is emptied after every job); elsewhere, a folder beside the config."""
    repository = os.environ.get("GITHUB_REPOSITORY", "") if os.environ.get("GITHUB_ACTIONS") == "true" else ""
    # NOTE: GHCR takes lowercase repository names only
    return f"ghcr.io/{repository.lower()}-model" if repository else DEFAULT_REGISTRY


def parse_config(raw: Any, path: Path) -> Config:
    """Validate a parsed YAML document; raise `ConfigError` listing every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [f"expected a mapping of sections at the top, got {raw!r}"])
    problems = _Problems()
    top = ["task", "data", "model", "train", "evaluate", "gate", "compare", "export", "tune", "registry",
           "registry_local_in_ci"]
    _unknown_keys(raw, top, "", problems)
    task = _choice(raw, "task", "", problems, TASKS, None)
    registry = raw.get("registry", default_registry())
    if not isinstance(registry, str) or not registry:
        problems.add("registry", f"expected a reference such as 'oci:.modelci/registry', got {registry!r}")
        registry = DEFAULT_REGISTRY
    config = Config(
        task=task or "",
        data=_data(raw, path.parent, problems),
        model=_model(raw, path.parent, problems),
        train=_train(raw, problems),
        evaluate=_metrics(raw, task, problems),
        gate=_gate(raw, task, problems, path),
        compare=_compare(raw, problems),
        export=_export(raw, problems),
        tune=_tune(raw, task, path.parent, problems),
        registry=registry,
        registry_local_in_ci=_flag(raw, "registry_local_in_ci", "", problems),
        path=path,
    )
    if config.compare.seeds > 1 and config.model.onnx is not None:
        # NOTE: a file made elsewhere would be the same model for every seed: no training noise to measure
        problems.add("compare.seeds", "training with several seeds needs a model modelci trains; model.onnx is a model "
                     "already made (set compare.seeds: 1, or make it with a train.command, given each seed as "
                     "MODELCI_SEED)")
    if config.data.text is not None and config.data.image is not None:
        problems.add("data", "data.image and data.text are both set; a model takes images or texts")
    if config.train.augment.active and config.data.image is None:
        problems.add("train.augment", "augmentations change images; set data.image (the size the model takes) for an "
                                      "image model")
    if config.task == "regression" and config.train.class_weights != "none":
        problems.add("train.class_weights", "class weights need classes; a regression task has none")
    if problems:
        raise ConfigError(str(path), problems, hint="fix these keys; the README lists every setting")
    return config


def read_raw(path: Path | str | None) -> tuple[dict[str, Any], Path]:
    """The config file's YAML as parsed, and its resolved path."""
    config_path = Path(path or DEFAULT_CONFIG)
    if not config_path.is_file():
        raise ConfigError(
            str(config_path),
            ["the file does not exist"],
            hint="run modelci from the model repository's root, or pass --config PATH (or MODELCI_CONFIG)",
        )
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(str(config_path), [f"not valid YAML: {exc}"]) from None
    return raw, config_path.resolve()


def merge_params(raw: Any, params: dict[str, Any]) -> Any:
    """`raw` with each `model.params.NAME` and `train.NAME` of `params` set (validated when parsed)."""
    if not isinstance(raw, dict):
        return raw
    merged = copy.deepcopy(raw)
    for key, value in params.items():
        group, _, name = key.partition(".")
        found = merged.get(group)
        section: dict[str, Any] = found if isinstance(found, dict) else {}
        merged[group] = section
        if group == "model":
            section["params"] = {**(section.get("params") or {}), name.removeprefix("params."): value}
        else:
            section[name] = value
    return merged


def _tuned(raw: Any, config_path: Path) -> tuple[Path, dict[str, Any]] | None:
    """The best parameters `modelci tune` wrote (tune.best_file, default tuned.yaml), if that file exists."""
    tune = raw.get("tune") if isinstance(raw, dict) else None
    name = tune.get("best_file", "tuned.yaml") if isinstance(tune, dict) else "tuned.yaml"
    path = config_path.parent / str(name)
    if not path.is_file():
        return None
    again = "delete it, or run `modelci tune` again"
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"], hint=again) from None
    if not isinstance(params, dict):
        raise ConfigError(str(path), [f"expected a mapping of parameters, got {params!r}"], hint=again)
    wrong = [str(k) for k in params if not str(k).startswith(("model.params.", "train."))]
    if wrong:
        raise ConfigError(str(path), [f"{k}: expected model.params.NAME or train.NAME" for k in wrong], hint=again)
    return path, params


def load_config(path: Path | str | None) -> Config:
    """Read and validate the config file (default `modelci.yaml` in the working directory).

    The best parameters of `modelci tune` (tuned.yaml beside it, when present) are applied over it.
    """
    raw, config_path = read_raw(path)
    tuned = _tuned(raw, config_path)
    if tuned is None:
        return parse_config(raw, config_path)
    return dataclasses.replace(parse_config(merge_params(raw, tuned[1]), config_path), tuned_from=tuned[0])
