"""MUTR (AAAI 2024): ReferFormer with additive fusion, MTA and the MTI video decoder."""
