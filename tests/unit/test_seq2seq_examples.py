"""Seq2seq training and selection data: too-long examples are counted and refused, selection samples dev."""

from __future__ import annotations

import logging

import pytest

from clinical_ner.approaches.seq2seq.datamodule import check_lengths, selection_sample
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.errors import UserError


def test_no_example_fits_is_a_user_error_naming_the_length_that_keeps_99_percent():
    lengths = list(range(101, 301))  # 200 examples, every one longer than 100
    with pytest.raises(UserError) as err:
        check_lengths(lengths, max_length=100)
    message = str(err.value)
    assert "\n" not in message and "200 of 200" in message and "max_length=100" in message
    assert "approach.max_length=298 keeps 99%" in message  # 198 of 200 are at most 298


def test_more_than_one_percent_skipped_warns(caplog):
    with caplog.at_level(logging.WARNING):
        assert check_lengths([10] * 95 + [500] * 5, max_length=100) == 5
    assert any("5 of 100" in r.message and "max_length=500" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert check_lengths([10] * 999 + [500], max_length=100) == 1  # 0.1%: no warning
        assert check_lengths([10] * 5, max_length=100) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_selection_sample_is_seeded_spread_over_dev_and_in_order():
    dev = synthetic_splits()["dev"]
    sample = selection_sample(dev, 8)
    assert len(sample) == 8 and sample == selection_sample(dev, 8)
    positions = [dev.index(doc) for doc in sample]
    assert positions == sorted(positions)  # dev order kept
    assert positions != list(range(8)) and positions[-1] >= len(dev) // 2  # not the first ids
    assert selection_sample(dev, None) == dev and selection_sample(dev, len(dev) + 5) == dev
