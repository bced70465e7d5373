"""Training-side math: task losses, IGC and SKD losses (``losses``) and CGC (``cgc``).

Kept free of data loading and loops so every formula is unit-tested on hand-computed cases.
"""
