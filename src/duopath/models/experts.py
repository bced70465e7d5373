"""The skeleton every model shares: one expert per magnification, a head each, one gate.

The teacher, the student and every baseline are "M experts, each ending in a Linear head over
C outputs, gated per sample" (DESIGN.md, "Model"); they differ only in what an expert computes.
:class:`MultiExpertModel` holds what they share -- the architecture value (already validated,
``duopath.models.arch``), the expert names, the heads' construction, the per-magnification
input check and the gated output -- so a model writes only its experts and its ``forward``.

Why the heads are built by the subclass (``self.heads = self.make_heads(...)``) and not here:
a module's parameters are created -- and drawn from the RNG -- in registration order, so where
the heads are created decides every initial weight; each model keeps its own order, and with it
its initial weights and state-dict names.

``gating: validation`` adds one buffer, ``gate_fixed`` [M] (the mean until
``training.gate_fit`` sets the weighting chosen on the validation patients): a buffer, so the
chosen weights travel in the checkpoint's state dict and every reader of a checkpoint (predict,
heatmaps, external cohorts, a student's teacher) applies them without knowing about the fit.
Other gates register nothing, so their state dicts (and older checkpoints) are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from duopath.models.arch import Architecture
from duopath.models.contract import ModelOutput, check_tiles
from duopath.models.gating import gate_experts


class MultiExpertModel(nn.Module):
    """Base of the teacher, the student and the baselines (module docstring).

    Attributes:
        arch_type: the architecture family a subclass is built from (``registry.build_model``
            rebuilds it from a checkpoint's JSON).
        arch: the architecture value this model was built from.
        expert_names: keys of ``heads`` and of ``ModelOutput.logits_by_mag``, in gate order
            (the magnifications, or e.g. ``("rna",)`` for an RNA-only model).
    """

    arch_type: ClassVar[type[Architecture]] = Architecture
    heads: nn.ModuleDict

    def __init__(self, arch: Architecture, expert_names: Sequence[str] | None = None) -> None:
        super().__init__()
        if not isinstance(arch, self.arch_type):
            raise TypeError(f"{type(self).__name__} is built from a {self.arch_type.__name__}, "
                            f"got {type(arch).__name__}")
        self.arch = arch
        self.task, self.feature_dim, self.n_classes = arch.task, arch.feature_dim, arch.n_classes
        self.dim = arch.dim
        self.magnifications: tuple[str, ...] = arch.magnifications
        self.gating, self.gating_temperature = arch.gating, arch.gating_temperature
        names = self.magnifications if expert_names is None else expert_names
        self.expert_names: tuple[str, ...] = tuple(names)
        self.gate_fixed: Tensor | None
        fixed = None
        if self.gating == "validation":  # no RNG draw: the other weights' initial values stay put
            fixed = torch.full((len(self.expert_names),), 1.0 / len(self.expert_names))
        self.register_buffer("gate_fixed", fixed)

    def set_gate_weights(self, weights: Sequence[float]) -> None:
        """Fix the ``validation`` gate's weighting (one per expert, in ``expert_names`` order,
        non-negative, summing to 1)."""
        if self.gate_fixed is None:
            raise ValueError(f"set_gate_weights needs gating 'validation', this model gates by "
                             f"{self.gating!r}")
        w = torch.as_tensor(list(weights), dtype=torch.float64)
        if w.shape != self.gate_fixed.shape or bool((w < 0).any()) or abs(float(w.sum()) - 1.0) > 1e-6:
            raise ValueError(f"gate weights must be {len(self.expert_names)} non-negative numbers "
                             f"summing to 1 (experts {self.expert_names}), got {list(weights)}")
        self.gate_fixed.copy_(w.to(self.gate_fixed))

    def make_heads(self, in_dim: int) -> nn.ModuleDict:
        """One Linear(in_dim → C) head per expert, started at ``arch.survival_prior`` if given.

        Why start a survival head at the training Kaplan–Meier (bias = its per-bin hazard logits,
        weight = 0): with PyTorch's default init every hazard starts near sigmoid(0) = 0.5, i.e. a
        curve that falls to ~6 % within four bins, and a small learning rate never undoes that,
        so the trained curves were worse than the Kaplan–Meier null (IBS; bench/gse7390.py). From
        the null, training moves each patient's curve only as far as the data pull it. The zero
        weight still gets gradients (∂L/∂W = ∂L/∂z · x), so the head learns from the first step;
        the weights are drawn first and then overwritten, so every other parameter's initial
        value (the RNG stream) is the same as without a prior.
        """
        heads = nn.ModuleDict({k: nn.Linear(in_dim, self.n_classes) for k in self.expert_names})
        prior = self.arch.survival_prior
        if prior is not None:
            with torch.no_grad():
                for head in heads.values():
                    head.weight.zero_()
                    head.bias.copy_(torch.as_tensor(prior, dtype=head.bias.dtype))
        return heads

    @property
    def param_dtype(self) -> torch.dtype:
        """The dtype inputs are cast to (the heads', i.e. the model's)."""
        return self.heads[self.expert_names[0]].weight.dtype

    def tiles(
        self, mag: str, feats: Mapping[str, Tensor], mask: Mapping[str, Tensor], coords: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Magnification ``mag``'s checked inputs (``contract.check_tiles``)."""
        return check_tiles(mag, feats, mask, coords, self.feature_dim, self.param_dtype)

    def gated_output(
        self,
        logits_by_expert: dict[str, Tensor],
        embeddings: dict[str, dict[str, Tensor]],
        attention: dict[str, dict[str, Tensor]],
        **extra: Any,
    ) -> ModelOutput:
        """Confidence per expert, gated logits (``gating.gate_experts``), the packed output."""
        confidence, logits, weights = gate_experts(logits_by_expert, self.expert_names, self.task,
                                                   self.gating, self.gating_temperature, self.gate_fixed)
        return ModelOutput(logits=logits, logits_by_mag=logits_by_expert, embeddings=embeddings,
                           attention=attention, confidence=confidence, gate_weights=weights, **extra)
