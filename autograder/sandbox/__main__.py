"""Jupyter kernel launcher that runs ipykernel in the sandbox.

The kernelspec ``share/jupyter/kernels/vgg11-sandbox/kernel.json`` starts it as
``python -m autograder.sandbox -f {connection_file}``; arguments after the connection file go to
ipykernel. See ``autograder.sandbox`` for what the sandbox enforces.
"""

import argparse
import ctypes
import logging
import os
import signal
import sys

from autograder.sandbox.kernel import launch_kernel


def main(arguments=None):
    parser = argparse.ArgumentParser(
        prog="python -m autograder.sandbox",
        description="Start an IPython kernel in the grading sandbox (used by the vgg11-sandbox kernelspec).",
    )
    parser.add_argument("-f", dest="connection_file", required=True, help="Jupyter connection file of the kernel")
    options, kernel_arguments = parser.parse_known_args(arguments)
    logging.basicConfig(level=logging.INFO, format="[sandbox] %(levelname)s %(message)s")
    stop_with_parent()
    return launch_kernel(options.connection_file, kernel_arguments)


def stop_with_parent():
    """Get SIGTERM when the process that started the kernel dies, as ipykernel exits on its own.

    jupyter_client starts kernels in a new session, so a grader that is killed leaves them running
    unless they watch it. The sandboxed ipykernel cannot watch it, so this launcher does.
    """
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    parent = os.environ.get("JPY_PARENT_PID")
    if parent and parent.isdigit() and os.getppid() != int(parent):
        sys.exit("[sandbox] the process that started this kernel has already exited")


if __name__ == "__main__":
    sys.exit(main())
