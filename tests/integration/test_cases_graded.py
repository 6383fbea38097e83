"""Each model case under tests/cases gets its expected outcome through the real grading path.

A case's code goes into the answer cell of a release notebook, and nbgrader grades the notebook in a
temporary course. Every submission pairs one VGG11 case with one fine-tuning case, so the 11 cases
cost 7 graded notebooks.
"""

import itertools

import pytest

from autograder.examples import make_submission
from tests.casefiles import FINETUNE_CASES, VGG11_CASES, load_case

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SUBMISSIONS = {
    f"case{index}": (vgg11, finetune)
    for index, (vgg11, finetune) in enumerate(zip(VGG11_CASES, itertools.cycle(FINETUNE_CASES)))
}
ROWS = [
    (student, path, check)
    for student, (vgg11, finetune) in SUBMISSIONS.items()
    for path, checks in ((vgg11, load_case(vgg11).EXPECTED), (finetune, load_case(finetune).EXPECTED))
    for check in checks
]


@pytest.fixture(scope="module")
def graded(grade_submissions):
    def write(inbox, release_notebook):
        for student, (vgg11, finetune) in SUBMISSIONS.items():
            answers = {"vgg11_model": vgg11.read_text(encoding="utf-8"),
                       "finetune_model": finetune.read_text(encoding="utf-8")}
            make_submission(release_notebook, answers, inbox / student / "Assignment1" / "Assignment1_blank.ipynb")

    course = grade_submissions(write)
    assert course.run.returncode == 0, course.run.stderr[-3000:]
    return course


@pytest.mark.parametrize(("student", "path", "check"), ROWS,
                         ids=[f"{path.stem}-{check}" for _, path, check in ROWS])
def test_case_graded_outcome(graded, student, path, check):
    score, max_score = graded.score(student, check)
    expected = load_case(path).EXPECTED[check]
    assert (score == max_score) == (expected == "pass"), graded.log(student)[-3000:]
