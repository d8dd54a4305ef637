"""The own-onnx example's training script: our own scikit-learn code, run by modelci as `train.command`.

modelci runs it in this folder and says through environment variables where the data is and where the
model goes (the contract is in modelci's README). It trains a Pipeline with our own preprocessing on
the raw columns, converts it to ONNX with skl2onnx and writes its own predictions for the evaluation
rows, which modelci checks the ONNX model against. Generate the data and run it:

    python ../churn/generate_data.py --out data && modelci run
"""

import argparse
import json
import os

import numpy as np
import onnx
import pandas as pd
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

# The hyperparameters are the script's own arguments: modelci.yaml's train.command passes them.
parser = argparse.ArgumentParser()
parser.add_argument("--C", type=float, default=1.0, help="inverse regularization strength")
C = parser.parse_args().C

env = os.environ
features, label = json.loads(env["MODELCI_FEATURES"]), env["MODELCI_LABEL"]
# MODELCI_VALIDATION_DATA is there to choose on (stop early, tune); this model needs none. The evaluation
# rows judge the model: they are read only for the predictions written at the end.
train, evaluation = pd.read_parquet(env["MODELCI_TRAIN_DATA"]), pd.read_parquet(env["MODELCI_EVAL_DATA"])
numbers = [c for c in features if pd.api.types.is_numeric_dtype(train[c])]
categories = [c for c in features if c not in numbers]


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns as the ONNX model gets them: numbers as float32 (empty is NaN), categories as strings
    (empty is "")."""
    return frame[features].astype({c: np.float32 for c in numbers}).fillna({c: "" for c in categories})


pipeline = Pipeline([
    ("columns", ColumnTransformer([
        # total_charges is empty in a customer's first month: the imputer fills in the median
        ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers),
        # a category the training rows never had gets all zeros, not an error
        ("categories", OneHotEncoder(handle_unknown="ignore"), categories),
    ])),
    # the seed modelci gives, used by solvers that shuffle the rows (saga, liblinear), so a rerun is the same
    ("model", LogisticRegression(C=C, max_iter=1000, random_state=int(env["MODELCI_SEED"]))),
])
pipeline.fit(model_inputs(train), train[label])
# NOTE: the probability columns follow the classifier's classes; modelci expects them in MODELCI_CLASSES' order
classes = [str(c) for c in json.loads(env["MODELCI_CLASSES"])]
assert [str(c) for c in pipeline.classes_] == classes, (pipeline.classes_, classes)

# modelci's contract: one input per feature column named after it, [batch, 1], float32 or string ...
inputs = [(c, FloatTensorType([None, 1])) for c in numbers] + [(c, StringTensorType([None, 1])) for c in categories]
# ... and the probabilities as a [batch, classes] tensor (no ZipMap) as the first output: skl2onnx's
# outputs are (label, probabilities), so the label goes
converted = convert_sklearn(pipeline, initial_types=inputs, target_opset=18,
                            options={LogisticRegression: {"zipmap": False}})
converted.graph.output.remove(next(o for o in converted.graph.output if o.name == "label"))
onnx.save(converted, env["MODELCI_MODEL"])

# Our model's own probabilities for the evaluation rows, in their order and one column per class:
# modelci checks ONNX Runtime's outputs against them (parity)
probabilities = pipeline.predict_proba(model_inputs(evaluation))
pd.DataFrame(probabilities, columns=classes).to_parquet(env["MODELCI_PREDICTIONS"], index=False)
print(f"trained LogisticRegression(C={C}) on {len(train)} rows; wrote the ONNX model and its predictions")
