"""llmopt: the course library students import.

Course-model loading, the parts of an inference engine that are not exercises, device
calibration and the benchmark harness, workload traces, and the course's plots.

    from llmopt import load_model, load_tokenizer, Engine, calibrate, measure, compare

Names are imported on first use, so `import llmopt` stays cheap (transformers and
matplotlib load only when a model or a plot is asked for).
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "load_model": "llmopt.models", "load_tokenizer": "llmopt.models",
    "model_path": "llmopt.models", "ModelNotFoundError": "llmopt.models",
    "Engine": "llmopt.engine", "LlamaWeights": "llmopt.engine", "KVCache": "llmopt.engine",
    "KVView": "llmopt.engine", "Attention": "llmopt.engine",
    "PagedAttentionCache": "llmopt.engine",
    "causal_attention": "llmopt.engine",
    "calibrate": "llmopt.device", "fingerprint": "llmopt.device",
    "Calibration": "llmopt.device",
    "measure": "llmopt.bench", "compare": "llmopt.bench", "Timing": "llmopt.bench",
    "Comparison": "llmopt.bench",
    "use_course_style": "llmopt.plots", "roofline": "llmopt.plots",
    "RooflinePoint": "llmopt.plots",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'llmopt' has no attribute {name!r}")
