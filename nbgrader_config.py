"""nbgrader configuration of the course (nbgrader 0.9.6).

nbgrader loads this file from the current directory and from ``CourseDirectory.root``, so the plain
commands work from the repository root::

    nbgrader generate_assignment Assignment1 --force   # source/ -> release/ and the gradebook
    nbgrader autograde Assignment1                     # assignments/<student_id>/Assignment1/
    nbgrader generate_feedback Assignment1             # autograded/ -> feedback/
    nbgrader export                                    # gradebook -> grades.csv

``python -m autograder.grade`` runs the same steps and prints a table of the results.
A scratch course can reuse this file from its own ``nbgrader_config.py`` with
``load_subconfig(<path of this file>)`` and then set its own ``CourseDirectory.root``.

Environment variables:
    NBGRADER_DB_URL  gradebook database URL (default: sqlite:///<root>/gradebook.db)
"""

import os
import sys

c = get_config()  # noqa: F821 (defined by traitlets when it loads this file)

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))

# Course layout. The autograded/ and feedback/ folders and gradebook.db keep nbgrader's default
# names under the root. Submissions are read from assignments/<student_id>/Assignment1/.
c.CourseDirectory.root = REPO_ROOT
c.CourseDirectory.submitted_directory = "assignments"
if os.environ.get("NBGRADER_DB_URL"):
    c.CourseDirectory.db_url = os.environ["NBGRADER_DB_URL"]
c.CsvExportPlugin.to = os.path.join(REPO_ROOT, "grades.csv")

# nbgrader copies every other file of source/Assignment1/ into release/ and into each student's
# autograded/ folder. A data/ folder next to the notebook would contain Fashion-MNIST (about 53 MB
# unpacked), so it is left out like nbgrader's default ignore entries.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "data"]

# The nbgrader process imports the preprocessors below from the autograder package, and the kernels
# that it starts inherit os.environ, so the notebook's `from autograder import checks` works too.
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
_pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != REPO_ROOT]
os.environ["PYTHONPATH"] = os.pathsep.join([REPO_ROOT] + _pythonpath)

# Students are created on their first autograde, so no roster has to be imported first.
c.Autograde.create_student = True

# Same as nbgrader's default list, with OverwriteCells replaced: untouched test cells get their
# hidden tests back without a checksum warning, and an edited locked cell still logs one.
# RestoreCellMetadata first puts back the nbgrader flags and points that a submission changed.
c.Autograde.sanitize_preprocessors = [
    "autograder.nbgrader_ext.RestoreCellMetadata",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "autograder.nbgrader_ext.OverwriteCellsWithHiddenTests",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# A deleted test cell is put back from the gradebook and run, so deleting a test does not skip it.
# OverwriteCellsWithHiddenTests also replaces nbgrader's placement of that cell, which raises KeyError
# when the cell before it is a locked markdown cell.
c.OverwriteCells.add_missing_cells = True

# Same as nbgrader's default list, with Execute replaced by a version that also bounds the notebook.
# PrepareHandIns and JudgeHandIns (autograder/nbgrader_judge.py) take each test cell's verdict from a
# separate judge process that reads what the kernel handed in, so student code cannot forge a pass.
c.Autograde.autograde_preprocessors = [
    "autograder.nbgrader_judge.PrepareHandIns",
    "autograder.nbgrader_ext.BoundedExecute",
    "autograder.nbgrader_judge.JudgeHandIns",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Execution limits. nbgrader's default of 30 s per cell can interrupt the training cell on a slow
# CPU-only machine. Autograding one bundled example took 21 to 24 s on 2 CPU cores, nbgrader start-up
# included. In a separate 25 s run of the solution notebook, the training cell took 11 s, the
# evaluation cell 3 s and every other cell under 3 s. The limits leave room for machines ten times
# slower and for a larger training budget.
# A cell that times out is interrupted and the next cell runs, which BoundedExecute relies on.
# nbclient's 60 s limit for kernel start is kept, because the kernel started in 2 to 3 s.
c.Execute.timeout = 300
c.BoundedExecute.notebook_timeout = 900
c.Execute.interrupt_on_timeout = True

# Feedback is rendered from the autograded notebook, which contains the hidden tests again.
# ClearHiddenTestsFromFeedback removes them from the sources and from the tracebacks first.
c.GenerateFeedback.preprocessors = [
    "autograder.nbgrader_ext.ClearHiddenTestsFromFeedback",
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# Sandbox. Student code runs in the vgg11-sandbox kernel (share/jupyter/kernels/ next to the
# autograder package): with root and util-linux unshare it has no network, sees only the Python
# install, the autograder package, the data and a scratch copy of its folder, and runs as a uid of
# its own; rlimits and cgroups bound memory, processes, file size, open files and CPU time
# (autograder.sandbox). Without root or namespaces the kernel logs which protections are off and
# runs with the rest. AUTOGRADER_SANDBOX=off grades with the plain python3 kernel instead.
# The autograder package found here may be the repository's, when a scratch course copies this file.
import autograder  # noqa: E402 (the repository root is on sys.path only from here)

_kernels_root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(autograder.__file__))), "share", "jupyter")
_jupyter_path = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p and p != _kernels_root]
os.environ["JUPYTER_PATH"] = os.pathsep.join([_kernels_root] + _jupyter_path)
if os.environ.get("AUTOGRADER_SANDBOX", "on") != "off":
    c.Execute.kernel_name = "vgg11-sandbox"
else:
    c.JudgeHandIns.sandboxed = False
