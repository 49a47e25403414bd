"""One Geant4 run manager (serial) per process: physics list, primaries and per-event recording.

A session simulates given primaries (pdg, momentum, vertex) with a given Geant4 seed per event, so
an event's result depends only on its own seed and conditions, never on which worker ran it or
what ran before. Per event, Python sets the gun; at the end of the event the detector's recorder
returns that event's rows (fixed columns, e.g. readout layer, strip and energy of a calorimeter,
or module and position of a tracker hit).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hitgen.core.csr import offsets_from_counts
from hitgen.core.errors import HitgenError
from hitgen.core.physics import DEFAULT_PHYSICS, PhysicsSettings
from hitgen.simulation.g4env import data_dir, import_geant4, livermore_subdir


@dataclass
class RawEvents:
    """Recorder output of a block of events: rows per event (CSR) in named float64 columns."""

    offsets: np.ndarray  # (n+1,) int64
    columns: dict[str, np.ndarray]  # name -> (H,) float64

    @classmethod
    def concat(cls, parts: list[RawEvents]) -> RawEvents:
        offsets, base = [np.zeros(1, np.int64)], 0
        for p in parts:
            offsets.append(p.offsets[1:] + base)
            base += int(p.offsets[-1])
        names = parts[0].columns
        return cls(np.concatenate(offsets), {k: np.concatenate([p.columns[k] for p in parts]) for k in names})


class Recorder(Protocol):
    """A detector's per-event output, made after Initialize() (it may look up hit collections)."""

    columns: tuple[str, ...]

    def end_event(self, event) -> list[tuple[float, ...]]:
        """This event's rows, one tuple of len(columns) floats each; clears any per-event state."""
        ...


def silence_stdout() -> None:
    """Send this process's C/C++ stdout (Geant4's banner and G4cout) to /dev/null."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


class Geant4Session:
    """A serial Geant4 run manager for one detector, reused for many blocks of events."""

    def __init__(
        self,
        make_construction: Callable,
        make_recorder: Callable,
        physics: PhysicsSettings = DEFAULT_PHYSICS,
        decays: bool = False,
        primary_only: bool = False,
    ) -> None:
        g4 = import_geant4()
        self.g4 = g4
        self.settings = physics
        em_class = getattr(g4, physics.constructor)
        ui = g4.G4UImanager.GetUIpointer()
        self.run_manager = g4.G4RunManagerFactory.CreateRunManager(g4.G4RunManagerType.Serial)
        self.construction = make_construction(g4)
        self.run_manager.SetUserInitialization(self.construction)
        self.physics = g4.G4VModularPhysicsList()
        self.physics.RegisterPhysics(em_class())
        if decays:
            self.physics.RegisterPhysics(g4.G4DecayPhysics())
        self.physics.SetDefaultCutValue(physics.range_cut_mm * g4.mm)
        self.run_manager.SetUserInitialization(self.physics)
        livermore = livermore_subdir(data_dir())
        if livermore:
            g4.G4EmParameters.Instance().SetLivermoreDataDir(livermore)
        g4.G4EmParameters.Instance().SetVerbose(0)

        self._gun = g4.G4ParticleGun(1)
        self._particles: dict[int, object] = {}
        self._block: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray] | None = None
        self._index = 0
        self._out: list[tuple[float, ...]] = []
        self._counts: list[int] = []
        session = self

        class Primary(g4.G4VUserPrimaryGeneratorAction):
            def GeneratePrimaries(self, event):  # noqa: N802 (Geant4 API)
                session._generate(event)

        class EventAction(g4.G4UserEventAction):
            def EndOfEventAction(self, event):  # noqa: N802 (Geant4 API)
                session._collect(event)

        self._primary, self._event_action = Primary(), EventAction()
        self.run_manager.SetUserAction(self._primary)
        self.run_manager.SetUserAction(self._event_action)
        if primary_only:
            # A detector that records the primary only need not track secondaries: killing them at
            # birth changes nothing it records (they took their energy when they were made), and a
            # slow electron spiralling along the field in vacuum can otherwise circle for ever.
            kill, keep = g4.G4ClassificationOfNewTrack.fKill, g4.G4ClassificationOfNewTrack.fUrgent

            class Stacking(g4.G4UserStackingAction):
                def ClassifyNewTrack(self, track):  # noqa: N802 (Geant4 API)
                    return kill if track.GetParentID() > 0 else keep

            self._stacking = Stacking()
            self.run_manager.SetUserAction(self._stacking)
        for cmd in ("/control/verbose 0", "/run/verbose 0", "/event/verbose 0", "/tracking/verbose 0"):
            ui.ApplyCommand(cmd)
        for cmd in physics.ui_commands():  # after the EM constructor set its own values, before the run is initialised
            if ui.GetTree().FindPath(cmd.split()[0]) is None:  # ApplyCommand reports nothing to Python
                raise HitgenError(f"Geant4 does not know the command '{cmd}'")
            ui.ApplyCommand(cmd)
        self.run_manager.Initialize()
        self.recorder: Recorder = make_recorder(g4, self.construction)

    def _particle(self, pdg: int):
        if pdg not in self._particles:
            p = self.g4.G4ParticleTable.GetParticleTable().FindParticle(int(pdg))
            if p is None:
                raise HitgenError(f"Geant4 does not know particle PDG {pdg}")
            self._particles[pdg] = p
        return self._particles[pdg]

    def _generate(self, event) -> None:
        assert self._block is not None
        pdg, momentum, vertex, seeds = self._block
        i = self._index
        # reseed per event: the event depends on its own seed only
        self.g4.G4Random.setTheSeeds([int(seeds[i, 0]), int(seeds[i, 1]), 0])
        particle = self._particle(int(pdg[i]))
        gun = self._gun
        gun.SetParticleDefinition(particle)
        px, py, pz = (float(v) for v in momentum[i])
        p = math.sqrt(px * px + py * py + pz * pz)
        mass = particle.GetPDGMass() / self.g4.GeV
        gun.SetParticleEnergy((math.sqrt(p * p + mass * mass) - mass) * self.g4.GeV)
        gun.SetParticleMomentumDirection(self.g4.G4ThreeVector(px / p, py / p, pz / p))
        at = (0.0, 0.0, 0.0) if vertex is None else (float(v) * self.g4.mm for v in vertex[i])
        gun.SetParticlePosition(self.g4.G4ThreeVector(*at))
        gun.GeneratePrimaryVertex(event)

    def _collect(self, event) -> None:
        rows = self.recorder.end_event(event)
        self._out.extend(rows)
        self._counts.append(len(rows))
        self._index += 1

    def run(self, pdg: np.ndarray, momentum: np.ndarray, seeds: np.ndarray, vertex: np.ndarray | None = None) -> RawEvents:
        """Simulate len(pdg) events from `vertex` (mm; default the origin); seeds is (n, 2) of
        positive 31-bit integers, one pair per event."""
        n = len(pdg)
        self._block, self._index, self._out, self._counts = (pdg, momentum, vertex, seeds), 0, [], []
        self.run_manager.BeamOn(n)
        if self._index != n:
            raise RuntimeError(f"Geant4 processed {self._index} of {n} events")
        names = self.recorder.columns
        out = np.array(self._out, dtype=np.float64).reshape(-1, len(names))
        offsets = offsets_from_counts(self._counts)
        return RawEvents(offsets, {k: np.ascontiguousarray(out[:, j]) for j, k in enumerate(names)})
