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
# 3. Compound independent gains (hardware, software, price) into one factor, and read a
#    headline number ("50,000×", "100× ROI") for what it measures before believing it.
#
# **Why it matters in money.** Serving cost is a GPU-hour price divided by the tokens that
# hour produces. Double the tokens per hour and the cost per token halves; no other
# lever in this course is more direct. The exercises below are small, but every later
# chapter ends with an ROI formula that plugs its measured speed-up into the functions
# you write here.

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
# for a single request** [@li2025-eagle3, Table 4]. The memory-bandwidth bound for that
# model is about 223 tokens/s at batch 1: each token reads the 15.0 GB of its BF16 weights
# [@meta2024-llama3], and an H100 SXM reads 3.35 TB/s [@nvidia-h100-datasheet], so
# 3.35e12 / 15.0e9 ≈ 223. A single stream therefore cannot get much cheaper than this;
# only serving many streams from the same weight reads can.
#
# The GPU price below is **an assumption for illustration, not a quote**: put in what
# your provider charges. The plot shows cost per million tokens against aggregate
# throughput for three prices; both axes are logarithmic, so the lines are straight.

# %%
ASSUMED_GPU_HOURLY_USD = 2.50  # an assumption: replace with your own price per GPU-hour
MEASURED_BATCH1_TOK_S = 158.3  # SGLang, Llama-3.1-8B, 1x H100, batch 1 [@li2025-eagle3]

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
# ### 3. 复合增益与宣传数字的核查
#
# Independent gains multiply. If a new GPU generation doubles throughput and a better
# kernel adds 1.5× on top, tokens per GPU-hour grow 2 × 1.5 = 3×, and a price cut of the
# GPU-hour multiplies in again. Over years, a constant annual factor $a$ compounds to
# $a^n$; reading it backwards, a total factor $F$ reached in $n$ years implies
# $a = F^{1/n}$, and reaching $F$ at rate $a$ takes $\log F / \log a$ years.
#
# How fast does the **price** of a token fall? Two measurements of API prices at equal
# quality:
#
# - a16z ("LLMflation", Nov 2024): about **10× cheaper per year**, from 60 USD to 0.06 USD
#   per million tokens in three years at a fixed MMLU level [@appenzeller2024-llmflation].
# - Epoch AI (Mar 2025): **9× to 900× per year**, depending on the capability threshold
#   [@epoch2025-price-trends].
#
# The book this course follows opens with a "50,000× efficiency revolution" (50,000倍效率革命)
# and gives no source [@llm-inference-book]. Its likely origin is a chart NVIDIA supplied
# to BOND's *Trends – Artificial Intelligence* report (May 2025) [@bond2025-ai-trends]:
# for a theoretical data centre costing one billion USD and running a GPT-MoE inference
# workload, the **tokens it produces per megawatt-year** grew from 1.3 billion on Pascal GPUs
# (2016) to 65 trillion on Blackwell (2024), "+50,000x greater per-unit energy efficiency".
# Read it for what it is:
#
# - it is an **energy-efficiency** figure: tokens per unit of electricity, for hardware
#   generations and a workload NVIDIA chose, at full use of the data centre;
# - it is **not a price**: nothing in it says what a token costs whoever buys it, and it
#   does not belong on the same axis as the API price declines above;
# - it spans **eight years**, so it is a rate, which exercise 3 lets you compute.
#
# The chart's own rows are below (a read-only cell: the questions of section 5 use them).

# %% nbgrader={"grade": false, "grade_id": "headline_data", "locked": true, "schema_version": 3, "solution": false}
# NVIDIA's chart in BOND's "Trends – Artificial Intelligence" (May 2025), page 106
# [@bond2025-ai-trends]: a theoretical 1-billion-USD data centre, GPT-MoE inference workload.
# year: (GPU generation, inference tokens it produces per year, data-centre power in MW)
NVIDIA_DATA_CENTRE_CHART = {
    2016: ("Pascal", 50e9, 37),
    2018: ("Volta", 1e12, 34),
    2020: ("Ampere", 5e12, 25),
    2022: ("Hopper", 58e12, 19),
    2024: ("Blackwell", 1375e12, 21),
}

# %% [markdown]
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
print(f"the chart's 50,000x in 8 years is {implied_annual_factor(50_000, 8):.2f}x a year")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch01_why_optimize/compounding")
### END HIDDEN TESTS

# %% [markdown]
# ### Two curves, two quantities · 两条曲线，两个量
#
# Left: the chart's tokens per megawatt-year, computed from its rows (tokens per year over
# megawatts), against the constant annual factor that links its two ends. Right: the
# price of a million tokens at constant quality, compounding the sourced annual price
# declines from a16z's starting point of 60 USD. The two panels have different units on
# purpose: one is what a data centre can do with a unit of electricity, the other what a
# customer pays.

# %%
chart_years = sorted(NVIDIA_DATA_CENTRE_CHART)
per_mw_year = [NVIDIA_DATA_CENTRE_CHART[y][1] / NVIDIA_DATA_CENTRE_CHART[y][2] for y in chart_years]
span = chart_years[-1] - chart_years[0]
energy_factor = per_mw_year[-1] / per_mw_year[0]
energy_rate = implied_annual_factor(energy_factor, span)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.plot(chart_years, per_mw_year, marker="o", label="NVIDIA chart (BOND, May 2025)")
ax1.plot(chart_years, [per_mw_year[0] * energy_rate ** (y - chart_years[0]) for y in chart_years],
         linestyle="--", color="grey", label=f"constant {energy_rate:.2f}x per year")
for year, value in zip(chart_years, per_mw_year):
    ax1.annotate(NVIDIA_DATA_CENTRE_CHART[year][0], (year, value), textcoords="offset points",
                 xytext=(-10, 8), fontsize=8)
ax1.set(yscale="log", xlabel="year", ylabel="tokens per MW-year",
        title=f"Energy efficiency: {energy_factor:,.0f}x in {span} years")
ax1.grid(True, which="both", alpha=0.3)
ax1.legend(fontsize=8)
start_price = 60.0  # USD per 1M tokens, a16z's Nov 2021 starting point
years = np.linspace(0, 3, 31)
for annual, label in ((9, "Epoch AI, slowest: 9x/yr"), (10, "a16z: ~10x/yr"),
                      (40, "Epoch AI, GPT-4 level on PhD science: 40x/yr")):
    ax2.plot(2021.9 + years, start_price / annual ** years, label=label)
ax2.set(yscale="log", xlabel="year", ylabel="USD per 1M tokens",
        title="API price at constant quality")
ax2.grid(True, which="both", alpha=0.3)
ax2.legend(fontsize=8)
plt.tight_layout()
plt.show()
print(f"tokens per MW-year: {per_mw_year[0]:.3g} (2016) -> {per_mw_year[-1]:.3g} (2024), "
      f"{energy_factor:,.0f}x, {energy_rate:.2f}x per year")

# %% [markdown]
# The chart rounds its ends to 1.3 billion and 65 trillion, and their ratio to 50,000; its
# own rows give about 48,000, or about 3.85× a year (printed above). That is a fast rate
# for hardware, and slower than the 10× a year by which API prices fell at constant quality
# from 2021 on, which a16z attributes to cheaper hardware, quantization, better software,
# smaller models of equal quality and competition together [@appenzeller2024-llmflation].
# Neither number is the other.
#
# ## 4. A claim to check: "100× ROI"
# ### 4. 待核查的说法："100倍ROI"
#
# The book leads with a "real case" of a 100× return on an inference optimization at
# Toast (真实案例：Toast 100倍ROI) [@llm-inference-book]. We found no public source for it:
# the Toast earnings reports and product pages we searched name no such figure. So treat it
# as a claim, and ask what it would take. You already have the arithmetic:
#
# $$\text{ROI} = \frac{H \times \text{monthly savings} - E}{E}, \qquad
# \text{monthly savings} = B\,(1 - 1/s),$$
#
# where $B$ is the monthly serving bill the optimization applies to, $s$ its end-to-end
# speed-up, $E$ what it cost to build and $H$ the horizon in months. Savings can never
# exceed the whole bill, however large $s$ gets, so
#
# $$\text{ROI} < \frac{H\,B}{E} - 1 .$$
#
# A 100× ROI therefore says as much about the size of the bill against the engineering
# cost as about the optimization. The plot shows the ROI over a year of one optimization
# costing 50,000 USD, against its speed-up, for three monthly bills (all assumptions):

# %%
CLAIM_ENGINEERING_COST_USD = 50_000  # an assumption: a few engineer-months
speedups = np.linspace(1.0, 10.0, 91)
fig, ax = plt.subplots(figsize=(7, 4))
for monthly_bill in (100_000, 500_000, 2_000_000):
    # cost_per_million_before = 1 USD, so monthly_tokens = the bill in USD x 1e6
    rois = [optimization_roi(s, monthly_bill * 1e6, 1.0, CLAIM_ENGINEERING_COST_USD)["roi"]
            for s in speedups]
    ax.plot(speedups, rois, label=f"bill {monthly_bill:,} USD/month "
            f"(ceiling {12 * monthly_bill / CLAIM_ENGINEERING_COST_USD - 1:.0f}x)")
ax.axhline(100, color="black", linestyle="--", label="the claimed 100x")
ax.set(xlabel="end-to-end speed-up s", ylabel="ROI over 12 months (x)",
       title="ROI of a 50,000 USD optimization")
ax.grid(True, alpha=0.3)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 5. Questions to think through
# ### 5. 思考题
#
# Each answer cell holds a function that returns your answers, numbers or a letter, in a
# dict; the grader calls it and computes the right answers itself. Compute the numbers
# from the constants given and your functions rather than typing them in: a number within
# 1 % of the exact value (0.5 % for question 3) counts. The visible checks only check the
# form of your answers. The grader runs the answer cells with the read-only and exercise
# cells only, not the demonstrations.
#
# **Question 1 · 思考题1 (what the 50,000× measures).**
# (a) Which of these does the chart's "+50,000×" measure? Answer with the letter.
#
# - **A.** how much cheaper a token bought from an API became from 2016 to 2024;
# - **B.** how many more tokens a data centre produces per unit of electrical energy, on
#   NVIDIA's workload and hardware assumptions;
# - **C.** how much faster one GPU decodes a single request;
# - **D.** how much the total cost of serving a token fell at constant model quality.
#
# (b) Compute the factor from the chart's rows (`NVIDIA_DATA_CENTRE_CHART`: tokens per year
# over megawatts, 2024 against 2016), not from its rounded label. (c) The constant annual
# factor that compounds to it over those 8 years.

# %% nbgrader={"grade": false, "grade_id": "q_headline_solution", "locked": false, "schema_version": 3, "solution": true}
def question_1() -> dict:
    """Your answers to question 1:
    {"measures": (a) one letter, "A" to "D",
     "factor": (b) tokens per MW-year in 2024 over the same in 2016, from the chart's rows,
     "annual_factor": (c) the constant factor per year over 2016-2024}."""
    ### BEGIN SOLUTION
    (_, tokens_2016, mw_2016), (_, tokens_2024, mw_2024) = NVIDIA_DATA_CENTRE_CHART[2016], NVIDIA_DATA_CENTRE_CHART[2024]
    factor = (tokens_2024 / mw_2024) / (tokens_2016 / mw_2016)
    return {"measures": "B", "factor": factor, "annual_factor": implied_annual_factor(factor, 2024 - 2016)}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q_headline", "locked": true, "points": 2, "schema_version": 3, "solution": false}
answers = question_1()
assert isinstance(answers, dict) and set(answers) == {"measures", "factor", "annual_factor"}, \
    "return a dict with the keys 'measures', 'factor' and 'annual_factor'"
assert answers["measures"] in ("A", "B", "C", "D"), "answer (a) with one capital letter, A to D"
assert isinstance(answers["factor"], (int, float)) and answers["factor"] > 1, \
    "(b) is a factor above 1: tokens per MW-year in 2024 over the same in 2016"
assert isinstance(answers["annual_factor"], (int, float)) and 1 < answers["annual_factor"] < answers["factor"], \
    "(c) is a factor per year: above 1, and far below the 8-year total"
print(answers["measures"], f"{answers['factor']:,.0f}x", f"{answers['annual_factor']:.3f}x per year")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch01_why_optimize/q_headline")
### END HIDDEN TESTS

# %% [markdown]
# **Question 2 · 思考题2 (what energy alone can do to a price).** Suppose electricity is
# `ENERGY_SHARE_OF_COST` = 10 % of what it costs to serve a token (an assumption for this
# question; the rest pays for the hardware, the building, the staff and a margin), and that
# only that part benefits from a 50,000× gain in tokens per unit of energy.
# (a) By what factor does the cost of a token fall? (Pitfall 3 below has the formula.)
# (b) What share of the cost would electricity have to be for the same 50,000× to make
# tokens 10× cheaper? Give it as a fraction.

# %% nbgrader={"grade": false, "grade_id": "energy_share_data", "locked": true, "schema_version": 3, "solution": false}
ENERGY_SHARE_OF_COST = 0.10  # an assumption for question 2
ENERGY_GAIN = 50_000  # the chart's label

# %% nbgrader={"grade": false, "grade_id": "q_energy_share_solution", "locked": false, "schema_version": 3, "solution": true}
def question_2() -> dict:
    """Your answers to question 2:
    {"cost_fall_factor": (a) cost per token before over cost after,
     "energy_share_for_10x": (b) a fraction, e.g. 0.25 for 25 %}."""
    ### BEGIN SOLUTION
    share, gain = ENERGY_SHARE_OF_COST, ENERGY_GAIN
    # Amdahl: 1 / ((1 - e) + e / G); it equals 10 when e (1 - 1/G) = 1 - 1/10
    return {"cost_fall_factor": 1 / ((1 - share) + share / gain),
            "energy_share_for_10x": (1 - 1 / 10) / (1 - 1 / gain)}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q_energy_share", "locked": true, "points": 2, "schema_version": 3, "solution": false}
answers = question_2()
assert isinstance(answers, dict) and set(answers) == {"cost_fall_factor", "energy_share_for_10x"}, \
    "return a dict with the keys 'cost_fall_factor' and 'energy_share_for_10x'"
assert isinstance(answers["cost_fall_factor"], (int, float)) and answers["cost_fall_factor"] >= 1, \
    "(a) is a factor >= 1: cost before over cost after"
assert isinstance(answers["energy_share_for_10x"], (int, float)) and 0 < answers["energy_share_for_10x"] <= 1, \
    "(b) is a share of the cost: a fraction in (0, 1], e.g. 0.25 for 25 %"
print(f"cost falls {answers['cost_fall_factor']:.4f}x; 10x needs electricity to be "
      f"{answers['energy_share_for_10x']:.1%} of the cost")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch01_why_optimize/q_energy_share")
### END HIDDEN TESTS

# %% [markdown]
# **Question 3 · 思考题3 (checking "100× ROI").** Read "100× ROI" as section 4's ROI = 100
# (the savings over the horizon, less the engineering cost, are 100 times that cost). An
# optimization costs `CLAIM_COST_USD` = 50,000 USD and is judged over
# `CLAIM_HORIZON_MONTHS` = 12 months.
# (a) What is the smallest monthly bill $B$ (USD) for which *any* speed-up could reach it?
# (b) On a bill of `CLAIM_MONTHLY_BILL_USD` = 600,000 USD a month, what end-to-end
# speed-up $s$ does it take?

# %% nbgrader={"grade": false, "grade_id": "roi_claim_data", "locked": true, "schema_version": 3, "solution": false}
CLAIM_ROI = 100
CLAIM_COST_USD = 50_000
CLAIM_HORIZON_MONTHS = 12
CLAIM_MONTHLY_BILL_USD = 600_000

# %% nbgrader={"grade": false, "grade_id": "q_roi_claim_solution", "locked": false, "schema_version": 3, "solution": true}
def question_3() -> dict:
    """Your answers to question 3:
    {"min_monthly_bill_usd": (a) USD per month,
     "speedup_needed": (b) the end-to-end speed-up s on CLAIM_MONTHLY_BILL_USD}."""
    ### BEGIN SOLUTION
    # ROI = (H B (1 - 1/s) - E) / E  =>  B (1 - 1/s) = (ROI + 1) E / H; the bound is s -> infinity
    needed_savings = (CLAIM_ROI + 1) * CLAIM_COST_USD / CLAIM_HORIZON_MONTHS
    return {"min_monthly_bill_usd": needed_savings,
            "speedup_needed": 1 / (1 - needed_savings / CLAIM_MONTHLY_BILL_USD)}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q_roi_claim", "locked": true, "points": 2, "schema_version": 3, "solution": false}
answers = question_3()
assert isinstance(answers, dict) and set(answers) == {"min_monthly_bill_usd", "speedup_needed"}, \
    "return a dict with the keys 'min_monthly_bill_usd' and 'speedup_needed'"
assert isinstance(answers["min_monthly_bill_usd"], (int, float)) and answers["min_monthly_bill_usd"] > 0, \
    "(a) is a monthly bill in USD"
assert isinstance(answers["speedup_needed"], (int, float)) and answers["speedup_needed"] > 1, \
    "(b) is a speed-up above 1"
check = optimization_roi(answers["speedup_needed"], CLAIM_MONTHLY_BILL_USD * 1e6, 1.0, CLAIM_COST_USD,
                         CLAIM_HORIZON_MONTHS)
print(f"(a) {answers['min_monthly_bill_usd']:,.0f} USD a month; (b) {answers['speedup_needed']:.3f}x, "
      f"which your optimization_roi prices at ROI = {check['roi']:.1f}")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch01_why_optimize/q_roi_claim")
### END HIDDEN TESTS

# %% [markdown]
# ## Chapter summary · 本章小结
#
# ### Summary · 要点
#
# - Cost per million tokens is the replica's price per hour over the tokens it produces in
#   that hour: aggregate throughput and utilisation set it, not the speed one user sees.
# - An optimization's value is its speed-up applied to the bill it touches, net of what it
#   cost to build: savings, payback time and ROI follow from four numbers.
# - Independent gains multiply; gains on a part of the time obey Amdahl's law
#   [@amdahl1967]; a total over $n$ years is a rate of $F^{1/n}$ a year.
# - A headline number is a quantity, a setting and a date. "50,000×" is NVIDIA's energy
#   efficiency of a data centre over eight years, not a price; "100× ROI" is as much a
#   statement about the size of a bill as about an optimization.
#
# ### Common pitfalls · 常见误区
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
# that takes 30 % of the step time does not make the step 2× faster. Amdahl's law
# [@amdahl1967] gives $1 / (0.7 + 0.3 / 2) \approx 1.18\times$; multiplying factors
# (exercise 3) is only right when each applies to the whole time.

# %%
fraction, local_speedup = 0.30, 2.0
print(f"naive: {local_speedup:.2f}x, Amdahl: {1 / ((1 - fraction) + fraction / local_speedup):.2f}x")

# %% [markdown]
# **4. Adding percentage savings.** Two optimizations that each cut cost by 50 % do not
# cut it by 100 %: they multiply, 0.5 × 0.5 = 25 % of the original cost remains.

# %%
print(f"cost left after two 50 % cuts: {compound_efficiency([0.5, 0.5]):.0%}")

# %% [markdown]
# **5. Reading an efficiency figure as a price.** Tokens per megawatt-year, tokens per GPU
# and USD per token are three different quantities. Question 2 showed that a 50,000× gain
# in the first moves the last by about 1.1× when electricity is a tenth of the cost.
#
# ### Practical checklist · 实战检查清单
#
# - [ ] Throughput is the replica's aggregate tokens/s at the batch you will really run.
# - [ ] Utilisation is measured over paid hours, as a fraction, idle nights included.
# - [ ] The GPU-hour price is your contract's, all-in (reserved vs on-demand differ).
# - [ ] A speed-up is measured end to end on your traffic, not on one kernel.
# - [ ] Payback is computed on the traffic the optimization applies to, not all traffic.
# - [ ] Every headline number has a source, a quantity, a setting and a date before it
#       enters a plan.
#
# ### ROI formula · ROI计算公式
#
# For an optimization with measured end-to-end speed-up $s$ on traffic of $T$ million
# tokens per month, at a current cost $c$ USD per million tokens, built for $E$ USD:
#
# $$c = \frac{\text{GPUs} \times \text{USD per GPU-hour}}{\text{tokens/s} \times 3600 \times \text{utilisation}} \times 10^6,
# \qquad \text{savings/month} = T\,c\,(1 - 1/s), \qquad \text{payback} = \frac{E}{T\,c\,(1 - 1/s)}$$
#
# Every later chapter fills this formula with its own measured $s$.
