"""CREAM (Xu et al., CVPR 2022): context-embedding bank and EM re-activation."""

from __future__ import annotations

from camkit.cream.bank import ContextEmbeddingBank
from camkit.cream.em import CreamDetails, EMReActivation, calibrate, cream_map

__all__ = [
    "ContextEmbeddingBank",
    "CreamDetails",
    "EMReActivation",
    "calibrate",
    "cream_map",
]
