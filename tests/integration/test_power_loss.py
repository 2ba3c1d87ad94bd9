"""Power loss at random moments (SIGKILL from outside), then the next boot: nothing sealed is
lost, the loss is explained, at most the unit being written is gone, and the unit buffers again.

Three seeded trials run in the normal suite; ``make soak`` runs ``SOAK_TRIALS`` of them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.conftest import provision_unit
from tests.integration.faults import MAX_LOSS_S, TrialResult, run_trial


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One provisioned unit, copied for every trial (provisioning generates keys: slow)."""
    unit = provision_unit(tmp_path_factory.mktemp("template"), "CAM-FAULT-1", "PC-77")
    return unit.device, unit.agency_key


@pytest.mark.parametrize("seed", [4, 16, 20, 195])  # 195: cut inside the pre-roll flush
def test_power_cut_at_a_random_moment_recovers(
    seed: int, template: tuple[Path, Path], tmp_path: Path
) -> None:
    device, agency_key = template
    result = run_trial(tmp_path / "trial", device, agency_key, seed)
    assert not result.failures, result.describe()
    assert result.loss_s <= MAX_LOSS_S


@pytest.mark.soak
@pytest.mark.timeout(12 * 3600)  # hundreds of trials: far beyond the suite's per-test timeout
def test_power_cut_soak(template: tuple[Path, Path], tmp_path: Path) -> None:
    if "SOAK_TRIALS" not in os.environ:
        pytest.skip("soak mode: run with make soak (SOAK_TRIALS trials)")
    trials = int(os.environ.get("SOAK_TRIALS", "200"))
    device, agency_key = template
    out = Path(os.environ.get("SOAK_REPORT", ".bench/soak-power-loss.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    results: list[TrialResult] = []
    first_seed = int(os.environ.get("SOAK_FIRST_SEED", "1000"))
    for seed in range(first_seed, first_seed + trials):
        trial_dir = tmp_path / f"t{seed}"
        results.append(run_trial(trial_dir, device, agency_key, seed))
        if not results[-1].failures:
            _rmtree(trial_dir)
        # Written after every trial, so an interrupted soak still leaves its figures.
        out.write_text(json.dumps(_summary(results), indent=2) + "\n")
    failed = [r for r in results if r.failures]
    print(json.dumps(_summary(results)))
    assert not failed, "\n\n".join(r.describe() for r in failed[:5])


def _summary(results: list[TrialResult]) -> dict[str, object]:
    recording = [r.loss_s for r in results if r.open_recording is not None]
    return {
        "trials": len(results),
        "killed": sum(r.cut.killed for r in results),
        "cut_while_recording": len(recording),
        "max_loss_s": max(recording, default=0.0),
        "mean_loss_s_when_recording": _mean(recording),
        "cuts_in_preroll_flush": sum(r.preroll_loss_s > 0 for r in results),
        "max_preroll_loss_s": max((r.preroll_loss_s for r in results), default=0.0),
        "failures": sum(bool(r.failures) for r in results),
        "failed_seeds": [r.seed for r in results if r.failures],
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
