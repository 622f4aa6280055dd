"""The network: a CNN encoder with a cluster classifier and an A/V/D regressor on top."""

from deepemocluster.model.network import DeepEmoCluster, build_model

__all__ = ["DeepEmoCluster", "build_model"]
