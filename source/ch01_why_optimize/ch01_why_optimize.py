# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   llmcourse:
#     chapter: ch01_why_optimize
# ---

# %% [markdown]
# # Chapter 1 · Why Optimize Inference
# ## 第1章 动机：推理优化的商业价值
#
# Every later chapter of this course makes a model serve tokens faster or with less memory.
# This one turns "faster" into money, so that you can tell which optimizations are worth
# an engineer's month and which are not.
#
# **Learning goals · 学习目标**
#
# 1. Compute the cost of one million generated tokens from throughput, utilisation and the
#    price of a GPU-hour, and see why throughput, not latency, sets the bill.
# 2. Compute the return on an optimization: monthly savings, payback time and ROI.
# 3. Compound independent gains (hardware, software, price) into one factor, and check
#    what a headline like "50,000×" would have to assume before believing it.
#
# **Why it matters in money.** Serving cost is a GPU-hour price divided by the tokens that
# hour produces. Double the tokens per hour and the cost per token halves; no other
# lever in this course is more direct. The exercises below are small, but every later
# chapter ends with a box that plugs its measured speed-up into the functions you write
# here.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import math

import matplotlib.pyplot as plt
import numpy as np

# %% [markdown]
# ## 1. The cost of a million tokens
# ### 1. 每百万token的成本
#
# A GPU rented by the hour costs the same whether it is busy or idle. If a replica of
# `num_gpus` GPUs generates `tokens_per_second` while busy, and is busy a fraction
# `utilization` of the time, one hour yields `tokens_per_second × 3600 × utilization`
# tokens and costs `num_gpus × gpu_hourly_usd`:
#
# $$\text{USD per 1M tokens} = \frac{\text{num\_gpus} \times \text{gpu\_hourly\_usd}}{\text{tokens\_per\_second} \times 3600 \times \text{utilization}} \times 10^6$$
#
# The throughput here is the **aggregate** rate of the whole replica, summed over all the
# requests it serves at once, not the speed one user sees. That distinction is where
# most of this course's savings come from: batching (chapter 6) multiplies aggregate
# throughput while each user's stream stays about as fast.
#
# **Exercise 1 · 练习1.** Write `cost_per_million_tokens`. Bad inputs must raise
# `ValueError` with a message that says what to fix: a throughput that is not positive,
# a negative price, a utilisation outside (0, 1] (a value such as 80 was almost surely
# meant as 80 % = 0.8: say so), or a GPU count that is not a positive whole number.

# %% nbgrader={"grade": false, "grade_id": "cost_per_million_solution", "locked": false, "schema_version": 3, "solution": true}
def cost_per_million_tokens(tokens_per_second: float, gpu_hourly_usd: float,
                            utilization: float = 1.0, num_gpus: int = 1) -> float:
    """USD to generate one million tokens on a replica of `num_gpus` rented GPUs.

    tokens_per_second: aggregate generation rate of the replica while busy (> 0).
    gpu_hourly_usd:    price of one GPU-hour in USD (>= 0).
    utilization:       busy fraction of the paid time, in (0, 1].
    num_gpus:          GPUs in the replica, a positive int.
    Raises ValueError, with a message naming the argument and the fix, on bad input.
    """
    ### BEGIN SOLUTION
    if not (isinstance(tokens_per_second, (int, float)) and math.isfinite(tokens_per_second)
            and tokens_per_second > 0):
        raise ValueError(f"tokens_per_second must be a finite number > 0, got {tokens_per_second!r}")
    if not (isinstance(gpu_hourly_usd, (int, float)) and math.isfinite(gpu_hourly_usd)
            and gpu_hourly_usd >= 0):
        raise ValueError(f"gpu_hourly_usd must be a finite price >= 0 USD, got {gpu_hourly_usd!r}")
    if not (isinstance(utilization, (int, float)) and 0 < utilization <= 1):
        hint = " (it looks like a percentage: pass 0.8 for 80 %)" if 1 < utilization <= 100 else ""
        raise ValueError(f"utilization must be a fraction in (0, 1], got {utilization!r}{hint}")
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus < 1:
        raise ValueError(f"num_gpus must be a positive whole number, got {num_gpus!r}")
    tokens_per_hour = tokens_per_second * 3600 * utilization
    return num_gpus * gpu_hourly_usd / tokens_per_hour * 1e6
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "cost_per_million", "locked": true, "points": 4, "schema_version": 3, "solution": false}
# Visible checks: run this cell after writing the function.
assert math.isclose(cost_per_million_tokens(1000, 3.6), 1.0), \
    "1000 tok/s for 3.6 USD/h is 3.6M tokens for 3.6 USD, i.e. 1.00 USD per 1M tokens"
assert math.isclose(cost_per_million_tokens(1000, 3.6, utilization=0.5), 2.0), \
    "half the time idle doubles the cost of each token: divide by the utilisation"
assert math.isclose(cost_per_million_tokens(1000, 3.6, num_gpus=2), 2.0), \
    "two GPUs producing the same tokens cost twice as much"
for bad in ({"tokens_per_second": 0, "gpu_hourly_usd": 2.0},
            {"tokens_per_second": 100, "gpu_hourly_usd": -1.0},
            {"tokens_per_second": 100, "gpu_hourly_usd": 2.0, "utilization": 80}):
    try:
        cost_per_million_tokens(**bad)
    except ValueError as error:
        print(f"ValueError as expected for {bad}: {error}")
    else:
        raise AssertionError(f"cost_per_million_tokens(**{bad}) should raise ValueError")
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch01_why_optimize/cost_per_million")
### END HIDDEN TESTS

# %% [markdown]
# ### What batching does to the bill
#
# Take one measured point. On one H100, SGLang decoded Llama-3.1-8B at **158.3 tokens/s
# for a single request** (EAGLE-3 paper, arXiv 2503.01840, Table 4). The memory-bandwidth
# bound for that model is about 223 tokens/s at batch 1 (15.0 GB of weights read per token
# at the datasheet's 3.35 TB/s; derivation in the course's `perf-anchors` reference). A
# single stream therefore cannot get much cheaper than this; only serving many streams
# from the same weight reads can.
#
# The GPU price below is **an assumption for illustration, not a quote**: put in what
# your provider charges. The plot shows cost per million tokens against aggregate
# throughput for three prices; both axes are logarithmic, so the lines are straight.

# %%
ASSUMED_GPU_HOURLY_USD = 2.50  # an assumption: replace with your own price per GPU-hour
MEASURED_BATCH1_TOK_S = 158.3  # SGLang, Llama-3.1-8B, 1x H100, batch 1 (arXiv 2503.01840)

throughputs = np.logspace(1, 4.5, 50)  # 10 .. ~30k aggregate tokens/s
fig, ax = plt.subplots(figsize=(7, 4))
for price in (1.0, ASSUMED_GPU_HOURLY_USD, 5.0):
    ax.plot(throughputs, [cost_per_million_tokens(t, price) for t in throughputs],
            label=f"{price:.2f} USD per GPU-hour")
batch1_cost = cost_per_million_tokens(MEASURED_BATCH1_TOK_S, ASSUMED_GPU_HOURLY_USD)
ax.scatter([MEASURED_BATCH1_TOK_S], [batch1_cost], color="black", zorder=3)
ax.annotate(f"one stream, measured:\n{batch1_cost:.2f} USD / 1M tokens",
            (MEASURED_BATCH1_TOK_S, batch1_cost), textcoords="offset points", xytext=(10, 10))
ax.set(xscale="log", yscale="log", xlabel="aggregate throughput (tokens/s)",
       ylabel="USD per 1M tokens", title="Cost falls in proportion to throughput")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## 2. Return on an optimization
# ### 2. 优化的投资回报
#
# An optimization with speed-up $s$ (the same hardware now produces $s$ times the
# tokens) divides the cost per token by $s$. Whether it pays depends on the traffic it is
# applied to and on what it cost to build:
#
# - cost after $= c_\text{before} / s$
# - monthly savings $= \frac{\text{monthly tokens}}{10^6}\,(c_\text{before} - c_\text{after})$
# - payback time $= \text{engineering cost} / \text{monthly savings}$ months (never, if the savings are not positive)
# - ROI over a horizon of $H$ months $= \dfrac{H \times \text{monthly savings} - \text{engineering cost}}{\text{engineering cost}}$
#
# **Exercise 2 · 练习2.** Write `optimization_roi`. It returns a dict with exactly the
# keys `cost_per_million_after`, `monthly_savings_usd`, `payback_months` (`math.inf` when
# the optimization never pays back) and `roi`. A speed-up below 1 is a slowdown: allowed,
# and it must show as negative savings. Raise `ValueError` for a speed-up that is not
# positive, negative traffic or prices, an engineering cost that is not positive, or a
# horizon that is not positive.

# %% nbgrader={"grade": false, "grade_id": "roi_solution", "locked": false, "schema_version": 3, "solution": true}
def optimization_roi(speedup: float, monthly_tokens: float, cost_per_million_before: float,
                     engineering_cost_usd: float, horizon_months: float = 12) -> dict:
    """Savings, payback and ROI of an optimization that speeds serving up `speedup` times.

    Returns {"cost_per_million_after": USD, "monthly_savings_usd": USD,
             "payback_months": months or math.inf, "roi": fraction (1.0 = +100 %)}.
    """
    ### BEGIN SOLUTION
    checks = {
        "speedup": (speedup, speedup > 0, "a speed-up factor > 0 (1.5 means 50 % more tokens/s)"),
        "monthly_tokens": (monthly_tokens, monthly_tokens >= 0, "a token count >= 0"),
        "cost_per_million_before": (cost_per_million_before, cost_per_million_before >= 0, "a price >= 0"),
        "engineering_cost_usd": (engineering_cost_usd, engineering_cost_usd > 0, "a cost > 0 USD"),
        "horizon_months": (horizon_months, horizon_months > 0, "a number of months > 0"),
    }
    for name, (value, ok, expected) in checks.items():
        if not (math.isfinite(value) and ok):
            raise ValueError(f"{name} must be {expected}, got {value!r}")
    after = cost_per_million_before / speedup
    monthly_savings = monthly_tokens / 1e6 * (cost_per_million_before - after)
    payback = engineering_cost_usd / monthly_savings if monthly_savings > 0 else math.inf
    roi = (horizon_months * monthly_savings - engineering_cost_usd) / engineering_cost_usd
    return {"cost_per_million_after": after, "monthly_savings_usd": monthly_savings,
            "payback_months": payback, "roi": roi}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "roi", "locked": true, "points": 4, "schema_version": 3, "solution": false}
result = optimization_roi(speedup=2.0, monthly_tokens=10e9, cost_per_million_before=1.0,
                          engineering_cost_usd=20_000)
assert set(result) == {"cost_per_million_after", "monthly_savings_usd", "payback_months", "roi"}, \
    f"return exactly the four keys named in the docstring, got {sorted(result)}"
assert math.isclose(result["cost_per_million_after"], 0.5), "a 2x speed-up halves the cost per token"
assert math.isclose(result["monthly_savings_usd"], 5_000), "10,000 M tokens x 0.50 USD saved each"
assert math.isclose(result["payback_months"], 4.0), "20,000 USD / 5,000 USD per month"
assert math.isclose(result["roi"], 2.0), "12 x 5,000 = 60,000 saved for 20,000 spent: ROI = +200 %"
assert optimization_roi(0.8, 10e9, 1.0, 20_000)["payback_months"] == math.inf, \
    "a slowdown never pays back: payback_months should be math.inf"
print(result)
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch01_why_optimize/roi")
### END HIDDEN TESTS

# %% [markdown]
# ### Break-even · 盈亏平衡
#
# The same 2× speed-up is a bargain on heavy traffic and a loss on light traffic. The
# plot shows cumulative savings for three traffic levels against the one-off engineering
# cost (all three inputs are illustrative assumptions); a line crossing the dashed cost
# marks the payback month.

# %%
ENGINEERING_COST_USD = 20_000  # an assumption: two engineer-months, say
months = np.arange(0, 25)
fig, ax = plt.subplots(figsize=(7, 4))
for monthly_tokens in (1e9, 5e9, 20e9):
    r = optimization_roi(2.0, monthly_tokens, 1.0, ENGINEERING_COST_USD, horizon_months=24)
    ax.plot(months, months * r["monthly_savings_usd"],
            label=f"{monthly_tokens / 1e9:.0f}B tokens/month: payback {r['payback_months']:.1f} months")
ax.axhline(ENGINEERING_COST_USD, color="black", linestyle="--", label="engineering cost")
ax.set(xlabel="months after launch", ylabel="cumulative savings (USD)",
       title="A 2x speed-up at 1.00 USD per 1M tokens")
ax.grid(True, alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## 3. Compounding gains, and checking a headline
# ### 3. 复合增益与标题数字的核查
#
# Independent gains multiply. If a new GPU generation doubles throughput and a better
# kernel adds 1.5× on top, tokens per GPU-hour grow 2 × 1.5 = 3×, and a price cut of the
# GPU-hour multiplies in again. Over years, a constant annual factor $a$ compounds to
# $a^n$; reading it backwards, a total factor $F$ reached in $n$ years implies
# $a = F^{1/n}$, and reaching $F$ at rate $a$ takes $\log F / \log a$ years.
#
# What do sources say the annual factor is? Two measurements of API prices at equal
# quality:
#
# - a16z ("LLMflation", Nov 2024): about **10× cheaper per year**, from 60 USD to 0.06 USD
#   per million tokens in three years at a fixed MMLU level.
# - Epoch AI (Mar 2025): **9× to 900× per year**, depending on the capability threshold.
#
# The book's blurb headlines a "50,000× efficiency revolution". We could not find a source
# for that number, so this course does not repeat it as a fact. Exercise 3 lets you ask
# instead what it would take.
#
# **Exercise 3 · 练习3.** Write `compound_efficiency(factors)` (the product of independent
# gain factors, given as a list or as a dict of name → factor; 1.0 for none),
# `implied_annual_factor(total_factor, years)` and `years_to_factor(target_factor,
# annual_factor)`. Every factor must be finite and > 0, `years` > 0, and an annual factor
# must be > 1 to ever reach a target above 1; raise `ValueError` otherwise.

# %% nbgrader={"grade": false, "grade_id": "compounding_solution", "locked": false, "schema_version": 3, "solution": true}
def compound_efficiency(factors) -> float:
    """Overall gain of independent factors: their product (1.0 for no factors)."""
    ### BEGIN SOLUTION
    values = list(factors.values()) if isinstance(factors, dict) else list(factors)
    total = 1.0
    for value in values:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"every gain factor must be finite and > 0, got {value!r}")
        total *= value
    return total
    ### END SOLUTION


def implied_annual_factor(total_factor: float, years: float) -> float:
    """The constant yearly factor that compounds to `total_factor` in `years` years."""
    ### BEGIN SOLUTION
    if not (math.isfinite(total_factor) and total_factor > 0):
        raise ValueError(f"total_factor must be finite and > 0, got {total_factor!r}")
    if not (math.isfinite(years) and years > 0):
        raise ValueError(f"years must be > 0, got {years!r}")
    return total_factor ** (1 / years)
    ### END SOLUTION


def years_to_factor(target_factor: float, annual_factor: float) -> float:
    """Years of compounding at `annual_factor` per year needed to reach `target_factor`."""
    ### BEGIN SOLUTION
    if not (math.isfinite(target_factor) and target_factor > 0):
        raise ValueError(f"target_factor must be finite and > 0, got {target_factor!r}")
    if not (math.isfinite(annual_factor) and annual_factor > 1):
        raise ValueError(f"annual_factor must be > 1 to grow at all, got {annual_factor!r}")
    return math.log(target_factor) / math.log(annual_factor)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "compounding", "locked": true, "points": 4, "schema_version": 3, "solution": false}
assert math.isclose(compound_efficiency([2.0, 1.5]), 3.0), "independent gains multiply"
assert math.isclose(compound_efficiency({"hardware": 2.0, "kernels": 1.5, "price": 2.0}), 6.0)
assert compound_efficiency([]) == 1.0, "no gains at all is a factor of 1"
assert math.isclose(implied_annual_factor(1000, 3), 10.0), "a16z: 1000x in 3 years is 10x a year"
assert math.isclose(years_to_factor(100, 10), 2.0), "10x a year reaches 100x in 2 years"
print(f"50,000x at 10x per year takes {years_to_factor(50_000, 10):.1f} years")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch01_why_optimize/compounding")
### END HIDDEN TESTS

# %% [markdown]
# ### How fast do prices fall? · 价格下降有多快
#
# The plot compounds the sourced annual factors from one million-token price (60 USD,
# a16z's starting point) and marks where a 50,000× fall would sit. Read off the years
# each rate would need; the claim is only as good as the rate and the period it assumes.

# %%
start_price = 60.0  # USD per 1M tokens, a16z's Nov 2021 starting point
years = np.linspace(0, 6, 61)
fig, ax = plt.subplots(figsize=(7, 4))
for annual, label in ((9, "Epoch AI, slowest: 9x/yr"), (10, "a16z: ~10x/yr"), (40, "Epoch AI, GPT-4 level on PhD science: 40x/yr")):
    ax.plot(years, start_price / annual ** years, label=label)
ax.axhline(start_price / 50_000, color="black", linestyle="--", label="a 50,000x fall (unsourced claim)")
for annual in (9, 10, 40):
    ax.axvline(years_to_factor(50_000, annual), color="grey", alpha=0.3)
ax.set(yscale="log", xlabel="years", ylabel="USD per 1M tokens", title="Compounding price declines")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Common pitfalls · 常见误区
#
# **1. Quoting the single-stream speed as the throughput.** The 158.3 tokens/s above is
# what one request sees. A replica serving many requests produces far more tokens per
# hour; pricing with the single-stream rate overstates the cost by the batch's factor.
# Here the same hour is priced both ways, for a hypothetical aggregate 20× the stream rate:

# %%
per_stream = cost_per_million_tokens(MEASURED_BATCH1_TOK_S, ASSUMED_GPU_HOURLY_USD)
aggregate = cost_per_million_tokens(20 * MEASURED_BATCH1_TOK_S, ASSUMED_GPU_HOURLY_USD)
print(f"priced per stream: {per_stream:.2f} USD / 1M tokens; priced per replica: {aggregate:.3f}")

# %% [markdown]
# **2. A percentage where a fraction belongs.** `utilization=80` would make tokens look 80×
# cheaper than at full use. Your function refuses it instead of returning a wrong number:

# %%
try:
    cost_per_million_tokens(1000, 2.5, utilization=80)
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
# **3. Multiplying speed-ups that are not independent.** A kernel 2× faster on a part
# that takes 30 % of the step time does not make the step 2× faster. Amdahl's law gives
# $1 / (0.7 + 0.3 / 2) \approx 1.18\times$; multiplying factors (exercise 3) is only right
# when each applies to the whole time.

# %%
fraction, local_speedup = 0.30, 2.0
print(f"naive: {local_speedup:.2f}x, Amdahl: {1 / ((1 - fraction) + fraction / local_speedup):.2f}x")

# %% [markdown]
# **4. Adding percentage savings.** Two optimizations that each cut cost by 50 % do not
# cut it by 100 %: they multiply, 0.5 × 0.5 = 25 % of the original cost remains.

# %%
print(f"cost left after two 50 % cuts: {compound_efficiency([0.5, 0.5]):.0%}")

# %% [markdown]
# ## Practical checklist · 实战检查清单
#
# - [ ] Throughput is the replica's aggregate tokens/s at the batch you will really run.
# - [ ] Utilisation is measured over paid hours, as a fraction, idle nights included.
# - [ ] The GPU-hour price is your contract's, all-in (reserved vs on-demand differ).
# - [ ] A speed-up is measured end to end on your traffic, not on one kernel.
# - [ ] Payback is computed on the traffic the optimization applies to, not all traffic.
# - [ ] Every headline number has a source, a setting and a date before it enters a plan.
#
# ## ROI box · ROI计算框
#
# For an optimization with measured end-to-end speed-up $s$ on traffic of $T$ million
# tokens per month, at a current cost $c$ USD per million tokens, built for $E$ USD:
#
# $$c = \frac{\text{GPUs} \times \text{USD per GPU-hour}}{\text{tokens/s} \times 3600 \times \text{utilisation}} \times 10^6,
# \qquad \text{savings/month} = T\,c\,(1 - 1/s), \qquad \text{payback} = \frac{E}{T\,c\,(1 - 1/s)}$$
#
# Every later chapter fills this box with its own measured $s$.
