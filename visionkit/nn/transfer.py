"""Transfer-learning switches: freeze the first stages of a network, replace a classifier's last layer.

Every visionkit backbone keeps a ``trainable_layers`` parameter: the number of *stages*,
counted from the last, whose parameters keep ``requires_grad`` (torchvision's
``trainable_backbone_layers``). 0 freezes the whole trunk; the backbone's maximum trains all of
it. A backbone without FPN lists its stages in ``stages`` (tuples of parameter-name prefixes
of its ``body``), so :func:`freeze_stages` can be applied again later (e.g. to unfreeze
after a warm-up).

For classification networks (torchvision's, or ``small-cnn``'s :meth:`classifier`),
:func:`replace_classifier` swaps the last fully connected layer for a fresh one with another
number of classes, the usual first step of fine-tuning on a new data set.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["freeze_stages", "replace_classifier", "trainable_parameter_names"]


def _in_stage(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def freeze_stages(module: nn.Module, stages: Sequence[Sequence[str]], trainable_layers: int) -> None:
    """Keep ``requires_grad`` on the last ``trainable_layers`` of ``stages`` only.

    ``stages``: one tuple of parameter-name prefixes (``"layer4"``, ``"features.10"``) per
    stage, first stage first. Parameters of the last ``trainable_layers`` stages are set
    trainable, every other parameter of ``module`` (stages before them, and anything not in a
    stage) is frozen. Raises ``ValueError`` when ``trainable_layers`` is not in
    ``0..len(stages)``.
    """
    if not 0 <= trainable_layers <= len(stages):
        raise ValueError(f"trainable_layers must be between 0 and {len(stages)}, got {trainable_layers}")
    trainable = [p for stage in stages[len(stages) - trainable_layers:] for p in stage]
    for name, param in module.named_parameters():
        param.requires_grad_(_in_stage(name, trainable))


def trainable_parameter_names(module: nn.Module) -> list[str]:
    """Names of the parameters of ``module`` that have ``requires_grad`` (for checks and logs)."""
    return [n for n, p in module.named_parameters() if p.requires_grad]


def replace_classifier(model: nn.Module, num_classes: int) -> nn.Linear:
    """Replace the last fully connected layer of a classifier by a new ``nn.Linear(..., num_classes)``.

    Works on torchvision's classification networks and on ``small-cnn`` classifiers:
    ``model.fc`` (ResNet, GoogLeNet, small-cnn), ``model.classifier`` when it is an
    ``nn.Linear``, or the last ``nn.Linear`` inside ``model.classifier`` (AlexNet, VGG,
    MobileNetV3). The new layer has PyTorch's default initialisation and ``requires_grad``;
    the rest of the model is left as it is (freeze it with :func:`freeze_stages` or
    ``requires_grad_(False)``). Returns the new layer. Raises ``TypeError`` when no such
    layer is found and ``ValueError`` for ``num_classes < 1``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    fc = getattr(model, "fc", None)
    if isinstance(fc, nn.Linear):
        model.fc = _like(fc, num_classes)
        return model.fc
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear):
        model.classifier = _like(classifier, num_classes)
        return model.classifier
    if isinstance(classifier, nn.Sequential):
        for index in reversed(range(len(classifier))):
            if isinstance(classifier[index], nn.Linear):
                classifier[index] = _like(classifier[index], num_classes)
                return classifier[index]
    raise TypeError(
        f"{type(model).__name__} has no classifier to replace: expected an nn.Linear 'fc', or "
        "'classifier' as an nn.Linear or an nn.Sequential ending in one"
    )


def _like(layer: nn.Linear, num_classes: int) -> nn.Linear:
    weight = layer.weight
    return nn.Linear(layer.in_features, num_classes, bias=layer.bias is not None,
                     device=weight.device, dtype=weight.dtype)
