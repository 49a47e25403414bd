"""AllShowers' training config: the point transformer's trunk, the count model's MLP, the attention
band, and the weight of the count model's loss."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from hitgen.core.config import FamilyConfig, Strict, TrunkSection

SOLVER = r"^(heun|midpoint|euler)-[1-9][0-9]*$"  # hitgen.families.allshowers.sampler.parse_decoder


class ModelSection(TrunkSection):
    architecture: Literal["allshowers"]
    band: int = Field(2, ge=0)  # a point attends to the points of layers within +-band of its own
    count_width: int = Field(256, gt=0)  # the first stage's MLP (PointCountFM)
    count_depth: int = Field(3, gt=0)
    time_frequencies: int = Field(8, gt=0)  # Fourier features of the flow time
    ot_pairing: bool = True  # shower- and layer-wise optimal-transport pairing of noise and points
    layer_energies: bool = True  # the first stage also draws each layer's energy (beyond the paper)
    # generation scales e/gamma points to the drawn layer energies (False: the points keep the CNF's own)
    scale_to_layer_energies: bool = True
    # muons' points too (False: a muon keeps the CNF's MIP energies; True suits sub-cell points, whose
    # MIP deposit a layer splits over the sub-cells it crosses: docs/families/allshowers.md, "Sub-cells")
    scale_muons: bool = False
    # the points' offsets within their cells in training: uniform over the cell, or centred (normal,
    # dequantisation_width cells wide, cut at 0.45 cell: a point never leaves its cell)
    dequantisation: Literal["uniform", "centred"] = "uniform"
    dequantisation_width: float = Field(0.15, gt=0, le=0.5)
    cell_features: bool = False  # the point's phase within the 5 mm cell grid as input features
    # > 0: the CNF's x, y are s asinh((x - entry) / s) (mm; model.py), linear near the shower's axis, logarithmic beyond
    core_scale_mm: float = Field(0.0, ge=0)
    # "layer": the CNF's log E less the log of its layer's mean point energy (the first stage's numbers;
    # model.py): the point's share of its layer; "none": the log E itself
    energy_reference: Literal["none", "layer"] = "none"
    layer_features: bool = False  # each point sees its own layer's first-stage numbers (count, energy)
    # points to cells: "sum" adds the points of one cell (the paper); "matched" gives the points of a
    # layer distinct cells with the least energy-weighted squared displacement (sampler.py)
    cell_mapping: Literal["sum", "matched"] = "sum"
    default_solver: str = Field("heun-32", pattern=SOLVER)  # solver and function evaluations of generation by default
    count_solver: str | None = Field(None, pattern=SOLVER)  # the first stage's, where it differs from the decoder's (a reflowed model)

    @model_validator(mode="after")
    def _scaling(self) -> ModelSection:
        if self.scale_muons and not (self.layer_energies and self.scale_to_layer_energies):
            raise ValueError("scale_muons scales muons as e/gamma are: it needs layer_energies and scale_to_layer_energies")
        if self.energy_reference == "layer" and not self.layer_energies:
            raise ValueError("energy_reference 'layer' measures a point's energy against its layer's: it needs layer_energies")
        return self


class LossSection(Strict):
    count_weight: float = Field(1.0, ge=0)  # the first stage's flow-matching loss beside the points'
    # the points' loss; 0: the first stage alone (the point CNF is not run: with train_only = ["count_net."]
    # and --init, a new first stage under a trained CNF)
    point_weight: float = Field(1.0, ge=0)
    # with a [train] teacher (reflow): the solver that draws the teacher's points from each shower's noise
    reflow_solver: str = Field("heun-8", pattern=SOLVER)


class AllShowersTrainConfig(FamilyConfig):
    model: ModelSection
    loss: LossSection = LossSection()
