"""Typed model architectures: derived from the config in one place, stored as JSON, rebuilt.

What must hold: every hyper-parameter of an architecture is declared ONCE, as an ``Arch`` field of
its config section, whose name, type and default the architecture takes (a field declared in
the config alone reaches the model; one declared twice is refused; a field no config section has
is refused); the JSON a checkpoint stores rebuilds the same architecture and, through a real
checkpoint file, the same model, including checkpoints written before the architectures were
derived from the config; constructors refuse an architecture of another family; the shared
multi-expert base gives every model the same expert names and heads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pydantic import Field

from duopath.checkpoints import load_model, read_checkpoint, save_checkpoint
from duopath.config import BaselinesConfig, StudentConfig, TeacherConfig
from duopath.config_base import Arch, architecture_fields
from duopath.models import (
    BASELINES,
    MODELS,
    BaselineArch,
    MultiExpertModel,
    StudentArch,
    Teacher,
    TeacherArch,
    build_model,
)
from duopath.models.arch import DATA_FIELDS, SHARED_HYPER_PARAMETERS, configured_by
from duopath.training.architectures import baseline_arch, from_config, student_arch, teacher_arch

MAGS = ("10x", "20x")
SECTIONS = {TeacherArch: (TeacherConfig,), StudentArch: (StudentConfig,),
            BaselineArch: (BaselinesConfig, TeacherConfig)}
OLD_CHECKPOINTS = Path(__file__).parent / "data" / "checkpoints_v2"


def fold(task: str = "survival") -> SimpleNamespace:
    """The parts of a ``FoldData`` the architectures read: task, classes, gene groups, RNA means,
    and (survival) the bins and training outcomes of the heads' Kaplan–Meier prior."""
    genes = SimpleNamespace(genes_T=["a", "b", "c"], genes_E=["d", "e"],
                            train_mean_T=np.array([0.1, 0.2, 0.3]), train_mean_E=np.array([1.5, -2.0]))
    train = [SimpleNamespace(time=float(t), event=float(t % 2)) for t in range(1, 21)]
    return SimpleNamespace(task=task, fold=0, n_classes=4 if task == "survival" else 2, genes=genes,
                           time_bins=np.array([0.0, 5.0, 10.0, 15.0, np.inf]), samples={"train": train})


@pytest.mark.parametrize("arch", list(SECTIONS))
def test_hyper_parameters_are_the_config_arch_fields(arch: type) -> None:
    """The architecture's hyper-parameters are its section's ``Arch`` fields (the shared ones the
    section lacks from the next section), with the config's defaults; the student's width alone is
    resolved (null in the config = the teacher's)."""
    primary, *rest = SECTIONS[arch]
    expected = dict.fromkeys(architecture_fields(primary), primary)
    for name in SHARED_HYPER_PARAMETERS:
        owner = next((s for s in rest if name in architecture_fields(s)), None)
        if name not in expected and owner is not None:
            expected[name] = owner
    resolved = {"dim"} if arch is StudentArch else set()
    assert set(arch.hyper_parameters()) == set(expected) | resolved
    assert not set(arch.hyper_parameters()) & DATA_FIELDS
    assert dict(arch.config_sources) == expected
    defaults = {f.name: f.default for f in dataclasses.fields(arch)}
    for name, section in expected.items():
        assert section.model_fields[name].default == defaults[name], f"{arch.__name__}.{name}"
    assert StudentConfig.model_fields["dim"].default is None


def test_a_hyper_parameter_declared_once_in_the_config_reaches_the_model(tmp_path: Path) -> None:
    """One ``Arch`` field in a config section is all a new hyper-parameter needs: the family's
    architecture has it with the config's default, ``from_config`` copies the configured value,
    the model constructor receives it and the checkpoint JSON keeps it."""

    class KnobConfig(TeacherConfig):
        knob: Arch[int] = Field(3, ge=1, description="a new teacher hyper-parameter")
        not_arch: int = 7  # a config field without the marker is no architecture field

    @configured_by(KnobConfig)
    class KnobArch(TeacherArch):
        pass

    class KnobTeacher(Teacher):
        arch_type = KnobArch

        def __init__(self, arch: KnobArch) -> None:
            super().__init__(arch)
            self.knob_seen = arch.knob

    assert KnobArch(feature_dim=8, n_classes=4, n_genes_T=3, n_genes_E=2).knob == 3
    assert "not_arch" not in KnobArch.hyper_parameters()
    cfg = KnobConfig(knob=5, dim=8, n_heads=2, n_gene_tokens=2, gene_hidden=8, attention="cross")
    arch = from_config(KnobArch, [cfg], feature_dim=8, n_classes=4, n_genes_T=3, n_genes_E=2,
                       magnifications=MAGS)
    model = KnobTeacher(arch)
    assert model.knob_seen == 5 and model.arch.dim == 8
    assert arch.to_json()["knob"] == 5 and KnobArch.from_json(arch.to_json()) == arch
    assert list(arch.to_json())[-1] == "knob"  # appended: the existing JSON keys keep their order

    with pytest.raises(TypeError, match=r"declares \['dim'\].*once, in the config"):
        @configured_by(KnobConfig)
        class Twice(TeacherArch):
            dim: int = 8


def test_from_config_copies_by_name_and_refuses_an_unconfigured_field() -> None:
    cfg = TeacherConfig(dim=16, n_heads=2, n_refs=3, attention="cross", gating="softmax",
                        gating_temperature=0.5, magnifications=list(MAGS), rna_mean=True)
    arch = teacher_arch(cfg, fold(), feature_dim=24)
    assert (arch.dim, arch.n_refs, arch.attention, arch.gating, arch.gating_temperature) == \
        (16, 3, "cross", "softmax", 0.5)
    assert (arch.feature_dim, arch.n_genes_T, arch.n_genes_E, arch.n_classes) == (24, 3, 2, 4)
    assert arch.rna_mean_T == (0.1, 0.2, 0.3) and arch.rna_mean_E == (1.5, -2.0)
    assert teacher_arch(cfg.model_copy(update={"rna_mean": False}), fold(), 24).rna_mean_T is None

    base = baseline_arch(BaselinesConfig(dim=8, n_layers=1), cfg, fold("classification"), 24)
    assert (base.dim, base.n_layers, base.gating, base.n_classes, base.task) == (8, 1, "softmax", 2,
                                                                                  "classification")
    student = student_arch(StudentConfig(n_prototypes=3), fold(), 24, MAGS, teacher_dim=16)
    assert (student.dim, student.n_prototypes) == (16, 3)
    with pytest.raises(ValueError, match="SKD"):
        student_arch(StudentConfig(dim=32), fold(), 24, MAGS, teacher_dim=16)

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Wider(TeacherArch):
        new_knob: int = 1

    with pytest.raises(TypeError, match="new_knob"):
        from_config(Wider, [cfg], feature_dim=24, n_classes=4, n_genes_T=3, n_genes_E=2)


@pytest.mark.parametrize("name", list(MODELS))
def test_json_round_trip_through_a_checkpoint_rebuilds_the_model(name: str, tmp_path: Path) -> None:
    arch_type = MODELS[name].arch_type
    sizes = {"feature_dim": 8, "n_classes": 4, "magnifications": MAGS, "dim": 8, "n_heads": 2,
             "survival_prior": [-2.0, -1.5, -1.0, np.float32(-0.5)]}
    if arch_type is not StudentArch:
        sizes |= {"n_genes_T": 3, "n_genes_E": 2}
    if arch_type is TeacherArch:
        sizes |= {"gene_hidden": 8, "n_gene_tokens": 2, "attention": "cross",
                  "rna_mean_T": [0.1, 0.2, 1 / 3], "rna_mean_E": torch.tensor([1.0, 2.0])}
    arch = arch_type(**sizes)
    stored = json.loads(json.dumps(arch.to_json()))
    assert arch_type.from_json(stored) == arch and isinstance(arch.magnifications, tuple)

    torch.manual_seed(0)
    model = build_model(name, arch)
    assert isinstance(model, MultiExpertModel) and model.arch is arch
    assert tuple(model.heads) == model.expert_names == (("rna",) if name == "snn" else MAGS)
    kind = "teacher" if name == "teacher" else "student" if name == "student" else "baseline"
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, kind, model, {"model_name": name, "model_kwargs": arch.to_json()})
    rebuilt, meta = load_model(path, (kind,))
    assert rebuilt.arch == arch and meta["model_kwargs"] == stored
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, rebuilt.state_dict()[k]) for k, v in model.state_dict().items())


def test_constructors_take_their_own_family_and_old_kwargs_fail_clearly() -> None:
    student = StudentArch(feature_dim=8, n_classes=4, dim=8, n_heads=2)
    with pytest.raises(TypeError, match="TeacherArch"):
        Teacher(student)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="n_layers"):
        build_model("student", {"feature_dim": 8, "n_classes": 4, "n_layers": 2})
    with pytest.raises(ValueError, match="gating_temperature"):
        TeacherArch(feature_dim=8, n_classes=4, n_genes_T=3, n_genes_E=2, gating_temperature=0.0)
    with pytest.raises(ValueError, match="rna_mean_E has 1 genes"):
        TeacherArch(feature_dim=8, n_classes=4, n_genes_T=1, n_genes_E=2, rna_mean_T=[0.0], rna_mean_E=[0.0])
    for name in BASELINES:
        with pytest.raises(TypeError, match="BaselineArch"):
            MODELS[name](student)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["teacher", "student", "abmil", "snn", "concat"])
def test_checkpoints_written_before_the_config_derived_architectures_still_load(name: str) -> None:
    """``tests/data/checkpoints_v2``: small checkpoints of every architecture family (slide, RNA
    and fusion baselines), written by duopath 39c329f, before the architectures took their fields
    from the config (issue 13). They rebuild the same model, and today's JSON of their
    architecture is the stored one, key for key and in the same order."""
    path = OLD_CHECKPOINTS / f"{name}.safetensors"
    kind = "teacher" if name == "teacher" else "student" if name == "student" else "baseline"
    stored = read_checkpoint(path, (kind,))
    model, meta = load_model(path, (kind,))
    assert list(model.arch.to_json().items()) == list(stored.meta["model_kwargs"].items())
    assert type(model.arch) is MODELS[name].arch_type and meta["model_name"] == name
    assert all(torch.equal(v, stored.state[k]) for k, v in model.state_dict().items())
