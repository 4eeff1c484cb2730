"""Use cs336 models elsewhere: export to and import from Hugging Face ``transformers``
(:mod:`cs336.export.hf`; ``cs336 export-hf`` and ``cs336 import-hf``).

Importing :mod:`cs336` never imports this package; importing it imports torch but not
transformers or safetensors, which are loaded when a file is written or read.
"""

from cs336.export.hf import from_hf, to_hf

__all__ = ["from_hf", "to_hf"]
