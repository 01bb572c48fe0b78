"""Attention kernel reporting: follows DiffSynth's own choice in ``wan_video_dit.flash_attention``."""
from __future__ import annotations

import pytest
from diffsynth.models import wan_video_dit

from diffsynth_dualcam.parallel.backend import attention_backend

FLAGS = ("FLASH_ATTN_3_AVAILABLE", "FLASH_ATTN_2_AVAILABLE", "SAGE_ATTN_AVAILABLE")


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        ({"FLASH_ATTN_3_AVAILABLE", "FLASH_ATTN_2_AVAILABLE"}, "flash_attention_3"),
        ({"FLASH_ATTN_2_AVAILABLE", "SAGE_ATTN_AVAILABLE"}, "flash_attention_2"),
        ({"SAGE_ATTN_AVAILABLE"}, "sage_attention"),
        (set(), "torch scaled_dot_product_attention"),
    ],
)
def test_attention_backend_follows_diffsynth_priority(monkeypatch, available: set[str], expected: str) -> None:
    for flag in FLAGS:
        monkeypatch.setattr(wan_video_dit, flag, flag in available)
    assert attention_backend().startswith(expected)
