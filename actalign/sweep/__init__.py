"""Experiment sweeps: a grid of run configurations (arms), an honest winner chosen on one split of the
videos and reported on the other, and what the whole sweep will compute with sharing counted once.

Pure code: ``grid`` reads a grid file into arms, ``selection`` splits videos and judges arms,
``dry_run`` unions the arms' freshness plans. Running arms is ``flows/sweep.py``.
"""
