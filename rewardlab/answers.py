"""The one vocabulary of a label: which of a pair's two responses is MORE hallucinated (API.md, "Labels").

Import packages, the web app's models and forms, consensus, metrics and training all read these names;
"both" and "neither" are ties (neither answer is better), "a" and "b" name a side in canonical order.
"""

from __future__ import annotations

from typing import Literal, get_args

Answer = Literal["a", "b", "both", "neither"]
ANSWERS: tuple[Answer, ...] = get_args(Answer)
A, B, BOTH, NEITHER = ANSWERS
SIDES: tuple[Answer, ...] = (A, B)
TIES: tuple[Answer, ...] = (BOTH, NEITHER)
