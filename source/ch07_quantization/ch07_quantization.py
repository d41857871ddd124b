# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   llmcourse:
#     chapter: ch07_quantization
# ---

# %% [markdown]
# # Chapter 7 · Quantization: from PTQ to INT4 QAT
# ## 第7章 量化技术（PTQ→INT4 QAT）
#
# A decode step at small batch reads every weight of the model once and does little
# arithmetic with it: its time is the weight bytes divided by the memory bandwidth. Store
# each weight in 4 bits instead of 16 and the step reads a quarter of the bytes, and a
# model that needed several GPUs may fit on fewer. The price is accuracy: every weight
# moves to the nearest point of a coarse grid. This chapter builds the quantizer step by
# step, from plain round-to-nearest to the methods that choose the grid, or the weights,
# so that the error lands where it matters least.
#
# **Learning goals · 学习目标**
#
# 1. Write the integer formats: symmetric per-channel INT8 and group-wise INT4 (symmetric
#    and with zero-points), with two 4-bit codes packed per byte in a documented order.
# 2. Quantize every linear layer of the course model by round-to-nearest (RTN) into a
#    W4A16 layer, and measure held-out perplexity and bytes, counted exactly.
# 3. Protect the salient input channels with activation-aware scales (AWQ).
# 4. Compensate each column's rounding error in the columns not yet quantized (GPTQ).
# 5. Write a Triton W4A16 kernel that unpacks, dequantizes and multiplies in one pass.
# 6. Train with INT4 in the loop (QAT, a straight-through estimator) and export the
#    result to the real W4A16 layers.
# 7. Count serving memory, weights with their scales, KV cache and activations, and
#    choose a method from a decision tree.
#
# **Why it matters in money.** <!-- TODO(A): the bytes-per-token argument with cited numbers -->

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import dataclasses
import math
import os

if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():  # no GPU: Triton kernels run in its interpreter
        os.environ["TRITON_INTERPRET"] = "1"

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

import course_config
from llmopt.engine import Engine, LlamaWeights
from llmopt.quality import calibration_tokens, heldout_tokens, perplexity

SMALL = course_config.SMALL_WORKLOAD  # True under `make test`: shorter measurements
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
_ = torch.manual_seed(0)  # seed the demos; `_ =` keeps the Generator out of the output

# %% [markdown]
# ## 1. Integer formats
# ### 1. 整数格式

# %% [markdown]
# ## 2. Round-to-nearest PTQ of the course model
# ### 2. 课程模型的最近舍入（RTN）训练后量化

# %% [markdown]
# # <!-- section 3: AWQ (helper B) -->

# %% [markdown]
# # <!-- section 4: GPTQ (helper B) -->

# %% [markdown]
# # <!-- section 5: Triton W4A16 kernel (helper C) -->

# %% [markdown]
# # <!-- section 6: INT4 QAT (helper B) -->

# %% [markdown]
# ## 7. Memory arithmetic and the decision tree
# ### 7. 显存计算与方法决策树

# %% [markdown]
# # <!-- section 8: side by side (helper B) -->

# %% [markdown]
# ## 9. Pitfalls, checklist, ROI and questions
# ### 9. 常见误区、实战检查清单、ROI与思考题

# %% [markdown]
# ## Chapter summary · 本章小结
