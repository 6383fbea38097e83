"""Every single-layer mutation of the reference VGG11 is caught, in the test cell of the part it changes."""

import pytest

from autograder import checks
from tests.mutants import systematic_mutants

FINDINGS = {
    checks.LAYERS: checks.layer_findings,
    checks.POOL_SHAPES: checks.pool_findings,
    checks.CLASSIFIER: checks.classifier_findings,
}
MUTANTS = systematic_mutants()


def _failing_checks(model_cls):
    visible = {check for check, findings_of in FINDINGS.items() if findings_of(model_cls)}
    if visible:
        return visible
    return {check for check, findings_of in FINDINGS.items() if findings_of(model_cls, hidden=True)}


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda model: model.name)
def test_mutant_caught_in_its_cell(mutant):
    failing = _failing_checks(mutant.build_class())
    assert set(mutant.failing) <= failing, f"{mutant.name}: failing checks {sorted(failing)}"


def test_mutants_cover_every_layer():
    assert len(MUTANTS) > 100
