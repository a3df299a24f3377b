"""MUTR's record in :mod:`models.build`: the family's loaders and producer with MUTR's network
builder, official key layout and parity module (:func:`models.family.entry.family_entry`)."""

from __future__ import annotations

from models.common.producer_family import ProducerFamily
from models.family.entry import family_entry
from models.mutr import parity
from models.mutr.build import build_mutr
from models.mutr.convert import MUTR_LAYOUT

FAMILY: ProducerFamily = family_entry("mutr", build_mutr, MUTR_LAYOUT, parity)
