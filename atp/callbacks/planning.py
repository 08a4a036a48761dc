"""`GoalGuidedPlanning`: plan a few validation cases from the current model's predictions.

Every ``every_n_epochs`` validation epochs it predicts K validation cases, runs the
goal-guided optimization (site goal list + institution beams) and logs the share of plans
meeting every P1 goal, the share of goals met, the mean |ATP - reference| over the organ
endpoints and one DVH figure (ATP, prediction, reference).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytorch_lightning as pl


class GoalGuidedPlanning(pl.Callback):
    """Parameters
    ----------
    institution : mapping
        The institution config (beams, prescriptions, tolerances, extra goals).
    engine : DoseEngine
        The configured dose engine (``conf/engine``).
    planner : PlanSettings
        The configured planner (``conf/planner``); ``max_iter`` replaces its iteration
        limit, so that the plans stay short during training.
    every_n_epochs, n_cases : int
        How often, and how many validation cases.
    deliverable : bool
        Sequence each plan on ``machine`` and log the metrics of its deliverable dose
        (`atp.evaluation.delivery`, on the plan's own matrix); False: the fluence plan's.
    machine : Machine, optional
        Default: `atp.delivery.load_machine()`.
    sequencer : SequencingSettings or mapping of its fields, optional
        Default: a fast sequencer (no sector merge, no segment-MU re-optimization).
    """

    def __init__(self, *, institution: Mapping, engine, planner, every_n_epochs: int = 10,
                 n_cases: int = 2, max_iter: int | None = 100, deliverable: bool = True,
                 machine=None, sequencer=None):
        if not institution or "name" not in institution:
            raise ValueError("GoalGuidedPlanning: institution must be an institution config "
                             "(conf/institution/<name>.yaml)")
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.n_cases = int(n_cases)
        self.institution = dict(institution)
        self.engine = engine
        self.settings = planner if max_iter is None else dataclasses.replace(
            planner, max_iter=int(max_iter))
        self.history: list[dict] = []
        self.delivery = None
        if deliverable:
            from atp.delivery import load_machine
            from atp.delivery.sequencing import SequencingSettings
            from atp.evaluation.delivery import DeliverySettings

            if sequencer is None or isinstance(sequencer, Mapping):
                sequencer = SequencingSettings(**{"merge_sectors": False, "reoptimize": False,
                                                  "iterations": 1, **(sequencer or {})})
            self.delivery = DeliverySettings(machine or load_machine(), sequencer,
                                             jaw_matrix=False)

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule):
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        dm = trainer.datamodule
        if dm is None or not getattr(dm, "splits", None):
            return
        metrics = self.plan_cases(module, dm, Path(trainer.default_root_dir),
                                  epoch=trainer.current_epoch)
        self.history.append(metrics)
        for key, value in metrics.items():
            module.log(f"val_plan/{key}", value)

    def plan_cases(self, module, dm, out_dir: Path, *, epoch: int) -> dict:
        from atp.evaluation.endpoints import plan_endpoints
        from atp.evaluation.run import evaluate_case
        from atp.io.loading import load_any_case
        from atp.models.predict import predict_case
        from atp.planning import resolve_goals
        from atp.planning.outputs import save_plan
        from atp.planning.setup import goal_list_for

        site = dm.site
        p1, goals, diffs = [], [], []
        for i, path in enumerate(dm.splits["val"][: self.n_cases]):
            case = load_any_case(path, site=site["name"])
            ev = evaluate_case(case, lambda c: predict_case(module, c), site_cfg=site,
                               institution=self.institution, engine=self.engine,
                               settings=self.settings, delivery=self.delivery)
            p1.append(ev.atp.all_p1_met)
            goals.append(ev.atp.n_goals_met / max(len(ev.atp.report), 1))
            if case.dose_gy is not None:
                protocol, _ = resolve_goals(case, goal_list_for(site, self.institution))
                ref = {r["metric"]: r["value"] for r in plan_endpoints(
                    case, case.dose_gy, plan="reference", site=site["name"],
                    institution="", resolved=protocol) if r["kind"] == "organ"}
                diffs += [abs(r["value"] - ref[r["metric"]]) for r in ev.rows
                          if r["plan"] == "ATP" and r["metric"] in ref and r["unit"] == "Gy"]
            if i == 0:
                save_plan(out_dir / "planning" / f"epoch{epoch:04d}_{case.patient_id}",
                          case, ev.atp, predicted_dose_gy=ev.predicted_gy)
        return {"p1_met_share": float(np.mean(p1)), "goals_met_share": float(np.mean(goals)),
                "organ_endpoint_abs_diff_gy": float(np.mean(diffs)) if diffs else float("nan")}
