"""Domain adaptation: carry what one line learned to another (the founding document's transfer
learning in industry). Another line's labelled images (the *source*) and this line's unlabelled
images come with the usual labelled dataset (the *target*, possibly empty):

- shift.py: how far apart the two lines are (a domain classifier's AUROC), before training;
- alignment.py: feature-level methods on frozen features (CORAL, optimal transport, subspace
  alignment from skada) and instance transfer (importance weighting, source selection);
- guard.py: the negative-transfer guard: source-only, target-only and the adapted model on the same
  target folds, or a label-free score when this line has no labels;
- strategies.py: each method as a registered strategy of the classification task.
"""
# The classification strategies first: the transfer strategies derive from them, and that module registers
# the transfer strategies at its end. Importing one of this package's modules first then finds the base
# classes complete instead of a half-imported module (an import cycle).
from .. import strategies as _strategies  # noqa: F401
