"""ReferFormer (CVPR 2022): the base of the ReferFormer / MUTR / SOC family."""
