"""ReferFormer (CVPR 2022), a leaf of the family in :mod:`models.family`: its network is the
family's trunk with the cross-modal FPN (:mod:`models.referformer.build`)."""
