"""Negative control: slow but correct: the reference policy with 256-token chunks (a long prompt takes many steps)."""
# targets: leaderboard
LEADERBOARD_TOKEN_BUDGET = 256
