"""The C and Arduino packages follow the spec's ``prefer``: the board core's model C takes
the kernels the choice names, the package reports them (``Package.kernels``, the
metadata's ``model``), and the portable copy is unaffected."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import deployhelp as H  # noqa: E402

from kiloml.deploy import deploy_arduino, deploy_c  # noqa: E402


def test_packages_follow_prefer(tmp_path):
    spec = H.kws_spec()  # nano33ble: Cortex-M4F, armv7em kernels
    pkgs = {pr: deploy_c(replace(spec, prefer=pr), tmp_path / pr)
            for pr in ("speed", "size")}
    for pr, pkg in pkgs.items():
        k = pkg.kernels
        assert k["prefer"] == pr and k["kernel_choices"]
        want = "1x1" if pr == "speed" else "column"
        assert {c["option"] for c in k["kernel_choices"]} == {want}
        meta = json.loads(next(pkg.path.rglob("kws.json")).read_text())
        assert meta["model"]["prefer"] == pr
        assert meta["model"]["kernel_choices"] == k["kernel_choices"]
    one = [f for f in pkgs["speed"].files if f.endswith("kml_conv_1x1.c")]
    assert len(one) == 1 and "armv7em" in one[0]
    assert not any(f.endswith("kml_conv_1x1.c") for f in pkgs["size"].files)
    # the portable copy is the same C whatever the preference
    port = [f for f in pkgs["size"].files if "/portable/" in f and f.endswith(".c")]
    assert port and all((pkgs["speed"].path / f).read_text().split("*/", 1)[1]
                        == (pkgs["size"].path / f).read_text().split("*/", 1)[1]
                        for f in port if f.endswith("kws_model.c"))
    ard = deploy_arduino(replace(spec, prefer="speed"), tmp_path / "ard")
    assert ard.kernels["prefer"] == "speed"
    assert any(f.endswith("kml_conv_1x1.c") for f in ard.files)
