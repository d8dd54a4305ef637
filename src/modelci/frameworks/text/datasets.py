"""A text model's input: the table's text column, the schema's `type: text` column (else `text`), read from the
rows as any table's are; the label is the table's label column, and every other column is left out.

NOTE: imports no torch.
"""

from __future__ import annotations

from modelci.config import Config
from modelci.data.roles import Chosen
from modelci.data.tables import Datasets
from modelci.errors import DataError

DEFAULT_COLUMN = "text"


def text_column(config: Config) -> str:
    """The texts' column, and the exported model's input: the schema's `type: text` column, else `text`."""
    from modelci.data.schema import load_schema

    schema = load_schema(config.data.schema) if config.data.schema else None
    return schema.text.name if schema is not None and schema.text is not None else DEFAULT_COLUMN


def chosen(config: Config, datasets: Datasets) -> Chosen:
    """The model's input: the text column alone, taken as it is (split into words inside the model)."""
    column = text_column(config)
    if column not in datasets.train.columns:
        names = ", ".join(map(str, datasets.train.columns))
        raise DataError(f"data.train: no text column '{column}' (columns: {names})",
                        hint="mark the column of texts `type: text` in data.schema, or call it "
                             f"'{DEFAULT_COLUMN}'")
    others = [str(c) for c in datasets.train.columns if c not in (column, config.data.label)]
    return Chosen(features=[column], left_out=dict.fromkeys(others, "not the text (a text model reads its text alone)"))
