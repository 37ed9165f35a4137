"""The shared face of the batch methods: flat parameters (``codegraph_ad.params``), configs,
``fit_predict`` on a FeatureSet or on arrays."""

from __future__ import annotations

from typing import Any, ClassVar

from codegraph_ad.config import RunConfig
from codegraph_ad.engine.threads import thread_budget
from codegraph_ad.errors import ConfigError
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods.base import ScoreResult, check_batch_size
from codegraph_ad.methods.first_pass import FirstPass, compute_first_pass
from codegraph_ad.params import FlatParams, Section, flat_parameters

# RsCINConfig's "enabled" and "k_list" say nothing once flattened next to other sections.
RSCIN_NAMES = {"enabled": "rscin", "k_list": "rscin_k_list"}

__all__ = ["RSCIN_NAMES", "BatchEstimator", "Section", "flat_parameters"]


class BatchEstimator(FlatParams):
    """Shared face of MuSc and CoDeGraph: parameters, configs, ``fit_predict``.

    Subclasses are decorated with ``flat_parameters`` and registered in METHODS, set
    ``method_name`` (the registered name, for ``.config``) and implement ``_score``.
    """

    input: ClassVar[str] = "features"
    method_name: ClassVar[str] = ""

    # -- configs ----------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: RunConfig, **params: Any) -> "BatchEstimator":
        """The estimator a run configuration describes; ``params`` sets the parameters
        that are not part of a config (``progress``, ...)."""
        values: dict[str, Any] = {}
        for section in cls.sections:
            sub = getattr(config, section.attr)
            for field_name, flat in section.flat_names().items():
                values[flat] = getattr(sub, field_name)
        return cls(**values).set_params(**params)  # type: ignore[call-arg]

    @property
    def config(self) -> RunConfig:
        """The run configuration of this estimator (sections it does not read keep their
        defaults); ``type(est).from_config(est.config)`` rebuilds it."""
        return RunConfig(method=self.method_name, **self.configs())

    # -- scoring ----------------------------------------------------------------------
    def fit_predict(self, features: Any, grid: tuple[int, int] | None = None, cls: Any = None) -> ScoreResult:
        """Score one batch: every image against the others (zero-shot, nothing to fit first).

        features: a ``FeatureSet``, or an array / tensor ``(N, L, H, W, C)``, or
            ``(N, L, M, C)`` with ``grid=(h, w)``; ``cls`` ``(N, C)`` [CLS] vectors, needed
            only by RsCIN, [CLS] screening and subset division.
        """
        if isinstance(features, FeatureSet):
            if grid is not None or cls is not None:
                raise ConfigError("grid and cls go with array features; a FeatureSet carries its own")
            fs = features
        else:
            fs = FeatureSet.from_arrays(features, grid, cls)
        configs = self.configs()
        check_batch_size(fs.n_images)
        with thread_budget(configs["engine"].threads):
            return self._score(fs, configs)

    def _score(self, features: FeatureSet, configs: dict[str, Any]) -> ScoreResult:
        raise NotImplementedError

    # -- warm start: one first pass, many settings ------------------------------------
    def first_pass(self, features: Any, grid: tuple[int, int] | None = None, cls: Any = None) -> FirstPass:
        """MuSc's first pass (minima and argmins of every layer and degree) under this
        estimator's LNAMD and engine parameters: the only full-cost step. ``rescore`` then
        scores it under any q or graph setting in seconds, which is how the benchmarks
        compare many settings on one batch. Inputs as for ``fit_predict``; the first pass
        covers the whole batch, so subset division is refused here."""
        fs = features if isinstance(features, FeatureSet) else FeatureSet.from_arrays(features, grid, cls)
        configs = self.configs()
        check_batch_size(fs.n_images)
        if configs["engine"].subsets != 1:
            raise ConfigError(f"{type(self).__name__}: first_pass covers the whole batch; "
                              f"subsets={configs['engine'].subsets} needs fit_predict")
        with thread_budget(configs["engine"].threads):
            return compute_first_pass(fs, configs["lnamd"], configs["engine"], getattr(self, "progress", False),
                                      exact_degrees=self._exact_degrees(configs))

    def _exact_degrees(self, configs: dict[str, Any]) -> tuple[int, ...] | None:
        """The degrees whose small distances a reduced-precision first pass recomputes in fp32
        (``compute_first_pass``; None: all)."""
        return None

    def rescore(self, first: FirstPass) -> ScoreResult:
        """Scores of a stored ``first_pass`` under this estimator's scoring parameters (its
        LNAMD degrees must be the first pass's)."""
        configs = self.configs()
        if tuple(configs["lnamd"].degrees) != tuple(first.degrees):
            raise ConfigError(f"{type(self).__name__}: degrees {tuple(configs['lnamd'].degrees)} differ from "
                              f"the first pass's {tuple(first.degrees)}")
        with thread_budget(configs["engine"].threads):
            return self._rescore(first, configs)

    def _rescore(self, first: FirstPass, configs: dict[str, Any]) -> ScoreResult:
        raise NotImplementedError


