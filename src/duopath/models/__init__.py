"""Models: the multi-modal teacher, the histology-only student and their building blocks.

Public API: ``Teacher``, ``Student``, the comparison baselines (``BASELINES``: ABMIL,
TransMIL, SNN, concat / bilinear late fusion, MCAT), their architectures (``TeacherArch``,
``StudentArch``, ``BaselineArch``), their shared base ``MultiExpertModel``, ``ModelOutput``,
``MODELS`` / ``build_model`` and the gating helpers.
See DESIGN.md, "Model (Stage I: teacher; Stage II: student)".
"""

from duopath.models.arch import Architecture, BaselineArch, StudentArch, TeacherArch
from duopath.models.baselines_fusion import MCAT, SNN, BilinearFusion, ConcatFusion
from duopath.models.baselines_wsi import ABMIL, TransMIL
from duopath.models.contract import SUBSPACES, ModelOutput
from duopath.models.experts import MultiExpertModel
from duopath.models.gating import combine_experts, expert_confidence, survival_outcome_probs
from duopath.models.registry import BASELINES, MODELS, build_model, model_class
from duopath.models.student import Student
from duopath.models.teacher import Teacher

__all__ = [
    "ABMIL",
    "BASELINES",
    "MCAT",
    "MODELS",
    "SNN",
    "SUBSPACES",
    "Architecture",
    "BaselineArch",
    "BilinearFusion",
    "ConcatFusion",
    "ModelOutput",
    "MultiExpertModel",
    "Student",
    "StudentArch",
    "Teacher",
    "TeacherArch",
    "TransMIL",
    "build_model",
    "combine_experts",
    "expert_confidence",
    "model_class",
    "survival_outcome_probs",
]
