"""Transfer methods on frozen features: each turns the two lines' features into the classification
head that this line's images meet, so the adapted model is an ordinary model (a linear head on the
backbone's features: predict, export and serve need nothing new).

Feature-level alignment comes from skada (scikit-learn's API for domain adaptation):
- CORAL (Sun, Feng & Saenko 2016): the source's feature covariance recoloured to the target's;
- optimal-transport mapping (Courty et al. 2017): each source image moved onto the target images it is
  matched with by an exact transport plan;
- subspace alignment (Fernando et al. 2013): the source's principal subspace rotated onto the target's
  (the target's projection is linear, so it is folded into the head).
Instance transfer (the founding document's 3.2):
- importance weighting: source images weighted by kernel mean matching (Huang et al. 2007, skada), so
  target-like source images count more;
- source selection: source images farther from every target image than target images are from each
  other are dropped (a few nearest per class are always kept).

Before any method the features of each line are standardised with that line's own mean and spread
(skada-style per-domain scaling): the cheapest alignment there is, and it leaves the methods the finer
part of the shift. This line's scaling is part of the final head.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..linear import LinearHead, fit_linear_head

STD_FLOOR = 1e-6
KEEP_PER_CLASS = 5  # source selection keeps at least this many source images of each class


@dataclass(frozen=True)
class DomainFeatures:
    """Frozen features of the two lines: source (n_s, d) with labels, this line's labelled rows (n_l, d)
    with labels (n_l may be 0) and its unlabelled rows (n_u, d) (n_u may be 0)."""

    source: np.ndarray
    source_labels: np.ndarray
    target: np.ndarray
    target_labels: np.ndarray
    unlabeled: np.ndarray
    n_classes: int

    @property
    def target_all(self) -> np.ndarray:
        """Every row of this line (labelled and unlabelled): what the target distribution is estimated from."""
        return np.concatenate([self.target, self.unlabeled]) if len(self.unlabeled) else self.target

    def with_target(self, labelled: np.ndarray, unlabelled_extra: np.ndarray | None = None) -> DomainFeatures:
        """The same lines with only the labelled target rows `labelled` (indices) kept as labelled; the
        others (`unlabelled_extra` rows, e.g. a validation fold's images) join the unlabelled ones."""
        extra = [self.unlabeled] + ([unlabelled_extra] if unlabelled_extra is not None and len(unlabelled_extra) else [])
        return DomainFeatures(self.source, self.source_labels, self.target[labelled], self.target_labels[labelled],
                              np.concatenate(extra) if len(extra) > 1 else self.unlabeled, self.n_classes)


@dataclass(frozen=True)
class Scaling:
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray) -> Scaling:
        return cls(rows.mean(0), np.maximum(rows.std(0), STD_FLOOR))

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return (rows - self.mean) / self.std


def _head_on_raw(head: LinearHead, scaling: Scaling, projection: np.ndarray | None = None,
                 offset: np.ndarray | None = None) -> LinearHead:
    """The head that acts on raw target features: logits = W (P' (x - mu) / sigma - o) + b, folded."""
    weight = head.weight if projection is None else head.weight @ projection.T  # (k, d) on scaled rows
    bias = head.bias - (head.weight @ offset if offset is not None else 0.0)
    return LinearHead(weight / scaling.std, bias - (weight / scaling.std) @ scaling.mean, head.temperature)


def _fit(rows: list[np.ndarray], labels: list[np.ndarray], n_classes: int, seed: int,
         weights: list[np.ndarray] | None = None) -> LinearHead:
    keep = [i for i, r in enumerate(rows) if len(r)]
    x = np.concatenate([rows[i] for i in keep])
    y = np.concatenate([labels[i] for i in keep])
    w = np.concatenate([weights[i] for i in keep]) if weights is not None else None
    return fit_linear_head(x, y, n_classes, seed=seed, sample_weight=w)


def _domains(n_source: int, n_target: int) -> np.ndarray:
    """skada's sample_domain: positive for the source, negative for the target."""
    return np.r_[np.ones(n_source, dtype=int), -np.ones(n_target, dtype=int)]


def target_only(data: DomainFeatures, seed: int) -> LinearHead:
    """The head from this line's labelled images alone (the baseline every transfer must beat)."""
    return fit_linear_head(data.target, data.target_labels, data.n_classes, seed=seed)


def source_only(data: DomainFeatures, seed: int) -> LinearHead:
    """The other line's model as it is (no adaptation)."""
    return fit_linear_head(data.source, data.source_labels, data.n_classes, seed=seed)


def _mapped(adapter_factory: Callable[[], object]) -> Callable[[DomainFeatures, int], LinearHead]:
    """A method that moves the (scaled) source features onto the target's with a skada adapter and fits
    the head on them and this line's labelled images."""
    def method(data: DomainFeatures, seed: int) -> LinearHead:
        source_scaling, target_scaling = Scaling.of(data.source), Scaling.of(data.target_all)
        xs, xt = source_scaling(data.source), target_scaling(data.target_all)
        adapter = adapter_factory()
        adapter.fit(np.concatenate([xs, xt]), sample_domain=_domains(len(xs), len(xt)))
        moved = adapter.transform(xs, sample_domain=np.ones(len(xs), dtype=int), allow_source=True)
        head = _fit([moved, target_scaling(data.target)], [data.source_labels, data.target_labels],
                    data.n_classes, seed)
        return _head_on_raw(head, target_scaling)
    return method


def per_domain_scaling(data: DomainFeatures, seed: int) -> LinearHead:
    """Each line standardised by its own feature means and spreads, then one head."""
    source_scaling, target_scaling = Scaling.of(data.source), Scaling.of(data.target_all)
    head = _fit([source_scaling(data.source), target_scaling(data.target)], [data.source_labels, data.target_labels],
                data.n_classes, seed)
    return _head_on_raw(head, target_scaling)


def _coral():
    from skada import CORALAdapter

    return CORALAdapter(reg="auto")


def _ot_mapping():
    from skada import OTMappingAdapter

    return OTMappingAdapter()


coral = _mapped(_coral)
ot_mapping = _mapped(_ot_mapping)

SUBSPACE_DIMENSIONS = 64


def subspace_alignment(data: DomainFeatures, seed: int) -> LinearHead:
    """Both lines projected on their own principal subspace, the source's rotated onto the target's; the
    target's projection is affine, so it is folded into the head on raw features."""
    from skada import SubspaceAlignmentAdapter

    source_scaling, target_scaling = Scaling.of(data.source), Scaling.of(data.target_all)
    xs, xt = source_scaling(data.source), target_scaling(data.target_all)
    dims = int(min(SUBSPACE_DIMENSIONS, len(xs) - 1, len(xt) - 1, xs.shape[1]))
    adapter = SubspaceAlignmentAdapter(n_components=dims, random_state=seed)
    adapter.fit(np.concatenate([xs, xt]), sample_domain=_domains(len(xs), len(xt)))
    moved = adapter.transform(xs, sample_domain=np.ones(len(xs), dtype=int), allow_source=True)
    pca = adapter.pca_target_
    labelled = pca.transform(target_scaling(data.target)) if len(data.target) else np.zeros((0, dims))
    head = _fit([moved, labelled], [data.source_labels, data.target_labels], data.n_classes, seed)
    # pca.transform(z) = (z - pca.mean_) @ components_.T: the projection P = components_.T, offset mean_ @ P
    projection = pca.components_.T
    return _head_on_raw(head, target_scaling, projection, pca.mean_ @ projection)


def kmm_weights(source: np.ndarray, target: np.ndarray, seed: int) -> np.ndarray:
    """Kernel mean matching weights (n_s,), mean 1: how much each source row stands for the target."""
    from skada import KMMReweightAdapter

    adapter = KMMReweightAdapter(gamma=1.0 / source.shape[1], smooth_weights=True)
    adapter.fit(np.concatenate([source, target]), sample_domain=_domains(len(source), len(target)))
    weights = adapter.compute_weights(source, sample_domain=np.ones(len(source), dtype=int))
    weights = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    return weights / weights.mean() if weights.mean() > 0 else np.ones(len(source))


def importance_weighting(data: DomainFeatures, seed: int) -> LinearHead:
    """Source images weighted by kernel mean matching (on per-line scaled features), then one head."""
    source_scaling, target_scaling = Scaling.of(data.source), Scaling.of(data.target_all)
    xs = source_scaling(data.source)
    weights = kmm_weights(xs, target_scaling(data.target_all), seed)
    head = _fit([xs, target_scaling(data.target)], [data.source_labels, data.target_labels], data.n_classes, seed,
                weights=[weights, np.ones(len(data.target))])
    return _head_on_raw(head, target_scaling)


def selected_sources(source: np.ndarray, labels: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Indices of the source rows to keep: within the distance at which target rows find their nearest
    target neighbour (95th percentile), plus the KEEP_PER_CLASS nearest of each class."""
    from sklearn.neighbors import NearestNeighbors

    if len(target) < 2:
        return np.arange(len(source))
    finder = NearestNeighbors(n_neighbors=2).fit(target)
    within_target = finder.kneighbors(target)[0][:, 1]
    to_target = finder.kneighbors(source, n_neighbors=1)[0][:, 0]
    keep = set(np.flatnonzero(to_target <= np.quantile(within_target, 0.95)).tolist())
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        keep.update(rows[np.argsort(to_target[rows])[:KEEP_PER_CLASS]].tolist())
    return np.array(sorted(keep), dtype=int)


def source_selection(data: DomainFeatures, seed: int) -> LinearHead:
    """Only the source images that lie among this line's images (per-line scaled), then one head."""
    source_scaling, target_scaling = Scaling.of(data.source), Scaling.of(data.target_all)
    xs = source_scaling(data.source)
    kept = selected_sources(xs, data.source_labels, target_scaling(data.target_all))
    head = _fit([xs[kept], target_scaling(data.target)], [data.source_labels[kept], data.target_labels],
                data.n_classes, seed)
    return _head_on_raw(head, target_scaling)


# name -> method; the guard's baselines first
METHODS: dict[str, Callable[[DomainFeatures, int], LinearHead]] = {
    "source_only": source_only,
    "target_only": target_only,
    "coral": coral,
    "ot_mapping": ot_mapping,
    "subspace_alignment": subspace_alignment,
    "importance_weighting": importance_weighting,
    "source_selection": source_selection,
}
