"""`modelci data check`: the schema's rules, dataset rules, leakage and drift, over training and eval data.

Each dataset is read once (`scan`). Every violation is collected before anything is reported:
the column, the rule, how many rows break it, and a few sample values with their row numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelci import github
from modelci.data import images
from modelci.data.drift import ColumnDrift, measure, rule_for
from modelci.data.named import require_named_columns
from modelci.data.profile import PROFILE_VERSION
from modelci.data.rules import Violation, rows_violation
from modelci.data.scan import Scan, scan
from modelci.data.schema import Schema, load_schema
from modelci.data.text.check import TextSummary

if TYPE_CHECKING:
    from modelci.config import Config

REPORT_VERSION = 2
# Rules that `data.clean` settles by dropping (or clipping) the rows that break them.
ROW_RULES = ("type", "not_null", "finite", "min", "max", "allowed", "pattern")


@dataclass
class DatasetResult:
    name: str
    path: str
    files: list[str]
    rows: int
    columns: int
    fingerprint: str
    violations: list[Violation]
    drift: list[ColumnDrift] = field(default_factory=list)
    text: list[TextSummary] = field(default_factory=list)  # per `type: text` column: its words, unknown words

    @property
    def errors(self) -> list[Violation]:
        return [v for v in self.violations if v.severity == "error"]


@dataclass
class DataReport:
    passed: bool
    datasets: list[DatasetResult]
    schema: str | None
    baseline_profile: str | None = None
    drift_severity: str = "warning"
    cleaning: dict[str, Any] | None = None
    version: int = REPORT_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def shown_path(path: Path, root: Path) -> str:
    """A path as the user wrote it: relative to the repository root when it lies inside."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _scan(path: Path, schema: Schema | None, profile: bool, label: str,
          vocabularies: dict[str, frozenset[str]] | None = None) -> Scan:
    """One pass over a dataset, as images (a folder per class, or a table with an image column) or as a table.

    `vocabularies`: the training data's most frequent words per text column, for the evaluation data's.
    """
    if images.is_image_data(path, schema):
        from modelci.data.images.scan import scan_images

        return scan_images(path, schema, profile=profile, label=label)
    return scan(path, schema, profile=profile, label=label, vocabularies=vocabularies)


def _name_rows(violations: list[Violation], found: Scan) -> None:
    """Name the images of the duplicates and leakage found by their row (image) numbers, where names say more."""
    if found.names is None:
        return
    for v in violations:
        if v.column is None and v.rule in ("duplicates", "leakage") and v.sample_rows and not v.sample_values:
            v.sample_values = found.names(v.sample_rows)


def _dataset_rules(found: Scan, schema: Schema | None, label: str) -> list[Violation]:
    rules = schema.dataset if schema else None
    violations: list[Violation] = []
    if rules is not None and rules.rows.breaks(found.rows):
        violations.append(Violation(column=None, rule="rows", rows=found.rows,
                                    message=f"{found.rows} rows; the schema wants {rules.rows.describe()}"))
    severity = rules.duplicates if rules else "warning"
    if severity != "ignore":
        repeated = found.keys.duplicates()
        if repeated.rows:
            what = "images whose content repeats an earlier image's" if found.images \
                else "rows that repeat an earlier row exactly"
            violations.append(rows_violation("duplicates", what, repeated, severity))
    violations += _label_rules(found, schema, label)
    return violations


def _label_rules(found: Scan, schema: Schema | None, label: str) -> list[Violation]:
    profile = found.profile.columns.get(label)
    if profile is None:
        return [Violation(column=label, rule="present", rows=found.rows,
                          message="the label column (data.label in modelci.yaml) is missing from the data")]
    violations = []
    if (schema is None or schema.column(label) is None) and profile.nulls:
        violations.append(Violation(column=label, rule="not_null", rows=profile.nulls,
                                    message="rows without a label"))
    balance = schema.dataset.class_balance if schema else None
    classes = profile.frequencies()
    if balance is not None and (balance.min is not None or balance.max is not None) and classes:
        total = sum(count for _, count in classes)
        for value, count in classes:
            if balance.breaks(count / total):
                violations.append(Violation(
                    column=label, rule="class_balance", rows=count, sample_values=[value],
                    message=f"class {value!r} is {count / total:.2%} of the rows; the schema wants "
                            f"{balance.describe()} for each class"))
    return violations


def _leakage(train: Scan, evaluation: Scan, schema: Schema | None) -> list[Violation]:
    severity = schema.dataset.leakage if schema else "error"
    if severity == "ignore":
        return []
    shared = evaluation.keys.shared_with(train.keys)
    what = "evaluation images whose content is also in the training images" if evaluation.images \
        else "evaluation rows that also appear in the training data"
    found = [rows_violation("leakage", what, shared, severity)] if shared.rows else []
    for name, texts in evaluation.texts.items():
        trained = train.texts.get(name)
        same = texts.keys.shared_with(trained.keys) if trained is not None else None
        if same is not None and same.rows:
            found.append(Violation(column=name, rule="leakage", rows=same.rows, severity=severity,
                                   sample_rows=list(same.sample_rows),
                                   message="evaluation texts that are also training texts (ignoring case, Unicode "
                                           "forms and whitespace)"))
    return found


def _settle_by_cleaning(violations: list[Violation], config: Config) -> None:
    """Mark the violations that `data.clean` removes before training as cleaned, not errors."""
    clean = config.data.clean
    for v in violations:
        if v.severity != "error":
            continue
        # NOTE: data.clean drops rows that repeat whole; a text repeated (v.column set) under another label stays
        if ((v.rule == "duplicates" and v.column is None and clean.drop_duplicates)
                or (v.rule == "not_null" and v.column == config.data.label and clean.drop_null_label)
                or (v.rule in ROW_RULES and clean.invalid_rows != "keep")):
            v.severity = "cleaned"


def _result(name: str, found: Scan, violations: list[Violation], config: Config) -> DatasetResult:
    return DatasetResult(name=name, path=shown_path(found.path, config.root),
                         files=[shown_path(f, config.root) for f in found.files], rows=found.rows,
                         columns=len(found.columns), fingerprint=found.fingerprint, violations=violations,
                         text=[t.summary for t in found.texts.values()])


def check_data(config: Config, baseline_profile: dict[str, Any] | None = None, baseline_name: str | None = None,
               *, profile_columns: bool = True) -> tuple[DataReport, dict[str, Any]]:
    """Check the training (and evaluation) data; returns the report and the data profile.

    `profile_columns=False` profiles only the label (for measuring what the profile costs).
    """
    schema = load_schema(config.data.schema) if config.data.schema else None
    if not any(images.is_image_folder(p) for p in (config.data.train, config.data.eval) if p is not None):
        require_named_columns(config)  # NOTE: a folder per class has no columns to read; its label is its folders
    if schema is None:
        github.warning("no data.schema in modelci.yaml: only reading, profiling and comparing the data; "
                       "write one with `modelci data infer-schema`")
    paths = {"train": config.data.train, **({"eval": config.data.eval} if config.data.eval else {})}
    scans: dict[str, Scan] = {}
    try:
        for name, path in paths.items():
            vocabularies = scans["train"].vocabularies() if name == "eval" else None
            scans[name] = _scan(path, schema, profile_columns, config.data.label, vocabularies)
        results = []
        for name, found in scans.items():
            violations = found.violations + _dataset_rules(found, schema, config.data.label)
            if name == "eval":
                violations += _leakage(scans["train"], found, schema)
            _name_rows(violations, found)
            _settle_by_cleaning(violations, config)
            results.append(_result(name, found, violations, config))
    finally:
        for found in scans.values():
            found.close()
    datasets = {name: {"fingerprint": found.fingerprint, **found.profile.to_json()} for name, found in scans.items()}
    if baseline_profile is not None:
        for result in results:
            old = baseline_profile.get("datasets", {}).get(result.name)
            if old is not None:
                result.drift = measure(old, datasets[result.name], config.data.drift.rule, schema)
    drift_fails = config.data.drift.severity == "error" and any(
        d.verdict == "drifted" for r in results for d in r.drift)
    report = DataReport(
        passed=not any(r.errors for r in results) and not drift_fails, datasets=results,
        schema=shown_path(config.data.schema, config.root) if config.data.schema else None,
        baseline_profile=baseline_name if baseline_profile is not None else None,
        drift_severity=config.data.drift.severity)
    # NOTE: each column's drift rule goes with the profile, so the model server measures the drift
    # of what it is sent as this check does (serve/drift.py)
    rules = {column: rule_for(column, schema, config.data.drift.rule) for column in datasets["train"]["columns"]}
    drift = {column: {"method": rule.method, "threshold": rule.threshold} for column, rule in rules.items() if rule}
    return report, {"version": PROFILE_VERSION, "datasets": datasets, "drift": drift}


def announce(report: DataReport) -> None:
    """Annotations on the data files, one per violation and drifted column, and a line per dataset."""
    for dataset in report.datasets:
        for v in dataset.violations:
            sample = f"; e.g. row {v.sample_rows[0]}" if v.sample_rows else ""
            sample += f": {v.sample_values[0]!r}" if v.sample_values and v.sample_rows else ""
            where = f"{v.column}: " if v.column else ""
            text = f"{where}{v.message} ({v.rows} rows{sample})"
            if v.severity == "cleaned":
                github.log(f"    {dataset.name}: {text}; removed before training by data.clean")
                continue
            (github.error if v.severity == "error" else github.warning)(text, file=dataset.path)
        for d in dataset.drift:
            if d.verdict == "drifted":
                (github.error if report.drift_severity == "error" else github.warning)(
                    f"{d.column}: drifted from the baseline ({_drift_text(d)})", file=dataset.path)
        drifted = sum(d.verdict == "drifted" for d in dataset.drift)
        github.log(f"    {dataset.name}: {dataset.rows} rows, {len(dataset.errors)} failed checks"
                   + (f", {drifted} of {len(dataset.drift)} columns drifted" if dataset.drift else ""))


def _drift_text(d: ColumnDrift) -> str:
    if d.method == "ks":
        return f"ks statistic {d.score:.3f}, p-value {d.p_value:.2g} < {d.threshold}"
    return f"{d.method} {d.score:.3f} > {d.threshold}"
