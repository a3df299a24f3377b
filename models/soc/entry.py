"""SOC's record in :mod:`models.build`: the family's loaders and producer with SOC's network
builder, official key layout and parity module (:func:`models.family.entry.family_entry`)."""

from __future__ import annotations

from models.common.producer_family import ProducerFamily
from models.family.entry import family_entry
from models.soc import parity
from models.soc.build import build_soc
from models.soc.convert import SOC_LAYOUT

FAMILY: ProducerFamily = family_entry("soc", build_soc, SOC_LAYOUT, parity)
