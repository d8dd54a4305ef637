"""The trees example's model: LightGBM's gradient-boosted trees on the churn data.

modelci calls `build(input_dim=..., output_dim=..., **model.params)` and fits what it returns on its
preprocessed features (numbers standardized, categories one-hot). Generate the data and run it:

    python ../churn/generate_data.py --out data && modelci run

Needs modelci's lightgbm extra: pip install 'modelci[lightgbm]'.
"""

from lightgbm import LGBMClassifier


def build(input_dim: int, output_dim: int, n_estimators: int = 200, learning_rate: float = 0.05,
          num_leaves: int = 15) -> LGBMClassifier:
    # verbose=-1: LightGBM's own progress lines would fill the CI log
    return LGBMClassifier(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
                          min_child_samples=20, subsample=0.8, subsample_freq=1, verbose=-1)
