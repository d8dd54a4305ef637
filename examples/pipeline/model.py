"""The pipeline example's model: a scikit-learn Pipeline that does its own preprocessing of the churn data.

modelci calls `build(input_dim=..., output_dim=..., **model.params)`. A Pipeline whose first step is a
ColumnTransformer takes the raw columns it names: modelci adds none of its own preprocessing, fits it on
those columns (numbers as float32 with empty values NaN, text as strings) and converts it whole to ONNX,
one input per column. The widths modelci passes are not needed. Generate the data and run it:

    python ../churn/generate_data.py --out data && modelci run
"""

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMBERS = ["tenure_months", "monthly_charges", "total_charges", "support_tickets", "senior", "num_products"]
CATEGORIES = ["contract", "payment_method", "internet_service"]


def build(input_dim: int, output_dim: int, C: float = 1.0) -> Pipeline:
    columns = ColumnTransformer([
        # total_charges is empty for customers in their first month: the imputer fills in the median
        ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMBERS),
        # a category the training data never had (a new contract type) gets all zeros, not an error
        ("categories", OneHotEncoder(handle_unknown="ignore"), CATEGORIES),
    ])
    return Pipeline([("columns", columns), ("model", LogisticRegression(C=C, max_iter=1000))])
