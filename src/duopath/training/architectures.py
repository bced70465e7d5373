"""The keyword arguments each trained model is built with: architecture settings + fold sizes.

Stored in the checkpoint as plain values, so a checkpoint rebuilds its model without the config.
The data-dependent sizes (feature width, gene-group sizes, classes or survival bins, task,
magnifications) come from the fold; the rest from the model's config section.
"""

from __future__ import annotations

from collections.abc import Sequence

from duopath.config import StudentConfig, TeacherConfig
from duopath.training.fold_data import FoldData
from duopath.training.variants import BASE_MODEL, registry_name

STUDENT_ARCH = "student"
"""The ``duopath.models`` registry entry both students (with and without SKD) are built from."""


def model_kwargs(cfg: TeacherConfig, data: FoldData, feature_dim: int, *, model: str = BASE_MODEL,
                 arch: dict | None = None) -> dict:
    """Keyword arguments of model ``model`` (plain values: stored in the checkpoint).

    The teacher and its ablations take their architecture from ``cfg``; a baseline from
    ``arch`` (``variants.baseline_kwargs``), plus the same data-dependent sizes.
    """
    data_kw = {
        "feature_dim": int(feature_dim),
        "n_genes_T": len(data.genes.genes_T),
        "n_genes_E": len(data.genes.genes_E),
        "n_classes": data.n_classes,
        "task": data.task,
        "magnifications": list(cfg.magnifications or []),
    }
    if not data_kw["magnifications"]:
        raise ValueError("cfg.magnifications must be resolved (use variant_config)")
    if registry_name(model) != BASE_MODEL:
        if arch is None:
            raise ValueError(f"baseline {model!r} needs its architecture settings (arch)")
        return {**data_kw, **arch}
    kw = {
        **data_kw,
        **{k: getattr(cfg, k) for k in (
            "dim", "n_heads", "n_gene_tokens", "gene_hidden", "attention", "n_refs", "n_points",
            "n_interp", "max_offset_tiles", "gene_select_keys", "dropout", "gating",
            "gating_temperature", "disentangle")},
    }
    if cfg.rna_mean:
        kw["rna_mean_T"] = data.genes.train_mean_T.tolist()
        kw["rna_mean_E"] = data.genes.train_mean_E.tolist()
    return kw


def student_kwargs(cfg: StudentConfig, data: FoldData, feature_dim: int, mags: Sequence[str],
                   teacher_dim: int) -> dict:
    """Keyword arguments of ``duopath.models.Student`` (plain values: stored in the checkpoint)."""
    dim = teacher_dim if cfg.dim is None else int(cfg.dim)
    if dim != teacher_dim:
        raise ValueError(f"student.dim={dim} differs from the teacher's dim={teacher_dim}: SKD's MSE "
                         "compares the embeddings (set student.dim: null)")
    return {
        "feature_dim": int(feature_dim),
        "n_classes": data.n_classes,
        "task": data.task,
        "magnifications": list(mags),
        "dim": dim,
        **{k: getattr(cfg, k) for k in (
            "n_heads", "tile_attention", "n_neighbours", "n_prototypes", "dpc_k", "dropout",
            "omega_clamp", "gating", "gating_temperature")},
    }
