"""Example submissions: the release notebook with known answers put into its answer cells.

``make_submission`` writes one submission notebook from answer code keyed by nbgrader grade_id.
``python -m autograder.examples`` regenerates the bundled examples under ``examples/submissions/``
from the answers in ``examples/answers/``. ``python -m autograder.grade`` grades them when
``assignments/`` contains no submission, and the integration tests grade them with nbgrader and
compare the scores with ``EXPECTED``.
"""

import argparse
import logging
import sys
from pathlib import Path

import nbformat

from .course import ASSIGNMENT_ID, NOTEBOOK_NAME, TEST_CELLS, find_course_root

log = logging.getLogger(__name__)

# Student id -> answer file (in examples/answers/) for each answer cell. A cell that is not listed
# keeps the release stub, so "blank" is the untouched release notebook.
EXAMPLES = {
    "solution": {"vgg11_model": "solution_vgg11.py", "finetune_model": "solution_finetune.py"},
    "blank": {},
    "no_batchnorm": {"vgg11_model": "no_batchnorm_vgg11.py", "finetune_model": "solution_finetune.py"},
    "missing_pool": {"vgg11_model": "missing_pool_vgg11.py", "finetune_model": "solution_finetune.py"},
    "fc1_512": {"vgg11_model": "fc1_512_vgg11.py", "finetune_model": "solution_finetune.py"},
    "not_frozen": {"vgg11_model": "solution_vgg11.py", "finetune_model": "not_frozen_finetune.py"},
}

# Student id -> outcome ("pass" or "fail") of each test cell when nbgrader autogrades the example.
# A test cell earns all its points or none, so "fail" means 0 points.
EXPECTED = {
    "solution": dict.fromkeys(TEST_CELLS, "pass"),
    "blank": dict.fromkeys(TEST_CELLS, "fail"),
    "no_batchnorm": {
        "test_vgg11_layers": "fail",
        "test_vgg11_pool_shapes": "pass",
        "test_vgg11_classifier": "pass",
        "test_finetune_frozen": "pass",
    },
    "missing_pool": {
        "test_vgg11_layers": "fail",
        "test_vgg11_pool_shapes": "fail",
        "test_vgg11_classifier": "fail",
        "test_finetune_frozen": "pass",
    },
    "fc1_512": {
        "test_vgg11_layers": "pass",
        "test_vgg11_pool_shapes": "pass",
        "test_vgg11_classifier": "fail",
        "test_finetune_frozen": "pass",
    },
    "not_frozen": {
        "test_vgg11_layers": "pass",
        "test_vgg11_pool_shapes": "pass",
        "test_vgg11_classifier": "pass",
        "test_finetune_frozen": "fail",
    },
}


def make_submission(release_nb_path, answers, out_path):
    """Write a copy of the release notebook with each answer cell's source replaced.

    ``answers`` maps the nbgrader grade_id of a solution cell to the code that replaces its whole
    source. Every other cell, the notebook metadata and the cell ids stay as released, so nbgrader
    grades the result like a student's submission. Raises ``ValueError`` when a grade_id is not
    a solution cell of the release notebook. Returns ``out_path`` as a ``Path``.
    """
    notebook = nbformat.read(str(release_nb_path), as_version=4)

    solution_cells = {}
    for cell in notebook.cells:
        nbgrader = cell.metadata.get("nbgrader", {})
        if nbgrader.get("solution") and "grade_id" in nbgrader:
            solution_cells[nbgrader["grade_id"]] = cell

    unknown = sorted(set(answers) - set(solution_cells))
    if unknown:
        raise ValueError(
            f"{release_nb_path} has no solution cell with grade_id {', '.join(unknown)}; "
            f"its solution cells are: {', '.join(sorted(solution_cells)) or 'none'}"
        )

    for grade_id, code in answers.items():
        solution_cells[grade_id].source = code.rstrip("\n")

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(out_path))
    return out_path


def read_answers(answers_dir, answer_files):
    """Return ``{grade_id: code}`` read from the files named in ``answer_files`` under ``answers_dir``."""
    return {grade_id: (Path(answers_dir) / name).read_text(encoding="utf-8") for grade_id, name in answer_files.items()}


def submission_path(submissions_dir, student_id):
    return Path(submissions_dir) / student_id / ASSIGNMENT_ID / NOTEBOOK_NAME


def write_examples(release_nb_path, answers_dir, submissions_dir):
    """Write every example in ``EXAMPLES`` to ``<submissions_dir>/<student_id>/Assignment1/``; return the paths."""
    paths = []
    for student_id, answer_files in EXAMPLES.items():
        answers = read_answers(answers_dir, answer_files)
        paths.append(make_submission(release_nb_path, answers, submission_path(submissions_dir, student_id)))
    return paths


def main(argv=None):
    root = find_course_root()
    parser = argparse.ArgumentParser(
        prog="python -m autograder.examples",
        description="Regenerate the example submissions from the release notebook and examples/answers/.",
    )
    parser.add_argument(
        "--release",
        type=Path,
        default=root / "release" / ASSIGNMENT_ID / NOTEBOOK_NAME,
        help="release notebook to copy (default: %(default)s)",
    )
    parser.add_argument(
        "--answers", type=Path, default=root / "examples" / "answers", help="folder of answer files (default: %(default)s)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=root / "examples" / "submissions",
        help="folder to write <student_id>/Assignment1/Assignment1_blank.ipynb into (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    if not args.release.is_file():
        log.error(
            "Release notebook not found: %s. Run `nbgrader generate_assignment %s --force` first.",
            args.release,
            ASSIGNMENT_ID,
        )
        return 1
    for path in write_examples(args.release, args.answers, args.out):
        log.info("Wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
