"""Modules shared by the RVOS models, written once."""
