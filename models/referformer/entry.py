"""ReferFormer's record in :mod:`models.build`: the family's loaders and producer with
ReferFormer's network builder, official key layout and parity module
(:func:`models.family.entry.family_entry`)."""

from __future__ import annotations

from models.common.producer_family import ProducerFamily
from models.family.entry import family_entry
from models.referformer import parity
from models.referformer.build import build_referformer
from models.referformer.convert import REFERFORMER_LAYOUT

FAMILY: ProducerFamily = family_entry("referformer", build_referformer, REFERFORMER_LAYOUT, parity)
