"""The Ray executor on a real local Ray instance (CPU only): the same rows as
the local executor for the same seeds and thread count.  Starting Ray takes
several seconds and ~0.5 GB, so this is one test."""
from __future__ import annotations

import pytest

from isnas_fast.io import save_image
from isnas_fast.suite import LocalExecutor, RayExecutor, run_suite

ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "isnas-fast[ray]")')

TINY = dict(width=16, iterations=3, cohort_iterations=2, num_candidates=3, cohort_size=2)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_rows_equal_local_rows(tmp_path, sample, local_ray):
    images = tmp_path / "images"
    images.mkdir()
    save_image(sample[..., :64, :64], images / "a.png")
    save_image(sample[..., 64:, 64:], images / "b.png")
    # blend named: Ray's workers read the preset as shipped, this process without its blend (conftest.py)
    kw = dict(methods="isnas,nasdip,random", seeds=2, quiet=True, plot=False, sigma=25, blend="none", **TINY)
    local = run_suite(images, "denoise", out=tmp_path / "local", executor=LocalExecutor(threads=1), **kw)
    remote = run_suite(images, "denoise", out=tmp_path / "ray", executor=RayExecutor(threads=1), **kw)
    assert ray.is_initialized()  # a Ray instance the caller started is left running
    a = {r["job"]: r for r in local.rows}
    b = {r["job"]: r for r in remote.rows}
    assert len(a) == 12 and a.keys() == b.keys() and not remote.failed
    for k, r in a.items():
        assert b[k]["executor"]["executor"] == "ray" and b[k]["threads"] == 1
        assert (b[k]["psnr"], b[k]["ssim"], b[k]["genotype"], b[k]["psnr_png"]) == \
            (r["psnr"], r["ssim"], r["genotype"], r["psnr_png"]), k
    assert (tmp_path / "ray" / "summary.md").read_text().count("\n") > 10
