"""Training pieces shared by the RVOS models: box ops, losses, query matching, the loop."""
