"""SgMg (Spectrum-guided Multi-granularity R-VOS, ICCV 2023), ported from bo-miao/SgMg."""
