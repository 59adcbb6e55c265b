"""Spawners: the dispatcher and its backends (SSH login node, Slurm job, Spin pod)."""
