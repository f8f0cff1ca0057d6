"""Point-in-time features and contract labels of buyers at as-of dates."""

from riskmodel.features.engine import (
    CATEGORICAL,
    ID_COLUMNS,
    FeatureConfig,
    build_features,
    cycle_names,
    feature_names,
    paydex_score,
)

__all__ = [
    "CATEGORICAL",
    "ID_COLUMNS",
    "FeatureConfig",
    "build_features",
    "cycle_names",
    "feature_names",
    "paydex_score",
]
