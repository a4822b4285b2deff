"""How messages show numbers and values: counts in words, limits as integers, long values cut."""

import pytest

from contract.values import MAX_QUOTED_CHARS, count, number, quoted


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "0"), (950, "950"), (1000, "1 k"), (41_088, "41.1 k"), (999_499, "999 k"),
        (999_700, "1 M"),  # rounds up into the next unit, never "1000 k"
        (1_234_567, "1.23 M"), (590_000_000, "590 M"), (3_300_000_000, "3.3 B"),
    ],
)
def test_a_count_reads_right_at_any_size(value, shown):
    assert count(value) == shown


@pytest.mark.parametrize(("value", "shown"), [(1 << 20, "1048576"), (600.0, "600"), (0.5, "0.5"), (-50.0, "-50")])
def test_a_number_is_written_as_a_person_writes_it(value, shown):
    assert number(value) == shown


def test_a_short_value_is_quoted_whole_and_a_long_one_cut_with_its_length():
    assert quoted("a'b") == '"a\'b"'
    assert quoted("x" * MAX_QUOTED_CHARS) == repr("x" * MAX_QUOTED_CHARS)
    assert quoted("é" * 1_000_000) == repr("é" * MAX_QUOTED_CHARS) + "... (1000000 characters)"
