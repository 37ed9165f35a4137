"""The benchmark's method list is the registry's batch methods, MuSc first."""

from __future__ import annotations

import pytest

from codegraph_ad import MuSc, RunConfig, register_method
from codegraph_ad.errors import InputError
from codegraph_ad.registry import METHODS
from codegraph_ad.suite.config import BenchmarkConfig, method_order
from codegraph_ad.suite.runner import _check_methods


def test_registered_batch_methods_are_benchmarkable_and_image_methods_are_not(tmp_path):
    assert method_order()[:2] == ("musc", "codegraph") and "winclip" not in method_order()

    class Other(MuSc):
        """A user's batch method."""

    register_method("other_musc", Other)
    try:
        assert method_order()[-1] == "other_musc"
        bench = BenchmarkConfig("mvtec", tmp_path, None, ("other_musc", "musc"))
        configs = {m: RunConfig(method=m) for m in ("other_musc", "musc")}
        assert _check_methods(bench, configs) == ["musc", "other_musc"]
        with pytest.raises(InputError, match=r"unknown method\(s\) winclip; choose from musc, codegraph"):
            _check_methods(BenchmarkConfig("mvtec", tmp_path, None, ("winclip",)), {})
    finally:
        METHODS.unregister("other_musc")
