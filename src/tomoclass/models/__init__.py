"""Classifier networks for subtomograms and their registry.

Models: ``dilated_densenet3d`` (Gao et al. 2020), ``densenet3d`` (its all-dilation-1
baseline), ``shrec_cnn`` (the SHREC'19 CNN baseline) and ``monai_densenet121`` (MONAI's 3D
DenseNet-121; needs the optional extra ``bench``). Build one with
``get_model(name, num_classes=...)``; every model has ``forward_features``,
``forward_head``, ``get_classifier``, ``reset_classifier``, ``model_name``,
``model_config``, ``has_gap_head`` and ``min_input_size``.
"""

from tomoclass.models import densenet as _densenet  # noqa: F401  (registers the DenseNets)
from tomoclass.models import monai_densenet as _monai  # noqa: F401  (monai_densenet121; optional)
from tomoclass.models import shrec_cnn as _shrec_cnn  # noqa: F401  (registers shrec_cnn)
from tomoclass.models.analysis import (
    ModelSummary,
    count_flops,
    count_parameters,
    receptive_field,
    summarize_models,
)
from tomoclass.models.densenet import DenseNet3D
from tomoclass.models.inference import FusedDenseNet3D, InferenceModel, optimize_for_inference
from tomoclass.models.layers import DenseBlock, DenseLayer, TomoNet, Transition, init_weights
from tomoclass.models.registry import get_model, list_models, register_model
from tomoclass.models.shrec_cnn import ShrecCNN

__all__ = [
    "DenseBlock",
    "DenseLayer",
    "DenseNet3D",
    "FusedDenseNet3D",
    "InferenceModel",
    "ModelSummary",
    "ShrecCNN",
    "TomoNet",
    "Transition",
    "count_flops",
    "count_parameters",
    "get_model",
    "init_weights",
    "list_models",
    "optimize_for_inference",
    "receptive_field",
    "register_model",
    "summarize_models",
]
