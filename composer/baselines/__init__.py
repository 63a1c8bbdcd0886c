"""Baselines run through the same evaluation as the meta-learners (``evaluate(batch, steps=)``).

``FineTuneLearner``: scratch training or fine-tuning of a pre-trained model on each support set;
``pretrain_pooled``: pooled supervised pre-training; ``ProtoNet``: prototypical networks;
``meta_train``: a plain meta-training loop with a wall-clock budget.
"""

from metacompose.baselines.finetune import FineTuneLearner, adam_update
from metacompose.baselines.meta_train import MetaTrainResult, meta_train
from metacompose.baselines.pretrain import PretrainResult, pretrain_pooled
from metacompose.baselines.protonet import ProtoNet, prototype_logits

__all__ = [
    "FineTuneLearner",
    "MetaTrainResult",
    "PretrainResult",
    "ProtoNet",
    "adam_update",
    "meta_train",
    "pretrain_pooled",
    "prototype_logits",
]
