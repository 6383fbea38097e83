"""Load the model files under tests/cases: each defines VGG11 or model_finetune and an EXPECTED table."""

import functools
import importlib.util
from pathlib import Path

CASES = Path(__file__).parent / "cases"
VGG11_CASES = sorted((CASES / "vgg11").glob("*.py"))
FINETUNE_CASES = sorted((CASES / "finetune").glob("*.py"))


@functools.cache
def load_case(path):
    """Import a case file once, so its class object (and the checks' cache for it) is shared."""
    spec = importlib.util.spec_from_file_location(f"case_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
