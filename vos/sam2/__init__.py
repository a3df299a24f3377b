"""SAM 2 / SAM 2.1 (facebookresearch/sam2) as a propagation engine: the network with the
official checkpoint layout (:mod:`vos.sam2.model`), the video predictor's per-object algorithm
(:mod:`vos.sam2.tracker`), the engine session (:mod:`vos.sam2.session`) and its builder
(:func:`vos.sam2.engine.build_sam2_engine`)."""
