"""Submissions that attack the grading get no more points than their honest answer (real nbgrader runs)."""

import os

import pytest

from autograder.course import TEST_CELLS
from tests.attacks import ATTACKS, PWNED_MARKER, write_attack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def attacked(grade_submissions):
    if os.path.exists(PWNED_MARKER):
        os.remove(PWNED_MARKER)

    def write(inbox, release_notebook):
        for name in ATTACKS:
            write_attack(release_notebook, inbox, name)

    course = grade_submissions(write)
    assert course.run.returncode == 0, course.run.stdout + course.run.stderr
    return course


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_points(attacked, name):
    expected = ATTACKS[name][-1]
    points = {cell: attacked.score(name, cell)[0] for cell in expected}
    assert points == expected, attacked.log(name)[-3000:]


def test_attack_forged_program_runs_nothing(attacked):
    assert not os.path.exists(PWNED_MARKER)


def test_attack_forged_records_named_invalid(attacked):
    errors = attacked.errors("forge_handin")
    assert all("[handin.invalid]" in errors[grade_id][0] for grade_id in TEST_CELLS), errors
