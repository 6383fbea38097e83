"""Jupyter kernel launcher that runs ipykernel in the sandbox.

The kernelspec ``share/jupyter/kernels/vgg11-sandbox/kernel.json`` starts it as
``python -m autograder.sandbox -f {connection_file}``; arguments after the connection file go to
ipykernel. See ``autograder.sandbox`` for what the sandbox enforces.
"""

import argparse
import logging
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
    return launch_kernel(options.connection_file, kernel_arguments)


if __name__ == "__main__":
    sys.exit(main())
