"""SOC (NeurIPS 2023): ReferFormer-style frames clustered into video objects by VOC."""
