"""Baselines run through the same evaluation as the meta-learners (``evaluate(batch, steps=)``).

``FineTuneLearner``: scratch training or fine-tuning of a pre-trained model on each support set;
``pretrain_pooled``: pooled supervised pre-training; ``ProtoNet``: prototypical networks;
``meta_train``: a plain meta-training loop with a wall-clock budget; the statistician's baselines
for grouped regression: ``MixedEffectsLearner`` (a linear mixed model, REML + BLUP) and
``DeepKernelGP`` (a GP per task with a meta-learned deep kernel).
"""

from metacompose.baselines.deep_kernel import DeepKernelGP
from metacompose.baselines.finetune import FineTuneLearner, adam_update
from metacompose.baselines.meta_train import MetaTrainResult, meta_train
from metacompose.baselines.mixed_effects import MixedEffectsLearner, MixedModelFit, fit_mixed_model
from metacompose.baselines.pretrain import PretrainResult, pretrain_pooled
from metacompose.baselines.protonet import ProtoNet, prototype_logits

__all__ = [
    "DeepKernelGP",
    "FineTuneLearner",
    "MetaTrainResult",
    "MixedEffectsLearner",
    "MixedModelFit",
    "PretrainResult",
    "ProtoNet",
    "adam_update",
    "fit_mixed_model",
    "meta_train",
    "pretrain_pooled",
    "prototype_logits",
]
