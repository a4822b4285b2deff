"""Bounds that the launcher, terraform's variables and the worker all enforce, each stated once.

The launcher and the worker import them; terraform/variables.tf repeats them in its validation
blocks (HCL cannot import Python), and tests/test_launcher_bounds.py runs terraform itself on
values either side of each bound to show that it agrees. A value one of them accepts is then
never refused by another after the user said yes (terraform) or on every instance (the worker).
"""

from __future__ import annotations

# The highest spot max price, in USD per instance-hour: the worker's hourly cost (terraform gives
# it the max price) and terraform's max_price. No GPU instance costs this much; more is a typo.
MAX_PRICE_USD_PER_HOUR = 1000.0
# The longest time cap, in hours (30 days): terraform's max_hours, the launcher's --max-hours and
# the worker's --max-hours. systemd's RuntimeMaxSec on the worker units is derived from it.
MAX_HOURS = 720.0
