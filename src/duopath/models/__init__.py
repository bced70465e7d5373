"""Models: the multi-modal teacher, the histology-only student and their building blocks.

Public API: ``Teacher``, ``Student``, ``ModelOutput``, ``MODELS`` / ``build_model`` and the
gating helpers. See DESIGN.md, "Model (Stage I: teacher; Stage II: student)".
"""

from duopath.models.contract import SUBSPACES, ModelOutput
from duopath.models.gating import combine_experts, expert_confidence, survival_outcome_probs
from duopath.models.registry import MODELS, build_model
from duopath.models.student import Student
from duopath.models.teacher import Teacher

__all__ = [
    "MODELS",
    "SUBSPACES",
    "ModelOutput",
    "Student",
    "Teacher",
    "build_model",
    "combine_experts",
    "expert_confidence",
    "survival_outcome_probs",
]
