"""How many examples a property test draws under the loaded hypothesis profile.

tests/conftest.py registers the profiles: `ci` (hypothesis' own 100, the counts as written) and
`dev` (10: a tenth of each). A test that names its own count passes it through `examples`, so
the profile scales it instead of being overridden by it.
"""

from __future__ import annotations

from hypothesis import settings

# The ci profile's max_examples: the size each test's written count is meant for.
CI_EXAMPLES = 100


def examples(count: int) -> int:
    """`count` scaled to the loaded profile: as written under ci, a tenth under dev, at least 1."""
    return max(1, count * settings.default.max_examples // CI_EXAMPLES)
